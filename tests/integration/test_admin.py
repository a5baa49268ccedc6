"""test_admin.py: the admin listener: /metrics (valid Prometheus text with
the request, latency, cache, origin, connection and limit families, moving
with traffic), /status (JSON), other paths, and `admin: { listen: off }`."""

import os

import requests

from conftest import exchange, run_levee
from origins import refused_port
from prometheus_check import parse_prometheus, sample_value


def app_config(o_url, dead_url):
    return f"""
        limits: {{ max_body_bytes: 1KiB }}
        origins:
          up: {{ url: {o_url} }}
          dead: {{ url: {dead_url} }}
        routes:
          - match: GET /hello
            respond: {{ body: "hi\\n" }}
          - match: GET /c/*
            name: cached
            origin: up
            cache: {{ ttl: 30s }}
          - match: GET /dead
            origin: dead
          - match: ANY /up/*
            origin: up
        """


def scrape(lv):
    r = requests.get(lv.admin_url + "/metrics", timeout=10)
    assert r.status_code == 200
    assert r.headers["Content-Type"].startswith("text/plain")
    return parse_prometheus(r.text)


def value(fams, name, **labels):
    v = sample_value(fams, name, **labels)
    assert v is not None, "no sample %s%r" % (name, labels)
    return v


def listening_ports(pid):
    """TCP ports the process listens on, from /proc (no ss/netstat needed)."""
    inodes = set()
    for fd in os.listdir("/proc/%d/fd" % pid):
        try:
            target = os.readlink("/proc/%d/fd/%s" % (pid, fd))
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                next(f)
                for line in f:
                    cols = line.split()
                    if cols[3] == "0A" and cols[9] in inodes:  # LISTEN
                        ports.add(int(cols[1].rsplit(":", 1)[1], 16))
        except OSError:
            pass
    return ports


def test_metrics_is_valid_prometheus_with_the_main_families(levee, origin):
    o = origin()
    lv = levee(app_config(o.url, "http://127.0.0.1:%d" % refused_port()))
    requests.get(lv.url + "/hello", timeout=10)
    fams = scrape(lv)
    assert fams["levee_requests_total"]["type"] == "counter"
    assert fams["levee_request_duration_seconds"]["type"] == "histogram"
    for name in ("levee_connections_open", "levee_limit_hits_total", "levee_cache_requests_total",
                 "levee_origin_errors_total", "levee_origin_requests_total", "levee_cache_bytes"):
        assert name in fams, name
    for cls in ("1xx", "2xx", "3xx", "4xx", "5xx"):
        value(fams, "levee_requests_total", route="GET /hello", class_=cls)
        value(fams, "levee_requests_total", route="cached", class_=cls)
    for result in ("hit", "miss", "stale", "updating", "pass", "coalesced"):
        value(fams, "levee_cache_requests_total", result=result)
    for kind in ("refused", "timeout", "bad_response", "closed"):
        value(fams, "levee_origin_errors_total", origin="up", kind=kind)
        value(fams, "levee_origin_errors_total", origin="dead", kind=kind)
    for limit in ("bad_request", "max_header_bytes", "max_body_bytes", "header_timeout", "idle_timeout",
                  "max_connections"):
        value(fams, "levee_limit_hits_total", limit=limit)
    value(fams, "levee_request_duration_seconds_count", route="GET /hello")
    value(fams, "levee_request_duration_seconds_bucket", route="GET /hello", le="+Inf")


def test_counters_follow_traffic(levee, origin):
    o = origin()
    lv = levee(app_config(o.url, "http://127.0.0.1:%d" % refused_port()))
    before = scrape(lv)
    with requests.Session() as s:
        for _ in range(5):
            assert s.get(lv.url + "/hello", timeout=10).status_code == 200
        assert s.get(lv.url + "/nowhere", timeout=10).status_code == 404
        assert s.get(lv.url + "/c/x", timeout=10).headers["X-Cache"] == "MISS"
        for _ in range(3):
            assert s.get(lv.url + "/c/x", timeout=10).headers["X-Cache"] == "HIT"
        assert s.get(lv.url + "/dead", timeout=10).status_code == 502
    assert exchange(lv.port, b"GET / HTTP/1.1\r\nHost: t\r\nX: a\x00b\r\n\r\n").first.status == 400
    assert exchange(lv.port, b"POST /up/x HTTP/1.1\r\nHost: t\r\nContent-Length: 5000\r\n\r\n").first.status == 413
    after = scrape(lv)

    def delta(name, **labels):
        return value(after, name, **labels) - (sample_value(before, name, **labels) or 0)

    assert delta("levee_requests_total", route="GET /hello", class_="2xx") == 5
    assert delta("levee_requests_total", route="(unmatched)", class_="4xx") == 1
    assert delta("levee_requests_total", route="cached", class_="2xx") == 4
    assert delta("levee_requests_total", route="GET /dead", class_="5xx") == 1
    assert delta("levee_request_duration_seconds_count", route="GET /hello") == 5
    assert delta("levee_request_duration_seconds_bucket", route="GET /hello", le="+Inf") == 5
    assert delta("levee_cache_requests_total", result="miss") == 1
    assert delta("levee_cache_requests_total", result="hit") == 3
    assert delta("levee_origin_errors_total", origin="dead", kind="refused") == 1
    assert delta("levee_origin_requests_total", origin="up") == 1
    assert delta("levee_limit_hits_total", limit="bad_request") == 1
    assert delta("levee_limit_hits_total", limit="max_body_bytes") == 1
    assert value(after, "levee_cache_objects") >= 1
    assert value(after, "levee_connections_accepted_total") > value(before, "levee_connections_accepted_total")


def test_connections_open_gauge(levee, origin):
    from conftest import HttpConn
    o = origin()
    lv = levee(app_config(o.url, o.url))
    conns = [HttpConn(lv.port) for _ in range(3)]
    try:
        for c in conns:
            c.send(b"GET /hello HTTP/1.1\r\nHost: t\r\n\r\n")
            assert c.read_response().status == 200
        assert value(scrape(lv), "levee_connections_open") >= 3
    finally:
        for c in conns:
            c.close()


def test_status_json(levee, origin):
    o = origin()
    lv = levee(app_config(o.url, "http://127.0.0.1:%d" % refused_port()))
    requests.get(lv.url + "/hello", timeout=10)
    r = requests.get(lv.admin_url + "/status", timeout=10)
    assert r.status_code == 200
    assert r.headers["Content-Type"] == "application/json"
    st = r.json()
    assert st["version"] == run_levee("version").stdout.split()[1]
    assert isinstance(st["uptime_seconds"], int) and st["uptime_seconds"] >= 0
    routes = {rt["name"]: rt for rt in st["routes"]}
    assert set(routes) == {"GET /hello", "cached", "GET /dead", "ANY /up/*"}
    assert routes["GET /hello"]["target"] == "respond"
    assert routes["GET /hello"]["requests"] == 1
    assert routes["cached"]["cached"] is True
    assert routes["cached"]["origin"] == "up"
    origins = {og["name"]: og for og in st["origins"]}
    assert set(origins) == {"up", "dead"}
    assert origins["up"]["url"] == o.url


def test_admin_other_paths(levee, origin):
    o = origin()
    lv = levee(app_config(o.url, o.url))
    assert requests.get(lv.admin_url + "/", timeout=10).status_code == 404
    assert requests.get(lv.admin_url + "/hello", timeout=10).status_code == 404
    assert requests.get(lv.admin_url + "/metrics/x", timeout=10).status_code == 404
    r = requests.post(lv.admin_url + "/metrics", timeout=10)
    assert r.status_code == 405
    assert "GET" in r.headers["Allow"]
    h = requests.head(lv.admin_url + "/status", timeout=10)
    assert h.status_code == 200 and h.content == b""
    # Admin paths are not on the public port.
    assert requests.get(lv.url + "/metrics", timeout=10).status_code == 404


def test_admin_listens_on_its_port_only(levee, origin):
    o = origin()
    lv = levee(app_config(o.url, o.url))
    assert listening_ports(lv.proc.pid) == {lv.port, lv.admin_port, lv.api_port}


def test_admin_off_means_no_admin_port(levee):
    lv = levee("""
        admin: { listen: off }
        api: { listen: off }
        routes:
          - match: GET /hello
            respond: { body: hi }
        """)
    assert lv.admin_url is None and lv.api_url is None
    assert requests.get(lv.url + "/hello", timeout=10).status_code == 200
    assert listening_ports(lv.proc.pid) == {lv.port}
    assert "admin on" not in lv.stderr


def test_metrics_under_concurrent_scrapes_and_traffic(levee, origin):
    import concurrent.futures
    o = origin()
    lv = levee(app_config(o.url, o.url))

    def traffic(i):
        return requests.get(lv.url + ("/hello" if i % 2 else "/c/k%d" % (i % 5)), timeout=20).status_code

    def scrape_once(_):
        return len(scrape(lv))

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        t = list(pool.map(traffic, range(100)))
        s = list(pool.map(scrape_once, range(10)))
    assert t == [200] * 100
    assert all(n > 10 for n in s)
    fams = scrape(lv)
    assert value(fams, "levee_requests_total", route="GET /hello", class_="2xx") == 50
