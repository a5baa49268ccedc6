/* runtime-api.js: the worker's side of the Lambda Runtime API (2018-06-01),
 * over one persistent loopback connection to levee.
 *
 * The Runtime API needs very little of HTTP: one connection, a request or
 * two outstanding, answers framed by Content-Length, chunked, or the end of
 * the connection. Node's http client brings streams, an agent and a request
 * object per call; writing the requests by hand and parsing the answers with
 * the small state machine below costs about a quarter of the worker CPU per
 * invocation (measured on a next + response round trip: ~36 us vs ~165 us),
 * and worker CPU is what bounds a function's requests per second.
 *
 * Requests may be pipelined: the bootstrap writes an invocation's result
 * and the next GET /next together, so levee reads both at once and the
 * worker waits once per invocation instead of twice (answers come back in
 * order, HTTP/1.1). Requests made in the same tick leave in one writev
 * (the socket is corked until the next tick). While no request is outstanding the socket is unref'd,
 * so the process's 'beforeExit' still tells when the user's code has
 * nothing left to do: that is how callbackWaitsForEmptyEventLoop works
 * (see bootstrap.js).
 *
 * Usage: const api = new RuntimeApi(process.env.AWS_LAMBDA_RUNTIME_API);
 * every method returns a Promise of { status, headers, body } where headers
 * has lower-case names and body is a Buffer. A promise rejects when the
 * connection fails before its answer is complete; a /next that got no
 * answer byte is then sent again once on a new connection (it is
 * idempotent; a result is not). */
'use strict';

const net = require('net');

const BASE = '/2018-06-01/runtime/';
const MAX_HEAD_BYTES = 64 * 1024;
// Lambda's payloads are at most 6 MiB; anything far beyond is a broken peer.
const MAX_BODY_BYTES = 64 * 1024 * 1024;
// Below this a body is copied into the head's string: one write, one packet.
const SMALL_BODY = 16 * 1024;

const S_HEAD = 0;
const S_FIXED = 1;
const S_CHUNK_SIZE = 2;
const S_CHUNK_DATA = 3;
const S_CHUNK_END = 4;
const S_TRAILER = 5;
const S_UNTIL_CLOSE = 6;

// A header value we send must not end the line early; error types come
// from user code (err.name), so they are reduced to printable ASCII.
function headerValue(s) {
  return String(s).replace(/[^\x20-\x7e]/g, '').slice(0, 256);
}

class RuntimeApi {
  /* endpoint: "host:port" as in AWS_LAMBDA_RUNTIME_API. Throws if malformed. */
  constructor(endpoint) {
    const colon = typeof endpoint === 'string' ? endpoint.lastIndexOf(':') : -1;
    const port = colon > 0 ? Number(endpoint.slice(colon + 1)) : NaN;
    if (!(port > 0 && port < 65536 && Number.isInteger(port))) {
      throw new Error('AWS_LAMBDA_RUNTIME_API must be host:port, got ' + JSON.stringify(endpoint));
    }
    this.host = endpoint.slice(0, colon).replace(/^\[|\]$/g, '');
    this.port = port;
    this.hostHeader = headerValue(endpoint);
    this.sock = null;
    this.corkedSock = null; // corked until the next tick, to batch writes
    // Requests written and not yet answered, oldest first: { head, body,
    // idempotent, retried, resolve, reject }. The parser reads queue[0]'s answer.
    this.queue = [];
    this._resetParser();
  }

  /* GET /invocation/next: waits (without a timeout, as AWS asks) for the
   * next event. */
  next() {
    return this._request('GET ' + BASE + 'invocation/next', null, '', true);
  }

  /* POST /invocation/{id}/response with body (a string, already JSON). */
  postResponse(requestId, body) {
    return this._request('POST ' + BASE + 'invocation/' + encodeURIComponent(requestId) + '/response', body, '', false);
  }

  /* POST /invocation/{id}/error; body is the JSON error document. */
  postError(requestId, errorType, body) {
    const extra = 'Lambda-Runtime-Function-Error-Type: ' + headerValue(errorType) + '\r\n';
    return this._request('POST ' + BASE + 'invocation/' + encodeURIComponent(requestId) + '/error', body, extra, false);
  }

  /* POST /init/error: the function could not start; the caller exits next. */
  postInitError(errorType, body) {
    const extra = 'Lambda-Runtime-Function-Error-Type: ' + headerValue(errorType) + '\r\n';
    return this._request('POST ' + BASE + 'init/error', body, extra, false);
  }

  /* Closes the connection, failing what is outstanding (tests; a worker
   * just exits). */
  close() {
    this._fail('closed by the runtime');
  }

  _request(requestLine, body, extraHeaders, idempotent) {
    let head = requestLine + ' HTTP/1.1\r\nHost: ' + this.hostHeader + '\r\n' + extraHeaders;
    if (body !== null) {
      head += 'Content-Type: application/json\r\nContent-Length: ' + Buffer.byteLength(body) + '\r\n';
    }
    head += '\r\n';
    return new Promise((resolve, reject) => {
      const req = { head, body, idempotent, retried: false, resolve, reject };
      this.queue.push(req);
      this._write(req);
    });
  }

  _write(req) {
    if (!this.sock) this._connect();
    const sock = this.sock;
    sock.ref(); // an outstanding request keeps the process alive
    if (this.corkedSock !== sock) {
      this.corkedSock = sock;
      sock.cork();
      process.nextTick(() => {
        if (this.corkedSock === sock) this.corkedSock = null;
        sock.uncork();
      });
    }
    if (req.body === null || req.body.length === 0) {
      sock.write(req.head);
    } else if (req.body.length < SMALL_BODY) {
      sock.write(req.head + req.body);
    } else {
      sock.write(req.head);
      sock.write(req.body);
    }
  }

  _connect() {
    const sock = net.connect(this.port, this.host);
    sock.setNoDelay(true);
    sock.on('data', (chunk) => { if (this.sock === sock) this._feed(chunk); });
    sock.on('error', () => {}); // 'close' follows and decides
    sock.on('close', () => { if (this.sock === sock) this._closed(); });
    this.sock = sock;
    this._resetParser();
  }

  _closed() {
    // An answer framed by the close is complete now (_complete then deals
    // with the connection's loss itself).
    if (this.state === S_UNTIL_CLOSE && this.queue.length > 0) return this._complete();
    return this._lost('Runtime API connection closed before a complete answer');
  }

  // The connection is gone (closed, or ended by an answer that said so):
  // requests still waiting fail, except a /next that saw no answer byte,
  // which is sent again on a new connection.
  _lost(why) {
    const waiting = this.queue;
    const answerStarted = this.gotBytes;
    if (this.sock) this.sock.destroy();
    this.sock = null;
    this.queue = [];
    this._resetParser();
    for (let i = 0; i < waiting.length; i++) {
      const req = waiting[i];
      if (req.idempotent && !req.retried && !(i === 0 && answerStarted)) {
        req.retried = true;
        this.queue.push(req);
        this._write(req);
      } else {
        req.reject(new Error(why));
      }
    }
  }

  _resetParser() {
    this.state = S_HEAD;
    this.carry = null;
    this.status = 0;
    this.headers = null;
    this.remaining = 0;
    this.body = null;      // S_FIXED: the whole body, filled in place
    this.bodyLen = 0;
    this.pieces = null;    // chunked / until close: slices, joined at the end
    this.keepAlive = true;
    this.gotBytes = false; // queue[0]'s answer has begun
  }

  // The peer broke the protocol: drop the connection; everything waiting fails.
  _fail(why) {
    const waiting = this.queue;
    const sock = this.sock;
    this.queue = [];
    this.sock = null;
    this._resetParser();
    if (sock) sock.destroy();
    for (const req of waiting) req.reject(new Error('Runtime API: ' + why));
  }

  _feed(chunk) {
    let data = chunk;
    if (this.carry) {
      data = Buffer.concat([this.carry, chunk]);
      this.carry = null;
    }
    let pos = 0;
    while (pos < data.length) {
      if (this.queue.length === 0) {
        this._fail('data without a request');
        return;
      }
      this.gotBytes = true;
      switch (this.state) {
        case S_HEAD: {
          const end = data.indexOf('\r\n\r\n', pos, 'latin1');
          if (end < 0) {
            if (data.length - pos > MAX_HEAD_BYTES) return this._fail('answer head too large');
            this.carry = data.subarray(pos);
            return;
          }
          if (end - pos > MAX_HEAD_BYTES) return this._fail('answer head too large');
          const why = this._parseHead(data.latin1Slice(pos, end));
          if (why) return this._fail(why);
          pos = end + 4;
          if (this.status < 200) { // interim answer: the real one follows
            this.state = S_HEAD;
            break;
          }
          if (this.state === S_FIXED && this.remaining === 0) this._complete();
          break;
        }
        case S_FIXED: {
          const n = Math.min(this.remaining, data.length - pos);
          data.copy(this.body, this.bodyLen, pos, pos + n);
          this.bodyLen += n;
          this.remaining -= n;
          pos += n;
          if (this.remaining === 0) this._complete();
          break;
        }
        case S_CHUNK_SIZE: {
          const eol = data.indexOf('\r\n', pos, 'latin1');
          if (eol < 0) {
            if (data.length - pos > 1024) return this._fail('chunk size line too long');
            this.carry = data.subarray(pos);
            return;
          }
          const line = data.latin1Slice(pos, eol);
          const semi = line.indexOf(';');
          const digits = (semi < 0 ? line : line.slice(0, semi)).trim();
          if (!/^[0-9a-fA-F]{1,8}$/.test(digits)) return this._fail('bad chunk size');
          const size = parseInt(digits, 16);
          if (this.bodyLen + size > MAX_BODY_BYTES) return this._fail('answer body too large');
          pos = eol + 2;
          if (size === 0) {
            this.state = S_TRAILER;
          } else {
            this.remaining = size;
            this.state = S_CHUNK_DATA;
          }
          break;
        }
        case S_CHUNK_DATA: {
          const n = Math.min(this.remaining, data.length - pos);
          this.pieces.push(data.subarray(pos, pos + n));
          this.bodyLen += n;
          this.remaining -= n;
          pos += n;
          if (this.remaining === 0) this.state = S_CHUNK_END;
          break;
        }
        case S_CHUNK_END: {
          if (data.length - pos < 2) {
            this.carry = data.subarray(pos);
            return;
          }
          if (data[pos] !== 13 || data[pos + 1] !== 10) return this._fail('chunk not followed by CRLF');
          pos += 2;
          this.state = S_CHUNK_SIZE;
          break;
        }
        case S_TRAILER: {
          const eol = data.indexOf('\r\n', pos, 'latin1');
          if (eol < 0) {
            if (data.length - pos > MAX_HEAD_BYTES) return this._fail('trailer too large');
            this.carry = data.subarray(pos);
            return;
          }
          const empty = eol === pos;
          pos = eol + 2;
          if (empty) this._complete(); // trailer fields themselves are not needed
          break;
        }
        case S_UNTIL_CLOSE: {
          if (this.bodyLen + data.length - pos > MAX_BODY_BYTES) return this._fail('answer body too large');
          this.pieces.push(data.subarray(pos));
          this.bodyLen += data.length - pos;
          pos = data.length;
          break;
        }
      }
    }
  }

  // Parses the status line and headers; returns why it failed, or null.
  _parseHead(text) {
    const lines = text.split('\r\n');
    const m = /^HTTP\/1\.([01]) ([0-9]{3})/.exec(lines[0]);
    if (!m) return 'bad status line';
    this.status = Number(m[2]);
    this.keepAlive = m[1] === '1';
    const headers = {};
    for (let i = 1; i < lines.length; i++) {
      const line = lines[i];
      const colon = line.indexOf(':');
      if (colon <= 0) return 'bad header line';
      const name = line.slice(0, colon).trim().toLowerCase();
      if (!(name in headers)) headers[name] = line.slice(colon + 1).trim();
    }
    this.headers = headers;
    if (this.status < 200) return null;
    const conn = headers.connection;
    if (conn !== undefined) {
      const c = conn.toLowerCase();
      if (c.includes('close')) this.keepAlive = false;
      else if (c.includes('keep-alive')) this.keepAlive = true;
    }
    const te = headers['transfer-encoding'];
    const cl = headers['content-length'];
    this.bodyLen = 0;
    if (te !== undefined && te.toLowerCase().includes('chunked')) {
      this.state = S_CHUNK_SIZE;
      this.pieces = [];
    } else if (cl !== undefined) {
      if (!/^[0-9]{1,12}$/.test(cl)) return 'bad Content-Length';
      const n = Number(cl);
      if (n > MAX_BODY_BYTES) return 'answer body too large';
      this.state = S_FIXED;
      this.remaining = n;
      this.body = Buffer.allocUnsafe(n);
    } else if (this.status === 204 || this.status === 304) {
      this.state = S_FIXED;
      this.remaining = 0;
      this.body = Buffer.alloc(0);
    } else {
      this.state = S_UNTIL_CLOSE;
      this.pieces = [];
      this.keepAlive = false;
    }
    return null;
  }

  _complete() {
    const req = this.queue.shift();
    let body;
    if (this.state === S_FIXED) body = this.body;
    else body = this.pieces.length === 1 ? this.pieces[0] : Buffer.concat(this.pieces, this.bodyLen);
    const answer = { status: this.status, headers: this.headers, body };
    const keep = this.keepAlive;
    this._resetParser();
    if (!keep) this._lost('Runtime API closed the connection before answering');
    else if (this.queue.length === 0 && this.sock) this.sock.unref();
    req.resolve(answer);
  }
}

module.exports = { RuntimeApi };
