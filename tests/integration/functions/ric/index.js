// Handler fixtures for the official aws-lambda-ric (npm), run by levee as
// `runtime: command`: [tests/node/node_modules/.bin/aws-lambda-ric, index.handler].
'use strict';

exports.handler = async (event, context) => ({
  statusCode: 200,
  headers: { 'content-type': 'application/json' },
  body: JSON.stringify({ runtime: 'aws-lambda-ric', requestId: context.awsRequestId, path: event.rawPath || null }),
});

exports.echo = async (event) => event;

exports.err = async () => { throw new Error('ric handler failed'); };
