"""test_capture.py: route capture (issue 5): every answered request of a
route with `capture:` becomes one JSON record in a stream, read back here
with boto3 through the Kinesis API on the api listener.

One levee serves a respond route, a redirect route and a cached origin
route, each capturing into a 4-shard stream, plus routes keyed by header,
query parameter and client IP. After a known set of requests (including
404s on unmatched paths and a 405, which belong to no route), the test
reads every shard from TRIM_HORIZON and checks:
  - exactly one record per answered request of a captured route, none for
    the unmatched ones;
  - every field of the record (time, route, method, path, query, status,
    cache, latency, ip, ua, referer, params, request_id);
  - the cache status of the cached route: MISS first, then HIT;
  - each record's partition key (the path parameter, header, query
    parameter or client IP it was configured with, the request id
    otherwise), and that the record sits in the shard whose hash range
    holds the MD5 of that key (records keyed by their request id are
    placed by a random hash key instead, and only have to spread);
  - the metrics and /status agree with what was read.
A last test deletes the stream through the API: records wait in the
bounded buffer until it is full, then the shed route answers 503 and the
drop route counts drops; once the stream is created again, every request
answered 200 on the shed route has its record in it.
"""

import hashlib
import json
import re
import socket
import time
import uuid

import pytest
import requests

from origins import Reply
from prometheus_check import parse_prometheus, sample_value

boto3 = pytest.importorskip("boto3")
from botocore.config import Config  # noqa: E402

CODES = ["c%d" % i for i in range(12)]
CSV = "code,url\n" + "".join("%s,https://example.com/l/%s\n" % (c, c) for c in CODES)
UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


def kinesis(lv):
    return boto3.client(
        "kinesis", endpoint_url=lv.api_url, region_name="us-east-1",
        aws_access_key_id="test", aws_secret_access_key="test",
        config=Config(retries={"max_attempts": 0}, read_timeout=30, connect_timeout=5))


def read_stream(client, name):
    """Every record of every shard, from the start: [(shard, record)]."""
    shards = client.list_shards(StreamName=name)["Shards"]
    out = []
    for s in shards:
        it = client.get_shard_iterator(StreamName=name, ShardId=s["ShardId"],
                                       ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
        for _ in range(1000):
            r = client.get_records(ShardIterator=it, Limit=10000)
            out.extend((s, rec) for rec in r["Records"])
            if not r["Records"]:
                break
            it = r["NextShardIterator"]
    return out


def wait_for_records(client, name, expected, timeout=20.0):
    """Reads until the stream holds `expected` records (captured records are
    appended after their answers, a moment later) or the time is up."""
    deadline = time.monotonic() + timeout
    got = []
    while time.monotonic() < deadline:
        got = read_stream(client, name)
        if len(got) >= expected:
            break
        time.sleep(0.2)
    return got


def shard_of(shards_by_id, key):
    h = int.from_bytes(hashlib.md5(key.encode()).digest(), "big")
    for sid, s in shards_by_id.items():
        r = s["HashKeyRange"]
        if int(r["StartingHashKey"]) <= h <= int(r["EndingHashKey"]):
            return sid
    raise AssertionError("no shard holds the hash of %r" % key)


@pytest.fixture
def app(levee, origin):
    o = origin()
    o.set("/items/", lambda req: Reply(200, ("item %s" % req.path).encode(),
                                       {"Cache-Control": "max-age=60"}))
    lv = levee(f"""
        streams:
          clicks: {{ shards: 4 }}
        origins:
          shop: {{ url: {o.url} }}
        routes:
          - match: GET /hello
            respond: {{ status: 200, body: "hi" }}
            capture: clicks
          - match: GET /r/{{code}}
            redirect: {{ table: ./qr.csv }}
            capture: {{ stream: clicks, partition_key: path.code }}
          - match: GET /items/{{item}}
            origin: shop
            cache: {{ ttl: 60s }}
            capture: {{ stream: clicks, partition_key: path.item }}
          - match: GET /by-header
            respond: {{ status: 204 }}
            capture: {{ stream: clicks, partition_key: header.x-device }}
          - match: GET /by-query
            respond: {{ status: 200 }}
            capture: {{ stream: clicks, partition_key: query.user, on_full: drop }}
          - match: GET /by-ip
            respond: {{ status: 200 }}
            capture: {{ stream: clicks, partition_key: client_ip }}
          - match: POST /only-post
            respond: {{ status: 201 }}
        """, files={"qr.csv": CSV})
    return lv, o


def test_one_record_per_answered_request(app):
    lv, o = app
    s = requests.Session()
    t_start = int(time.time() * 1000)
    sent = []  # (route, path, query, status, headers)

    for i in range(20):
        h = {"User-Agent": "scanner/%d" % i, "Referer": "https://tv.example/ad?i=%d" % i}
        r = s.get(lv.url + "/hello?n=%d&x=\"q\"" % i, headers=h)
        assert r.status_code == 200
        sent.append(("GET /hello", "/hello", "n=%d&x=%%22q%%22" % i, 200, h))
    for i in range(30):
        code = CODES[i % len(CODES)] if i % 10 else "unknown%d" % i
        r = s.get(lv.url + "/r/" + code, allow_redirects=False)
        want = 302 if code in CODES else 404
        assert r.status_code == want
        sent.append(("GET /r/{code}", "/r/" + code, "", want, {}))
    for i in range(10):
        r = s.get(lv.url + "/items/apple")
        assert r.status_code == 200
        assert r.headers["X-Cache"] == ("MISS" if i == 0 else "HIT")
        sent.append(("GET /items/{item}", "/items/apple", "", 200, {}))
    for i in range(6):
        r = s.get(lv.url + "/by-header", headers={"X-Device": "dev-%d" % (i % 3)})
        assert r.status_code == 204
        sent.append(("GET /by-header", "/by-header", "", 204, {}))
    for i in range(6):
        q = "user=u%d&other=1" % (i % 2) if i < 4 else "other=1"
        r = s.get(lv.url + "/by-query?" + q)
        assert r.status_code == 200
        sent.append(("GET /by-query", "/by-query", q, 200, {}))
    for i in range(3):
        assert s.get(lv.url + "/by-ip").status_code == 200
        sent.append(("GET /by-ip", "/by-ip", "", 200, {}))
    # Not captured: no route (404), method not allowed (405), a route without capture.
    for i in range(5):
        assert s.get(lv.url + "/nope/%d" % i).status_code == 404
    assert s.post(lv.url + "/hello").status_code == 405
    assert s.post(lv.url + "/only-post").status_code == 201
    t_end = int(time.time() * 1000)

    client = kinesis(lv)
    got = wait_for_records(client, "clicks", len(sent))
    assert len(got) == len(sent), "records: %d, answered requests: %d" % (len(got), len(sent))
    # A moment later there is still nothing extra.
    time.sleep(0.3)
    assert len(read_stream(client, "clicks")) == len(sent)

    shards = {sh["ShardId"]: sh for sh, _ in got}
    shards.update({sh["ShardId"]: sh for sh in client.list_shards(StreamName="clicks")["Shards"]})
    records = []
    for sh, rec in got:
        doc = json.loads(rec["Data"])
        records.append(doc)
        # A record keyed by something of the request is in the shard its
        # partition key hashes to (MD5); one keyed by its request id is
        # placed at random (an explicit hash key), which spreads as well.
        if rec["PartitionKey"] != doc["request_id"]:
            assert shard_of(shards, rec["PartitionKey"]) == sh["ShardId"], (rec["PartitionKey"], doc)
        assert list(doc) == ["time", "route", "method", "path", "query", "status", "cache", "latency_us",
                             "ip", "ua", "referer", "params", "request_id"]
        assert UUID_RE.match(doc["request_id"]), doc
        assert t_start - 1000 <= doc["time"] <= t_end + 1000
        assert 0 <= doc["latency_us"] < 10_000_000
        assert doc["ip"] == "127.0.0.1"
        assert doc["method"] == "GET"
        key = rec["PartitionKey"]
        route = doc["route"]
        if route == "GET /hello":
            assert key == doc["request_id"]
            assert doc["params"] == {}
            assert doc["cache"] is None
        elif route == "GET /r/{code}":
            assert key == doc["params"]["code"] == doc["path"][3:]
            assert doc["cache"] is None
            assert doc["ua"].startswith("python-requests/")
            assert doc["referer"] is None
        elif route == "GET /items/{item}":
            assert key == "apple" and doc["params"] == {"item": "apple"}
        elif route == "GET /by-header":
            assert re.match(r"^dev-[0-2]$", key)
        elif route == "GET /by-query":
            if "user=" in doc["query"]:
                assert key == re.search(r"user=(u\d)", doc["query"]).group(1)
            else:
                assert key == doc["request_id"]  # missing -> the request id
        elif route == "GET /by-ip":
            assert key == "127.0.0.1"
        else:
            raise AssertionError("unexpected route %r" % route)
    assert len({d["request_id"] for d in records}) == len(records)
    assert not [d for d in records if d["path"].startswith("/nope") or d["route"] == "POST /only-post"]

    # The multiset of (route, path, query, status) read back is what was answered.
    def facts(items):
        return sorted(items)
    assert facts((d["route"], d["path"], d["query"], d["status"]) for d in records) == \
        facts((r, p, q, st) for r, p, q, st, _ in sent)
    hello = sorted((d for d in records if d["route"] == "GET /hello"), key=lambda d: int(d["query"].split("&")[0][2:]))
    for i, d in enumerate(hello):
        assert d["ua"] == "scanner/%d" % i
        assert d["referer"] == "https://tv.example/ad?i=%d" % i
    items = sorted((d for d in records if d["route"] == "GET /items/{item}"), key=lambda d: d["time"])
    assert sorted(d["cache"] for d in items) == ["HIT"] * 9 + ["MISS"]
    assert o.count("/items/apple") == 1

    # Metrics and /status say the same.
    fams = parse_prometheus(requests.get(lv.admin_url + "/metrics").text)
    assert sample_value(fams, "levee_capture_records_total", route="GET /r/{code}") == 30
    assert sample_value(fams, "levee_capture_records_total", route="GET /hello") == 20
    assert sample_value(fams, "levee_capture_dropped_total", route="GET /by-query") == 0
    assert sample_value(fams, "levee_capture_shed_total", route="GET /hello") == 0
    assert sample_value(fams, "levee_capture_buffer_records", route="GET /hello") == 0
    status = requests.get(lv.admin_url + "/status").json()
    by_name = {r["name"]: r for r in status["routes"]}
    cap = by_name["GET /r/{code}"]["capture"]
    assert cap["stream"] == "clicks" and cap["partition_key"] == "path.code"
    assert cap["on_full"] == "shed_request" and cap["records"] == 30 and cap["buffer_records"] == 0
    assert by_name["GET /by-query"]["capture"]["on_full"] == "drop"
    assert "capture" not in by_name["POST /only-post"]


def test_hostile_headers_and_restart(levee):
    """Quotes, backslashes and bytes that are not UTF-8 in a header and the
    path come out as valid JSON with nothing injected; and what was captured
    is still there after levee restarts on the same data_dir."""
    cfg = """
        streams:
          clicks: { shards: 1 }
        routes:
          - match: GET /r/{code}
            respond: { status: 200 }
            capture: { stream: clicks, partition_key: path.code }
        """
    lv = levee(cfg)
    ua = b'evil", "status": 500, "x": "\\ \xe9t\xe9'
    raw = b"GET /r/x%22y\"?q=%00 HTTP/1.1\r\nHost: a\r\nUser-Agent: " + ua + b"\r\n\r\n"
    with socket.create_connection(("127.0.0.1", lv.port), timeout=5) as c:
        c.sendall(raw)
        assert c.recv(4096).startswith(b"HTTP/1.1 200")
    got = wait_for_records(kinesis(lv), "clicks", 1)
    assert len(got) == 1
    doc = json.loads(got[0][1]["Data"])
    assert doc["status"] == 200 and len(doc) == 13
    assert doc["ua"] == 'evil", "status": 500, "x": "\\ \ufffdt\ufffd'
    assert doc["path"] == '/r/x%22y"' and doc["query"] == "q=%00"
    assert doc["params"] == {"code": 'x%22y"'}
    assert got[0][1]["PartitionKey"] == 'x%22y"'
    lv.stop()

    lv2 = levee(cfg)  # the same directory, so the same data_dir
    again = read_stream(kinesis(lv2), "clicks")
    assert [json.loads(r["Data"])["request_id"] for _, r in again] == [doc["request_id"]]


def test_uuid_request_ids_spread_over_shards(levee):
    lv = levee("""
        streams:
          spread: { shards: 4 }
        routes:
          - match: GET /
            respond: { status: 200 }
            capture: spread
        """)
    s = requests.Session()
    for _ in range(200):
        assert s.get(lv.url + "/").status_code == 200
    got = wait_for_records(kinesis(lv), "spread", 200)
    assert len(got) == 200
    per_shard = {}
    for sh, rec in got:
        uuid.UUID(rec["PartitionKey"])
        per_shard[sh["ShardId"]] = per_shard.get(sh["ShardId"], 0) + 1
    assert len(per_shard) == 4 and min(per_shard.values()) >= 20, per_shard


def pipelined(port, path, n, chunk=500):
    """Sends n GETs for path over one connection, `chunk` per write, and
    returns the statuses in order, with the Retry-After of each 503."""
    statuses, retry_after = [], []
    req = ("GET %s HTTP/1.1\r\nHost: t\r\n\r\n" % path).encode()
    with socket.create_connection(("127.0.0.1", port), timeout=30) as c:
        f = c.makefile("rb")
        sent = 0
        while sent < n:
            k = min(chunk, n - sent)
            c.sendall(req * k)
            sent += k
            for _ in range(k):
                line = f.readline()
                status = int(line.split()[1])
                length, ra = 0, None
                while True:
                    h = f.readline()
                    if h in (b"\r\n", b""):
                        break
                    name, _, value = h.decode("latin-1").partition(":")
                    if name.lower() == "content-length":
                        length = int(value)
                    elif name.lower() == "retry-after":
                        ra = value.strip()
                f.read(length)
                statuses.append(status)
                if status == 503:
                    retry_after.append(ra)
            if 503 in statuses[-k:]:
                break
    return statuses, retry_after


def test_stream_gone_sheds_then_records_everything(levee):
    """While the stream is deleted, records wait in the bounded buffer; once
    it is full, on_full: shed_request answers 503 (Retry-After: 1) and
    on_full: drop answers and counts the drop. When the stream is back,
    every request that was answered 200 on the shed route is in it."""
    lv = levee("""
        threads: 1
        streams:
          clicks: { shards: 2, max_pending_bytes: 1MiB }
        routes:
          - match: GET /hit
            respond: { status: 200 }
            capture: clicks
          - match: GET /drop
            respond: { status: 200 }
            capture: { stream: clicks, on_full: drop }
        """)
    client = kinesis(lv)
    assert requests.get(lv.url + "/hit").status_code == 200
    assert len(wait_for_records(client, "clicks", 1)) == 1
    client.delete_stream(StreamName="clicks")

    # 4 MiB of buffer (the floor per thread) holds about ten thousand records.
    statuses, retry_after = pipelined(lv.port, "/hit", 60000)
    ok = statuses.count(200)
    shed = statuses.count(503)
    assert shed >= 1 and ok > 5000, (ok, shed)
    assert set(statuses) == {200, 503}
    assert set(retry_after) == {"1"}
    drop_statuses, _ = pipelined(lv.port, "/drop", 20000)
    assert drop_statuses == [200] * 20000  # drop never refuses

    fams = parse_prometheus(requests.get(lv.admin_url + "/metrics").text)
    assert sample_value(fams, "levee_capture_shed_total", route="GET /hit") == shed
    assert sample_value(fams, "levee_shed_total", route="GET /hit", reason="capture") == shed
    assert sample_value(fams, "levee_capture_buffer_records", route="GET /hit") == ok
    dropped = sample_value(fams, "levee_capture_dropped_total", route="GET /drop")
    drop_kept = sample_value(fams, "levee_capture_buffer_records", route="GET /drop")
    assert dropped > 0 and dropped + drop_kept == 20000, (dropped, drop_kept)
    assert sample_value(fams, "levee_capture_shed_total", route="GET /drop") == 0
    assert sample_value(fams, "levee_capture_records_total", route="GET /hit") == 1
    status = requests.get(lv.admin_url + "/status").json()
    cap = {r["name"]: r for r in status["routes"]}["GET /hit"]["capture"]
    assert cap["buffer_records"] == ok and cap["shed"] == shed
    # Full: less than one slot (12.3 KiB, the largest record) is left.
    assert cap["reserved"] == 0 and cap["buffer_limit_bytes"] - cap["buffer_bytes"] < 12600

    # The stream comes back: every request answered 200 on the shed route,
    # and every record the drop route kept, lands in it.
    client.create_stream(StreamName="clicks", ShardCount=2)
    got = wait_for_records(client, "clicks", ok + drop_kept, timeout=30)
    assert len(got) == ok + drop_kept
    docs = [json.loads(r["Data"]) for _, r in got]
    hits = [d for d in docs if d["route"] == "GET /hit"]
    assert len(hits) == ok and {d["status"] for d in hits} == {200}
    assert len({d["request_id"] for d in docs}) == len(docs)
    # And the route lets requests in again.
    assert requests.get(lv.url + "/hit").status_code == 200


def test_admission_refusals_and_bypass_are_captured(levee, origin):
    """Capture comes before admission: a throttle's 429s are recorded too.
    On a cached route, a request that skips the cache is BYPASS."""
    o = origin()
    o.set("/", lambda req: Reply(200, b"ok", {"Cache-Control": "max-age=60"}))
    lv = levee(f"""
        streams:
          clicks: {{ shards: 1 }}
        routes:
          - match: GET /limited
            respond: {{ status: 200 }}
            throttle: {{ rate: 0.001, burst: 2 }}
            capture: clicks
          - match: ANY /c/{{item}}
            origin: {o.url}
            cache: {{ ttl: 60s }}
            capture: clicks
        """)
    s = requests.Session()
    codes = [s.get(lv.url + "/limited").status_code for _ in range(5)]
    assert codes == [200, 200, 429, 429, 429]
    assert s.post(lv.url + "/c/x", data=b"hi").status_code == 200
    assert s.get(lv.url + "/c/x").headers["X-Cache"] == "MISS"
    assert s.get(lv.url + "/c/x").headers["X-Cache"] == "HIT"
    got = wait_for_records(kinesis(lv), "clicks", 8)
    assert len(got) == 8
    docs = sorted((json.loads(r["Data"]) for _, r in got), key=lambda d: (d["time"], d["route"]))
    limited = [d["status"] for d in docs if d["route"] == "GET /limited"]
    assert sorted(limited) == [200, 200, 429, 429, 429]
    cached = [(d["method"], d["cache"]) for d in docs if d["route"] == "ANY /c/{item}"]
    assert sorted(cached) == [("GET", "HIT"), ("GET", "MISS"), ("POST", "BYPASS")]
