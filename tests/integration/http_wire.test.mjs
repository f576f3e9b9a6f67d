// http_wire.test.mjs — the gateway's client-side HTTP/1.1, byte by byte over raw sockets:
// pipelined requests answered in order, a chunked request body, Expect: 100-continue, HTTP/1.0
// closing, a body sent in slow pieces (the idle timeout is per read, not a total deadline), and
// malformed requests answered with a clear 400/431/501/505 instead of a dropped connection.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { startUpstream, startGateway, stopAll, endpointsArg, rawExchange, sleep } from './lib.mjs';

const T = { timeout: 15_000 };
const BODY = JSON.stringify({ model: 'fake-model', messages: [{ role: 'user', content: 'hi' }] });

// Splits raw response bytes into {status, headers, body} records (Content-Length bodies).
function parseResponses(raw) {
  const out = [];
  let rest = raw;
  while (rest.length > 0) {
    const end = rest.indexOf('\r\n\r\n');
    if (end < 0) break;
    const head = rest.slice(0, end).split('\r\n');
    const status = Number(head[0].split(' ')[1]);
    const headers = {};
    for (const line of head.slice(1)) {
      const i = line.indexOf(':');
      headers[line.slice(0, i).toLowerCase()] = line.slice(i + 1).trim();
    }
    const len = Number(headers['content-length'] || 0);
    out.push({ status, headers, body: rest.slice(end + 4, end + 4 + len) });
    rest = rest.slice(end + 4 + len);
  }
  return out;
}

const post = (extra = '', body = BODY) =>
  `POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\n` +
  `Content-Length: ${Buffer.byteLength(body)}\r\n${extra}\r\n${body}`;

describe('client-side HTTP/1.1', () => {
  let up, gw;
  before(async () => {
    up = await startUpstream({ name: 'up1' });
    gw = await startGateway(['--endpoints', endpointsArg(up), '--client-idle-timeout', '1s']);
  }, T);
  after(stopAll);

  it('answers pipelined requests in order on one connection', T, async () => {
    const raw = await rawExchange(gw.port,
      post('x-request-id: p1\r\n') + post('x-request-id: p2\r\n') +
      'GET /healthz HTTP/1.1\r\nHost: gw\r\nx-request-id: p3\r\nConnection: close\r\n\r\n');
    const rs = parseResponses(raw);
    assert.deepEqual(rs.map((r) => [r.status, r.headers['x-request-id']]),
      [[200, 'p1'], [200, 'p2'], [200, 'p3']], raw.slice(0, 400));
    assert.match(rs[0].body, /hello from up1/);
  });

  it('accepts a chunked request body, forwarded with its length', T, async () => {
    const half = Math.floor(BODY.length / 2);
    const chunked = `${half.toString(16)}\r\n${BODY.slice(0, half)}\r\n` +
      `${(BODY.length - half).toString(16)};ext=1\r\n${BODY.slice(half)}\r\n0\r\n\r\n`;
    const raw = await rawExchange(gw.port,
      'POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\n' +
      `Connection: close\r\n\r\n${chunked}`);
    const [r] = parseResponses(raw);
    assert.equal(r.status, 200, raw.slice(0, 300));
    const stats = await up.stats();
    assert.deepEqual(stats.last_body, JSON.parse(BODY));
  });

  it('sends 100 Continue before reading a body the client holds back', T, async () => {
    const sock = net.connect({ host: '127.0.0.1', port: gw.port });
    let got = '';
    sock.on('data', (c) => { got += c.toString('latin1'); });
    await new Promise((r) => sock.once('connect', r));
    sock.write('POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nExpect: 100-continue\r\n' +
      `Content-Length: ${BODY.length}\r\nConnection: close\r\n\r\n`);
    for (let i = 0; i < 50 && !got.includes('100 Continue'); i++) await sleep(20);
    assert.match(got, /^HTTP\/1\.1 100 Continue\r\n\r\n/);
    sock.write(BODY);
    await new Promise((r) => sock.once('close', r));
    assert.match(got, /HTTP\/1\.1 200 OK/);
  });

  it('closes an HTTP/1.0 connection after the response, and keeps one that asks for it', T, async () => {
    const raw = await rawExchange(gw.port, 'GET /healthz HTTP/1.0\r\n\r\n');
    assert.match(raw, /^HTTP\/1\.1 200/);  // answered, then closed (rawExchange saw the close)
    const keep = await rawExchange(gw.port,
      'GET /healthz HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /healthz HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n');
    assert.equal(parseResponses(keep).length, 2, keep);
  });

  it('a body sent slowly in pieces is not cut while it keeps coming (the idle timeout is per read)', T, async () => {
    const sock = net.connect({ host: '127.0.0.1', port: gw.port });
    let got = '';
    sock.on('data', (c) => { got += c.toString('latin1'); });
    await new Promise((r) => sock.once('connect', r));
    sock.write('POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\n' +
      `Content-Length: ${BODY.length}\r\nConnection: close\r\n\r\n`);
    // 1.6 s in all, longer than the 1 s idle timeout, but never idle for 1 s.
    const piece = Math.ceil(BODY.length / 4);
    for (let i = 0; i < 4; i++) {
      await sleep(400);
      sock.write(BODY.slice(i * piece, (i + 1) * piece));
    }
    await new Promise((r) => sock.once('close', r));
    assert.match(got, /HTTP\/1\.1 200 OK/, got.slice(0, 200));
  });

  for (const [what, bytes, status, re] of [
    ['a request line that is not HTTP', 'HELLO\r\n\r\n', 400, /malformed request line/],
    ['an unsupported HTTP version', 'GET /healthz HTTP/2.0\r\n\r\n', 505, /unsupported HTTP version/],
    ['a header name with a space', 'GET /healthz HTTP/1.1\r\nHost: gw\r\nBad Name: x\r\n\r\n', 400, /malformed header name/],
    ['a coding before chunked', 'POST /v1/completions HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: gzip, chunked\r\n\r\n', 501, /only chunked/],
    ['a transfer coding without chunked last', 'POST /v1/completions HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: gzip\r\n\r\n', 400, /final coding/],
    ['two different Content-Lengths', 'POST /v1/completions HTTP/1.1\r\nHost: gw\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nx', 400, /Content-Length/],
    ['a malformed chunked body', 'POST /v1/completions HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n', 400, /chunked body/],
    ['headers over 64 KiB', `GET /healthz HTTP/1.1\r\nHost: gw\r\nX-Big: ${'a'.repeat(70 * 1024)}\r\n\r\n`, 431, /64 KiB/],
    ['an HTTP/1.1 request without Host', 'GET /healthz HTTP/1.1\r\n\r\n', 400, /missing Host/],
    ['two Host headers', 'GET /healthz HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n', 400, /more than one Host/],
  ]) {
    it(`${what} → ${status} with an OpenAI-style error, then the connection closes`, T, async () => {
      const raw = await rawExchange(gw.port, bytes);
      const [r] = parseResponses(raw);
      assert.ok(r, `a response came back: ${JSON.stringify(raw.slice(0, 200))}`);
      assert.equal(r.status, status, raw.slice(0, 300));
      const err = JSON.parse(r.body).error;
      assert.match(err.message, re);
      assert.ok(err.code && err.type, r.body);
    });
  }

  // A smuggled request after a body whose length cannot be known: RFC 9112 §6.3 says 400 and
  // close, so the bytes after the head are never read as a request, whatever the header order.
  for (const [what, te] of [
    ['alone', 'Transfer-Encoding: xchunked\r\n'],
    ['before a Content-Length', 'Transfer-Encoding: xchunked\r\nContent-Length: 44\r\n'],
    ['after a Content-Length', 'Content-Length: 44\r\nTransfer-Encoding: xchunked\r\n'],
  ]) {
    it(`an unknown Transfer-Encoding ${what} is 400 and close: a smuggled GET /v1/pool is never answered`, T, async () => {
      const raw = await rawExchange(gw.port,
        `POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\n${te}\r\n` +
        'GET /v1/pool HTTP/1.1\r\nHost: gw\r\n\r\n');
      const rs = parseResponses(raw);
      assert.equal(rs.length, 1, `one response only: ${raw.slice(0, 600)}`);
      assert.equal(rs[0].status, 400, raw.slice(0, 300));
      assert.doesNotMatch(raw, /"endpoints"/, 'the smuggled request was not run');
      assert.equal(rs[0].headers.connection, 'close');
    });
  }

  it('a body with "model" twice is 400 duplicate_key (it would be routed by one and served as the other)', T, async () => {
    const body = '{"model":"fake-model","messages":[{"role":"user","content":"hi"}],"model":"error-500"}';
    const [r] = parseResponses(await rawExchange(gw.port, post('Connection: close\r\n', body)));
    assert.equal(r.status, 400, JSON.stringify(r));
    const err = JSON.parse(r.body).error;
    assert.equal(err.code, 'duplicate_key');
    assert.match(err.message, /"model" more than once/);
  });

  it('an HTTP/1.0 client gets a stream close-delimited, not chunked', T, async () => {
    const body = JSON.stringify({ model: 'fake-model', stream: true, messages: [{ role: 'user', content: 'hi' }] });
    const raw = await rawExchange(gw.port,
      `POST /v1/chat/completions HTTP/1.0\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body}`);
    const end = raw.indexOf('\r\n\r\n');
    const head = raw.slice(0, end);
    const rest = raw.slice(end + 4);
    assert.match(head, /^HTTP\/1\.1 200/);
    assert.doesNotMatch(head, /transfer-encoding/i, head);
    assert.doesNotMatch(head, /content-length/i, head);
    assert.match(head, /\r\nConnection: close/i, head);
    // The body is the SSE text itself, with no chunk-size lines, and ends with [DONE].
    assert.match(rest, /^data: \{/, JSON.stringify(rest.slice(0, 80)));
    assert.match(rest, /data: \[DONE\]\n\n$/, JSON.stringify(rest.slice(-80)));
    assert.doesNotMatch(rest, /^[0-9a-f]+\r\n/m, 'no chunk framing');
  });

  it('an upstream that dies mid-event: the partial event is ended before the error event', T, async () => {
    const body = JSON.stringify({ model: 'die-mid-event', stream: true, messages: [{ role: 'user', content: 'hi' }] });
    const raw = await rawExchange(gw.port, post('Connection: close\r\n', body).replace(/application\/json/, 'application/json'));
    const end = raw.indexOf('\r\n\r\n');
    // De-chunk the body.
    let rest = raw.slice(end + 4);
    let text = '';
    for (;;) {
      const nl = rest.indexOf('\r\n');
      const size = parseInt(rest.slice(0, nl), 16);
      if (!size) break;
      text += rest.slice(nl + 2, nl + 2 + size);
      rest = rest.slice(nl + 2 + size + 2);
    }
    const events = text.split('\n\n').filter((e) => e.length > 0);
    assert.equal(events.length, 3, JSON.stringify(text));
    assert.equal(events[1], 'data: {"partial', 'the partial event, ended by a blank line');
    const err = JSON.parse(events[2].replace(/^data: /, ''));
    assert.equal(err.error.code, 'upstream_disconnected', events[2]);
  });

});

describe('client timeouts: header read, body idle, keep-alive idle', () => {
  let up, gw;
  before(async () => {
    up = await startUpstream({ name: 'up-timeouts' });
    gw = await startGateway(['--endpoints', endpointsArg(up), '--header-timeout', '800ms',
      '--client-idle-timeout', '600ms', '--keepalive-timeout', '1500ms']);
  }, T);
  after(() => Promise.all([gw?.stop(), up?.stop()]));

  // Connects, runs `drip` (writes over time), and resolves with what came back and when the
  // connection closed (ms after connecting).
  const timed = (drip) => new Promise((resolve, reject) => {
    const sock = net.connect({ host: '127.0.0.1', port: gw.port });
    const t0 = Date.now();
    let got = '';
    sock.on('data', (c) => { got += c.toString('latin1'); });
    let error = null;
    sock.on('error', (e) => { error = e; });
    sock.on('close', () => resolve({ got, error, closedAfter: Date.now() - t0 }));
    sock.once('connect', () => drip(sock).catch(reject));
    setTimeout(() => { sock.destroy(); }, 12000);
  });

  it('a head that trickles in (slowloris) gets 408 at the header timeout, though never idle for long', T, async () => {
    const r = await timed(async (sock) => {
      const head = 'GET /healthz HTTP/1.1\r\nHost: gw\r\nX-Slow: ' + 'a'.repeat(40);
      for (const ch of head) {
        if (sock.destroyed) return;
        sock.write(ch);
        await sleep(100);  // each pause is below the 600 ms idle timeout
      }
    });
    assert.match(r.got, /^HTTP\/1\.1 408 /, JSON.stringify(r.got.slice(0, 200)));
    assert.match(r.got, /header timeout/);
    assert.ok(r.closedAfter >= 700 && r.closedAfter < 6000, `closed after ${r.closedAfter} ms (header timeout 800 ms)`);
  });

  it('a body that stops half-way gets 408 after the client idle timeout', T, async () => {
    const r = await timed(async (sock) => {
      sock.write(`POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nContent-Length: ${BODY.length}\r\n\r\n${BODY.slice(0, 10)}`);
    });
    assert.match(r.got, /^HTTP\/1\.1 408 /, JSON.stringify(r));
    assert.match(r.got, /middle of the request body/);
    assert.ok(r.closedAfter >= 500 && r.closedAfter < 6000, `closed after ${r.closedAfter} ms (idle timeout 600 ms)`);
  });

  it('an idle keep-alive connection is closed quietly after the keep-alive timeout, not at the header timeout', T, async () => {
    const r = await timed(async (sock) => {
      sock.write('GET /healthz HTTP/1.1\r\nHost: gw\r\n\r\n');
    });
    assert.match(r.got, /^HTTP\/1\.1 200 /);
    assert.doesNotMatch(r.got, /408/, 'no 408 for a connection that sent nothing more');
    assert.ok(r.closedAfter >= 1300 && r.closedAfter < 7000, `closed after ${r.closedAfter} ms (keep-alive timeout 1500 ms)`);
  });
});
