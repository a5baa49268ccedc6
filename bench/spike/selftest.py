#!/usr/bin/python3
"""selftest.py: proves spike_load classifies every kind of answer and failure
the spike test's checks rely on (a "zero resets" verdict means nothing if a
reset would not have been seen).

    python3 bench/spike/selftest.py PATH/TO/spike_load

Starts a misbehaving HTTP server on 127.0.0.1 (an ephemeral port) whose
answer depends on the path, runs spike_load with one route per behaviour
(10 requests each), and compares the outcome of every request in its CSV
with the expected one. Then runs spike_load against a port nobody listens on
(every request refused) and against a slow origin to check its latency
figure. Prints "N passed, N failed" and exits non-zero on any failure.
Bounded: the server's sockets time out after 5 s, every run has a deadline."""
import csv
import os
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

OK_BODY = b"hello spike\n"

# path -> (what the server does, the outcome spike_load must report)
BEHAVIOURS = {
    "/ok": "ok",
    "/chunked": "ok",
    "/until-close": "ok",
    "/interim": "ok",
    "/split": "ok",
    "/http10": "ok",
    "/throttled": "429",
    "/throttled-bare": "429-no-retry-after",
    "/shed": "503",
    "/shed-bare": "503-no-retry-after",
    "/bad-gateway": "5xx",
    "/not-found": "other-status",
    "/reset": "reset",
    "/eof": "closed",
    "/truncated": "closed",
    "/garbage": "bad-response",
    "/extra": "bad-response",
    "/hang": "timeout",
}


def answer(sock, path):
    """Answers one request; returns False when the connection must end."""
    def send(data):
        sock.sendall(data)

    if path == "/ok":
        send(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(OK_BODY), OK_BODY))
    elif path == "/chunked":
        send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;x=y\r\nhello\r\n7\r\n spike\n\r\n0\r\nX-T: 1\r\n\r\n")
    elif path == "/until-close":
        send(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n" + OK_BODY)
        return False
    elif path == "/interim":
        send(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
    elif path == "/split":
        msg = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(OK_BODY), OK_BODY)
        for i in range(0, len(msg), 7):
            send(msg[i:i + 7])
            time.sleep(0.002)
    elif path == "/http10":
        send(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok")
        return False
    elif path == "/throttled":
        send(b"HTTP/1.1 429 Too Many Requests\r\nRetry-After: 1\r\nContent-Length: 0\r\n\r\n")
    elif path == "/throttled-bare":
        send(b"HTTP/1.1 429 Too Many Requests\r\nContent-Length: 0\r\n\r\n")
    elif path == "/shed":
        send(b"HTTP/1.1 503 Service Unavailable\r\nretry-after: 2\r\nContent-Length: 4\r\n\r\nbusy")
    elif path == "/shed-bare":
        send(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\n\r\nbusy")
    elif path == "/bad-gateway":
        send(b"HTTP/1.1 502 Bad Gateway\r\nRetry-After: 1\r\nContent-Length: 0\r\n\r\n")
    elif path == "/not-found":
        send(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
    elif path == "/reset":
        # SO_LINGER with a zero timeout: close() sends RST instead of FIN.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        return False
    elif path == "/eof":
        return False
    elif path == "/truncated":
        send(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly part")
        return False
    elif path == "/garbage":
        send(b"HELLO THERE\r\n\r\n")
    elif path == "/extra":
        send(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\n\r\n")
    elif path == "/hang":
        time.sleep(3)
        return False
    elif path.startswith("/slow"):
        time.sleep(0.05)
        send(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
    else:
        send(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
        return False
    return True


def serve_connection(sock):
    sock.settimeout(5)
    buf = b""
    try:
        while True:
            while b"\r\n\r\n" not in buf:
                data = sock.recv(65536)
                if not data:
                    return
                buf += data
            head, buf = buf.split(b"\r\n\r\n", 1)
            path = head.split(b"\r\n")[0].split(b" ")[1].decode()
            if not answer(sock, path):
                return
    except OSError:
        pass
    finally:
        sock.close()


def start_server():
    lsock = socket.socket()
    lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(512)

    def accept_loop():
        while True:
            conn, _ = lsock.accept()
            threading.Thread(target=serve_connection, args=(conn,), daemon=True).start()

    threading.Thread(target=accept_loop, daemon=True).start()
    return lsock.getsockname()[1]


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def run_load(load, port, routes, extra=()):
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "r.csv")
        args = [load, "--port", str(port), "--quiet", "--csv", out, *extra]
        for r in routes:
            args += ["--route", r]
        proc = subprocess.run(args, capture_output=True, text=True, timeout=60)
        with open(out) as f:
            rows = list(csv.DictReader(f))
        return proc, rows


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: selftest.py PATH/TO/spike_load")
    load = sys.argv[1]
    passed = failed = 0

    def check(ok, what):
        nonlocal passed, failed
        if ok:
            passed += 1
        else:
            failed += 1
            print("FAIL:", what)

    port = start_server()
    names = {p: p.strip("/") for p in BEHAVIOURS}
    routes = ["%s,%s,20,0,0,0.5" % (names[p], p) for p in BEHAVIOURS]
    proc, rows = run_load(load, port, routes, ["--timeout", "1"])
    check(proc.returncode == 1, "exit status 1 when there were errors (got %d)" % proc.returncode)
    for path, expected in BEHAVIOURS.items():
        got = [r["outcome"] for r in rows if r["route"] == names[path]]
        check(len(got) == 10, "%s: 10 requests in the CSV (got %d)" % (path, len(got)))
        wrong = sorted(set(o for o in got if o != expected))
        check(not wrong, "%s: every outcome %s (also got %s)" % (path, expected, wrong))
    for line in proc.stdout.splitlines():
        if line.startswith("route ok:"):
            check("ok 10," in line and "errors 0" in line, "summary line for /ok: " + line)

    # Nothing listening: refused, every time.
    proc, rows = run_load(load, free_port(), ["nobody,/x,50,0,0,0.2"])
    check(rows and all(r["outcome"] == "refused" for r in rows),
          "closed port: all refused (got %s)" % sorted(set(r["outcome"] for r in rows)))

    # Latency is measured from the scheduled time and matches the server's
    # 50 ms; an even schedule: 100/s for 1 s after a 0.5 s ramp.
    proc, rows = run_load(load, port, ["slow,/slow,100,0,0.5,1"])
    lat = sorted(float(r["done_ms"]) - float(r["intended_ms"]) for r in rows)
    check(proc.returncode == 0, "slow origin: exit status 0")
    check(len(rows) == 125, "ramp 0.5 s + 1 s at 100/s schedules 125 requests (got %d)" % len(rows))
    check(lat and 49 <= lat[len(lat) // 2] <= 60, "slow origin: median latency ~50 ms (got %.1f)" % lat[len(lat) // 2])
    intended = sorted(float(r["intended_ms"]) for r in rows)
    check(intended[-1] <= 1500.0 and intended[25] >= 500.0 - 1e-6,
          "schedule: ramp ends at 0.5 s with 25 requests, last before 1.5 s")
    lags = [float(r["sent_ms"]) - float(r["intended_ms"]) for r in rows]
    check(max(lags) < 20, "sends within 20 ms of their schedule (max lag %.1f ms)" % max(lags))

    print("selftest: %d passed, %d failed" % (passed, failed))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
