// Opting in by namespace label, opting out by label, namespace defaults,
// deleting a Canary mid-run, and the safety net for a bypassed webhook.

import assert from 'node:assert/strict';
import { MANAGED_LABEL, PENDING_REVISION } from '../../core/contract.js';
import type { Canary } from '../../core/api/types.js';
import { kubectl, kubectlOk, getObject as get, applyAsUser as apply } from './cluster.js';
import { GateServer } from './gate-server.js';
import { createNamespace, deleteNamespace } from './namespaces.js';
import { deployment, service } from './objects.js';
import { startReconciler, type RunningReconciler } from './reconciler-process.js';
import { RECONCILER_USER } from './webhook-process.js';
import { sleep, waitFor } from './wait.js';

interface Deploy {
  metadata: { annotations?: Record<string, string>; labels?: Record<string, string> };
  spec: { replicas?: number; template: { spec: { containers: { image: string }[] } } };
  status?: { readyReplicas?: number; availableReplicas?: number };
}

const image = (d: Deploy | undefined) => d?.spec.template.spec.containers[0]?.image;
describe('adoption, deletion and the safety net', function () {
  let ns: string;
  let reconciler: RunningReconciler;
  const gates = new GateServer();

  before(async function () {
    ns = await createNamespace('adopt');
    await gates.start();
    // Namespace defaults for generated Canaries: a short interval.
    await apply(ns, {
      apiVersion: 'v1',
      kind: 'ConfigMap',
      metadata: { name: 'team-defaults', labels: { 'canarygate.dev/defaults': 'true' } },
      data: { canary: 'analysis:\n  interval: 2s\n  stepWeight: 50\n  maxWeight: 50\n' },
    });
    reconciler = await startReconciler({ namespace: ns });
  });
  after(async function () {
    await reconciler?.stop();
    await gates.stop();
    await deleteNamespace(ns);
  });

  it('gives every Deployment in a labelled namespace a Canary from the namespace defaults, and adopts it', async function () {
    await apply(ns, deployment('auto', { image: 'example.test/auto:1' }));
    const c = await waitFor('a generated Canary', () => get<Canary>(ns, 'canary', 'auto'), { namespace: ns, timeoutMs: 20_000 });
    assert.equal(c.spec.targetRef.name, 'auto');
    assert.equal(c.spec.analysis?.interval, '2s', 'the namespace ConfigMap overrides the reconciler defaults');
    assert.equal(c.spec.service.port, 8080, 'the port comes from the container');
    await waitFor('adoption', async () => (await get<Deploy>(ns, 'deployment', 'auto'))?.metadata.labels?.[MANAGED_LABEL] === 'true', { namespace: ns, timeoutMs: 20_000 });
    await waitFor('Initialized', async () => (await get<Canary>(ns, 'canary', 'auto'))?.status?.phase === 'Initialized', { namespace: ns });

    // A change now goes through a canary run and is promoted.
    await apply(ns, deployment('auto', { image: 'example.test/auto:2' }));
    assert.equal(image(await get<Deploy>(ns, 'deployment', 'auto')), 'example.test/auto:1');
    await waitFor('Succeeded', async () => (await get<Canary>(ns, 'canary', 'auto'))?.status?.phase === 'Succeeded', { namespace: ns, timeoutMs: 60_000 });
    assert.equal(image(await get<Deploy>(ns, 'deployment', 'auto')), 'example.test/auto:2');
  });

  it('leaves a Deployment labelled canarygate.dev/skip=true alone', async function () {
    await apply(ns, deployment('skipped', { image: 'example.test/skipped:1', labels: { 'canarygate.dev/skip': 'true' } }));
    await sleep(3000);
    assert.equal(await get<Canary>(ns, 'canary', 'skipped'), undefined);
    await apply(ns, deployment('skipped', { image: 'example.test/skipped:2', labels: { 'canarygate.dev/skip': 'true' } }));
    assert.equal(image(await get<Deploy>(ns, 'deployment', 'skipped')), 'example.test/skipped:2', 'an unmanaged Deployment updates directly');
  });

  it('on deleting a Canary mid-run: traffic back to the primary, companions removed, the label removed, never zero replicas', async function () {
    const name = 'deleted';
    gates.answer('deleted-hold', 403);
    await apply(ns, {
      apiVersion: 'canarygate.dev/v1alpha1',
      kind: 'Canary',
      metadata: { name },
      spec: {
        targetRef: { apiVersion: 'apps/v1', kind: 'Deployment', name },
        service: { port: 80 },
        analysis: { interval: '1s', stepWeight: 20, maxWeight: 40, webhooks: [{ name: 'hold', type: 'confirm-traffic-increase', url: gates.url('deleted-hold') }] },
      },
    });
    await apply(ns, deployment(name, { image: 'example.test/deleted:1', replicas: 2 }));
    await apply(ns, service(name, { selector: { app: name } }));
    await waitFor('Initialized', async () => (await get<Canary>(ns, 'canary', name))?.status?.phase === 'Initialized', { namespace: ns, timeoutMs: 20_000 });
    await waitFor('ready', async () => (await get<Deploy>(ns, 'deployment', name))?.status?.availableReplicas === 2, { namespace: ns });
    await apply(ns, deployment(name, { image: 'example.test/deleted:2', replicas: 2 }));
    await waitFor('the canary copy to serve', async () => ((await get<Deploy>(ns, 'deployment', `${name}-canary`))?.status?.readyReplicas ?? 0) > 0, { namespace: ns, timeoutMs: 30_000 });

    await kubectlOk(['-n', ns, 'delete', 'canary', name, '--wait=false']);
    let minAvailable = Infinity;
    await waitFor('the Canary to be gone', async () => {
      const d = await get<Deploy>(ns, 'deployment', name);
      minAvailable = Math.min(minAvailable, d?.status?.availableReplicas ?? 0);
      return (await get<Canary>(ns, 'canary', name)) === undefined;
    }, { namespace: ns, timeoutMs: 30_000, intervalMs: 100 });
    assert.equal(minAvailable, 2, 'the primary kept all its replicas throughout');
    await waitFor('the canary copy to be deleted', async () => (await get<Deploy>(ns, 'deployment', `${name}-canary`)) === undefined, { namespace: ns });
    const d = await get<Deploy>(ns, 'deployment', name);
    assert.equal(d?.metadata.labels?.[MANAGED_LABEL], undefined, 'released');
    assert.equal(image(d), 'example.test/deleted:1', 'left on its stable spec');
    assert.ok(d?.metadata.annotations?.[PENDING_REVISION], 'the unpromoted change is still recorded for the user to see');
  });

  it('warns, with an Event and a condition, when the live template changes without a pending revision', async function () {
    const name = 'bypass';
    await apply(ns, deployment(name, { image: 'example.test/bypass:1' }));
    await waitFor('Initialized', async () => (await get<Canary>(ns, 'canary', name))?.status?.phase === 'Initialized', { namespace: ns, timeoutMs: 20_000 });
    // A write the webhook does not hold (here: an identity it trusts) changes the template directly.
    await kubectlOk(['-n', ns, '--as', RECONCILER_USER, 'set', 'image', `deployment/${name}`, 'app=example.test/bypass:9']);
    const c = await waitFor('the Bypassed condition', async () => {
      const canary = await get<Canary>(ns, 'canary', name);
      return canary?.status?.conditions?.some((x) => x.type === 'Bypassed' && x.status === 'True') ? canary : false;
    }, { namespace: ns, timeoutMs: 20_000 });
    assert.ok(c.status?.lastPromotedRevision);
    const events = await kubectlOk(['-n', ns, 'get', 'events', '--field-selector', `involvedObject.name=${name},involvedObject.kind=Canary,type=Warning`, '-o', 'jsonpath={.items[*].reason}']);
    assert.match(events, /WebhookBypassed/);
    assert.match(await reconciler.metrics(), /^canary_gate_webhook_bypasses_total 1$/m, 'counted in the reconciler metrics');
  });
});
