// Fixture: requires a package that is not there (Runtime.ImportModuleError).
'use strict';
require('no-such-package-levee');
exports.handler = async () => 'unreachable';
