// monitoring.test.mjs — issue 16: the monitoring files for Prometheus users (deploy/prometheus,
// deploy/grafana; docs/monitoring.md). What it proves:
//   - promtool accepts the scrape config and the rules, and the rules' unit tests pass (each
//     alert fires on its synthetic series, with its labels and annotations, and stays quiet on
//     the near misses; the recording rules compute what they say);
//   - the Grafana dashboard parses, every panel has a title, queries and a unit, every query is
//     valid PromQL, and the per-class panels colour real-time blue and async orange;
//   - the dashboards cannot rot: every tidegate_* metric the dashboard or the rules query is a
//     family (`# TYPE`) on the /metrics page of a real gateway, async processor or simulator.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
  REPO_ROOT, SIM_MODEL, startSim, startGateway, startAsync, runTidegate, stopAll, request,
  postJson, waitFor,
} from './lib.mjs';

const PROMTOOL = process.env.PROMTOOL || '/usr/bin/promtool';
const PROM_DIR = path.join(REPO_ROOT, 'deploy', 'prometheus');
const CONFIG = path.join(PROM_DIR, 'prometheus.yml');
const RULES = path.join(PROM_DIR, 'tidegate.rules.yml');
const RULES_TEST = path.join(PROM_DIR, 'tidegate.rules.test.yml');
const DASHBOARD = path.join(REPO_ROOT, 'deploy', 'grafana', 'tidegate.json');
const RT_COLOR = '#3b82f6';
const ASYNC_COLOR = '#f59e0b';
const T = { timeout: 30_000 };

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'tidegate-monitoring-'));
after(async () => {
  await stopAll();
  fs.rmSync(tmp, { recursive: true, force: true });
});

// Runs promtool with `args` (bounded); asserts exit 0 and returns its output.
function promtool(args) {
  const res = spawnSync(PROMTOOL, args, { cwd: REPO_ROOT, encoding: 'utf8', timeout: 20_000 });
  if (res.error) throw res.error;
  const output = `${res.stdout}${res.stderr}`;
  assert.equal(res.status, 0, `promtool ${args.join(' ')} exited ${res.status}:\n${output}`);
  return output;
}

// Every panel of the dashboard, those inside rows included; rows themselves are not returned.
function leafPanels(panels) {
  const out = [];
  for (const p of panels ?? []) {
    if (p.type === 'row') out.push(...leafPanels(p.panels));
    else out.push(p);
  }
  return out;
}

// The PromQL of the dashboard: [{where, expr}] for every panel query and query variable.
function dashboardExprs(dash) {
  const out = [];
  for (const p of leafPanels(dash.panels)) {
    for (const t of p.targets ?? []) out.push({ where: `panel "${p.title}" ${t.refId}`, expr: t.expr });
  }
  for (const v of dash.templating?.list ?? []) {
    if (v.type !== 'query') continue;
    const q = typeof v.query === 'string' ? v.query : v.query?.query;
    out.push({ where: `variable ${v.name}`, expr: q ?? v.definition, variable: true });
  }
  return out;
}

// The `expr:` values of a rules file: [{where, expr}]. Handles plain and quoted scalars and
// block scalars (| and >, with chomping indicators), which is all the rules file uses.
function ruleExprs(text) {
  const lines = text.split('\n');
  const out = [];
  let name = '';
  for (let i = 0; i < lines.length; i++) {
    const n = lines[i].match(/^\s*-?\s*(?:record|alert):\s*(\S+)/);
    if (n) name = n[1];
    const m = lines[i].match(/^(\s*)expr:\s*(.*?)\s*$/);
    if (!m) continue;
    let expr;
    if (/^[|>][+-]?$/.test(m[2])) {
      const body = [];
      while (i + 1 < lines.length &&
             (lines[i + 1].trim() === '' || lines[i + 1].search(/\S/) > m[1].length)) {
        body.push(lines[++i].trim());
      }
      expr = body.join('\n').trim();
    } else {
      expr = m[2].replace(/^'(.*)'$/, '$1').replace(/^"(.*)"$/, '$1');
    }
    out.push({ where: `rule ${name}`, expr });
  }
  return out;
}

// The dashboard's variables replaced by values Prometheus accepts (for a syntax check).
function substituteVariables(expr, dash) {
  const vars = new Map((dash.templating?.list ?? []).map((v) => [v.name, v]));
  return expr
    .replaceAll('$__rate_interval', '1m').replaceAll('$__interval', '1m').replaceAll('$__range', '1h')
    .replace(/\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?/g, (all, name) => {
      const v = vars.get(name);
      if (!v) return all;
      return v.type === 'textbox' || v.type === 'constant' ? String(v.query) : '.*';
    });
}

// tidegate_* metric names an expression queries. Recording-rule names (tidegate:...) are not
// matched: a `:` follows `tidegate` in them.
const metricNames = (expr) => [...expr.matchAll(/\btidegate_[a-z0-9_]+/g)].map((m) => m[0]);

// `# TYPE` lines of an exposition: Map name → type.
function families(text) {
  const out = new Map();
  for (const m of text.matchAll(/^# TYPE (\S+) (\S+)$/gm)) out.set(m[1], m[2]);
  return out;
}

// True when `name` can be queried on a page with these families: a family of that name, or a
// histogram's _bucket/_sum/_count, or a summary's _sum/_count.
function exported(name, fams) {
  if (fams.has(name)) return true;
  const m = name.match(/^(.*)_(bucket|sum|count)$/);
  if (!m) return false;
  const type = fams.get(m[1]);
  return type === 'histogram' || (type === 'summary' && m[2] !== 'bucket');
}

function readDashboard() {
  return JSON.parse(fs.readFileSync(DASHBOARD, 'utf8'));
}

describe('Prometheus files pass promtool', () => {
  it('promtool check config deploy/prometheus/prometheus.yml', T, () => {
    const out = promtool(['check', 'config', path.relative(REPO_ROOT, CONFIG)]);
    assert.match(out, /SUCCESS/);
    // The jobs the docs and the dashboard name.
    const text = fs.readFileSync(CONFIG, 'utf8');
    for (const job of ['tidegate-gateway', 'tidegate-async', 'tidegate-sim']) {
      assert.match(text, new RegExp(`job_name: ${job}\\b`));
    }
    assert.match(text, /127\.0\.0\.1:9090/);
    assert.match(text, /127\.0\.0\.1:9464/);
  });

  it('promtool check rules deploy/prometheus/tidegate.rules.yml', T, () => {
    const out = promtool(['check', 'rules', path.relative(REPO_ROOT, RULES)]);
    assert.match(out, /SUCCESS: \d+ rules found/);
  });

  it('promtool test rules deploy/prometheus/tidegate.rules.test.yml', T, () => {
    const out = promtool(['test', 'rules', path.relative(REPO_ROOT, RULES_TEST)]);
    assert.match(out, /SUCCESS/);
    // Every alert of the rules file is exercised by the tests.
    const rules = fs.readFileSync(RULES, 'utf8');
    const tests = fs.readFileSync(RULES_TEST, 'utf8');
    const alerts = [...rules.matchAll(/^\s*- alert:\s*(\S+)/gm)].map((m) => m[1]);
    assert.ok(alerts.length >= 4, `alerts: ${alerts}`);
    const untested = alerts.filter((a) => !new RegExp(`alertname: ${a}\\b`).test(tests));
    assert.deepEqual(untested, [], `alerts without a unit test: ${untested.join(', ')}`);
  });
});

describe('Grafana dashboard', () => {
  it('parses; every panel has a title, queries and a unit', T, () => {
    const dash = readDashboard();
    assert.equal(dash.uid, 'tidegate');
    assert.ok(dash.schemaVersion >= 36, `schemaVersion ${dash.schemaVersion}`);
    assert.ok(dash.templating.list.some((v) => v.type === 'datasource' && v.query === 'prometheus'),
      'a Prometheus datasource variable');
    const panels = leafPanels(dash.panels);
    assert.ok(panels.length >= 8, `${panels.length} panels`);
    const ids = new Set();
    for (const p of panels) {
      const what = `panel ${p.id} "${p.title}"`;
      assert.ok(typeof p.title === 'string' && p.title.trim().length > 0, `${what}: title`);
      assert.ok(!ids.has(p.id), `${what}: duplicate id`);
      ids.add(p.id);
      assert.ok(Array.isArray(p.targets) && p.targets.length > 0, `${what}: targets`);
      for (const t of p.targets) {
        assert.ok(typeof t.expr === 'string' && t.expr.trim(), `${what} ${t.refId}: expr`);
        assert.ok(t.refId, `${what}: refId`);
      }
      const unit = p.fieldConfig?.defaults?.unit;
      assert.ok(typeof unit === 'string' && unit.length > 0, `${what}: fieldConfig.defaults.unit`);
      assert.ok(p.gridPos && p.gridPos.w > 0 && p.gridPos.h > 0, `${what}: gridPos`);
    }
  });

  it('every query is valid PromQL (promtool check rules on the dashboard\'s expressions)', T, () => {
    const dash = readDashboard();
    const exprs = dashboardExprs(dash).filter((e) => !e.variable);
    const rules = {
      groups: [{
        name: 'dashboard',
        rules: exprs.map((e, i) => ({ record: `dashboard:expr_${i}`, expr: substituteVariables(e.expr, dash) })),
      }],
    };
    // JSON is YAML: promtool reads it as a rules file.
    const file = path.join(tmp, 'dashboard-exprs.rules.json');
    fs.writeFileSync(file, JSON.stringify(rules, null, 2));
    promtool(['check', 'rules', file]);
    for (const e of dashboardExprs(dash).filter((x) => x.variable)) {
      assert.match(e.expr, /^label_values\(tidegate_[a-z0-9_]+, [a-z_]+\)$/, e.where);
    }
    // Recording rules, if a panel uses any, must be defined in the rules file.
    const defined = new Set([...fs.readFileSync(RULES, 'utf8').matchAll(/record:\s*(\S+)/g)].map((m) => m[1]));
    for (const e of exprs) {
      for (const m of e.expr.matchAll(/\btidegate:[a-z0-9_:]+/g)) {
        assert.ok(defined.has(m[0]), `${e.where} uses ${m[0]}, which tidegate.rules.yml does not record`);
      }
    }
  });

  it('per-class panels colour real-time blue and async orange', T, () => {
    const dash = readDashboard();
    const perClass = leafPanels(dash.panels).filter((p) => p.targets.some((t) => /\{\{class\}\}/.test(t.legendFormat ?? '')));
    assert.ok(perClass.length >= 2, 'utilisation and requests/s have a series per class');
    for (const p of perClass) {
      const colour = (name) => p.fieldConfig.overrides
        .find((o) => o.matcher.id === 'byName' && o.matcher.options === name)
        ?.properties.find((q) => q.id === 'color')?.value?.fixedColor;
      assert.equal(colour('realtime'), RT_COLOR, `panel "${p.title}": realtime colour`);
      assert.equal(colour('async'), ASYNC_COLOR, `panel "${p.title}": async colour`);
    }
  });
});

describe('the dashboards cannot rot: every metric they query is exported', () => {
  let sim, gw, proc;
  before(async () => {
    sim = await startSim(['--time-scale', '20']);
    gw = await startGateway(['--endpoints', sim.endpoint]);
    // Two async requests through the processor, on an embedded queue.
    const db = path.join(tmp, 'q.db');
    const requests = `sqlite://${db}?queue=requests`;
    const results = `sqlite://${db}?queue=results`;
    const input = path.join(tmp, 'in.jsonl');
    fs.writeFileSync(input, ['a-1', 'a-2'].map((id) => JSON.stringify({
      id, payload: { model: SIM_MODEL, max_tokens: 8, messages: [{ role: 'user', content: `async ${id}` }] },
    })).join('\n') + '\n');
    const sub = await runTidegate(['submit', '--queue', requests, input], { timeoutMs: 15_000 });
    assert.equal(sub.code, 0, sub.stderr);
    proc = await startAsync(['--gateway', gw.url, '--requests', requests, '--responses', results]);
    // Real-time traffic: one streamed request (TTFT histogram) and one plain one.
    const body = { model: SIM_MODEL, max_tokens: 8, messages: [{ role: 'user', content: 'hello' }] };
    const streamed = await postJson(gw.url, '/v1/chat/completions', { ...body, stream: true });
    assert.equal(streamed.status, 200, streamed.body);
    const plain = await postJson(gw.url, '/v1/chat/completions', body);
    assert.equal(plain.status, 200, plain.body);
    await waitFor(async () => (await proc.metric('tidegate_async_requests_succeeded_total')) >= 2,
      { timeoutMs: 15_000, what: 'the processor to serve its two requests' });
  });

  it('every tidegate_* name in the dashboard and the rules is a family on a /metrics page', T, async () => {
    const pages = {
      gateway: (await request(gw.url, { path: '/metrics' })).body,
      processor: (await request(`http://127.0.0.1:${proc.port}`, { path: '/metrics' })).body,
      sim: (await request(sim.url, { path: '/metrics' })).body,
    };
    const fams = new Map();
    for (const [who, text] of Object.entries(pages)) {
      const f = families(text);
      assert.ok(f.size > 0, `${who} /metrics has no # TYPE lines:\n${text.slice(0, 500)}`);
      for (const [n, t] of f) fams.set(n, t);
    }
    const referenced = new Map();  // name → where
    const note = (name, where) => {
      if (!referenced.has(name)) referenced.set(name, new Set());
      referenced.get(name).add(where);
    };
    for (const e of dashboardExprs(readDashboard())) {
      for (const n of metricNames(e.expr)) note(n, `tidegate.json ${e.where}`);
    }
    const ruleList = ruleExprs(fs.readFileSync(RULES, 'utf8'));
    assert.ok(ruleList.length >= 8, `found ${ruleList.length} rule expressions`);
    for (const e of ruleList) {
      for (const n of metricNames(e.expr)) note(n, `tidegate.rules.yml ${e.where}`);
    }
    assert.ok(referenced.size >= 20, `only ${referenced.size} metric names found: ${[...referenced.keys()]}`);
    const missing = [...referenced.keys()].filter((n) => !exported(n, fams)).sort();
    assert.deepEqual(missing, [],
      `metrics queried but exported by none of gateway, processor, sim: ${missing.join(', ')}\n` +
      missing.map((n) => `  ${n}: ${[...referenced.get(n)].join('; ')}`).join('\n'));
  });
});
