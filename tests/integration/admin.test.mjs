// admin.test.mjs — the operator's routes apart from the data plane:
//   - by default /metrics, /v1/pool and /v1/capacity are on a separate admin listener, not on
//     the public port (which says where they are), GET and HEAD only (405 otherwise);
//   - the admin listener serves nothing else but /healthz and /readyz;
//   - --admin-address public puts them back on the public port (single box), still GET/HEAD;
//   - the async processor reads /v1/capacity at the admin address.
import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startUpstream, startGateway, startAsync, stopAll, request, postJson, waitFor } from './lib.mjs';

const T = { timeout: 30_000 };
after(stopAll);

describe('admin listener', () => {
  it('admin routes live on the admin listener only, GET and HEAD only', T, async (t) => {
    const up = await startUpstream({ name: 'adm' });
    const gw = await startGateway(['--endpoints', up.endpoint], { adminSplit: true });
    t.after(() => Promise.all([gw.stop(), up.stop()]));
    assert.ok(gw.adminUrl && gw.adminUrl !== gw.url, gw.output());
    for (const p of ['/metrics', '/v1/pool', '/v1/capacity']) {
      const pub = await request(gw.url, { path: p });
      assert.equal(pub.status, 404, `${p} on the public port`);
      assert.match(pub.json.error.message, new RegExp(`served on the admin listener \\(${gw.adminUrl}\\)`));
      const adm = await request(gw.adminUrl, { path: p });
      assert.equal(adm.status, 200, `${p} on the admin listener`);
      const head = await request(gw.adminUrl, { path: p, method: 'HEAD' });
      assert.equal(head.status, 200);
      for (const method of ['DELETE', 'POST', 'PUT']) {
        const r = await request(gw.adminUrl, { path: p, method, body: method === 'DELETE' ? undefined : '{}' });
        assert.equal(r.status, 405, `${method} ${p}`);
        assert.equal(r.headers.allow, 'GET, HEAD');
      }
    }
    // Health is on both; inference only on the public port.
    assert.equal((await request(gw.url, { path: '/healthz' })).status, 200);
    assert.equal((await request(gw.adminUrl, { path: '/readyz' })).status, 200);
    const inf = await postJson(gw.adminUrl, '/v1/chat/completions', { model: 'fake-model', messages: [{ role: 'user', content: 'x' }] });
    assert.equal(inf.status, 404);
    assert.match(inf.json.error.message, /inference is on the public port/);
    assert.equal((await postJson(gw.url, '/v1/chat/completions', { model: 'fake-model', messages: [{ role: 'user', content: 'x' }] })).status, 200);
    assert.equal((await request(gw.url, { path: '/healthz', method: 'DELETE' })).status, 405);
  });

  it('--admin-address public serves them on the public port, still GET and HEAD only', T, async (t) => {
    const up = await startUpstream({ name: 'adm2' });
    const gw = await startGateway(['--endpoints', up.endpoint, '--admin-address', 'public']);
    t.after(() => Promise.all([gw.stop(), up.stop()]));
    assert.equal((await request(gw.url, { path: '/v1/pool' })).status, 200);
    const del = await request(gw.url, { path: '/v1/pool', method: 'DELETE' });
    assert.equal(del.status, 405);
  });

  it('a taken admin port is a clear start-up error', T, async (t) => {
    const up = await startUpstream({ name: 'adm3' });
    const gw = await startGateway(['--endpoints', up.endpoint], { adminSplit: true });
    t.after(() => Promise.all([gw.stop(), up.stop()]));
    const taken = new URL(gw.adminUrl).port;
    await assert.rejects(startGateway(['--endpoints', up.endpoint, '--admin-address', `127.0.0.1:${taken}`]),
      /cannot listen on the admin address 127\.0\.0\.1:\d+: .*(in use|--admin-address)/s);
  });

  it('the async processor reads the capacity signal at the admin address', T, async (t) => {
    const up = await startUpstream({ name: 'adm4' });
    const gw = await startGateway(['--endpoints', up.endpoint], { adminSplit: true });
    t.after(() => Promise.all([gw.stop(), up.stop()]));
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tg-admin-'));
    t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
    const db = path.join(dir, 'q.db');
    const proc = await startAsync(['--gateway', gw.url, '--gateway-admin', gw.adminUrl,
      '--requests', `sqlite://${db}?queue=requests`, '--responses', `sqlite://${db}?queue=results`]);
    t.after(() => proc.stop());
    await waitFor(async () => (await proc.metric('tidegate_async_gateway_sheddable_capacity')) >= 0,
      { timeoutMs: 5000, what: 'the processor to read /v1/capacity' });
    assert.doesNotMatch(proc.output(), /cannot read .*\/v1\/capacity/);
  });
});
