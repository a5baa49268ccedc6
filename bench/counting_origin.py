#!/usr/bin/python3
"""counting_origin.py [PORT] [DELAY_S]: an origin that counts what it is asked.

For the coalescing benchmark: every GET takes DELAY_S seconds (default 1.0,
long enough that a thousand client requests all arrive while the first fetch
is still in flight) and is counted by path. GET /__count answers the counts
as JSON, {"/path": n, ...}, and is itself neither delayed nor counted, so a
benchmark can read how many requests reached the origin through the cache.

Threaded like the shared slow_origin.py, so concurrent fetches (a cache that
does not coalesce) are all served, and all counted, in parallel.
"""
import http.server
import json
import socketserver
import sys
import threading
import time

counts = {}
counts_lock = threading.Lock()
delay_s = 1.0


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        if self.path == "/__count":
            with counts_lock:
                body = json.dumps(counts).encode()
        else:
            with counts_lock:
                counts[self.path] = counts.get(self.path, 0) + 1
            time.sleep(delay_s)
            body = b'{"events":[{"artist":"x","city":"y"}]}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    request_queue_size = 1024


if __name__ == "__main__":
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 9101
    if len(sys.argv) > 2:
        delay_s = float(sys.argv[2])
    Server(("127.0.0.1", port), Handler).serve_forever()
