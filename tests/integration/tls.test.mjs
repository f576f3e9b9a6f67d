// tls.test.mjs — TLS on the public listener, with certificates made by openssl in the test:
//   - curl with the test CA gets answers over HTTPS (JSON and a stream), and so does node's https;
//   - a client that offers only TLS 1.1 is refused, and so is plain HTTP on the TLS port (no
//     plaintext answer; counted in tidegate_tls_handshake_failures_total);
//   - SIGHUP loads a new certificate for new connections.
import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import https from 'node:https';
import os from 'node:os';
import path from 'node:path';
import {
  startUpstream, startGateway, stopAll, request, rawExchange, waitFor, postJson,
  makeCerts as makeCertsIn,
} from './lib.mjs';

const T = { timeout: 30_000 };
after(stopAll);

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tg-tls-'));
after(() => fs.rmSync(dir, { recursive: true, force: true }));

const makeCerts = (name) => makeCertsIn(dir, `${name}-`, `tidegate test CA ${name}`);

const body = JSON.stringify({ model: 'fake-model', messages: [{ role: 'user', content: 'hi' }] });
const curl = (...args) => spawnSync('curl', ['-sS', '--max-time', '10', ...args], { encoding: 'utf8' });

describe('TLS on the public listener', () => {
  it('serves HTTPS to clients that trust the CA, refuses TLS 1.1 and plaintext, reloads on SIGHUP', T, async (t) => {
    const one = makeCerts('one');
    const up = await startUpstream({ name: 'tls' });
    const gw = await startGateway(['--endpoints', up.endpoint, '--tls-cert', one.cert, '--tls-key', one.key],
      { adminSplit: true });
    t.after(() => Promise.all([gw.stop(), up.stop()]));
    assert.match(gw.output(), new RegExp(`listening on https://127\\.0\\.0\\.1:${gw.port}`));
    const url = `https://127.0.0.1:${gw.port}/v1/chat/completions`;

    let r = curl('--cacert', one.ca, '-H', 'content-type: application/json', '-d', body, url);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /hello from tls/);
    r = curl('--cacert', one.ca, '-N', '-H', 'content-type: application/json',
      '-d', JSON.stringify({ ...JSON.parse(body), stream: true }), url);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /data: \[DONE\]/);

    // node's https, trusting the same CA.
    const viaNode = await new Promise((resolve, reject) => {
      const req = https.request(url, { method: 'POST', ca: fs.readFileSync(one.ca),
        headers: { 'content-type': 'application/json', 'content-length': body.length } }, (res) => {
        let b = '';
        res.on('data', (c) => { b += c; });
        res.on('end', () => resolve({ status: res.statusCode, b }));
      });
      req.on('error', reject);
      req.end(body);
    });
    assert.equal(viaNode.status, 200);

    // Untrusted: curl without the CA fails verification.
    assert.notEqual(curl(url, '-d', body).status, 0);
    // TLS 1.1 only: refused.
    assert.notEqual(curl('--cacert', one.ca, '--tlsv1.1', '--tls-max', '1.1', '-d', body, url).status, 0);
    // Plaintext on the TLS port gets no plaintext answer.
    const raw = await rawExchange(gw.port, 'GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n', 2000);
    assert.doesNotMatch(raw, /HTTP\/1\.1 200/);
    await waitFor(async () => {
      const m = (await request(gw.adminUrl, { path: '/metrics' })).body;
      return /tidegate_tls_handshake_failures_total (\d+)/.exec(m)?.[1] >= 2;
    }, { timeoutMs: 3000, what: 'failed handshakes counted' });

    // A new certificate from another CA, loaded on SIGHUP.
    const two = makeCerts('two');
    fs.copyFileSync(two.cert, one.cert);
    fs.copyFileSync(two.key, one.key);
    gw.proc.kill('SIGHUP');
    await waitFor(() => /TLS certificate reloaded/.test(gw.output()), { timeoutMs: 3000, what: 'the reload' });
    r = curl('--cacert', two.ca, '-H', 'content-type: application/json', '-d', body, url);
    assert.equal(r.status, 0, r.stderr);
    assert.notEqual(curl('--cacert', one.ca, '-d', body, url).status, 0, 'the old CA no longer matches');
  });

  it('a certificate and key that do not match are a clear start-up error', T, async (t) => {
    const a = makeCerts('a');
    const b = makeCerts('b');
    const up = await startUpstream({ name: 'tls2' });
    t.after(() => up.stop());
    await assert.rejects(startGateway(['--endpoints', up.endpoint, '--tls-cert', a.cert, '--tls-key', b.key]),
      /key values mismatch|does not match the certificate/);
  });

  it('https:// endpoints: requests, health checks and metrics over TLS, verified against --upstream-ca', T, async (t) => {
    const ca = makeCerts('up');
    const other = makeCerts('other');
    const up = await startUpstream({ name: 'tls-up', models: ['fake-model'], tls: ca });
    t.after(() => up.stop());
    const gw = await startGateway(['--endpoints', `https://${up.endpoint}`, '--upstream-ca', ca.ca,
      '--health-interval', '200ms']);
    t.after(() => gw.stop());
    const r = await postJson(gw.url, '/v1/chat/completions', JSON.parse(body));
    assert.equal(r.status, 200, r.body);
    assert.match(r.body, /hello from tls-up/);
    // The prober read /v1/models over TLS, and the scraper got an answer (a 404: no metrics).
    await waitFor(async () => {
      const e = (await request(gw.url, { path: '/v1/pool' })).json.endpoints[0];
      return e.models.includes('fake-model') && e.metrics === 'in-flight only';
    }, { timeoutMs: 5000, what: 'models and metrics read over TLS' });

    // Verified against another CA, the same server is refused.
    const gw2 = await startGateway(['--endpoints', `https://${up.endpoint}`, '--upstream-ca', other.ca]);
    t.after(() => gw2.stop());
    const bad = await postJson(gw2.url, '/v1/chat/completions', JSON.parse(body));
    assert.ok(bad.status === 502 || bad.status === 503, `${bad.status} ${bad.body}`);
    assert.match(bad.body, /TLS handshake failed|no model server endpoint/);
    assert.match(gw2.output(), /tls_handshake/);
  });
});
