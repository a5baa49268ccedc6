// Handler fixtures for levee's nodejs runtime (tests/integration/test_runtimes.py).
// One handler per behaviour a test needs; each stays as small as it can be.
'use strict';

// API Gateway style answer.
exports.hello = async (event) => ({
  statusCode: 200,
  headers: { 'content-type': 'text/plain' },
  body: 'hello from node ' + (event.rawPath || ''),
});

// The event as received.
exports.echo = async (event) => event;

// Any JSON value without statusCode: API Gateway answers 200 application/json.
exports.plain = async () => ({ message: 'hi' });

exports.str = async () => 'hello';

// Not async and not a callback handler: the return value is the result.
exports.sync = (event) => ({ sync: true, got: event.value === undefined ? null : event.value });

// Callback style. The answer waits for the event loop to empty, so it
// comes only after the timer (about 100 ms).
exports.cb = (event, context, callback) => {
  setTimeout(() => console.log('cb timer fired'), 100);
  callback(null, { cb: true, waitsForEmptyLoop: context.callbackWaitsForEmptyEventLoop });
};

// callbackWaitsForEmptyEventLoop = false: answered at once, the timer is
// left running (its output appears in the next invocation's log).
exports.cbnowait = (event, context, callback) => {
  context.callbackWaitsForEmptyEventLoop = false;
  setTimeout(() => console.log('cbnowait timer fired'), 1000);
  callback(null, 'answered before the timer');
};

exports.cberr = (event, context, callback) => callback(new TypeError('bad input from callback'));

// Legacy context methods.
exports.succeed = (event, context) => { setTimeout(() => context.succeed({ legacy: 'succeed' }), 10); };

exports.err = async () => {
  const e = new Error('something broke');
  e.name = 'CustomError';
  throw e;
};

// Throws a string, not an Error.
exports.throwstring = async () => { throw 'plain string'; };

exports.crash = async () => { process.exit(3); };

// A throw nobody catches, outside the handler's promise.
exports.uncaught = async () => {
  setTimeout(() => { throw new RangeError('thrown from a timer'); }, 1);
  return new Promise(() => {});
};

// Never answers; the interval keeps the event loop busy so it really hangs.
exports.hang = () => new Promise(() => { setInterval(() => {}, 60000); });

exports.sleep = async (event) => {
  const ms = Number(event.ms || (event.queryStringParameters && event.queryStringParameters.ms) || 100);
  await new Promise((resolve) => setTimeout(resolve, ms));
  return { slept: ms };
};

// Prints N MiB (event.mib, default 4) of log lines, then answers.
exports.big_output = async (event) => {
  const mib = Number(event.mib || (event.queryStringParameters && event.queryStringParameters.mib) || 4);
  const line = 'x'.repeat(1023) + '\n';
  const block = line.repeat(1024);
  for (let i = 0; i < mib; i++) process.stdout.write(block);
  return { printed_mib: mib };
};

// A result larger than the 6 MB response limit.
exports.too_big = async () => ({ blob: 'y'.repeat(7 * 1024 * 1024) });

// A result JSON.stringify cannot turn into JSON.
exports.circular = async () => { const o = {}; o.self = o; return o; };

exports.ctx = async (event, context) => ({
  awsRequestId: context.awsRequestId,
  functionName: context.functionName,
  functionVersion: context.functionVersion,
  memoryLimitInMB: context.memoryLimitInMB,
  invokedFunctionArn: context.invokedFunctionArn,
  logGroupName: context.logGroupName,
  logStreamName: context.logStreamName,
  remaining: context.getRemainingTimeInMillis(),
  callbackWaitsForEmptyEventLoop: context.callbackWaitsForEmptyEventLoop,
  clientContext: context.clientContext === undefined ? null : context.clientContext,
  identity: context.identity === undefined ? null : context.identity,
  traceId: process.env._X_AMZN_TRACE_ID === undefined ? null : process.env._X_AMZN_TRACE_ID,
});

const ENV_NAMES = ['AWS_LAMBDA_FUNCTION_NAME', 'AWS_LAMBDA_FUNCTION_MEMORY_SIZE', 'AWS_LAMBDA_FUNCTION_VERSION',
  'AWS_REGION', 'AWS_DEFAULT_REGION', 'AWS_EXECUTION_ENV', 'AWS_LAMBDA_RUNTIME_API', '_HANDLER',
  'LAMBDA_TASK_ROOT', 'LAMBDA_RUNTIME_DIR', 'AWS_LAMBDA_LOG_GROUP_NAME', 'AWS_LAMBDA_LOG_STREAM_NAME',
  'AWS_LAMBDA_INITIALIZATION_TYPE', 'TZ', 'LANG', 'PATH', 'HOME', 'NODE_PATH', 'TABLE'];
exports.env = async () => {
  const out = { cwd: process.cwd() };
  for (const name of ENV_NAMES) out[name] = process.env[name] === undefined ? null : process.env[name];
  return out;
};

exports.log = async (event) => {
  console.log('info line', { n: 1 });
  console.warn('warn line');
  console.error('error line');
  return 'logged';
};

exports.binary = async () => ({
  statusCode: 200,
  headers: { 'content-type': 'application/octet-stream' },
  body: Buffer.from([0, 1, 2, 253, 254, 255]).toString('base64'),
  isBase64Encoded: true,
});

exports.cookies = async () => ({
  statusCode: 201,
  headers: { 'x-fixture': 'cookies' },
  cookies: ['a=1; Path=/', 'b=2; HttpOnly'],
  body: 'with cookies',
});

// Nested property path: _HANDLER=index.nested.deep.fn
exports.nested = { deep: { fn: async () => 'nested handler' } };

exports.notAFunction = 42;
