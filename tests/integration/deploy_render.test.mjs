// deploy_render.test.mjs — issue 14: deploy/kubernetes renders with `kubectl kustomize` (Debian's
// kubernetes-client, or any kubectl on PATH), and each overlay's objects say what the docs say:
// the gateway Deployment with its probes, config and discovery of the example InferencePool; the
// RBAC the discovery needs; the async processor; the vLLM example; in the standalone overlay a
// LoadBalancer on 8080, in the gie overlay the EPP Service that the InferencePool's
// endpointPickerRef names, reaching the gateway's --ext-proc-port, and a route to the pool.
// The rendered YAML is read with /usr/bin/python3's yaml module (Debian's python3-yaml).
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { REPO_ROOT } from './lib.mjs';

const PY = fs.existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3';
const T = { timeout: 20_000 };

function render(overlay) {
  const yaml = execFileSync('kubectl', ['kustomize', path.join(REPO_ROOT, 'deploy', 'kubernetes', 'overlays', overlay)],
    { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 15000 });
  const json = execFileSync(PY, ['-c',
    'import json, sys, yaml; json.dump([d for d in yaml.safe_load_all(sys.stdin) if d], sys.stdout)'],
  { input: yaml, encoding: 'utf8', timeout: 15000 });
  const objects = JSON.parse(json);
  const find = (kind, name) => {
    const o = objects.find((x) => x.kind === kind && x.metadata.name === name);
    assert.ok(o, `${overlay}: a ${kind} ${name} (have ${objects.map((x) => `${x.kind}/${x.metadata.name}`).join(', ')})`);
    return o;
  };
  return { objects, find };
}

const container = (deploy, name) => {
  const c = deploy.spec.template.spec.containers.find((x) => x.name === name);
  assert.ok(c, `${deploy.metadata.name} has a container ${name}`);
  return c;
};

const portNumber = (c, nameOrNumber) => (typeof nameOrNumber === 'number' ? nameOrNumber
  : c.ports.find((p) => p.name === nameOrNumber)?.containerPort);

// What both overlays share.
function checkCommon(overlay, { objects, find }) {
  const ns = find('Namespace', 'llm');
  assert.ok(ns);
  for (const o of objects) {
    if (o.kind !== 'Namespace') assert.equal(o.metadata.namespace, 'llm', `${o.kind}/${o.metadata.name} in llm`);
  }
  // The gateway: probes on the public port, admin listener on the pod address, its config.
  const gw = find('Deployment', 'tidegate-gateway');
  const pod = gw.spec.template.spec;
  assert.equal(pod.serviceAccountName, 'tidegate');
  const c = container(gw, 'gateway');
  assert.equal(c.args[0], 'serve');
  assert.ok(c.args.includes('--admin-address=0.0.0.0:9090'), c.args.join(' '));
  assert.equal(c.readinessProbe.httpGet.path, '/readyz');
  assert.equal(c.livenessProbe.httpGet.path, '/healthz');
  assert.equal(portNumber(c, c.readinessProbe.httpGet.port), 8080);
  assert.equal(portNumber(c, 'admin'), 9090);
  const configArg = c.args.find((a) => a.startsWith('--config='));
  assert.ok(configArg, 'the gateway reads a config file');
  const configDir = path.dirname(configArg.slice('--config='.length));
  const mount = c.volumeMounts.find((m) => m.mountPath === configDir);
  assert.ok(mount, `a volume is mounted at ${configDir}`);
  const vol = pod.volumes.find((v) => v.name === mount.name);
  const cm = find('ConfigMap', vol.configMap.name);  // the generated (hashed) name is wired in
  const gatewayYaml = cm.data[path.basename(configArg)];
  assert.ok(gatewayYaml, `ConfigMap ${cm.metadata.name} holds ${path.basename(configArg)}`);
  const config = JSON.parse(execFileSync(PY, ['-c', 'import json, sys, yaml; json.dump(yaml.safe_load(sys.stdin), sys.stdout)'],
    { input: gatewayYaml, encoding: 'utf8' }));
  assert.equal(config.discovery.type, 'kubernetes');
  const pool = find('InferencePool', config.discovery.pool);  // the config names the example pool
  assert.equal(pool.apiVersion, 'inference.networking.k8s.io/v1');
  assert.deepEqual(pool.spec.targetPorts, [{ number: 8000 }]);
  // The pool selects the vLLM pods, which serve on its target port.
  const vllm = objects.find((o) => o.kind === 'Deployment' &&
    Object.entries(pool.spec.selector.matchLabels).every(([k, v]) => o.spec.template.metadata.labels?.[k] === v));
  assert.ok(vllm, 'a Deployment whose pods the InferencePool selects');
  const vc = vllm.spec.template.spec.containers[0];
  assert.ok(vc.args.includes('--port=8000'), vc.args.join(' '));
  assert.equal(portNumber(vc, 'http'), 8000);

  // RBAC: get, list and watch on pods, inferencepools and inferenceobjectives, bound to the
  // gateway's service account.
  const role = find('Role', 'tidegate-discovery');
  const allowed = (group, resource) => role.rules.some((r) => r.apiGroups.includes(group) &&
    r.resources.includes(resource) && ['get', 'list', 'watch'].every((v) => r.verbs.includes(v)));
  assert.ok(allowed('', 'pods'));
  assert.ok(allowed('inference.networking.k8s.io', 'inferencepools'));
  assert.ok(allowed('llm-d.ai', 'inferenceobjectives'));
  for (const r of role.rules) {
    assert.deepEqual([...r.verbs].sort(), ['get', 'list', 'watch'], 'read-only');
  }
  const binding = find('RoleBinding', 'tidegate-discovery');
  assert.equal(binding.roleRef.name, 'tidegate-discovery');
  assert.deepEqual(binding.subjects.map((s) => `${s.kind}/${s.name}`), ['ServiceAccount/tidegate']);
  find('ServiceAccount', 'tidegate');

  // The async processor, sending through the gateway's Service.
  const asyncDeploy = find('Deployment', 'tidegate-async');
  assert.equal(container(asyncDeploy, 'async').args[0], 'async');
  const gwSvc = find('Service', 'tidegate-gateway');
  assert.ok(gwSvc.spec.ports.some((p) => p.port === 8080), 'the gateway Service serves 8080');
  assert.deepEqual(gwSvc.spec.selector, gw.spec.template.metadata.labels);
  return { gw, c, pool, gwSvc };
}

describe('deploy/kubernetes renders', () => {
  it('overlays/standalone: tidegate is the gateway', T, () => {
    const r = render('standalone');
    const { gwSvc, c } = checkCommon('standalone', r);
    assert.equal(gwSvc.spec.type, 'LoadBalancer');
    assert.deepEqual(gwSvc.spec.ports.map((p) => p.port), [8080], 'only the public port is exposed');
    assert.ok(!c.args.some((a) => a.startsWith('--ext-proc-port')), 'no ext_proc listener');
    assert.equal(r.find('Service', 'tidegate-gateway-admin').spec.type, 'ClusterIP');
    assert.ok(!r.objects.some((o) => o.kind === 'HTTPRoute'));
  });

  it('overlays/gie: tidegate is the EPP the InferencePool names, behind a Gateway', T, () => {
    const r = render('gie');
    const { c, pool, gw } = checkCommon('gie', r);
    assert.ok(c.args.includes('--ext-proc-port=9002'), c.args.join(' '));
    const ref = pool.spec.endpointPickerRef;
    assert.equal(ref.kind, 'Service');
    const epp = r.find('Service', ref.name);
    const sp = epp.spec.ports.find((p) => p.port === ref.port.number);
    assert.ok(sp, `Service ${ref.name} serves the port the pool names (${ref.port.number})`);
    assert.deepEqual(epp.spec.selector, gw.spec.template.metadata.labels, 'the EPP Service reaches the gateway pods');
    assert.equal(portNumber(c, sp.targetPort), 9002, 'and their ext_proc port');
    assert.ok(['FailOpen', 'FailClose'].includes(ref.failureMode));
    const route = r.find('HTTPRoute', 'llm-route');
    const gateway = r.find('Gateway', route.spec.parentRefs[0].name);
    assert.ok(gateway.spec.gatewayClassName);
    assert.deepEqual(route.spec.rules[0].backendRefs[0],
      { group: 'inference.networking.k8s.io', kind: 'InferencePool', name: pool.metadata.name });
  });
});
