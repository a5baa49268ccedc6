"""test_functions.py: functions behind HTTP routes, against the real binary:
worker pools, the Lambda Runtime API as runtimes see it, and what a caller
sees when a function misbehaves.

Every function here is runtime `provided`, with a bootstrap written into the
test's directory: a python3 runtime (http.client, as a custom runtime is
written) whose behaviour the request path picks (/f/echo, /f/error,
/f/sleep, /f/exit, /f/print, /f/badjson, /f/probe...), a bash + curl one as
in the AWS custom-runtime tutorial, and ones that hang before /next or exit
at init. Results come back as API Gateway would map them (the gateway's
part); these tests check the behaviour a user observes: statuses, that one
function's trouble never reaches another, the log, /metrics and /status."""

import json
import os
import re
import socket
import threading
import time

import requests

from prometheus_check import parse_prometheus, sample_value

PY_BOOTSTRAP = r'''#!/usr/bin/python3
import http.client, json, os, socket, sys, time
host, port = os.environ['AWS_LAMBDA_RUNTIME_API'].split(':')
port = int(port)
API = '/2018-06-01/runtime'
mode = os.environ.get('INIT_MODE', '')
if mode == 'exit':
    print('init: cannot load the handler', flush=True)
    sys.exit(2)
if mode == 'hang':
    time.sleep(3600)

def call(method, path, body=None, headers=None):
    c = http.client.HTTPConnection(host, port, timeout=10)
    c.request(method, path, body=body, headers=headers or {})
    r = c.getresponse()
    r.read()
    c.close()
    return r.status

def raw(data):
    s = socket.create_connection((host, port), timeout=10)
    s.sendall(data)
    line = s.makefile('rb').readline()
    s.close()
    return int(line.split()[1]) if line else 0

def reply(body, status=200):
    return json.dumps({'statusCode': status, 'headers': {'content-type': 'application/json'},
                       'body': json.dumps(body)})

conn = http.client.HTTPConnection(host, port)
while True:
    conn.request('GET', API + '/invocation/next')
    r = conn.getresponse()
    event = json.loads(r.read())
    rid = r.getheader('Lambda-Runtime-Aws-Request-Id')
    base = API + '/invocation/' + rid
    op = event.get('rawPath', '/f/echo').split('/')[-1]
    query = event.get('queryStringParameters') or {}
    out = None
    if op == 'echo':
        out = reply({'pid': os.getpid(), 'path': event.get('rawPath'),
                     'deadline': r.getheader('Lambda-Runtime-Deadline-Ms'),
                     'arn': r.getheader('Lambda-Runtime-Invoked-Function-Arn'),
                     'function_name': os.environ.get('AWS_LAMBDA_FUNCTION_NAME'),
                     'init_type': os.environ.get('AWS_LAMBDA_INITIALIZATION_TYPE')})
    elif op == 'error':
        conn.request('POST', base + '/error',
                     json.dumps({'errorMessage': 'something broke', 'errorType': 'HandlerError'}),
                     {'Lambda-Runtime-Function-Error-Type': 'Unhandled'})
        conn.getresponse().read()
        continue
    elif op == 'sleep':
        time.sleep(float(query.get('s', '1')))
        out = reply({'slept': query.get('s')})
    elif op == 'exit':
        print('crashing on purpose', flush=True)
        os._exit(9)
    elif op == 'hang_after':
        conn.request('POST', base + '/response', reply({'pid': os.getpid()}))
        conn.getresponse().read()
        time.sleep(3600)  # answered, and never comes back to /next
    elif op == 'print':
        block = ('levee-output-line ' + 'x' * 80 + '\n') * 10000
        for i in range(int(query.get('mib', '1'))):
            sys.stdout.write(block)
        sys.stdout.flush()
        out = reply({'printed': query.get('mib')})
    elif op == 'badjson':
        out = '{"statusCode": 200, "body": '
    elif op == 'probe':
        report = {
            'bogus_id': call('POST', API + '/invocation/bogus/response', '{}'),
            'post_next': call('POST', API + '/invocation/next', ''),
            'unknown': call('GET', API + '/unknown'),
            'init_error_late': call('POST', API + '/init/error', '{}'),
            'garbage': raw(b'\x00\x01garbage\r\n\r\n'),
            'huge_header': raw(b'GET ' + API.encode() + b'/invocation/next HTTP/1.1\r\nX: ' + b'a' * 70000 + b'\r\n\r\n'),
        }
        out = reply(report)
    elif op == 'over_listener_limit':
        try:
            status = call('POST', base + '/response', 'x' * (17 * 1024 * 1024))
        except OSError as e:
            status = type(e).__name__  # the listener may close before the whole body is sent
        print('over_listener_limit answered %s' % status, flush=True)
        continue
    elif op == 'too_large':
        status = call('POST', base + '/response', 'x' * (6 * 1024 * 1024 + 200))
        print('too_large answered %d' % status, flush=True)
        continue
    elif op == 'twice':
        first = call('POST', base + '/response', reply({'first': True}))
        second = call('POST', base + '/response', reply({'second': True}))
        print('twice answered %d then %d' % (first, second), flush=True)
        continue
    conn.request('POST', base + '/response', out)
    conn.getresponse().read()
'''

BASH_BOOTSTRAP = r'''#!/bin/bash
set -euo pipefail
while true; do
  HEADERS="$(mktemp)"
  EVENT_DATA=$(curl -sS -LD "$HEADERS" "http://${AWS_LAMBDA_RUNTIME_API}/2018-06-01/runtime/invocation/next")
  REQUEST_ID=$(grep -Fi Lambda-Runtime-Aws-Request-Id "$HEADERS" | tr -d '[:space:]' | cut -d: -f2)
  rm -f "$HEADERS"
  echo "handling $REQUEST_ID"
  RESPONSE='{"statusCode":200,"body":"hello from bash"}'
  curl -sS "http://${AWS_LAMBDA_RUNTIME_API}/2018-06-01/runtime/invocation/$REQUEST_ID/response" -d "$RESPONSE" >/dev/null
done
'''


def make_code(tmp_path, name, bootstrap=PY_BOOTSTRAP):
    d = tmp_path / name
    d.mkdir()
    b = d / "bootstrap"
    b.write_text(bootstrap)
    b.chmod(0o755)
    return str(d)


def function_yaml(name, code, extra=""):
    return f"""
  {name}:
    runtime: provided
    code: {code}
{extra}"""


def config(functions, routes):
    return "functions:" + "".join(functions) + "\nroutes:\n" + "".join(
        f"  - match: ANY /{fn}/*\n    function: {fn}\n" for fn in routes)


def get(lv, path, timeout=15):
    return requests.get(lv.url + path, timeout=timeout)


def status_functions(lv):
    r = requests.get(lv.admin_url + "/status", timeout=10)
    assert r.status_code == 200
    return {f["name"]: f for f in r.json()["functions"]}


def wait_for(pred, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.05)
    return pred()


def test_echo_and_runtime_headers(levee, tmp_path):
    code = make_code(tmp_path, "f")
    lv = levee(config([function_yaml("f", code, "    concurrency: { max: 2, warm: 1 }\n")], ["f"]))
    assert wait_for(lambda: status_functions(lv)["f"]["idle"] == 1)
    r = get(lv, "/f/echo")
    assert r.status_code == 200
    body = r.json()
    assert body["path"] == "/f/echo"
    assert body["function_name"] == "f"
    assert body["arn"].startswith("arn:aws:lambda:") and body["arn"].endswith(":000000000000:function:f")
    assert int(body["deadline"]) > time.time() * 1000
    assert body["init_type"] == "provisioned-concurrency"
    # The same warm worker serves the next calls.
    pids = {get(lv, "/f/echo").json()["pid"] for _ in range(5)}
    assert pids == {body["pid"]}


def test_bash_tutorial_bootstrap(levee, tmp_path):
    code = make_code(tmp_path, "sh", BASH_BOOTSTRAP)
    lv = levee(config([function_yaml("sh", code)], ["sh"]))
    for _ in range(3):
        r = get(lv, "/sh/x")
        assert r.status_code == 200
        assert r.text == "hello from bash"
    assert re.search(r"\[fn\] sh [0-9a-f-]{36} handling [0-9a-f-]{36}", lv.stderr)


def test_function_error_is_502(levee, tmp_path):
    code = make_code(tmp_path, "f")
    lv = levee(config([function_yaml("f", code)], ["f"]))
    r = get(lv, "/f/error")
    assert r.status_code == 502
    # The worker survives an error.
    assert get(lv, "/f/echo").status_code == 200


def test_timeout_is_504_and_worker_replaced(levee, tmp_path):
    code = make_code(tmp_path, "f")
    lv = levee(config([function_yaml("f", code, "    timeout: 1s\n    concurrency: { max: 2, warm: 1 }\n")],
                      ["f"]))
    assert wait_for(lambda: status_functions(lv)["f"]["idle"] == 1)
    pid = get(lv, "/f/echo").json()["pid"]
    t0 = time.monotonic()
    r = get(lv, "/f/sleep?s=30")
    assert r.status_code == 504
    assert time.monotonic() - t0 < 3
    r = get(lv, "/f/echo")
    assert r.status_code == 200
    assert r.json()["pid"] != pid
    assert not os.path.exists("/proc/%d" % pid) or open("/proc/%d/stat" % pid).read().split()[2] == "Z"
    assert "timed out after 1.00 s" in lv.stderr


def test_crash_is_502_then_next_request_works(levee, tmp_path):
    code = make_code(tmp_path, "f")
    lv = levee(config([function_yaml("f", code, "    concurrency: { max: 2, warm: 1 }\n")], ["f"]))
    r = get(lv, "/f/exit")
    assert r.status_code == 502
    assert "exit status 9" in lv.stderr
    assert "crashing on purpose" in lv.stderr  # its output was drained
    r = get(lv, "/f/echo")
    assert r.status_code == 200


def test_worker_that_never_comes_back_after_answering_is_replaced(levee, tmp_path):
    code = make_code(tmp_path, "f")
    lv = levee(config([function_yaml("f", code, "    timeout: 1s\n    concurrency: { max: 1, warm: 1 }\n"
                                                "    queue: { timeout: 5s }\n")],
                      ["f"]))
    assert wait_for(lambda: status_functions(lv)["f"]["idle"] == 1)
    r = get(lv, "/f/hang_after")
    assert r.status_code == 200
    first = r.json()["pid"]
    # Its only slot is held until the invocation's deadline; then the worker
    # is killed and a new one takes the next request.
    r = get(lv, "/f/echo")
    assert r.status_code == 200, r.text
    assert r.json()["pid"] != first
    assert "did not ask for its next invocation in time" in lv.stderr


def test_invalid_json_result_is_502(levee, tmp_path):
    code = make_code(tmp_path, "f")
    lv = levee(config([function_yaml("f", code)], ["f"]))
    assert get(lv, "/f/badjson").status_code == 502
    assert get(lv, "/f/echo").status_code == 200


def test_init_exit_fails_fast_with_clear_error(levee, tmp_path):
    code = make_code(tmp_path, "f")
    lv = levee(config([function_yaml("f", code, "    env: { INIT_MODE: exit }\n")], ["f"]))
    t0 = time.monotonic()
    r = get(lv, "/f/echo")
    assert r.status_code == 502
    assert time.monotonic() - t0 < 5
    assert "failed to initialise (Runtime.ExitError: Runtime exited with error: exit status 2)" in lv.stderr
    assert "init: cannot load the handler" in lv.stderr
    # While it backs off, calls fail at once instead of piling up.
    t0 = time.monotonic()
    assert get(lv, "/f/echo").status_code == 502
    assert time.monotonic() - t0 < 0.5


def test_never_calls_next_hits_init_timeout(levee, tmp_path):
    code = make_code(tmp_path, "f")
    lv = levee(config([function_yaml("f", code, "    init_timeout: 1s\n    env: { INIT_MODE: hang }\n")], ["f"]))
    t0 = time.monotonic()
    r = get(lv, "/f/echo")
    took = time.monotonic() - t0
    assert r.status_code == 502
    assert 0.8 < took < 4
    assert "did not ask for work within init_timeout" in lv.stderr
    assert "Sandbox.Timeout" in lv.stderr


def test_megabytes_of_output(levee, tmp_path):
    code = make_code(tmp_path, "f")
    lv = levee(config([function_yaml("f", code, "    timeout: 30s\n")], ["f"]))
    r = get(lv, "/f/print?mib=8", timeout=30)
    assert r.status_code == 200
    assert r.json() == {"printed": "8"}
    assert get(lv, "/f/echo").status_code == 200
    assert wait_for(lambda: lv.stderr.count("levee-output-line") >= 80000, 15)


def test_functions_are_isolated(levee, tmp_path):
    slow = make_code(tmp_path, "slow")
    fast = make_code(tmp_path, "fast")
    loud = make_code(tmp_path, "loud")
    hang = make_code(tmp_path, "hang")
    lv = levee(config([
        function_yaml("slow", slow, "    timeout: 20s\n    concurrency: { max: 4, warm: 4 }\n"),
        function_yaml("fast", fast, "    concurrency: { max: 2, warm: 1 }\n"),
        function_yaml("loud", loud, "    timeout: 30s\n"),
        function_yaml("hang", hang, "    init_timeout: 5s\n    env: { INIT_MODE: hang }\n"),
    ], ["slow", "fast", "loud", "hang"]))
    assert wait_for(lambda: status_functions(lv)["slow"]["idle"] == 4)
    results = []

    def call(path, timeout=30):
        try:
            results.append(get(lv, path, timeout=timeout).status_code)
        except requests.RequestException as e:
            results.append(str(e))

    threads = [threading.Thread(target=call, args=("/slow/sleep?s=4",)) for _ in range(4)]
    threads.append(threading.Thread(target=call, args=("/loud/print?mib=20",)))
    threads.append(threading.Thread(target=call, args=("/hang/echo",)))
    for t in threads:
        t.start()
    time.sleep(0.3)
    worst = 0.0
    for _ in range(30):
        t0 = time.monotonic()
        r = get(lv, "/fast/echo")
        worst = max(worst, time.monotonic() - t0)
        assert r.status_code == 200
    for t in threads:
        t.join(40)
    assert worst < 0.5, worst
    assert results.count(200) == 5, results   # 4 slow + loud
    assert 502 in results                      # hang: init timeout


def test_runtime_api_status_codes(levee, tmp_path):
    code = make_code(tmp_path, "f")
    lv = levee(config([function_yaml("f", code, "    timeout: 60s\n    concurrency: { max: 1, warm: 1 }\n")],
                      ["f"]))
    r = get(lv, "/f/probe")
    assert r.status_code == 200
    assert r.json() == {"bogus_id": 400, "post_next": 405, "unknown": 404, "init_error_late": 403,
                        "garbage": 400, "huge_header": 431}
    r = get(lv, "/f/too_large")
    assert r.status_code == 502
    assert wait_for(lambda: "too_large answered 413" in lv.stderr, 5)
    # Over even the listener's body limit (16 MiB): the listener answers 413
    # itself, and the invocation still fails at once, not at its deadline
    # (60 s here, past the client's 20 s).
    r = get(lv, "/f/over_listener_limit", timeout=20)
    assert r.status_code == 502
    assert wait_for(lambda: "over_listener_limit answered" in lv.stderr, 5)
    # The same through the Invoke API shows why it failed.
    r = requests.post(lv.api_url + "/2015-03-31/functions/f/invocations",
                      data=json.dumps({"rawPath": "/f/over_listener_limit"}), timeout=20)
    assert r.status_code == 200 and r.headers.get("X-Amz-Function-Error") == "Unhandled"
    assert r.json()["errorType"] == "Function.ResponseSizeTooLarge"
    r = get(lv, "/f/twice")
    assert r.status_code == 200
    assert r.json() == {"first": True}
    assert wait_for(lambda: "twice answered 202 then 403" in lv.stderr, 5)
    # None of it cost the worker its life.
    st = status_functions(lv)["f"]
    assert st["idle"] + st["busy"] == 1
    assert get(lv, "/f/echo").status_code == 200


def test_queue_and_max(levee, tmp_path):
    code = make_code(tmp_path, "f")
    lv = levee(config([function_yaml("f", code, "    timeout: 10s\n    concurrency: { max: 2 }\n"
                                                "    queue: { max: 2, timeout: 500ms }\n")], ["f"]))
    results = []

    def call():
        t0 = time.monotonic()
        r = get(lv, "/f/sleep?s=1.5", timeout=20)
        results.append((r.status_code, r.headers.get("Retry-After"), time.monotonic() - t0))

    threads = [threading.Thread(target=call) for _ in range(6)]
    for t in threads:
        t.start()
        time.sleep(0.02)
    most = 0
    for _ in range(40):
        st = status_functions(lv)["f"]
        most = max(most, st["idle"] + st["busy"] + st["starting"])
        time.sleep(0.05)
    for t in threads:
        t.join(30)
    assert most <= 2
    statuses = sorted(s for s, _, _ in results)
    assert statuses.count(200) == 2, results
    assert statuses.count(429) == 4, results
    for s, retry_after, _ in results:
        if s == 429:
            assert retry_after is not None and int(retry_after) >= 1


def test_scale_to_zero_after_idle_timeout(levee, tmp_path):
    code = make_code(tmp_path, "f")
    lv = levee(config([function_yaml("f", code, "    concurrency: { max: 3, warm: 0 }\n"
                                                "    idle_timeout: 1s\n")], ["f"]))
    st = status_functions(lv)["f"]
    assert st["idle"] + st["busy"] + st["starting"] == 0  # nothing runs before the first request
    results = []
    threads = [threading.Thread(target=lambda: results.append(get(lv, "/f/sleep?s=0.5").status_code))
               for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert results == [200, 200, 200]
    st = status_functions(lv)["f"]
    assert st["idle"] + st["busy"] + st["starting"] >= 2  # started on demand, up to max
    # Past idle_timeout every worker above warm (0) stops: back to zero.
    assert wait_for(lambda: status_functions(lv)["f"]["idle"] == 0, timeout=10)
    st = status_functions(lv)["f"]
    assert st["busy"] == 0 and st["starting"] == 0
    # And it comes back for the next request.
    assert get(lv, "/f/echo").status_code == 200


def test_no_queue_still_scales_up_from_zero(levee, tmp_path):
    # queue max 0: nothing may wait for a worker, so the first invocation of
    # a function at zero is refused; it still starts a worker for the next.
    code = make_code(tmp_path, "f")
    lv = levee(config([function_yaml("f", code, "    concurrency: { max: 1, warm: 0 }\n"
                                                "    queue: { max: 0 }\n")], ["f"]))
    r = get(lv, "/f/echo")
    assert r.status_code == 429 and r.headers.get("Retry-After")
    assert wait_for(lambda: status_functions(lv)["f"]["idle"] == 1)
    assert get(lv, "/f/echo").status_code == 200


def test_metrics_and_status(levee, tmp_path):
    code = make_code(tmp_path, "f")
    now = time.time()

    def iso(t):
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))

    sched = (f"    concurrency: {{ max: 4, warm: 0 }}\n"
             f"    schedule:\n"
             f"      - {{ at: \"{iso(now - 3600)}\", warm: 2, until: \"{iso(now + 3600)}\" }}\n")
    lv = levee(config([function_yaml("f", code, sched),
                       function_yaml("g", make_code(tmp_path, "g"), "    timeout: 1s\n")], ["f", "g"]))
    assert wait_for(lambda: status_functions(lv)["f"]["idle"] == 2)
    st = status_functions(lv)
    assert st["f"]["warm_target"] == 2 and st["f"]["configured_warm"] == 0
    assert st["g"]["warm_target"] == 0
    assert get(lv, "/f/echo").status_code == 200
    assert get(lv, "/f/error").status_code == 502
    assert get(lv, "/g/sleep?s=5").status_code == 504
    assert get(lv, "/g/echo").status_code == 200  # a cold start in the request path
    text = requests.get(lv.admin_url + "/metrics", timeout=10).text
    fams = parse_prometheus(text)
    assert sample_value(fams, "levee_function_invocations_total", function="f") == 2
    assert sample_value(fams, "levee_function_errors_total", function="f", type="error") == 1
    assert sample_value(fams, "levee_function_errors_total", function="g", type="timeout") == 1
    assert sample_value(fams, "levee_function_worker_starts_total", function="f", reason="warm") == 2
    assert sample_value(fams, "levee_function_worker_starts_total", function="g", reason="demand") >= 1
    assert sample_value(fams, "levee_function_cold_start_invocations_total", function="g") >= 1
    assert sample_value(fams, "levee_function_cold_start_invocations_total", function="f") == 0
    assert sample_value(fams, "levee_function_warm_target", function="f") == 2
    assert sample_value(fams, "levee_function_workers", function="f", state="idle") == 2
    assert sample_value(fams, "levee_function_queue_depth", function="f") == 0
    assert sample_value(fams, "levee_function_cold_start_seconds_count", function="f") == 2
    for fam in ("levee_function_throttles_total", "levee_function_spawn_seconds_count",
                "levee_function_duration_seconds_count", "levee_function_queue_wait_seconds_count"):
        assert sample_value(fams, fam, function="f") is not None, fam


def test_shutdown_with_running_invocation(levee, tmp_path):
    code = make_code(tmp_path, "f")
    lv = levee(config([function_yaml("f", code, "    timeout: 60s\n    concurrency: { max: 2, warm: 1 }\n")],
                      ["f"]) + "shutdown_timeout: 1s\n")
    assert wait_for(lambda: status_functions(lv)["f"]["idle"] == 1)
    results = []

    def call():
        try:
            results.append(get(lv, "/f/sleep?s=30", timeout=20).status_code)
        except requests.RequestException as e:
            results.append(type(e).__name__)

    t = threading.Thread(target=call)
    t.start()
    time.sleep(0.5)
    t0 = time.monotonic()
    assert lv.stop() == 0
    assert time.monotonic() - t0 < 10
    t.join(20)
    assert len(results) == 1
    # No worker outlives levee.
    out = os.popen("ps -eo pid,args").read()
    assert code not in out
