// sim.test.mjs — the vLLM-compatible simulator (`tidegate sim`) against real clients: the official
// `openai` npm client for chat and text completions (plain and streamed, usage, max_tokens, LoRA
// adapters as models), /v1/models, /health, vLLM-like errors, prefix caching, the vLLM metric
// names checked by `promtool check metrics`, KV freed when a client hangs up, --max-num-seqs
// queueing, fault injection (--fail-rate, --stall-after-tokens, SIGUSR1), --time-scale and the
// busy-time counter.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import http from 'node:http';
import { randomUUID } from 'node:crypto';
import OpenAI from 'openai';
import {
  startSim, stopAll, SIM_MODEL, request, postJson, openStream, sseData, sseContent, waitFor,
  waitExit, sleep, tryConnect, expectErrorShape, withTimeout,
} from './lib.mjs';

const T = { timeout: 15_000 };
const ADAPTERS = ['sql-lora', 'chat-lora'];

const clientFor = (sim, extra = {}) =>
  new OpenAI({ baseURL: `${sim.url}/v1`, apiKey: 'test', maxRetries: 0, timeout: 10_000, ...extra });

// A prompt nobody sent before (so it cannot hit the prefix cache by accident).
const freshPrompt = (chars = 200) => {
  let s = `${randomUUID()} `;
  while (s.length < chars) s += 'the quick brown fox jumps over the lazy dog; ';
  return s.slice(0, chars);
};

// Every vLLM metric the simulator issue names, and the simulator's busy-time counter.
const REQUIRED_METRICS = [
  'vllm:num_requests_running', 'vllm:num_requests_waiting', 'vllm:kv_cache_usage_perc',
  'vllm:prefix_cache_queries_total', 'vllm:prefix_cache_hits_total',
  'vllm:time_to_first_token_seconds_bucket', 'vllm:time_to_first_token_seconds_sum',
  'vllm:time_to_first_token_seconds_count',
  'vllm:inter_token_latency_seconds_bucket', 'vllm:inter_token_latency_seconds_sum',
  'vllm:inter_token_latency_seconds_count',
  'vllm:e2e_request_latency_seconds_bucket', 'vllm:e2e_request_latency_seconds_sum',
  'vllm:e2e_request_latency_seconds_count',
  'vllm:num_preemptions_total', 'vllm:lora_requests_info', 'vllm:cache_config_info',
  'tidegate_sim_busy_seconds_total',
];

// Streams a chat completion through the openai client and collects what arrives.
async function collectChat(client, params, options) {
  const stream = await client.chat.completions.create({ ...params, stream: true }, options);
  const out = { chunks: [], content: '', contentChunks: 0, usage: null, finish: null };
  for await (const chunk of stream) {
    out.chunks.push(chunk);
    const c = chunk.choices?.[0];
    if (c?.delta?.content) { out.content += c.delta.content; out.contentChunks++; }
    if (c?.finish_reason) out.finish = c.finish_reason;
    if (chunk.usage) out.usage = chunk.usage;
  }
  return out;
}

describe('sim: the OpenAI API through the official client', () => {
  let sim, client;

  before(async () => {
    sim = await startSim(['--lora-modules', `${ADAPTERS[0]},${ADAPTERS[1]}=/ignored/path`]);
    client = clientFor(sim);
  }, T);
  after(stopAll);

  it('chat.completions.create (non-streaming): content, usage, max_tokens', T, async () => {
    const r = await client.chat.completions.create({
      model: SIM_MODEL, messages: [{ role: 'user', content: 'say hello' }], max_tokens: 7,
    });
    assert.equal(r.object, 'chat.completion');
    assert.equal(r.model, SIM_MODEL);
    assert.match(r.id, /^chatcmpl-/);
    const msg = r.choices[0].message;
    assert.equal(msg.role, 'assistant');
    assert.equal(typeof msg.content, 'string');
    assert.ok(msg.content.trim().length > 0, `content: ${JSON.stringify(msg.content)}`);
    assert.equal(r.choices[0].finish_reason, 'length');
    assert.ok(r.usage.prompt_tokens > 0, JSON.stringify(r.usage));
    assert.equal(r.usage.completion_tokens, 7, JSON.stringify(r.usage));
    assert.equal(r.usage.total_tokens, r.usage.prompt_tokens + r.usage.completion_tokens);
    assert.equal(typeof r.usage.prompt_tokens_details?.cached_tokens, 'number');
  });

  it('a longer prompt counts more prompt tokens', T, async () => {
    const ask = (content) => client.chat.completions.create({
      model: SIM_MODEL, messages: [{ role: 'user', content }], max_tokens: 1,
    });
    const short = await ask('hi');
    const long = await ask(freshPrompt(2000));
    assert.ok(long.usage.prompt_tokens >= short.usage.prompt_tokens + 300,
      `short ${short.usage.prompt_tokens}, long ${long.usage.prompt_tokens} (≈4 chars per token)`);
  });

  it('chat.completions.create (streaming, include_usage): chunks, final usage chunk', T, async () => {
    const s = await collectChat(client, {
      model: SIM_MODEL, messages: [{ role: 'user', content: 'tell me a story' }], max_tokens: 9,
      stream_options: { include_usage: true },
    });
    assert.ok(s.chunks.every((c) => c.object === 'chat.completion.chunk'));
    assert.equal(s.chunks[0].choices[0].delta.role, 'assistant', 'first chunk carries the role');
    assert.equal(s.contentChunks, 9, 'one content chunk per token');
    assert.ok(s.content.trim().length > 0);
    assert.equal(s.finish, 'length');
    const last = s.chunks.at(-1);
    assert.deepEqual(last.choices, [], 'the usage chunk has no choices');
    assert.ok(last.usage, 'the last chunk carries usage');
    assert.equal(last.usage.completion_tokens, 9);
    assert.ok(last.usage.prompt_tokens > 0);
    assert.equal(last.usage.total_tokens, last.usage.prompt_tokens + 9);
    assert.equal(s.chunks.filter((c) => c.usage).length, 1, 'exactly one chunk has usage');
  });

  it('streaming without include_usage has no usage chunk', T, async () => {
    const s = await collectChat(client, {
      model: SIM_MODEL, messages: [{ role: 'user', content: 'hi' }], max_tokens: 4,
    });
    assert.equal(s.contentChunks, 4);
    assert.equal(s.usage, null);
    assert.ok(s.chunks.every((c) => c.choices.length === 1));
  });

  it('completions.create, plain and streamed', T, async () => {
    const c = await client.completions.create({ model: SIM_MODEL, prompt: 'Once upon a time', max_tokens: 5 });
    assert.equal(c.object, 'text_completion');
    assert.ok(c.choices[0].text.trim().length > 0);
    assert.equal(c.usage.completion_tokens, 5);
    assert.ok(c.usage.prompt_tokens > 0);
    // Without max_tokens a text completion is 16 tokens long, as OpenAI's default.
    const d = await client.completions.create({ model: SIM_MODEL, prompt: 'Once upon a time' });
    assert.equal(d.usage.completion_tokens, 16);

    const stream = await client.completions.create({
      model: SIM_MODEL, prompt: 'Once upon a time', max_tokens: 6, stream: true,
      stream_options: { include_usage: true },
    });
    let text = '';
    let textChunks = 0;
    let usage = null;
    for await (const chunk of stream) {
      if (chunk.choices?.[0]?.text) { text += chunk.choices[0].text; textChunks++; }
      if (chunk.usage) usage = chunk.usage;
    }
    assert.equal(textChunks, 6);
    assert.ok(text.trim().length > 0);
    assert.equal(usage?.completion_tokens, 6);
    assert.ok(usage.prompt_tokens > 0);
  });

  it('a LoRA adapter is served as a model', T, async () => {
    const r = await client.chat.completions.create({
      model: ADAPTERS[1], messages: [{ role: 'user', content: 'hi' }], max_tokens: 3,
    });
    assert.equal(r.model, ADAPTERS[1]);
    assert.equal(r.usage.completion_tokens, 3);
  });

  it('models.list: the base model and the --lora-modules adapters', T, async () => {
    const models = [];
    for await (const m of client.models.list()) models.push(m);
    assert.deepEqual(models.map((m) => m.id).sort(), [SIM_MODEL, ...ADAPTERS].sort());
    for (const m of models) {
      assert.equal(m.object, 'model');
      if (ADAPTERS.includes(m.id)) assert.equal(m.parent, SIM_MODEL, `adapter ${m.id} names its base`);
    }
  });

  it('GET /health is 200', T, async () => {
    const r = await request(sim.url, { path: '/health' });
    assert.equal(r.status, 200);
  });

  it('malformed JSON and a missing messages field are vLLM-like 400s', T, async () => {
    const bad = await request(sim.url, {
      method: 'POST', path: '/v1/chat/completions', body: '{"model": "x", "messages": [',
    });
    const e1 = expectErrorShape(assert, bad, { status: 400 });
    assert.equal(e1.type, 'BadRequestError');
    const noMsgs = await postJson(sim.url, '/v1/chat/completions', { model: SIM_MODEL });
    const e2 = expectErrorShape(assert, noMsgs, { status: 400 });
    assert.match(e2.message, /messages/);
    const noPrompt = await postJson(sim.url, '/v1/completions', { model: SIM_MODEL });
    expectErrorShape(assert, noPrompt, { status: 400 });
    // The official client surfaces it as a BadRequestError.
    await assert.rejects(client.chat.completions.create({ model: SIM_MODEL, max_tokens: 0,
      messages: [{ role: 'user', content: 'x' }] }), (err) => {
      assert.ok(err instanceof OpenAI.BadRequestError, `BadRequestError, got ${err}`);
      assert.equal(err.status, 400);
      return true;
    });
  });

  it('an unknown model is a 404', T, async () => {
    const r = await postJson(sim.url, '/v1/chat/completions',
      { model: 'no-such-model', messages: [{ role: 'user', content: 'x' }] });
    const e = expectErrorShape(assert, r, { status: 404 });
    assert.match(e.message, /no-such-model/);
    await assert.rejects(client.completions.create({ model: 'no-such-model', prompt: 'x' }),
      (err) => { assert.ok(err instanceof OpenAI.NotFoundError, String(err)); return true; });
  });

  it('a repeated long prompt hits the prefix cache', T, async () => {
    const m0 = await sim.metrics();
    const prompt = freshPrompt(4000);  // ≈1000 tokens ≈ 60 blocks of 16
    const ask = () => client.chat.completions.create({
      model: SIM_MODEL, messages: [{ role: 'user', content: prompt }], max_tokens: 2,
    });
    const first = await ask();
    assert.equal(first.usage.prompt_tokens_details.cached_tokens, 0, 'a fresh prompt has no cached prefix');
    const m1 = await sim.metrics();
    const second = await ask();
    const cached = second.usage.prompt_tokens_details.cached_tokens;
    assert.ok(cached > 0, `cached_tokens the second time: ${cached}`);
    assert.ok(cached >= second.usage.prompt_tokens - 32 && cached < second.usage.prompt_tokens,
      `nearly the whole prompt is cached (${cached} of ${second.usage.prompt_tokens})`);
    const m2 = await sim.metrics();
    assert.ok(m1.sum('vllm:prefix_cache_queries_total') > m0.sum('vllm:prefix_cache_queries_total'));
    const hits1 = m1.sum('vllm:prefix_cache_hits_total');
    const hits2 = m2.sum('vllm:prefix_cache_hits_total');
    assert.ok(hits2 - hits1 >= cached,
      `prefix_cache_hits_total rose by ${hits2 - hits1}, at least the ${cached} cached tokens`);
  });

  it('/metrics has every vLLM metric and passes promtool (but for the ":" lint)', T, async () => {
    // Some traffic first so the histograms and the LoRA info have content.
    await client.chat.completions.create({
      model: ADAPTERS[0], messages: [{ role: 'user', content: 'x' }], max_tokens: 2,
    });
    const r = await request(sim.url, { path: '/metrics' });
    assert.equal(r.status, 200);
    assert.match(String(r.headers['content-type']), /^text\/plain/);
    const m = await sim.metrics();
    for (const name of REQUIRED_METRICS) assert.ok(m.has(name), `metric ${name} present`);
    assert.ok(m.sum('vllm:time_to_first_token_seconds_count') > 0);
    assert.ok(m.sum('vllm:e2e_request_latency_seconds_count') > 0);
    const cache = m.series('vllm:cache_config_info')[0].labels;
    assert.equal(cache.block_size, '16');
    assert.equal(cache.num_gpu_blocks, '25000');
    const lora = m.series('vllm:lora_requests_info')[0].labels;
    assert.deepEqual(Object.keys(lora).sort(), ['max_lora', 'running_lora_adapters', 'waiting_lora_adapters']);
    assert.equal(lora.max_lora, '1');
    for (const name of ['vllm:num_requests_running', 'vllm:num_requests_waiting', 'vllm:kv_cache_usage_perc']) {
      assert.equal(m.series(name)[0].labels.model_name, SIM_MODEL, `${name} has model_name`);
    }

    const pt = spawnSync('promtool', ['check', 'metrics'], { input: r.body, encoding: 'utf8', timeout: 10_000 });
    assert.equal(pt.error, undefined, `promtool ran: ${pt.error}`);
    const lines = `${pt.stdout}\n${pt.stderr}`.split('\n').map((l) => l.trim()).filter(Boolean);
    const other = lines.filter((l) => !/^\S+ metric names should not contain ':'$/.test(l));
    assert.deepEqual(other, [], `promtool reports only the ':' lint; it said:\n${lines.join('\n')}`);
    // The ':' lint is about vLLM's own names (and nothing else); exit status 3 = lint only.
    for (const l of lines) assert.match(l, /^vllm:/, l);
    assert.ok(pt.status === 0 || pt.status === 3, `promtool exit status ${pt.status}`);
  });

  it('a client that hangs up mid-stream frees its sequence and KV blocks', T, async () => {
    assert.equal(await sim.metric('vllm:num_requests_running'), 0, 'idle before');
    const s = await openStream(sim.url, '/v1/chat/completions', {
      model: SIM_MODEL, messages: [{ role: 'user', content: freshPrompt(3000) }], max_tokens: 100000, stream: true,
    });
    try {
      assert.equal(s.status, 200);
      await s.waitText(500, 5000);
      await waitFor(async () => {
        const m = await sim.metrics();
        return m.sum('vllm:num_requests_running') === 1 && m.sum('vllm:kv_cache_usage_perc') > 0;
      }, { timeoutMs: 3000, what: 'the stream to be running with KV in use' });
    } finally {
      s.destroy();
    }
    await waitFor(async () => {
      const m = await sim.metrics();
      return m.sum('vllm:num_requests_running') === 0 && m.sum('vllm:num_requests_waiting') === 0 &&
        m.sum('vllm:kv_cache_usage_perc') === 0;
    }, { timeoutMs: 3000, what: 'running and kv_cache_usage_perc back to 0 after the hang-up' });
  });

  it('a client that hangs up on a non-streaming request frees it too', T, async () => {
    const payload = JSON.stringify({ model: SIM_MODEL, prompt: freshPrompt(2000), max_tokens: 100000 });
    const req = http.request({
      host: '127.0.0.1', port: sim.port, path: '/v1/completions', method: 'POST', agent: false,
      headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) },
    });
    req.on('error', () => {});
    req.on('response', (res) => assert.fail(`no response expected yet (status ${res.statusCode})`));
    req.end(payload);
    try {
      await waitFor(async () => {
        const m = await sim.metrics();
        return m.sum('vllm:num_requests_running') === 1 && m.sum('vllm:kv_cache_usage_perc') > 0;
      }, { timeoutMs: 3000, what: 'the request to be running with KV in use' });
    } finally {
      req.destroy();
    }
    await waitFor(async () => {
      const m = await sim.metrics();
      return m.sum('vllm:num_requests_running') === 0 && m.sum('vllm:kv_cache_usage_perc') === 0;
    }, { timeoutMs: 3000, what: 'running and kv_cache_usage_perc back to 0 after the hang-up' });
  });

  it('tidegate_sim_busy_seconds_total grows while serving, not while idle', T, async () => {
    const busy = () => sim.metric('tidegate_sim_busy_seconds_total');
    const s = await openStream(sim.url, '/v1/completions',
      { model: SIM_MODEL, prompt: 'count', max_tokens: 100000, stream: true });
    let during;
    try {
      await s.waitText(0, 5000);
      const b0 = await busy();
      const t0 = Date.now();
      await sleep(400);
      const b1 = await busy();
      const wall = (Date.now() - t0) / 1000;
      during = b1 - b0;
      // Time scale 1: busy time advances about as fast as the wall clock while a step runs.
      assert.ok(during > 0.5 * wall && during < 1.5 * wall + 0.05,
        `busy seconds grew by ${during.toFixed(3)} in ${wall.toFixed(3)} s of serving`);
    } finally {
      s.destroy();
    }
    await waitFor(async () => (await sim.metric('vllm:num_requests_running')) === 0,
      { timeoutMs: 3000, what: 'the engine to go idle' });
    const i0 = await busy();
    await sleep(300);
    const i1 = await busy();
    assert.equal(i1, i0, 'no busy time accrues while idle');
  });
});

describe('sim: scheduling limits, fault injection, time scale', () => {
  after(stopAll);

  it('--max-num-seqs 2: of 5 concurrent streams 2 run and the rest wait', T, async (t) => {
    const sim = await startSim(['--max-num-seqs', '2']);
    t.after(() => sim.stop());
    const body = { model: SIM_MODEL, prompt: 'go', max_tokens: 100000, stream: true };
    const streams = [];
    t.after(() => streams.forEach((s) => s.destroy()));
    // Whether a waiting request gets its response head before it is scheduled is not part of
    // the contract (vLLM sends it with the first chunk), so the metrics are watched meanwhile.
    const opening = Array.from({ length: 5 }, () => openStream(sim.url, '/v1/completions', body)
      .then((s) => { streams.push(s); return s; }));
    opening.forEach((p) => p.catch(() => {}));
    let maxRunning = 0;
    let sawWaiting = 0;
    await waitFor(async () => {
      const m = await sim.metrics();
      const running = m.sum('vllm:num_requests_running');
      const waiting = m.sum('vllm:num_requests_waiting');
      maxRunning = Math.max(maxRunning, running);
      assert.ok(running <= 2, `running ${running} ≤ 2`);
      if (running === 2 && waiting === 3) sawWaiting = waiting;
      return sawWaiting;
    }, { timeoutMs: 5000, what: 'running = 2 and waiting = 3' });
    // Still so a little later: the two running streams are long.
    for (let i = 0; i < 5; i++) {
      const m = await sim.metrics();
      assert.equal(m.sum('vllm:num_requests_running'), 2);
      assert.ok(m.sum('vllm:num_requests_waiting') >= 1);
      await sleep(50);
    }
    // Hanging up every stream (each as soon as it has opened) lets the waiting ones in, and in
    // the end all five are gone.
    const opened = await withTimeout(Promise.all(opening.map((p) => p.then((s) => { s.destroy(); return s; }))),
      5000, 'all five response heads');
    assert.ok(opened.every((s) => s.status === 200));
    await waitFor(async () => {
      const m = await sim.metrics();
      return m.sum('vllm:num_requests_running') === 0 && m.sum('vllm:num_requests_waiting') === 0;
    }, { timeoutMs: 5000, what: 'all five to be gone' });
  });

  it('--mode echo: a completion that runs out of prompt finishes "stop" and is counted so', T, async (t) => {
    const sim = await startSim(['--mode', 'echo']);
    t.after(() => sim.stop());
    const long = await postJson(sim.url, '/v1/completions',
      { model: SIM_MODEL, prompt: 'one two three four', max_tokens: 50 });
    assert.equal(long.status, 200);
    assert.equal(long.json.choices[0].finish_reason, 'stop');
    assert.equal(long.json.choices[0].text, 'one two three four');
    const short = await postJson(sim.url, '/v1/completions',
      { model: SIM_MODEL, prompt: 'one two three four', max_tokens: 2 });
    assert.equal(short.json.choices[0].finish_reason, 'length');
    const text = (await request(sim.url, { path: '/metrics' })).body;
    const count = (reason) => Number((text.match(new RegExp(
      `^vllm:request_success_total\\{[^}]*finished_reason="${reason}"[^}]*\\} (\\S+)$`, 'm')) || [])[1]);
    assert.equal(count('stop'), 1, text);
    assert.equal(count('length'), 1, text);
  });

  it('response ids differ between two simulator processes', T, async (t) => {
    const a = await startSim([]);
    t.after(() => a.stop());
    const b = await startSim([]);
    t.after(() => b.stop());
    const body = { model: SIM_MODEL, prompt: 'x', max_tokens: 1 };
    const ra = await postJson(a.url, '/v1/completions', body);
    const rb = await postJson(b.url, '/v1/completions', body);
    assert.match(ra.json.id, /^cmpl-[0-9a-f]{32}$/);
    assert.notEqual(ra.json.id, rb.json.id);
  });

  it('--fail-rate 1: every completion is a 500 with an OpenAI-style error body', T, async (t) => {
    const sim = await startSim(['--fail-rate', '1']);
    t.after(() => sim.stop());
    const r = await postJson(sim.url, '/v1/chat/completions',
      { model: SIM_MODEL, messages: [{ role: 'user', content: 'x' }] });
    const e = expectErrorShape(assert, r, { status: 500 });
    assert.ok(e.message.length > 0);
    const s = await postJson(sim.url, '/v1/completions', { model: SIM_MODEL, prompt: 'x', stream: true });
    expectErrorShape(assert, s, { status: 500 });
    await assert.rejects(clientFor(sim).chat.completions.create(
      { model: SIM_MODEL, messages: [{ role: 'user', content: 'x' }] }), (err) => {
      assert.ok(err instanceof OpenAI.InternalServerError, `InternalServerError, got ${err}`);
      assert.equal(err.status, 500);
      return true;
    });
    // Only completions fail: the server itself is fine.
    assert.equal((await request(sim.url, { path: '/health' })).status, 200);
    assert.equal((await request(sim.url, { path: '/v1/models' })).status, 200);
  });

  it('--stall-after-tokens 3: the stream goes silent after 3 tokens', T, async (t) => {
    const sim = await startSim(['--stall-after-tokens', '3']);
    t.after(() => sim.stop());
    const ac = new AbortController();
    const client = clientFor(sim);
    const stream = await client.chat.completions.create({
      model: SIM_MODEL, messages: [{ role: 'user', content: 'x' }], max_tokens: 50, stream: true,
    }, { signal: ac.signal });
    const contents = [];
    let idle;
    const armIdle = () => { clearTimeout(idle); idle = setTimeout(() => ac.abort(), 1500); };
    armIdle();
    const started = Date.now();
    // The client ends the iteration quietly when its request is aborted (openai-node swallows
    // the AbortError of a stream), so the proof of the stall is that only the abort ended it.
    try {
      await withTimeout((async () => {
        for await (const chunk of stream) {
          armIdle();
          const c = chunk.choices?.[0]?.delta?.content;
          if (c) contents.push(c);
        }
      })(), 8000, 'the stalled stream to be abandoned');
    } catch (err) {
      assert.ok(err instanceof OpenAI.APIUserAbortError || err.name === 'AbortError',
        `the client gave up waiting (not an error from the server): ${err}`);
    } finally {
      clearTimeout(idle);
    }
    assert.ok(ac.signal.aborted, 'the stream did not end by itself: the idle wait gave up on it');
    assert.equal(contents.length, 3, `tokens before the stall: ${JSON.stringify(contents)}`);
    assert.ok(Date.now() - started >= 1400, 'it stayed silent for the whole idle wait');

    // The raw view: the connection stays open, with no [DONE] and no more events.
    const s = await openStream(sim.url, '/v1/completions',
      { model: SIM_MODEL, prompt: 'x', max_tokens: 50, stream: true });
    t.after(() => s.destroy());
    await s.waitText(0, 3000);
    await sleep(800);
    const events = sseData(s.text());
    assert.equal(events.length, 3, `events: ${s.text()}`);
    assert.ok(!events.includes('[DONE]'));
    const end = await Promise.race([s.done, sleep(200).then(() => 'open')]);
    assert.equal(end, 'open', 'the response has not ended');
  });

  it('SIGUSR1 mid-stream: the client stream breaks and the sim exits non-zero', T, async (t) => {
    const sim = await startSim([]);
    t.after(() => sim.stop());
    const client = clientFor(sim);
    const stream = await client.chat.completions.create({
      model: SIM_MODEL, messages: [{ role: 'user', content: 'x' }], max_tokens: 100000, stream: true,
    });
    let chunks = 0;
    await assert.rejects(withTimeout((async () => {
      for await (const chunk of stream) {
        if (chunk.choices?.[0]?.delta?.content && ++chunks === 5) sim.signal('SIGUSR1');
      }
    })(), 8000, 'the stream to break'), (err) => {
      assert.ok(!(err instanceof OpenAI.APIUserAbortError), `a broken stream, not an abort: ${err}`);
      assert.doesNotMatch(String(err), /timed out/);
      return true;
    });
    assert.ok(chunks >= 5, `chunks before the crash: ${chunks}`);
    const { code, signal } = await waitExit(sim.proc, 5000);
    assert.ok(code !== 0 || signal, `exit code ${code}, signal ${signal}`);
    assert.equal(code, 137, 'crash-like exit status');
    assert.equal(await tryConnect(sim.port), 'refused', 'nothing listens any more');
  });

  it('--time-scale: the same request finishes about X times faster', T, async (t) => {
    const slow = await startSim(['--time-scale', '1']);
    t.after(() => slow.stop());
    const fast = await startSim(['--time-scale', '5']);
    t.after(() => fast.stop());
    const body = { model: SIM_MODEL, prompt: 'tick', max_tokens: 100 };
    const timed = async (sim) => {
      const t0 = performance.now();
      const r = await postJson(sim.url, '/v1/completions', body);
      assert.equal(r.status, 200, r.body);
      assert.equal(r.json.usage.completion_tokens, 100);
      return performance.now() - t0;
    };
    // Best of two each, to dampen scheduling noise on a busy machine.
    const slowMs = Math.min(await timed(slow), await timed(slow));
    const fastMs = Math.min(await timed(fast), await timed(fast));
    const ratio = slowMs / fastMs;
    // 100 decode steps of ≈6.35 ms + a prefill ≈ 0.65 s of simulated time.
    assert.ok(slowMs > 400 && slowMs < 2500, `time scale 1 took ${slowMs.toFixed(0)} ms`);
    assert.ok(ratio > 2.5 && ratio < 8, `slow ${slowMs.toFixed(0)} ms / fast ${fastMs.toFixed(0)} ms = ${ratio.toFixed(2)}, expected ≈5`);
    // Metrics are in simulated time: both servers report about the same latency.
    const e2e = async (sim) => {
      const m = await sim.metrics();
      return m.sum('vllm:e2e_request_latency_seconds_sum') / m.sum('vllm:e2e_request_latency_seconds_count');
    };
    const [se, fe] = [await e2e(slow), await e2e(fast)];
    assert.ok(fe > 0.7 * se && fe < 1.3 * se,
      `mean simulated e2e latency: scale 1 ${se.toFixed(3)} s, scale 5 ${fe.toFixed(3)} s`);
    assert.ok(se > 0.4 && se < 1.2, `simulated e2e ≈ 0.65 s, got ${se.toFixed(3)}`);
  });
});
