// async.test.mjs — issue 5: the async processor end to end on the embedded (SQLite) queue, with a
// real gateway in front of real simulators. What it proves:
//   - 500 requests published → 500 results, one per id, all succeeded, with the ids matching;
//   - SIGKILL mid-run and a restart: every request still ends with exactly one result (publish
//     and acknowledge are one transaction when both queues share a file);
//   - SIGTERM: in-flight work finishes or is handed back; a second processor finishes the rest,
//     nothing lost or doubled;
//   - a deadline that has passed → DEADLINE_EXCEEDED at once; a request stuck upstream →
//     DEADLINE_EXCEEDED no later than shortly after its deadline;
//   - malformed messages → INVALID_REQUEST (id recovered when possible); a gateway 4xx → a result
//     carrying the gateway's status and body;
//   - a poison message (its processor keeps dying) lands on the dead-letter queue after the
//     queue's max delivery attempts;
//   - while priority-0 traffic saturates the pool, the processor backs off (few 429s per second)
//     and serves everything once the pool has room.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
  SIM_MODEL, startSim, startGateway, startAsync, runTidegate, stopAll, waitFor, sleep, openFlood,
  promtoolCheckMetrics, request, startUpstream, parseMetrics,
} from './lib.mjs';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'tidegate-async-'));
after(async () => {
  await stopAll();
  fs.rmSync(tmp, { recursive: true, force: true });
});

let dbCounter = 0;
function queues(extra = '') {
  const db = path.join(tmp, `q${++dbCounter}.db`);
  return {
    db,
    requests: `sqlite://${db}?queue=requests${extra}`,
    results: `sqlite://${db}?queue=results`,
  };
}

function chatLine(id, { maxTokens = 16, deadline, softDeadline, stream = false, content } = {}) {
  const msg = {
    id,
    payload: {
      model: SIM_MODEL, max_tokens: maxTokens, stream,
      messages: [{ role: 'user', content: content ?? `request ${id}` }],
    },
  };
  if (deadline !== undefined) msg.deadline = deadline;
  if (softDeadline !== undefined) msg.soft_deadline = softDeadline;
  return JSON.stringify(msg);
}

async function submit(queue, lines, extraArgs = []) {
  const file = path.join(tmp, `in-${Date.now()}-${Math.random().toString(16).slice(2)}.jsonl`);
  fs.writeFileSync(file, lines.join('\n') + '\n');
  const r = await runTidegate(['submit', '--queue', queue, ...extraArgs, file]);
  assert.equal(r.code, 0, `submit failed: ${r.stderr}`);
  return r;
}

// Drains result messages with `tidegate results`; returns {byId, summary, stderr}.
async function collect(queue, n, timeout = '60s') {
  const r = await runTidegate(['results', '--queue', queue, '--wait', String(n), '--timeout', timeout],
    { timeoutMs: 120000 });
  const byId = new Map();
  for (const line of r.stdout.split('\n').filter(Boolean)) {
    const m = JSON.parse(line);
    byId.set(m.id, m);
  }
  const s = r.stderr.match(/results: (\d+) .*duplicates (\d+), conflicting duplicates (\d+), malformed (\d+)/);
  assert.ok(s, `no results summary in: ${r.stderr}`);
  return {
    code: r.code, byId, stderr: r.stderr,
    total: Number(s[1]), duplicates: Number(s[2]), conflicting: Number(s[3]), malformed: Number(s[4]),
  };
}

function sqliteRows(db, sql) {
  const out = execFileSync('sqlite3', ['-json', db, sql], { encoding: 'utf8', timeout: 10000 });
  return out.trim() ? JSON.parse(out) : [];
}

describe('async processor on the embedded queue', () => {
  let sim, gw;
  before(async () => {
    sim = await startSim(['--port-count', '2', '--time-scale', '20']);
    gw = await startGateway(['--endpoints', sim.endpoints.join(',')]);
  });

  it('serves 500 published requests: 500 results, one per id, all succeeded', async () => {
    const q = queues();
    const ids = Array.from({ length: 500 }, (_, i) => `bulk-${i}`);
    await submit(q.requests, ids.map((id) => chatLine(id)));
    const proc = await startAsync(['--gateway', gw.url, '--requests', q.requests, '--responses', q.results]);
    const res = await collect(q.results, 500);
    assert.equal(res.code, 0, res.stderr);
    assert.equal(res.total, 500);
    assert.equal(res.duplicates, 0);
    assert.equal(res.conflicting, 0);
    assert.deepEqual([...res.byId.keys()].sort(), [...ids].sort());
    for (const [id, m] of res.byId) {
      assert.equal(m.status_code, 200, `${id}: ${JSON.stringify(m)}`);
      assert.equal(m.error_code, undefined);
      const body = JSON.parse(m.payload);
      assert.equal(body.object, 'chat.completion');
      assert.equal(body.model, SIM_MODEL);
    }
    // The processor's own account agrees, and its metrics are valid Prometheus text.
    const mt = await proc.metrics();
    assert.equal(mt.sum('tidegate_async_requests_succeeded_total'), 500);
    assert.equal(mt.sum('tidegate_async_messages_pulled_total'), 500);
    assert.ok(mt.has('tidegate_async_dispatch_window'));
    assert.equal(mt.sum('tidegate_async_queue_residence_seconds_count'), 500);
    assert.equal(mt.sum('tidegate_async_end_to_end_seconds_count'), 500);
    const text = (await request(`http://127.0.0.1:${proc.port}`, { path: '/metrics' })).body;
    await promtoolCheckMetrics(text);
    // The request queue is empty: everything was acknowledged.
    assert.equal(sqliteRows(q.db, "SELECT count(*) AS n FROM messages WHERE queue='requests'")[0].n, 0);
    await proc.stop();
  });

  it('survives SIGKILL mid-run: after a restart every request has exactly one result', async () => {
    const q = queues();
    const n = 300;
    const ids = Array.from({ length: n }, (_, i) => `kill-${i}`);
    // Longer completions so the run is still going when the processor is killed.
    await submit(q.requests, ids.map((id) => chatLine(id, { maxTokens: 200 })));
    const args = ['--gateway', gw.url, '--requests', q.requests, '--responses', q.results,
      '--lease', '2s', '--max-inflight', '64'];
    const first = await startAsync(args);
    const resultsSoFar = () =>
      sqliteRows(q.db, "SELECT count(*) AS n FROM messages WHERE queue='results'")[0].n;
    await waitFor(() => resultsSoFar() >= 20, { timeoutMs: 30000, what: 'some results before the kill' });
    const mid = resultsSoFar();
    assert.ok(mid < n, `the run finished before the kill (${mid} results); make it longer`);
    first.signal('SIGKILL');
    await new Promise((r) => first.proc.once('exit', r));
    const second = await startAsync(args);
    const res = await collect(q.results, n, '90s');
    assert.equal(res.code, 0, res.stderr);
    assert.equal(res.total, n);
    assert.deepEqual([...res.byId.keys()].sort(), [...ids].sort());
    for (const m of res.byId.values()) assert.equal(m.status_code, 200, JSON.stringify(m));
    // Publish and acknowledge are one SQLite transaction: not even identical duplicates.
    assert.equal(res.duplicates, 0);
    assert.equal(res.conflicting, 0);
    await second.stop();
  });

  it('SIGTERM hands back unfinished work; a second processor completes it, nothing lost or doubled', async () => {
    const q = queues();
    const n = 120;
    const ids = Array.from({ length: n }, (_, i) => `term-${i}`);
    await submit(q.requests, ids.map((id) => chatLine(id, { maxTokens: 300 })));
    const args = ['--gateway', gw.url, '--requests', q.requests, '--responses', q.results,
      '--max-inflight', '16', '--initial-window', '16'];
    const first = await startAsync(args);
    await waitFor(async () => (await first.metric('tidegate_async_in_flight')) > 0,
      { timeoutMs: 10000, what: 'requests in flight' });
    first.signal('SIGTERM');
    const [code] = await new Promise((r) => first.proc.once('exit', (c, s) => r([c, s])));
    assert.equal(code, 0, first.output());
    assert.match(first.output(), /handing back \d+ waiting message/);
    // Nothing is still leased by the stopped processor: a new one gets everything at once.
    const leased = sqliteRows(q.db,
      `SELECT count(*) AS n FROM messages WHERE queue='requests' AND lease_until_us > ${Date.now() * 1000}`)[0].n;
    assert.equal(leased, 0);
    const second = await startAsync(args);
    const res = await collect(q.results, n, '90s');
    assert.equal(res.total, n);
    assert.equal(res.duplicates + res.conflicting, 0);
    assert.deepEqual([...res.byId.keys()].sort(), [...ids].sort());
    await second.stop();
  });

  it('turns passed deadlines into DEADLINE_EXCEEDED, also for a request stuck upstream', async () => {
    const stall = await startSim(['--time-scale', '20', '--stall-after-tokens', '2']);
    const stallGw = await startGateway(['--endpoints', stall.endpoint]);
    const q = queues();
    const now = Math.floor(Date.now() / 1000);
    await submit(q.requests, [
      chatLine('late-1', { deadline: now - 60 }),
      chatLine('late-2', { deadline: now - 1 }),
      chatLine('stuck-1', { deadline: now + 3, stream: true }),
    ], ['--raw']);
    const proc = await startAsync(['--gateway', stallGw.url, '--requests', q.requests, '--responses', q.results]);
    const started = Date.now();
    const res = await collect(q.results, 3, '30s');
    const elapsed = Date.now() - started;
    assert.equal(res.total, 3, res.stderr);
    for (const id of ['late-1', 'late-2', 'stuck-1']) {
      const m = res.byId.get(id);
      assert.equal(m.error_code, 'DEADLINE_EXCEEDED', JSON.stringify(m));
      assert.ok(m.error_message.length > 0);
    }
    // The stuck request was given up at its deadline (≤ 3 s from submission, plus slack).
    assert.ok(elapsed < 8000, `took ${elapsed} ms`);
    assert.equal(await proc.metric('tidegate_async_deadline_misses_total'), 3);
    await proc.stop();
    await stallGw.stop();
    await stall.stop();
  });

  it('answers malformed messages and gateway 4xx with INVALID_REQUEST results', async () => {
    const q = queues();
    await submit(q.requests, [
      'this is not JSON',
      JSON.stringify({ id: 'bad-payload', payload: 'not an object' }),
      JSON.stringify({ id: 'bad-path', path: '/v1/nope', payload: { model: SIM_MODEL, prompt: 'x' } }),
      JSON.stringify({ custom_id: 'batch-bad', method: 'GET', url: '/v1/chat/completions', body: {} }),
      JSON.stringify({ id: 'unknown-model', payload: { model: 'no-such-model', messages: [{ role: 'user', content: 'hi' }] } }),
      chatLine('fine'),
    ], ['--raw']);
    const proc = await startAsync(['--gateway', gw.url, '--requests', q.requests, '--responses', q.results]);
    const res = await collect(q.results, 6, '30s');
    assert.equal(res.total, 6, res.stderr);
    for (const id of ['bad-payload', 'bad-path', 'batch-bad']) {
      const m = res.byId.get(id);
      assert.ok(m, `no result for ${id}: ${[...res.byId.keys()]}`);
      assert.equal(m.error_code, 'INVALID_REQUEST');
      assert.ok(m.error_message.length > 0);
    }
    // The non-JSON message has no id of its own: its result carries the queue's message id.
    const others = [...res.byId.values()].filter((m) =>
      !['bad-payload', 'bad-path', 'batch-bad', 'unknown-model', 'fine'].includes(m.id));
    assert.equal(others.length, 1);
    assert.equal(others[0].error_code, 'INVALID_REQUEST');
    assert.match(others[0].error_message, /JSON/i);
    // A 4xx from the gateway is a result with its status and body, not retried.
    const um = res.byId.get('unknown-model');
    assert.equal(um.status_code, 404);
    assert.equal(um.error_code, 'INVALID_REQUEST');
    assert.equal(JSON.parse(um.payload).error.code, 'model_not_found');
    assert.equal(res.byId.get('fine').status_code, 200);
    assert.equal(await proc.metric('tidegate_async_retries_total'), 0);
    await proc.stop();
  });

  it('a message cannot set the objective, authorization or x-request-id unless allowed', async () => {
    const up = await startUpstream({ name: 'hdr', models: [SIM_MODEL] });
    const gw2 = await startGateway(['--endpoints', up.endpoint, '--objective', 'interactive=10',
      '--objective', 'sheddable=-1']);
    const msg = (id) => JSON.stringify({
      id,
      headers: {
        'x-gateway-inference-objective': 'interactive', 'x-llm-d-inference-objective': 'interactive',
        authorization: 'Bearer someone-elses-key', 'x-request-id': 'spoofed', 'x-tenant-note': 'kept',
      },
      payload: { model: SIM_MODEL, messages: [{ role: 'user', content: 'hi' }] },
    });
    try {
      let q = queues();
      await submit(q.requests, [msg('held-back')], ['--raw']);
      let proc = await startAsync(['--gateway', gw2.url, '--requests', q.requests, '--responses', q.results]);
      let res = await collect(q.results, 1, '30s');
      assert.equal(res.byId.get('held-back')?.status_code, 200, res.stderr);
      let seen = (await up.stats()).last_headers;
      assert.equal(seen['x-gateway-inference-objective'], 'sheddable', JSON.stringify(seen));
      assert.equal(seen.authorization, undefined, JSON.stringify(seen));
      assert.equal(seen['x-request-id'], 'held-back', 'the request id is the message id');
      assert.equal(seen['x-tenant-note'], 'kept');
      const m = await proc.metrics();
      for (const h of ['x-gateway-inference-objective', 'x-llm-d-inference-objective', 'authorization', 'x-request-id'])
        assert.equal(m.get('tidegate_async_message_headers_dropped_total', { header: h }), 1, h);
      assert.match(proc.output(), /header authorization is not forwarded/);
      await proc.stop();

      // Allowed by the operator: the message's own header goes through.
      q = queues();
      await submit(q.requests, [msg('allowed')], ['--raw']);
      proc = await startAsync(['--gateway', gw2.url, '--requests', q.requests, '--responses', q.results,
        '--allow-message-header', 'authorization']);
      res = await collect(q.results, 1, '30s');
      assert.equal(res.byId.get('allowed')?.status_code, 200, res.stderr);
      seen = (await up.stats()).last_headers;
      assert.equal(seen.authorization, 'Bearer someone-elses-key');
      assert.equal(seen['x-gateway-inference-objective'], 'sheddable');
      await proc.stop();
    } finally {
      await Promise.all([gw2.stop(), up.stop()]);
    }
  });

  it('moves a poison message to the dead-letter queue after the max delivery attempts', async () => {
    // The poison: a request whose processor keeps dying while it is held (a crash loop).
    const stall = await startSim(['--time-scale', '20', '--stall-after-tokens', '1']);
    const stallGw = await startGateway(['--endpoints', stall.endpoint]);
    const q = queues('&max_attempts=3&dead_letter=dead');
    await submit(q.requests, [chatLine('poison', { stream: true })], ['--raw']);
    const args = ['--gateway', stallGw.url, '--requests', q.requests, '--responses', q.results,
      '--lease', '1s'];
    for (let attempt = 1; attempt <= 3; ++attempt) {
      const proc = await startAsync(args);
      await waitFor(async () => (await proc.metric('tidegate_async_in_flight')) === 1,
        { timeoutMs: 10000, what: `delivery ${attempt} in flight` });
      proc.signal('SIGKILL');
      await new Promise((r) => proc.proc.once('exit', r));
    }
    // The fourth pull finds it past max_attempts and moves it to the dead-letter queue.
    const last = await startAsync(args);
    await waitFor(() => sqliteRows(q.db, "SELECT count(*) AS n FROM messages WHERE queue='dead'")[0].n === 1,
      { timeoutMs: 10000, what: 'the poison message on the dead-letter queue' });
    const [row] = sqliteRows(q.db, "SELECT data, attributes FROM messages WHERE queue='dead'");
    assert.equal(JSON.parse(row.data).id, 'poison');
    assert.equal(JSON.parse(row.attributes)['tidegate-delivery-attempts'], '3');
    assert.equal(sqliteRows(q.db, "SELECT count(*) AS n FROM messages WHERE queue='requests'")[0].n, 0);
    assert.equal(await last.metric('tidegate_async_messages_pulled_total'), 0);
    await last.stop();
    await stallGw.stop();
    await stall.stop();
  });

  // Soft deadlines: while real-time traffic keeps the pool saturated nothing sheddable may
  // start, so the processor completes nothing and projects that no waiting message will make
  // its soft deadline: with escalation it sends them with the standard objective (they queue with
  // the real-time requests at the gateway and are served), within its budget; without, they
  // wait for the spike to end.
  for (const escalate of [true, false]) {
    it(`soft deadlines while the pool is saturated: ${escalate ? 'escalated and served as standard' : 'escalation off: they wait as sheddable'}`, async () => {
      const small = await startSim(['--max-num-seqs', '4', '--time-scale', '1']);
      const smallGw = await startGateway(['--endpoints', small.endpoint, '--scrape-interval', '50ms']);
      const flood = openFlood(smallGw.url, '/v1/chat/completions',
        { model: SIM_MODEL, max_tokens: 150, messages: [{ role: 'user', content: 'realtime' }] }, 24);
      await waitFor(async () => {
        const r = await request(smallGw.url, { path: '/v1/capacity' });
        return JSON.parse(r.body).saturation >= 1;
      }, { timeoutMs: 10000, what: 'the pool to saturate' });
      const q = queues();
      const n = 6;
      const args = ['--gateway', smallGw.url, '--requests', q.requests, '--responses', q.results,
        '--escalation-warmup', '1s', '--escalation-rate', '20'];
      if (!escalate) args.push('--escalation-objective', '');
      const proc = await startAsync(args);
      // The messages arrive once the processor has read the saturated pool's capacity signal
      // (no room for sheddable requests), so none of them can start as sheddable.
      await waitFor(async () => (await proc.metric('tidegate_async_gateway_sheddable_capacity')) === 0,
        { timeoutMs: 10000, what: 'the processor to read a saturated capacity signal' });
      const now = Math.floor(Date.now() / 1000);
      await submit(q.requests, Array.from({ length: n }, (_, i) =>
        chatLine(`soft-${i}`, { maxTokens: 8, softDeadline: now + 2, deadline: now + 120 })));
      const res = await collect(q.results, n, '90s');
      assert.equal(res.total, n);
      for (const m of res.byId.values()) assert.equal(m.status_code, 200, JSON.stringify(m));
      const escalated = await proc.metric('tidegate_async_escalations_total');
      const margins = await proc.metric('tidegate_async_soft_deadline_margin_seconds_count');
      assert.equal(margins, n, 'every answered message with a soft deadline is in the margin histogram');
      const gm = parseMetrics((await request(smallGw.url, { path: '/metrics' })).body);
      const realtime = gm.get('tidegate_requests_by_class_total', { class: 'realtime' });
      if (escalate) {
        assert.equal(escalated, n, 'all of them escalated');
        assert.equal(realtime, 24 + n, 'the escalated requests reached the gateway as real-time');
      } else {
        assert.equal(escalated, 0);
        assert.equal(realtime, 24, 'no request of the processor counted as real-time');
      }
      await waitFor(() => flood.statuses.filter(Boolean).length === 24,
        { timeoutMs: 30000, what: 'the real-time flood to finish' });
      assert.ok(flood.statuses.every((st) => st === 200), `real-time statuses: ${flood.statuses}`);
      await proc.stop();
      await smallGw.stop();
      await small.stop();
    });
  }

  it('backs off while priority-0 traffic saturates the pool, then serves everything', async () => {
    // One small server (4 sequences at a time) at real time: 24 standard requests keep its
    // queue far above the saturation threshold for several seconds.
    const small = await startSim(['--max-num-seqs', '4', '--time-scale', '1']);
    const smallGw = await startGateway(['--endpoints', small.endpoint, '--scrape-interval', '50ms']);
    const flood = openFlood(smallGw.url, '/v1/chat/completions',
      { model: SIM_MODEL, max_tokens: 150, messages: [{ role: 'user', content: 'realtime' }] }, 24);
    await waitFor(async () => {
      const r = await request(smallGw.url, { path: '/v1/capacity' });
      return JSON.parse(r.body).saturation >= 1;
    }, { timeoutMs: 10000, what: 'the pool to saturate' });
    const q = queues();
    const n = 40;
    await submit(q.requests, Array.from({ length: n }, (_, i) => chatLine(`bg-${i}`, { maxTokens: 8 })));
    const proc = await startAsync(['--gateway', smallGw.url, '--requests', q.requests, '--responses', q.results]);
    const t0 = Date.now();
    await sleep(3000);
    const satSeconds = (Date.now() - t0) / 1000;
    const shedsDuring = await proc.metric('tidegate_async_sheds_total');
    // "Few 429s per second": the capacity signal keeps it from even trying while saturated.
    assert.ok(shedsDuring / satSeconds <= 2, `${shedsDuring} sheds in ${satSeconds} s`);
    await waitFor(() => flood.statuses.filter(Boolean).length === 24,
      { timeoutMs: 30000, what: 'the real-time flood to finish' });
    assert.ok(flood.statuses.every((st) => st === 200), `real-time statuses: ${flood.statuses}`);
    const res = await collect(q.results, n, '60s');
    assert.equal(res.total, n);
    for (const m of res.byId.values()) assert.equal(m.status_code, 200, JSON.stringify(m));
    await proc.stop();
    await smallGw.stop();
    await small.stop();
  });
});
