// Fixture: the module throws while loading, so the function cannot start.
'use strict';
throw new Error('init failed on purpose');
