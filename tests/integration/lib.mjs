// lib.mjs — shared helpers for tidegate's integration tests (node:test).
//
// Starts fake upstreams (tests/fake_upstream.mjs), the simulator (`tidegate sim`) and the gateway
// binary as child processes on 127.0.0.1, and gives small bounded HTTP/SSE helpers. Every wait
// here has a time limit, and every child process is tracked so that stopAll() (called from
// `after` hooks) and a process 'exit' hook can kill whatever a test file started, even when the
// test failed.
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
export const REPO_ROOT = path.resolve(here, '..', '..');
export const FAKE_UPSTREAM = path.join(REPO_ROOT, 'tests', 'fake_upstream.mjs');
export const GATEWAY_BIN = process.env.TIDEGATE_BIN || path.join(REPO_ROOT, 'build', 'tidegate');

const children = new Set();

// Last-resort cleanup: whatever is still running when this test process exits gets SIGKILL.
process.on('exit', () => {
  for (const child of children) {
    if (child.exitCode === null && child.signalCode === null) {
      try { child.kill('SIGKILL'); } catch { /* already gone */ }
    }
  }
});

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// Resolves with `promise`, or rejects after `ms` with a message naming `what`.
export function withTimeout(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

// Polls `fn` until it returns a truthy value (which is returned); throws after `timeoutMs`.
export async function waitFor(fn, { timeoutMs = 5000, intervalMs = 50, what = 'condition' } = {}) {
  const deadline = Date.now() + timeoutMs;
  let lastErr;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (err) {
      lastErr = err;
    }
    if (Date.now() >= deadline) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}` +
        (lastErr ? ` (last error: ${lastErr.message})` : ''));
    }
    await sleep(intervalMs);
  }
}

// Resolves with the child's exit {code, signal}; rejects after `timeoutMs`.
export function waitExit(proc, timeoutMs = 5000) {
  if (proc.exitCode !== null || proc.signalCode !== null) {
    return Promise.resolve({ code: proc.exitCode, signal: proc.signalCode });
  }
  return withTimeout(new Promise((resolve) => {
    proc.once('exit', (code, signal) => resolve({ code, signal }));
  }), timeoutMs, `process ${proc.pid} to exit`);
}

// Sends `signal`, waits up to `graceMs`, then SIGKILLs. Never throws.
export async function stopProcess(proc, { signal = 'SIGTERM', graceMs = 3000 } = {}) {
  if (!proc) return;
  proc.stopRequested = true;
  try {
    if (proc.exitCode === null && proc.signalCode === null) {
      proc.kill(signal);
      try {
        await waitExit(proc, graceMs);
      } catch {
        proc.kill('SIGKILL');
        await waitExit(proc, 2000).catch(() => {});
      }
    }
  } catch { /* already gone */ }
  children.delete(proc);
}

// Stops every child started through this module (use in `after`).
export async function stopAll() {
  await Promise.all([...children].map((c) => stopProcess(c)));
}

function track(proc) {
  children.add(proc);
  return proc;
}

// Spawns `cmd args` and resolves once a line of its output matches `re`.
export function spawnAndWait(cmd, args, { re, timeoutMs = 10000, what, stdin = 'ignore', env } = {}) {
  const proc = track(spawn(cmd, args, { stdio: [stdin, 'pipe', 'pipe'], env: env ?? process.env }));
  let out = '';
  const output = () => out;
  const ready = new Promise((resolve, reject) => {
    let done = false;
    const finish = (err, m) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      if (err) reject(err); else resolve(m);
    };
    const onData = (chunk) => {
      out += chunk.toString('utf8');
      // `re` is a RegExp, or a function of the output so far returning a truthy match.
      const m = typeof re === 'function' ? re(out) : out.match(re);
      if (m) finish(null, m);
    };
    proc.stdout.on('data', onData);
    proc.stderr.on('data', onData);
    proc.once('error', (err) => finish(new Error(`${what}: failed to start ${cmd}: ${err.message}`)));
    proc.once('exit', (code, signal) => finish(new Error(
      `${what}: exited (code ${code}, signal ${signal}) before it was ready; output:\n${out}`)));
    const timer = setTimeout(() => {
      finish(new Error(`${what}: not ready after ${timeoutMs} ms; output:\n${out}`));
    }, timeoutMs);
  });
  return { proc, output, ready };
}

// Starts a fake upstream. Resolves {name, port, url, endpoint, proc, stats(), reset(), stop()}.
// Waits for a child's readiness; if it never gets ready, stops it before rethrowing.
async function readyOrStop(proc, ready) {
  try {
    return await ready;
  } catch (err) {
    await stopProcess(proc);
    throw err;
  }
}

export async function startUpstream({ name = 'up', models, metricsStatus, hangPosts, tls } = {}) {
  const args = [FAKE_UPSTREAM, '--port', '0', '--name', name, '--exit-on-stdin-close'];
  if (hangPosts) args.push('--hang-posts');
  if (tls) args.push('--tls-cert', tls.cert, '--tls-key', tls.key);
  if (models && models.length) args.push('--models', models.join(','));
  if (metricsStatus) args.push('--metrics-status', String(metricsStatus));
  const { proc, output, ready } = spawnAndWait(process.execPath, args, {
    re: /^LISTENING (\d+)$/m, what: `fake upstream ${name}`, stdin: 'pipe',
  });
  const m = await readyOrStop(proc, ready);
  const port = Number(m[1]);
  const url = `http://127.0.0.1:${port}`;
  return {
    name, port, url, proc, output,
    endpoint: `127.0.0.1:${port}`,
    stats: async () => (await request(url, { path: '/_control/stats' })).json,
    reset: async () => { await request(url, { method: 'POST', path: '/_control/reset' }); },
    stop: () => stopProcess(proc),
  };
}

// Starts the gateway: `tidegate serve --host 127.0.0.1 --port 0 ...args`.
// Resolves {port, url, proc, output(), stop()} once it logs `listening on http://127.0.0.1:<port>`.
// `wrap` runs it under another command (e.g. ['prlimit', '--nofile=300:300', '--']).
// The admin routes (/metrics, /v1/pool, /v1/capacity) are served on the public port, as on a
// single box, unless `adminSplit` asks for the default separate listener (on a free port:
// `adminUrl`).
export async function startGateway(args = [], { timeoutMs = 10000, env, wrap = [], adminSplit = false } = {}) {
  const fullArgs = ['serve', '--host', '127.0.0.1', '--port', '0',
    '--admin-address', adminSplit ? '127.0.0.1:0' : 'public', ...args];
  const cmd = wrap.length ? wrap[0] : GATEWAY_BIN;
  const cmdArgs = wrap.length ? [...wrap.slice(1), GATEWAY_BIN, ...fullArgs] : fullArgs;
  const { proc, output, ready } = spawnAndWait(cmd, cmdArgs, {
    re: /listening on https?:\/\/127\.0\.0\.1:(\d+)/, what: `gateway (${GATEWAY_BIN} ${fullArgs.join(' ')})`,
    timeoutMs, env,
  });
  const m = await readyOrStop(proc, ready);
  const port = Number(m[1]);
  // A gateway that dies on its own is a finding: say so loudly, with its output and exit status.
  proc.once('exit', (code, signal) => {
    if (!proc.stopRequested) {
      process.stderr.write(`\n*** gateway on port ${port} (pid ${proc.pid}) exited unexpectedly: ` +
        `code ${code}, signal ${signal}; its output:\n${output()}\n*** end of gateway output\n`);
    }
  });
  const am = output().match(/admin \([^)]*\) on (http:\/\/[0-9.]+:\d+)/);
  return {
    port, proc, output,
    url: `http://127.0.0.1:${port}`,
    adminUrl: am ? am[1] : null,
    // Sends a signal on purpose (so the exit is not reported as unexpected).
    signal: (sig) => { proc.stopRequested = true; proc.kill(sig); },
    stop: () => stopProcess(proc),
  };
}

export const SIM_MODEL = 'meta-llama/Llama-3.1-8B-Instruct';

// Number of servers a `tidegate sim` argument list asks for (--ports A,B / --port-count K).
function simServerCount(args) {
  const i = args.lastIndexOf('--ports');
  if (i >= 0 && args[i + 1]) return args[i + 1].split(',').filter(Boolean).length;
  const j = args.lastIndexOf('--port-count');
  if (j >= 0 && args[j + 1]) return Number(args[j + 1]);
  return 1;
}

// Starts the simulator: `tidegate sim --host 127.0.0.1 --port 0 ...args` (later flags override).
// Resolves once every server printed `sim listening on http://127.0.0.1:<port>`, with
// {ports, urls, endpoints, port, url, endpoint (the first server), proc, output(), metrics(i),
// metric(name, i), signal(sig), stop()}. An exit the test did not ask for is reported on stderr.
// `host` is another loopback address (127.0.0.2, ...) for tests that need servers on one port.
export async function startSim(args = [], { timeoutMs = 10000, env, host = '127.0.0.1' } = {}) {
  const fullArgs = ['sim', '--host', host, '--port', '0', ...args];
  const want = simServerCount(fullArgs);
  const listenRe = new RegExp(`sim listening on http://${host.replaceAll('.', '\\.')}:(\\d+)`, 'g');
  const { proc, output, ready } = spawnAndWait(GATEWAY_BIN, fullArgs, {
    re: (out) => {
      const ports = [...out.matchAll(listenRe)].map((m) => Number(m[1]));
      return ports.length >= want ? ports : null;
    },
    what: `sim (${GATEWAY_BIN} ${fullArgs.join(' ')})`, timeoutMs, env,
  });
  const ports = await readyOrStop(proc, ready);
  proc.once('exit', (code, signal) => {
    if (!proc.stopRequested) {
      process.stderr.write(`\n*** sim on ports ${ports.join(',')} (pid ${proc.pid}) exited unexpectedly: ` +
        `code ${code}, signal ${signal}; its output:\n${output()}\n*** end of sim output\n`);
    }
  });
  const urls = ports.map((p) => `http://${host}:${p}`);
  const metrics = async (i = 0) => {
    const r = await request(urls[i], { path: '/metrics', timeoutMs: 3000 });
    if (r.status !== 200) throw new Error(`GET ${urls[i]}/metrics: status ${r.status}`);
    return parseMetrics(r.body);
  };
  return {
    ports, urls, proc, output,
    endpoints: ports.map((p) => `${host}:${p}`),
    port: ports[0], url: urls[0], endpoint: `${host}:${ports[0]}`,
    metrics,
    // Sum over all series of one metric name (e.g. 'vllm:num_requests_running') of server i.
    metric: async (name, i = 0) => (await metrics(i)).sum(name),
    // Sends a signal on purpose (so the exit is not reported as unexpected).
    signal: (sig) => { proc.stopRequested = true; proc.kill(sig); },
    stop: () => stopProcess(proc),
  };
}

// Parses the Prometheus text format into {samples: [{name, labels, value}], has(name), sum(name),
// get(name, labels), series(name)}. sum() adds up every series of `name` (0 if there is none);
// get() returns the value of the first series whose labels include `labels`, or undefined.
export function parseMetrics(text) {
  const samples = [];
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const m = line.match(/^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+\S+)?$/);
    if (!m) throw new Error(`unparsable metrics line: ${line}`);
    const labels = {};
    if (m[2]) {
      for (const lm of m[2].matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[lm[1]] = lm[2];
    }
    samples.push({ name: m[1], labels, value: Number(m[3]) });
  }
  const of = (name) => samples.filter((s) => s.name === name);
  return {
    samples,
    has: (name) => of(name).length > 0,
    sum: (name) => of(name).reduce((a, s) => a + s.value, 0),
    get: (name, labels = {}) => of(name).find((s) =>
      Object.entries(labels).every(([k, v]) => s.labels[k] === v))?.value,
    series: of,
  };
}

// `--endpoints` value for a list of upstreams and/or raw ports.
export function endpointsArg(...items) {
  return items.map((it) => (typeof it === 'number' ? `127.0.0.1:${it}` : it.endpoint)).join(',');
}

// A loopback port that nothing listens on (bound, then closed).
export function closedPort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

// One HTTP request with a bounded wait. Resolves {status, headers, body, json, elapsedMs, complete}.
// `body` may be a string, Buffer or object (sent as JSON). By default a fresh connection is used
// (agent: false); pass `agent` to reuse connections. `chunked: true` omits Content-Length.
export function request(baseUrl, {
  method = 'GET', path: p = '/', headers = {}, body, timeoutMs = 10000, agent = false, chunked = false,
} = {}) {
  const url = new URL(p, baseUrl);
  let payload = null;
  const h = { ...headers };
  if (body !== undefined) {
    payload = Buffer.isBuffer(body) ? body
      : Buffer.from(typeof body === 'string' ? body : JSON.stringify(body), 'utf8');
    if (!Object.keys(h).some((k) => k.toLowerCase() === 'content-type')) h['content-type'] = 'application/json';
    if (!chunked) h['content-length'] = payload.length;
  }
  const started = Date.now();
  return new Promise((resolve, reject) => {
    const req = http.request({
      hostname: url.hostname, port: url.port, path: url.pathname + url.search, method, headers: h, agent,
    }, (res) => {
      const parts = [];
      res.on('data', (c) => parts.push(c));
      res.on('end', () => {
        clearTimeout(timer);
        const text = Buffer.concat(parts).toString('utf8');
        let json;
        try { json = JSON.parse(text); } catch { json = undefined; }
        resolve({ status: res.statusCode, headers: res.headers, body: text, json,
          elapsedMs: Date.now() - started, complete: res.complete });
      });
      res.on('error', (err) => { clearTimeout(timer); reject(err); });
    });
    const timer = setTimeout(() => {
      req.destroy();
      reject(new Error(`timed out after ${timeoutMs} ms: ${method} ${url.href}`));
    }, timeoutMs);
    req.on('error', (err) => { clearTimeout(timer); reject(err); });
    if (payload && chunked) {
      // Send in a few pieces so the transfer really is chunked.
      const step = Math.max(1, Math.ceil(payload.length / 4));
      for (let i = 0; i < payload.length; i += step) req.write(payload.subarray(i, i + step));
      req.end();
    } else {
      req.end(payload ?? undefined);
    }
  });
}

export const postJson = (baseUrl, p, obj, opts = {}) =>
  request(baseUrl, { ...opts, method: 'POST', path: p, body: obj });

export const chatBody = (model = 'fake-model', extra = {}) => ({
  model, messages: [{ role: 'user', content: 'say hello' }], ...extra,
});

// Parses an SSE body into a list of `data:` payloads (strings), one per event.
export function sseData(text) {
  const events = [];
  for (const block of text.split(/\r?\n\r?\n/)) {
    const lines = block.split(/\r?\n/).filter((l) => l.startsWith('data:'));
    if (lines.length) events.push(lines.map((l) => l.slice(5).replace(/^ /, '')).join('\n'));
  }
  return events;
}

// Concatenated delta/text content of streamed chat or text completion chunks.
export function sseContent(events) {
  let s = '';
  for (const d of events) {
    if (d === '[DONE]') continue;
    let obj;
    try { obj = JSON.parse(d); } catch { continue; }
    const c = obj?.choices?.[0];
    if (!c) continue;
    s += c.delta?.content ?? c.text ?? '';
  }
  return s;
}

// Opens a POST whose response is consumed incrementally. Resolves once the response headers
// arrive with {req, res, status, headers, text(), waitText(minLen, ms), done, finished(ms),
// destroy()}: `done` resolves with {complete, error} when the response ends or breaks (finished()
// is the same with a time limit); waitText waits until
// more than `minLen` characters of body have arrived (or the response ended).
export function openStream(baseUrl, p, obj, { headers = {}, timeoutMs = 10000 } = {}) {
  const url = new URL(p, baseUrl);
  const payload = Buffer.from(JSON.stringify(obj), 'utf8');
  return new Promise((resolve, reject) => {
    const req = http.request({
      hostname: url.hostname, port: url.port, path: url.pathname, method: 'POST', agent: false,
      headers: { 'content-type': 'application/json', 'content-length': payload.length, ...headers },
    }, (res) => {
      clearTimeout(timer);
      let buf = '';
      let ended = false;
      let waiters = [];
      const wake = () => { const w = waiters; waiters = []; w.forEach((f) => f()); };
      res.setEncoding('utf8');
      res.on('data', (c) => { buf += c; wake(); });
      const done = new Promise((resolveDone) => {
        const settle = (v) => { if (!ended) { ended = true; resolveDone(v); wake(); } };
        res.on('end', () => settle({ complete: res.complete, error: null }));
        res.on('error', (err) => settle({ complete: false, error: err }));
        res.on('close', () => settle({ complete: res.complete, error: null }));
      });
      const waitText = (minLen, ms = 5000) => withTimeout(new Promise((res2) => {
        const check = () => {
          if (buf.length > minLen || ended) res2(buf);
          else waiters.push(check);
        };
        check();
      }), ms, `more than ${minLen} chars of stream data from ${url.href}`);
      resolve({
        req, res, status: res.statusCode, headers: res.headers,
        text: () => buf, waitText, done,
        finished: (ms = 10000) => withTimeout(done, ms, `end of stream from ${url.href}`),
        destroy: () => { res.destroy(); req.destroy(); },
      });
    });
    const timer = setTimeout(() => {
      req.destroy();
      reject(new Error(`timed out after ${timeoutMs} ms waiting for response headers: POST ${url.href}`));
    }, timeoutMs);
    req.on('error', (err) => { clearTimeout(timer); reject(err); });
    req.end(payload);
  });
}

// Tries a TCP connect; resolves 'connected', 'refused' or another error code. Bounded.
export function tryConnect(port, timeoutMs = 1000) {
  return new Promise((resolve) => {
    const sock = net.connect({ host: '127.0.0.1', port });
    const timer = setTimeout(() => { sock.destroy(); resolve('timeout'); }, timeoutMs);
    sock.once('connect', () => { clearTimeout(timer); sock.destroy(); resolve('connected'); });
    sock.once('error', (err) => {
      clearTimeout(timer);
      resolve(err.code === 'ECONNREFUSED' ? 'refused' : err.code || String(err));
    });
  });
}

// Sends raw bytes on a new connection and resolves with everything received until the peer
// closes (or `timeoutMs` passes, after which the socket is destroyed).
export function rawExchange(port, data, timeoutMs = 3000) {
  return new Promise((resolve, reject) => {
    const sock = net.connect({ host: '127.0.0.1', port });
    const parts = [];
    const timer = setTimeout(() => { sock.destroy(); resolve(Buffer.concat(parts).toString('latin1')); }, timeoutMs);
    sock.on('data', (c) => parts.push(c));
    sock.on('close', () => { clearTimeout(timer); resolve(Buffer.concat(parts).toString('latin1')); });
    sock.on('error', (err) => { clearTimeout(timer); reject(err); });
    sock.write(data);
  });
}

// Asserts an OpenAI-style JSON error and returns its `error` object.
export function expectErrorShape(assert, r, { status, code } = {}) {
  const ctx = `status ${r.status}, headers ${JSON.stringify(r.headers)}, body ${r.body.slice(0, 500)}`;
  if (status !== undefined) assert.equal(r.status, status, ctx);
  assert.match(String(r.headers['content-type'] || ''), /^application\/json/i, `content-type; ${ctx}`);
  assert.ok(r.json && typeof r.json === 'object', `body is JSON; ${ctx}`);
  const e = r.json.error;
  assert.ok(e && typeof e === 'object', `body has an error object; ${ctx}`);
  assert.equal(typeof e.message, 'string', `error.message is a string; ${ctx}`);
  assert.ok(e.message.length > 0, `error.message is non-empty; ${ctx}`);
  assert.equal(typeof e.type, 'string', `error.type is a string; ${ctx}`);
  if (code !== undefined) assert.equal(e.code, code, `error.code; ${ctx}`);
  return e;
}

// Opens `n` POST requests at once on fresh connections and keeps them open (their response
// bodies are read and dropped), e.g. long streams that fill a simulator's queue directly.
// Unlike openStream it does not wait for response heads (a queued request may have none yet).
// Returns {statuses (head status per request, once known), errors, destroy()}; destroy() hangs
// up every request, whatever state it is in.
export function openFlood(baseUrl, p, obj, n, { headers = {} } = {}) {
  const url = new URL(p, baseUrl);
  const payload = Buffer.from(JSON.stringify(obj), 'utf8');
  const reqs = [];
  const statuses = [];
  const errors = [];
  for (let i = 0; i < n; i++) {
    const req = http.request({
      hostname: url.hostname, port: url.port, path: url.pathname, method: 'POST', agent: false,
      headers: { 'content-type': 'application/json', 'content-length': payload.length, ...headers },
    }, (res) => {
      statuses[i] = res.statusCode;
      res.on('error', () => {});
      res.resume();
    });
    req.on('error', (err) => { if (!req.destroyedOnPurpose) errors.push(err); });
    req.end(payload);
    reqs.push(req);
  }
  return {
    statuses, errors,
    destroy: () => {
      for (const req of reqs) {
        req.destroyedOnPurpose = true;
        req.destroy();
      }
    },
  };
}

// Runs `promtool check metrics` on an exposition text. Resolves {status, output} (status 0 =
// clean). The binary is $PROMTOOL or /usr/bin/promtool.
export async function promtoolCheckMetrics(text) {
  const { spawnSync } = await import('node:child_process');
  const res = spawnSync(process.env.PROMTOOL || '/usr/bin/promtool', ['check', 'metrics'],
    { input: text, encoding: 'utf8', timeout: 10_000 });
  if (res.error) throw res.error;
  return { status: res.status, output: `${res.stdout}${res.stderr}` };
}

// Starts `tidegate async` (the async processor) with its metrics on a free port; resolves once
// it logged the metrics address. `metrics()` reads its /metrics.
export async function startAsync(args = [], { timeoutMs = 10000, env, cwd } = {}) {
  const fullArgs = ['async', '--metrics-port', '0', '--progress-interval', '0', ...args];
  const { proc, output, ready } = spawnAndWait(GATEWAY_BIN, fullArgs, {
    re: /metrics on http:\/\/127\.0\.0\.1:(\d+)\/metrics/,
    what: `async processor (${GATEWAY_BIN} ${fullArgs.join(' ')})`, timeoutMs, env,
  });
  const m = await readyOrStop(proc, ready);
  const port = Number(m[1]);
  proc.once('exit', (code, signal) => {
    if (!proc.stopRequested) {
      process.stderr.write(`\n*** async processor (pid ${proc.pid}) exited unexpectedly: ` +
        `code ${code}, signal ${signal}; its output:\n${output()}\n*** end of processor output\n`);
    }
  });
  const metrics = async () => {
    const r = await request(`http://127.0.0.1:${port}`, { path: '/metrics', timeoutMs: 3000 });
    if (r.status !== 200) throw new Error(`processor /metrics: status ${r.status}`);
    return parseMetrics(r.body);
  };
  return {
    port, proc, output, metrics,
    metric: async (name) => (await metrics()).sum(name),
    signal: (sig) => { proc.stopRequested = true; proc.kill(sig); },
    stop: () => stopProcess(proc),
  };
}

// Runs the tidegate binary to completion (bounded); resolves {code, signal, stdout, stderr}.
export function runTidegate(args, { input, timeoutMs = 60000, env } = {}) {
  return new Promise((resolve, reject) => {
    const proc = track(spawn(GATEWAY_BIN, args, { stdio: ['pipe', 'pipe', 'pipe'], env: env ?? process.env }));
    let stdout = '', stderr = '';
    proc.stdout.on('data', (c) => { stdout += c; });
    proc.stderr.on('data', (c) => { stderr += c; });
    const timer = setTimeout(() => {
      proc.kill('SIGKILL');
      reject(new Error(`tidegate ${args.join(' ')}: still running after ${timeoutMs} ms\n${stderr}`));
    }, timeoutMs);
    proc.once('error', (err) => { clearTimeout(timer); reject(err); });
    proc.once('exit', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
    if (input !== undefined) proc.stdin.end(input); else proc.stdin.end();
  });
}

// Starts `tidegate demo ...args` (bounded by the caller), collecting stdout + stderr.
export function startDemo(args) {
  const proc = spawn(GATEWAY_BIN, ['demo', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  proc.stdout.on('data', (c) => { out += c.toString('utf8'); });
  proc.stderr.on('data', (c) => { out += c.toString('utf8'); });
  return { proc, output: () => out };
}

// A process that exists and is not a zombie (a child reaped later must not count as alive).
export function processAlive(pid) {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
    return state !== 'Z' && state !== 'X';
  } catch {
    return false;
  }
}

// A CA and a server certificate for 127.0.0.1 signed by it (openssl), written into `dir` with
// file names starting with `prefix`; returns the {ca, cert, key} paths.
export function makeCerts(dir, prefix = '', caName = 'tidegate test CA') {
  const f = (x) => path.join(dir, `${prefix}${x}`);
  const ossl = (...args) => execFileSync('openssl', args, { stdio: 'pipe' });
  ossl('req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes',
    '-keyout', f('ca.key'), '-out', f('ca.pem'), '-days', '2', '-subj', `/CN=${caName}`);
  ossl('req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes',
    '-keyout', f('server.key'), '-out', f('server.csr'), '-subj', '/CN=127.0.0.1');
  fs.writeFileSync(f('ext.cnf'), 'subjectAltName=IP:127.0.0.1\n');
  ossl('x509', '-req', '-in', f('server.csr'), '-CA', f('ca.pem'), '-CAkey', f('ca.key'),
    '-CAcreateserial', '-out', f('server.pem'), '-days', '2', '-extfile', f('ext.cnf'));
  return { ca: f('ca.pem'), cert: f('server.pem'), key: f('server.key') };
}
