// flow_control.test.mjs — flow control at the gateway against real simulators
// (`tidegate sim --max-num-seqs 2`): requests of priority >= 0 wait at the gateway while no
// endpoint has room (here: an in-flight bound per endpoint), priority bands dispatch highest
// first, tenants of a band take turns, a TTL expiry is a 503 with its reason, a queued client
// that hangs up leaves nothing behind, sheddable requests still get 429 at once, and the
// official openai client works unchanged through a queueing gateway.
import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import OpenAI from 'openai';
import {
  startSim, startGateway, stopAll, SIM_MODEL, request, postJson, openStream, openFlood,
  waitFor, sleep, parseMetrics, expectErrorShape,
} from './lib.mjs';

const T = { timeout: 60_000 };
const OBJECTIVE = 'x-gateway-inference-objective';
const LONG_STREAM = { model: SIM_MODEL, prompt: 'keep going', max_tokens: 100000, stream: true };

after(stopAll);

async function poolState(gw) {
  const r = await request(gw.url, { path: '/v1/pool', timeoutMs: 3000 });
  assert.equal(r.status, 200, r.body);
  return r.json;
}
const queued = async (gw) => (await poolState(gw)).flow_control.queued;

async function metrics(gw) {
  const r = await request(gw.url, { path: '/metrics', timeoutMs: 3000 });
  assert.equal(r.status, 200);
  return parseMetrics(r.body);
}

// One streamed completion through the gateway, timed: when the response head arrived (the
// request was dispatched to a server), the first SSE event, and the end.
function timedStream(gw, headers, { maxTokens = 16, tag = '' } = {}) {
  const t0 = performance.now();
  const payload = Buffer.from(JSON.stringify({
    model: SIM_MODEL, prompt: `flow control ${tag}`, max_tokens: maxTokens, stream: true,
  }));
  return new Promise((resolve, reject) => {
    const req = http.request({
      host: '127.0.0.1', port: gw.port, path: '/v1/completions', method: 'POST', agent: false,
      headers: { 'content-type': 'application/json', 'content-length': payload.length, ...headers },
    }, (res) => {
      const head = performance.now() - t0;
      let first = -1;
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c) => {
        if (first < 0 && c.includes('data:')) first = performance.now() - t0;
        body += c;
      });
      res.on('end', () => resolve({ tag, status: res.statusCode, head, ttft: first,
        end: performance.now() - t0, endAt: performance.now(), body, headers: res.headers }));
      res.on('error', reject);
    });
    req.setTimeout(50_000, () => req.destroy(new Error(`request ${tag} timed out`)));
    req.on('error', reject);
    req.end(payload);
  });
}

const pct = (xs, p) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(p * s.length))];
};

describe('flow control at the gateway', () => {
  it('a burst of 40 standard requests, then 5 of priority 10: the five go before the queued standard ones', T, async (t) => {
    const sims = await startSim(['--port-count', '2', '--max-num-seqs', '2']);
    t.after(() => sims.stop());
    const gw = await startGateway(['--endpoints', sims.endpoints.join(','),
      '--objective', 'premium=10', '--max-in-flight-per-endpoint', '3']);
    t.after(() => gw.stop());

    const standard = Array.from({ length: 40 }, (_, i) => timedStream(gw, {}, { tag: `s${i}` }));
    await waitFor(async () => (await queued(gw)) >= 30,
      { timeoutMs: 5000, what: 'the standard burst to wait at the gateway' });
    const waitingAtPremium = await queued(gw);
    const premiumSent = performance.now();
    const premium = Array.from({ length: 5 }, (_, i) =>
      timedStream(gw, { [OBJECTIVE]: 'premium' }, { tag: `p${i}` }));
    const [s, p] = await Promise.all([Promise.all(standard), Promise.all(premium)]);
    for (const r of [...s, ...p]) assert.equal(r.status, 200, `${r.tag}: ${r.body.slice(0, 200)}`);

    // Dispatch order: a request's response head arrives when it reaches a server.
    const lastPremiumEnd = Math.max(...p.map((r) => r.endAt));
    const standardAfter = s.filter((r) => r.endAt > lastPremiumEnd).length;
    // All five were dispatched within the next few freed slots: nearly every standard request
    // still waiting when they arrived finished after them.
    assert.ok(standardAfter >= waitingAtPremium - 12,
      `${standardAfter} standard requests finished after the last premium one ` +
      `(${waitingAtPremium} were waiting when the premium ones arrived)`);
    const premiumTtft = p.map((r) => r.ttft);
    const queuedStandard = s.filter((r) => r.endAt > premiumSent).map((r) => r.ttft);
    const summary = `premium TTFT p50 ${pct(premiumTtft, 0.5).toFixed(0)} ms, max ` +
      `${Math.max(...premiumTtft).toFixed(0)} ms; standard (queued) TTFT p50 ` +
      `${pct(queuedStandard, 0.5).toFixed(0)} ms, p99 ${pct(queuedStandard, 0.99).toFixed(0)} ms`;
    t.diagnostic(summary);
    assert.ok(Math.max(...premiumTtft) < pct(queuedStandard, 0.5), summary);
    const m = await metrics(gw);
    assert.equal(m.get('tidegate_flow_control_dispatched_total', { priority: '10' }), 5);
    assert.ok(m.get('tidegate_flow_control_dispatched_total', { priority: '0' }) >= 30);
    assert.equal(m.sum('tidegate_flow_control_queue_size'), 0);
  });

  it('two tenants sending 30 and 3: the small tenant is not served last', T, async (t) => {
    const sims = await startSim(['--port-count', '2', '--max-num-seqs', '2']);
    t.after(() => sims.stop());
    const gw = await startGateway(['--endpoints', sims.endpoints.join(','),
      '--max-in-flight-per-endpoint', '2']);
    t.after(() => gw.stop());
    const fair = 'x-gateway-inference-fairness-id';
    const big = Array.from({ length: 30 }, (_, i) => timedStream(gw, { [fair]: 'big' }, { tag: `b${i}` }));
    await waitFor(async () => (await queued(gw)) >= 20, { timeoutMs: 5000, what: 'tenant big to queue' });
    // llm-d's header name works as an alias.
    const small = Array.from({ length: 3 }, (_, i) =>
      timedStream(gw, { 'x-llm-d-inference-fairness-id': 'small' }, { tag: `s${i}` }));
    const done = [...await Promise.all(big), ...await Promise.all(small)];
    for (const r of done) assert.equal(r.status, 200);
    const order = done.sort((a, b) => a.endAt - b.endAt).map((r) => r.tag);
    const lastSmall = Math.max(...['s0', 's1', 's2'].map((x) => order.indexOf(x)));
    t.diagnostic(`completion order: ${order.join(' ')}`);
    // Round-robin between the tenants: small's three go out within its next three turns, long
    // before big's queue is through.
    assert.ok(lastSmall < order.length - 10, `the small tenant's last request finished at rank ${lastSmall + 1} of ${order.length}`);
    const st = await poolState(gw);
    assert.equal(st.flow_control.queued, 0);
  });

  it('TTL expiry is a 503 ttl-expired with Retry-After; sheddable requests still get 429 at once', T, async (t) => {
    const sim = await startSim(['--max-num-seqs', '2']);
    t.after(() => sim.stop());
    const gw = await startGateway(['--endpoints', sim.endpoint, '--max-in-flight-per-endpoint', '2']);
    t.after(() => gw.stop());
    const flood = openFlood(gw.url, '/v1/completions', LONG_STREAM, 2);
    t.after(() => flood.destroy());
    await waitFor(async () => (await poolState(gw)).endpoints[0].in_flight === 2,
      { timeoutMs: 5000, what: 'the endpoint to be at its in-flight bound' });

    const t0 = performance.now();
    const r = await postJson(gw.url, '/v1/chat/completions',
      { model: SIM_MODEL, messages: [{ role: 'user', content: 'hi' }], max_tokens: 2 },
      { headers: { 'x-llm-d-inference-ttl': '300' }, timeoutMs: 5000 });
    const waited = performance.now() - t0;
    expectErrorShape(assert, r, { status: 503, code: 'ttl_expired' });
    assert.equal(r.headers['x-gateway-request-dropped-reason'], 'ttl-expired');
    assert.equal(r.headers['x-llm-d-request-dropped-reason'], 'ttl-expired');
    assert.match(String(r.headers['retry-after']), /^\d+$/);
    assert.ok(waited >= 290 && waited < 2000, `answered after the 300 ms TTL (${waited.toFixed(0)} ms)`);
    assert.match(r.json.error.message, /waited \d+ ms in the gateway's queue/);

    const s0 = performance.now();
    const shed = await postJson(gw.url, '/v1/chat/completions',
      { model: SIM_MODEL, messages: [{ role: 'user', content: 'batch' }], max_tokens: 2 },
      { headers: { [OBJECTIVE]: 'sheddable' }, timeoutMs: 5000 });
    assert.ok(performance.now() - s0 < 500, 'refused at once, not queued');
    expectErrorShape(assert, shed, { status: 429, code: 'saturated' });
    assert.equal(shed.headers['x-gateway-request-dropped-reason'], 'saturated');
    assert.equal(shed.headers['x-llm-d-request-dropped-reason'], 'saturated');
    assert.ok(Number(shed.headers['retry-after']) >= 1);

    // A malformed TTL is the client's mistake: 400, naming the header.
    const bad = await postJson(gw.url, '/v1/chat/completions',
      { model: SIM_MODEL, messages: [{ role: 'user', content: 'x' }] },
      { headers: { 'x-llm-d-inference-ttl': 'soon' }, timeoutMs: 5000 });
    expectErrorShape(assert, bad, { status: 400 });
    assert.match(bad.json.error.message, /x-llm-d-inference-ttl/);

    const m = await metrics(gw);
    assert.equal(m.get('tidegate_flow_control_ttl_expired_total', { priority: '0' }), 1);
    assert.equal(m.get('tidegate_requests_rejected_total', { reason: 'ttl-expired' }), 1);
    assert.equal(m.get('tidegate_requests_rejected_total', { reason: 'saturated' }), 1);
  });

  it('a queued client that hangs up leaves nothing behind in the queues, the metrics or the sims', T, async (t) => {
    const sim = await startSim(['--max-num-seqs', '2']);
    t.after(() => sim.stop());
    const gw = await startGateway(['--endpoints', sim.endpoint, '--max-in-flight-per-endpoint', '2']);
    t.after(() => gw.stop());
    const flood = openFlood(gw.url, '/v1/completions', LONG_STREAM, 2);
    t.after(() => flood.destroy());
    await waitFor(async () => (await poolState(gw)).endpoints[0].in_flight === 2,
      { timeoutMs: 5000, what: 'the endpoint to be at its in-flight bound' });
    await waitFor(async () => (await sim.metric('vllm:num_requests_running')) === 2,
      { timeoutMs: 5000, what: 'the simulator to run the flood' });
    const successBefore = await sim.metric('vllm:request_success_total');
    const promptBefore = await sim.metric('vllm:prompt_tokens_total');

    // A long prompt (~500 tokens), so that it would show in the simulator's prompt tokens.
    const payload = JSON.stringify({ model: SIM_MODEL, prompt: 'never mind '.repeat(180), max_tokens: 4 });
    const req = http.request({ host: '127.0.0.1', port: gw.port, path: '/v1/completions',
      method: 'POST', agent: false, headers: { 'content-type': 'application/json' } });
    req.on('error', () => {});
    req.end(payload);
    await waitFor(async () => (await queued(gw)) === 1, { timeoutMs: 5000, what: 'the request to wait' });
    req.destroy();
    await waitFor(async () => (await queued(gw)) === 0, { timeoutMs: 2000, what: 'the queue to empty' });

    // Room returns; the hung-up request must not be dispatched to the simulator.
    flood.destroy();
    await waitFor(async () => (await poolState(gw)).endpoints[0].in_flight === 0,
      { timeoutMs: 5000, what: 'the flood to end' });
    await sleep(300);
    const m = await metrics(gw);
    assert.equal(m.sum('tidegate_flow_control_queue_size'), 0);
    assert.equal(m.sum('tidegate_flow_control_queue_bytes'), 0);
    assert.equal(m.get('tidegate_flow_control_queue_wait_seconds_count', { priority: '0', outcome: 'cancelled' }), 1);
    assert.equal(m.sum('tidegate_endpoint_in_flight'), 0);
    assert.equal(m.sum('tidegate_flow_control_dispatched_total'), 0);
    assert.ok(m.get('tidegate_client_disconnects_total') >= 1);
    assert.equal(await sim.metric('vllm:request_success_total'), successBefore);
    const promptAfter = await sim.metric('vllm:prompt_tokens_total');
    assert.ok(promptAfter - promptBefore < 100,
      `the simulator never saw the hung-up request (prompt tokens ${promptBefore} → ${promptAfter})`);
    assert.equal(await sim.metric('vllm:num_requests_waiting') + await sim.metric('vllm:num_requests_running'), 0);
  });

  it('the official openai client works unchanged through a gateway that is queueing', T, async (t) => {
    const sim = await startSim(['--max-num-seqs', '2']);
    t.after(() => sim.stop());
    const gw = await startGateway(['--endpoints', sim.endpoint, '--max-in-flight-per-endpoint', '1']);
    t.after(() => gw.stop());
    const client = new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: 'test', maxRetries: 0, timeout: 30_000 });
    const flood = openFlood(gw.url, '/v1/completions', LONG_STREAM, 1);
    t.after(() => flood.destroy());
    await waitFor(async () => (await poolState(gw)).endpoints[0].in_flight === 1,
      { timeoutMs: 5000, what: 'the endpoint to be at its in-flight bound' });

    const plain = client.chat.completions.create({
      model: SIM_MODEL, messages: [{ role: 'user', content: 'hello' }], max_tokens: 4,
    });
    const streamed = (async () => {
      const stream = await client.chat.completions.create({
        model: SIM_MODEL, messages: [{ role: 'user', content: 'stream please' }], max_tokens: 4,
        stream: true,
      });
      let text = '';
      for await (const chunk of stream) text += chunk.choices[0]?.delta?.content ?? '';
      return text;
    })();
    await waitFor(async () => (await queued(gw)) === 2, { timeoutMs: 5000, what: 'both calls to wait' });
    flood.destroy();
    const [p, s] = await Promise.all([plain, streamed]);
    assert.ok(p.choices[0].message.content.length > 0, JSON.stringify(p));
    assert.equal(p.usage.completion_tokens, 4);
    assert.ok(s.length > 0, 'streamed text arrived');
  });
});

describe('eviction of running sheddable work (--evict-sheddable-after)', () => {
  it('a running sheddable request gets 429 evicted when a real-time one waited too long; off by default', T, async (t) => {
    const sim = await startSim(['--max-num-seqs', '1']);
    t.after(() => sim.stop());
    const gw = await startGateway(['--endpoints', sim.endpoint, '--max-in-flight-per-endpoint', '1',
      '--evict-sheddable-after', '200ms']);
    t.after(() => gw.stop());
    await waitFor(async () => (await poolState(gw)).endpoints[0].stale === false,
      { timeoutMs: 5000, what: 'fresh metrics (a stale pool refuses sheddable work)' });
    // A long non-streamed sheddable request holds the only slot.
    const shed = postJson(gw.url, '/v1/completions',
      { model: SIM_MODEL, prompt: 'a long batch job', max_tokens: 5000 },
      { headers: { [OBJECTIVE]: 'sheddable' }, timeoutMs: 15000 });
    await waitFor(async () => (await poolState(gw)).endpoints[0].in_flight === 1,
      { timeoutMs: 5000, what: 'the sheddable request to run' });
    const t0 = performance.now();
    const rt = await postJson(gw.url, '/v1/completions',
      { model: SIM_MODEL, prompt: 'a person is waiting', max_tokens: 4 }, { timeoutMs: 10000 });
    assert.equal(rt.status, 200, rt.body);
    const waited = performance.now() - t0;
    const s = await shed;
    expectErrorShape(assert, s, { status: 429, code: 'evicted' });
    assert.equal(s.headers['x-gateway-request-dropped-reason'], 'evicted');
    assert.ok(Number(s.headers['retry-after']) >= 1);
    assert.ok(waited >= 150 && waited < 3000, `the real-time request was served after ${waited.toFixed(0)} ms`);
    const m = await metrics(gw);
    assert.equal(m.get('tidegate_flow_control_evictions_total', { priority: '-1', kind: 'running' }), 1);
    // The simulator stopped generating for the evicted request (its connection was closed).
    await waitFor(async () => (await sim.metric('vllm:num_requests_running')) === 0,
      { timeoutMs: 5000, what: 'the simulator to drop the evicted request' });
  });
});
