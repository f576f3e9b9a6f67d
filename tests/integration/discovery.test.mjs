// discovery.test.mjs — endpoints that come and go while the gateway runs (discovery/source.h,
// pool::Pool::Reconcile), against real simulators: the `file` source (reloaded on SIGHUP and by
// watching) and the `dns` source against a real dnsmasq on loopback whose records change. A
// removed endpoint finishes its stream before it is dropped; a broken origin keeps the pool.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
  SIM_MODEL, startSim, startGateway, stopAll, stopProcess, request, parseMetrics, openStream,
  waitFor, spawnAndWait, closedPort, sleep,
} from './lib.mjs';

after(stopAll);

const chat = (content, extra = {}) => ({
  model: SIM_MODEL, max_tokens: 4, messages: [{ role: 'user', content }], ...extra,
});

// Sends `n` requests one after another; returns the endpoints that served them.
async function servedBy(gw, n) {
  const out = [];
  for (let i = 0; i < n; i++) {
    const r = await request(gw.url, { method: 'POST', path: '/v1/chat/completions',
      body: chat(`question ${i} ${Math.random()}`), timeoutMs: 10000 });
    assert.equal(r.status, 200, r.body);
    out.push(r.headers['x-gateway-destination-endpoint']);
  }
  return out;
}

async function metrics(gw) {
  const r = await request(gw.url, { path: '/metrics' });
  assert.equal(r.status, 200);
  return parseMetrics(r.body);
}

const poolState = async (gw, state) => (await metrics(gw)).get('tidegate_pool_endpoints', { state });
const healthy = async (gw, source) => (await metrics(gw)).get('tidegate_discovery_healthy', { source });

describe('file discovery', { timeout: 90_000 }, () => {
  let sims, dir, file, gw;
  before(async () => {
    sims = await startSim(['--port-count', '3']);
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tg-discovery-'));
    file = path.join(dir, 'endpoints.yaml');
    fs.writeFileSync(file, `- ${sims.endpoints[0]}\n`);
    // A long interval: every change below is picked up through SIGHUP.
    gw = await startGateway(['--discovery', `file:${file},interval=1h`]);
  });
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  const hup = async (want) => {
    gw.proc.kill('SIGHUP');
    await waitFor(async () => (await poolState(gw, 'active')) === want,
      { timeoutMs: 5000, what: `${want} active endpoints after SIGHUP` });
  };

  it('starts with the file\'s endpoints', async () => {
    assert.deepEqual(new Set(await servedBy(gw, 4)), new Set([sims.endpoints[0]]));
    assert.match(gw.output(), /discovery: file .*endpoints\.yaml; 1 endpoint\(s\) now/);
  });

  it('adds endpoints, and drains a removed one: its stream finishes, new requests go elsewhere', async () => {
    // A long stream on the only endpoint, then the file replaces it with the two others.
    const stream = await openStream(gw.url, '/v1/chat/completions',
      chat('a long answer please', { max_tokens: 120, stream: true }));
    assert.equal(stream.status, 200);
    assert.equal(stream.headers['x-gateway-destination-endpoint'], sims.endpoints[0]);
    await stream.waitText(50);
    fs.writeFileSync(file, `- ${sims.endpoints[1]}\n- address: ${sims.endpoints[2]}\n`);
    await hup(2);
    assert.equal(await poolState(gw, 'draining'), 1);
    const pool = (await request(gw.url, { path: '/v1/pool' })).json;
    const states = Object.fromEntries(pool.endpoints.map((e) => [e.address, e.state]));
    assert.equal(states[sims.endpoints[0]], 'draining');
    assert.equal(states[sims.endpoints[1]], 'active');
    const served = await servedBy(gw, 8);
    assert.ok(!served.includes(sims.endpoints[0]), `a draining endpoint got new requests: ${served}`);
    assert.deepEqual(new Set(served), new Set([sims.endpoints[1], sims.endpoints[2]]));
    const end = await stream.finished(20000);
    assert.ok(end.complete, 'the draining endpoint\'s stream was cut');
    assert.match(stream.text(), /data: \[DONE\]/);
    await waitFor(async () => (await poolState(gw, 'draining')) === 0,
      { timeoutMs: 5000, what: 'the drained endpoint dropped' });
    const m = await metrics(gw);
    assert.equal(m.get('tidegate_endpoint_up', { endpoint: sims.endpoints[0] }), undefined,
      'the series of a dropped endpoint stays');
    assert.equal(m.get('tidegate_endpoint_up', { endpoint: sims.endpoints[1] }), 1);
    assert.match(gw.output(), /drained and dropped: 127\.0\.0\.1:\d+/);
  });

  it('keeps the pool when the file breaks, and says so', async () => {
    fs.writeFileSync(file, '- [not: closed\n');
    gw.proc.kill('SIGHUP');
    await waitFor(async () => (await healthy(gw, 'file')) === 0,
      { timeoutMs: 5000, what: 'discovery unhealthy' });
    assert.equal(await poolState(gw, 'active'), 2);
    assert.equal((await servedBy(gw, 3)).length, 3);
    assert.match(gw.output(), /is not valid YAML.*keeping the last 2 endpoint\(s\)/);
    fs.writeFileSync(file, `- ${sims.endpoints[0]}\n`);
    await hup(1);
    assert.equal(await healthy(gw, 'file'), 1);
    assert.deepEqual(new Set(await servedBy(gw, 3)), new Set([sims.endpoints[0]]));
  });

  it('an empty list empties the pool: a clear 503, and /readyz is not ready', async () => {
    fs.writeFileSync(file, '[]\n');
    await hup(0);
    const r = await request(gw.url, { method: 'POST', path: '/v1/chat/completions', body: chat('x') });
    assert.equal(r.status, 503);
    assert.equal(r.headers['x-gateway-request-dropped-reason'], 'no-endpoints');
    assert.match(r.json.error.message, /0 in the pool/);
    assert.equal((await request(gw.url, { path: '/readyz' })).status, 503);
    fs.writeFileSync(file, `- ${sims.endpoints[2]}\n`);
    await hup(1);
    assert.equal((await request(gw.url, { path: '/readyz' })).status, 200);
  });

  it('watches the file without a signal, and refuses a missing file at start', async () => {
    const watched = await startGateway(['--discovery', `file:${file},interval=100ms`]);
    assert.equal(await poolState(watched, 'active'), 1);
    fs.writeFileSync(file, `- ${sims.endpoints[0]}\n- ${sims.endpoints[1]}\n`);
    await waitFor(async () => (await poolState(watched, 'active')) === 2,
      { timeoutMs: 5000, what: 'the change seen by watching' });
    await watched.stop();
    await assert.rejects(startGateway(['--discovery', `file:${path.join(dir, 'nope.yaml')}`]),
      /cannot read '.*nope\.yaml'/);
    await assert.rejects(startGateway(['--discovery', 'consul:x']),
      /unknown discovery source 'consul' \(known: dns, file, kubernetes, static/);
  });
});

describe('dns discovery against dnsmasq', { timeout: 90_000 }, () => {
  let sims = [], dir, hostsDir, dnsPort, dns, gw;
  const hosts = ['127.0.0.1', '127.0.0.2', '127.0.0.3'];

  async function startDns() {
    const args = ['--no-daemon', '--log-facility=-', `--port=${dnsPort}`,
      '--listen-address=127.0.0.1', '--bind-interfaces', '--no-resolv', '--no-hosts',
      '--pid-file=', `--user=${os.userInfo().username}`, '--local=/test/',
      `--hostsdir=${hostsDir}`, `--srv-host=_vllm._tcp.pool.test,pool.test,${sims[0].port}`];
    const { proc, ready } = spawnAndWait('/usr/sbin/dnsmasq', args,
      { re: /started, version/, what: 'dnsmasq', timeoutMs: 5000 });
    await ready;
    return proc;
  }
  const setRecords = (ips) => fs.writeFileSync(path.join(hostsDir, 'pool'),
    ips.map((ip) => `${ip} pool.test\n`).join(''));

  before(async () => {
    // Three servers on one port, on three loopback addresses: what A records can describe.
    const port = await closedPort();
    for (const host of hosts) sims.push(await startSim(['--port', String(port)], { host }));
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tg-dns-'));
    hostsDir = path.join(dir, 'hosts');
    fs.mkdirSync(hostsDir);
    fs.chmodSync(dir, 0o755);
    fs.chmodSync(hostsDir, 0o755);
    setRecords([hosts[0]]);
    dnsPort = await closedPort();
    dns = await startDns();
    gw = await startGateway(['--discovery',
      `dns:pool.test:${port},server=127.0.0.1:${dnsPort},interval=200ms`]);
  });
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('follows the A records as they change, with requests flowing throughout', async () => {
    assert.deepEqual(new Set(await servedBy(gw, 3)), new Set([sims[0].endpoint]));
    setRecords(hosts);  // dnsmasq watches the hosts directory
    await waitFor(async () => (await poolState(gw, 'active')) === 3,
      { timeoutMs: 8000, what: 'three endpoints from DNS' });
    const spread = new Set(await servedBy(gw, 12));
    assert.ok(spread.size >= 2, `requests went to ${[...spread]}`);
    setRecords([hosts[1], hosts[2]]);
    await waitFor(async () => (await poolState(gw, 'active')) === 2,
      { timeoutMs: 8000, what: 'the first address gone from DNS' });
    const served = await servedBy(gw, 8);
    assert.ok(!served.includes(sims[0].endpoint), `${served}`);
  });

  it('keeps the pool while DNS is down, and recovers when it is back', async () => {
    await stopProcess(dns);
    await waitFor(async () => (await healthy(gw, 'dns')) === 0,
      { timeoutMs: 15000, what: 'dns discovery unhealthy' });
    assert.equal(await poolState(gw, 'active'), 2);
    assert.equal((await servedBy(gw, 3)).length, 3);
    assert.match(gw.output(), /discovery dns: .*keeping the last 2 endpoint\(s\)/);
    dns = await startDns();
    await waitFor(async () => (await healthy(gw, 'dns')) === 1,
      { timeoutMs: 8000, what: 'dns discovery healthy again' });
  });

  it('reads SRV records (ports from DNS), and a name that does not exist is an empty pool', async () => {
    const srv = await startGateway(['--discovery',
      `dns:_vllm._tcp.pool.test,server=127.0.0.1:${dnsPort},interval=200ms`]);
    assert.equal(await poolState(srv, 'active'), 2);
    assert.deepEqual(new Set(await servedBy(srv, 6)), new Set([sims[1].endpoint, sims[2].endpoint]));
    await srv.stop();
    const none = await startGateway(['--discovery',
      `dns:nothing.test:80,server=127.0.0.1:${dnsPort}`]);
    assert.equal(await poolState(none, 'active'), 0);
    assert.equal(await healthy(none, 'dns'), 1);  // NXDOMAIN is an answer, not a failure
    assert.match(none.output(), /no endpoints yet; requests get 503/);
    await none.stop();
    await sleep(10);
  });
});
