// k8s_discovery.test.mjs — issue 14: the `kubernetes` discovery source against a Kubernetes API
// test double (tests/k8s_api_double.mjs: list, chunked JSON-line watches, bookmarks, 410 Gone,
// resourceVersions) and three real `tidegate sim` model servers.
//
// Every pod has the IP 127.0.0.1 here, so the InferencePool's targetPorts are the three sims'
// ports and each pod's llm-d.ai/active-ports annotation picks its own: pod i is 127.0.0.1:port_i.
// Throughout the file a background loop sends chat requests through the gateway; every one of
// them must succeed and be served by a simulator whose address a ready pod carries. Against
// that traffic it shows pods turning Ready and unready, terminating and deleted, re-labelled out
// of the selector and back; the InferencePool's own selector and target ports changing; the API
// server restarting (the pool is kept,
// tidegate_discovery_healthy goes 0 then 1, and watching resumes); a 410 Gone forcing a re-list;
// InferenceObjective objects becoming accepted objectives; and `kubectl get pods --watch`
// speaking to the same double. A second part reaches the double over HTTPS with a kubeconfig
// (certificate-authority-data, a tokenFile): a refused token is unhealthy with an empty pool, and
// the token file is read again per request, so fixing it heals.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
  REPO_ROOT, startSim, startGateway, stopAll, stopProcess, SIM_MODEL, request, postJson, waitFor,
  sleep, parseMetrics, makeCerts as makeCertsIn,
} from './lib.mjs';

const T = { timeout: 20_000 };
const NS = 'llm';
const POOL = 'pool-a';
const DEST = 'x-gateway-destination-endpoint';
const DOUBLE = path.join(REPO_ROOT, 'tests', 'k8s_api_double.mjs');

let api;   // {url, proc}
let sims;
let gw;
let traffic;

function startDouble(extra = []) {
  const proc = spawn(process.execPath, [DOUBLE, '--port', '0', '--bookmark-ms', '300', '--exit-on-stdin-close', ...extra],
    { stdio: ['pipe', 'pipe', 'pipe'] });
  const scheme = extra.includes('--tls-cert') ? 'https' : 'http';
  return new Promise((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error(`API double not listening: ${out}`)), 5000);
    proc.stdout.on('data', (c) => {
      out += c;
      const m = out.match(/LISTENING (\d+)/);
      if (m) { clearTimeout(timer); resolve({ proc, port: Number(m[1]), url: `${scheme}://127.0.0.1:${m[1]}` }); }
    });
    proc.stderr.on('data', (c) => { out += c; });
    proc.once('exit', (code) => reject(new Error(`API double exited (${code}): ${out}`)));
  });
}

async function ctl(p, body = {}) {
  const r = await postJson(api.url, p, body, { timeoutMs: 3000 });
  assert.equal(r.status, 200, `${p}: ${r.status} ${r.body}`);
  return r.json;
}

const podObject = (i, { ready = true, labels = { app: 'vllm' }, deleting = false } = {}) => ({
  metadata: {
    name: `pod-${i}`, namespace: NS, labels,
    annotations: { 'llm-d.ai/active-ports': String(sims.ports[i]) },
    ...(deleting ? { deletionTimestamp: new Date().toISOString(), deletionGracePeriodSeconds: 30 } : {}),
  },
  spec: { containers: [{ name: 'vllm', ports: [{ containerPort: sims.ports[i] }] }] },
  status: {
    phase: 'Running', podIP: '127.0.0.1',
    conditions: [{ type: 'PodScheduled', status: 'True' }, { type: 'Ready', status: ready ? 'True' : 'False' }],
  },
});

const applyPod = (i, opts) => ctl('/_test/apply', { resource: 'pods', object: podObject(i, opts) });

const objective = (name, priority, pool = POOL) => ({
  resource: 'inferenceobjectives',
  object: { metadata: { name, namespace: NS }, spec: { priority, poolRef: { group: 'inference.networking.k8s.io', name: pool } } },
});

async function poolAddresses() {
  const r = await request(gw.url, { path: '/v1/pool', timeoutMs: 3000 });
  assert.equal(r.status, 200);
  return r.json.endpoints.filter((e) => e.state === 'active').map((e) => e.address).sort();
}

async function gatewayMetrics() {
  const r = await request(gw.url, { path: '/metrics', timeoutMs: 3000 });
  assert.equal(r.status, 200);
  return parseMetrics(r.body);
}

const ep = (i) => sims.endpoints[i];
const sorted = (idx) => idx.map(ep).sort();

// Waits until the gateway's active pool is exactly the endpoints of pods `idx`, and the metric
// agrees; then the traffic loop's allowed set is that pool.
async function expectPool(idx, what) {
  const want = sorted(idx);
  await waitFor(async () => JSON.stringify(await poolAddresses()) === JSON.stringify(want),
    { timeoutMs: 8000, what: `${what}: pool ${want.join(',')} (have ${(await poolAddresses()).join(',')})` });
  const m = await gatewayMetrics();
  assert.equal(m.get('tidegate_pool_endpoints', { state: 'active' }), want.length, what);
  traffic.allowed = new Set(want);
  // Requests made from now on land only on these.
  const before = traffic.results.length;
  await waitFor(() => traffic.results.length >= before + 4, { timeoutMs: 5000, what: 'traffic flowing' });
  for (const r of traffic.results.slice(before + 1)) {
    assert.ok(want.includes(r.dest), `${what}: a request went to ${r.dest}, not one of ${want}`);
  }
}

const chat = (headers = {}) => postJson(gw.url, '/v1/chat/completions',
  { model: SIM_MODEL, messages: [{ role: 'user', content: 'hi' }], max_tokens: 2 }, { headers, timeoutMs: 5000 });

// Requests one after another until stopped; records status and destination of each.
function startTraffic() {
  const t = { results: [], failures: [], allowed: new Set(), stop: false };
  t.done = (async () => {
    while (!t.stop) {
      try {
        const r = await chat();
        const rec = { status: r.status, dest: r.headers[DEST], at: Date.now() };
        t.results.push(rec);
        if (r.status !== 200) t.failures.push({ ...rec, body: r.body.slice(0, 200) });
        // Removed endpoints drain: a request picked before the change may still land there,
        // so only the simulators' addresses are checked here (expectPool checks later ones).
        else if (!sims.endpoints.includes(rec.dest)) t.failures.push({ ...rec, body: 'not a simulator' });
      } catch (err) {
        t.failures.push({ error: err.message, at: Date.now() });
      }
      await sleep(30);
    }
  })();
  return t;
}

describe('kubernetes discovery (InferencePool on an API double, real simulators)', () => {
  before(async () => {
    api = await startDouble();
    sims = await startSim(['--port-count', '3', '--time-scale', '50']);
    await ctl('/_test/apply', {
      resource: 'inferencepools',
      object: {
        metadata: { name: POOL, namespace: NS },
        spec: {
          selector: { matchLabels: { app: 'vllm' } },
          targetPorts: sims.ports.map((number) => ({ number })),
          endpointPickerRef: { kind: 'Service', name: 'tidegate-epp', port: { number: 9002 } },
        },
      },
    });
    for (let i = 0; i < 3; i++) await applyPod(i);
    // A pod outside the selector: never an endpoint.
    await ctl('/_test/apply', { resource: 'pods', object: { ...podObject(0), metadata: { ...podObject(0).metadata, name: 'stranger', labels: { app: 'other' } } } });
    await ctl('/_test/apply', objective('interactive', 10));
    await ctl('/_test/apply', objective('elsewhere', 5, 'pool-b'));
    gw = await startGateway(['--discovery',
      `kubernetes:${POOL},namespace=${NS},api=${api.url},backoff_max=500ms,watch_timeout=4s`, ...(process.env.TIDEGATE_TEST_LOG ? ["--log-level", "debug"] : [])]);
    traffic = startTraffic();
  });

  after(async () => {
    if (traffic) { traffic.stop = true; await traffic.done; }
    if (process.env.TIDEGATE_TEST_LOG && gw) process.stderr.write(gw.output());
    await stopAll();
    if (api) await stopProcess(api.proc);
  });

  it('starts with the ready pods of the pool, one endpoint each', T, async () => {
    await expectPool([0, 1, 2], 'initial');
    const m = await gatewayMetrics();
    assert.equal(m.get('tidegate_discovery_healthy', { source: 'kubernetes' }), 1);
    assert.equal(m.get('tidegate_discovery_endpoints', { source: 'kubernetes' }), 3);
    // Requests reach all three simulators.
    await waitFor(() => new Set(traffic.results.map((r) => r.dest)).size === 3,
      { timeoutMs: 5000, what: 'every simulator served' });
  });

  it('follows readiness: unready leaves, Ready again joins', T, async () => {
    await applyPod(1, { ready: false });
    await expectPool([0, 2], 'pod-1 unready');
    await applyPod(1, { ready: true });
    await expectPool([0, 1, 2], 'pod-1 ready again');
  });

  it('drops a terminating pod, keeps it out once deleted, takes it back when re-created', T, async () => {
    await applyPod(2, { deleting: true });
    await expectPool([0, 1], 'pod-2 terminating');
    await ctl('/_test/delete', { resource: 'pods', namespace: NS, name: 'pod-2' });
    await sleep(300);
    assert.deepEqual(await poolAddresses(), sorted([0, 1]), 'deleted pod stays out');
    await applyPod(2);
    await expectPool([0, 1, 2], 'pod-2 re-created');
  });

  it('drops a pod re-labelled out of the selector, and takes it back', T, async () => {
    await applyPod(0, { labels: { app: 'vllm-canary' } });
    await expectPool([1, 2], 'pod-0 re-labelled');
    await applyPod(0);
    await expectPool([0, 1, 2], 'pod-0 labelled back');
  });

  it('follows the InferencePool itself: a new selector lists again, new target ports re-derive', T, async () => {
    const applyPool = (matchLabels, ports) => ctl('/_test/apply', {
      resource: 'inferencepools',
      object: {
        metadata: { name: POOL, namespace: NS },
        spec: { selector: { matchLabels }, targetPorts: ports.map((number) => ({ number })),
          endpointPickerRef: { kind: 'Service', name: 'tidegate-epp', port: { number: 9002 } } },
      },
    });
    await applyPod(0, { labels: { app: 'vllm', track: 'canary' } });
    await applyPool({ app: 'vllm', track: 'canary' }, sims.ports);
    await expectPool([0], 'the selector narrowed to the canary');
    await applyPool({ app: 'vllm' }, sims.ports.slice(0, 2));
    await expectPool([0, 1], "pod-2's port no longer a target port");
    await applyPool({ app: 'vllm' }, sims.ports);
    await applyPod(0);
    await expectPool([0, 1, 2], 'the pool as it was');
  });

  it('keeps the pool while the API server restarts, unhealthy meanwhile, then resumes watching', T, async () => {
    await ctl('/_test/restart', { down_ms: 2000 });
    await waitFor(async () => (await gatewayMetrics()).get('tidegate_discovery_healthy', { source: 'kubernetes' }) === 0,
      { timeoutMs: 5000, what: 'tidegate_discovery_healthy 0 while the API server is down' });
    assert.deepEqual(await poolAddresses(), sorted([0, 1, 2]), 'the last known pool is kept');
    const okBefore = traffic.results.filter((r) => r.status === 200).length;
    await waitFor(() => traffic.results.filter((r) => r.status === 200).length > okBefore + 3,
      { timeoutMs: 3000, what: 'requests served while the API server is down' });
    await waitFor(async () => (await gatewayMetrics()).get('tidegate_discovery_healthy', { source: 'kubernetes' }) === 1,
      { timeoutMs: 8000, what: 'tidegate_discovery_healthy 1 once it is back' });
    // The watch is live again: a change made after the restart is seen.
    await applyPod(1, { ready: false });
    await expectPool([0, 2], 'a change after the restart');
    await applyPod(1);
    await expectPool([0, 1, 2], 'and back');
  });

  it('lists again after a 410 Gone', T, async () => {
    const before = (await (await request(api.url, { path: '/_test/stats' })).json).requests;
    // Every version the gateway holds is now too old, and its watches end: its next watches get
    // an ERROR event with a 410 Status, and it must list again.
    await ctl('/_test/compact', { drop_watches: true });
    await applyPod(2, { ready: false });
    await expectPool([0, 1], 'a change after the compaction');
    const after = (await request(api.url, { path: '/_test/stats' })).json.requests;
    assert.ok((after['watch410 pods'] || 0) > (before['watch410 pods'] || 0), `a 410 was answered: ${JSON.stringify(after)}`);
    assert.ok(after['list pods'] > before['list pods'], `pods were listed again: ${JSON.stringify(after)}`);
    await applyPod(2);
    await expectPool([0, 1, 2], 'back after the re-list');
    assert.equal((await gatewayMetrics()).get('tidegate_discovery_healthy', { source: 'kubernetes' }), 1,
      'a 410 is not an outage');
  });

  it('accepts the InferenceObjectives naming the pool, and follows their changes', T, async () => {
    const OBJ = 'x-gateway-inference-objective';
    assert.equal((await chat({ [OBJ]: 'interactive' })).status, 200);
    const unknown = await chat({ [OBJ]: 'no-such-objective' });
    assert.equal(unknown.status, 400, unknown.body);
    assert.match(unknown.body, /no-such-objective/);
    assert.equal((await chat({ [OBJ]: 'elsewhere' })).status, 400, 'an objective of another pool is not ours');
    await ctl('/_test/apply', objective('batch', -1));
    await waitFor(async () => (await chat({ [OBJ]: 'batch' })).status === 200, { timeoutMs: 5000, what: 'batch accepted' });
    await ctl('/_test/delete', { resource: 'inferenceobjectives', namespace: NS, name: 'batch' });
    await waitFor(async () => (await chat({ [OBJ]: 'batch' })).status === 400, { timeoutMs: 5000, what: 'batch withdrawn' });
  });

  it('kubectl get pods --watch speaks to the same double', T, async () => {
    const kubectl = spawn('kubectl', [`--server=${api.url}`, 'get', 'pods', '-n', NS, '--watch'],
      { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    kubectl.stdout.on('data', (c) => { out += c; });
    kubectl.stderr.on('data', (c) => { out += c; });
    try {
      await waitFor(() => ['pod-0', 'pod-1', 'pod-2', 'stranger'].every((n) => out.includes(n)),
        { timeoutMs: 8000, what: `kubectl lists the pods: ${out}` });
      assert.match(out, /NAME\s+READY\s+STATUS/);
      await applyPod(1, { ready: false });
      await waitFor(() => /pod-1\s+0\/1\s+Running/.test(out), { timeoutMs: 5000, what: `kubectl shows the change: ${out}` });
      await expectPool([0, 2], 'the same change, seen by the gateway');
      await applyPod(1);
      await expectPool([0, 1, 2], 'pod-1 back');
    } finally {
      kubectl.kill('SIGKILL');
    }
  });

  it('served every request throughout, and only from simulators', T, async () => {
    traffic.stop = true;
    await traffic.done;
    assert.ok(traffic.results.length > 50, `enough traffic (${traffic.results.length})`);
    assert.deepEqual(traffic.failures, [], 'no request failed');
    const t0 = Date.now();
    await gw.stop();
    assert.ok(Date.now() - t0 < 3000, 'the gateway (and its watches) stopped promptly');
  });
});

const makeCerts = (dir) => makeCertsIn(dir, '', 'tidegate test cluster CA');

describe('kubernetes discovery with kubeconfig credentials (HTTPS, the cluster CA, a bearer token)', () => {
  let dir;
  after(async () => {
    await stopAll();
    if (api) await stopProcess(api.proc);
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  it('authenticates with the kubeconfig\'s token file, re-read after a 401 until it is right', T, async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tidegate-k8s-'));
    const certs = makeCerts(dir);
    api = await startDouble(['--tls-cert', certs.cert, '--tls-key', certs.key, '--token', 'sekret']);
    // The controls go over the same HTTPS listener; the test trusts the CA there too.
    const https = await import('node:https');
    const agent = new https.Agent({ ca: fs.readFileSync(certs.ca) });
    const control = (p, body) => new Promise((resolve, reject) => {
      const data = JSON.stringify(body);
      const req = https.request(`${api.url}${p}`, { method: 'POST', agent, headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(data) } }, (res) => {
        let b = '';
        res.on('data', (c) => { b += c; });
        res.on('end', () => (res.statusCode === 200 ? resolve(JSON.parse(b)) : reject(new Error(`${p}: ${res.statusCode} ${b}`))));
      });
      req.on('error', reject);
      req.end(data);
    });
    sims = await startSim(['--time-scale', '50']);
    await control('/_test/apply', { resource: 'inferencepools', object: {
      metadata: { name: POOL, namespace: NS },
      spec: { selector: { matchLabels: { app: 'vllm' } }, targetPorts: [{ number: sims.port }] } } });
    await control('/_test/apply', { resource: 'pods', object: podObject(0) });

    const tokenFile = path.join(dir, 'token');
    fs.writeFileSync(tokenFile, 'wrong');
    const kubeconfig = path.join(dir, 'kubeconfig');
    fs.writeFileSync(kubeconfig, [
      'apiVersion: v1', 'kind: Config', 'current-context: test',
      'clusters:', '- name: double', '  cluster:', `    server: ${api.url}`,
      `    certificate-authority-data: ${fs.readFileSync(certs.ca).toString('base64')}`,
      'users:', '- name: me', '  user:', '    tokenFile: token',   // relative to the kubeconfig
      'contexts:', '- name: test', `  context: {cluster: double, user: me, namespace: ${NS}}`, '',
    ].join('\n'));
    gw = await startGateway(['--discovery', `kubernetes:${POOL},kubeconfig=${kubeconfig},objectives_api=absent.example/v1,backoff_max=300ms`]);
    // A 401: unhealthy, and no endpoint made up.
    await waitFor(async () => (await gatewayMetrics()).get('tidegate_discovery_healthy', { source: 'kubernetes' }) === 0,
      { timeoutMs: 5000, what: 'unhealthy while the token is refused' });
    assert.deepEqual(await poolAddresses(), []);
    assert.match(gw.output(), /401/);
    // The token is read per request (projected service-account tokens rotate): fixing the file heals.
    fs.writeFileSync(tokenFile, 'sekret\n');
    await waitFor(async () => JSON.stringify(await poolAddresses()) === JSON.stringify([sims.endpoint]),
      { timeoutMs: 5000, what: 'the pool from the authenticated list' });
    // An InferenceObjective API the server does not serve (404: no such CRD) means no
    // objectives, not an outage.
    assert.equal((await gatewayMetrics()).get('tidegate_discovery_healthy', { source: 'kubernetes' }), 1);
    assert.match(gw.output(), /InferenceObjectives \(absent\.example\/v1\): not served by this API server/);
    const r = await chat();
    assert.equal(r.status, 200, r.body);
    assert.equal(r.headers[DEST], sims.endpoint);
    assert.match(gw.output(), /kubeconfig .*kubeconfig \(context test\)/);
  });
});
