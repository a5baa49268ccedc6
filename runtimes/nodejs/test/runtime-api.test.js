/* runtime-api.test.js: unit tests for the Runtime API client's answer
 * parser and connection handling (node --test runtimes/nodejs/test/).
 *
 * The parser is driven two ways: white-box, by feeding an answer to _feed
 * split at every possible byte boundary (and as random garbage, which must
 * end in a rejection, never an exception); and black-box, against a real
 * loopback server that closes, refuses or frames answers in each way HTTP
 * allows. */
'use strict';

const test = require('node:test');
const assert = require('node:assert');
const net = require('net');
const { RuntimeApi } = require('../runtime-api.js');

// Feeds the given pieces to a client with one request in flight; returns
// { answer } or { error } as the request settled (or {} if it did not).
function feed(pieces) {
  const api = new RuntimeApi('127.0.0.1:1');
  const out = {};
  api.queue.push({
    resolve: (a) => { out.answer = a; },
    reject: (e) => { out.error = e; },
  });
  for (const p of pieces) {
    if (api.queue.length === 0) break;
    api._feed(Buffer.from(p, 'latin1'));
  }
  return out;
}

function everySplit(text, check) {
  for (let i = 0; i <= text.length; i++) {
    for (let j = i; j <= text.length; j += Math.max(1, Math.floor(text.length / 7))) {
      const out = feed([text.slice(0, i), text.slice(i, j), text.slice(j)].filter((p) => p.length));
      check(out, `split at ${i}/${j}`);
    }
  }
}

test('Content-Length answer, split anywhere', () => {
  const text = 'HTTP/1.1 200 OK\r\nLambda-Runtime-Aws-Request-Id: abc\r\nContent-Length: 11\r\n\r\n{"k":"v\u00e9"}'
    .replace('\u00e9', '\xc3\xa9');
  everySplit(text, (out, where) => {
    assert.ok(out.answer, where);
    assert.strictEqual(out.answer.status, 200);
    assert.strictEqual(out.answer.headers['lambda-runtime-aws-request-id'], 'abc');
    assert.strictEqual(out.answer.body.toString('utf8'), '{"k":"v\u00e9"}');
  });
});

test('chunked answer with extensions and trailers, split anywhere', () => {
  const text = 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n' +
    '3;name=x\r\n{"a\r\nA\r\n":12345678\r\n1\r\n}\r\n0\r\nX-Trailer: 1\r\n\r\n';
  everySplit(text, (out, where) => {
    assert.ok(out.answer, where);
    assert.strictEqual(out.answer.body.toString(), '{"a":12345678}');
  });
});

test('interim 100 Continue is skipped', () => {
  const out = feed(['HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 202 Accepted\r\nContent-Length: 2\r\n\r\nok']);
  assert.strictEqual(out.answer.status, 202);
  assert.strictEqual(out.answer.body.toString(), 'ok');
});

test('header names are case-insensitive and the first value wins', () => {
  const out = feed(['HTTP/1.1 200 OK\r\nLAMBDA-RUNTIME-DEADLINE-MS:  17 \r\nlambda-runtime-deadline-ms: 99\r\n' +
    'Content-Length: 0\r\n\r\n']);
  assert.strictEqual(out.answer.headers['lambda-runtime-deadline-ms'], '17');
});

test('malformed answers are rejected, never thrown', () => {
  const bad = [
    'HTTP/2 200 OK\r\n\r\n',
    'garbage\r\n\r\n',
    'HTTP/1.1 200 OK\r\nno colon here\r\n\r\n',
    'HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n',
    'HTTP/1.1 200 OK\r\nContent-Length: 1e3\r\n\r\n',
    'HTTP/1.1 200 OK\r\nContent-Length: 999999999999\r\n\r\n',
    'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n',
    'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nffffffff\r\n',
    'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabXY',
    'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n' + '1'.repeat(2000),
    'HTTP/1.1 200 OK\r\nX: ' + 'a'.repeat(70 * 1024) + '\r\n\r\n',
    'HTTP/1.1 200 OK\r\nX: ' + 'a'.repeat(70 * 1024),
  ];
  for (const text of bad) {
    const out = feed([text]);
    assert.ok(out.error instanceof Error, JSON.stringify(text.slice(0, 60)));
    assert.ok(!out.answer);
  }
});

test('random bytes never make the parser throw', () => {
  let seed = 12345;
  const rand = (n) => {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    return seed % n;
  };
  const alphabet = ['HTTP/1.1 ', '200', ' OK', '\r\n', ':', 'Content-Length', 'Transfer-Encoding', 'chunked',
    '0', '5', 'f', ';', 'x', '\r\n\r\n', '\x00', '\xff', ' ', 'Connection: close'];
  for (let round = 0; round < 3000; round++) {
    let text = rand(2) ? 'HTTP/1.1 200 OK\r\n' : '';
    const n = rand(40);
    for (let i = 0; i < n; i++) text += alphabet[rand(alphabet.length)];
    const cut = rand(text.length + 1);
    assert.doesNotThrow(() => feed([text.slice(0, cut), text.slice(cut)]));
  }
});

// A loopback server whose answer to each request is chosen by the test.
function server(onRequest) {
  return new Promise((resolve) => {
    const srv = net.createServer((sock) => {
      srv.connections += 1;
      let buf = '';
      sock.on('data', (d) => {
        buf += d.toString('latin1');
        let end;
        while ((end = buf.indexOf('\r\n\r\n')) >= 0) {
          const head = buf.slice(0, end);
          const m = /content-length: (\d+)/i.exec(head);
          const len = m ? Number(m[1]) : 0;
          if (buf.length < end + 4 + len) return;
          const body = buf.slice(end + 4, end + 4 + len);
          buf = buf.slice(end + 4 + len);
          srv.requests.push({ head, body });
          onRequest(sock, head, body, srv.requests.length);
        }
      });
      sock.on('error', () => {});
    });
    srv.connections = 0;
    srv.requests = [];
    srv.listen(0, '127.0.0.1', () => resolve(srv));
  });
}

test('requests on one keep-alive connection', async () => {
  const srv = await server((sock, head) => {
    if (head.startsWith('GET')) {
      sock.write('HTTP/1.1 200 OK\r\nLambda-Runtime-Aws-Request-Id: r1\r\nContent-Length: 2\r\n\r\n{}');
    } else {
      sock.write('HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n');
    }
  });
  const api = new RuntimeApi('127.0.0.1:' + srv.address().port);
  const n = await api.next();
  assert.strictEqual(n.headers['lambda-runtime-aws-request-id'], 'r1');
  const r = await api.postResponse('r1', JSON.stringify({ big: 'x'.repeat(100000) }));
  assert.strictEqual(r.status, 202);
  const e = await api.postError('r1', 'Bad\r\nType\u00e9', '{"errorType":"x"}');
  assert.strictEqual(e.status, 202);
  await api.postInitError('Runtime.X', '{}');
  assert.strictEqual(srv.connections, 1);
  const [get, post, err, init] = srv.requests;
  assert.match(get.head, /^GET \/2018-06-01\/runtime\/invocation\/next HTTP\/1\.1\r\n/);
  assert.match(post.head, /^POST \/2018-06-01\/runtime\/invocation\/r1\/response HTTP\/1\.1\r\n/);
  assert.strictEqual(JSON.parse(post.body).big.length, 100000);
  assert.match(err.head, /\r\nLambda-Runtime-Function-Error-Type: BadType(\r\n|$)/);
  assert.match(init.head, /^POST \/2018-06-01\/runtime\/init\/error /);
  api.close();
  srv.close();
});

test('pipelined requests are answered in order, in one write', async () => {
  let writes = 0;
  const srv = await server((sock, head, body, n) => {
    if (n === 1) return; // answered together with the second
    writes++;
    sock.write('HTTP/1.1 202 Accepted\r\nContent-Length: 4\r\n\r\nr(1)' +
      'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nn(2)\r\n0\r\n\r\n');
  });
  const api = new RuntimeApi('127.0.0.1:' + srv.address().port);
  const [r, n] = await Promise.all([api.postResponse('id', '{}'), api.next()]);
  assert.strictEqual(r.body.toString() + n.body.toString(), 'r(1)n(2)');
  assert.strictEqual(writes, 1);
  api.close();
  srv.close();
});

test('a close after the first of two pipelined answers resends only the /next', async () => {
  const srv = await server((sock, head, body, n) => {
    if (n === 1) sock.write('HTTP/1.1 202 Accepted\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
    else if (n === 3) sock.write('HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nnext');
  });
  const api = new RuntimeApi('127.0.0.1:' + srv.address().port);
  const [r, n] = await Promise.all([api.postResponse('id', '{}'), api.next()]);
  assert.strictEqual(r.status, 202);
  assert.strictEqual(n.body.toString(), 'next');
  assert.strictEqual(srv.connections, 2);
  api.close();
  srv.close();
});

test('Connection: close and answers ended by close', async () => {
  const srv = await server((sock, head, body, n) => {
    if (n === 1) sock.end('HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\n1');
    else sock.end('HTTP/1.0 200 OK\r\n\r\nuntil close');
  });
  const api = new RuntimeApi('127.0.0.1:' + srv.address().port);
  assert.strictEqual((await api.next()).body.toString(), '1');
  assert.strictEqual((await api.next()).body.toString(), 'until close');
  assert.strictEqual(srv.connections, 2);
  api.close();
  srv.close();
});

test('a /next cut off before any answer is retried once; a POST is not', async () => {
  const srv = await server((sock, head, body, n) => {
    if (n === 1 || n === 3) sock.destroy();
    else sock.write('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok');
  });
  const api = new RuntimeApi('127.0.0.1:' + srv.address().port);
  assert.strictEqual((await api.next()).body.toString(), 'ok');
  await assert.rejects(api.postResponse('id', '{}'), /closed before a complete answer/);
  api.close();
  srv.close();
});

test('a refused connection rejects', async () => {
  const srv = await server(() => {});
  const port = srv.address().port;
  await new Promise((r) => srv.close(r));
  const api = new RuntimeApi('127.0.0.1:' + port);
  await assert.rejects(api.next(), /closed before a complete answer/);
});

test('a bad endpoint is refused at construction', () => {
  for (const bad of [undefined, '', 'nohost', '127.0.0.1:', '127.0.0.1:0', '127.0.0.1:70000', ':80', 'h:8x']) {
    assert.throws(() => new RuntimeApi(bad), /host:port/);
  }
  assert.strictEqual(new RuntimeApi('[::1]:9001').host, '::1');
});
