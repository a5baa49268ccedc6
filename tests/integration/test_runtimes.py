"""test_runtimes.py: the runtimes that run functions — levee's nodejs and
python bootstraps (runtimes/), a `provided` bash bootstrap, the official
aws-lambda-ric — with the handler fixtures in functions/.

Two parts:
  1. The bootstrap contract, without levee: each bootstrap is started the
     way levee starts a worker (argv, cwd, environment: src/functions/spawn.h)
     against FakeRuntimeApi, a scripted Runtime API in this process. That
     pins down exactly what a bootstrap sends (error documents and headers,
     context fields, log format, when a callback answers) and how it copes
     with the connection (chunked answers, closes, 410 refusals).
  2. Through levee: functions behind HTTP routes (and one Invoke API call)
     in a real levee, for every runtime, with the failures a caller must see
     clearly (502 for a function error or a failed init, 504 for a timeout).
The aws-lambda-ric tests need tests/node/node_modules (scripts/install-deps.sh
test installs it); without it they are skipped with that reason.
Every wait is bounded."""

import base64
import http.server
import json
import os
import queue
import signal
import socketserver
import subprocess
import threading
import time
import uuid

import pytest
import requests

from origins import free_port

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
RUNTIME_DIR = os.path.join(REPO, "runtimes")
FUNCTIONS = os.path.join(HERE, "functions")
NODE_DIR = os.path.join(FUNCTIONS, "node")
PY_DIR = os.path.join(FUNCTIONS, "python")
RIC_BIN = os.path.join(REPO, "tests", "node", "node_modules", ".bin", "aws-lambda-ric")
RIC_PKG = os.path.join(REPO, "tests", "node", "node_modules", "aws-lambda-ric")
# As the RIC's README runs it (`npx aws-lambda-ric HANDLER`), pointed at
# tests/node since the function's code has no node_modules of its own.
NPX_RIC = ["npx", "--no-install", "--prefix", os.path.join(REPO, "tests", "node"), "aws-lambda-ric"]
ARN = "arn:aws:lambda:us-east-1:000000000000:function:fixture"

needs_ric = pytest.mark.skipif(not os.path.isdir(RIC_PKG),
                               reason="aws-lambda-ric is not installed: run scripts/install-deps.sh test")


# ---------------------------------------------------------------------------
# Part 1: a scripted Runtime API and workers started as levee starts them
# ---------------------------------------------------------------------------

class Answer:
    """What a worker posted for one invocation."""

    def __init__(self, kind, body, headers, elapsed):
        self.kind = kind          # "response" or "error"
        self.body = body          # bytes
        self.headers = headers    # {lower-case name: value}
        self.elapsed = elapsed    # seconds from the event's delivery

    def json(self):
        return json.loads(self.body)

    def __repr__(self):
        return "Answer(%s %r)" % (self.kind, self.body[:200])


class FakeRuntimeApi:
    """A Runtime API (2018-06-01) for one or more workers. invoke() queues
    an event and waits for the worker's answer. Knobs for the connection
    handling: chunked (send /next bodies chunked), close_after_next (answer
    /next with Connection: close), refuse (status to answer the next
    /response or /error with, e.g. 410)."""

    def __init__(self, chunked=False, close_after_next=False):
        self.chunked = chunked
        self.close_after_next = close_after_next
        self.refuse = None
        self.events = queue.Queue()
        self.answers = {}            # request id -> queue of Answer
        self.delivered = {}          # request id -> monotonic time it went out
        self.init_errors = queue.Queue()
        self.next_calls = 0
        self.connections = 0
        self.closing = False
        self.lock = threading.Lock()
        api = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # head and body are written apart

            def log_message(self, *args):
                pass

            def setup(self):
                super().setup()
                with api.lock:
                    api.connections += 1

            def _send(self, status, body=b"", headers=None, close=False):
                self.send_response(status)
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                if close:
                    self.send_header("Connection", "close")
                    self.close_connection = True
                if api.chunked and status == 200 and body:
                    self.send_header("Transfer-Encoding", "chunked")
                    self.end_headers()
                    step = max(1, len(body) // 3)
                    for i in range(0, len(body), step):
                        piece = body[i:i + step]
                        self.wfile.write(b"%x;ext=1\r\n%s\r\n" % (len(piece), piece))
                    self.wfile.write(b"0\r\nX-Trailer: t\r\n\r\n")
                else:
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                self.wfile.flush()

            def do_GET(self):
                if self.path != "/2018-06-01/runtime/invocation/next":
                    return self._send(404, b'{"errorType":"NotFound"}')
                with api.lock:
                    api.next_calls += 1
                while not api.closing:
                    try:
                        request_id, body, headers = api.events.get(timeout=0.1)
                    except queue.Empty:
                        continue
                    api.delivered[request_id] = time.monotonic()
                    return self._send(200, body, headers, close=api.close_after_next)
                self.close_connection = True

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                headers = {k.lower(): v for k, v in self.headers.items()}
                parts = self.path.split("/")
                if self.path == "/2018-06-01/runtime/init/error":
                    api.init_errors.put((headers, body))
                    return self._send(202, b'{"status":"OK"}')
                if len(parts) != 6 or parts[4] not in api.answers or parts[5] not in ("response", "error"):
                    return self._send(400, b'{"errorType":"InvalidRequestID"}')
                request_id = parts[4]
                refuse, api.refuse = api.refuse, None
                elapsed = time.monotonic() - api.delivered.get(request_id, time.monotonic())
                api.answers[request_id].put(Answer(parts[5], body, headers, elapsed))
                if refuse:
                    return self._send(refuse, b'{"errorType":"Refused"}')
                return self._send(202, b'{"status":"OK"}')

        class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
            daemon_threads = True
            allow_reuse_address = True

        self.server = Server(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    @property
    def endpoint(self):
        return "127.0.0.1:%d" % self.port

    def send(self, event, headers=None, deadline_in=5.0):
        """Queues one event (a JSON-able value, or bytes sent as they are);
        returns its request id."""
        request_id = str(uuid.uuid4())
        body = event if isinstance(event, bytes) else json.dumps(event).encode()
        h = {
            "Content-Type": "application/json",
            "Lambda-Runtime-Aws-Request-Id": request_id,
            "Lambda-Runtime-Deadline-Ms": str(int((time.time() + deadline_in) * 1000)),
            "Lambda-Runtime-Invoked-Function-Arn": ARN,
            "Lambda-Runtime-Trace-Id": "Root=1-5bef4de7-ad49b0e87f6ef6c87fc2e700;Parent=9a9197af755a6419;Sampled=1",
        }
        h.update(headers or {})
        h = {k: v for k, v in h.items() if v is not None}  # None removes a default header
        self.answers[request_id] = queue.Queue()
        self.events.put((request_id, body, h))
        return request_id

    def answer(self, request_id, timeout=10.0):
        """The worker's first answer for request_id; None if none came in time."""
        try:
            return self.answers[request_id].get(timeout=timeout)
        except queue.Empty:
            return None

    def invoke(self, event, headers=None, timeout=10.0, deadline_in=5.0):
        return self.answer(self.send(event, headers, deadline_in), timeout)

    def init_error(self, timeout=10.0):
        try:
            return self.init_errors.get(timeout=timeout)
        except queue.Empty:
            return None

    def stop(self):
        self.closing = True
        self.server.shutdown()
        self.server.server_close()


class Worker:
    """One worker process, started as levee's spawner starts one; its
    stdout+stderr are collected (never blocking it) into .output."""

    def __init__(self, api, runtime, code, handler, env=None):
        if runtime == "nodejs":
            argv = ["node", os.path.join(RUNTIME_DIR, "nodejs", "bootstrap.js")]
        elif runtime == "python":
            argv = ["/usr/bin/python3", os.path.join(RUNTIME_DIR, "python", "bootstrap.py")]
        elif runtime == "provided":
            argv = [os.path.join(code, "bootstrap")]
        else:
            argv = list(runtime)
        e = {
            "AWS_LAMBDA_RUNTIME_API": api.endpoint,
            "_HANDLER": handler,
            "LAMBDA_TASK_ROOT": code,
            "LAMBDA_RUNTIME_DIR": RUNTIME_DIR,
            "AWS_LAMBDA_FUNCTION_NAME": "fixture",
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "256",
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
            "AWS_LAMBDA_LOG_GROUP_NAME": "/aws/lambda/fixture",
            "AWS_LAMBDA_LOG_STREAM_NAME": "2026/01/01/[$LATEST]0123456789abcdef",
            "AWS_REGION": "us-east-1",
            "AWS_DEFAULT_REGION": "us-east-1",
            "TZ": "UTC",
            "LANG": "en_US.UTF-8",
            "PATH": "/usr/local/bin:/usr/bin:/bin:/opt/bin",
            "HOME": "/tmp",
        }
        e.update(env or {})
        self.output = b""
        self.proc = subprocess.Popen(argv, cwd=code, env=e, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        while True:
            chunk = self.proc.stdout.read1(65536)
            if not chunk:
                return
            self.output += chunk

    @property
    def text(self):
        return self.output.decode("utf-8", "replace")

    def wait_output(self, needle, timeout=5.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if needle in self.text:
                return True
            time.sleep(0.02)
        return False

    def wait_exit(self, timeout=10.0):
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def kill(self):
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.wait(timeout=10)
        self.reader.join(timeout=5)


@pytest.fixture
def rtapi():
    """Factory: rtapi(**knobs) -> a started FakeRuntimeApi."""
    made = []

    def make(**kw):
        api = FakeRuntimeApi(**kw)
        made.append(api)
        return api
    yield make
    for api in made:
        api.stop()


@pytest.fixture
def worker():
    """Factory: worker(api, runtime, code, handler, env=None) -> Worker,
    killed (with its process group) at teardown."""
    made = []

    def make(*args, **kw):
        w = Worker(*args, **kw)
        made.append(w)
        return w
    yield make
    for w in made:
        w.kill()


def node_worker(rtapi, worker, handler, code=NODE_DIR, **knobs):
    api = rtapi(**knobs)
    return api, worker(api, "nodejs", code, handler)


def py_worker(rtapi, worker, handler, code=PY_DIR, **knobs):
    api = rtapi(**knobs)
    return api, worker(api, "python", code, handler)


# --- nodejs bootstrap ------------------------------------------------------

def test_node_async_handler_answers_its_value(rtapi, worker):
    api, w = node_worker(rtapi, worker, "index.hello")
    a = api.invoke({"rawPath": "/x"})
    assert a.kind == "response", w.text
    assert a.json() == {"statusCode": 200, "headers": {"content-type": "text/plain"}, "body": "hello from node /x"}
    assert a.headers.get("content-type") == "application/json"


def test_node_event_round_trips_unchanged(rtapi, worker):
    api, w = node_worker(rtapi, worker, "index.echo")
    event = {"s": "h\u00e9llo \u2603 \U0001F600", "n": [1, 2.5, None, True], "nested": {"a": {"b": []}}}
    assert api.invoke(event).json() == event
    assert api.invoke("just a string").json() == "just a string"
    assert api.invoke(None).json() is None


def test_node_sync_handler_return_value_is_the_result(rtapi, worker):
    api, w = node_worker(rtapi, worker, "index.sync")
    assert api.invoke({"value": 7}).json() == {"sync": True, "got": 7}


def test_node_string_result_is_json_encoded(rtapi, worker):
    api, w = node_worker(rtapi, worker, "index.str")
    assert api.invoke({}).body == b'"hello"'


def test_node_callback_waits_for_the_empty_event_loop(rtapi, worker):
    api, w = node_worker(rtapi, worker, "index.cb")
    a = api.invoke({})
    assert a.json() == {"cb": True, "waitsForEmptyLoop": True}
    # The handler's 100 ms timer ran before the answer went out.
    assert a.elapsed >= 0.09
    assert "cb timer fired" in w.text


def test_node_callback_without_waiting_answers_at_once(rtapi, worker):
    api, w = node_worker(rtapi, worker, "index.cbnowait")
    a = api.invoke({})
    assert a.json() == "answered before the timer"
    assert "cbnowait timer fired" not in w.text
    # The timer left running fires later, in the same process.
    assert w.wait_output("cbnowait timer fired")
    assert w.proc.poll() is None


def test_node_callback_error(rtapi, worker):
    api, w = node_worker(rtapi, worker, "index.cberr")
    a = api.invoke({})
    assert a.kind == "error"
    doc = a.json()
    assert doc["errorType"] == "TypeError"
    assert doc["errorMessage"] == "bad input from callback"
    assert a.headers["lambda-runtime-function-error-type"] == "TypeError"


def test_node_legacy_context_succeed(rtapi, worker):
    api, w = node_worker(rtapi, worker, "index.succeed")
    assert api.invoke({}).json() == {"legacy": "succeed"}


def test_node_thrown_error_is_reported_with_type_message_and_stack(rtapi, worker):
    api, w = node_worker(rtapi, worker, "index.err")
    a = api.invoke({})
    assert a.kind == "error"
    doc = a.json()
    assert doc["errorType"] == "CustomError"
    assert doc["errorMessage"] == "something broke"
    assert doc["stackTrace"][0] == "CustomError: something broke"
    assert any("index.js" in line for line in doc["stackTrace"])
    assert a.headers["lambda-runtime-function-error-type"] == "CustomError"
    # The worker is still good for the next invocation.
    assert api.invoke({}).kind == "error"
    assert w.proc.poll() is None
    assert "\tERROR\tInvoke Error" in w.text


def test_node_thrown_non_error_value(rtapi, worker):
    api, w = node_worker(rtapi, worker, "index.throwstring")
    doc = api.invoke({}).json()
    assert doc == {"errorType": "string", "errorMessage": "plain string", "stackTrace": []}


def test_node_event_that_is_not_json_is_an_invocation_error(rtapi, worker):
    api, w = node_worker(rtapi, worker, "index.echo")
    a = api.invoke(b"{not json")
    assert a.kind == "error"
    assert a.json()["errorType"] == "SyntaxError"
    assert api.invoke({"ok": 1}).json() == {"ok": 1}


def test_node_result_that_cannot_be_serialised(rtapi, worker):
    api, w = node_worker(rtapi, worker, "index.circular")
    a = api.invoke({})
    assert a.kind == "error"
    assert a.json()["errorType"] == "Runtime.MarshalError"
    assert w.proc.poll() is None


def test_node_process_exit_in_handler_ends_the_worker(rtapi, worker):
    api, w = node_worker(rtapi, worker, "index.crash")
    rid = api.send({})
    assert w.wait_exit() == 3
    assert api.answer(rid, timeout=0.2) is None


def test_node_uncaught_exception_fails_the_invocation_and_exits(rtapi, worker):
    api, w = node_worker(rtapi, worker, "index.uncaught")
    a = api.invoke({})
    assert a.kind == "error"
    assert a.json()["errorType"] == "RangeError"
    assert a.json()["errorMessage"] == "thrown from a timer"
    assert w.wait_exit() == 1


def test_node_context_fields(rtapi, worker):
    api, w = node_worker(rtapi, worker, "index.ctx")
    rid = api.send({}, headers={
        "Lambda-Runtime-Client-Context": json.dumps({"custom": {"k": "v"}, "env": {"platform": "test"}}),
        "Lambda-Runtime-Cognito-Identity": json.dumps({"cognitoIdentityId": "id-1", "cognitoIdentityPoolId": "pool-1"}),
    }, deadline_in=5.0)
    doc = api.answer(rid).json()
    assert doc["awsRequestId"] == rid
    assert doc["functionName"] == "fixture"
    assert doc["functionVersion"] == "$LATEST"
    assert doc["memoryLimitInMB"] == "256"
    assert doc["invokedFunctionArn"] == ARN
    assert doc["logGroupName"] == "/aws/lambda/fixture"
    assert doc["logStreamName"] == "2026/01/01/[$LATEST]0123456789abcdef"
    assert 3000 < doc["remaining"] <= 5000
    assert doc["callbackWaitsForEmptyEventLoop"] is True
    assert doc["clientContext"] == {"custom": {"k": "v"}, "env": {"platform": "test"}}
    assert doc["identity"] == {"cognitoIdentityId": "id-1", "cognitoIdentityPoolId": "pool-1"}
    assert doc["traceId"].startswith("Root=1-5bef4de7-")
    # Without the optional headers the fields are absent, and the trace id
    # of the previous invocation does not linger.
    rid = api.send({}, headers={"Lambda-Runtime-Trace-Id": None})
    doc = api.answer(rid).json()
    assert doc["clientContext"] is None and doc["identity"] is None
    assert doc["traceId"] is None


def test_node_console_lines_carry_time_request_id_and_level(rtapi, worker):
    api, w = node_worker(rtapi, worker, "index.log")
    rid = api.send({})
    assert api.answer(rid).json() == "logged"
    lines = [line.split("\t") for line in w.text.splitlines() if rid in line]
    levels = {parts[2]: parts[3] for parts in lines if len(parts) >= 4}
    assert levels == {"INFO": "info line { n: 1 }", "WARN": "warn line", "ERROR": "error line"}
    assert all(parts[0].endswith("Z") and parts[1] == rid for parts in lines)


def test_node_nested_handler_path(rtapi, worker):
    api, w = node_worker(rtapi, worker, "index.nested.deep.fn")
    assert api.invoke({}).json() == "nested handler"


def test_node_esm_module(rtapi, worker):
    api, w = node_worker(rtapi, worker, "index.handler", code=os.path.join(FUNCTIONS, "esm"))
    assert api.invoke({"rawPath": "/e"}).json() == {"statusCode": 200, "body": "hello from esm",
                                                     "module": "esm", "path": "/e"}


def test_node_esm_js_and_cjs_in_a_type_module_package(rtapi, worker):
    code = os.path.join(FUNCTIONS, "esm_pkg")
    api, w = node_worker(rtapi, worker, "app.handler", code=code)
    assert api.invoke({"x": 1}).json() == {"module": "esm .js", "got": {"x": 1}}
    api, w = node_worker(rtapi, worker, "legacy.handler", code=code)
    assert api.invoke({}).json() == {"module": "cjs"}


def test_node_runtime_unit_tests():
    """runtimes/nodejs/test: the Runtime API client's parser and connection
    handling (node's own test runner)."""
    r = subprocess.run(["node", "--test", os.path.join(RUNTIME_DIR, "nodejs", "test")], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    assert "# fail 0" in r.stdout


@pytest.mark.parametrize("code,handler,error_type,message", [
    (NODE_DIR, "nosuchmodule.handler", "Runtime.ImportModuleError", "Cannot find module 'nosuchmodule'"),
    (NODE_DIR, "index.nosuchfn", "Runtime.HandlerNotFound", "index.nosuchfn is undefined or not exported"),
    (NODE_DIR, "index.notAFunction", "Runtime.HandlerNotFound", "index.notAFunction is not a function"),
    (NODE_DIR, "../node/index.hello", "Runtime.MalformedHandlerName", "is not a valid handler name"),
    (NODE_DIR, "index", "Runtime.MalformedHandlerName", "Bad handler"),
    (os.path.join(FUNCTIONS, "node_initfail"), "index.handler", "Error", "init failed on purpose"),
    (os.path.join(FUNCTIONS, "node_initfail"), "syntax.handler", "Runtime.UserCodeSyntaxError", "SyntaxError"),
    (os.path.join(FUNCTIONS, "node_initfail"), "missing_dep.handler", "Runtime.ImportModuleError",
     "Cannot find module 'no-such-package-levee'"),
])
def test_node_init_failure_is_reported_and_the_worker_exits(rtapi, worker, code, handler, error_type, message):
    api, w = node_worker(rtapi, worker, handler, code=code)
    got = api.init_error()
    assert got is not None, w.text
    headers, body = got
    doc = json.loads(body)
    assert doc["errorType"] == error_type
    assert message in doc["errorMessage"]
    assert isinstance(doc["stackTrace"], list)
    assert headers["lambda-runtime-function-error-type"] == error_type
    assert w.wait_exit() == 1
    assert api.next_calls == 0


def test_node_warm_worker_serves_many_invocations_on_one_connection(rtapi, worker):
    api, w = node_worker(rtapi, worker, "index.echo")
    for i in range(300):
        assert api.invoke({"i": i}).json() == {"i": i}
    assert api.connections == 1
    assert w.proc.poll() is None


def test_node_large_event_and_result(rtapi, worker):
    api, w = node_worker(rtapi, worker, "index.echo")
    event = {"blob": "z" * (5 * 1024 * 1024)}
    a = api.invoke(event, timeout=30)
    assert a.kind == "response"
    assert a.json() == event


def test_node_chunked_answers_from_the_runtime_api(rtapi, worker):
    api, w = node_worker(rtapi, worker, "index.echo", chunked=True)
    for i in range(5):
        assert api.invoke({"i": i, "pad": "p" * (i * 1000)}).json() == {"i": i, "pad": "p" * (i * 1000)}


def test_node_reconnects_when_the_runtime_api_closes_the_connection(rtapi, worker):
    api, w = node_worker(rtapi, worker, "index.echo", close_after_next=True)
    for i in range(5):
        assert api.invoke({"i": i}).json() == {"i": i}
    assert api.connections >= 5


def test_node_refused_answer_is_not_fatal(rtapi, worker):
    # 410: the invocation already timed out; the worker just takes the next.
    api, w = node_worker(rtapi, worker, "index.echo")
    api.refuse = 410
    assert api.invoke({"first": 1}).json() == {"first": 1}
    assert api.invoke({"second": 2}).json() == {"second": 2}
    assert w.proc.poll() is None


def test_node_bad_runtime_api_variable(rtapi, worker):
    api = rtapi()
    w = worker(api, "nodejs", NODE_DIR, "index.hello", env={"AWS_LAMBDA_RUNTIME_API": "nonsense"})
    assert w.wait_exit() == 1
    assert "AWS_LAMBDA_RUNTIME_API" in w.text


# --- python bootstrap ------------------------------------------------------

def test_python_handler_answers_its_value(rtapi, worker):
    api, w = py_worker(rtapi, worker, "app.hello")
    a = api.invoke({"rawPath": "/p"})
    assert a.kind == "response", w.text
    assert a.json()["body"] == "hello from python /p"


def test_python_event_round_trips(rtapi, worker):
    api, w = py_worker(rtapi, worker, "app.echo")
    event = {"s": "h\u00e9llo \u2603", "n": [1, 2.5, None, True]}
    assert api.invoke(event).json() == event


def test_python_exception_is_reported(rtapi, worker):
    api, w = py_worker(rtapi, worker, "app.err")
    rid = api.send({})
    a = api.answer(rid)
    assert a.kind == "error"
    doc = a.json()
    assert doc["errorType"] == "ValueError"
    assert doc["errorMessage"] == "python handler failed"
    assert doc["requestId"] == rid
    assert any("app.py" in frame for frame in doc["stackTrace"])
    assert not any("bootstrap.py" in frame for frame in doc["stackTrace"])
    assert a.headers["lambda-runtime-function-error-type"] == "ValueError"
    assert api.invoke({}).kind == "error"
    assert w.proc.poll() is None


def test_python_context_fields(rtapi, worker):
    api, w = py_worker(rtapi, worker, "app.ctx")
    rid = api.send({}, headers={
        "Lambda-Runtime-Client-Context": json.dumps({"custom": {"k": "v"}, "env": {"e": 1}}),
        "Lambda-Runtime-Cognito-Identity": json.dumps({"cognitoIdentityId": "id-1"}),
    })
    doc = api.answer(rid).json()
    assert doc["aws_request_id"] == rid
    assert doc["function_name"] == "fixture"
    assert doc["function_version"] == "$LATEST"
    assert doc["memory_limit_in_mb"] == "256"
    assert doc["invoked_function_arn"] == ARN
    assert doc["log_group_name"] == "/aws/lambda/fixture"
    assert 3000 < doc["remaining"] <= 5000
    assert doc["client_context"] == {"custom": {"k": "v"}, "env": {"e": 1}}
    assert doc["identity_id"] == "id-1"
    assert doc["trace_id"].startswith("Root=1-")


def test_python_event_that_is_not_json(rtapi, worker):
    api, w = py_worker(rtapi, worker, "app.echo")
    a = api.invoke(b"\xff not json")
    assert a.kind == "error"
    assert a.json()["errorType"] == "Runtime.UnmarshalError"
    assert api.invoke([1]).json() == [1]


def test_python_result_marshalling(rtapi, worker):
    api, w = py_worker(rtapi, worker, "app.decimal_result")
    assert api.invoke({}).json() == {"price": 1.5}
    api2, w2 = py_worker(rtapi, worker, "app.not_json")
    a = api2.invoke({})
    assert a.kind == "error"
    assert a.json()["errorType"] == "Runtime.MarshalError"


def test_python_print_and_logging_reach_the_log(rtapi, worker):
    api, w = py_worker(rtapi, worker, "app.log")
    rid = api.send({})
    assert api.answer(rid).json() == "logged"
    assert w.wait_output("printed line")
    assert w.wait_output("\t%s\twarning through logging" % rid)
    assert "[WARNING]\t" in w.text


def test_python_warm_worker_keeps_state_and_connection(rtapi, worker):
    api, w = py_worker(rtapi, worker, "app.served_count")
    for i in range(1, 101):
        assert api.invoke({}).json()["served"] == i
    assert api.connections == 1


def test_python_chunked_and_closed_connections(rtapi, worker):
    api, w = py_worker(rtapi, worker, "app.echo", chunked=True, close_after_next=True)
    for i in range(5):
        assert api.invoke({"i": i}).json() == {"i": i}


@pytest.mark.parametrize("handler,error_type,message", [
    ("nosuchmodule.handler", "Runtime.ImportModuleError", "Unable to import module 'nosuchmodule'"),
    ("app.nosuchfn", "Runtime.HandlerNotFound", "Handler 'nosuchfn' missing on module 'app'"),
    ("app.not_callable", "Runtime.HandlerNotFound", "is not callable"),
    ("app", "Runtime.MalformedHandlerName", "Bad handler 'app'"),
    ("syntax.handler", "Runtime.UserCodeSyntaxError", "Syntax error in module 'syntax'"),
    ("initfail.handler", "RuntimeError", "python init failed on purpose"),
])
def test_python_init_failure_is_reported_and_the_worker_exits(rtapi, worker, handler, error_type, message):
    api, w = py_worker(rtapi, worker, handler)
    got = api.init_error()
    assert got is not None, w.text
    headers, body = got
    doc = json.loads(body)
    assert doc["errorType"] == error_type
    assert message in doc["errorMessage"]
    assert headers["lambda-runtime-function-error-type"] == error_type
    assert w.wait_exit() == 1
    assert api.next_calls == 0


# --- provided (bash) and aws-lambda-ric against the scripted API -----------

def test_provided_bash_bootstrap(rtapi, worker):
    api = rtapi()
    w = worker(api, "provided", os.path.join(FUNCTIONS, "provided", "echo"), "function.handler")
    assert api.invoke({"k": [1, 2]}).json() == {"echo": {"k": [1, 2]}, "runtime": "provided"}
    assert w.wait_output('bash handler got: {"k": [1, 2]}')


@needs_ric
def test_ric_against_the_scripted_api(rtapi, worker):
    api = rtapi()
    w = worker(api, [RIC_BIN, "index.echo"], os.path.join(FUNCTIONS, "ric"), "index.echo")
    a = api.invoke({"hello": "ric"}, timeout=20)
    assert a is not None, w.text
    assert a.json() == {"hello": "ric"}
    api2 = rtapi()
    w2 = worker(api2, [RIC_BIN, "index.err"], os.path.join(FUNCTIONS, "ric"), "index.err")
    a = api2.invoke({}, timeout=20)
    assert a is not None, w2.text
    assert a.kind == "error"
    assert a.json()["errorType"] == "Error" and a.json()["errorMessage"] == "ric handler failed"


@needs_ric
def test_ric_through_npx_against_the_scripted_api(rtapi, worker):
    api = rtapi()
    w = worker(api, NPX_RIC + ["index.handler"], os.path.join(FUNCTIONS, "ric"), "index.handler")
    a = api.invoke({"rawPath": "/npx"}, timeout=30)
    assert a is not None, w.text
    assert json.loads(a.json()["body"])["runtime"] == "aws-lambda-ric"


# ---------------------------------------------------------------------------
# Part 2: through levee
# ---------------------------------------------------------------------------

def fn_config(name, runtime, code, handler=None, extra="", route=None, command=None):
    """One function and its route, as YAML lines for levee(...)."""
    lines = ["  %s:" % name, "    runtime: %s" % runtime, "    code: %s" % code]
    if handler:
        lines.append("    handler: %s" % handler)
    if command:
        lines.append("    command: [%s]" % ", ".join(json.dumps(c) for c in command))
    for line in extra.strip("\n").splitlines():
        lines.append("    " + line.strip())
    return "\n".join(lines), "  - match: ANY %s\n    function: %s" % (route or "/" + name, name)


def functions_levee(levee, *fns, top=""):
    """Starts levee with the given (function, route) YAML pieces."""
    text = "functions:\n" + "\n".join(f for f, _ in fns) + "\nroutes:\n" + "\n".join(r for _, r in fns) + "\n"
    return levee(top + text)


def node_fn(name, handler, extra="concurrency: { max: 2, warm: 1 }", code=NODE_DIR):
    return fn_config(name, "nodejs", code, handler, extra)


def py_fn(name, handler, extra="concurrency: { max: 2, warm: 1 }"):
    return fn_config(name, "python", PY_DIR, handler, extra)


def test_levee_node_handlers_behind_routes(levee):
    lv = functions_levee(levee, node_fn("hello", "index.hello"), node_fn("plain", "index.plain"),
                         node_fn("str", "index.str"), node_fn("sync", "index.sync"), node_fn("cb", "index.cb"),
                         node_fn("esm", "index.handler", code=os.path.join(FUNCTIONS, "esm")))
    r = requests.get(lv.url + "/hello", timeout=20)
    assert r.status_code == 200, lv.stderr[-3000:]
    assert r.text == "hello from node /hello"
    assert r.headers["content-type"] == "text/plain"
    r = requests.get(lv.url + "/plain", timeout=20)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/json")
    assert r.json() == {"message": "hi"}
    r = requests.get(lv.url + "/str", timeout=20)
    assert r.status_code == 200 and r.text == "hello"
    r = requests.post(lv.url + "/sync", timeout=20)
    assert r.status_code == 200 and r.json() == {"sync": True, "got": None}
    r = requests.get(lv.url + "/cb", timeout=20)
    assert r.status_code == 200 and r.json() == {"cb": True, "waitsForEmptyLoop": True}
    r = requests.get(lv.url + "/esm", timeout=20)
    assert r.status_code == 200 and r.text == "hello from esm"


def test_levee_node_event_and_answer_mapping(levee):
    lv = functions_levee(levee, node_fn("echo", "index.echo"), node_fn("cookies", "index.cookies"),
                         node_fn("binary", "index.binary"))
    r = requests.post(lv.url + "/echo?a=1&a=2&b=x", data=b'{"k":1}', headers={"X-Thing": "v"}, timeout=20)
    assert r.status_code == 200, lv.stderr[-3000:]
    event = r.json()
    assert event["version"] == "2.0"
    assert event["rawPath"] == "/echo"
    assert event["rawQueryString"] == "a=1&a=2&b=x"
    assert event["queryStringParameters"] == {"a": "1,2", "b": "x"}
    assert event["headers"]["x-thing"] == "v"
    assert event["requestContext"]["http"]["method"] == "POST"
    assert event["body"] == '{"k":1}'
    r = requests.get(lv.url + "/cookies", timeout=20)
    assert r.status_code == 201
    assert r.headers["x-fixture"] == "cookies"
    assert sorted(r.raw.headers.getlist("Set-Cookie")) == ["a=1; Path=/", "b=2; HttpOnly"]
    r = requests.get(lv.url + "/binary", timeout=20)
    assert r.status_code == 200
    assert r.content == bytes([0, 1, 2, 253, 254, 255])


def test_levee_node_context_and_environment(levee):
    lv = functions_levee(levee,
                         node_fn("ctx", "index.ctx", "memory_mb: 256\ntimeout: 7s\nconcurrency: { max: 1, warm: 1 }"),
                         node_fn("env", "index.env", "env: { TABLE: orders }\nconcurrency: { max: 1, warm: 1 }"))
    doc = requests.get(lv.url + "/ctx", timeout=20).json()
    assert doc["functionName"] == "ctx"
    assert doc["memoryLimitInMB"] == "256"
    assert doc["functionVersion"] == "$LATEST"
    assert doc["invokedFunctionArn"].endswith(":function:ctx")
    assert doc["awsRequestId"]
    assert 5000 < doc["remaining"] <= 7000
    env = requests.get(lv.url + "/env", timeout=20).json()
    assert env["cwd"] == NODE_DIR
    assert env["LAMBDA_TASK_ROOT"] == NODE_DIR
    assert env["_HANDLER"] == "index.env"
    assert env["AWS_LAMBDA_FUNCTION_NAME"] == "env"
    assert env["AWS_LAMBDA_RUNTIME_API"].startswith("127.0.0.1:")
    assert env["TZ"] == "UTC"
    assert env["TABLE"] == "orders"
    assert env["AWS_REGION"]


def test_levee_node_errors_become_502_and_the_function_recovers(levee):
    lv = functions_levee(levee, node_fn("err", "index.err"), node_fn("crash", "index.crash"),
                         node_fn("circular", "index.circular"), node_fn("hello", "index.hello"))
    assert requests.get(lv.url + "/err", timeout=20).status_code == 502
    assert requests.get(lv.url + "/circular", timeout=20).status_code == 502
    for _ in range(2):  # a crashed worker is replaced
        assert requests.get(lv.url + "/crash", timeout=20).status_code == 502
    r = requests.get(lv.url + "/hello", timeout=20)
    assert r.status_code == 200 and r.text == "hello from node /hello"


def test_levee_node_timeout_is_504_and_a_new_worker_takes_over(levee):
    lv = functions_levee(levee, node_fn("hang", "index.hang", "timeout: 1s\nconcurrency: { max: 1, warm: 1 }"),
                         node_fn("sleep", "index.sleep", "timeout: 1s\nconcurrency: { max: 1, warm: 1 }"))
    t0 = time.monotonic()
    assert requests.get(lv.url + "/hang", timeout=20).status_code == 504
    assert time.monotonic() - t0 < 10
    r = requests.get(lv.url + "/sleep?ms=50", timeout=20)
    assert r.status_code == 200 and r.json() == {"slept": 50}
    assert requests.get(lv.url + "/sleep?ms=3000", timeout=20).status_code == 504
    assert requests.get(lv.url + "/sleep?ms=10", timeout=20).status_code == 200


def test_levee_node_big_output_does_not_block_the_worker(levee):
    lv = functions_levee(levee, node_fn("big", "index.big_output", "timeout: 20s\nconcurrency: { max: 1, warm: 1 }"))
    r = requests.get(lv.url + "/big?mib=8", timeout=60)
    assert r.status_code == 200, lv.stderr[-2000:]
    assert r.json() == {"printed_mib": 8}
    assert requests.get(lv.url + "/big?mib=0", timeout=20).status_code == 200


def test_levee_node_init_failure_is_a_clear_error(levee):
    api_port = free_port()
    initfail = os.path.join(FUNCTIONS, "node_initfail")
    lv = functions_levee(levee, node_fn("boom", "index.handler", "concurrency: { max: 1, warm: 0 }", code=initfail),
                         node_fn("nomod", "nosuch.handler", "concurrency: { max: 1, warm: 0 }"),
                         top="api: { listen: 127.0.0.1:%d }\n" % api_port)
    assert requests.get(lv.url + "/boom", timeout=20).status_code == 502
    assert requests.get(lv.url + "/nomod", timeout=20).status_code == 502
    # Through the Invoke API the caller sees what failed.
    r = requests.post("http://127.0.0.1:%d/2015-03-31/functions/boom/invocations" % api_port, data=b"{}", timeout=20)
    assert r.status_code == 200
    assert r.headers.get("X-Amz-Function-Error") == "Unhandled"
    doc = r.json()
    assert "init failed on purpose" in doc.get("errorMessage", "")
    r = requests.post("http://127.0.0.1:%d/2015-03-31/functions/nomod/invocations" % api_port, data=b"{}", timeout=20)
    assert r.json().get("errorType") == "Runtime.ImportModuleError"


def test_levee_python_handlers(levee):
    lv = functions_levee(levee, py_fn("pyhello", "app.hello"), py_fn("pyecho", "app.echo"),
                         py_fn("pyerr", "app.err"), py_fn("pyctx", "app.ctx"),
                         py_fn("pyenv", "app.env", "env: { TABLE: py }\nconcurrency: { max: 1, warm: 1 }"))
    r = requests.get(lv.url + "/pyhello", timeout=20)
    assert r.status_code == 200, lv.stderr[-3000:]
    assert r.text == "hello from python /pyhello"
    assert requests.post(lv.url + "/pyecho", data=b"x", timeout=20).json()["body"] == "x"
    assert requests.get(lv.url + "/pyerr", timeout=20).status_code == 502
    doc = requests.get(lv.url + "/pyctx", timeout=20).json()
    assert doc["function_name"] == "pyctx" and doc["memory_limit_in_mb"] == "128"
    env = requests.get(lv.url + "/pyenv", timeout=20).json()
    assert env["TABLE"] == "py" and env["cwd"] == PY_DIR and env["_HANDLER"] == "app.env"


def test_levee_python_sleep_and_timeout(levee):
    lv = functions_levee(levee, py_fn("pysleep", "app.sleep", "timeout: 1s\nconcurrency: { max: 1, warm: 1 }"))
    assert requests.get(lv.url + "/pysleep?ms=20", timeout=20).json() == {"slept": 20}
    assert requests.get(lv.url + "/pysleep?ms=3000", timeout=20).status_code == 504
    assert requests.get(lv.url + "/pysleep?ms=20", timeout=20).status_code == 200


def provided_fn(name, variant, extra="concurrency: { max: 1, warm: 0 }"):
    return fn_config(name, "provided", os.path.join(FUNCTIONS, "provided", variant), "function.handler", extra)


def test_levee_provided_bash_runtime(levee):
    lv = functions_levee(levee, provided_fn("bash", "echo", "concurrency: { max: 1, warm: 1 }"),
                         provided_fn("wrongid", "wrong_id"))
    r = requests.post(lv.url + "/bash?q=1", data=b"payload", timeout=20)
    assert r.status_code == 200, lv.stderr[-3000:]
    doc = r.json()
    assert doc["runtime"] == "provided"
    assert doc["echo"]["rawQueryString"] == "q=1" and doc["echo"]["body"] == "payload"
    # An answer for another request id is refused with 400; the right one counts.
    r = requests.get(lv.url + "/wrongid", timeout=20)
    assert r.status_code == 200
    assert r.json() == {"wrong_id_status": 400}


def test_levee_provided_misbehaving_runtimes(levee):
    lv = functions_levee(levee, provided_fn("badjson", "bad_json"), provided_fn("initexit", "init_exit"),
                         provided_fn("nonext", "no_next",
                                     "init_timeout: 1s\nqueue: { timeout: 5s }\nconcurrency: { max: 1, warm: 0 }"),
                         node_fn("hello", "index.hello"))
    assert requests.get(lv.url + "/badjson", timeout=20).status_code == 502
    assert requests.get(lv.url + "/initexit", timeout=20).status_code == 502
    t0 = time.monotonic()
    assert requests.get(lv.url + "/nonext", timeout=20).status_code in (502, 503, 504)
    assert time.monotonic() - t0 < 10
    # None of it touched the other function or the gateway.
    r = requests.get(lv.url + "/hello", timeout=20)
    assert r.status_code == 200 and r.text == "hello from node /hello"


@needs_ric
def test_levee_official_aws_lambda_ric(levee):
    ric = os.path.join(FUNCTIONS, "ric")
    lv = functions_levee(levee,
                         fn_config("ric", "command", ric, "index.handler", "concurrency: { max: 1, warm: 1 }",
                                   command=[RIC_BIN, "index.handler"]),
                         fn_config("ricerr", "command", ric, "index.err", "concurrency: { max: 1, warm: 0 }",
                                   command=[RIC_BIN, "index.err"]))
    r = requests.get(lv.url + "/ric", timeout=30)
    assert r.status_code == 200, lv.stderr[-3000:]
    doc = r.json()
    assert doc["runtime"] == "aws-lambda-ric" and doc["path"] == "/ric" and doc["requestId"]
    assert requests.get(lv.url + "/ricerr", timeout=30).status_code == 502


@needs_ric
def test_levee_aws_lambda_ric_through_npx(levee):
    ric = os.path.join(FUNCTIONS, "ric")
    lv = functions_levee(levee, fn_config("npx", "command", ric, "index.handler", "concurrency: { max: 1, warm: 0 }",
                                          command=NPX_RIC + ["index.handler"]))
    r = requests.get(lv.url + "/npx", timeout=60)
    assert r.status_code == 200, lv.stderr[-3000:]
    assert r.json()["runtime"] == "aws-lambda-ric"


def test_levee_invoke_api_with_boto3(levee):
    boto3 = pytest.importorskip("boto3")
    from botocore.config import Config
    api_port = free_port()
    lv = functions_levee(levee, node_fn("echo", "index.echo"), py_fn("pyerr", "app.err"),
                         top="api: { listen: 127.0.0.1:%d }\n" % api_port)
    client = boto3.client("lambda", endpoint_url="http://127.0.0.1:%d" % api_port, region_name="us-east-1",
                          aws_access_key_id="test", aws_secret_access_key="test",
                          config=Config(retries={"max_attempts": 1}, read_timeout=30))
    out = client.invoke(FunctionName="echo", Payload=json.dumps({"via": "boto3"}).encode())
    assert out["StatusCode"] == 200, lv.stderr[-3000:]
    assert json.loads(out["Payload"].read()) == {"via": "boto3"}
    out = client.invoke(FunctionName="pyerr", Payload=b"{}", LogType="Tail")
    assert out["FunctionError"] == "Unhandled"
    assert json.loads(out["Payload"].read())["errorType"] == "ValueError"
    assert "python handler failed" in base64.b64decode(out["LogResult"]).decode("utf-8", "replace")


SDK_INVOKE_JS = r"""
const { LambdaClient, InvokeCommand } = require('@aws-sdk/client-lambda');
const client = new LambdaClient({ endpoint: process.argv[1], region: 'us-east-1', maxAttempts: 1,
  credentials: { accessKeyId: 'test', secretAccessKey: 'test' } });
(async () => {
  const ok = await client.send(new InvokeCommand({ FunctionName: 'echo',
    Payload: Buffer.from(JSON.stringify({ via: 'aws-sdk-js' })) }));
  const bad = await client.send(new InvokeCommand({ FunctionName: 'err', Payload: Buffer.from('{}') }));
  console.log(JSON.stringify({ status: ok.StatusCode, payload: JSON.parse(Buffer.from(ok.Payload).toString()),
    functionError: bad.FunctionError, error: JSON.parse(Buffer.from(bad.Payload).toString()) }));
})().catch((e) => { console.error(e); process.exit(1); });
"""


@pytest.mark.skipif(not os.path.isdir(os.path.join(REPO, "tests", "node", "node_modules", "@aws-sdk", "client-lambda")),
                    reason="@aws-sdk/client-lambda is not installed: run scripts/install-deps.sh test")
def test_levee_invoke_api_with_aws_sdk_js(levee):
    api_port = free_port()
    functions_levee(levee, node_fn("echo", "index.echo"), node_fn("err", "index.err"),
                    top="api: { listen: 127.0.0.1:%d }\n" % api_port)
    r = subprocess.run(["node", "-e", SDK_INVOKE_JS, "http://127.0.0.1:%d" % api_port],
                       cwd=os.path.join(REPO, "tests", "node"), capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["status"] == 200
    assert out["payload"] == {"via": "aws-sdk-js"}
    assert out["functionError"] == "Unhandled"
    assert out["error"]["errorType"] == "CustomError"
