// submit_results.test.mjs — `tidegate submit` through the real binary against an SQLite queue in
// a temp dir: the three JSONL line formats plus an invalid line (exit 1, the line named on
// stderr, the valid ones published), stdin input, and usage errors (exit 2). The published
// messages are read back from the SQLite file with the sqlite3 CLI (or python3's sqlite3) when
// one is installed. `tidegate results` is covered by tests/unit/submit_cmd_test.cc, which can
// publish result messages directly.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { GATEWAY_BIN } from './lib.mjs';

const T = { timeout: 15_000 };

// Runs the binary to completion (bounded); returns {code, stdout, stderr}.
function tidegate(args, { input } = {}) {
  const r = spawnSync(GATEWAY_BIN, args, { input, encoding: 'utf8', timeout: 10_000 });
  if (r.error) throw r.error;
  assert.equal(r.signal, null, `tidegate ${args.join(' ')} was killed by ${r.signal}`);
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

// The data of every message in `queue` of the SQLite file `db`, in publish order, or null when
// neither the sqlite3 CLI nor python3 (with sqlite3) is available.
function queueContents(db, queue) {
  const sql = `SELECT CAST(data AS TEXT) AS data FROM messages WHERE queue = '${queue}' ORDER BY seq`;
  const py = 'import sqlite3,sys,json; c=sqlite3.connect(sys.argv[1]); ' +
    'print(json.dumps([{"data": r[0]} for r in c.execute(sys.argv[2])]))';
  for (const [cmd, args] of [['sqlite3', ['-json', db, sql]], ['python3', ['-c', py, db, sql]]]) {
    const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: 10_000 });
    if (r.error || r.status !== 0) continue;
    const text = r.stdout.trim();
    return text === '' ? [] : JSON.parse(text).map((row) => JSON.parse(row.data));
  }
  return null;
}

describe('tidegate submit', () => {
  let dir, db;
  const uri = (queue) => `sqlite://${db}?queue=${queue}`;

  before(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tidegate-submit-'));
    db = path.join(dir, 'q.db');
  });
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('publishes the three line formats, reports the invalid line and exits 1', T, async (t) => {
    const file = path.join(dir, 'mixed.jsonl');
    const lines = [
      JSON.stringify({ id: 'llmd-1', deadline: 4102444800,
        payload: { model: 'm', messages: [{ role: 'user', content: 'hi' }] },
        metadata: { tenant: 'a' } }),
      JSON.stringify({ custom_id: 'batch-1', method: 'POST', url: '/v1/completions',
        body: { model: 'm', prompt: 'hello' } }),
      '',
      JSON.stringify({ model: 'm', messages: [{ role: 'user', content: 'bare' }] }),
      JSON.stringify({ id: 'bad-1', payload: { model: 'm', messages: [] }, method: 'GET' }),
      JSON.stringify({ model: 'm', input: 'embed me' }),
    ];
    fs.writeFileSync(file, lines.join('\n') + '\n');
    const t0 = Math.floor(Date.now() / 1000);
    const r = tidegate(['submit', '--queue', uri('requests'), '--id-prefix', 'mix',
      '--deadline', '30m', file]);
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, new RegExp(`mixed\\.jsonl:5: invalid line, not published: .*method`));
    assert.match(r.stderr, /1 invalid line was not published \(see above\); the 4 valid requests were published/);
    assert.equal(r.stdout, `submitted 4 requests to ${uri('requests')} (1 invalid line)\n`);

    const msgs = queueContents(db, 'requests');
    if (msgs === null) {
      t.diagnostic('neither sqlite3 nor python3 is installed: queue contents not checked');
      return;
    }
    assert.deepEqual(msgs.map((m) => m.id), ['llmd-1', 'batch-1', 'mix-4', 'mix-6']);
    assert.deepEqual(msgs.map((m) => m.path),
      ['/v1/chat/completions', '/v1/completions', '/v1/chat/completions', '/v1/embeddings']);
    // Every message is normalized to the llm-d-async shape.
    for (const m of msgs) {
      assert.equal(typeof m.payload, 'object', JSON.stringify(m));
      assert.equal(m.custom_id, undefined);
      assert.equal(m.body, undefined);
    }
    assert.equal(msgs[0].deadline, 4102444800);
    assert.deepEqual(msgs[0].metadata, { tenant: 'a' });
    assert.deepEqual(msgs[1].payload, { model: 'm', prompt: 'hello' });
    assert.ok(msgs[2].created >= t0 && msgs[2].created <= t0 + 5, JSON.stringify(msgs[2]));
    assert.equal(msgs[2].deadline - msgs[2].created, 1800);
  });

  it('reads stdin with "-" and names ids after the prefix and line number', T, async (t) => {
    const input = '{"model":"m","prompt":"a"}\n\n{"model":"m","prompt":"b"}\n';
    const r = tidegate(['submit', '--queue', uri('stdin'), '--id-prefix', 'in', '-'], { input });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, `submitted 2 requests to ${uri('stdin')} (0 invalid lines)\n`);
    const msgs = queueContents(db, 'stdin');
    if (msgs === null) return t.diagnostic('queue contents not checked (no sqlite3 / python3)');
    assert.deepEqual(msgs.map((m) => m.id), ['in-1', 'in-3']);
  });

  it('gives each run its own default id prefix, from the file name', T, async (t) => {
    const file = path.join(dir, 'evals.jsonl');
    fs.writeFileSync(file, '{"model":"m","prompt":"x"}\n');
    for (let i = 0; i < 2; i++) {
      const r = tidegate(['submit', '--queue', uri('defaults'), file]);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stderr, /1 line had no id; they got evals-\d{8}T\d{6}Z-[0-9a-f]{4}-<line number>/);
    }
    const msgs = queueContents(db, 'defaults');
    if (msgs === null) return t.diagnostic('queue contents not checked (no sqlite3 / python3)');
    assert.equal(msgs.length, 2);
    for (const m of msgs) assert.match(m.id, /^evals-\d{8}T\d{6}Z-[0-9a-f]{4}-1$/);
    assert.notEqual(msgs[0].id, msgs[1].id);
  });

  it('exits 2 on usage errors, naming the problem', T, () => {
    const file = path.join(dir, 'ok.jsonl');
    fs.writeFileSync(file, '{"model":"m","prompt":"x"}\n');
    let r = tidegate(['submit', file]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /--queue is required/);
    r = tidegate(['submit', '--queue', uri('usage'), path.join(dir, 'missing.jsonl')]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /cannot read .*missing\.jsonl: No such file or directory/);
    r = tidegate(['submit', '--queue', 'redis2://nowhere', file]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /cannot open queue redis2:\/\/nowhere: .*unknown scheme/);
    r = tidegate(['submit', '--queue', uri('usage'), '--deadline', 'tomorrow', file]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /--deadline/);
    r = tidegate(['submit', '--help']);
    assert.equal(r.code, 0);
    assert.match(r.stdout, /example: tidegate submit --queue/);
    const msgs = queueContents(db, 'usage');
    if (msgs !== null) assert.deepEqual(msgs, []);
  });

  it('is listed in `tidegate --help`, with results', T, () => {
    const r = tidegate(['--help']);
    assert.equal(r.code, 0);
    assert.match(r.stdout, /^ {2}submit {4}/m);
    assert.match(r.stdout, /^ {2}results {3}/m);
  });
});
