#!/usr/bin/python3
"""slowloris.py [N]: can N slowloris clients stop levee from serving others?

Starts levee (threads: 1, default limits: header_timeout 10s) on 127.0.0.1,
measures a normal client's latency with wrk for 5 s, then opens N connections
that each send half a request head and trickle one more byte every second,
measures the normal client again while they are all open, and prints both
alongside what levee's /metrics says about them. Bounded: about 40 s.
Writes the report to the path in $OUT (default: stdout only)."""
import os
import re
import resource
import socket
import subprocess
import sys
import tempfile
import time

N = int(sys.argv[1]) if len(sys.argv) > 1 else 10000
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LEVEE = os.environ.get("LEVEE", os.path.join(REPO, "levee"))
PORT, ADMIN = 9231, 9232


def wrk(seconds):
    out = subprocess.run(["taskset", "-c", "1", "wrk", "-t1", "-c16", "-d%ds" % seconds, "--latency",
                          "http://127.0.0.1:%d/hello" % PORT], capture_output=True, text=True, timeout=seconds + 30).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p99 = re.search(r"\s99%\s+(\S+)", out).group(1)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sockerr = re.search(r"Socket errors: (.*)", out)
    return rps, p99, int(errors.group(1)) if errors else 0, sockerr.group(1) if sockerr else "none"


def metric(name):
    import urllib.request
    text = urllib.request.urlopen("http://127.0.0.1:%d/metrics" % ADMIN, timeout=10).read().decode()
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return line
    return name + " ?"


def main():
    resource.setrlimit(resource.RLIMIT_NOFILE, (N + 4096, N + 4096))
    d = tempfile.mkdtemp()
    cfg = os.path.join(d, "l.yaml")
    with open(cfg, "w") as f:
        f.write("listen: 127.0.0.1:%d\nthreads: 1\nadmin: { listen: 127.0.0.1:%d }\n"
                "routes:\n  - match: GET /hello\n    respond: { body: hi }\n" % (PORT, ADMIN))
    lv = subprocess.Popen(["taskset", "-c", "0", LEVEE, "serve", "-c", cfg], stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.5)
        idle = wrk(5)
        slow = []
        start = time.monotonic()
        for _ in range(N):
            s = socket.socket()
            s.setblocking(True)
            s.connect(("127.0.0.1", PORT))
            s.send(b"GET /hello HTTP/1.1\r\nHost: t\r\nX-a: ")
            slow.append(s)
        opened = time.monotonic() - start
        for s in slow:  # one more byte: they are alive, just slow
            s.send(b"b")
        time.sleep(1)  # let that burst of 10k partial heads be read before measuring
        during = wrk(5)
        open_line = metric("levee_connections_open")
        for s in slow:
            s.close()
        lines = [
            "# slowloris: %d slow clients vs a normal one (levee threads: 1, header_timeout 10s)" % N,
            "",
            "| phase | req/s | p99 | non-2xx | socket errors |",
            "|---|---|---|---|---|",
            "| idle | %.0f | %s | %d | %s |" % idle,
            "| %d slowloris connections open | %.0f | %s | %d | %s |" % ((N,) + during),
            "",
            "Opening the %d slow connections took %.1f s; during the second run levee reported `%s`." % (N, opened, open_line),
            "Command: `bench/slowloris.py %d` (wrk -t1 -c16 -d5s on CPU 1, levee on CPU 0)." % N,
        ]
        report = "\n".join(lines) + "\n"
        print(report)
        if os.environ.get("OUT"):
            with open(os.environ["OUT"], "w") as f:
                f.write(report)
    finally:
        lv.terminate()
        lv.wait(20)


if __name__ == "__main__":
    main()
