// ConfigMap and Secret changes canaried end to end: the real webhook holds a
// config's data change, the real reconciler (own identity, shipped RBAC)
// labels the configs a Deployment references, runs the change in the canary
// copy through `<config>-canary` copies, and promotes it (configs first,
// then the primary's template) or rolls it back (live untouched). Pods are
// kwok Pods: the tests assert on objects, not on served content.

import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { CONFIG_REVISION_ANNOTATION, MANAGED_LABEL, PENDING_REVISION, PENDING_SPEC } from '../../core/contract.js';
import type { Canary } from '../../core/api/types.js';
import { applyAsUser as applyJson, cliPath, getObject as get, kubeconfigPath, kubectlOk, run } from './cluster.js';
import { GateServer } from './gate-server.js';
import { createNamespace, deleteNamespace } from './namespaces.js';
import { deployment, service } from './objects.js';
import { startReconciler, type RunningReconciler } from './reconciler-process.js';
import { waitFor } from './wait.js';

type PodSpec = {
  volumes?: Array<{ name: string; configMap?: { name: string; optional?: boolean } }>;
  containers: Array<{ image: string; env?: Array<{ name: string; valueFrom?: { secretKeyRef?: { name: string; key: string }; configMapKeyRef?: { name: string; key: string; optional?: boolean } } }> }>;
};
interface Deploy {
  metadata: { annotations?: Record<string, string>; labels?: Record<string, string> };
  spec: { replicas?: number; template: { metadata?: { annotations?: Record<string, string> }; spec: PodSpec } };
}
interface Config {
  metadata: { annotations?: Record<string, string>; labels?: Record<string, string>; ownerReferences?: Array<{ kind: string; name: string; uid: string; controller?: boolean }> };
  data?: Record<string, string>;
}

const b64 = (s: string) => Buffer.from(s).toString('base64');

function canary(name: string, gateUrl: string) {
  return {
    apiVersion: 'canarygate.dev/v1alpha1',
    kind: 'Canary',
    metadata: { name },
    spec: {
      targetRef: { apiVersion: 'apps/v1', kind: 'Deployment', name },
      service: { port: 80 },
      progressDeadlineSeconds: 60,
      analysis: { interval: '1s', threshold: 1, stepWeight: 50, maxWeight: 50, webhooks: [{ name: 'judge', type: 'confirm-promotion', url: gateUrl }] },
    },
  };
}

/** A Deployment whose pod template mounts ConfigMap `<name>-config` (and whatever `extra` adds). */
function deploymentWith(name: string, image: string, edit: (spec: PodSpec) => void = () => undefined) {
  const d = deployment(name, { image, replicas: 2 }) as unknown as Deploy & Record<string, unknown>;
  const spec = d.spec.template.spec;
  spec.volumes = [{ name: 'config', configMap: { name: `${name}-config` } }];
  edit(spec);
  return d;
}

function configMap(name: string, data: Record<string, string>) {
  return { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name }, data };
}

describe('ConfigMap and Secret canaries on a real control plane', function () {
  let ns: string;
  let reconciler: RunningReconciler;
  const gates = new GateServer();

  before(async function () {
    ns = await createNamespace('configs');
    await gates.start();
    reconciler = await startReconciler({ namespace: ns });
  });
  after(async function () {
    await reconciler?.stop();
    await gates.stop();
    await deleteNamespace(ns);
  });

  const canaryOf = (name: string) => get<Canary>(ns, 'canary', name);
  const phaseOf = async (name: string) => (await canaryOf(name))?.status?.phase;
  const cm = (name: string) => get<Config>(ns, 'configmap', name);

  /** The Canary, the Deployment (and its configs) and a Service; waits for adoption of all of it. */
  async function setUp(name: string, objects: unknown[], configs: Array<[string, string]>) {
    await applyJson(ns, canary(name, gates.url(`${name}-promote`)));
    for (const o of objects) await applyJson(ns, o);
    await applyJson(ns, service(name, { selector: { app: name } }));
    await waitFor(`${name} and its configs to be adopted`, async () => {
      if ((await phaseOf(name)) !== 'Initialized') return false;
      for (const [kind, config] of configs) if ((await get<Config>(ns, kind, config))?.metadata.labels?.[MANAGED_LABEL] !== 'true') return false;
      return true;
    }, { namespace: ns, timeoutMs: 30_000 });
  }

  async function startedEvents(name: string): Promise<string[]> {
    const reasons = await kubectlOk(['-n', ns, 'get', 'events', '--field-selector', `involvedObject.name=${name},involvedObject.kind=Canary`, '-o', 'jsonpath={.items[*].reason}']);
    return reasons.split(' ').filter((r) => r === 'Started' || r === 'Restarted');
  }

  it('holds a mounted ConfigMap change, runs it in the copy through <cm>-canary, and promotes it into the live ConfigMap and then the primary template', async function () {
    const name = 'mounted';
    gates.answer(`${name}-promote`, 403);
    await setUp(name, [configMap(`${name}-config`, { 'app.conf': 'colour=blue' }), deploymentWith(name, 'example.test/mounted:1')], [['configmap', `${name}-config`]]);
    const before = await get<Deploy>(ns, 'deployment', name);

    await applyJson(ns, configMap(`${name}-config`, { 'app.conf': 'colour=green' }));
    const held = await cm(`${name}-config`);
    assert.equal(held?.data?.['app.conf'], 'colour=blue', 'the live ConfigMap keeps its data while the change is held');
    assert.ok(held?.metadata.annotations?.[PENDING_REVISION]);

    await waitFor('the run to wait for promotion', async () => (await phaseOf(name)) === 'WaitingPromotion', { namespace: ns, timeoutMs: 30_000 });
    const copy = await get<Deploy>(ns, 'deployment', `${name}-canary`);
    assert.deepEqual(copy?.spec.template.spec.volumes?.map((v) => v.configMap?.name), [`${name}-config-canary`], 'the canary copy reads the copy of the ConfigMap');
    const copied = await cm(`${name}-config-canary`);
    assert.equal(copied?.data?.['app.conf'], 'colour=green', 'the copy holds the pending data');
    const c = await canaryOf(name);
    assert.ok(copied?.metadata.ownerReferences?.some((o) => o.kind === 'Canary' && o.uid === c?.metadata.uid && o.controller), 'the copy is controlled by the Canary');
    const primary = await get<Deploy>(ns, 'deployment', name);
    assert.deepEqual(primary?.spec.template, before?.spec.template, 'the primary is untouched during the run');
    assert.equal((await cm(`${name}-config`))?.data?.['app.conf'], 'colour=blue');

    gates.answer(`${name}-promote`, 200);
    await waitFor('Succeeded', async () => (await phaseOf(name)) === 'Succeeded', { namespace: ns, timeoutMs: 60_000 });
    const live = await cm(`${name}-config`);
    assert.equal(live?.data?.['app.conf'], 'colour=green', 'promotion wrote the pending data into the live ConfigMap');
    assert.equal(live?.metadata.annotations?.[PENDING_REVISION], undefined);
    assert.equal(live?.metadata.annotations?.[PENDING_SPEC], undefined);
    const promoted = await get<Deploy>(ns, 'deployment', name);
    assert.ok(promoted?.spec.template.metadata?.annotations?.[CONFIG_REVISION_ANNOTATION], 'the primary template names the promoted config revision, so its Pods roll');
    assert.equal(promoted?.spec.template.spec.volumes?.[0]?.configMap?.name, `${name}-config`, 'the primary keeps reading the live ConfigMap');
    await waitFor('the ConfigMap copy to be removed', async () => (await cm(`${name}-config-canary`)) === undefined, { namespace: ns });
    assert.deepEqual(await startedEvents(name), ['Started'], 'one run');

    // GitOps applies the same manifests again: nothing is held, no new run.
    await applyJson(ns, configMap(`${name}-config`, { 'app.conf': 'colour=green' }));
    await applyJson(ns, deploymentWith(name, 'example.test/mounted:1'));
    assert.equal((await cm(`${name}-config`))?.metadata.annotations?.[PENDING_REVISION], undefined);
    await new Promise((r) => setTimeout(r, 2500));
    assert.equal(await phaseOf(name), 'Succeeded');
    assert.deepEqual(await startedEvents(name), ['Started'], 'still one run');
  });

  it('rolls a failed ConfigMap change back: live ConfigMap and primary untouched, copies gone, the failed revision not retried until `canary-gate retry`', async function () {
    const name = 'rollback';
    gates.answer(`${name}-promote`, 403);
    await applyJson(ns, canary(name, gates.url(`${name}-promote`)));
    // A rollout gate that fails: threshold 1 rolls back at the first step.
    await kubectlOk(['-n', ns, 'patch', 'canary', name, '--type=merge', '-p', JSON.stringify({ spec: { analysis: { webhooks: [{ name: 'smoke', type: 'rollout', url: gates.url(`${name}-smoke`) }] } } })]);
    gates.answer(`${name}-smoke`, 500);
    await setUp(name, [configMap(`${name}-config`, { 'app.conf': 'v1' }), deploymentWith(name, 'example.test/rollback:1')], [['configmap', `${name}-config`]]);
    const before = await get<Deploy>(ns, 'deployment', name);

    await applyJson(ns, configMap(`${name}-config`, { 'app.conf': 'v2-bad' }));
    await waitFor('Failed', async () => (await phaseOf(name)) === 'Failed', { namespace: ns, timeoutMs: 60_000 });
    const live = await cm(`${name}-config`);
    assert.equal(live?.data?.['app.conf'], 'v1');
    assert.ok(live?.metadata.annotations?.[PENDING_REVISION], 'the change stays pending: nothing is lost');
    assert.deepEqual((await get<Deploy>(ns, 'deployment', name))?.spec.template, before?.spec.template, 'the primary is untouched');
    await waitFor('the ConfigMap copy to be removed', async () => (await cm(`${name}-config-canary`)) === undefined, { namespace: ns });
    const failed = (await canaryOf(name))?.status?.failedRevision;
    assert.ok(failed);

    // GitOps re-applies the same ConfigMap: the failed revision does not start again.
    const calls = gates.callsTo(`${name}-smoke`).length;
    await applyJson(ns, configMap(`${name}-config`, { 'app.conf': 'v2-bad' }));
    await new Promise((r) => setTimeout(r, 3000));
    assert.equal(await phaseOf(name), 'Failed');
    assert.equal(gates.callsTo(`${name}-smoke`).length, calls, 'no check ran again');

    // `canary-gate retry` runs it again.
    gates.answer(`${name}-smoke`, 200);
    gates.answer(`${name}-promote`, 200);
    const retry = await run(process.execPath, [cliPath, 'retry', '-n', ns, name], { env: { ...process.env, KUBECONFIG: kubeconfigPath } });
    assert.equal(retry.code, 0, retry.stderr);
    await waitFor('the retried run to be promoted', async () => (await phaseOf(name)) === 'Succeeded', { namespace: ns, timeoutMs: 60_000 });
    assert.equal((await cm(`${name}-config`))?.data?.['app.conf'], 'v2-bad');
    assert.equal((await canaryOf(name))?.status?.lastPromotedRevision, failed, 'the same revision, retried');
  });

  it('canaries an env-var Secret: the copy reads <secret>-canary, promotion writes the live Secret', async function () {
    const name = 'envsecret';
    gates.answer(`${name}-promote`, 403);
    const secret = (token: string) => ({ apiVersion: 'v1', kind: 'Secret', type: 'Opaque', metadata: { name: `${name}-token` }, data: { token: b64(token) } });
    const d = deploymentWith(name, 'example.test/envsecret:1', (spec) => {
      spec.volumes = [];
      (spec.containers[0] as PodSpec['containers'][number]).env = [{ name: 'TOKEN', valueFrom: { secretKeyRef: { name: `${name}-token`, key: 'token' } } }];
    });
    await setUp(name, [secret('old-token'), d], [['secret', `${name}-token`]]);

    await applyJson(ns, secret('new-token'));
    assert.equal((await get<Config>(ns, 'secret', `${name}-token`))?.data?.token, b64('old-token'));
    await waitFor('the run to wait for promotion', async () => (await phaseOf(name)) === 'WaitingPromotion', { namespace: ns, timeoutMs: 30_000 });
    const copy = await get<Deploy>(ns, 'deployment', `${name}-canary`);
    assert.equal(copy?.spec.template.spec.containers[0]?.env?.[0]?.valueFrom?.secretKeyRef?.name, `${name}-token-canary`);
    assert.equal((await get<Config>(ns, 'secret', `${name}-token-canary`))?.data?.token, b64('new-token'));

    gates.answer(`${name}-promote`, 200);
    await waitFor('Succeeded', async () => (await phaseOf(name)) === 'Succeeded', { namespace: ns, timeoutMs: 60_000 });
    assert.equal((await get<Config>(ns, 'secret', `${name}-token`))?.data?.token, b64('new-token'));
    await waitFor('the Secret copy to be removed', async () => (await get<Config>(ns, 'secret', `${name}-token-canary`)) === undefined, { namespace: ns });
    // The reconciler's log never carries the Secret's values.
    const log = await run('cat', [path.join(path.dirname(kubeconfigPath), 'logs', `reconciler-${reconciler.identity}.log`)]);
    assert.ok(!log.stdout.includes(b64('new-token')) && !log.stdout.includes('new-token'), 'no Secret value in the log');
  });

  it('runs a Deployment and its ConfigMap changed in one `kubectl apply -f` as one run', async function () {
    const name = 'together';
    gates.answer(`${name}-promote`, 403);
    await setUp(name, [configMap(`${name}-config`, { 'app.conf': 'a' }), deploymentWith(name, 'example.test/together:1')], [['configmap', `${name}-config`]]);

    const file = path.join(os.tmpdir(), `canary-gate-${ns}-together.yaml`);
    writeFileSync(file, [deploymentWith(name, 'example.test/together:2'), configMap(`${name}-config`, { 'app.conf': 'b' })].map((o) => JSON.stringify(o)).join('\n---\n'));
    await kubectlOk(['-n', ns, 'apply', '--server-side', '--field-manager=e2e-user', '-f', file]);

    await waitFor('the run to wait for promotion', async () => (await phaseOf(name)) === 'WaitingPromotion', { namespace: ns, timeoutMs: 30_000 });
    const copy = await get<Deploy>(ns, 'deployment', `${name}-canary`);
    assert.equal(copy?.spec.template.spec.containers[0]?.image, 'example.test/together:2');
    assert.equal(copy?.spec.template.spec.volumes?.[0]?.configMap?.name, `${name}-config-canary`);
    assert.equal((await cm(`${name}-config-canary`))?.data?.['app.conf'], 'b');
    assert.deepEqual(await startedEvents(name), ['Started'], 'one start, no restart');

    gates.answer(`${name}-promote`, 200);
    await waitFor('Succeeded', async () => (await phaseOf(name)) === 'Succeeded', { namespace: ns, timeoutMs: 60_000 });
    const primary = await get<Deploy>(ns, 'deployment', name);
    assert.equal(primary?.spec.template.spec.containers[0]?.image, 'example.test/together:2');
    assert.ok(primary?.spec.template.metadata?.annotations?.[CONFIG_REVISION_ANNOTATION]);
    assert.equal(primary?.metadata.annotations?.[PENDING_REVISION], undefined);
    assert.equal((await cm(`${name}-config`))?.data?.['app.conf'], 'b');
    assert.deepEqual(await startedEvents(name), ['Started'], 'one run from start to promotion');
  });

  it('never touches a user\'s own <cm>-canary: the run is held with NameTaken, and goes on once the name is free', async function () {
    const name = 'taken';
    gates.answer(`${name}-promote`, 200);
    await setUp(name, [configMap(`${name}-config`, { k: 'v1' }), deploymentWith(name, 'example.test/taken:1')], [['configmap', `${name}-config`]]);
    await applyJson(ns, configMap(`${name}-config-canary`, { mine: 'yes' }));

    await applyJson(ns, configMap(`${name}-config`, { k: 'v2' }));
    await waitFor('NameTaken', async () => (await canaryOf(name))?.status?.conditions?.find((x) => x.type === 'NameTaken')?.status === 'True', { namespace: ns, timeoutMs: 30_000 });
    const mine = await cm(`${name}-config-canary`);
    assert.deepEqual(mine?.data, { mine: 'yes' }, "the user's object keeps its data");
    assert.equal(mine?.metadata.ownerReferences, undefined, 'and gets no owner');
    assert.equal(await get(ns, 'deployment', `${name}-canary`), undefined, 'no canary copy reads it');
    await new Promise((r) => setTimeout(r, 12_000)); // longer than a look-up lives: the condition does not flap
    assert.equal((await canaryOf(name))?.status?.conditions?.find((x) => x.type === 'NameTaken')?.status, 'True');
    assert.equal((await cm(`${name}-config`))?.data?.k, 'v1', 'nothing promoted');

    await kubectlOk(['-n', ns, 'delete', 'configmap', `${name}-config-canary`]);
    await waitFor('the run to be promoted once the name is free', async () => (await phaseOf(name)) === 'Succeeded', { namespace: ns, timeoutMs: 60_000 });
    assert.equal((await cm(`${name}-config`))?.data?.k, 'v2');
  });

  it('reports a missing ConfigMap on the Canary (condition and Warning Event), ignores a missing optional one, and clears it once created', async function () {
    const name = 'missing';
    const d = deploymentWith(name, 'example.test/missing:1', (spec) => {
      (spec.containers[0] as PodSpec['containers'][number]).env = [{ name: 'OPT', valueFrom: { configMapKeyRef: { name: `${name}-optional`, key: 'k', optional: true } } }];
    });
    await applyJson(ns, canary(name, gates.url(`${name}-promote`)));
    await applyJson(ns, d);
    await waitFor('the missing ConfigMap to be reported', async () => {
      const cond = (await canaryOf(name))?.status?.conditions?.find((x) => x.type === 'ConfigMissing');
      return cond?.status === 'True' && cond.message.includes(`ConfigMap ${ns}/${name}-config`) && !cond.message.includes(`${name}-optional`);
    }, { namespace: ns, timeoutMs: 30_000 });
    const events = await kubectlOk(['-n', ns, 'get', 'events', '--field-selector', `involvedObject.name=${name},involvedObject.kind=Canary,type=Warning`, '-o', 'jsonpath={.items[*].reason}']);
    assert.match(events, /ConfigMissing/);
    assert.ok(reconciler.exited() === false, 'the reconciler keeps running');

    await applyJson(ns, configMap(`${name}-config`, { k: 'v' }));
    await waitFor('the condition to clear and the ConfigMap to be tracked', async () => {
      const cond = (await canaryOf(name))?.status?.conditions?.find((x) => x.type === 'ConfigMissing');
      return cond?.status === 'False' && (await cm(`${name}-config`))?.metadata.labels?.[MANAGED_LABEL] === 'true';
    }, { namespace: ns, timeoutMs: 30_000 });
    await new Promise((r) => setTimeout(r, 2500));
    const after = await kubectlOk(['-n', ns, 'get', 'events', '--field-selector', `involvedObject.name=${name},involvedObject.kind=Canary`, '-o', 'jsonpath={.items[*].reason}']);
    assert.doesNotMatch(after, /WebhookBypassed/, 'a config created later is adopted, not reported as a change past the webhook');
    assert.equal((await canaryOf(name))?.status?.phase, 'Initialized', 'and starts no run');
  });
});
