// Traffic routing end to end: weighted and A/B canaries through a Gateway API
// HTTPRoute (validated by the real Gateway API CRDs), a Service target whose
// externalName moves to another cluster, and a target with an HPA.

import assert from 'node:assert/strict';
import type { Canary } from '../../core/api/types.js';
import { kubectl, kubectlOk, getObject as get, applyAsUser as apply } from './cluster.js';
import { createNamespace, deleteNamespace } from './namespaces.js';
import { deployment, service } from './objects.js';
import { startReconciler, type RunningReconciler } from './reconciler-process.js';
import { waitFor } from './wait.js';

interface Route {
  spec: {
    rules: {
      name?: string;
      matches?: { headers?: { name: string; value: string }[] }[];
      filters?: { type: string; requestMirror?: { backendRef: { name: string }; percent?: number } }[];
      backendRefs: { name: string; weight?: number }[];
    }[];
  };
}
interface Deploy {
  spec: { replicas?: number; template: { spec: { containers: { image: string }[] } } };
}
const image = (d: Deploy | undefined) => d?.spec.template.spec.containers[0]?.image;

function canary(name: string, spec: Record<string, unknown>) {
  return { apiVersion: 'canarygate.dev/v1alpha1', kind: 'Canary', metadata: { name }, spec: { progressDeadlineSeconds: 60, ...spec } };
}

describe('traffic routing on a real control plane', function () {
  let ns: string;
  let reconciler: RunningReconciler;
  before(async function () {
    ns = await createNamespace('routing');
    reconciler = await startReconciler({ namespace: ns });
  });
  after(async function () {
    await reconciler?.stop();
    await deleteNamespace(ns);
  });

  const phase = async (name: string) => (await get<Canary>(ns, 'canary', name))?.status?.phase;

  it('gatewayapi: shifts HTTPRoute backend weights step by step, then routes everything back to the promoted primary', async function () {
    const name = 'weighted';
    await apply(ns, canary(name, {
      provider: 'gatewayapi',
      targetRef: { apiVersion: 'apps/v1', kind: 'Deployment', name },
      service: { port: 80, targetPort: 'http', gatewayRefs: [{ name: 'public', namespace: ns }], hosts: ['weighted.example.test'] },
      analysis: { interval: '1s', stepWeight: 25, maxWeight: 50 },
    }));
    await apply(ns, deployment(name, { image: 'example.test/weighted:1' }));
    await apply(ns, service(name, { selector: { app: name } }));
    await waitFor('Initialized', async () => (await phase(name)) === 'Initialized', { namespace: ns, timeoutMs: 30_000 });
    const initial = await waitFor('the HTTPRoute', () => get<Route>(ns, 'httproute', name), { namespace: ns });
    const weights = (r: Route) => Object.fromEntries(r.spec.rules.find((x) => x.name === 'canary-gate')?.backendRefs.map((b) => [b.name, b.weight ?? 1]) ?? []);
    assert.equal(weights(initial)[`${name}-primary`], 100);

    await apply(ns, deployment(name, { image: 'example.test/weighted:2' }));
    const seen = new Set<number>();
    await waitFor('Succeeded', async () => {
      const r = await get<Route>(ns, 'httproute', name);
      if (r) seen.add(weights(r)[`${name}-canary`] ?? 0);
      return (await phase(name)) === 'Succeeded';
    }, { namespace: ns, timeoutMs: 60_000, intervalMs: 100 });
    assert.ok(seen.has(25) || seen.has(50), `the route carried canary weight on the way (saw ${[...seen].join(', ')})`);
    // The status is written before its effects: the route follows a moment later.
    const final = await waitFor('everything back on the primary', async () => {
      const r = await get<Route>(ns, 'httproute', name);
      return r && weights(r)[`${name}-primary`] === 100 ? r : undefined;
    }, { namespace: ns, timeoutMs: 30_000 });
    assert.equal(weights(final as Route)[`${name}-primary`], 100);
    assert.ok(!weights(final as Route)[`${name}-canary`]);
    assert.equal(image(await get<Deploy>(ns, 'deployment', name)), 'example.test/weighted:2');
  });

  it('gatewayapi A/B: routes requests with the matching header to the canary during the run only', async function () {
    const name = 'ab';
    await apply(ns, canary(name, {
      provider: 'gatewayapi',
      targetRef: { apiVersion: 'apps/v1', kind: 'Deployment', name },
      service: { port: 80, targetPort: 'http' },
      analysis: { interval: '1s', iterations: 3, match: [{ headers: { 'x-canary': { exact: 'insider' } } }] },
    }));
    await apply(ns, deployment(name, { image: 'example.test/ab:1' }));
    await apply(ns, service(name, { selector: { app: name } }));
    await waitFor('Initialized', async () => (await phase(name)) === 'Initialized', { namespace: ns, timeoutMs: 30_000 });
    await apply(ns, deployment(name, { image: 'example.test/ab:2' }));
    const abRule = await waitFor('the header rule', async () => (await get<Route>(ns, 'httproute', name))?.spec.rules.find((r) => r.name === 'canary-gate-ab'), { namespace: ns, timeoutMs: 30_000 });
    assert.deepEqual(abRule.matches?.[0]?.headers?.[0], { name: 'x-canary', type: 'Exact', value: 'insider' });
    assert.equal(abRule.backendRefs[0]?.name, `${name}-canary`);
    await waitFor('Succeeded', async () => (await phase(name)) === 'Succeeded', { namespace: ns, timeoutMs: 60_000 });
    await waitFor('the header rule to be gone', async () => !(await get<Route>(ns, 'httproute', name))?.spec.rules.some((r) => r.name === 'canary-gate-ab'), { namespace: ns });
    assert.equal(image(await get<Deploy>(ns, 'deployment', name)), 'example.test/ab:2');
  });

  it('gatewayapi blue/green with mirroring: the route copies requests to the canary during the analysis only', async function () {
    const name = 'mirrored';
    await apply(ns, canary(name, {
      provider: 'gatewayapi',
      targetRef: { apiVersion: 'apps/v1', kind: 'Deployment', name },
      service: { port: 80, targetPort: 'http' },
      analysis: { interval: '2s', iterations: 3, mirror: true, mirrorWeight: 50 },
    }));
    await apply(ns, deployment(name, { image: 'example.test/mirrored:1' }));
    await apply(ns, service(name, { selector: { app: name } }));
    await waitFor('Initialized', async () => (await phase(name)) === 'Initialized', { namespace: ns, timeoutMs: 30_000 });
    await apply(ns, deployment(name, { image: 'example.test/mirrored:2' }));
    const weightRule = async () => (await get<Route>(ns, 'httproute', name))?.spec.rules.find((r) => r.name === 'canary-gate');
    const mirror = await waitFor('the mirror filter', async () => (await weightRule())?.filters?.find((f) => f.type === 'RequestMirror'), { namespace: ns, timeoutMs: 30_000 });
    assert.equal(mirror.requestMirror?.backendRef.name, `${name}-canary`);
    assert.equal(mirror.requestMirror?.percent, 50);
    assert.deepEqual((await weightRule())?.backendRefs.map((b) => [b.name, b.weight]), [[`${name}-primary`, 100], [`${name}-canary`, 0]], 'clients are answered by the primary only');
    await waitFor('Succeeded', async () => (await phase(name)) === 'Succeeded', { namespace: ns, timeoutMs: 60_000 });
    await waitFor('the mirror to be gone', async () => !(await weightRule())?.filters?.some((f) => f.type === 'RequestMirror'), { namespace: ns });
    assert.equal(image(await get<Deploy>(ns, 'deployment', name)), 'example.test/mirrored:2');
  });

  it('a Service target: an externalName moved to another cluster is tested as <name>-canary, then promoted', async function () {
    const name = 'front';
    await apply(ns, canary(name, { targetRef: { apiVersion: 'v1', kind: 'Service', name }, service: { port: 80 }, analysis: { interval: '1s', iterations: 2 } }));
    await apply(ns, service(name, { selector: {}, externalName: 'blue.cluster.example.test' }));
    await waitFor('Initialized', async () => (await phase(name)) === 'Initialized', { namespace: ns, timeoutMs: 30_000 });
    await apply(ns, service(name, { selector: {}, externalName: 'green.cluster.example.test' }));
    const live = await get<{ spec: { externalName: string } }>(ns, 'service', name);
    assert.equal(live?.spec.externalName, 'blue.cluster.example.test', 'held by the webhook');
    const copy = await waitFor('front-canary', () => get<{ spec: { externalName: string } }>(ns, 'service', `${name}-canary`), { namespace: ns, timeoutMs: 30_000 });
    assert.equal(copy.spec.externalName, 'green.cluster.example.test');
    await waitFor('Succeeded', async () => (await phase(name)) === 'Succeeded', { namespace: ns, timeoutMs: 60_000 });
    assert.equal((await get<{ spec: { externalName: string } }>(ns, 'service', name))?.spec.externalName, 'green.cluster.example.test');
  });

  it('a target with an HPA: the copy gets a fixed size and the primary HPA is never touched', async function () {
    const name = 'scaled';
    await apply(ns, canary(name, { targetRef: { apiVersion: 'apps/v1', kind: 'Deployment', name }, autoscalerRef: { apiVersion: 'autoscaling/v2', kind: 'HorizontalPodAutoscaler', name }, service: { port: 80 }, analysis: { interval: '1s', stepWeight: 50, maxWeight: 50 } }));
    await apply(ns, deployment(name, { image: 'example.test/scaled:1', replicas: 3 }));
    await apply(ns, {
      apiVersion: 'autoscaling/v2',
      kind: 'HorizontalPodAutoscaler',
      metadata: { name },
      spec: { scaleTargetRef: { apiVersion: 'apps/v1', kind: 'Deployment', name }, minReplicas: 3, maxReplicas: 6, metrics: [{ type: 'Resource', resource: { name: 'cpu', target: { type: 'Utilization', averageUtilization: 80 } } }] },
    });
    await waitFor('Initialized', async () => (await phase(name)) === 'Initialized', { namespace: ns, timeoutMs: 30_000 });
    const hpaBefore = await get<{ metadata: { resourceVersion: string; generation: number }; spec: unknown }>(ns, 'hpa', name);
    await apply(ns, deployment(name, { image: 'example.test/scaled:2', replicas: 3 }));
    const copy = await waitFor('the copy', () => get<Deploy>(ns, 'deployment', `${name}-canary`), { namespace: ns, timeoutMs: 30_000 });
    assert.equal(copy.spec.replicas, 3, '50% next to 3 primary Pods');
    await waitFor('Succeeded', async () => (await phase(name)) === 'Succeeded', { namespace: ns, timeoutMs: 60_000 });
    const hpaAfter = await get<{ metadata: { generation: number }; spec: unknown }>(ns, 'hpa', name);
    assert.deepEqual(hpaAfter?.spec, hpaBefore?.spec);
    assert.equal(hpaAfter?.metadata.generation, hpaBefore?.metadata.generation);
    assert.equal(await get(ns, 'hpa', `${name}-canary`), undefined, 'no autoscaler fights the fixed-size copy');
  });
});
