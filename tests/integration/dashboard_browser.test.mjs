// dashboard_browser.test.mjs — the built-in live dashboard (GET /dashboard) in headless Chromium,
// driven through playwright-core, against a real `tidegate demo` (simulated fleet, gateway, async
// processor). The page must load without console errors or warnings, its charts must gain a point
// a second, its endpoint table must list the demo's four servers, and killing one simulated
// server must turn that server's row "down" within 10 s while the page keeps going. A screenshot
// goes to build/test-artifacts/dashboard.png. Then SIGINT stops the demo: exit 0, no child left.
//
// What it reads from the demo's stdout:
//   `dashboard:  http://127.0.0.1:PORT/dashboard`     the page
//   `OpenAI base URL:  http://127.0.0.1:PORT/v1`      a little streamed traffic goes there
//   `pids: sim …, gateway N, async N`                 every child, to check none is left
//   `sim pids: P1,P2,P3,P4`                           one process per simulated server
// The killed server's address is found from its pid by the port it listens on (/proc), so the
// test does not depend on the order in which the demo prints pids and ports.
// Chromium is required at /usr/bin/chromium or $CHROMIUM_BIN (scripts/install-deps.sh installs
// it); playwright-core drives it and downloads no browser.
import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';
import {
  REPO_ROOT, SIM_MODEL, processAlive, request, sleep, startDemo, stopProcess, waitExit,
  waitFor,
} from './lib.mjs';

const CHROMIUM = process.env.CHROMIUM_BIN || '/usr/bin/chromium';
const ARTIFACT = path.join(REPO_ROOT, 'build', 'test-artifacts', 'dashboard.png');

let demo = null;
let browser = null;
let dir = null;
let knownPids = [];
after(async () => {
  if (browser) await browser.close().catch(() => {});
  if (demo) await stopProcess(demo.proc, { signal: 'SIGTERM', graceMs: 10_000 });
  for (const pid of knownPids) if (processAlive(pid)) { try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ } }
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});



// The TCP ports `pid` listens on: its socket inodes matched against /proc/net/tcp{,6}.
function listeningPorts(pid) {
  const inodes = new Set();
  for (const fd of fs.readdirSync(`/proc/${pid}/fd`)) {
    try {
      const m = fs.readlinkSync(`/proc/${pid}/fd/${fd}`).match(/^socket:\[(\d+)\]$/);
      if (m) inodes.add(m[1]);
    } catch { /* closed meanwhile */ }
  }
  const ports = new Set();
  for (const file of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let text;
    try { text = fs.readFileSync(file, 'utf8'); } catch { continue; }
    for (const line of text.split('\n').slice(1)) {
      const c = line.trim().split(/\s+/);
      // sl local_address rem_address st ... inode (column 9); st 0A = LISTEN
      if (c.length > 9 && c[3] === '0A' && inodes.has(c[9])) ports.add(parseInt(c[1].split(':')[1], 16));
    }
  }
  return [...ports];
}

// A bounded trickle of streamed chat requests (so the rps and TTFT charts have something to
// show); stop() ends it and waits for the requests in flight.
function trickle(baseUrl, { workers = 2, max = 400 } = {}) {
  let stopped = false;
  let sent = 0;
  let ok = 0;
  const loop = async () => {
    while (!stopped && sent < max) {
      sent++;
      try {
        const r = await request(baseUrl, {
          method: 'POST', path: '/v1/chat/completions', timeoutMs: 10_000,
          body: { model: SIM_MODEL, max_tokens: 16, stream: true,
            messages: [{ role: 'user', content: `dashboard ${sent}` }] },
        });
        if (r.status === 200) ok++;
      } catch { /* a request to the killed server may fail; the page is under test, not this */ }
      await sleep(150);
    }
  };
  const running = Promise.all(Array.from({ length: workers }, loop));
  return { stop: async () => { stopped = true; await running; return { sent, ok }; } };
}

describe('tidegate dashboard in a browser', () => {
  it('shows the demo live, marks a killed server down, and keeps going', { timeout: 90_000 },
    async () => {
      assert.ok(fs.existsSync(CHROMIUM),
        `headless Chromium is required at ${CHROMIUM} (or set CHROMIUM_BIN): install it with ` +
        '`apt-get install -y --no-install-recommends chromium` or run scripts/install-deps.sh');
      dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tidegate-dashboard-'));
      demo = startDemo(['--port', '0', '--sim-port', '0', '--metrics-port', '0', '--admin-port', '0',
        '--data-dir', dir, '--time-scale', '10', '--duration', '90s']);
      const ctx = () => `demo output:\n${demo.output()}`;
      const banner = await waitFor(() => {
        if (demo.proc.exitCode !== null) return { exited: demo.proc.exitCode };
        const o = demo.output();
        return /Ctrl-C stops everything/.test(o) ? o : null;
      }, { timeoutMs: 20_000, intervalMs: 50, what: 'the demo banner' });
      assert.equal(typeof banner, 'string', `demo exited early (status ${banner.exited}); ${ctx()}`);

      const url = banner.match(/dashboard:\s+(http:\/\/\S+\/dashboard)/)?.[1];
      assert.ok(url, `dashboard URL printed; ${ctx()}`);
      const baseUrl = banner.match(/OpenAI base URL:\s+(http:\/\/127\.0\.0\.1:\d+)\/v1/)?.[1];
      assert.ok(baseUrl, `base URL printed; ${ctx()}`);
      const pm = banner.match(/\bpids: sim ([\d,]+), gateway (\d+), async (\d+)/);
      assert.ok(pm, `pids printed; ${ctx()}`);
      const sm = banner.match(/\bsim pids: (\d+(?:,\s*\d+)*)/);
      assert.ok(sm, `sim pids printed; ${ctx()}`);
      const simPids = sm[1].split(',').map((s) => Number(s.trim()));
      assert.equal(simPids.length, 4, `four simulated servers; ${ctx()}`);
      knownPids = [...new Set([...pm[1].split(',').map(Number), Number(pm[2]), Number(pm[3]),
        ...simPids])];

      browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox'] });
      const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
      const problems = [];
      page.on('console', (m) => {
        if (m.type() === 'error' || m.type() === 'warning') problems.push(`console.${m.type()}: ${m.text()}`);
      });
      page.on('pageerror', (e) => problems.push(`pageerror: ${e.message}`));
      const load = trickle(baseUrl);
      const resp = await page.goto(url, { waitUntil: 'load', timeout: 10_000 });
      assert.equal(resp.status(), 200, `GET ${url}`);

      const attr = (sel, name) => page.getAttribute(sel, name);
      const points = async (sel = '#util-chart') => Number(await attr(sel, 'data-points'));
      const rows = () => page.$$eval('#endpoints tbody tr[data-address]',
        (trs) => trs.map((tr) => ({ address: tr.dataset.address, state: tr.dataset.state })));
      const status = () => attr('#status', 'data-state');

      await waitFor(async () => (await status()) === 'connected',
        { timeoutMs: 10_000, intervalMs: 100, what: 'the page to connect' });
      const listed = await waitFor(async () => {
        const r = await rows();
        return r.length === 4 ? r : null;
      }, { timeoutMs: 10_000, intervalMs: 100, what: 'four endpoint rows' });
      assert.ok(await page.$('#processor'), '#processor panel');
      assert.ok(await page.$('#queues'), '#queues panel');

      // The charts gain points: one a second.
      await waitFor(async () => (await points()) > 0,
        { timeoutMs: 10_000, intervalMs: 100, what: '#util-chart to draw a point' });
      const n1 = await points();
      await sleep(3000);
      const n2 = await points();
      assert.ok(n2 > n1, `#util-chart data-points grew over 3 s: ${n1} -> ${n2}`);
      assert.ok((await points('#rps-chart')) > 0, '#rps-chart has points');
      await waitFor(async () => (await points('#ttft-chart')) > 0,
        { timeoutMs: 10_000, intervalMs: 200, what: '#ttft-chart to draw a point (streamed traffic)' });

      // Kill one simulated server; its row turns "down", the others do not.
      const victim = simPids[0];
      const victimPorts = listeningPorts(victim);
      const row = listed.find((r) => victimPorts.includes(Number(r.address.split(':').pop())));
      assert.ok(row, `a row for sim pid ${victim} (listening on ${victimPorts.join(',') || 'nothing'}); ` +
        `rows ${JSON.stringify(listed)}`);
      const stateOf = async (address) => (await rows()).find((r) => r.address === address)?.state;
      await waitFor(async () => ['up', 'stale'].includes(await stateOf(row.address)),
        { timeoutMs: 10_000, intervalMs: 100, what: `${row.address} to be up before the kill` });
      process.kill(victim, 'SIGKILL');
      const killedAt = Date.now();
      await waitFor(async () => (await stateOf(row.address)) === 'down',
        { timeoutMs: 10_000, intervalMs: 100, what: `${row.address} (sim pid ${victim}) to show down` });
      const downAfterMs = Date.now() - killedAt;
      const others = (await rows()).filter((r) => r.address !== row.address);
      assert.equal(others.length, 3);
      for (const r of others) assert.notEqual(r.state, 'down', `${r.address} stays up: ${JSON.stringify(others)}`);
      assert.equal(demo.proc.exitCode, null, `the demo keeps running after one server died; ${ctx()}`);

      // The page keeps going.
      const n3 = await points();
      await waitFor(async () => (await points()) > n3,
        { timeoutMs: 5000, intervalMs: 100, what: `#util-chart to grow past ${n3} after the kill` });
      assert.equal(await status(), 'connected');

      fs.mkdirSync(path.dirname(ARTIFACT), { recursive: true });
      await page.screenshot({ path: ARTIFACT, fullPage: true });
      const size = fs.statSync(ARTIFACT).size;
      assert.ok(size > 10_000, `screenshot ${ARTIFACT} is ${size} bytes`);

      // Before the demo stops (after which every poll fails, as it should).
      const traffic = await load.stop();
      const seen = [...problems];
      await browser.close();
      browser = null;
      assert.deepEqual(seen, [], 'no console error or warning on the page');
      assert.ok(traffic.ok > 0, `some streamed requests succeeded: ${JSON.stringify(traffic)}`);
      process.stderr.write(`dashboard_browser: ${row.address} showed down ${downAfterMs} ms after ` +
        `SIGKILL; screenshot ${ARTIFACT} (${size} bytes)\n`);

      // Ctrl-C: exit 0, nothing left behind.
      demo.proc.kill('SIGINT');
      const { code, signal } = await waitExit(demo.proc, 20_000);
      assert.equal(signal, null, ctx());
      assert.equal(code, 0, ctx());
      await waitFor(() => knownPids.every((p) => !processAlive(p)),
        { timeoutMs: 3000, what: `children ${knownPids.join(',')} to be gone` });
    });
});
