// invoke_test.mjs: levee's Lambda Invoke API through the AWS SDK for
// JavaScript v3 (@aws-sdk/client-lambda, InvokeCommand), unmodified.
//
// Run by tests/integration/test_invoke_api.py against a levee whose api
// listener serves the `echo` function of tests/integration/functions/invoke:
//
//   node tests/node/invoke_test.mjs http://127.0.0.1:PORT /path/to/touch-file
//
// Checks RequestResponse (payload, request id, executed version, log tail),
// a function error, DryRun, an unknown function, and Event (the function
// later appends the event to the touch file, which the Python side checks).
// Prints one JSON line with what the Python side needs and exits 0, or
// prints the failure and exits 1.
import assert from 'node:assert/strict';
import { InvokeCommand, LambdaClient } from '@aws-sdk/client-lambda';

const [endpoint, touchPath] = process.argv.slice(2);
const client = new LambdaClient({
  endpoint,
  region: 'us-east-1',
  maxAttempts: 1,
  credentials: { accessKeyId: 'test', secretAccessKey: 'test' },
});

const encode = (value) => Buffer.from(JSON.stringify(value));
const decode = (bytes) => JSON.parse(Buffer.from(bytes).toString('utf8'));

async function main() {
  const ok = await client.send(new InvokeCommand({
    FunctionName: 'echo', Payload: encode({ via: 'aws-sdk-js-v3' }), LogType: 'Tail',
  }));
  assert.equal(ok.StatusCode, 200);
  assert.equal(ok.FunctionError, undefined);
  assert.equal(ok.ExecutedVersion, '$LATEST');
  const body = decode(ok.Payload);
  assert.deepEqual(body.echo, { via: 'aws-sdk-js-v3' });
  assert.equal(body.requestId, ok.$metadata.requestId);
  const tail = Buffer.from(ok.LogResult, 'base64').toString('utf8');
  assert.match(tail, new RegExp(`invoke-fixture handling ${body.requestId}`));

  const arn = await client.send(new InvokeCommand({
    FunctionName: 'arn:aws:lambda:us-east-1:123456789012:function:echo', Qualifier: '$LATEST',
    Payload: encode({ by: 'arn' }),
  }));
  assert.deepEqual(decode(arn.Payload).echo, { by: 'arn' });

  const bad = await client.send(new InvokeCommand({ FunctionName: 'echo', Payload: encode({ fail: 'from node' }) }));
  assert.equal(bad.StatusCode, 200);
  assert.equal(bad.FunctionError, 'Unhandled');
  assert.equal(decode(bad.Payload).errorType, 'Boom');
  assert.equal(decode(bad.Payload).errorMessage, 'from node');

  const dry = await client.send(new InvokeCommand({ FunctionName: 'echo', InvocationType: 'DryRun' }));
  assert.equal(dry.StatusCode, 204);

  await assert.rejects(
    client.send(new InvokeCommand({ FunctionName: 'no-such-function', Payload: encode({}) })),
    (e) => e.name === 'ResourceNotFoundException' && /Function not found/.test(e.message),
  );

  const ev = await client.send(new InvokeCommand({
    FunctionName: 'echo', InvocationType: 'Event', Payload: encode({ touch: touchPath, via: 'node-event' }),
  }));
  assert.equal(ev.StatusCode, 202);
  assert.ok(ev.$metadata.requestId);

  console.log(JSON.stringify({ ok: true, eventRequestId: ev.$metadata.requestId }));
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
