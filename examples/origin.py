#!/usr/bin/python3
"""origin.py [PORT]: the example app's origin: a deliberately slow event list.

GET /events/list answers after 50 ms with JSON that includes the time it was
generated, so you can watch levee's cache serve the same copy for 10 s.
POST /checkout echoes the order back. Anything else is 404."""
import http.server
import json
import socketserver
import sys
import time


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def send_json(self, status, obj, extra=None):
        body = json.dumps(obj).encode() + b"\n"
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path.startswith("/events/"):
            time.sleep(0.05)
            self.send_json(200, {"generated_at": time.time(), "events": [
                {"artist": "The Levees", "city": "Lisbon", "on_sale": "2026-11-27T15:00:00Z"},
                {"artist": "Flash Crowd", "city": "Porto", "on_sale": "2026-11-28T10:00:00Z"},
            ]}, {"Cache-Control": "public, max-age=10"})
        else:
            self.send_json(404, {"error": "not found"})

    def do_POST(self):
        n = int(self.headers.get("Content-Length") or 0)
        order = self.rfile.read(n)
        if self.path == "/checkout":
            self.send_json(201, {"accepted": True, "order": order.decode("utf-8", "replace")})
        else:
            self.send_json(404, {"error": "not found"})

    def log_message(self, *args):
        pass


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True


if __name__ == "__main__":
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 3000
    Server(("127.0.0.1", port), Handler).serve_forever()
