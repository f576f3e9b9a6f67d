// errors.test.mjs — the gateway's error contract: JSON errors for bad requests, body limits,
// unknown routes, no reachable endpoint, relayed upstream errors, the time-to-first-byte timeout
// and retrying on another endpoint when one is down.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  startUpstream, startGateway, stopAll, endpointsArg, request, postJson, chatBody, closedPort,
  expectErrorShape, openStream, sseData, sseContent, rawExchange, waitFor,
} from './lib.mjs';

const MAX_BODY = 4096;

const T = { timeout: 15_000 };

describe('errors', () => {
  let up, gw;

  before(async () => {
    up = await startUpstream({ name: 'up1' });
    gw = await startGateway(['--endpoints', endpointsArg(up), '--max-body-bytes', String(MAX_BODY)]);
  }, T);
  after(stopAll);

  const hasRequestId = (r) => assert.ok(r.headers['x-request-id'], `x-request-id on ${r.status} response`);

  describe('bad requests', () => {
    it('malformed JSON → 400 invalid_json', T, async () => {
      const before = (await up.stats()).requests;
      const r = await postJson(gw.url, '/v1/chat/completions', '{"model": "fake-model", "messages": [');
      expectErrorShape(assert, r, { status: 400, code: 'invalid_json' });
      hasRequestId(r);
      assert.equal((await up.stats()).requests, before, 'a bad request is not forwarded');
    });

    it('JSON that is not an object → 400 invalid_json', T, async () => {
      for (const body of ['[1,2,3]', '"just a string"', '42', 'null']) {
        const r = await postJson(gw.url, '/v1/chat/completions', body);
        expectErrorShape(assert, r, { status: 400, code: 'invalid_json' });
      }
    });

    it('empty body → 400 invalid_json', T, async () => {
      const r = await postJson(gw.url, '/v1/chat/completions', '');
      expectErrorShape(assert, r, { status: 400, code: 'invalid_json' });
    });

    it('object without a string model → 400 missing_model', T, async () => {
      for (const body of [{ messages: [] }, { model: 5, messages: [] }, { model: null }, {}]) {
        const r = await postJson(gw.url, '/v1/chat/completions', body);
        expectErrorShape(assert, r, { status: 400, code: 'missing_model' });
        hasRequestId(r);
      }
      const r = await postJson(gw.url, '/v1/embeddings', { input: 'x' });
      expectErrorShape(assert, r, { status: 400, code: 'missing_model' });
    });

    it('body over --max-body-bytes → 413 body_too_large', T, async () => {
      const body = JSON.stringify(chatBody('fake-model', { messages: [{ role: 'user', content: 'y'.repeat(3 * MAX_BODY) }] }));
      const r = await postJson(gw.url, '/v1/chat/completions', body);
      expectErrorShape(assert, r, { status: 413, code: 'body_too_large' });
      hasRequestId(r);
    });

    it('chunked body over --max-body-bytes → 413 body_too_large', T, async () => {
      const body = JSON.stringify(chatBody('fake-model', { messages: [{ role: 'user', content: 'y'.repeat(3 * MAX_BODY) }] }));
      const r = await postJson(gw.url, '/v1/chat/completions', body, { chunked: true });
      expectErrorShape(assert, r, { status: 413, code: 'body_too_large' });
    });

    it('body of exactly --max-body-bytes is accepted', T, async () => {
      const base = Buffer.byteLength(JSON.stringify(chatBody('fake-model', { messages: [{ role: 'user', content: '' }] })));
      const body = JSON.stringify(chatBody('fake-model', { messages: [{ role: 'user', content: 'z'.repeat(MAX_BODY - base) }] }));
      assert.equal(Buffer.byteLength(body), MAX_BODY);
      const r = await postJson(gw.url, '/v1/chat/completions', body);
      assert.equal(r.status, 200, r.body);
      assert.equal(r.json.choices[0].message.content, 'hello from up1');
    });

    it('the gateway still works after rejected requests', T, async () => {
      const r = await postJson(gw.url, '/v1/chat/completions', chatBody());
      assert.equal(r.status, 200, r.body);
    });
  });

  describe('routes', () => {
    it('unknown path → 404 not_found', T, async () => {
      for (const [method, path] of [['GET', '/v1/nope'], ['POST', '/v1/nope'], ['GET', '/'], ['POST', '/v2/chat/completions']]) {
        const r = await request(gw.url, { method, path, body: method === 'POST' ? chatBody() : undefined });
        expectErrorShape(assert, r, { status: 404, code: 'not_found' });
        hasRequestId(r);
      }
    });

    it('wrong method on a known path → 405', T, async () => {
      const r = await request(gw.url, { method: 'GET', path: '/v1/chat/completions' });
      expectErrorShape(assert, r, { status: 405 });
      hasRequestId(r);
      const r2 = await request(gw.url, { method: 'DELETE', path: '/v1/embeddings' });
      expectErrorShape(assert, r2, { status: 405 });
    });

    // RFC 9110 §9.3.2: a response to HEAD carries no content. A body after the headers would be
    // read as the start of the next response on a keep-alive connection.
    it('HEAD responses carry no body', T, async () => {
      for (const path of ['/healthz', '/v1/models', '/v1/chat/completions']) {
        const raw = await rawExchange(gw.port, `HEAD ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n`);
        const end = raw.indexOf('\r\n\r\n');
        assert.ok(end > 0, `a response head for HEAD ${path}: ${JSON.stringify(raw)}`);
        assert.equal(raw.slice(end + 4), '', `no body after the headers of HEAD ${path}: ${JSON.stringify(raw)}`);
      }
    });
  });

  describe('upstream failures', () => {
    it('relays an upstream 500 unchanged', T, async () => {
      const r = await postJson(gw.url, '/v1/chat/completions', chatBody('error-500'));
      assert.equal(r.status, 500, r.body);
      assert.deepEqual(r.json, {
        error: { message: 'fake upstream up1 failed on purpose', type: 'server_error', param: null, code: 'internal_error' },
      });
      assert.equal(r.headers['x-gateway-destination-endpoint'], up.endpoint);
      hasRequestId(r);
    });

    it('no reachable endpoint → 503 no_endpoints with Retry-After', T, async () => {
      const dead = await closedPort();
      const gwDead = await startGateway(['--endpoints', endpointsArg(dead), '--connect-timeout', '1s']);
      try {
        const r = await postJson(gwDead.url, '/v1/chat/completions', chatBody(),
          { headers: { 'x-request-id': 'find-me-503' } });
        expectErrorShape(assert, r, { status: 503, code: 'no_endpoints' });
        assert.equal(r.headers['x-gateway-request-dropped-reason'], 'no-endpoints');
        assert.equal(r.headers['x-llm-d-request-dropped-reason'], 'no-endpoints');
        // The gateway's log has one line for it, findable by its id.
        const line = await waitFor(
          () => gwDead.output().split('\n').find((l) => l.includes('id=find-me-503')),
          { timeoutMs: 3000, what: `a log line naming the request in:\n${gwDead.output().slice(-2000)}` });
        assert.match(line, /request failed: POST \/v1\/chat\/completions status 503 reason no_endpoints/);
        assert.ok(r.headers['retry-after'], `Retry-After header present: ${JSON.stringify(r.headers)}`);
        hasRequestId(r);
        // Still the same answer once health checking has had a chance to run.
        const r2 = await postJson(gwDead.url, '/v1/chat/completions', chatBody('fake-model', { stream: true }));
        expectErrorShape(assert, r2, { status: 503, code: 'no_endpoints' });
      } finally {
        await gwDead.stop();
      }
    });

    it('time-to-first-byte timeout → 504 upstream_timeout', T, async () => {
      const gwT = await startGateway(['--endpoints', endpointsArg(up), '--ttfb-timeout', '1s']);
      try {
        const r = await postJson(gwT.url, '/v1/chat/completions', chatBody('slow-headers'), { timeoutMs: 10_000 });
        expectErrorShape(assert, r, { status: 504, code: 'upstream_timeout' });
        hasRequestId(r);
        assert.ok(r.elapsedMs >= 900, `gave up after ${r.elapsedMs} ms, expected about 1 s`);
        assert.ok(r.elapsedMs < 2900, `gave up after ${r.elapsedMs} ms, before the upstream's 3 s answer`);
        // A normal request still works afterwards.
        const ok = await postJson(gwT.url, '/v1/chat/completions', chatBody());
        assert.equal(ok.status, 200, ok.body);
      } finally {
        await gwT.stop();
      }
    });

    it('one endpoint down: every request still succeeds', T, async () => {
      const dead = await closedPort();
      const gwHalf = await startGateway(['--endpoints', `127.0.0.1:${dead},${up.endpoint}`, '--connect-timeout', '1s']);
      try {
        for (let i = 0; i < 20; i++) {
          const r = await postJson(gwHalf.url, '/v1/chat/completions', chatBody());
          assert.equal(r.status, 200, `request ${i}: ${r.status} ${r.body}`);
          assert.equal(r.json.choices[0].message.content, 'hello from up1');
          assert.equal(r.headers['x-gateway-destination-endpoint'], up.endpoint);
        }
        for (let i = 0; i < 4; i++) {
          const s = await openStream(gwHalf.url, '/v1/chat/completions', chatBody('fake-model', { stream: true }));
          const end = await s.finished(5000);
          assert.equal(s.status, 200, s.text());
          assert.ok(end.complete, 'stream completed');
          assert.equal(sseContent(sseData(s.text())), 'hello from up1');
        }
      } finally {
        await gwHalf.stop();
      }
    });
  });
});
