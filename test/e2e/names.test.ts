// Objects canary-gate does not own: a user's own `<name>-canary` Deployment,
// Service or HPA is never adopted, scaled, changed or deleted (the Canary
// says what to rename), and a Deployment labelled managed that no Canary
// targets is released instead of having its changes held forever.

import assert from 'node:assert/strict';
import { MANAGED_LABEL, PENDING_REVISION, ROLE_LABEL, SKIP_LABEL } from '../../core/contract.js';
import type { Canary } from '../../core/api/types.js';
import { kubectl, kubectlOk, getObject as get, applyAsUser as applyJson } from './cluster.js';
import { createNamespace, deleteNamespace } from './namespaces.js';
import { deployment, service } from './objects.js';
import { startReconciler, type RunningReconciler } from './reconciler-process.js';
import { sleep, waitFor } from './wait.js';

interface Deploy {
  metadata: { annotations?: Record<string, string>; labels?: Record<string, string>; ownerReferences?: unknown[]; resourceVersion?: string };
  spec: { replicas?: number; template: { spec: { containers: { image: string }[] } } };
}

const image = (d: Deploy | undefined) => d?.spec.template.spec.containers[0]?.image;
/** The namespace is opted in: a Deployment of the user's that is not to get a Canary of its own says so. */
const noCanary = { [SKIP_LABEL]: 'true' };

function canary(name: string, extra: Record<string, unknown> = {}) {
  return {
    apiVersion: 'canarygate.dev/v1alpha1',
    kind: 'Canary',
    metadata: { name },
    spec: { targetRef: { apiVersion: 'apps/v1', kind: 'Deployment', name }, service: { port: 80 }, progressDeadlineSeconds: 60, analysis: { interval: '1s', stepWeight: 50, maxWeight: 50 }, ...extra },
  };
}

async function eventsOf(ns: string, kind: string, name: string): Promise<string> {
  return kubectlOk(['-n', ns, 'get', 'events', '--field-selector', `involvedObject.name=${name},involvedObject.kind=${kind}`, '-o', 'jsonpath={range .items[*]}{.type} {.reason}: {.message}{"\\n"}{end}']);
}

describe('objects canary-gate does not own', function () {
  let ns: string;
  let reconciler: RunningReconciler;

  before(async function () {
    ns = await createNamespace('names');
    reconciler = await startReconciler({ namespace: ns });
  });
  after(async function () {
    await reconciler?.stop();
    await deleteNamespace(ns);
  });

  it("never touches a user's own <name>-canary Deployment and HPA; the Canary says what to rename and runs once the name is free", async function () {
    const name = 'taken';
    // The user's own objects under the names the copy would use.
    await applyJson(ns, deployment(`${name}-canary`, { image: 'example.test/mine:7', replicas: 1, labels: noCanary }));
    await applyJson(ns, {
      apiVersion: 'autoscaling/v2',
      kind: 'HorizontalPodAutoscaler',
      metadata: { name: `${name}-canary` },
      spec: { scaleTargetRef: { apiVersion: 'apps/v1', kind: 'Deployment', name: `${name}-canary` }, minReplicas: 1, maxReplicas: 3, metrics: [{ type: 'Resource', resource: { name: 'cpu', target: { type: 'Utilization', averageUtilization: 80 } } }] },
    });
    const mine = await get<Deploy>(ns, 'deployment', `${name}-canary`);

    await applyJson(ns, canary(name));
    await applyJson(ns, deployment(name, { image: `example.test/${name}:1`, replicas: 2 }));
    await applyJson(ns, service(name, { selector: { app: name } }));
    await waitFor('the Canary to report the name conflict', async () => {
      const c = await get<Canary>(ns, 'canary', name);
      return c?.status?.conditions?.find((x) => x.type === 'NameTaken')?.status === 'True';
    }, { namespace: ns, timeoutMs: 30_000 });
    await applyJson(ns, deployment(name, { image: `example.test/${name}:2`, replicas: 2 }));
    await sleep(4000);

    const c = await get<Canary>(ns, 'canary', name);
    const condition = c?.status?.conditions?.find((x) => x.type === 'NameTaken');
    assert.match(condition?.message ?? '', new RegExp(`Deployment ${ns}/${name}-canary exists and was not created by canary-gate.*rename`));
    assert.notEqual(c?.status?.phase, 'Progressing', 'no run starts over the user\'s object');
    assert.match(await eventsOf(ns, 'Canary', name), /Warning NameTaken: Deployment .*taken-canary exists/);
    const live = await get<Deploy>(ns, 'deployment', name);
    assert.equal(image(live), `example.test/${name}:1`, 'the change stays held');
    assert.ok(live?.metadata.annotations?.[PENDING_REVISION], 'and pending: nothing is lost');

    const after = await get<Deploy>(ns, 'deployment', `${name}-canary`);
    // Its status moves with its Pods (the resourceVersion with it); what the user wrote must not.
    type Written = { metadata: { generation?: number; managedFields?: Array<{ manager?: string }> }; spec?: unknown };
    const written = (d: Deploy | undefined) => {
      const w = d as unknown as Written | undefined;
      // The deployment controller's own annotation (deployment.kubernetes.io/revision) is not a write of canary-gate's.
      const annotations = Object.fromEntries(Object.entries(d?.metadata.annotations ?? {}).filter(([k]) => !k.startsWith('deployment.kubernetes.io/')));
      return { generation: w?.metadata.generation, spec: w?.spec, labels: d?.metadata.labels, annotations, owners: d?.metadata.ownerReferences };
    };
    assert.deepEqual(written(after), written(mine), "the user's Deployment was not written to");
    const managers = ((after as unknown as Written | undefined)?.metadata.managedFields ?? []).map((f) => f.manager ?? '');
    assert.ok(!managers.some((m) => m.startsWith('canary-gate')), `no canary-gate field manager on it (${managers.join(', ')})`);
    assert.equal(image(after), 'example.test/mine:7');
    assert.equal(after?.metadata.labels?.[ROLE_LABEL], undefined);
    assert.equal((await kubectl(['-n', ns, 'get', 'hpa', `${name}-canary`])).code, 0, "the user's HPA is still there");

    // The user renames theirs: the held change runs and is promoted.
    await kubectlOk(['-n', ns, 'delete', 'hpa', `${name}-canary`]);
    await kubectlOk(['-n', ns, 'delete', 'deployment', `${name}-canary`, '--wait=true']);
    await waitFor('the held change to be promoted', async () => image(await get<Deploy>(ns, 'deployment', name)) === `example.test/${name}:2`, { namespace: ns, timeoutMs: 90_000 });
    const done = await get<Canary>(ns, 'canary', name);
    assert.equal(done?.status?.conditions?.find((x) => x.type === 'NameTaken')?.status, 'False');
  });

  it("deleting a Canary whose copy name is the user's leaves the user's object alone", async function () {
    const name = 'keepmine';
    await applyJson(ns, deployment(`${name}-canary`, { image: 'example.test/mine:1', replicas: 1, labels: noCanary }));
    await applyJson(ns, canary(name));
    await applyJson(ns, deployment(name, { image: `example.test/${name}:1`, replicas: 1 }));
    await waitFor('the conflict to be reported', async () => (await get<Canary>(ns, 'canary', name))?.status?.conditions?.some((x) => x.type === 'NameTaken' && x.status === 'True') ?? false, {
      namespace: ns,
      timeoutMs: 30_000,
    });
    await kubectlOk(['-n', ns, 'delete', 'canary', name, '--wait=true', '--timeout=60s'], { timeoutMs: 70_000 });
    const mine = await get<Deploy>(ns, 'deployment', `${name}-canary`);
    assert.equal(image(mine), 'example.test/mine:1', "the user's Deployment survives the Canary");
    assert.equal(mine?.spec.replicas, 1);
  });

  it("a blue/green Canary does not take over a user's own <svc>-canary Service", async function () {
    const name = 'svctaken';
    await applyJson(ns, service(`${name}-canary`, { selector: { app: 'someone-else' } }));
    const mine = await get<{ metadata: { resourceVersion?: string }; spec: { selector?: Record<string, string> } }>(ns, 'service', `${name}-canary`);
    await applyJson(ns, canary(name, { analysis: { interval: '1s', iterations: 2 } }));
    await applyJson(ns, deployment(name, { image: `example.test/${name}:1`, replicas: 1 }));
    await applyJson(ns, service(name, { selector: { app: name } }));
    await waitFor('the conflict to be reported', async () => {
      const c = await get<Canary>(ns, 'canary', name);
      return c?.status?.conditions?.find((x) => x.type === 'NameTaken')?.message?.includes(`Service ${ns}/${name}-canary exists`) ?? false;
    }, { namespace: ns, timeoutMs: 30_000 });
    const after = await get<{ metadata: { resourceVersion?: string }; spec: { selector?: Record<string, string> } }>(ns, 'service', `${name}-canary`);
    assert.equal(after?.metadata.resourceVersion, mine?.metadata.resourceVersion, "the user's Service was not written to");
    assert.deepEqual(after?.spec.selector, { app: 'someone-else' });
  });

  it('releases a Deployment labelled managed that no Canary targets, with a Warning Event, instead of holding its changes', async function () {
    const name = 'orphan';
    // The label put there by hand on a Deployment that is kept out of the namespace's defaults:
    // the webhook holds the change as it would for a managed object...
    await applyJson(ns, deployment(name, { image: `example.test/${name}:1`, replicas: 1, managed: true, labels: noCanary }));
    await applyJson(ns, deployment(name, { image: `example.test/${name}:2`, replicas: 1, managed: true, labels: noCanary }));
    assert.equal(image(await get<Deploy>(ns, 'deployment', name)), `example.test/${name}:1`, 'held at first');
    // ...until the reconciler, seeing no Canary for it, releases it.
    await waitFor('the managed label to be removed', async () => (await get<Deploy>(ns, 'deployment', name))?.metadata.labels?.[MANAGED_LABEL] === undefined, {
      namespace: ns,
      timeoutMs: 40_000,
    });
    const events = await eventsOf(ns, 'Deployment', name);
    assert.match(events, /Warning Released: no Canary targets this Deployment: canary-gate released it .*pending revision [0-9a-f]{12} is not live/);
    // The next apply is no longer held.
    await applyJson(ns, deployment(name, { image: `example.test/${name}:2`, replicas: 1, labels: noCanary }));
    assert.equal(image(await get<Deploy>(ns, 'deployment', name)), `example.test/${name}:2`);
  });
});
