#!/usr/bin/python3
"""coalesce.py HOST PORT PATH [N] [TIMEOUT_S]: N clients ask for one cold key at once.

Opens N connections first (in batches, so a short accept queue such as
nginx's default 511 never drops a SYN and stalls a connect for a second),
then writes the same GET on every one of them in one tight loop, then reads
every answer. Prints one line of key=value results:

  sent=N answered=A ok=K statuses={200:..} xcache={MISS:..,HIT:..}
  first_ms=.. last_ms=.. errors=E

(times from the moment the first request was written). The origin counts
how many requests reached it (counting_origin.py); the caller compares.
Uses raw non-blocking sockets and epoll so that a thousand connections cost
one thread.
"""
import select
import socket
import sys
import time


def parse_answer(buf):
    """Returns (status, x_cache, complete) for the bytes read so far."""
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        return None, None, False
    lines = buf[:end].split(b"\r\n")
    try:
        status = int(lines[0].split(b" ")[1])
    except (IndexError, ValueError):
        return -1, None, True
    length, xcache = 0, None
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value.strip())
        elif name == b"x-cache":
            xcache = value.strip().decode()
    return status, xcache, len(buf) >= end + 4 + length


def connect_all(host, port, n, batch=200):
    socks = []
    ep = select.epoll()
    for start in range(0, n, batch):
        pending = {}
        for _ in range(min(batch, n - start)):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setblocking(False)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            s.connect_ex((host, port))
            pending[s.fileno()] = s
            ep.register(s.fileno(), select.EPOLLOUT)
        deadline = time.monotonic() + 10
        while pending and time.monotonic() < deadline:
            for fd, _ in ep.poll(1.0):
                s = pending.pop(fd)
                ep.unregister(fd)
                err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if err:
                    raise OSError(err, "connect failed")
                socks.append(s)
        if pending:
            raise TimeoutError("%d connects did not complete" % len(pending))
    ep.close()
    return socks


def main():
    host, port, path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    n = int(sys.argv[4]) if len(sys.argv) > 4 else 1000
    timeout = float(sys.argv[5]) if len(sys.argv) > 5 else 15.0
    socks = connect_all(host, port, n)
    req = ("GET %s HTTP/1.1\r\nHost: %s:%d\r\n\r\n" % (path, host, port)).encode()

    ep = select.epoll()
    by_fd = {}
    for s in socks:
        by_fd[s.fileno()] = [s, b""]
        ep.register(s.fileno(), select.EPOLLIN)
    t0 = time.monotonic()
    errors = 0
    for s in socks:
        try:
            s.send(req)
        except OSError:
            errors += 1

    statuses, xcache, times = {}, {}, []
    deadline = t0 + timeout
    while by_fd and time.monotonic() < deadline:
        for fd, _ in ep.poll(0.5):
            entry = by_fd.get(fd)
            if entry is None:
                continue
            try:
                data = entry[0].recv(65536)
            except OSError:
                data = b""
            entry[1] += data
            status, xc, done = parse_answer(entry[1])
            if not data and not done:
                errors += 1
                done, status = True, -1
            if done:
                times.append(time.monotonic() - t0)
                statuses[status] = statuses.get(status, 0) + 1
                if xc:
                    xcache[xc] = xcache.get(xc, 0) + 1
                ep.unregister(fd)
                del by_fd[fd]
    for s in socks:
        s.close()
    times.sort()
    fmt = lambda d: "{" + ",".join("%s:%d" % kv for kv in sorted(d.items(), key=str)) + "}"
    print("sent=%d answered=%d ok=%d statuses=%s xcache=%s first_ms=%.0f last_ms=%.0f errors=%d" % (
        n, len(times), statuses.get(200, 0), fmt(statuses), fmt(xcache),
        times[0] * 1000 if times else -1, times[-1] * 1000 if times else -1, errors + len(by_fd)))


if __name__ == "__main__":
    main()
