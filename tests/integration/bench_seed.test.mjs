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
// The shape, the real-time answers and "no result lost or duplicated" must hold on every run.
// The headline figures depend on the machine keeping pace; when a first run misses them the
// bench runs once more, and the second run must show them (see the comment at the retry).
// TIDEGATE_KEEP_REPORT=1 keeps the report directory.
import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { REPO_ROOT, runTidegate, stopAll } from './lib.mjs';

const T = { timeout: 290_000 };

// One bench run: its report, its stdout, and its wall time.
async function runBench(dir) {
  const started = Date.now();
  const r = await runTidegate(
    ['bench', '--scenario', path.join(REPO_ROOT, 'scenarios', 'quick.yaml'), '--report', dir],
    { timeoutMs: 140_000 });
  const elapsed = (Date.now() - started) / 1000;
  assert.equal(r.code, 0, `bench failed (exit ${r.code}):\n${r.stderr}`);
  assert.ok(elapsed < 120, `bench took ${elapsed} s`);
  const report = JSON.parse(fs.readFileSync(path.join(dir, 'report.json'), 'utf8'));
  return { report, stdout: r.stdout };
}

// What must hold on every run, however loaded the machine: the report's shape, every
// real-time request answered, and no async result lost. Throws on the first failure.
function checkInvariants(report) {
  const runs = Object.fromEntries(report.runs.map((x) => [x.name, x]));
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
  assert.equal(via.lost, 0, `via-processor lost results:\n${context(report)}`);
  assert.equal(via.duplicate_results, 0, `via-processor duplicated results:\n${context(report)}`);
  assert.equal(via.malformed_results, 0);
  assert.equal(runs['direct-sheddable'].async.submitted, via.submitted);
  return runs;
}

function context(report) {
  return JSON.stringify(report.runs.map((x) => ({
    name: x.name, rt: x.realtime, async: x.async, utilization: x.utilization })), null, 1);
}

// The headline result, which depends on the fleet keeping its simulated pace. Returns the
// failures (empty when it holds).
function headlineFailures(report, runs) {
  const out = [];
  const via = runs['via-processor'].async;
  if (via.succeeded !== via.submitted)
    out.push(`via-processor served ${via.succeeded}/${via.submitted} async requests`);
  const direct = runs['direct-sheddable'].async;
  if (!(direct.shed > 0.5 * direct.submitted))
    out.push(`direct-sheddable shed only ${direct.shed}/${direct.submitted}`);
  const base = runs['realtime-only'].realtime.ttft_ms.p99;
  const withAsync = runs['via-processor'].realtime.ttft_ms.p99;
  if (!(withAsync <= 1.5 * base))
    out.push(`via-processor TTFT p99 ${withAsync.toFixed(1)} ms vs realtime-only ${base.toFixed(1)} ms`);
  // The point of the processor: the pool does more work.
  if (!(runs['via-processor'].utilization > runs['realtime-only'].utilization))
    out.push('utilisation did not rise');
  return out;
}

describe('tidegate bench (quick seed scenario)', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tidegate-bench-'));
  after(async () => {
    await stopAll();
    if (!process.env.TIDEGATE_KEEP_REPORT) fs.rmSync(dir, { recursive: true, force: true });
    else console.log(`report kept in ${dir}`);
  });

  it('via-processor serves all async work without hurting real-time latency', T, async () => {
    let { report, stdout } = await runBench(dir);
    let runs = checkInvariants(report);
    let failures = headlineFailures(report, runs);
    if (failures.length) {
      // A second, independent sample: a shared 2-core VM can lose CPU to its neighbours for
      // part of a run, which slows the simulated fleet and the async backlog with it. The
      // headline must then hold on the second run; both runs' figures are printed.
      console.log(`first run missed the headline (${failures.join('; ')}):\n${context(report)}`);
      ({ report, stdout } = await runBench(dir));
      runs = checkInvariants(report);
      failures = headlineFailures(report, runs);
    }
    assert.deepEqual(failures, [], `headline not reproduced twice:\n${context(report)}`);

    const html = fs.readFileSync(path.join(dir, 'report.html'), 'utf8');
    assert.match(html, /<svg[^>]*data-chart="utilization"/);
    assert.ok((html.match(/<svg/g) || []).length >= 3 * 4, 'charts missing from report.html');
    assert.match(stdout, /via-processor/);
  });
});
