"""conftest.py: fixtures and wire helpers for levee's integration tests.

The binary under test is $LEVEE_BIN (the Makefile sets it to ./levee or to
build-san/levee); without it, ./levee at the repository root.

Fixtures:
  free_ports factory: free_ports() -> a free 127.0.0.1 port (bind :0, close).
  levee     factory: levee(config_text, files={...}) writes the config (and
            the extra files, e.g. CSV tables) into the test's tmp dir, runs
            `LEVEE_BIN serve -c` on it, waits until it accepts, and returns a
            Levee (.url, .admin_url, .api_url, .port, .admin_port, .api_port,
            .dir, .proc, .stderr). Unless the text sets them, `listen:` (a
            free port), `admin:` and `api:` (free ports) and `threads: 2` are
            added; data_dir defaults to levee-data in the test's directory. At teardown every instance
            gets SIGTERM and must exit 0 within 20 s with no sanitizer report.
  origin    factory: origin() starts a ScriptedOrigin (see origins.py).
  raw_origin factory: raw_origin(GarbageOrigin) etc. for misbehaving ones.
Origins are torn down after levee, so levee never sees them vanish first.

Wire helpers (import them: `from conftest import exchange, HttpConn`):
  exchange(port, data)   send exact bytes, read until close or timeout
  HttpConn(port)         one connection: send, read_response, wait_closed
  parse_response(buf)    one HTTP/1.x answer from a byte buffer
Markers for tests that fail on a known levee bug: @bug("...") and, for what
only the sanitizer build detects, @san_bug("...") (strict xfails).
Every loop and wait here is bounded in time."""

import os
import re
import signal
import socket
import subprocess
import textwrap
import time

import pytest

from origins import ScriptedOrigin, free_port

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
LEVEE_BIN = os.environ.get("LEVEE_BIN") or os.path.join(REPO, "levee")


def _is_sanitized(path):
    try:
        with open(path, "rb") as f:
            data = f.read()
        return b"__asan_init" in data or b"__ubsan_handle" in data
    except OSError:
        return False


# True for the ASan+UBSan build. Leaks and use-after-free only fail there,
# so a test for such a bug is marked @san_bug(...) until the bug is fixed.
IS_SANITIZED = _is_sanitized(LEVEE_BIN)

# Generous: a sanitizer build starts and answers several times slower.
START_TIMEOUT = 20.0
STOP_TIMEOUT = 20.0

SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
                     "WARNING: ThreadSanitizer", "SUMMARY: UndefinedBehaviorSanitizer")


def sanitizer_problems(text):
    """The lines of text that are sanitizer reports."""
    return [line for line in text.splitlines() if any(m in line for m in SANITIZER_MARKERS)]


def run_levee(*args, timeout=30, cwd=None):
    """Runs the binary to completion; returns CompletedProcess (text)."""
    return subprocess.run([LEVEE_BIN, *args], capture_output=True, text=True, timeout=timeout, cwd=cwd)


def wait_port(port, timeout=START_TIMEOUT, proc=None):
    """Waits until 127.0.0.1:port accepts a connection; False on timeout or
    when proc exits first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            return False
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.02)
    return False


def port_open(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


class Levee:
    """One running levee. stop() may be called by the test; teardown calls it
    again (a no-op) and checks the exit."""

    def __init__(self, workdir, config_text, files=None, name="levee.yaml"):
        self.dir = workdir
        self.port = None
        self.admin_port = None
        text = textwrap.dedent(config_text).strip("\n") + "\n"
        extra = []
        if not re.search(r"^listen:", text, re.M):
            self.port = free_port()
            extra.append("listen: 127.0.0.1:%d" % self.port)
        else:
            m = re.search(r"^listen:\s*\[?\s*\"?[0-9.]*:(\d+)", text, re.M)
            self.port = int(m.group(1)) if m else None
        if not re.search(r"^admin:", text, re.M):
            self.admin_port = free_port()
            extra.append("admin: { listen: 127.0.0.1:%d }" % self.admin_port)
        else:
            m = re.search(r"^admin:.*listen:\s*\"?[0-9.]*:(\d+)", text, re.M)
            self.admin_port = int(m.group(1)) if m else None
        self.api_port = None
        if not re.search(r"^api:", text, re.M):
            self.api_port = free_port()
            extra.append("api: { listen: 127.0.0.1:%d }" % self.api_port)
        else:
            m = re.search(r"^api:.*listen:\s*\"?[0-9.]*:(\d+)", text, re.M)
            self.api_port = int(m.group(1)) if m else None
        if not re.search(r"^threads:", text, re.M):
            extra.append("threads: 2")
        self.config_text = "\n".join(extra) + ("\n" if extra else "") + text
        self.config_path = os.path.join(workdir, name)
        with open(self.config_path, "w") as f:
            f.write(self.config_text)
        for fname, content in (files or {}).items():
            mode = "wb" if isinstance(content, bytes) else "w"
            with open(os.path.join(workdir, fname), mode) as f:
                f.write(content)
        self.url = "http://127.0.0.1:%d" % self.port if self.port else None
        self.admin_url = "http://127.0.0.1:%d" % self.admin_port if self.admin_port else None
        self.api_url = "http://127.0.0.1:%d" % self.api_port if self.api_port else None
        self.stderr_path = self.config_path + ".stderr"
        self.proc = None
        self.returncode = None
        self.checked = False  # stop(check=True) ran: teardown does not assert again

    def start(self):
        self._err = open(self.stderr_path, "wb")
        env = dict(os.environ)
        # Sanitizer builds: report everything, keep the exit code meaningful.
        env.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0")
        env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1")
        self.proc = subprocess.Popen([LEVEE_BIN, "serve", "-c", self.config_path], stdout=self._err,
                                     stderr=subprocess.STDOUT, cwd=self.dir, env=env)
        ok = wait_port(self.port, proc=self.proc)
        if ok and self.admin_port:
            ok = wait_port(self.admin_port, proc=self.proc)
        if ok and self.api_port:
            ok = wait_port(self.api_port, proc=self.proc)
        if not ok:
            self.stop(check=False)
            raise RuntimeError("levee did not start:\n" + self.stderr)
        return self

    @property
    def stderr(self):
        """Everything levee logged so far (stdout and stderr)."""
        try:
            with open(self.stderr_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def send_signal(self, sig):
        self.proc.send_signal(sig)

    def wait(self, timeout=STOP_TIMEOUT):
        try:
            self.returncode = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
            self.returncode = "timeout"
        self._err.close()
        return self.returncode

    def stop(self, sig=signal.SIGTERM, check=True, timeout=STOP_TIMEOUT):
        """Sends sig (if still running), waits (killing it after timeout),
        and returns the exit code. With check, asserts exit 0 and a clean
        sanitizer report."""
        if self.returncode is None and self.proc is not None:
            if self.proc.poll() is None:
                self.proc.send_signal(sig)
            self.wait(timeout)
        if check and not self.checked:
            self.checked = True
            self.assert_clean_exit()
        return self.returncode

    def assert_clean_exit(self):
        problems = sanitizer_problems(self.stderr)
        assert not problems, "sanitizer reports:\n" + self.stderr[-6000:]
        assert self.returncode == 0, "levee exited %r; log:\n%s" % (self.returncode, self.stderr[-4000:])


@pytest.fixture
def free_ports():
    """Factory: free_ports() -> a port free on 127.0.0.1 a moment ago."""
    return free_port


@pytest.fixture
def origins():
    """Every origin a test starts; stopped after levee (levee depends on it)."""
    started = []
    yield started
    for o in started:
        o.stop()


@pytest.fixture
def origin(origins):
    """Factory: origin() -> a started ScriptedOrigin."""
    def make():
        o = ScriptedOrigin()
        origins.append(o)
        return o
    return make


@pytest.fixture
def raw_origin(origins):
    """Factory: raw_origin(GarbageOrigin) -> a started misbehaving origin."""
    def make(cls):
        o = cls()
        origins.append(o)
        return o
    return make


def bug(reason):
    """Marks a test that fails because of a known levee bug (strict: it
    must fail until the bug is fixed). Such a test calls lv.stop() itself
    so the exit checks belong to the test, not to the fixture's teardown."""
    return pytest.mark.xfail(strict=True, reason="bug: " + reason)


def san_bug(reason):
    """The same for a bug only the sanitizer build detects (use after free,
    leak): expected to fail with build-san/levee, to pass with ./levee."""
    return pytest.mark.xfail(IS_SANITIZED, strict=True, reason="bug (ASan): " + reason)


def _expects_failure(request):
    marker = request.node.get_closest_marker("xfail")
    if marker is None or request.config.option.runxfail:
        return False
    return not marker.args or bool(marker.args[0])


@pytest.fixture
def levee(tmp_path, origins, request):
    """Factory: levee(config_text, files=None) -> a started Levee."""
    started = []

    def make(config_text, files=None, name="levee.yaml"):
        inst = Levee(str(tmp_path), config_text, files, name)
        started.append(inst)
        return inst.start()

    yield make
    if _expects_failure(request):
        # A known bug: the test already failed (or checked the exit itself);
        # just make sure nothing is left running.
        for inst in started:
            if inst.proc is not None:
                inst.stop(check=False, timeout=5)
        return
    failures = []
    for inst in started:
        if inst.proc is None:
            continue  # never started (start() raised)
        try:
            inst.stop()
        except AssertionError as e:
            failures.append(str(e))
    assert not failures, "\n\n".join(failures)


# ---------------------------------------------------------------------------
# Wire helpers
# ---------------------------------------------------------------------------

class Response:
    def __init__(self, version, status, reason, headers, body, raw):
        self.version = version
        self.status = status
        self.reason = reason
        self.headers = headers  # [(name, value)] as received
        self.body = body
        self.raw = raw

    def header(self, name, default=None):
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return default

    def header_all(self, name):
        return [v for k, v in self.headers if k.lower() == name.lower()]

    def __repr__(self):
        return "Response(%d %r)" % (self.status, self.body[:60])


class Incomplete(Exception):
    """The buffer does not hold a complete answer yet."""


def parse_response(buf, head_request=False):
    """Parses one answer from the start of buf. Returns (Response, rest).
    Raises Incomplete if more bytes are needed. Bodies: Content-Length,
    chunked, none for HEAD/1xx/204/304, else until the end of buf."""
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        raise Incomplete
    head = buf[:end].decode("latin-1")
    rest = buf[end + 4:]
    lines = head.split("\r\n")
    version, status, reason = (lines[0].split(" ", 2) + [""])[:3]
    status = int(status)
    headers = []
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers.append((name, value.strip()))
    resp = Response(version, status, reason, headers, b"", b"")
    if head_request or status < 200 or status in (204, 304):
        resp.raw = buf[:end + 4]
        return resp, rest
    te = (resp.header("Transfer-Encoding") or "").lower()
    cl = resp.header("Content-Length")
    if "chunked" in te:
        body = b""
        pos = 0
        while True:
            nl = rest.find(b"\r\n", pos)
            if nl < 0:
                raise Incomplete
            size = int(rest[pos:nl].split(b";")[0], 16)
            pos = nl + 2
            if size == 0:
                tend = rest.find(b"\r\n", pos)
                while tend >= 0 and tend != pos:
                    pos = tend + 2
                    tend = rest.find(b"\r\n", pos)
                if tend < 0:
                    raise Incomplete
                pos += 2
                break
            if len(rest) < pos + size + 2:
                raise Incomplete
            body += rest[pos:pos + size]
            pos += size + 2
        resp.body = body
        resp.raw = buf[:end + 4 + pos]
        return resp, rest[pos:]
    if cl is not None:
        n = int(cl)
        if len(rest) < n:
            raise Incomplete
        resp.body = rest[:n]
        resp.raw = buf[:end + 4 + n]
        return resp, rest[n:]
    resp.body = rest
    resp.raw = buf
    return resp, b""


def parse_all(buf, head_flags=None):
    """Every complete answer in buf, in order (interim 1xx included)."""
    out = []
    i = 0
    while buf:
        head = bool(head_flags and i < len(head_flags) and head_flags[i])
        try:
            resp, buf = parse_response(buf, head)
        except Incomplete:
            break
        out.append(resp)
        if resp.status >= 200:
            i += 1
    return out


class Exchange:
    """What exchange() saw: data, and whether the server closed."""

    def __init__(self, data, closed):
        self.data = data
        self.closed = closed

    def responses(self, head_flags=None):
        return parse_all(self.data, head_flags)

    @property
    def first(self):
        return parse_response(self.data)[0]

    @property
    def status_line(self):
        return self.data.split(b"\r\n", 1)[0].decode("latin-1")


def exchange(port, data, timeout=5.0, shut_write=False):
    """Connects, sends data (bytes, or a list of pieces sent one by one),
    optionally shuts the write side, then reads until the server closes or
    timeout seconds pass. Returns an Exchange."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        pieces = data if isinstance(data, list) else [data]
        for p in pieces:
            s.sendall(p)
        if shut_write:
            s.shutdown(socket.SHUT_WR)
        buf = b""
        closed = False
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            s.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                break
            except ConnectionResetError:
                closed = True
                break
            if not chunk:
                closed = True
                break
            buf += chunk
        return Exchange(buf, closed)
    finally:
        s.close()


class HttpConn:
    """A client connection for keep-alive and protocol tests."""

    def __init__(self, port, timeout=10.0):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.timeout = timeout
        self.buf = b""

    def send(self, data):
        self.sock.sendall(data)

    def request(self, method="GET", path="/", headers=None, body=b"", host="test"):
        lines = ["%s %s HTTP/1.1" % (method, path), "Host: %s" % host]
        for k, v in (headers or {}).items():
            lines.append("%s: %s" % (k, v))
        if body:
            lines.append("Content-Length: %d" % len(body))
        self.send(("\r\n".join(lines) + "\r\n\r\n").encode() + body)

    def _recv(self, deadline):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise socket.timeout("no complete answer in time")
        self.sock.settimeout(remaining)
        chunk = self.sock.recv(65536)
        if not chunk:
            raise EOFError("server closed the connection")
        self.buf += chunk

    def read_response(self, head_request=False, timeout=None):
        """The next answer (interim 1xx answers included)."""
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            try:
                resp, self.buf = parse_response(self.buf, head_request)
                return resp
            except Incomplete:
                self._recv(deadline)

    def read_available(self, timeout=0.5):
        """Reads whatever arrives within timeout; returns the buffer so far."""
        deadline = time.monotonic() + timeout
        try:
            while True:
                self._recv(deadline)
        except (socket.timeout, EOFError, ConnectionResetError):
            pass
        return self.buf

    def wait_closed(self, timeout=5.0):
        """True if the server closes within timeout (bytes still arriving are
        collected into buf)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                return False
            except ConnectionResetError:
                return True
            if not chunk:
                return True
            self.buf += chunk
        return False

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
