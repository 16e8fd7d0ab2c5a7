// The contour router: the HTTPProxy it builds (weights, A/B routes,
// mirroring, retries, timeouts, header policies), against an in-memory API:
// writes only on change, puts back the routes it owns, keeps what it does
// not, never touches a proxy it did not create, and finalizes with all
// traffic on the primary before handing the proxy back.

import assert from 'node:assert/strict';
import type * as k8s from '@kubernetes/client-node';
import type { Canary, CanarySpec } from '../../core/api/types.js';
import { ROUTER_RESOURCES, unsupportedFields, type RouterResource } from '../../core/providers.js';
import { renderQuery, templateContext } from '../../reconciler/analysis/metrics/template.js';
import { CONTOUR_METRICS, ContourRouter, proxyPlan, readSplit, toConditions, type HTTPProxy, type ProxyRoute } from '../../reconciler/routers/contour.js';
import { routerTraits, watchedRouterResources } from '../../reconciler/routers/index.js';
import type { RouterContext } from '../../reconciler/routers/router.js';

const UID = '6a0d2c1e-0000-4000-8000-000000000003';

function canary(spec: Partial<CanarySpec> = {}): Canary {
  return {
    apiVersion: 'canarygate.dev/v1alpha1',
    kind: 'Canary',
    metadata: { name: 'web', namespace: 'shop', uid: UID },
    spec: { provider: 'contour', targetRef: { kind: 'Deployment', name: 'web' }, service: { port: 80 }, ...spec },
  };
}

function ctx(c: Canary): RouterContext {
  return {
    canary: c,
    namespace: 'shop',
    target: { metadata: { name: 'web', namespace: 'shop' }, spec: { replicas: 2, selector: { matchLabels: { app: 'web' } }, template: { metadata: { labels: { app: 'web' } } } } },
    service: { metadata: { name: 'web', namespace: 'shop' }, spec: { selector: { app: 'web' }, ports: [{ name: 'http', port: 80, targetPort: 'http', protocol: 'TCP' }] } },
  };
}

// ------------------------------------------------------------------ in-memory API

interface Call {
  verb: string;
  name: string;
  body?: unknown;
}

class FakeApi {
  readonly calls: Call[] = [];
  readonly objects = new Map<string, HTTPProxy>();
  readonly services = new Map<string, k8s.V1Service>();
  private rv = 100;

  private err(code: number): Error {
    return Object.assign(new Error(String(code)), { code });
  }
  private stamp<T extends { metadata?: k8s.V1ObjectMeta }>(obj: T, uid?: string): T {
    const out = structuredClone(obj);
    out.metadata = { ...out.metadata, resourceVersion: String(++this.rv), uid: uid ?? out.metadata?.uid ?? `uid-${this.rv}` };
    return out;
  }

  readonly custom = {
    getNamespacedCustomObject: async (p: { name: string }) => {
      const r = this.objects.get(p.name);
      if (!r) throw this.err(404);
      return structuredClone(r);
    },
    createNamespacedCustomObject: async (p: { plural: string; body: HTTPProxy }) => {
      this.calls.push({ verb: 'create', name: `${p.plural}/${p.body.metadata.name}`, body: structuredClone(p.body) });
      if (this.objects.has(p.body.metadata.name!)) throw this.err(409);
      const s = this.stamp(p.body);
      this.objects.set(s.metadata.name!, s);
      return structuredClone(s);
    },
    replaceNamespacedCustomObject: async (p: { plural: string; name: string; body: HTTPProxy }) => {
      this.calls.push({ verb: 'replace', name: `${p.plural}/${p.name}`, body: structuredClone(p.body) });
      const cur = this.objects.get(p.name);
      if (!cur) throw this.err(404);
      if (p.body.metadata.resourceVersion !== cur.metadata.resourceVersion) throw this.err(409);
      const s = this.stamp(p.body, cur.metadata.uid);
      this.objects.set(p.name, s);
      return structuredClone(s);
    },
    deleteNamespacedCustomObject: async (p: { plural: string; name: string; body?: k8s.V1DeleteOptions }) => {
      this.calls.push({ verb: 'delete', name: `${p.plural}/${p.name}` });
      const cur = this.objects.get(p.name);
      if (!cur) throw this.err(404);
      if (p.body?.preconditions?.uid && p.body.preconditions.uid !== cur.metadata.uid) throw this.err(409);
      this.objects.delete(p.name);
      return {};
    },
  };

  readonly core = {
    readNamespacedService: async (p: { name: string }) => {
      const s = this.services.get(p.name);
      if (!s) throw this.err(404);
      return structuredClone(s);
    },
    createNamespacedService: async (p: { body: k8s.V1Service }) => {
      this.calls.push({ verb: 'create', name: `service/${p.body.metadata?.name}` });
      if (this.services.has(p.body.metadata!.name!)) throw this.err(409);
      const s = this.stamp(p.body);
      this.services.set(s.metadata!.name!, s);
      return structuredClone(s);
    },
    replaceNamespacedService: async (p: { name: string; body: k8s.V1Service }) => {
      this.calls.push({ verb: 'replace', name: `service/${p.name}` });
      const cur = this.services.get(p.name);
      if (!cur) throw this.err(404);
      const s = this.stamp(p.body, cur.metadata?.uid);
      this.services.set(p.name, s);
      return structuredClone(s);
    },
    deleteNamespacedService: async (p: { name: string }) => {
      this.calls.push({ verb: 'delete', name: `service/${p.name}` });
      if (!this.services.delete(p.name)) throw this.err(404);
      return {};
    },
  };

  /** Informer-like caches that lag: they show what the store held when `sync()` was last called. */
  private snapshot = { objects: new Map<string, HTTPProxy>(), services: new Map<string, k8s.V1Service>() };
  sync(): void {
    this.snapshot = { objects: new Map(this.objects), services: new Map(this.services) };
  }
  readonly caches = {
    services: { get: (_ns: string, n: string) => this.snapshot.services.get(n), list: () => [...this.snapshot.services.values()] },
    routerObjects: (r: RouterResource) =>
      r.plural === 'httpproxies' ? { get: (_ns: string, n: string) => this.snapshot.objects.get(n) as unknown, list: () => [...this.snapshot.objects.values()] as unknown[] } : undefined,
  };

  writes(): number {
    return this.calls.length;
  }
  verbs(): string[] {
    return this.calls.map((c) => `${c.verb} ${c.name}`);
  }
}

function router(api: FakeApi, withCaches = true): ContourRouter {
  return new ContourRouter({ core: api.core as unknown as k8s.CoreV1Api, custom: api.custom as unknown as k8s.CustomObjectsApi, ...(withCaches ? { caches: api.caches } : {}) });
}

const weighted = (p: HTTPProxy | undefined): ProxyRoute | undefined => p?.spec.routes?.[p.spec.routes.length - 1];
const services = (r: ProxyRoute | undefined) => (r?.services ?? []).map((s) => `${s.name}${s.mirror ? ' mirror' : ''}:${s.weight ?? '-'}`);

describe('contour: providers table and registry', () => {
  it('reads and writes HTTPProxies (RBAC and an informer)', () => {
    assert.deepEqual(ROUTER_RESOURCES.contour.map((r) => `${r.group}/${r.version}/${r.plural}`), ['projectcontour.io/v1/httpproxies']);
    assert.ok(watchedRouterResources().some((r) => r.plural === 'httpproxies'));
  });

  it('accepts the fields it honours and refuses the others', () => {
    const set = (fields: string[]) => (f: string) => fields.includes(f);
    assert.deepEqual(unsupportedFields('contour', set(['service.headers', 'service.timeout', 'service.retries', 'analysis.match', 'analysis.mirror', 'analysis.mirrorWeight'])), []);
    assert.deepEqual(unsupportedFields('contour', set(['service.hosts', 'service.gatewayRefs', 'service.match', 'analysis.sessionAffinity', 'ingressRef'])), [
      'service.gatewayRefs',
      'service.hosts',
      'service.match',
      'ingressRef',
      'analysis.sessionAffinity',
    ]);
  });

  it("declares Envoy's cluster statistics for the canary Service as built-in metrics", () => {
    assert.equal(routerTraits('contour').builtinMetrics, CONTOUR_METRICS);
    const c = canary({ service: { name: 'front', port: 9898 }, analysis: { interval: '1m' } });
    const q = renderQuery(CONTOUR_METRICS['request-success-rate'] as string, templateContext(c, { name: 'request-success-rate' }));
    assert.match(q, /envoy_cluster_upstream_rq\{envoy_cluster_name=~"shop_front-canary_\[0-9a-zA-Z-\]\+",envoy_response_code!~"5\.\*"\}\[1m\]/);
    const d = renderQuery(CONTOUR_METRICS['request-duration'] as string, templateContext(c, { name: 'request-duration' }));
    assert.equal(d, 'histogram_quantile(0.99, sum by (le) (rate(envoy_cluster_upstream_rq_time_bucket{envoy_cluster_name=~"shop_front-canary_[0-9a-zA-Z-]+"}[1m])))');
  });
});

describe('contour: the plan and the A/B conditions', () => {
  it('turns timeout, retries and headers into route policies', () => {
    const p = proxyPlan(
      ctx(
        canary({
          service: {
            port: 80,
            timeout: '1m30s',
            retries: { attempts: 3, perTryTimeout: '5s', retryOn: 'gateway-error, connect-failure' },
            headers: { request: { add: { 'x-a': '1' }, set: { 'x-b': '2' }, remove: ['x-c'] }, response: { set: { 'x-served-by': 'web' } } },
          },
        }),
      ),
    );
    assert.deepEqual(p.policies, {
      timeoutPolicy: { response: '1m30s' },
      retryPolicy: { count: 3, perTryTimeout: '5s', retryOn: ['gateway-error', 'connect-failure'] },
      requestHeadersPolicy: { set: [{ name: 'x-a', value: '1' }, { name: 'x-b', value: '2' }], remove: ['x-c'] },
      responseHeadersPolicy: { set: [{ name: 'x-served-by', value: 'web' }] },
    });
    // The CRD defaults count to 1: written explicitly so that the stored proxy compares equal.
    assert.deepEqual(proxyPlan(ctx(canary({ service: { port: 80, retries: { perTryTimeout: '2s' } } }))).policies.retryPolicy, { count: 1, perTryTimeout: '2s' });
  });

  it('maps headers, cookies, query parameters and the uri; one route per match entry', () => {
    assert.deepEqual(
      toConditions([
        { headers: { 'x-canary': { exact: 'insider' }, cookie: { regex: '^(.*?;)?(canary=always)(;.*)?$' } } },
        { uri: { prefix: '/api' }, queryParams: { beta: { prefix: 'y.' } }, headers: { 'user-agent': { suffix: 'Firefox' } } },
      ]),
      [
        [{ prefix: '/' }, { header: { name: 'x-canary', exact: 'insider' } }, { header: { name: 'cookie', regex: '^(.*?;)?(canary=always)(;.*)?$' } }],
        [{ prefix: '/api' }, { header: { name: 'user-agent', regex: '.*Firefox' } }, { queryParameter: { name: 'beta', regex: 'y\\..*' } }],
      ],
    );
  });

  it('refuses a method or source labels with a clear error, before anything is written', async () => {
    assert.throws(() => toConditions([{ method: { exact: 'GET' } }]), /analysis.match\[0\] matches the method, which the contour provider cannot express/);
    assert.throws(() => toConditions([{ sourceLabels: { app: 'x' } }]), /source labels/);
    const api = new FakeApi();
    const c = ctx(canary({ analysis: { iterations: 2, match: [{ method: { exact: 'GET' } }] } }));
    assert.match(router(api).conflicts(c).join(), /matches the method/, 'reported on the Canary');
    await assert.rejects(router(api).reconcile(c), /cannot express/);
    assert.equal(api.writes(), 0);
  });
});

describe('contour router against an in-memory API', () => {
  for (const withCaches of [false, true]) {
    describe(withCaches ? 'with (lagging) informer caches' : 'reading with GETs', () => {
      it('creates the Services and a proxy without virtualhost, 100% to the primary, then writes nothing again', async () => {
        const api = new FakeApi();
        api.sync();
        const r = router(api, withCaches);
        const c = ctx(canary({ service: { port: 80, timeout: '10s' } }));
        await r.reconcile(c);
        assert.deepEqual(api.verbs().sort(), ['create httpproxies/web', 'create service/web-canary', 'create service/web-primary']);
        const p = api.objects.get('web')!;
        assert.equal(p.spec.virtualhost, undefined, 'to be included by the root proxy');
        assert.equal(p.metadata.ownerReferences?.[0]?.uid, UID);
        assert.deepEqual(p.spec.routes, [{ conditions: [{ prefix: '/' }], services: [{ name: 'web-primary', port: 80, weight: 100 }, { name: 'web-canary', port: 80, weight: 0 }], timeoutPolicy: { response: '10s' } }]);
        assert.deepEqual(r.canaryPodLabels(c, { app: 'web' }), { app: 'web-canary' });
        const n = api.writes();
        await r.reconcile(c);
        api.sync();
        await r.reconcile(c);
        await r.setWeight(c, { weight: 0 });
        assert.equal(api.writes(), n, 'no write when nothing changed');
      });

      it('sets the weights with one replace and reports them', async () => {
        const api = new FakeApi();
        const r = router(api, withCaches);
        const c = ctx(canary());
        await r.reconcile(c);
        api.sync();
        const n = api.writes();
        await r.setWeight(c, { weight: 35 });
        assert.deepEqual(api.verbs().slice(n), ['replace httpproxies/web']);
        assert.deepEqual(services(weighted(api.objects.get('web'))), ['web-primary:65', 'web-canary:35']);
        api.sync();
        assert.deepEqual(r.getWeights(c), { primary: 65, canary: 35 });
        await r.setWeight(c, { weight: 35 });
        assert.equal(api.writes(), n + 1);
      });

      it('A/B: a header route to the canary first while it has traffic, the weighted route all on the primary', async () => {
        const api = new FakeApi();
        const r = router(api, withCaches);
        const match = [{ headers: { 'x-canary': { exact: 'insider' } } }];
        const c = ctx(canary({ service: { port: 80, retries: { attempts: 2 } }, analysis: { iterations: 3, match } }));
        await r.reconcile(c);
        await r.setWeight(c, { weight: 100, match });
        const routes = api.objects.get('web')!.spec.routes!;
        assert.equal(routes.length, 2);
        assert.deepEqual(routes[0]?.conditions, [{ prefix: '/' }, { header: { name: 'x-canary', exact: 'insider' } }]);
        assert.deepEqual(services(routes[0]), ['web-canary:100']);
        assert.deepEqual(routes[0]?.retryPolicy, { count: 2 }, 'the A/B route carries the policies too');
        assert.deepEqual(services(routes[1]), ['web-primary:100', 'web-canary:0']);
        api.sync();
        assert.deepEqual(r.getWeights(c), { primary: 0, canary: 100 });
        await r.setWeight(c, { weight: 0 });
        assert.equal(api.objects.get('web')!.spec.routes!.length, 1);
      });

      it('mirrors a percentage of the requests with a mirror service entry (weight = percent, omitted at 100)', async () => {
        const api = new FakeApi();
        const r = router(api, withCaches);
        const c = ctx(canary({ analysis: { iterations: 3, mirror: true, mirrorWeight: 20 } }));
        await r.reconcile(c);
        await r.setWeight(c, { weight: 0, mirror: 20 });
        assert.deepEqual(services(weighted(api.objects.get('web'))), ['web-primary:100', 'web-canary mirror:20']);
        api.sync();
        assert.deepEqual(r.getWeights(c), { primary: 100, canary: 0, mirror: 20 });
        await r.setWeight(c, { weight: 0, mirror: 100 });
        assert.deepEqual(services(weighted(api.objects.get('web'))), ['web-primary:100', 'web-canary mirror:-']);
        await r.setWeight(c, { weight: 0 });
        assert.deepEqual(services(weighted(api.objects.get('web'))), ['web-primary:100', 'web-canary:0']);
      });

      it("puts back a user's edit of the routes, keeps a virtualhost, labels and annotations the user added", async () => {
        const api = new FakeApi();
        const r = router(api, withCaches);
        const c = ctx(canary());
        await r.reconcile(c);
        await r.setWeight(c, { weight: 10 });
        const edited = structuredClone(api.objects.get('web')!);
        edited.spec.routes![0]!.services = [{ name: 'elsewhere', port: 80 }];
        edited.spec.virtualhost = { fqdn: 'web.example.com' };
        edited.metadata.labels = { ...edited.metadata.labels, team: 'shop' };
        edited.metadata.annotations = { 'example.com/note': 'mine' };
        edited.metadata.resourceVersion = '900';
        api.objects.set('web', edited);
        api.sync();
        await r.reconcile(c);
        await r.setWeight(c, { weight: 10 });
        const after = api.objects.get('web')!;
        assert.deepEqual(services(weighted(after)), ['web-primary:90', 'web-canary:10']);
        assert.deepEqual(after.spec.virtualhost, { fqdn: 'web.example.com' });
        assert.equal(after.metadata.labels?.team, 'shop');
        assert.equal(after.metadata.annotations?.['example.com/note'], 'mine');
      });

      it('finalizes: all to the primary first, then handed back to the apex Service and disowned, then the Services go', async () => {
        const api = new FakeApi();
        const r = router(api, withCaches);
        const c = ctx(canary({ service: { port: 80, timeout: '5s' }, analysis: { match: [{ headers: { a: { exact: 'b' } } }] } }));
        await r.reconcile(c);
        await r.setWeight(c, { weight: 40, match: c.canary.spec.analysis?.match ?? [] });
        api.sync();
        const n = api.writes();
        await r.finalize(c);
        assert.deepEqual(api.verbs().slice(n), ['replace httpproxies/web', 'replace httpproxies/web', 'delete service/web-canary', 'delete service/web-primary']);
        const zeroed = api.calls[n]?.body as HTTPProxy;
        assert.deepEqual(zeroed.spec.routes?.map(services), [['web-primary:100', 'web-canary:0']], 'the first write: no A/B route, everything on the primary');
        const kept = api.objects.get('web')!;
        assert.deepEqual(kept.spec.routes, [{ conditions: [{ prefix: '/' }], services: [{ name: 'web', port: 80, weight: 100 }], timeoutPolicy: { response: '5s' } }]);
        assert.equal(kept.metadata.ownerReferences, undefined, 'no longer garbage-collected with the Canary');
        assert.equal(kept.metadata.labels?.['app.kubernetes.io/managed-by'], undefined);
        // Again: the proxy is the user's now, nothing is written.
        const m = api.writes();
        await r.finalize(c);
        assert.ok(api.verbs().slice(m).every((v) => !v.includes('httpproxies')));
      });
    });
  }

  it('a Service target names <name>-canary only while it has weight (Contour refuses a proxy naming a missing Service)', async () => {
    const api = new FakeApi();
    const r = router(api, false);
    const c: RouterContext = { canary: canary({ targetRef: { kind: 'Service', name: 'api' } }), namespace: 'shop' };
    await r.reconcile(c);
    assert.deepEqual(services(weighted(api.objects.get('api'))), ['api:100']);
    await r.setWeight(c, { weight: 25 });
    assert.deepEqual(services(weighted(api.objects.get('api'))), ['api:75', 'api-canary:25']);
    assert.equal(api.services.size, 0, 'no Services of its own for a Service target');
  });

  it('reports a proxy of the same name that canary-gate did not create, and never touches it', async () => {
    const api = new FakeApi();
    const theirs: HTTPProxy = { apiVersion: 'projectcontour.io/v1', kind: 'HTTPProxy', metadata: { name: 'web', namespace: 'shop', uid: 'theirs', resourceVersion: '3' }, spec: { routes: [{ services: [{ name: 'web', port: 80 }] }] } };
    api.objects.set('web', structuredClone(theirs));
    api.sync();
    const r = router(api);
    const c = ctx(canary());
    assert.match(r.conflicts(c).join(), /HTTPProxy shop\/web exists and was not created by canary-gate/);
    await assert.rejects(r.reconcile(c), /not created by canary-gate/);
    await assert.rejects(r.setWeight(c, { weight: 5 }), /not created by canary-gate/);
    await r.finalize(c);
    assert.deepEqual(api.objects.get('web'), theirs);
    assert.ok(!api.verbs().some((v) => v.includes('httpproxies')));
  });

  it('reads weights of a proxy with no routes as all on the primary', () => {
    const plan = proxyPlan(ctx(canary()));
    assert.deepEqual(readSplit(undefined, plan), { weight: 0, ab: [], mirror: 0 });
    assert.deepEqual(readSplit({ apiVersion: 'projectcontour.io/v1', kind: 'HTTPProxy', metadata: {}, spec: {} }, plan), { weight: 0, ab: [], mirror: 0 });
  });
});
