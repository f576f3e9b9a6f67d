// proxy.test.mjs — happy paths through the gateway: the three inference routes, the merged
// /v1/models list, spreading load over endpoints, x-request-id handling and a large body.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import {
  startUpstream, startGateway, stopAll, endpointsArg, request, postJson, chatBody, openStream,
} from './lib.mjs';

const T = { timeout: 15_000 };

describe('proxy', () => {
  let up1, up2, gw;
  const byEndpoint = new Map();

  before(async () => {
    up1 = await startUpstream({ name: 'up1', models: ['fake-model', 'model-a'] });
    up2 = await startUpstream({ name: 'up2', models: ['fake-model', 'model-b'] });
    byEndpoint.set(up1.endpoint, up1).set(up2.endpoint, up2);
    // least-request is the picking these tests pin down (the fake upstreams publish no metrics).
    gw = await startGateway(['--endpoints', endpointsArg(up1, up2), '--policy', 'least-request',
      '--log-level', 'info']);
  }, T);
  after(stopAll);

  // The upstream that served a response, checked against both the header and the content.
  function servedBy(r, content) {
    const dest = r.headers['x-gateway-destination-endpoint'];
    assert.ok(byEndpoint.has(dest),
      `x-gateway-destination-endpoint '${dest}' should name one of ${[...byEndpoint.keys()]}`);
    const up = byEndpoint.get(dest);
    if (content !== undefined) assert.equal(content, `hello from ${up.name}`, 'content matches the destination header');
    return up;
  }

  it('proxies a non-streaming chat completion', T, async () => {
    const r = await postJson(gw.url, '/v1/chat/completions', chatBody());
    assert.equal(r.status, 200, r.body);
    assert.match(String(r.headers['content-type']), /^application\/json/i);
    assert.equal(r.json.object, 'chat.completion');
    const content = r.json.choices[0].message.content;
    assert.match(content, /^hello from up[12]$/);
    servedBy(r, content);
    assert.ok(r.json.usage && r.json.usage.total_tokens > 0, 'usage is relayed');
    assert.ok(r.headers['x-request-id'], 'x-request-id present');
  });

  it('proxies /v1/completions', T, async () => {
    const r = await postJson(gw.url, '/v1/completions', { model: 'fake-model', prompt: 'say hello' });
    assert.equal(r.status, 200, r.body);
    assert.equal(r.json.object, 'text_completion');
    servedBy(r, r.json.choices[0].text);
  });

  it('proxies /v1/embeddings', T, async () => {
    const r = await postJson(gw.url, '/v1/embeddings', { model: 'fake-model', input: ['a', 'b'] });
    assert.equal(r.status, 200, r.body);
    assert.equal(r.json.object, 'list');
    assert.equal(r.json.data.length, 2);
    assert.ok(Array.isArray(r.json.data[0].embedding) && r.json.data[0].embedding.length > 0);
    servedBy(r);
  });

  it('forwards the request body unchanged', T, async () => {
    const body = chatBody('fake-model', { temperature: 0.25, max_tokens: 7, user: 'ünïcødé ✓', n: 1 });
    const r = await postJson(gw.url, '/v1/chat/completions', body);
    assert.equal(r.status, 200, r.body);
    const stats = await servedBy(r).stats();
    assert.deepEqual(stats.last_body, body);
  });

  it('merges /v1/models across endpoints without duplicates', T, async () => {
    const r = await request(gw.url, { path: '/v1/models' });
    assert.equal(r.status, 200, r.body);
    assert.match(String(r.headers['content-type']), /^application\/json/i);
    assert.equal(r.json.object, 'list');
    assert.ok(Array.isArray(r.json.data), r.body);
    const ids = r.json.data.map((m) => m.id);
    // Each fake upstream lists its models, then the behaviour models it also serves.
    assert.deepEqual([...ids].sort(),
      ['die-mid-event', 'die-mid-stream', 'error-500', 'fake-model', 'model-a', 'model-b', 'slow-headers', 'slow-stream'], r.body);
    for (const m of r.json.data) assert.equal(m.object, 'model');
    assert.ok(r.headers['x-request-id'], 'x-request-id on /v1/models');
  });

  it('spreads sequential requests across both endpoints', T, async () => {
    const before1 = (await up1.stats()).requests;
    const before2 = (await up2.stats()).requests;
    const seen = new Map();
    for (let i = 0; i < 40; i++) {
      const r = await postJson(gw.url, '/v1/chat/completions', chatBody());
      assert.equal(r.status, 200, r.body);
      const up = servedBy(r, r.json.choices[0].message.content);
      seen.set(up.name, (seen.get(up.name) || 0) + 1);
    }
    assert.ok(seen.get('up1') > 0 && seen.get('up2') > 0, `both upstreams used: ${JSON.stringify([...seen])}`);
    const d1 = (await up1.stats()).requests - before1;
    const d2 = (await up2.stats()).requests - before2;
    assert.equal(d1 + d2, 40, 'each request reached an upstream exactly once');
    assert.equal(d1, seen.get('up1'));
    assert.equal(d2, seen.get('up2'));
  });

  it('picks the endpoint with the fewest outstanding requests', T, async () => {
    // Keep one upstream busy with a long stream; every new request must then go to the other one.
    const busy = await openStream(gw.url, '/v1/chat/completions', chatBody('slow-stream', { stream: true }));
    try {
      assert.equal(busy.status, 200);
      await busy.waitText(0, 3000);
      const busyUp = servedBy({ headers: busy.headers });
      const idleUp = busyUp === up1 ? up2 : up1;
      for (let i = 0; i < 10; i++) {
        const r = await postJson(gw.url, '/v1/chat/completions', chatBody());
        assert.equal(r.status, 200, r.body);
        assert.equal(servedBy(r, r.json.choices[0].message.content), idleUp,
          `request ${i} went to the idle endpoint ${idleUp.endpoint}, not the busy ${busyUp.endpoint}`);
      }
    } finally {
      busy.destroy();
    }
  });

  it('serves concurrent requests', T, async () => {
    const rs = await Promise.all(Array.from({ length: 16 }, () =>
      postJson(gw.url, '/v1/chat/completions', chatBody())));
    for (const r of rs) {
      assert.equal(r.status, 200, r.body);
      servedBy(r, r.json.choices[0].message.content);
    }
  });

  it('serves several requests over one keep-alive connection', T, async () => {
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    let connections = 0;
    const createConnection = agent.createConnection.bind(agent);
    agent.createConnection = (...args) => { connections++; return createConnection(...args); };
    try {
      for (let i = 0; i < 5; i++) {
        const r = await postJson(gw.url, '/v1/chat/completions', chatBody(), { agent });
        assert.equal(r.status, 200, r.body);
        servedBy(r, r.json.choices[0].message.content);
        const m = await request(gw.url, { path: '/v1/models', agent });
        assert.equal(m.status, 200, m.body);
      }
      assert.equal(connections, 1, 'all 10 requests used one connection');
    } finally {
      agent.destroy();
    }
  });

  it('echoes and forwards a client x-request-id', T, async () => {
    const r = await postJson(gw.url, '/v1/chat/completions', chatBody(), { headers: { 'x-request-id': 'abc-123' } });
    assert.equal(r.status, 200, r.body);
    assert.equal(r.headers['x-request-id'], 'abc-123');
    const stats = await servedBy(r).stats();
    assert.equal(stats.last_headers['x-request-id'], 'abc-123', 'the upstream saw the same id');
  });

  it('generates an x-request-id when the client sends none', T, async () => {
    const r1 = await postJson(gw.url, '/v1/chat/completions', chatBody());
    assert.equal(r1.status, 200, r1.body);
    const id1 = r1.headers['x-request-id'];
    assert.equal(typeof id1, 'string');
    assert.ok(id1.length > 0, 'non-empty generated id');
    const stats = await servedBy(r1).stats();
    assert.equal(stats.last_headers['x-request-id'], id1, 'the generated id is forwarded upstream');
    const r2 = await postJson(gw.url, '/v1/chat/completions', chatBody());
    assert.ok(r2.headers['x-request-id'], 'second response has an id');
    assert.notEqual(r2.headers['x-request-id'], id1, 'generated ids differ per request');
  });

  it('accepts a prompt of almost 1 MiB with the default body limit', T, async () => {
    const target = 1024 * 1024 - 512;
    const base = Buffer.byteLength(JSON.stringify(chatBody('fake-model', { messages: [{ role: 'user', content: '' }] })));
    const body = chatBody('fake-model', { messages: [{ role: 'user', content: 'x'.repeat(target - base) }] });
    const raw = JSON.stringify(body);
    assert.equal(Buffer.byteLength(raw), target);
    const r = await postJson(gw.url, '/v1/chat/completions', raw, { timeoutMs: 15_000 });
    assert.equal(r.status, 200, r.body.slice(0, 500));
    servedBy(r, r.json.choices[0].message.content);
    const stats = await servedBy(r).stats();
    assert.equal(stats.last_body.messages[0].content.length, target - base, 'the whole prompt reached the upstream');
  });
});
