"""origins.py: scripted origin servers for levee's integration tests.

Every origin listens on 127.0.0.1 on a free port, runs on daemon threads, and
is stopped by the fixture that made it (stop() is idempotent). Tests read
what the origin saw to check what levee forwarded.

ScriptedOrigin is a real HTTP/1.1 server (keep-alive, Content-Length and
chunked request bodies). Per path (longest prefix wins, "" is the default) a
test sets a Reply (status, headers, body, delay, chunked) or a function of
the Request that returns one. It records every request, counts requests per
path, the connections it accepted, and the most connections and requests it
had open at the same time, which is how tests check coalescing and pooling.

The raw origins misbehave on purpose, one way each:
  GarbageOrigin        answers every request with bytes that are not HTTP
  SilentOrigin         accepts, reads, never answers
  CloseMidAnswerOrigin promises a body and closes halfway through it
  UntilCloseOrigin     ends its body by closing (no length, not chunked)
  ...WithFinOrigin     the same with the FIN in the data's TCP segment
  ChunkedOrigin        answers with Transfer-Encoding: chunked, keep-alive
  CannedOrigin         answers with whatever raw bytes the test sets
  refused_port()       a port nothing listens on
"""

import socket
import threading
import time


_ports_given = set()


def free_port():
    """A port that was free a moment ago (bound to 127.0.0.1:0, then closed).

    Never the same port twice in one test run: the kernel may hand a just
    closed port out again, and two listeners of one levee given the same
    port make it refuse its configuration."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _ports_given:
            _ports_given.add(port)
            return port
    raise RuntimeError("no fresh free port after 100 tries")


def refused_port():
    """A port on which connecting is refused: free, and nothing listens."""
    return free_port()


class Request:
    """One request as an origin received it. Header names are kept as sent;
    header(name) looks one up case-insensitively."""

    def __init__(self, method, target, version, headers, body, conn_id):
        self.method = method
        self.target = target  # path and query as sent
        self.path, _, self.query = target.partition("?")
        self.version = version
        self.headers = headers  # [(name, value)] in order
        self.body = body
        self.conn_id = conn_id  # which origin connection carried it
        self.received_at = time.monotonic()

    def header(self, name, default=None):
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return default

    def header_all(self, name):
        return [v for k, v in self.headers if k.lower() == name.lower()]

    def has_header(self, name):
        return self.header(name) is not None

    def __repr__(self):
        return "Request(%s %s)" % (self.method, self.target)


class Reply:
    """What a ScriptedOrigin answers. body may be str or bytes. headers is a
    dict or a list of pairs (a list can repeat a name). With chunked=True
    the body is sent in chunks of chunk_size bytes instead of with
    Content-Length."""

    def __init__(self, status=200, body=b"", headers=None, delay=0.0, chunked=False, chunk_size=7):
        self.status = status
        self.body = body.encode() if isinstance(body, str) else body
        if headers is None:
            headers = []
        elif isinstance(headers, dict):
            headers = list(headers.items())
        self.headers = headers
        self.delay = delay
        self.chunked = chunked
        self.chunk_size = chunk_size


REASONS = {200: "OK", 201: "Created", 204: "No Content", 301: "Moved Permanently", 302: "Found",
           304: "Not Modified", 400: "Bad Request", 404: "Not Found", 500: "Internal Server Error",
           502: "Bad Gateway", 503: "Service Unavailable"}


class _Stream:
    """Buffered reads from a socket: lines and exact byte counts."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = b""

    def _fill(self):
        data = self.sock.recv(65536)
        if not data:
            raise EOFError
        self.buf += data

    def readline(self, limit=1 << 20):
        while b"\n" not in self.buf:
            if len(self.buf) > limit:
                raise ValueError("line too long")
            self._fill()
        line, _, self.buf = self.buf.partition(b"\n")
        return line + b"\n"

    def read(self, n):
        while len(self.buf) < n:
            self._fill()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out


class _Listener:
    """A listening socket with an accept thread; subclasses define serve(conn)."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(512)
        self.port = self.sock.getsockname()[1]
        self.url = "http://127.0.0.1:%d" % self.port
        self.lock = threading.Lock()
        self.stopped = False
        self.conns = set()
        self.connections = 0       # accepted in total
        self.open_conns = 0        # open right now
        self.max_open_conns = 0    # the most open at once, as this side sees closes
        self.spans = {}            # conn_id -> [accepted, last answer started] (monotonic)
        self.thread = threading.Thread(target=self._accept_loop, daemon=True)
        self.thread.start()

    def _accept_loop(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with self.lock:
                if self.stopped:
                    conn.close()
                    return
                self.connections += 1
                conn_id = self.connections
                self.open_conns += 1
                self.max_open_conns = max(self.max_open_conns, self.open_conns)
                self.conns.add(conn)
                now = time.monotonic()
                self.spans[conn_id] = [now, now]
            threading.Thread(target=self._run, args=(conn, conn_id), daemon=True).start()

    def _run(self, conn, conn_id):
        try:
            self.serve(conn, conn_id)
        except (OSError, EOFError, ValueError):
            pass
        finally:
            with self.lock:
                self.open_conns -= 1
                self.conns.discard(conn)
            try:
                conn.close()
            except OSError:
                pass

    def serve(self, conn, conn_id):
        raise NotImplementedError

    def answered(self, conn_id):
        """Notes that conn_id is about to send a complete answer (before the
        send: the client cannot close or reuse the connection earlier)."""
        with self.lock:
            self.spans[conn_id][1] = time.monotonic()

    def max_busy_conns(self):
        """The most connections that were provably open at the same time on
        the client's side: each counts from its accept to its last answer
        (the client cannot have closed it before reading that answer). This
        ignores how late this side notices a close, unlike max_open_conns."""
        with self.lock:
            events = []
            for start, end in self.spans.values():
                events.append((start, 1))
                events.append((end, -1))
        events.sort(key=lambda e: (e[0], e[1]))
        cur = best = 0
        for _, d in events:
            cur += d
            best = max(best, cur)
        return best

    def stop(self):
        """Stops listening (later connects are refused) and closes every
        connection it holds."""
        with self.lock:
            if self.stopped:
                return
            self.stopped = True
            conns = list(self.conns)
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    @staticmethod
    def read_head(stream):
        """Reads a request head; returns (method, target, version, headers)."""
        line = stream.readline()
        while line in (b"\r\n", b"\n"):
            line = stream.readline()
        method, target, version = line.decode("latin-1").rstrip("\r\n").split(" ", 2)
        headers = []
        while True:
            h = stream.readline().decode("latin-1").rstrip("\r\n")
            if not h:
                break
            name, _, value = h.partition(":")
            headers.append((name, value.strip()))
        return method, target, version, headers


def _read_body(stream, headers):
    te = ",".join(v for k, v in headers if k.lower() == "transfer-encoding").lower()
    if "chunked" in te:
        body = b""
        while True:
            size = int(stream.readline().split(b";")[0].strip(), 16)
            if size == 0:
                while stream.readline() not in (b"\r\n", b"\n"):
                    pass
                return body
            body += stream.read(size)
            stream.read(2)
    cl = [v for k, v in headers if k.lower() == "content-length"]
    return stream.read(int(cl[0])) if cl else b""


class ScriptedOrigin(_Listener):
    """A keep-alive HTTP/1.1 origin whose answers each test scripts."""

    def __init__(self):
        self.replies = {"": Reply(200, b"ok\n", {"Content-Type": "text/plain"})}
        self.requests = []          # every Request, in arrival order
        self.counts = {}            # path -> requests seen
        self.in_flight = 0
        self.max_in_flight = 0      # the most requests being handled at once
        super().__init__()

    def set(self, prefix, reply=None, **kw):
        """Answers requests whose path starts with prefix (the longest prefix
        wins) with reply: a Reply, a function Request -> Reply, or Reply(**kw)."""
        self.replies[prefix] = reply if reply is not None else Reply(**kw)

    def count(self, path):
        with self.lock:
            return self.counts.get(path, 0)

    def requests_for(self, path):
        with self.lock:
            return [r for r in self.requests if r.path == path]

    def last(self, path=None):
        with self.lock:
            rs = [r for r in self.requests if path is None or r.path == path]
        return rs[-1] if rs else None

    def _choose(self, req):
        best = max((p for p in self.replies if req.path.startswith(p)), key=len)
        reply = self.replies[best]
        return reply(req) if callable(reply) else reply

    def serve(self, conn, conn_id):
        stream = _Stream(conn)
        while True:
            method, target, version, headers = self.read_head(stream)
            body = _read_body(stream, headers)
            req = Request(method, target, version, headers, body, conn_id)
            with self.lock:
                self.requests.append(req)
                self.counts[req.path] = self.counts.get(req.path, 0) + 1
                self.in_flight += 1
                self.max_in_flight = max(self.max_in_flight, self.in_flight)
            try:
                reply = self._choose(req)
                if reply.delay:
                    time.sleep(reply.delay)
                data = self._render(reply, method == "HEAD")
            finally:
                # Counted as done *before* sending: once the bytes leave, the
                # client may start its next request before this thread runs
                # again, and must not be seen as over its limit for that.
                with self.lock:
                    self.in_flight -= 1
                self.answered(conn_id)
            conn.sendall(data)
            conn_hdr = (req.header("Connection") or "").lower()
            if conn_hdr == "close" or (version == "HTTP/1.0" and conn_hdr != "keep-alive"):
                return
            if any(k.lower() == "connection" and v.lower() == "close" for k, v in reply.headers):
                return  # the reply said so: close after it

    @staticmethod
    def _render(reply, is_head):
        out = ["HTTP/1.1 %d %s\r\n" % (reply.status, REASONS.get(reply.status, "Status"))]
        for k, v in reply.headers:
            out.append("%s: %s\r\n" % (k, v))
        no_body = is_head or reply.status in (204, 304) or reply.status < 200
        if reply.chunked:
            out.append("Transfer-Encoding: chunked\r\n\r\n")
            data = "".join(out).encode("latin-1")
            if not no_body:
                for i in range(0, len(reply.body), reply.chunk_size):
                    piece = reply.body[i:i + reply.chunk_size]
                    data += b"%x\r\n%s\r\n" % (len(piece), piece)
                data += b"0\r\n\r\n"
            return data
        if not (reply.status in (204, 304) or reply.status < 200):
            out.append("Content-Length: %d\r\n" % len(reply.body))
        out.append("\r\n")
        return "".join(out).encode("latin-1") + (b"" if no_body else reply.body)


class GarbageOrigin(_Listener):
    """Reads a request head and answers with bytes that are not HTTP."""

    PAYLOAD = b"SSH-2.0-definitely not http\r\n\x00\x01\x02\r\n\r\n"
    delay = 0.0  # seconds before answering

    def serve(self, conn, conn_id):
        stream = _Stream(conn)
        self.read_head(stream)
        time.sleep(self.delay)
        conn.sendall(self.PAYLOAD)
        time.sleep(0.2)


class SilentOrigin(_Listener):
    """Accepts and reads, and never answers; holds the connection until stopped."""

    def serve(self, conn, conn_id):
        while conn.recv(65536):
            pass


def send_with_fin(conn, data):
    """Sends data and the FIN in one TCP segment (TCP_CORK holds the data
    until shutdown flushes both), so the peer reads them in one event."""
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 1)
    conn.sendall(data)
    conn.shutdown(socket.SHUT_WR)


class CloseMidAnswerOrigin(_Listener):
    """Sends a head promising 1000 bytes, 10 of them, then closes. With
    with_fin, the FIN travels in the same segment as the data."""

    ANSWER = b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\nContent-Type: text/plain\r\n\r\n0123456789"
    with_fin = False

    def serve(self, conn, conn_id):
        stream = _Stream(conn)
        self.read_head(stream)
        if self.with_fin:
            send_with_fin(conn, self.ANSWER)
        else:
            conn.sendall(self.ANSWER)
        time.sleep(0.05)


class CloseMidAnswerWithFinOrigin(CloseMidAnswerOrigin):
    with_fin = True


class UntilCloseOrigin(_Listener):
    """Answers without Content-Length or chunked: the body ends at close.
    With with_fin, the FIN travels in the same segment as the answer."""

    ANSWER = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nbody until close"
    with_fin = False

    def serve(self, conn, conn_id):
        stream = _Stream(conn)
        self.read_head(stream)
        if self.with_fin:
            send_with_fin(conn, self.ANSWER)
        else:
            conn.sendall(self.ANSWER)
            time.sleep(0.05)
            conn.shutdown(socket.SHUT_WR)
        time.sleep(0.2)


class UntilCloseWithFinOrigin(UntilCloseOrigin):
    with_fin = True


class CannedOrigin(_Listener):
    """Answers every request with the same raw bytes (set ANSWER on an
    instance or subclass), then closes after a moment."""

    ANSWER = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"

    def serve(self, conn, conn_id):
        stream = _Stream(conn)
        self.read_head(stream)
        conn.sendall(self.ANSWER)
        time.sleep(0.2)


class ChunkedOrigin(_Listener):
    """Keep-alive origin that always answers 200 with a chunked body (BODY),
    with a chunk extension and a trailer thrown in."""

    BODY = b"".join(b"chunk %02d of the answer;" % i for i in range(40))

    def __init__(self):
        self.requests = 0
        super().__init__()

    def serve(self, conn, conn_id):
        stream = _Stream(conn)
        while True:
            _, _, _, headers = self.read_head(stream)
            _read_body(stream, headers)
            with self.lock:
                self.requests += 1
            out = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n"
            body = self.BODY
            first = True
            while body:
                piece, body = body[:97], body[97:]
                ext = b";name=value" if first else b""
                first = False
                out += b"%x%s\r\n%s\r\n" % (len(piece), ext, piece)
            out += b"0\r\nX-Trailer: t\r\n\r\n"
            # Send in two writes so levee has to reassemble across reads.
            conn.sendall(out[:150])
            time.sleep(0.02)
            conn.sendall(out[150:])
