// async_nats.test.mjs — issue 15: the async processor on NATS JetStream, against a real
// `nats-server -js` (Debian package; file storage in a temp dir, a free loopback port), with the
// official npm `nats` client as the user: it creates the streams, publishes the requests
// (js.publish with headers) and reads the results with its own durable consumer. What it proves:
//   1. 1,000 requests, the processor SIGKILLed twice mid-run and restarted: every id answered,
//      any duplicate byte-identical (the result journal), nothing left unacknowledged;
//   2. nats-server SIGKILLed and restarted mid-run (same store): nothing lost, the same processor
//      reconnects by itself and finishes;
//   3. lease extension (+WPI): a request held 3 s with a 1 s lease (AckWait) is not delivered to
//      a second processor on the same consumer, and runs once upstream;
//   4. two processors share one durable consumer: both work, no request runs twice (counted at
//      the upstream); SIGTERM hands held messages back at once (-NAK) for the other to finish;
//   5. a poison message (its processor keeps dying) ends in the dead-letter subject after
//      max_attempts, with headers naming the source and the attempts;
//   6. malformed messages → INVALID_REQUEST, a passed deadline → DEADLINE_EXCEEDED;
//   7. bad URIs, wrong credentials, no server, no JetStream → a clear error at start-up
//      (exit code 2), never the password;
//   8. `tidegate submit` and `tidegate results` with nats:// URIs;
//   9. TLS (tls:// with ca=, certificates made by openssl here) and token authentication.
// A missing nats-server fails the test with the reason; it is never skipped.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { connect, headers, AckPolicy, StorageType } from 'nats';
import {
  SIM_MODEL, startSim, startGateway, startAsync, startUpstream, runTidegate, stopAll, waitFor,
  sleep, closedPort,
} from './lib.mjs';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'tidegate-async-nats-'));
const servers = new Set(); // nats-server child processes
const clients = new Set(); // the user's NATS connections (closed at the end, whatever happened)

// Starts `nats-server` on 127.0.0.1:port (a free one unless given) with JetStream storing in
// `storeDir`; resolves {port, url, proc, output(), kill(sig)} once it says it is ready.
async function startNats({ port, storeDir, jetstream = true, extra = [] } = {}) {
  port = port ?? await closedPort();
  const args = ['-a', '127.0.0.1', '-p', String(port)];
  if (jetstream) args.push('-js', '-sd', storeDir ?? fs.mkdtempSync(path.join(tmp, 'store-')));
  args.push(...extra);
  const proc = spawn('nats-server', args, { stdio: ['ignore', 'pipe', 'pipe'] });
  servers.add(proc);
  let out = '';
  proc.stdout.on('data', (c) => { out += c; });
  proc.stderr.on('data', (c) => { out += c; });
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`nats-server not ready after 10 s:\n${out}`)), 10000);
    const check = () => { if (/Server is ready/.test(out)) { clearTimeout(timer); resolve(); } };
    proc.stdout.on('data', check);
    proc.stderr.on('data', check);
    proc.once('error', (err) => { clearTimeout(timer); reject(new Error(
      `cannot start nats-server (Debian package nats-server): ${err.message}`)); });
    proc.once('exit', (code) => { clearTimeout(timer); reject(new Error(`nats-server exited (${code}):\n${out}`)); });
  });
  proc.removeAllListeners('exit');
  return {
    port, proc, output: () => out, url: `nats://127.0.0.1:${port}`,
    kill: async (sig = 'SIGKILL') => {
      if (proc.exitCode !== null || proc.signalCode !== null) return;
      const gone = new Promise((r) => proc.once('exit', r));
      proc.kill(sig);
      await gone;
      servers.delete(proc);
    },
  };
}

function killServers() {
  for (const p of servers) if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
}
process.on('exit', killServers);
after(async () => {
  await Promise.all([...clients].map((c) => c.close().catch(() => {})));
  await stopAll();
  killServers();
  fs.rmSync(tmp, { recursive: true, force: true });
});

const enc = new TextEncoder();
const dec = new TextDecoder();

function requestMessage(id, { maxTokens = 16, extra = {}, content } = {}) {
  return JSON.stringify({
    id,
    payload: { model: SIM_MODEL, max_tokens: maxTokens, messages: [{ role: 'user', content: content ?? `nats ${id}` }] },
    ...extra,
  });
}

// The user's side: a client that reconnects forever.
async function userClient(server) {
  const c = await connect({ servers: `127.0.0.1:${server.port}`, maxReconnectAttempts: -1, reconnectTimeWait: 100 });
  clients.add(c);
  return c;
}

// Creates a file-storage stream `name` on subject `name` (as the user would, with the client).
async function addStream(jsm, name, subjects = [name]) {
  await jsm.streams.add({ name, subjects, storage: StorageType.File });
}

// Publishes request messages with js.publish (in parallel chunks); each carries a header.
async function publishAll(js, subject, messages) {
  for (let i = 0; i < messages.length; i += 100) {
    await Promise.all(messages.slice(i, i + 100).map((data) => {
      const h = headers();
      h.set('x-tenant', 'nats-test');
      return js.publish(subject, enc.encode(data), { headers: h, timeout: 5000 });
    }));
  }
}

// Reads results from stream `stream` with the user's own durable consumer, until `done(seen)`
// or the time limit; survives server restarts (fetch errors are retried). seen: id → [data].
async function readResults(nc, stream, { durable = 'user', done, timeoutMs = 60000, seen = new Map(), hdrs = [] } = {}) {
  const jsm = await nc.jetstreamManager();
  await jsm.consumers.add(stream, { durable_name: durable, ack_policy: AckPolicy.Explicit }).catch(() => {});
  const deadline = Date.now() + timeoutMs;
  while (!done(seen)) {
    if (Date.now() > deadline) throw new Error(`timed out reading results from ${stream} (have ${seen.size})`);
    try {
      const c = await (nc.jetstream()).consumers.get(stream, durable);
      const iter = await c.fetch({ max_messages: 500, expires: 1000 });
      for await (const m of iter) {
        const data = dec.decode(m.data);
        const id = JSON.parse(data).id;
        if (!seen.has(id)) seen.set(id, []);
        seen.get(id).push(data);
        hdrs.push(m.headers);
        m.ack();
      }
    } catch {
      await sleep(200); // e.g. the server is restarting
    }
  }
  return seen;
}

function assertOnePerId(seen, expected) {
  for (const [id, code] of expected) {
    const copies = seen.get(id);
    assert.ok(copies, `no result for ${id}`);
    const first = JSON.parse(copies[0]);
    assert.equal(first.error_code ?? '', code, `${id}: ${copies[0]}`);
    if (code === '') assert.equal(first.status_code, 200, copies[0]);
    for (const c of copies) assert.equal(c, copies[0], `${id}: duplicate results differ`);
  }
  assert.deepEqual([...seen.keys()].filter((id) => !expected.has(id)), [], 'unexpected ids');
}

async function consumerInfo(nc, stream, name) {
  return (await nc.jetstreamManager()).consumers.info(stream, name);
}

describe('async processor on NATS JetStream', () => {
  let nats, nc, js, jsm, sim, gw, up, upGw;
  before(async () => {
    nats = await startNats();
    nc = await userClient(nats);
    js = nc.jetstream();
    jsm = await nc.jetstreamManager();
    sim = await startSim(['--port-count', '2', '--time-scale', '200']);
    gw = await startGateway(['--endpoints', sim.endpoints.join(',')]);
    up = await startUpstream({ name: 'nats-up', models: [SIM_MODEL] });
    upGw = await startGateway(['--endpoints', up.endpoint]);
  });

  // `tidegate async` arguments for streams NAME_REQ (consumer proc) → NAME_RES.
  const procArgs = (name, { gateway = gw.url, lease = '2s', extra = [], reqExtra = '', journal = name } = {}) => [
    '--gateway', gateway,
    '--requests', `${nats.url}/${name}_REQ?consumer=proc${reqExtra}`,
    '--responses', `${nats.url}/${name}_RES`,
    '--journal', path.join(tmp, `${journal}-journal.db`), '--lease', lease, ...extra];

  it('1,000 requests, processor SIGKILLed twice: one result per id (or identical copies)', async () => {
    await addStream(jsm, 'K_REQ');
    await addStream(jsm, 'K_RES');
    const n = 1000;
    const ids = Array.from({ length: n }, (_, i) => `k-${i}`);
    await publishAll(js, 'K_REQ', ids.map((id) => requestMessage(id, { maxTokens: 40 })));
    const expected = new Map(ids.map((id) => [id, '']));
    const seen = new Map();
    const hdrs = [];
    const reading = readResults(nc, 'K_RES', { done: (s) => s.size >= n, seen, hdrs, timeoutMs: 60000 });
    const args = procArgs('K', { extra: ['--max-inflight', '64'] });
    let proc = await startAsync(args);
    for (const at of [200, 500]) {
      await waitFor(() => seen.size >= at, { timeoutMs: 30000, intervalMs: 20, what: `${at} results` });
      assert.ok(seen.size < n, `finished before kill at ${at} (${seen.size}); make the run longer`);
      proc.signal('SIGKILL');
      await new Promise((r) => proc.proc.once('exit', r));
      proc = await startAsync(args);
    }
    await reading;
    await sleep(300); // a late duplicate would arrive now
    await readResults(nc, 'K_RES', { done: () => true, seen });
    assertOnePerId(seen, expected);
    // Result attributes travel as NATS headers.
    assert.ok(hdrs.every((h) => h && h.get('id')), 'every result carries an id header');
    await waitFor(async () => {
      const ci = await consumerInfo(nc, 'K_REQ', 'proc');
      return ci.num_pending === 0 && ci.num_ack_pending === 0;
    }, { timeoutMs: 10000, what: 'every request acknowledged' });
    const ci = await consumerInfo(nc, 'K_REQ', 'proc');
    assert.ok(ci.delivered.consumer_seq > n, `the kills caused redeliveries (${ci.delivered.consumer_seq} deliveries)`);
    // Each result carries Nats-Msg-Id tg-result-<request message id>: even a request that ran
    // twice left one stored result.
    assert.equal((await jsm.streams.info('K_RES')).state.messages, n);
    assert.equal(ci.config.ack_wait, 2e9, 'the consumer AckWait follows --lease');
    assert.equal(ci.config.max_deliver, -1);
    const dups = [...seen.values()].filter((c) => c.length > 1).length;
    process.stderr.write(`nats kill test: ${n} ids, ${ci.delivered.consumer_seq} deliveries, ` +
      `${dups} ids read twice (identical)\n`);
    await proc.stop();
  });

  it('nats-server SIGKILLed and restarted mid-run: nothing lost, the processor reconnects', async () => {
    const store = fs.mkdtempSync(path.join(tmp, 'restart-store-'));
    const own = await startNats({ storeDir: store });
    const unc = await userClient(own);
    const ujs = unc.jetstream();
    const ujsm = await unc.jetstreamManager();
    await addStream(ujsm, 'B_REQ');
    await addStream(ujsm, 'B_RES');
    const n = 400;
    const ids = Array.from({ length: n }, (_, i) => `b-${i}`);
    await publishAll(ujs, 'B_REQ', ids.map((id) => requestMessage(id, { maxTokens: 40 })));
    const seen = new Map();
    const reading = readResults(unc, 'B_RES', { done: (s) => s.size >= n, seen, timeoutMs: 60000 });
    const proc = await startAsync([
      '--gateway', gw.url, '--requests', `${own.url}/B_REQ?consumer=proc`,
      '--responses', `${own.url}/B_RES`, '--journal', path.join(tmp, 'B-journal.db'),
      '--lease', '2s', '--max-inflight', '32']);
    await waitFor(() => seen.size >= 80, { timeoutMs: 30000, intervalMs: 20, what: '80 results before the crash' });
    assert.ok(seen.size < n, `finished before the crash (${seen.size})`);
    await own.kill('SIGKILL');
    await sleep(1000);
    const again = await startNats({ port: own.port, storeDir: store });
    await reading;
    assertOnePerId(seen, new Map(ids.map((id) => [id, ''])));
    assert.equal((await ujsm.streams.info('B_RES')).state.messages, n, 'one stored result per request');
    assert.equal(proc.proc.exitCode, null, 'the processor kept running');
    assert.match(proc.output(), /disconnected/);
    assert.match(proc.output(), /reconnected/);
    await waitFor(async () => {
      const m = await proc.metrics();
      return m.get('tidegate_async_queue_events_total', { queue: 'requests', event: 'reconnects' }) >= 1;
    }, { timeoutMs: 5000, what: 'tidegate_async_queue_events_total{event="reconnects"} >= 1' });
    await waitFor(async () => {
      const ci = await consumerInfo(unc, 'B_REQ', 'proc');
      return ci.num_pending === 0 && ci.num_ack_pending === 0;
    }, { timeoutMs: 15000, what: 'every request acknowledged after the restart' });
    await proc.stop();
    await unc.close();
    await again.kill();
  });

  it('extends the lease (+WPI): a request held past AckWait is not delivered to a second processor', async () => {
    await addStream(jsm, 'L_REQ');
    await addStream(jsm, 'L_RES');
    await up.reset();
    // slow-headers: the fake upstream answers after 3 s; the lease (AckWait) is 1 s.
    await js.publish('L_REQ', enc.encode(JSON.stringify({
      id: 'slow', payload: { model: 'slow-headers', messages: [{ role: 'user', content: 'hold me' }] } })));
    const args = procArgs('L', { gateway: upGw.url, lease: '1s' });
    const a = await startAsync(args);
    await waitFor(async () => (await a.metric('tidegate_async_in_flight')) === 1,
      { timeoutMs: 10000, what: 'the slow request in flight' });
    const b = await startAsync(procArgs('L', { gateway: upGw.url, lease: '1s', journal: 'L2' }));
    const seen = await readResults(nc, 'L_RES', { done: (s) => s.size >= 1, timeoutMs: 20000 });
    await sleep(1500); // > AckWait: a lost lease would show as a redelivery now
    assert.equal(JSON.parse(seen.get('slow')[0]).status_code, 200);
    assert.equal(await a.metric('tidegate_async_messages_pulled_total'), 1);
    assert.equal(await b.metric('tidegate_async_messages_pulled_total'), 0, 'delivered to the second processor');
    assert.equal((await up.stats()).requests, 1, 'the upstream saw it once');
    const ci = await consumerInfo(nc, 'L_REQ', 'proc');
    assert.equal(ci.config.ack_wait, 1e9);
    assert.equal(ci.num_redelivered, 0);
    assert.equal(ci.num_ack_pending, 0);
    await Promise.all([a.stop(), b.stop()]);
  });

  it('SIGTERM hands back held messages at once (-NAK): a second processor finishes them', async () => {
    await addStream(jsm, 'H_REQ');
    await addStream(jsm, 'H_RES');
    await up.reset();
    const n = 12;
    const ids = Array.from({ length: n }, (_, i) => `h-${i}`);
    await publishAll(js, 'H_REQ', ids.map((id) => JSON.stringify({
      id, payload: { model: 'slow-headers', messages: [{ role: 'user', content: id }] } })));
    // A 30 s lease: anything not handed back would only return after 30 s.
    const first = await startAsync(procArgs('H', { gateway: upGw.url, lease: '30s',
      extra: ['--max-inflight', '2', '--initial-window', '2'] }));
    await waitFor(async () => (await first.metric('tidegate_async_in_flight')) === 2,
      { timeoutMs: 10000, what: 'two requests in flight' });
    first.signal('SIGTERM');
    const code = await new Promise((r) => first.proc.once('exit', (c) => r(c)));
    assert.equal(code, 0, first.output());
    assert.match(first.output(), /handing back 10 waiting message/);
    const t0 = Date.now();
    const second = await startAsync(procArgs('H', { gateway: upGw.url, lease: '30s', journal: 'H2',
      extra: ['--max-inflight', '16', '--initial-window', '16'] }));
    const seen = await readResults(nc, 'H_RES', { done: (s) => s.size >= n, timeoutMs: 25000 });
    assert.ok(Date.now() - t0 < 15000, `took ${Date.now() - t0} ms: the hand-back was not immediate`);
    assertOnePerId(seen, new Map(ids.map((id) => [id, ''])));
    assert.equal((await up.stats()).requests, n, 'each request ran once upstream');
    assert.equal((await consumerInfo(nc, 'H_REQ', 'proc')).num_ack_pending, 0);
    await second.stop();
  });

  it('two processors share one durable consumer and no request runs twice', async () => {
    await addStream(jsm, 'T_REQ');
    await addStream(jsm, 'T_RES');
    await up.reset();
    const n = 300;
    const ids = Array.from({ length: n }, (_, i) => `t-${i}`);
    const body = (id) => JSON.stringify({ id, payload: { model: SIM_MODEL, messages: [{ role: 'user', content: id }] } });
    const opts = { gateway: upGw.url, extra: ['--max-inflight', '8', '--pull-batch', '10'] };
    const a = await startAsync(procArgs('T', opts));
    const b = await startAsync(procArgs('T', { ...opts, journal: 'T2' }));
    await publishAll(js, 'T_REQ', ids.map(body));
    const seen = await readResults(nc, 'T_RES', { done: (s) => s.size >= n, timeoutMs: 30000 });
    await sleep(300);
    assertOnePerId(seen, new Map(ids.map((id) => [id, ''])));
    const pa = await a.metric('tidegate_async_messages_pulled_total');
    const pb = await b.metric('tidegate_async_messages_pulled_total');
    assert.equal(pa + pb, n, `pulled ${pa} + ${pb}`);
    assert.ok(pa > 0 && pb > 0, `both processors worked (${pa}, ${pb})`);
    assert.equal((await up.stats()).requests, n, 'each request ran once upstream');
    await Promise.all([a.stop(), b.stop()]);
  });

  it('moves a poison message to the dead-letter subject after max_attempts', async () => {
    // The poison: a request whose processor keeps dying while it is held (a crash loop).
    const stall = await startSim(['--time-scale', '20', '--stall-after-tokens', '1']);
    const stallGw = await startGateway(['--endpoints', stall.endpoint]);
    await addStream(jsm, 'P_REQ');
    await js.publish('P_REQ', enc.encode(JSON.stringify({
      id: 'poison', payload: { model: SIM_MODEL, stream: true, messages: [{ role: 'user', content: 'x' }] } })),
    { headers: (() => { const h = headers(); h.set('x-origin', 'test'); return h; })() });
    const args = procArgs('P', { gateway: stallGw.url, lease: '1s',
      reqExtra: '&max_attempts=2&dead_letter=P_DEAD' });
    for (let attempt = 1; attempt <= 2; ++attempt) {
      const proc = await startAsync(args);
      await waitFor(async () => (await proc.metric('tidegate_async_in_flight')) === 1,
        { timeoutMs: 10000, what: `delivery ${attempt} in flight` });
      proc.signal('SIGKILL');
      await new Promise((r) => proc.proc.once('exit', r));
    }
    const last = await startAsync(args);
    // The third delivery is past max_attempts: copied to P_DEAD (stream P_REQ_DLQ, created by
    // the processor) and terminated.
    const dead = await (await js.consumers.get('P_REQ_DLQ')).next({ expires: 10000 });
    assert.ok(dead, 'a message on the dead-letter subject');
    assert.equal(dead.subject, 'P_DEAD');
    assert.equal(JSON.parse(dec.decode(dead.data)).id, 'poison');
    assert.equal(dead.headers.get('tidegate-delivery-attempts'), '2');
    assert.equal(dead.headers.get('tidegate-dead-letter-source'), 'P_REQ');
    assert.equal(dead.headers.get('x-origin'), 'test', 'the original headers are kept');
    await waitFor(async () => (await consumerInfo(nc, 'P_REQ', 'proc')).num_ack_pending === 0,
      { timeoutMs: 5000, what: 'the poison message terminated' });
    assert.equal((await consumerInfo(nc, 'P_REQ', 'proc')).num_pending, 0);
    assert.equal(await last.metric('tidegate_async_messages_pulled_total'), 0);
    await last.stop();
    await stallGw.stop();
    await stall.stop();
  });

  it('answers malformed messages with INVALID_REQUEST and passed deadlines with DEADLINE_EXCEEDED', async () => {
    await addStream(jsm, 'M_REQ');
    await addStream(jsm, 'M_RES');
    const now = Math.floor(Date.now() / 1000);
    for (const data of ['this is not JSON', JSON.stringify({ id: 'bad-payload', payload: 'not an object' }),
      requestMessage('late', { extra: { deadline: now - 5 } }), requestMessage('fine')]) {
      await js.publish('M_REQ', enc.encode(data));
    }
    const proc = await startAsync(procArgs('M'));
    const seen = await readResults(nc, 'M_RES', { done: (s) => s.size >= 4, timeoutMs: 20000 });
    const byId = new Map([...seen].map(([id, c]) => [id, JSON.parse(c[0])]));
    assert.equal(byId.get('bad-payload').error_code, 'INVALID_REQUEST');
    assert.equal(byId.get('late').error_code, 'DEADLINE_EXCEEDED');
    assert.equal(byId.get('fine').status_code, 200);
    // The non-JSON message has no id of its own: its result carries the NATS message id.
    const other = [...byId.values()].find((m) => !['bad-payload', 'late', 'fine'].includes(m.id));
    assert.equal(other.error_code, 'INVALID_REQUEST');
    assert.match(other.id, /^M_REQ:1:/);
    await proc.stop();
  });

  it('bad URIs, wrong credentials, no server or no JetStream: a clear error at start-up', async () => {
    const auth = await startNats({ extra: ['--user', 'alice', '--pass', 'right-pass'] });
    const plain = await startNats({ jetstream: false });
    const down = await closedPort();
    const cases = [
      [`${nats.url}/X?consumer=c&bogus=1`, /unknown parameter 'bogus'/],
      [`${nats.url}/a.b?consumer=c`, /invalid stream name/],
      [`nats://127.0.0.1:${auth.port}/X?consumer=c`, /Authorization|auth/i],
      [`nats://alice:wrong-pass@127.0.0.1:${auth.port}/X?consumer=c`, /Authorization|auth/i],
      [`nats://127.0.0.1:${down}/X?consumer=c&timeout=500ms`, /cannot connect/],
      [`nats://127.0.0.1:${plain.port}/X?consumer=c&timeout=1s`, /JetStream/],
    ];
    for (const [uri, re] of cases) {
      const r = await runTidegate(['async', '--gateway', gw.url, '--requests', uri,
        '--responses', `${nats.url}/X_RES`, '--metrics-port', '0'], { timeoutMs: 15000 });
      assert.equal(r.code, 2, `${uri}: exit ${r.code}\n${r.stderr}`);
      assert.match(r.stderr, re, uri);
      assert.match(r.stderr, /--requests: nats/, r.stderr);
      assert.doesNotMatch(r.stderr, /wrong-pass/, 'the password is never printed');
    }
    // The right password works (submit opens the same way).
    const ok = await runTidegate(['submit', '--queue', `nats://alice:right-pass@127.0.0.1:${auth.port}/AUTH_REQ`],
      { input: requestMessage('a1') + '\n' });
    assert.equal(ok.code, 0, ok.stderr);
    // Submitting the same line again queues it again (no content deduplication).
    const again = await runTidegate(['submit', '--queue', `nats://alice:right-pass@127.0.0.1:${auth.port}/AUTH_REQ`],
      { input: requestMessage('a1') + '\n' });
    assert.equal(again.code, 0, again.stderr);
    const anc = await connect({ servers: `127.0.0.1:${auth.port}`, user: 'alice', pass: 'right-pass' });
    assert.equal((await (await anc.jetstreamManager()).streams.info('AUTH_REQ')).state.messages, 2);
    await anc.close();
    await auth.kill();
    await plain.kill();
  });

  it('tidegate submit and tidegate results work with nats:// URIs', async () => {
    const n = 50;
    const lines = Array.from({ length: n }, (_, i) => requestMessage(`s-${i}`)).join('\n') + '\n';
    const sub = await runTidegate(['submit', '--queue', `${nats.url}/S_REQ`], { input: lines });
    assert.equal(sub.code, 0, sub.stderr);
    const proc = await startAsync(procArgs('S'));
    const res = await runTidegate(['results', '--queue', `${nats.url}/S_RES?consumer=reader`,
      '--wait', String(n), '--timeout', '30s'], { timeoutMs: 40000 });
    assert.equal(res.code, 0, res.stderr);
    const got = res.stdout.split('\n').filter(Boolean).map((l) => JSON.parse(l));
    assert.equal(got.length, n);
    assert.deepEqual(got.map((m) => m.id).sort(), Array.from({ length: n }, (_, i) => `s-${i}`).sort());
    assert.match(res.stderr, new RegExp(`results: ${n} \\(succeeded ${n}`));
    // Acknowledged: a second drain finds nothing.
    const again = await runTidegate(['results', '--queue', `${nats.url}/S_RES?consumer=reader`]);
    assert.equal(again.code, 0, again.stderr);
    assert.equal(again.stdout, '');
    await proc.stop();
  });
  it('TLS (tls:// with ca=) and token authentication', async () => {
    const dir = fs.mkdtempSync(path.join(tmp, 'certs-'));
    const f = (x) => path.join(dir, x);
    const ossl = (...args) => execFileSync('openssl', args, { stdio: 'pipe' });
    ossl('req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes',
      '-keyout', f('ca.key'), '-out', f('ca.pem'), '-days', '2', '-subj', '/CN=tidegate nats test CA');
    ossl('req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes',
      '-keyout', f('server.key'), '-out', f('server.csr'), '-subj', '/CN=127.0.0.1');
    fs.writeFileSync(f('ext.cnf'), 'subjectAltName=IP:127.0.0.1\n');
    ossl('x509', '-req', '-in', f('server.csr'), '-CA', f('ca.pem'), '-CAkey', f('ca.key'),
      '-CAcreateserial', '-out', f('server.pem'), '-days', '2', '-extfile', f('ext.cnf'));
    const srv = await startNats({ extra: ['--tls', '--tlscert', f('server.pem'), '--tlskey', f('server.key'),
      '--auth', 'tok-123'] });
    const q = (name, extra = '') =>
      `tls://tok-123@127.0.0.1:${srv.port}/${name}?ca=${encodeURIComponent(f('ca.pem'))}${extra}`;
    const n = 20;
    const lines = Array.from({ length: n }, (_, i) => requestMessage(`tls-${i}`)).join('\n') + '\n';
    const sub = await runTidegate(['submit', '--queue', q('TLS_REQ')], { input: lines });
    assert.equal(sub.code, 0, sub.stderr);
    const proc = await startAsync(['--gateway', gw.url, '--requests', q('TLS_REQ', '&consumer=proc'),
      '--responses', q('TLS_RES'), '--journal', path.join(tmp, 'tls-journal.db')]);
    const res = await runTidegate(['results', '--queue', q('TLS_RES', '&consumer=reader'),
      '--wait', String(n), '--timeout', '30s'], { timeoutMs: 40000 });
    assert.equal(res.code, 0, res.stderr);
    assert.equal(res.stdout.split('\n').filter(Boolean).length, n);
    await proc.stop();
    // Without the CA the server is not trusted; a wrong token is refused: both at start-up.
    for (const [uri, re] of [
      [`tls://tok-123@127.0.0.1:${srv.port}/TLS_REQ?consumer=proc`, /SSL|certificate/i],
      [`tls://nope@127.0.0.1:${srv.port}/TLS_REQ?consumer=proc&ca=${encodeURIComponent(f('ca.pem'))}`, /Authorization/],
    ]) {
      const r = await runTidegate(['async', '--gateway', gw.url, '--requests', uri,
        '--responses', q('TLS_RES'), '--metrics-port', '0'], { timeoutMs: 15000 });
      assert.equal(r.code, 2, r.stderr);
      assert.match(r.stderr, re);
      assert.doesNotMatch(r.stderr, /tok-123|nope@/, 'the token is never printed');
    }
    await srv.kill();
  });
});
