"""test_cli.py: the command line: version, check, serve's refusal of a bad
config, unknown commands, signals and draining."""

import signal
import subprocess
import threading
import time

import requests

from conftest import LEVEE_BIN, port_open, run_levee, sanitizer_problems
from origins import free_port

GOOD = """\
listen: 127.0.0.1:{port}
admin: {{ listen: off }}
threads: 1
routes:
  - match: GET /hello
    respond: {{ body: "hi\\n" }}
"""

# Several mistakes on known lines; every one must be reported.
BAD = """\
listen: 127.0.0.1:{port}
threads: two
bogus: 1
limits:
  max_body_bytes: lots
routes:
  - match: GET /a
    respond: {{ status: 999 }}
  - match: FETCH
    respond: {{ body: x }}
"""


def write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_version_prints_name_and_version():
    r = run_levee("version")
    assert r.returncode == 0
    assert r.stdout.startswith("levee ")
    assert r.stdout.split()[1][0].isdigit()


def test_check_good_config_exits_0(tmp_path):
    write(tmp_path, "good.yaml", GOOD.format(port=free_port()))
    r = run_levee("check", "-c", "good.yaml", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "good.yaml: ok" in r.stdout
    assert r.stderr == ""


def test_check_reports_every_problem_with_position(tmp_path):
    write(tmp_path, "bad.yaml", BAD.format(port=free_port()))
    r = run_levee("check", "-c", "bad.yaml", cwd=tmp_path)
    assert r.returncode == 1
    lines = r.stderr.splitlines()
    assert "bad.yaml:2:10: 'threads' must be 'auto' or a whole number from 1 to 256, got 'two'" in lines
    assert any(line.startswith("bad.yaml:3:1: unknown key 'bogus'") for line in lines), lines
    assert any(line.startswith("bad.yaml:5:19: 'max_body_bytes': invalid size 'lots'") for line in lines), lines
    assert "bad.yaml:8:24: 'status' must be a whole number from 100 to 599, got '999'" in lines
    assert any(line.startswith("bad.yaml:9:12: 'match' must be 'METHOD /path'") for line in lines), lines
    # Every line has the FILE:LINE:COL: shape, in file order.
    positions = []
    for line in lines:
        parts = line.split(":", 3)
        assert parts[0] == "bad.yaml" and parts[1].isdigit() and parts[2].isdigit(), line
        positions.append((int(parts[1]), int(parts[2])))
    assert positions == sorted(positions)
    assert len(lines) == 5


def test_check_unknown_key_lists_the_expected_ones(tmp_path):
    write(tmp_path, "c.yaml", "listen: 127.0.0.1:1\nroutes:\n  - match: GET /\n    respnd: { body: x }\n")
    r = run_levee("check", "-c", "c.yaml", cwd=tmp_path)
    assert r.returncode == 1
    lines = r.stderr.splitlines()
    assert ("c.yaml:4:5: unknown key 'respnd' in route; expected one of: "
            "match, name, respond, redirect, origin, function, cache, throttle, throttle_per_client, "
            "concurrency, queue, capture") in lines, lines
    assert "c.yaml:3:5: route has no target; add one of: respond, redirect, origin, function" in lines


def test_check_missing_redirect_table_is_named(tmp_path):
    write(tmp_path, "c.yaml", "listen: 127.0.0.1:1\nroutes:\n  - match: GET /r/{code}\n"
                              "    redirect: { table: ./nope.csv }\n")
    r = run_levee("check", "-c", "c.yaml", cwd=tmp_path)
    assert r.returncode == 1
    assert r.stderr.startswith("c.yaml:4:24: ")
    assert "nope.csv" in r.stderr
    assert "No such file" in r.stderr


def test_check_malformed_redirect_row_names_table_and_line(tmp_path):
    write(tmp_path, "t.csv", "code,url\nok,https://example.com/\nthis row has no comma\n")
    write(tmp_path, "c.yaml", "listen: 127.0.0.1:1\nroutes:\n  - match: GET /r/{code}\n"
                              "    redirect: { table: ./t.csv }\n")
    r = run_levee("check", "-c", "c.yaml", cwd=tmp_path)
    assert r.returncode == 1
    lines = r.stderr.splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("c.yaml:4:24: redirect table ")
    assert "t.csv" in lines[0] and "line 3" in lines[0]


def test_check_missing_config_file(tmp_path):
    r = run_levee("check", "-c", "absent.yaml", cwd=tmp_path)
    assert r.returncode == 1
    assert "absent.yaml" in r.stderr and "cannot open" in r.stderr


def test_serve_refuses_bad_config_with_the_same_messages(tmp_path):
    port = free_port()
    write(tmp_path, "bad.yaml", BAD.format(port=port))
    checked = run_levee("check", "-c", "bad.yaml", cwd=tmp_path)
    served = run_levee("serve", "-c", "bad.yaml", cwd=tmp_path)
    assert served.returncode == 1
    assert served.stderr == checked.stderr
    assert not port_open(port)
    assert not sanitizer_problems(served.stderr)


def test_unknown_command_exits_2():
    r = run_levee("frobnicate")
    assert r.returncode == 2
    assert "unknown command 'frobnicate'" in r.stderr
    assert "usage:" in r.stderr


def test_no_command_exits_2():
    r = run_levee()
    assert r.returncode == 2
    assert "usage:" in r.stderr


def test_unexpected_argument_exits_2(tmp_path):
    r = run_levee("check", "--frob", cwd=tmp_path)
    assert r.returncode == 2


def test_sigterm_exits_0(levee):
    lv = levee("routes:\n  - match: GET /hello\n    respond: { body: hi }\n")
    assert requests.get(lv.url + "/hello", timeout=10).status_code == 200
    assert lv.stop(signal.SIGTERM) == 0
    assert not port_open(lv.port)


def test_sigint_exits_0(levee):
    lv = levee("routes:\n  - match: GET /hello\n    respond: { body: hi }\n")
    assert requests.get(lv.url + "/hello", timeout=10).status_code == 200
    assert lv.stop(signal.SIGINT) == 0


def test_sigterm_with_idle_keepalive_connections_exits_promptly(levee):
    lv = levee("routes:\n  - match: GET /hello\n    respond: { body: hi }\n")
    sessions = [requests.Session() for _ in range(3)]
    for s in sessions:
        assert s.get(lv.url + "/hello", timeout=10).status_code == 200
    # Idle connections are closed at once: no wait for shutdown_timeout (10 s).
    start = time.monotonic()
    assert lv.stop() == 0
    assert time.monotonic() - start < 8
    for s in sessions:
        s.close()


def test_drain_lets_in_flight_request_finish(levee, origin):
    o = origin()
    o.set("/slow", status=200, body=b"slow answer\n", delay=1.0)
    lv = levee(f"""
        routes:
          - match: GET /slow
            origin: {o.url}
        """)
    result = {}

    def call():
        try:
            r = requests.get(lv.url + "/slow", timeout=20)
            result["status"], result["body"] = r.status_code, r.content
        except Exception as e:  # noqa: BLE001 - reported by the assert below
            result["error"] = repr(e)

    t = threading.Thread(target=call)
    t.start()
    deadline = time.monotonic() + 10
    while o.count("/slow") == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert o.count("/slow") == 1
    lv.send_signal(signal.SIGTERM)
    t.join(20)
    assert result.get("status") == 200, result
    assert result["body"] == b"slow answer\n"
    assert lv.stop() == 0


def test_drain_refuses_new_connections(levee, origin):
    o = origin()
    o.set("/slow", status=200, body=b"x", delay=1.0)
    lv = levee(f"""
        routes:
          - match: GET /slow
            origin: {o.url}
        """)
    t = threading.Thread(target=lambda: requests.get(lv.url + "/slow", timeout=20))
    t.start()
    deadline = time.monotonic() + 10
    while o.count("/slow") == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    lv.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    assert not port_open(lv.port)
    t.join(20)
    assert lv.stop() == 0


# Regression test for an ASan-only bug this suite found (fixed in abd7974): at
# shutdown, lv_upstream_close_loop closes only idle origin connections; a request still waiting on
# the origin when shutdown_timeout expires leaks its uconn (client.c open_connection), pending
# request, proxy_req and the client connection (LeakSanitizer)
def test_shutdown_timeout_bounds_the_drain(levee, raw_origin):
    from origins import SilentOrigin
    o = raw_origin(SilentOrigin)
    lv = levee(f"""
        shutdown_timeout: 1s
        origins:
          silent: {{ url: {o.url}, timeout: 60s }}
        routes:
          - match: GET /hang
            origin: silent
        """)
    t = threading.Thread(target=lambda: _swallow(lambda: requests.get(lv.url + "/hang", timeout=30)))
    t.start()
    time.sleep(0.5)
    start = time.monotonic()
    assert lv.stop() == 0
    assert time.monotonic() - start < 10
    t.join(30)


def _swallow(fn):
    try:
        fn()
    except requests.RequestException:
        pass


def test_serve_fails_when_port_taken(tmp_path):
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(1)
    port = s.getsockname()[1]
    try:
        write(tmp_path, "c.yaml", GOOD.format(port=port))
        r = subprocess.run([LEVEE_BIN, "serve", "-c", "c.yaml"], cwd=tmp_path, capture_output=True,
                           text=True, timeout=30)
        assert r.returncode != 0
        assert "cannot listen" in r.stderr
    finally:
        s.close()
