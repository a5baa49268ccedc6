// kinesis_test.mjs: levee's Kinesis API through the AWS SDK for JavaScript
// v3 (@aws-sdk/client-kinesis), unmodified but for the request handler:
// the SDK speaks HTTP/2 to Kinesis by default, which levee does not serve
// yet, so the client is given NodeHttpHandler (HTTP/1.1).
//
// Run by tests/integration/test_kinesis.py against a running levee:
//
//   node tests/node/kinesis_test.mjs http://127.0.0.1:PORT
//
// Creates a stream, puts records (PutRecord, PutRecords), reads them back
// (GetShardIterator, GetRecords), describes and lists it, deletes it, and
// checks a Kinesis error. Prints one JSON line ({"records": N}) and exits 0,
// or prints the failure and exits 1.
import assert from 'node:assert/strict';
import {
  CreateStreamCommand, DeleteStreamCommand, DescribeStreamCommand, DescribeStreamSummaryCommand,
  GetRecordsCommand, GetShardIteratorCommand, KinesisClient, ListShardsCommand, ListStreamsCommand,
  PutRecordCommand, PutRecordsCommand,
} from '@aws-sdk/client-kinesis';
import { NodeHttpHandler } from '@smithy/node-http-handler';

const [endpoint] = process.argv.slice(2);
const client = new KinesisClient({
  endpoint,
  region: 'us-east-1',
  maxAttempts: 1,
  credentials: { accessKeyId: 'test', secretAccessKey: 'test' },
  requestHandler: new NodeHttpHandler(),
});
const send = (command) => client.send(command);
const text = (s) => new TextEncoder().encode(s);
const untext = (b) => new TextDecoder().decode(b);

async function main() {
  const StreamName = 'from-node';
  await send(new CreateStreamCommand({ StreamName, ShardCount: 1 }));

  const summary = await send(new DescribeStreamSummaryCommand({ StreamName }));
  assert.equal(summary.StreamDescriptionSummary.StreamStatus, 'ACTIVE');
  assert.equal(summary.StreamDescriptionSummary.OpenShardCount, 1);
  const described = await send(new DescribeStreamCommand({ StreamName }));
  const shard = described.StreamDescription.Shards[0];
  assert.equal(shard.ShardId, 'shardId-000000000000');
  assert.equal(shard.HashKeyRange.EndingHashKey, (2n ** 128n - 1n).toString());
  assert.ok(described.StreamDescription.StreamCreationTimestamp instanceof Date);

  const listed = await send(new ListStreamsCommand({}));
  assert.ok(listed.StreamNames.includes(StreamName));
  const shards = await send(new ListShardsCommand({ StreamName }));
  assert.equal(shards.Shards.length, 1);

  const one = await send(new PutRecordCommand({ StreamName, PartitionKey: 'a', Data: text('first') }));
  assert.equal(one.ShardId, 'shardId-000000000000');
  const batch = await send(new PutRecordsCommand({
    StreamName,
    Records: ['second', 'third', 'fourth'].map((s) => ({ PartitionKey: s, Data: text(s) })),
  }));
  assert.equal(batch.FailedRecordCount, 0);
  const seqs = [one.SequenceNumber, ...batch.Records.map((r) => r.SequenceNumber)].map(BigInt);
  for (let i = 1; i < seqs.length; i++) assert.ok(seqs[i] > seqs[i - 1], 'sequence numbers increase');

  const { ShardIterator } = await send(new GetShardIteratorCommand({
    StreamName, ShardId: shard.ShardId, ShardIteratorType: 'TRIM_HORIZON',
  }));
  const got = await send(new GetRecordsCommand({ ShardIterator, Limit: 100 }));
  assert.deepEqual(got.Records.map((r) => untext(r.Data)), ['first', 'second', 'third', 'fourth']);
  assert.deepEqual(got.Records.map((r) => r.PartitionKey), ['a', 'second', 'third', 'fourth']);
  assert.ok(got.Records[0].ApproximateArrivalTimestamp instanceof Date);
  assert.equal(got.MillisBehindLatest, 0);
  const after = await send(new GetShardIteratorCommand({
    StreamName, ShardId: shard.ShardId, ShardIteratorType: 'AFTER_SEQUENCE_NUMBER',
    StartingSequenceNumber: one.SequenceNumber,
  }));
  const rest = await send(new GetRecordsCommand({ ShardIterator: after.ShardIterator }));
  assert.equal(rest.Records.length, 3);
  const at = await send(new GetShardIteratorCommand({
    StreamName, ShardId: shard.ShardId, ShardIteratorType: 'AT_TIMESTAMP', Timestamp: new Date(Date.now() - 60000),
  }));
  assert.equal((await send(new GetRecordsCommand({ ShardIterator: at.ShardIterator }))).Records.length, 4);

  await send(new DeleteStreamCommand({ StreamName }));
  await assert.rejects(
    send(new DescribeStreamSummaryCommand({ StreamName })),
    (e) => e.name === 'ResourceNotFoundException' && /not found/.test(e.message) && e.$metadata.httpStatusCode === 400,
  );
  await assert.rejects(
    send(new PutRecordsCommand({ StreamName: 'bad name', Records: [{ PartitionKey: 'k', Data: text('x') }] })),
    (e) => e.name === 'ValidationException',
  );
  console.log(JSON.stringify({ records: got.Records.length }));
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
