"""test_kinesis.py: the Kinesis Data Streams API on the api listener, against
the real binary, with the clients people use: boto3 (kinesis client, as is),
the AWS SDK for JavaScript v3 (tests/node/kinesis_test.mjs) and, for the
requests no SDK will send, raw HTTP.

Covered: every operation (CreateStream, DeleteStream, DescribeStream,
DescribeStreamSummary, ListStreams, ListShards, PutRecord, PutRecords,
GetShardIterator, GetRecords) with their paging; partition keys and
ExplicitHashKey routed by MD5 over the shards' hash ranges; sequence
numbers; iterators of every type, expired (LEVEE_TEST_ITERATOR_TTL_MS),
forged, and of a deleted and re-created stream; StreamARN; PutRecords
partial failure (one shard's pending buffer full); each bad input with its
Kinesis error type; the metrics; records and iterators surviving a
SIGTERM restart; and a crash test: 4 writers, SIGKILL at random moments,
restart, every acknowledged record present exactly once and in order per
shard. Every wait and loop is bounded."""

import base64
import hashlib
import json
import math
import os
import random
import subprocess
import threading
import time

import pytest
import requests

from origins import free_port
from prometheus_check import parse_prometheus, sample_value

boto3 = pytest.importorskip("boto3")
from botocore.config import Config  # noqa: E402
from botocore.exceptions import BotoCoreError, ClientError  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
NODE_DIR = os.path.join(REPO, "tests", "node")
TARGET = "Kinesis_20131202."
ACCOUNT = "000000000000"
MAX_HASH = 2 ** 128 - 1

CONFIG = """
    streams:
      events: { shards: 2 }
      tight: { shards: 4, max_pending_bytes: 1MiB }
"""


def client(lv, **cfg):
    return boto3.client(
        "kinesis", endpoint_url=lv.api_url, region_name="us-east-1",
        aws_access_key_id="test", aws_secret_access_key="test",
        config=Config(retries={"max_attempts": 0}, read_timeout=cfg.get("read_timeout", 30), connect_timeout=5))


def raw(lv, op, body, content_type="application/x-amz-json-1.1", target=None):
    """POSTs a request as the SDKs do; body is a dict (sent as JSON) or
    bytes. Returns (status, parsed JSON or None, response)."""
    data = body if isinstance(body, (bytes, str)) else json.dumps(body)
    r = requests.post(lv.api_url + "/", data=data, timeout=30, headers={
        "X-Amz-Target": target or TARGET + op, "Content-Type": content_type,
        "Authorization": "AWS4-HMAC-SHA256 Credential=test/20240101/us-east-1/kinesis/aws4_request, "
                         "SignedHeaders=host, Signature=00"})
    try:
        doc = r.json() if r.content else None
    except ValueError:
        doc = None
    return r.status_code, doc, r


def raw_error(lv, op, body, **kw):
    status, doc, r = raw(lv, op, body, **kw)
    assert doc is not None and "__type" in doc, (status, r.content[:300])
    assert r.headers.get("x-amzn-RequestId")
    return status, doc["__type"], doc["message"]


def error(call):
    """Runs call(); returns (code, message) of the ClientError it raises."""
    with pytest.raises(ClientError) as e:
        call()
    return e.value.response["Error"]["Code"], e.value.response["Error"].get("Message", "")


def md5_hash(key):
    return int.from_bytes(hashlib.md5(key.encode("utf-8")).digest(), "big")


def shard_of(shards, hash_key):
    for s in shards:
        r = s["HashKeyRange"]
        if int(r["StartingHashKey"]) <= hash_key <= int(r["EndingHashKey"]):
            return s["ShardId"]
    raise AssertionError("no shard holds %d" % hash_key)


def read_all(kc, stream, shard_id, limit=10000):
    """Every record of a shard, from the oldest."""
    it = kc.get_shard_iterator(StreamName=stream, ShardId=shard_id,
                               ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
    out = []
    for _ in range(10000):
        r = kc.get_records(ShardIterator=it, Limit=limit)
        out.extend(r["Records"])
        it = r["NextShardIterator"]
        if not r["Records"] and r["MillisBehindLatest"] == 0:
            return out
    raise AssertionError("the shard never ended")


def start(levee, extra=""):
    lv = levee(CONFIG + extra)
    return lv, client(lv)


# ---------------------------------------------------------------------------
# Control plane
# ---------------------------------------------------------------------------

def test_create_describe_list_delete(levee):
    lv, kc = start(levee)
    kc.create_stream(StreamName="orders", ShardCount=3)
    d = kc.describe_stream(StreamName="orders")["StreamDescription"]
    assert d["StreamName"] == "orders"
    assert d["StreamARN"] == "arn:aws:kinesis:us-east-1:%s:stream/orders" % ACCOUNT
    assert d["StreamStatus"] == "ACTIVE"
    assert d["HasMoreShards"] is False
    assert d["RetentionPeriodHours"] == 24
    assert [s["ShardId"] for s in d["Shards"]] == ["shardId-00000000000%d" % i for i in range(3)]
    # The hash ranges are decimal strings that tile [0, 2^128 - 1].
    ranges = [(int(s["HashKeyRange"]["StartingHashKey"]), int(s["HashKeyRange"]["EndingHashKey"]))
              for s in d["Shards"]]
    assert ranges[0][0] == 0 and ranges[-1][1] == MAX_HASH
    for (_, end), (start_, _) in zip(ranges, ranges[1:]):
        assert start_ == end + 1
    assert ranges[1][0] == (2 ** 128 // 3)
    for s in d["Shards"]:
        assert int(s["SequenceNumberRange"]["StartingSequenceNumber"]) > 0
    assert abs(d["StreamCreationTimestamp"].timestamp() - time.time()) < 60

    page = kc.describe_stream(StreamName="orders", Limit=2)["StreamDescription"]
    assert [s["ShardId"] for s in page["Shards"]] == ["shardId-000000000000", "shardId-000000000001"]
    assert page["HasMoreShards"] is True
    rest = kc.describe_stream(StreamName="orders", ExclusiveStartShardId="shardId-000000000001")["StreamDescription"]
    assert [s["ShardId"] for s in rest["Shards"]] == ["shardId-000000000002"]
    assert rest["HasMoreShards"] is False

    summary = kc.describe_stream_summary(StreamName="orders")["StreamDescriptionSummary"]
    assert summary["OpenShardCount"] == 3
    assert summary["StreamStatus"] == "ACTIVE"
    assert summary["ConsumerCount"] == 0
    assert summary["StreamModeDetails"] == {"StreamMode": "PROVISIONED"}

    # Shards, a page at a time.
    first = kc.list_shards(StreamName="orders", MaxResults=2)
    assert [s["ShardId"] for s in first["Shards"]] == ["shardId-000000000000", "shardId-000000000001"]
    second = kc.list_shards(NextToken=first["NextToken"], MaxResults=2)
    assert [s["ShardId"] for s in second["Shards"]] == ["shardId-000000000002"]
    assert "NextToken" not in second
    after = kc.list_shards(StreamName="orders", ShardFilter={"Type": "AFTER_SHARD_ID",
                                                             "ShardId": "shardId-000000000000"})
    assert len(after["Shards"]) == 2
    assert error(lambda: kc.list_shards(StreamName="orders", NextToken=first["NextToken"]))[0] == \
        "InvalidArgumentException"

    # Streams: the config's and the new one, a page at a time.
    kc.create_stream(StreamName="zeta")  # no ShardCount: 4 shards
    assert kc.describe_stream_summary(StreamName="zeta")["StreamDescriptionSummary"]["OpenShardCount"] == 4
    kc.create_stream(StreamName="od", StreamModeDetails={"StreamMode": "ON_DEMAND"})
    assert kc.describe_stream_summary(StreamName="od")["StreamDescriptionSummary"]["OpenShardCount"] == 4
    names = kc.list_streams()
    assert names["StreamNames"] == ["events", "od", "orders", "tight", "zeta"]
    assert names["HasMoreStreams"] is False
    p3 = kc.list_streams(Limit=2, ExclusiveStartStreamName="tight")
    assert p3["StreamNames"] == ["zeta"] and p3["HasMoreStreams"] is False
    # NextToken and StreamSummaries are newer than Debian's boto3 model.
    _, names, _ = raw(lv, "ListStreams", {})
    assert [s["StreamName"] for s in names["StreamSummaries"]] == names["StreamNames"]
    assert all(s["StreamStatus"] == "ACTIVE" and s["StreamARN"].endswith(":stream/" + s["StreamName"])
               and s["StreamCreationTimestamp"] > 0 for s in names["StreamSummaries"])
    _, p1, _ = raw(lv, "ListStreams", {"Limit": 2})
    assert p1["StreamNames"] == ["events", "od"] and p1["HasMoreStreams"] is True
    _, p2, _ = raw(lv, "ListStreams", {"Limit": 2, "NextToken": p1["NextToken"]})
    assert p2["StreamNames"] == ["orders", "tight"] and p2["HasMoreStreams"] is True

    code, msg = error(lambda: kc.create_stream(StreamName="orders", ShardCount=1))
    assert code == "ResourceInUseException"
    assert msg == "Stream orders under account %s already exists." % ACCOUNT

    kc.delete_stream(StreamName="orders")
    code, msg = error(lambda: kc.describe_stream(StreamName="orders"))
    assert (code, msg) == ("ResourceNotFoundException", "Stream orders under account %s not found." % ACCOUNT)
    assert error(lambda: kc.delete_stream(StreamName="orders"))[0] == "ResourceNotFoundException"
    assert "orders" not in kc.list_streams()["StreamNames"]
    # The name is free again, with a fresh, empty stream.
    kc.create_stream(StreamName="orders", ShardCount=1)
    assert read_all(kc, "orders", "shardId-000000000000") == []


# ---------------------------------------------------------------------------
# Writing and reading
# ---------------------------------------------------------------------------

def test_put_and_get_every_iterator_type(levee):
    lv, kc = start(levee)
    shards = kc.describe_stream(StreamName="events")["StreamDescription"]["Shards"]
    t0 = time.time()
    put = []
    for i in range(40):
        key = "user-%d" % i
        r = kc.put_record(StreamName="events", PartitionKey=key, Data=b"record %d" % i)
        assert r["ShardId"] == shard_of(shards, md5_hash(key))
        assert r["EncryptionType"] == "NONE"
        put.append((r["ShardId"], int(r["SequenceNumber"]), key, b"record %d" % i))
    by_shard = {}
    for shard, seq, key, data in put:
        by_shard.setdefault(shard, []).append((seq, key, data))
    assert len(by_shard) == 2
    for shard, recs in by_shard.items():
        seqs = [s for s, _, _ in recs]
        assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)  # strictly increasing

    for shard, recs in by_shard.items():
        got = read_all(kc, "events", shard, limit=7)  # several pages
        assert [(int(r["SequenceNumber"]), r["PartitionKey"], r["Data"]) for r in got] == recs
        for r in got:
            assert t0 - 5 < r["ApproximateArrivalTimestamp"].timestamp() < time.time() + 5

        seq_mid, key_mid, data_mid = recs[len(recs) // 2]
        at = kc.get_shard_iterator(StreamName="events", ShardId=shard, ShardIteratorType="AT_SEQUENCE_NUMBER",
                                   StartingSequenceNumber=str(seq_mid))["ShardIterator"]
        r = kc.get_records(ShardIterator=at, Limit=1)
        assert [x["Data"] for x in r["Records"]] == [data_mid]
        assert r["MillisBehindLatest"] >= 0
        after = kc.get_shard_iterator(StreamName="events", ShardId=shard, ShardIteratorType="AFTER_SEQUENCE_NUMBER",
                                      StartingSequenceNumber=str(seq_mid))["ShardIterator"]
        r = kc.get_records(ShardIterator=after)
        assert [int(x["SequenceNumber"]) for x in r["Records"]] == [s for s, _, _ in recs if s > seq_mid]
        # AFTER the last record: nothing yet, then what comes next.
        last = kc.get_shard_iterator(StreamName="events", ShardId=shard, ShardIteratorType="AFTER_SEQUENCE_NUMBER",
                                     StartingSequenceNumber=str(recs[-1][0]))["ShardIterator"]
        assert kc.get_records(ShardIterator=last)["Records"] == []

    # LATEST: nothing of the past, then the new record.
    shard0 = "shardId-000000000000"
    latest = kc.get_shard_iterator(StreamName="events", ShardId=shard0, ShardIteratorType="LATEST")["ShardIterator"]
    r = kc.get_records(ShardIterator=latest)
    assert r["Records"] == [] and r["MillisBehindLatest"] == 0
    key0 = next(k for s, _, k, _ in put if s == shard0)
    kc.put_record(StreamName="events", PartitionKey=key0, Data=b"fresh")
    r2 = kc.get_records(ShardIterator=r["NextShardIterator"])
    assert [x["Data"] for x in r2["Records"]] == [b"fresh"]
    assert kc.get_records(ShardIterator=latest)["Records"][0]["Data"] == b"fresh"

    # AT_TIMESTAMP: records that arrived at or after the time. A whole
    # second, as Debian's botocore sends timestamps without a fraction.
    mark = math.ceil(time.time() + 0.05)
    time.sleep(mark - time.time() + 0.05)
    kc.put_record(StreamName="events", PartitionKey=key0, Data=b"after mark")
    ts = kc.get_shard_iterator(StreamName="events", ShardId=shard0, ShardIteratorType="AT_TIMESTAMP",
                               Timestamp=mark)["ShardIterator"]
    assert [x["Data"] for x in kc.get_records(ShardIterator=ts)["Records"]] == [b"after mark"]
    early = kc.get_shard_iterator(StreamName="events", ShardId=shard0, ShardIteratorType="AT_TIMESTAMP",
                                  Timestamp=t0 - 60)["ShardIterator"]
    assert len(kc.get_records(ShardIterator=early)["Records"]) == len(by_shard[shard0]) + 2
    # In the future: nothing, and the iterator keeps waiting for that time.
    future = kc.get_shard_iterator(StreamName="events", ShardId=shard0, ShardIteratorType="AT_TIMESTAMP",
                                   Timestamp=time.time() + 3600)["ShardIterator"]
    r = kc.get_records(ShardIterator=future)
    assert r["Records"] == []
    kc.put_record(StreamName="events", PartitionKey=key0, Data=b"still before")
    assert kc.get_records(ShardIterator=r["NextShardIterator"])["Records"] == []


def test_millis_behind_latest(levee):
    lv, kc = start(levee)
    for i in range(3):
        kc.put_record(StreamName="events", PartitionKey="k", Data=b"%d" % i, ExplicitHashKey="0")
        time.sleep(0.1)
    it = kc.get_shard_iterator(StreamName="events", ShardId="shardId-000000000000",
                               ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
    r = kc.get_records(ShardIterator=it, Limit=1)
    assert r["MillisBehindLatest"] >= 150
    r = kc.get_records(ShardIterator=r["NextShardIterator"])
    assert len(r["Records"]) == 2 and r["MillisBehindLatest"] == 0


def test_explicit_hash_key_and_put_records(levee):
    lv, kc = start(levee)
    half = 2 ** 128 // 2
    r = kc.put_record(StreamName="events", PartitionKey="any", Data=b"x", ExplicitHashKey=str(half))
    assert r["ShardId"] == "shardId-000000000001"
    r = kc.put_record(StreamName="events", PartitionKey="any", Data=b"y", ExplicitHashKey=str(half - 1),
                      SequenceNumberForOrdering=r["SequenceNumber"])
    assert r["ShardId"] == "shardId-000000000000"

    shards = kc.describe_stream(StreamName="events")["StreamDescription"]["Shards"]
    records = [{"PartitionKey": "pk-%d" % i, "Data": b"batch %d" % i} for i in range(500)]
    records[7]["ExplicitHashKey"] = str(MAX_HASH)
    out = kc.put_records(StreamName="events", Records=records)
    assert out["FailedRecordCount"] == 0
    assert len(out["Records"]) == 500
    for i, (rec, res) in enumerate(zip(records, out["Records"])):
        want = shard_of(shards, int(rec["ExplicitHashKey"]) if "ExplicitHashKey" in rec
                        else md5_hash(rec["PartitionKey"]))
        assert res["ShardId"] == want, i
    # Within each shard, request order is sequence order.
    for shard in ("shardId-000000000000", "shardId-000000000001"):
        seqs = [int(r["SequenceNumber"]) for r in out["Records"] if r["ShardId"] == shard]
        assert seqs == sorted(seqs)
        got = [x for x in read_all(kc, "events", shard) if x["Data"].startswith(b"batch")]
        assert [int(x["SequenceNumber"]) for x in got] == seqs
    # Unicode partition keys and empty data.
    r = kc.put_records(StreamName="events", Records=[{"PartitionKey": "clé ✓", "Data": b""}])
    assert r["FailedRecordCount"] == 0
    got = read_all(kc, "events", r["Records"][0]["ShardId"])
    assert (got[-1]["PartitionKey"], got[-1]["Data"]) == ("clé ✓", b"")


def test_put_records_partial_failure(levee):
    """One shard's records would pass the stream's pending-bytes limit (1
    MiB): they fail with ProvisionedThroughputExceededException, the other
    shard's record is written, and the answer says which is which, in
    request order."""
    lv, kc = start(levee)
    quarter = 2 ** 126
    big = b"z" * 1000000
    # One append per shard, in shard order. Shard 0's is taken (nothing is
    # pending: an append is never refused then); shard 1's two records would
    # pass the limit while it is; shard 2's small one still fits.
    records = [
        {"PartitionKey": "a", "Data": big, "ExplicitHashKey": str(quarter)},      # shard 1
        {"PartitionKey": "b", "Data": big, "ExplicitHashKey": "0"},               # shard 0
        {"PartitionKey": "c", "Data": big, "ExplicitHashKey": str(quarter + 1)},  # shard 1
        {"PartitionKey": "d", "Data": b"small", "ExplicitHashKey": str(2 * quarter)},  # shard 2
    ]
    out = kc.put_records(StreamName="tight", Records=records)
    assert out["FailedRecordCount"] == 2
    a, b, c, d = out["Records"]
    assert a["ErrorCode"] == c["ErrorCode"] == "ProvisionedThroughputExceededException"
    assert a["ErrorMessage"] == ("Rate exceeded for shard shardId-000000000001 in stream tight under account %s."
                                 % ACCOUNT)
    assert "SequenceNumber" not in a
    assert b["ShardId"] == "shardId-000000000000" and "ErrorCode" not in b
    assert d["ShardId"] == "shardId-000000000002" and "ErrorCode" not in d
    assert read_all(kc, "tight", "shardId-000000000001") == []
    got = read_all(kc, "tight", "shardId-000000000000")
    assert [(x["SequenceNumber"], len(x["Data"])) for x in got] == [(b["SequenceNumber"], 1000000)]
    got = read_all(kc, "tight", "shardId-000000000002")
    assert [(x["SequenceNumber"], x["Data"]) for x in got] == [(d["SequenceNumber"], b"small")]


# ---------------------------------------------------------------------------
# Iterators
# ---------------------------------------------------------------------------

def test_iterators_expire_and_cannot_be_forged(levee, monkeypatch):
    monkeypatch.setenv("LEVEE_TEST_ITERATOR_TTL_MS", "1500")
    lv, kc = start(levee)
    kc.put_record(StreamName="events", PartitionKey="k", Data=b"one", ExplicitHashKey="0")
    it = kc.get_shard_iterator(StreamName="events", ShardId="shardId-000000000000",
                               ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
    assert len(it) <= 512

    # Forged: one character changed, another shard's number, random bytes.
    flipped = it[:10] + ("A" if it[10] != "A" else "B") + it[11:]
    code, msg = error(lambda: kc.get_records(ShardIterator=flipped))
    assert (code, msg) == ("InvalidArgumentException", "Invalid ShardIterator.")
    raw_bytes = bytearray(base64.b64decode(it))
    raw_bytes[5] ^= 1  # the shard
    assert error(lambda: kc.get_records(ShardIterator=base64.b64encode(bytes(raw_bytes)).decode()))[0] == \
        "InvalidArgumentException"
    assert error(lambda: kc.get_records(ShardIterator=base64.b64encode(os.urandom(100)).decode()))[0] == \
        "InvalidArgumentException"
    assert error(lambda: kc.get_records(ShardIterator="not an iterator"))[0] == "InvalidArgumentException"

    # Each NextShardIterator restarts the clock.
    time.sleep(0.9)
    r = kc.get_records(ShardIterator=it)
    assert [x["Data"] for x in r["Records"]] == [b"one"]
    time.sleep(0.9)
    r2 = kc.get_records(ShardIterator=r["NextShardIterator"])  # 0.9 s old, fine
    assert r2["Records"] == []
    code, msg = error(lambda: kc.get_records(ShardIterator=it))  # 1.8 s old
    assert code == "ExpiredIteratorException"
    assert "tolerated delay of 1500 milliseconds" in msg

    # A deleted and re-created stream refuses the old stream's iterators.
    fresh = kc.get_shard_iterator(StreamName="events", ShardId="shardId-000000000000",
                                  ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
    kc.delete_stream(StreamName="events")
    code, msg = error(lambda: kc.get_records(ShardIterator=fresh))
    assert code == "ResourceNotFoundException"
    assert msg == "Shard shardId-000000000000 in stream events under account %s does not exist" % ACCOUNT
    kc.create_stream(StreamName="events", ShardCount=2)
    assert error(lambda: kc.get_records(ShardIterator=fresh))[0] == "ResourceNotFoundException"


def test_iterator_errors(levee):
    lv, kc = start(levee)
    r = kc.put_record(StreamName="events", PartitionKey="k", Data=b"x", ExplicitHashKey="0")
    seq = r["SequenceNumber"]

    def gsi(**kw):
        args = dict(StreamName="events", ShardId="shardId-000000000000", ShardIteratorType="AT_SEQUENCE_NUMBER")
        args.update(kw)
        return kc.get_shard_iterator(**args)

    code, msg = error(lambda: gsi(ShardId="shardId-000000000001", StartingSequenceNumber=seq))
    assert code == "InvalidArgumentException" and "shardId-000000000000" in msg
    assert error(lambda: gsi(StartingSequenceNumber="12345"))[0] == "InvalidArgumentException"
    assert error(lambda: gsi(StartingSequenceNumber="12x"))[0] == "ValidationException"
    assert error(lambda: gsi())[0] == "InvalidArgumentException"
    # A number the shard has not handed out yet.
    future = str(int(seq) + 5)
    assert error(lambda: gsi(StartingSequenceNumber=future))[0] == "InvalidArgumentException"
    assert error(lambda: gsi(ShardIteratorType="AFTER_SEQUENCE_NUMBER", StartingSequenceNumber=str(int(seq) + 1))
                 )[0] == "InvalidArgumentException"
    gsi(StartingSequenceNumber=str(int(seq) + 1))  # AT the next one is fine
    code, msg = error(lambda: gsi(ShardId="shardId-000000000002", ShardIteratorType="LATEST"))
    assert (code, msg) == ("ResourceNotFoundException",
                           "Shard shardId-000000000002 in stream events under account %s does not exist" % ACCOUNT)
    assert error(lambda: gsi(ShardId="bogus", ShardIteratorType="LATEST"))[0] == "ResourceNotFoundException"
    assert error(lambda: gsi(StreamName="nope", ShardIteratorType="LATEST"))[0] == "ResourceNotFoundException"
    assert error(lambda: gsi(ShardIteratorType="AT_TIMESTAMP"))[0] == "InvalidArgumentException"
    assert error(lambda: gsi(ShardIteratorType="TRIM_HORIZON", StartingSequenceNumber=seq))[0] == \
        "InvalidArgumentException"


# ---------------------------------------------------------------------------
# StreamARN
# ---------------------------------------------------------------------------

def test_stream_arn_everywhere(levee):
    """StreamARN in place of StreamName, in every operation that names a
    stream. Raw requests: Debian's boto3 model predates StreamARN (the JS
    SDK test uses it through the SDK)."""
    lv, kc = start(levee)
    arn = "arn:aws:kinesis:eu-west-1:%s:stream/events" % ACCOUNT

    def call(op, body, status=200):
        got, doc, r = raw(lv, op, body)
        assert got == status, (op, got, r.content[:300])
        return doc

    d = call("DescribeStream", {"StreamARN": arn})["StreamDescription"]
    assert d["StreamName"] == "events" and d["StreamARN"] == arn
    assert call("DescribeStreamSummary", {"StreamARN": arn})["StreamDescriptionSummary"]["StreamARN"] == arn
    assert len(call("ListShards", {"StreamARN": arn})["Shards"]) == 2
    r = call("PutRecord", {"StreamARN": arn, "PartitionKey": "k", "Data": "YnkgYXJu", "ExplicitHashKey": "0"})
    out = call("PutRecords", {"StreamARN": arn, "Records": [{"PartitionKey": "k", "Data": "YmF0Y2g=",
                                                             "ExplicitHashKey": "0"}]})
    assert out["FailedRecordCount"] == 0
    it = call("GetShardIterator", {"StreamARN": arn, "ShardId": r["ShardId"],
                                   "ShardIteratorType": "TRIM_HORIZON"})["ShardIterator"]
    got = call("GetRecords", {"ShardIterator": it, "StreamARN": arn})
    assert [x["Data"] for x in got["Records"]] == ["YnkgYXJu", "YmF0Y2g="]
    other = "arn:aws:kinesis:us-east-1:%s:stream/tight" % ACCOUNT
    assert call("GetRecords", {"ShardIterator": it, "StreamARN": other}, 400)["__type"] == \
        "InvalidArgumentException"
    # Both given: they must agree.
    assert call("DescribeStreamSummary", {"StreamName": "tight", "StreamARN": arn}, 400)["__type"] == \
        "InvalidArgumentException"
    call("DescribeStreamSummary", {"StreamName": "events", "StreamARN": arn})
    e = call("DescribeStream", {"StreamARN": "arn:aws:kinesis:us-east-1:%s:stream/nope" % ACCOUNT}, 400)
    assert e == {"__type": "ResourceNotFoundException", "message": "Stream nope under account %s not found." % ACCOUNT}
    call("DeleteStream", {"StreamARN": other})
    assert "tight" not in kc.list_streams()["StreamNames"]


# ---------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------

def test_bad_input_gets_kinesis_errors(levee):
    lv, kc = start(levee)
    ok = {"StreamName": "events", "PartitionKey": "k", "Data": "aGk="}

    def expect(op, body, status, type_, contains=None, **kw):
        got_status, got_type, message = raw_error(lv, op, body, **kw)
        assert (got_status, got_type) == (status, type_), (op, body if isinstance(body, dict) else body[:80],
                                                            message)
        if contains:
            assert contains in message, message
        return message

    expect("PutRecord", b"{not json", 400, "SerializationException")
    expect("PutRecord", b"[1, 2]", 400, "SerializationException")
    expect("PutRecord", dict(ok, Data=12), 400, "SerializationException")
    expect("PutRecord", dict(ok, StreamName=["events"]), 400, "SerializationException")
    expect("PutRecord", dict(ok, Data="%%%"), 400, "SerializationException", "base64")
    expect("PutRecords", {"StreamName": "events", "Records": "many"}, 400, "SerializationException")
    expect("ListStreams", {"Limit": "10"}, 400, "SerializationException")
    expect("PutRecord", ok, 400, "SerializationException", "CBOR", content_type="application/x-amz-cbor-1.1")

    expect("PutRecord", dict(ok, StreamName="bad name"), 400, "ValidationException",
           "1 validation error detected: Value 'bad name' at 'streamName' failed to satisfy constraint: Member must "
           "satisfy regular expression pattern: [a-zA-Z0-9_.-]+")
    expect("PutRecord", dict(ok, StreamName="x" * 129), 400, "ValidationException", "length less than or equal to 128")
    expect("PutRecord", {"Data": "aGk="}, 400, "ValidationException", "2 validation errors detected")
    expect("PutRecord", dict(ok, PartitionKey="k" * 257), 400, "ValidationException", "partitionKey")
    expect("PutRecord", dict(ok, ExplicitHashKey="01"), 400, "ValidationException", "explicitHashKey")
    expect("PutRecord", dict(ok, ExplicitHashKey=str(2 ** 128)), 400, "InvalidArgumentException", "ExplicitHashKey")
    expect("ListStreams", {"Limit": 0}, 400, "ValidationException", "greater than or equal to 1")
    expect("ListStreams", {"Limit": 10001}, 400, "ValidationException", "less than or equal to 10000")
    expect("DescribeStream", {"StreamName": "events", "Limit": 10001}, 400, "ValidationException")
    expect("GetRecords", {"ShardIterator": "x", "Limit": 0}, 400, "ValidationException")
    expect("GetRecords", {"ShardIterator": "A" * 513}, 400, "ValidationException")
    expect("CreateStream", {"StreamName": "n", "ShardCount": 0}, 400, "ValidationException")
    expect("CreateStream", {"StreamName": "n", "ShardCount": 1025}, 400, "LimitExceededException")
    expect("DescribeStream", {"StreamARN": "arn:aws:sqs:us-east-1:000000000000:q"}, 400, "ValidationException")

    # Sizes: one record's data over 1 MiB; data and key over 1 MiB; more
    # than 500 records; more than 5 MiB of records.
    b64 = lambda n: base64.b64encode(b"d" * n).decode()  # noqa: E731
    expect("PutRecord", dict(ok, Data=b64(1024 * 1024 + 1)), 400, "ValidationException",
           "Member must have length less than or equal to 1048576")
    expect("PutRecord", dict(ok, Data=b64(1024 * 1024), PartitionKey="kk"), 400, "InvalidArgumentException")
    many = [{"PartitionKey": "k", "Data": "aGk="}] * 501
    expect("PutRecords", {"StreamName": "events", "Records": many}, 400, "ValidationException",
           "Member must have length less than or equal to 500")
    expect("PutRecords", {"StreamName": "events", "Records": []}, 400, "ValidationException")
    big = [{"PartitionKey": "k", "Data": b64(880000)}] * 6
    expect("PutRecords", {"StreamName": "events", "Records": big}, 400, "InvalidArgumentException", "5 MB")

    expect("PutRecord", dict(ok, StreamName="nope"), 400, "ResourceNotFoundException",
           "Stream nope under account 000000000000 not found.")
    expect("MergeShards", {"StreamName": "events"}, 400, "UnknownOperationException")
    expect("GetRecords", {"ShardIterator": "AAAA"}, 400, "InvalidArgumentException")
    # Another service's target on the api listener.
    status, type_, _ = raw_error(lv, "", {}, target="DynamoDB_20120810.PutItem")
    assert (status, type_) == (400, "UnknownOperationException")

    # None of it reached the log, which still works.
    r = kc.put_record(StreamName="events", PartitionKey="k", Data=b"after", ExplicitHashKey="0")
    got = read_all(kc, "events", "shardId-000000000000")
    assert [x["Data"] for x in got] == [b"after"] and got[0]["SequenceNumber"] == r["SequenceNumber"]


def test_metrics(levee):
    lv, kc = start(levee)
    for _ in range(3):
        kc.put_record(StreamName="events", PartitionKey="k", Data=b"m")
    error(lambda: kc.describe_stream(StreamName="nope"))
    raw(lv, "PutRecord", b"{")
    m = parse_prometheus(requests.get(lv.admin_url + "/metrics", timeout=10).text)
    name = "levee_kinesis_requests_total"
    assert sample_value(m, name, operation="PutRecord", result="ok") == 3
    assert sample_value(m, name, operation="DescribeStream", result="ResourceNotFoundException") == 1
    assert sample_value(m, name, operation="PutRecord", result="SerializationException") == 1
    assert sample_value(m, name, operation="GetRecords", result="ok") == 0


# ---------------------------------------------------------------------------
# Restarts and crashes
# ---------------------------------------------------------------------------

def test_records_and_iterators_survive_a_restart(levee):
    lv, kc = start(levee)
    kc.create_stream(StreamName="made", ShardCount=1)
    first = [kc.put_record(StreamName=s, PartitionKey="k%d" % i, Data=b"%s %d" % (s.encode(), i))
             for s in ("made", "events") for i in range(5)]
    it = kc.get_shard_iterator(StreamName="made", ShardId="shardId-000000000000",
                               ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
    assert lv.stop() == 0

    lv2, kc2 = start(levee)
    assert kc2.list_streams()["StreamNames"] == ["events", "made", "tight"]
    got = kc2.get_records(ShardIterator=it)  # the key survived too
    assert [x["Data"] for x in got["Records"]] == [b"made %d" % i for i in range(5)]
    assert [x["SequenceNumber"] for x in got["Records"]] == [r["SequenceNumber"] for r in first[:5]]
    r = kc2.put_record(StreamName="made", PartitionKey="k", Data=b"later")
    assert int(r["SequenceNumber"]) > int(first[4]["SequenceNumber"])
    total = sum(len(read_all(kc2, "events", s["ShardId"]))
                for s in kc2.list_shards(StreamName="events")["Shards"])
    assert total == 5


def test_crash_keeps_every_acknowledged_record_once_in_order(levee):
    """4 writers PutRecords without pause; levee is SIGKILLed at a random
    moment, started again on the same data_dir, 6 times. Every record
    acknowledged is then present exactly once, with the sequence number
    it was acknowledged with, in each writer's order per shard; a record
    refused (ProvisionedThroughputExceeded) is absent; nothing is
    duplicated."""
    rng = random.Random(int(os.environ.get("LEVEE_CRASH_SEED", "0")) or None)
    acked = {}        # id -> (shard, seq)
    refused = set()
    order = {}        # (writer, shard) -> [ids in ack order]
    lock = threading.Lock()
    rounds = 6
    for rnd in range(rounds):
        lv, _ = start(levee)
        stop = threading.Event()

        def writer(w):
            kc = client(lv, read_timeout=10)
            n = 0
            while not stop.is_set():
                ids = ["r%d-w%d-%d" % (rnd, w, n + i) for i in range(20)]
                n += 20
                records = [{"PartitionKey": "%s" % rng.random(), "Data": i.encode() + b" " + b"p" * 60}
                           for i in ids]
                try:
                    out = kc.put_records(StreamName="events", Records=records)
                except (ClientError, BotoCoreError, OSError):
                    return  # levee is gone: the outcome of this batch is unknown
                with lock:
                    for i, res in zip(ids, out["Records"]):
                        if "ErrorCode" in res:
                            refused.add(i)
                            continue
                        acked[i] = (res["ShardId"], int(res["SequenceNumber"]))
                        order.setdefault((w, res["ShardId"]), []).append(i)

        threads = [threading.Thread(target=writer, args=(w,), daemon=True) for w in range(4)]
        for t in threads:
            t.start()
        time.sleep(rng.uniform(0.3, 1.5))
        lv.proc.kill()
        lv.wait()
        lv.checked = True  # killed on purpose: no clean exit to check
        stop.set()
        for t in threads:
            t.join(timeout=20)
            assert not t.is_alive()
    assert len(acked) > 100, "too few records were written to test anything"
    print("crash test: %d records acknowledged, %d refused over %d kills" % (len(acked), len(refused), rounds))

    lv, kc = start(levee)
    seen = {}
    for shard in ("shardId-000000000000", "shardId-000000000001"):
        recs = read_all(kc, "events", shard)
        seqs = [int(x["SequenceNumber"]) for x in recs]
        assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs), "sequence numbers must increase"
        for x in recs:
            rid = x["Data"].split(b" ", 1)[0].decode()
            assert rid not in seen, "record %s is present twice" % rid
            seen[rid] = (shard, int(x["SequenceNumber"]))
    missing = [i for i in acked if i not in seen]
    assert not missing, "%d acknowledged records lost, e.g. %s" % (len(missing), missing[:5])
    wrong = [i for i in acked if seen[i] != acked[i]]
    assert not wrong, "acknowledged with another position: %s" % wrong[:5]
    assert not (refused & set(seen)), "a refused record was written"
    for (w, shard), ids in order.items():
        positions = [seen[i][1] for i in ids]
        assert positions == sorted(positions), "writer %d's records out of order in %s" % (w, shard)


# ---------------------------------------------------------------------------
# The AWS SDK for JavaScript v3
# ---------------------------------------------------------------------------

@pytest.mark.skipif(not os.path.isdir(os.path.join(NODE_DIR, "node_modules", "@aws-sdk", "client-kinesis")),
                    reason="tests/node/node_modules has no @aws-sdk/client-kinesis: run scripts/install-deps.sh test")
def test_aws_sdk_js_v3(levee):
    lv, _ = start(levee)
    r = subprocess.run(["node", os.path.join(NODE_DIR, "kinesis_test.mjs"), lv.api_url],
                       cwd=NODE_DIR, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-4000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["records"] == 4
