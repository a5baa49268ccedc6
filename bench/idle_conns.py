#!/usr/bin/python3
"""idle_conns.py HOST PORT PATH [N]: holds N idle keep-alive connections open.

Driven step by step over stdin/stdout so that the caller can read the
server's memory between steps:

  1. connects N sockets (non-blocking, in batches), prints "connected N";
  2. after any line on stdin: sends one GET PATH on every connection, reads
     every answer (keeping the connection open), prints "answered K";
  3. after another line on stdin: closes everything, prints "closed", exits.

Between the steps the connections are idle: nothing is sent or read. The
caller needs `ulimit -n` above N (and so does the server).
"""
import select
import socket
import sys
import time


def connect_all(host, port, n, batch=256):
    socks = []
    ep = select.epoll()
    for start in range(0, n, batch):
        pending = {}
        for _ in range(min(batch, n - start)):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setblocking(False)
            s.connect_ex((host, port))
            pending[s.fileno()] = s
            ep.register(s.fileno(), select.EPOLLOUT)
        deadline = time.monotonic() + 20
        while pending and time.monotonic() < deadline:
            for fd, _ in ep.poll(1.0):
                s = pending.pop(fd)
                ep.unregister(fd)
                if s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0:
                    socks.append(s)
                else:
                    s.close()
        for s in pending.values():
            s.close()
    ep.close()
    return socks


def answer_complete(buf):
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        return False
    length = 0
    for line in buf[:end].split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    return len(buf) >= end + 4 + length


def request_all(socks, host, port, path):
    req = ("GET %s HTTP/1.1\r\nHost: %s:%d\r\n\r\n" % (path, host, port)).encode()
    ep = select.epoll()
    bufs = {}
    for s in socks:
        try:
            s.send(req)
        except OSError:
            continue
        bufs[s.fileno()] = [s, b""]
        ep.register(s.fileno(), select.EPOLLIN)
    answered = 0
    deadline = time.monotonic() + 30
    while bufs and time.monotonic() < deadline:
        for fd, _ in ep.poll(0.5):
            entry = bufs[fd]
            try:
                data = entry[0].recv(4096)
            except OSError:
                data = b""
            entry[1] += data
            if answer_complete(entry[1]):
                answered += 1
            elif data:
                continue
            ep.unregister(fd)
            del bufs[fd]
    ep.close()
    return answered


def main():
    host, port, path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    n = int(sys.argv[4]) if len(sys.argv) > 4 else 10000
    socks = connect_all(host, port, n)
    print("connected %d" % len(socks), flush=True)
    sys.stdin.readline()
    print("answered %d" % request_all(socks, host, port, path), flush=True)
    sys.stdin.readline()
    for s in socks:
        s.close()
    print("closed", flush=True)


if __name__ == "__main__":
    main()
