// demo.test.mjs — `tidegate demo` end to end: it starts the simulated fleet, the gateway and the
// async processor as children, prints the base URL and queue URIs; the official openai client
// streams a chat completion through it; 20 async requests submitted with `tidegate submit` come
// back as 20 succeeded results from `tidegate results`; SIGINT stops everything (exit 0, no child
// left, every port free again). Also: a child that fails at start-up is named with its log, and
// a busy port is refused up front.
import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFile } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import OpenAI from 'openai';
import { GATEWAY_BIN, SIM_MODEL, stopProcess, waitExit, waitFor, tryConnect } from './lib.mjs';

const dirs = [];
const procs = [];
after(async () => {
  await Promise.all(procs.map((p) => stopProcess(p, { signal: 'SIGTERM', graceMs: 10_000 })));
  for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
});

function tmpDir() {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'tidegate-demo-'));
  dirs.push(d);
  return d;
}

// Starts `tidegate demo ...args`, collecting its output (stdout + stderr).
function startDemo(args) {
  const proc = spawn(GATEWAY_BIN, ['demo', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  procs.push(proc);
  let out = '';
  proc.stdout.on('data', (c) => { out += c.toString('utf8'); });
  proc.stderr.on('data', (c) => { out += c.toString('utf8'); });
  return { proc, output: () => out };
}

// Runs the binary to completion (bounded); resolves {code, stdout, stderr}.
function run(args, timeoutMs) {
  return new Promise((resolve) => {
    execFile(GATEWAY_BIN, args, { timeout: timeoutMs, encoding: 'utf8' }, (err, stdout, stderr) => {
      resolve({ code: err ? (err.code ?? err.signal) : 0, stdout, stderr });
    });
  });
}

const alive = (pid) => {
  try { process.kill(pid, 0); return true; } catch { return false; }
};

describe('tidegate demo', () => {
  it('serves real-time and async traffic, then stops cleanly on SIGINT', { timeout: 45_000 },
    async () => {
      const dir = tmpDir();
      const demo = startDemo(['--port', '0', '--sim-port', '0', '--metrics-port', '0',
        '--data-dir', dir, '--time-scale', '20', '--duration', '30s']);
      const ctx = () => `demo output:\n${demo.output()}`;
      const banner = await waitFor(() => {
        if (demo.proc.exitCode !== null) throw new Error(`demo exited early; ${ctx()}`);
        const o = demo.output();
        return /Ctrl-C stops everything/.test(o) ? o : null;
      }, { timeoutMs: 20_000, intervalMs: 50, what: 'the demo banner' });

      const baseURL = banner.match(/OpenAI base URL:\s+(http:\/\/127\.0\.0\.1:\d+\/v1)/)?.[1];
      assert.ok(baseURL, `base URL printed; ${ctx()}`);
      const requestsUri = banner.match(/submit --queue '([^']+)'/)?.[1];
      const resultsUri = banner.match(/results --queue '([^']+)'/)?.[1];
      assert.ok(requestsUri && resultsUri, `queue URIs printed; ${ctx()}`);
      assert.ok(requestsUri.startsWith(`sqlite://${fs.realpathSync(dir)}/tidegate.db?queue=`),
        requestsUri);
      const pm = banner.match(/pids: sim (\d+), gateway (\d+), async (\d+)/);
      assert.ok(pm, `pids printed; ${ctx()}`);
      const pids = pm.slice(1).map(Number);
      const ports = [...banner.matchAll(/127\.0\.0\.1:(\d+)/g)].map((m) => Number(m[1]));
      for (const log of ['sim.log', 'gateway.log', 'async.log'])
        assert.ok(fs.existsSync(path.join(dir, log)), `${log} written`);

      // Real time: the official client, streaming, through the printed base URL.
      const client = new OpenAI({ baseURL, apiKey: 'demo', maxRetries: 0, timeout: 10_000 });
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
      const sub = await run(['submit', '--queue', requestsUri, file], 10_000);
      assert.equal(sub.code, 0, `submit: ${sub.stderr}`);
      const res = await run(['results', '--queue', resultsUri, '--wait', '20', '--timeout', '20s'],
        25_000);
      assert.equal(res.code, 0, `results: ${res.stderr}; ${ctx()}`);
      const results = res.stdout.trim().split('\n').map((l) => JSON.parse(l));
      assert.equal(results.length, 20, res.stdout);
      assert.deepEqual(results.map((r) => r.id).sort(), lines.map((l) => JSON.parse(l).id).sort());
      for (const r of results) {
        assert.ok(!r.error_code && r.status_code >= 200 && r.status_code < 300, JSON.stringify(r));
      }

      // The status line (a line every 5 s when not on a terminal) counts the async work.
      await waitFor(() => /\[\d+s\] real-time [\d.]+ req\/s, TTFT p99 .* \| async backlog 0, in flight 0, done 20, shed \d+ \| utilisation \d+%/.test(demo.output()),
        { timeoutMs: 8000, intervalMs: 100, what: `a status line with done 20; ${ctx()}` });

      // Ctrl-C: exit 0, processor first, then gateway, then sims; nothing left behind.
      demo.proc.kill('SIGINT');
      const { code, signal } = await waitExit(demo.proc, 20_000);
      assert.equal(signal, null, ctx());
      assert.equal(code, 0, ctx());
      const o = demo.output();
      const order = ['stopping the async processor', 'stopping the gateway',
        'stopping the simulated fleet'].map((s) => o.indexOf(s));
      assert.ok(order.every((i) => i >= 0) && order[0] < order[1] && order[1] < order[2],
        `stop order; ${ctx()}`);
      await waitFor(() => pids.every((p) => !alive(p)),
        { timeoutMs: 3000, what: `children ${pids.join(',')} to be gone` });
      for (const p of new Set(ports)) assert.equal(await tryConnect(p), 'refused', `port ${p} free`);
    });

  it('names a component that fails at start-up, with its log, and exits 1', { timeout: 20_000 },
    async () => {
      const dir = tmpDir();
      const demo = startDemo(['--port', '0', '--sim-port', '0', '--metrics-port', '0',
        '--data-dir', dir, '--profile', 'no-such-profile']);
      const { code } = await waitExit(demo.proc, 15_000);
      assert.equal(code, 1, demo.output());
      assert.match(demo.output(),
        new RegExp(`the simulated fleet exited during start-up .*see its log ${path.join(fs.realpathSync(dir), 'sim.log')}`));
    });

  it('refuses a port that is in use', { timeout: 10_000 }, async () => {
    const srv = net.createServer();
    await new Promise((r) => srv.listen(0, '127.0.0.1', r));
    const busy = srv.address().port;
    try {
      const r = await run(['demo', '--port', String(busy), '--sim-port', '0', '--metrics-port', '0',
        '--data-dir', tmpDir()], 8000);
      assert.equal(r.code, 1, r.stderr);
      assert.match(r.stderr, new RegExp(`port ${busy} is in use`));
    } finally {
      srv.close();
    }
  });

  it('--help documents the flags', { timeout: 10_000 }, async () => {
    const r = await run(['demo', '--help'], 5000);
    assert.equal(r.code, 0);
    for (const f of ['--port', '--sim-port', '--metrics-port', '--servers', '--time-scale',
      '--profile', '--policy', '--data-dir', '--duration', '--scenario', '--report'])
      assert.ok(r.stdout.includes(f), `${f} in --help`);
  });
});
