// demo.test.mjs — `tidegate demo` end to end: it starts the simulated fleet (one process per
// server), the gateway and the async processor as children, prints the dashboard URL, the base
// URL, the queue URIs and every pid. With --traffic none (an idle queue): the official openai
// client streams a chat completion through it; 20 async requests submitted with `tidegate
// submit` come back as 20 succeeded results from `tidegate results`; a simulated server killed
// while it runs is reported and the demo goes on; SIGINT stops everything in reverse start order
// (exit 0, no child left, every port free again). With the default sample traffic and nothing
// typed: within 60 s the processor has completed async work, real-time requests have succeeded,
// and the status line shows both. Also: a server that fails at start-up is named with its log,
// a busy port is refused up front, --traffic takes only sample|seed|none, and --help lists the
// flags.
import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import OpenAI, { toFile } from 'openai';
import {
  GATEWAY_BIN, SIM_MODEL, parseMetrics, processAlive, request, startDemo as startDemoProcess,
  stopProcess, waitExit, waitFor, tryConnect,
} from './lib.mjs';

const dirs = [];
const procs = [];
let knownPids = [];
after(async () => {
  await Promise.all(procs.map((p) => stopProcess(p, { signal: 'SIGTERM', graceMs: 10_000 })));
  for (const pid of knownPids) if (processAlive(pid)) { try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ } }
  for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
});

function tmpDir() {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'tidegate-demo-'));
  dirs.push(d);
  return d;
}

// Every port flag at 0 (free ports), so the test never depends on 8080/8001/9090/9464.
const FREE_PORTS = ['--port', '0', '--sim-port', '0', '--metrics-port', '0', '--admin-port', '0'];

// Starts the demo and remembers it for the cleanup.
function startDemo(args) {
  const d = startDemoProcess(args);
  procs.push(d.proc);
  return d;
}

// Runs the binary to completion (bounded); resolves {code, stdout, stderr}.
function run(args, timeoutMs) {
  return new Promise((resolve) => {
    execFile(GATEWAY_BIN, args, { timeout: timeoutMs, encoding: 'utf8' }, (err, stdout, stderr) => {
      resolve({ code: err ? (err.code ?? err.signal) : 0, stdout, stderr });
    });
  });
}


// Waits for the banner; returns what it printed: URLs, pids, ports, the started children.
async function waitBanner(demo, ctx) {
  const banner = await waitFor(() => {
    if (demo.proc.exitCode !== null) return { exited: demo.proc.exitCode };
    const o = demo.output();
    return /Ctrl-C stops everything/.test(o) ? o : null;
  }, { timeoutMs: 30_000, intervalMs: 50, what: 'the demo banner' });
  assert.equal(typeof banner, 'string', `demo exited early (status ${banner.exited}); ${ctx()}`);

  const dashboard = banner.match(/dashboard:\s+(http:\/\/127\.0\.0\.1:(\d+))\/dashboard/);
  assert.ok(dashboard, `dashboard URL printed; ${ctx()}`);
  const baseURL = banner.match(/OpenAI base URL:\s+(http:\/\/127\.0\.0\.1:\d+\/v1)/)?.[1];
  assert.ok(baseURL, `base URL printed; ${ctx()}`);
  const requestsUri = banner.match(/submit --queue '([^']+)'/)?.[1];
  const resultsUri = banner.match(/results --queue '([^']+)'/)?.[1];
  assert.ok(requestsUri && resultsUri, `queue URIs printed; ${ctx()}`);
  const gatewayMetrics = banner.match(/(http:\/\/127\.0\.0\.1:\d+)\/metrics\s+the gateway/)?.[1];
  const processorMetrics = banner.match(/(http:\/\/127\.0\.0\.1:\d+)\/metrics\s+the async processor/)?.[1];
  assert.ok(gatewayMetrics && processorMetrics, `metrics URLs printed; ${ctx()}`);
  // The gateway's metrics are on its admin listener, where the dashboard is.
  assert.equal(gatewayMetrics, dashboard[1], `gateway metrics on the admin port; ${ctx()}`);

  const pm = banner.match(/^ {2}pids: sim (\d+(?:,\d+)*), gateway (\d+), async (\d+)$/m);
  assert.ok(pm, `pids printed; ${ctx()}`);
  const simPids = pm[1].split(',').map(Number);
  const sm = banner.match(/^ {2}sim pids: (\d+(?:,\d+)*)\b/m);
  assert.ok(sm, `sim pids printed; ${ctx()}`);
  assert.deepEqual(sm[1].split(',').map(Number), simPids, `the same sim pids twice; ${ctx()}`);
  const gatewayPid = Number(pm[2]);
  const asyncPid = Number(pm[3]);
  knownPids.push(...simPids, gatewayPid, asyncPid);

  // One "started" line per child, in start order: the servers, the gateway, the processor.
  const startedSims = [...banner.matchAll(
    /started simulated server 127\.0\.0\.1:(\d+) \(pid (\d+), log (\S+)\)/g)]
    .map((m) => ({ port: Number(m[1]), pid: Number(m[2]), log: m[3] }));
  assert.deepEqual(startedSims.map((s) => s.pid), simPids, `one process per server; ${ctx()}`);
  assert.match(banner, new RegExp(`started the gateway \\(pid ${gatewayPid}, log `));
  assert.match(banner, new RegExp(`started the async processor \\(pid ${asyncPid}, log `));
  const ports = new Set([...banner.matchAll(/127\.0\.0\.1:(\d+)/g)].map((m) => Number(m[1])));
  for (const s of startedSims) ports.add(s.port);
  return {
    banner, baseURL, requestsUri, resultsUri, gatewayMetrics, processorMetrics,
    adminPort: Number(dashboard[2]), simPids, gatewayPid, asyncPid, startedSims,
    pids: [...simPids, gatewayPid, asyncPid], ports: [...ports],
  };
}

// SIGINT; asserts exit 0, every child gone, every port free. Returns the output.
async function interruptAndCheck(demo, b, ctx) {
  demo.proc.kill('SIGINT');
  const { code, signal } = await waitExit(demo.proc, 30_000);
  assert.equal(signal, null, ctx());
  assert.equal(code, 0, ctx());
  await waitFor(() => b.pids.every((p) => !processAlive(p)),
    { timeoutMs: 5000, what: `children ${b.pids.join(',')} to be gone; ${ctx()}` });
  for (const p of b.ports) assert.equal(await tryConnect(p), 'refused', `port ${p} free; ${ctx()}`);
  return demo.output();
}

// The status lines printed so far (a line every 5 s when stdout is not a terminal).
const STATUS_RE = /^\[(\d+)s\] real-time ([\d.]+|-) req\/s, TTFT p99 (.*?) \| async backlog (\d+|-), in flight (\d+|-), done (\d+|-), shed (\d+|-) \| utilisation (.*)$/gm;
function statusLines(text) {
  return [...text.matchAll(STATUS_RE)].map((m) => ({
    line: m[0], secs: Number(m[1]), rps: Number(m[2]), p99: m[3], backlog: Number(m[4]),
    inFlight: Number(m[5]), done: Number(m[6]), shed: Number(m[7]), util: m[8],
  }));
}

describe('tidegate demo', () => {
  it('serves real-time and async traffic, survives a dead server, then stops cleanly on SIGINT',
    { timeout: 60_000 }, async () => {
      const dir = tmpDir();
      const demo = startDemo([...FREE_PORTS, '--traffic', 'none', '--data-dir', dir,
        '--time-scale', '20', '--duration', '50s']);
      const ctx = () => `demo output:\n${demo.output()}`;
      const b = await waitBanner(demo, ctx);
      assert.match(b.banner, /sample traffic:\s+none \(--traffic none\)/);
      assert.ok(b.requestsUri.startsWith(`sqlite://${fs.realpathSync(dir)}/tidegate.db?queue=`),
        b.requestsUri);
      assert.equal(b.simPids.length, 4, `four simulated servers by default; ${ctx()}`);
      for (const s of b.startedSims) {
        assert.equal(s.log, path.join(fs.realpathSync(dir), `sim-${s.port}.log`));
        assert.ok(fs.existsSync(s.log), `${s.log} written`);
      }
      for (const log of ['gateway.log', 'async.log'])
        assert.ok(fs.existsSync(path.join(dir, log)), `${log} written`);

      // The dashboard is on the admin port.
      const page = await request(`http://127.0.0.1:${b.adminPort}`, { path: '/dashboard' });
      assert.equal(page.status, 200);
      assert.match(String(page.headers['content-type']), /^text\/html/);

      // Real time: the official client, streaming, through the printed base URL.
      const client = new OpenAI({ baseURL: b.baseURL, apiKey: 'demo', maxRetries: 0, timeout: 10_000 });
      const stream = await client.chat.completions.create({
        model: SIM_MODEL, max_tokens: 16, stream: true,
        messages: [{ role: 'user', content: 'hello demo' }],
      });
      let text = '';
      for await (const chunk of stream) text += chunk.choices[0]?.delta?.content ?? '';
      assert.ok(text.length > 0, 'streamed some content');

      // Async: 20 requests through the embedded queue and the processor.
      const file = path.join(dir, 'work.jsonl');
      const lines = [];
      for (let i = 0; i < 20; i++) {
        lines.push(JSON.stringify({ id: `job-${i}`,
          payload: { model: SIM_MODEL, max_tokens: 16, messages: [{ role: 'user', content: `job ${i}` }] } }));
      }
      fs.writeFileSync(file, lines.join('\n') + '\n');
      const sub = await run(['submit', '--queue', b.requestsUri, file], 10_000);
      assert.equal(sub.code, 0, `submit: ${sub.stderr}`);
      const res = await run(['results', '--queue', b.resultsUri, '--wait', '20', '--timeout', '20s'],
        25_000);
      assert.equal(res.code, 0, `results: ${res.stderr}; ${ctx()}`);
      const results = res.stdout.trim().split('\n').map((l) => JSON.parse(l));
      assert.equal(results.length, 20, res.stdout);
      assert.deepEqual(results.map((r) => r.id).sort(), lines.map((l) => JSON.parse(l).id).sort());
      for (const r of results) {
        assert.ok(!r.error_code && r.status_code >= 200 && r.status_code < 300, JSON.stringify(r));
      }

      // The status line (a line every 5 s when not on a terminal) counts the async work.
      await waitFor(() => statusLines(demo.output()).some((s) =>
        s.backlog === 0 && s.inFlight === 0 && s.done === 20 && /^\d+%/.test(s.util)),
      { timeoutMs: 8000, intervalMs: 100, what: `a status line with done 20; ${ctx()}` });

      // The OpenAI Batch API at the same base URL, on the embedded default.
      assert.match(b.banner, /OpenAI Batch API/);
      const batchLines = [];
      for (let i = 0; i < 5; i++) {
        batchLines.push(JSON.stringify({ custom_id: `b-${i}`, method: 'POST', url: '/v1/chat/completions',
          body: { model: SIM_MODEL, max_tokens: 8, messages: [{ role: 'user', content: `batch ${i}` }] } }));
      }
      const input = await client.files.create({
        file: await toFile(Buffer.from(batchLines.join('\n')), 'batch.jsonl'), purpose: 'batch' });
      let batch = await client.batches.create({ input_file_id: input.id, endpoint: '/v1/chat/completions',
        completion_window: '24h' });
      await waitFor(async () => {
        batch = await client.batches.retrieve(batch.id);
        return batch.status === 'completed';
      }, { timeoutMs: 20_000, intervalMs: 200, what: `the batch completes; ${ctx()}` });
      assert.deepEqual(batch.request_counts, { total: 5, completed: 5, failed: 0 });
      const out = (await (await client.files.content(batch.output_file_id)).text())
        .split('\n').filter(Boolean).map((l) => JSON.parse(l));
      assert.deepEqual(out.map((l) => l.custom_id).sort(), ['b-0', 'b-1', 'b-2', 'b-3', 'b-4']);

      // A simulated server that dies is reported with its log; the demo keeps going.
      const victim = b.startedSims[1];
      process.kill(victim.pid, 'SIGKILL');
      await waitFor(() => demo.output().includes(
        `simulated server 127.0.0.1:${victim.port} (pid ${victim.pid}) exited on its own`),
      { timeoutMs: 5000, intervalMs: 50, what: `the demo to report sim pid ${victim.pid}; ${ctx()}` });
      const report = demo.output().split('\n').find((l) => l.includes(`(pid ${victim.pid}) exited on its own`));
      assert.match(report, new RegExp(`see its log ${victim.log.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}; the gateway routes around it`));
      assert.equal(demo.proc.exitCode, null, `the demo keeps running; ${ctx()}`);
      for (let i = 0; i < 4; i++) {
        const r = await client.chat.completions.create({
          model: SIM_MODEL, max_tokens: 4, messages: [{ role: 'user', content: `after the kill ${i}` }],
        });
        assert.ok(r.choices[0].message.content.length > 0, JSON.stringify(r));
      }

      // Ctrl-C: exit 0; the processor, then the gateway, then the servers in reverse start
      // order (the dead one is not stopped again); nothing left behind.
      const o = await interruptAndCheck(demo, b, ctx);
      assert.ok(!o.includes('stopping the sample traffic'), `no sample traffic to stop; ${ctx()}`);
      const stops = [...o.matchAll(/^tidegate demo: stopping (.+?) \(pid (\d+)\)$/gm)]
        .map((m) => ({ what: m[1], pid: Number(m[2]) }));
      const expected = [
        { what: 'the async processor', pid: b.asyncPid },
        { what: 'the gateway', pid: b.gatewayPid },
        ...[...b.startedSims].reverse().filter((s) => s.pid !== victim.pid)
          .map((s) => ({ what: `simulated server 127.0.0.1:${s.port}`, pid: s.pid })),
      ];
      assert.deepEqual(stops, expected, `stop order; ${ctx()}`);
    });

  it('with the default sample traffic and nothing typed, within 60 s the processor has completed ' +
    'async work, real-time requests have succeeded, and the status line shows both',
  { timeout: 100_000 }, async () => {
    const dir = tmpDir();
    const demo = startDemo([...FREE_PORTS, '--data-dir', dir, '--time-scale', '1',
      '--duration', '85s']);
    const ctx = () => `demo output:\n${demo.output()}`;
    const b = await waitBanner(demo, ctx);
    assert.match(b.banner, /sample traffic:\s+sample: real-time \d+ req\/s, spikes of \d+ req\/s; async backlog of \d+, topped up/,
      ctx());
    const startedAt = Date.now();

    // The status line: real-time req/s > 0 and async done > 0 (not necessarily on one line).
    const seen = await waitFor(() => {
      const lines = statusLines(demo.output());
      const rt = lines.find((s) => s.rps > 0);
      const as = lines.find((s) => s.done > 0);
      return rt && as ? { rt, as, lines } : null;
    }, { timeoutMs: 60_000, intervalMs: 250, what: `status lines with real-time req/s > 0 and done > 0; ${ctx()}` });
    assert.ok(Date.now() - startedAt < 60_000);
    for (const s of seen.lines) assert.match(s.util, /^\d+% \(real-time \d+%, async \d+%\)$/, s.line);

    // The processor completed async work; the gateway counted successful real-time requests.
    const pr = await request(b.processorMetrics, { path: '/metrics', timeoutMs: 5000 });
    assert.equal(pr.status, 200);
    const pm = parseMetrics(pr.body);
    assert.ok(pm.sum('tidegate_async_requests_succeeded_total') > 0,
      `tidegate_async_requests_succeeded_total > 0:\n${pr.body}`);
    const gr = await request(b.gatewayMetrics, { path: '/metrics', timeoutMs: 5000 });
    assert.equal(gr.status, 200);
    const gm = parseMetrics(gr.body);
    assert.ok(gm.get('tidegate_requests_by_class_total', { class: 'realtime' }) > 0,
      `realtime requests counted: ${gm.series('tidegate_requests_by_class_total').map(JSON.stringify)}`);
    assert.ok(gm.get('tidegate_requests_by_class_total', { class: 'async' }) > 0,
      `async requests counted: ${gm.series('tidegate_requests_by_class_total').map(JSON.stringify)}`);
    const ok2xx = gm.series('tidegate_requests_total')
      .filter((s) => /^2\d\d$/.test(s.labels.code) && s.labels.path.startsWith('/v1/'))
      .reduce((a, s) => a + s.value, 0);
    assert.ok(ok2xx > 0, `2xx API requests: ${gm.series('tidegate_requests_total').map(JSON.stringify)}`);

    // Ctrl-C: the sample traffic stops first (it says how it went), then every child.
    const o = await interruptAndCheck(demo, b, ctx);
    const st = o.match(/stopping the sample traffic \((\d+) real-time requests sent, (\d+) succeeded; (\d+) async submitted\)/);
    assert.ok(st, `sample traffic stop line; ${ctx()}`);
    assert.ok(Number(st[2]) > 0 && Number(st[2]) <= Number(st[1]), st[0]);
    assert.ok(Number(st[3]) > 0, st[0]);
    const order = ['stopping the sample traffic', 'stopping the async processor',
      'stopping the gateway', 'stopping simulated server'].map((s) => o.indexOf(s));
    assert.ok(order.every((i) => i >= 0) && order.every((v, i) => i === 0 || order[i - 1] < v),
      `stop order; ${ctx()}`);
  });

  it('names a simulated server that fails at start-up, with its log, and exits 1', { timeout: 20_000 },
    async () => {
      const dir = tmpDir();
      const demo = startDemo([...FREE_PORTS, '--data-dir', dir, '--traffic', 'none',
        '--profile', 'no-such-profile']);
      const { code } = await waitExit(demo.proc, 15_000);
      assert.equal(code, 1, demo.output());
      const real = fs.realpathSync(dir).replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
      const m = demo.output().match(new RegExp(
        `simulated server 127\\.0\\.0\\.1:(\\d+) exited during start-up \\(status \\d+\\); see its log ${real}/sim-(\\d+)\\.log`));
      assert.ok(m, demo.output());
      assert.equal(m[1], m[2], 'the log named after the server\'s port');
      assert.ok(fs.existsSync(path.join(dir, `sim-${m[1]}.log`)));
      assert.doesNotMatch(demo.output(), /started the gateway/);
    });

  it('refuses a port that is in use (the public and the admin port)', { timeout: 20_000 }, async () => {
    const srv = net.createServer();
    await new Promise((r) => srv.listen(0, '127.0.0.1', r));
    const busy = srv.address().port;
    try {
      for (const flag of ['--port', '--admin-port']) {
        const args = [...FREE_PORTS];
        args[args.indexOf(flag) + 1] = String(busy);
        const r = await run(['demo', ...args, '--traffic', 'none', '--data-dir', tmpDir()], 8000);
        assert.equal(r.code, 1, `${flag}: ${r.stderr}`);
        assert.match(r.stderr, new RegExp(`port ${busy} is in use \\(pass ${flag} `), flag);
      }
    } finally {
      srv.close();
    }
  });

  it('--traffic takes sample, seed or none: anything else is a usage error', { timeout: 10_000 }, async () => {
    const dir = tmpDir();
    const r = await run(['demo', ...FREE_PORTS, '--data-dir', dir, '--traffic', 'bogus'], 5000);
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /--traffic/);
    assert.match(r.stderr, /bogus/);
    assert.match(r.stderr, /sample.*seed.*none/);
    assert.deepEqual(fs.readdirSync(dir), [], 'nothing started, nothing written');
  });

  it('--help documents the flags', { timeout: 10_000 }, async () => {
    const r = await run(['demo', '--help'], 5000);
    assert.equal(r.code, 0);
    for (const f of ['--port', '--admin-port', '--sim-port', '--metrics-port', '--servers',
      '--max-num-seqs', '--time-scale', '--traffic', '--profile', '--policy', '--data-dir',
      '--duration', '--scenario', '--report'])
      assert.ok(r.stdout.includes(f), `${f} in --help`);
    assert.match(r.stdout, /--traffic sample\|seed\|none/);
    assert.match(r.stdout, /--admin-port N\s+.*dashboard/);
  });
});
