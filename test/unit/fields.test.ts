// Canary fields a Flagger user writes, each doing what it says: the Ports
// of the Services (service.portDiscovery), readiness in percent of Pods
// (analysis.primaryReadyThreshold / canaryReadyThreshold), the copy's
// autoscaler (autoscalerRef) and traffic moving back to the promoted primary
// in steps (analysis.stepWeightPromotion). The real API server runs them in
// test/e2e/fields.test.ts.

import assert from 'node:assert/strict';
import type * as k8s from '@kubernetes/client-node';
import type { Canary, CanarySpec } from '../../core/api/types.js';
import { CANARY_ROLE, PENDING_REVISION, PENDING_SPEC, REVISION_LABEL, ROLE_LABEL } from '../../core/contract.js';
import { canonicalJson, revisionOf } from '../../core/revision.js';
import { deploymentRolledOut } from '../../core/targets/deployment.js';
import { autoscalerView, buildCopyHpa, copyHpaUpdate, copyReplicasWithAutoscaler } from '../../reconciler/apply/autoscaler.js';
import { applyEffect, type EffectClients, type EffectHooks } from '../../reconciler/apply/effects.js';
import { resolveAnalysis } from '../../reconciler/decide/analysis-config.js';
import { transition, type Observed, type RolloutStatus } from '../../reconciler/decide/transition.js';
import type { Caches, ObjectCache } from '../../reconciler/observe/caches.js';
import { buildSyncContext } from '../../reconciler/observe/context.js';
import { Routers, routerTraits } from '../../reconciler/routers/index.js';
import { buildCanaryRouterService } from '../../reconciler/routers/kubernetes.js';
import { desiredRoute, routePlan } from '../../reconciler/routers/gatewayapi.js';
import { RouterServices, routerPortsFor } from '../../reconciler/routers/services.js';

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

const UID = 'canary-uid';
const ours = [{ apiVersion: 'canarygate.dev/v1alpha1', kind: 'Canary', name: 'web', uid: UID, controller: true }];

function canaryWith(spec: Partial<CanarySpec> = {}): Canary {
  return {
    apiVersion: 'canarygate.dev/v1alpha1',
    kind: 'Canary',
    metadata: { name: 'web', namespace: 'shop', uid: UID, finalizers: ['canarygate.dev/finalizer'] },
    spec: { targetRef: { apiVersion: 'apps/v1', kind: 'Deployment', name: 'web' }, service: { port: 80 }, ...spec },
  };
}

const pendingSpec = { metadata: { labels: { app: 'web' } }, spec: { containers: [{ name: 'app', image: 'web:2' }] } };
const PENDING = revisionOf(pendingSpec);

function deploymentNamed(name: string, opts: { replicas?: number; ready?: number; meta?: Partial<k8s.V1ObjectMeta>; ports?: k8s.V1ContainerPort[] } = {}): k8s.V1Deployment {
  const replicas = opts.replicas ?? 2;
  const ready = opts.ready ?? replicas;
  return {
    metadata: { name, namespace: 'shop', uid: `${name}-uid`, resourceVersion: '5', generation: 1, labels: { 'canarygate.dev/managed': 'true' }, ...opts.meta },
    spec: {
      replicas,
      selector: { matchLabels: { app: 'web' } },
      template: { metadata: { labels: { app: 'web' } }, spec: { containers: [{ name: 'app', image: 'web:1', ...(opts.ports ? { ports: opts.ports } : {}) }] } },
    },
    status: { observedGeneration: 1, replicas, updatedReplicas: replicas, readyReplicas: ready, availableReplicas: ready },
  };
}

function target(opts: Parameters<typeof deploymentNamed>[1] = {}): k8s.V1Deployment {
  return deploymentNamed('web', { ...opts, meta: { labels: { 'canarygate.dev/managed': 'true' }, annotations: { [PENDING_REVISION]: PENDING, [PENDING_SPEC]: canonicalJson(pendingSpec) } } });
}

/** The copy as canary-gate made it: `app` is web-canary for routers with their own Services, web for the kubernetes router. */
function copyOf(replicas: number, ready = replicas, app = 'web-canary'): k8s.V1Deployment {
  const d = deploymentNamed('web-canary', { replicas, ready, meta: { labels: { [REVISION_LABEL]: PENDING, [ROLE_LABEL]: CANARY_ROLE }, ownerReferences: ours } });
  d.spec!.selector = { matchLabels: { app, [ROLE_LABEL]: CANARY_ROLE } };
  d.spec!.template.metadata = { labels: { app, [ROLE_LABEL]: CANARY_ROLE, [REVISION_LABEL]: PENDING } };
  return d;
}

function hpa(name: string, spec: Partial<k8s.V2HorizontalPodAutoscalerSpec> = {}, meta: Partial<k8s.V1ObjectMeta> = {}): k8s.V2HorizontalPodAutoscaler {
  return {
    metadata: { name, namespace: 'shop', uid: `${name}-uid`, ...meta },
    spec: { minReplicas: 3, maxReplicas: 5, scaleTargetRef: { apiVersion: 'apps/v1', kind: 'Deployment', name: 'web' }, metrics: [{ type: 'Resource', resource: { name: 'cpu', target: { type: 'Utilization', averageUtilization: 80 } } }], ...spec },
  };
}

function context(canary: Canary, deployments: k8s.V1Deployment[], hpas: k8s.V2HorizontalPodAutoscaler[] = [], services: k8s.V1Service[] = []) {
  const caches = {
    deployments: cache(deployments),
    services: cache(services),
    httpRoutes: cache([]),
    namespaces: cache<k8s.V1Namespace>([]),
    hpas: cache(hpas),
    routerObjects: () => cache([]),
  } as unknown as Caches;
  const calls: Call[] = [];
  const api = recordingApi(calls);
  const ctx = buildSyncContext(canary, caches, new Routers({ core: api.core, custom: api.custom, caches }).for(canary.spec.provider), Date.now());
  return { ctx, calls, api };
}

const hooks: EffectHooks = { assertLeader: () => {} };

// ------------------------------------------------------------------ portDiscovery

describe('fields: service.portDiscovery', () => {
  const ports: k8s.V1ContainerPort[] = [
    { name: 'http', containerPort: 8080 },
    { name: 'metrics', containerPort: 9797 },
    { name: 'grpc', containerPort: 9999, protocol: 'TCP' },
  ];

  it('router Services expose every container port of the target (name and port), next to service.port', () => {
    const canary = canaryWith({ provider: 'gatewayapi', service: { port: 80, targetPort: 8080, portDiscovery: true } });
    const { ctx } = context(canary, [target({ ports })]);
    const got = routerPortsFor(ctx).map((p) => `${p.name}:${p.port}->${p.targetPort}`);
    assert.deepEqual(got, ['http:80->8080', 'metrics:9797->9797', 'grpc:9999->9999'], 'the container port service.port leads to is not added twice');
    const bg = context(canaryWith({ service: { port: 80, targetPort: 8080, portDiscovery: true }, analysis: { iterations: 2 } }), [target({ ports })]);
    assert.deepEqual(buildCanaryRouterService(bg.ctx).spec?.ports?.map((p) => p.port), [80, 9797, 9999], 'the kubernetes router\'s <apex>-canary Service too');
  });

  it('without portDiscovery only service.port is exposed', () => {
    const { ctx } = context(canaryWith({ provider: 'gatewayapi', service: { port: 80, targetPort: 8080 } }), [target({ ports })]);
    assert.deepEqual(routerPortsFor(ctx).map((p) => p.port), [80]);
  });
});

// ------------------------------------------------------------------ ready thresholds

describe('fields: analysis.primaryReadyThreshold and canaryReadyThreshold', () => {
  it('3 of 4 ready Pods are ready at a threshold of 75 %, not at 76 % nor at the default 100 %', () => {
    const d = deploymentNamed('web', { replicas: 4, ready: 3 });
    assert.equal(deploymentRolledOut(d, 75), true);
    assert.equal(deploymentRolledOut(d, 76), false);
    assert.equal(deploymentRolledOut(d), false);
    assert.equal(deploymentRolledOut(deploymentNamed('web', { replicas: 4, ready: 2 }), 74), false, '2 of 4 is 50 %');
    assert.equal(deploymentRolledOut(deploymentNamed('web', { replicas: 4, ready: 0 }), 0), true, '0 % needs no ready Pod');
  });

  it('a threshold never excuses Pods not yet updated or old Pods left', () => {
    const d = deploymentNamed('web', { replicas: 4, ready: 4 });
    d.status = { ...d.status, updatedReplicas: 3 };
    assert.equal(deploymentRolledOut(d, 50), false);
    d.status = { ...d.status, updatedReplicas: 4, replicas: 5 };
    assert.equal(deploymentRolledOut(d, 50), false);
  });

  it('the thresholds decide whether the primary and the copy count as ready for the run', () => {
    const deployments = [target({ replicas: 4, ready: 3 }), copyOf(4, 3)];
    const strict = context(canaryWith(), deployments).ctx.observed;
    assert.equal(strict.target.ready, false);
    assert.equal(strict.copy.ready, false);
    const loose = context(canaryWith({ analysis: { primaryReadyThreshold: 75, canaryReadyThreshold: 75 } }), deployments).ctx.observed;
    assert.equal(loose.target.ready, true);
    assert.equal(loose.copy.ready, true);
    const onlyCopy = context(canaryWith({ analysis: { canaryReadyThreshold: 75 } }), deployments).ctx.observed;
    assert.deepEqual([onlyCopy.target.ready, onlyCopy.copy.ready], [false, true], 'each threshold judges its own side');
  });
});

// ------------------------------------------------------------------ autoscalerRef

describe('fields: autoscalerRef', () => {
  const ref = { autoscalerRef: { apiVersion: 'autoscaling/v2', kind: 'HorizontalPodAutoscaler' as const, name: 'web-hpa' } };

  it('the copy\'s HPA is the user\'s spec scaling the copy, owned by the Canary; the user\'s HPA is not changed', () => {
    const user = hpa('web-hpa');
    const before = structuredClone(user);
    const clone = buildCopyHpa(user, 'web-canary', canaryWith(ref));
    assert.equal(clone.metadata?.name, 'web-hpa-canary');
    assert.deepEqual(clone.spec?.scaleTargetRef, { apiVersion: 'apps/v1', kind: 'Deployment', name: 'web-canary' });
    assert.equal(clone.spec?.minReplicas, 3);
    assert.equal(clone.spec?.maxReplicas, 5);
    assert.deepEqual(clone.spec?.metrics, user.spec?.metrics);
    assert.equal(clone.metadata?.ownerReferences?.[0]?.uid, UID);
    assert.deepEqual(user, before);
    assert.equal(copyHpaUpdate({ ...clone, metadata: { ...clone.metadata, resourceVersion: '3' } }, clone, canaryWith(ref)), undefined, 'unchanged: no write');
    const changed = copyHpaUpdate(clone, buildCopyHpa(hpa('web-hpa', { maxReplicas: 9 }), 'web-canary', canaryWith(ref)), canaryWith(ref));
    assert.equal(changed?.spec?.maxReplicas, 9, 'follows the user\'s HPA');
  });

  it('exact-weight routers: the copy gets its HPA once it runs, and keeps the size that HPA gave it', async () => {
    const canary = canaryWith({ ...ref, provider: 'gatewayapi' });
    const created = context(canary, [target({ replicas: 1 })], [hpa('web-hpa')]);
    await applyEffect({ type: 'ensure-canary-copy', revision: PENDING, weight: 10 }, created.ctx, hooks, created.api);
    const create = created.calls.find(([m]) => m === 'apps.createNamespacedDeployment');
    assert.equal((create?.[1].body as k8s.V1Deployment).spec?.replicas, 3, 'the first size is within the HPA\'s bounds');

    const running = context(canary, [target({ replicas: 1 }), copyOf(4)], [hpa('web-hpa')]);
    await applyEffect({ type: 'ensure-canary-copy', revision: PENDING, weight: 10 }, running.ctx, hooks, running.api);
    const made = running.calls.find(([m]) => m === 'autoscaling.createNamespacedHorizontalPodAutoscaler');
    assert.equal((made?.[1].body as k8s.V2HorizontalPodAutoscaler).spec?.scaleTargetRef.name, 'web-canary');
    assert.equal((made?.[1].body as k8s.V2HorizontalPodAutoscaler).metadata?.name, 'web-hpa-canary');

    const scaled = context(canary, [target({ replicas: 1 }), copyOf(4)], [hpa('web-hpa'), buildCopyHpa(hpa('web-hpa'), 'web-canary', canary)]);
    await applyEffect({ type: 'ensure-canary-copy', revision: PENDING, weight: 10 }, scaled.ctx, hooks, scaled.api);
    assert.deepEqual(scaled.calls, [], 'the HPA scaled the copy to 4: canary-gate does not size it back to the primary\'s 1');
    const userWrites = [...created.calls, ...running.calls].filter(([m, a]) => m.startsWith('autoscaling.') && (a.name === 'web-hpa' || (a.body as k8s.V2HorizontalPodAutoscaler | undefined)?.metadata?.name === 'web-hpa'));
    assert.deepEqual(userWrites, [], 'the user\'s HPA is never written');
  });

  it('the kubernetes router: the HPA\'s minReplicas and maxReplicas bound the copy\'s ratio size, and no HPA is made for it', async () => {
    assert.equal(copyReplicasWithAutoscaler(1, { user: hpa('web-hpa') }, { ownHpa: false }), 3);
    assert.equal(copyReplicasWithAutoscaler(9, { user: hpa('web-hpa') }, { ownHpa: false }), 5);
    assert.equal(copyReplicasWithAutoscaler(0, { user: hpa('web-hpa') }, { ownHpa: false }), 0, 'no weight, no Pod');
    const { ctx, calls, api } = context(canaryWith(ref), [target({ replicas: 2 }), copyOf(1, 1, 'web')], [hpa('web-hpa')]);
    await applyEffect({ type: 'ensure-canary-copy', revision: PENDING, weight: 10 }, ctx, hooks, api);
    const replaced = calls.find(([m]) => m === 'apps.replaceNamespacedDeployment');
    assert.equal((replaced?.[1].body as k8s.V1Deployment).spec?.replicas, 3, '10 % of 2 Pods is 1 Pod, raised to the HPA\'s minimum 3');
    assert.ok(!calls.some(([m]) => m.startsWith('autoscaling.')), 'no HPA of the copy');
  });

  it('a referenced HPA that does not exist holds the run with a condition and a Warning Event; it clears once the HPA exists', () => {
    const canary = canaryWith(ref);
    const { ctx } = context(canary, [target()], []);
    assert.match(ctx.observed.autoscalerMissing ?? '', /HorizontalPodAutoscaler shop\/web-hpa does not exist/);
    const status: RolloutStatus = { phase: 'Initialized', lastPromotedRevision: ctx.observed.target.liveRevision };
    const t = transition({ ...ctx.observed, status });
    assert.equal(t.status.phase, 'Initialized', 'no run starts');
    assert.ok(!t.effects.some((e) => e.type === 'ensure-canary-copy'));
    const c = t.status.conditions?.find((x) => x.type === 'AutoscalerReady');
    assert.deepEqual([c?.status, c?.reason], ['False', 'AutoscalerNotFound']);
    assert.deepEqual(t.events.map((e) => [e.type, e.reason]), [['Warning', 'AutoscalerNotFound']]);
    const again = transition({ ...ctx.observed, status: t.status, now: ctx.observed.now + 1000 });
    assert.deepEqual(again.events, [], 'said once');
    const found = context(canary, [target()], [hpa('web-hpa')]).ctx.observed;
    const resumed = transition({ ...found, status: t.status });
    assert.equal(resumed.status.conditions?.find((x) => x.type === 'AutoscalerReady')?.status, 'True');
    assert.equal(resumed.status.phase, 'Progressing', 'the run starts');
  });

  it("a user's own <hpa>-canary is never taken: the Canary reports the name, and scaling the copy down leaves it", async () => {
    const theirs = hpa('web-hpa-canary', { scaleTargetRef: { kind: 'Deployment', name: 'other' } });
    const view = autoscalerView(canaryWith(ref), cache([hpa('web-hpa'), theirs]));
    assert.equal(view.copy, undefined);
    assert.match(view.conflict ?? '', /HorizontalPodAutoscaler shop\/web-hpa-canary exists and was not created by canary-gate/);
    const { ctx, calls, api } = context(canaryWith({ ...ref, provider: 'gatewayapi' }), [target(), copyOf(2)], [hpa('web-hpa'), theirs]);
    assert.ok(ctx.observed.blockers.some((b) => b.includes('web-hpa-canary')));
    await applyEffect({ type: 'ensure-canary-copy', revision: PENDING, weight: 10 }, ctx, hooks, api);
    await applyEffect({ type: 'scale-canary-to-zero' }, ctx, hooks, api);
    assert.ok(!calls.some(([m]) => m.startsWith('autoscaling.')), 'their HPA is not touched');
  });
});

// ------------------------------------------------------------------ stepWeightPromotion

describe('fields: analysis.stepWeightPromotion', () => {
  const T0 = Date.parse('2025-03-01T12:00:00.000Z');
  const INTERVAL = 30_000;
  const LIVE = 'live-1';
  const NEXT = 'next-2';

  function promotingObserved(spec: Partial<CanarySpec>, status: RolloutStatus, now: number, live = NEXT): Observed {
    const full: CanarySpec = { targetRef: { kind: 'Deployment', name: 'web' }, service: { port: 80 }, ...spec };
    return {
      now,
      generation: 1,
      deleting: false,
      hasFinalizer: true,
      analysis: resolveAnalysis(full),
      router: routerTraits(full.provider),
      status,
      target: { exists: true, managed: true, liveRevision: live, ready: true, replicas: 2, ...(live === NEXT ? {} : { pendingRevision: NEXT }) },
      copy: { exists: true, revision: NEXT, replicas: 2, ready: true, readyReplicas: 2 },
      routedWeight: status.canaryWeight ?? 0,
      commands: {},
      blockers: [],
    };
  }
  const start: RolloutStatus = { phase: 'Promoting', pendingRevision: NEXT, lastAppliedRevision: NEXT, lastPromotedRevision: LIVE, canaryWeight: 50, lastStepTime: new Date(T0).toISOString() };
  const spec = { provider: 'gatewayapi', analysis: { interval: '30s', stepWeight: 25, maxWeight: 50, stepWeightPromotion: 20 } };

  it('after the primary runs the promoted spec, the canary weight goes down one step per interval, then the run succeeds', () => {
    let status = start;
    const weights: number[] = [];
    let now = T0 + INTERVAL;
    for (let i = 0; i < 10 && status.phase === 'Promoting'; i++, now += INTERVAL) {
      const early = transition(promotingObserved(spec, status, now - INTERVAL / 2));
      assert.deepEqual(early.effects.filter((e) => e.type === 'set-weight').map((e) => (e as { weight: number }).weight), [status.canaryWeight], 'between steps the weight in force is held');
      const t = transition(promotingObserved(spec, status, now));
      weights.push(...t.effects.filter((e) => e.type === 'set-weight').map((e) => (e as { weight: number }).weight));
      status = t.status;
    }
    assert.deepEqual(weights, [30, 10, 0], 'Flagger\'s semantics: 50 - 20 - 20, then 0');
    assert.equal(status.phase, 'Succeeded');
    assert.equal(status.lastPromotedRevision, NEXT);
  });

  it('nothing steps before the promoted spec is live and ready on the primary', () => {
    const notLive = transition(promotingObserved(spec, start, T0 + 5 * INTERVAL, LIVE));
    assert.deepEqual(notLive.effects.map((e) => e.type), ['promote-target']);
    const notReady = promotingObserved(spec, start, T0 + 5 * INTERVAL);
    notReady.target.ready = false;
    assert.ok(!transition(notReady).effects.some((e) => e.type === 'set-weight'));
  });

  it('killed between the status write of a step and its router write, the next process puts that step in force', () => {
    const step = transition(promotingObserved(spec, start, T0 + INTERVAL));
    assert.equal(step.status.canaryWeight, 30);
    // the status landed; the set-weight did not (the router still has 50)
    const resumed = transition({ ...promotingObserved(spec, step.status, T0 + INTERVAL + 1000), routedWeight: 50 });
    assert.deepEqual(resumed.effects, [{ type: 'set-weight', weight: 30, revision: NEXT }]);
    assert.equal(resumed.status.phase, 'Promoting');
  });

  it('without the field, or with a router whose weight is the copy\'s size, promotion moves all traffic at once', () => {
    const plain = transition(promotingObserved({ provider: 'gatewayapi', analysis: { interval: '30s', stepWeight: 25, maxWeight: 50 } }, start, T0 + 1000));
    assert.equal(plain.status.phase, 'Succeeded');
    const kube = transition(promotingObserved({ ...spec, provider: 'kubernetes' }, start, T0 + 1000));
    assert.equal(kube.status.phase, 'Succeeded');
  });
});

// ------------------------------------------------------------------ metadata of what the routers create

describe('fields: service.apex, service.primary, service.canary and gatewayRefs[].sectionName', () => {
  it('spec.service.primary and spec.service.canary labels and annotations go on <apex>-primary and <apex>-canary', async () => {
    const canary = canaryWith({ provider: 'gatewayapi', service: { port: 80, primary: { labels: { tier: 'stable' }, annotations: { note: 'p' } }, canary: { labels: { tier: 'next' }, annotations: { note: 'c' } } } });
    const { ctx, calls, api } = context(canary, [target()]);
    // Nothing exists yet: reads answer 404, writes are recorded.
    const core = new Proxy(api.core, { get: (t, m: string) => (m.startsWith('read') ? async () => Promise.reject(Object.assign(new Error('not found'), { code: 404 })) : (t as unknown as Record<string, unknown>)[m]) });
    await new RouterServices(core).ensurePair(ctx);
    const made = calls.filter(([m]) => m === 'core.createNamespacedService').map(([, a]) => a.body as k8s.V1Service);
    const byName = Object.fromEntries(made.map((svc) => [svc.metadata?.name, svc.metadata]));
    assert.equal(byName['web-primary']?.labels?.tier, 'stable');
    assert.equal(byName['web-primary']?.annotations?.note, 'p');
    assert.equal(byName['web-canary']?.labels?.tier, 'next');
    assert.equal(byName['web-canary']?.annotations?.note, 'c');
  });

  it('spec.service.headers: every request and response operation (add, set, remove) becomes a header filter of the route', () => {
    const headers = { request: { add: { 'x-a': '1' }, set: { 'x-b': '2' }, remove: ['x-c'] }, response: { add: { 'x-d': '3' }, set: { 'x-e': '4' }, remove: ['server'] } };
    const { ctx } = context(canaryWith({ provider: 'gatewayapi', service: { port: 80, headers } }), [target()]);
    const filters = desiredRoute(undefined, routePlan(ctx), 0).spec.rules?.[0]?.filters;
    assert.deepEqual(filters, [
      { type: 'RequestHeaderModifier', requestHeaderModifier: { set: [{ name: 'x-b', value: '2' }], add: [{ name: 'x-a', value: '1' }], remove: ['x-c'] } },
      { type: 'ResponseHeaderModifier', responseHeaderModifier: { set: [{ name: 'x-e', value: '4' }], add: [{ name: 'x-d', value: '3' }], remove: ['server'] } },
    ]);
  });

  it('spec.service.apex labels and annotations go on the apex route; a gatewayRef\'s group, kind and sectionName on its parentRef', () => {
    const canary = canaryWith({
      provider: 'gatewayapi',
      service: { port: 80, apex: { labels: { team: 'shop' }, annotations: { owner: 'payments' } }, gatewayRefs: [{ name: 'public', namespace: 'gw', group: 'gateway.networking.k8s.io', kind: 'Gateway', sectionName: 'https' }] },
    });
    const { ctx } = context(canary, [target()]);
    const route = desiredRoute(undefined, routePlan(ctx), 0);
    assert.equal(route.metadata.labels?.team, 'shop');
    assert.equal(route.metadata.annotations?.owner, 'payments');
    assert.deepEqual(route.spec.parentRefs, [{ group: 'gateway.networking.k8s.io', kind: 'Gateway', name: 'public', namespace: 'gw', sectionName: 'https' }]);
  });
});
