// The istio router against the real API server with Istio's own CRDs
// (istio.io/api, pinned in test/cluster/versions.env): every VirtualService
// and DestinationRule it writes must pass their schema; a whole rollout of an
// istio Canary through the real reconciler; the Canary CRD's CEL rules
// refusing Istio-only fields for other providers; and the built-in metrics
// on istio-format series in the real Prometheus.

import assert from 'node:assert/strict';
import { mkdir, rename, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import type * as k8s from '@kubernetes/client-node';
import type { Canary, CanaryMetric, CanarySpec } from '../../core/api/types.js';
import { TemplateMetricChecker } from '../../reconciler/analysis/metrics/checker.js';
import type { CheckResult } from '../../reconciler/decide/transition.js';
import { IstioRouter, MATCH_ROUTE, STICKY_CANARY_ROUTE, STICKY_PRIMARY_ROUTE, WEIGHT_ROUTE, istioPlan, readWeights, type DestinationRule, type HttpRoute, type VirtualService } from '../../reconciler/routers/istio.js';
import type { RouterContext } from '../../reconciler/routers/router.js';
import { cookieHeaderRegex, setCookieValue } from '../../reconciler/routers/split.js';
import { ROLE_LABEL } from '../../core/contract.js';
import { apps, clusterDir, core, custom, kubectl, kubectlOk, getObject as get, applyAsUser as apply } from './cluster.js';
import { createNamespace, deleteNamespace } from './namespaces.js';
import { deployment, service, yamlOf } from './objects.js';
import { startReconciler, type RunningReconciler } from './reconciler-process.js';
import { waitFor } from './wait.js';

const VS = { group: 'networking.istio.io', version: 'v1', plural: 'virtualservices' };
const DR = { group: 'networking.istio.io', version: 'v1', plural: 'destinationrules' };

async function getCustom<T>(at: typeof VS, ns: string, name: string): Promise<T | undefined> {
  try {
    return (await custom().getNamespacedCustomObject({ ...at, namespace: ns, name })) as T;
  } catch (err) {
    if ((err as { code?: number }).code === 404) return undefined;
    throw err;
  }
}
const getVs = (ns: string, name: string) => getCustom<VirtualService>(VS, ns, name);
const getDr = (ns: string, name: string) => getCustom<DestinationRule>(DR, ns, name);

async function getService(ns: string, name: string): Promise<k8s.V1Service | undefined> {
  try {
    return await core().readNamespacedService({ namespace: ns, name });
  } catch (err) {
    if ((err as { code?: number }).code === 404) return undefined;
    throw err;
  }
}

const route = (vs: VirtualService | undefined, name: string): HttpRoute | undefined => vs?.spec.http?.find((r) => r.name === name);
const names = (vs: VirtualService | undefined) => (vs?.spec.http ?? []).map((r) => r.name);
const split = (vs: VirtualService | undefined) => (route(vs, WEIGHT_ROUTE)?.route ?? []).map((d) => [d.destination.host, d.weight]);

/** A stored Canary owning what the router creates (see routers.test.ts); the router is handed the spec under test. */
async function anchorCanary(ns: string, name: string, spec: Partial<CanarySpec>): Promise<Canary> {
  const body = {
    apiVersion: 'canarygate.dev/v1alpha1',
    kind: 'Canary',
    metadata: { name },
    spec: { targetRef: { apiVersion: 'apps/v1', kind: 'Deployment', name: `${name}-no-such-target` }, service: { port: 80 }, suspend: true },
  };
  await kubectlOk(['-n', ns, 'apply', '-f', '-'], { input: JSON.stringify(body) });
  const stored = JSON.parse(await kubectlOk(['-n', ns, 'get', 'canary', name, '-o', 'json'])) as Canary;
  return { ...stored, spec: { targetRef: { kind: 'Deployment', name }, service: { port: 80 }, ...spec } };
}

describe('istio router on a real API server with the Istio CRDs', function () {
  let ns: string;
  before(async () => {
    const crd = await kubectl(['get', 'crd', 'virtualservices.networking.istio.io', 'destinationrules.networking.istio.io']);
    assert.equal(crd.code, 0, `the Istio CRDs are not installed (test/cluster/build.sh, then test/cluster/down.sh and up again): ${crd.stderr}`);
    ns = await createNamespace('istio', { enabled: false });
  });
  after(async () => deleteNamespace(ns));

  describe('the objects the router writes', function () {
    const cookie = { name: 'canary-gate-web', value: '0123456789abcdef0123', maxAge: 86_400 };
    const primaryCookie = { name: 'canary-gate-web-primary', value: 'fedcba98765432100123', maxAge: 10 };
    const spec: Partial<CanarySpec> = {
      provider: 'istio',
      service: {
        port: 80,
        hosts: ['web.example.com'],
        gateways: ['mesh', 'istio-system/public'],
        match: [{ uri: { prefix: '/' } }],
        retries: { attempts: 3, perTryTimeout: '1.5s', retryOn: 'gateway-error,connect-failure,refused-stream' },
        timeout: '30s',
        headers: { request: { set: { 'x-env': 'prod' }, add: { 'x-trace': '1' }, remove: ['x-debug'] }, response: { set: { 'x-served-by': 'canary-gate' }, remove: ['server'] } },
        corsPolicy: { allowOrigins: [{ exact: 'https://shop.example.com' }, { suffix: '.example.com' }], allowMethods: ['GET', 'POST'], allowHeaders: ['x-user'], exposeHeaders: ['x-id'], maxAge: '24h', allowCredentials: true },
        rewrite: { uri: '/v2/', authority: 'web.internal' },
        trafficPolicy: { tls: { mode: 'ISTIO_MUTUAL' }, connectionPool: { http: { http1MaxPendingRequests: 100, maxRetries: 3 } }, outlierDetection: { consecutive5xxErrors: 5, interval: '10s', baseEjectionTime: '30s' } },
      },
    };
    let router: IstioRouter;
    let ctx: RouterContext;

    before(async () => {
      await kubectlOk(['-n', ns, 'apply', '-f', '-'], { input: yamlOf(deployment('web', { image: 'web:1', replicas: 1 }), service('web', { selector: { app: 'web' } })) });
      const canary = await anchorCanary(ns, 'web', spec);
      ctx = { canary, namespace: ns, target: await apps().readNamespacedDeployment({ namespace: ns, name: 'web' }), service: (await getService(ns, 'web'))! };
      router = new IstioRouter({ core: core(), custom: custom() });
    });

    it('creates the Services, two DestinationRules with the trafficPolicy and a VirtualService the schema accepts, 100% primary', async () => {
      await router.reconcile(ctx);
      assert.deepEqual((await getService(ns, 'web-primary'))?.spec?.selector, { app: 'web' });
      assert.deepEqual((await getService(ns, 'web-canary'))?.spec?.selector, { app: 'web-canary', [ROLE_LABEL]: 'canary' });
      for (const side of ['web-primary', 'web-canary']) {
        const dr = await getDr(ns, side);
        assert.equal(dr?.spec.host, side);
        assert.deepEqual(dr?.spec.trafficPolicy, spec.service!.trafficPolicy, 'stored as written (nothing pruned)');
        assert.equal(dr?.metadata.ownerReferences?.[0]?.uid, ctx.canary.metadata.uid);
      }
      const vs = await getVs(ns, 'web');
      assert.ok(vs);
      assert.deepEqual(vs.spec.hosts, ['web.example.com', 'web']);
      assert.deepEqual(vs.spec.gateways, ['mesh', 'istio-system/public']);
      assert.deepEqual(names(vs), [WEIGHT_ROUTE]);
      const r = route(vs, WEIGHT_ROUTE)!;
      assert.deepEqual(r.match, [{ uri: { prefix: '/' } }]);
      assert.deepEqual(r.retries, { attempts: 3, perTryTimeout: '1.5s', retryOn: 'gateway-error,connect-failure,refused-stream' });
      assert.equal(r.timeout, '30s');
      assert.deepEqual(r.headers?.request, { set: { 'x-env': 'prod' }, add: { 'x-trace': '1' }, remove: ['x-debug'] });
      assert.deepEqual(r.corsPolicy?.allowOrigins, [{ exact: 'https://shop.example.com' }, { regex: '.*\\.example\\.com' }]);
      assert.equal(r.corsPolicy?.maxAge, '86400s');
      assert.deepEqual(r.rewrite, { uri: '/v2/', authority: 'web.internal' });
      assert.deepEqual(split(vs), [
        ['web-primary', 100],
        ['web-canary', 0],
      ]);
    });

    it('writes nothing when reconciled again', async () => {
      const before = [await getVs(ns, 'web'), await getDr(ns, 'web-primary'), await getDr(ns, 'web-canary')].map((o) => o?.metadata.resourceVersion);
      await router.reconcile(ctx);
      await router.setWeight(ctx, { weight: 0 });
      const after = [await getVs(ns, 'web'), await getDr(ns, 'web-primary'), await getDr(ns, 'web-canary')].map((o) => o?.metadata.resourceVersion);
      assert.deepEqual(after, before);
    });

    it('weights 30 and 100 are accepted and read back', async () => {
      await router.setWeight(ctx, { weight: 30 });
      assert.deepEqual(split(await getVs(ns, 'web')), [
        ['web-primary', 70],
        ['web-canary', 30],
      ]);
      await router.setWeight(ctx, { weight: 100 });
      const vs = await getVs(ns, 'web');
      assert.deepEqual(readWeights(vs, istioPlan(ctx)), { primary: 0, canary: 100 });
    });

    it('A/B matches (headers, cookie, sourceLabels, method, queryParams), mirroring and sticky routes are accepted', async () => {
      const match = [
        { headers: { 'x-canary': { exact: 'insider' }, cookie: { regex: '^(.*?;)?(canary=always)(;.*)?$' } } },
        { sourceLabels: { app: 'tester' }, method: { exact: 'GET' }, queryParams: { beta: { prefix: 'y' } } },
      ];
      await router.setWeight(ctx, { weight: 20, match, mirror: 50, sticky: { canary: cookie, primary: primaryCookie } });
      const vs = (await getVs(ns, 'web'))!;
      assert.deepEqual(names(vs), [MATCH_ROUTE, STICKY_CANARY_ROUTE, STICKY_PRIMARY_ROUTE, WEIGHT_ROUTE]);
      assert.deepEqual(route(vs, MATCH_ROUTE)?.match?.[1], { sourceLabels: { app: 'tester' }, method: { exact: 'GET' }, queryParams: { beta: { prefix: 'y' } } });
      assert.deepEqual(route(vs, STICKY_CANARY_ROUTE)?.match?.[0]?.headers?.cookie, { regex: cookieHeaderRegex(cookie) });
      const w = route(vs, WEIGHT_ROUTE)!;
      assert.deepEqual(w.mirror, { host: 'web-canary', port: { number: 80 } });
      assert.deepEqual(w.mirrorPercentage, { value: 50 });
      assert.deepEqual(w.route?.[1]?.headers, { response: { add: { 'Set-Cookie': setCookieValue(cookie) } } });
      assert.deepEqual(w.route?.[0]?.headers, { response: { add: { 'Set-Cookie': setCookieValue(primaryCookie) } } });
      assert.deepEqual(router.getWeights({ ...ctx }), { primary: 80, canary: 20, mirror: 50 });
    });

    it('keeps a route, a tcp route and an annotation the user added; our extras go with the next plain split', async () => {
      const vs = (await getVs(ns, 'web'))!;
      await kubectlOk([
        '-n', ns, 'patch', 'virtualservice', 'web', '--type=json', '-p',
        JSON.stringify([
          { op: 'add', path: '/spec/http/0', value: { name: 'admin', match: [{ uri: { prefix: '/admin' } }], route: [{ destination: { host: 'web', port: { number: 80 } } }] } },
          { op: 'add', path: '/spec/tcp', value: [{ match: [{ port: 5432 }], route: [{ destination: { host: 'db' } }] }] },
          { op: 'add', path: '/metadata/annotations', value: { 'team.example.com/owner': 'web' } },
        ]),
      ]);
      assert.ok(vs.metadata.resourceVersion);
      await router.setWeight(ctx, { weight: 40 });
      const after = (await getVs(ns, 'web'))!;
      assert.deepEqual(names(after), ['admin', WEIGHT_ROUTE]);
      assert.equal((after.spec.tcp as unknown[] | undefined)?.length, 1);
      assert.equal(after.metadata.annotations?.['team.example.com/owner'], 'web');
      assert.equal(route(after, WEIGHT_ROUTE)?.mirror, undefined);
      assert.deepEqual(router.getWeights(ctx), { primary: 60, canary: 40 });
    });

    it('finalize: everything to the primary, then the VirtualService handed back to the apex Service (it holds user routes), the rest removed', async () => {
      await router.finalize(ctx);
      const vs = await getVs(ns, 'web');
      assert.ok(vs, 'kept: it holds the user routes');
      assert.equal(vs.metadata.ownerReferences, undefined);
      assert.deepEqual(names(vs), ['admin', WEIGHT_ROUTE]);
      assert.deepEqual(route(vs, WEIGHT_ROUTE)?.route, [{ destination: { host: 'web', port: { number: 80 } } }]);
      assert.equal(await getDr(ns, 'web-primary'), undefined);
      assert.equal(await getDr(ns, 'web-canary'), undefined);
      assert.equal(await getService(ns, 'web-primary'), undefined);
      assert.equal(await getService(ns, 'web-canary'), undefined);
      assert.ok(await getService(ns, 'web'));
    });

    it('a DestinationRule of the same name that canary-gate did not create is left alone', async () => {
      await kubectlOk(['-n', ns, 'apply', '-f', '-'], { input: yamlOf(deployment('cart', { image: 'cart:1', replicas: 1 }), service('cart', { selector: { app: 'cart' } })) });
      await kubectlOk(['-n', ns, 'apply', '-f', '-'], { input: JSON.stringify({ apiVersion: 'networking.istio.io/v1', kind: 'DestinationRule', metadata: { name: 'cart-canary' }, spec: { host: 'cart-canary', trafficPolicy: { tls: { mode: 'DISABLE' } } } }) });
      const canary = await anchorCanary(ns, 'cart', { provider: 'istio' });
      const c: RouterContext = { canary, namespace: ns, target: await apps().readNamespacedDeployment({ namespace: ns, name: 'cart' }), service: (await getService(ns, 'cart'))! };
      const before = await getDr(ns, 'cart-canary');
      await assert.rejects(router.reconcile(c), /DestinationRule .*\/cart-canary exists and was not created by canary-gate/);
      assert.equal((await getDr(ns, 'cart-canary'))?.metadata.resourceVersion, before?.metadata.resourceVersion);
      await router.finalize(c);
      assert.ok(await getDr(ns, 'cart-canary'), 'not deleted either');
      assert.equal(await getVs(ns, 'cart'), undefined);
    });
  });

  describe('the Canary CRD', function () {
    const canaryOf = (name: string, spec: Record<string, unknown>) => ({
      apiVersion: 'canarygate.dev/v1alpha1',
      kind: 'Canary',
      metadata: { name },
      spec: { targetRef: { apiVersion: 'apps/v1', kind: 'Deployment', name }, suspend: true, ...spec },
    });

    it('refuses service.gateways for the kubernetes provider, and match sourceLabels for gatewayapi, with the message', async () => {
      let r = await kubectl(['-n', ns, 'apply', '-f', '-'], { input: JSON.stringify(canaryOf('k8s-gw', { provider: 'kubernetes', service: { port: 80, gateways: ['mesh'] } })) });
      assert.notEqual(r.code, 0, 'accepted');
      assert.match(r.stderr, /service\.gateways is honoured only by the providers istio/);
      r = await kubectl(['-n', ns, 'apply', '-f', '-'], { input: JSON.stringify(canaryOf('gw-src', { provider: 'gatewayapi', service: { port: 80 }, analysis: { iterations: 2, match: [{ sourceLabels: { app: 'tester' } }] } })) });
      assert.notEqual(r.code, 0, 'accepted');
      assert.match(r.stderr, /match\[\]\.sourceLabels is honoured only by the providers istio/);
    });

    it('accepts every istio field for the istio provider', async () => {
      const r = await kubectl(['-n', ns, 'apply', '-f', '-'], {
        input: JSON.stringify(canaryOf('all-istio', {
          provider: 'istio',
          service: {
            port: 80, hosts: ['a.example.com'], gateways: ['mesh'], match: [{ sourceLabels: { app: 'x' } }], retries: { attempts: 2 }, timeout: '5s',
            headers: { request: { set: { a: 'b' } } }, corsPolicy: { allowOrigins: [{ exact: 'https://a' }] }, rewrite: { uri: '/' }, trafficPolicy: { tls: { mode: 'ISTIO_MUTUAL' } },
          },
          analysis: { stepWeight: 10, match: [{ headers: { a: { exact: 'b' } } }], sessionAffinity: { cookieName: 'c' } },
        })),
      });
      assert.equal(r.code, 0, r.stderr);
      // Mirroring cannot be combined with match (the CRD says so for every provider): a Canary of its own.
      const m = await kubectl(['-n', ns, 'apply', '-f', '-'], { input: JSON.stringify(canaryOf('mirror-istio', { provider: 'istio', service: { port: 80 }, analysis: { stepWeight: 10, mirror: true, mirrorWeight: 50 } })) });
      assert.equal(m.code, 0, m.stderr);
    });
  });

  describe('a rollout through the real reconciler', function () {
    let reconciler: RunningReconciler;
    let rns: string;
    before(async () => {
      rns = await createNamespace('istio-rollout');
      reconciler = await startReconciler({ namespace: rns });
    });
    after(async () => {
      await reconciler?.stop();
      await deleteNamespace(rns);
    });

    interface Deploy {
      spec: { template: { spec: { containers: { image: string }[] } } };
    }
    const phase = async (name: string) => (await get<Canary>(rns, 'canary', name))?.status?.phase;

    it('shifts the VirtualService weights step by step, promotes, and ends with 100% to the primary', async () => {
      const name = 'mesh';
      await apply(rns, {
        apiVersion: 'canarygate.dev/v1alpha1',
        kind: 'Canary',
        metadata: { name },
        spec: {
          provider: 'istio',
          progressDeadlineSeconds: 60,
          targetRef: { apiVersion: 'apps/v1', kind: 'Deployment', name },
          service: { port: 80, targetPort: 'http', hosts: ['mesh.example.test'], retries: { attempts: 2, perTryTimeout: '2s' }, trafficPolicy: { tls: { mode: 'ISTIO_MUTUAL' } } },
          analysis: { interval: '1s', stepWeight: 25, maxWeight: 50 },
        },
      });
      await apply(rns, deployment(name, { image: 'example.test/mesh:1' }));
      await apply(rns, service(name, { selector: { app: name } }));
      await waitFor('Initialized', async () => (await phase(name)) === 'Initialized', { namespace: rns, timeoutMs: 30_000 });
      const initial = await waitFor('the VirtualService', () => get<VirtualService>(rns, 'virtualservice', name), { namespace: rns });
      assert.deepEqual(split(initial), [
        [`${name}-primary`, 100],
        [`${name}-canary`, 0],
      ]);
      assert.deepEqual((await get<DestinationRule>(rns, 'destinationrule', `${name}-canary`))?.spec.trafficPolicy, { tls: { mode: 'ISTIO_MUTUAL' } });

      await apply(rns, deployment(name, { image: 'example.test/mesh:2' }));
      const seen = new Set<number>();
      await waitFor('Succeeded', async () => {
        const vs = await get<VirtualService>(rns, 'virtualservice', name);
        const canaryWeight = split(vs).find(([h]) => h === `${name}-canary`)?.[1];
        if (typeof canaryWeight === 'number') seen.add(canaryWeight);
        return (await phase(name)) === 'Succeeded';
      }, { namespace: rns, timeoutMs: 60_000, intervalMs: 100 });
      assert.ok(seen.has(25) || seen.has(50), `the VirtualService carried canary weight on the way (saw ${[...seen].join(', ')})`);
      // The status is written before its effects: the split follows a moment later.
      const final = await waitFor('everything back on the primary', async () => {
        const vs = await get<VirtualService>(rns, 'virtualservice', name);
        return split(vs)[0]?.[1] === 100 ? vs : undefined;
      }, { namespace: rns, timeoutMs: 30_000 });
      assert.deepEqual(split(final), [
        [`${name}-primary`, 100],
        [`${name}-canary`, 0],
      ]);
      assert.deepEqual(route(final, WEIGHT_ROUTE)?.retries, { attempts: 2, perTryTimeout: '2s' });
      assert.equal((await get<Deploy>(rns, 'deployment', name))?.spec.template.spec.containers[0]?.image, 'example.test/mesh:2');
    });

    it('A/B: requests with the header go to the canary during the run only', async () => {
      const name = 'abmesh';
      await apply(rns, {
        apiVersion: 'canarygate.dev/v1alpha1',
        kind: 'Canary',
        metadata: { name },
        spec: {
          provider: 'istio',
          progressDeadlineSeconds: 60,
          targetRef: { apiVersion: 'apps/v1', kind: 'Deployment', name },
          service: { port: 80, targetPort: 'http' },
          analysis: { interval: '1s', iterations: 3, match: [{ headers: { 'x-canary': { exact: 'insider' } } }] },
        },
      });
      await apply(rns, deployment(name, { image: 'example.test/abmesh:1' }));
      await apply(rns, service(name, { selector: { app: name } }));
      await waitFor('Initialized', async () => (await phase(name)) === 'Initialized', { namespace: rns, timeoutMs: 30_000 });
      await apply(rns, deployment(name, { image: 'example.test/abmesh:2' }));
      const ab = await waitFor('the A/B route', async () => route(await get<VirtualService>(rns, 'virtualservice', name), MATCH_ROUTE), { namespace: rns, timeoutMs: 30_000, intervalMs: 100 });
      assert.deepEqual(ab.match, [{ headers: { 'x-canary': { exact: 'insider' } } }]);
      assert.deepEqual(ab.route?.map((d) => [d.destination.host, d.weight]), [[`${name}-canary`, 100]]);
      assert.deepEqual(split(await get<VirtualService>(rns, 'virtualservice', name)), [
        [`${name}-primary`, 100],
        [`${name}-canary`, 0],
      ], 'the rest stays on the primary');
      await waitFor('Succeeded', async () => (await phase(name)) === 'Succeeded', { namespace: rns, timeoutMs: 60_000 });
      await waitFor('the A/B route to be gone', async () => names(await get<VirtualService>(rns, 'virtualservice', name)).join() === WEIGHT_ROUTE, { namespace: rns });
      assert.equal((await get<Deploy>(rns, 'deployment', name))?.spec.template.spec.containers[0]?.image, 'example.test/abmesh:2');
    });

    it('mirrors while the canary has no weight, pins clients with sticky routes while it has some, and leaves neither behind', async () => {
      const name = 'sticky';
      await apply(rns, {
        apiVersion: 'canarygate.dev/v1alpha1',
        kind: 'Canary',
        metadata: { name },
        spec: {
          provider: 'istio',
          progressDeadlineSeconds: 60,
          targetRef: { apiVersion: 'apps/v1', kind: 'Deployment', name },
          service: { port: 80, targetPort: 'http' },
          analysis: { interval: '2s', stepWeight: 50, maxWeight: 50, mirror: true, mirrorWeight: 30, sessionAffinity: { cookieName: 'canary-gate-sticky', maxAge: 600 } },
        },
      });
      await apply(rns, deployment(name, { image: 'example.test/sticky:1' }));
      await apply(rns, service(name, { selector: { app: name } }));
      await waitFor('Initialized', async () => (await phase(name)) === 'Initialized', { namespace: rns, timeoutMs: 30_000 });
      await apply(rns, deployment(name, { image: 'example.test/sticky:2' }));
      let mirrored: HttpRoute | undefined;
      let sticky: HttpRoute | undefined;
      let weighted: HttpRoute | undefined;
      await waitFor('Succeeded', async () => {
        const vs = await get<VirtualService>(rns, 'virtualservice', name);
        const w = route(vs, WEIGHT_ROUTE);
        if (w?.mirror) mirrored ??= w;
        if (route(vs, STICKY_CANARY_ROUTE)) {
          sticky ??= route(vs, STICKY_CANARY_ROUTE);
          weighted ??= w;
        }
        return (await phase(name)) === 'Succeeded';
      }, { namespace: rns, timeoutMs: 60_000, intervalMs: 100 });
      assert.ok(mirrored, 'the weight route mirrored to the canary on the way');
      assert.deepEqual([mirrored.mirror?.host, mirrored.mirrorPercentage?.value], [`${name}-canary`, 30]);
      assert.ok(sticky && weighted, 'a sticky route on the way');
      assert.match(String(sticky.match?.[0]?.headers?.cookie?.regex), /canary-gate-sticky=/);
      assert.match(String(weighted.route?.find((d) => d.destination.host === `${name}-canary`)?.headers?.response?.add?.['Set-Cookie']), /^canary-gate-sticky=[0-9a-f]+; Max-Age=600; Path=\/$/);
      const final = await waitFor('neither mirror nor sticky route left', async () => {
        const vs = await get<VirtualService>(rns, 'virtualservice', name);
        return names(vs).join() === WEIGHT_ROUTE && split(vs)[0]?.[1] === 100 ? vs : undefined;
      }, { namespace: rns, timeoutMs: 30_000 });
      assert.deepEqual(names(final), [WEIGHT_ROUTE]);
      assert.equal(route(final, WEIGHT_ROUTE)?.mirror, undefined);
      assert.deepEqual(split(final), [
        [`${name}-primary`, 100],
        [`${name}-canary`, 0],
      ]);
    });
  });
});

// ------------------------------------------------------------------ built-in metrics on istio series

const PROMETHEUS = `http://127.0.0.1:${process.env.PROMETHEUS_PORT ?? '39090'}`;

/** Istio's standard metrics as the sidecars export them; counters move on every scrape. */
class IstioExporter {
  scrapes = 0;
  private server?: Server;

  constructor(private readonly ns: string) {}

  async start(): Promise<number> {
    this.server = createServer((req, res) => {
      if (req.url !== '/metrics') return void res.writeHead(404).end();
      this.scrapes++;
      res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4' }).end(this.render());
    });
    await new Promise<void>((resolve) => this.server!.listen(0, '127.0.0.1', resolve));
    return (this.server.address() as AddressInfo).port;
  }

  async stop(): Promise<void> {
    if (!this.server) return;
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server!.close(() => resolve()));
  }

  private render(): string {
    const n = this.scrapes;
    const labels = (reporter: string, workload: string, ns = this.ns) =>
      `reporter="${reporter}",source_workload="frontend",destination_workload="${workload}",destination_workload_namespace="${ns}",destination_service="${workload}.${ns}.svc.cluster.local"`;
    const canary = labels('destination', 'app-canary');
    const lines = [
      '# TYPE istio_requests_total counter',
      // The canary as its own sidecar sees it: 98 % non-5xx (a 404 is a success).
      `istio_requests_total{${canary},response_code="200"} ${90 * n}`,
      `istio_requests_total{${canary},response_code="404"} ${8 * n}`,
      `istio_requests_total{${canary},response_code="503"} ${2 * n}`,
      // Must not count: the caller's sidecar (reporter=source), the primary, another namespace.
      `istio_requests_total{${labels('source', 'app-canary')},response_code="503"} ${100 * n}`,
      `istio_requests_total{${labels('destination', 'app-primary')},response_code="500"} ${100 * n}`,
      `istio_requests_total{${labels('destination', 'app-canary', `${this.ns}-other`)},response_code="500"} ${100 * n}`,
      '# TYPE istio_request_duration_milliseconds histogram',
      // The canary: 95 % under 50 ms, 99 % under 200 ms -> p99 = 200 ms. The primary is slow.
      ...[
        ['25', 50],
        ['50', 95],
        ['200', 99],
        ['1000', 100],
        ['+Inf', 100],
      ].map(([le, c]) => `istio_request_duration_milliseconds_bucket{${canary},le="${le}"} ${Number(c) * n}`),
      `istio_request_duration_milliseconds_sum{${canary}} ${3000 * n}`,
      `istio_request_duration_milliseconds_count{${canary}} ${100 * n}`,
      ...[
        ['25', 0],
        ['50', 0],
        ['200', 0],
        ['1000', 0],
        ['+Inf', 100],
      ].map(([le, c]) => `istio_request_duration_milliseconds_bucket{${labels('destination', 'app-primary')},le="${le}"} ${Number(c) * n}`),
    ];
    return `${lines.join('\n')}\n`;
  }
}

describe('istio built-in metrics against a real Prometheus', function () {
  this.timeout(120_000);
  const run = `istio${process.pid}${Date.now().toString(36)}`;
  const ns = `ns-${run}`;
  const exporter = new IstioExporter(ns);
  const targetsFile = path.join(clusterDir, 'prometheus', 'targets', `istio-test-${run}.json`);

  before(async () => {
    const ready = await fetch(`${PROMETHEUS}/-/ready`).catch(() => undefined);
    assert.ok(ready?.ok, `Prometheus is not ready at ${PROMETHEUS}`);
    const port = await exporter.start();
    await mkdir(path.dirname(targetsFile), { recursive: true });
    await writeFile(`${targetsFile}.tmp`, JSON.stringify([{ targets: [`127.0.0.1:${port}`], labels: { job: `canary-gate-${run}` } }]));
    await rename(`${targetsFile}.tmp`, targetsFile);
  });
  after(async () => {
    await rm(targetsFile, { force: true });
    await rm(`${targetsFile}.tmp`, { force: true });
    await exporter.stop();
  });

  it('request-success-rate and request-duration of an istio Canary read the canary workload as its sidecar reports it', async () => {
    const checker = new TemplateMetricChecker({ template: () => undefined, secret: async () => undefined, builtinPrometheus: PROMETHEUS });
    const successRate: CanaryMetric = { name: 'request-success-rate', interval: '10s', thresholdRange: { min: 97.9 } };
    const duration: CanaryMetric = { name: 'request-duration', interval: '10s', thresholdRange: { max: 500 } };
    const canaryFor = (target: string, provider = 'istio'): Canary => ({
      apiVersion: 'canarygate.dev/v1alpha1',
      kind: 'Canary',
      metadata: { name: target, namespace: ns },
      spec: { provider, targetRef: { kind: 'Deployment', name: target }, service: { port: 80 }, analysis: { interval: '10s', metrics: [successRate, duration] } },
    });
    const c = canaryFor('app');
    const passed = async (m: CanaryMetric): Promise<CheckResult | undefined> => {
      const r = await checker.check(c, m);
      return r.metric?.result === 'pass' ? r : undefined;
    };
    const sr = await waitFor('request-success-rate to have data', () => passed(successRate), { timeoutMs: 60_000, intervalMs: 1000 });
    assert.ok(Math.abs((sr.metric?.value ?? 0) - 98) < 0.01, sr.message);
    const d = await waitFor('request-duration to have data', () => passed(duration), { timeoutMs: 60_000, intervalMs: 1000 });
    assert.ok(Math.abs((d.metric?.value ?? 0) - 200) < 0.5, d.message);
    const strict = await checker.check(c, { ...duration, thresholdRange: { max: 150 } });
    assert.equal(strict.passed, false);
    assert.match(strict.message, /^metric request-duration \(prometheus\): (199|200)(\.\d+)? is above the maximum 150/);
    // The same Canary on the kubernetes provider reads Pod metrics, which these series are not: no data.
    const podLevel = await checker.check(canaryFor('app', 'kubernetes'), { ...successRate, noDataPolicy: 'hold' });
    assert.equal(podLevel.metric?.result, 'nodata');
  });
});
