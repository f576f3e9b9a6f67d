// latency.test.mjs — the latency predictor (sched/latency.h) against real simulators: one fast,
// one made slow with --decode-coeffs / --prefill-coeffs. With --policy predicted-latency, after a
// warm-up the gateway sends the slow one a clearly smaller share, requests with a tight
// x-slo-ttft-ms avoid it, /v1/pool shows each endpoint's prediction, and /metrics the predictor's
// samples and error histogram (valid Prometheus text). With the default policy (tidegate-default,
// built on the predictor), sheddable requests are admitted only where the next real-time request
// is still predicted to meet the real-time SLO, and the prefix index's predicted hit rate is
// shown beside the engine's own counters.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import {
  SIM_MODEL, startSim, startGateway, stopAll, request, parseMetrics, promtoolCheckMetrics, sleep,
} from './lib.mjs';

after(stopAll);

describe('latency predictor', { timeout: 120_000 }, () => {
  let fast, slow, gw, client;
  before(async () => {
    fast = await startSim(['--time-scale', '5']);
    // About 6× slower decode steps and 5× slower prefill.
    slow = await startSim(['--time-scale', '5', '--decode-coeffs', '40,2',
      '--prefill-coeffs', '2e-6,0.08,80']);
    gw = await startGateway(['--endpoints', `${fast.endpoint},${slow.endpoint}`,
      '--policy', 'predicted-latency']);
    client = new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: 'test', maxRetries: 0, timeout: 20_000 });
  });

  // One streamed chat request; resolves the endpoint that served it.
  async function one(i, headers = {}, long = false) {
    // A long prompt is ~512 tokens (2,048 characters), the size /v1/pool predicts for.
    const content = long ? `${i} ${'weather '.repeat(256)}` : `question number ${i} about the weather`;
    const { data: stream, response } = await client.chat.completions.create({
      model: SIM_MODEL, max_tokens: 12, stream: true,
      messages: [{ role: 'user', content }],
    }, { headers }).withResponse();
    for await (const _ of stream) { /* drain */ }
    return response.headers.get('x-gateway-destination-endpoint');
  }

  // `n` requests, `concurrency` at a time; counts per endpoint.
  async function run(n, concurrency, headers = {}, long = false) {
    const counts = new Map();
    let next = 0;
    async function worker() {
      while (next < n) {
        const i = next++;
        const ep = await one(i, headers, long);
        counts.set(ep, (counts.get(ep) ?? 0) + 1);
      }
    }
    await Promise.all(Array.from({ length: concurrency }, worker));
    return counts;
  }

  it('learns that one server is slow and sends it a smaller share', async () => {
    await run(60, 4);  // warm-up: both get traffic while the models learn
    await run(20, 2, {}, true);  // and with long prompts
    const counts = await run(80, 4);
    const slowShare = (counts.get(slow.endpoint) ?? 0) / 80;
    assert.ok(slowShare < 0.3, `slow share ${slowShare} (${JSON.stringify([...counts])})`);
  });

  it('requests with a tight x-slo-ttft-ms avoid the slow server', async () => {
    const pool = JSON.parse((await request(gw.url, { path: '/v1/pool' })).body);
    const byAddr = new Map(pool.endpoints.map((e) => [e.address, e]));
    const pf = byAddr.get(fast.endpoint).predicted, ps = byAddr.get(slow.endpoint).predicted;
    // An SLO between the two predictions for a 512-token prompt: only the fast one is predicted
    // to meet it for such prompts.
    const slo = Math.round((pf.ttft_ms + ps.ttft_ms) / 2);
    const counts = await run(30, 2, { 'x-slo-ttft-ms': String(slo) }, true);
    assert.ok((counts.get(slow.endpoint) ?? 0) <= 2,
      `slo ${slo} ms: ${JSON.stringify([...counts])}; predictions ${pf.ttft_ms} / ${ps.ttft_ms}`);
  });

  it('/v1/pool shows the predictions and /metrics the predictor', async () => {
    const pool = JSON.parse((await request(gw.url, { path: '/v1/pool' })).body);
    const byAddr = new Map(pool.endpoints.map((e) => [e.address, e]));
    const pf = byAddr.get(fast.endpoint).predicted, ps = byAddr.get(slow.endpoint).predicted;
    assert.equal(pf.reference_prompt_tokens, 512);
    assert.ok(pf.samples > 10 && ps.samples >= 1, JSON.stringify({ pf, ps }));
    assert.ok(ps.ttft_ms > 2 * pf.ttft_ms, JSON.stringify({ pf, ps }));
    assert.ok(ps.tpot_ms > 2 * pf.tpot_ms, JSON.stringify({ pf, ps }));
    const text = (await request(gw.url, { path: '/metrics' })).body;
    const m = parseMetrics(text);
    assert.ok(m.get('tidegate_latency_predictor_samples_total', { target: 'ttft' }) >= 100);
    assert.ok(m.get('tidegate_latency_prediction_ratio_count', { target: 'ttft' }) >= 100);
    const check = await promtoolCheckMetrics(text);
    assert.equal(check.status, 0, check.output);
  });
});

describe('tidegate-default: sheddable admission by predicted SLO, the prefix index check', {
  timeout: 120_000,
}, () => {
  let fast, slow, gw, client;
  before(async () => {
    fast = await startSim(['--time-scale', '5']);
    slow = await startSim(['--time-scale', '5', '--decode-coeffs', '40,2',
      '--prefill-coeffs', '2e-6,0.08,80']);
    gw = await startGateway(['--endpoints', `${fast.endpoint},${slow.endpoint}`]);
    client = new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: 'test', maxRetries: 0, timeout: 20_000 });
  });

  // One streamed request of ~512 tokens; resolves {status, endpoint}.
  async function one(i, headers = {}, content = null) {
    try {
      const { data: stream, response } = await client.chat.completions.create({
        model: SIM_MODEL, max_tokens: 12, stream: true,
        messages: [{ role: 'user', content: content ?? `${i} ${'weather '.repeat(256)}` }],
      }, { headers }).withResponse();
      for await (const _ of stream) { /* drain */ }
      return { status: 200, endpoint: response.headers.get('x-gateway-destination-endpoint') };
    } catch (e) {
      return { status: e.status ?? 0, retryAfter: e.headers?.['retry-after'], message: e.message };
    }
  }
  const shed = { 'x-gateway-inference-objective': 'sheddable' };

  it('sheds sheddable work where the next real-time request would miss its SLO', async () => {
    // Warm-up, 4 at a time so that both servers get traffic and their models learn.
    let next = 0;
    await Promise.all(Array.from({ length: 4 }, async () => {
      while (next < 60) await one(next++);
    }));
    const pool = JSON.parse((await request(gw.url, { path: '/v1/pool' })).body);
    const byAddr = new Map(pool.endpoints.map((e) => [e.address, e]));
    const pf = byAddr.get(fast.endpoint).predicted, ps = byAddr.get(slow.endpoint).predicted;
    assert.ok(ps.samples > 0 && ps.ttft_ms > 2 * pf.ttft_ms, JSON.stringify({ pf, ps }));
    // Real-time traffic with an objective only the fast server is predicted to meet, after a
    // sheddable request there as well (which adds a 512-token prefill ahead of it).
    const slo = Math.round(0.8 * ps.ttft_ms);
    assert.ok(slo < ps.ttft_ms, JSON.stringify({ slo, pf, ps }));
    assert.equal((await one(100, { 'x-slo-ttft-ms': String(slo) })).status, 200);
    // Each sheddable request as the async processor sends it: a 429 is retried after its
    // Retry-After (up to 3 times). A refusal can happen while the last scrape (every 50 ms)
    // still shows the request before it running; the next scrape clears it. Every request must
    // end up served, and only ever by the fast server.
    const served = [];
    let refusals = 0;
    for (let i = 0; i < 12; ++i) {
      let r = await one(200 + i, shed);
      for (let tries = 0; r.status === 429 && tries < 3; ++tries) {
        ++refusals;
        assert.ok(Number(r.retryAfter) >= 1, JSON.stringify(r));
        await sleep(1000 * Number(r.retryAfter));
        r = await one(200 + i, shed);
      }
      served.push(r);
    }
    assert.ok(served.every((r) => r.status === 200 && r.endpoint === fast.endpoint),
      JSON.stringify(served));
    assert.ok(refusals <= 6, `${refusals} refusals: ${JSON.stringify(served)}`);
    // An objective nobody can meet: sheddable work is refused (429 with Retry-After), real-time
    // work is still served.
    assert.equal((await one(300, { 'x-slo-ttft-ms': '1' })).status, 200);
    const refused = await one(301, shed);
    assert.equal(refused.status, 429, JSON.stringify(refused));
    assert.ok(Number(refused.retryAfter) >= 1, JSON.stringify(refused));
    assert.match(refused.message, /predicted to miss its latency objective/);
  });

  it('/v1/pool shows the prefix index beside the engine\'s own hit counters', async () => {
    // The same long prompt ten times: after the first, both the index and the engine hit.
    const doc = `a shared document ${'tide '.repeat(400)}`;
    for (let i = 0; i < 10; ++i) assert.equal((await one(i, {}, doc)).status, 200);
    const pool = JSON.parse((await request(gw.url, { path: '/v1/pool' })).body);
    const sent = pool.endpoints.filter((e) => e.prefix_cache?.predicted_prompt_tokens > 0);
    assert.ok(sent.length >= 1, JSON.stringify(pool.endpoints));
    for (const e of sent) {
      const pc = e.prefix_cache;
      assert.ok(pc.engine_query_tokens > 0, JSON.stringify(e));
      assert.ok(pc.predicted_hit_rate >= 0 && pc.predicted_hit_rate <= 1, JSON.stringify(pc));
      assert.ok(pc.engine_hit_rate >= 0 && pc.engine_hit_rate <= 1, JSON.stringify(pc));
    }
    // Where the document went, the index's prediction and the engine's figure agree.
    const m = parseMetrics((await request(gw.url, { path: '/metrics' })).body);
    let hit = 0, prompt = 0;
    for (const e of pool.endpoints) {
      hit += m.get('tidegate_prefix_index_predicted_hit_tokens_total', { endpoint: e.address }) ?? 0;
      prompt += m.get('tidegate_prefix_index_prompt_tokens_total', { endpoint: e.address }) ?? 0;
    }
    assert.ok(prompt > 0 && hit > 0, JSON.stringify({ hit, prompt }));
    const doc0 = sent.reduce((a, b) => (
      (a.prefix_cache.engine_hit_rate > b.prefix_cache.engine_hit_rate) ? a : b));
    assert.ok(Math.abs(doc0.prefix_cache.predicted_hit_rate - doc0.prefix_cache.engine_hit_rate)
      < 0.25, JSON.stringify(doc0.prefix_cache));
  });
});
