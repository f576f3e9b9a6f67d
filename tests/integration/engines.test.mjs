// Engines beyond vLLM: one gateway in auto mode in front of one simulator of each personality
// (vllm, sglang, trtllm-serve, Triton, llama.cpp), as each engine really exports its metrics.
//
//   - /v1/pool names each engine, and its waiting, running and KV figures equal what that
//     simulator reports about itself (read from its own page: vLLM's gauges, SGLang's total
//     series, trtllm-serve's JSON iteration statistics, Triton's metrics port, llama.cpp's
//     gauges);
//   - a queue on the SGLang personality with priority scheduling and two tensor ranks counts
//     once (the page holds six copies of each count);
//   - label-derived model names that do not name the served model (trtllm's "undefined",
//     Triton's "tensorrt_llm", llama.cpp's none) do not turn served models into LoRA adapters;
//   - a trtllm-serve started without return_perf_metrics, and a llama-server without --metrics,
//     get one clear warning each and are routed on in-flight accounting (not left stale).
import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import {
  startSim, startGateway, stopAll, request, postJson, waitFor, openFlood, parseMetrics, SIM_MODEL,
} from './lib.mjs';

const T = { timeout: 60000 };

after(stopAll);

const pool = async (gw) => (await request(gw.url, { path: '/v1/pool' })).json;
const entry = (p, ep) => p.endpoints.find((e) => e.address === ep);

// Each simulator's own account of its queue, from the page it serves.
async function selfReport(kind, sim) {
  if (kind === 'trtllm') {
    const r = await request(sim.url, { path: '/metrics' });
    const it = JSON.parse(r.body).at(-1);
    const k = it.kvCacheStats;
    return { waiting: it.numQueuedRequests, running: it.numActiveRequests, kv: k.usedNumBlocks / k.maxNumBlocks };
  }
  const url = kind === 'triton' ? sim.metricsUrl : sim.url;
  const r = await request(url, { path: '/metrics' });
  assert.equal(r.status, 200, `${kind} metrics: ${r.body.slice(0, 200)}`);
  const m = parseMetrics(r.body);
  switch (kind) {
    case 'vllm':
      return { waiting: m.sum('vllm:num_requests_waiting'), running: m.sum('vllm:num_requests_running'), kv: m.sum('vllm:kv_cache_usage_perc') };
    case 'sglang':
      return {
        waiting: m.get('sglang:num_queue_reqs', { priority: '', tp_rank: '0' }),
        running: m.get('sglang:num_running_reqs', { priority: '', tp_rank: '0' }),
        kv: m.get('sglang:token_usage', { tp_rank: '0' }),
      };
    case 'triton':
      return {
        waiting: m.get('nv_trt_llm_request_metrics', { request_type: 'waiting' }),
        running: m.get('nv_trt_llm_request_metrics', { request_type: 'active' }),
        kv: m.get('nv_trt_llm_kv_cache_block_metrics', { kv_cache_block_type: 'fraction' }),
      };
    case 'llamacpp':
      return { waiting: m.sum('llamacpp:requests_deferred'), running: m.sum('llamacpp:requests_processing'), kv: null };
    default:
      throw new Error(kind);
  }
}

// Slow engines (steps 50× longer than the profile says) with 2 batch slots: 5 requests give a
// queue of 3 that stays put for minutes.
const SLOW = ['--max-num-seqs', '2', '--time-scale', '0.02'];

describe('engines beyond vLLM', () => {
  it('a mixed pool in auto mode: each engine recognised, its figures as it reports them, SGLang priority counted once', T, async (t) => {
    const sims = {
      vllm: await startSim([...SLOW]),
      sglang: await startSim(['--personality', 'sglang', '--scheduling-policy', 'priority', '--tp-size', '2', ...SLOW]),
      trtllm: await startSim(['--personality', 'trtllm', ...SLOW]),
      triton: await startSim(['--personality', 'triton', '--metrics-port', '0', ...SLOW]),
      llamacpp: await startSim(['--personality', 'llamacpp', ...SLOW]),
    };
    t.after(() => Promise.all(Object.values(sims).map((s) => s.stop())));
    const tm = sims.triton.output().match(/sim metrics on http:\/\/127\.0\.0\.1:(\d+)\/metrics/);
    assert.ok(tm, `the triton personality prints its metrics port: ${sims.triton.output()}`);
    sims.triton.metricsUrl = `http://127.0.0.1:${tm[1]}`;
    // The inference port of the Triton personality has no metrics: they are on their own port.
    assert.equal((await request(sims.triton.url, { path: '/metrics' })).status, 404);

    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tg-engines-'));
    t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
    const cfg = path.join(dir, 'gateway.yaml');
    fs.writeFileSync(cfg, [
      'endpoints:',
      `  - ${sims.vllm.endpoint}`,
      `  - ${sims.sglang.endpoint}`,
      `  - ${sims.trtllm.endpoint}`,
      `  - {address: ${sims.triton.endpoint}, metrics_port: ${tm[1]}}`,
      `  - ${sims.llamacpp.endpoint}`,
      '',
    ].join('\n'));
    const gw = await startGateway(['--config', cfg, '--scrape-interval', '50ms']);
    t.after(() => gw.stop());

    const want = {
      vllm: { engine: 'vllm', path: '/metrics', port: sims.vllm.port },
      sglang: { engine: 'sglang', path: '/metrics', port: sims.sglang.port },
      trtllm: { engine: 'trtllm-serve', path: '/prometheus/metrics', port: sims.trtllm.port },
      triton: { engine: 'triton-trtllm', path: '/metrics', port: Number(tm[1]) },
      llamacpp: { engine: 'llamacpp', path: '/metrics', port: sims.llamacpp.port },
    };
    await waitFor(async () => {
      const p = await pool(gw);
      return Object.entries(sims).every(([k, s]) => entry(p, s.endpoint).metrics === 'scraped' &&
        entry(p, s.endpoint).models.length > 0);
    }, { timeoutMs: 8000, what: 'every endpoint scraped, with its /v1/models read' });
    let p = await pool(gw);
    for (const [k, s] of Object.entries(sims)) {
      const e = entry(p, s.endpoint);
      assert.equal(e.engine, want[k].engine, `${k}: ${JSON.stringify(e)}`);
      assert.equal(e.engine_detected, true, k);
      assert.equal(e.metrics_url, `127.0.0.1:${want[k].port}${want[k].path}`, k);
      assert.equal(e.stale, false, k);
      assert.equal(e.metrics_warning, undefined, k);
      // The served model comes from /v1/models; no label turns it into an adapter.
      assert.deepEqual(e.models, [SIM_MODEL], k);
      assert.deepEqual(e.lora_adapters, [], `${k}: no LoRA adapters`);
    }
    // Cache geometry, where the engine exports it.
    assert.deepEqual(entry(p, sims.sglang.endpoint).cache, { block_size: 16, num_blocks: 25000 });
    assert.deepEqual(entry(p, sims.triton.endpoint).cache, { block_size: 16, num_blocks: 25000 });

    // Requests through the gateway are served by engines of every kind (none is taken for an
    // adapter-only server, none is stale).
    const served = new Set();
    for (let i = 0; i < 10 && served.size < 5; i++) {
      const r = await postJson(gw.url, '/v1/completions', { model: SIM_MODEL, prompt: `hi ${i}`, max_tokens: 1 }, { timeoutMs: 20000 });
      assert.equal(r.status, 200, r.body);
      served.add(r.headers['x-gateway-destination-endpoint']);
    }
    assert.ok(served.size >= 3, `requests spread over the engines: ${[...served]}`);

    // Five long requests straight at each simulator: 2 run, 3 wait. SGLang's get two priorities.
    const floods = [];
    for (const [k, s] of Object.entries(sims)) {
      for (let i = 0; i < 5; i++) {
        const body = { model: SIM_MODEL, prompt: `engine ${k} request ${i} `.repeat(20), max_tokens: 2000, stream: true };
        if (k === 'sglang') body.priority = i % 2;
        floods.push(openFlood(s.url, '/v1/completions', body, 1));
      }
    }
    t.after(() => floods.forEach((f) => f.destroy()));

    let last;
    try {
      await waitFor(async () => {
        p = await pool(gw);
        const reports = {};
        for (const [k, s] of Object.entries(sims)) reports[k] = await selfReport(k, s);
        last = { pool: p, reports };
        return Object.entries(sims).every(([k, s]) => {
          const e = entry(p, s.endpoint);
          const r = reports[k];
          return r.waiting === 3 && r.running === 2 && e.waiting === r.waiting && e.running === r.running &&
            (r.kv === null ? e.kv_usage === 0 : Math.abs(e.kv_usage - r.kv) < 0.01);
        });
      }, { timeoutMs: 15000, what: '/v1/pool figures equal to what each simulator reports' });
    } catch (err) {
      err.message += `; last: ${JSON.stringify(last && { reports: last.reports, pool: last.pool.endpoints.map((e) => [e.engine, e.waiting, e.running, e.kv_usage]) })}`;
      throw err;
    }
    // The SGLang page really holds the total and per-priority series on both ranks.
    const sg = parseMetrics((await request(sims.sglang.url, { path: '/metrics' })).body);
    const series = sg.series('sglang:num_queue_reqs');
    assert.equal(series.length, 6, JSON.stringify(series));
    assert.equal(sg.sum('sglang:num_queue_reqs'), 12, 'summing every series would count the 3 waiting requests four times');
    assert.equal(entry(p, sims.sglang.endpoint).waiting, 3);
  });

  it('trtllm-serve without return_perf_metrics and llama-server without --metrics: one clear warning each, routed on in-flight accounting', T, async (t) => {
    const [trt, llama] = await Promise.all([
      startSim(['--personality', 'trtllm', '--no-metrics']),
      startSim(['--personality', 'llamacpp', '--no-metrics']),
    ]);
    t.after(() => Promise.all([trt.stop(), llama.stop()]));
    const gw = await startGateway(['--endpoints', `${trt.endpoint},${llama.endpoint}`, '--scrape-interval', '50ms']);
    t.after(() => gw.stop());

    await waitFor(async () => {
      const p = await pool(gw);
      return [trt, llama].every((s) => entry(p, s.endpoint).metrics === 'in-flight only');
    }, { timeoutMs: 5000, what: 'both endpoints on in-flight accounting' });
    const p = await pool(gw);
    const et = entry(p, trt.endpoint);
    const el = entry(p, llama.endpoint);
    assert.equal(et.engine, 'trtllm-serve');
    assert.equal(el.engine, 'llamacpp');
    for (const e of [et, el]) {
      assert.equal(e.stale, false, `not left stale: ${JSON.stringify(e)}`);
      assert.ok(e.saturation < 1, `an idle metric-less endpoint is not saturated: ${JSON.stringify(e)}`);
    }
    const warnT = `trtllm-serve at ${trt.endpoint} exports no Prometheus metrics`;
    assert.ok(et.metrics_warning.startsWith(warnT), et.metrics_warning);
    assert.match(et.metrics_warning, /return_perf_metrics/);
    assert.match(el.metrics_warning, /llamacpp at .* start llama-server with --metrics/);

    // Both still serve traffic through the gateway.
    const seen = new Set();
    for (let i = 0; i < 8; i++) {
      const r = await postJson(gw.url, '/v1/completions', { model: SIM_MODEL, prompt: `x ${i}`, max_tokens: 2 }, { timeoutMs: 10000 });
      assert.equal(r.status, 200, r.body);
      seen.add(r.headers['x-gateway-destination-endpoint']);
    }
    assert.equal(seen.size, 2, `requests went to both metric-less endpoints: ${[...seen]}`);

    // One warning per endpoint in the log, not one per scrape.
    await new Promise((res) => setTimeout(res, 500));
    const out = gw.output();
    assert.equal(out.split(warnT).length - 1, 1, out);
    assert.equal(out.split('start llama-server with --metrics').length - 1, 1, out);
  });
});
