"""test_routes.py: routing and the fixed targets: respond (status, body,
headers, HEAD), 404/405, ANY, which route wins, and redirect tables."""

import subprocess

import pytest
import requests

ROUTES = """
routes:
  - match: GET /hello
    respond: { status: 200, body: "hello from levee\\n", headers: { content-type: text/plain, x-custom: "yes" } }
  - match: POST /hello
    respond: { status: 201, body: "created\\n" }
  - match: PUT /teapot
    respond: { status: 418, body: "short and stout\\n" }
  - match: GET /empty
    respond: { status: 204 }
  - match: ANY /any
    respond: { body: "any method\\n" }
  - match: GET /users/me
    respond: { body: "literal\\n" }
  - match: GET /users/{id}
    respond: { body: "param\\n" }
  - match: GET /users/*
    respond: { body: "star\\n" }
  - match: GET /users/{id}/orders
    respond: { body: "orders\\n" }
  - match: GET /r/{code}
    redirect: { table: ./qr.csv }
  - match: GET /m/{code}
    redirect: { table: ./qr.csv, missing: "https://example.com/missing" }
  - match: GET /p/{code}
    redirect: { table: ./qr.csv, status: 301 }
  - match: GET /t/{code}
    redirect: { table: ./qr.csv, status: 307 }
"""

QR = """code,url
tv-ad-2026,https://shop.example.com/landing?src=tv
flyer,https://shop.example.com/landing?src=flyer
local,/welcome
"""


@pytest.fixture
def app(levee):
    return levee(ROUTES, files={"qr.csv": QR})


def get(app, path, **kw):
    kw.setdefault("timeout", 10)
    kw.setdefault("allow_redirects", False)
    return requests.get(app.url + path, **kw)


def test_respond_status_body_and_headers(app):
    r = get(app, "/hello")
    assert r.status_code == 200
    assert r.content == b"hello from levee\n"
    assert r.headers["Content-Type"] == "text/plain"
    assert r.headers["X-Custom"] == "yes"
    assert r.headers["Content-Length"] == str(len(b"hello from levee\n"))
    assert r.headers["Server"] == "levee"
    assert "Date" in r.headers


def test_respond_other_method_and_status(app):
    r = requests.post(app.url + "/hello", data=b"ignored", timeout=10)
    assert r.status_code == 201
    assert r.content == b"created\n"
    r = requests.put(app.url + "/teapot", timeout=10)
    assert r.status_code == 418
    assert r.content == b"short and stout\n"


def test_respond_204_has_no_body_or_length(app):
    r = get(app, "/empty")
    assert r.status_code == 204
    assert r.content == b""
    assert "Content-Length" not in r.headers


def test_head_on_get_route_has_no_body_and_same_length(app):
    g = get(app, "/hello")
    h = requests.head(app.url + "/hello", timeout=10)
    assert h.status_code == 200
    assert h.content == b""
    assert h.headers["Content-Length"] == g.headers["Content-Length"]
    assert h.headers["X-Custom"] == "yes"


def test_no_route_is_404(app):
    r = get(app, "/nothing/here")
    assert r.status_code == 404
    assert r.content == b"404 Not Found\n"


def test_wrong_method_is_405_with_allow(app):
    r = requests.delete(app.url + "/hello", timeout=10)
    assert r.status_code == 405
    allow = [m.strip() for m in r.headers["Allow"].split(",")]
    assert set(allow) >= {"GET", "HEAD", "POST"}
    assert "DELETE" not in allow


def test_any_accepts_every_method(app):
    for method in ("GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "PURGE"):
        r = requests.request(method, app.url + "/any", timeout=10)
        assert r.status_code == 200, method
        assert r.content == b"any method\n", method


def test_literal_beats_param_beats_star(app):
    assert get(app, "/users/me").content == b"literal\n"
    assert get(app, "/users/42").content == b"param\n"
    assert get(app, "/users/42/orders").content == b"orders\n"
    assert get(app, "/users/42/other").content == b"star\n"
    assert get(app, "/users/").content == b"star\n"


def test_query_string_does_not_affect_routing(app):
    r = get(app, "/hello?x=1&y=2")
    assert r.status_code == 200
    assert r.content == b"hello from levee\n"


def test_paths_are_matched_case_sensitively(app):
    assert get(app, "/HELLO").status_code == 404


def test_redirect_hit_is_302_with_location(app):
    r = get(app, "/r/tv-ad-2026")
    assert r.status_code == 302
    assert r.headers["Location"] == "https://shop.example.com/landing?src=tv"
    assert r.content == b""
    r = get(app, "/r/local")
    assert r.status_code == 302
    assert r.headers["Location"] == "/welcome"


def test_redirect_unknown_code_goes_to_missing(app):
    r = get(app, "/m/unknown-code")
    assert r.status_code == 302
    assert r.headers["Location"] == "https://example.com/missing"
    assert get(app, "/m/flyer").headers["Location"] == "https://shop.example.com/landing?src=flyer"


def test_redirect_unknown_code_without_missing_is_404(app):
    r = get(app, "/r/unknown-code")
    assert r.status_code == 404
    assert "Location" not in r.headers


def test_redirect_codes_are_case_sensitive(app):
    assert get(app, "/r/TV-AD-2026").status_code == 404


def test_redirect_status_301_and_307(app):
    r = get(app, "/p/flyer")
    assert r.status_code == 301
    assert r.headers["Location"] == "https://shop.example.com/landing?src=flyer"
    r = get(app, "/t/flyer")
    assert r.status_code == 307
    assert r.headers["Location"] == "https://shop.example.com/landing?src=flyer"


def test_redirect_head_request(app):
    r = requests.head(app.url + "/r/flyer", timeout=10, allow_redirects=False)
    assert r.status_code == 302
    assert r.headers["Location"] == "https://shop.example.com/landing?src=flyer"


def test_redirect_with_query_string_uses_the_code(app):
    r = get(app, "/r/flyer?utm=1")
    assert r.status_code == 302
    assert r.headers["Location"] == "https://shop.example.com/landing?src=flyer"


def test_many_redirects_on_one_session(app):
    with requests.Session() as s:
        for i in range(50):
            code = ("tv-ad-2026", "flyer", "nope")[i % 3]
            r = s.get(app.url + "/r/" + code, allow_redirects=False, timeout=10)
            assert r.status_code == (404 if code == "nope" else 302)


def test_curl_respond(app):
    out = subprocess.run(["curl", "-si", "--max-time", "10", app.url + "/hello"], capture_output=True,
                         timeout=20).stdout
    head, _, body = out.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"\r\nx-custom: yes" in head
    assert body == b"hello from levee\n"


def test_curl_redirect_follow(app):
    # curl follows to a relative Location on the same server: /r/local -> /welcome (404 here).
    out = subprocess.run(["curl", "-sL", "-o", "/dev/null", "-w", "%{http_code} %{num_redirects}",
                          "--max-time", "10", app.url + "/r/local"], capture_output=True, timeout=20)
    assert out.stdout == b"404 1"
