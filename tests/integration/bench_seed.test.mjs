// bench_seed.test.mjs — `tidegate bench --scenario scenarios/quick.yaml`: the test-sized seed
// scenario (3 runs of 20 s on a time-scaled simulated fleet, ~70 s in all) must reproduce the
// product's headline result qualitatively:
//   * via-processor loses nothing and serves every async request (succeeded == submitted);
//   * direct-sheddable, the same backlog sent straight to the gateway as sheddable traffic by a
//     naive client, has most of it shed (shed > 50% of submitted);
//   * via-processor's real-time TTFT p99 stays within 1.5× of realtime-only's. Why 1.5×: p99
//     over ~800 requests is set by the two spikes and moves by ±20% between identical runs on
//     a loaded 2-core machine, so a tighter bound (the product target is 10% on real
//     hardware) would be flaky here; while async work that blocked real-time traffic (a
//     processor filling the engines' queues, or direct-standard) shows as 1.6–3×, which 1.5×
//     still catches;
//   * report.json has the documented shape and report.html exists with its SVG charts.
// TIDEGATE_KEEP_REPORT=1 keeps the report directory.
import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { REPO_ROOT, runTidegate, stopAll } from './lib.mjs';

const T = { timeout: 170_000 };

describe('tidegate bench (quick seed scenario)', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tidegate-bench-'));
  after(async () => {
    await stopAll();
    if (!process.env.TIDEGATE_KEEP_REPORT) fs.rmSync(dir, { recursive: true, force: true });
    else console.log(`report kept in ${dir}`);
  });

  it('via-processor serves all async work without hurting real-time latency', T, async () => {
    const started = Date.now();
    const r = await runTidegate(
      ['bench', '--scenario', path.join(REPO_ROOT, 'scenarios', 'quick.yaml'), '--report', dir],
      { timeoutMs: 160_000 });
    const elapsed = (Date.now() - started) / 1000;
    assert.equal(r.code, 0, `bench failed (exit ${r.code}):\n${r.stderr}`);
    assert.ok(elapsed < 120, `bench took ${elapsed} s`);

    const report = JSON.parse(fs.readFileSync(path.join(dir, 'report.json'), 'utf8'));
    const runs = Object.fromEntries(report.runs.map((x) => [x.name, x]));
    const context = JSON.stringify(report.runs.map((x) => ({
      name: x.name, rt: x.realtime, async: x.async, utilization: x.utilization })), null, 1);
    for (const name of ['realtime-only', 'direct-sheddable', 'via-processor']) {
      assert.ok(runs[name], `run ${name} missing`);
      const run = runs[name];
      assert.ok(run.realtime.sent > 100, `${name}: real-time sent ${run.realtime.sent}`);
      assert.equal(run.realtime.succeeded, run.realtime.sent, `${name}: real-time failures`);
      for (const k of ['p50', 'p90', 'p99']) assert.equal(typeof run.realtime.ttft_ms[k], 'number');
      assert.equal(typeof run.utilization, 'number');
      assert.equal(typeof run.tokens_per_s, 'number');
      assert.ok(Array.isArray(run.timeseries.t) && run.timeseries.t.length >= 10);
    }
    // Same real-time traffic in every run (same seed → same arrivals).
    assert.equal(runs['via-processor'].realtime.sent, runs['realtime-only'].realtime.sent);

    const via = runs['via-processor'].async;
    assert.ok(via.submitted > 0);
    assert.equal(via.lost, 0, `via-processor lost results:\n${context}`);
    assert.equal(via.succeeded, via.submitted, `via-processor did not serve everything:\n${context}`);

    const direct = runs['direct-sheddable'].async;
    assert.equal(direct.submitted, via.submitted);
    assert.ok(direct.shed > 0.5 * direct.submitted,
      `direct-sheddable shed only ${direct.shed}/${direct.submitted}:\n${context}`);

    const base = runs['realtime-only'].realtime.ttft_ms.p99;
    const withAsync = runs['via-processor'].realtime.ttft_ms.p99;
    assert.ok(withAsync <= 1.5 * base,
      `via-processor TTFT p99 ${withAsync} ms vs realtime-only ${base} ms:\n${context}`);
    // The point of the processor: the pool does more work.
    assert.ok(runs['via-processor'].utilization > runs['realtime-only'].utilization,
      `utilisation did not rise:\n${context}`);

    const html = fs.readFileSync(path.join(dir, 'report.html'), 'utf8');
    assert.match(html, /<svg[^>]*data-chart="utilization"/);
    assert.ok((html.match(/<svg/g) || []).length >= 3 * 4, 'charts missing from report.html');
    assert.match(r.stdout, /via-processor/);
  });
});
