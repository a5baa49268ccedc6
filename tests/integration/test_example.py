"""test_example.py: the example app in examples/ runs as documented: its
origin (examples/origin.py) and levee with examples/levee.yaml, moved to
free ports."""

import os
import re
import subprocess
import sys
import time

import pytest
import requests

from conftest import REPO, run_levee, wait_port
from origins import free_port

EXAMPLES = os.path.join(REPO, "examples")


@pytest.fixture
def example_origin():
    port = free_port()
    proc = subprocess.Popen([sys.executable, os.path.join(EXAMPLES, "origin.py"), str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        assert wait_port(port, timeout=20, proc=proc), "examples/origin.py did not start"
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def example_config(origin_port):
    with open(os.path.join(EXAMPLES, "levee.yaml")) as f:
        text = f.read()
    text, n1 = re.subn(r"^listen: .*$", "listen: 127.0.0.1:%d" % free_port(), text, flags=re.M)
    text, n2 = re.subn(r"^admin: \{ listen: [^ ]+ \}", "admin: { listen: 127.0.0.1:%d }" % free_port(), text,
                       flags=re.M)
    text, n3 = re.subn(r"http://127\.0\.0\.1:3000", "http://127.0.0.1:%d" % origin_port, text)
    text, n4 = re.subn(r"code: \./functions/", "code: %s/functions/" % EXAMPLES, text)
    assert (n1, n2, n3, n4) == (1, 1, 1, 2), "examples/levee.yaml changed shape: update this test"
    return text


def example_files():
    with open(os.path.join(EXAMPLES, "qr.csv")) as f:
        return {"qr.csv": f.read()}


def test_example_config_checks():
    r = run_levee("check", "-c", os.path.join(EXAMPLES, "levee.yaml"))
    assert r.returncode == 0, r.stderr
    assert "ok" in r.stdout


def test_example_app(levee, example_origin):
    lv = levee(example_config(example_origin), files=example_files())

    r = requests.get(lv.url + "/hello", timeout=10)
    assert r.status_code == 200
    assert r.text == "hello from levee\n"
    assert r.headers["Content-Type"] == "text/plain"

    r = requests.get(lv.url + "/r/tv-ad-2026", allow_redirects=False, timeout=10)
    assert r.status_code == 302
    assert r.headers["Location"] == "https://shop.example.com/landing?src=tv"
    r = requests.get(lv.url + "/r/no-such-code", allow_redirects=False, timeout=10)
    assert r.status_code == 302
    assert r.headers["Location"] == "https://example.com/"

    r1 = requests.get(lv.url + "/events/list", timeout=10)
    assert r1.status_code == 200
    assert r1.headers["X-Cache"] == "MISS"
    assert r1.headers["Content-Type"] == "application/json"
    events = r1.json()["events"]
    assert events[0]["artist"] == "The Levees"
    time.sleep(0.05)
    r2 = requests.get(lv.url + "/events/list", timeout=10)
    assert r2.headers["X-Cache"] == "HIT"
    assert r2.json()["generated_at"] == r1.json()["generated_at"]

    r = requests.post(lv.url + "/checkout", json={"event": "the-levees-live", "tickets": 2}, timeout=10)
    assert r.status_code == 201, r.text
    order = r.json()
    assert order["event"] == "the-levees-live" and order["tickets"] == 2 and len(order["order"]) == 36
    r = requests.post(lv.url + "/checkout", data=b"2 tickets", timeout=10)
    assert r.status_code == 400
    assert "error" in r.json()

    st = requests.get(lv.admin_url + "/status", timeout=10).json()
    assert {rt["name"] for rt in st["routes"]} == {"GET /hello", "GET /r/{code}", "GET /events/*",
                                                    "POST /checkout"}
    checkout = st["functions"][0]
    assert (checkout["name"], checkout["runtime"], checkout["warm_target"]) == ("checkout", "nodejs", 2)

    # The scans above were captured into `clicks`; the consumer hands them
    # to the `scans` function, which logs the counts.
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and '"tv-ad-2026":1' not in lv.stderr:
        time.sleep(0.1)
    assert re.search(r'scans \{[^}]*"tv-ad-2026":1', lv.stderr), lv.stderr[-3000:]
    assert '"no-such-code":1' in lv.stderr


def test_example_with_curl(levee, example_origin):
    lv = levee(example_config(example_origin), files=example_files())
    out = subprocess.run(["curl", "-si", "--max-time", "10", lv.url + "/events/list", lv.url + "/events/list"],
                         capture_output=True, timeout=30).stdout.decode()
    assert out.count("HTTP/1.1 200 OK") == 2
    assert re.findall(r"(?im)^x-cache: (\w+)", out) == ["MISS", "HIT"]
    out = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code} %{redirect_url}",
                          "--max-time", "10", lv.url + "/r/flyer"], capture_output=True, timeout=30).stdout
    assert out == b"302 https://shop.example.com/landing?src=flyer"
