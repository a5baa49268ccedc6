"""test_proxy.py: the origin target without a cache: what levee forwards
(path, query, body, X-Forwarded-*, Host, hop-by-hop headers both ways), how
it reads answers (chunked, until-close), how it fails (refused, timeout,
garbage, close mid-answer) and how it pools connections (max_conns,
keep-alive reuse)."""

import concurrent.futures
import socket
import textwrap
import time

import pytest
import requests

from conftest import HttpConn
from origins import (CannedOrigin, ChunkedOrigin, CloseMidAnswerOrigin, CloseMidAnswerWithFinOrigin, GarbageOrigin, Reply,
                     SilentOrigin, UntilCloseOrigin, UntilCloseWithFinOrigin, refused_port)


def proxy_config(url, extra_routes="", origin_opts=""):
    return textwrap.dedent(f"""
        origins:
          up: {{ url: {url}{origin_opts} }}
        routes:
          - match: ANY /api/*
            origin: up
          - match: GET /hello
            respond: {{ body: "hello\\n" }}
{extra_routes}
        """)


@pytest.fixture
def proxied(levee, origin):
    o = origin()
    lv = levee(proxy_config(o.url))
    return lv, o


# ---- what goes to the origin ----

def test_path_and_query_are_forwarded(proxied):
    lv, o = proxied
    r = requests.get(lv.url + "/api/items/42?x=1&y=%20z&x=2", timeout=10)
    assert r.status_code == 200
    seen = o.last()
    assert seen.method == "GET"
    assert seen.target == "/api/items/42?x=1&y=%20z&x=2"
    assert seen.version == "HTTP/1.1"


def test_origin_base_path_is_prefixed(levee, origin):
    o = origin()
    lv = levee(proxy_config(o.url + "/base"))
    requests.get(lv.url + "/api/x?q=1", timeout=10)
    assert o.last().target == "/base/api/x?q=1"


def test_host_is_the_origins(proxied):
    lv, o = proxied
    requests.get(lv.url + "/api/h", headers={"Host": "public.example"}, timeout=10)
    seen = o.last()
    assert seen.header_all("Host") == ["127.0.0.1:%d" % o.port]
    assert seen.header("X-Forwarded-Host") == "public.example"


def test_x_forwarded_for_and_proto(proxied):
    lv, o = proxied
    requests.get(lv.url + "/api/xff", timeout=10)
    seen = o.last()
    assert seen.header("X-Forwarded-For") == "127.0.0.1"
    assert seen.header("X-Forwarded-Proto") == "http"


def test_x_forwarded_for_is_appended_to(proxied):
    lv, o = proxied
    requests.get(lv.url + "/api/xff", headers={"X-Forwarded-For": "203.0.113.7, 198.51.100.2"}, timeout=10)
    seen = o.last()
    assert seen.header_all("X-Forwarded-For") == ["203.0.113.7, 198.51.100.2, 127.0.0.1"]


def test_client_cannot_spoof_x_forwarded_proto(proxied):
    lv, o = proxied
    requests.get(lv.url + "/api/p", headers={"X-Forwarded-Proto": "https"}, timeout=10)
    assert o.last().header_all("X-Forwarded-Proto") == ["http"]


def test_hop_by_hop_request_headers_are_removed(proxied):
    lv, o = proxied
    with HttpConn(lv.port) as c:
        c.send(b"GET /api/hop HTTP/1.1\r\nHost: test\r\n"
               b"Connection: keep-alive, X-Private-Hop\r\n"
               b"Keep-Alive: timeout=5\r\n"
               b"TE: trailers\r\n"
               b"Upgrade: websocket\r\n"
               b"Proxy-Connection: keep-alive\r\n"
               b"X-Private-Hop: secret\r\n"
               b"X-End-To-End: kept\r\n\r\n")
        assert c.read_response().status == 200
    seen = o.last()
    for name in ("Keep-Alive", "TE", "Upgrade", "Proxy-Connection", "X-Private-Hop"):
        assert not seen.has_header(name), name
    # Connection may be levee's own toward the origin, never the client's.
    assert "x-private-hop" not in (seen.header("Connection") or "").lower()
    assert seen.header("X-End-To-End") == "kept"


def test_hop_by_hop_response_headers_are_removed(proxied):
    lv, o = proxied
    o.set("/api/hop", Reply(200, b"body", [("Connection", "X-Origin-Private"), ("X-Origin-Private", "s"),
                                          ("Keep-Alive", "timeout=5"), ("Upgrade", "h2c"),
                                          ("Proxy-Connection", "keep-alive"), ("Trailer", "X-T"),
                                          ("X-Public", "p")]))
    with HttpConn(lv.port) as c:
        c.send(b"GET /api/hop HTTP/1.1\r\nHost: test\r\n\r\n")
        r = c.read_response()
        assert r.status == 200 and r.body == b"body"
        for name in ("X-Origin-Private", "Keep-Alive", "Upgrade", "Proxy-Connection", "Trailer"):
            assert r.header(name) is None, name
        assert r.header("Connection") is None
        assert r.header("X-Public") == "p"
        # Still keep-alive towards the client.
        c.send(b"GET /hello HTTP/1.1\r\nHost: test\r\n\r\n")
        assert c.read_response().body == b"hello\n"


def test_origin_date_server_and_length_are_levees(proxied):
    lv, o = proxied
    o.set("/api/d", Reply(200, b"12345", [("Server", "origin/1.0"), ("Date", "Thu, 01 Jan 1970 00:00:00 GMT")]))
    with HttpConn(lv.port) as c:
        c.send(b"GET /api/d HTTP/1.1\r\nHost: test\r\n\r\n")
        r = c.read_response()
    assert r.header_all("Server") == ["levee"]
    assert len(r.header_all("Date")) == 1 and "1970" not in r.header("Date")
    assert r.header_all("Content-Length") == ["5"]


def test_post_body_is_forwarded(proxied):
    lv, o = proxied
    o.set("/api/orders", lambda req: Reply(201, b"got " + req.body, {"Location": "/api/orders/1"}))
    body = b'{"item": "ticket", "qty": 2}'
    r = requests.post(lv.url + "/api/orders", data=body, headers={"Content-Type": "application/json"},
                      timeout=10)
    assert r.status_code == 201
    assert r.content == b"got " + body
    assert r.headers["Location"] == "/api/orders/1"
    seen = o.last()
    assert seen.method == "POST"
    assert seen.body == body
    assert seen.header("Content-Length") == str(len(body))
    assert seen.header("Content-Type") == "application/json"


def test_other_methods_are_forwarded(proxied):
    lv, o = proxied
    for method in ("PUT", "DELETE", "PATCH", "OPTIONS"):
        r = requests.request(method, lv.url + "/api/m", data=b"d" if method != "DELETE" else None, timeout=10)
        assert r.status_code == 200, method
        assert o.last().method == method


def test_head_is_forwarded_as_head(proxied):
    lv, o = proxied
    o.set("/api/h", Reply(200, b"0123456789"))
    r = requests.head(lv.url + "/api/h", timeout=10)
    assert r.status_code == 200
    assert r.content == b""
    assert o.last().method == "HEAD"


def test_origin_status_and_headers_pass_through(proxied):
    lv, o = proxied
    o.set("/api/missing", Reply(404, b"nope\n", {"X-Why": "not here"}))
    o.set("/api/broken", Reply(500, b"boom\n"))
    r = requests.get(lv.url + "/api/missing", timeout=10)
    assert r.status_code == 404 and r.content == b"nope\n" and r.headers["X-Why"] == "not here"
    r = requests.get(lv.url + "/api/broken", timeout=10)
    assert r.status_code == 500 and r.content == b"boom\n"


def test_origin_204_and_304_have_no_body(proxied):
    lv, o = proxied
    o.set("/api/nc", Reply(204))
    o.set("/api/nm", Reply(304, headers={"ETag": '"v1"'}))
    with HttpConn(lv.port) as c:
        c.send(b"GET /api/nc HTTP/1.1\r\nHost: t\r\n\r\nGET /api/nm HTTP/1.1\r\nHost: t\r\n\r\n"
               b"GET /hello HTTP/1.1\r\nHost: t\r\n\r\n")
        a, b, h = c.read_response(), c.read_response(), c.read_response()
    assert a.status == 204 and a.body == b""
    assert b.status == 304 and b.header("ETag") == '"v1"'
    assert h.body == b"hello\n"


def test_large_answer_passes_through(proxied):
    lv, o = proxied
    big = bytes(range(256)) * 8192  # 2 MiB
    o.set("/api/big", Reply(200, big))
    r = requests.get(lv.url + "/api/big", timeout=30)
    assert r.status_code == 200
    assert r.content == big
    lv.stop()  # the exit checks (sanitizer report) belong to this test


# ---- how answers are read ----

def test_chunked_origin_answer_is_delivered_whole(levee, raw_origin):
    o = raw_origin(ChunkedOrigin)
    lv = levee(proxy_config(o.url))
    with requests.Session() as s:
        for _ in range(3):  # over one keep-alive origin connection
            r = s.get(lv.url + "/api/c", timeout=10)
            assert r.status_code == 200
            assert r.content == ChunkedOrigin.BODY
            assert r.headers["Content-Length"] == str(len(ChunkedOrigin.BODY))
            assert "Transfer-Encoding" not in r.headers
    assert o.requests == 3
    lv.stop()  # the exit checks (sanitizer report) belong to this test


def test_chunked_scripted_origin(proxied):
    lv, o = proxied
    o.set("/api/ch", Reply(200, b"a" * 1000 + b"b" * 1000, chunked=True, chunk_size=333))
    r = requests.get(lv.url + "/api/ch", timeout=10)
    assert r.content == b"a" * 1000 + b"b" * 1000


def test_answer_delimited_by_close(levee, raw_origin):
    o = raw_origin(UntilCloseOrigin)
    lv = levee(proxy_config(o.url))
    r = requests.get(lv.url + "/api/u", timeout=20)
    assert r.status_code == 200
    assert r.content == b"body until close"
    lv.stop()  # the exit checks (sanitizer report) belong to this test


# Regression test for a bug this suite found (fixed in abd7974): client.c
# uconn_read stops at a short read (readable = false) and on_uconn_io ignores LV_IO_HUP, so when
# the origin's FIN arrives in the same segment as its last bytes the EOF is never read: an until-
# close answer, or an answer cut short, waits for the origin timeout and ends as 504 instead of
# 200 / 502
def test_answer_delimited_by_close_with_fin_in_same_segment(levee, raw_origin):
    o = raw_origin(UntilCloseWithFinOrigin)
    lv = levee(proxy_config(o.url, origin_opts=", timeout: 2s"))
    r = requests.get(lv.url + "/api/u", timeout=20)
    assert (r.status_code, r.content) == (200, b"body until close")
    lv.stop()  # the exit checks (sanitizer report) belong to this test


def canned(raw_origin, answer):
    o = raw_origin(CannedOrigin)
    o.ANSWER = answer
    return o


def test_interim_100_from_origin_is_skipped(levee, raw_origin):
    o = canned(raw_origin, b"HTTP/1.1 100 Continue\r\n\r\n"
                           b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Final: yes\r\n\r\nfinal")
    lv = levee(proxy_config(o.url))
    r = requests.get(lv.url + "/api/i", timeout=10)
    assert r.status_code == 200
    assert r.content == b"final"
    assert r.headers["X-Final"] == "yes"


def test_expect_is_not_forwarded(proxied):
    lv, o = proxied
    with HttpConn(lv.port) as c:
        c.send(b"POST /api/e HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n")
        assert c.read_response().status == 100
        c.send(b"abc")
        assert c.read_response().status == 200
    seen = o.last("/api/e")
    assert seen.body == b"abc"
    assert not seen.has_header("Expect")


# ---- failures ----

@pytest.mark.parametrize("answer", [
    b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n",
    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nX-Big: " + b"h" * 100000 + b"\r\nContent-Length: 0\r\n\r\n",
], ids=["cl_and_te", "two_lengths", "bad_chunk", "switching_protocols", "huge_header"])
def test_malformed_origin_answer_is_502(levee, raw_origin, answer):
    o = canned(raw_origin, answer)
    lv = levee(proxy_config(o.url, origin_opts=", timeout: 5s"))
    r = requests.get(lv.url + "/api/m", timeout=20)
    assert r.status_code == 502
    assert requests.get(lv.url + "/hello", timeout=10).status_code == 200


def test_origin_refused_is_502(levee):
    lv = levee(proxy_config("http://127.0.0.1:%d" % refused_port()))
    r = requests.get(lv.url + "/api/x", timeout=10)
    assert r.status_code == 502
    assert requests.get(lv.url + "/hello", timeout=10).status_code == 200


# Regression test for an ASan-only bug this suite found (fixed in abd7974):
# client.c on_uconn_timer (response-timeout branch) calls uconn_close(uc), which frees uc, then
# logs uc->pool->u->name (line 167): every origin timeout (504) is a use after free; the plain
# build crashed with SIGSEGV in one run
def test_origin_that_never_answers_is_504_after_timeout(levee, raw_origin):
    o = raw_origin(SilentOrigin)
    lv = levee(proxy_config(o.url, origin_opts=", timeout: 1s"))
    start = time.monotonic()
    r = requests.get(lv.url + "/api/x", timeout=20)
    elapsed = time.monotonic() - start
    assert r.status_code == 504
    assert elapsed >= 0.9  # not before the timeout
    assert requests.get(lv.url + "/hello", timeout=10).status_code == 200
    lv.stop()  # the exit checks (sanitizer report) belong to this test


# Regression test for an ASan-only bug this suite found (fixed in abd7974):
# client.c uconn_read reads uc->req (line 376) after parse_answer, but parse_answer may have freed
# uc: response_done closes a connection that is not reusable (origin sent Connection: close, or
# the pool gives the slot to another loop's waiter) and request_failed closes it on a bad answer
def test_garbage_from_origin_is_502_for_that_request_only(levee, origin, raw_origin):
    bad = raw_origin(GarbageOrigin)
    good = origin()
    lv = levee(f"""
        origins:
          bad: {{ url: {bad.url} }}
          good: {{ url: {good.url} }}
        routes:
          - match: GET /bad
            origin: bad
          - match: GET /good
            origin: good
        """)
    with requests.Session() as s:
        assert s.get(lv.url + "/bad", timeout=10).status_code == 502
        r = s.get(lv.url + "/good", timeout=10)
        assert r.status_code == 200 and r.content == b"ok\n"
        assert s.get(lv.url + "/bad", timeout=10).status_code == 502
        assert s.get(lv.url + "/good", timeout=10).status_code == 200
    lv.stop()  # the exit checks (sanitizer report) belong to this test


def test_origin_closing_mid_answer_is_502(levee, raw_origin):
    o = raw_origin(CloseMidAnswerOrigin)
    lv = levee(proxy_config(o.url))
    r = requests.get(lv.url + "/api/x", timeout=10)
    assert r.status_code == 502
    assert b"0123456789" not in r.content  # the partial body is never passed on
    assert requests.get(lv.url + "/hello", timeout=10).status_code == 200


# Regression test for a bug this suite found (fixed in abd7974): client.c
# uconn_read stops at a short read (readable = false) and on_uconn_io ignores LV_IO_HUP, so when
# the origin's FIN arrives in the same segment as its last bytes the EOF is never read: an until-
# close answer, or an answer cut short, waits for the origin timeout and ends as 504 instead of
# 200 / 502
def test_origin_closing_mid_answer_with_fin_in_same_segment_is_502(levee, raw_origin):
    o = raw_origin(CloseMidAnswerWithFinOrigin)
    lv = levee(proxy_config(o.url, origin_opts=", timeout: 2s"))
    r = requests.get(lv.url + "/api/x", timeout=20)
    assert r.status_code == 502
    lv.stop()  # the exit checks (sanitizer report) belong to this test


def test_origin_error_answer_keeps_client_connection(levee):
    lv = levee(proxy_config("http://127.0.0.1:%d" % refused_port()))
    with HttpConn(lv.port) as c:
        c.send(b"GET /api/x HTTP/1.1\r\nHost: t\r\n\r\n")
        assert c.read_response().status == 502
        c.send(b"GET /hello HTTP/1.1\r\nHost: t\r\n\r\n")
        assert c.read_response().status == 200


# Regression test for an ASan-only bug this suite found (fixed in abd7974):
# client.c uconn_read reads uc->req (line 376) after parse_answer, but parse_answer may have freed
# uc: response_done closes a connection that is not reusable (origin sent Connection: close, or
# the pool gives the slot to another loop's waiter) and request_failed closes it on a bad answer
def test_origin_that_closes_after_each_answer(proxied):
    lv, o = proxied
    o.set("/api/c", Reply(200, b"one-shot", {"Connection": "close"}))
    with requests.Session() as s:
        for _ in range(5):
            r = s.get(lv.url + "/api/c", timeout=10)
            assert r.status_code == 200 and r.content == b"one-shot"
    assert o.connections >= 5
    lv.stop()  # the exit checks (sanitizer report) belong to this test


def test_origin_closing_idle_connections_is_survived(levee, origin):
    o = origin()
    lv = levee(proxy_config(o.url))
    with requests.Session() as s:
        assert s.get(lv.url + "/api/a", timeout=10).status_code == 200
        # Drop every origin connection levee holds idle, as a restarted origin would.
        with o.lock:
            conns = list(o.conns)
        for c in conns:
            c.shutdown(socket.SHUT_RDWR)
        time.sleep(0.2)
        for _ in range(3):
            r = s.get(lv.url + "/api/a", timeout=10)
            assert r.status_code == 200


# ---- pooling ----

def _max_conns_run(levee, origin, threads, n):
    o = origin()
    o.set("/api/slow", status=200, body=b"slow\n", delay=0.3)
    lv = levee("threads: %d\n" % threads + proxy_config(o.url, origin_opts=", max_conns: 2"))

    def call(_):
        r = requests.get(lv.url + "/api/slow", timeout=30)
        return r.status_code, r.content

    with concurrent.futures.ThreadPoolExecutor(n) as pool:
        results = list(pool.map(call, range(n)))
    assert results == [(200, b"slow\n")] * n
    assert o.count("/api/slow") == n
    assert o.max_in_flight <= 2
    assert o.max_busy_conns() <= 2
    assert o.connections >= 2
    lv.stop()  # the exit checks (sanitizer report) belong to this test


def test_max_conns_bounds_origin_connections_one_loop(levee, origin):
    _max_conns_run(levee, origin, threads=1, n=10)


# Regression test for an ASan-only bug this suite found (fixed in abd7974):
# client.c uconn_read reads uc->req (line 376) after parse_answer, but parse_answer may have freed
# uc: response_done closes a connection that is not reusable (origin sent Connection: close, or
# the pool gives the slot to another loop's waiter) and request_failed closes it on a bad answer
# (here: a connection released on one loop while the other has waiters)
def test_max_conns_bounds_origin_connections(levee, origin):
    # Two loops share the budget of 2: connections move between them.
    _max_conns_run(levee, origin, threads=2, n=20)


def test_keepalive_connections_to_origin_are_reused(proxied):
    lv, o = proxied
    with requests.Session() as s:
        for _ in range(30):
            assert s.get(lv.url + "/api/k", timeout=10).status_code == 200
    assert o.count("/api/k") == 30
    assert o.connections <= 2


def test_concurrent_clients_all_get_their_own_answer(proxied):
    lv, o = proxied
    o.set("/api/id/", lambda req: Reply(200, req.path.encode(), delay=0.01))

    def call(i):
        return requests.get(lv.url + "/api/id/%d" % i, timeout=30).content

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        results = list(pool.map(call, range(64)))
    assert results == [b"/api/id/%d" % i for i in range(64)]


def test_slow_reader_gets_a_large_answer_whole(proxied):
    lv, o = proxied
    big = bytes(range(256)) * 16384  # 4 MiB: more than the socket buffers hold
    o.set("/api/big", Reply(200, big))
    with HttpConn(lv.port, timeout=30) as c:
        c.send(b"GET /api/big HTTP/1.1\r\nHost: t\r\n\r\n")
        time.sleep(1.0)  # levee's writes hit a full socket meanwhile
        r = c.read_response(timeout=30)
    assert r.status == 200
    assert r.body == big


def test_waiting_for_a_busy_origin_is_bounded(levee, origin):
    # max_conns 1 and a slow origin: requests queued for the connection give
    # up after request_timeout with 503, the one being served completes.
    o = origin()
    o.set("/api/slow", status=200, body=b"slow\n", delay=2.0)
    lv = levee("threads: 1\nlimits: { request_timeout: 1s }\n" +
               proxy_config(o.url, origin_opts=", max_conns: 1, timeout: 10s"))

    def call(_):
        return requests.get(lv.url + "/api/slow", timeout=30).status_code

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        statuses = sorted(pool.map(call, range(4)))
    assert statuses[0] == 200
    assert 503 in statuses
    assert o.max_in_flight == 1
