// The nginx router against an in-memory API: the canary Ingress it clones
// from the user's Ingress (backends, annotations for weight and A/B), that it
// writes only on change, puts back what it owns, keeps what it does not,
// never touches the user's Ingress or an Ingress it did not create, and
// finalizes with the weight at 0 before the delete.

import assert from 'node:assert/strict';
import type * as k8s from '@kubernetes/client-node';
import type { Canary, CanarySpec } from '../../core/api/types.js';
import { ROLE_LABEL } from '../../core/contract.js';
import { FIELD_REQUIRED, FIELD_SUPPORT, ROUTER_RESOURCES, fieldSupportRules, unsupportedFields } from '../../core/providers.js';
import { renderQuery, templateContext } from '../../reconciler/analysis/metrics/template.js';
import type { RouterResource } from '../../core/providers.js';
import {
  BY_COOKIE,
  BY_HEADER,
  BY_HEADER_PATTERN,
  BY_HEADER_VALUE,
  CANARY_ANNOTATION,
  NGINX_METRICS,
  NginxRouter,
  WEIGHT_ANNOTATION,
  matchAnnotations,
  type Ingress,
} from '../../reconciler/routers/nginx.js';
import { routerTraits, watchedRouterResources } from '../../reconciler/routers/index.js';
import type { RouterContext } from '../../reconciler/routers/router.js';

const UID = '6a0d2c1e-0000-4000-8000-000000000002';

function canary(spec: Partial<CanarySpec> = {}): Canary {
  return {
    apiVersion: 'canarygate.dev/v1alpha1',
    kind: 'Canary',
    metadata: { name: 'web', namespace: 'shop', uid: UID },
    spec: { provider: 'nginx', targetRef: { kind: 'Deployment', name: 'web' }, ingressRef: { apiVersion: 'networking.k8s.io/v1', kind: 'Ingress', name: 'web' }, service: { port: 80 }, ...spec },
  };
}

function target(): k8s.V1Deployment {
  return {
    metadata: { name: 'web', namespace: 'shop' },
    spec: { replicas: 2, selector: { matchLabels: { app: 'web' } }, template: { metadata: { labels: { app: 'web' } } } },
    status: { readyReplicas: 2 },
  };
}

function apexService(): k8s.V1Service {
  return { metadata: { name: 'web', namespace: 'shop' }, spec: { selector: { app: 'web' }, ports: [{ name: 'http', port: 80, targetPort: 'http', protocol: 'TCP' }] } };
}

function ctx(c: Canary): RouterContext {
  return { canary: c, namespace: 'shop', target: target(), service: apexService() };
}

function userIngress(): Ingress {
  return {
    apiVersion: 'networking.k8s.io/v1',
    kind: 'Ingress',
    metadata: {
      name: 'web',
      namespace: 'shop',
      uid: 'user-ingress',
      resourceVersion: '1',
      labels: { team: 'shop' },
      annotations: { 'nginx.ingress.kubernetes.io/proxy-body-size': '8m', 'kubectl.kubernetes.io/last-applied-configuration': '{}' },
    },
    spec: {
      ingressClassName: 'nginx',
      rules: [
        {
          host: 'web.example.com',
          http: {
            paths: [
              { path: '/', pathType: 'Prefix', backend: { service: { name: 'web', port: { name: 'http' } } } },
              { path: '/static', pathType: 'Prefix', backend: { service: { name: 'assets', port: { number: 80 } } } },
            ],
          },
        },
      ],
    },
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
  readonly objects = new Map<string, Ingress>();
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
    createNamespacedCustomObject: async (p: { plural: string; body: Ingress }) => {
      this.calls.push({ verb: 'create', name: `${p.plural}/${p.body.metadata.name}`, body: structuredClone(p.body) });
      if (this.objects.has(p.body.metadata.name!)) throw this.err(409);
      const s = this.stamp(p.body);
      this.objects.set(s.metadata.name!, s);
      return structuredClone(s);
    },
    replaceNamespacedCustomObject: async (p: { plural: string; name: string; body: Ingress }) => {
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
  private snapshot = { objects: new Map<string, Ingress>(), services: new Map<string, k8s.V1Service>() };
  sync(): void {
    this.snapshot = { objects: new Map(this.objects), services: new Map(this.services) };
  }
  readonly caches = {
    services: { get: (_ns: string, n: string) => this.snapshot.services.get(n), list: () => [...this.snapshot.services.values()] },
    routerObjects: (r: RouterResource) =>
      r.plural === 'ingresses' ? { get: (_ns: string, n: string) => this.snapshot.objects.get(n) as unknown, list: () => [...this.snapshot.objects.values()] as unknown[] } : undefined,
  };

  writes(): number {
    return this.calls.length;
  }
  verbs(): string[] {
    return this.calls.map((c) => `${c.verb} ${c.name}`);
  }
}

function router(api: FakeApi, withCaches = true): NginxRouter {
  return new NginxRouter({ core: api.core as unknown as k8s.CoreV1Api, custom: api.custom as unknown as k8s.CustomObjectsApi, ...(withCaches ? { caches: api.caches } : {}) });
}

function withUserIngress(): FakeApi {
  const api = new FakeApi();
  api.objects.set('web', userIngress());
  api.sync();
  return api;
}

const abCanary = (match: CanarySpec['analysis'] = { iterations: 5, match: [{ headers: { 'x-canary': { exact: 'insider' } } }] }) => canary({ analysis: match });

// ------------------------------------------------------------------ tests

describe('nginx: providers table and registry', () => {
  it('reads and writes Ingresses (RBAC and an informer)', () => {
    assert.deepEqual(ROUTER_RESOURCES.nginx.map((r) => `${r.group}/${r.version}/${r.plural}`), ['networking.k8s.io/v1/ingresses']);
    assert.ok(watchedRouterResources().some((r) => r.plural === 'ingresses'));
  });

  it('accepts ingressRef and analysis.match for nginx, refuses what it cannot honour', () => {
    const set = (fields: string[]) => (f: string) => fields.includes(f);
    assert.deepEqual(unsupportedFields('nginx', set(['ingressRef', 'analysis.match'])), []);
    assert.deepEqual(unsupportedFields('nginx', set(['analysis.mirror', 'analysis.sessionAffinity', 'service.headers', 'service.timeout'])), [
      'service.headers',
      'service.timeout',
      'analysis.mirror',
      'analysis.sessionAffinity',
    ]);
    assert.deepEqual(unsupportedFields('gatewayapi', set(['ingressRef'])), ['ingressRef']);
    assert.ok(FIELD_SUPPORT.find((f) => f.field === 'ingressRef')?.families.includes('nginx'));
  });

  it('has the CRD require ingressRef with provider nginx', () => {
    assert.deepEqual(FIELD_REQUIRED.nginx, { field: 'ingressRef', isSet: 'has(self.ingressRef)' });
    const rule = fieldSupportRules().find((r) => r.message === 'the nginx provider needs ingressRef');
    assert.ok(rule, 'a CEL rule for it');
    // The negation covers the whole comparison (CEL has no `!` on a string).
    assert.equal(rule.rule, "!((has(self.provider) ? self.provider : 'kubernetes') == 'nginx') || (has(self.ingressRef))");
  });

  it('declares ingress-nginx queries as built-in metrics, rendered with {{ ingress }}', () => {
    assert.equal(routerTraits('nginx').builtinMetrics, NGINX_METRICS);
    const c = canary({ analysis: { interval: '30s' } });
    c.spec.ingressRef = { kind: 'Ingress', name: 'front' };
    const q = renderQuery(NGINX_METRICS['request-success-rate'] as string, templateContext(c, { name: 'request-success-rate' }));
    assert.match(q, /nginx_ingress_controller_requests\{namespace="shop",ingress="front",canary!="",status!~"5\.\*"\}\[30s\]/);
    const d = renderQuery(NGINX_METRICS['request-duration'] as string, templateContext(c, { name: 'request-duration' }));
    assert.match(d, /^histogram_quantile\(0\.99, sum by \(le\) \(rate\(nginx_ingress_controller_request_duration_seconds_bucket\{namespace="shop",ingress="front",canary!=""\}\[30s\]\)\)\) \* 1000$/);
  });

  it('refuses {{ ingress }} in a query of a Canary without ingressRef', () => {
    const c = canary();
    delete c.spec.ingressRef;
    assert.throws(() => renderQuery('x{ingress="{{ ingress }}"}', templateContext(c, { name: 'm' })), /"ingress" is not set: the Canary has no spec.ingressRef/);
  });
});

describe('nginx: analysis.match as canary annotations', () => {
  it('maps an exact header to canary-by-header-value', () => {
    assert.deepEqual(matchAnnotations([{ headers: { 'x-canary': { exact: 'insider' } } }]), { [BY_HEADER]: 'x-canary', [BY_HEADER_VALUE]: 'insider' });
  });

  it('maps regex, prefix and suffix to canary-by-header-pattern', () => {
    assert.deepEqual(matchAnnotations([{ headers: { 'user-agent': { regex: '.*Firefox.*' } } }]), { [BY_HEADER]: 'user-agent', [BY_HEADER_PATTERN]: '.*Firefox.*' });
    assert.deepEqual(matchAnnotations([{ headers: { 'x-v': { prefix: 'v1.' } } }]), { [BY_HEADER]: 'x-v', [BY_HEADER_PATTERN]: '^v1\\.' });
    assert.deepEqual(matchAnnotations([{ headers: { 'x-v': { suffix: '-beta' } } }]), { [BY_HEADER]: 'x-v', [BY_HEADER_PATTERN]: '-beta$' });
  });

  it('maps a cookie match (headers.cookie.exact is the cookie name) to canary-by-cookie, next to a header entry', () => {
    assert.deepEqual(matchAnnotations([{ headers: { cookie: { exact: 'canary' } } }, { headers: { 'x-canary': { exact: 'insider' } } }]), {
      [BY_COOKIE]: 'canary',
      [BY_HEADER]: 'x-canary',
      [BY_HEADER_VALUE]: 'insider',
    });
  });

  const refused: Array<[string, CanarySpec['analysis'] & object, RegExp]> = [
    ['a uri', { match: [{ uri: { prefix: '/api' } }] }, /match\[0\] matches the uri/],
    ['query parameters', { match: [{ headers: { a: { exact: 'b' } }, queryParams: { beta: { exact: '1' } } }] }, /matches query parameters/],
    ['a method', { match: [{ method: { exact: 'GET' } }] }, /matches the method/],
    ['two headers in one entry (AND)', { match: [{ headers: { a: { exact: '1' }, b: { exact: '2' } } }] }, /asks for 2 headers at once/],
    ['a second header', { match: [{ headers: { a: { exact: '1' } } }, { headers: { b: { exact: '2' } } }] }, /second header match \(a and b\)/],
    ['a cookie regex', { match: [{ headers: { cookie: { regex: '^(.*?;)?(canary=always)(;.*)?$' } } }] }, /cookie header other than by exact name/],
    ['a second cookie', { match: [{ headers: { cookie: { exact: 'a' } } }, { headers: { Cookie: { exact: 'b' } } }] }, /second cookie match/],
    ['a cookie value that is no name', { match: [{ headers: { cookie: { exact: 'canary=always' } } }] }, /is not a cookie name/],
  ];
  for (const [what, analysis, message] of refused) {
    it(`refuses ${what} with a clear error, from reconcile before anything is written`, async () => {
      assert.throws(() => matchAnnotations(analysis.match ?? []), message);
      const api = withUserIngress();
      // Reported on the Canary through the blockers.
      assert.match(router(api).conflicts(ctx(canary({ analysis }))).join('; '), message);
      await assert.rejects(router(api).reconcile(ctx(canary({ analysis }))), /cannot be expressed with the nginx provider/);
      assert.equal(api.writes(), 0);
    });
  }
});

describe('nginx router against an in-memory API', () => {
  for (const withCaches of [false, true]) {
    describe(withCaches ? 'with (lagging) informer caches' : 'reading with GETs', () => {
      it('clones the user Ingress into <ingress>-canary on <apex>-canary at weight 0, then writes nothing again', async () => {
        const api = withUserIngress();
        const r = router(api, withCaches);
        const c = ctx(canary());
        const before = structuredClone(api.objects.get('web'));
        await r.reconcile(c);
        assert.deepEqual(api.verbs().sort(), ['create ingresses/web-canary', 'create service/web-canary', 'create service/web-primary']);
        const ing = api.objects.get('web-canary')!;
        assert.deepEqual(ing.spec?.rules?.[0]?.http?.paths.map((p) => p.backend.service?.name), ['web-canary', 'assets'], 'only the apex backend is rewritten');
        assert.deepEqual(ing.spec?.rules?.[0]?.http?.paths[0]?.backend.service?.port, { name: 'http' });
        assert.equal(ing.spec?.ingressClassName, 'nginx');
        assert.equal(ing.metadata.annotations?.[CANARY_ANNOTATION], 'true');
        assert.equal(ing.metadata.annotations?.[WEIGHT_ANNOTATION], '0');
        assert.equal(ing.metadata.annotations?.['nginx.ingress.kubernetes.io/proxy-body-size'], '8m', "the user's annotations are copied");
        assert.equal(ing.metadata.annotations?.['kubectl.kubernetes.io/last-applied-configuration'], undefined);
        assert.equal(ing.metadata.labels?.team, 'shop');
        assert.equal(ing.metadata.ownerReferences?.[0]?.uid, UID);
        // The copy's Pods are renamed: the apex Service (the user's Ingress) reaches only the primary.
        assert.deepEqual(r.canaryPodLabels(c, { app: 'web', v: '2' }), { app: 'web-canary', v: '2' });
        assert.deepEqual(api.services.get('web-canary')?.spec?.selector, { app: 'web-canary', [ROLE_LABEL]: 'canary' });
        assert.deepEqual(api.services.get('web-primary')?.spec?.selector, { app: 'web' });
        assert.deepEqual(r.getWeights(c), { primary: 100, canary: 0 });
        const n = api.writes();
        await r.reconcile(c);
        api.sync();
        await r.reconcile(c);
        await r.setWeight(c, { weight: 0 });
        assert.equal(api.writes(), n, 'no write when nothing changed');
        assert.deepEqual(api.objects.get('web'), before, "the user's Ingress is never modified");
      });

      it('sets canary-weight with one replace, reports it, and writes nothing for the same weight', async () => {
        const api = withUserIngress();
        const r = router(api, withCaches);
        const c = ctx(canary());
        await r.reconcile(c);
        api.sync();
        const n = api.writes();
        await r.setWeight(c, { weight: 30 });
        assert.deepEqual(api.verbs().slice(n), ['replace ingresses/web-canary']);
        assert.equal(api.objects.get('web-canary')?.metadata.annotations?.[WEIGHT_ANNOTATION], '30');
        api.sync();
        assert.deepEqual(r.getWeights(c), { primary: 70, canary: 30 });
        await r.setWeight(c, { weight: 30 });
        assert.equal(api.writes(), n + 1);
      });

      it('A/B: the header annotations while the canary has traffic, weight 0, removed at weight 0', async () => {
        const api = withUserIngress();
        const r = router(api, withCaches);
        const c = ctx(abCanary());
        await r.reconcile(c);
        await r.setWeight(c, { weight: 100, match: c.canary.spec.analysis?.match ?? [] });
        let a = api.objects.get('web-canary')!.metadata.annotations!;
        assert.equal(a[WEIGHT_ANNOTATION], '0', 'only matching requests reach the canary');
        assert.equal(a[BY_HEADER], 'x-canary');
        assert.equal(a[BY_HEADER_VALUE], 'insider');
        api.sync();
        assert.deepEqual(r.getWeights(c), { primary: 0, canary: 100 });
        await r.setWeight(c, { weight: 0 });
        a = api.objects.get('web-canary')!.metadata.annotations!;
        assert.equal(a[BY_HEADER], undefined);
        assert.equal(a[BY_HEADER_VALUE], undefined);
        api.sync();
        assert.deepEqual(r.getWeights(c), { primary: 100, canary: 0 });
      });

      it('a weighted canary with a cookie match keeps its weight next to canary-by-cookie', async () => {
        const api = withUserIngress();
        const r = router(api, withCaches);
        const c = ctx(canary({ analysis: { match: [{ headers: { cookie: { exact: 'beta' } } }] } }));
        await r.reconcile(c);
        await r.setWeight(c, { weight: 20, match: c.canary.spec.analysis?.match ?? [] });
        const a = api.objects.get('web-canary')!.metadata.annotations!;
        assert.equal(a[WEIGHT_ANNOTATION], '20');
        assert.equal(a[BY_COOKIE], 'beta');
      });

      it("puts back a user's edit of our annotations and of the spec, keeps an annotation the user added", async () => {
        const api = withUserIngress();
        const r = router(api, withCaches);
        const c = ctx(canary());
        await r.reconcile(c);
        await r.setWeight(c, { weight: 40 });
        const edited = structuredClone(api.objects.get('web-canary')!);
        edited.metadata.annotations = { ...edited.metadata.annotations, [CANARY_ANNOTATION]: 'false', [WEIGHT_ANNOTATION]: '90', [BY_HEADER]: 'x-me', 'example.com/note': 'mine' };
        edited.spec!.rules![0]!.http!.paths[0]!.backend.service!.name = 'elsewhere';
        edited.metadata.resourceVersion = '900';
        api.objects.set('web-canary', edited);
        api.sync();
        // Read from the cache: an Ingress not marked canary is no canary at all to ingress-nginx.
        if (withCaches) assert.deepEqual(r.getWeights(c), { primary: 100, canary: 0 });
        await r.reconcile(c);
        await r.setWeight(c, { weight: 40 });
        const after = api.objects.get('web-canary')!;
        assert.equal(after.metadata.annotations?.[CANARY_ANNOTATION], 'true');
        assert.equal(after.metadata.annotations?.[WEIGHT_ANNOTATION], '40');
        assert.equal(after.metadata.annotations?.[BY_HEADER], undefined);
        assert.equal(after.metadata.annotations?.['example.com/note'], 'mine');
        assert.equal(after.spec?.rules?.[0]?.http?.paths[0]?.backend.service?.name, 'web-canary');
      });

      it("follows a change of the user's Ingress (a new path) on the next reconcile", async () => {
        const api = withUserIngress();
        const r = router(api, withCaches);
        const c = ctx(canary());
        await r.reconcile(c);
        const user = structuredClone(api.objects.get('web')!);
        user.spec!.rules![0]!.http!.paths.push({ path: '/v2', pathType: 'Prefix', backend: { service: { name: 'web', port: { name: 'http' } } } });
        user.metadata.resourceVersion = '2';
        api.objects.set('web', user);
        api.sync();
        await r.reconcile(c);
        assert.deepEqual(api.objects.get('web-canary')?.spec?.rules?.[0]?.http?.paths.map((p) => `${p.path}>${p.backend.service?.name}`), ['/>web-canary', '/static>assets', '/v2>web-canary']);
      });

      it('finalizes: canary-weight 0 first, then the canary Ingress, then the Services', async () => {
        const api = withUserIngress();
        const r = router(api, withCaches);
        const c = ctx(canary());
        await r.reconcile(c);
        await r.setWeight(c, { weight: 60 });
        api.sync();
        const n = api.writes();
        await r.finalize(c);
        const verbs = api.verbs().slice(n);
        assert.deepEqual(verbs, ['replace ingresses/web-canary', 'delete ingresses/web-canary', 'delete service/web-canary', 'delete service/web-primary']);
        const zeroed = api.calls[n]?.body as Ingress;
        assert.equal(zeroed.metadata.annotations?.[WEIGHT_ANNOTATION], '0');
        assert.equal(zeroed.metadata.annotations?.[CANARY_ANNOTATION], 'true');
        assert.deepEqual([...api.objects.keys()], ['web'], "the user's Ingress stays");
      });
    });
  }

  it('finalize removes an A/B canary: the match annotations go with the weight at 0 before the delete', async () => {
    const api = withUserIngress();
    const r = router(api, false);
    const c = ctx(abCanary());
    await r.reconcile(c);
    await r.setWeight(c, { weight: 100, match: c.canary.spec.analysis?.match ?? [] });
    const n = api.writes();
    await r.finalize(c);
    const zeroed = api.calls[n]?.body as Ingress;
    assert.equal(api.calls[n]?.verb, 'replace');
    assert.equal(zeroed.metadata.annotations?.[BY_HEADER], undefined);
    assert.equal(api.calls[n + 1]?.verb, 'delete');
  });

  it('finalize works when the user Ingress is gone', async () => {
    const api = withUserIngress();
    const r = router(api, false);
    const c = ctx(canary());
    await r.reconcile(c);
    api.objects.delete('web');
    await r.finalize(c);
    assert.equal(api.objects.size, 0);
    assert.equal(api.services.size, 0);
  });

  it('reports an Ingress named <ingress>-canary that canary-gate did not create, and never touches it', async () => {
    const api = withUserIngress();
    const theirs: Ingress = { metadata: { name: 'web-canary', namespace: 'shop', uid: 'theirs', resourceVersion: '5' }, spec: { rules: [] } };
    api.objects.set('web-canary', structuredClone(theirs));
    api.sync();
    const r = router(api);
    const c = ctx(canary());
    assert.equal(r.conflicts(c).length, 1);
    assert.match(r.conflicts(c)[0] as string, /Ingress shop\/web-canary exists and was not created by canary-gate/);
    await assert.rejects(r.reconcile(c), /not created by canary-gate/);
    await assert.rejects(r.setWeight(c, { weight: 10 }), /not created by canary-gate/);
    await r.finalize(c);
    assert.deepEqual(api.objects.get('web-canary'), theirs);
    assert.ok(!api.verbs().some((v) => v.includes('ingresses/')), `no Ingress write: ${api.verbs().join(', ')}`);
  });

  it('a missing user Ingress is a clear error, not a crash; nothing is written', async () => {
    const api = new FakeApi();
    api.sync();
    const r = router(api);
    const c = ctx(canary());
    await assert.rejects(r.reconcile(c), /Ingress shop\/web \(spec.ingressRef of Canary web\) does not exist/);
    await assert.rejects(r.setWeight(c, { weight: 10 }), /does not exist/);
    assert.deepEqual(r.getWeights(c), { primary: 100, canary: 0 });
    // Reported on the Canary (a blocker: no run starts without the Ingress).
    assert.deepEqual(r.conflicts(c), ['Ingress shop/web (spec.ingressRef of Canary web) does not exist: create it, or correct spec.ingressRef']);
    api.objects.set('web', userIngress());
    api.sync();
    assert.deepEqual(r.conflicts(c), []);
    assert.equal(api.writes(), 0);
  });

  it('an Ingress with no backend on the apex Service is a clear error', async () => {
    const api = new FakeApi();
    const other = userIngress();
    other.spec!.rules![0]!.http!.paths = [{ path: '/', pathType: 'Prefix', backend: { service: { name: 'somewhere', port: { number: 80 } } } }];
    api.objects.set('web', other);
    await assert.rejects(router(api, false).reconcile(ctx(canary())), /Ingress shop\/web has no backend on Service web/);
    assert.equal(api.objects.has('web-canary'), false);
  });

  it('rewrites the defaultBackend and uses spec.service.name as the apex', async () => {
    const api = new FakeApi();
    api.objects.set('front', { metadata: { name: 'front', namespace: 'shop', uid: 'u' }, spec: { defaultBackend: { service: { name: 'front-svc', port: { number: 8080 } } } } });
    const c = canary({ ingressRef: { kind: 'Ingress', name: 'front' }, service: { name: 'front-svc', port: 8080 } });
    await router(api, false).reconcile(ctx(c));
    assert.equal(api.objects.get('front-canary')?.spec?.defaultBackend?.service?.name, 'front-svc-canary');
    assert.ok(api.services.has('front-svc-primary') && api.services.has('front-svc-canary'));
  });
});
