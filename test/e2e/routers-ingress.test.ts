// The ingress routers against the real API server: the canary Ingress of the
// nginx router (Ingress is built in) and the HTTPProxy of the contour router
// (Contour's own CRDs), validated by the API server; a full nginx rollout
// through the real reconciler; the CRD's CEL rules for nginx; and each
// router's built-in metrics on series in its proxy's format (ingress-nginx,
// Envoy as Contour names its clusters), queried on the real Prometheus.

import assert from 'node:assert/strict';
import { mkdir, rename, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import type { Canary, CanaryMetric, CanarySpec } from '../../core/api/types.js';
import { TemplateMetricChecker } from '../../reconciler/analysis/metrics/checker.js';
import type { CheckResult } from '../../reconciler/decide/transition.js';
import { ContourRouter, type HTTPProxy } from '../../reconciler/routers/contour.js';
import { BY_COOKIE, BY_HEADER, BY_HEADER_VALUE, CANARY_ANNOTATION, NginxRouter, WEIGHT_ANNOTATION, type Ingress } from '../../reconciler/routers/nginx.js';
import type { RouterContext } from '../../reconciler/routers/router.js';
import { apps, applyAsUser, clusterDir, core, custom, getObject, kubectl, kubectlOk } from './cluster.js';
import { createNamespace, deleteNamespace } from './namespaces.js';
import { deployment, service, yamlOf } from './objects.js';
import { startReconciler, type RunningReconciler } from './reconciler-process.js';
import { waitFor } from './wait.js';

const PROMETHEUS = `http://127.0.0.1:${process.env.PROMETHEUS_PORT ?? '39090'}`;
const INGRESSES = { group: 'networking.k8s.io', version: 'v1', plural: 'ingresses' };
const PROXIES = { group: 'projectcontour.io', version: 'v1', plural: 'httpproxies' };

async function getProxy(ns: string, name: string): Promise<HTTPProxy | undefined> {
  try {
    return (await custom().getNamespacedCustomObject({ ...PROXIES, namespace: ns, name })) as HTTPProxy;
  } catch (err) {
    if ((err as { code?: number }).code === 404) return undefined;
    throw err;
  }
}

const serviceList = (p: HTTPProxy | undefined, route: number) => (p?.spec.routes?.[route]?.services ?? []).map((x) => `${x.name}${x.mirror ? ' mirror' : ''}:${x.weight ?? '-'}`);

/** The user's Ingress: host web.<name>.example.test, / to the apex Service, /static elsewhere. */
function userIngress(name: string, apex: string) {
  return {
    apiVersion: 'networking.k8s.io/v1',
    kind: 'Ingress',
    metadata: { name, annotations: { 'nginx.ingress.kubernetes.io/proxy-body-size': '8m' } },
    spec: {
      ingressClassName: 'nginx',
      rules: [
        {
          host: `${name}.example.test`,
          http: {
            paths: [
              { path: '/', pathType: 'Prefix', backend: { service: { name: apex, port: { name: 'http' } } } },
              { path: '/static', pathType: 'Prefix', backend: { service: { name: 'assets', port: { number: 80 } } } },
            ],
          },
        },
      ],
    },
  };
}

async function getIngress(ns: string, name: string): Promise<Ingress | undefined> {
  try {
    return (await custom().getNamespacedCustomObject({ ...INGRESSES, namespace: ns, name })) as Ingress;
  } catch (err) {
    if ((err as { code?: number }).code === 404) return undefined;
    throw err;
  }
}

/**
 * A stored Canary to own what the router creates (the garbage collector
 * deletes objects whose owner does not exist). Its stored targetRef names
 * nothing, so a reconciler, should one run, leaves it alone; the router is
 * handed the spec under test with the stored object's identity.
 */
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

async function routerContext(ns: string, canary: Canary, name: string): Promise<RouterContext> {
  return {
    canary,
    namespace: ns,
    target: await apps().readNamespacedDeployment({ namespace: ns, name }),
    service: await core().readNamespacedService({ namespace: ns, name }),
  };
}

describe('ingress routers on a real API server', function () {
  let ns: string;
  before(async () => {
    ns = await createNamespace('ingress', { enabled: false });
  });
  after(async () => deleteNamespace(ns));

  describe('nginx: the canary Ingress', function () {
    const spec: Partial<CanarySpec> = { provider: 'nginx', ingressRef: { apiVersion: 'networking.k8s.io/v1', kind: 'Ingress', name: 'web' } };
    let router: NginxRouter;
    let ctx: RouterContext;
    let userVersion: string | undefined;

    before(async () => {
      router = new NginxRouter({ core: core(), custom: custom() });
      await kubectlOk(['-n', ns, 'apply', '-f', '-'], { input: yamlOf(deployment('web', { image: 'web:1', replicas: 1 }), service('web', { selector: { app: 'web' } }), userIngress('web', 'web')) });
      userVersion = (await getIngress(ns, 'web'))?.metadata.resourceVersion;
      ctx = await routerContext(ns, await anchorCanary(ns, 'web', spec), 'web');
    });

    it('is accepted by the API server: the user Ingress cloned onto web-canary, canary-weight 0', async () => {
      await router.reconcile(ctx);
      const ing = await getIngress(ns, 'web-canary');
      assert.ok(ing, 'canary Ingress created');
      assert.deepEqual(ing.spec?.rules?.[0]?.http?.paths.map((p) => p.backend.service?.name), ['web-canary', 'assets']);
      assert.equal(ing.spec?.rules?.[0]?.host, 'web.example.test');
      assert.equal(ing.spec?.ingressClassName, 'nginx');
      assert.equal(ing.metadata.annotations?.[CANARY_ANNOTATION], 'true');
      assert.equal(ing.metadata.annotations?.[WEIGHT_ANNOTATION], '0');
      assert.equal(ing.metadata.annotations?.['nginx.ingress.kubernetes.io/proxy-body-size'], '8m');
      assert.equal(ing.metadata.ownerReferences?.[0]?.uid, ctx.canary.metadata.uid);
      assert.ok(await core().readNamespacedService({ namespace: ns, name: 'web-canary' }));
      assert.ok(await core().readNamespacedService({ namespace: ns, name: 'web-primary' }));
    });

    it('writes nothing when reconciled again', async () => {
      const before = (await getIngress(ns, 'web-canary'))?.metadata.resourceVersion;
      await router.reconcile(ctx);
      await router.setWeight(ctx, { weight: 0 });
      assert.equal((await getIngress(ns, 'web-canary'))?.metadata.resourceVersion, before);
    });

    it('takes a weight, and an A/B header and cookie match', async () => {
      await router.setWeight(ctx, { weight: 30 });
      assert.equal((await getIngress(ns, 'web-canary'))?.metadata.annotations?.[WEIGHT_ANNOTATION], '30');
      await router.setWeight(ctx, { weight: 40, match: [{ headers: { 'x-canary': { exact: 'insider' } } }, { headers: { cookie: { exact: 'beta' } } }] });
      const a = (await getIngress(ns, 'web-canary'))?.metadata.annotations ?? {};
      assert.deepEqual([a[WEIGHT_ANNOTATION], a[BY_HEADER], a[BY_HEADER_VALUE], a[BY_COOKIE]], ['40', 'x-canary', 'insider', 'beta']);
    });

    it('finalize: weight 0, then the canary Ingress and Services are removed; the user Ingress never changed', async () => {
      await router.finalize(ctx);
      assert.equal(await getIngress(ns, 'web-canary'), undefined);
      assert.equal((await kubectl(['-n', ns, 'get', 'service', 'web-canary'])).code, 1);
      assert.equal((await getIngress(ns, 'web'))?.metadata.resourceVersion, userVersion);
    });
  });

  describe('contour: the HTTPProxy', function () {
    let router: ContourRouter;
    let ctx: RouterContext;
    const spec: Partial<CanarySpec> = {
      provider: 'contour',
      service: {
        port: 80,
        timeout: '15s',
        retries: { attempts: 3, perTryTimeout: '5s', retryOn: 'gateway-error,connect-failure' },
        headers: { request: { set: { 'x-canary-gate': 'on' }, remove: ['x-debug'] }, response: { add: { 'x-served-by': 'cart' } } },
      },
    };

    before(async () => {
      router = new ContourRouter({ core: core(), custom: custom() });
      await kubectlOk(['-n', ns, 'apply', '-f', '-'], { input: yamlOf(deployment('cart', { image: 'cart:1', replicas: 1 }), service('cart', { selector: { app: 'cart' } })) });
      ctx = await routerContext(ns, await anchorCanary(ns, 'cart', spec), 'cart');
    });

    it('is accepted by the API server: weights, retries, timeout and header policies; a root proxy can include it', async () => {
      await router.reconcile(ctx);
      let p = await getProxy(ns, 'cart');
      assert.ok(p, 'proxy created');
      assert.equal(p.spec.virtualhost, undefined);
      const route = p.spec.routes?.[0];
      assert.deepEqual(serviceList(p, 0), ['cart-primary:100', 'cart-canary:0']);
      assert.deepEqual(route?.retryPolicy, { count: 3, perTryTimeout: '5s', retryOn: ['gateway-error', 'connect-failure'] });
      assert.deepEqual(route?.timeoutPolicy, { response: '15s' });
      assert.deepEqual(route?.requestHeadersPolicy, { set: [{ name: 'x-canary-gate', value: 'on' }], remove: ['x-debug'] });
      assert.deepEqual(route?.responseHeadersPolicy, { set: [{ name: 'x-served-by', value: 'cart' }] });
      await kubectlOk(['-n', ns, 'apply', '-f', '-'], {
        input: JSON.stringify({ apiVersion: 'projectcontour.io/v1', kind: 'HTTPProxy', metadata: { name: 'root' }, spec: { virtualhost: { fqdn: 'cart.example.test' }, includes: [{ name: 'cart', conditions: [{ prefix: '/cart' }] }] } }),
      });
      const version = p.metadata.resourceVersion;
      await router.reconcile(ctx);
      await router.setWeight(ctx, { weight: 0 });
      p = await getProxy(ns, 'cart');
      assert.equal(p?.metadata.resourceVersion, version, 'a second reconcile writes nothing (the stored defaults compare equal)');
    });

    it('takes weights, an A/B route on a header, a cookie and a query parameter, and mirroring', async () => {
      await router.setWeight(ctx, { weight: 30 });
      assert.deepEqual(serviceList(await getProxy(ns, 'cart'), 0), ['cart-primary:70', 'cart-canary:30']);
      await router.setWeight(ctx, {
        weight: 30,
        match: [{ headers: { 'x-canary': { exact: 'insider' }, cookie: { regex: '^(.*?;)?(canary=always)(;.*)?$' } } }, { queryParams: { beta: { exact: '1' } } }],
      });
      let p = await getProxy(ns, 'cart');
      assert.equal(p?.spec.routes?.length, 3);
      assert.deepEqual(p?.spec.routes?.[0]?.conditions, [{ prefix: '/' }, { header: { name: 'x-canary', exact: 'insider' } }, { header: { name: 'cookie', regex: '^(.*?;)?(canary=always)(;.*)?$' } }]);
      assert.deepEqual(p?.spec.routes?.[1]?.conditions, [{ prefix: '/' }, { queryParameter: { name: 'beta', exact: '1' } }]);
      assert.deepEqual(serviceList(p, 0), ['cart-canary:100']);
      assert.deepEqual(serviceList(p, 2), ['cart-primary:70', 'cart-canary:30']);
      await router.setWeight(ctx, { weight: 0, mirror: 20 });
      p = await getProxy(ns, 'cart');
      assert.deepEqual(serviceList(p, 0), ['cart-primary:100', 'cart-canary mirror:20']);
      assert.deepEqual(router.getWeights({ ...ctx }), { primary: 100, canary: 0, mirror: 20 });
    });

    it('finalize: all to the primary, handed back to the apex Service, our Services removed; the root proxy untouched', async () => {
      const root = await getProxy(ns, 'root');
      await router.setWeight(ctx, { weight: 50 });
      await router.finalize(ctx);
      const p = await getProxy(ns, 'cart');
      assert.ok(p, 'kept for the root that includes it');
      assert.deepEqual(serviceList(p, 0), ['cart:100']);
      assert.equal(p.metadata.ownerReferences, undefined);
      assert.equal((await kubectl(['-n', ns, 'get', 'service', 'cart-canary'])).code, 1);
      assert.equal((await kubectl(['-n', ns, 'get', 'service', 'cart-primary'])).code, 1);
      assert.equal((await getProxy(ns, 'root'))?.metadata.resourceVersion, root?.metadata.resourceVersion);
    });
  });

  describe('the CRD', function () {
    const canaryBody = (spec: Record<string, unknown>) =>
      JSON.stringify({ apiVersion: 'canarygate.dev/v1alpha1', kind: 'Canary', metadata: { name: 'refused' }, spec: { targetRef: { apiVersion: 'apps/v1', kind: 'Deployment', name: 'x' }, service: { port: 80 }, ...spec } });

    it('refuses provider nginx without ingressRef', async () => {
      const r = await kubectl(['-n', ns, 'apply', '--dry-run=server', '-f', '-'], { input: canaryBody({ provider: 'nginx' }) });
      assert.notEqual(r.code, 0);
      assert.match(r.stderr, /the nginx provider needs ingressRef/);
      const ok = await kubectl(['-n', ns, 'apply', '--dry-run=server', '-f', '-'], { input: canaryBody({ provider: 'nginx', ingressRef: { apiVersion: 'networking.k8s.io/v1', kind: 'Ingress', name: 'x' }, analysis: { match: [{ headers: { a: { exact: 'b' } } }] } }) });
      assert.equal(ok.code, 0, ok.stderr);
    });

    it('refuses what nginx cannot honour (mirroring, session affinity) and ingressRef for another provider', async () => {
      const ingressRef = { apiVersion: 'networking.k8s.io/v1', kind: 'Ingress', name: 'x' };
      const mirror = await kubectl(['-n', ns, 'apply', '--dry-run=server', '-f', '-'], { input: canaryBody({ provider: 'nginx', ingressRef, analysis: { mirror: true, iterations: 2 } }) });
      assert.match(mirror.stderr, /analysis.mirror is honoured only by the providers/);
      const sticky = await kubectl(['-n', ns, 'apply', '--dry-run=server', '-f', '-'], { input: canaryBody({ provider: 'nginx', ingressRef, analysis: { sessionAffinity: { cookieName: 'c' } } }) });
      assert.match(sticky.stderr, /analysis.sessionAffinity is honoured only by the providers/);
      const other = await kubectl(['-n', ns, 'apply', '--dry-run=server', '-f', '-'], { input: canaryBody({ provider: 'gatewayapi', ingressRef }) });
      assert.match(other.stderr, /ingressRef is honoured only by the providers nginx/);
    });
  });
});

describe('nginx rollout through the real reconciler', function () {
  let ns: string;
  let reconciler: RunningReconciler;
  before(async function () {
    ns = await createNamespace('nginx-rollout');
    reconciler = await startReconciler({ namespace: ns });
  });
  after(async function () {
    await reconciler?.stop();
    await deleteNamespace(ns);
  });

  it('shifts canary-weight step by step, promotes, and on deletion removes the canary Ingress; the user Ingress is never changed', async function () {
    const name = 'shop';
    const phase = async () => (await getObject<Canary>(ns, 'canary', name))?.status?.phase;
    // The Ingress first: the router clones it when the Canary initializes.
    await applyAsUser(ns, userIngress(name, name));
    await applyAsUser(ns, {
      apiVersion: 'canarygate.dev/v1alpha1',
      kind: 'Canary',
      metadata: { name },
      spec: {
        provider: 'nginx',
        progressDeadlineSeconds: 60,
        targetRef: { apiVersion: 'apps/v1', kind: 'Deployment', name },
        ingressRef: { apiVersion: 'networking.k8s.io/v1', kind: 'Ingress', name },
        service: { port: 80, targetPort: 'http' },
        analysis: { interval: '1s', stepWeight: 25, maxWeight: 50 },
      },
    });
    await applyAsUser(ns, deployment(name, { image: 'example.test/shop:1' }));
    await applyAsUser(ns, service(name, { selector: { app: name } }));
    const user = await getIngress(ns, name);
    await waitFor('Initialized', async () => (await phase()) === 'Initialized', { namespace: ns, timeoutMs: 30_000 });
    const initial = await waitFor('the canary Ingress', () => getIngress(ns, `${name}-canary`), { namespace: ns, timeoutMs: 30_000 });
    assert.equal(initial.metadata.annotations?.[WEIGHT_ANNOTATION], '0');
    assert.equal(initial.spec?.rules?.[0]?.http?.paths[0]?.backend.service?.name, `${name}-canary`);

    await applyAsUser(ns, deployment(name, { image: 'example.test/shop:2' }));
    const seen = new Set<string>();
    await waitFor('Succeeded', async () => {
      const w = (await getIngress(ns, `${name}-canary`))?.metadata.annotations?.[WEIGHT_ANNOTATION];
      if (w) seen.add(w);
      return (await phase()) === 'Succeeded';
    }, { namespace: ns, timeoutMs: 90_000, intervalMs: 100 });
    assert.ok(seen.has('25') || seen.has('50'), `the canary Ingress carried weight on the way (saw ${[...seen].join(', ')})`);
    // The status is written before its effects: the weight follows a moment later.
    await waitFor('promoted: all traffic to the primary', async () => (await getIngress(ns, `${name}-canary`))?.metadata.annotations?.[WEIGHT_ANNOTATION] === '0', { namespace: ns, timeoutMs: 30_000 });
    assert.equal((await getObject<{ spec: { template: { spec: { containers: Array<{ image: string }> } } } }>(ns, 'deployment', name))?.spec.template.spec.containers[0]?.image, 'example.test/shop:2');

    await kubectlOk(['-n', ns, 'delete', 'canary', name, '--wait=false']);
    await waitFor('the canary Ingress to be removed', async () => (await getIngress(ns, `${name}-canary`)) === undefined, { namespace: ns, timeoutMs: 30_000 });
    await waitFor('the Canary to be gone', async () => (await getObject(ns, 'canary', name)) === undefined, { namespace: ns, timeoutMs: 30_000 });
    const after = await getIngress(ns, name);
    assert.equal(after?.metadata.resourceVersion, user?.metadata.resourceVersion, "the user's Ingress was never written");
  });

  it('reports a missing Ingress on the Canary and starts no run until it exists', async function () {
    const name = 'late';
    const get = () => getObject<Canary>(ns, 'canary', name);
    await applyAsUser(ns, {
      apiVersion: 'canarygate.dev/v1alpha1',
      kind: 'Canary',
      metadata: { name },
      spec: {
        provider: 'nginx',
        progressDeadlineSeconds: 60,
        targetRef: { apiVersion: 'apps/v1', kind: 'Deployment', name },
        ingressRef: { apiVersion: 'networking.k8s.io/v1', kind: 'Ingress', name },
        service: { port: 80, targetPort: 'http' },
        analysis: { interval: '1s', stepWeight: 50, maxWeight: 50 },
      },
    });
    await applyAsUser(ns, deployment(name, { image: 'example.test/late:1' }));
    await applyAsUser(ns, service(name, { selector: { app: name } }));
    const held = await waitFor('the missing Ingress reported', async () => {
      const c = await get();
      const cond = c?.status?.conditions?.find((x) => x.type === 'NameTaken' && x.status === 'True');
      return cond?.message?.includes(`Ingress ${ns}/${name} (spec.ingressRef of Canary ${name}) does not exist`) ? c : undefined;
    }, { namespace: ns, timeoutMs: 30_000 });
    assert.match(held.status?.message ?? '', /^held: /);
    await applyAsUser(ns, deployment(name, { image: 'example.test/late:2' }));
    await new Promise((r) => setTimeout(r, 2000));
    assert.equal(await getIngress(ns, `${name}-canary`), undefined, 'no run without the Ingress');
    assert.notEqual((await get())?.status?.phase, 'Progressing');

    await applyAsUser(ns, userIngress(name, name));
    await waitFor('Succeeded', async () => (await get())?.status?.phase === 'Succeeded', { namespace: ns, timeoutMs: 90_000 });
    await waitFor('all traffic to the primary', async () => (await getIngress(ns, `${name}-canary`))?.metadata.annotations?.[WEIGHT_ANNOTATION] === '0', { namespace: ns, timeoutMs: 30_000 });
    assert.equal((await get())?.status?.conditions?.find((x) => x.type === 'NameTaken')?.status, 'False');
  });
});

describe('contour rollout through the real reconciler', function () {
  let ns: string;
  let reconciler: RunningReconciler;
  before(async function () {
    ns = await createNamespace('contour-rollout');
    reconciler = await startReconciler({ namespace: ns });
  });
  after(async function () {
    await reconciler?.stop();
    await deleteNamespace(ns);
  });

  it('shifts the HTTPProxy weights step by step, promotes, and on deletion hands the proxy back to the apex Service', async function () {
    const name = 'pay';
    const phase = async () => (await getObject<Canary>(ns, 'canary', name))?.status?.phase;
    await applyAsUser(ns, {
      apiVersion: 'canarygate.dev/v1alpha1',
      kind: 'Canary',
      metadata: { name },
      spec: {
        provider: 'contour',
        progressDeadlineSeconds: 60,
        targetRef: { apiVersion: 'apps/v1', kind: 'Deployment', name },
        service: { port: 80, targetPort: 'http', timeout: '10s' },
        analysis: { interval: '1s', stepWeight: 25, maxWeight: 50 },
      },
    });
    await applyAsUser(ns, deployment(name, { image: 'example.test/pay:1' }));
    await applyAsUser(ns, service(name, { selector: { app: name } }));
    await waitFor('Initialized', async () => (await phase()) === 'Initialized', { namespace: ns, timeoutMs: 30_000 });
    const initial = await waitFor('the HTTPProxy', () => getProxy(ns, name), { namespace: ns, timeoutMs: 30_000 });
    assert.deepEqual(serviceList(initial, 0), [`${name}-primary:100`, `${name}-canary:0`]);

    await applyAsUser(ns, deployment(name, { image: 'example.test/pay:2' }));
    const seen = new Set<string>();
    await waitFor('Succeeded', async () => {
      const p = await getProxy(ns, name);
      if (p) seen.add(serviceList(p, 0).join(','));
      return (await phase()) === 'Succeeded';
    }, { namespace: ns, timeoutMs: 90_000, intervalMs: 100 });
    assert.ok(seen.has(`${name}-primary:75,${name}-canary:25`) || seen.has(`${name}-primary:50,${name}-canary:50`), `the proxy carried canary weight on the way (saw ${[...seen].join(' | ')})`);
    // The status is written before its effects: the split follows a moment later.
    await waitFor('everything back on the primary', async () => serviceList(await getProxy(ns, name), 0).join(',') === `${name}-primary:100,${name}-canary:0`, { namespace: ns, timeoutMs: 30_000 });

    await kubectlOk(['-n', ns, 'delete', 'canary', name, '--wait=false']);
    await waitFor('the Canary to be gone', async () => (await getObject(ns, 'canary', name)) === undefined, { namespace: ns, timeoutMs: 30_000 });
    const kept = await getProxy(ns, name);
    assert.deepEqual(serviceList(kept, 0), [`${name}:100`], 'handed back to the apex Service');
    assert.deepEqual(kept?.spec.routes?.[0]?.timeoutPolicy, { response: '10s' });
    assert.equal(kept?.metadata.ownerReferences, undefined, 'not garbage-collected with the Canary');
  });
});

// ------------------------------------------------------------------ built-in metrics on the real Prometheus

/** Serves series in a proxy's format; counters grow with every scrape. */
class Exporter {
  scrapes = 0;
  private server?: Server;
  constructor(private readonly render: (scrapes: number) => string[]) {}

  async start(): Promise<number> {
    this.server = createServer((req, res) => {
      if (req.url !== '/metrics') return void res.writeHead(404).end();
      this.scrapes++;
      res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4' }).end(`${this.render(this.scrapes).join('\n')}\n`);
    });
    await new Promise<void>((resolve) => this.server!.listen(0, '127.0.0.1', resolve));
    return (this.server.address() as AddressInfo).port;
  }

  async stop(): Promise<void> {
    if (!this.server) return;
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server!.close(() => resolve()));
  }
}

/** Histogram bucket lines: `counts` are cumulative per upper bound, scaled by `n`. */
function buckets(metric: string, labels: string, counts: Array<[string, number]>, n: number): string[] {
  return counts.map(([le, c]) => `${metric}{${labels},le="${le}"} ${c * n}`);
}

/** The ingress-nginx controller's series: the canary (canary="<upstream>") is healthy, the primary (canary="") is not. */
function nginxSeries(ns: string, n: number): string[] {
  const base = `controller_class="k8s.io/ingress-nginx",controller_namespace="ingress-nginx",controller_pod="ingress-nginx-controller-7d9f8b6c5-k2x9q",host="shop.example.test",method="GET",namespace="${ns}",path="/"`;
  const canary = `${base},ingress="shop",service="shop",canary="${ns}-shop-canary-80"`;
  const primary = `${base},ingress="shop",service="shop",canary=""`;
  const otherIngress = `${base},ingress="other",service="other",canary="${ns}-other-canary-80"`;
  const le = (counts: number[]): Array<[string, number]> => ['0.05', '0.1', '0.25', '0.5', '+Inf'].map((b, i) => [b, counts[i] as number]);
  return [
    '# TYPE nginx_ingress_controller_requests counter',
    `nginx_ingress_controller_requests{${canary},status="200"} ${99 * n}`,
    `nginx_ingress_controller_requests{${canary},status="503"} ${1 * n}`,
    `nginx_ingress_controller_requests{${primary},status="200"} ${50 * n}`,
    `nginx_ingress_controller_requests{${primary},status="500"} ${50 * n}`,
    `nginx_ingress_controller_requests{${otherIngress},status="502"} ${100 * n}`,
    '# TYPE nginx_ingress_controller_request_duration_seconds histogram',
    // The canary: 99 % under 250 ms -> p99 250 ms. The primary and the other Ingress are slow.
    ...buckets('nginx_ingress_controller_request_duration_seconds_bucket', `${canary},status="200"`, le([50, 90, 99, 100, 100]), n),
    `nginx_ingress_controller_request_duration_seconds_sum{${canary},status="200"} ${12 * n}`,
    `nginx_ingress_controller_request_duration_seconds_count{${canary},status="200"} ${100 * n}`,
    ...buckets('nginx_ingress_controller_request_duration_seconds_bucket', `${primary},status="200"`, le([0, 0, 0, 0, 100]), n),
    ...buckets('nginx_ingress_controller_request_duration_seconds_bucket', `${otherIngress},status="502"`, le([0, 0, 0, 0, 100]), n),
  ];
}

/** Envoy's cluster statistics as Contour names clusters (<namespace>_<service>_<port>): the canary is healthy and fast. */
function envoySeries(ns: string, n: number): string[] {
  const cluster = (svc: string) => `envoy_cluster_name="${ns}_${svc}_80"`;
  const le = (counts: number[]): Array<[string, number]> => ['50', '100', '250', '500', '+Inf'].map((b, i) => [b, counts[i] as number]);
  return [
    '# TYPE envoy_cluster_upstream_rq counter',
    `envoy_cluster_upstream_rq{${cluster('cart-canary')},envoy_response_code="200"} ${99 * n}`,
    `envoy_cluster_upstream_rq{${cluster('cart-canary')},envoy_response_code="503"} ${1 * n}`,
    `envoy_cluster_upstream_rq{${cluster('cart-primary')},envoy_response_code="500"} ${50 * n}`,
    `envoy_cluster_upstream_rq{${cluster('cart-primary')},envoy_response_code="200"} ${50 * n}`,
    `envoy_cluster_upstream_rq{envoy_cluster_name="${ns}-other_cart-canary_80",envoy_response_code="500"} ${100 * n}`,
    '# TYPE envoy_cluster_upstream_rq_time histogram',
    // Milliseconds: the canary's p99 is 250 ms; the primary is slow.
    ...buckets('envoy_cluster_upstream_rq_time_bucket', cluster('cart-canary'), le([50, 90, 99, 100, 100]), n),
    `envoy_cluster_upstream_rq_time_sum{${cluster('cart-canary')}} ${12000 * n}`,
    `envoy_cluster_upstream_rq_time_count{${cluster('cart-canary')}} ${100 * n}`,
    ...buckets('envoy_cluster_upstream_rq_time_bucket', cluster('cart-primary'), le([0, 0, 0, 0, 100]), n),
  ];
}

describe('ingress routers: built-in metrics on a real Prometheus', function () {
  this.timeout(120_000);
  const run = `ing${process.pid}${Date.now().toString(36)}`;
  const ns = `ns-${run}`;
  const exporter = new Exporter((n) => [...nginxSeries(ns, n), ...envoySeries(ns, n)]);
  const targetsFile = path.join(clusterDir, 'prometheus', 'targets', `routers-ingress-${run}.json`);
  const checker = new TemplateMetricChecker({ template: () => undefined, secret: async () => undefined, builtinPrometheus: PROMETHEUS });

  before(async () => {
    const ready = await fetch(`${PROMETHEUS}/-/ready`).catch(() => undefined);
    assert.ok(ready?.ok, `Prometheus is not ready at ${PROMETHEUS} (make cluster-up)`);
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

  function canaryWith(spec: Partial<CanarySpec>): Canary {
    return { apiVersion: 'canarygate.dev/v1alpha1', kind: 'Canary', metadata: { name: 'shop', namespace: ns }, spec: { targetRef: { kind: 'Deployment', name: 'shop' }, service: { port: 80 }, ...spec } };
  }

  async function judged(canary: Canary, metric: CanaryMetric): Promise<CheckResult> {
    return waitFor(`${metric.name} to have data`, async () => {
      const r = await checker.check(canary, metric);
      return r.metric?.result === 'nodata' ? undefined : r;
    }, { timeoutMs: 60_000, intervalMs: 1000 });
  }

  it('nginx: success rate and p99 of the canary backend of the user Ingress only', async () => {
    const canary = canaryWith({ provider: 'nginx', ingressRef: { kind: 'Ingress', name: 'shop' } });
    const sr = await judged(canary, { name: 'request-success-rate', interval: '10s', thresholdRange: { min: 98.9 } });
    assert.equal(sr.passed, true, sr.message);
    assert.ok(Math.abs((sr.metric?.value ?? 0) - 99) < 0.01, sr.message);
    const d = await judged(canary, { name: 'request-duration', interval: '10s', thresholdRange: { max: 500 } });
    assert.equal(d.passed, true, d.message);
    assert.ok(Math.abs((d.metric?.value ?? 0) - 250) < 0.5, d.message);
  });

  it('contour: success rate and p99 of the <apex>-canary cluster only', async () => {
    const canary = canaryWith({ provider: 'contour', targetRef: { kind: 'Deployment', name: 'cart' } });
    const sr = await judged(canary, { name: 'request-success-rate', interval: '10s', thresholdRange: { min: 98.9 } });
    assert.equal(sr.passed, true, sr.message);
    assert.ok(Math.abs((sr.metric?.value ?? 0) - 99) < 0.01, sr.message);
    const d = await judged(canary, { name: 'request-duration', interval: '10s', thresholdRange: { max: 500 } });
    assert.equal(d.passed, true, d.message);
    assert.ok(Math.abs((d.metric?.value ?? 0) - 250) < 0.5, d.message);
  });
});
