// report_html.test.mjs — `tidegate report REPORT.json [--out DIR]`: renders a bench report.json
// into report.html and prints the runs table. The page is loaded in headless Chromium: its DOM
// (after Chromium parsed it) must hold the summary table with every run, the comparison chart
// and four charts per run with their data series, and a screenshot of it must be non-trivial.
// Chromium is required (scripts/install-deps.sh installs it); without it the test fails.
// TIDEGATE_KEEP_REPORT=1 keeps the temp directory (report.json, report.html, report.png).
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { GATEWAY_BIN, withTimeout } from './lib.mjs';

const CHROMIUM = process.env.CHROMIUM_BIN || '/usr/bin/chromium';
const T = { timeout: 120_000 };

// A name that must come out escaped (no <b> element, no broken attribute).
const EVIL = 'direct <b>bold</b> & "quoted" \'x\'';

function series(n, f) {
  return Array.from({ length: n }, (_, i) => Math.round(f(i) * 1000) / 1000);
}

function sampleReport() {
  const n = 60;
  const t = series(n, (i) => i);
  const wave = (i, phase) => 0.5 + 0.35 * Math.sin(i / 6 + phase);
  const run = (name, policy, asyncMode, target, k) => {
    let done = 0;
    return {
      name, policy, async_mode: asyncMode, target, duration_s: n,
      realtime: {
        sent: 1200 + k, succeeded: 1190 + k, failed: 10 - k,
        ttft_ms: { p50: 41.5 + 10 * k, p90: 96.4 + 20 * k, p99: 180.5 + 60 * k },
        tpot_ms: { p50: 8.1 + k, p90: 11.4 + k, p99: 15.2 + 2 * k },
        slo_attainment: 0.98 - 0.05 * k,
      },
      async: { submitted: 500, succeeded: 480 - 40 * k, shed: 20 * k, failed: 1, lost: 0,
        on_time: 470 - 40 * k },
      utilization: 0.87 - 0.2 * k, tokens_per_s: 1234.5 - 100 * k,
      timeseries: {
        interval_s: 1.0, t,
        util_realtime: series(n, (i) => wave(i, k) * 0.6),
        util_async: series(n, (i) => Math.max(0, 0.9 - wave(i, k) * 0.6) * (1 - 0.3 * k)),
        realtime_rps: series(n, (i) => 40 * wave(i, k)),
        ttft_p50_ms: series(n, (i) => 40 + 20 * wave(i, k) + 10 * k),
        ttft_p99_ms: series(n, (i) => 150 + 120 * wave(i, k) ** 3 + 60 * k),
        async_completed: series(n, (i) => (done += Math.round(8 * (1 - wave(i, k)) * (1 - 0.3 * k)))),
      },
    };
  };
  const partial = run('haproxy-baseline', 'round-robin', 'none', 'haproxy', 2);
  delete partial.async;                           // a run without async work …
  delete partial.timeseries.util_async;           // … and without some series:
  delete partial.timeseries.async_completed;      //   its async charts show "no data"
  delete partial.timeseries.t;                    //   and t is rebuilt from interval_s
  partial.realtime.ttft_ms.p90 = null;            // a null field is shown as "–"
  return {
    scenario: 'seed', generated_at: '2026-11-23T10:00:00Z',
    command: 'tidegate bench --scenario seed --out /tmp/x',
    runs: [
      run('via-processor', 'tidegate-default', 'via-processor', 'tidegate', 0),
      run(EVIL, 'least-request', 'direct', 'http://127.0.0.1:9/', 1),
      partial,
    ],
  };
}

// Runs `cmd args` in its own process group; resolves {code, signal, stdout, stderr}. After
// `timeoutMs` the whole group (e.g. Chromium and its helpers) is killed and the promise rejects.
function run(cmd, args, { timeoutMs = 30_000 } = {}) {
  const proc = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  let stdout = '';
  let stderr = '';
  proc.stdout.on('data', (c) => { stdout += c; });
  proc.stderr.on('data', (c) => { stderr += c; });
  const done = new Promise((resolve, reject) => {
    proc.once('error', reject);
    proc.once('close', (code, signal) => resolve({ code, signal, stdout, stderr }));
  });
  return withTimeout(done, timeoutMs, `${cmd} ${args.join(' ')}`).catch((err) => {
    try { process.kill(-proc.pid, 'SIGKILL'); } catch { /* already gone */ }
    throw new Error(`${err.message}\nstderr so far:\n${stderr}`);
  });
}

function chromiumArgs(dir) {
  return ['--headless=new', '--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage',
    `--user-data-dir=${path.join(dir, `chromium-profile-${process.pid}-${Date.now()}`)}`,
    '--no-first-run', '--no-default-browser-check', '--disable-extensions', '--hide-scrollbars',
    '--mute-audio', '--disable-background-networking', '--disable-component-update'];
}

function requireChromium() {
  assert.ok(fs.existsSync(CHROMIUM),
    `headless Chromium is required at ${CHROMIUM} (or set CHROMIUM_BIN): install it with ` +
    '`apt-get install -y --no-install-recommends chromium` or run scripts/install-deps.sh');
}

// The <svg ...>...</svg> elements of a serialized DOM, with their attributes and inner markup.
function svgs(dom) {
  const out = [];
  const re = /<svg\b([^>]*)>([\s\S]*?)<\/svg>/g;
  for (let m; (m = re.exec(dom));) {
    const attrs = {};
    for (const a of m[1].matchAll(/([\w:-]+)="([^"]*)"/g)) attrs[a[1]] = a[2];
    out.push({ attrs, inner: m[2] });
  }
  return out;
}
const seriesCount = (svg) =>
  [...svg.inner.matchAll(/<(path|polyline)\b[^>]*\sclass="series\b[^"]*"/g)].length;
const unescape = (s) => s.replace(/&quot;/g, '"').replace(/&#39;/g, "'").replace(/&lt;/g, '<')
  .replace(/&gt;/g, '>').replace(/&amp;/g, '&');

describe('tidegate report', () => {
  let dir;
  let reportJson;
  let report;

  before(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tidegate-report-'));
    report = sampleReport();
    reportJson = path.join(dir, 'report.json');
    fs.writeFileSync(reportJson, JSON.stringify(report, null, 1));
  });

  after(() => {
    if (process.env.TIDEGATE_KEEP_REPORT) {
      process.stderr.write(`report_html: kept ${dir}\n`);
    } else if (dir) {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('writes report.html next to the JSON and prints the runs table', T, async () => {
    const r = await run(GATEWAY_BIN, ['report', reportJson]);
    assert.equal(r.code, 0, r.stderr);
    const html = fs.readFileSync(path.join(dir, 'report.html'), 'utf8');
    assert.match(html, /^<!DOCTYPE html>/);
    assert.doesNotMatch(html, /<script|<link|@import|url\(/i, 'the page is self-contained');
    const lines = r.stdout.trimEnd().split('\n');
    assert.match(lines[0], /scenario seed .*3 runs/);
    assert.match(lines[1], /^run\s+policy\s+async mode\s+RT sent\/ok\s+TTFT p50\/p90\/p99 ms/);
    assert.equal(lines.length, 2 + 1 + 3, r.stdout);
    assert.match(lines[3], /^via-processor\s+tidegate-default\s+via-processor\s+1200\/1190\s+41\.5\/96\.4\/180\.5/);
    assert.ok(lines[4].startsWith(EVIL), 'the table shows names as they are');
    assert.match(lines[5], /^haproxy-baseline .*\/–\/.*  –\/–\/–\/–\/–\/–  /, 'missing fields are "–"');
    assert.match(r.stderr, /wrote .*report\.html/);
  });

  it('--out writes to another (new) directory', T, async () => {
    const out = path.join(dir, 'out', 'nested');
    const r = await run(GATEWAY_BIN, ['report', reportJson, '--out', out]);
    assert.equal(r.code, 0, r.stderr);
    assert.ok(fs.statSync(path.join(out, 'report.html')).size > 10_000);
  });

  it('rejects a missing file, invalid JSON and a JSON without runs (exit 2)', T, async () => {
    const cases = [
      [path.join(dir, 'nope.json'), /cannot read .*nope\.json/],
      ['{"runs": [', /not valid JSON/],
      ['{"scenario": "x"}', /no "runs" array/],
      ['[1, 2]', /no "runs" array/],
    ];
    for (const [content, re] of cases) {
      let file = content;
      if (!content.endsWith('.json')) {
        file = path.join(dir, `bad-${Math.random().toString(36).slice(2)}.json`);
        fs.writeFileSync(file, content);
      }
      const r = await run(GATEWAY_BIN, ['report', file, '--out', path.join(dir, 'bad-out')]);
      assert.equal(r.code, 2, `${content}: ${r.stderr}`);
      assert.match(r.stderr, re);
      assert.equal(r.stdout, '');
    }
    assert.ok(!fs.existsSync(path.join(dir, 'bad-out', 'report.html')));
    const noArg = await run(GATEWAY_BIN, ['report']);
    assert.equal(noArg.code, 2);
    assert.match(noArg.stderr, /missing REPORT\.json/);
    const help = await run(GATEWAY_BIN, ['report', '--help']);
    assert.equal(help.code, 0);
    assert.match(help.stdout, /example: tidegate report/);
  });

  it('renders in headless Chromium: summary table, charts and series for every run', T, async () => {
    requireChromium();
    const htmlPath = path.join(dir, 'report.html');
    if (!fs.existsSync(htmlPath)) {
      const r = await run(GATEWAY_BIN, ['report', reportJson]);
      assert.equal(r.code, 0, r.stderr);
    }
    const r = await run(CHROMIUM, [...chromiumArgs(dir), '--dump-dom', `file://${htmlPath}`],
      { timeoutMs: 60_000 });
    assert.equal(r.code, 0, `chromium --dump-dom failed:\n${r.stderr}`);
    const dom = r.stdout;
    assert.match(dom, /<title>tidegate bench: seed<\/title>/);

    // The summary table: one row per run, names escaped (so no <b> element was created).
    const table = dom.match(/<table class="summary">([\s\S]*?)<\/table>/);
    assert.ok(table, 'summary table present');
    const rows = [...table[1].matchAll(/<tr data-run="([^"]*)"/g)].map((m) => unescape(m[1]));
    assert.deepEqual(rows, report.runs.map((x) => x.name));
    for (const x of report.runs) {
      assert.ok(unescape(table[1]).includes(`>${x.name}</a>`), `run ${x.name} in the table`);
    }
    assert.doesNotMatch(dom, /<b>/, 'run names are escaped');
    assert.ok(table[1].includes('>–</td>'), 'a missing value is shown as –');

    const charts = svgs(dom);
    const comparison = charts.filter((s) => s.attrs['data-chart'] === 'comparison');
    assert.equal(comparison.length, 1);
    assert.equal(seriesCount(comparison[0]), 2, 'TTFT p99 and utilisation bars');

    // Per run: 4 charts, with the expected number of series each.
    const expected = {
      'via-processor': { utilization: 2, arrivals: 1, ttft: 2, async: 1 },
      [EVIL]: { utilization: 2, arrivals: 1, ttft: 2, async: 1 },
      'haproxy-baseline': { utilization: 1, arrivals: 1, ttft: 2, async: 0 },
    };
    for (const [name, kinds] of Object.entries(expected)) {
      const mine = charts.filter((s) => s.attrs['data-run'] && unescape(s.attrs['data-run']) === name);
      assert.deepEqual(mine.map((s) => s.attrs['data-chart']).sort(),
        ['arrivals', 'async', 'ttft', 'utilization'], `charts of ${name}`);
      for (const s of mine) {
        const kind = s.attrs['data-chart'];
        assert.equal(s.attrs.class, 'chart');
        assert.equal(seriesCount(s), kinds[kind], `${name} / ${kind} series`);
        assert.match(s.inner, /class="legend"/, `${name} / ${kind} legend`);
        assert.match(s.inner, /class="axis y"/, `${name} / ${kind} y axis`);
        assert.match(s.inner, /time \(s\)/, `${name} / ${kind} x axis title`);
        assert.equal(/class="no-data"/.test(s.inner), kinds[kind] === 0, `${name} / ${kind} no-data`);
      }
    }
    // t rebuilt from interval_s: the partial run's x axis still reaches ~60 s.
    const partialUtil = charts.find((s) => s.attrs['data-run'] === 'haproxy-baseline' &&
      s.attrs['data-chart'] === 'utilization');
    assert.match(partialUtil.inner, />50<\/text>/);
  });

  it('screenshots in headless Chromium as a non-trivial PNG', T, async () => {
    requireChromium();
    const htmlPath = path.join(dir, 'report.html');
    if (!fs.existsSync(htmlPath)) {
      const r = await run(GATEWAY_BIN, ['report', reportJson]);
      assert.equal(r.code, 0, r.stderr);
    }
    const png = path.join(dir, 'report.png');
    const r = await run(CHROMIUM, [...chromiumArgs(dir), `--screenshot=${png}`,
      '--window-size=1280,2000', `file://${htmlPath}`], { timeoutMs: 60_000 });
    assert.equal(r.code, 0, `chromium --screenshot failed:\n${r.stderr}`);
    assert.ok(fs.existsSync(png), `no screenshot written:\n${r.stderr}`);
    const bytes = fs.readFileSync(png);
    assert.deepEqual([...bytes.subarray(1, 4)], [0x50, 0x4e, 0x47], 'a PNG');
    assert.equal(bytes.readUInt32BE(16), 1280, 'PNG width');
    assert.equal(bytes.readUInt32BE(20), 2000, 'PNG height');
    assert.ok(bytes.length > 60_000, `screenshot is only ${bytes.length} bytes`);
  });
});
