/* bootstrap.js: levee's Node.js runtime. A worker process runs
 * `node bootstrap.js` with the Lambda environment (AWS_LAMBDA_RUNTIME_API,
 * _HANDLER, LAMBDA_TASK_ROOT, ...) and serves invocations of one handler,
 * one at a time, for as long as levee keeps it.
 *
 * It keeps the contract of Lambda's own Node runtime, so handlers written
 * for Lambda run unchanged:
 *   - init: patch console (log.js), load the handler (user-function.js); a
 *     failure goes to /init/error and the process exits.
 *   - loop: GET /next; JSON-parse the event; call handler(event, context,
 *     callback); answer with the first of: the returned promise settling,
 *     callback(err, result), context.succeed/fail/done, or, when the
 *     handler returned nothing and the event loop runs dry, null. A
 *     non-promise value returned by a handler of fewer than three
 *     parameters is its answer (the official runtime drops it; see
 *     runtimes/README.md).
 *   - callback(null, result) waits for the event loop to empty first, like
 *     Lambda, unless context.callbackWaitsForEmptyEventLoop is set false.
 *     The loop's emptiness is Node's 'beforeExit' event: the Runtime API
 *     socket is unref'd while the handler runs, so only the user's work
 *     keeps the loop alive.
 *   - an uncaught exception or unhandled rejection fails the invocation in
 *     progress and ends the process, as Lambda resets the environment.
 *   - the answer and the next GET /next are written together (pipelined).
 * Nothing is logged per invocation except errors: worker CPU is the
 * function's throughput. */
'use strict';

const { RuntimeApi } = require('./runtime-api.js');
const userFunction = require('./user-function.js');
const log = require('./log.js');
const errors = require('./errors.js');

const env = process.env;

// The parts of the context that do not change between invocations.
const functionName = env.AWS_LAMBDA_FUNCTION_NAME;
const functionVersion = env.AWS_LAMBDA_FUNCTION_VERSION;
const memoryLimitInMB = env.AWS_LAMBDA_FUNCTION_MEMORY_SIZE;
const logGroupName = env.AWS_LAMBDA_LOG_GROUP_NAME;
const logStreamName = env.AWS_LAMBDA_LOG_STREAM_NAME;

let api = null;
let handler = null;
let initializing = true;
let current = null;  // the Invocation being served, until it is answered
let dying = false;   // a fatal error is being reported; ignore everything else

function exitSoon(code) {
  // stdout is a pipe (synchronous), so everything written is already out.
  process.exit(code);
}

function parseJsonHeader(value, what) {
  if (value === undefined || value === '') return undefined;
  try {
    return JSON.parse(value);
  } catch (e) {
    throw new Error(`Cannot parse ${what} as JSON: ${e.message}`);
  }
}

/* One invocation: its id and deadline, and which answer came first. */
class Invocation {
  constructor(id, headers) {
    this.id = id;
    this.headers = headers;
    this.answered = false;
    this.waitForEmptyLoop = true;
    this.deferred = null; // { result } from callback(null, result), sent when the loop is empty
    this.callback = (err, result) => this.onCallback(err, result);
  }

  context() {
    const inv = this;
    const h = this.headers;
    const deadline = Number(h['lambda-runtime-deadline-ms']);
    const clientContext = parseJsonHeader(h['lambda-runtime-client-context'], 'Lambda-Runtime-Client-Context');
    const cognito = parseJsonHeader(h['lambda-runtime-cognito-identity'], 'Lambda-Runtime-Cognito-Identity');
    const ctx = {
      get callbackWaitsForEmptyEventLoop() {
        return inv.waitForEmptyLoop;
      },
      set callbackWaitsForEmptyEventLoop(value) {
        inv.waitForEmptyLoop = Boolean(value);
      },
      succeed: (result) => inv.succeed(result),
      fail: (err) => inv.fail(err === undefined || err === null ? 'handled' : err),
      done: (err, result) => (err === undefined || err === null ? inv.succeed(result) : inv.fail(err)),
      functionName,
      functionVersion,
      memoryLimitInMB,
      logGroupName,
      logStreamName,
      invokedFunctionArn: h['lambda-runtime-invoked-function-arn'],
      awsRequestId: this.id,
      clientContext,
      identity: cognito === undefined || cognito === null ? undefined : {
        cognitoIdentityId: cognito.cognitoIdentityId,
        cognitoIdentityPoolId: cognito.cognitoIdentityPoolId,
      },
      getRemainingTimeInMillis: () => deadline - Date.now(),
    };
    if (h['lambda-runtime-aws-tenant-id'] !== undefined) ctx.tenantId = h['lambda-runtime-aws-tenant-id'];
    return ctx;
  }

  onCallback(err, result) {
    if (err !== undefined && err !== null) return this.fail(err);
    if (!this.waitForEmptyLoop) return this.succeed(result);
    if (this.answered) return alreadyAnswered();
    this.deferred = { result }; // a later call before the loop empties wins, as on Lambda
    return undefined;
  }

  succeed(result) {
    if (this.answered) return alreadyAnswered();
    this.answered = true;
    let body;
    try {
      body = JSON.stringify(result === undefined ? null : result);
    } catch (e) {
      this.answered = false;
      const why = errors.describe(e).errorMessage;
      return this.fail(errors.runtimeError('MarshalError', 'Unable to stringify response body: ' + why));
    }
    if (body === undefined) body = 'null'; // a function or symbol as the result
    this.answerAndAskForNext(api.postResponse(this.id, body));
    return undefined;
  }

  fail(err) {
    if (this.answered) return alreadyAnswered();
    this.answered = true;
    const doc = errors.describe(err);
    const body = JSON.stringify(doc);
    log.write('ERROR', 'Invoke Error \t' + body);
    this.answerAndAskForNext(api.postError(this.id, doc.errorType, body));
    return undefined;
  }

  // The next /next goes out with the answer, pipelined: levee reads both
  // in one go and the worker sleeps once per invocation, not twice. The
  // answers come back in order, so posted() runs before startInvocation().
  answerAndAskForNext(posting) {
    posting.then((res) => this.posted(res), fatalApiError);
    nextInvocation();
  }

  posted(res) {
    // 2xx: taken. 400/403/410/413: levee refused this answer (wrong id,
    // answered twice, invocation timed out, too large) and has already
    // failed the invocation itself; the worker carries on. 5xx: levee says
    // the environment is broken, so stop.
    if (res.status >= 500) {
      log.write('ERROR', `Runtime API answered ${res.status} to the result; exiting`);
      return exitSoon(1);
    }
    if (res.status >= 300) {
      log.write('WARN', `Runtime API refused the result with ${res.status}: ${res.body.toString('utf8', 0, 512)}`);
    }
    if (current === this) current = null;
    return undefined;
  }
}

function alreadyAnswered() {
  log.write('WARN', 'Invocation has already been reported as done. Cannot call complete more than once per invocation.');
}

function nextInvocation() {
  api.next().then(startInvocation, fatalApiError);
}

function startInvocation(res) {
  if (res.status !== 200) {
    log.write('ERROR', `Runtime API answered ${res.status} to /next: ${res.body.toString('utf8', 0, 512)}`);
    return exitSoon(1);
  }
  const h = res.headers;
  const id = h['lambda-runtime-aws-request-id'];
  if (!id) {
    log.write('ERROR', 'Runtime API sent an invocation without Lambda-Runtime-Aws-Request-Id');
    return exitSoon(1);
  }
  const inv = new Invocation(id, h);
  current = inv;
  log.setRequestId(id);
  const trace = h['lambda-runtime-trace-id'];
  if (trace !== undefined) env._X_AMZN_TRACE_ID = trace;
  else if (env._X_AMZN_TRACE_ID !== undefined) delete env._X_AMZN_TRACE_ID;

  let result;
  try {
    const event = JSON.parse(res.body.toString('utf8'));
    result = handler(event, inv.context(), inv.callback);
  } catch (e) {
    return inv.fail(e);
  }
  if (result !== null && result !== undefined && typeof result.then === 'function') {
    result.then((value) => inv.succeed(value), (e) => inv.fail(e));
  } else if (result !== undefined && handler.length < 3) {
    inv.succeed(result);
  }
  return undefined;
}

// The event loop ran dry while an invocation was unanswered: the handler's
// work is over. Send what callback() left, or null (Lambda's behaviour for
// a handler that never answers).
function onLoopEmpty() {
  const inv = current;
  if (dying || inv === null || inv.answered) return;
  const deferred = inv.deferred;
  inv.succeed(deferred === null ? null : deferred.result);
}

function fatalApiError(err) {
  if (dying) return;
  dying = true;
  log.write('ERROR', 'Runtime API failed: ' + (err && err.message));
  exitSoon(1);
}

function initFailed(err) {
  dying = true;
  const doc = errors.describe(err);
  const body = JSON.stringify(doc);
  log.write('ERROR', 'Init Error \t' + body);
  const done = () => exitSoon(1);
  api.postInitError(doc.errorType, body).then(done, done);
}

// An exception no handler caught, or a rejection nobody handled.
function onFatal(err, kind) {
  if (dying) return;
  log.write('ERROR', kind + ' \t' + JSON.stringify(errors.describe(err)));
  if (initializing) return initFailed(err);
  dying = true;
  const inv = current;
  if (inv === null || inv.answered) return exitSoon(1);
  inv.answered = true;
  const doc = errors.describe(err);
  const done = () => exitSoon(1);
  return api.postError(inv.id, doc.errorType, JSON.stringify(doc)).then(done, done);
}

async function main() {
  try {
    api = new RuntimeApi(env.AWS_LAMBDA_RUNTIME_API);
  } catch (e) {
    process.stderr.write('levee nodejs bootstrap: ' + e.message + '\n');
    return exitSoon(1);
  }
  log.patchConsole();
  process.on('uncaughtException', (err) => onFatal(err, 'Uncaught Exception'));
  process.on('unhandledRejection', (reason) => onFatal(reason, 'Unhandled Promise Rejection'));
  process.on('beforeExit', onLoopEmpty);

  const appRoot = env.LAMBDA_TASK_ROOT || process.cwd();
  const handlerName = process.argv[2] || env._HANDLER;
  try {
    handler = await userFunction.load(appRoot, handlerName);
  } catch (e) {
    return initFailed(e);
  }
  initializing = false;
  return nextInvocation();
}

main();
