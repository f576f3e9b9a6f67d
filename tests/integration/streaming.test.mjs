// streaming.test.mjs — SSE relay through the gateway: content and framing, incremental delivery,
// a client that disconnects mid-stream (the upstream must see the abort) and an upstream that
// dies mid-stream (the client gets an error event, the gateway stays up).
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import {
  startUpstream, startGateway, stopAll, endpointsArg, postJson, chatBody, openStream,
  sseData, sseContent, waitFor,
} from './lib.mjs';

const T = { timeout: 15_000 };

describe('streaming', () => {
  let up1, up2, gw;
  const byEndpoint = new Map();

  before(async () => {
    up1 = await startUpstream({ name: 'up1' });
    up2 = await startUpstream({ name: 'up2' });
    byEndpoint.set(up1.endpoint, up1).set(up2.endpoint, up2);
    gw = await startGateway(['--endpoints', endpointsArg(up1, up2)]);
  }, T);
  after(stopAll);

  const upOf = (s) => {
    const dest = s.headers['x-gateway-destination-endpoint'];
    assert.ok(byEndpoint.has(dest), `x-gateway-destination-endpoint '${dest}' names an upstream`);
    return byEndpoint.get(dest);
  };
  const sum = async (field) => (await up1.stats())[field] + (await up2.stats())[field];

  it('relays a chat completion stream', T, async () => {
    const s = await openStream(gw.url, '/v1/chat/completions', chatBody('fake-model', { stream: true }),
      { headers: { 'x-request-id': 'stream-req-1' } });
    const end = await s.finished(5000);
    assert.equal(s.status, 200, s.text());
    assert.match(String(s.headers['content-type']), /^text\/event-stream/i);
    assert.equal(s.headers['x-request-id'], 'stream-req-1');
    assert.ok(end.complete, `the response ended cleanly (error: ${end.error?.message})`);
    const up = upOf(s);
    const events = sseData(s.text());
    assert.equal(events.at(-1), '[DONE]', `last event is [DONE]; body:\n${s.text()}`);
    assert.equal(sseContent(events), `hello from ${up.name}`);
    for (const e of events.slice(0, -1)) assert.equal(JSON.parse(e).object, 'chat.completion.chunk');
    assert.equal((await up.stats()).last_headers['x-request-id'], 'stream-req-1');
  });

  it('relays a text completion stream', T, async () => {
    const s = await openStream(gw.url, '/v1/completions', { model: 'fake-model', prompt: 'hi', stream: true });
    const end = await s.finished(5000);
    assert.equal(s.status, 200, s.text());
    assert.match(String(s.headers['content-type']), /^text\/event-stream/i);
    assert.ok(end.complete);
    const events = sseData(s.text());
    assert.equal(events.at(-1), '[DONE]');
    assert.equal(sseContent(events), `hello from ${upOf(s).name}`);
  });

  it('relays concurrent streams independently', T, async () => {
    const streams = await Promise.all(Array.from({ length: 8 }, () =>
      openStream(gw.url, '/v1/chat/completions', chatBody('fake-model', { stream: true }))));
    for (const s of streams) {
      const end = await s.finished(5000);
      assert.equal(s.status, 200);
      assert.ok(end.complete);
      const events = sseData(s.text());
      assert.equal(events.at(-1), '[DONE]');
      assert.equal(sseContent(events), `hello from ${upOf(s).name}`);
    }
  });

  it('client disconnect mid-stream aborts the upstream stream', T, async () => {
    const abortedBefore = await sum('aborted');
    const s = await openStream(gw.url, '/v1/chat/completions', chatBody('slow-stream', { stream: true }));
    try {
      assert.equal(s.status, 200);
      await s.waitText(0, 3000);
      assert.ok(sseData(s.text()).length >= 1, 'first chunk received');
    } finally {
      s.destroy();
    }
    await waitFor(async () => (await sum('aborted')) > abortedBefore,
      { timeoutMs: 2000, intervalMs: 50, what: 'the upstream to see the stream aborted' });
    // The gateway is still fine.
    const r = await postJson(gw.url, '/v1/chat/completions', chatBody());
    assert.equal(r.status, 200, r.body);
  });

  it('delivers chunks as they arrive (no buffering)', T, async () => {
    const s = await openStream(gw.url, '/v1/chat/completions', chatBody('slow-stream', { stream: true }));
    try {
      assert.equal(s.status, 200);
      assert.match(String(s.headers['content-type']), /^text\/event-stream/i);
      // The upstream sends one chunk per 100 ms for 20 s: three chunks must show up long before.
      const started = Date.now();
      await waitFor(() => sseData(s.text()).length >= 3, { timeoutMs: 3000, what: 'three SSE events' });
      assert.ok(Date.now() - started < 3000);
      assert.equal(sseContent(sseData(s.text())).split(' ')[0], 'tok0');
    } finally {
      s.destroy();
    }
  });

  it('upstream dying mid-stream yields an upstream_disconnected error event', T, async () => {
    const requestsBefore = await sum('requests');
    const s = await openStream(gw.url, '/v1/chat/completions', chatBody('die-mid-stream', { stream: true }));
    const end = await s.finished(5000);
    const text = s.text();
    assert.equal(s.status, 200, text);
    assert.match(String(s.headers['content-type']), /^text\/event-stream/i);
    const events = sseData(text);
    const errIdx = events.findIndex((e) => {
      try { return JSON.parse(e)?.error !== undefined; } catch { return false; }
    });
    assert.ok(errIdx >= 0, `an error event was sent; body:\n${text}`);
    assert.equal(sseContent(events.slice(0, errIdx)), 'hello from', 'the chunks before the failure were relayed');
    const err = JSON.parse(events[errIdx]).error;
    assert.equal(err.code, 'upstream_disconnected', events[errIdx]);
    assert.equal(typeof err.message, 'string');
    assert.ok(err.message.length > 0);
    assert.ok(end.complete, `the response ended cleanly after the error event (error: ${end.error?.message})`);
    assert.equal((await sum('requests')) - requestsBefore, 1, 'a stream that already sent bytes is not retried');

    // The gateway stays up and serves normal traffic.
    const r = await postJson(gw.url, '/v1/chat/completions', chatBody());
    assert.equal(r.status, 200, r.body);
    const s2 = await openStream(gw.url, '/v1/chat/completions', chatBody('fake-model', { stream: true }));
    await s2.finished(5000);
    assert.equal(sseContent(sseData(s2.text())), `hello from ${upOf(s2).name}`);
  });

  // After an upstream dies mid-stream the gateway ends the client's response cleanly (error
  // event, then the terminating chunk), so the client connection is intact and a keep-alive
  // client may send its next request on it at once. Closing it right after the clean end makes
  // that next POST fail (clients do not retry a POST on a reused connection by themselves).
  // The official SDK hit exactly that with an earlier build.
  it('the client connection stays usable after an upstream dies mid-stream', T, async () => {
    const sock = net.connect({ host: '127.0.0.1', port: gw.port });
    let buf = '';
    let closed = false;
    sock.setEncoding('latin1');
    sock.on('data', (c) => { buf += c; });
    sock.on('close', () => { closed = true; });
    sock.on('error', () => {});
    const post = (obj) => {
      const body = JSON.stringify(obj);
      sock.write(`POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n` +
        `Content-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`);
    };
    try {
      post(chatBody('die-mid-stream', { stream: true }));
      await waitFor(() => buf.includes('\r\n0\r\n\r\n') || closed,
        { timeoutMs: 5000, what: 'the end of the broken stream' });
      assert.match(buf, /upstream_disconnected/);
      assert.ok(buf.endsWith('\r\n0\r\n\r\n'), `the broken stream ended with the last chunk: ${JSON.stringify(buf.slice(-200))}`);
      const mark = buf.length;
      // The next request at once, on the same connection, as a pooled keep-alive client would.
      assert.ok(!closed, 'the connection is still open after the stream ended');
      post(chatBody());
      await waitFor(() => /hello from up[12]/.test(buf.slice(mark)) || closed,
        { timeoutMs: 3000, what: 'the answer to the second request' });
      assert.match(buf.slice(mark), /^HTTP\/1\.1 200 /,
        `second request on the same connection answered (closed: ${closed}): ${JSON.stringify(buf.slice(mark, mark + 300))}`);
    } finally {
      sock.destroy();
    }
  });
});
