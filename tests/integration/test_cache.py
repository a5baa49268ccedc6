"""test_cache.py: the micro-cache on origin routes: MISS/HIT and Age, what
is stored (route ttl, Cache-Control, no-store/private, Set-Cookie,
statuses), the key (query string), HEAD, stale-while-revalidate,
stale-if-error, coalescing of concurrent misses and hit-for-miss."""

import threading
import time

import pytest
import requests

from conftest import HttpConn
from origins import Reply


def versioned(o, headers=None, status=200, delay=0.0):
    """A handler answering "<path> v<N>", N counting that path's requests."""
    def handler(req):
        return Reply(status, ("%s v%d" % (req.path, o.count(req.path))).encode(), dict(headers or {}),
                     delay=delay)
    return handler


def cached_app(levee, o, cache="{ ttl: 30s }", extra=""):
    return levee(f"""
        origins:
          up: {{ url: {o.url}, timeout: 10s }}
        routes:
          - match: GET /c/*
            origin: up
            cache: {cache}
          - match: GET /plain/*
            origin: up
{extra}
        """)


def raw_get(lv, path, method="GET"):
    """A request with the Host that requests.get sends, so both share cache keys."""
    return ("%s %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n" % (method, path, lv.port)).encode()


def get(lv, path, **kw):
    kw.setdefault("timeout", 20)
    return requests.get(lv.url + path, **kw)


def concurrent_get(port, path, n, timeout=30):
    """n requests for path on n connections, all opened first and then sent
    from one thread in a burst, so they reach levee within milliseconds.
    Returns the answers in order."""
    conns = [HttpConn(port, timeout=timeout) for _ in range(n)]
    try:
        data = ("GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n" % (path, port)).encode()
        for c in conns:
            c.send(data)
        return [c.read_response(timeout=timeout) for c in conns]
    finally:
        for c in conns:
            c.close()


# ---- MISS, HIT, Age ----

def test_miss_then_hit_with_age(levee, origin):
    o = origin()
    o.set("/c/", versioned(o))
    lv = cached_app(levee, o)
    r1 = get(lv, "/c/a")
    assert r1.status_code == 200
    assert r1.headers["X-Cache"] == "MISS"
    assert r1.content == b"/c/a v1"
    r2 = get(lv, "/c/a")
    assert r2.headers["X-Cache"] == "HIT"
    assert r2.content == b"/c/a v1"
    age0 = int(r2.headers["Age"])
    assert age0 >= 0
    time.sleep(1.2)
    r3 = get(lv, "/c/a")
    assert r3.headers["X-Cache"] == "HIT"
    assert int(r3.headers["Age"]) >= 1 and int(r3.headers["Age"]) > age0
    assert o.count("/c/a") == 1


def test_hit_keeps_origin_headers(levee, origin):
    o = origin()
    o.set("/c/", Reply(200, b"{}", {"Content-Type": "application/json", "ETag": '"abc"', "X-Origin": "1"}))
    lv = cached_app(levee, o)
    get(lv, "/c/h")
    r = get(lv, "/c/h")
    assert r.headers["X-Cache"] == "HIT"
    assert r.headers["Content-Type"] == "application/json"
    assert r.headers["ETag"] == '"abc"'
    assert r.headers["X-Origin"] == "1"
    assert r.headers["Content-Length"] == "2"
    assert len(r.raw.headers.getlist("X-Cache")) == 1


def test_ttl_expiry_refetches(levee, origin):
    o = origin()
    o.set("/c/", versioned(o))
    lv = cached_app(levee, o, "{ ttl: 1s }")
    assert get(lv, "/c/t").content == b"/c/t v1"
    time.sleep(1.3)
    r = get(lv, "/c/t")
    assert r.headers["X-Cache"] == "MISS"
    assert r.content == b"/c/t v2"


def test_uncached_route_has_no_x_cache(levee, origin):
    o = origin()
    lv = cached_app(levee, o)
    r = get(lv, "/plain/x")
    assert r.status_code == 200
    assert "X-Cache" not in r.headers


def test_post_on_a_cached_route_is_not_cached(levee, origin):
    o = origin()
    o.set("/c/", versioned(o))
    lv = levee(f"""
        routes:
          - match: ANY /c/*
            origin: {o.url}
            cache: {{ ttl: 30s }}
        """)
    for i in range(1, 3):
        r = requests.post(lv.url + "/c/p", data=b"x", timeout=20)
        assert r.content == b"/c/p v%d" % i
    assert get(lv, "/c/p").content == b"/c/p v3"  # the POSTs filled nothing
    assert o.count("/c/p") == 3


# ---- what is stored ----

def test_origin_max_age_is_honoured_without_route_ttl(levee, origin):
    o = origin()
    o.set("/c/", versioned(o, {"Cache-Control": "public, max-age=60"}))
    lv = cached_app(levee, o, "{}")
    assert get(lv, "/c/m").headers["X-Cache"] == "MISS"
    r = get(lv, "/c/m")
    assert r.headers["X-Cache"] == "HIT"
    assert r.content == b"/c/m v1"
    assert o.count("/c/m") == 1


def test_origin_s_maxage_wins_over_max_age(levee, origin):
    o = origin()
    o.set("/c/", versioned(o, {"Cache-Control": "max-age=60, s-maxage=1"}))
    lv = cached_app(levee, o, "{}")
    get(lv, "/c/s")
    assert get(lv, "/c/s").headers["X-Cache"] == "HIT"
    time.sleep(1.3)
    assert get(lv, "/c/s").content == b"/c/s v2"


def test_no_cache_control_and_no_route_ttl_is_not_stored(levee, origin):
    o = origin()
    o.set("/c/", versioned(o))
    lv = cached_app(levee, o, "{}")
    for i in range(1, 4):
        r = get(lv, "/c/n")
        assert r.content == b"/c/n v%d" % i
        assert r.headers["X-Cache"] == "MISS"


@pytest.mark.parametrize("cc", ["no-store", "private", "private, max-age=60", "no-store, max-age=60"])
def test_no_store_and_private_are_never_stored(levee, origin, cc):
    o = origin()
    o.set("/c/", versioned(o, {"Cache-Control": cc}))
    lv = cached_app(levee, o, "{ ttl: 30s }")  # even with a route ttl
    for i in range(1, 4):
        r = get(lv, "/c/p")
        assert r.content == b"/c/p v%d" % i
        assert r.headers["X-Cache"] == "MISS"
        assert r.headers["Cache-Control"] == cc


def test_no_cache_is_overridden_by_route_ttl(levee, origin):
    o = origin()
    o.set("/c/", versioned(o, {"Cache-Control": "no-cache"}))
    lv = cached_app(levee, o, "{ ttl: 30s }")
    get(lv, "/c/nc")
    assert get(lv, "/c/nc").headers["X-Cache"] == "HIT"


def test_set_cookie_is_not_stored(levee, origin):
    o = origin()
    o.set("/c/", versioned(o, {"Set-Cookie": "session=abc"}))
    lv = cached_app(levee, o, "{ ttl: 30s }")
    for i in range(1, 4):
        r = get(lv, "/c/sc")
        assert r.content == b"/c/sc v%d" % i
        assert r.headers["X-Cache"] == "MISS"


def test_set_cookie_stored_when_allowed(levee, origin):
    o = origin()
    o.set("/c/", versioned(o, {"Set-Cookie": "theme=dark"}))
    lv = cached_app(levee, o, "{ ttl: 30s, cache_set_cookie: true }")
    get(lv, "/c/sc")
    r = get(lv, "/c/sc")
    assert r.headers["X-Cache"] == "HIT"
    assert r.headers["Set-Cookie"] == "theme=dark"


def test_404_is_not_stored_by_default(levee, origin):
    o = origin()
    o.set("/c/", versioned(o, status=404))
    lv = cached_app(levee, o, "{ ttl: 30s }")
    for i in range(1, 4):
        r = get(lv, "/c/x")
        assert r.status_code == 404
        assert r.content == b"/c/x v%d" % i


def test_404_stored_when_in_statuses(levee, origin):
    o = origin()
    o.set("/c/", versioned(o, status=404))
    lv = cached_app(levee, o, "{ ttl: 30s, statuses: [200, 404] }")
    get(lv, "/c/x")
    r = get(lv, "/c/x")
    assert r.status_code == 404
    assert r.headers["X-Cache"] == "HIT"
    assert r.content == b"/c/x v1"


def test_500_is_not_stored(levee, origin):
    o = origin()
    o.set("/c/", versioned(o, status=500))
    lv = cached_app(levee, o, "{ ttl: 30s }")
    assert get(lv, "/c/e").content == b"/c/e v1"
    assert get(lv, "/c/e").content == b"/c/e v2"


def test_vary_star_is_not_stored(levee, origin):
    o = origin()
    o.set("/c/", versioned(o, {"Vary": "*"}))
    lv = cached_app(levee, o, "{ ttl: 30s }")
    get(lv, "/c/v")
    assert get(lv, "/c/v").content == b"/c/v v2"


# ---- the key ----

def test_query_string_is_part_of_the_key(levee, origin):
    o = origin()
    o.set("/c/", lambda req: Reply(200, req.target.encode()))
    lv = cached_app(levee, o)
    assert get(lv, "/c/q?a=1").content == b"/c/q?a=1"
    assert get(lv, "/c/q?a=2").content == b"/c/q?a=2"
    assert get(lv, "/c/q").content == b"/c/q"
    r = get(lv, "/c/q?a=1")
    assert r.headers["X-Cache"] == "HIT" and r.content == b"/c/q?a=1"
    assert get(lv, "/c/q?a=2").headers["X-Cache"] == "HIT"
    assert o.count("/c/q") == 3


def test_path_is_case_sensitive_in_the_key(levee, origin):
    o = origin()
    o.set("/c/", lambda req: Reply(200, req.path.encode()))
    lv = cached_app(levee, o)
    assert get(lv, "/c/Item").content == b"/c/Item"
    assert get(lv, "/c/item").content == b"/c/item"


# ---- HEAD ----

def test_head_served_from_entry_filled_by_get(levee, origin):
    o = origin()
    o.set("/c/", versioned(o))
    lv = cached_app(levee, o)
    g = get(lv, "/c/hd")
    h = requests.head(lv.url + "/c/hd", timeout=20)
    assert h.status_code == 200
    assert h.headers["X-Cache"] == "HIT"
    assert h.content == b""
    assert h.headers["Content-Length"] == g.headers["Content-Length"]
    assert o.count("/c/hd") == 1


def test_head_fill_then_get_hit(levee, origin):
    o = origin()
    o.set("/c/", versioned(o))
    lv = cached_app(levee, o)
    h = requests.head(lv.url + "/c/hf", timeout=20)
    assert h.status_code == 200
    assert h.content == b""
    assert h.headers["Content-Length"] == str(len(b"/c/hf v1"))
    assert o.last("/c/hf").method == "GET"  # the fill fetches the full answer
    g = get(lv, "/c/hf")
    assert g.headers["X-Cache"] == "HIT"
    assert g.content == b"/c/hf v1"
    assert o.count("/c/hf") == 1


def test_conditional_request_headers_are_not_sent_on_fill(levee, origin):
    o = origin()
    o.set("/c/", versioned(o))
    lv = cached_app(levee, o)
    r = get(lv, "/c/cond", headers={"If-None-Match": '"x"', "Range": "bytes=0-1"})
    assert r.status_code == 200
    seen = o.last("/c/cond")
    assert not seen.has_header("If-None-Match")
    assert not seen.has_header("Range")


# ---- stale while revalidate ----

def test_stale_while_revalidate_serves_old_copy_and_refreshes_once(levee, origin):
    o = origin()
    fills = {"delay": 0.0}

    def handler(req):
        n = o.count(req.path)
        return Reply(200, b"copy %d" % n, delay=fills["delay"])

    o.set("/c/", handler)
    lv = cached_app(levee, o, "{ ttl: 1s, stale_while_revalidate: 30s }")
    assert get(lv, "/c/swr").content == b"copy 1"
    fills["delay"] = 2.0  # the refresh is slow; nobody may wait for it
    time.sleep(1.3)
    start = time.monotonic()
    r = get(lv, "/c/swr")
    took = time.monotonic() - start
    assert r.status_code == 200
    assert r.headers["X-Cache"] == "UPDATING"
    assert r.content == b"copy 1"
    assert took < 1.5, "the request waited for the refresh"
    # While the refresh runs, others get the stale copy too, and start no fetch.
    for _ in range(5):
        r = get(lv, "/c/swr")
        assert r.headers["X-Cache"] == "UPDATING" and r.content == b"copy 1"
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        r = get(lv, "/c/swr")
        if r.headers["X-Cache"] == "HIT":
            break
        time.sleep(0.2)
    assert r.headers["X-Cache"] == "HIT"
    assert r.content == b"copy 2"
    assert o.count("/c/swr") == 2  # exactly one refresh


def test_stale_while_revalidate_from_cache_control(levee, origin):
    o = origin()
    o.set("/c/", versioned(o, {"Cache-Control": "max-age=1, stale-while-revalidate=30"}))
    lv = cached_app(levee, o, "{}")
    get(lv, "/c/s")
    time.sleep(1.3)
    r = get(lv, "/c/s")
    assert r.headers["X-Cache"] == "UPDATING"
    assert r.content == b"/c/s v1"


# ---- stale if error ----

def test_stale_if_error_serves_stale_when_origin_is_down(levee, origin):
    o = origin()
    o.set("/c/", versioned(o))
    lv = cached_app(levee, o, "{ ttl: 1s, stale_if_error: 60s }")
    assert get(lv, "/c/sie").content == b"/c/sie v1"
    o.stop()
    time.sleep(1.3)
    for _ in range(2):  # the copy is kept: the next failure uses it too
        r = get(lv, "/c/sie")
        assert r.status_code == 200
        assert r.headers["X-Cache"] == "STALE"
        assert r.content == b"/c/sie v1"


def test_stale_if_error_on_origin_5xx_is_not_an_error(levee, origin):
    # An origin 500 is an answer, not a failure: it is passed on, not replaced.
    o = origin()
    state = {"status": 200}
    o.set("/c/", lambda req: Reply(state["status"], b"status %d" % state["status"]))
    lv = cached_app(levee, o, "{ ttl: 1s, stale_if_error: 60s }")
    get(lv, "/c/x")
    state["status"] = 500
    time.sleep(1.3)
    r = get(lv, "/c/x")
    assert r.status_code == 500


def test_without_stale_if_error_origin_down_is_502(levee, origin):
    o = origin()
    o.set("/c/", versioned(o))
    lv = cached_app(levee, o, "{ ttl: 1s }")
    assert get(lv, "/c/nosie").status_code == 200
    o.stop()
    time.sleep(1.3)
    r = get(lv, "/c/nosie")
    assert r.status_code == 502


# ---- coalescing ----

def test_concurrent_misses_are_coalesced_into_one_fetch(levee, origin):
    o = origin()
    o.set("/c/", versioned(o, delay=0.5))
    lv = cached_app(levee, o, "{ ttl: 60s }")
    answers = concurrent_get(lv.port, "/c/cold", 200)
    assert [a.status for a in answers] == [200] * 200
    assert {a.body for a in answers} == {b"/c/cold v1"}
    assert o.count("/c/cold") == 1
    kinds = [a.header("X-Cache") for a in answers]
    assert kinds.count("MISS") == 1


# Regression test for an ASan-only bug this suite found (fixed in abd7974):
# client.c uconn_read reads uc->req after parse_answer -> request_failed freed uc (garbage
# answer): heap-use-after-free at client.c:376
def test_coalesced_waiters_get_the_error_when_the_fill_fails(levee, raw_origin):
    from origins import GarbageOrigin
    o = raw_origin(GarbageOrigin)
    o.delay = 0.5  # every request of the burst arrives while the one fill runs
    lv = cached_app(levee, o, "{ ttl: 60s }")
    answers = concurrent_get(lv.port, "/c/bad", 20)
    assert [a.status for a in answers] == [502] * 20
    assert o.connections <= 2
    lv.stop()


def test_uncacheable_answer_under_concurrency_reaches_all_waiters_then_hit_for_miss(levee, origin):
    o = origin()
    o.set("/c/", versioned(o, {"Cache-Control": "no-store"}, delay=0.5))
    lv = cached_app(levee, o, "{ ttl: 60s }")
    # Wave 1: one fetch, the waiters get its answer.
    first = concurrent_get(lv.port, "/c/u", 10)
    assert [a.status for a in first] == [200] * 10
    assert all(a.body.startswith(b"/c/u v") for a in first)
    # Wave 2: the key is known uncacheable, so requests are not queued
    # behind one another: the origin sees them at the same time.
    with o.lock:
        o.max_in_flight = 0
    before = o.count("/c/u")
    start = time.monotonic()
    second = concurrent_get(lv.port, "/c/u", 10)
    elapsed = time.monotonic() - start
    assert [a.status for a in second] == [200] * 10
    assert o.count("/c/u") - before == 10
    assert o.max_in_flight >= 5, "uncacheable requests were serialised"
    assert elapsed < 10 * 0.5  # serialised would take 5 s


# Regression test for a bug this suite found (fixed in abd7974): coalescing
# hands one client's uncacheable answer to every concurrent waiter, even when it is private or
# sets a cookie (proxy.c serve_woken / cache.h LV_CACHE_WOKEN_NOT_STORED): the clients waiting on
# a fill get the first client's Set-Cookie session, the leak docs/cache.md says no-
# store/private/Set-Cookie rules exist to prevent
def test_private_answer_is_not_shared_with_concurrent_waiters(levee, origin):
    o = origin()
    sessions = iter(range(1, 1000))
    lock = threading.Lock()

    def handler(req):
        with lock:
            n = next(sessions)
        return Reply(200, b"account page %d" % n,
                     {"Cache-Control": "private", "Set-Cookie": "session=%d" % n}, delay=0.5)

    o.set("/c/", handler)
    lv = cached_app(levee, o, "{ ttl: 60s }")
    try:
        answers = concurrent_get(lv.port, "/c/account", 5)
        cookies = [a.header("Set-Cookie") for a in answers]
        assert len(set(cookies)) == 5, "one session cookie went to several clients: %s" % cookies
    finally:
        lv.stop()


def test_different_keys_are_not_coalesced(levee, origin):
    o = origin()
    o.set("/c/", versioned(o, delay=0.3))
    lv = cached_app(levee, o, "{ ttl: 60s }")
    results = {}

    def fetch(i):
        results[i] = get(lv, "/c/k%d" % i).content

    threads = [threading.Thread(target=fetch, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert results == {i: b"/c/k%d v1" % i for i in range(8)}


def test_waiters_that_hang_up_do_not_hurt(levee, origin):
    o = origin()
    o.set("/c/", versioned(o, delay=0.5))
    lv = cached_app(levee, o, "{ ttl: 60s }")
    conns = [HttpConn(lv.port) for _ in range(10)]
    for c in conns:
        c.send(raw_get(lv, "/c/gone"))
    time.sleep(0.1)
    for c in conns[1:]:
        c.close()  # gone while waiting for the fill
    r = conns[0].read_response(timeout=20)
    conns[0].close()
    assert r.status == 200 and r.body == b"/c/gone v1"
    assert get(lv, "/c/gone").headers["X-Cache"] == "HIT"
    assert o.count("/c/gone") == 1
    lv.stop()


def test_filler_that_hangs_up_still_fills(levee, origin):
    o = origin()
    o.set("/c/", versioned(o, delay=0.5))
    lv = cached_app(levee, o, "{ ttl: 60s }")
    c = HttpConn(lv.port)
    c.send(raw_get(lv, "/c/f"))
    time.sleep(0.1)
    c.close()
    time.sleep(0.8)
    r = get(lv, "/c/f")
    assert r.content == b"/c/f v1"
    assert o.count("/c/f") == 1
    lv.stop()


def test_head_waiter_on_a_get_fill_gets_no_body(levee, origin):
    o = origin()
    o.set("/c/", versioned(o, delay=0.5))
    lv = cached_app(levee, o, "{ ttl: 60s }")
    g = HttpConn(lv.port)
    h = HttpConn(lv.port)
    try:
        g.send(raw_get(lv, "/c/hw"))
        time.sleep(0.1)
        h.send(raw_get(lv, "/c/hw", "HEAD") + raw_get(lv, "/c/hw"))
        rg = g.read_response(timeout=20)
        rh = h.read_response(head_request=True, timeout=20)
        rg2 = h.read_response(timeout=20)  # proves the HEAD answer carried no body
    finally:
        g.close()
        h.close()
    assert rg.body == b"/c/hw v1"
    assert rh.status == 200 and rh.header("Content-Length") == str(len(b"/c/hw v1"))
    assert rg2.body == b"/c/hw v1"
    assert o.count("/c/hw") == 1


def test_too_big_to_store_is_served_not_stored(levee, origin):
    o = origin()
    big = b"z" * (200 * 1024)
    o.set("/c/", Reply(200, big))
    lv = levee(f"""
        cache: {{ max_bytes: 1MiB }}
        routes:
          - match: GET /c/*
            origin: {o.url}
            cache: {{ ttl: 60s }}
        """)
    for _ in range(3):
        r = get(lv, "/c/big")
        assert r.status_code == 200 and r.content == big
        assert r.headers["X-Cache"] == "MISS"
    assert o.count("/c/big") == 3


def test_host_is_part_of_the_key(levee, origin):
    o = origin()
    o.set("/c/", lambda req: Reply(200, ("%s %s" % (req.header("X-Forwarded-Host"), req.path)).encode()))
    lv = cached_app(levee, o)
    assert get(lv, "/c/h", headers={"Host": "a.example"}).content == b"a.example /c/h"
    assert get(lv, "/c/h", headers={"Host": "b.example"}).content == b"b.example /c/h"
    assert get(lv, "/c/h", headers={"Host": "a.example"}).headers["X-Cache"] == "HIT"


def test_refresh_failure_keeps_serving_stale(levee, origin):
    o = origin()
    o.set("/c/", versioned(o))
    lv = cached_app(levee, o, "{ ttl: 1s, stale_while_revalidate: 30s, stale_if_error: 60s }")
    assert get(lv, "/c/rf").content == b"/c/rf v1"
    o.stop()
    time.sleep(1.3)
    for _ in range(5):
        r = get(lv, "/c/rf")
        assert r.status_code == 200
        assert r.content == b"/c/rf v1"
        assert r.headers["X-Cache"] in ("UPDATING", "STALE")
        time.sleep(0.1)


def test_stale_if_error_reaches_every_coalesced_waiter(levee, origin):
    o = origin()
    o.set("/c/", versioned(o))
    lv = cached_app(levee, o, "{ ttl: 1s, stale_if_error: 60s }")
    assert get(lv, "/c/w").content == b"/c/w v1"
    o.stop()
    time.sleep(1.3)
    answers = concurrent_get(lv.port, "/c/w", 20)
    assert [(a.status, a.body) for a in answers] == [(200, b"/c/w v1")] * 20
    assert {a.header("X-Cache") for a in answers} == {"STALE"}
