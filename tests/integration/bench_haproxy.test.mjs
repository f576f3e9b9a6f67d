// bench_haproxy.test.mjs — the benchmark's HAProxy baseline is set up the way HAProxy's own
// documentation recommends for streamed traffic (`option http-no-delay`), so that a stream's SSE
// events reach the client spread out as the model server produces them, not held and delivered
// together. A short scenario streams the same completions straight through the generated config
// and through tidegate, and compares the time between events (TPOT) seen by the client.
import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { runTidegate, stopAll } from './lib.mjs';

const T = { timeout: 90_000 };

const SCENARIO = `
name: haproxy-streaming
fleet: {count: 1, time_scale: 2, max_num_seqs: 8}
duration: 4s
seed: 5
sample_interval: 1s
drain_timeout: 10s
realtime:
  base_rps: 3
  prompt_tokens: 64
  output_tokens: 16
  slo_ttft_ms: 2000
  stream: true
runs:
  - {name: tidegate}
  - {name: haproxy, target: haproxy}
`;

describe('the benchmark HAProxy baseline', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tidegate-haproxy-'));
  after(async () => {
    await stopAll();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('streams SSE events through the generated haproxy.cfg as they are produced', T, async () => {
    fs.writeFileSync(path.join(dir, 'scenario.yaml'), SCENARIO);
    const r = await runTidegate(['bench', '--scenario', path.join(dir, 'scenario.yaml'),
      '--report', path.join(dir, 'report')], { timeoutMs: 80_000 });
    assert.equal(r.code, 0, `bench failed (exit ${r.code}):\n${r.stderr}`);
    const cfg = fs.readFileSync(path.join(dir, 'report', 'runs', 'haproxy', 'haproxy.cfg'), 'utf8');
    assert.match(cfg, /^\s*option http-no-delay$/m, cfg);
    const report = JSON.parse(fs.readFileSync(path.join(dir, 'report', 'report.json'), 'utf8'));
    const run = (name) => report.runs.find((x) => x.name === name);
    const tg = run('tidegate').realtime, ha = run('haproxy').realtime;
    assert.ok(ha.succeeded > 5 && ha.succeeded === ha.sent, JSON.stringify(ha));
    // Held events would arrive together: a time per output token near 0. Streamed ones arrive
    // one decode step apart, as through tidegate.
    assert.ok(ha.tpot_ms.p50 > 0.5 * tg.tpot_ms.p50,
      `HAProxy TPOT p50 ${ha.tpot_ms.p50} ms against tidegate's ${tg.tpot_ms.p50} ms`);
    assert.ok(ha.ttft_ms.p50 < 3 * tg.ttft_ms.p50 + 20,
      `HAProxy TTFT p50 ${ha.ttft_ms.p50} ms against tidegate's ${tg.ttft_ms.p50} ms`);
  });
});
