#!/usr/bin/env node
// k8s_api_double.mjs — a small stand-in for the Kubernetes API server, for the kubernetes
// discovery tests (no API server can run on the test machines).
//
//   node tests/k8s_api_double.mjs [--port 0] [--window N] [--bookmark-ms MS] [--exit-on-stdin-close]
//                                 [--tls-cert PEM --tls-key PEM] [--token TOKEN]
//
// Binds 127.0.0.1 only and prints one line once listening: `LISTENING <port>`. With --tls-cert it
// serves HTTPS; with --token every API request must carry `Authorization: Bearer TOKEN` (else a
// 401 Status, as the real server answers an unauthenticated client; /_test/ needs none).
//
// It serves list and watch the way the real API server does, for three resources:
//   pods                 /api/v1/namespaces/NS/pods                                   (v1 Pod)
//   inferencepools       /apis/inference.networking.k8s.io/v1/namespaces/NS/inferencepools
//   inferenceobjectives  /apis/llm-d.ai/v1alpha2/namespaces/NS/inferenceobjectives
// (and GET of one object: .../NAME, and the cluster-wide /api/v1/pods).
//   - One resourceVersion counter for every change (like etcd's revision), as a string; every
//     object carries the version of its last change, a list carries the current one.
//   - A list is {kind: PodList, apiVersion: v1, metadata: {resourceVersion}, items}.
//   - ?watch=1 (or true) answers 200 with a chunked stream of JSON lines {type, object}: ADDED,
//     MODIFIED, DELETED, BOOKMARK (with allowWatchBookmarks=true: an object of the kind carrying
//     only metadata.resourceVersion, every --bookmark-ms, default 1000), ERROR. From
//     resourceVersion=RV it replays every change after RV, then streams new ones; without one
//     (or "0") it first sends ADDED for every current object. A version from which some later
//     change is no longer retained (only the last --window changes are, default 1000, and none
//     from before the last compaction) gets an ERROR event whose object is a Status with code 410 and reason Expired ("too old
//     resource version"), and the stream ends. timeoutSeconds ends a watch.
//   - labelSelector (k=v, k==v, k!=v, k, !k; comma = and) and fieldSelector (metadata.name,
//     metadata.namespace) filter lists and watches. An object that stops matching a watch's
//     selector is sent as DELETED, one that starts matching as ADDED, as the real server does.
//   - Pods print as a Table (Name, Ready, Status, IP, Age) when the client asks for one (Accept:
//     ...;as=Table;..., as kubectl get does), in lists and in watch events.
//   - Discovery for kubectl: /version, /api, /api/v1, /apis, /apis/GROUP/VERSION. Anything else
//     is a 404 Status.
//
// Test controls (JSON bodies):
//   POST /_test/apply   {resource, object}             create or replace (namespace default)
//   POST /_test/delete  {resource, namespace, name}
//   POST /_test/compact {drop_watches}                  every version up to now is gone (410);
//                                                       drop_watches ends the open watches
//   POST /_test/window  {events}                        retain only the last N changes
//   POST /_test/restart {down_ms}                       drop every connection, refuse for down_ms
//   POST /_test/bookmark                                a bookmark to every watch now
//   GET  /_test/stats   {resourceVersion, watches, requests: {"list pods": n, "watch pods": n,
//                        "watch410 pods": n, ...}}
import fs from 'node:fs';
import http from 'node:http';
import https from 'node:https';

const opts = { port: 0, window: 1000, bookmarkMs: 1000, exitOnStdinClose: false };
for (let i = 2; i < process.argv.length; i++) {
  const a = process.argv[i];
  if (a === '--port') opts.port = Number(process.argv[++i]);
  else if (a === '--window') opts.window = Number(process.argv[++i]);
  else if (a === '--bookmark-ms') opts.bookmarkMs = Number(process.argv[++i]);
  else if (a === '--exit-on-stdin-close') opts.exitOnStdinClose = true;
  else if (a === '--tls-cert') opts.tlsCert = process.argv[++i];
  else if (a === '--tls-key') opts.tlsKey = process.argv[++i];
  else if (a === '--token') opts.token = process.argv[++i];
  else { console.error(`unknown argument ${a}`); process.exit(2); }
}

const RESOURCES = {
  pods: { group: '', version: 'v1', kind: 'Pod', singular: 'pod', shortNames: ['po'] },
  inferencepools: {
    group: 'inference.networking.k8s.io', version: 'v1', kind: 'InferencePool',
    singular: 'inferencepool', shortNames: ['infpool'],
  },
  inferenceobjectives: {
    group: 'llm-d.ai', version: 'v1alpha2', kind: 'InferenceObjective',
    singular: 'inferenceobjective', shortNames: [],
  },
};
const apiVersionOf = (r) => (r.group ? `${r.group}/${r.version}` : r.version);

let revision = 1000;          // the last change's resourceVersion
let compactedBelow = 0;       // versions < this are gone
const store = new Map();      // `${resource}/${ns}/${name}` → object
const history = [];           // {rv, resource, ns, type, object, old}
const watches = new Set();
const sockets = new Set();
const stats = {};
const count = (key) => { stats[key] = (stats[key] || 0) + 1; };

// The oldest resourceVersion a watch may start from: every change after it is still retained.
function oldestRetained() {
  const fromWindow = history.length > opts.window ? history[history.length - opts.window].rv - 1 : 0;
  return Math.max(compactedBelow, fromWindow);
}

function trimHistory() {
  const keepFrom = oldestRetained();
  while (history.length && history[0].rv <= keepFrom) history.shift();
}

function status(code, reason, message) {
  return { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message, reason, code };
}

// --- selectors ---

function parseLabelSelector(text) {
  const reqs = [];
  if (!text) return reqs;
  for (const raw of text.split(',')) {
    const item = raw.trim();
    if (!item) continue;
    let m;
    if ((m = item.match(/^([^!=]+)!=(.*)$/))) reqs.push({ key: m[1].trim(), op: '!=', value: m[2].trim() });
    else if ((m = item.match(/^([^!=]+)==?(.*)$/))) reqs.push({ key: m[1].trim(), op: '=', value: m[2].trim() });
    else if (item.startsWith('!')) reqs.push({ key: item.slice(1).trim(), op: '!' });
    else reqs.push({ key: item, op: 'exists' });
  }
  return reqs;
}

function labelsMatch(reqs, obj) {
  const labels = obj?.metadata?.labels || {};
  return reqs.every((r) => {
    const has = Object.prototype.hasOwnProperty.call(labels, r.key);
    if (r.op === '=') return has && labels[r.key] === r.value;
    if (r.op === '!=') return !has || labels[r.key] !== r.value;
    if (r.op === '!') return !has;
    return has;
  });
}

function parseFieldSelector(text) {
  const reqs = [];
  if (!text) return reqs;
  for (const item of text.split(',')) {
    const m = item.match(/^([^!=]+)(!=|==|=)(.*)$/);
    if (!m) throw new Error(`invalid field selector: ${item}`);
    const field = m[1].trim();
    if (field !== 'metadata.name' && field !== 'metadata.namespace') {
      throw new Error(`field label not supported: ${field}`);
    }
    reqs.push({ field, neg: m[2] === '!=', value: m[3].trim() });
  }
  return reqs;
}

function fieldsMatch(reqs, obj) {
  return reqs.every((r) => {
    const v = r.field === 'metadata.name' ? obj?.metadata?.name : obj?.metadata?.namespace;
    return r.neg ? v !== r.value : v === r.value;
  });
}

// --- changes ---

function applyObject(resource, object) {
  const r = RESOURCES[resource];
  if (!r) throw new Error(`unknown resource ${resource}`);
  const obj = structuredClone(object);
  obj.apiVersion = apiVersionOf(r);
  obj.kind = r.kind;
  obj.metadata = obj.metadata || {};
  if (!obj.metadata.name) throw new Error('metadata.name is required');
  const ns = obj.metadata.namespace || 'default';
  obj.metadata.namespace = ns;
  const key = `${resource}/${ns}/${obj.metadata.name}`;
  const old = store.get(key);
  obj.metadata.uid = old?.metadata?.uid || `uid-${resource}-${ns}-${obj.metadata.name}-${revision + 1}`;
  obj.metadata.creationTimestamp = old?.metadata?.creationTimestamp || new Date().toISOString().replace(/\.\d+Z$/, 'Z');
  obj.metadata.resourceVersion = String(++revision);
  store.set(key, obj);
  record({ rv: revision, resource, ns, type: old ? 'MODIFIED' : 'ADDED', object: obj, old });
  return obj;
}

function deleteObject(resource, ns, name) {
  const key = `${resource}/${ns || 'default'}/${name}`;
  const old = store.get(key);
  if (!old) return null;
  store.delete(key);
  const obj = structuredClone(old);
  obj.metadata.resourceVersion = String(++revision);
  record({ rv: revision, resource, ns: obj.metadata.namespace, type: 'DELETED', object: obj, old });
  return obj;
}

function record(ev) {
  history.push(ev);
  trimHistory();
  for (const w of watches) deliver(w, ev);
}

// What a watch with `w`'s filters sees of a change (null: nothing).
function translate(w, ev) {
  if (ev.resource !== w.resource || (w.ns && ev.ns !== w.ns)) return null;
  const matches = (o) => o && labelsMatch(w.labels, o) && fieldsMatch(w.fields, o);
  const nowIn = ev.type !== 'DELETED' && matches(ev.object);
  const wasIn = ev.type === 'ADDED' ? false : matches(ev.old);
  if (ev.type === 'DELETED') return wasIn ? { type: 'DELETED', object: ev.object } : null;
  if (nowIn && wasIn) return { type: 'MODIFIED', object: ev.object };
  if (nowIn) return { type: 'ADDED', object: ev.object };
  if (wasIn) return { type: 'DELETED', object: ev.object };
  return null;
}

function send(w, event) {
  if (w.closed) return;
  let e = event;
  if (w.table && (e.type === 'ADDED' || e.type === 'MODIFIED' || e.type === 'DELETED')) {
    e = { type: e.type, object: podTable([e.object], e.object.metadata.resourceVersion) };
  }
  w.res.write(JSON.stringify(e) + '\n');
}

function deliver(w, ev) {
  const e = translate(w, ev);
  if (e) send(w, e);
}

function bookmark(w) {
  const r = RESOURCES[w.resource];
  send(w, {
    type: 'BOOKMARK',
    object: { kind: r.kind, apiVersion: apiVersionOf(r), metadata: { resourceVersion: String(revision) } },
  });
}

function endWatch(w) {
  if (w.closed) return;
  w.closed = true;
  clearInterval(w.bookmarkTimer);
  clearTimeout(w.timeoutTimer);
  watches.delete(w);
  w.res.end();
}

// --- server-side printing (kubectl asks for Accept: application/json;as=Table;...) ---

const POD_COLUMNS = [
  { name: 'Name', type: 'string', format: 'name', description: 'Name', priority: 0 },
  { name: 'Ready', type: 'string', format: '', description: 'ready containers', priority: 0 },
  { name: 'Status', type: 'string', format: '', description: 'phase', priority: 0 },
  { name: 'IP', type: 'string', format: '', description: 'pod IP', priority: 0 },
  { name: 'Age', type: 'string', format: '', description: 'age', priority: 0 },
];

function age(obj) {
  const s = Math.max(0, Math.round((Date.now() - Date.parse(obj.metadata.creationTimestamp)) / 1000));
  return s < 120 ? `${s}s` : `${Math.floor(s / 60)}m`;
}

function podRow(o) {
  const ready = (o.status?.conditions || []).some((c) => c.type === 'Ready' && c.status === 'True');
  const phase = o.metadata.deletionTimestamp ? 'Terminating' : (o.status?.phase || 'Pending');
  return {
    cells: [o.metadata.name, ready ? '1/1' : '0/1', phase, o.status?.podIP || '<none>', age(o)],
    object: { kind: 'PartialObjectMetadata', apiVersion: 'meta.k8s.io/v1', metadata: o.metadata },
  };
}

const wantsTable = (req, resource) => resource === 'pods' && /as=Table/.test(req.headers.accept || '');

function podTable(objects, rv) {
  return {
    kind: 'Table', apiVersion: 'meta.k8s.io/v1', metadata: { resourceVersion: String(rv) },
    columnDefinitions: POD_COLUMNS, rows: objects.map(podRow),
  };
}

// --- HTTP ---

function json(res, code, body) {
  const text = JSON.stringify(body);
  res.writeHead(code, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

function readBody(req) {
  return new Promise((resolve, reject) => {
    const parts = [];
    req.on('data', (c) => parts.push(c));
    req.on('end', () => {
      const text = Buffer.concat(parts).toString('utf8');
      try { resolve(text ? JSON.parse(text) : {}); } catch (err) { reject(err); }
    });
    req.on('error', reject);
  });
}

function discovery(res, path, port) {
  if (path === '/version') {
    return json(res, 200, {
      major: '1', minor: '32', gitVersion: 'v1.32.0-tidegate-double', platform: 'linux/amd64',
    }), true;
  }
  if (path === '/api') {
    return json(res, 200, {
      kind: 'APIVersions', versions: ['v1'],
      serverAddressByClientCIDRs: [{ clientCIDR: '0.0.0.0/0', serverAddress: `127.0.0.1:${port}` }],
    }), true;
  }
  const groups = {};
  for (const [name, r] of Object.entries(RESOURCES)) {
    if (!r.group) continue;
    (groups[r.group] ||= { version: r.version, resources: [] }).resources.push([name, r]);
  }
  if (path === '/apis') {
    return json(res, 200, {
      kind: 'APIGroupList', apiVersion: 'v1',
      groups: Object.entries(groups).map(([g, v]) => ({
        name: g,
        versions: [{ groupVersion: `${g}/${v.version}`, version: v.version }],
        preferredVersion: { groupVersion: `${g}/${v.version}`, version: v.version },
      })),
    }), true;
  }
  const resourceList = (gv, list) => ({
    kind: 'APIResourceList', apiVersion: 'v1', groupVersion: gv,
    resources: list.map(([name, r]) => ({
      name, singularName: r.singular, namespaced: true, kind: r.kind,
      verbs: ['get', 'list', 'watch'], shortNames: r.shortNames,
    })),
  });
  if (path === '/api/v1') {
    return json(res, 200, resourceList('v1', Object.entries(RESOURCES).filter(([, r]) => !r.group))), true;
  }
  for (const [g, v] of Object.entries(groups)) {
    if (path === `/apis/${g}/${v.version}`) return json(res, 200, resourceList(`${g}/${v.version}`, v.resources)), true;
    if (path === `/apis/${g}`) {
      const gv = { groupVersion: `${g}/${v.version}`, version: v.version };
      return json(res, 200, { kind: 'APIGroup', apiVersion: 'v1', name: g, versions: [gv], preferredVersion: gv }), true;
    }
  }
  return false;
}

// Parses a resource path: {resource, ns, name} or null.
function route(path) {
  for (const [resource, r] of Object.entries(RESOURCES)) {
    const base = r.group ? `/apis/${r.group}/${r.version}` : `/api/${r.version}`;
    if (path === `${base}/${resource}`) return { resource, ns: '', name: '' };
    const m = path.match(new RegExp(`^${base.replace(/\./g, '\\.')}/namespaces/([^/]+)/${resource}(?:/([^/]+))?$`));
    if (m) return { resource, ns: decodeURIComponent(m[1]), name: m[2] ? decodeURIComponent(m[2]) : '' };
  }
  return null;
}

function serveResource(req, res, rt, q) {
  const r = RESOURCES[rt.resource];
  if (rt.name) {
    count(`get ${rt.resource}`);
    const obj = store.get(`${rt.resource}/${rt.ns}/${rt.name}`);
    if (!obj) return json(res, 404, status(404, 'NotFound', `${rt.resource} "${rt.name}" not found`));
    return json(res, 200, obj);
  }
  let labels, fields;
  try {
    labels = parseLabelSelector(q.get('labelSelector'));
    fields = parseFieldSelector(q.get('fieldSelector'));
  } catch (err) {
    return json(res, 400, status(400, 'BadRequest', err.message));
  }
  const selected = () => [...store.entries()]
    .filter(([k]) => k.startsWith(`${rt.resource}/`))
    .map(([, o]) => o)
    .filter((o) => (!rt.ns || o.metadata.namespace === rt.ns) && labelsMatch(labels, o) && fieldsMatch(fields, o))
    .sort((a, b) => (a.metadata.namespace + '/' + a.metadata.name).localeCompare(b.metadata.namespace + '/' + b.metadata.name));
  const watch = q.get('watch') === '1' || q.get('watch') === 'true';
  if (!watch) {
    count(`list ${rt.resource}`);
    if (wantsTable(req, rt.resource)) return json(res, 200, podTable(selected(), revision));
    return json(res, 200, {
      kind: `${r.kind}List`, apiVersion: apiVersionOf(r),
      metadata: { resourceVersion: String(revision) }, items: selected(),
    });
  }
  count(`watch ${rt.resource}`);
  res.writeHead(200, { 'content-type': 'application/json', 'transfer-encoding': 'chunked' });
  res.flushHeaders();
  const w = {
    resource: rt.resource, ns: rt.ns, labels, fields, res, closed: false, table: wantsTable(req, rt.resource),
  };
  const rvText = q.get('resourceVersion');
  if (rvText && rvText !== '0') {
    const rv = Number(rvText);
    if (!Number.isFinite(rv) || rv < oldestRetained()) {
      count(`watch410 ${rt.resource}`);
      send(w, {
        type: 'ERROR',
        object: status(410, 'Expired', `too old resource version: ${rvText} (${oldestRetained()})`),
      });
      res.end();
      return;
    }
    for (const ev of history) if (ev.rv > rv) deliver(w, ev);
  } else {
    for (const o of selected()) send(w, { type: 'ADDED', object: o });
  }
  watches.add(w);
  if (q.get('allowWatchBookmarks') === 'true') {
    w.bookmarkTimer = setInterval(() => bookmark(w), opts.bookmarkMs);
    w.bookmarks = true;
  }
  const timeout = Number(q.get('timeoutSeconds') || 0);
  if (timeout > 0) w.timeoutTimer = setTimeout(() => endWatch(w), timeout * 1000);
  req.on('close', () => endWatch(w));
}

async function control(req, res, path) {
  if (path === '/_test/stats' && req.method === 'GET') {
    return json(res, 200, { resourceVersion: String(revision), watches: watches.size, requests: stats });
  }
  if (req.method !== 'POST') return json(res, 405, status(405, 'MethodNotAllowed', 'POST only'));
  let body;
  try { body = await readBody(req); } catch (err) { return json(res, 400, status(400, 'BadRequest', err.message)); }
  try {
    if (path === '/_test/apply') return json(res, 200, applyObject(body.resource, body.object));
    if (path === '/_test/delete') {
      const obj = deleteObject(body.resource, body.namespace, body.name);
      return obj ? json(res, 200, obj) : json(res, 404, status(404, 'NotFound', `${body.name} not found`));
    }
    if (path === '/_test/compact') {
      // Every version a client holds now is too old; with drop_watches the open watches end
      // (as at a watch timeout), so their clients come back with an old version and get 410.
      compactedBelow = revision + 1;
      trimHistory();
      if (body.drop_watches) for (const w of [...watches]) endWatch(w);
      return json(res, 200, { compactedBelow });
    }
    if (path === '/_test/window') {
      opts.window = Number(body.events);
      trimHistory();
      return json(res, 200, { window: opts.window });
    }
    if (path === '/_test/bookmark') {
      for (const w of watches) if (w.bookmarks) bookmark(w);
      return json(res, 200, { watches: watches.size });
    }
    if (path === '/_test/restart') {
      json(res, 200, { down_ms: Number(body.down_ms || 0) });
      res.on('finish', () => restart(Number(body.down_ms || 0)));
      return undefined;
    }
  } catch (err) {
    return json(res, 400, status(400, 'BadRequest', err.message));
  }
  return json(res, 404, status(404, 'NotFound', `no control ${path}`));
}

let server;
let port = opts.port;

function handler(req, res) {
  const url = new URL(req.url, 'http://127.0.0.1');
  const path = url.pathname.replace(/\/+$/, '') || '/';
  if (path.startsWith('/_test/')) {
    control(req, res, path).catch((err) => json(res, 500, status(500, 'InternalError', err.message)));
    return;
  }
  if (opts.token && req.headers.authorization !== `Bearer ${opts.token}`) {
    count('unauthorized');
    return json(res, 401, status(401, 'Unauthorized', 'Unauthorized'));
  }
  if (req.method !== 'GET') return json(res, 405, status(405, 'MethodNotAllowed', `${req.method} is not served`));
  if (discovery(res, path, port)) return undefined;
  const rt = route(path);
  if (!rt) return json(res, 404, status(404, 'NotFound', 'the server could not find the requested resource'));
  return serveResource(req, res, rt, url.searchParams);
}

function listen(onReady) {
  server = opts.tlsCert
    ? https.createServer({ cert: fs.readFileSync(opts.tlsCert), key: fs.readFileSync(opts.tlsKey) }, handler)
    : http.createServer(handler);
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  server.listen(port, '127.0.0.1', () => {
    port = server.address().port;
    onReady?.();
  });
}

// Like an API server process restarting: every connection dropped (watches end mid-stream),
// nothing listening for `downMs`, then the same port and the same stored state (etcd survives).
function restart(downMs) {
  for (const w of [...watches]) { w.closed = true; clearInterval(w.bookmarkTimer); clearTimeout(w.timeoutTimer); watches.delete(w); }
  server.close();
  for (const s of sockets) s.destroy();
  setTimeout(() => listen(), downMs);
}

listen(() => process.stdout.write(`LISTENING ${port}\n`));
if (opts.exitOnStdinClose) {
  process.stdin.resume();
  process.stdin.on('end', () => process.exit(0));
}
