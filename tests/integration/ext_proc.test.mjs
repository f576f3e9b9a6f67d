// ext_proc.test.mjs — the ext_proc endpoint picker (`tidegate serve --ext-proc-port N`) against
// real simulators, with a client built on @grpc/grpc-js + @grpc/proto-loader (loading the
// repository's own protos, proto/) playing Envoy's part in the Gateway API Inference
// Extension's protocol: request headers, the body in FULL_DUPLEX_STREAMED pieces, then — as
// Envoy would — the request forwarded over HTTP to the endpoint the picker chose, and the
// response headers (with x-gateway-destination-endpoint-served) and the SSE body sent back
// through the stream. It shows: the picked endpoint and the fallback list agree; bodies come back
// intact in pieces of at most 62,000 bytes; prefix affinity across requests; the subset hint;
// 429 for sheddable work on a saturated pool (saturated through the HTTP front door of the same
// process), a queued request's TTL and cancellation; 503 with no eligible endpoint; a clear 400
// for a body that is not JSON on a stream that stays usable; the response phase reaching
// /metrics; and the gRPC health service.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import path from 'node:path';
import { randomUUID } from 'node:crypto';
import grpc from '@grpc/grpc-js';
import protoLoader from '@grpc/proto-loader';
import {
  REPO_ROOT, startSim, startGateway, stopAll, SIM_MODEL, request, openFlood, waitFor,
  parseMetrics, closedPort, withTimeout,
} from './lib.mjs';

const T = { timeout: 30_000 };
const DEST = 'x-gateway-destination-endpoint';
const SERVED = 'x-gateway-destination-endpoint-served';
const MAX_CHUNK = 62_000;

const pkgDef = protoLoader.loadSync(
  ['envoy/service/ext_proc/v3/external_processor.proto', 'grpc/health/v1/health.proto'],
  { includeDirs: [path.join(REPO_ROOT, 'proto')], keepCase: true, longs: Number, enums: String,
    oneofs: true });
const proto = grpc.loadPackageDefinition(pkgDef);
const ExternalProcessor = proto.envoy.service.ext_proc.v3.ExternalProcessor;
const Health = proto.grpc.health.v1.Health;

after(stopAll);

const headerMap = (obj) => ({
  headers: Object.entries(obj).map(([key, v]) => ({ key, raw_value: Buffer.from(String(v)) })),
});
// (protobufjs's own google.protobuf.Struct has camelCase field names, whatever keepCase says.)
const strValue = (s) => ({ stringValue: s });
const listValue = (items) => ({ listValue: { values: items.map(strValue) } });
const metadata = (ns, fields) => ({ filter_metadata: { [ns]: { fields } } });

function headerOf(mutation, name) {
  const h = (mutation?.set_headers ?? []).find((o) => o.header.key === name);
  if (!h) return undefined;
  return h.header.raw_value?.length ? h.header.raw_value.toString() : h.header.value;
}

// One Process stream, with a bounded next() over what the picker sends.
function openProcess(client) {
  const call = client.Process();
  const inbox = [];
  const waiting = [];
  let ended = null;
  const status = new Promise((resolve) => call.on('status', resolve));
  call.on('data', (m) => (waiting.length ? waiting.shift().resolve(m) : inbox.push(m)));
  const fail = (err) => {
    ended = err;
    while (waiting.length) waiting.shift().reject(err);
  };
  call.on('error', fail);
  call.on('end', () => fail(new Error('the picker ended the stream')));
  return {
    call, status,
    send: (m) => call.write(m),
    next(ms = 5000) {
      if (inbox.length) return Promise.resolve(inbox.shift());
      if (ended) return Promise.reject(ended);
      return withTimeout(new Promise((resolve, reject) => waiting.push({ resolve, reject })), ms,
        'the next ext_proc message');
    },
    pending: () => inbox.length,
    end: () => call.end(),
  };
}

// The request phase: headers, then the body in pieces of `pieceBytes`. Returns the picker's
// answer: {immediate} or {dest, list, headerMutation, body, chunkSizes}.
async function requestPhase(s, { path: p = '/v1/chat/completions', headers = {}, body,
  pieceBytes = 16 * 1024, md } = {}) {
  const raw = Buffer.isBuffer(body) ? body : Buffer.from(typeof body === 'string' ? body : JSON.stringify(body));
  s.send({
    request_headers: {
      headers: headerMap({ ':method': 'POST', ':path': p, ':authority': 'gw', 'content-type': 'application/json',
        'content-length': raw.length, ...headers }),
      end_of_stream: false,
    },
    ...(md ? { metadata_context: md } : {}),
  });
  for (let at = 0; at < raw.length || at === 0; at += pieceBytes) {
    const piece = raw.subarray(at, at + pieceBytes);
    s.send({ request_body: { body: piece, end_of_stream: at + pieceBytes >= raw.length } });
    if (raw.length === 0) break;
  }
  const first = await s.next();
  if (first.response === 'immediate_response') return { immediate: first.immediate_response };
  assert.equal(first.response, 'request_headers', `the first answer: ${JSON.stringify(first)}`);
  const mutation = first.request_headers.response.header_mutation;
  const lb = first.dynamic_metadata?.fields?.['envoy.lb']?.structValue?.fields;
  const list = lb?.[DEST]?.stringValue;
  const chunks = [];
  for (;;) {
    const m = await s.next();
    assert.equal(m.response, 'request_body', `a request body piece: ${JSON.stringify(m).slice(0, 300)}`);
    const sr = m.request_body.response.body_mutation.streamed_response;
    chunks.push(Buffer.from(sr.body ?? []));
    if (sr.end_of_stream) break;
  }
  return {
    dest: headerOf(mutation, DEST), list, headerMutation: mutation,
    contentLength: headerOf(mutation, 'content-length'),
    body: Buffer.concat(chunks), chunkSizes: chunks.map((c) => c.length),
  };
}

// What Envoy does next: the request to the chosen endpoint, and its response through the stream
// (response headers with the served endpoint, then the body pieces as they arrive). Returns the
// upstream's status and body and what the picker streamed back.
async function forwardAndRespond(s, dest, p, body) {
  const [host, port] = dest.split(':');
  const upstream = await new Promise((resolve, reject) => {
    const req = http.request({ host, port: Number(port), path: p, method: 'POST', agent: false,
      headers: { 'content-type': 'application/json', 'content-length': body.length } }, resolve);
    req.setTimeout(10_000, () => req.destroy(new Error('upstream timed out')));
    req.on('error', reject);
    req.end(body);
  });
  s.send({
    response_headers: {
      headers: headerMap({ ':status': upstream.statusCode, 'content-type': upstream.headers['content-type'] ?? '',
        [SERVED]: dest }),
      end_of_stream: false,
    },
    metadata_context: metadata('envoy.lb', { [SERVED]: strValue(dest) }),
  });
  const h = await s.next();
  assert.equal(h.response, 'response_headers', JSON.stringify(h));
  const sent = [];
  for await (const chunk of upstream) {
    sent.push(chunk);
    s.send({ response_body: { body: chunk, end_of_stream: false } });
  }
  s.send({ response_body: { body: Buffer.alloc(0), end_of_stream: true } });
  const back = [];
  for (;;) {
    const m = await s.next();
    assert.equal(m.response, 'response_body', JSON.stringify(m).slice(0, 300));
    const sr = m.response_body.response.body_mutation.streamed_response;
    back.push(Buffer.from(sr.body ?? []));
    if (sr.end_of_stream) break;
  }
  return { status: upstream.statusCode, sent: Buffer.concat(sent).toString(), back: Buffer.concat(back).toString() };
}

// A whole request through the picker, as Envoy would carry it.
async function throughPicker(client, { body, headers, md, p = '/v1/chat/completions', pieceBytes } = {}) {
  const s = openProcess(client);
  try {
    const r = await requestPhase(s, { path: p, headers, body, md, pieceBytes });
    if (r.immediate) return r;
    const resp = await forwardAndRespond(s, r.dest, p, r.body);
    return { ...r, resp };
  } finally {
    s.end();
    await withTimeout(s.status, 5000, 'the stream to close');
  }
}

function immediateJson(im) {
  return JSON.parse(Buffer.from(im.body).toString());
}

const chat = (content, extra = {}) => ({
  model: SIM_MODEL, messages: [{ role: 'user', content }], max_tokens: 3, ...extra,
});

function uniqueText(chars) {
  let s = '';
  while (s.length < chars) s += `${randomUUID().replace(/-/g, ' ')} the quick brown fox. `;
  return s.slice(0, chars);
}

async function gatewayMetrics(gw) {
  const r = await request(gw.url, { path: '/metrics', timeoutMs: 3000 });
  assert.equal(r.status, 200);
  return parseMetrics(r.body);
}

async function poolState(gw) {
  const r = await request(gw.url, { path: '/v1/pool', timeoutMs: 3000 });
  assert.equal(r.status, 200, r.body);
  return r.json;
}

async function waitPoolFresh(gw, endpoints) {
  await waitFor(async () => {
    const st = await poolState(gw);
    return endpoints.every((ep) => {
      const e = st.endpoints.find((x) => x.address === ep);
      return e && e.stale === false && e.models?.includes(SIM_MODEL);
    });
  }, { timeoutMs: 5000, what: 'fresh metrics from every simulator' });
}

async function startPicker(simArgs, gwArgs = []) {
  const sims = await startSim(simArgs);
  const port = await closedPort();
  const gw = await startGateway(['--endpoints', sims.endpoints.join(','), '--ext-proc-port', String(port), ...gwArgs]);
  await waitFor(() => /ext_proc endpoint picker .* listening on 127\.0\.0\.1:\d+/.test(gw.output()),
    { timeoutMs: 5000, what: 'the ext_proc listener' });
  const client = new ExternalProcessor(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  const health = new Health(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  await waitPoolFresh(gw, sims.endpoints);
  return { sims, gw, port, client, health,
    stop: async () => { client.close(); health.close(); await gw.stop(); await sims.stop(); } };
}

describe('the ext_proc endpoint picker', () => {
  let P;
  before(async () => { P = await startPicker(['--port-count', '3']); });
  after(() => P?.stop());

  it('picks an endpoint: the header and the fallback list agree; the whole request is served', T, async () => {
    const m0 = await gatewayMetrics(P.gw);
    const body = chat('hello through Envoy', { stream: true, stream_options: { include_usage: true } });
    const r = await throughPicker(P.client, { body });
    assert.ok(!r.immediate, `routed, not refused: ${JSON.stringify(r.immediate)}`);
    assert.ok(P.sims.endpoints.includes(r.dest), `${r.dest} is one of ${P.sims.endpoints}`);
    const list = r.list.split(',');
    assert.equal(list[0], r.dest, `the metadata list ${r.list} starts with the header's ${r.dest}`);
    assert.equal(new Set(list).size, list.length, 'no endpoint twice in the fallback list');
    for (const e of list) assert.ok(P.sims.endpoints.includes(e), `${e} is a pool member`);
    assert.ok(list.length >= 2, `fallbacks are offered: ${r.list}`);
    assert.equal(r.body.toString(), JSON.stringify(body), 'the request body came back unchanged');
    assert.equal(Number(r.contentLength), r.body.length);
    // The response went through the stream unchanged, usage and all.
    assert.equal(r.resp.status, 200);
    assert.equal(r.resp.back, r.resp.sent);
    assert.match(r.resp.sent, /"usage":\{[^}]*"completion_tokens":3/);

    // The response phase reached the gateway's metrics, as a proxied request's does.
    const m1 = await waitFor(async () => {
      const m = await gatewayMetrics(P.gw);
      return m.get('tidegate_requests_total', { path: '/v1/chat/completions', code: '200', endpoint: r.dest }) >
        (m0.get('tidegate_requests_total', { path: '/v1/chat/completions', code: '200', endpoint: r.dest }) ?? 0) && m;
    }, { timeoutMs: 3000, what: 'tidegate_requests_total to count the request' });
    assert.equal(m1.sum('tidegate_time_to_first_token_seconds_count'),
      m0.sum('tidegate_time_to_first_token_seconds_count') + 1, 'one more TTFT observation');
    assert.equal(m1.get('tidegate_requests_by_class_total', { class: 'realtime' }) ?? m1.sum('tidegate_requests_by_class_total'),
      (m0.get('tidegate_requests_by_class_total', { class: 'realtime' }) ?? m0.sum('tidegate_requests_by_class_total')) + 1);
    assert.ok(m1.get('tidegate_ext_proc_decisions_total', { outcome: 'routed' }) >= 1);
    // Nothing is left in flight once the response ended (the reservation was released).
    const st = await poolState(P.gw);
    assert.equal(st.endpoints.reduce((a, e) => a + e.in_flight, 0), 0, JSON.stringify(st.endpoints));
  });

  it('streams a body over 62,000 bytes back in pieces of at most 62,000 bytes, intact', T, async () => {
    const body = chat(uniqueText(200_000));
    const r = await throughPicker(P.client, { body, pieceBytes: 50_001 });
    assert.ok(!r.immediate, JSON.stringify(r.immediate));
    assert.ok(r.chunkSizes.length >= 4, `several pieces: ${r.chunkSizes}`);
    for (const n of r.chunkSizes) assert.ok(n <= MAX_CHUNK, `piece of ${n} bytes ≤ ${MAX_CHUNK}`);
    assert.equal(r.body.toString(), JSON.stringify(body));
    assert.equal(r.resp.status, 200, r.resp.sent.slice(0, 300));
  });

  it('sends a repeated long prompt prefix back to the same endpoint (prefix affinity)', T, async () => {
    const prefix = uniqueText(4000);
    const dests = [];
    for (let i = 0; i < 5; i++) {
      const r = await throughPicker(P.client, { body: chat(`${prefix}\nQuestion ${i}: ${randomUUID()}?`) });
      assert.ok(!r.immediate, JSON.stringify(r.immediate));
      assert.equal(r.resp.status, 200);
      dests.push(r.dest);
    }
    assert.deepEqual(dests, Array(5).fill(dests[0]), `every request went to ${dests[0]}: ${dests}`);
  });

  it('honours the subset hint; a hint naming no pool member is a 503 no-endpoints', T, async () => {
    const only = P.sims.endpoints[2];
    const hint = (items) => metadata('envoy.lb.subset_hint', { 'x-gateway-destination-endpoint-subset': listValue(items) });
    for (let i = 0; i < 3; i++) {
      const r = await throughPicker(P.client, { body: chat(`subset ${i}`), md: hint([only]) });
      assert.equal(r.dest, only);
      assert.equal(r.list, only, 'the fallback list stays inside the subset');
    }
    const ipOnly = await throughPicker(P.client, { body: chat('ip only'), md: hint(['127.0.0.1']) });
    assert.ok(P.sims.endpoints.includes(ipOnly.dest), 'an "ip" entry admits every port of that ip');

    const none = await throughPicker(P.client, { body: chat('nowhere'), md: hint(['10.255.0.1:8000']) });
    assert.ok(none.immediate, 'refused at once');
    assert.equal(none.immediate.status.code, 'ServiceUnavailable');
    assert.equal(headerOf(none.immediate.headers, 'x-gateway-request-dropped-reason'), 'no-endpoints');
    const err = immediateJson(none.immediate);
    assert.equal(err.error.code, 'no_endpoints');
    assert.ok(err.error.message.length > 10, err.error.message);
  });

  it('answers a body that is not JSON with a 400 ImmediateResponse; the stream stays usable', T, async () => {
    const s = openProcess(P.client);
    const r = await requestPhase(s, { body: 'this is { not json' });
    assert.ok(r.immediate);
    assert.equal(r.immediate.status.code, 'BadRequest');
    assert.equal(headerOf(r.immediate.headers, 'content-type'), 'application/json');
    const err = immediateJson(r.immediate);
    assert.equal(err.error.code, 'invalid_json');
    assert.match(err.error.message, /not valid JSON/);
    s.end();
    const st = await withTimeout(s.status, 5000, 'the stream to close');
    assert.equal(st.code, grpc.status.OK, `the stream closed cleanly: ${st.details}`);
    // And the picker goes on: the next stream is routed.
    const ok = await throughPicker(P.client, { body: chat('after the bad one') });
    assert.ok(P.sims.endpoints.includes(ok.dest));
  });

  it('serves the gRPC health service: liveness, readiness and the ExternalProcessor', T, async () => {
    for (const service of ['liveness', 'readiness', 'envoy.service.ext_proc.v3.ExternalProcessor']) {
      const r = await withTimeout(new Promise((resolve, reject) =>
        P.health.Check({ service }, (e, res) => (e ? reject(e) : resolve(res)))), 3000, `health ${service}`);
      assert.equal(r.status, 'SERVING', service);
    }
    const unknown = await new Promise((resolve) => P.health.Check({ service: 'nope' }, (e) => resolve(e)));
    assert.equal(unknown?.code, grpc.status.NOT_FOUND);
  });
});

describe('the ext_proc endpoint picker on a saturated pool', () => {
  it('429 for sheddable work; a queued request waits (TTL 503, or leaves when its stream ends)', T, async (t) => {
    const P = await startPicker(['--max-num-seqs', '2'], ['--max-in-flight-per-endpoint', '2']);
    t.after(() => P.stop());
    // Saturated through the HTTP front door of the same process: one pool, one Director.
    const flood = openFlood(P.gw.url, '/v1/completions',
      { model: SIM_MODEL, prompt: 'keep going', max_tokens: 100000, stream: true }, 2);
    t.after(() => flood.destroy());
    await waitFor(async () => (await poolState(P.gw)).endpoints[0].in_flight === 2,
      { timeoutMs: 5000, what: 'the endpoint at its in-flight bound' });

    const shed = await throughPicker(P.client, { body: chat('batch work'),
      headers: { 'x-gateway-inference-objective': 'sheddable' } });
    assert.ok(shed.immediate, 'refused at once');
    assert.equal(shed.immediate.status.code, 'TooManyRequests');
    assert.equal(headerOf(shed.immediate.headers, 'x-gateway-request-dropped-reason'), 'saturated');
    assert.equal(headerOf(shed.immediate.headers, 'x-llm-d-request-dropped-reason'), 'saturated');
    assert.ok(Number(headerOf(shed.immediate.headers, 'retry-after')) >= 1);
    assert.equal(immediateJson(shed.immediate).error.code, 'saturated');

    // A request of priority 0 waits at the gateway until its TTL: then 503 ttl-expired.
    const t0 = performance.now();
    const ttl = await throughPicker(P.client, { body: chat('real-time'),
      headers: { 'x-llm-d-inference-ttl': '300' } });
    const waited = performance.now() - t0;
    assert.ok(ttl.immediate);
    assert.equal(ttl.immediate.status.code, 'ServiceUnavailable');
    assert.equal(headerOf(ttl.immediate.headers, 'x-gateway-request-dropped-reason'), 'ttl-expired');
    assert.ok(waited >= 290, `it waited for its TTL (${waited.toFixed(0)} ms)`);

    // A waiting request whose stream ends leaves the queue.
    const s = openProcess(P.client);
    s.send({ request_headers: { headers: headerMap({ ':method': 'POST', ':path': '/v1/chat/completions' }) } });
    s.send({ request_body: { body: Buffer.from(JSON.stringify(chat('will hang up'))), end_of_stream: true } });
    await waitFor(async () => (await poolState(P.gw)).flow_control.queued === 1,
      { timeoutMs: 3000, what: 'the request to wait in the queue' });
    assert.equal(s.pending(), 0, 'no answer while it waits');
    s.call.cancel();
    await waitFor(async () => (await poolState(P.gw)).flow_control.queued === 0,
      { timeoutMs: 3000, what: 'the cancelled request to leave the queue' });
    const m = await gatewayMetrics(P.gw);
    assert.ok(m.get('tidegate_ext_proc_decisions_total', { outcome: 'cancelled' }) >= 1);
  });

  it('503 no-endpoints when every endpoint of the pool is down', T, async (t) => {
    const dead = await closedPort();
    const port = await closedPort();
    const gw = await startGateway(['--endpoints', `127.0.0.1:${dead}`, '--ext-proc-port', String(port),
      '--health-interval', '100ms']);
    t.after(() => gw.stop());
    const client = new ExternalProcessor(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
    t.after(() => client.close());
    await waitFor(async () => (await poolState(gw)).endpoints.every((e) => !e.available),
      { timeoutMs: 5000, what: 'the endpoint to be down' });
    const r = await throughPicker(client, { body: chat('anyone?') });
    assert.ok(r.immediate);
    assert.equal(r.immediate.status.code, 'ServiceUnavailable');
    assert.equal(headerOf(r.immediate.headers, 'x-gateway-request-dropped-reason'), 'no-endpoints');
    assert.equal(immediateJson(r.immediate).error.code, 'no_endpoints');
  });
});
