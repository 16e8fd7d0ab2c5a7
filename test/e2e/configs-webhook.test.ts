// The webhook holding ConfigMap and Secret data changes on a real API
// server: what users apply, what stays live, what is held as the pending
// revision, and what goes straight through (TLS renewals, configs annotated
// disabled, unmanaged configs). Only the webhook runs here; promotion is the
// reconciler's (see its own tests).

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import {
  CONFIG_TRACKING_ANNOTATION,
  CONFIG_TRACKING_DISABLED,
  CONFIG_TRACKING_ENABLED,
  MANAGED_LABEL,
  PENDING_REVISION,
  PENDING_SPEC,
} from '../../core/contract.js';
import { revisionOf } from '../../core/revision.js';
import { clusterDir, getObject, kubectl } from './cluster.js';
import { createNamespace, deleteNamespace } from './namespaces.js';
import { RECONCILER_USER } from './webhook-process.js';

interface Config {
  metadata: { annotations?: Record<string, string>; labels?: Record<string, string>; resourceVersion: string };
  data?: Record<string, string>;
  binaryData?: Record<string, string>;
  stringData?: Record<string, string>;
  type?: string;
}

/** A value that must never reach the webhook's log. */
const SECRET_VALUE = `e2e-secret-${Date.now().toString(36)}`;

function b64(s: string): string {
  return Buffer.from(s).toString('base64');
}

function configMap(name: string, data: Record<string, string>, opts: { managed?: boolean; binaryData?: Record<string, string>; annotations?: Record<string, string>; immutable?: boolean } = {}) {
  return {
    apiVersion: 'v1',
    kind: 'ConfigMap',
    metadata: {
      name,
      labels: opts.managed === false ? { app: name } : { app: name, [MANAGED_LABEL]: 'true' },
      ...(opts.annotations ? { annotations: opts.annotations } : {}),
    },
    data,
    ...(opts.binaryData ? { binaryData: opts.binaryData } : {}),
    ...(opts.immutable ? { immutable: true } : {}),
  };
}

function secret(name: string, contents: { data?: Record<string, string>; stringData?: Record<string, string> }, type = 'Opaque') {
  return { apiVersion: 'v1', kind: 'Secret', type, metadata: { name, labels: { app: name, [MANAGED_LABEL]: 'true' } }, ...contents };
}

/** Server-side apply as a user would. */
function apply(ns: string, obj: unknown, extra: string[] = []) {
  return kubectl(['-n', ns, 'apply', '--server-side', '--field-manager=e2e-user', ...extra, '-f', '-'], { input: JSON.stringify(obj) });
}

async function applyOk(ns: string, obj: unknown): Promise<string> {
  const r = await apply(ns, obj);
  assert.equal(r.code, 0, r.stderr);
  return r.stderr;
}

async function get(ns: string, kind: 'configmap' | 'secret', name: string): Promise<Config> {
  const obj = await getObject<Config>(ns, kind, name);
  assert.ok(obj, `${kind} ${name} exists`);
  return obj;
}

/** Admission reviews the suite's webhook has answered so far, whatever the decision. */
async function reviewsAnswered(): Promise<number> {
  const port = process.env.CANARY_GATE_E2E_WEBHOOK_METRICS_PORT;
  assert.ok(port, 'the e2e fixtures started a webhook');
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`, { signal: AbortSignal.timeout(5000) })).text();
  let total = 0;
  for (const m of text.matchAll(/^canary_gate_webhook_requests_total\{[^}]*\} (\d+)$/gm)) total += Number(m[1]);
  return total;
}

function pending(obj: Config): { revision?: string; spec?: unknown } {
  const a = obj.metadata.annotations ?? {};
  return { revision: a[PENDING_REVISION], spec: a[PENDING_SPEC] === undefined ? undefined : JSON.parse(a[PENDING_SPEC]) };
}

describe('webhook: ConfigMap and Secret data on a real API server', function () {
  let ns: string;

  before(async function () {
    ns = await createNamespace('wh-configs');
  });
  after(async function () {
    await deleteNamespace(ns);
  });

  it('holds a managed ConfigMap data change: live data unchanged, pending revision and spec set, kubectl warns', async function () {
    await applyOk(ns, configMap('app-config', { LOG_LEVEL: 'info' }));
    const warning = await applyOk(ns, configMap('app-config', { LOG_LEVEL: 'debug' }));
    assert.match(warning, /Warning: canary-gate: change held as pending revision [0-9a-f]{12}/);
    const live = await get(ns, 'configmap', 'app-config');
    assert.deepEqual(live.data, { LOG_LEVEL: 'info' });
    assert.deepEqual(pending(live), { revision: revisionOf({ data: { LOG_LEVEL: 'debug' } }), spec: { data: { LOG_LEVEL: 'debug' } } });
  });

  it('holds a binaryData change', async function () {
    await applyOk(ns, configMap('logo', { a: '1' }, { binaryData: { 'logo.png': b64('v1') } }));
    await applyOk(ns, configMap('logo', { a: '1' }, { binaryData: { 'logo.png': b64('v2') } }));
    const live = await get(ns, 'configmap', 'logo');
    assert.deepEqual(live.binaryData, { 'logo.png': b64('v1') });
    assert.deepEqual(pending(live).spec, { data: { a: '1' }, binaryData: { 'logo.png': b64('v2') } });
  });

  it('holds a Secret data change and a stringData change alike; the value never reaches the webhook log', async function () {
    await applyOk(ns, secret('db', { data: { password: b64('old') } }));
    await applyOk(ns, secret('db', { data: { password: b64(`${SECRET_VALUE}-data`) } }));
    let live = await get(ns, 'secret', 'db');
    assert.deepEqual(live.data, { password: b64('old') });
    assert.deepEqual(pending(live).spec, { data: { password: b64(`${SECRET_VALUE}-data`) } });

    // stringData: the API server merges it into data (base64) before
    // admission; the webhook's review carries no stringData (seen on
    // kube-apiserver v1.35 for server-side apply, client-side apply and a
    // merge patch), so this is held as a data change.
    await applyOk(ns, secret('db', { stringData: { password: `${SECRET_VALUE}-string` } }));
    live = await get(ns, 'secret', 'db');
    assert.deepEqual(live.data, { password: b64('old') }, 'a stringData update is held too');
    assert.equal(live.stringData, undefined);
    assert.deepEqual(pending(live).spec, { data: { password: b64(`${SECRET_VALUE}-string`) } });

    const log = readFileSync(path.join(clusterDir, 'logs', 'webhook-e2e.log'), 'utf8');
    assert.match(log, new RegExp(`"namespace":"${ns}","name":"db"`), 'the webhook logged the reviews');
    for (const v of [SECRET_VALUE, b64(`${SECRET_VALUE}-data`), b64(`${SECRET_VALUE}-string`)]) assert.ok(!log.includes(v), `the webhook log carries ${v}`);
  });

  it('lets a TLS Secret renewal, a config annotated disabled and an unmanaged ConfigMap straight through', async function () {
    const tls = (crt: string) => secret('cert', { data: { 'tls.crt': b64(crt), 'tls.key': b64(`key-${crt}`) } }, 'kubernetes.io/tls');
    await applyOk(ns, tls('v1'));
    const answered = await reviewsAnswered();
    await applyOk(ns, tls('v2'));
    const cert = await get(ns, 'secret', 'cert');
    assert.equal(cert.data?.['tls.crt'], b64('v2'));
    assert.deepEqual(pending(cert), { revision: undefined, spec: undefined });
    assert.equal(await reviewsAnswered(), answered, 'the API server did not even call the webhook: a renewal never waits on it');

    const off = { [CONFIG_TRACKING_ANNOTATION]: CONFIG_TRACKING_DISABLED };
    await applyOk(ns, configMap('flags', { on: 'no' }, { annotations: off }));
    await applyOk(ns, configMap('flags', { on: 'yes' }, { annotations: off }));
    const flags = await get(ns, 'configmap', 'flags');
    assert.deepEqual(flags.data, { on: 'yes' });
    assert.equal(pending(flags).revision, undefined);

    await applyOk(ns, configMap('plain', { x: '1' }, { managed: false }));
    const stderr = await applyOk(ns, configMap('plain', { x: '2' }, { managed: false }));
    assert.doesNotMatch(stderr, /canary-gate/);
    const plain = await get(ns, 'configmap', 'plain');
    assert.deepEqual(plain.data, { x: '2' });
    assert.equal(plain.metadata.annotations?.[PENDING_REVISION], undefined);
  });

  it('holds a TLS Secret annotated enabled', async function () {
    const tls = (crt: string) => ({
      ...secret('tracked-cert', { data: { 'tls.crt': b64(crt), 'tls.key': b64('key') } }, 'kubernetes.io/tls'),
      metadata: { name: 'tracked-cert', labels: { [MANAGED_LABEL]: 'true' }, annotations: { [CONFIG_TRACKING_ANNOTATION]: CONFIG_TRACKING_ENABLED } },
    });
    await applyOk(ns, tls('v1'));
    await applyOk(ns, tls('v2'));
    const cert = await get(ns, 'secret', 'tracked-cert');
    assert.equal(cert.data?.['tls.crt'], b64('v1'));
    assert.deepEqual(pending(cert).spec, { data: { 'tls.crt': b64('v2'), 'tls.key': b64('key') } });
  });

  it("lets the reconciler's identity write the data (a promotion) and puts back control annotations a user forges", async function () {
    await applyOk(ns, configMap('owned', { k: 'v1' }));
    const forged = await kubectl(['-n', ns, 'annotate', 'configmap/owned', `${PENDING_REVISION}=deadbeef0000`, `${PENDING_SPEC}={"data":{"k":"evil"}}`]);
    assert.equal(forged.code, 0, forged.stderr);
    assert.deepEqual(pending(await get(ns, 'configmap', 'owned')), { revision: undefined, spec: undefined });

    // The reconciler's own RBAC for configs belongs to the reconciler side;
    // system:masters stands in for it here, the username is what the webhook judges.
    const promote = await kubectl(
      ['-n', ns, '--as', RECONCILER_USER, '--as-group', 'system:masters', 'patch', 'configmap/owned', '--type=merge', '-p', '{"data":{"k":"v2"}}'],
    );
    assert.equal(promote.code, 0, promote.stderr);
    assert.deepEqual((await get(ns, 'configmap', 'owned')).data, { k: 'v2' });
  });

  it('refuses a change too large for an annotation, saying so and what to do; nothing changes', async function () {
    await applyOk(ns, configMap('big', { small: 'yes' }));
    const before = await get(ns, 'configmap', 'big');
    const r = await apply(ns, configMap('big', { small: 'yes', large: 'x'.repeat(200 * 1024) }));
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /admission webhook "mutate.canarygate.dev" denied the request: canary-gate: the new ConfigMap data is \d+ bytes of JSON, more than the \d+ bytes/);
    assert.match(r.stderr, /configMapGenerator/);
    const after = await get(ns, 'configmap', 'big');
    assert.equal(after.metadata.resourceVersion, before.metadata.resourceVersion);
  });

  it('withdraws the pending change when the data is set back to the stable one', async function () {
    await applyOk(ns, configMap('revert', { mode: 'a' }));
    await applyOk(ns, configMap('revert', { mode: 'b' }));
    assert.ok(pending(await get(ns, 'configmap', 'revert')).revision);
    const warning = await applyOk(ns, configMap('revert', { mode: 'a' }));
    assert.match(warning, /back to the stable ConfigMap data; pending revision [0-9a-f]{12} withdrawn/);
    const live = await get(ns, 'configmap', 'revert');
    assert.deepEqual(live.data, { mode: 'a' });
    assert.deepEqual(pending(live), { revision: undefined, spec: undefined });
  });

  it('`kubectl apply --dry-run=server` shows the change held and changes nothing live', async function () {
    await applyOk(ns, configMap('dry', { k: 'v1' }));
    const before = await get(ns, 'configmap', 'dry');
    const r = await apply(ns, configMap('dry', { k: 'v2' }), ['--dry-run=server', '-o', 'json']);
    assert.equal(r.code, 0, r.stderr);
    const answer = JSON.parse(r.stdout) as Config;
    assert.deepEqual(answer.data, { k: 'v1' }, 'the dry run shows the data the webhook keeps live');
    assert.deepEqual(pending(answer).spec, { data: { k: 'v2' } });
    const after = await get(ns, 'configmap', 'dry');
    assert.equal(after.metadata.resourceVersion, before.metadata.resourceVersion);
    assert.equal(pending(after).revision, undefined);
  });

  it("keeps the API server's own refusal of a data change to an immutable ConfigMap", async function () {
    await applyOk(ns, configMap('frozen', { k: 'v1' }, { immutable: true }));
    const r = await apply(ns, configMap('frozen', { k: 'v2' }, { immutable: true }));
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /field is immutable when `immutable` is set/);
    assert.doesNotMatch(r.stderr, /canary-gate/);
    assert.deepEqual((await get(ns, 'configmap', 'frozen')).data, { k: 'v1' });
  });
});
