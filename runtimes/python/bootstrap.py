"""bootstrap.py: levee's Python runtime. A worker process runs
`python3 bootstrap.py` with the Lambda environment (AWS_LAMBDA_RUNTIME_API,
_HANDLER, LAMBDA_TASK_ROOT, ...) and serves invocations of one handler, one
at a time, for as long as levee keeps it.

It keeps the contract of Lambda's Python runtime (awslambdaric), so handlers
written for Lambda run unchanged, with the standard library only:
  - init: _HANDLER "dir/module.function" is imported with the task root on
    sys.path; a failure goes to /init/error as Runtime.MalformedHandlerName,
    Runtime.ImportModuleError, Runtime.UserCodeSyntaxError,
    Runtime.HandlerNotFound (or the exception the module raised) and the
    process exits 1.
  - loop: GET /next; json.loads the event (Runtime.UnmarshalError if it is
    not JSON); call handler(event, context); json.dumps the result (Decimal
    as a number; Runtime.MarshalError if it cannot be) to /response, or an
    exception to /error as {errorMessage, errorType, requestId, stackTrace}.
  - print() is line-buffered; the logging module's root logger writes
    "[LEVEL]\\t<time>\\t<request id>\\t<message>" as on Lambda.
One persistent HTTP/1.1 connection to the Runtime API (http.client); it is
reopened when levee closes it. Nothing is logged per invocation but errors.
"""

import decimal
import http.client
import importlib
import json
import logging
import os
import sys
import time
import traceback

API_BASE = "/2018-06-01/runtime"
THIS_FILE = os.path.abspath(__file__)


class RuntimeApi:
    """The worker's side of the Runtime API: one keep-alive connection,
    reopened (once per request) when it turns out to be closed."""

    def __init__(self, endpoint):
        host, sep, port = (endpoint or "").rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError("AWS_LAMBDA_RUNTIME_API must be host:port, got %r" % endpoint)
        self.host = host.strip("[]")
        self.port = int(port)
        self.conn = None

    def _request(self, method, path, body=None, headers=None):
        """Returns (status, headers, body bytes). Raises OSError or
        http.client.HTTPException when the connection fails twice."""
        for attempt in (0, 1):
            if self.conn is None:
                # No timeout: /next waits as long as there is no event.
                self.conn = http.client.HTTPConnection(self.host, self.port)
            try:
                self.conn.request(method, path, body=body, headers=headers or {})
                resp = self.conn.getresponse()
                data = resp.read()
                if resp.will_close:
                    self.close()
                return resp.status, resp.headers, data
            except (OSError, http.client.HTTPException):
                self.close()
                if attempt == 1:
                    raise
        raise AssertionError("unreachable")

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def next(self):
        return self._request("GET", API_BASE + "/invocation/next")

    def post_response(self, request_id, body, content_type="application/json"):
        return self._request("POST", "%s/invocation/%s/response" % (API_BASE, _quote(request_id)), body,
                             {"Content-Type": content_type})

    def post_error(self, request_id, error):
        return self._request("POST", "%s/invocation/%s/error" % (API_BASE, _quote(request_id)), _error_body(error),
                             _error_headers(error))

    def post_init_error(self, error):
        return self._request("POST", API_BASE + "/init/error", _error_body(error), _error_headers(error))


def _quote(request_id):
    # The id goes into the request line; keep it from breaking the line.
    return "".join(c if c.isalnum() or c in "-_.~" else "%%%02X" % (ord(c) & 0xFF) for c in request_id)


def _error_body(error):
    return json.dumps(error, default=str).encode("utf-8")


def _error_headers(error):
    error_type = "".join(c for c in str(error.get("errorType", "")) if " " <= c <= "~")[:256]
    return {"Content-Type": "application/json", "Lambda-Runtime-Function-Error-Type": error_type or "Unhandled"}


class FaultException(Exception):
    """An error of the runtime's own (a Runtime.* errorType), not the user's."""

    def __init__(self, error_type, message, trace=None):
        super().__init__(message)
        self.error_type = error_type
        self.message = message
        self.trace = trace


def make_error(message, error_type, stack_trace, request_id=None):
    return {
        "errorMessage": message if message is not None else "",
        "errorType": error_type,
        "requestId": request_id or "",
        "stackTrace": stack_trace if stack_trace is not None else [],
    }


def fault_result(exc, request_id=None, message=None):
    """The error document for an exception, with this file's own frames
    dropped from the front of the trace (they say nothing to the user)."""
    if isinstance(exc, FaultException):
        return make_error(exc.message, exc.error_type, exc.trace, request_id)
    frames = traceback.extract_tb(exc.__traceback__)
    start = 0
    while start < len(frames) and os.path.abspath(frames[start].filename) == THIS_FILE:
        start += 1
    try:
        text = message if message is not None else str(exc)
    except Exception:  # a __str__ that raises must not take the runtime down
        text = "<unprintable %s>" % type(exc).__name__
    return make_error(text, type(exc).__name__, traceback.format_list(frames[start:]), request_id)


def load_handler(handler_name):
    """Imports the module and returns the function, or raises
    FaultException (or what the module's own code raised)."""
    try:
        module_path, function_name = handler_name.rsplit(".", 1)
    except (ValueError, AttributeError) as e:
        raise FaultException("Runtime.MalformedHandlerName", "Bad handler '%s': %s" % (handler_name, e))
    if not module_path or not function_name:
        raise FaultException("Runtime.MalformedHandlerName", "Bad handler '%s'" % handler_name)
    module_name = module_path.replace("/", ".")
    if module_name.split(".")[0] in sys.builtin_module_names:
        raise FaultException("Runtime.BuiltInModuleConflict",
                             "Cannot use built-in module %s as a handler module" % module_name)
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise FaultException("Runtime.ImportModuleError", "Unable to import module '%s': %s" % (module_name, e))
    except SyntaxError as e:
        trace = ['  File "%s" Line %s\n    %s' % (e.filename, e.lineno, e.text)]
        raise FaultException("Runtime.UserCodeSyntaxError",
                             "Syntax error in module '%s': %s" % (module_name, e), trace)
    fn = getattr(module, function_name, None)
    if fn is None:
        raise FaultException("Runtime.HandlerNotFound",
                             "Handler '%s' missing on module '%s'" % (function_name, module_name))
    if not callable(fn):
        raise FaultException("Runtime.HandlerNotFound",
                             "Handler '%s' on module '%s' is not callable" % (function_name, module_name))
    return fn


class CognitoIdentity:
    __slots__ = ("cognito_identity_id", "cognito_identity_pool_id")

    def __repr__(self):
        return "CognitoIdentity(%r, %r)" % (self.cognito_identity_id, self.cognito_identity_pool_id)


class Client:
    __slots__ = ("installation_id", "app_title", "app_version_name", "app_version_code", "app_package_name")


class ClientContext:
    __slots__ = ("client", "custom", "env")


def _client_context(raw):
    if not raw:
        return None
    data = json.loads(raw)
    ctx = ClientContext()
    ctx.custom = data.get("custom")
    ctx.env = data.get("env")
    client = data.get("client")
    if client is None:
        ctx.client = None
    else:
        ctx.client = Client()
        ctx.client.installation_id = client.get("installation_id")
        ctx.client.app_title = client.get("app_title")
        ctx.client.app_version_name = client.get("app_version_name")
        ctx.client.app_version_code = client.get("app_version_code")
        ctx.client.app_package_name = client.get("app_package_name")
    return ctx


def _identity(raw):
    identity = CognitoIdentity()
    data = json.loads(raw) if raw else {}
    identity.cognito_identity_id = data.get("cognitoIdentityId")
    identity.cognito_identity_pool_id = data.get("cognitoIdentityPoolId")
    return identity


class LambdaContext:
    """The handler's second argument, with the attributes Lambda gives it."""

    function_name = os.environ.get("AWS_LAMBDA_FUNCTION_NAME")
    function_version = os.environ.get("AWS_LAMBDA_FUNCTION_VERSION")
    memory_limit_in_mb = os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE")
    log_group_name = os.environ.get("AWS_LAMBDA_LOG_GROUP_NAME")
    log_stream_name = os.environ.get("AWS_LAMBDA_LOG_STREAM_NAME")

    def __init__(self, request_id, deadline_ms, invoked_function_arn, client_context, identity, tenant_id):
        self.aws_request_id = request_id
        self.invoked_function_arn = invoked_function_arn
        self.client_context = client_context
        self.identity = identity
        self.tenant_id = tenant_id
        self._deadline_ms = deadline_ms

    def get_remaining_time_in_millis(self):
        return max(self._deadline_ms - int(round(time.time() * 1000)), 0)

    def log(self, message):
        sys.stdout.write(str(message))
        sys.stdout.flush()

    def __repr__(self):
        return "LambdaContext(aws_request_id=%r, function_name=%r)" % (self.aws_request_id, self.function_name)


def _decimal_default(value):
    if isinstance(value, decimal.Decimal):
        return float(value)
    raise TypeError("Object of type %s is not JSON serializable" % type(value).__name__)


class _RequestIdFilter(logging.Filter):
    request_id = ""

    def filter(self, record):
        record.aws_request_id = _RequestIdFilter.request_id
        return True


def setup_logging():
    # print() reaches levee's log line by line, not when a block buffer fills.
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.reconfigure(line_buffering=True)
        except (AttributeError, ValueError):
            pass
    handler = logging.StreamHandler(sys.stdout)
    formatter = logging.Formatter("[%(levelname)s]\t%(asctime)s.%(msecs)03dZ\t%(aws_request_id)s\t%(message)s",
                                  "%Y-%m-%dT%H:%M:%S")
    formatter.converter = time.gmtime
    handler.setFormatter(formatter)
    handler.addFilter(_RequestIdFilter())
    logging.getLogger().addHandler(handler)


def log_error(error):
    sys.stdout.write("[ERROR] %s: %s\n" % (error["errorType"], error["errorMessage"]))
    for line in error["stackTrace"]:
        sys.stdout.write(line if line.endswith("\n") else line + "\n")


def handle_one(api, handler, status, headers, body):
    """Serves one event from /next; returns after posting the answer."""
    request_id = headers.get("Lambda-Runtime-Aws-Request-Id")
    if status != 200 or not request_id:
        sys.stdout.write("[ERROR] Runtime API answered %d to /next: %r\n" % (status, body[:512]))
        sys.exit(1)
    _RequestIdFilter.request_id = request_id
    trace_id = headers.get("Lambda-Runtime-Trace-Id")
    if trace_id is not None:
        os.environ["_X_AMZN_TRACE_ID"] = trace_id
    else:
        os.environ.pop("_X_AMZN_TRACE_ID", None)
    try:
        try:
            event = json.loads(body)
        except ValueError as e:
            raise FaultException("Runtime.UnmarshalError", "Unable to unmarshal input: %s" % e)
        try:
            deadline_ms = int(headers.get("Lambda-Runtime-Deadline-Ms") or 0)
        except ValueError:
            deadline_ms = 0
        context = LambdaContext(request_id, deadline_ms, headers.get("Lambda-Runtime-Invoked-Function-Arn"),
                                _client_context(headers.get("Lambda-Runtime-Client-Context")),
                                _identity(headers.get("Lambda-Runtime-Cognito-Identity")),
                                headers.get("Lambda-Runtime-Aws-Tenant-Id"))
        result = handler(event, context)
        if isinstance(result, (bytes, bytearray)):
            payload, content_type = bytes(result), "application/unknown"
        else:
            try:
                payload = json.dumps(result, default=_decimal_default, ensure_ascii=False).encode("utf-8")
            except (TypeError, ValueError, RecursionError) as e:
                raise FaultException("Runtime.MarshalError", "Unable to marshal response: %s" % e)
            content_type = "application/json"
    except Exception as e:
        error = fault_result(e, request_id)
        log_error(error)
        answer = api.post_error(request_id, error)
    else:
        answer = api.post_response(request_id, payload, content_type)
    if answer[0] >= 500:
        sys.stdout.write("[ERROR] Runtime API answered %d to the result; exiting\n" % answer[0])
        sys.exit(1)
    if answer[0] >= 300:
        # 400/403/410/413: levee has already failed this invocation itself.
        sys.stdout.write("[WARNING] Runtime API refused the result with %d: %r\n" % (answer[0], answer[2][:512]))


def main():
    setup_logging()
    try:
        api = RuntimeApi(os.environ.get("AWS_LAMBDA_RUNTIME_API"))
    except ValueError as e:
        sys.stderr.write("levee python bootstrap: %s\n" % e)
        sys.exit(1)

    # The user's modules come from the task root, never from this directory.
    task_root = os.environ.get("LAMBDA_TASK_ROOT") or os.getcwd()
    here = os.path.dirname(THIS_FILE)
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != here]
    sys.path.insert(0, task_root)

    handler_name = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("_HANDLER", "")
    try:
        handler = load_handler(handler_name)
    except Exception as e:
        error = fault_result(e)
        log_error(error)
        try:
            api.post_init_error(error)
        except (OSError, http.client.HTTPException):
            pass
        sys.exit(1)

    while True:
        try:
            status, headers, body = api.next()
        except (OSError, http.client.HTTPException) as e:
            sys.stdout.write("[ERROR] Runtime API failed: %s\n" % e)
            sys.exit(1)
        try:
            handle_one(api, handler, status, headers, body)
        except (OSError, http.client.HTTPException) as e:
            sys.stdout.write("[ERROR] Runtime API failed: %s\n" % e)
            sys.exit(1)


if __name__ == "__main__":
    main()
