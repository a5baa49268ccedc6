// checkout: the example's order endpoint (story 3 of levee's design), an
// ordinary Lambda handler behind an HTTP route. It checks the order and
// answers with an order id; a real one would write to a database, protected
// by the function's concurrency ceiling.
'use strict';

const crypto = require('crypto');

exports.handler = async (event, context) => {
  let order;
  try {
    order = JSON.parse(event.body || '{}');
  } catch (e) {
    return { statusCode: 400, body: JSON.stringify({ error: 'body is not JSON' }) };
  }
  if (!order.event || !Number.isInteger(order.tickets) || order.tickets < 1 || order.tickets > 8) {
    return { statusCode: 400, body: JSON.stringify({ error: 'need {"event": "...", "tickets": 1..8}' }) };
  }
  return {
    statusCode: 201,
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({
      order: crypto.randomUUID(),
      event: order.event,
      tickets: order.tickets,
      requestId: context.awsRequestId,
    }),
  };
};
