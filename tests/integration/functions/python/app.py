"""Handler fixtures for levee's python runtime (tests/integration/test_runtimes.py)."""

import decimal
import json
import logging
import os
import time

# Counts invocations served by this process: a warm worker keeps it.
served = 0


def hello(event, context):
    global served
    served += 1
    return {"statusCode": 200, "headers": {"content-type": "text/plain"},
            "body": "hello from python " + (event.get("rawPath") or "")}


def echo(event, context):
    return event


def err(event, context):
    raise ValueError("python handler failed")


def ctx(event, context):
    return {
        "aws_request_id": context.aws_request_id,
        "function_name": context.function_name,
        "function_version": context.function_version,
        "memory_limit_in_mb": context.memory_limit_in_mb,
        "invoked_function_arn": context.invoked_function_arn,
        "log_group_name": context.log_group_name,
        "log_stream_name": context.log_stream_name,
        "remaining": context.get_remaining_time_in_millis(),
        "client_context": None if context.client_context is None else {
            "custom": context.client_context.custom, "env": context.client_context.env},
        "identity_id": context.identity.cognito_identity_id,
        "trace_id": os.environ.get("_X_AMZN_TRACE_ID"),
    }


def sleep(event, context):
    ms = int(event.get("ms") or (event.get("queryStringParameters") or {}).get("ms") or 100)
    time.sleep(ms / 1000.0)
    return {"slept": ms}


ENV_NAMES = ["AWS_LAMBDA_FUNCTION_NAME", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "AWS_LAMBDA_FUNCTION_VERSION",
             "AWS_REGION", "AWS_EXECUTION_ENV", "AWS_LAMBDA_RUNTIME_API", "_HANDLER", "LAMBDA_TASK_ROOT",
             "TZ", "PATH", "PYTHONPATH", "TABLE"]


def env(event, context):
    out = {name: os.environ.get(name) for name in ENV_NAMES}
    out["cwd"] = os.getcwd()
    return out


def log(event, context):
    print("printed line")
    logging.getLogger().warning("warning through logging")
    return "logged"


def decimal_result(event, context):
    return {"price": decimal.Decimal("1.5")}


def not_json(event, context):
    return {"when": object()}


def served_count(event, context):
    global served
    served += 1
    return {"served": served, "pid": os.getpid()}


def crash(event, context):
    os._exit(3)


not_callable = json.dumps({"x": 1})
