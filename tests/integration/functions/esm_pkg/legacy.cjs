// CommonJS in a "type": "module" package, by its .cjs extension.
'use strict';
exports.handler = async () => ({ module: 'cjs' });
