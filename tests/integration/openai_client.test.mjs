// openai_client.test.mjs — the official `openai` npm client pointed at the gateway: plain and
// streamed chat completions, completions, embeddings, the models list, response headers, and an
// upstream that dies mid-stream surfacing as an error in the client.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import { startUpstream, startGateway, stopAll, endpointsArg } from './lib.mjs';

const T = { timeout: 15_000 };

describe('openai client', () => {
  let up1, up2, gw, client;
  const byEndpoint = new Map();

  before(async () => {
    up1 = await startUpstream({ name: 'up1', models: ['fake-model', 'model-a'] });
    up2 = await startUpstream({ name: 'up2', models: ['fake-model', 'model-b'] });
    byEndpoint.set(up1.endpoint, up1).set(up2.endpoint, up2);
    gw = await startGateway(['--endpoints', endpointsArg(up1, up2)]);
    client = new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: 'test', maxRetries: 0, timeout: 10_000 });
  }, T);
  after(stopAll);

  const upOf = (response) => {
    const dest = response.headers.get('x-gateway-destination-endpoint');
    assert.ok(byEndpoint.has(dest), `x-gateway-destination-endpoint '${dest}' names an upstream`);
    return byEndpoint.get(dest);
  };

  it('chat.completions.create (non-streaming)', T, async () => {
    const { data, response } = await client.chat.completions.create({
      model: 'fake-model',
      messages: [{ role: 'user', content: 'say hello' }],
    }).withResponse();
    assert.equal(response.status, 200);
    assert.match(data.choices[0].message.content, /^hello from up[12]$/);
    assert.equal(data.choices[0].message.content, `hello from ${upOf(response).name}`);
    assert.ok(data.usage.total_tokens > 0);
    const rid = response.headers.get('x-request-id');
    assert.ok(rid && rid.length > 0, 'x-request-id present');
  });

  it('passes a caller-chosen x-request-id through', T, async () => {
    const response = await client.chat.completions.create(
      { model: 'fake-model', messages: [{ role: 'user', content: 'hi' }] },
      { headers: { 'x-request-id': 'sdk-req-42' } },
    ).asResponse();
    assert.equal(response.status, 200);
    assert.equal(response.headers.get('x-request-id'), 'sdk-req-42');
    const up = upOf(response);
    assert.equal((await up.stats()).last_headers['x-request-id'], 'sdk-req-42');
    const body = await response.json();
    assert.equal(body.choices[0].message.content, `hello from ${up.name}`);
  });

  it('chat.completions.create (streaming)', T, async () => {
    const { data: stream, response } = await client.chat.completions.create({
      model: 'fake-model',
      messages: [{ role: 'user', content: 'say hello' }],
      stream: true,
    }).withResponse();
    assert.match(response.headers.get('content-type') || '', /^text\/event-stream/i);
    let text = '';
    let chunks = 0;
    for await (const chunk of stream) {
      chunks++;
      text += chunk.choices[0]?.delta?.content ?? '';
    }
    assert.ok(chunks >= 3, `got ${chunks} chunks`);
    assert.equal(text, `hello from ${upOf(response).name}`);
  });

  it('completions.create and embeddings.create', T, async () => {
    const c = await client.completions.create({ model: 'fake-model', prompt: 'hi' });
    assert.match(c.choices[0].text, /^hello from up[12]$/);
    const e = await client.embeddings.create({ model: 'fake-model', input: ['a', 'b', 'c'] });
    assert.equal(e.data.length, 3);
    assert.ok(e.data.every((d) => Array.isArray(d.embedding) && d.embedding.length > 0));
  });

  it('models.list returns the merged list', T, async () => {
    const ids = [];
    for await (const m of client.models.list()) ids.push(m.id);
    // Each fake upstream lists its models, then the behaviour models it also serves.
    assert.deepEqual(ids.sort(),
      ['die-mid-event', 'die-mid-stream', 'error-500', 'fake-model', 'model-a', 'model-b', 'slow-headers', 'slow-stream']);
  });

  it('an upstream 500 surfaces as an APIError with status 500', T, async () => {
    await assert.rejects(
      client.chat.completions.create({ model: 'error-500', messages: [{ role: 'user', content: 'x' }] }),
      (err) => {
        assert.ok(err instanceof OpenAI.APIError, `APIError, got ${err?.constructor?.name}: ${err}`);
        assert.equal(err.status, 500);
        return true;
      },
    );
  });

  it('streaming from an upstream that dies mid-stream throws in the client', T, async () => {
    const stream = await client.chat.completions.create({
      model: 'die-mid-stream',
      messages: [{ role: 'user', content: 'x' }],
      stream: true,
    });
    let text = '';
    await assert.rejects(async () => {
      for await (const chunk of stream) text += chunk.choices[0]?.delta?.content ?? '';
    }, (err) => {
      // The gateway's SSE error event becomes an APIError carrying the event's error code.
      assert.ok(err instanceof OpenAI.APIError, `APIError, got ${err?.constructor?.name}: ${err}`);
      assert.equal(err.code, 'upstream_disconnected', String(err));
      return true;
    });
    assert.equal(text, 'hello from', 'the chunks before the failure were delivered');
    // The gateway is still serving, on the same client (and so its keep-alive pool).
    const ok = await client.chat.completions.create({ model: 'fake-model', messages: [{ role: 'user', content: 'x' }] });
    assert.match(ok.choices[0].message.content, /^hello from up[12]$/);
  });
});
