// The routers' pure parts (replica sizing, label renaming, HTTPRoute
// building) and, against an in-memory API, that they write only on change
// and keep what the user owns.

import assert from 'node:assert/strict';
import type * as k8s from '@kubernetes/client-node';
import type { Canary, CanarySpec } from '../../core/api/types.js';
import type { HttpRoute } from '../../reconciler/observe/caches.js';

import {
  GatewayApiRouter,
  MATCH_RULE,
  WEIGHT_RULE,
  desiredRoute,
  disowned,
  foreignRules,
  gatewayDuration,
  normalizeSpec,
  readWeights,
  releasedRoute,
  routeDiffers,
  routePlan,
  toRouteMatches,
  type HTTPRoute,
  type RouteRule,
} from '../../reconciler/routers/gatewayapi.js';
import { KubernetesRouter, canaryServiceSelector, replicasForWeight, weightsFromReadyPods } from '../../reconciler/routers/kubernetes.js';
import type { RouterContext } from '../../reconciler/routers/router.js';
import { ROLE_LABEL } from '../../core/contract.js';

const UID = '6a0d2c1e-0000-4000-8000-000000000001';

function canary(spec: Partial<CanarySpec> = {}): Canary {
  return {
    apiVersion: 'canarygate.dev/v1alpha1',
    kind: 'Canary',
    metadata: { name: 'web', namespace: 'shop', uid: UID },
    spec: { targetRef: { kind: 'Deployment', name: 'web' }, service: { port: 80 }, ...spec },
  };
}

function target(replicas = 4, ready = replicas): k8s.V1Deployment {
  return {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name: 'web', namespace: 'shop' },
    spec: {
      replicas,
      selector: { matchLabels: { app: 'web' } },
      template: { metadata: { labels: { app: 'web', version: '1' } }, spec: { containers: [{ name: 'app', image: 'web:1' }] } },
    },
    status: { readyReplicas: ready },
  };
}

function apexService(): k8s.V1Service {
  return {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { name: 'web', namespace: 'shop' },
    spec: { selector: { app: 'web' }, ports: [{ name: 'http', port: 80, targetPort: 'http', protocol: 'TCP' }] },
  };
}

function ctx(c: Canary, over: Partial<RouterContext> = {}): RouterContext {
  return { canary: c, namespace: 'shop', target: target(), service: apexService(), ...over };
}

const blueGreen = { analysis: { iterations: 5 } };
const abTesting = { analysis: { iterations: 5, match: [{ headers: { 'x-canary': { exact: 'insider' } } }] } };

// ------------------------------------------------------------------ kubernetes router

describe('kubernetes router: canaryReplicas', () => {
  const table: Array<[weight: number, primary: number, expected: number]> = [
    [0, 4, 0],
    [5, 19, 1],
    [10, 9, 1],
    [10, 4, 1],
    [20, 4, 1],
    [25, 3, 1],
    [30, 4, 2],
    [33, 10, 5],
    [50, 1, 1],
    [50, 3, 3],
    [50, 10, 10],
    [60, 4, 6],
    [90, 1, 9],
    [99, 1, 9],
    [95, 20, 100],
    [100, 2, 18],
    [40, 0, 1],
  ];
  for (const [w, p, n] of table) {
    it(`weight ${w}% next to ${p} primary Pods needs ${n}`, () => {
      assert.equal(replicasForWeight(w, p), n);
    });
  }

  it('is the smallest n whose share reaches the weight (less half a percent), for every weight and primary up to 20', () => {
    for (let p = 1; p <= 20; p++) {
      for (let w = 1; w < 90; w++) {
        const n = replicasForWeight(w, p);
        if (n === Math.min(100, p * 9)) continue; // capped
        assert.ok(n / (n + p) >= w / 100 - 0.005, `w=${w} p=${p} n=${n}`);
        if (n > 1) assert.ok((n - 1) / (n - 1 + p) < w / 100 - 0.005, `w=${w} p=${p}: ${n - 1} would do`);
      }
    }
  });

  it('sizes a blue/green or A/B copy like the primary (at least 1), whatever the weight', () => {
    const r = new KubernetesRouter({ core: {} as k8s.CoreV1Api });
    assert.equal(r.canaryReplicas(ctx(canary(blueGreen)), 0, 4), 4);
    assert.equal(r.canaryReplicas(ctx(canary(abTesting)), 0, 0), 1);
    assert.equal(r.canaryReplicas(ctx(canary()), 20, 4), 1);
    assert.equal(r.canaryReplicas(ctx(canary({ targetRef: { kind: 'Service', name: 'web' } })), 50, 0), 0);
  });
});

describe('kubernetes router: labels and weights', () => {
  const r = new KubernetesRouter({ core: {} as k8s.CoreV1Api });

  it('keeps the user labels for a weighted canary (the user Service selects the copy)', () => {
    assert.deepEqual(r.canaryPodLabels(ctx(canary()), { app: 'web', version: '2' }), { app: 'web', version: '2' });
  });

  it('renames the selector labels for blue/green and A/B (the user Service must not select the copy)', () => {
    assert.deepEqual(r.canaryPodLabels(ctx(canary(blueGreen)), { app: 'web', version: '2' }), { app: 'web-canary', version: '2' });
    assert.deepEqual(r.canaryPodLabels(ctx(canary(abTesting)), { app: 'web', version: '2' }), { app: 'web-canary', version: '2' });
  });

  it('renames the user Service selector labels too', () => {
    const svc = apexService();
    svc.spec!.selector = { app: 'web', tier: 'front' };
    assert.deepEqual(r.canaryPodLabels(ctx(canary(blueGreen), { service: svc }), { app: 'web', tier: 'front', x: 'y' }), { app: 'web-canary', tier: 'front-canary', x: 'y' });
    // The <svc>-canary Service selects on the primary's selector (the target's matchLabels), renamed.
    assert.deepEqual(canaryServiceSelector(ctx(canary(blueGreen), { service: svc })), { app: 'web-canary', [ROLE_LABEL]: 'canary' });
  });

  it('reports the effective weight from ready Pods', () => {
    assert.deepEqual(weightsFromReadyPods(4, 1), { primary: 80, canary: 20 });
    assert.deepEqual(weightsFromReadyPods(3, 0), { primary: 100, canary: 0 });
    assert.deepEqual(weightsFromReadyPods(0, 0), { primary: 100, canary: 0 });
    assert.deepEqual(weightsFromReadyPods(2, 1), { primary: 67, canary: 33 });
    const copy: k8s.V1Deployment = { spec: { replicas: 1, selector: {}, template: {} }, status: { readyReplicas: 1 } };
    assert.deepEqual(r.getWeights(ctx(canary(), { target: target(4), copy })), { primary: 80, canary: 20 });
    assert.deepEqual(r.getWeights(ctx(canary(blueGreen), { target: target(4), copy })), { primary: 100, canary: 0 });
    const scaledDown: k8s.V1Deployment = { spec: { replicas: 0, selector: {}, template: {} }, status: { readyReplicas: 1 } };
    assert.deepEqual(r.getWeights(ctx(canary(), { copy: scaledDown })), { primary: 100, canary: 0 });
  });
});

// ------------------------------------------------------------------ HTTPRoute building

function gatewayCanary(spec: Partial<CanarySpec> = {}): Canary {
  return canary({
    provider: 'gatewayapi',
    service: { port: 80, gatewayRefs: [{ name: 'public', namespace: 'gateways' }], hosts: ['web.example.com'] },
    ...spec,
  });
}

/** The route as the API server would store it: defaults filled in, metadata added. */
function asStored(route: HTTPRoute, rv = '10'): HTTPRoute {
  const s = structuredClone(route);
  s.metadata = { ...s.metadata, uid: 'route-uid', resourceVersion: rv, generation: 1, creationTimestamp: new Date('2025-01-01T00:00:00Z') };
  s.spec = normalizeSpec(s.spec, 'shop');
  s.status = { parents: [] };
  return s;
}

describe('gatewayapi: route plan and matches', () => {
  it('names the route and backends after the apex Service', () => {
    const p = routePlan(ctx(gatewayCanary({ service: { port: 9898, name: 'front' } })));
    assert.equal(p.name, 'front');
    assert.equal(p.primary, 'front-primary');
    assert.equal(p.canary, 'front-canary');
    assert.equal(p.port, 9898);
    assert.equal(p.canaryAlways, true);
  });

  it('uses the user Service and <name>-canary for a Service target', () => {
    const p = routePlan(ctx(gatewayCanary({ targetRef: { kind: 'Service', name: 'api' }, service: { port: 80 } })));
    assert.equal(p.name, 'api');
    assert.equal(p.primary, 'api');
    assert.equal(p.canary, 'api-canary');
    assert.equal(p.canaryAlways, false);
  });

  it('translates header, cookie, query, uri and method matches with explicit defaults', () => {
    const m = toRouteMatches([
      { headers: { 'x-canary': { exact: 'insider' }, cookie: { regex: '^(.*?;)?(canary=always)(;.*)?$' } } },
      { uri: { prefix: '/api' }, queryParams: { beta: { prefix: 'y' } }, method: { exact: 'get' } },
    ]);
    assert.deepEqual(m, [
      {
        path: { type: 'PathPrefix', value: '/' },
        headers: [
          { type: 'Exact', name: 'x-canary', value: 'insider' },
          { type: 'RegularExpression', name: 'cookie', value: '^(.*?;)?(canary=always)(;.*)?$' },
        ],
      },
      { path: { type: 'PathPrefix', value: '/api' }, queryParams: [{ type: 'RegularExpression', name: 'beta', value: '^y.*' }], method: 'GET' },
    ]);
    assert.throws(() => toRouteMatches([{ method: { regex: 'G.*' } }]), /method/);
  });

  it('writes durations in the Gateway API form', () => {
    assert.equal(gatewayDuration(30_000), '30s');
    assert.equal(gatewayDuration(90_000), '1m30s');
    assert.equal(gatewayDuration(1500), '1s500ms');
    assert.equal(gatewayDuration(7_200_000), '2h');
  });
});

describe('gatewayapi: desiredRoute', () => {
  const plan = routePlan(ctx(gatewayCanary()));

  it('builds a new route: our weight rule 100/0, parentRefs, hostnames, owner', () => {
    const r = desiredRoute(undefined, plan);
    assert.equal(r.apiVersion, 'gateway.networking.k8s.io/v1');
    assert.equal(r.metadata.name, 'web');
    assert.equal(r.metadata.ownerReferences?.[0]?.uid, UID);
    assert.deepEqual(r.spec.parentRefs, [{ group: 'gateway.networking.k8s.io', kind: 'Gateway', name: 'public', namespace: 'gateways' }]);
    assert.deepEqual(r.spec.hostnames, ['web.example.com']);
    assert.deepEqual(r.spec.rules, [
      {
        name: WEIGHT_RULE,
        matches: [{ path: { type: 'PathPrefix', value: '/' } }],
        backendRefs: [
          { group: '', kind: 'Service', name: 'web-primary', port: 80, weight: 100 },
          { group: '', kind: 'Service', name: 'web-canary', port: 80, weight: 0 },
        ],
      },
    ]);
    assert.deepEqual(readWeights(r, plan), { primary: 100, canary: 0 });
  });

  it('sets the weights, and keeps them when reconciled without a weight', () => {
    const stored = asStored(desiredRoute(undefined, plan));
    const w30 = desiredRoute(stored, plan, 30);
    assert.deepEqual(readWeights(w30, plan), { primary: 70, canary: 30 });
    const again = desiredRoute(asStored(w30), plan);
    assert.deepEqual(readWeights(again, plan), { primary: 70, canary: 30 });
    assert.equal(routeDiffers(asStored(w30), again), false);
  });

  it('compares a stored (defaulted) route equal to the one it was built from', () => {
    const built = desiredRoute(undefined, plan, 20);
    assert.equal(routeDiffers(asStored(built), desiredRoute(asStored(built), plan, 20)), false);
    assert.equal(routeDiffers(asStored(built), desiredRoute(asStored(built), plan, 30)), true);
  });

  it('keeps user rules, filters, timeouts, parentRefs, hostnames and annotations', () => {
    const stored = asStored(desiredRoute(undefined, plan, 10));
    stored.metadata.annotations = { 'team.example.com/owner': 'web' };
    stored.spec.parentRefs!.push({ group: 'gateway.networking.k8s.io', kind: 'Gateway', name: 'internal' });
    stored.spec.hostnames!.push('web.internal');
    const userRule: RouteRule = {
      matches: [{ path: { type: 'PathPrefix', value: '/admin' } }],
      filters: [{ type: 'RequestHeaderModifier', requestHeaderModifier: { set: [{ name: 'x-admin', value: '1' }] } }],
      backendRefs: [{ group: '', kind: 'Service', name: 'admin', port: 8080, weight: 1 }],
    };
    stored.spec.rules!.push(userRule);
    stored.spec.rules![0]!.filters = [{ type: 'ResponseHeaderModifier', responseHeaderModifier: { add: [{ name: 'x-served-by', value: 'web' }] } }];
    stored.spec.rules![0]!.timeouts = { request: '10s' };

    const next = desiredRoute(stored, plan, 40, toRouteMatches([{ headers: { 'x-canary': { exact: '1' } } }]));
    assert.deepEqual(next.metadata.annotations, { 'team.example.com/owner': 'web' });
    assert.equal(next.spec.parentRefs?.length, 2);
    assert.deepEqual(next.spec.hostnames, ['web.example.com', 'web.internal']);
    assert.deepEqual(next.spec.rules?.find((r) => r.name === undefined), userRule);
    const ours = next.spec.rules?.find((r) => r.name === WEIGHT_RULE);
    assert.deepEqual(ours?.filters, stored.spec.rules![0]!.filters);
    assert.deepEqual(ours?.timeouts, { request: '10s' });
    assert.deepEqual(readWeights(next, plan), { primary: 60, canary: 40 });
    // The input was not modified.
    assert.deepEqual(readWeights(stored, plan), { primary: 90, canary: 10 });
  });

  it('puts the A/B rule before the weight rule while a run is active, and removes it after', () => {
    const stored = asStored(desiredRoute(undefined, plan));
    const matches = toRouteMatches([{ headers: { cookie: { regex: '^(.*?;)?(canary=always)(;.*)?$' } } }]);
    const on = desiredRoute(stored, plan, 10, matches);
    assert.deepEqual(
      on.spec.rules?.map((r) => r.name),
      [MATCH_RULE, WEIGHT_RULE],
    );
    assert.deepEqual(on.spec.rules?.[0]?.backendRefs, [{ group: '', kind: 'Service', name: 'web-canary', port: 80, weight: 100 }]);
    assert.deepEqual(on.spec.rules?.[0]?.matches, matches);
    // Reconciling keeps it; weight 0 without matches removes it.
    assert.deepEqual(
      desiredRoute(asStored(on), plan).spec.rules?.map((r) => r.name),
      [MATCH_RULE, WEIGHT_RULE],
    );
    const off = desiredRoute(asStored(on), plan, 0, null);
    assert.deepEqual(
      off.spec.rules?.map((r) => r.name),
      [WEIGHT_RULE],
    );
  });

  it('keeps the weight rule 100% primary for an A/B Canary (only matching requests reach the copy)', () => {
    const abPlan = routePlan(ctx(gatewayCanary(abTesting)));
    const r = desiredRoute(undefined, abPlan, 100, toRouteMatches(abTesting.analysis.match));
    assert.deepEqual(
      r.spec.rules?.find((x) => x.name === WEIGHT_RULE)?.backendRefs?.map((b) => b.weight),
      [100, 0],
    );
    assert.equal(r.spec.rules?.[0]?.name, MATCH_RULE);
    // An active match rule reads as "the canary gets traffic"; without it, nothing does.
    assert.deepEqual(readWeights(r, abPlan), { primary: 0, canary: 100 });
    assert.deepEqual(readWeights(desiredRoute(asStored(r), abPlan, 0, null), abPlan), { primary: 100, canary: 0 });
  });

  it('adds our rules first to a user route with its own catch-all, keeping it', () => {
    const user: HTTPRoute = asStored({
      apiVersion: 'gateway.networking.k8s.io/v1',
      kind: 'HTTPRoute',
      metadata: { name: 'web', namespace: 'shop' },
      spec: { parentRefs: [{ name: 'public', namespace: 'gateways' }], rules: [{ backendRefs: [{ name: 'web', port: 80 }] }] },
    });
    const r = desiredRoute(user, plan, 0);
    assert.equal(r.spec.rules?.[0]?.name, WEIGHT_RULE);
    assert.equal(r.spec.rules?.length, 2);
    assert.equal(r.spec.parentRefs?.length, 1, 'an equal parentRef (defaults aside) is not added twice');
    assert.equal(r.metadata.ownerReferences, undefined, 'a user route is not taken over');
  });

  it('omits the canary backend of a Service target at weight 0 (the copy may not exist)', () => {
    const svcPlan = routePlan(ctx(gatewayCanary({ targetRef: { kind: 'Service', name: 'web' } })));
    assert.deepEqual(
      desiredRoute(undefined, svcPlan, 0).spec.rules?.[0]?.backendRefs?.map((b) => b.name),
      ['web'],
    );
    assert.deepEqual(
      desiredRoute(undefined, svcPlan, 25).spec.rules?.[0]?.backendRefs?.map((b) => [b.name, b.weight]),
      [
        ['web', 75],
        ['web-canary', 25],
      ],
    );
  });

  it('owns timeouts and header filters of its rule only when the Canary sets them', () => {
    const p = routePlan(ctx(gatewayCanary({ service: { port: 80, timeout: '15s', headers: { request: { set: { 'x-env': 'prod' } } } } })));
    const r = desiredRoute(undefined, p);
    assert.deepEqual(r.spec.rules?.[0]?.timeouts, { request: '15s' });
    assert.deepEqual(r.spec.rules?.[0]?.filters, [{ type: 'RequestHeaderModifier', requestHeaderModifier: { set: [{ name: 'x-env', value: 'prod' }] } }]);
  });

  it('releases the route: our A/B rule gone, the weight rule handed to the apex Service or removed', () => {
    const stored = asStored(desiredRoute(undefined, plan, 30, toRouteMatches([{ headers: { a: { exact: 'b' } } }])));
    stored.spec.rules!.push({ backendRefs: [{ name: 'other', port: 80 }] });
    const handed = releasedRoute(stored, plan, 'web');
    assert.deepEqual(
      handed.spec.rules?.map((r) => r.name),
      [WEIGHT_RULE, undefined],
    );
    assert.deepEqual(handed.spec.rules?.[0]?.backendRefs, [{ group: '', kind: 'Service', name: 'web', port: 80, weight: 1 }]);
    const dropped = releasedRoute(stored, plan);
    assert.deepEqual(foreignRules(dropped), dropped.spec.rules);
    assert.equal(dropped.spec.rules?.length, 1);
    const d = disowned(desiredRoute(undefined, plan), canary());
    assert.equal(d.metadata.ownerReferences, undefined);
    assert.equal(d.metadata.labels?.['app.kubernetes.io/managed-by'], undefined);
  });
});

// ------------------------------------------------------------------ against an in-memory API

interface Call {
  verb: string;
  name: string;
}

class FakeApi {
  readonly calls: Call[] = [];
  readonly routes = new Map<string, HTTPRoute>();
  readonly services = new Map<string, k8s.V1Service>();
  private rv = 100;

  private conflict(): Error {
    return Object.assign(new Error('Conflict'), { code: 409 });
  }
  private notFound(): Error {
    return Object.assign(new Error('NotFound'), { code: 404 });
  }
  private stamp<T extends { metadata?: k8s.V1ObjectMeta }>(obj: T, uid?: string): T {
    const out = structuredClone(obj);
    out.metadata = { ...out.metadata, resourceVersion: String(++this.rv), uid: uid ?? out.metadata?.uid ?? `uid-${this.rv}` };
    return out;
  }

  readonly custom = {
    getNamespacedCustomObject: async (p: { name: string }) => {
      const r = this.routes.get(p.name);
      if (!r) throw this.notFound();
      return structuredClone(r);
    },
    createNamespacedCustomObject: async (p: { body: HTTPRoute }) => {
      this.calls.push({ verb: 'create', name: `route/${p.body.metadata.name}` });
      if (this.routes.has(p.body.metadata.name!)) throw this.conflict();
      const s = this.stamp({ ...p.body, spec: normalizeSpec(p.body.spec, 'shop') });
      this.routes.set(s.metadata.name!, s);
      return structuredClone(s);
    },
    replaceNamespacedCustomObject: async (p: { name: string; body: HTTPRoute }) => {
      this.calls.push({ verb: 'replace', name: `route/${p.name}` });
      const cur = this.routes.get(p.name);
      if (!cur) throw this.notFound();
      if (p.body.metadata.resourceVersion !== cur.metadata.resourceVersion) throw this.conflict();
      const s = this.stamp({ ...p.body, spec: normalizeSpec(p.body.spec, 'shop') }, cur.metadata.uid);
      this.routes.set(p.name, s);
      return structuredClone(s);
    },
    deleteNamespacedCustomObject: async (p: { name: string; body?: k8s.V1DeleteOptions }) => {
      this.calls.push({ verb: 'delete', name: `route/${p.name}` });
      const cur = this.routes.get(p.name);
      if (!cur) throw this.notFound();
      const pre = p.body?.preconditions;
      if (pre?.resourceVersion && pre.resourceVersion !== cur.metadata.resourceVersion) throw this.conflict();
      this.routes.delete(p.name);
      return {};
    },
  };

  readonly core = {
    readNamespacedService: async (p: { name: string }) => {
      const s = this.services.get(p.name);
      if (!s) throw this.notFound();
      return structuredClone(s);
    },
    createNamespacedService: async (p: { body: k8s.V1Service }) => {
      this.calls.push({ verb: 'create', name: `service/${p.body.metadata?.name}` });
      if (this.services.has(p.body.metadata!.name!)) throw this.conflict();
      const s = this.stamp(p.body);
      s.spec = { ...s.spec, clusterIP: '10.0.0.10' };
      this.services.set(s.metadata!.name!, s);
      return structuredClone(s);
    },
    replaceNamespacedService: async (p: { name: string; body: k8s.V1Service }) => {
      this.calls.push({ verb: 'replace', name: `service/${p.name}` });
      const cur = this.services.get(p.name);
      if (!cur) throw this.notFound();
      if (p.body.metadata?.resourceVersion !== cur.metadata?.resourceVersion) throw this.conflict();
      const s = this.stamp(p.body, cur.metadata?.uid);
      this.services.set(p.name, s);
      return structuredClone(s);
    },
    deleteNamespacedService: async (p: { name: string }) => {
      this.calls.push({ verb: 'delete', name: `service/${p.name}` });
      if (!this.services.delete(p.name)) throw this.notFound();
      return {};
    },
  };

  /** Informer-like caches that lag: they show what the store held when `sync()` was last called. */
  private snapshot = { routes: new Map<string, HTTPRoute>(), services: new Map<string, k8s.V1Service>() };
  sync(): void {
    this.snapshot = { routes: new Map(this.routes), services: new Map(this.services) };
  }
  readonly caches = {
    services: { get: (_ns: string, n: string) => this.snapshot.services.get(n), list: () => [...this.snapshot.services.values()] },
    httpRoutes: { get: (_ns: string, n: string) => this.snapshot.routes.get(n) as HttpRoute | undefined, list: () => [...this.snapshot.routes.values()] as HttpRoute[] },
  };

  writes(): number {
    return this.calls.length;
  }
}

function gatewayRouter(api: FakeApi, withCaches: boolean): GatewayApiRouter {
  return new GatewayApiRouter({
    core: api.core as unknown as k8s.CoreV1Api,
    custom: api.custom as unknown as k8s.CustomObjectsApi,
    ...(withCaches ? { caches: api.caches } : {}),
  });
}

describe('gatewayapi router against an in-memory API', () => {
  for (const withCaches of [false, true]) {
    describe(withCaches ? 'with (lagging) informer caches' : 'reading with GETs', () => {
      it('creates both Services and the route, then writes nothing when reconciled again', async () => {
        const api = new FakeApi();
        const r = gatewayRouter(api, withCaches);
        const c = ctx(gatewayCanary());
        await r.reconcile(c);
        assert.deepEqual(api.calls.map((x) => `${x.verb} ${x.name}`).sort(), ['create route/web', 'create service/web-canary', 'create service/web-primary']);
        assert.deepEqual(api.services.get('web-primary')?.spec?.selector, { app: 'web' });
        assert.deepEqual(api.services.get('web-canary')?.spec?.selector, { app: 'web-canary', [ROLE_LABEL]: 'canary' });
        const n = api.writes();
        await r.reconcile(c);
        api.sync();
        await r.reconcile(c);
        await r.setWeight(c, { weight: 0 });
        assert.equal(api.writes(), n, 'no write when nothing changed');
      });

      it('changes the weights with one replace and reports them', async () => {
        const api = new FakeApi();
        const r = gatewayRouter(api, withCaches);
        const c = ctx(gatewayCanary());
        await r.reconcile(c);
        api.sync();
        const n = api.writes();
        await r.setWeight(c, { weight: 30 });
        assert.equal(api.writes(), n + 1);
        assert.deepEqual(r.getWeights(c), { primary: 70, canary: 30 });
        await r.setWeight(c, { weight: 30 });
        assert.equal(api.writes(), n + 1);
      });

      it('keeps a rule the user added meanwhile (conflict: re-read and retry)', async () => {
        const api = new FakeApi();
        const r = gatewayRouter(api, withCaches);
        const c = ctx(gatewayCanary());
        await r.reconcile(c);
        api.sync();
        // The user adds a rule behind the router's back; the caches have not seen it.
        const route = api.routes.get('web')!;
        const edited = structuredClone(route);
        edited.spec.rules!.push({ matches: [{ path: { type: 'PathPrefix', value: '/admin' } }], backendRefs: [{ name: 'admin', port: 8080 }] });
        api.routes.set('web', { ...edited, metadata: { ...edited.metadata, resourceVersion: '999' } });
        await r.setWeight(c, { weight: 50 });
        const after = api.routes.get('web')!;
        assert.equal(after.spec.rules?.length, 2);
        assert.deepEqual(readWeights(after, routePlan(c)), { primary: 50, canary: 50 });
      });

      it('finalizes a mesh (GAMMA) route: all to the primary, then the route and Services are removed', async () => {
        const api = new FakeApi();
        const r = gatewayRouter(api, withCaches);
        const c = ctx(gatewayCanary({ service: { port: 80, gatewayRefs: [{ group: '', kind: 'Service', name: 'web' }] } }));
        await r.reconcile(c);
        await r.setWeight(c, { weight: 40 });
        api.sync();
        await r.finalize(c);
        assert.equal(api.routes.size, 0);
        assert.equal(api.services.size, 0);
        const verbs = api.calls.map((x) => `${x.verb} ${x.name}`);
        const zero = verbs.lastIndexOf('replace route/web');
        assert.ok(zero >= 0 && zero < verbs.indexOf('delete route/web'), `weights go to 0 before the delete: ${verbs.join(', ')}`);
      });

      it("finalizes a route on a Gateway: handed back to the apex Service and kept (the Gateway's listeners keep a route), Services removed", async () => {
        const api = new FakeApi();
        const r = gatewayRouter(api, withCaches);
        const c = ctx(gatewayCanary());
        await r.reconcile(c);
        await r.setWeight(c, { weight: 40 });
        api.sync();
        await r.finalize(c);
        const kept = api.routes.get('web');
        assert.ok(kept, 'the route stays');
        assert.deepEqual(kept.spec.rules?.map((x) => x.backendRefs?.map((b) => b.name)), [['web']], 'everything to the apex Service');
        assert.equal(kept.metadata.ownerReferences, undefined, 'no longer collected with the Canary');
        assert.equal(api.services.size, 0);
        const verbs = api.calls.map((x) => `${x.verb} ${x.name}`);
        assert.ok(!verbs.includes('delete route/web'));
        assert.ok(verbs.lastIndexOf('replace route/web') < verbs.indexOf('delete service/web-primary'), `the route leaves web-primary before it goes: ${verbs.join(', ')}`);
      });

      it('a deleting Canary that handed its route back keeps it handed back when its sync is retried (set-weight, finalize again)', async () => {
        const api = new FakeApi();
        const r = gatewayRouter(api, withCaches);
        const c = ctx(gatewayCanary());
        await r.reconcile(c);
        await r.setWeight(c, { weight: 40 });
        api.sync();
        await r.finalize(c);
        api.sync();
        const deleting = { ...c, canary: { ...c.canary, metadata: { ...c.canary.metadata, deletionTimestamp: new Date() } } };
        await r.setWeight(deleting, { weight: 0 });
        await r.finalize(deleting);
        const kept = api.routes.get('web');
        assert.deepEqual(kept?.spec.rules?.map((x) => x.backendRefs?.map((b) => b.name)), [['web']], 'still everything to the apex Service');
        assert.equal(api.services.size, 0, 'its Services are not made again');
      });

      it('finalizes a route the user added rules to: handed back to the apex Service, kept', async () => {
        const api = new FakeApi();
        const r = gatewayRouter(api, withCaches);
        const c = ctx(gatewayCanary());
        await r.reconcile(c);
        const edited = structuredClone(api.routes.get('web')!);
        edited.spec.rules!.push({ matches: [{ path: { type: 'PathPrefix', value: '/admin' } }], backendRefs: [{ name: 'admin', port: 8080 }] });
        api.routes.set('web', edited);
        api.sync();
        await r.finalize(c);
        const kept = api.routes.get('web')!;
        assert.ok(kept, 'route kept');
        assert.equal(kept.metadata.ownerReferences, undefined, 'no longer garbage-collected with the Canary');
        assert.deepEqual(kept.spec.rules?.find((x) => x.name === WEIGHT_RULE)?.backendRefs?.map((b) => b.name), ['web']);
        assert.equal(kept.spec.rules?.length, 2);
        assert.equal(api.services.size, 0);
      });
    });
  }

  it('finalize leaves a user route without our rules untouched', async () => {
    const api = new FakeApi();
    api.routes.set('web', {
      apiVersion: 'gateway.networking.k8s.io/v1',
      kind: 'HTTPRoute',
      metadata: { name: 'web', namespace: 'shop', resourceVersion: '1', uid: 'user-route' },
      spec: { rules: [{ backendRefs: [{ name: 'web', port: 80 }] }] },
    });
    const r = gatewayRouter(api, false);
    await r.finalize(ctx(gatewayCanary()));
    assert.equal(api.writes(), 0);
  });

  it('finalize of a user route removes only our rules, restoring it', async () => {
    const api = new FakeApi();
    const original: HTTPRoute = {
      apiVersion: 'gateway.networking.k8s.io/v1',
      kind: 'HTTPRoute',
      metadata: { name: 'web', namespace: 'shop', resourceVersion: '1', uid: 'user-route', annotations: { a: 'b' } },
      spec: { parentRefs: [{ name: 'public', namespace: 'gateways' }], rules: [{ matches: [{ path: { type: 'PathPrefix', value: '/v1' } }], backendRefs: [{ name: 'web', port: 80 }] }] },
    };
    api.routes.set('web', structuredClone(original));
    const r = gatewayRouter(api, false);
    const c = ctx(gatewayCanary());
    await r.reconcile(c);
    await r.setWeight(c, { weight: 20 });
    assert.equal(api.routes.get('web')?.spec.rules?.length, 2);
    await r.finalize(c);
    const after = api.routes.get('web')!;
    assert.deepEqual(after.spec.rules, normalizeSpec(original.spec, 'shop').rules);
    assert.deepEqual(after.metadata.annotations, { a: 'b' });
  });

  it('does not add a parentRef that is already there with the namespace spelled out', () => {
    const plan = routePlan(ctx(gatewayCanary({ service: { port: 80, gatewayRefs: [{ name: 'public' }] } })));
    const existing = asStored(desiredRoute(undefined, plan));
    existing.spec.parentRefs = [{ group: 'gateway.networking.k8s.io', kind: 'Gateway', name: 'public', namespace: 'shop' }];
    assert.equal(desiredRoute(existing, plan).spec.parentRefs?.length, 1);
  });

  it('refuses to take over a Service of the same name that canary-gate did not create', async () => {
    const api = new FakeApi();
    api.services.set('web-primary', { metadata: { name: 'web-primary', namespace: 'shop', resourceVersion: '1' }, spec: { selector: { app: 'other' } } });
    const r = gatewayRouter(api, false);
    await assert.rejects(r.reconcile(ctx(gatewayCanary())), /not created by canary-gate/);
    assert.deepEqual(api.services.get('web-primary')?.spec?.selector, { app: 'other' });
  });
});

describe('kubernetes router against an in-memory API', () => {
  it('creates <svc>-canary for blue/green only, once, and removes it on finalize', async () => {
    const api = new FakeApi();
    const r = new KubernetesRouter({ core: api.core as unknown as k8s.CoreV1Api });
    await r.reconcile(ctx(canary()));
    assert.equal(api.writes(), 0);
    const bg = ctx(canary(blueGreen));
    await r.reconcile(bg);
    await r.reconcile(bg);
    assert.deepEqual(
      api.calls.map((x) => `${x.verb} ${x.name}`),
      ['create service/web-canary'],
    );
    assert.deepEqual(api.services.get('web-canary')?.spec?.selector, { app: 'web-canary', [ROLE_LABEL]: 'canary' });
    await r.setWeight(bg, { weight: 50 });
    assert.equal(api.writes(), 1, 'setWeight writes nothing');
    await r.finalize(bg);
    assert.equal(api.services.size, 0);
  });
});

// ------------------------------------------------------------------ gatewayapi: mirroring and sticky sessions

describe('gatewayapi: mirroring and session affinity', () => {
  const sticky = {
    canary: { name: 'canary-session', value: 'c0ffee', maxAge: 86400 },
    primary: { name: 'primary-session', value: 'feed01', maxAge: 10 },
  };
  const rule = (route: HTTPRoute, name: string) => route.spec.rules?.find((r) => r.name === name);

  it('mirrors N percent of the weight rule to the canary Service, reports it, and stops at 0', () => {
    const plan = routePlan(ctx(gatewayCanary()));
    const mirrored = desiredRoute(undefined, plan, 0, null, { mirror: 25 });
    const filter = rule(mirrored, WEIGHT_RULE)?.filters?.find((f) => f.type === 'RequestMirror') as { requestMirror?: { backendRef?: { name: string }; percent?: number } };
    assert.equal(filter?.requestMirror?.backendRef?.name, 'web-canary');
    assert.equal(filter?.requestMirror?.percent, 25);
    assert.deepEqual(readWeights(mirrored, plan), { primary: 100, canary: 0, mirror: 25 });
    const full = desiredRoute(mirrored, plan, 0, null, { mirror: 100 });
    assert.equal((rule(full, WEIGHT_RULE)?.filters?.[0] as { requestMirror?: { percent?: number } }).requestMirror?.percent, undefined, '100% is the filter without a percent');
    assert.equal(readWeights(full, plan).mirror, 100);
    const stopped = desiredRoute(full, plan, 20, null, { mirror: 0 });
    assert.equal(rule(stopped, WEIGHT_RULE)?.filters, undefined);
    assert.equal(readWeights(stopped, plan).mirror, undefined);
  });

  it('keeps a mirror filter of the user (to another Service) and the mirror in force when extras are not given', () => {
    const plan = routePlan(ctx(gatewayCanary()));
    const mirrored = desiredRoute(undefined, plan, 0, null, { mirror: 50 });
    const theirs = { type: 'RequestMirror', requestMirror: { backendRef: { name: 'audit', port: 80 } } };
    rule(mirrored, WEIGHT_RULE)?.filters?.unshift(theirs);
    const reconciled = desiredRoute(mirrored, plan);
    assert.equal(readWeights(reconciled, plan).mirror, 50, 'reconcile without extras keeps the mirror');
    const stopped = desiredRoute(reconciled, plan, 0, null, { mirror: 0 });
    assert.deepEqual(rule(stopped, WEIGHT_RULE)?.filters, [theirs]);
  });

  it('sticky: cookie rules before the weight rule send each side its clients; each side sets its cookie', () => {
    const plan = routePlan(ctx(gatewayCanary()));
    const route = desiredRoute(undefined, plan, 30, null, { mirror: 0, sticky });
    const names = route.spec.rules?.map((r) => r.name);
    assert.deepEqual(names, ['canary-gate-sticky', 'canary-gate-sticky-primary', WEIGHT_RULE]);
    const canaryRule = rule(route, 'canary-gate-sticky');
    assert.deepEqual(canaryRule?.backendRefs?.map((b) => [b.name, b.weight]), [['web-canary', 100]]);
    const cookieMatch = canaryRule?.matches?.[0]?.headers?.[0];
    assert.equal(cookieMatch?.name, 'Cookie');
    assert.equal(cookieMatch?.type, 'RegularExpression');
    const re = new RegExp(cookieMatch?.value ?? '');
    assert.ok(re.test('a=1; canary-session=c0ffee; b=2') && re.test('canary-session=c0ffee'), 'matches the cookie anywhere in the header');
    assert.ok(!re.test('canary-session=c0ffee1') && !re.test('xcanary-session=c0ffee'), 'and only that cookie with that value');
    assert.deepEqual(rule(route, 'canary-gate-sticky-primary')?.backendRefs?.map((b) => b.name), ['web-primary']);
    const refs = rule(route, WEIGHT_RULE)?.backendRefs ?? [];
    const setCookie = (name: string) => JSON.stringify(refs.find((b) => b.name === name)?.filters);
    assert.match(setCookie('web-canary'), /Set-Cookie.*canary-session=c0ffee; Max-Age=86400; Path=\//);
    assert.match(setCookie('web-primary'), /Set-Cookie.*primary-session=feed01; Max-Age=10; Path=\//);
    assert.equal(readWeights(route, plan).canary, 30, 'the sticky rules do not change the weight read back');
  });

  it('sticky rules go when the canary has no weight or the run ends, and the route is released without them', () => {
    const plan = routePlan(ctx(gatewayCanary()));
    const route = desiredRoute(undefined, plan, 30, null, { mirror: 0, sticky });
    const kept = desiredRoute(route, plan);
    assert.equal(kept.spec.rules?.length, 3, 'kept as they are without extras');
    const off = desiredRoute(route, plan, 0, null, { mirror: 0, sticky });
    assert.deepEqual(off.spec.rules?.map((r) => r.name), [WEIGHT_RULE], 'weight 0 pins nobody');
    assert.equal(off.spec.rules?.[0]?.backendRefs?.some((b) => b.filters), false);
    assert.deepEqual(releasedRoute(route, plan, 'web').spec.rules?.map((r) => r.name), [WEIGHT_RULE]);
  });

  it('the router writes the mirror and sticky split once, then nothing while it is in force', async () => {
    const api = new FakeApi();
    const r = gatewayRouter(api, true);
    const c = ctx(gatewayCanary());
    await r.reconcile(c);
    api.sync();
    let n = api.writes();
    await r.setWeight(c, { weight: 0, mirror: 40 });
    assert.equal(api.writes(), n + 1);
    api.sync();
    await r.setWeight(c, { weight: 0, mirror: 40 });
    assert.equal(api.writes(), n + 1, 'no second write');
    assert.equal(r.getWeights(c).mirror, 40);
    n = api.writes();
    await r.setWeight(c, { weight: 20, sticky });
    api.sync();
    await r.setWeight(c, { weight: 20, sticky });
    assert.equal(api.writes(), n + 1);
    assert.equal(r.getWeights(c).mirror, undefined, 'the weight step ended the mirroring');
    await r.finalize(c);
    assert.deepEqual(api.routes.get('web')?.spec.rules?.map((x) => x.name), [WEIGHT_RULE], 'no sticky rule is left behind');
  });
});
