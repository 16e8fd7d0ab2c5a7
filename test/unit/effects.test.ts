// The effect executor against recording fakes of the API clients: which
// calls each effect makes, and which objects it never touches. (The real
// API server runs the same effects in the e2e suite.)

import assert from 'node:assert/strict';
import type * as k8s from '@kubernetes/client-node';
import type { Canary } from '../../core/api/types.js';
import { MANAGED_BY, MANAGED_BY_LABEL, PENDING_REVISION, PENDING_SPEC } from '../../core/contract.js';
import { canonicalJson, revisionOf } from '../../core/revision.js';
import { applyEffect, type EffectClients, type EffectHooks } from '../../reconciler/apply/effects.js';
import type { Caches, ObjectCache } from '../../reconciler/observe/caches.js';
import { buildSyncContext } from '../../reconciler/observe/context.js';
import { Routers } from '../../reconciler/routers/index.js';

type Call = [string, Record<string, unknown>];

function recordingApi(calls: Call[]): EffectClients {
  const recorder = (prefix: string) =>
    new Proxy({}, { get: (_t, method: string) => async (args: Record<string, unknown>) => (calls.push([`${prefix}.${method}`, args]), { metadata: { resourceVersion: '99' } }) });
  return { apps: recorder('apps'), core: recorder('core'), custom: recorder('custom'), autoscaling: recorder('autoscaling') } as unknown as EffectClients;
}

function cache<T extends { metadata?: k8s.V1ObjectMeta }>(items: T[]): ObjectCache<T> {
  return {
    get: (ns, name) => items.find((i) => i.metadata?.namespace === ns && i.metadata?.name === name),
    list: (ns) => items.filter((i) => ns === undefined || i.metadata?.namespace === ns),
  };
}

const canary: Canary = {
  apiVersion: 'canarygate.dev/v1alpha1',
  kind: 'Canary',
  metadata: { name: 'web', namespace: 'shop', uid: 'canary-uid', finalizers: ['canarygate.dev/finalizer'] },
  spec: { targetRef: { apiVersion: 'apps/v1', kind: 'Deployment', name: 'web' }, service: { port: 80 } },
};
const ours = [{ apiVersion: 'canarygate.dev/v1alpha1', kind: 'Canary', name: 'web', uid: 'canary-uid', controller: true }];

function deploymentNamed(name: string, extra: Partial<k8s.V1ObjectMeta> = {}, replicas = 2): k8s.V1Deployment {
  return {
    metadata: { name, namespace: 'shop', uid: `${name}-uid`, resourceVersion: '5', labels: { 'canarygate.dev/managed': 'true' }, ...extra },
    spec: { replicas, selector: { matchLabels: { app: 'web' } }, template: { metadata: { labels: { app: 'web' } }, spec: { containers: [{ name: 'app', image: 'web:1' }] } } },
  };
}

function hpaNamed(name: string, ownerReferences?: k8s.V1OwnerReference[]): k8s.V2HorizontalPodAutoscaler {
  return { metadata: { name, namespace: 'shop', ...(ownerReferences ? { ownerReferences } : {}) }, spec: { maxReplicas: 3, scaleTargetRef: { kind: 'Deployment', name } } };
}

function context(deployments: k8s.V1Deployment[]) {
  const caches = {
    deployments: cache(deployments),
    services: cache<k8s.V1Service>([]),
    httpRoutes: cache([]),
    namespaces: cache<k8s.V1Namespace>([]),
  } as unknown as Caches;
  const calls: Call[] = [];
  const api = recordingApi(calls);
  const ctx = buildSyncContext(canary, caches, new Routers({ core: api.core, custom: api.custom, caches }).for('kubernetes'), Date.now());
  return { ctx, calls, api };
}

const hooks = (over: Partial<EffectHooks> = {}): EffectHooks => ({ assertLeader: () => {}, ...over });

describe('effects: objects canary-gate does not own', () => {
  it("scaling the copy to zero never deletes a user's own HPA of the copy's name; one the Canary owns goes", async () => {
    const copy = deploymentNamed('web-canary', { labels: {}, ownerReferences: ours }, 3);
    for (const [hpa, deleted] of [
      [hpaNamed('web-canary'), false],
      [hpaNamed('web-canary', ours as k8s.V1OwnerReference[]), true],
    ] as const) {
      const { ctx, calls, api } = context([deploymentNamed('web'), copy]);
      await applyEffect({ type: 'scale-canary-to-zero' }, ctx, hooks({ copyHpa: hpa }), api);
      assert.equal(calls.some(([m]) => m === 'autoscaling.deleteNamespacedHorizontalPodAutoscaler'), deleted);
      assert.deepEqual(calls.filter(([m]) => m === 'apps.patchNamespacedDeployment').map(([, a]) => a.name), ['web-canary']);
    }
  });

  it("never scales, replaces or deletes a user's own Deployment named like the copy", async () => {
    const pendingSpec = { metadata: { labels: { app: 'web' } }, spec: { containers: [{ name: 'app', image: 'web:2' }] } };
    const live = deploymentNamed('web', { annotations: { [PENDING_REVISION]: revisionOf(pendingSpec), [PENDING_SPEC]: canonicalJson(pendingSpec) } });
    const theirs = deploymentNamed('web-canary', { labels: {} }, 1);
    const { ctx, calls, api } = context([live, theirs]);
    assert.equal(ctx.liveCopy, undefined, 'the context leaves the user\'s object out');
    assert.match(ctx.observed.blockers.join(), /web-canary exists and was not created by canary-gate/);
    for (const type of ['scale-canary-to-zero', 'delete-canary-copy'] as const) await applyEffect({ type }, ctx, hooks(), api);
    await applyEffect({ type: 'ensure-canary-copy', revision: revisionOf(pendingSpec), weight: 10 }, ctx, hooks(), api);
    assert.deepEqual(calls, [], 'no API call at all');
  });

  it('a copy canary-gate made for a Canary of the same name (created again) is taken over', async () => {
    const copy = deploymentNamed('web-canary', { labels: { [MANAGED_BY_LABEL]: MANAGED_BY } }, 2);
    const { ctx, calls, api } = context([deploymentNamed('web'), copy]);
    assert.ok(ctx.liveCopy);
    await applyEffect({ type: 'scale-canary-to-zero' }, ctx, hooks(), api);
    assert.deepEqual(calls.map(([m]) => m), ['apps.patchNamespacedDeployment']);
  });
});
