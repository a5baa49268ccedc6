/* log.js: console output in Lambda's text format.
 *
 * Lambda's Node runtime replaces console.log and friends so that every
 * record reads "<ISO time>\t<request id>\t<LEVEL>\t<message>"; log tooling
 * (and people) rely on finding the request id there. The id is the current
 * invocation's, or the last one's between invocations, and the string
 * "undefined" during init, exactly as on Lambda. Everything goes to stdout,
 * which for a pipe is written synchronously by Node on Linux, so nothing is
 * lost when the process exits right after. */
'use strict';

const util = require('util');

let requestId = 'undefined';

const LEVELS = {
  log: 'INFO',
  info: 'INFO',
  debug: 'DEBUG',
  warn: 'WARN',
  error: 'ERROR',
  trace: 'TRACE',
};

/* Writes one record at level (a string such as "ERROR"). */
function write(level, message) {
  process.stdout.write(new Date().toISOString() + '\t' + requestId + '\t' + level + '\t' + message + '\n');
}

/* Replaces console's methods; call once, before loading user code. */
function patchConsole() {
  for (const method of Object.keys(LEVELS)) {
    const level = LEVELS[method];
    console[method] = function lambdaConsole(...args) {
      write(level, util.format(...args));
    };
  }
}

/* The id printed in records from now on. */
function setRequestId(id) {
  requestId = id;
}

module.exports = { patchConsole, setRequestId, write };
