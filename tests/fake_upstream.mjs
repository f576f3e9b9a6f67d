#!/usr/bin/env node
// fake_upstream.mjs — a tiny fake OpenAI-compatible model server for tidegate's integration tests.
//
// It stands in for a real model server (vLLM, llama.cpp, ...) behind the gateway, so the tests
// can check what the gateway forwards and how it relays answers, errors and streams.
//
//   node tests/fake_upstream.mjs --port 0 --name up1 [--models m1,m2] [--metrics-status N]
//                                [--hang-posts] [--tls-cert PEM --tls-key PEM] [--exit-on-stdin-close]
//
// Binds 127.0.0.1 only and prints exactly one line on stdout once listening: `LISTENING <port>`.
// With --exit-on-stdin-close it exits when its stdin reaches EOF, so a test runner that dies
// without cleaning up does not leave it behind (the test helpers spawn it with a stdin pipe).
//
// Endpoints:
//   GET  /health                 200 {}
//   GET  /v1/models              the --models list (default: fake-model), then the behaviour
//                                models below (it serves them, like any listed model)
//   GET  /metrics                404 (no metrics), or --metrics-status N with an error body
// With --hang-posts every POST is read and never answered (a stuck server whose /health and
// /v1/models still answer).
//   POST /v1/chat/completions    non-streaming or SSE ("stream": true); content "hello from <name>"
//   POST /v1/completions         same, as text_completion objects
//   POST /v1/embeddings          a small embedding per input
//   GET  /_control/stats         {requests, aborted, last_headers, last_body}
//   POST /_control/reset         zeroes the counters
//
// The request's "model" field selects a behaviour:
//   slow-stream     one chunk every 100 ms, up to 200 chunks (counts downstream closes as aborted)
//   die-mid-stream  headers and 2 chunks, then the socket is destroyed abruptly
//   die-mid-event   headers, 1 chunk, then half an event (`data: {"partial`), then destroyed
//   slow-headers    nothing at all is sent for 3000 ms, then a normal answer
//   error-500       500 with an OpenAI-style error body
import http from 'node:http';
import https from 'node:https';
import fs from 'node:fs';

function parseArgs(argv) {
  const opts = { port: 0, name: 'upstream', models: ['fake-model'], metricsStatus: 0, hangPosts: false, exitOnStdinClose: false };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const next = () => {
      if (i + 1 >= argv.length) throw new Error(`missing value for ${a}`);
      return argv[++i];
    };
    if (a === '--port') opts.port = Number(next());
    else if (a === '--name') opts.name = next();
    else if (a === '--models') opts.models = next().split(',').map((s) => s.trim()).filter(Boolean);
    else if (a === '--metrics-status') opts.metricsStatus = Number(next());
    else if (a === '--hang-posts') opts.hangPosts = true;
    else if (a === '--tls-cert') opts.tlsCert = next();
    else if (a === '--tls-key') opts.tlsKey = next();
    else if (a === '--exit-on-stdin-close') opts.exitOnStdinClose = true;
    else throw new Error(`unknown argument ${a}`);
  }
  return opts;
}

const opts = parseArgs(process.argv.slice(2));
const NAME = opts.name;
const BEHAVIOUR_MODELS = ['slow-stream', 'die-mid-stream', 'die-mid-event', 'slow-headers', 'error-500'];
const CHUNK_DELAY_MS = 5;
const SLOW_CHUNK_MS = 100;
const SLOW_CHUNKS = 200;
const SLOW_HEADERS_MS = 3000;

const stats = { requests: 0, aborted: 0, last_headers: {}, last_body: null };

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const nowSec = () => Math.floor(Date.now() / 1000);
let idCounter = 0;
const newId = (prefix) => `${prefix}-${NAME}-${++idCounter}`;

function sendJson(res, status, obj, extraHeaders = {}) {
  const body = JSON.stringify(obj);
  res.writeHead(status, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(body),
    ...extraHeaders,
  });
  res.end(body);
}

function errorBody(message, type, code) {
  return { error: { message, type, param: null, code } };
}

function readBody(req) {
  return new Promise((resolve, reject) => {
    const parts = [];
    req.on('data', (c) => parts.push(c));
    req.on('end', () => resolve(Buffer.concat(parts)));
    req.on('error', reject);
  });
}

function countTokens(value) {
  if (typeof value === 'string') return Math.max(1, value.split(/\s+/).filter(Boolean).length);
  if (Array.isArray(value)) return value.reduce((n, v) => n + countTokens(v), 0);
  if (value && typeof value === 'object') return countTokens(value.content ?? '');
  return 0;
}

// Upstream headers that every inference answer carries.
function upstreamHeaders(req) {
  const h = { 'x-upstream-name': NAME };
  const rid = req.headers['x-request-id'];
  if (rid !== undefined) h['x-upstream-saw-request-id'] = rid;
  return h;
}

function chatCompletion(model, promptTokens) {
  const content = `hello from ${NAME}`;
  return {
    id: newId('chatcmpl'),
    object: 'chat.completion',
    created: nowSec(),
    model,
    choices: [{ index: 0, message: { role: 'assistant', content }, logprobs: null, finish_reason: 'stop' }],
    usage: { prompt_tokens: promptTokens, completion_tokens: 3, total_tokens: promptTokens + 3 },
  };
}

function textCompletion(model, promptTokens) {
  return {
    id: newId('cmpl'),
    object: 'text_completion',
    created: nowSec(),
    model,
    choices: [{ index: 0, text: `hello from ${NAME}`, logprobs: null, finish_reason: 'stop' }],
    usage: { prompt_tokens: promptTokens, completion_tokens: 3, total_tokens: promptTokens + 3 },
  };
}

function embeddings(model, input) {
  const inputs = Array.isArray(input) ? input : [input];
  const tokens = countTokens(inputs);
  return {
    object: 'list',
    model,
    data: inputs.map((_, index) => ({ object: 'embedding', index, embedding: [0.1, 0.2, 0.3, index] })),
    usage: { prompt_tokens: tokens, total_tokens: tokens },
  };
}

// One SSE chunk object for a streamed chat or text completion.
function streamChunk(kind, id, model, text, finishReason) {
  if (kind === 'chat') {
    const delta = text === null ? {} : { content: text };
    return { id, object: 'chat.completion.chunk', created: nowSec(), model,
      choices: [{ index: 0, delta, logprobs: null, finish_reason: finishReason }] };
  }
  return { id, object: 'text_completion', created: nowSec(), model,
    choices: [{ index: 0, text: text ?? '', logprobs: null, finish_reason: finishReason }] };
}

async function stream(req, res, kind, model) {
  res.writeHead(200, {
    'content-type': 'text/event-stream',
    'cache-control': 'no-cache',
    ...upstreamHeaders(req),
  });
  res.flushHeaders();

  let closedEarly = false;
  let selfDestroyed = false;
  res.on('close', () => {
    if (!res.writableFinished && !selfDestroyed) {
      closedEarly = true;
      stats.aborted++;
    }
  });
  const id = newId(kind === 'chat' ? 'chatcmpl' : 'cmpl');
  const send = (obj) => res.write(`data: ${JSON.stringify(obj)}\n\n`);

  let tokens;
  let delay = CHUNK_DELAY_MS;
  if (model === 'slow-stream') {
    tokens = Array.from({ length: SLOW_CHUNKS }, (_, i) => (i === 0 ? 'tok0' : ` tok${i}`));
    delay = SLOW_CHUNK_MS;
  } else {
    tokens = ['hello', ' from', ` ${NAME}`];
  }

  if (model === 'die-mid-event') {
    send(streamChunk(kind, id, model, tokens[0], null));
    await sleep(delay);
    res.write('data: {"partial');
    await sleep(50);
    selfDestroyed = true;
    res.socket?.destroy();
    return;
  }
  if (model === 'die-mid-stream') {
    send(streamChunk(kind, id, model, tokens[0], null));
    await sleep(delay);
    send(streamChunk(kind, id, model, tokens[1], null));
    await sleep(50); // let both chunks reach the gateway before the connection vanishes
    selfDestroyed = true;
    res.socket?.destroy();
    return;
  }

  for (let i = 0; i < tokens.length; i++) {
    if (closedEarly) return;
    send(streamChunk(kind, id, model, tokens[i], null));
    await sleep(delay);
  }
  if (closedEarly) return;
  send(streamChunk(kind, id, model, null, 'stop'));
  res.end('data: [DONE]\n\n');
}

async function handleInference(req, res, kind) {
  const raw = await readBody(req);
  stats.requests++;
  stats.last_headers = { ...req.headers };
  if (opts.hangPosts) return;  // read, never answered
  let body;
  try {
    body = JSON.parse(raw.toString('utf8'));
  } catch {
    stats.last_body = null;
    sendJson(res, 400, errorBody('fake upstream: body is not JSON', 'invalid_request_error', 'invalid_json'),
      upstreamHeaders(req));
    return;
  }
  stats.last_body = body;
  const model = typeof body?.model === 'string' ? body.model : 'fake-model';

  if (model === 'error-500') {
    sendJson(res, 500, errorBody(`fake upstream ${NAME} failed on purpose`, 'server_error', 'internal_error'),
      upstreamHeaders(req));
    return;
  }
  if (model === 'slow-headers') {
    let gone = false;
    res.on('close', () => { gone = true; });
    await sleep(SLOW_HEADERS_MS);
    if (gone) return;
  }

  const promptTokens = countTokens(kind === 'chat' ? body.messages : body.prompt ?? body.input);
  if (body.stream === true && kind !== 'embeddings') {
    await stream(req, res, kind, model);
    return;
  }
  if (model === 'die-mid-event') {
    send(streamChunk(kind, id, model, tokens[0], null));
    await sleep(delay);
    res.write('data: {"partial');
    await sleep(50);
    selfDestroyed = true;
    res.socket?.destroy();
    return;
  }
  if (model === 'die-mid-stream') {
    // Non-streaming variant: promise a body, then vanish without sending it.
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': 1000, ...upstreamHeaders(req) });
    res.write('{"id":');
    await sleep(50);
    res.socket?.destroy();
    return;
  }
  if (kind === 'chat') sendJson(res, 200, chatCompletion(model, promptTokens), upstreamHeaders(req));
  else if (kind === 'completions') sendJson(res, 200, textCompletion(model, promptTokens), upstreamHeaders(req));
  else sendJson(res, 200, embeddings(model, body.input ?? ''), upstreamHeaders(req));
}

const INFERENCE_PATHS = {
  '/v1/chat/completions': 'chat',
  '/v1/completions': 'completions',
  '/v1/embeddings': 'embeddings',
};

const handler = (req, res) => {
  const path = (req.url || '/').split('?')[0];
  const kind = INFERENCE_PATHS[path];
  if (kind && req.method === 'POST') {
    handleInference(req, res, kind).catch((err) => {
      process.stderr.write(`fake_upstream ${NAME}: ${err?.stack || err}\n`);
      if (!res.headersSent) sendJson(res, 500, errorBody(String(err), 'server_error', 'fake_upstream_bug'));
      else res.destroy();
    });
    return;
  }
  if (req.method === 'GET' && path === '/health') return sendJson(res, 200, {});
  if (req.method === 'GET' && path === '/v1/models') {
    return sendJson(res, 200, {
      object: 'list',
      data: [...opts.models, ...BEHAVIOUR_MODELS.filter((b) => !opts.models.includes(b))]
        .map((id) => ({ id, object: 'model', created: 0, owned_by: 'fake' })),
    });
  }
  if (req.method === 'GET' && path === '/metrics' && opts.metricsStatus) {
    return sendJson(res, opts.metricsStatus, { error: { message: `fake upstream: /metrics answers ${opts.metricsStatus}` } });
  }
  if (req.method === 'GET' && path === '/_control/stats') return sendJson(res, 200, stats);
  if (req.method === 'POST' && path === '/_control/reset') {
    Object.assign(stats, { requests: 0, aborted: 0, last_headers: {}, last_body: null });
    return sendJson(res, 200, {});
  }
  req.resume();
  sendJson(res, 404, errorBody(`fake upstream: no route for ${req.method} ${path}`, 'invalid_request_error', 'not_found'));
};
const server = opts.tlsCert
  ? https.createServer({ cert: fs.readFileSync(opts.tlsCert), key: fs.readFileSync(opts.tlsKey) }, handler)
  : http.createServer(handler);

// Keep idle keep-alive connections around longer than Node's 5 s default so that the gateway's
// pooled connections are not closed under it in the middle of a test run.
server.keepAliveTimeout = 60_000;
server.headersTimeout = 65_000;
server.requestTimeout = 0;
server.on(opts.tlsCert ? 'secureConnection' : 'connection', (socket) => socket.setNoDelay(true));

server.listen(opts.port, '127.0.0.1', () => {
  process.stdout.write(`LISTENING ${server.address().port}\n`);
});

const shutdown = () => {
  server.closeAllConnections?.();
  server.close(() => process.exit(0));
  setTimeout(() => process.exit(0), 500).unref();
};
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);
if (opts.exitOnStdinClose) {
  process.stdin.on('end', shutdown);
  process.stdin.on('error', shutdown);
  process.stdin.resume();
}
