// async_redis.test.mjs — issue 15: the async processor on Redis Streams (redis:// queues), against
// a real redis-server (Debian package) on a free loopback port with AOF persistence
// (--appendonly yes --appendfsync everysec, RDB off), with the official npm `redis` client on the
// user's side: it publishes the requests (XADD req * data '{...}') and reads the results (XRANGE),
// while `tidegate async` sits between the streams and a real gateway in front of real simulators.
// What it proves:
//   - 1,000 requests with the processor SIGKILLed twice mid-run and restarted: every id has
//     exactly one result (publish + ack is one Lua script on the same server, so not even an
//     identical duplicate), nothing stays pending, and no result journal is needed;
//   - redis-server SIGKILLed and restarted mid-run (same dir, AOF): nothing lost, the processor
//     reconnects by itself and finishes;
//   - lease extension: a request held three times longer than the lease is not delivered to a
//     second processor on the same group (it reaches the upstream once);
//   - two processors on one group: every request runs once (the simulators' request counters);
//   - a poison message (its processor keeps dying) lands on the dead-letter stream after
//     max_attempts, with the source and attempt count as fields;
//   - malformed messages and an entry without a `data` field → INVALID_REQUEST, an expired
//     deadline → DEADLINE_EXCEEDED; the result entries carry `id` and `error_code` fields;
//   - bad URIs, a wrong password and an unreachable server → a clear error at start-up (exit 2),
//     the password never printed;
//   - `tidegate submit` and `tidegate results` with redis:// URIs;
//   - rediss:// (TLS): the server certificate is verified (against `ca`), a wrong CA is refused.
// A missing redis-server fails the test with the reason; it is never skipped.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import OpenAI, { toFile } from 'openai';
import { createClient } from 'redis';
import {
  SIM_MODEL, startSim, startGateway, startAsync, startUpstream, runTidegate, stopAll, waitFor,
  sleep, closedPort,
} from './lib.mjs';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'tidegate-async-redis-'));
const servers = new Set();

function killServers() {
  for (const s of servers) {
    if (s.exitCode === null && s.signalCode === null) {
      try { s.kill('SIGKILL'); } catch { /* gone */ }
    }
  }
}
process.on('exit', killServers);

// Starts redis-server on `port` with its data in `dir`; resolves {proc, port, output()} once it
// accepts connections.
async function startRedis(port, dir, extra = []) {
  fs.mkdirSync(dir, { recursive: true });
  const args = ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'yes',
    '--appendfsync', 'everysec', '--dir', dir, '--protected-mode', 'no', '--loglevel', 'notice', ...extra];
  const proc = spawn('redis-server', args, { stdio: ['ignore', 'pipe', 'pipe'] });
  servers.add(proc);
  let out = '';
  proc.stdout.on('data', (c) => { out += c; });
  proc.stderr.on('data', (c) => { out += c; });
  const failed = new Promise((_, reject) => {
    proc.once('error', (err) => reject(new Error(
      `cannot start redis-server (Debian package redis-server): ${err.message}`)));
    proc.once('exit', (code) => reject(new Error(`redis-server exited (${code}):\n${out}`)));
  });
  failed.catch(() => {});
  await Promise.race([failed, waitFor(() => /Ready to accept connections/.test(out),
    { timeoutMs: 10000, what: `redis-server on port ${port}` })]);
  return { proc, port, output: () => out };
}

async function client(port) {
  const c = createClient({ url: `redis://127.0.0.1:${port}`, socket: { reconnectStrategy: false } });
  c.on('error', () => {});
  await c.connect();
  return c;
}

let redis; // {proc, port}
let rc; // the user's client
let dataDir;
let streamCounter = 0;

// Fresh stream names and the URIs that point at them.
function streams(extra = '', port = () => redis.port) {
  const n = ++streamCounter;
  const req = `req${n}`, res = `res${n}`;
  return {
    req, res,
    requests: `redis://127.0.0.1:${port()}/${req}?group=workers${extra}`,
    results: `redis://127.0.0.1:${port()}/${res}?group=readers`,
  };
}

function requestMessage(id, { maxTokens = 16, deadline, stream = false, model = SIM_MODEL } = {}) {
  const msg = {
    id,
    payload: { model, max_tokens: maxTokens, stream, messages: [{ role: 'user', content: `redis ${id}` }] },
  };
  if (deadline !== undefined) msg.deadline = deadline;
  return JSON.stringify(msg);
}

async function publish(c, stream, messages) {
  // One pipeline (the client batches commands issued together), as a user's producer would.
  await Promise.all(messages.map((m) => c.xAdd(stream, '*', { data: m })));
}

// Every result entry on `stream`: {byId: Map id → [data, ...], entries}.
async function readResults(c, stream) {
  const entries = await c.xRange(stream, '-', '+');
  const byId = new Map();
  for (const e of entries) {
    const r = JSON.parse(e.message.data);
    assert.equal(e.message.id, r.id, 'the id field matches the result');
    if (!byId.has(r.id)) byId.set(r.id, []);
    byId.get(r.id).push(e.message.data);
  }
  return { byId, entries };
}

async function pendingCount(c, stream, group = 'workers') {
  const p = await c.sendCommand(['XPENDING', stream, group]);
  return Number(p[0]);
}

after(async () => {
  if (rc) await rc.close().catch(() => {});
  await stopAll();
  killServers();
  fs.rmSync(tmp, { recursive: true, force: true });
});

describe('async processor on Redis Streams', () => {
  let sim, gw;
  before(async () => {
    dataDir = path.join(tmp, 'redis');
    redis = await startRedis(await closedPort(), dataDir);
    rc = await client(redis.port);
    sim = await startSim(['--port-count', '2', '--time-scale', '20']);
    gw = await startGateway(['--endpoints', sim.endpoints.join(',')]);
  });

  it('1,000 requests, the processor SIGKILLed twice: exactly one result per id', async () => {
    const s = streams();
    const n = 1000;
    const ids = Array.from({ length: n }, (_, i) => `kill-${i}`);
    // Published before any processor ran: the group is created at 0, so none is skipped.
    await publish(rc, s.req, ids.map((id) => requestMessage(id, { maxTokens: 100 })));
    const args = ['--gateway', gw.url, '--requests', s.requests, '--responses', s.results,
      '--lease', '2s', '--max-inflight', '32', '--initial-window', '32'];
    const done = () => rc.xLen(s.res);
    let proc = await startAsync(args);
    assert.doesNotMatch(proc.output(), /result journal/, 'publish+ack is atomic: no journal');
    for (const at of [150, 450]) {
      await waitFor(async () => (await done()) >= at, { timeoutMs: 30000, what: `${at} results` });
      const mid = await done();
      assert.ok(mid < n, `the run finished before the kill (${mid} results); make it longer`);
      proc.signal('SIGKILL');
      await new Promise((r) => proc.proc.once('exit', r));
      proc = await startAsync(args);
    }
    await waitFor(async () => (await done()) >= n, { timeoutMs: 40000, intervalMs: 100, what: `${n} results` });
    await sleep(300); // anything late would show as a duplicate
    const { byId, entries } = await readResults(rc, s.res);
    assert.deepEqual([...byId.keys()].sort(), [...ids].sort());
    assert.equal(entries.length, n, 'no duplicates at all');
    for (const [id, [data]] of byId) {
      const r = JSON.parse(data);
      assert.equal(r.status_code, 200, `${id}: ${data}`);
      assert.equal(JSON.parse(r.payload).object, 'chat.completion');
    }
    assert.equal(await rc.xLen(s.req), 0, 'acknowledged requests are deleted');
    assert.equal(await pendingCount(rc, s.req), 0);
    assert.match(proc.output(), /reclaimed \d+ message\(s\) idle for longer than the lease/);
    await proc.stop();
  });

  it('redis-server SIGKILLed and restarted mid-run: nothing lost, the processor reconnects', async () => {
    const s = streams();
    const n = 600;
    const ids = Array.from({ length: n }, (_, i) => `restart-${i}`);
    await publish(rc, s.req, ids.map((id) => requestMessage(id, { maxTokens: 100 })));
    const proc = await startAsync(['--gateway', gw.url, '--requests', s.requests,
      '--responses', s.results, '--lease', '5s', '--max-inflight', '32', '--initial-window', '32']);
    await waitFor(async () => (await rc.xLen(s.res)) >= 100, { timeoutMs: 30000, what: '100 results' });
    const before = await rc.xLen(s.res);
    assert.ok(before < n, `finished before the restart (${before})`);
    // Results counted a second before the kill are on disk whatever the fsync timing (with
    // everysec Redis may postpone an AOF write while a background fsync runs).
    await sleep(1100);
    redis.proc.kill('SIGKILL');
    await new Promise((r) => redis.proc.once('exit', r));
    await rc.destroy();
    await sleep(1500); // down for a while: pulls, extensions and publishes fail meanwhile
    redis = await startRedis(redis.port, dataDir);
    rc = await client(redis.port);
    const after = await rc.xLen(s.res);
    assert.ok(after >= before, `results lost in the restart: ${after} < ${before}`);
    await waitFor(async () => (await rc.xLen(s.res)) >= n, { timeoutMs: 40000, intervalMs: 100, what: `${n} results` });
    await sleep(300);
    const { byId, entries } = await readResults(rc, s.res);
    assert.deepEqual([...byId.keys()].sort(), [...ids].sort());
    for (const [id, datas] of byId) {
      assert.ok(datas.every((d) => d === datas[0]), `${id}: different duplicates`);
      assert.equal(JSON.parse(datas[0]).status_code, 200, datas[0]);
    }
    assert.equal(entries.length, n, 'no duplicates');
    assert.equal(await pendingCount(rc, s.req), 0);
    assert.match(proc.output(), /connection lost or refused/);
    assert.match(proc.output(), /reconnected/);
    // ... and counted in the processor's metrics (read every 2 s).
    await waitFor(async () => {
      const m = await proc.metrics();
      return m.get('tidegate_async_queue_events_total', { queue: 'requests', event: 'reconnects' }) >= 1;
    }, { timeoutMs: 5000, what: 'tidegate_async_queue_events_total{event="reconnects"} >= 1' });
    await proc.stop();
  });

  it('extends the lease of a held request: a second processor on the group never gets it', async () => {
    const up = await startUpstream({ name: 'slow' });
    const upGw = await startGateway(['--endpoints', up.endpoint]);
    try {
      const s = streams();
      const args = ['--gateway', upGw.url, '--requests', s.requests, '--responses', s.results,
        '--lease', '1s'];
      const a = await startAsync(args);
      const b = await startAsync(args);
      // slow-headers: the upstream answers after 3 s, three leases.
      await publish(rc, s.req, [requestMessage('slow', { model: 'slow-headers' }),
        ...Array.from({ length: 10 }, (_, i) => requestMessage(`quick-${i}`, { model: 'fake-model' }))]);
      await waitFor(async () => (await rc.xLen(s.res)) >= 11, { timeoutMs: 20000, what: '11 results' });
      await sleep(1500); // a second delivery, were there one, would have run by now
      const { byId, entries } = await readResults(rc, s.res);
      assert.equal(entries.length, 11);
      assert.equal(JSON.parse(byId.get('slow')[0]).status_code, 200);
      assert.equal((await up.stats()).requests, 11, 'each request reached the upstream once');
      const pulled = (await a.metric('tidegate_async_messages_pulled_total')) +
        (await b.metric('tidegate_async_messages_pulled_total'));
      assert.equal(pulled, 11, 'no message was delivered twice');
      await Promise.all([a.stop(), b.stop()]);
    } finally {
      await Promise.all([upGw.stop(), up.stop()]);
    }
  });

  it('two processors share one group: every request runs once', async () => {
    const s = streams();
    const n = 300;
    const args = ['--gateway', gw.url, '--requests', s.requests, '--responses', s.results,
      '--lease', '2s', '--pull-batch', '20'];
    const a = await startAsync(args);
    const b = await startAsync(args);
    const served = async () => (await sim.metric('vllm:request_success_total', 0)) +
      (await sim.metric('vllm:request_success_total', 1));
    const servedBefore = await served();
    const ids = Array.from({ length: n }, (_, i) => `shared-${i}`);
    await publish(rc, s.req, ids.map((id) => requestMessage(id, { maxTokens: 32 })));
    await waitFor(async () => (await rc.xLen(s.res)) >= n, { timeoutMs: 30000, what: `${n} results` });
    await sleep(300);
    const { byId, entries } = await readResults(rc, s.res);
    assert.equal(entries.length, n);
    assert.deepEqual([...byId.keys()].sort(), [...ids].sort());
    const pa = await a.metric('tidegate_async_messages_pulled_total');
    const pb = await b.metric('tidegate_async_messages_pulled_total');
    assert.equal(pa + pb, n, `pulled ${pa} + ${pb}`);
    assert.ok(pa > 0 && pb > 0, `both processors took work (${pa}, ${pb})`);
    assert.equal(await served() - servedBefore, n, 'the simulators served each request once');
    await Promise.all([a.stop(), b.stop()]);
  });

  it('moves a poison message to the dead-letter stream after max_attempts', async () => {
    const stall = await startSim(['--time-scale', '20', '--stall-after-tokens', '1']);
    const stallGw = await startGateway(['--endpoints', stall.endpoint]);
    const s = streams('&max_attempts=3&dead_letter=dead');
    await rc.xAdd(s.req, '*', { data: requestMessage('poison', { stream: true }), tenant: 't1' });
    const args = ['--gateway', stallGw.url, '--requests', s.requests, '--responses', s.results,
      '--lease', '1s'];
    for (let attempt = 1; attempt <= 3; ++attempt) {
      const proc = await startAsync(args);
      await waitFor(async () => (await proc.metric('tidegate_async_in_flight')) === 1,
        { timeoutMs: 10000, what: `delivery ${attempt} in flight` });
      proc.signal('SIGKILL');
      await new Promise((r) => proc.proc.once('exit', r));
    }
    const last = await startAsync(args);
    await waitFor(async () => (await rc.xLen('dead')) === 1,
      { timeoutMs: 10000, what: 'the poison message on the dead-letter stream' });
    const [entry] = await rc.xRange('dead', '-', '+');
    assert.equal(JSON.parse(entry.message.data).id, 'poison');
    assert.equal(entry.message.tenant, 't1', 'attributes travel along');
    assert.equal(entry.message['tidegate-delivery-attempts'], '3');
    assert.equal(entry.message['tidegate-dead-letter-source'], s.req);
    assert.equal(await rc.xLen(s.req), 0);
    assert.equal(await pendingCount(rc, s.req), 0);
    assert.equal(await last.metric('tidegate_async_messages_pulled_total'), 0);
    assert.match(last.output(), /moved 1 message\(s\) past max_attempts=3 to the dead-letter stream/);
    await last.stop();
    await stallGw.stop();
    await stall.stop();
  });

  it('answers malformed messages with INVALID_REQUEST and expired ones with DEADLINE_EXCEEDED', async () => {
    const s = streams();
    const now = Math.floor(Date.now() / 1000);
    await rc.xAdd(s.req, '*', { data: 'this is not JSON' });
    await rc.xAdd(s.req, '*', { data: JSON.stringify({ id: 'bad-payload', payload: 'not an object' }) });
    const noData = await rc.xAdd(s.req, '*', { payload: 'no data field here' });
    await rc.xAdd(s.req, '*', { data: requestMessage('late', { deadline: now - 60 }) });
    await rc.xAdd(s.req, '*', { data: requestMessage('fine') });
    const proc = await startAsync(['--gateway', gw.url, '--requests', s.requests, '--responses', s.results]);
    await waitFor(async () => (await rc.xLen(s.res)) >= 5, { timeoutMs: 15000, what: '5 results' });
    const { byId, entries } = await readResults(rc, s.res);
    assert.equal(entries.length, 5);
    const one = (id) => JSON.parse(byId.get(id)?.[0] ?? 'null');
    assert.equal(one('bad-payload').error_code, 'INVALID_REQUEST');
    assert.equal(one(noData).error_code, 'INVALID_REQUEST', 'no data field: answered by entry id');
    assert.equal(one('late').error_code, 'DEADLINE_EXCEEDED');
    assert.equal(one('fine').status_code, 200);
    const others = [...byId.keys()].filter((id) => !['bad-payload', noData, 'late', 'fine'].includes(id));
    assert.equal(others.length, 1);
    assert.equal(one(others[0]).error_code, 'INVALID_REQUEST');
    assert.match(one(others[0]).error_message, /JSON/i);
    // Result entries: the message in `data`, the id and error code as fields.
    const lateEntry = entries.find((e) => e.message.id === 'late');
    assert.equal(lateEntry.message.error_code, 'DEADLINE_EXCEEDED');
    assert.equal(entries.find((e) => e.message.id === 'fine').message.error_code, undefined);
    assert.equal(await pendingCount(rc, s.req), 0);
    await proc.stop();
  });

  it('serves an OpenAI Batch API batch over Redis Streams (lines and results on redis:// queues)', async () => {
    const s = streams();
    const batchRes = `bres${streamCounter}`;
    const batchResults = `redis://127.0.0.1:${redis.port}/${batchRes}?group=batches`;
    const bgw = await startGateway(['--endpoints', sim.endpoints.join(','),
      '--batch-dir', path.join(tmp, `batches-${streamCounter}`),
      '--batch-queue', s.requests, '--batch-results', batchResults]);
    const proc = await startAsync(['--gateway', bgw.url, '--requests', s.requests,
      '--responses', s.results, '--batch-responses', batchResults]);
    const client = new OpenAI({ baseURL: `${bgw.url}/v1`, apiKey: 'test', maxRetries: 0, timeout: 15_000 });
    const n = 30;
    const lines = [];
    for (let i = 0; i < n; ++i) {
      lines.push(JSON.stringify({ custom_id: `r-${i}`, method: 'POST', url: '/v1/chat/completions',
        body: { model: SIM_MODEL, max_tokens: 8, messages: [{ role: 'user', content: `redis batch ${i}` }] } }));
    }
    const file = await client.files.create({ file: await toFile(Buffer.from(lines.join('\n')), 'b.jsonl'), purpose: 'batch' });
    let b = await client.batches.create({ input_file_id: file.id, endpoint: '/v1/chat/completions', completion_window: '1h' });
    await waitFor(async () => {
      b = await client.batches.retrieve(b.id);
      return b.status === 'completed';
    }, { timeoutMs: 30_000, intervalMs: 200, what: `the batch completes (status ${b.status})` });
    assert.deepEqual(b.request_counts, { total: n, completed: n, failed: 0 });
    const out = (await (await client.files.content(b.output_file_id)).text()).split('\n').filter(Boolean)
      .map((l) => JSON.parse(l));
    assert.deepEqual(out.map((l) => l.custom_id).sort(), lines.map((l) => JSON.parse(l).custom_id).sort());
    // The lines went through the request stream and their results through the batch stream
    // (every one acknowledged: nothing pending), none onto the ordinary results stream.
    assert.equal(await pendingCount(rc, s.req), 0);
    assert.equal(await pendingCount(rc, batchRes, 'batches'), 0);
    assert.ok(await proc.metric('tidegate_async_requests_succeeded_total') >= n);
    assert.equal(await rc.exists(s.res) ? await rc.xLen(s.res) : 0, 0);
    await proc.stop();
    await bgw.stop();
  });

  it('refuses bad URIs, a wrong password and an unreachable server at start-up', async () => {
    await rc.sendCommand(['ACL', 'SETUSER', 'tg', 'on', '>right-secret', '~*', '&*', '+@all']);
    const port = redis.port;
    const dead = await closedPort();
    const ok = `redis://127.0.0.1:${port}/res-x?group=readers`;
    const cases = [
      [`redis://127.0.0.1:${port}/req-x`, /missing \?group=NAME/],
      [`redis://127.0.0.1:99999/req-x?group=g`, /bad port '99999'/],
      [`redis://127.0.0.1:${port}/req-x?group=g&colour=blue`, /unknown parameter 'colour'/],
      [`redis://tg:wrong-secret@127.0.0.1:${port}/req-x?group=g`, /authentication as user 'tg' refused.*WRONGPASS/],
      [`redis://127.0.0.1:${dead}/req-x?group=g`, new RegExp(`connecting to 127\\.0\\.0\\.1:${dead}`)],
    ];
    for (const [uri, want] of cases) {
      const r = await runTidegate(['async', '--gateway', gw.url, '--requests', uri, '--responses', ok,
        '--metrics-port', '-1'], { timeoutMs: 20000 });
      assert.equal(r.code, 2, `${uri}: ${r.stderr}`);
      assert.match(r.stderr, want, uri);
      assert.match(r.stderr, /--requests: redis queue/, uri);
      assert.doesNotMatch(r.stderr, /wrong-secret/, 'the password is never printed');
    }
    // The right password works (and the user's ACL is what Redis checks).
    const good = await runTidegate(['submit', '--queue',
      `redis://tg:right-secret@127.0.0.1:${port}/acl-req?group=g`, '-'],
    { input: `${requestMessage('acl')}\n` });
    assert.equal(good.code, 0, good.stderr);
    assert.equal(await rc.xLen('acl-req'), 1);
  });

  it('tidegate submit and tidegate results work with redis:// URIs', async () => {
    const s = streams();
    const n = 20;
    const file = path.join(tmp, 'in.jsonl');
    fs.writeFileSync(file, Array.from({ length: n }, (_, i) => requestMessage(`cli-${i}`)).join('\n') + '\n');
    const sub = await runTidegate(['submit', '--queue', s.requests, file]);
    assert.equal(sub.code, 0, sub.stderr);
    assert.equal(await rc.xLen(s.req), n);
    const proc = await startAsync(['--gateway', gw.url, '--requests', s.requests, '--responses', s.results]);
    const res = await runTidegate(['results', '--queue', s.results, '--wait', String(n), '--timeout', '30s'],
      { timeoutMs: 40000 });
    assert.equal(res.code, 0, res.stderr);
    const lines = res.stdout.split('\n').filter(Boolean).map((l) => JSON.parse(l));
    assert.equal(lines.length, n);
    assert.deepEqual(lines.map((m) => m.id).sort(), Array.from({ length: n }, (_, i) => `cli-${i}`).sort());
    assert.ok(lines.every((m) => m.status_code === 200));
    assert.match(res.stderr, new RegExp(`results: ${n} \\(succeeded ${n}, failed 0\\), duplicates 0`));
    // The readers' group acknowledged them all (results are XDELed once read through the group).
    assert.equal(await pendingCount(rc, s.res, 'readers'), 0);
    assert.equal(await rc.xLen(s.res), 0);
    await proc.stop();
  });
  it('speaks TLS (rediss://) and verifies the server certificate', async () => {
    const dir = path.join(tmp, 'tls');
    fs.mkdirSync(dir, { recursive: true });
    const f = (x) => path.join(dir, x);
    const ossl = (...args) => execFileSync('openssl', args, { stdio: 'pipe' });
    const makeCa = (name) => ossl('req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256',
      '-nodes', '-keyout', f(`${name}.key`), '-out', f(`${name}.pem`), '-days', '2', '-subj', `/CN=${name}`);
    makeCa('ca');
    makeCa('other-ca');
    ossl('req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes',
      '-keyout', f('server.key'), '-out', f('server.csr'), '-subj', '/CN=127.0.0.1');
    fs.writeFileSync(f('ext.cnf'), 'subjectAltName=IP:127.0.0.1\n');
    ossl('x509', '-req', '-in', f('server.csr'), '-CA', f('ca.pem'), '-CAkey', f('ca.key'),
      '-CAcreateserial', '-out', f('server.pem'), '-days', '2', '-extfile', f('ext.cnf'));
    const tlsPort = await closedPort();
    const tlsRedis = await startRedis(0, path.join(tmp, 'redis-tls'), ['--tls-port', String(tlsPort),
      '--tls-cert-file', f('server.pem'), '--tls-key-file', f('server.key'), '--tls-auth-clients', 'no']);
    try {
      const uri = (ca) => `rediss://127.0.0.1:${tlsPort}/tls-req?group=g&ca=${encodeURIComponent(ca)}`;
      const good = await runTidegate(['submit', '--queue', uri(f('ca.pem')), '-'],
        { input: `${requestMessage('over-tls')}\n` });
      assert.equal(good.code, 0, good.stderr);
      const bad = await runTidegate(['submit', '--queue', uri(f('other-ca.pem')), '-'],
        { input: `${requestMessage('refused')}\n` });
      assert.equal(bad.code, 2, bad.stderr);
      assert.match(bad.stderr, /TLS handshake with 127\.0\.0\.1:\d+: .*certificate verify failed/);
      const tc = createClient({ socket: { host: '127.0.0.1', port: tlsPort, tls: true,
        ca: fs.readFileSync(f('ca.pem')), reconnectStrategy: false } });
      tc.on('error', () => {});
      await tc.connect();
      const entries = await tc.xRange('tls-req', '-', '+');
      assert.equal(entries.length, 1);
      assert.equal(JSON.parse(entries[0].message.data).id, 'over-tls');
      await tc.close();
    } finally {
      tlsRedis.proc.kill('SIGKILL');
    }
  });
});
