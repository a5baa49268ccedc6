"""test_consumers.py: stream consumers (issue 5) against the real binary:
records put with boto3 through the Kinesis API on the api listener reach a
function as Kinesis events, in order per shard, at least once, and survive
a restart without being delivered again.

The function is a `provided` runtime written by the test into its tmp dir:
a python3 bootstrap that appends every event it gets to a file (one JSON
line per invocation: whether it will succeed, and the event), then answers
{} (MODE=ok) or reports an error (MODE=fail).

Covered:
  - every record put reaches the function exactly once, in sequence-number
    order per shard, in batches of at most batch_size, with the fields of a
    Kinesis event (eventID, eventSourceARN, partitionKey, data);
  - the consumer metrics agree (records processed, no lag);
  - after a clean stop (SIGTERM) and a start on the same data_dir, nothing
    already processed runs again and what is put afterwards does;
  - a function that always fails: the batch runs 1 + max_retries times, then
    lands in the on_failure file as one JSON line with its records, and the
    consumer moves on.

Needs boto3 and the Kinesis API: a missing one fails the test (nothing is
skipped). Every wait is bounded."""

import base64
import json
import os
import stat
import time

import boto3
import requests
from botocore.config import Config

from prometheus_check import parse_prometheus, sample_value

SINK = r'''#!/usr/bin/python3
import http.client, json, os
host, port = os.environ['AWS_LAMBDA_RUNTIME_API'].split(':')
out = os.environ['OUT']
mode = os.environ.get('MODE', 'ok')
API = '/2018-06-01/runtime'
conn = http.client.HTTPConnection(host, int(port))
while True:
    conn.request('GET', API + '/invocation/next')
    r = conn.getresponse()
    body = r.read()
    rid = r.getheader('Lambda-Runtime-Aws-Request-Id')
    line = json.dumps({'ok': mode == 'ok', 'event': json.loads(body)}) + '\n'
    fd = os.open(out, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.write(fd, line.encode())
    os.close(fd)
    base = API + '/invocation/' + rid
    if mode == 'ok':
        conn.request('POST', base + '/response', '{}')
    else:
        conn.request('POST', base + '/error', json.dumps({'errorMessage': 'no', 'errorType': 'SinkError'}),
                     {'Lambda-Runtime-Function-Error-Type': 'SinkError'})
    conn.getresponse().read()
'''

ARN = "arn:aws:kinesis:us-east-1:000000000000:stream/"


def make_sink(tmp_path):
    code = tmp_path / "sink"
    code.mkdir(exist_ok=True)
    boot = code / "bootstrap"
    boot.write_text(SINK)
    boot.chmod(boot.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return str(code)


def config(code, out, mode="ok", consumer_extra=""):
    return f"""
        streams:
          clicks: {{ shards: 4 }}
        functions:
          sink:
            runtime: provided
            code: {code}
            env: {{ OUT: {out}, MODE: {mode} }}
        consumers:
          - name: clicks-sink
            stream: clicks
            function: sink
            batch_size: 25
{consumer_extra}
        """


def kinesis(lv):
    return boto3.client(
        "kinesis", endpoint_url=lv.api_url, region_name="us-east-1",
        aws_access_key_id="test", aws_secret_access_key="test",
        config=Config(retries={"max_attempts": 0}, read_timeout=30, connect_timeout=5))


def put(client, first, n, prefix="r"):
    """Puts records first..first+n-1 (data PREFIX-i, keys spread over the
    shards); returns [(shard_id, sequence_number, data)] as acknowledged."""
    out = []
    i = first
    while i < first + n:
        chunk = list(range(i, min(first + n, i + 100)))
        res = client.put_records(StreamName="clicks", Records=[
            {"Data": ("%s-%d" % (prefix, k)).encode(), "PartitionKey": "key-%d" % k} for k in chunk])
        assert res["FailedRecordCount"] == 0, res
        for k, r in zip(chunk, res["Records"]):
            out.append((r["ShardId"], r["SequenceNumber"], "%s-%d" % (prefix, k)))
        i += len(chunk)
    return out


def seen(out):
    """The invocations the sink logged: [(ok, [record dicts])]."""
    try:
        with open(out) as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        return []
    return [(v["ok"], v["event"]["Records"]) for v in map(json.loads, lines)]


def wait_seen(out, n_records, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if sum(len(recs) for ok, recs in seen(out) if ok) >= n_records:
            break
        time.sleep(0.1)
    return seen(out)


def by_shard(puts):
    shards = {}
    for shard, seq, data in puts:
        shards.setdefault(shard, []).append((seq, data))
    return shards


def check_delivery(invocations, puts):
    """Every put record seen exactly once, in order per shard."""
    got = {}
    for ok, recs in invocations:
        assert ok
        assert 1 <= len(recs) <= 25
        shard_ids = {r["eventID"].split(":")[0] for r in recs}
        assert len(shard_ids) == 1, "a batch mixes shards"
        for r in recs:
            k = r["kinesis"]
            shard, seq = r["eventID"].split(":")
            assert seq == k["sequenceNumber"]
            assert r["eventSource"] == "aws:kinesis"
            assert r["eventName"] == "aws:kinesis:record"
            assert r["eventSourceARN"] == ARN + "clicks"
            assert k["kinesisSchemaVersion"] == "1.0"
            assert isinstance(k["approximateArrivalTimestamp"], float)
            data = base64.b64decode(k["data"]).decode()
            assert k["partitionKey"] == "key-" + data.split("-")[1]
            got.setdefault(shard, []).append((seq, data))
    want = by_shard(puts)
    assert sorted(got) == sorted(want)
    for shard in want:
        assert got[shard] == want[shard], "shard %s: delivered out of order or more than once" % shard


def metrics(lv):
    return parse_prometheus(requests.get(lv.admin_url + "/metrics", timeout=10).text)


def test_records_reach_the_function_in_order_per_shard(levee, tmp_path):
    out = str(tmp_path / "seen.jsonl")
    lv = levee(config(make_sink(tmp_path), out))
    client = kinesis(lv)
    puts = put(client, 0, 150)
    for k in range(150, 160):
        r = client.put_record(StreamName="clicks", Data=("r-%d" % k).encode(), PartitionKey="key-%d" % k)
        puts.append((r["ShardId"], r["SequenceNumber"], "r-%d" % k))
    invocations = wait_seen(out, 160)
    check_delivery(invocations, puts)
    assert len(by_shard(puts)) == 4  # the keys spread over every shard

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        fams = metrics(lv)
        total = sum(sample_value(fams, "levee_consumer_records_total", consumer="clicks-sink", stream="clicks",
                                 shard=str(i), result="ok") or 0 for i in range(4))
        if total >= 160:
            break
        time.sleep(0.1)
    assert total == 160
    for i in range(4):
        labels = dict(consumer="clicks-sink", stream="clicks", shard=str(i))
        assert sample_value(fams, "levee_consumer_lag_records", **labels) == 0
        assert sample_value(fams, "levee_consumer_lag_seconds", **labels) == 0
        assert sample_value(fams, "levee_consumer_batches_total", result="failed", **labels) == 0


def test_clean_restart_delivers_nothing_twice(levee, tmp_path):
    out = str(tmp_path / "seen.jsonl")
    code = make_sink(tmp_path)
    lv = levee(config(code, out))
    client = kinesis(lv)
    puts = put(client, 0, 60)
    wait_seen(out, 60)
    # The checkpoints are written after the function answers: give the
    # last one its moment, then stop cleanly.
    time.sleep(0.5)
    assert lv.stop() == 0
    ckpts = os.listdir(tmp_path / "levee-data" / "consumers" / "clicks-sink")
    assert sorted(c for c in ckpts if c.endswith(".checkpoint")) == \
        ["shardId-%012d.checkpoint" % i for i in range(4)]

    lv2 = levee(config(code, out))
    client = kinesis(lv2)
    puts += put(client, 60, 40)
    invocations = wait_seen(out, 100)
    time.sleep(1.0)  # anything delivered again would show up by now
    check_delivery(seen(out), puts)
    assert sum(len(recs) for ok, recs in invocations) == 100


def test_failing_function_ends_in_the_dead_letter_file(levee, tmp_path):
    out = str(tmp_path / "seen.jsonl")
    dlq = tmp_path / "failed.jsonl"
    extra = "            max_retries: 1\n            retry_backoff: 100ms\n            on_failure: ./failed.jsonl"
    lv = levee(config(make_sink(tmp_path), out, mode="fail", consumer_extra=extra))
    client = kinesis(lv)
    res = client.put_records(StreamName="clicks", Records=[
        {"Data": b"x-%d" % k, "PartitionKey": "same"} for k in range(3)])
    assert res["FailedRecordCount"] == 0
    shard = res["Records"][0]["ShardId"]
    seqs = [r["SequenceNumber"] for r in res["Records"]]

    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not (dlq.exists() and dlq.read_text().endswith("\n")):
        time.sleep(0.1)
    lines = dlq.read_text().splitlines()
    assert len(lines) == 1
    d = json.loads(lines[0])
    assert d["consumer"] == "clicks-sink"
    assert d["stream"] == "clicks"
    assert d["shardId"] == shard
    assert d["firstSequenceNumber"] == seqs[0]
    assert d["lastSequenceNumber"] == seqs[-1]
    assert d["errorType"] == "SinkError"
    assert d["error"]["errorMessage"] == "no"
    assert d["requestContext"]["approximateInvokeCount"] == 2
    assert d["KinesisBatchInfo"]["batchSize"] == 3
    assert [base64.b64decode(r["data"]) for r in d["records"]] == [b"x-0", b"x-1", b"x-2"]
    assert [r["sequenceNumber"] for r in d["records"]] == seqs

    # Two runs of the batch (1 + max_retries), then nothing more for it.
    time.sleep(0.5)
    runs = seen(out)
    assert len(runs) == 2
    assert all(len(recs) == 3 and not ok for ok, recs in runs)

    shard_label = dict(consumer="clicks-sink", stream="clicks", shard=str(int(shard.split("-")[1])))
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        fams = metrics(lv)
        if sample_value(fams, "levee_consumer_batches_total", result="dead_lettered", **shard_label) == 1:
            break
        time.sleep(0.1)
    assert sample_value(fams, "levee_consumer_batches_total", result="dead_lettered", **shard_label) == 1
    assert sample_value(fams, "levee_consumer_batches_total", result="failed", **shard_label) == 2
    assert sample_value(fams, "levee_consumer_records_total", result="dead_lettered", **shard_label) == 3
    assert sample_value(fams, "levee_consumer_lag_records", **shard_label) == 0
