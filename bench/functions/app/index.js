// The benchmark's trivial handler: the same file runs under levee's nodejs
// bootstrap and under serverless-offline, so both measure only the platform.
exports.handler = async () => ({ statusCode: 200, body: 'ok' });
