// async_pubsub.test.mjs — issue 5 against the real Google Cloud Pub/Sub emulator, with the
// official @google-cloud/pubsub client on the user's side: it creates the topics and
// subscriptions (the request subscription with a dead-letter policy), publishes the requests and
// reads the results, while `tidegate async` sits between the topics and a real gateway in front
// of real simulators. What it proves:
//   - 500 requests (plus malformed and expired ones) published → every id gets a result; the
//     processor is SIGKILLed mid-run and restarted, and still no id is missing, and any
//     duplicate result is byte-identical (the result journal republishes what was published
//     before the crash instead of running the request again);
//   - malformed messages → INVALID_REQUEST, passed deadlines → DEADLINE_EXCEEDED;
//   - the processor acknowledged everything: nothing reached the dead-letter topic.
// The emulator is `gcloud beta emulators pubsub start` (Debian google-cloud-cli-pubsub-emulator),
// started on a free loopback port in its own process group and killed with it. A missing gcloud
// fails the test with the reason; it is never skipped.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { PubSub } from '@google-cloud/pubsub';
import {
  SIM_MODEL, startSim, startGateway, startAsync, stopAll, waitFor, sleep, closedPort,
} from './lib.mjs';

const PROJECT = 'tidegate-test';
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'tidegate-async-pubsub-'));
let emulator; // child process (group leader)
let emulatorHost;

async function startEmulator() {
  const port = await closedPort(); // a free loopback port
  emulatorHost = `127.0.0.1:${port}`;
  let out = '';
  emulator = spawn('gcloud', ['beta', 'emulators', 'pubsub', 'start', `--host-port=${emulatorHost}`,
    `--project=${PROJECT}`], { detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
  emulator.stdout.on('data', (c) => { out += c; });
  emulator.stderr.on('data', (c) => { out += c; });
  const failed = new Promise((_, reject) => {
    emulator.once('error', (err) => reject(new Error(
      `cannot start the Pub/Sub emulator (gcloud beta emulators pubsub start; Debian package ` +
      `google-cloud-cli-pubsub-emulator): ${err.message}`)));
    emulator.once('exit', (code) => reject(new Error(`the Pub/Sub emulator exited (${code}):\n${out}`)));
  });
  const ready = waitFor(async () => {
    const r = await fetch(`http://${emulatorHost}/`).catch(() => null);
    return r && r.ok;
  }, { timeoutMs: 90000, intervalMs: 250, what: `the Pub/Sub emulator on ${emulatorHost}` });
  await Promise.race([ready, failed]);
}

function stopEmulator() {
  if (!emulator || emulator.exitCode !== null) return;
  try { process.kill(-emulator.pid, 'SIGKILL'); } catch { /* gone */ }
}
process.on('exit', stopEmulator);

after(async () => {
  await stopAll();
  stopEmulator();
  fs.rmSync(tmp, { recursive: true, force: true });
});

function requestMessage(id, extra = {}) {
  return JSON.stringify({
    id,
    payload: { model: SIM_MODEL, max_tokens: 24, messages: [{ role: 'user', content: `pubsub ${id}` }] },
    ...extra,
  });
}

describe('async processor on the Pub/Sub emulator', () => {
  let pubsub, sim, gw;
  before(async () => {
    await startEmulator();
    process.env.PUBSUB_EMULATOR_HOST = emulatorHost;
    pubsub = new PubSub({ projectId: PROJECT });
    const [requests] = await pubsub.createTopic('requests');
    const [results] = await pubsub.createTopic('results');
    const [dead] = await pubsub.createTopic('dead-letters');
    await requests.createSubscription('requests-sub', {
      ackDeadlineSeconds: 10,
      deadLetterPolicy: { deadLetterTopic: dead.name, maxDeliveryAttempts: 5 },
    });
    await results.createSubscription('results-sub', { ackDeadlineSeconds: 60 });
    await dead.createSubscription('dead-sub', { ackDeadlineSeconds: 60 });
    sim = await startSim(['--port-count', '2', '--time-scale', '20']);
    gw = await startGateway(['--endpoints', sim.endpoints.join(',')]);
  });

  it('500 requests, SIGKILL mid-run and restart: every id answered, duplicates identical', async () => {
    const n = 500;
    const ids = Array.from({ length: n }, (_, i) => `ps-${i}`);
    const now = Math.floor(Date.now() / 1000);
    const topic = pubsub.topic('requests');
    const expected = new Map(); // id → expected error code ('' = success)
    await Promise.all(ids.map((id) => topic.publishMessage({ data: Buffer.from(requestMessage(id)) })));
    for (const id of ids) expected.set(id, '');
    await topic.publishMessage({ data: Buffer.from(requestMessage('ps-expired', { deadline: now - 5 })) });
    expected.set('ps-expired', 'DEADLINE_EXCEEDED');
    await topic.publishMessage({ data: Buffer.from(JSON.stringify({ id: 'ps-malformed', payload: [1, 2] })) });
    expected.set('ps-malformed', 'INVALID_REQUEST');

    // The user's side: read results as they arrive, with the official client.
    const seen = new Map(); // id → [data strings]
    const resultsSub = pubsub.subscription('results-sub');
    resultsSub.on('message', (m) => {
      const data = m.data.toString('utf8');
      const id = JSON.parse(data).id;
      if (!seen.has(id)) seen.set(id, []);
      seen.get(id).push(data);
      m.ack();
    });
    resultsSub.on('error', (err) => { process.stderr.write(`results subscriber: ${err.message}\n`); });
    const deadSeen = [];
    const deadSub = pubsub.subscription('dead-sub');
    deadSub.on('message', (m) => { deadSeen.push(m.data.toString('utf8')); m.ack(); });

    const env = { ...process.env, PUBSUB_EMULATOR_HOST: emulatorHost };
    const args = ['--gateway', gw.url,
      '--requests', `pubsub://projects/${PROJECT}/subscriptions/requests-sub`,
      '--responses', `pubsub://projects/${PROJECT}/topics/results`,
      '--journal', path.join(tmp, 'journal.db'), '--lease', '10s', '--max-inflight', '32'];
    const first = await startAsync(args, { env });
    await waitFor(() => seen.size >= 100, { timeoutMs: 60000, what: '100 results before the kill' });
    assert.ok(seen.size < expected.size, `finished before the kill (${seen.size}); make the run longer`);
    first.signal('SIGKILL');
    await new Promise((r) => first.proc.once('exit', r));
    const second = await startAsync(args, { env });
    // Messages the killed processor held come back once their 10 s ack deadline passes.
    await waitFor(() => [...expected.keys()].every((id) => seen.has(id)),
      { timeoutMs: 120000, intervalMs: 250,
        what: `all ${expected.size} results (have ${seen.size})` });
    await sleep(500); // let any late duplicate arrive
    for (const [id, code] of expected) {
      const copies = seen.get(id);
      const first = JSON.parse(copies[0]);
      assert.equal(first.error_code ?? '', code, `${id}: ${copies[0]}`);
      if (code === '') assert.equal(first.status_code, 200);
      for (const c of copies) assert.equal(c, copies[0], `${id}: duplicate results differ`);
    }
    assert.deepEqual([...seen.keys()].filter((id) => !expected.has(id)), []);
    assert.deepEqual(deadSeen, [], 'nothing should have been dead-lettered');
    await resultsSub.close();
    await deadSub.close();
    await second.stop();
  });
});
