/* errors.js: how a failure is described to the Runtime API, and the named
 * errors the runtime itself raises while loading a handler.
 *
 * An error document is { errorType, errorMessage, stackTrace: [lines] }
 * (the Runtime API's documented shape; the official Node client calls the
 * last key `trace`). Anything can be thrown in JavaScript, so describing it
 * must never throw in turn: a value that is not an Error is described by its
 * typeof and String(value), as the official client does, and an object
 * whose getters throw gets a fixed description. */
'use strict';

const util = require('util');

// The runtime's own init errors carry a Runtime.* name, the errorType Lambda
// reports (Runtime.ImportModuleError, Runtime.HandlerNotFound, ...).
function runtimeError(name, message, cause) {
  const err = new Error(message);
  err.name = 'Runtime.' + name;
  if (cause !== undefined) err.cause = cause;
  return err;
}

function looksLikeError(value) {
  return util.types.isNativeError(value) ||
    (value !== null && typeof value === 'object' && typeof value.name === 'string' &&
     typeof value.message === 'string');
}

/* describe(value) -> { errorType, errorMessage, stackTrace }. Never throws. */
function describe(value) {
  try {
    if (looksLikeError(value)) {
      // A native error's name and message can be set to anything; the
      // document must stay serialisable.
      const stack = typeof value.stack === 'string' ? value.stack.split('\n') : [];
      return { errorType: String(value.name || 'Error'), errorMessage: String(value.message), stackTrace: stack };
    }
    return { errorType: typeof value, errorMessage: String(value), stackTrace: [] };
  } catch (_) {
    return {
      errorType: 'handled',
      errorMessage: 'an error was reported, but reading its name, message or stack failed',
      stackTrace: [],
    };
  }
}

module.exports = { runtimeError, describe };
