// The finalizer canarygate.dev/in-use on a real control plane: every
// managed ConfigMap a live primary mounts carries it. A change that
// renames the ConfigMap a Deployment mounts (what kustomize's
// configMapGenerator does with its hash suffix) is held and canaried; the
// old ConfigMap, which the stable primary still mounts, survives a delete
// (a GitOps prune) during the run, goes once the promotion rolled the
// primary onto the new name, stays (reported) after a rollback, and is
// released when the Canary goes. Real webhook, real reconciler (own
// identity, shipped RBAC); kwok Pods: the tests assert on objects.

import assert from 'node:assert/strict';
import { IN_USE_FINALIZER, MANAGED_LABEL } from '../../core/contract.js';
import type { Canary } from '../../core/api/types.js';
import { applyAsUser as applyJson, cliPath, getObject as get, kubeconfigPath, kubectl, kubectlOk, run } from './cluster.js';
import { GateServer } from './gate-server.js';
import { createNamespace, deleteNamespace } from './namespaces.js';
import { deployment, service } from './objects.js';
import { startReconciler, type RunningReconciler } from './reconciler-process.js';
import { waitFor } from './wait.js';

interface Deploy {
  spec: { template: { spec: { volumes?: Array<{ name: string; configMap?: { name: string } }> } } };
}
interface Config {
  metadata: { labels?: Record<string, string>; finalizers?: string[]; deletionTimestamp?: string };
}

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

/** A Deployment mounting ConfigMap `config`. */
function mounting(name: string, config: string) {
  const d = deployment(name, { image: `example.test/${name}:1`, replicas: 2 }) as unknown as Deploy & Record<string, unknown>;
  d.spec.template.spec.volumes = [{ name: 'config', configMap: { name: config } }];
  return d;
}

const configMap = (name: string, data: Record<string, string>) => ({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name }, data });

describe('in-use finalizer: the ConfigMap the live primary mounts survives a prune during a rename', function () {
  let ns: string;
  let reconciler: RunningReconciler;
  const gates = new GateServer();

  before(async function () {
    ns = await createNamespace('inuse');
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
  const guarded = async (name: string) => ((await cm(name))?.metadata.finalizers ?? []).includes(IN_USE_FINALIZER);
  const conditionOf = async (name: string) => (await canaryOf(name))?.status?.conditions?.find((c) => c.type === 'ConfigDeletedInUse');
  const mountedBy = async (name: string) => (await get<Deploy>(ns, 'deployment', name))?.spec.template.spec.volumes?.map((v) => v.configMap?.name);

  /** A Deployment on `<name>-aaa`, adopted; then a change onto `<name>-bbb`, held and run up to its promotion gate. */
  async function renameHeld(name: string) {
    gates.answer(`${name}-promote`, 403);
    await applyJson(ns, canary(name, gates.url(`${name}-promote`)));
    await applyJson(ns, configMap(`${name}-aaa`, { 'app.conf': 'v1' }));
    await applyJson(ns, mounting(name, `${name}-aaa`));
    await applyJson(ns, service(name, { selector: { app: name } }));
    await waitFor(`${name} and its ConfigMap to be adopted`, async () => (await phaseOf(name)) === 'Initialized' && (await cm(`${name}-aaa`))?.metadata.labels?.[MANAGED_LABEL] === 'true', { namespace: ns, timeoutMs: 30_000 });
    // Before any change arrives: a GitOps prune follows its apply at once, faster than any controller could react to the held change.
    await waitFor(`${name}-aaa, mounted by the live primary, to carry ${IN_USE_FINALIZER}`, () => guarded(`${name}-aaa`), { namespace: ns, timeoutMs: 15_000 });

    await applyJson(ns, configMap(`${name}-bbb`, { 'app.conf': 'v2' }));
    await applyJson(ns, mounting(name, `${name}-bbb`));
    assert.deepEqual(await mountedBy(name), [`${name}-aaa`], 'the rename is held');
    await waitFor('the run to wait for promotion', async () => (await phaseOf(name)) === 'WaitingPromotion', { namespace: ns, timeoutMs: 30_000 });
    assert.equal(await guarded(`${name}-aaa`), true);
    assert.equal(await guarded(`${name}-bbb`), false, 'the new ConfigMap, which no live template mounts yet, is not protected');
  }

  /** What a GitOps prune does: delete the old ConfigMap; it stays, Terminating, and the Canary says why. */
  async function prune(name: string) {
    await kubectlOk(['-n', ns, 'delete', 'configmap', `${name}-aaa`, '--wait=false']);
    const old = await cm(`${name}-aaa`);
    assert.ok(old?.metadata.deletionTimestamp, 'Terminating, not gone: the primary still mounts it');
    await waitFor('ConfigDeletedInUse=True', async () => (await conditionOf(name))?.status === 'True', { namespace: ns, timeoutMs: 15_000 });
    assert.match((await conditionOf(name))?.message ?? '', new RegExp(`ConfigMap ${ns}/${name}-aaa is being deleted while the live primary still mounts it`));
    const warnings = await kubectlOk(['-n', ns, 'get', 'events', '--field-selector', `involvedObject.name=${name},involvedObject.kind=Canary,reason=ConfigDeletedInUse`, '-o', 'jsonpath={.items[*].type}']);
    assert.equal(warnings, 'Warning');
  }

  it('a pruned old ConfigMap survives the run (Terminating) and is gone once the promotion moved the primary onto the new name', async function () {
    const name = 'promote';
    await renameHeld(name);
    await prune(name);

    gates.answer(`${name}-promote`, 200);
    await waitFor('Succeeded', async () => (await phaseOf(name)) === 'Succeeded', { namespace: ns, timeoutMs: 60_000 });
    assert.deepEqual(await mountedBy(name), [`${name}-bbb`], 'the primary runs the new name');
    await waitFor(`${name}-aaa to be gone`, async () => (await cm(`${name}-aaa`)) === undefined, { namespace: ns, timeoutMs: 15_000 });
    await waitFor('ConfigDeletedInUse=False', async () => (await conditionOf(name))?.status === 'False', { namespace: ns, timeoutMs: 15_000 });
    await waitFor(`${name}-bbb, now mounted by the live primary, to carry ${IN_USE_FINALIZER}`, () => guarded(`${name}-bbb`), { namespace: ns, timeoutMs: 15_000 });
  });

  it('after a rollback the pruned ConfigMap the live primary mounts stays, reported, until a promotion drops the reference', async function () {
    const name = 'rollback';
    await renameHeld(name);
    await prune(name);

    const abort = await run(process.execPath, [cliPath, 'abort', '-n', ns, name], { env: { ...process.env, KUBECONFIG: kubeconfigPath } });
    assert.equal(abort.code, 0, abort.stderr);
    await waitFor('Failed', async () => (await phaseOf(name)) === 'Failed', { namespace: ns, timeoutMs: 30_000 });
    await new Promise((r) => setTimeout(r, 2000));
    assert.deepEqual(await mountedBy(name), [`${name}-aaa`], 'the live primary still mounts the old name');
    assert.ok((await cm(`${name}-aaa`))?.metadata.deletionTimestamp, 'still there, Terminating');
    assert.equal(await guarded(`${name}-aaa`), true, 'the finalizer stays while the live template references it');
    assert.equal((await conditionOf(name))?.status, 'True', 'and the Canary keeps saying so');

    // The way out: promote the rename after all (or restore the object in git, once it is gone).
    gates.answer(`${name}-promote`, 200);
    const retry = await run(process.execPath, [cliPath, 'retry', '-n', ns, name], { env: { ...process.env, KUBECONFIG: kubeconfigPath } });
    assert.equal(retry.code, 0, retry.stderr);
    await waitFor('Succeeded', async () => (await phaseOf(name)) === 'Succeeded', { namespace: ns, timeoutMs: 60_000 });
    await waitFor(`${name}-aaa to be gone`, async () => (await cm(`${name}-aaa`)) === undefined, { namespace: ns, timeoutMs: 15_000 });
  });

  it('deleting the Canary mid-run releases the finalizer: nothing is left behind', async function () {
    const name = 'uninstall';
    await renameHeld(name);
    await kubectlOk(['-n', ns, 'delete', 'canary', name, '--wait=false']);
    await waitFor('the Canary to be gone', async () => (await canaryOf(name)) === undefined, { namespace: ns, timeoutMs: 30_000 });
    await waitFor(`${name}-aaa released`, async () => !(await guarded(`${name}-aaa`)), { namespace: ns, timeoutMs: 15_000 });
    assert.ok(await cm(`${name}-aaa`), 'released, not deleted');
    assert.equal(await guarded(`${name}-bbb`), false);
  });

  it('deleting the namespace mid-run (reconciler running) does not hang on the finalizer', async function () {
    await renameHeld('nsgone');
    await prune('nsgone');
    await kubectlOk(['delete', 'namespace', ns, '--wait=false']);
    await waitFor(`namespace ${ns} to be gone`, async () => (await kubectl(['get', 'namespace', ns])).code !== 0, { timeoutMs: 60_000 });
  });
});
