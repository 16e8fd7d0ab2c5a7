// Rollouts end to end: `kubectl apply` of a new image on a real API server,
// the real webhook holding it, the real reconciler process (own identity,
// least-privilege RBAC) running it to promotion or rollback.

import assert from 'node:assert/strict';
import { PENDING_REVISION, MANAGED_LABEL } from '../../core/contract.js';
import type { Canary } from '../../core/api/types.js';
import { kubectl, kubectlOk, getObject as get, applyAsUser as applyJson } from './cluster.js';
import { GateServer } from './gate-server.js';
import { createNamespace, deleteNamespace } from './namespaces.js';
import { deployment, service } from './objects.js';
import { startReconciler, type RunningReconciler } from './reconciler-process.js';
import { waitFor } from './wait.js';

interface Deploy {
  metadata: { annotations?: Record<string, string>; labels?: Record<string, string> };
  spec: { replicas?: number; template: { spec: { containers: { image: string }[] } } };
  status?: { readyReplicas?: number };
}

const image = (d: Deploy | undefined) => d?.spec.template.spec.containers[0]?.image;

function canary(name: string, analysis: Record<string, unknown>, extra: Record<string, unknown> = {}) {
  return {
    apiVersion: 'canarygate.dev/v1alpha1',
    kind: 'Canary',
    metadata: { name },
    spec: { targetRef: { apiVersion: 'apps/v1', kind: 'Deployment', name }, service: { port: 80 }, progressDeadlineSeconds: 60, analysis, ...extra },
  };
}

describe('rollouts on a real control plane', function () {
  let ns: string;
  let reconciler: RunningReconciler;
  const gates = new GateServer();

  before(async function () {
    ns = await createNamespace('rollout');
    await gates.start();
    reconciler = await startReconciler({ namespace: ns });
  });
  after(async function () {
    await reconciler?.stop();
    await gates.stop();
    await deleteNamespace(ns);
  });

  async function phaseOf(name: string): Promise<string | undefined> {
    return (await get<Canary>(ns, 'canary', name))?.status?.phase;
  }

  async function setUp(name: string, analysis: Record<string, unknown>) {
    // The Canary first: in an opted-in namespace a Deployment without one gets one from the defaults.
    await applyJson(ns, canary(name, analysis));
    await applyJson(ns, deployment(name, { image: `example.test/${name}:1`, replicas: 2 }));
    await applyJson(ns, service(name, { selector: { app: name } }));
    await waitFor(`${name} to be adopted`, async () => {
      const d = await get<Deploy>(ns, 'deployment', name);
      return d?.metadata.labels?.[MANAGED_LABEL] === 'true' && (await phaseOf(name)) === 'Initialized';
    }, { namespace: ns, timeoutMs: 30_000 });
  }

  it('promotes a new image applied with kubectl after passing every step', async function () {
    const name = 'promote';
    await setUp(name, { interval: '1s', threshold: 2, stepWeight: 25, maxWeight: 50, webhooks: [{ name: 'load', type: 'rollout', url: gates.url('promote-rollout') }] });
    await applyJson(ns, deployment(name, { image: 'example.test/promote:2', replicas: 2 }));
    const held = await get<Deploy>(ns, 'deployment', name);
    assert.equal(image(held), 'example.test/promote:1', 'the live Deployment stays stable while the canary runs');

    await waitFor('the canary copy to run the new image', async () => image(await get<Deploy>(ns, 'deployment', `${name}-canary`)) === 'example.test/promote:2', { namespace: ns, timeoutMs: 30_000 });
    const wait = await kubectl(['-n', ns, 'wait', '--for=condition=Promoted=True', `canary/${name}`, '--timeout=90s'], { timeoutMs: 100_000 });
    assert.equal(wait.code, 0, wait.stderr);
    await waitFor('Succeeded', async () => (await phaseOf(name)) === 'Succeeded', { namespace: ns, timeoutMs: 60_000 });

    const live = await get<Deploy>(ns, 'deployment', name);
    assert.equal(image(live), 'example.test/promote:2');
    assert.equal(live?.metadata.annotations?.[PENDING_REVISION], undefined);
    const copy = await get<Deploy>(ns, 'deployment', `${name}-canary`);
    assert.equal(copy?.spec.replicas, 0, 'the canary copy is scaled to zero after promotion');
    const status = (await get<Canary>(ns, 'canary', name))?.status;
    assert.equal(status?.canaryWeight, 0);
    assert.ok(status?.lastPromotedRevision);

    // The rollout gate ran at each step (25, then 50: the kubernetes router starts at the first step),
    // each time with the documented payload naming the revision that was then promoted.
    const calls = gates.callsTo('promote-rollout');
    assert.deepEqual([...new Set(calls.map((c) => c.body.canaryWeight))].sort((a, b) => Number(a) - Number(b)), [25, 50]);
    for (const c of calls) {
      for (const key of ['name', 'namespace', 'phase', 'revision', 'canaryWeight', 'step', 'iterations', 'failedChecks']) assert.ok(key in c.body, `the payload has ${key}`);
      assert.equal(c.body.name, name);
      assert.equal(c.body.namespace, ns);
      assert.equal(c.body.phase, 'Progressing');
      assert.equal(c.body.revision, status?.lastPromotedRevision, 'the payload names the revision under analysis');
      assert.equal(c.body.step, c.body.canaryWeight === 25 ? 1 : 2);
      assert.equal(c.body.failedChecks, 0);
    }

    const events = await kubectlOk(['-n', ns, 'get', 'events', '--field-selector', `involvedObject.name=${name},involvedObject.kind=Canary`, '-o', 'jsonpath={.items[*].reason}']);
    for (const reason of ['Started', 'WeightAdvanced', 'Promoting', 'Succeeded']) assert.match(events, new RegExp(reason));
  });

  it('rolls back when a gate keeps failing, never touching the live Deployment, and does not retry the same revision', async function () {
    const name = 'rollback';
    gates.answer('rollback-rollout', 500);
    await setUp(name, { interval: '1s', threshold: 2, stepWeight: 50, maxWeight: 50, webhooks: [{ name: 'smoke', type: 'rollout', url: gates.url('rollback-rollout') }] });
    await applyJson(ns, deployment(name, { image: 'example.test/rollback:2', replicas: 2 }));
    await waitFor('Failed', async () => (await phaseOf(name)) === 'Failed', { namespace: ns, timeoutMs: 60_000 });

    const live = await get<Deploy>(ns, 'deployment', name);
    assert.equal(image(live), 'example.test/rollback:1');
    assert.ok(live?.metadata.annotations?.[PENDING_REVISION], 'the change is still pending: nothing is lost');
    const c = await get<Canary>(ns, 'canary', name);
    assert.equal(c?.status?.conditions?.find((x) => x.type === 'Promoted')?.status, 'False');
    await waitFor('the canary copy to be scaled to zero', async () => (await get<Deploy>(ns, 'deployment', `${name}-canary`))?.spec.replicas === 0, { namespace: ns });

    // GitOps re-applies the same manifest: the failed revision does not start again.
    const callsBefore = gates.callsTo('rollback-rollout').length;
    await applyJson(ns, deployment(name, { image: 'example.test/rollback:2', replicas: 2 }));
    await new Promise((r) => setTimeout(r, 3000));
    assert.equal(await phaseOf(name), 'Failed');
    assert.equal(gates.callsTo('rollback-rollout').length, callsBefore);
  });

  async function pendingOf(name: string): Promise<string | undefined> {
    return (await get<Deploy>(ns, 'deployment', name))?.metadata.annotations?.[PENDING_REVISION];
  }

  it('restarts the analysis from the first step when a newer image arrives mid-run, and promotes the newest', async function () {
    const name = 'restart';
    gates.answer('restart-traffic', 403); // hold the run at its first weight
    await setUp(name, { interval: '1s', threshold: 3, stepWeight: 20, maxWeight: 40, webhooks: [{ name: 'approve', type: 'confirm-traffic-increase', url: gates.url('restart-traffic') }] });
    await applyJson(ns, deployment(name, { image: 'example.test/restart:2', replicas: 2 }));
    const first = await pendingOf(name);
    await waitFor('the run to hold at the first step', async () => {
      const c = await get<Canary>(ns, 'canary', name);
      return c?.status?.phase === 'Progressing' && c.status.pendingRevision === first && gates.callsTo('restart-traffic').length >= 2;
    }, { namespace: ns, timeoutMs: 30_000 });

    await applyJson(ns, deployment(name, { image: 'example.test/restart:3', replicas: 2 }));
    const second = await pendingOf(name);
    assert.ok(second && second !== first);
    await waitFor('the run to restart on the newer revision', async () => {
      const c = await get<Canary>(ns, 'canary', name);
      const copy = await get<Deploy>(ns, 'deployment', `${name}-canary`);
      return c?.status?.pendingRevision === second && c.status.failedChecks === 0 && image(copy) === 'example.test/restart:3';
    }, { namespace: ns, timeoutMs: 30_000 });
    gates.answer('restart-traffic', 200);
    await waitFor('Succeeded', async () => (await phaseOf(name)) === 'Succeeded', { namespace: ns, timeoutMs: 60_000 });
    assert.equal(image(await get<Deploy>(ns, 'deployment', name)), 'example.test/restart:3');
    const events = await kubectlOk(['-n', ns, 'get', 'events', '--field-selector', `involvedObject.name=${name},involvedObject.kind=Canary`, '-o', 'jsonpath={.items[*].reason}']);
    assert.match(events, /Restarted/);
  });

  it('cancels the run and cleans up when the user applies the stable manifest again', async function () {
    const name = 'cancel';
    gates.answer('cancel-traffic', 403);
    await setUp(name, { interval: '1s', stepWeight: 20, maxWeight: 40, webhooks: [{ name: 'approve', type: 'confirm-traffic-increase', url: gates.url('cancel-traffic') }] });
    await applyJson(ns, deployment(name, { image: 'example.test/cancel:2', replicas: 2 }));
    await waitFor('the canary copy to be ready', async () => ((await get<Deploy>(ns, 'deployment', `${name}-canary`))?.status?.readyReplicas ?? 0) > 0, { namespace: ns, timeoutMs: 30_000 });

    await applyJson(ns, deployment(name, { image: 'example.test/cancel:1', replicas: 2 }));
    assert.equal(await pendingOf(name), undefined, 'the webhook clears the pending change');
    await waitFor('the run to be cancelled', async () => {
      const c = await get<Canary>(ns, 'canary', name);
      return c?.status?.phase === 'Initialized' && /cancelled/.test(c.status.message ?? '');
    }, { namespace: ns, timeoutMs: 30_000 });
    await waitFor('the canary copy to be scaled to zero', async () => (await get<Deploy>(ns, 'deployment', `${name}-canary`))?.spec.replicas === 0, { namespace: ns });
    assert.equal(image(await get<Deploy>(ns, 'deployment', name)), 'example.test/cancel:1');
  });

  it('runs blue/green: the copy gets no user traffic, iterations are counted, then it is promoted', async function () {
    const name = 'bluegreen';
    await setUp(name, { interval: '1s', iterations: 3, threshold: 2, webhooks: [{ name: 'tests', type: 'rollout', url: gates.url('bluegreen-tests') }] });
    await applyJson(ns, deployment(name, { image: 'example.test/bluegreen:2', replicas: 2 }));
    await waitFor('the copy to be ready', async () => ((await get<Deploy>(ns, 'deployment', `${name}-canary`))?.status?.readyReplicas ?? 0) === 2, { namespace: ns, timeoutMs: 30_000 });
    // The user's Service selects app=bluegreen; the green copy must not be behind it.
    const pods = JSON.parse(await kubectlOk(['-n', ns, 'get', 'pods', '-l', `app=${name}`, '-o', 'json'])) as { items: { spec: { containers: { image: string }[] } }[] };
    for (const p of pods.items) assert.equal(p.spec.containers[0]?.image, 'example.test/bluegreen:1', 'only blue Pods match the user Service');
    await waitFor('Succeeded', async () => (await phaseOf(name)) === 'Succeeded', { namespace: ns, timeoutMs: 60_000 });
    assert.equal(image(await get<Deploy>(ns, 'deployment', name)), 'example.test/bluegreen:2');
    assert.ok(gates.callsTo('bluegreen-tests').length >= 3, 'one check per iteration');
  });
});
