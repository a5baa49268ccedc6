/* user-function.js: finds the handler function named by _HANDLER, the way
 * Lambda's Node runtime does.
 *
 * "dir/module.a.b" means: the module "module" in "dir" (relative to the
 * task root), and in its exports the property path a.b. The module file is
 * tried as given, then with .js (CommonJS, unless the nearest package.json
 * says "type": "module", then it is imported as ESM), .mjs (ESM) and .cjs;
 * last, Node's own resolution from the task root (a package in
 * node_modules). Handler names with ".." are refused, since the code must
 * stay inside the task root.
 *
 * Failures are Error objects named as Lambda names them, reported by the
 * bootstrap to /init/error: Runtime.MalformedHandlerName,
 * Runtime.ImportModuleError (no such module, or one it requires is missing),
 * Runtime.UserCodeSyntaxError, Runtime.HandlerNotFound; an exception thrown
 * by the module's own top-level code is reported as itself. */
'use strict';

const fs = require('fs');
const path = require('path');
const { pathToFileURL } = require('url');
const { runtimeError } = require('./errors.js');

const HANDLER_FORMAT = /^([^.]*)\.(.*)$/;

function isFile(p) {
  try {
    return fs.statSync(p).isFile();
  } catch (_) {
    return false;
  }
}

// Whether the nearest package.json above dir declares ESM. A node_modules
// folder ends the search: packages above it are not this code's.
function nearestPackageIsModule(dir) {
  for (;;) {
    if (path.basename(dir) === 'node_modules') return false;
    const pj = path.join(dir, 'package.json');
    let text = null;
    try {
      text = fs.readFileSync(pj, 'utf8');
    } catch (_) {
      text = null;
    }
    if (text !== null) {
      try {
        return JSON.parse(text).type === 'module';
      } catch (_) {
        return false; // Node itself would refuse to load it; let it say so
      }
    }
    const parent = path.dirname(dir);
    if (parent === dir) return false;
    dir = parent;
  }
}

async function importFile(file) {
  return import(pathToFileURL(file).href);
}

async function loadModule(appRoot, moduleRoot, moduleName) {
  const base = path.resolve(appRoot, moduleRoot, moduleName);
  if (isFile(base)) return require(base);
  if (isFile(base + '.js')) {
    if (nearestPackageIsModule(path.dirname(base))) return importFile(base + '.js');
    return require(base + '.js');
  }
  if (isFile(base + '.mjs')) return importFile(base + '.mjs');
  if (isFile(base + '.cjs')) return require(base + '.cjs');
  // A directory with an index, or a package under node_modules.
  const resolved = require.resolve(moduleName, { paths: [path.resolve(appRoot, moduleRoot), appRoot] });
  return require(resolved);
}

/* load(appRoot, handlerName) -> Promise of the handler function. Rejects
 * with a Runtime.* error (see above) or whatever the module threw. */
async function load(appRoot, handlerName) {
  if (typeof handlerName !== 'string' || handlerName === '') {
    throw runtimeError('MalformedHandlerName', 'No handler specified: set _HANDLER (e.g. index.handler)');
  }
  if (handlerName.includes('..')) {
    throw runtimeError('MalformedHandlerName',
      `'${handlerName}' is not a valid handler name. Use absolute paths when specifying root directories in handler names.`);
  }
  const moduleAndFunction = path.basename(handlerName);
  const moduleRoot = handlerName.slice(0, handlerName.length - moduleAndFunction.length);
  const parts = HANDLER_FORMAT.exec(moduleAndFunction);
  if (!parts || parts[2] === '') throw runtimeError('MalformedHandlerName', 'Bad handler ' + handlerName);
  const [, moduleName, propertyPath] = parts;

  let exported;
  try {
    exported = await loadModule(appRoot, moduleRoot, moduleName);
  } catch (e) {
    if (e instanceof SyntaxError) throw runtimeError('UserCodeSyntaxError', String(e), e);
    if (e && (e.code === 'MODULE_NOT_FOUND' || e.code === 'ERR_MODULE_NOT_FOUND')) {
      throw runtimeError('ImportModuleError', String(e), e);
    }
    throw e;
  }

  let fn = exported;
  for (const key of propertyPath.split('.')) {
    fn = fn === null || fn === undefined ? undefined : fn[key];
  }
  if (fn === undefined || fn === null) {
    throw runtimeError('HandlerNotFound', `${handlerName} is undefined or not exported`);
  }
  if (typeof fn !== 'function') throw runtimeError('HandlerNotFound', `${handlerName} is not a function`);
  return fn;
}

module.exports = { load };
