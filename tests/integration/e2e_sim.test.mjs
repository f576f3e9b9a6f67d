// e2e_sim.test.mjs — the gateway in front of two real simulated vLLM servers (`tidegate sim`),
// driven by the official `openai` client: plain and streamed completions with the gateway's
// headers, the merged models list, a client hang-up that must free the simulator's KV cache, and a
// simulator that crashes (SIGUSR1) mid-stream while the gateway keeps serving via the other one.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import OpenAI from 'openai';
import {
  startSim, startGateway, stopAll, SIM_MODEL, request, openStream, sseData, sseContent, waitFor, waitExit,
  postJson, withTimeout,
} from './lib.mjs';

const T = { timeout: 15_000 };

const clientFor = (gw) =>
  new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: 'test', maxRetries: 0, timeout: 10_000 });

describe('gateway in front of two simulators', () => {
  let simA, simB, gw, client;
  const byEndpoint = new Map();

  before(async () => {
    [simA, simB] = await Promise.all([
      startSim(['--lora-modules', 'lora-a']),
      startSim(['--lora-modules', 'lora-b']),
    ]);
    byEndpoint.set(simA.endpoint, simA).set(simB.endpoint, simB);
    gw = await startGateway(['--endpoints', `${simA.endpoint},${simB.endpoint}`]);
    client = clientFor(gw);
  }, T);
  after(stopAll);

  const simOf = (dest) => {
    assert.ok(byEndpoint.has(dest), `x-gateway-destination-endpoint '${dest}' names a simulator`);
    return byEndpoint.get(dest);
  };

  it('chat completion (non-streaming) through the gateway', T, async () => {
    const { data, response } = await client.chat.completions.create({
      model: SIM_MODEL, messages: [{ role: 'user', content: 'hello there' }], max_tokens: 6,
    }).withResponse();
    assert.equal(response.status, 200);
    simOf(response.headers.get('x-gateway-destination-endpoint'));
    const rid = response.headers.get('x-request-id');
    assert.ok(rid && rid.length > 0, 'x-request-id present');
    assert.equal(data.model, SIM_MODEL);
    assert.ok(data.choices[0].message.content.trim().length > 0);
    assert.equal(data.usage.completion_tokens, 6);
    assert.ok(data.usage.prompt_tokens > 0);
  });

  it('chat completion (streaming, include_usage) through the gateway', T, async () => {
    const { data: stream, response } = await client.chat.completions.create({
      model: SIM_MODEL, messages: [{ role: 'user', content: 'stream please' }], max_tokens: 8, stream: true,
      stream_options: { include_usage: true },
    }, { headers: { 'x-request-id': 'e2e-sim-stream-1' } }).withResponse();
    assert.match(response.headers.get('content-type') || '', /^text\/event-stream/i);
    assert.equal(response.headers.get('x-request-id'), 'e2e-sim-stream-1');
    simOf(response.headers.get('x-gateway-destination-endpoint'));
    let contentChunks = 0;
    let text = '';
    let usage = null;
    for await (const chunk of stream) {
      const c = chunk.choices?.[0]?.delta?.content;
      if (c) { contentChunks++; text += c; }
      if (chunk.usage) usage = chunk.usage;
    }
    assert.equal(contentChunks, 8);
    assert.ok(text.trim().length > 0);
    assert.equal(usage?.completion_tokens, 8);
  });

  it('text completion (streaming) through the gateway', T, async () => {
    const stream = await client.completions.create({ model: SIM_MODEL, prompt: 'Once', max_tokens: 5, stream: true });
    let n = 0;
    for await (const chunk of stream) if (chunk.choices?.[0]?.text) n++;
    assert.equal(n, 5);
  });

  it('requests are spread over both simulators', T, async () => {
    const seen = new Set();
    // Distinct prompts, so no prefix-cache affinity can pin them all to one endpoint.
    for (let i = 0; i < 24 && seen.size < 2; i++) {
      const r = await postJson(gw.url, '/v1/completions',
        { model: SIM_MODEL, prompt: `${randomUUID()} request ${i}`, max_tokens: 1 });
      assert.equal(r.status, 200, r.body);
      seen.add(simOf(r.headers['x-gateway-destination-endpoint']).endpoint);
    }
    assert.equal(seen.size, 2, `destinations: ${[...seen]}`);
  });

  it('models.list merges both simulators’ models', T, async () => {
    const ids = [];
    for await (const m of client.models.list()) ids.push(m.id);
    assert.deepEqual(ids.sort(), [SIM_MODEL, 'lora-a', 'lora-b'].sort());
  });

  // Picking is model-aware: the gateway learns each simulator's models from its /v1/models.
  const waitModelsKnown = () => waitFor(async () => {
    const pool = (await request(gw.url, { path: '/v1/pool' })).json;
    return pool.endpoints.every((e) => e.models.length > 0) && pool;
  }, { timeoutMs: 5000, what: 'the gateway to learn every simulator\'s models' });

  it('a LoRA adapter only one simulator serves goes to that simulator', T, async () => {
    await waitModelsKnown();
    for (let i = 0; i < 5; i++) {
      const r = await postJson(gw.url, '/v1/chat/completions',
        { model: 'lora-a', messages: [{ role: 'user', content: `x ${i}` }], max_tokens: 2 });
      assert.equal(r.status, 200, r.body);
      assert.equal(simOf(r.headers['x-gateway-destination-endpoint']), simA);
      assert.equal(r.json.model, 'lora-a');
    }
  });

  it('a model no simulator serves is a 404 model_not_found from the gateway', T, async () => {
    await waitModelsKnown();
    const r = await postJson(gw.url, '/v1/chat/completions',
      { model: 'no-such-model', messages: [{ role: 'user', content: 'x' }], max_tokens: 2 });
    assert.equal(r.status, 404, r.body);
    assert.equal(r.json.error.code, 'model_not_found');
    assert.match(r.json.error.message, /no-such-model/);
    assert.match(r.json.error.message, /lora-a/);  // lists what is served
    assert.equal(r.headers['x-gateway-destination-endpoint'], undefined);
  });

  it('a client hang-up mid-stream frees the simulator’s sequence and KV', T, async () => {
    const s = await openStream(gw.url, '/v1/chat/completions', {
      model: SIM_MODEL, messages: [{ role: 'user', content: 'a long answer please '.repeat(50) }],
      max_tokens: 100000, stream: true,
    });
    let sim;
    try {
      assert.equal(s.status, 200, s.text());
      sim = simOf(s.headers['x-gateway-destination-endpoint']);
      await s.waitText(300, 5000);
      await waitFor(async () => {
        const m = await sim.metrics();
        return m.sum('vllm:num_requests_running') === 1 && m.sum('vllm:kv_cache_usage_perc') > 0;
      }, { timeoutMs: 3000, what: 'the stream running on the simulator with KV in use' });
    } finally {
      s.destroy();
    }
    await waitFor(async () => {
      const m = await sim.metrics();
      return m.sum('vllm:num_requests_running') === 0 && m.sum('vllm:kv_cache_usage_perc') === 0;
    }, { timeoutMs: 3000, what: 'the simulator’s running count and KV usage back to 0' });
    // Nothing is left running on the other one either.
    for (const other of [simA, simB]) assert.equal(await other.metric('vllm:num_requests_running'), 0);
  });
});

describe('a simulator crashing mid-stream behind the gateway', () => {
  after(stopAll);

  it('the client gets an upstream_disconnected error event; the gateway serves via the other', T, async () => {
    const [simA, simB] = await Promise.all([startSim([]), startSim([])]);
    const gw = await startGateway(['--endpoints', `${simA.endpoint},${simB.endpoint}`]);
    const byEndpoint = new Map([[simA.endpoint, simA], [simB.endpoint, simB]]);

    const s = await openStream(gw.url, '/v1/chat/completions', {
      model: SIM_MODEL, messages: [{ role: 'user', content: 'x' }], max_tokens: 100000, stream: true,
    });
    assert.equal(s.status, 200);
    const dest = s.headers['x-gateway-destination-endpoint'];
    const victim = byEndpoint.get(dest);
    assert.ok(victim, `destination ${dest} is one of the simulators`);
    const survivor = victim === simA ? simB : simA;
    await waitFor(() => sseContent(sseData(s.text())).length > 0,
      { timeoutMs: 3000, what: 'some streamed content' });

    victim.signal('SIGUSR1');
    const end = await s.finished(5000);
    const exit = await waitExit(victim.proc, 5000);
    assert.equal(exit.code, 137, `the simulator crashed (code ${exit.code}, signal ${exit.signal})`);

    const events = sseData(s.text());
    const errIdx = events.findIndex((e) => {
      try { return JSON.parse(e)?.error !== undefined; } catch { return false; }
    });
    assert.ok(errIdx >= 0, `an error event was sent; tail of body:\n${s.text().slice(-600)}`);
    assert.ok(sseContent(events.slice(0, errIdx)).length > 0, 'content before the error was relayed');
    const err = JSON.parse(events[errIdx]).error;
    assert.equal(err.code, 'upstream_disconnected', events[errIdx]);
    assert.ok(typeof err.message === 'string' && err.message.length > 0);
    assert.ok(!events.slice(errIdx + 1).some((e) => e !== '[DONE]'), 'nothing but [DONE] after the error');
    assert.ok(end.complete, `the client's response ended cleanly after the error event (${end.error?.message})`);

    // The gateway keeps serving, on the surviving simulator, through the official client.
    const client = clientFor(gw);
    for (let i = 0; i < 4; i++) {
      const { data, response } = await withTimeout(client.chat.completions.create({
        model: SIM_MODEL, messages: [{ role: 'user', content: 'still there?' }], max_tokens: 3,
      }).withResponse(), 8000, `request ${i} after the crash`);
      assert.equal(response.status, 200);
      assert.equal(response.headers.get('x-gateway-destination-endpoint'), survivor.endpoint);
      assert.equal(data.usage.completion_tokens, 3);
    }
    const stream = await client.chat.completions.create({
      model: SIM_MODEL, messages: [{ role: 'user', content: 'x' }], max_tokens: 4, stream: true,
    });
    let n = 0;
    for await (const chunk of stream) if (chunk.choices?.[0]?.delta?.content) n++;
    assert.equal(n, 4);
    await gw.stop();
    await survivor.stop();
  });
});
