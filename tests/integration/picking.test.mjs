// picking.test.mjs — issue 4: endpoint picking on live model-server state, objectives and
// priority, shedding and the capacity signal, against real `tidegate sim` processes on loopback.
//
// What it proves, each against the gateway's documented contract (DESIGN.md, Scheduling):
//   - an endpoint with a long queue (seen through its scraped vllm:num_requests_waiting) gets no
//     new requests while another is idle;
//   - a repeated long prefix goes back to the endpoint that has it cached, and the simulator
//     reports the cache hit (tidegate-default and gie-default);
//   - a LoRA adapter is only sent to the endpoint that serves it (learnt from GET /v1/models);
//   - an endpoint whose scrape fails becomes stale and is avoided (and /v1/pool says why);
//   - with the pool saturated, sheddable requests get 429 + Retry-After while priority ≥ 0
//     requests are still admitted; /v1/capacity and the new metrics follow (promtool-clean);
//   - an unknown objective is a 400 naming it;
//   - --forward-priority adds vLLM's `priority` (= −objective priority) only when asked, and a
//     priority-scheduling simulator then serves real-time work before queued batch work.
// Every test starts its own processes, stops them, and is bounded in time.
import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import {
  startSim, startGateway, startUpstream, stopAll, SIM_MODEL, request, postJson, openStream,
  openFlood, waitFor, sleep, sseData, sseContent, parseMetrics, expectErrorShape,
  promtoolCheckMetrics, withTimeout,
} from './lib.mjs';

const T = { timeout: 20_000 };
const OBJECTIVE = 'x-gateway-inference-objective';
const DEST = 'x-gateway-destination-endpoint';

// A long-running stream (never finishes by itself) used to fill a simulator's queue directly.
const LONG_STREAM = { model: SIM_MODEL, prompt: 'keep going', max_tokens: 100000, stream: true };

const shortChat = (content, extra = {}) => ({
  model: SIM_MODEL, messages: [{ role: 'user', content }], max_tokens: 2, ...extra,
});

// GET a JSON document from the gateway; asserts 200 + JSON.
async function getJson(gw, p) {
  const r = await request(gw.url, { path: p, timeoutMs: 3000 });
  assert.equal(r.status, 200, `GET ${p}: ${r.status} ${r.body.slice(0, 300)}`);
  assert.ok(r.json && typeof r.json === 'object', `GET ${p} is JSON: ${r.body.slice(0, 300)}`);
  return r.json;
}

const pool = (gw) => getJson(gw, '/v1/pool');
const capacity = (gw) => getJson(gw, '/v1/capacity');

// The /v1/pool entry for `endpoint` (host:port); fails clearly if there is none.
function poolEntry(state, endpoint) {
  assert.ok(Array.isArray(state.endpoints), `/v1/pool has an endpoints array: ${JSON.stringify(state)}`);
  const e = state.endpoints.find((x) => x.address === endpoint);
  assert.ok(e, `/v1/pool lists ${endpoint}: ${JSON.stringify(state.endpoints.map((x) => x.address))}`);
  return e;
}

// Checks one /v1/pool endpoint entry against the documented shape.
function checkEntryShape(e) {
  const ctx = JSON.stringify(e);
  assert.equal(typeof e.address, 'string', ctx);
  assert.equal(typeof e.engine, 'string', ctx);
  for (const k of ['available', 'stale']) assert.equal(typeof e[k], 'boolean', `${k}: ${ctx}`);
  for (const k of ['waiting', 'running', 'kv_usage', 'in_flight', 'saturation', 'scrape_age_ms']) {
    assert.equal(typeof e[k], 'number', `${k}: ${ctx}`);
  }
  for (const k of ['models', 'running_lora_adapters', 'waiting_lora_adapters']) {
    assert.ok(Array.isArray(e[k]), `${k} is an array: ${ctx}`);
  }
  assert.ok(e.last_error === null || typeof e.last_error === 'string', `last_error: ${ctx}`);
}

// Waits (bounded) until the gateway has a fresh scrape of every endpoint, and has learnt their
// models, so tests start from a pool the gateway really sees.
async function waitPoolFresh(gw, endpoints, { models = SIM_MODEL, timeoutMs = 5000 } = {}) {
  return waitFor(async () => {
    const s = await pool(gw);
    return endpoints.every((ep) => {
      const e = s.endpoints?.find((x) => x.address === ep);
      return e && e.stale === false && Array.isArray(e.models) && e.models.includes(models);
    }) && s;
  }, { timeoutMs, what: `/v1/pool to show ${endpoints.join(', ')} fresh, serving ${models}` });
}

// A stream opened through the gateway (its head arrives at once, even when the simulator queues
// it); resolves {status, dest, stream}.
async function openThrough(gw, body, headers = {}) {
  const s = await openStream(gw.url, '/v1/chat/completions', { ...body, stream: true }, { headers, timeoutMs: 5000 });
  return { status: s.status, dest: s.headers[DEST], stream: s };
}

// Unique filler text of about `chars` characters (so no other test's cache is involved).
function uniqueText(chars) {
  let s = '';
  while (s.length < chars) s += `${randomUUID().replace(/-/g, ' ')} the quick brown fox. `;
  return s.slice(0, chars);
}

after(stopAll);

describe('picking on live pool state', () => {
  for (const policy of ['tidegate-default', 'gie-default']) {
    it(`[${policy}] an endpoint with a long queue gets no new requests while another is idle`, T, async (t) => {
      const [busy, idle] = await Promise.all([
        startSim(['--max-num-seqs', '1', '--time-scale', '0.5']),
        startSim(['--time-scale', '0.5']),
      ]);
      t.after(() => Promise.all([busy.stop(), idle.stop()]));
      const gw = await startGateway(['--endpoints', `${busy.endpoint},${idle.endpoint}`,
        '--policy', policy, '--scrape-interval', '50ms']);
      t.after(() => gw.stop());
      await waitPoolFresh(gw, [busy.endpoint, idle.endpoint]);

      // Directly (not through the gateway): 1 running + 4 waiting on `busy`.
      const flood = openFlood(busy.url, '/v1/completions', LONG_STREAM, 5);
      t.after(() => flood.destroy());
      await waitFor(async () => (await busy.metric('vllm:num_requests_waiting')) >= 3,
        { timeoutMs: 5000, what: 'the busy simulator to report ≥ 3 waiting' });
      const seen = await waitFor(async () => {
        const e = poolEntry(await pool(gw), busy.endpoint);
        return e.waiting >= 3 && !e.stale && e;
      }, { timeoutMs: 5000, what: `the gateway's /v1/pool to show ≥ 3 waiting on ${busy.endpoint}` });
      checkEntryShape(seen);

      const dests = [];
      for (let i = 0; i < 10; i++) {
        const { status, dest, stream } = await openThrough(gw, shortChat(`short ${i} ${randomUUID()}`));
        try {
          assert.equal(status, 200, stream.text());
          dests.push(dest);
          if (dest === idle.endpoint) {
            const end = await stream.finished(5000);
            assert.ok(end.complete, `request ${i} completed on the idle simulator`);
          }
        } finally {
          stream.destroy();
        }
      }
      const onIdle = dests.filter((d) => d === idle.endpoint).length;
      assert.equal(onIdle, dests.length,
        `all 10 short requests went to the idle simulator ${idle.endpoint}, not the queued ${busy.endpoint}; ` +
        `destinations: ${dests.join(', ')}`);
    });
  }

  for (const policy of ['tidegate-default', 'gie-default']) {
    it(`[${policy}] a repeated long prefix goes back to the endpoint that has it cached`, T, async (t) => {
      const sims = await startSim(['--port-count', '3']);
      t.after(() => sims.stop());
      const gw = await startGateway(['--endpoints', sims.endpoints.join(','), '--policy', policy]);
      t.after(() => gw.stop());
      await waitPoolFresh(gw, sims.endpoints);

      const prefix = uniqueText(4000);  // ≈ 1000 tokens, ≈ 62 GIE blocks of 64 characters
      const ask = async (suffix) => {
        const r = await postJson(gw.url, '/v1/chat/completions',
          shortChat(`${prefix}\nQuestion ${suffix}: ${randomUUID()}?`), { timeoutMs: 8000 });
        assert.equal(r.status, 200, r.body.slice(0, 500));
        const idx = sims.endpoints.indexOf(r.headers[DEST]);
        assert.ok(idx >= 0, `destination ${r.headers[DEST]} is one of ${sims.endpoints}`);
        return { idx, cached: r.json.usage?.prompt_tokens_details?.cached_tokens, usage: r.json.usage };
      };

      const first = await ask('zero');
      const home = first.idx;
      const hitsBefore = await sims.metric('vllm:prefix_cache_hits_total', home);
      const dests = [];
      for (let i = 1; i <= 5; i++) {
        const r = await ask(`number ${i}`);
        dests.push(r.idx);
        if (r.idx === home) {
          assert.ok(r.cached > 0, `repeat ${i}: cached_tokens ${r.cached} > 0 (usage ${JSON.stringify(r.usage)})`);
        }
      }
      assert.deepEqual(dests, Array(5).fill(home),
        `every repeat went to ${sims.endpoints[home]} (the first request's endpoint); ` +
        `destinations: ${dests.map((i) => sims.endpoints[i]).join(', ')}`);
      const hitsAfter = await sims.metric('vllm:prefix_cache_hits_total', home);
      assert.ok(hitsAfter - hitsBefore >= 5 * 500,
        `the simulator's vllm:prefix_cache_hits_total rose by ${hitsAfter - hitsBefore} (≥ 5 × 500 tokens)`);
    });
  }

  it('a LoRA adapter request goes to the endpoint that serves the adapter', T, async (t) => {
    const [withLora, plain] = await Promise.all([
      startSim(['--lora-modules', 'my-adapter']),
      startSim([]),
    ]);
    t.after(() => Promise.all([withLora.stop(), plain.stop()]));
    const gw = await startGateway(['--endpoints', `${plain.endpoint},${withLora.endpoint}`, '--health-interval', '200ms']);
    t.after(() => gw.stop());
    // The gateway learns the served models from each endpoint's GET /v1/models.
    await waitPoolFresh(gw, [withLora.endpoint, plain.endpoint]);
    const withEntry = await waitFor(async () => {
      const e = poolEntry(await pool(gw), withLora.endpoint);
      return e.models.includes('my-adapter') && e;
    }, { timeoutMs: 5000, what: `/v1/pool to list my-adapter for ${withLora.endpoint}` });
    checkEntryShape(withEntry);
    // /v1/pool cannot tell whether the plain simulator's list came from its GET /v1/models yet (its
    // metrics name the base model too): two more health intervals make sure it has been read.
    await sleep(400);
    const plainEntry = poolEntry(await pool(gw), plain.endpoint);
    assert.ok(!plainEntry.models.includes('my-adapter'), `plain sim does not list my-adapter: ${JSON.stringify(plainEntry)}`);

    const before = await withLora.metric('vllm:request_success_total');
    for (let i = 0; i < 10; i++) {
      const r = await postJson(gw.url, '/v1/chat/completions',
        { model: 'my-adapter', messages: [{ role: 'user', content: `adapter ${i} ${randomUUID()}` }], max_tokens: 2 },
        { timeoutMs: 5000 });
      assert.equal(r.status, 200, `request ${i}: ${r.status} via ${r.headers[DEST]}: ${r.body.slice(0, 300)}`);
      assert.equal(r.headers[DEST], withLora.endpoint, `request ${i} went to the simulator with the adapter`);
      assert.equal(r.json.model, 'my-adapter');
    }
    const after = await withLora.metric('vllm:request_success_total');
    assert.ok(after - before >= 10, `the adapter simulator served them (request_success_total +${after - before})`);
    assert.equal(await plain.metric('vllm:request_success_total'), 0, 'the plain simulator served none');
  });

  // gie-default has no model filter, so there only the stale filter can keep requests off the
  // fake upstream (which serves the same model).
  for (const policy of ['tidegate-default', 'gie-default']) {
    it(`[${policy}] a stale endpoint (its /metrics scrape fails) is avoided, and /v1/pool says why`, T, async (t) => {
      // The fake upstream answers /health and /v1/models (with the simulator's model), but its
      // /metrics fails (HTTP 500). (A server with no metrics page at all is routed on in-flight
      // accounting instead: engines.test.mjs.)
      const [up, sim] = await Promise.all([startUpstream({ name: 'badmetrics', models: [SIM_MODEL], metricsStatus: 500 }), startSim([])]);
      t.after(() => Promise.all([up.stop(), sim.stop()]));
      const gw = await startGateway(['--endpoints', `${up.endpoint},${sim.endpoint}`, '--policy', policy,
        '--stale-after', '500ms', '--scrape-interval', '50ms']);
      t.after(() => gw.stop());

      // Bounded wait until the gateway has really tried (and failed) to scrape the fake upstream.
      let st;
      try {
        st = await waitFor(async () => {
          const s = await pool(gw);
          const u = poolEntry(s, up.endpoint);
          const m = poolEntry(s, sim.endpoint);
          return u.stale === true && typeof u.last_error === 'string' && u.last_error.length > 0 &&
            m.stale === false && s;
        }, { timeoutMs: 4000, what: `/v1/pool to show ${up.endpoint} stale with a last_error` });
      } catch (err) {
        err.message += `; last /v1/pool: ${JSON.stringify(await pool(gw))}`;
        throw err;
      }
      for (const e of st.endpoints) checkEntryShape(e);
      const u = poolEntry(st, up.endpoint);
      assert.equal(u.engine, 'auto', 'no engine recognised on a page that cannot be read');
      assert.match(u.last_error, /answered HTTP 500/);
      assert.equal(u.available, true, `the fake upstream is healthy (only its metrics are missing): ${JSON.stringify(u)}`);
      assert.ok(poolEntry(st, sim.endpoint).saturation < 1, 'the fresh idle sim is not saturated');
      // Stale counts as saturated: the pool (one stale, one idle) is at least half saturated.
      assert.ok(st.saturation >= 0.5, `/v1/pool saturation ${st.saturation} ≥ 0.5 with one stale endpoint of two`);

      await up.reset();
      for (let i = 0; i < 10; i++) {
        const r = await postJson(gw.url, '/v1/chat/completions', shortChat(`fresh ${i} ${randomUUID()}`), { timeoutMs: 5000 });
        assert.equal(r.status, 200, r.body.slice(0, 300));
        assert.equal(r.headers[DEST], sim.endpoint, `request ${i} avoided the stale endpoint`);
      }
      assert.equal((await up.stats()).requests, 0, 'the stale fake upstream received no requests');

      const mr = await request(gw.url, { path: '/metrics' });
      assert.equal(mr.status, 200);
      const m = parseMetrics(mr.body);
      const errs = m.get('tidegate_scrape_errors_total', { endpoint: up.endpoint });
      assert.ok(errs > 0, `tidegate_scrape_errors_total{endpoint="${up.endpoint}"} = ${errs} > 0`);
      assert.ok(m.sum('tidegate_pool_saturation') >= 0.5, 'tidegate_pool_saturation ≥ 0.5');
      const pt = await promtoolCheckMetrics(mr.body);
      assert.equal(pt.status, 0, `promtool check metrics: ${pt.output}\n--- metrics ---\n${mr.body}`);
    });
  }

  it('/v1/pool lists the models an endpoint serves (GET /v1/models) even when its metrics are unreadable', T, async (t) => {
    const up = await startUpstream({ name: 'models-only', models: ['model-x', 'model-y'] });
    t.after(() => up.stop());
    const gw = await startGateway(['--endpoints', up.endpoint, '--health-interval', '200ms']);
    t.after(() => gw.stop());
    try {
      await waitFor(async () => {
        const e = poolEntry(await pool(gw), up.endpoint);
        return e.models.includes('model-x') && e.models.includes('model-y');
      }, { timeoutMs: 3000, what: `/v1/pool to list model-x and model-y for ${up.endpoint}` });
    } catch (err) {
      err.message += `; last /v1/pool: ${JSON.stringify(await pool(gw))}`;
      throw err;
    }
  });
});

describe('objectives, shedding and the capacity signal', () => {
  it('saturated pool: sheddable → 429 + Retry-After, priority ≥ 0 admitted; capacity and metrics follow', T, async (t) => {
    const sims = await startSim(['--port-count', '2', '--max-num-seqs', '1', '--time-scale', '0.5']);
    t.after(() => sims.stop());
    const gw = await startGateway(['--endpoints', sims.endpoints.join(','), '--scrape-interval', '50ms',
      '--objective', 'batch=-1', '--objective', 'interactive=10']);
    t.after(() => gw.stop());
    await waitPoolFresh(gw, sims.endpoints);

    // Not saturated yet: a sheddable request is served, and there is room for more. (/v1/capacity
    // may be computed once per scrape round, so it is polled until it has seen both endpoints.)
    const idleCap = await waitFor(async () => {
      const c = await capacity(gw);
      return c.fresh_endpoints === 2 && c;
    }, { timeoutMs: 3000, what: '/v1/capacity to count 2 fresh endpoints' });
    assert.ok(Number.isInteger(idleCap.sheddable_capacity) && idleCap.sheddable_capacity > 0,
      `idle pool has sheddable capacity: ${JSON.stringify(idleCap)}`);
    assert.equal(idleCap.endpoints, 2);
    assert.equal(idleCap.fresh_endpoints, 2);
    assert.ok(idleCap.saturation < 1, JSON.stringify(idleCap));
    const ok0 = await postJson(gw.url, '/v1/chat/completions', shortChat('batch while idle'),
      { headers: { [OBJECTIVE]: 'batch' }, timeoutMs: 5000 });
    assert.equal(ok0.status, 200, `a sheddable request is served while the pool has room: ${ok0.body.slice(0, 300)}`);

    // Flood both simulators directly: 1 running + 7 waiting each → saturation 7/5 each.
    const floods = sims.urls.map((u) => openFlood(u, '/v1/completions', LONG_STREAM, 8));
    t.after(() => floods.forEach((f) => f.destroy()));
    await waitFor(async () => {
      const w = await Promise.all([0, 1].map((i) => sims.metric('vllm:num_requests_waiting', i)));
      return w.every((x) => x >= 6);
    }, { timeoutMs: 5000, what: 'both simulators to report ≥ 6 waiting' });
    const sat = await waitFor(async () => {
      const s = await pool(gw);
      return s.saturation >= 1 && s;
    }, { timeoutMs: 5000, what: '/v1/pool saturation ≥ 1' });
    for (const e of sat.endpoints) assert.ok(e.saturation >= 1, `endpoint saturated: ${JSON.stringify(e)}`);

    // /v1/capacity may be recomputed once per scrape interval: bounded poll.
    let cap;
    await waitFor(async () => {
      cap = await capacity(gw);
      return cap.saturation >= 1;
    }, { timeoutMs: 2000, what: '/v1/capacity saturation ≥ 1' }).catch((err) => {
      err.message += `; last /v1/capacity: ${JSON.stringify(cap)}`;
      throw err;
    });
    assert.equal(cap.sheddable_capacity, 0, `no sheddable capacity: ${JSON.stringify(cap)}`);
    assert.ok(Number.isInteger(cap.retry_after_ms) && cap.retry_after_ms > 0,
      `a positive retry delay is recommended: ${JSON.stringify(cap)}`);

    // Sheddable: refused at once.
    const shed = [];
    for (let i = 0; i < 3; i++) {
      const r = await postJson(gw.url, '/v1/chat/completions', shortChat(`batch ${i}`),
        { headers: { [OBJECTIVE]: 'batch' }, timeoutMs: 5000 });
      expectErrorShape(assert, r, { status: 429, code: 'saturated' });
      assert.equal(r.headers['x-gateway-request-dropped-reason'], 'saturated');
      const ra = r.headers['retry-after'];
      assert.match(String(ra), /^\d+$/, `Retry-After is whole seconds: ${ra}`);
      assert.ok(Number(ra) >= 1, `Retry-After ${ra} ≥ 1`);
      shed.push(r);
    }
    // Also streamed: still a plain 429, not a stream.
    const shedStream = await postJson(gw.url, '/v1/chat/completions', shortChat('batch stream', { stream: true }),
      { headers: { [OBJECTIVE]: 'batch' }, timeoutMs: 5000 });
    expectErrorShape(assert, shedStream, { status: 429, code: 'saturated' });
    const nShed = shed.length + 1;

    // Priority ≥ 0 (named, and the default with no objective): never refused. No endpoint has
    // room, so they wait at the gateway (flow control) instead of joining an engine's queue.
    const held = [{ [OBJECTIVE]: 'interactive' }, {}].map((headers) =>
      openStream(gw.url, '/v1/chat/completions', { ...shortChat('real-time'), stream: true },
        { headers, timeoutMs: 20000 }));
    const queued = await waitFor(async () => {
      const s = await pool(gw);
      return s.flow_control.queued === 2 && s;
    }, { timeoutMs: 5000, what: '/v1/pool to show the 2 real-time requests waiting at the gateway' });
    assert.deepEqual(queued.flow_control.bands.map((b) => [b.priority, b.requests]).sort(),
      [[0, 1], [10, 1]], JSON.stringify(queued.flow_control));

    // The new metrics, promtool-clean, counting exactly the 429s above.
    const mr = await request(gw.url, { path: '/metrics' });
    assert.equal(mr.status, 200);
    for (const [name, type] of [['tidegate_pool_saturation', 'gauge'], ['tidegate_pool_sheddable_capacity', 'gauge'],
      ['tidegate_requests_shed_total', 'counter'], ['tidegate_endpoint_saturation', 'gauge'],
      ['tidegate_scrape_errors_total', 'counter']]) {
      assert.match(mr.body, new RegExp(`^# TYPE ${name} ${type}$`, 'm'), `${name} is a ${type}`);
    }
    const m = parseMetrics(mr.body);
    assert.equal(m.get('tidegate_requests_shed_total', { reason: 'saturated' }), nShed,
      `tidegate_requests_shed_total{reason="saturated"} counts the ${nShed} 429s`);
    assert.ok(m.sum('tidegate_pool_saturation') >= 1, 'tidegate_pool_saturation ≥ 1');
    assert.equal(m.sum('tidegate_pool_sheddable_capacity'), 0, 'tidegate_pool_sheddable_capacity 0');
    for (const ep of sims.endpoints) {
      assert.ok(m.get('tidegate_endpoint_saturation', { endpoint: ep }) >= 1, `tidegate_endpoint_saturation{endpoint="${ep}"} ≥ 1`);
    }
    const pt = await promtoolCheckMetrics(mr.body);
    assert.equal(pt.status, 0, `promtool check metrics: ${pt.output}\n--- metrics ---\n${mr.body}`);

    assert.equal(m.sum('tidegate_flow_control_queue_size'), 2, 'two requests waiting at the gateway');

    // The flood ends: the waiting requests are dispatched, capacity returns, and sheddable work
    // is served again.
    floods.forEach((f) => f.destroy());
    for (const s of await Promise.all(held)) {
      assert.equal(s.status, 200, `served once an endpoint had room: ${s.text().slice(0, 300)}`);
      assert.ok(sims.endpoints.includes(s.headers[DEST]), `sent to a simulator: ${s.headers[DEST]}`);
      s.destroy();
    }
    const back = await waitFor(async () => {
      const c = await capacity(gw);
      return c.sheddable_capacity > 0 && c.saturation < 1 && c;
    }, { timeoutMs: 5000, what: '/v1/capacity to show sheddable capacity again' });
    assert.ok(Number.isInteger(back.sheddable_capacity));
    const ok1 = await postJson(gw.url, '/v1/chat/completions', shortChat('batch after'),
      { headers: { [OBJECTIVE]: 'batch' }, timeoutMs: 5000 });
    assert.equal(ok1.status, 200, `sheddable served again once the pool drained: ${ok1.body.slice(0, 300)}`);
  });

  it('an unknown objective is a 400 naming it (and nothing is sent upstream)', T, async (t) => {
    const sim = await startSim([]);
    t.after(() => sim.stop());
    const gw = await startGateway(['--endpoints', sim.endpoint, '--objective', 'interactive=10']);
    t.after(() => gw.stop());
    const r = await postJson(gw.url, '/v1/chat/completions', shortChat('x'),
      { headers: { [OBJECTIVE]: 'no-such-objective-42' }, timeoutMs: 5000 });
    const e = expectErrorShape(assert, r, { status: 400, code: 'unknown_objective' });
    assert.match(e.message, /no-such-objective-42/, `the message names the objective: ${e.message}`);
    assert.equal(await sim.metric('vllm:request_success_total'), 0, 'nothing reached the simulator');
    const ok = await postJson(gw.url, '/v1/chat/completions', shortChat('x'),
      { headers: { [OBJECTIVE]: 'interactive' }, timeoutMs: 5000 });
    assert.equal(ok.status, 200, `a known objective is served: ${ok.body.slice(0, 300)}`);
  });
});

describe('forwarding the priority to the model server', () => {
  const objectives = ['--objective', 'batch=-1', '--objective', 'interactive=10'];

  it('--forward-priority sets `priority` = −objective priority; a client can only lower its own', T, async (t) => {
    const up = await startUpstream({ name: 'prio' });
    t.after(() => up.stop());
    const gwOn = await startGateway(['--endpoints', up.endpoint, ...objectives, '--forward-priority']);
    const gwOff = await startGateway(['--endpoints', up.endpoint, ...objectives]);
    t.after(() => Promise.all([gwOn.stop(), gwOff.stop()]));
    // (The fake upstream has no /metrics, so it is stale and the pool counts as saturated:
    // only priority ≥ 0 objectives are used here.)
    const body = { model: 'fake-model', messages: [{ role: 'user', content: 'x' }] };
    const send = async (gw, headers, extra = {}) => {
      const r = await postJson(gw.url, '/v1/chat/completions', { ...body, ...extra }, { headers, timeoutMs: 5000 });
      assert.equal(r.status, 200, r.body.slice(0, 300));
      return (await up.stats()).last_body;
    };
    const lastOn = await send(gwOn, { [OBJECTIVE]: 'interactive' });
    assert.equal(lastOn.priority, -10, `forwarded priority: ${JSON.stringify(lastOn)}`);
    const explicit = await send(gwOn, { [OBJECTIVE]: 'interactive' }, { priority: 3 });
    assert.equal(explicit.priority, 3, `a client's own priority is kept: ${JSON.stringify(explicit)}`);
    const raised = await send(gwOn, { [OBJECTIVE]: 'interactive' }, { priority: -1000 });
    assert.equal(raised.priority, -10, `a client cannot raise its own priority: ${JSON.stringify(raised)}`);
    const lastOff = await send(gwOff, { [OBJECTIVE]: 'interactive' });
    assert.ok(!('priority' in lastOff), `no priority without --forward-priority: ${JSON.stringify(lastOff)}`);
    const strippedOff = await send(gwOff, { [OBJECTIVE]: 'interactive' }, { priority: -1000 });
    assert.ok(!('priority' in strippedOff), `a client's priority is stripped without --forward-priority: ${JSON.stringify(strippedOff)}`);
  });

  it('without --forward-priority, a sheddable request to an FCFS simulator succeeds', T, async (t) => {
    // An FCFS vLLM rejects any non-zero priority with 400, so success proves none was forwarded.
    const sim = await startSim([]);
    t.after(() => sim.stop());
    const gw = await startGateway(['--endpoints', sim.endpoint, ...objectives]);
    t.after(() => gw.stop());
    await waitPoolFresh(gw, [sim.endpoint]);
    for (const objective of ['batch', 'interactive']) {
      const r = await postJson(gw.url, '/v1/chat/completions', shortChat(`fcfs ${objective}`),
        { headers: { [OBJECTIVE]: objective }, timeoutMs: 5000 });
      assert.equal(r.status, 200, `${objective}: ${r.body.slice(0, 300)}`);
    }
  });

  it('--forward-priority + a priority-scheduling simulator: sheddable succeeds, and real-time overtakes queued batch', T, async (t) => {
    const sim = await startSim(['--scheduling-policy', 'priority', '--max-num-seqs', '1', '--time-scale', '0.5']);
    t.after(() => sim.stop());
    const gw = await startGateway(['--endpoints', sim.endpoint, ...objectives, '--forward-priority']);
    t.after(() => gw.stop());
    await waitPoolFresh(gw, [sim.endpoint]);

    const r = await postJson(gw.url, '/v1/chat/completions', shortChat('sheddable with priority'),
      { headers: { [OBJECTIVE]: 'batch' }, timeoutMs: 5000 });
    assert.equal(r.status, 200, `sheddable request with forwarded priority: ${r.body.slice(0, 300)}`);

    // One direct stream occupies the only slot; then batch, then interactive queue behind it.
    const blocker = openFlood(sim.url, '/v1/completions', LONG_STREAM, 1);
    t.after(() => blocker.destroy());
    await waitFor(async () => (await sim.metric('vllm:num_requests_running')) === 1,
      { timeoutMs: 3000, what: 'the blocker running' });
    const batch = await openThrough(gw, shortChat('batch job', { max_tokens: 8 }), { [OBJECTIVE]: 'batch' });
    t.after(() => batch.stream.destroy());
    await waitFor(async () => (await sim.metric('vllm:num_requests_waiting')) === 1,
      { timeoutMs: 3000, what: 'the batch request waiting' });
    const rt = await openThrough(gw, shortChat('real-time', { max_tokens: 8 }), { [OBJECTIVE]: 'interactive' });
    t.after(() => rt.stream.destroy());
    assert.equal(batch.status, 200);
    assert.equal(rt.status, 200);
    await waitFor(async () => (await sim.metric('vllm:num_requests_waiting')) === 2,
      { timeoutMs: 3000, what: 'both requests waiting' });

    const firstContent = (s) => waitFor(() => (sseContent(sseData(s.text())).length > 0 ? Date.now() : 0),
      { timeoutMs: 8000, intervalMs: 5, what: 'first content' });
    const tBatch = firstContent(batch.stream);
    const tRt = firstContent(rt.stream);
    blocker.destroy();
    const [atBatch, atRt] = await withTimeout(Promise.all([tBatch, tRt]), 10_000, 'both streams to start');
    assert.ok(atRt < atBatch,
      `the real-time request (priority −10) started before the earlier batch request (priority 1): ` +
      `real-time at ${atRt}, batch at ${atBatch}`);
    await Promise.all([batch.stream.finished(8000), rt.stream.finished(8000)]);
  });
});
