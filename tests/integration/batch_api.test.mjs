// batch_api.test.mjs — the OpenAI Batch API served by the gateway, driven by the official
// `openai` npm client, against real simulators and a real async processor on the embedded queue:
//   - files.create → batches.create → batches.retrieve until completed → files.content: every
//     custom_id is answered exactly once, with the simulator's completion;
//   - a malformed input file gives a failed batch whose errors name the lines;
//   - cancel mid-run ends cancelled, with the finished lines in the output file and the others
//     as batch_cancelled;
//   - a tiny completion window ends expired, with batch_expired lines;
//   - the gateway SIGKILLed mid-batch and restarted on the same --batch-dir still completes it;
//   - bad requests get OpenAI-style errors (404 for an unknown id, 400 for a bad window).
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import OpenAI, { toFile } from 'openai';
import {
  SIM_MODEL, startSim, startGateway, startAsync, stopAll, waitFor, closedPort, request,
  parseMetrics, promtoolCheckMetrics,
} from './lib.mjs';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'tidegate-batch-'));
after(async () => {
  await stopAll();
  fs.rmSync(tmp, { recursive: true, force: true });
});

const db = path.join(tmp, 'q.db');
const Q = {
  requests: `sqlite://${db}?queue=requests`,
  results: `sqlite://${db}?queue=results`,
  batch: `sqlite://${db}?queue=batch-results`,
};
const batchDir = path.join(tmp, 'batches');

function lines(n, { prefix = 'req', maxTokens = 8 } = {}) {
  const out = [];
  for (let i = 0; i < n; ++i) {
    out.push(JSON.stringify({
      custom_id: `${prefix}-${i}`, method: 'POST', url: '/v1/chat/completions',
      body: { model: SIM_MODEL, max_tokens: maxTokens, messages: [{ role: 'user', content: `question ${i}` }] },
    }));
  }
  return out.join('\n') + '\n';
}

function parseJsonl(text) {
  return text.split('\n').filter(Boolean).map((l) => JSON.parse(l));
}

describe('OpenAI Batch API', { timeout: 240_000 }, () => {
  let sim, gw, proc, client, port;
  const gatewayArgs = () => ['--port', String(port), '--endpoints', sim.endpoints.join(','),
    '--batch-dir', batchDir, '--batch-queue', Q.requests, '--batch-results', Q.batch,
    '--batch-cancel-grace', '3s'];

  before(async () => {
    sim = await startSim(['--port-count', '2', '--time-scale', '1', '--max-num-seqs', '4']);
    port = await closedPort();
    gw = await startGateway(gatewayArgs());
    proc = await startAsync(['--gateway', gw.url, '--requests', Q.requests, '--responses', Q.results,
      '--batch-responses', Q.batch, '--max-inflight', '8', '--backoff-base', '100ms',
      '--backoff-max', '500ms']);
    client = new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: 'test', maxRetries: 0, timeout: 20_000 });
  });

  async function submit(content, { window = '24h', name = 'in.jsonl' } = {}) {
    const file = await client.files.create({ file: await toFile(Buffer.from(content), name), purpose: 'batch' });
    assert.equal(file.object, 'file');
    assert.equal(file.purpose, 'batch');
    assert.equal(file.bytes, Buffer.byteLength(content));
    assert.equal(file.filename, name);
    const batch = await client.batches.create({
      input_file_id: file.id, endpoint: '/v1/chat/completions', completion_window: window,
      metadata: { suite: 'batch_api' },
    });
    assert.equal(batch.object, 'batch');
    assert.equal(batch.status, 'validating');
    assert.equal(batch.input_file_id, file.id);
    assert.deepEqual(batch.metadata, { suite: 'batch_api' });
    return batch;
  }

  async function until(id, pred, what, timeoutMs = 60_000) {
    let last;
    await waitFor(async () => {
      last = await client.batches.retrieve(id);
      return pred(last);
    }, { timeoutMs, intervalMs: 200, what: `${what} (last status ${last?.status})` });
    return last;
  }

  const ended = (b) => ['completed', 'failed', 'expired', 'cancelled'].includes(b.status);

  async function content(fileId) {
    if (!fileId) return [];
    const r = await client.files.content(fileId);
    return parseJsonl(await r.text());
  }

  it('runs a batch to completed and answers every custom_id once', async () => {
    const n = 40;
    const created = await submit(lines(n, { prefix: 'ok' }));
    const b = await until(created.id, ended, 'the batch ends');
    assert.equal(b.status, 'completed');
    assert.deepEqual(b.request_counts, { total: n, completed: n, failed: 0 });
    for (const t of ['created_at', 'in_progress_at', 'finalizing_at', 'completed_at', 'expires_at'])
      assert.ok(Number.isInteger(b[t]) && b[t] > 0, `${t} set`);
    assert.equal(b.expires_at, b.created_at + 86400);
    assert.equal(b.error_file_id, null);
    const out = await content(b.output_file_id);
    assert.equal(out.length, n);
    const ids = out.map((l) => l.custom_id).sort();
    assert.deepEqual(ids, Array.from({ length: n }, (_, i) => `ok-${i}`).sort());
    for (const l of out) {
      assert.equal(l.error, null);
      assert.equal(l.response.status_code, 200);
      assert.equal(l.response.body.object, 'chat.completion');
      assert.equal(l.response.body.model, SIM_MODEL);
      assert.ok(l.response.body.usage.completion_tokens > 0);
      assert.match(l.id, /^batch_req_/);
    }
    const outFile = await client.files.retrieve(b.output_file_id);
    assert.equal(outFile.purpose, 'batch_output');
    // The batch is listed, newest first.
    const page = await client.batches.list({ limit: 1 });
    assert.equal(page.data[0].id, b.id);
    // The gateway's /metrics counts batches and lines (and stays valid Prometheus text).
    const mr = await request(gw.url, { path: '/metrics' });
    const metrics = parseMetrics(mr.body);
    assert.ok(metrics.get('tidegate_batches', { status: 'completed' }) >= 1);
    assert.ok(metrics.get('tidegate_batch_lines_answered_total', { outcome: 'completed' }) >= n);
    assert.ok(metrics.sum('tidegate_batch_lines_published_total') >= n);
    const check = await promtoolCheckMetrics(mr.body);
    assert.equal(check.status, 0, check.output);
    // The lines went through the processor as sheddable filler.
    assert.ok(await proc.metric('tidegate_async_requests_succeeded_total') >= n);
  });

  it('fails a malformed input file, naming its lines', async () => {
    const good = lines(2, { prefix: 'bad' }).split('\n');
    const text = [good[0], '{"custom_id": "x", "method": "POST"', good[0],
      JSON.stringify({ custom_id: 'e', method: 'POST', url: '/v1/embeddings', body: { input: 'x' } })].join('\n');
    const created = await submit(text);
    const b = await until(created.id, ended, 'the batch ends');
    assert.equal(b.status, 'failed');
    assert.ok(b.failed_at > 0);
    const errs = b.errors.data;
    assert.deepEqual(errs.map((e) => e.line), [2, 3, 4]);
    assert.deepEqual(errs.map((e) => e.code), ['invalid_json', 'duplicate_custom_id', 'mismatched_url']);
    assert.equal(b.output_file_id, null);
  });

  it('cancels mid-run: the finished lines are kept, the rest are batch_cancelled', async () => {
    const n = 60;
    const created = await submit(lines(n, { prefix: 'cx', maxTokens: 120 }));
    await until(created.id, (b) => b.request_counts.completed >= 4, 'some lines finish');
    const c = await client.batches.cancel(created.id);
    assert.equal(c.status, 'cancelling');
    assert.ok(c.cancelling_at > 0);
    const b = await until(created.id, ended, 'the batch ends');
    assert.equal(b.status, 'cancelled');
    assert.ok(b.cancelled_at >= b.cancelling_at);
    assert.ok(b.request_counts.completed >= 4 && b.request_counts.completed < n,
      `partial: ${JSON.stringify(b.request_counts)}`);
    assert.equal(b.request_counts.completed + b.request_counts.failed, n);
    const out = await content(b.output_file_id);
    const errs = await content(b.error_file_id);
    assert.equal(out.length, b.request_counts.completed);
    assert.equal(out.length + errs.length, n);
    assert.ok(errs.length > 0 && errs.every((l) => l.error.code === 'batch_cancelled'),
      JSON.stringify(errs.find((l) => l.error.code !== 'batch_cancelled')));
    const all = [...out, ...errs].map((l) => l.custom_id);
    assert.equal(new Set(all).size, n, 'each custom_id once');
  });

  it('expires a batch whose window passes, with batch_expired lines', async () => {
    const n = 60;
    const created = await submit(lines(n, { prefix: 'ex', maxTokens: 1500 }), { window: '4s' });
    assert.equal(created.expires_at, created.created_at + 4);
    const b = await until(created.id, ended, 'the batch ends', 30_000);
    assert.equal(b.status, 'expired', JSON.stringify(b.request_counts));
    assert.ok(b.expired_at >= b.expires_at);
    assert.equal(b.request_counts.completed + b.request_counts.failed, n);
    assert.ok(b.request_counts.completed < n, JSON.stringify(b.request_counts));
    const out = await content(b.output_file_id);
    const errs = await content(b.error_file_id);
    assert.equal(out.length, b.request_counts.completed);
    assert.ok(errs.length > 0);
    assert.ok(errs.every((l) => l.error.code === 'batch_expired'), JSON.stringify(errs[0]));
    assert.equal(new Set([...out, ...errs].map((l) => l.custom_id)).size, n);
  });

  it('completes a batch across a gateway restart (SIGKILL mid-batch)', async () => {
    const n = 40;
    const created = await submit(lines(n, { prefix: 'rs', maxTokens: 60 }));
    await until(created.id, (b) => b.request_counts.completed >= 2, 'some lines finish');
    gw.signal('SIGKILL');
    await new Promise((r) => gw.proc.once('exit', r));
    gw = await startGateway(gatewayArgs());
    client = new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: 'test', maxRetries: 0, timeout: 20_000 });
    const b = await until(created.id, ended, 'the batch ends after the restart', 90_000);
    assert.equal(b.status, 'completed');
    assert.equal(b.request_counts.total, n);
    const out = await content(b.output_file_id);
    const errs = await content(b.error_file_id);
    assert.equal(out.length + errs.length, n);
    assert.equal(new Set([...out, ...errs].map((l) => l.custom_id)).size, n, 'each custom_id once');
    // Requests cut off by the kill were retried by the processor: all succeeded.
    assert.equal(out.length, n, `errors: ${JSON.stringify(errs.slice(0, 2))}`);
  });

  it('answers bad requests with OpenAI errors', async () => {
    await assert.rejects(client.batches.retrieve('batch_doesnotexist'), (e) => e.status === 404);
    await assert.rejects(client.files.retrieve('file-doesnotexist'), (e) => e.status === 404);
    const file = await client.files.create({ file: await toFile(Buffer.from(lines(1)), 'x.jsonl'), purpose: 'batch' });
    await assert.rejects(
      client.batches.create({ input_file_id: file.id, endpoint: '/v1/chat/completions', completion_window: 'soon' }),
      (e) => e.status === 400 && /completion_window/.test(e.message));
    await assert.rejects(
      client.files.create({ file: await toFile(Buffer.from('x'), 'x.jsonl'), purpose: 'fine-tune' }),
      (e) => e.status === 400 && /purpose/.test(e.message));
    const del = await client.files.del(file.id);
    assert.deepEqual({ id: del.id, deleted: del.deleted }, { id: file.id, deleted: true });
    await assert.rejects(client.files.retrieve(file.id), (e) => e.status === 404);
  });
});
