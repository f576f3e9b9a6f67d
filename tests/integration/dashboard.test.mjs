// dashboard.test.mjs — the gateway's live dashboard over HTTP (no browser; the page in Chromium
// is dashboard_browser.test.mjs), against real simulators (`tidegate sim`) and gateways:
//   - GET /dashboard on the admin listener is a self-contained HTML page (no CDN, no external
//     http(s) reference), HEAD works, other methods get 405; with the admin listener split off it
//     is 404 on the public port (naming the admin URL); with --admin-address public it is there;
//   - GET /dashboard/data has the documented fields; a point closes about every second and
//     ?since=<unix ms> returns only newer points; the endpoint table lists both servers, up;
//   - streamed real-time requests and sheddable requests are counted apart
//     (tidegate_requests_by_class_total, tidegate_endpoint_busy_seconds_total) and show as
//     rps_* / util_* / in_flight_* of their class in the points;
//   - a killed server shows up:false with a last_error within a few seconds, and the data
//     endpoint keeps answering (and closing points);
//   - --processor-metrics: a real `tidegate async` is shown up with numbers (done counts the
//     work it finished), a closed port is shown down with the connection error, and a bad URL is
//     refused at start-up (exit 2).
// Loopback only; every wait is bounded.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
  SIM_MODEL, startSim, startGateway, startAsync, stopAll, request, postJson, openStream, waitFor,
  sleep, parseMetrics, closedPort, runTidegate,
} from './lib.mjs';

const T = { timeout: 30_000 };
const OBJECTIVE = 'x-gateway-inference-objective';
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'tidegate-dashboard-'));

let sims = null;  // one `tidegate sim` process, two servers
let gw = null;    // a gateway over both, admin split off
let admin = null;
before(async () => {
  sims = await startSim(['--port-count', '2']);
  gw = await startGateway(['--endpoints', sims.endpoints.join(',')], { adminSplit: true });
  admin = adminUrl(gw);
});
after(async () => {
  await stopAll();
  fs.rmSync(tmp, { recursive: true, force: true });
});

// The admin listener's URL, from the gateway's start-up line
// `admin (/metrics, /v1/pool, /v1/capacity, /dashboard) on http://127.0.0.1:P`.
function adminUrl(g) {
  const m = g.output().match(/admin \([^)]*\) on (http:\/\/127\.0\.0\.1:\d+)/);
  assert.ok(m, `the admin URL in the gateway's log:\n${g.output()}`);
  return m[1];
}

async function data(base, since) {
  const r = await request(base, { path: since === undefined ? '/dashboard/data' : `/dashboard/data?since=${since}`, timeoutMs: 3000 });
  assert.equal(r.status, 200, r.body);
  assert.match(String(r.headers['content-type']), /^application\/json/);
  assert.ok(r.json && typeof r.json === 'object', r.body);
  return r.json;
}

async function metricsOf(base) {
  const r = await request(base, { path: '/metrics', timeoutMs: 3000 });
  assert.equal(r.status, 200);
  return parseMetrics(r.body);
}

const isNum = (v) => typeof v === 'number' && Number.isFinite(v);
const numOrNull = (v) => v === null || isNum(v);

// Every non-data, non-relative URL a page would load: src/href attributes, CSS url() and @import.
function externalRefs(html) {
  const refs = [];
  for (const m of html.matchAll(/\b(?:src|href)\s*=\s*["']?([^"'\s>]+)/gi)) refs.push(m[1]);
  for (const m of html.matchAll(/url\(\s*["']?([^"')\s]+)/gi)) refs.push(m[1]);
  for (const m of html.matchAll(/@import\s+(?:url\()?\s*["']?([^"')\s;]+)/gi)) refs.push(m[1]);
  return refs.filter((u) => !u.startsWith('data:') && !u.startsWith('#') &&
    (/^[a-z][a-z0-9+.-]*:/i.test(u) || u.startsWith('//')));
}

describe('GET /dashboard', () => {
  it('is a self-contained HTML page on the admin listener; HEAD works, POST is 405, the public port says where it is', T, async (t) => {
    const page = await request(admin, { path: '/dashboard' });
    assert.equal(page.status, 200, page.body.slice(0, 300));
    assert.match(String(page.headers['content-type']), /^text\/html/);
    assert.match(page.body, /^<!DOCTYPE html>/i);
    assert.match(page.body, /<\/html>\s*$/i);
    assert.ok(page.body.includes('dashboard/data'), 'the page polls dashboard/data');
    assert.doesNotMatch(page.body, /https?:\/\//i, 'no http(s) URL in the page');
    assert.deepEqual(externalRefs(page.body), [], 'no external reference (CDN, font, script)');
    assert.equal(Number(page.headers['content-length']), Buffer.byteLength(page.body));
    assert.equal((await request(admin, { path: '/dashboard/' })).status, 200, '/dashboard/ too');

    const head = await request(admin, { path: '/dashboard', method: 'HEAD' });
    assert.equal(head.status, 200);
    assert.match(String(head.headers['content-type']), /^text\/html/);
    assert.equal(head.body, '');
    const headData = await request(admin, { path: '/dashboard/data', method: 'HEAD' });
    assert.equal(headData.status, 200);
    assert.equal(headData.body, '');

    for (const p of ['/dashboard', '/dashboard/data']) {
      for (const method of ['POST', 'PUT', 'DELETE']) {
        const r = await request(admin, { path: p, method, body: method === 'DELETE' ? undefined : '{}' });
        assert.equal(r.status, 405, `${method} ${p}: ${r.body}`);
        assert.equal(r.headers.allow, 'GET, HEAD');
      }
      const pub = await request(gw.url, { path: p });
      assert.equal(pub.status, 404, `${p} on the public port: ${pub.body}`);
      assert.ok(pub.json?.error?.message.includes(`served on the admin listener (${admin})`), pub.body);
    }

    // --admin-address public: the dashboard is on the public port.
    const single = await startGateway(['--endpoints', sims.endpoints.join(',')]);
    t.after(() => single.stop());
    const sp = await request(single.url, { path: '/dashboard' });
    assert.equal(sp.status, 200);
    assert.match(String(sp.headers['content-type']), /^text\/html/);
    assert.equal(sp.body, page.body);
    const sd = await data(single.url);
    assert.equal(sd.endpoints.length, 2);
  });
});

describe('GET /dashboard/data', () => {
  it('has the documented fields, a point a second, ?since= for newer points only, and both servers up', T, async () => {
    const d = await waitFor(async () => {
      const v = await data(admin);
      return v.points.length >= 2 && v.endpoints.every((e) => e.up && !e.stale) ? v : null;
    }, { timeoutMs: 8000, intervalMs: 200, what: 'two points and both endpoints up' });

    assert.ok(isNum(d.now_ms) && Math.abs(d.now_ms - Date.now()) < 5000, `now_ms ${d.now_ms}`);
    assert.equal(d.interval_s, 1);
    assert.ok(isNum(d.window_s) && d.window_s >= 60, `window_s ${d.window_s}`);
    assert.ok(Array.isArray(d.points));
    assert.equal(d.processor, null, 'no --processor-metrics: processor is null');
    assert.ok(isNum(d.saturation) && d.saturation >= 0, `saturation ${d.saturation}`);
    assert.ok(Array.isArray(d.queues));
    const pointKeys = ['t_ms', 'util_realtime', 'util_async', 'rps_realtime', 'rps_async',
      'ttft_p50_ms', 'ttft_p99_ms', 'in_flight_realtime', 'in_flight_async'];
    for (const p of d.points) {
      assert.deepEqual(Object.keys(p).sort(), [...pointKeys].sort(), JSON.stringify(p));
      for (const k of ['t_ms', 'util_realtime', 'util_async', 'rps_realtime', 'rps_async',
        'in_flight_realtime', 'in_flight_async']) assert.ok(isNum(p[k]), `${k}: ${JSON.stringify(p)}`);
      assert.ok(numOrNull(p.ttft_p50_ms) && numOrNull(p.ttft_p99_ms), JSON.stringify(p));
      assert.ok(p.util_realtime >= 0 && p.util_async >= 0 && p.util_realtime + p.util_async <= 1 + 1e-9,
        JSON.stringify(p));
      assert.ok(p.t_ms <= d.now_ms, JSON.stringify(p));
    }

    // The endpoint table: both servers, up, with the simulator's load.
    assert.deepEqual(d.endpoints.map((e) => e.address).sort(), [...sims.endpoints].sort());
    const epKeys = ['address', 'engine', 'up', 'stale', 'waiting', 'running', 'kv', 'in_flight',
      'predicted_ttft_ms', 'last_error'];
    for (const e of d.endpoints) {
      assert.deepEqual(Object.keys(e).sort(), [...epKeys].sort(), JSON.stringify(e));
      assert.equal(e.up, true, JSON.stringify(e));
      assert.equal(e.stale, false, JSON.stringify(e));
      assert.equal(e.engine, 'vllm', JSON.stringify(e));
      assert.ok(isNum(e.waiting) && isNum(e.running) && isNum(e.kv) && isNum(e.in_flight), JSON.stringify(e));
      assert.ok(numOrNull(e.predicted_ttft_ms));
      assert.equal(e.last_error, '', JSON.stringify(e));
    }

    // Points accumulate, one about every second, oldest first.
    const n1 = d.points.length;
    await sleep(3200);
    const d2 = await data(admin);
    const grew = d2.points.length - n1;
    assert.ok(grew >= 2 && grew <= 5, `points grew by ${grew} in ~3.2 s`);
    const ts = d2.points.map((p) => p.t_ms);
    const gaps = ts.slice(1).map((t, i) => t - ts[i]);
    for (const g of gaps) assert.ok(g >= 500 && g <= 2500, `gap ${g} ms between points: ${gaps}`);
    const sorted = [...gaps].sort((a, b) => a - b);
    const median = sorted[Math.floor(sorted.length / 2)];
    assert.ok(median >= 900 && median <= 1150, `median gap ${median} ms: ${gaps}`);
    // The older points are still there, unchanged.
    assert.deepEqual(d2.points.slice(0, n1), d.points);

    // ?since= returns only the points closed after that time.
    const since = ts[ts.length - 3];
    const d3 = await data(admin, since);
    assert.ok(d3.points.length >= 2, `points after ${since}: ${JSON.stringify(d3.points)}`);
    assert.ok(d3.points.every((p) => p.t_ms > since), JSON.stringify(d3.points));
    assert.deepEqual(d3.points.slice(0, 2), d2.points.slice(-2), 'the two newest of before, in order');
    const d4 = await data(admin, d3.now_ms + 60_000);
    assert.deepEqual(d4.points, [], 'nothing newer than the future');
    assert.equal(d4.endpoints.length, 2, 'the rest is there with no points');
    const d5 = await data(admin, 0);
    assert.ok(d5.points.length >= d2.points.length);
  });

  it('counts streamed real-time and sheddable requests apart, and shows each class in the points', T, async (t) => {
    const g = await startGateway(['--endpoints', sims.endpoints.join(',')], { adminSplit: true });
    t.after(() => g.stop());
    const a = adminUrl(g);
    // Fresh metrics first: a stale pool refuses sheddable work.
    await waitFor(async () => {
      const v = await data(a);
      return v.points.length >= 1 && v.endpoints.every((e) => e.up && !e.stale);
    }, { timeoutMs: 8000, intervalMs: 100, what: 'fresh endpoint metrics and a first point' });
    const before = (await data(a)).points;
    const startedAt = before[before.length - 1].t_ms;

    // Four waves of 4 streamed real-time + 4 sheddable requests, 64 tokens each at time scale 1
    // (each is in flight over several 100 ms samples; the waves together span > 1 s).
    const WAVES = 4, PER = 4;
    const rtStatuses = [], asStatuses = [];
    for (let w = 0; w < WAVES; w++) {
      const rt = Array.from({ length: PER }, async (_, i) => {
        const s = await openStream(g.url, '/v1/chat/completions', {
          model: SIM_MODEL, max_tokens: 64, stream: true,
          messages: [{ role: 'user', content: `real time ${w}.${i}` }],
        });
        const end = await s.finished(15_000);
        assert.ok(end.complete, `stream ${w}.${i} complete`);
        assert.match(s.text(), /data: \[DONE\]/);
        return s.status;
      });
      const as = Array.from({ length: PER }, async (_, i) => (await postJson(g.url, '/v1/completions',
        { model: SIM_MODEL, prompt: `batch job ${w}.${i}`, max_tokens: 64 },
        { headers: { [OBJECTIVE]: 'sheddable' }, timeoutMs: 15_000 })).status);
      rtStatuses.push(...await Promise.all(rt));
      asStatuses.push(...await Promise.all(as));
    }
    const doneAt = Date.now();
    assert.deepEqual(rtStatuses, Array(WAVES * PER).fill(200));
    assert.deepEqual(asStatuses, Array(WAVES * PER).fill(200), 'no sheddable request shed');

    // The counters, exactly (this gateway served nothing else).
    const m = await metricsOf(a);
    assert.equal(m.get('tidegate_requests_by_class_total', { class: 'realtime' }), WAVES * PER);
    assert.equal(m.get('tidegate_requests_by_class_total', { class: 'async' }), WAVES * PER);
    for (const cls of ['realtime', 'async']) {
      const busy = m.series('tidegate_endpoint_busy_seconds_total').filter((s) => s.labels.class === cls);
      assert.deepEqual(busy.map((s) => s.labels.endpoint).sort(), [...sims.endpoints].sort(),
        `busy seconds of class ${cls} for both endpoints`);
      const sum = busy.reduce((acc, s) => acc + s.value, 0);
      assert.ok(sum > 0.2, `${cls} busy seconds ${sum}`);
    }

    // The points: wait until the last requests' second is closed, then look at the run.
    const after = await waitFor(async () => {
      const v = await data(a, startedAt);
      return v.points.length && v.points[v.points.length - 1].t_ms > doneAt + 1100 ? v.points : null;
    }, { timeoutMs: 5000, intervalMs: 200, what: 'a point closed after the last request' });
    const ctx = JSON.stringify(after);
    assert.ok(after.some((p) => p.rps_realtime > 0), `rps_realtime > 0 somewhere: ${ctx}`);
    assert.ok(after.some((p) => p.rps_async > 0), `rps_async > 0 somewhere: ${ctx}`);
    assert.ok(after.some((p) => p.util_realtime > 0), `util_realtime > 0 somewhere: ${ctx}`);
    assert.ok(after.some((p) => p.util_async > 0), `util_async > 0 somewhere: ${ctx}`);
    assert.ok(after.some((p) => p.in_flight_realtime > 0), `in_flight_realtime > 0 somewhere: ${ctx}`);
    assert.ok(after.some((p) => p.in_flight_async > 0), `in_flight_async > 0 somewhere: ${ctx}`);
    assert.ok(after.some((p) => isNum(p.ttft_p99_ms) && p.ttft_p99_ms > 0), `a TTFT p99 (streamed): ${ctx}`);
    // rps × the point's length adds up to the requests of each class.
    let rtCount = 0, asCount = 0;
    let prev = startedAt;
    for (const p of after) {
      const dt = (p.t_ms - prev) / 1000;
      rtCount += p.rps_realtime * dt;
      asCount += p.rps_async * dt;
      prev = p.t_ms;
    }
    t.diagnostic(`from the points: real-time ${rtCount.toFixed(2)}, async ${asCount.toFixed(2)} requests`);
    assert.ok(Math.abs(rtCount - WAVES * PER) < 1.5, `real-time requests from the points: ${rtCount}`);
    assert.ok(Math.abs(asCount - WAVES * PER) < 1.5, `async requests from the points: ${asCount}`);
    // Idle again at the end.
    const last = after[after.length - 1];
    assert.equal(last.in_flight_realtime + last.in_flight_async, 0, JSON.stringify(last));
  });

  it('shows a killed server down with its error within a few seconds, and keeps answering', T, async (t) => {
    const s1 = await startSim([]);
    const s2 = await startSim([]);
    t.after(() => Promise.all([s1.stop(), s2.stop()]));
    const g = await startGateway(['--endpoints', `${s1.endpoint},${s2.endpoint}`], { adminSplit: true });
    t.after(() => g.stop());
    const a = adminUrl(g);
    await waitFor(async () => (await data(a)).endpoints.every((e) => e.up && !e.stale),
      { timeoutMs: 8000, intervalMs: 100, what: 'both endpoints up' });

    s2.signal('SIGKILL');
    const killedAt = Date.now();
    const d = await waitFor(async () => {
      const v = await data(a);
      const e = v.endpoints.find((x) => x.address === s2.endpoint);
      return e && e.up === false && e.last_error ? v : null;
    }, { timeoutMs: 6000, intervalMs: 100, what: `${s2.endpoint} to show up:false with a last_error` });
    const took = Date.now() - killedAt;
    const dead = d.endpoints.find((x) => x.address === s2.endpoint);
    assert.match(dead.last_error, /connect|refused|closed|reset/i, JSON.stringify(dead));
    assert.ok(dead.last_error.includes(s2.endpoint) || /refused/i.test(dead.last_error), JSON.stringify(dead));
    const alive = d.endpoints.find((x) => x.address === s1.endpoint);
    assert.equal(alive.up, true, JSON.stringify(alive));
    assert.equal(alive.last_error, '', JSON.stringify(alive));

    // The data endpoint keeps answering and closing points; traffic goes to the live server.
    const n = d.points.length;
    const r = await postJson(g.url, '/v1/completions', { model: SIM_MODEL, prompt: 'still here', max_tokens: 4 });
    assert.equal(r.status, 200, r.body);
    const d2 = await waitFor(async () => {
      const v = await data(a);
      return v.points.length > n + 1 ? v : null;
    }, { timeoutMs: 5000, intervalMs: 200, what: 'more points after the kill' });
    assert.equal(d2.endpoints.find((x) => x.address === s2.endpoint).up, false);
    t.diagnostic(`down after ${took} ms`);
  });
});

describe('--processor-metrics', () => {
  it('a real processor is shown up with its figures; done counts the work it finished', T, async (t) => {
    const db = path.join(tmp, 'q.db');
    const requests = `sqlite://${db}?queue=requests`;
    const results = `sqlite://${db}?queue=results`;
    const proc = await startAsync(['--gateway', gw.url, '--gateway-admin', admin,
      '--requests', requests, '--responses', results]);
    t.after(() => proc.stop());
    const g = await startGateway(['--endpoints', sims.endpoints.join(','),
      '--processor-metrics', `http://127.0.0.1:${proc.port}/metrics`], { adminSplit: true });
    t.after(() => g.stop());
    const a = adminUrl(g);

    const p0 = await waitFor(async () => {
      const p = (await data(a)).processor;
      return p?.up === true ? p : null;
    }, { timeoutMs: 5000, intervalMs: 100, what: 'the processor to show up' });
    assert.equal(p0.url, `http://127.0.0.1:${proc.port}/metrics`);
    assert.equal(p0.error, '');
    const keys = ['url', 'up', 'error', 'backlog', 'held', 'in_flight', 'done', 'failed', 'shed',
      'retries', 'deadline_misses', 'escalated'];
    assert.deepEqual(Object.keys(p0).sort(), [...keys].sort(), JSON.stringify(p0));
    for (const k of ['backlog', 'held', 'in_flight', 'done', 'shed', 'deadline_misses'])
      assert.ok(isNum(p0[k]), `${k} is a number: ${JSON.stringify(p0)}`);
    for (const k of ['failed', 'retries', 'escalated'])
      assert.ok(numOrNull(p0[k]), `${k}: ${JSON.stringify(p0)}`);
    assert.equal(p0.done, 0);
    assert.equal(p0.backlog, 0);

    // Three jobs through the queue: done reaches 3, the backlog drains.
    const file = path.join(tmp, 'jobs.jsonl');
    fs.writeFileSync(file, [0, 1, 2].map((i) => JSON.stringify({ id: `dash-${i}`,
      payload: { model: SIM_MODEL, max_tokens: 8, messages: [{ role: 'user', content: `job ${i}` }] } }))
      .join('\n') + '\n');
    const sub = await runTidegate(['submit', '--queue', requests, file], { timeoutMs: 10_000 });
    assert.equal(sub.code, 0, sub.stderr);
    const p1 = await waitFor(async () => {
      const p = (await data(a)).processor;
      return p && p.up && p.done === 3 && p.backlog === 0 && p.in_flight === 0 ? p : null;
    }, { timeoutMs: 10_000, intervalMs: 200, what: 'processor.done 3 and backlog 0' });
    assert.equal(p1.done, await proc.metric('tidegate_async_requests_succeeded_total'));

    // A URL without a path means the processor's /metrics.
    const g2 = await startGateway(['--endpoints', sims.endpoints.join(','),
      '--processor-metrics', `http://127.0.0.1:${proc.port}`], { adminSplit: true });
    t.after(() => g2.stop());
    const p2 = await waitFor(async () => (await data(adminUrl(g2))).processor,
      { timeoutMs: 5000, intervalMs: 100, what: 'a processor view (no path in the URL)' });
    assert.equal(p2.up, true, JSON.stringify(p2));
    assert.equal(p2.done, 3, JSON.stringify(p2));
  });

  it('a closed port is shown down with the connection error; a bad URL is refused at start-up', T, async (t) => {
    const port = await closedPort();
    const g = await startGateway(['--endpoints', sims.endpoints.join(','),
      '--processor-metrics', `http://127.0.0.1:${port}/metrics`], { adminSplit: true });
    t.after(() => g.stop());
    const a = adminUrl(g);
    const p = await waitFor(async () => (await data(a)).processor,
      { timeoutMs: 5000, intervalMs: 100, what: 'a processor view' });
    assert.equal(p.up, false, JSON.stringify(p));
    assert.match(p.error, new RegExp(`connect.*127\\.0\\.0\\.1:${port}.*refused`, 'i'), JSON.stringify(p));
    for (const k of ['backlog', 'done', 'in_flight']) assert.equal(p[k], null, JSON.stringify(p));
    // The rest of the dashboard is unaffected.
    const d = await data(a);
    assert.equal(d.endpoints.length, 2);

    for (const bad of ['not-a-url', 'ftp://127.0.0.1:9464/metrics', 'http://']) {
      const r = await runTidegate(['serve', '--host', '127.0.0.1', '--port', '0', '--admin-address', '127.0.0.1:0',
        '--endpoints', sims.endpoints.join(','), '--processor-metrics', bad], { timeoutMs: 5000 });
      assert.equal(r.code, 2, `${bad}: ${r.stderr}`);
      assert.match(r.stderr, /--processor-metrics/, r.stderr);
      assert.ok(r.stderr.includes(`'${bad}'`), r.stderr);
      assert.match(r.stderr, /not an http:\/\/ or https:\/\/ URL|has no host/, r.stderr);
      assert.doesNotMatch(r.stderr + r.stdout, /listening on/, 'it did not start');
    }
  });
});
