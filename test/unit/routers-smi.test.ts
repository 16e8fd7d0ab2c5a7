// The SMI router: TrafficSplit building per version (v1alpha1 quantities,
// v1alpha2/v1alpha3 integers), the v1alpha3 A/B HTTPRouteGroup, the field
// support rows of core/providers.ts, the per-provider traits, and, against
// an in-memory API, that it writes only on change, keeps what the user owns,
// returns traffic to the primary before removing anything, and never
// touches a TrafficSplit canary-gate did not create.

import assert from 'node:assert/strict';
import type * as k8s from '@kubernetes/client-node';
import type { Canary, CanarySpec } from '../../core/api/types.js';
import { ROUTER_RESOURCES, unsupportedFields, type RouterResource } from '../../core/providers.js';
import { BUILTIN_METRICS } from '../../reconciler/analysis/metrics/builtins.js';
import { NameTakenError } from '../../reconciler/routers/owned.js';
import { Routers, routerTraits, watchedRouterResources } from '../../reconciler/routers/index.js';
import type { RouterContext } from '../../reconciler/routers/router.js';
import {
  LINKERD_METRICS,
  OSM_METRICS,
  SmiRouter,
  desiredSplit,
  matchRegex,
  parseWeight,
  readWeights,
  splitPlan,
  toRouteGroupMatches,
  type HTTPRouteGroup,
  type TrafficSplit,
} from '../../reconciler/routers/smi.js';
import { ROLE_LABEL } from '../../core/contract.js';
import { cookieHeaderRegex } from '../../reconciler/routers/split.js';

const UID = '6a0d2c1e-0000-4000-8000-0000000000a1';

function canary(spec: Partial<CanarySpec> = {}): Canary {
  return {
    apiVersion: 'canarygate.dev/v1alpha1',
    kind: 'Canary',
    metadata: { name: 'web', namespace: 'shop', uid: UID },
    spec: { provider: 'osm', targetRef: { kind: 'Deployment', name: 'web' }, service: { port: 80 }, ...spec },
  };
}

function target(): k8s.V1Deployment {
  return {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name: 'web', namespace: 'shop' },
    spec: { replicas: 3, selector: { matchLabels: { app: 'web' } }, template: { metadata: { labels: { app: 'web' } }, spec: { containers: [{ name: 'app', image: 'web:1' }] } } },
    status: { readyReplicas: 3 },
  };
}

function apexService(): k8s.V1Service {
  return { apiVersion: 'v1', kind: 'Service', metadata: { name: 'web', namespace: 'shop' }, spec: { selector: { app: 'web' }, ports: [{ name: 'http', port: 80, targetPort: 'http', protocol: 'TCP' }] } };
}

function ctx(c: Canary, over: Partial<RouterContext> = {}): RouterContext {
  return { canary: c, namespace: 'shop', target: target(), service: apexService(), ...over };
}

const abMatch = [{ headers: { 'x-canary': { exact: 'insider' } } }];
const abSpec = (provider: string): Partial<CanarySpec> => ({ provider, analysis: { iterations: 3, match: abMatch } });

// ------------------------------------------------------------------ pure parts

describe('smi: TrafficSplit per version', () => {
  it('v1alpha1 (linkerd) writes weights as Kubernetes quantities, v1alpha2 and v1alpha3 as integers', () => {
    const c = ctx(canary());
    const v1 = desiredSplit(undefined, splitPlan(c, 'v1alpha1'), 30);
    assert.equal(v1.apiVersion, 'split.smi-spec.io/v1alpha1');
    assert.deepEqual(v1.spec.backends, [
      { service: 'web-primary', weight: '70' },
      { service: 'web-canary', weight: '30' },
    ]);
    for (const v of ['v1alpha2', 'v1alpha3'] as const) {
      const s = desiredSplit(undefined, splitPlan(c, v), 30);
      assert.equal(s.apiVersion, `split.smi-spec.io/${v}`);
      assert.deepEqual(s.spec.backends, [
        { service: 'web-primary', weight: 70 },
        { service: 'web-canary', weight: 30 },
      ]);
    }
  });

  it('never writes both weights 0: weight 0 is primary 100, canary 0, in every version', () => {
    for (const v of ['v1alpha1', 'v1alpha2', 'v1alpha3'] as const) {
      const s = desiredSplit(undefined, splitPlan(ctx(canary()), v), 0);
      assert.deepEqual(s.spec.backends.map((b) => parseWeight(b.weight)), [100, 0], v);
    }
    // A new TrafficSplit without a weight asked for starts all on the primary.
    assert.deepEqual(readWeights(desiredSplit(undefined, splitPlan(ctx(canary()), 'v1alpha2')), splitPlan(ctx(canary()), 'v1alpha2')), { primary: 100, canary: 0 });
  });

  it('names the TrafficSplit after the apex, its root service after spec.service.hosts[0] when set', () => {
    const plain = desiredSplit(undefined, splitPlan(ctx(canary()), 'v1alpha2'), 0);
    assert.equal(plain.metadata.name, 'web');
    assert.equal(plain.spec.service, 'web');
    const named = desiredSplit(undefined, splitPlan(ctx(canary({ service: { port: 80, name: 'front' } })), 'v1alpha2'), 0);
    assert.deepEqual([named.metadata.name, named.spec.service, named.spec.backends[0]?.service], ['front', 'front', 'front-primary']);
    const hosted = desiredSplit(undefined, splitPlan(ctx(canary({ service: { port: 80, hosts: ['web.shop.svc.cluster.local'] } })), 'v1alpha2'), 0);
    assert.deepEqual([hosted.metadata.name, hosted.spec.service], ['web', 'web.shop.svc.cluster.local']);
  });

  it('reads weights of any version: quantities, integers, the canary share of their sum', () => {
    const plan = splitPlan(ctx(canary()), 'v1alpha1');
    const split = (p: unknown, c: unknown) => ({ spec: { service: 'web', backends: [{ service: 'web-primary', weight: p }, { service: 'web-canary', weight: c }] } }) as TrafficSplit;
    assert.deepEqual(readWeights(split('3', '1'), plan), { primary: 75, canary: 25 });
    assert.deepEqual(readWeights(split('500m', '500m'), plan), { primary: 50, canary: 50 });
    assert.deepEqual(readWeights(split(90, 10), plan), { primary: 90, canary: 10 });
    assert.deepEqual(readWeights(split(0, 0), plan), { primary: 100, canary: 0 });
    assert.deepEqual(readWeights(undefined, plan), { primary: 100, canary: 0 });
    assert.equal(parseWeight('1k'), 1000);
    assert.ok(Number.isNaN(parseWeight('lots')));
  });
});

describe('smi: v1alpha3 A/B route group', () => {
  it('builds HTTPRouteGroup matches from headers (a cookie through the cookie header), path and method', () => {
    const cookie = cookieHeaderRegex({ name: 'canary', value: 'always' });
    const matches = toRouteGroupMatches([
      { headers: { 'X-Canary': { exact: 'in.sider' }, cookie: { regex: cookie } }, uri: { prefix: '/api/' }, method: { exact: 'post' } },
      { headers: { 'user-agent': { suffix: 'Firefox' } } },
    ]);
    assert.deepEqual(matches, [
      { name: 'match-0', pathRegex: '^/api/.*', methods: ['POST'], headers: [{ 'x-canary': '^in\\.sider$' }, { cookie }] },
      { name: 'match-1', headers: [{ 'user-agent': '.*Firefox$' }] },
    ]);
    assert.equal(matchRegex({ regex: '^v[0-9]+$' }, 'x'), '^v[0-9]+$');
    assert.throws(() => toRouteGroupMatches([{ queryParams: { q: { exact: '1' } } }]), /cannot match query parameters/);
    assert.throws(() => toRouteGroupMatches([{ method: { prefix: 'G' } }]), /matches a method exactly/);
  });

  it('an A/B split on v1alpha3 sends the matching requests all to the canary, and none once the run ends', () => {
    const plan = splitPlan(ctx(canary(abSpec('smi:v1alpha3'))), 'v1alpha3');
    assert.equal(plan.routeGroup?.name, 'web-canary-gate-ab');
    const on = desiredSplit(undefined, plan, 50, true);
    assert.deepEqual(on.spec.matches, [{ kind: 'HTTPRouteGroup', name: 'web-canary-gate-ab' }]);
    assert.deepEqual(on.spec.backends.map((b) => b.weight), [0, 100]);
    const off = desiredSplit(on, plan, 0, false);
    assert.equal(off.spec.matches, undefined);
    assert.deepEqual(off.spec.backends.map((b) => b.weight), [100, 0]);
    // Kept as in force when no weight is asked for (a reconcile mid-run).
    assert.deepEqual(desiredSplit(on, plan).spec, on.spec);
  });

  it('a leftover A/B split whose Canary no longer asks for one goes back to the primary, not all to the canary', () => {
    const on = desiredSplit(undefined, splitPlan(ctx(canary(abSpec('smi:v1alpha3'))), 'v1alpha3'), 50, true);
    const weighted = splitPlan(ctx(canary({ provider: 'smi:v1alpha3' })), 'v1alpha3');
    const kept = desiredSplit(on, weighted);
    assert.equal(kept.spec.matches, undefined);
    assert.deepEqual(readWeights(kept, weighted), { primary: 100, canary: 0 });
  });

  it('v1alpha1 and v1alpha2 have no route group (the CRD refuses analysis.match for them)', () => {
    assert.equal(splitPlan(ctx(canary(abSpec('linkerd'))), 'v1alpha1').routeGroup, undefined);
    assert.equal(splitPlan(ctx(canary(abSpec('osm'))), 'v1alpha2').routeGroup, undefined);
  });
});

describe('smi: field support and traits', () => {
  const set = (...fields: string[]) => (f: string) => fields.includes(f);

  it('analysis.match is honoured from smi:v1alpha3 on only', () => {
    for (const p of ['linkerd', 'osm', 'smi', 'smi:v1alpha1', 'smi:v1alpha2:linkerd']) assert.deepEqual(unsupportedFields(p, set('analysis.match')), ['analysis.match'], p);
    for (const p of ['smi:v1alpha3', 'smi:v1alpha3:osm']) assert.deepEqual(unsupportedFields(p, set('analysis.match')), [], p);
  });

  it('service.hosts is honoured (hosts[0] names the root service); mirroring, sticky sessions and gateway fields are not', () => {
    assert.deepEqual(unsupportedFields('osm', set('service.hosts')), []);
    assert.deepEqual(unsupportedFields('linkerd', set('analysis.mirror', 'analysis.sessionAffinity', 'service.gatewayRefs', 'service.timeout')), ['service.gatewayRefs', 'service.timeout', 'analysis.mirror', 'analysis.sessionAffinity']);
  });

  it('built-in metrics follow the mesh a provider string names; plain smi keeps the Pod-level defaults', () => {
    assert.equal(routerTraits('linkerd').builtinMetrics, LINKERD_METRICS);
    assert.equal(routerTraits('smi:v1alpha2:linkerd').builtinMetrics, LINKERD_METRICS);
    assert.equal(routerTraits('osm').builtinMetrics, OSM_METRICS);
    assert.equal(routerTraits('smi:v1alpha3:osm').builtinMetrics, OSM_METRICS);
    assert.equal(routerTraits('smi').builtinMetrics, undefined);
    assert.equal(routerTraits('smi:v1alpha3:consul').builtinMetrics, undefined);
    assert.equal(routerTraits('osm').copySharesUserService, false);
    assert.match(LINKERD_METRICS['request-success-rate'] ?? '', /response_total\{namespace="\{\{ namespace \}\}",deployment="\{\{ target \}\}-canary",direction="inbound",classification!="failure"\}/);
    assert.match(OSM_METRICS['request-duration'] ?? '', /osm_request_duration_ms_bucket\{destination_namespace="\{\{ namespace \}\}",destination_kind="Deployment",destination_name="\{\{ target \}\}-canary"\}/);
    assert.deepEqual(Object.keys(LINKERD_METRICS).sort(), Object.keys(BUILTIN_METRICS).sort());
  });

  it('one router per provider string, each writing its version; every TrafficSplit version and the route group are watched', () => {
    const routers = new Routers({ core: {} as k8s.CoreV1Api, custom: {} as k8s.CustomObjectsApi, caches: { services: { get: () => undefined, list: () => [] }, httpRoutes: { get: () => undefined, list: () => [] } } });
    const versionOf = (p: string) => (routers.for(p) as SmiRouter).version;
    assert.deepEqual(['linkerd', 'osm', 'smi', 'smi:v1alpha1', 'smi:v1alpha3:osm'].map(versionOf), ['v1alpha1', 'v1alpha2', 'v1alpha2', 'v1alpha1', 'v1alpha3']);
    assert.notEqual(routers.for('osm'), routers.for('smi'));
    const watched = watchedRouterResources().map((r) => `${r.plural}.${r.group}/${r.version}`);
    for (const r of ROUTER_RESOURCES.smi) assert.ok(watched.includes(`${r.plural}.${r.group}/${r.version}`), r.plural + r.version);
    assert.deepEqual(ROUTER_RESOURCES.smi.map((r) => `${r.kind} ${r.version}`), ['TrafficSplit v1alpha1', 'TrafficSplit v1alpha2', 'TrafficSplit v1alpha3', 'HTTPRouteGroup v1alpha3']);
  });
});

// ------------------------------------------------------------------ against an in-memory API

type Obj = { apiVersion?: string; metadata?: k8s.V1ObjectMeta; [k: string]: unknown };

/** An API server for Services and SMI objects: stamps resourceVersions, enforces them, logs every write. */
class FakeApi {
  readonly calls: string[] = [];
  readonly store = new Map<string, Map<string, Obj>>([
    ['trafficsplits', new Map()],
    ['httproutegroups', new Map()],
    ['services', new Map()],
  ]);
  private rv = 100;
  private snapshot = new Map<string, Map<string, Obj>>();

  private err(code: number): Error {
    return Object.assign(new Error(String(code)), { code });
  }
  private stamp<T extends Obj>(obj: T, uid?: string): T {
    const out = structuredClone(obj);
    out.metadata = { ...out.metadata, resourceVersion: String(++this.rv), uid: uid ?? out.metadata?.uid ?? `uid-${this.rv}` };
    return out;
  }
  private kind(plural: string): string {
    return { trafficsplits: 'split', httproutegroups: 'group', services: 'service' }[plural] ?? plural;
  }
  private get(plural: string, name: string): Obj {
    const o = this.store.get(plural)?.get(name);
    if (!o) throw this.err(404);
    return structuredClone(o);
  }
  private create(plural: string, body: Obj): Obj {
    this.calls.push(`create ${this.kind(plural)}/${body.metadata?.name}`);
    const m = this.store.get(plural)!;
    if (m.has(body.metadata!.name!)) throw this.err(409);
    const s = this.stamp(body);
    m.set(s.metadata!.name!, s);
    return structuredClone(s);
  }
  private replace(plural: string, name: string, body: Obj): Obj {
    this.calls.push(`replace ${this.kind(plural)}/${name}`);
    const m = this.store.get(plural)!;
    const cur = m.get(name);
    if (!cur) throw this.err(404);
    if (body.metadata?.resourceVersion !== cur.metadata?.resourceVersion) throw this.err(409);
    const s = this.stamp(body, cur.metadata?.uid);
    m.set(name, s);
    return structuredClone(s);
  }
  private delete(plural: string, name: string): object {
    this.calls.push(`delete ${this.kind(plural)}/${name}`);
    if (!this.store.get(plural)!.delete(name)) throw this.err(404);
    return {};
  }

  readonly custom = {
    getNamespacedCustomObject: async (p: { plural: string; name: string }) => this.get(p.plural, p.name),
    createNamespacedCustomObject: async (p: { plural: string; body: Obj }) => this.create(p.plural, p.body),
    replaceNamespacedCustomObject: async (p: { plural: string; name: string; body: Obj }) => this.replace(p.plural, p.name, p.body),
    deleteNamespacedCustomObject: async (p: { plural: string; name: string }) => this.delete(p.plural, p.name),
  };
  readonly core = {
    readNamespacedService: async (p: { name: string }) => this.get('services', p.name),
    createNamespacedService: async (p: { body: Obj }) => this.create('services', p.body),
    replaceNamespacedService: async (p: { name: string; body: Obj }) => this.replace('services', p.name, p.body),
    deleteNamespacedService: async (p: { name: string }) => this.delete('services', p.name),
  };

  /** Informer-like caches that lag: they show what the store held when `sync()` was last called. */
  sync(): void {
    this.snapshot = new Map([...this.store].map(([k, v]) => [k, new Map(v)]));
  }
  private cacheOf(plural: string) {
    return { get: (_ns: string, n: string) => this.snapshot.get(plural)?.get(n), list: () => [...(this.snapshot.get(plural)?.values() ?? [])] };
  }
  readonly caches = {
    services: this.cacheOf('services') as never,
    routerObjects: (r: RouterResource) => this.cacheOf(r.plural),
  };

  split(): TrafficSplit | undefined {
    return this.store.get('trafficsplits')?.get('web') as TrafficSplit | undefined;
  }
  group(): HTTPRouteGroup | undefined {
    return this.store.get('httproutegroups')?.get('web-canary-gate-ab') as HTTPRouteGroup | undefined;
  }
}

function smiRouter(api: FakeApi, provider: string, withCaches: boolean): SmiRouter {
  return new SmiRouter({ core: api.core as unknown as k8s.CoreV1Api, custom: api.custom as unknown as k8s.CustomObjectsApi, provider, ...(withCaches ? { caches: api.caches } : {}) });
}

describe('smi router against an in-memory API', () => {
  for (const withCaches of [false, true]) {
    describe(withCaches ? 'with (lagging) informer caches' : 'reading with GETs', () => {
      it('creates both Services and the TrafficSplit all to the primary, then writes nothing when reconciled again', async () => {
        const api = new FakeApi();
        const r = smiRouter(api, 'osm', withCaches);
        const c = ctx(canary());
        await r.reconcile(c);
        assert.deepEqual([...api.calls].sort(), ['create service/web-canary', 'create service/web-primary', 'create split/web']);
        assert.deepEqual((api.store.get('services')?.get('web-primary')?.spec as k8s.V1ServiceSpec).selector, { app: 'web' });
        assert.deepEqual((api.store.get('services')?.get('web-canary')?.spec as k8s.V1ServiceSpec).selector, { app: 'web-canary', [ROLE_LABEL]: 'canary' });
        assert.equal(api.split()?.apiVersion, 'split.smi-spec.io/v1alpha2');
        assert.deepEqual(api.split()?.spec.backends, [
          { service: 'web-primary', weight: 100 },
          { service: 'web-canary', weight: 0 },
        ]);
        const n = api.calls.length;
        await r.reconcile(c);
        api.sync();
        await r.reconcile(c);
        await r.setWeight(c, { weight: 0 });
        assert.equal(api.calls.length, n, `no write when nothing changed: ${api.calls.slice(n).join(', ')}`);
      });

      it('changes the weights with one replace, reports them, and writes nothing for the same weight again', async () => {
        const api = new FakeApi();
        const r = smiRouter(api, 'osm', withCaches);
        const c = ctx(canary());
        await r.reconcile(c);
        api.sync();
        const n = api.calls.length;
        await r.setWeight(c, { weight: 30 });
        assert.deepEqual(api.calls.slice(n), ['replace split/web']);
        api.sync();
        assert.deepEqual(r.getWeights(c), { primary: 70, canary: 30 });
        await r.setWeight(c, { weight: 30 });
        assert.equal(api.calls.length, n + 1);
      });

      it('keeps the labels and annotations a user added, and puts back weights the user changed', async () => {
        const api = new FakeApi();
        const r = smiRouter(api, 'osm', withCaches);
        const c = ctx(canary());
        await r.reconcile(c);
        const edited = structuredClone(api.split()!);
        edited.metadata.labels = { ...edited.metadata.labels, team: 'shop' };
        edited.metadata.annotations = { note: 'keep me' };
        edited.spec.backends = [
          { service: 'web-primary', weight: 50 },
          { service: 'web-canary', weight: 50 },
        ];
        api.store.get('trafficsplits')!.set('web', { ...edited, metadata: { ...edited.metadata, resourceVersion: '999' } });
        api.sync();
        await r.setWeight(c, { weight: 10 });
        const after = api.split()!;
        assert.deepEqual(after.spec.backends.map((b) => b.weight), [90, 10]);
        assert.equal(after.metadata.labels?.team, 'shop');
        assert.deepEqual(after.metadata.annotations, { note: 'keep me' });
      });

      it('finalizes: everything to the primary first, then the TrafficSplit and both Services go', async () => {
        const api = new FakeApi();
        const r = smiRouter(api, 'osm', withCaches);
        const c = ctx(canary());
        await r.reconcile(c);
        await r.setWeight(c, { weight: 40 });
        api.sync();
        const n = api.calls.length;
        await r.finalize(c);
        assert.deepEqual(api.calls.slice(n), ['replace split/web', 'delete split/web', 'delete service/web-canary', 'delete service/web-primary']);
        assert.equal(api.split(), undefined);
        assert.equal(api.store.get('services')?.size, 0);
      });

      it('v1alpha3 A/B: the route group is written before the split that names it, and removed after the split on finalize', async () => {
        const api = new FakeApi();
        const r = smiRouter(api, 'smi:v1alpha3', withCaches);
        const c = ctx(canary(abSpec('smi:v1alpha3')));
        await r.reconcile(c);
        api.sync();
        const n = api.calls.length;
        await r.setWeight(c, { weight: 100, match: abMatch });
        assert.deepEqual(api.calls.slice(n), ['replace split/web']);
        assert.deepEqual(api.group()?.spec.matches, [{ name: 'match-0', headers: [{ 'x-canary': '^insider$' }] }]);
        assert.ok(api.calls.indexOf('create group/web-canary-gate-ab') < api.calls.indexOf('create split/web'), api.calls.join(', '));
        assert.deepEqual(api.split()?.spec.matches, [{ kind: 'HTTPRouteGroup', name: 'web-canary-gate-ab' }]);
        api.sync();
        assert.deepEqual(r.getWeights(c), { primary: 0, canary: 100 });
        const m = api.calls.length;
        await r.setWeight(c, { weight: 100, match: abMatch });
        assert.equal(api.calls.length, m, 'in force already');
        await r.setWeight(c, { weight: 0, match: abMatch });
        assert.equal(api.split()?.spec.matches, undefined);
        api.sync();
        const k = api.calls.length;
        await r.finalize(c);
        assert.deepEqual(api.calls.slice(k), ['delete split/web', 'delete group/web-canary-gate-ab', 'delete service/web-canary', 'delete service/web-primary']);
      });
    });
  }

  it('linkerd writes a v1alpha1 TrafficSplit whose weights are quantities, and reads them back', async () => {
    const api = new FakeApi();
    const r = smiRouter(api, 'linkerd', true);
    const c = ctx(canary({ provider: 'linkerd' }));
    await r.reconcile(c);
    await r.setWeight(c, { weight: 25 });
    assert.equal(api.split()?.apiVersion, 'split.smi-spec.io/v1alpha1');
    assert.deepEqual(api.split()?.spec.backends, [
      { service: 'web-primary', weight: '75' },
      { service: 'web-canary', weight: '25' },
    ]);
    api.sync();
    assert.deepEqual(r.getWeights(c), { primary: 75, canary: 25 });
    const n = api.calls.length;
    await r.setWeight(c, { weight: 25 });
    assert.equal(api.calls.length, n);
  });

  it('never changes a TrafficSplit of that name that canary-gate did not create, and reports it', async () => {
    const api = new FakeApi();
    const theirs: TrafficSplit = {
      apiVersion: 'split.smi-spec.io/v1alpha2',
      kind: 'TrafficSplit',
      metadata: { name: 'web', namespace: 'shop', resourceVersion: '1', uid: 'user-split' },
      spec: { service: 'web', backends: [{ service: 'web-v1', weight: 100 }] },
    };
    api.store.get('trafficsplits')!.set('web', structuredClone(theirs) as unknown as Obj);
    api.sync();
    const r = smiRouter(api, 'osm', true);
    const c = ctx(canary());
    const conflicts = r.conflicts(c);
    assert.equal(conflicts.length, 1);
    assert.match(conflicts[0] ?? '', /^TrafficSplit shop\/web exists and was not created by canary-gate/);
    await assert.rejects(r.reconcile(c), (err: unknown) => err instanceof NameTakenError && err.kind === 'TrafficSplit');
    await assert.rejects(r.setWeight(c, { weight: 20 }), NameTakenError);
    await r.finalize(c);
    assert.deepEqual(api.split(), theirs);
    assert.ok(!api.calls.some((x) => x.endsWith('split/web')), api.calls.join(', '));
  });

  it('refuses to run without the apex Service (the mesh splits its traffic)', async () => {
    const api = new FakeApi();
    const r = smiRouter(api, 'osm', false);
    await assert.rejects(r.reconcile(ctx(canary(), { service: undefined })), /Service shop\/web does not exist/);
    assert.equal(api.calls.length, 0);
  });
});
