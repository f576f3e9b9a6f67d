#!/usr/bin/env node
// chaos.mjs — the whole system on loopback under faults, with real-time and async traffic
// running throughout:
//   3 simulators (one process each), 2 gateway replicas, the async processor on the embedded
//   (SQLite) queue. Meanwhile the run SIGKILLs the processor three times, restarts one gateway,
//   crashes a simulator mid-stream (SIGUSR1) and brings it back, and freezes one (SIGSTOP) for
//   20 s (7 s with --short).
// It reports, and checks:
//   - async: every request has exactly one result, or duplicates that are byte-identical, and
//     none is lost;
//   - real-time: the share that succeeded, and how each failure ended — every one must be a
//     clear error (an HTTP error status, an SSE error event, a refused connection while a
//     gateway restarts), never a request hanging past its timeout;
//   - the time until the pool recovered after each fault.
// Exit status 0 when the checks hold, 1 otherwise. The report is printed and, with --report
// FILE, written as JSON.
//
//   node tests/chaos/chaos.mjs [--short] [--report FILE]      (make chaos; make test runs --short)
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
  SIM_MODEL, startSim, startGateway, startAsync, runTidegate, stopAll, request, openStream, sleep,
  closedPort, waitFor,
} from '../integration/lib.mjs';

const args = process.argv.slice(2);
const SHORT = args.includes('--short');
const reportFile = args.includes('--report') ? args[args.indexOf('--report') + 1] : null;
const S = SHORT ? 0.35 : 1;  // time scale of the schedule
const ASYNC_N = SHORT ? 300 : 1800;
const RT_WORKERS = 3;
const RT_TIMEOUT_MS = 20_000;

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'tidegate-chaos-'));
const db = path.join(tmp, 'queue.db');
const REQUESTS = `sqlite://${db}?queue=requests`;
const RESULTS = `sqlite://${db}?queue=results`;
const t0 = Date.now();
const now = () => (Date.now() - t0) / 1000;
const log = (m) => process.stderr.write(`[chaos ${now().toFixed(1)}s] ${m}\n`);

const SIM_ARGS = ['--time-scale', '2', '--max-num-seqs', '16'];
const GW_ARGS = (endpoints) => ['--endpoints', endpoints, '--ttfb-timeout', '3s', '--eject-after', '3',
  '--eject-time', '2s', '--health-interval', '250ms', '--stream-idle-timeout', '5s'];

async function main() {
  // --- the system
  const simPorts = [await closedPort(), await closedPort(), await closedPort()];
  const sims = [];
  for (const p of simPorts) sims.push(await startSim(['--port', String(p), ...SIM_ARGS]));
  const endpoints = simPorts.map((p) => `127.0.0.1:${p}`).join(',');
  const gwPorts = [await closedPort(), await closedPort()];
  const gws = [];
  for (const p of gwPorts) gws.push(await startGateway(['--port', String(p), ...GW_ARGS(endpoints)]));
  const gwUrl = (i) => `http://127.0.0.1:${gwPorts[i]}`;
  const startProcessor = () => startAsync(['--gateway', gwUrl(0), '--requests', REQUESTS,
    '--responses', RESULTS, '--lease', '5s', '--drain-timeout', '2s']);
  let proc = await startProcessor();

  // --- async work
  const lines = [];
  for (let i = 0; i < ASYNC_N; i++) {
    lines.push(JSON.stringify({ id: `job-${i}`, payload: {
      model: SIM_MODEL, max_tokens: 200, messages: [{ role: 'user', content: `async job ${i}` }] } }));
  }
  const work = path.join(tmp, 'work.jsonl');
  fs.writeFileSync(work, lines.join('\n') + '\n');
  const sub = await runTidegate(['submit', '--queue', REQUESTS, work]);
  if (sub.code !== 0) throw new Error(`submit failed: ${sub.stderr}`);
  log(`${ASYNC_N} async requests submitted`);

  // --- real-time traffic
  const rt = [];
  let running = true;
  async function rtWorker(w) {
    for (let i = 0; running; i++) {
      const g = (w + i) % 2;
      const started = Date.now();
      const rec = { at: now(), gateway: g, outcome: 'ok', ms: 0 };
      try {
        const s = await openStream(gwUrl(g), '/v1/chat/completions', {
          model: SIM_MODEL, max_tokens: 24, stream: true,
          messages: [{ role: 'user', content: `rt ${w} ${i}` }],
        }, { timeoutMs: RT_TIMEOUT_MS, headers: { 'x-gateway-inference-objective': 'standard' } });
        if (s.status !== 200) {
          rec.outcome = `http_${s.status}`;
          s.destroy();
        } else {
          const left = RT_TIMEOUT_MS - (Date.now() - started);
          const done = await Promise.race([s.done, sleep(Math.max(1, left)).then(() => null)]);
          const text = s.text();
          if (!done) {
            rec.outcome = 'hang';
            s.destroy();
          } else if (/"error"\s*:/.test(text)) {
            rec.outcome = 'sse_error_event';
          } else if (!text.includes('data: [DONE]')) {
            rec.outcome = 'cut_without_error';
          }
        }
      } catch (err) {
        rec.outcome = /timed out/.test(err.message) ? 'hang' : `transport_${err.code || 'error'}`;
      }
      rec.ms = Date.now() - started;
      rt.push(rec);
      if (rec.outcome !== 'ok') await sleep(100);
    }
  }
  const workers = Array.from({ length: RT_WORKERS }, (_, w) => rtWorker(w));

  // --- faults
  const recoveries = [];
  async function healthy(expectProc = true) {
    for (let i = 0; i < 2; i++) {
      const r = await request(gwUrl(i), { path: '/readyz', timeoutMs: 1000 }).catch(() => null);
      if (!r || r.status !== 200) return false;
    }
    const p = await request(gwUrl(0), { path: '/v1/pool', timeoutMs: 1000 }).catch(() => null);
    if (!p || p.status !== 200) return false;
    if (!p.json.endpoints.every((e) => e.available && !e.stale && !e.ejected)) return false;
    if (expectProc) {
      const h = await request(`http://127.0.0.1:${proc.port}`, { path: '/healthz', timeoutMs: 1000 }).catch(() => null);
      if (!h || h.status !== 200) return false;
    }
    return true;
  }
  // Results published so far (the async work must be going on while the faults happen).
  const resultsSoFar = () => {
    try {
      return Number(execFileSync('sqlite3', [db, "SELECT count(*) FROM messages WHERE queue = 'results'"],
        { encoding: 'utf8', timeout: 5000 }).trim());
    } catch { return -1; }
  };
  async function recovery(what, since) {
    const asyncDone = resultsSoFar();
    const deadline = Date.now() + 60_000;
    while (Date.now() < deadline && !(await healthy())) await sleep(100);
    const secs = (Date.now() - since) / 1000;
    recoveries.push({ fault: what, at: Number(((since - t0) / 1000).toFixed(1)),
      recovered_after_s: Number(secs.toFixed(2)), async_results_by_then: asyncDone });
    log(`${what}: recovered after ${secs.toFixed(2)} s (async results so far: ${asyncDone}/${ASYNC_N})`);
  }
  const at = async (t) => { const ms = t * S * 1000 - (Date.now() - t0); if (ms > 0) await sleep(ms); };
  async function killProcessor(n) {
    log(`SIGKILL the processor (${n})`);
    proc.signal('SIGKILL');
    const since = Date.now();
    await sleep(1000 * S);
    proc = await startProcessor();
    await recovery(`processor SIGKILL ${n}`, since);
  }

  await at(8);
  await killProcessor(1);

  await at(22);
  log('SIGUSR1 simulator 0 (crash mid-stream)');
  sims[0].signal('SIGUSR1');
  let since = Date.now();
  await sleep(2000 * S);
  sims[0] = await startSim(['--port', String(simPorts[0]), ...SIM_ARGS]);
  await recovery('simulator crash mid-stream', since);

  await at(38);
  const freeze = 20 * S;
  log(`SIGSTOP simulator 1 for ${freeze.toFixed(0)} s`);
  process.kill(sims[1].proc.pid, 'SIGSTOP');
  await sleep(freeze * 1000);
  process.kill(sims[1].proc.pid, 'SIGCONT');
  since = Date.now();
  log('SIGCONT simulator 1');
  await recovery('simulator frozen (from SIGCONT)', since);

  await at(68);
  await killProcessor(2);

  await at(80);
  log('restart gateway 1');
  since = Date.now();
  await gws[1].stop();
  gws[1] = await startGateway(['--port', String(gwPorts[1]), ...GW_ARGS(endpoints)]);
  await recovery('gateway restart', since);

  await at(95);
  await killProcessor(3);

  await at(110);
  running = false;
  await Promise.all(workers);
  log('traffic stopped; waiting for every async result');

  // --- async results
  const res = await runTidegate(['results', '--queue', RESULTS, '--wait', String(ASYNC_N),
    '--timeout', '120s'], { timeoutMs: 180_000 });
  const ids = new Map();
  for (const line of res.stdout.split('\n').filter(Boolean)) {
    const m = JSON.parse(line);
    ids.set(m.id, (ids.get(m.id) || 0) + 1);
  }
  const summary = res.stderr.match(/results: (\d+) .*duplicates (\d+), conflicting duplicates (\d+), malformed (\d+)/);
  let lost = 0;
  for (let i = 0; i < ASYNC_N; i++) if (!ids.has(`job-${i}`)) lost++;
  const succeeded = [...res.stdout.split('\n').filter(Boolean)].map((l) => JSON.parse(l))
    .filter((m) => m.status_code === 200).length;

  // --- real-time figures
  const outcomes = {};
  for (const r of rt) outcomes[r.outcome] = (outcomes[r.outcome] || 0) + 1;
  const ok = outcomes.ok || 0;
  const report = {
    command: `node tests/chaos/chaos.mjs${SHORT ? ' --short' : ''}`,
    duration_s: Number(now().toFixed(1)),
    async: {
      requests: ASYNC_N, results: summary ? Number(summary[1]) : null, unique_ids: ids.size, lost,
      succeeded, duplicates: summary ? Number(summary[2]) : null,
      conflicting_duplicates: summary ? Number(summary[3]) : null,
    },
    realtime: {
      requests: rt.length, succeeded: ok, share_succeeded: rt.length ? Number((ok / rt.length).toFixed(4)) : 0,
      outcomes, longest_ms: Math.max(0, ...rt.map((r) => r.ms)),
    },
    recoveries,
  };
  const problems = [];
  if (lost > 0) problems.push(`${lost} async requests lost`);
  if (!summary) problems.push('no results summary');
  else if (Number(summary[3]) > 0) problems.push(`${summary[3]} conflicting duplicate results`);
  if (outcomes.hang) problems.push(`${outcomes.hang} real-time requests hung past ${RT_TIMEOUT_MS} ms`);
  if (outcomes.cut_without_error) problems.push(`${outcomes.cut_without_error} streams cut without an error event`);
  if (rt.length === 0 || ok / rt.length < 0.5) problems.push(`only ${ok} of ${rt.length} real-time requests succeeded`);
  report.problems = problems;
  const text = JSON.stringify(report, null, 2);
  process.stdout.write(text + '\n');
  if (reportFile) fs.writeFileSync(reportFile, text + '\n');
  return problems.length === 0 ? 0 : 1;
}

let code = 1;
try {
  code = await main();
} catch (err) {
  process.stderr.write(`chaos: ${err.stack || err}\n`);
} finally {
  await stopAll();
  fs.rmSync(tmp, { recursive: true, force: true });
}
process.exit(code);
