// outliers.test.mjs — a stuck model server (its /health and /v1/models answer, its POSTs hang)
// beside a healthy simulator:
//   - after --eject-after timeouts in a row it is ejected, although its health checks pass;
//     /v1/pool and the metrics show it, and every request still succeeds (the one retry after
//     a timeout goes to the other endpoint);
//   - a streamed request with x-slo-ttft-ms gives up on the silent server after
//     max(1 s, 5 × SLO), not after --ttfb-timeout.
import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  startUpstream, startSim, startGateway, stopAll, request, postJson, parseMetrics, openStream,
  waitFor, SIM_MODEL,
} from './lib.mjs';

const T = { timeout: 60_000 };
after(stopAll);

const chat = (i) => ({ model: SIM_MODEL, max_tokens: 4, messages: [{ role: 'user', content: `q ${i}` }] });
const DEST = 'x-gateway-destination-endpoint';

describe('outlier ejection', () => {
  it('a server whose POSTs hang is ejected after 3 timeouts though its /health answers; nothing fails', T, async (t) => {
    const [hung, sim] = await Promise.all([
      startUpstream({ name: 'hung', models: [SIM_MODEL], hangPosts: true }),
      startSim(['--time-scale', '10']),
    ]);
    const gw = await startGateway(['--endpoints', `${hung.endpoint},${sim.endpoint}`,
      '--ttfb-timeout', '700ms', '--eject-after', '3', '--eject-time', '30s', '--health-interval', '200ms']);
    t.after(() => Promise.all([gw.stop(), hung.stop(), sim.stop()]));
    await waitFor(async () => (await request(gw.url, { path: '/v1/pool' })).json.endpoints.every((e) => e.models.length > 0),
      { timeoutMs: 5000, what: 'both endpoints known' });

    const started = Date.now();
    for (let i = 0; i < 12; i++) {
      const r = await postJson(gw.url, '/v1/chat/completions', chat(i), { timeoutMs: 10000 });
      assert.equal(r.status, 200, `request ${i}: ${r.body.slice(0, 300)}`);
      assert.equal(r.headers[DEST], sim.endpoint, `request ${i} was served by the simulator`);
    }
    const hits = (await hung.stats()).requests;
    assert.ok(hits >= 1 && hits <= 3, `the stuck server got ${hits} requests before its ejection`);
    assert.ok(Date.now() - started < 12 * 700, 'later requests did not wait for the stuck server');

    const p = (await request(gw.url, { path: '/v1/pool' })).json;
    const e = p.endpoints.find((x) => x.address === hung.endpoint);
    assert.equal(e.ejected, true, JSON.stringify(e));
    assert.equal(e.available, false);
    assert.equal(e.ejections, 1);
    assert.match(e.ejection_reason, /3 failures in a row \(last: ttfb_timeout\)/);
    assert.ok(e.ejected_for_ms > 20000, JSON.stringify(e));
    assert.match(gw.output(), new RegExp(`endpoint ${hung.endpoint} ejected for \\d+ ms`));
    assert.doesNotMatch(gw.output(), /failed its health check/, 'its health checks passed all along');
    const m = parseMetrics((await request(gw.url, { path: '/metrics' })).body);
    assert.equal(m.get('tidegate_endpoint_ejected', { endpoint: hung.endpoint }), 1);
    assert.equal(m.get('tidegate_endpoint_ejections_total', { endpoint: hung.endpoint, reason: 'ttfb_timeout' }), 1);
  });

  it('a streamed request with a TTFT SLO leaves a silent server after 5 × SLO, not the TTFB timeout', T, async (t) => {
    const [hung, sim] = await Promise.all([
      startUpstream({ name: 'hung2', models: [SIM_MODEL], hangPosts: true }),
      startSim(['--time-scale', '10']),
    ]);
    const gw = await startGateway(['--endpoints', `${hung.endpoint},${sim.endpoint}`,
      '--ttfb-timeout', '60s', '--eject-after', '0', '--policy', 'round-robin']);
    t.after(() => Promise.all([gw.stop(), hung.stop(), sim.stop()]));
    await waitFor(async () => (await request(gw.url, { path: '/v1/pool' })).json.endpoints.every((e) => e.models.length > 0),
      { timeoutMs: 5000, what: 'both endpoints known' });
    let viaHung = 0;
    for (let i = 0; i < 4; i++) {
      const t0 = Date.now();
      const s = await openStream(gw.url, '/v1/chat/completions', { ...chat(i), stream: true },
        { headers: { 'x-slo-ttft-ms': '300' }, timeoutMs: 10000 });
      await s.finished(10000);
      const took = Date.now() - t0;
      assert.equal(s.status, 200);
      assert.equal(s.headers[DEST], sim.endpoint);
      assert.match(s.text(), /data: \[DONE\]/);
      assert.ok(took < 4000, `request ${i} took ${took} ms (bound 1.5 s + service)`);
      if (took >= 1400) viaHung++;
    }
    assert.ok(viaHung >= 1, 'round-robin sent some requests to the stuck server first');
    assert.ok((await hung.stats()).requests >= 1);
  });
});
