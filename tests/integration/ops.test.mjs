// ops.test.mjs — operating the gateway: Prometheus metrics (checked with promtool), the
// /healthz and /readyz probes, and a graceful drain on SIGTERM.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
  startUpstream, startGateway, stopAll, endpointsArg, request, postJson, chatBody, openStream,
  closedPort, sseData, waitFor, waitExit, tryConnect, sleep,
} from './lib.mjs';

const T = { timeout: 15_000 };
const PROMTOOL = process.env.PROMTOOL || '/usr/bin/promtool';

// Sum of all samples of `name` (without labels or with any labels) in an exposition text.
function sampleSum(text, name) {
  let total = 0;
  let found = false;
  const re = new RegExp(`^${name}(?:\\{[^}]*\\})?\\s+(\\S+)`, 'gm');
  for (const m of text.matchAll(re)) {
    total += Number(m[1]);
    found = true;
  }
  return found ? total : undefined;
}

describe('ops', () => {
  let up, gw;

  before(async () => {
    up = await startUpstream({ name: 'up1' });
    gw = await startGateway(['--endpoints', endpointsArg(up), '--health-interval', '1s']);
  }, T);
  after(stopAll);

  it('GET /healthz → 200', T, async () => {
    const r = await request(gw.url, { path: '/healthz' });
    assert.equal(r.status, 200, r.body);
    assert.ok(r.headers['x-request-id'], 'x-request-id on /healthz');
  });

  it('GET /readyz → 200 once an endpoint is healthy', T, async () => {
    await waitFor(async () => (await request(gw.url, { path: '/readyz' })).status === 200,
      { timeoutMs: 5000, intervalMs: 100, what: '/readyz to answer 200' });
  });

  it('GET /readyz is not 200 when no endpoint is reachable', T, async () => {
    const dead = await closedPort();
    const gwDead = await startGateway(['--endpoints', endpointsArg(dead), '--health-interval', '1s']);
    try {
      await waitFor(async () => (await request(gwDead.url, { path: '/readyz' })).status !== 200,
        { timeoutMs: 5000, intervalMs: 100, what: '/readyz to stop answering 200' });
      const h = await request(gwDead.url, { path: '/healthz' });
      assert.equal(h.status, 200, 'liveness does not depend on endpoints');
    } finally {
      await gwDead.stop();
    }
  });

  it('GET /metrics is valid Prometheus exposition after traffic', T, async () => {
    // Some traffic of every kind: plain, streamed, relayed upstream error, broken stream.
    let inference = 0;
    for (let i = 0; i < 3; i++) {
      const r = await postJson(gw.url, '/v1/chat/completions', chatBody());
      assert.equal(r.status, 200, r.body);
      inference++;
    }
    const s = await openStream(gw.url, '/v1/chat/completions', chatBody('fake-model', { stream: true }));
    await s.finished(5000);
    assert.equal(s.status, 200);
    inference++;
    assert.equal((await postJson(gw.url, '/v1/chat/completions', chatBody('error-500'))).status, 500);
    inference++;
    const broken = await openStream(gw.url, '/v1/chat/completions', chatBody('die-mid-stream', { stream: true }));
    await broken.finished(5000);
    inference++;
    assert.equal((await postJson(gw.url, '/v1/chat/completions', '{oops')).status, 400);

    const r = await request(gw.url, { path: '/metrics' });
    assert.equal(r.status, 200, r.body);
    assert.match(String(r.headers['content-type']), /^text\/plain/i);
    assert.ok(r.headers['x-request-id'], 'x-request-id on /metrics');
    const text = r.body;
    for (const name of [
      'tidegate_requests_total',
      'tidegate_requests_in_flight',
      'tidegate_request_duration_seconds_bucket',
      'tidegate_time_to_first_token_seconds_bucket',
      'tidegate_upstream_errors_total',
    ]) {
      assert.match(text, new RegExp(`^${name}(\\{|\\s)`, 'm'), `metric ${name} present in:\n${text}`);
    }
    assert.match(text, /^# TYPE tidegate_requests_total counter$/m);
    assert.match(text, /^# TYPE tidegate_requests_in_flight gauge$/m);
    assert.match(text, /^# TYPE tidegate_request_duration_seconds histogram$/m);
    assert.match(text, /^# TYPE tidegate_time_to_first_token_seconds histogram$/m);
    const total = sampleSum(text, 'tidegate_requests_total');
    assert.ok(total >= inference, `tidegate_requests_total (${total}) counts at least the ${inference} inference requests`);
    assert.ok(sampleSum(text, 'tidegate_upstream_errors_total') >= 1, 'the broken stream counted as an upstream error');
    assert.ok(sampleSum(text, 'tidegate_time_to_first_token_seconds_count') >= 1, 'a first-token time was observed');

    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tidegate-metrics-'));
    const file = path.join(dir, 'metrics.txt');
    try {
      fs.writeFileSync(file, text);
      const fd = fs.openSync(file, 'r');
      let res;
      try {
        res = spawnSync(PROMTOOL, ['check', 'metrics'], { stdio: [fd, 'pipe', 'pipe'], timeout: 10_000 });
      } finally {
        fs.closeSync(fd);
      }
      assert.ifError(res.error);
      assert.equal(res.status, 0,
        `promtool check metrics failed (exit ${res.status}):\n${res.stdout}${res.stderr}\n--- metrics ---\n${text}`);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('SIGTERM drains: in-flight stream continues, new connections refused, exit 0', T, async () => {
    const gwD = await startGateway(['--endpoints', endpointsArg(up), '--drain-timeout', '1s']);
    let s;
    try {
      const abortedBefore = (await up.stats()).aborted;
      s = await openStream(gwD.url, '/v1/chat/completions', chatBody('slow-stream', { stream: true }));
      assert.equal(s.status, 200);
      await s.waitText(0, 3000);
      const eventsAtTerm = sseData(s.text()).length;
      const termAt = Date.now();
      const exited = waitExit(gwD.proc, 5000);
      gwD.signal('SIGTERM');

      // While the gateway is still draining, a new connection must be refused.
      let refusedWhileAlive = false;
      const alive = () => gwD.proc.exitCode === null && gwD.proc.signalCode === null;
      while (alive() && Date.now() - termAt < 3000) {
        const outcome = await tryConnect(gwD.port, 500);
        if (outcome === 'refused' && alive()) { refusedWhileAlive = true; break; }
        await sleep(25);
      }

      const { code, signal } = await exited;
      const took = Date.now() - termAt;
      assert.equal(signal, null, `exited by signal ${signal}; output:\n${gwD.output()}`);
      assert.equal(code, 0, `exit code; output:\n${gwD.output()}`);
      assert.ok(took < 5000, `exited ${took} ms after SIGTERM`);
      assert.ok(refusedWhileAlive, `new connections were refused during the drain; output:\n${gwD.output()}`);
      assert.ok(sseData(s.text()).length > eventsAtTerm,
        'the in-flight stream kept receiving chunks during the drain');
      await s.finished(3000);
      // The upstream stream was cancelled when the drain deadline cut it off.
      await waitFor(async () => (await up.stats()).aborted > abortedBefore,
        { timeoutMs: 2000, what: 'the upstream to see the drained stream closed' });
    } finally {
      s?.destroy();
      await gwD.stop();
    }
  });

  it('SIGTERM lets an in-flight request finish within the drain timeout', T, async () => {
    const gwD = await startGateway(['--endpoints', endpointsArg(up), '--drain-timeout', '6s']);
    try {
      const pending = postJson(gwD.url, '/v1/chat/completions', chatBody('slow-headers'), { timeoutMs: 8000 });
      await waitFor(async () => (await up.stats()).last_body?.model === 'slow-headers',
        { timeoutMs: 2000, what: 'the slow request to reach the upstream' });
      const exited = waitExit(gwD.proc, 8000);
      gwD.signal('SIGTERM');
      const r = await pending;
      assert.equal(r.status, 200, r.body);
      assert.equal(r.json.choices[0].message.content, 'hello from up1');
      const { code, signal } = await exited;
      assert.equal(signal, null, `exited by signal ${signal}; output:\n${gwD.output()}`);
      assert.equal(code, 0, `exit code; output:\n${gwD.output()}`);
    } finally {
      await gwD.stop();
    }
  });

  it('SIGTERM on an idle gateway exits 0 promptly', T, async () => {
    const gwD = await startGateway(['--endpoints', endpointsArg(up)]);
    try {
      const r = await postJson(gwD.url, '/v1/chat/completions', chatBody());
      assert.equal(r.status, 200, r.body);
      const started = Date.now();
      const exited = waitExit(gwD.proc, 5000);
      gwD.signal('SIGTERM');
      const { code, signal } = await exited;
      assert.equal(signal, null, `exited by signal ${signal}; output:\n${gwD.output()}`);
      assert.equal(code, 0, `exit code; output:\n${gwD.output()}`);
      assert.ok(Date.now() - started < 3000, `idle gateway took ${Date.now() - started} ms to exit`);
    } finally {
      await gwD.stop();
    }
  });
});
