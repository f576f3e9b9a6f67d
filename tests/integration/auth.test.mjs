// auth.test.mjs — API keys and tenants at the gateway:
//   - no key / a wrong key → 401 (WWW-Authenticate: Bearer); a key over its objectives → 403;
//     over its rate or concurrency → 429 with Retry-After; a good key → served, and its
//     Authorization header is not forwarded to the model server;
//   - keys come from environment variables named in the key file, never appear in the logs or
//     metrics, and are reloaded on SIGHUP (a broken file keeps the old keys);
//   - the async processor authenticates with its own key;
//   - without keys, serve warns when it listens beyond loopback.
import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawn } from 'node:child_process';
import {
  startUpstream, startGateway, startAsync, runTidegate, stopAll, request, postJson, waitFor, sleep,
  openStream, GATEWAY_BIN,
} from './lib.mjs';

const T = { timeout: 30_000 };
after(stopAll);

const KEY_A = 'key-aaaaaaaaaaaaaaaaaaaaaaaa';
const KEY_B = 'key-bbbbbbbbbbbbbbbbbbbbbbbb';
const KEY_C = 'key-cccccccccccccccccccccccc';
const env = { ...process.env, TG_KEY_A: KEY_A, TG_KEY_B: KEY_B, TG_KEY_C: KEY_C };
const chat = { model: 'fake-model', messages: [{ role: 'user', content: 'hi' }] };
const bearer = (k) => ({ authorization: `Bearer ${k}` });

describe('API keys', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tg-auth-'));
  after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const keysFile = path.join(dir, 'keys.yaml');

  it('401, 403, 429 and a served request whose key is not forwarded', T, async (t) => {
    fs.writeFileSync(keysFile, [
      'keys:',
      '  - {tenant: team-a, key_env: TG_KEY_A, rate: 3, burst: 3}',
      '  - {tenant: team-b, key_env: TG_KEY_B, objectives: [premium, standard], concurrency: 1}',
      '',
    ].join('\n'));
    const up = await startUpstream({ name: 'auth' });
    const gw = await startGateway(['--endpoints', up.endpoint, '--api-keys', keysFile,
      '--objective', 'premium=10'], { env });
    t.after(() => Promise.all([gw.stop(), up.stop()]));

    let r = await postJson(gw.url, '/v1/chat/completions', chat);
    assert.equal(r.status, 401);
    assert.equal(r.json.error.code, 'missing_api_key');
    assert.equal(r.headers['www-authenticate'], 'Bearer');
    r = await postJson(gw.url, '/v1/chat/completions', chat, { headers: bearer('key-not-a-real-one-at-all') });
    assert.equal(r.status, 401);
    assert.equal(r.json.error.code, 'invalid_api_key');
    r = await postJson(gw.url, '/v1/chat/completions', chat,
      { headers: { ...bearer(KEY_A), 'x-gateway-inference-objective': 'premium' } });
    assert.equal(r.status, 403);
    assert.equal(r.json.error.code, 'objective_not_allowed');
    assert.match(r.json.error.message, /tenant 'team-a' may not use objective 'premium'/);

    // team-b may use premium; its Authorization does not reach the model server.
    r = await postJson(gw.url, '/v1/chat/completions', chat,
      { headers: { ...bearer(KEY_B), 'x-gateway-inference-objective': 'premium' } });
    assert.equal(r.status, 200, r.body);
    assert.equal((await up.stats()).last_headers.authorization, undefined);
    // /v1/models needs a key too.
    assert.equal((await request(gw.url, { path: '/v1/models' })).status, 401);
    assert.equal((await request(gw.url, { path: '/v1/models', headers: bearer(KEY_A) })).status, 200);

    // team-a: 3 requests/s. (One token went on /v1/models above.)
    const statuses = [];
    for (let i = 0; i < 4; i++) statuses.push((await postJson(gw.url, '/v1/chat/completions', chat, { headers: bearer(KEY_A) })).status);
    assert.ok(statuses.includes(429), `over its rate: ${statuses}`);
    r = await postJson(gw.url, '/v1/chat/completions', chat, { headers: bearer(KEY_A) });
    if (r.status === 429) {
      assert.equal(r.json.error.code, 'rate_limited');
      assert.equal(r.headers['retry-after'], '1');
    }

    // team-b: one request at once.
    const slow = await openStream(gw.url, '/v1/chat/completions', { ...chat, model: 'slow-stream', stream: true },
      { headers: bearer(KEY_B) });
    r = await postJson(gw.url, '/v1/chat/completions', chat, { headers: bearer(KEY_B) });
    assert.equal(r.status, 429);
    assert.equal(r.json.error.code, 'concurrency_limited');
    slow.destroy();
    await waitFor(async () => (await postJson(gw.url, '/v1/chat/completions', chat, { headers: bearer(KEY_B) })).status === 200,
      { timeoutMs: 5000, what: 'team-b served again once its stream ended' });

    const m = (await request(gw.url, { path: '/metrics' })).body;
    assert.match(m, /tidegate_auth_rejections_total\{tenant="team-a",reason="objective_not_allowed"\} 1/);
    assert.match(m, /tidegate_auth_rejections_total\{tenant="-",reason="missing_api_key"\} \d/);
    for (const k of [KEY_A, KEY_B]) {
      assert.ok(!m.includes(k), 'no key in the metrics');
      assert.ok(!gw.output().includes(k), 'no key in the log');
    }
  });

  it('SIGHUP reloads the keys; a broken file keeps the old ones', T, async (t) => {
    fs.writeFileSync(keysFile, 'keys:\n  - {tenant: team-a, key_env: TG_KEY_A}\n');
    const up = await startUpstream({ name: 'auth2' });
    const gw = await startGateway(['--endpoints', up.endpoint, '--api-keys', keysFile], { env });
    t.after(() => Promise.all([gw.stop(), up.stop()]));
    assert.equal((await postJson(gw.url, '/v1/chat/completions', chat, { headers: bearer(KEY_C) })).status, 401);
    fs.writeFileSync(keysFile, 'keys:\n  - {tenant: team-a, key_env: TG_KEY_A}\n  - {tenant: team-c, key_env: TG_KEY_C}\n');
    gw.proc.kill('SIGHUP');
    await waitFor(() => /API keys reloaded: 2 key\(s\)/.test(gw.output()), { timeoutMs: 3000, what: 'the reload' });
    assert.equal((await postJson(gw.url, '/v1/chat/completions', chat, { headers: bearer(KEY_C) })).status, 200);
    fs.writeFileSync(keysFile, 'keys: [not: valid');
    gw.proc.kill('SIGHUP');
    await waitFor(() => /keeping the current API keys/.test(gw.output()), { timeoutMs: 3000, what: 'the refused reload' });
    assert.equal((await postJson(gw.url, '/v1/chat/completions', chat, { headers: bearer(KEY_C) })).status, 200);
  });

  it('the async processor authenticates with its own key', T, async (t) => {
    fs.writeFileSync(keysFile, 'keys:\n  - {tenant: batch, key_env: TG_KEY_A, objectives: [sheddable]}\n');
    const up = await startUpstream({ name: 'auth3' });
    const gw = await startGateway(['--endpoints', up.endpoint, '--api-keys', keysFile], { env });
    t.after(() => Promise.all([gw.stop(), up.stop()]));
    const db = path.join(dir, 'q.db');
    const work = path.join(dir, 'work.jsonl');
    fs.writeFileSync(work, JSON.stringify({ id: 'w1', payload: chat }) + '\n');
    assert.equal((await runTidegate(['submit', '--queue', `sqlite://${db}?queue=requests`, work])).code, 0);
    const proc = await startAsync(['--gateway', gw.url, '--api-key-env', 'TG_KEY_A',
      '--requests', `sqlite://${db}?queue=requests`, '--responses', `sqlite://${db}?queue=results`], { env });
    t.after(() => proc.stop());
    const res = await runTidegate(['results', '--queue', `sqlite://${db}?queue=results`, '--wait', '1', '--timeout', '20s']);
    const line = JSON.parse(res.stdout.trim().split('\n')[0]);
    assert.equal(line.id, 'w1');
    assert.equal(line.status_code, 200, res.stdout);
  });

  it('without keys, listening beyond loopback is warned about', T, async (t) => {
    const up = await startUpstream({ name: 'auth4' });
    t.after(() => up.stop());
    const child = spawn(GATEWAY_BIN, ['serve', '--host', '0.0.0.0', '--port', '0', '--admin-address', '127.0.0.1:0',
      '--endpoints', up.endpoint], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (c) => { out += c; });
    child.stderr.on('data', (c) => { out += c; });
    t.after(() => child.kill('SIGKILL'));
    await waitFor(() => /listening on http:\/\/0\.0\.0\.0:/.test(out), { timeoutMs: 8000, what: 'the gateway to listen' });
    assert.match(out, /listening on 0\.0\.0\.0 without API keys: anyone who can reach port \d+ can use the model servers/);
  });
});
