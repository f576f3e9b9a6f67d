// chaos.test.mjs — the short chaos run (tests/chaos/chaos.mjs --short) as part of the suite:
// processor SIGKILLs, a simulator crashed mid-stream and one frozen, a gateway restart, with
// real-time and async traffic throughout. It must lose no async request, produce no
// conflicting duplicate, and end every failed real-time request with a clear error.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { REPO_ROOT } from './lib.mjs';

describe('chaos (short)', () => {
  it('survives the faults: 0 async lost, no conflicting duplicates, no hung real-time request', { timeout: 240_000 }, () => {
    const r = spawnSync(process.execPath, [path.join(REPO_ROOT, 'tests', 'chaos', 'chaos.mjs'), '--short'],
      { encoding: 'utf8', timeout: 230_000 });
    assert.equal(r.status, 0, `chaos run failed:\n${r.stdout}\n${r.stderr.slice(-3000)}`);
    const report = JSON.parse(r.stdout);
    assert.equal(report.async.lost, 0);
    assert.equal(report.async.conflicting_duplicates, 0);
    assert.equal(report.realtime.outcomes.hang ?? 0, 0);
    assert.ok(report.recoveries.length >= 6, JSON.stringify(report.recoveries));
  });
});
