"""test_invoke_api.py: the Lambda Invoke API on the api listener, against
the real binary, with the clients people use: boto3 (lambda.invoke, as is),
the AWS SDK for JavaScript v3 (tests/node/invoke_test.mjs) and, for the
error paths no SDK will send, raw requests.

The function is tests/integration/functions/invoke/bootstrap, a `provided`
runtime in Python steered by its event: {"fail": ...} makes it report an
error, {"sleep": s} makes it slow, {"touch": path} makes it append
"request-id<TAB>event" to a file (the visible side effect of an Event
invocation), and INIT_SLEEP in its environment makes its cold start slow.

Covered: RequestResponse (payload, request id, version, log tail, client
context, every FunctionName form, qualifiers), function errors, DryRun,
unknown functions, malformed requests, throttling (429 + Retry-After),
Event (202, runs later, retried then dead-lettered as Lambda's on-failure
record, survives a SIGKILL of levee between the 202 and the run), and the
metrics. Every wait is bounded."""

import base64
import json
import os
import signal
import subprocess
import threading
import time

import pytest
import requests

from origins import free_port
from prometheus_check import parse_prometheus, sample_value

boto3 = pytest.importorskip("boto3")
from botocore.config import Config  # noqa: E402
from botocore.exceptions import ClientError  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
FIXTURE = os.path.join(HERE, "functions", "invoke")
NODE_DIR = os.path.join(REPO, "tests", "node")
ARN = "arn:aws:lambda:us-east-1:000000000000:function:"


def api_config(api_port, extra=""):
    """A levee with the fixture as `echo` (fast retries, dead letters to
    ./dead-letter.jsonl) plus any `extra` functions (YAML, indented 2)."""
    return f"""
        api: {{ listen: 127.0.0.1:{api_port} }}
        functions:
          echo:
            runtime: provided
            code: {FIXTURE}
            async: {{ retries: 2, backoff: 100ms, on_failure: ./dead-letter.jsonl }}
{extra}
        """


def lambda_client(api_port):
    return boto3.client(
        "lambda", endpoint_url="http://127.0.0.1:%d" % api_port, region_name="us-east-1",
        aws_access_key_id="test", aws_secret_access_key="test",
        config=Config(retries={"max_attempts": 0}, read_timeout=30, connect_timeout=5))


def start(levee, extra=""):
    port = free_port()
    lv = levee(api_config(port, extra))
    return lv, port, lambda_client(port)


def wait_for(pred, timeout=15.0, interval=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(interval)
    return pred()


def read_lines(path):
    try:
        with open(path) as f:
            return [line.rstrip("\n") for line in f if line.strip()]
    except FileNotFoundError:
        return []


def error_of(excinfo):
    e = excinfo.value.response
    return e["Error"]["Code"], e["Error"]["Message"], e["ResponseMetadata"]


# ---------------------------------------------------------------------------
# RequestResponse
# ---------------------------------------------------------------------------

def test_sync_invoke_returns_the_result(levee):
    _, _, lam = start(levee)
    r = lam.invoke(FunctionName="echo", Payload=json.dumps({"order": 42}))
    assert r["StatusCode"] == 200
    assert "FunctionError" not in r
    assert r["ExecutedVersion"] == "$LATEST"
    body = json.loads(r["Payload"].read())
    assert body["echo"] == {"order": 42}
    # The id boto3 reports is the one the function saw as its request id.
    assert body["requestId"] == r["ResponseMetadata"]["RequestId"]
    assert r["ResponseMetadata"]["HTTPHeaders"]["content-type"] == "application/json"


def test_empty_payload_reaches_the_function_as_empty_object(levee):
    _, _, lam = start(levee)
    r = lam.invoke(FunctionName="echo")
    assert json.loads(r["Payload"].read())["echo"] == {}


def test_function_error_is_unhandled_with_the_error_object(levee):
    _, _, lam = start(levee)
    r = lam.invoke(FunctionName="echo", Payload=json.dumps({"fail": "out of stock"}))
    assert r["StatusCode"] == 200
    assert r["FunctionError"] == "Unhandled"
    err = json.loads(r["Payload"].read())
    assert err["errorType"] == "Boom"
    assert err["errorMessage"] == "out of stock"


def test_log_tail_holds_the_invocations_output(levee):
    _, _, lam = start(levee)
    r = lam.invoke(FunctionName="echo", Payload=b"{}", LogType="Tail")
    tail = base64.b64decode(r["LogResult"]).decode()
    assert "invoke-fixture handling %s" % r["ResponseMetadata"]["RequestId"] in tail
    r = lam.invoke(FunctionName="echo", Payload=b"{}", LogType="None")
    assert "LogResult" not in r


def test_client_context_reaches_the_function(levee):
    _, _, lam = start(levee)
    ctx = {"client": {"installation_id": "i-1"}, "custom": {"k": "v"}}
    r = lam.invoke(FunctionName="echo", Payload=b"{}",
                   ClientContext=base64.b64encode(json.dumps(ctx).encode()).decode())
    assert json.loads(r["Payload"].read())["clientContext"] == ctx


@pytest.mark.parametrize("name", [
    "echo",
    "echo:$LATEST",
    "123456789012:function:echo",
    "arn:aws:lambda:us-east-1:123456789012:function:echo",
    "arn:aws:lambda:eu-west-1:123456789012:function:echo:$LATEST",
])
def test_every_function_name_form(levee, name):
    _, _, lam = start(levee)
    r = lam.invoke(FunctionName=name, Payload=b'{"n":1}')
    assert json.loads(r["Payload"].read())["echo"] == {"n": 1}


def test_qualifier(levee):
    _, _, lam = start(levee)
    r = lam.invoke(FunctionName="echo", Qualifier="$LATEST", Payload=b"{}")
    assert r["StatusCode"] == 200
    with pytest.raises(ClientError) as ei:
        lam.invoke(FunctionName="echo", Qualifier="prod", Payload=b"{}")
    code, msg, meta = error_of(ei)
    assert code == "ResourceNotFoundException"
    assert msg == "Function not found: " + ARN + "echo:prod"
    assert meta["HTTPStatusCode"] == 404
    with pytest.raises(ClientError) as ei:
        lam.invoke(FunctionName="echo:prod", Payload=b"{}")
    assert error_of(ei)[0] == "ResourceNotFoundException"


def test_unknown_function(levee):
    _, _, lam = start(levee)
    with pytest.raises(lam.exceptions.ResourceNotFoundException) as ei:
        lam.invoke(FunctionName="nope", Payload=b"{}")
    code, msg, meta = error_of(ei)
    assert msg == "Function not found: " + ARN + "nope"
    assert meta["HTTPStatusCode"] == 404
    assert meta["RequestId"]


def test_dry_run(levee):
    _, _, lam = start(levee)
    r = lam.invoke(FunctionName="echo", InvocationType="DryRun", Payload=b"{}")
    assert r["StatusCode"] == 204
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.invoke(FunctionName="nope", InvocationType="DryRun")


def test_invalid_json_payload(levee):
    _, _, lam = start(levee)
    for kind in ("RequestResponse", "Event", "DryRun"):
        with pytest.raises(lam.exceptions.InvalidRequestContentException) as ei:
            lam.invoke(FunctionName="echo", InvocationType=kind, Payload=b'{"unterminated": ')
        code, msg, meta = error_of(ei)
        assert msg.startswith("Could not parse request body into json: ")
        assert meta["HTTPStatusCode"] == 400


def test_throttled_with_retry_after(levee):
    extra = f"""
          one:
            runtime: provided
            code: {FIXTURE}
            concurrency: {{ max: 1, warm: 1 }}
            queue: {{ max: 0 }}
"""
    _, _, lam = start(levee, extra)
    # The warm worker answers once it is up.
    assert wait_for(lambda: _ready(lam, "one"), timeout=15)
    slow = threading.Thread(target=lambda: lam.invoke(FunctionName="one", Payload=b'{"sleep": 2}'))
    slow.start()
    try:
        time.sleep(0.5)
        with pytest.raises(lam.exceptions.TooManyRequestsException) as ei:
            lam.invoke(FunctionName="one", Payload=b"{}")
        err = ei.value.response
        assert err["ResponseMetadata"]["HTTPStatusCode"] == 429
        assert int(err["ResponseMetadata"]["HTTPHeaders"]["retry-after"]) >= 1
        assert err["Reason"] == "ReservedFunctionConcurrentInvocationLimitExceeded"
        assert err["Error"]["Message"] == "Rate Exceeded."
    finally:
        slow.join(timeout=30)


def _ready(lam, name):
    try:
        return lam.invoke(FunctionName=name, Payload=b"{}")["StatusCode"] == 200
    except ClientError:
        return False


# ---------------------------------------------------------------------------
# Raw requests: what the SDKs never send
# ---------------------------------------------------------------------------

def raw(port, path, body=b"{}", method="POST", headers=None):
    return requests.request(method, "http://127.0.0.1:%d%s" % (port, path), data=body, headers=headers or {},
                            timeout=30)


def check_error(r, status, error_type):
    assert r.status_code == status, r.text
    assert r.headers["X-Amzn-ErrorType"] == error_type
    assert r.headers["Content-Type"] == "application/json"
    assert r.headers["x-amzn-RequestId"]
    body = r.json()
    assert body["Type"] in ("User", "Service")
    assert isinstance(body["message"], str)
    return body


def test_malformed_requests_get_lambda_errors(levee):
    _, port, _ = start(levee)
    inv = "/2015-03-31/functions/echo/invocations"
    check_error(raw(port, inv, headers={"X-Amz-Invocation-Type": "Sometimes"}), 400, "InvalidParameterValueException")
    check_error(raw(port, inv, headers={"X-Amz-Log-Type": "Everything"}), 400, "InvalidParameterValueException")
    check_error(raw(port, inv, headers={"X-Amz-Client-Context": "not base64!"}), 400,
                "InvalidParameterValueException")
    check_error(raw(port, inv, headers={"X-Amz-Client-Context": base64.b64encode(b"[1,2]").decode()}), 400,
                "InvalidParameterValueException")
    r = raw(port, inv, method="GET", body=None)
    check_error(r, 405, "UnknownOperationException")
    assert r.headers["Allow"] == "POST"
    check_error(raw(port, "/2015-03-31/functions/echo", method="GET", body=None), 404, "UnknownOperationException")
    check_error(raw(port, "/2015-03-31/functions/bad%20name/invocations"), 400, "ValidationException")
    check_error(raw(port, "/2015-03-31/functions/%zz/invocations"), 400, "ValidationException")
    check_error(raw(port, "/2015-03-31/functions/echo/invocations?Qualifier=a.b"), 400, "ValidationException")
    check_error(raw(port, "/2015-03-31/functions/echo:v1/invocations?Qualifier=v2"), 400,
                "InvalidParameterValueException")
    # Bytes that are not UTF-8 in a header still give a valid JSON body.
    r = requests.post("http://127.0.0.1:%d%s" % (port, inv), data=b"{}", timeout=30,
                      headers={"X-Amz-Invocation-Type": b"\xff\xfe".decode("latin-1")})
    assert check_error(r, 400, "InvalidParameterValueException")["message"].startswith("Unsupported invocation")
    # An Event payload over 1 MiB.
    big = json.dumps({"pad": "x" * (1024 * 1024)}).encode()
    body = check_error(raw(port, inv, body=big, headers={"X-Amz-Invocation-Type": "Event"}), 413,
                       "RequestTooLargeException")
    assert "1048576" in body["message"]
    # The same is fine synchronously (the limit there is 6 MiB).
    r = raw(port, inv, body=big)
    assert r.status_code == 200
    assert len(r.json()["echo"]["pad"]) == 1024 * 1024
    # Over 6 MiB synchronously: the Invoke API's own 413, even though the
    # public listeners' body limit (6 MiB by default) is lower.
    body = check_error(raw(port, inv, body=b'"' + b"x" * (6 * 1024 * 1024) + b'"'), 413,
                       "RequestTooLargeException")
    assert "6291456" in body["message"]
    # Other AWS services' paths are not the Invoke API's.
    r = raw(port, "/2015-03-31/other")
    assert r.status_code == 404


# ---------------------------------------------------------------------------
# Event
# ---------------------------------------------------------------------------

def test_event_is_accepted_then_runs(levee, tmp_path):
    lv, _, lam = start(levee)
    touch = str(tmp_path / "ran.txt")
    r = lam.invoke(FunctionName="echo", InvocationType="Event", Payload=json.dumps({"touch": touch, "n": 1}))
    assert r["StatusCode"] == 202
    assert r["Payload"].read() == b""
    rid = r["ResponseMetadata"]["RequestId"]
    lines = wait_for(lambda: read_lines(touch))
    assert len(lines) == 1
    ran_id, event = lines[0].split("\t", 1)
    assert ran_id == rid  # the function sees the id the caller was given
    assert json.loads(event) == {"touch": touch, "n": 1}
    # The log tail is for synchronous calls; with Event it is ignored.
    r = lam.invoke(FunctionName="echo", InvocationType="Event", LogType="Tail",
                   Payload=json.dumps({"touch": touch, "n": 2}))
    assert r["StatusCode"] == 202 and "LogResult" not in r
    assert wait_for(lambda: len(read_lines(touch)) == 2)


def test_failing_event_is_retried_then_dead_lettered(levee, tmp_path):
    lv, _, lam = start(levee)
    touch = str(tmp_path / "tries.txt")
    r = lam.invoke(FunctionName="echo", InvocationType="Event",
                   Payload=json.dumps({"fail": "no luck", "touch": touch}))
    assert r["StatusCode"] == 202
    rid = r["ResponseMetadata"]["RequestId"]
    dead = os.path.join(lv.dir, "dead-letter.jsonl")
    lines = wait_for(lambda: read_lines(dead), timeout=20)
    assert len(lines) == 1
    rec = json.loads(lines[0])
    assert rec["version"] == "1.0"
    assert rec["requestContext"] == {"requestId": rid, "functionArn": ARN + "echo:$LATEST",
                                     "condition": "RetriesExhausted", "approximateInvokeCount": 3}
    assert rec["requestPayload"] == {"fail": "no luck", "touch": touch}
    assert rec["responseContext"] == {"statusCode": 200, "executedVersion": "$LATEST",
                                      "functionError": "Unhandled"}
    assert rec["responsePayload"] == {"errorType": "Boom", "errorMessage": "no luck"}
    assert rec["timestamp"].endswith("Z")
    # 1 + 2 retries, all with the event's request id.
    tries = read_lines(touch)
    assert [t.split("\t")[0] for t in tries] == [rid] * 3


def test_event_survives_sigkill_between_accept_and_run(levee, tmp_path):
    """The worker takes 3 s to start, so the event is on disk but has not
    run when levee is killed; the next levee runs it, with its id."""
    extra = f"""
          slow:
            runtime: provided
            code: {FIXTURE}
            env: {{ INIT_SLEEP: "3" }}
"""
    port = free_port()
    lv = levee(api_config(port, extra))
    lam = lambda_client(port)
    touch = str(tmp_path / "after-restart.txt")
    r = lam.invoke(FunctionName="slow", InvocationType="Event", Payload=json.dumps({"touch": touch}))
    assert r["StatusCode"] == 202
    rid = r["ResponseMetadata"]["RequestId"]
    lv.proc.send_signal(signal.SIGKILL)
    lv.wait()
    lv.checked = True  # killed on purpose: no clean exit to check
    assert read_lines(touch) == []

    port2 = free_port()
    lv2 = levee(api_config(port2, extra))
    lines = wait_for(lambda: read_lines(touch), timeout=30)
    assert [line.split("\t")[0] for line in lines] == [rid]
    assert "slow: 1 pending event recovered" in lv2.stderr


def test_event_while_worker_busy_then_restart(levee, tmp_path):
    """Events queued behind a busy worker are acknowledged (on disk) and,
    after levee is killed and restarted, run once each."""
    extra = f"""
          single:
            runtime: provided
            code: {FIXTURE}
            concurrency: {{ max: 1 }}
"""
    port = free_port()
    lv = levee(api_config(port, extra))
    lam = lambda_client(port)
    touch = str(tmp_path / "busy.txt")
    ids = []
    for i in range(3):
        r = lam.invoke(FunctionName="single", InvocationType="Event",
                       Payload=json.dumps({"touch": touch, "sleep": 5 if i == 0 else 0, "i": i}))
        assert r["StatusCode"] == 202
        ids.append(r["ResponseMetadata"]["RequestId"])
    time.sleep(0.5)
    lv.proc.send_signal(signal.SIGKILL)
    lv.wait()
    lv.checked = True
    port2 = free_port()
    levee(api_config(port2, extra))
    # All three run after the restart (the first one again: it never
    # finished, and the queue is at-least-once, as Lambda's).
    lines = wait_for(lambda: len(read_lines(touch)) >= 3 and read_lines(touch), timeout=40)
    ran = [line.split("\t")[0] for line in lines]
    assert set(ids) <= set(ran)


# ---------------------------------------------------------------------------
# Metrics
# ---------------------------------------------------------------------------

def test_metrics(levee, tmp_path):
    lv, _, lam = start(levee)
    lam.invoke(FunctionName="echo", Payload=b"{}")
    lam.invoke(FunctionName="echo", Payload=b'{"fail": "x"}')
    with pytest.raises(ClientError):
        lam.invoke(FunctionName="nope", Payload=b"{}")
    touch = str(tmp_path / "m.txt")
    lam.invoke(FunctionName="echo", InvocationType="Event", Payload=json.dumps({"touch": touch}))
    assert wait_for(lambda: read_lines(touch))

    def scrape():
        return parse_prometheus(requests.get(lv.admin_url + "/metrics", timeout=10).text)

    def succeeded():
        return sample_value(scrape(), "levee_function_async_events_total", function="echo",
                            result="succeeded") == 1
    assert wait_for(succeeded, timeout=10)
    m = scrape()
    req = "levee_invoke_api_requests_total"
    assert sample_value(m, req, **{"type": "RequestResponse", "result": "ok"}) == 1
    assert sample_value(m, req, **{"type": "RequestResponse", "result": "error"}) == 1
    assert sample_value(m, req, **{"type": "RequestResponse", "result": "not_found"}) == 1
    assert sample_value(m, req, **{"type": "Event", "result": "ok"}) == 1
    assert sample_value(m, "levee_function_async_events_total", **{"function": "echo", "result": "accepted"}) == 1
    assert sample_value(m, "levee_function_async_pending", **{"function": "echo"}) == 0
    assert sample_value(m, "levee_function_async_journal_fsyncs_total", **{"function": "echo"}) >= 1
    assert sample_value(m, "levee_function_async_fsync_seconds_count", **{}) >= 1


# ---------------------------------------------------------------------------
# The AWS SDK for JavaScript v3
# ---------------------------------------------------------------------------

@pytest.mark.skipif(not os.path.isdir(os.path.join(NODE_DIR, "node_modules", "@aws-sdk", "client-lambda")),
                    reason="tests/node/node_modules has no @aws-sdk/client-lambda: run scripts/install-deps.sh test")
def test_aws_sdk_js_v3(levee, tmp_path):
    _, port, _ = start(levee)
    touch = str(tmp_path / "node.txt")
    r = subprocess.run(["node", os.path.join(NODE_DIR, "invoke_test.mjs"), "http://127.0.0.1:%d" % port, touch],
                       cwd=NODE_DIR, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-4000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    lines = wait_for(lambda: read_lines(touch))
    assert [line.split("\t")[0] for line in lines] == [out["eventRequestId"]]
