// limits.test.mjs — bounded resources at the gateway's front door:
//   - over --max-connections, a new client connection gets a complete 503 at once (not a hang in
//     the backlog), counted in tidegate_connections_refused_total, and service resumes when
//     connections close;
//   - under a tight open-files limit (300, via prlimit) the gateway raises what it can, derives
//     its connection cap from it, and 400 idle client connections neither stop it serving once
//     they go, nor fail its health checks (the endpoint stays available), nor flood its log.
import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import {
  startUpstream, startGateway, stopAll, request, postJson, sleep, parseMetrics, waitFor,
} from './lib.mjs';

const T = { timeout: 30_000 };
after(stopAll);

// Opens n idle connections; resolves with them and what each received within `ms`.
async function openIdle(port, n, ms = 500) {
  const socks = [];
  for (let i = 0; i < n; i++) {
    const s = net.connect({ host: '127.0.0.1', port });
    s.got = '';
    s.on('data', (c) => { s.got += c.toString('latin1'); });
    s.on('error', () => {});
    socks.push(s);
    await new Promise((r) => { s.once('connect', r); s.once('error', r); s.once('close', r); });
  }
  await sleep(ms);
  return socks;
}

const chat = { model: 'fake-model', messages: [{ role: 'user', content: 'hi' }] };

describe('connection limits', () => {
  it('over --max-connections a client gets a 503 at once, and service resumes', T, async (t) => {
    const up = await startUpstream({ name: 'cap' });
    const gw = await startGateway(['--endpoints', up.endpoint, '--max-connections', '20']);
    t.after(() => Promise.all([gw.stop(), up.stop()]));
    assert.match(gw.output(), /at most 20 client connections \(--max-connections\)/);
    const socks = await openIdle(gw.port, 25);
    const refused = socks.filter((s) => s.got.startsWith('HTTP/1.1 503'));
    assert.equal(refused.length, 5, `5 of 25 refused: ${socks.map((s) => s.got.slice(0, 12)).join('|')}`);
    assert.match(refused[0].got, /"code":"too_many_connections"/);
    assert.match(refused[0].got, /Retry-After: 1/);
    socks.forEach((s) => s.destroy());
    await waitFor(async () => (await postJson(gw.url, '/v1/chat/completions', chat)).status === 200,
      { timeoutMs: 5000, what: 'service after the idle connections closed' });
    const m = parseMetrics((await request(gw.url, { path: '/metrics' })).body);
    assert.equal(m.sum('tidegate_connections_refused_total'), 5);
  });

  it('under a 300-descriptor limit, 400 idle connections do not take the gateway down', T, async (t) => {
    const up = await startUpstream({ name: 'fds' });
    const gw = await startGateway(['--endpoints', up.endpoint, '--health-interval', '200ms'],
      { wrap: ['prlimit', '--nofile=300:300', '--'] });
    t.after(() => Promise.all([gw.stop(), up.stop()]));
    const cap = Number(gw.output().match(/open files: limit 300; at most (\d+) client connections/)?.[1]);
    assert.ok(cap > 16 && cap < 150, `a cap derived from the limit: ${gw.output()}`);
    const socks = await openIdle(gw.port, 400, 1500);
    const refused = socks.filter((s) => s.got.startsWith('HTTP/1.1 503')).length;
    assert.ok(refused >= 400 - cap - 5, `connections over the cap were refused (${refused}, cap ${cap})`);
    // The health checks kept working: the endpoint was never marked down.
    assert.doesNotMatch(gw.output(), /failed its health check/);
    socks.forEach((s) => s.destroy());
    await waitFor(async () => (await postJson(gw.url, '/v1/chat/completions', chat)).status === 200,
      { timeoutMs: 5000, what: 'service after the idle connections closed' });
    const pool = (await request(gw.url, { path: '/v1/pool' })).json;
    assert.equal(pool.endpoints[0].available, true);
    const acceptLines = gw.output().split('accept failed').length - 1;
    assert.ok(acceptLines <= 10, `${acceptLines} "accept failed" lines`);
  });

  it('request bodies held at once are bounded: an upload over --max-buffered-bytes is 503 before it is read', T, async (t) => {
    const up = await startUpstream({ name: 'bytes' });
    const gw = await startGateway(['--endpoints', up.endpoint, '--max-buffered-bytes', '4MiB',
      '--max-body-bytes', '3MiB']);
    t.after(() => Promise.all([gw.stop(), up.stop()]));
    const big = 3 * 1024 * 1024;
    const head = `POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\nContent-Length: ${big}\r\n\r\n`;
    // The first upload starts and holds 3 MiB of the budget while it trickles.
    const [first] = await openIdle(gw.port, 1, 0);
    first.write(head + '{"model":"fake-model","messages":[');
    await sleep(200);
    const gauge = async () => parseMetrics((await request(gw.url, { path: '/metrics' })).body).sum('tidegate_buffered_request_bytes');
    assert.equal(await gauge(), big);
    // The second would go over 4 MiB: refused at once, with nothing read.
    const [second] = await openIdle(gw.port, 1, 0);
    second.write(head);
    await waitFor(() => second.got.length > 0, { timeoutMs: 3000, what: 'an answer to the second upload' });
    assert.match(second.got, /^HTTP\/1\.1 503 /, second.got.slice(0, 200));
    assert.match(second.got, /"code":"too_many_buffered_bytes"/);
    // Small requests still fit beside the first upload.
    assert.equal((await postJson(gw.url, '/v1/chat/completions', chat)).status, 200);
    // When the first goes away its share comes back.
    first.destroy();
    second.destroy();
    await waitFor(async () => (await gauge()) === 0, { timeoutMs: 3000, what: 'the budget given back' });
  });
});
