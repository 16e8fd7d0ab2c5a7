// The istio router: what each Canary field does to the VirtualService and
// DestinationRules it writes (pure builders), and against an in-memory API
// that it writes only on change, puts back what it owns, keeps what the user
// owns, hands all traffic to the primary before removing anything, and never
// changes an object canary-gate did not create.

import assert from 'node:assert/strict';
import type * as k8s from '@kubernetes/client-node';
import type { Canary, CanarySpec } from '../../core/api/types.js';
import { FIELD_SUPPORT, ROUTER_RESOURCES, fieldSupportRules, unsupportedFields } from '../../core/providers.js';
import { ROLE_LABEL } from '../../core/contract.js';
import { routerTraits, watchedRouterResources } from '../../reconciler/routers/index.js';
import {
  IstioRouter,
  MATCH_ROUTE,
  STICKY_CANARY_ROUTE,
  STICKY_PRIMARY_ROUTE,
  WEIGHT_ROUTE,
  desiredDestinationRule,
  desiredVirtualService,
  disowned,
  foreignRoutes,
  istioPlan,
  readWeights,
  releasedVirtualService,
  toIstioMatches,
  type DestinationRule,
  type HttpRoute,
  type VirtualService,
} from '../../reconciler/routers/istio.js';
import type { RouterContext, Split } from '../../reconciler/routers/router.js';
import { cookieHeaderRegex, setCookieValue } from '../../reconciler/routers/split.js';

const UID = '6a0d2c1e-0000-4000-8000-0000000000a1';

function canary(spec: Partial<CanarySpec> = {}): Canary {
  return {
    apiVersion: 'canarygate.dev/v1alpha1',
    kind: 'Canary',
    metadata: { name: 'web', namespace: 'shop', uid: UID },
    spec: { provider: 'istio', targetRef: { kind: 'Deployment', name: 'web' }, service: { port: 80 }, ...spec },
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

const route = (vs: VirtualService, name: string): HttpRoute | undefined => vs.spec.http?.find((r) => r.name === name);
const names = (vs: VirtualService | undefined) => (vs?.spec.http ?? []).map((r) => r.name);
const split = (vs: VirtualService) => (route(vs, WEIGHT_ROUTE)?.route ?? []).map((d) => [d.destination.host, d.weight]);
const cookie = { name: 'canary-gate-web', value: 'abc123', maxAge: 3600 };
const primaryCookie = { name: 'canary-gate-web-primary', value: 'def456', maxAge: 10 };

/** As the API server stores it: JSON (no undefined), identity added. */
function asStored<T extends { metadata: k8s.V1ObjectMeta }>(obj: T, rv = '10'): T {
  const s = JSON.parse(JSON.stringify(obj)) as T;
  s.metadata = { ...s.metadata, uid: 'vs-uid', resourceVersion: rv, generation: 1 };
  return s;
}

function userVirtualService(http: HttpRoute[], extra: Record<string, unknown> = {}): VirtualService {
  return {
    apiVersion: 'networking.istio.io/v1',
    kind: 'VirtualService',
    metadata: { name: 'web', namespace: 'shop', resourceVersion: '1', uid: 'user-vs', annotations: { team: 'shop' } },
    spec: { hosts: ['web'], http, ...extra },
  };
}

// ------------------------------------------------------------------ pure builders

describe('istio: the VirtualService and DestinationRules a Canary asks for', () => {
  it('names everything after the apex Service; hosts are spec.service.hosts plus the apex; gateways default to mesh', () => {
    const p = istioPlan(ctx(canary({ service: { port: 9898, name: 'front', hosts: ['front.example.com'] } })));
    const vs = desiredVirtualService(undefined, p);
    assert.equal(vs.metadata.name, 'front');
    assert.deepEqual(vs.spec.hosts, ['front.example.com', 'front']);
    assert.deepEqual(vs.spec.gateways, ['mesh']);
    assert.deepEqual(names(vs), [WEIGHT_ROUTE]);
    assert.deepEqual(route(vs, WEIGHT_ROUTE)?.route, [
      { destination: { host: 'front-primary', port: { number: 9898 } }, weight: 100 },
      { destination: { host: 'front-canary', port: { number: 9898 } }, weight: 0 },
    ]);
    assert.equal(vs.metadata.ownerReferences?.[0]?.uid, UID);
    const gw = desiredVirtualService(undefined, istioPlan(ctx(canary({ service: { port: 80, gateways: ['istio-system/public'] } }))));
    assert.deepEqual(gw.spec.gateways, ['istio-system/public']);
  });

  it('in a VirtualService of its own, hosts and gateways follow the Canary; in a user one, they are only added to', () => {
    const first = asStored(desiredVirtualService(undefined, istioPlan(ctx(canary({ service: { port: 80, hosts: ['old.example.com'] } })))));
    const moved = desiredVirtualService(first, istioPlan(ctx(canary({ service: { port: 80, hosts: ['new.example.com'], gateways: ['istio-system/public'] } }))));
    assert.deepEqual(moved.spec.hosts, ['new.example.com', 'web']);
    assert.deepEqual(moved.spec.gateways, ['istio-system/public'], 'the mesh default gives way to the gateways the Canary names');
    const user = userVirtualService([{ name: 'default', route: [{ destination: { host: 'web' } }] }]);
    user.spec.hosts = ['web', 'web.example.com'];
    const added = desiredVirtualService(user, istioPlan(ctx(canary({ service: { port: 80, hosts: ['shop.example.com'] } }))));
    assert.deepEqual(added.spec.hosts, ['web', 'web.example.com', 'shop.example.com']);
    assert.equal(added.spec.gateways, undefined, 'no gateways (the mesh) stays so');
  });

  it('splits by weight and reads the split back (short or qualified host names)', () => {
    const p = istioPlan(ctx(canary()));
    const vs = desiredVirtualService(undefined, p, 30);
    assert.deepEqual(split(vs), [
      ['web-primary', 70],
      ['web-canary', 30],
    ]);
    assert.deepEqual(readWeights(vs, p), { primary: 70, canary: 30 });
    const fq = structuredClone(vs);
    for (const d of route(fq, WEIGHT_ROUTE)!.route!) d.destination.host = `${d.destination.host}.shop.svc.cluster.local`;
    assert.deepEqual(readWeights(fq, p), { primary: 70, canary: 30 });
    assert.deepEqual(readWeights(undefined, p), { primary: 100, canary: 0 });
    // The current split is kept when no weight is given.
    assert.deepEqual(split(desiredVirtualService(asStored(vs), p)), split(vs));
  });

  it('a Service target routes to the user Service and refers to <name>-canary only with weight', () => {
    const p = istioPlan(ctx(canary({ targetRef: { kind: 'Service', name: 'api' } })));
    assert.deepEqual(split(desiredVirtualService(undefined, p, 0)), [['api', 100]]);
    assert.deepEqual(split(desiredVirtualService(undefined, p, 25)), [
      ['api', 75],
      ['api-canary', 25],
    ]);
    assert.equal(desiredDestinationRule(undefined, p, p.primaryRule, p.primary).spec.host, 'api');
  });

  it('spec.service.match becomes the weight route match: headers, cookie regex, sourceLabels, uri, method, queryParams', () => {
    const match = [
      { headers: { 'x-user': { exact: 'beta' }, cookie: { regex: '^(.*?;)?(canary=always)(;.*)?$' } }, sourceLabels: { app: 'frontend' } },
      { uri: { prefix: '/api' }, method: { exact: 'GET' }, queryParams: { beta: { suffix: '.on' } } },
    ];
    const vs = desiredVirtualService(undefined, istioPlan(ctx(canary({ service: { port: 80, match } }))));
    assert.deepEqual(route(vs, WEIGHT_ROUTE)?.match, [
      { headers: { 'x-user': { exact: 'beta' }, cookie: { regex: '^(.*?;)?(canary=always)(;.*)?$' } }, sourceLabels: { app: 'frontend' } },
      { uri: { prefix: '/api' }, method: { exact: 'GET' }, queryParams: { beta: { regex: '.*\\.on' } } },
    ]);
    assert.throws(() => toIstioMatches([{ uri: {} }]), /sets none of exact, prefix, suffix, regex/);
    assert.deepEqual(toIstioMatches([{ headers: { 'X-Canary': { exact: 'Insider' } } }]), [{ headers: { 'x-canary': { exact: 'Insider' } } }], 'header names in lower case, as Istio wants them');
  });

  it('retries, timeout, headers, corsPolicy and rewrite are set on every route of ours', () => {
    const service = {
      port: 80,
      retries: { attempts: 3, perTryTimeout: '1.5s', retryOn: 'gateway-error,connect-failure' },
      timeout: '1m',
      headers: { request: { set: { 'x-env': 'prod' }, remove: ['x-debug'] }, response: { add: { 'x-served-by': 'canary-gate' } } },
      corsPolicy: { allowOrigins: [{ exact: 'https://shop.example.com' }, { suffix: '.example.com' }], allowMethods: ['GET', 'POST'], allowHeaders: ['x-user'], exposeHeaders: ['x-id'], maxAge: '24h', allowCredentials: true },
      rewrite: { uri: '/v2', authority: 'web.internal' },
    };
    const p = istioPlan(ctx(canary({ service, analysis: { match: [{ headers: { 'x-canary': { exact: '1' } } }] } })));
    const vs = desiredVirtualService(undefined, p, 10, toIstioMatches([{ headers: { 'x-canary': { exact: '1' } } }]));
    for (const name of [WEIGHT_ROUTE, MATCH_ROUTE]) {
      const r = route(vs, name)!;
      assert.deepEqual(r.retries, { attempts: 3, perTryTimeout: '1.5s', retryOn: 'gateway-error,connect-failure' }, name);
      assert.equal(r.timeout, '60s');
      assert.deepEqual(r.headers, { request: { set: { 'x-env': 'prod' }, remove: ['x-debug'] }, response: { add: { 'x-served-by': 'canary-gate' } } });
      assert.deepEqual(r.corsPolicy, {
        allowOrigins: [{ exact: 'https://shop.example.com' }, { regex: '.*\\.example\\.com' }],
        allowMethods: ['GET', 'POST'],
        allowHeaders: ['x-user'],
        exposeHeaders: ['x-id'],
        maxAge: '86400s',
        allowCredentials: true,
      });
      assert.deepEqual(r.rewrite, { uri: '/v2', authority: 'web.internal' });
    }
  });

  it('a field taken out of the Canary leaves our routes; a field of our route the Canary does not speak for (fault) is kept', () => {
    const withRetries = istioPlan(ctx(canary({ service: { port: 80, retries: { attempts: 2 }, timeout: '5s' } })));
    const stored = asStored(desiredVirtualService(undefined, withRetries));
    route(stored, WEIGHT_ROUTE)!.fault = { abort: { httpStatus: 503, percentage: { value: 1 } } };
    const after = desiredVirtualService(stored, istioPlan(ctx(canary())));
    const r = route(after, WEIGHT_ROUTE)!;
    assert.equal(r.retries, undefined);
    assert.equal(r.timeout, undefined);
    assert.deepEqual(r.fault, { abort: { httpStatus: 503, percentage: { value: 1 } } });
  });

  it('A/B: a route sending matching requests 100% to the canary goes before the weight route, which stays 100% primary', () => {
    const c = canary({ analysis: { iterations: 5, match: [{ headers: { 'x-canary': { exact: 'insider' } } }, { headers: { cookie: { regex: '^(.*?;)?(canary=always)(;.*)?$' } } }] } });
    const p = istioPlan(ctx(c));
    assert.equal(p.abStrategy, true);
    const vs = desiredVirtualService(undefined, p, 100, toIstioMatches(c.spec.analysis!.match!));
    assert.deepEqual(names(vs), [MATCH_ROUTE, WEIGHT_ROUTE]);
    const ab = route(vs, MATCH_ROUTE)!;
    assert.deepEqual(ab.match, [{ headers: { 'x-canary': { exact: 'insider' } } }, { headers: { cookie: { regex: '^(.*?;)?(canary=always)(;.*)?$' } } }]);
    assert.deepEqual(ab.route, [{ destination: { host: 'web-canary', port: { number: 80 } }, weight: 100 }]);
    assert.deepEqual(split(vs), [
      ['web-primary', 100],
      ['web-canary', 0],
    ]);
    // An A/B route in place reads as "the canary has traffic"; weight 0 without matches removes it.
    assert.deepEqual(readWeights(vs, p), { primary: 0, canary: 100 });
    const back = desiredVirtualService(asStored(vs), p, 0, null);
    assert.deepEqual(names(back), [WEIGHT_ROUTE]);
    assert.deepEqual(readWeights(back, p), { primary: 100, canary: 0 });
  });

  it('the canary strategy with analysis.match: matching requests to the canary, the rest by weight', () => {
    const c = canary({ analysis: { stepWeight: 20, match: [{ sourceLabels: { app: 'tester' } }] } });
    const p = istioPlan(ctx(c));
    assert.equal(p.abStrategy, false);
    const vs = desiredVirtualService(undefined, p, 20, toIstioMatches(c.spec.analysis!.match!));
    assert.deepEqual(names(vs), [MATCH_ROUTE, WEIGHT_ROUTE]);
    assert.deepEqual(route(vs, MATCH_ROUTE)?.match, [{ sourceLabels: { app: 'tester' } }]);
    assert.deepEqual(split(vs), [
      ['web-primary', 80],
      ['web-canary', 20],
    ]);
    assert.deepEqual(readWeights(vs, p), { primary: 80, canary: 20 });
  });

  it('mirroring: the weight route copies N% to the canary, reported by readWeights, removed with mirror 0', () => {
    const p = istioPlan(ctx(canary()));
    const vs = desiredVirtualService(undefined, p, 0, null, { mirror: 40 });
    const r = route(vs, WEIGHT_ROUTE)!;
    assert.deepEqual(r.mirror, { host: 'web-canary', port: { number: 80 } });
    assert.deepEqual(r.mirrorPercentage, { value: 40 });
    assert.deepEqual(readWeights(vs, p), { primary: 100, canary: 0, mirror: 40 });
    const off = desiredVirtualService(asStored(vs), p, 0, null, { mirror: 0 });
    assert.equal(route(off, WEIGHT_ROUTE)?.mirror, undefined);
    assert.equal(route(off, WEIGHT_ROUTE)?.mirrorPercentage, undefined);
    assert.deepEqual(readWeights(off, p), { primary: 100, canary: 0 });
    // Kept as it is when the caller does not speak of extras (reconcile).
    assert.deepEqual(route(desiredVirtualService(asStored(vs), p), WEIGHT_ROUTE)?.mirrorPercentage, { value: 40 });
  });

  it('session affinity: a cookie route to each side before the weight route, the sides set their cookie; gone without sticky', () => {
    const p = istioPlan(ctx(canary({ service: { port: 80, match: [{ uri: { prefix: '/shop' } }] } })));
    const vs = desiredVirtualService(undefined, p, 30, null, { mirror: 0, sticky: { canary: cookie, primary: primaryCookie } });
    assert.deepEqual(names(vs), [STICKY_CANARY_ROUTE, STICKY_PRIMARY_ROUTE, WEIGHT_ROUTE]);
    const sticky = route(vs, STICKY_CANARY_ROUTE)!;
    assert.deepEqual(sticky.match, [{ uri: { prefix: '/shop' }, headers: { cookie: { regex: cookieHeaderRegex(cookie) } } }]);
    assert.deepEqual(sticky.route, [{ destination: { host: 'web-canary', port: { number: 80 } }, weight: 100 }]);
    assert.deepEqual(route(vs, STICKY_PRIMARY_ROUTE)?.route?.[0]?.destination.host, 'web-primary');
    assert.deepEqual(route(vs, STICKY_PRIMARY_ROUTE)?.match?.[0]?.headers, { cookie: { regex: cookieHeaderRegex(primaryCookie) } });
    const [primary, canaryDest] = route(vs, WEIGHT_ROUTE)!.route!;
    assert.deepEqual(canaryDest?.headers, { response: { add: { 'Set-Cookie': setCookieValue(cookie) } } });
    assert.deepEqual(primary?.headers, { response: { add: { 'Set-Cookie': setCookieValue(primaryCookie) } } });
    // The cookie regex matches a real Cookie header carrying the cookie among others, and nothing else.
    const re = new RegExp(cookieHeaderRegex(cookie));
    assert.ok(re.test(`a=1; ${cookie.name}=${cookie.value}; b=2`));
    assert.ok(!re.test(`${cookie.name}=other`));

    const plain = desiredVirtualService(asStored(vs), p, 30, null, { mirror: 0 });
    assert.deepEqual(names(plain), [WEIGHT_ROUTE]);
    assert.ok(route(plain, WEIGHT_ROUTE)!.route!.every((d) => d.headers === undefined));
    // Without the primary cookie only the canary side is sticky.
    const one = desiredVirtualService(undefined, p, 30, null, { mirror: 0, sticky: { canary: cookie } });
    assert.deepEqual(names(one), [STICKY_CANARY_ROUTE, WEIGHT_ROUTE]);
    assert.equal(route(one, WEIGHT_ROUTE)!.route![0]?.headers, undefined);
  });

  it('in a user VirtualService, our block goes before their catch-all and after their specific routes; tcp routes, hosts, gateways kept', () => {
    const p = istioPlan(ctx(canary({ service: { port: 80, gateways: ['public'] } })));
    const user = userVirtualService(
      [
        { name: 'admin', match: [{ uri: { prefix: '/admin' } }], route: [{ destination: { host: 'admin' } }] },
        { name: 'default', route: [{ destination: { host: 'web' } }] },
      ],
      { tcp: [{ route: [{ destination: { host: 'db' } }] }] },
    );
    const vs = desiredVirtualService(user, p, 0, toIstioMatches([{ headers: { a: { exact: 'b' } } }]));
    assert.deepEqual(names(vs), ['admin', MATCH_ROUTE, WEIGHT_ROUTE, 'default']);
    assert.deepEqual(vs.spec.tcp, user.spec.tcp);
    assert.deepEqual(vs.spec.hosts, ['web']);
    // No gateways meant the mesh: it keeps serving the mesh, and the Canary's gateway is added.
    assert.deepEqual(vs.spec.gateways, ['mesh', 'public']);
    assert.deepEqual(vs.metadata.annotations, { team: 'shop' });
    assert.equal(vs.metadata.ownerReferences, undefined, 'a user VirtualService is not given to the Canary');
    // Our block stays where it is, whatever the user adds around it.
    const stored = asStored(vs);
    stored.spec.http!.unshift({ name: 'first', match: [{ uri: { exact: '/x' } }], route: [{ destination: { host: 'x' } }] });
    assert.deepEqual(names(desiredVirtualService(stored, p, 10, null)), ['first', 'admin', WEIGHT_ROUTE, 'default']);
    assert.equal(foreignRoutes(stored).length, 4);
  });

  it('the DestinationRules carry spec.service.trafficPolicy, host = their side; a user field in them is kept', () => {
    const trafficPolicy = { tls: { mode: 'ISTIO_MUTUAL' }, connectionPool: { http: { http1MaxPendingRequests: 100 } } };
    const p = istioPlan(ctx(canary({ service: { port: 80, trafficPolicy } })));
    const primary = desiredDestinationRule(undefined, p, p.primaryRule, p.primary);
    const canaryRule = desiredDestinationRule(undefined, p, p.canaryRule, p.canary);
    assert.deepEqual([primary.metadata.name, primary.spec.host], ['web-primary', 'web-primary']);
    assert.deepEqual([canaryRule.metadata.name, canaryRule.spec.host], ['web-canary', 'web-canary']);
    assert.deepEqual(primary.spec.trafficPolicy, trafficPolicy);
    assert.deepEqual(canaryRule.spec.trafficPolicy, trafficPolicy);
    const stored = asStored(primary);
    stored.spec.exportTo = ['.'];
    const without = desiredDestinationRule(stored, istioPlan(ctx(canary())), p.primaryRule, p.primary);
    assert.equal(without.spec.trafficPolicy, undefined, 'taken out of the Canary, taken out of the rule');
    assert.deepEqual(without.spec.exportTo, ['.']);
  });

  it('releases the VirtualService: our A/B and sticky routes gone, the weight route handed to the apex Service without mirror, or removed', () => {
    const p = istioPlan(ctx(canary()));
    const vs = asStored(desiredVirtualService(undefined, p, 30, toIstioMatches([{ headers: { a: { exact: 'b' } } }]), { mirror: 20, sticky: { canary: cookie } }));
    vs.spec.http!.push({ name: 'other', route: [{ destination: { host: 'other' } }] });
    const handed = releasedVirtualService(vs, p, 'web');
    assert.deepEqual(names(handed), [WEIGHT_ROUTE, 'other']);
    assert.deepEqual(route(handed, WEIGHT_ROUTE)?.route, [{ destination: { host: 'web', port: { number: 80 } } }]);
    assert.equal(route(handed, WEIGHT_ROUTE)?.mirror, undefined);
    assert.deepEqual(names(releasedVirtualService(vs, p)), ['other']);
    const d = disowned(vs, canary());
    assert.equal(d.metadata.ownerReferences, undefined);
    assert.equal(d.metadata.labels?.['app.kubernetes.io/managed-by'], undefined);
  });
});

// ------------------------------------------------------------------ providers table and traits

describe('istio: field support and traits', () => {
  const set = (...fields: string[]) => (f: string) => fields.includes(f);

  it('accepts every field the istio router honours, and watches VirtualServices and DestinationRules', () => {
    const honoured = ['service.hosts', 'service.headers', 'service.match', 'service.timeout', 'service.retries', 'service.gateways', 'service.trafficPolicy', 'service.corsPolicy', 'service.rewrite', 'analysis.match', 'analysis.mirror', 'analysis.mirrorWeight', 'analysis.sessionAffinity', 'match[].sourceLabels'];
    assert.deepEqual(unsupportedFields('istio', set(...honoured)), []);
    assert.deepEqual(unsupportedFields('istio', set('service.gatewayRefs', 'ingressRef')), ['service.gatewayRefs', 'ingressRef']);
    assert.deepEqual(
      ROUTER_RESOURCES.istio.map((r) => `${r.group}/${r.version}/${r.plural}`),
      ['networking.istio.io/v1/virtualservices', 'networking.istio.io/v1/destinationrules'],
    );
    assert.ok(watchedRouterResources().some((r) => r.plural === 'virtualservices'));
  });

  it('refuses sourceLabels for every provider but istio, in a CEL rule that looks into both match lists', () => {
    assert.deepEqual(unsupportedFields('gatewayapi', set('match[].sourceLabels')), ['match[].sourceLabels']);
    assert.deepEqual(unsupportedFields('kubernetes', set('service.retries', 'service.gateways')), ['service.retries', 'service.gateways']);
    const row = FIELD_SUPPORT.find((f) => f.field === 'match[].sourceLabels')!;
    assert.match(row.isSet, /self\.service\.match\.exists\(m, has\(m\.sourceLabels\)\)/);
    assert.match(row.isSet, /self\.analysis\.match\.exists\(m, has\(m\.sourceLabels\)\)/);
    assert.ok(fieldSupportRules().some((r) => r.message === 'match[].sourceLabels is honoured only by the providers istio'));
  });

  it('judges the canary by the sidecar metrics of the <target>-canary workload', () => {
    const m = routerTraits('istio').builtinMetrics!;
    assert.match(m['request-success-rate']!, /istio_requests_total\{reporter="destination",destination_workload_namespace="\{\{ namespace \}\}",destination_workload=~"\{\{ target \}\}-canary",response_code!~"5\.\*"\}/);
    assert.match(m['request-duration']!, /histogram_quantile\(0\.99, .*istio_request_duration_milliseconds_bucket\{reporter="destination"/);
    assert.equal(routerTraits('istio').copySharesUserService, false);
  });
});

// ------------------------------------------------------------------ against an in-memory API

interface Stored {
  apiVersion?: string;
  kind?: string;
  metadata: k8s.V1ObjectMeta;
  spec?: unknown;
}

class FakeApi {
  readonly calls: string[] = [];
  readonly objects = { virtualservices: new Map<string, VirtualService>(), destinationrules: new Map<string, DestinationRule>(), services: new Map<string, k8s.V1Service>() };
  private rv = 100;
  private snapshot = { virtualservices: new Map<string, Stored>(), destinationrules: new Map<string, Stored>(), services: new Map<string, k8s.V1Service>() };

  private err(code: number): Error {
    return Object.assign(new Error(code === 404 ? 'NotFound' : 'Conflict'), { code });
  }
  private stamp<T extends { metadata?: k8s.V1ObjectMeta }>(obj: T, uid?: string): T {
    const out = JSON.parse(JSON.stringify(obj)) as T;
    out.metadata = { ...out.metadata, resourceVersion: String(++this.rv), uid: uid ?? out.metadata?.uid ?? `uid-${this.rv}` };
    return out;
  }
  private map(plural: string): Map<string, Stored> {
    return this.objects[plural as 'virtualservices'] as unknown as Map<string, Stored>;
  }
  private short(plural: string): string {
    return plural === 'virtualservices' ? 'vs' : 'dr';
  }

  readonly custom = {
    getNamespacedCustomObject: async (p: { plural: string; name: string }) => {
      const o = this.map(p.plural).get(p.name);
      if (!o) throw this.err(404);
      return structuredClone(o);
    },
    createNamespacedCustomObject: async (p: { plural: string; body: Stored }) => {
      this.calls.push(`create ${this.short(p.plural)}/${p.body.metadata.name}`);
      const m = this.map(p.plural);
      if (m.has(p.body.metadata.name!)) throw this.err(409);
      const s = this.stamp(p.body);
      m.set(s.metadata.name!, s);
      return structuredClone(s);
    },
    replaceNamespacedCustomObject: async (p: { plural: string; name: string; body: Stored }) => {
      this.calls.push(`replace ${this.short(p.plural)}/${p.name}`);
      const m = this.map(p.plural);
      const cur = m.get(p.name);
      if (!cur) throw this.err(404);
      if (p.body.metadata.resourceVersion !== cur.metadata.resourceVersion) throw this.err(409);
      const s = this.stamp(p.body, cur.metadata.uid);
      m.set(p.name, s);
      return structuredClone(s);
    },
    deleteNamespacedCustomObject: async (p: { plural: string; name: string; body?: k8s.V1DeleteOptions }) => {
      this.calls.push(`delete ${this.short(p.plural)}/${p.name}`);
      const m = this.map(p.plural);
      const cur = m.get(p.name);
      if (!cur) throw this.err(404);
      const pre = p.body?.preconditions;
      if (pre?.resourceVersion && pre.resourceVersion !== cur.metadata.resourceVersion) throw this.err(409);
      m.delete(p.name);
      return {};
    },
  };

  readonly core = {
    readNamespacedService: async (p: { name: string }) => {
      const s = this.objects.services.get(p.name);
      if (!s) throw this.err(404);
      return structuredClone(s);
    },
    createNamespacedService: async (p: { body: k8s.V1Service }) => {
      this.calls.push(`create service/${p.body.metadata?.name}`);
      if (this.objects.services.has(p.body.metadata!.name!)) throw this.err(409);
      const s = this.stamp(p.body);
      this.objects.services.set(s.metadata!.name!, s);
      return structuredClone(s);
    },
    replaceNamespacedService: async (p: { name: string; body: k8s.V1Service }) => {
      this.calls.push(`replace service/${p.name}`);
      const cur = this.objects.services.get(p.name);
      if (!cur) throw this.err(404);
      if (p.body.metadata?.resourceVersion !== cur.metadata?.resourceVersion) throw this.err(409);
      const s = this.stamp(p.body, cur.metadata?.uid);
      this.objects.services.set(p.name, s);
      return structuredClone(s);
    },
    deleteNamespacedService: async (p: { name: string }) => {
      this.calls.push(`delete service/${p.name}`);
      if (!this.objects.services.delete(p.name)) throw this.err(404);
      return {};
    },
  };

  /** Informer-like caches that lag: they show what the store held when `sync()` was last called. */
  sync(): void {
    this.snapshot = { virtualservices: new Map(this.map('virtualservices')), destinationrules: new Map(this.map('destinationrules')), services: new Map(this.objects.services) };
  }
  readonly caches = {
    services: { get: (_ns: string, n: string) => this.snapshot.services.get(n), list: () => [...this.snapshot.services.values()] },
    routerObjects: (r: { plural: string }) => {
      const snap = () => this.snapshot[r.plural as 'virtualservices'];
      return { get: (_ns: string, n: string) => snap().get(n), list: () => [...snap().values()] };
    },
  };

  get vs(): VirtualService | undefined {
    return this.objects.virtualservices.get('web');
  }
  set vs(v: VirtualService) {
    this.objects.virtualservices.set('web', v);
  }
}

function istioRouter(api: FakeApi, withCaches: boolean): IstioRouter {
  return new IstioRouter({ core: api.core as unknown as k8s.CoreV1Api, custom: api.custom as unknown as k8s.CustomObjectsApi, ...(withCaches ? { caches: api.caches } : {}) });
}

describe('istio router against an in-memory API', () => {
  for (const withCaches of [false, true]) {
    describe(withCaches ? 'with (lagging) informer caches' : 'reading with GETs', () => {
      it('creates both Services, both DestinationRules and the VirtualService, then writes nothing when reconciled again', async () => {
        const api = new FakeApi();
        const r = istioRouter(api, withCaches);
        const c = ctx(canary({ service: { port: 80, trafficPolicy: { loadBalancer: { simple: 'LEAST_REQUEST' } }, retries: { attempts: 2 } } }));
        await r.reconcile(c);
        assert.deepEqual([...api.calls].sort(), ['create dr/web-canary', 'create dr/web-primary', 'create service/web-canary', 'create service/web-primary', 'create vs/web']);
        assert.deepEqual(api.objects.services.get('web-primary')?.spec?.selector, { app: 'web' });
        assert.deepEqual(api.objects.services.get('web-canary')?.spec?.selector, { app: 'web-canary', [ROLE_LABEL]: 'canary' });
        assert.deepEqual(api.objects.destinationrules.get('web-canary')?.spec, { host: 'web-canary', trafficPolicy: { loadBalancer: { simple: 'LEAST_REQUEST' } } });
        assert.deepEqual(r.getWeights(c), { primary: 100, canary: 0 });
        const n = api.calls.length;
        await r.reconcile(c);
        api.sync();
        await r.reconcile(c);
        await r.setWeight(c, { weight: 0 });
        assert.equal(api.calls.length, n, `no write when nothing changed: ${api.calls.slice(n).join(', ')}`);
      });

      it('changes the weights with one replace of the VirtualService, reports them, and writes nothing for the same split', async () => {
        const api = new FakeApi();
        const r = istioRouter(api, withCaches);
        const c = ctx(canary());
        await r.reconcile(c);
        api.sync();
        const n = api.calls.length;
        await r.setWeight(c, { weight: 30 });
        assert.deepEqual(api.calls.slice(n), ['replace vs/web']);
        assert.deepEqual(r.getWeights(c), { primary: 70, canary: 30 });
        api.sync();
        await r.setWeight(c, { weight: 30 });
        assert.equal(api.calls.length, n + 1);
      });

      it('puts back what it owns when the user edits it: weights, retries, the DestinationRule trafficPolicy', async () => {
        const api = new FakeApi();
        const r = istioRouter(api, withCaches);
        const c = ctx(canary({ service: { port: 80, retries: { attempts: 3 }, trafficPolicy: { tls: { mode: 'ISTIO_MUTUAL' } } } }));
        await r.reconcile(c);
        await r.setWeight(c, { weight: 20 });
        const vs = structuredClone(api.vs!);
        route(vs, WEIGHT_ROUTE)!.route = [{ destination: { host: 'web-primary', port: { number: 80 } }, weight: 100 }];
        delete route(vs, WEIGHT_ROUTE)!.retries;
        api.vs = { ...vs, metadata: { ...vs.metadata, resourceVersion: '900' } };
        const dr = structuredClone(api.objects.destinationrules.get('web-primary')!);
        dr.spec.trafficPolicy = { tls: { mode: 'DISABLE' } };
        api.objects.destinationrules.set('web-primary', { ...dr, metadata: { ...dr.metadata, resourceVersion: '901' } });
        api.sync();
        if (withCaches) assert.deepEqual(r.getWeights(c), { primary: 100, canary: 0 }, 'the edit is seen');
        await r.setWeight(c, { weight: 20 });
        assert.deepEqual(split(api.vs!), [
          ['web-primary', 80],
          ['web-canary', 20],
        ]);
        assert.deepEqual(route(api.vs!, WEIGHT_ROUTE)?.retries, { attempts: 3 });
        assert.deepEqual(api.objects.destinationrules.get('web-primary')?.spec.trafficPolicy, { tls: { mode: 'ISTIO_MUTUAL' } });
      });

      it('keeps a route and labels the user added meanwhile (conflict: re-read and retry)', async () => {
        const api = new FakeApi();
        const r = istioRouter(api, withCaches);
        const c = ctx(canary());
        await r.reconcile(c);
        api.sync();
        // The user adds a route behind the router's back; the caches have not seen it.
        const edited = structuredClone(api.vs!);
        edited.spec.http!.unshift({ name: 'admin', match: [{ uri: { prefix: '/admin' } }], route: [{ destination: { host: 'admin' } }] });
        edited.metadata.labels = { ...edited.metadata.labels, team: 'shop' };
        api.vs = { ...edited, metadata: { ...edited.metadata, resourceVersion: '999' } };
        await r.setWeight(c, { weight: 50 });
        assert.deepEqual(names(api.vs), ['admin', WEIGHT_ROUTE]);
        assert.equal(api.vs!.metadata.labels?.team, 'shop');
        assert.deepEqual(readWeights(api.vs, istioPlan(c)), { primary: 50, canary: 50 });
      });

      it('finalizes: all to the primary without mirror or sticky first, then VirtualService, DestinationRules, Services removed', async () => {
        const api = new FakeApi();
        const r = istioRouter(api, withCaches);
        const c = ctx(canary({ analysis: { stepWeight: 10, match: [{ headers: { a: { exact: 'b' } } }] } }));
        await r.reconcile(c);
        await r.setWeight(c, { weight: 40, match: c.canary.spec.analysis!.match!, mirror: 10, sticky: { canary: cookie } } satisfies Split);
        assert.deepEqual(names(api.vs), [MATCH_ROUTE, STICKY_CANARY_ROUTE, WEIGHT_ROUTE]);
        api.sync();
        const n = api.calls.length;
        // What the VirtualService looked like when it was last written before the delete.
        let lastWritten: VirtualService | undefined;
        const replace = api.custom.replaceNamespacedCustomObject;
        api.custom.replaceNamespacedCustomObject = async (p) => {
          const out = await replace(p);
          if (p.plural === 'virtualservices') lastWritten = structuredClone(out as VirtualService);
          return out;
        };
        await r.finalize(c);
        assert.deepEqual(api.calls.slice(n), ['replace vs/web', 'delete vs/web', 'delete dr/web-canary', 'delete dr/web-primary', 'delete service/web-canary', 'delete service/web-primary']);
        assert.deepEqual(names(lastWritten), [WEIGHT_ROUTE]);
        assert.deepEqual(readWeights(lastWritten, istioPlan(c)), { primary: 100, canary: 0 });
        assert.equal(route(lastWritten!, WEIGHT_ROUTE)?.mirror, undefined);
        assert.ok(route(lastWritten!, WEIGHT_ROUTE)!.route!.every((d) => !d.headers));
        assert.equal(api.objects.virtualservices.size + api.objects.destinationrules.size + api.objects.services.size, 0);
      });

      it("finalizes a VirtualService of its own on a gateway: handed back to the apex Service and kept, so the gateway's hosts keep a route", async () => {
        const api = new FakeApi();
        const r = istioRouter(api, withCaches);
        const c = ctx(canary({ service: { port: 80, gateways: ['istio-system/public'], hosts: ['web.example.com'] } }));
        await r.reconcile(c);
        await r.setWeight(c, { weight: 30 });
        api.sync();
        await r.finalize(c);
        const kept = api.vs!;
        assert.ok(kept, 'not deleted');
        assert.equal(kept.metadata.ownerReferences, undefined, 'no longer garbage-collected with the Canary');
        assert.deepEqual(kept.spec.gateways, ['istio-system/public']);
        assert.deepEqual(route(kept, WEIGHT_ROUTE)?.route?.map((d) => d.destination.host), ['web']);
        assert.equal(api.objects.destinationrules.size + api.objects.services.size, 0);
      });

      it('finalizes a VirtualService the user added routes to: handed back to the apex Service, kept and given up', async () => {
        const api = new FakeApi();
        const r = istioRouter(api, withCaches);
        const c = ctx(canary());
        await r.reconcile(c);
        await r.setWeight(c, { weight: 60 });
        const edited = structuredClone(api.vs!);
        edited.spec.http!.unshift({ name: 'admin', match: [{ uri: { prefix: '/admin' } }], route: [{ destination: { host: 'admin' } }] });
        api.vs = edited;
        api.sync();
        await r.finalize(c);
        const kept = api.vs!;
        assert.equal(kept.metadata.ownerReferences, undefined, 'no longer garbage-collected with the Canary');
        assert.deepEqual(names(kept), ['admin', WEIGHT_ROUTE]);
        assert.deepEqual(route(kept, WEIGHT_ROUTE)?.route?.map((d) => d.destination.host), ['web']);
        assert.equal(api.objects.destinationrules.size + api.objects.services.size, 0);
      });
    });
  }

  it('adds its routes to a user VirtualService, keeps theirs, and finalize restores it as it was', async () => {
    const api = new FakeApi();
    const original = userVirtualService([{ name: 'default', route: [{ destination: { host: 'web', port: { number: 80 } } }], timeout: '3s' }], { tcp: [{ route: [{ destination: { host: 'db' } }] }] });
    api.vs = structuredClone(original);
    const r = istioRouter(api, false);
    const c = ctx(canary());
    assert.deepEqual(r.conflicts(c), []);
    await r.reconcile(c);
    await r.setWeight(c, { weight: 20 });
    assert.deepEqual(names(api.vs), [WEIGHT_ROUTE, 'default']);
    assert.deepEqual(readWeights(api.vs, istioPlan(c)), { primary: 80, canary: 20 });
    await r.finalize(c);
    const after = api.vs!;
    assert.deepEqual(after.spec, JSON.parse(JSON.stringify(original.spec)));
    assert.deepEqual(after.metadata.annotations, { team: 'shop' });
    assert.equal(after.metadata.uid, 'user-vs', 'never deleted');
  });

  it('finalize leaves a user VirtualService without our routes untouched', async () => {
    const api = new FakeApi();
    api.vs = userVirtualService([{ route: [{ destination: { host: 'web' } }] }]);
    await istioRouter(api, false).finalize(ctx(canary()));
    assert.deepEqual(api.calls, []);
  });

  it('a leftover mirror after a crash is reported and removed by the next split', async () => {
    const api = new FakeApi();
    const r = istioRouter(api, true);
    const c = ctx(canary());
    await r.setWeight(c, { weight: 10, mirror: 50 });
    api.sync();
    assert.deepEqual(r.getWeights(c), { primary: 90, canary: 10, mirror: 50 });
    // A new process (no memo of its own writes) sees the same from the caches.
    const fresh = istioRouter(api, true);
    assert.deepEqual(fresh.getWeights(c), { primary: 90, canary: 10, mirror: 50 });
    await fresh.setWeight(c, { weight: 10 });
    api.sync();
    assert.deepEqual(fresh.getWeights(c), { primary: 90, canary: 10 });
    assert.equal(route(api.vs!, WEIGHT_ROUTE)?.mirrorPercentage, undefined);
  });

  it('never changes a DestinationRule canary-gate did not create: conflicts() says so and reconcile refuses', async () => {
    const api = new FakeApi();
    const theirs: DestinationRule = { apiVersion: 'networking.istio.io/v1', kind: 'DestinationRule', metadata: { name: 'web-canary', namespace: 'shop', resourceVersion: '1', uid: 'theirs' }, spec: { host: 'web-canary', trafficPolicy: { tls: { mode: 'DISABLE' } } } };
    api.objects.destinationrules.set('web-canary', structuredClone(theirs));
    api.sync();
    const r = istioRouter(api, true);
    const c = ctx(canary());
    assert.deepEqual(r.conflicts(c), ['DestinationRule shop/web-canary exists and was not created by canary-gate; canary-gate leaves it alone: rename it or set spec.service.name of Canary web to another name']);
    await assert.rejects(r.reconcile(c), /DestinationRule shop\/web-canary exists and was not created by canary-gate/);
    assert.deepEqual(api.objects.destinationrules.get('web-canary'), theirs);
    await r.finalize(c);
    assert.deepEqual(api.objects.destinationrules.get('web-canary'), theirs, 'finalize does not delete it either');
  });

  it('never touches a VirtualService of another Canary', async () => {
    const api = new FakeApi();
    const other = userVirtualService([{ name: WEIGHT_ROUTE, route: [{ destination: { host: 'web-primary' } }] }]);
    other.metadata.ownerReferences = [{ apiVersion: 'canarygate.dev/v1alpha1', kind: 'Canary', name: 'other', uid: 'other-uid', controller: true }];
    api.vs = structuredClone(other);
    api.sync();
    const r = istioRouter(api, true);
    const c = ctx(canary());
    assert.match(r.conflicts(c).join('\n'), /VirtualService shop\/web exists and belongs to another Canary/);
    await assert.rejects(r.setWeight(c, { weight: 10 }), /belongs to another Canary/);
    await r.finalize(c);
    assert.deepEqual(api.vs, other);
    assert.ok(!api.calls.some((x) => x.endsWith('vs/web')));
  });

  it('says when the API server drops part of the trafficPolicy instead of rewriting it every sync', async () => {
    const api = new FakeApi();
    const create = api.custom.createNamespacedCustomObject;
    api.custom.createNamespacedCustomObject = async (p) => {
      const out = await create(p);
      if (p.plural === 'destinationrules') delete ((out as DestinationRule).spec.trafficPolicy as Record<string, unknown>).madeUp;
      return out;
    };
    const r = istioRouter(api, false);
    await assert.rejects(r.reconcile(ctx(canary({ service: { port: 80, trafficPolicy: { madeUp: true } } }))), /the API server changed spec\.trafficPolicy of DestinationRule shop\/web-primary/);
  });
});
