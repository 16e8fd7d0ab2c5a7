// The routers against the real API server: the Gateway API CRDs validate
// every HTTPRoute the gatewayapi router writes, and kube-controller-manager
// (with kwok making Pods Ready) turns the kubernetes router's canary copy into
// endpoints of the user's Service.

import assert from 'node:assert/strict';
import type * as k8s from '@kubernetes/client-node';
import type { Canary, CanarySpec } from '../../core/api/types.js';
import { buildCanaryDeployment } from '../../reconciler/apply/copy.js';
import { GatewayApiRouter, MATCH_RULE, WEIGHT_RULE, readWeights, routePlan, type HTTPRoute } from '../../reconciler/routers/gatewayapi.js';
import { KubernetesRouter } from '../../reconciler/routers/kubernetes.js';
import type { RouterContext } from '../../reconciler/routers/router.js';
import { apps, core, custom, kubectl, kubectlOk } from './cluster.js';
import { createNamespace, deleteNamespace } from './namespaces.js';
import { deployment, service, yamlOf } from './objects.js';
import { waitFor } from './wait.js';
import { ROLE_LABEL, canaryName } from '../../core/contract.js';

const GW = { group: 'gateway.networking.k8s.io', version: 'v1', plural: 'httproutes' };

/**
 * A stored Canary to own what the routers create (the garbage collector
 * deletes objects whose owner does not exist). Its stored targetRef names
 * nothing, so a reconciler, should one run, leaves it alone; the routers are
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

async function getRoute(ns: string, name: string): Promise<HTTPRoute | undefined> {
  try {
    return (await custom().getNamespacedCustomObject({ ...GW, namespace: ns, name })) as HTTPRoute;
  } catch (err) {
    if ((err as { code?: number }).code === 404) return undefined;
    throw err;
  }
}

async function getService(ns: string, name: string): Promise<k8s.V1Service | undefined> {
  try {
    return await core().readNamespacedService({ namespace: ns, name });
  } catch (err) {
    if ((err as { code?: number }).code === 404) return undefined;
    throw err;
  }
}

interface Slice {
  endpoints?: Array<{ addresses: string[]; conditions?: { ready?: boolean }; targetRef?: { name: string } }>;
}

/** Ready endpoint Pod names of a Service, from its EndpointSlices. */
async function readyEndpointPods(ns: string, svc: string): Promise<string[]> {
  const out = JSON.parse(await kubectlOk(['-n', ns, 'get', 'endpointslices', '-l', `kubernetes.io/service-name=${svc}`, '-o', 'json'])) as { items: Slice[] };
  return out.items.flatMap((s) => (s.endpoints ?? []).filter((e) => e.conditions?.ready !== false).map((e) => e.targetRef?.name ?? '')).sort();
}

async function podNames(ns: string, selector: string): Promise<string[]> {
  const pods = await core().listNamespacedPod({ namespace: ns, labelSelector: selector });
  return pods.items
    .filter((p) => !p.metadata?.deletionTimestamp && p.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True'))
    .map((p) => p.metadata?.name ?? '')
    .sort();
}

async function rolledOut(ns: string, name: string, replicas: number): Promise<k8s.V1Deployment | false> {
  const d = await apps().readNamespacedDeployment({ namespace: ns, name });
  return (d.status?.readyReplicas ?? 0) === replicas && (d.status?.updatedReplicas ?? 0) === replicas ? d : false;
}

async function context(ns: string, canary: Canary, deploymentName: string, serviceName: string): Promise<RouterContext> {
  const ctx: RouterContext = { canary, namespace: ns, target: await apps().readNamespacedDeployment({ namespace: ns, name: deploymentName }) };
  const svc = await getService(ns, serviceName);
  if (svc) ctx.service = svc;
  try {
    ctx.copy = await apps().readNamespacedDeployment({ namespace: ns, name: canaryName(deploymentName) });
  } catch {
    // no copy yet
  }
  return ctx;
}

describe('routers on a real API server', function () {
  let ns: string;
  before(async () => {
    ns = await createNamespace('routers', { enabled: false });
  });
  after(async () => deleteNamespace(ns));

  describe('gatewayapi', function () {
    const gatewaySpec: Partial<CanarySpec> = {
      provider: 'gatewayapi',
      service: { port: 80, gatewayRefs: [{ name: 'public', namespace: 'gateways' }], hosts: ['web.example.com'] },
    };
    let router: GatewayApiRouter;
    let ctx: RouterContext;

    before(async () => {
      await kubectlOk(['-n', ns, 'apply', '-f', '-'], { input: yamlOf(deployment('web', { image: 'web:1', replicas: 2 }), service('web', { selector: { app: 'web' } })) });
      await waitFor('web to roll out', () => rolledOut(ns, 'web', 2), { namespace: ns });
      const canary = await anchorCanary(ns, 'web', gatewaySpec);
      ctx = await context(ns, canary, 'web', 'web');
      router = new GatewayApiRouter({ core: core(), custom: custom() });
    });

    it('creates <svc>-primary, <svc>-canary and an HTTPRoute the API server accepts, 100% to the primary', async () => {
      await router.reconcile(ctx);
      const primary = await getService(ns, 'web-primary');
      const canarySvc = await getService(ns, 'web-canary');
      assert.deepEqual(primary?.spec?.selector, { app: 'web' });
      assert.deepEqual(canarySvc?.spec?.selector, { app: 'web-canary', [ROLE_LABEL]: 'canary' });
      assert.equal(primary?.spec?.ports?.[0]?.port, 80);
      assert.equal(primary?.metadata?.ownerReferences?.[0]?.uid, ctx.canary.metadata.uid);
      const route = await getRoute(ns, 'web');
      assert.ok(route, 'route created');
      assert.equal(route.spec.rules?.[0]?.name, WEIGHT_RULE, 'the installed schema keeps rule names');
      assert.deepEqual(route.spec.hostnames, ['web.example.com']);
      assert.equal(route.spec.parentRefs?.[0]?.name, 'public');
      assert.deepEqual(readWeights(route, routePlan(ctx)), { primary: 100, canary: 0 });
      // The primary's Pods are behind <svc>-primary.
      const primaryPods = await podNames(ns, 'app=web');
      await waitFor('web-primary endpoints', async () => JSON.stringify(await readyEndpointPods(ns, 'web-primary')) === JSON.stringify(primaryPods), { namespace: ns });
    });

    it('writes nothing when reconciled again', async () => {
      const before = await getRoute(ns, 'web');
      const svcBefore = await getService(ns, 'web-primary');
      await router.reconcile(ctx);
      await router.setWeight(ctx, { weight: 0 });
      assert.equal((await getRoute(ns, 'web'))?.metadata.resourceVersion, before?.metadata.resourceVersion);
      assert.equal((await getService(ns, 'web-primary'))?.metadata?.resourceVersion, svcBefore?.metadata?.resourceVersion);
    });

    it('setWeight changes the backendRef weights', async () => {
      await router.setWeight(ctx, { weight: 30 });
      const route = await getRoute(ns, 'web');
      const refs = route?.spec.rules?.find((r) => r.name === WEIGHT_RULE)?.backendRefs?.map((b) => [b.name, b.weight]);
      assert.deepEqual(refs, [
        ['web-primary', 70],
        ['web-canary', 30],
      ]);
      assert.deepEqual(router.getWeights(ctx), { primary: 70, canary: 30 });
    });

    it('keeps a rule, a filter and an annotation the user added, through reconcile, setWeight and A/B', async () => {
      const route = (await getRoute(ns, 'web'))!;
      const ours = route.spec.rules!.findIndex((r) => r.name === WEIGHT_RULE);
      await kubectlOk([
        '-n', ns, 'patch', 'httproute', 'web', '--type=json', '-p',
        JSON.stringify([
          { op: 'add', path: '/spec/rules/-', value: { matches: [{ path: { type: 'PathPrefix', value: '/admin' } }], backendRefs: [{ name: 'web', port: 80 }] } },
          { op: 'add', path: `/spec/rules/${ours}/filters`, value: [{ type: 'ResponseHeaderModifier', responseHeaderModifier: { add: [{ name: 'x-served-by', value: 'web' }] } }] },
          { op: 'add', path: '/metadata/annotations', value: { 'team.example.com/owner': 'web' } },
        ]),
      ]);
      await router.reconcile(ctx);
      await router.setWeight(ctx, { weight: 50 });
      await router.setWeight(ctx, { weight: 60, match: [{ headers: { 'x-canary': { exact: 'insider' }, cookie: { regex: '^(.*?;)?(canary=always)(;.*)?$' } } }] });
      let after = (await getRoute(ns, 'web'))!;
      assert.deepEqual(
        after.spec.rules?.map((r) => r.name),
        [MATCH_RULE, WEIGHT_RULE, undefined],
      );
      assert.deepEqual(after.spec.rules?.[0]?.backendRefs?.map((b) => [b.name, b.weight]), [['web-canary', 100]]);
      assert.equal(after.spec.rules?.[1]?.filters?.[0]?.type, 'ResponseHeaderModifier');
      assert.equal(after.spec.rules?.[2]?.matches?.[0]?.path?.value, '/admin');
      assert.equal(after.metadata.annotations?.['team.example.com/owner'], 'web');
      assert.deepEqual(readWeights(after, routePlan(ctx)), { primary: 40, canary: 60 });

      await router.setWeight(ctx, { weight: 0 });
      after = (await getRoute(ns, 'web'))!;
      assert.deepEqual(
        after.spec.rules?.map((r) => r.name),
        [WEIGHT_RULE, undefined],
      );
      assert.equal(after.spec.rules?.[0]?.filters?.[0]?.type, 'ResponseHeaderModifier');
    });

    it('mirroring and sticky sessions: the API server keeps the RequestMirror percent, the cookie rules and the Set-Cookie backend filters', async () => {
      await router.setWeight(ctx, { weight: 0, mirror: 40 });
      let after = (await getRoute(ns, 'web'))!;
      assert.equal(readWeights(after, routePlan(ctx)).mirror, 40, 'the installed schema keeps requestMirror.percent');
      const sticky = { canary: { name: 'canary-session', value: 'c0ffee', maxAge: 600 }, primary: { name: 'primary-session', value: 'feed01', maxAge: 5 } };
      await router.setWeight(ctx, { weight: 30, sticky });
      after = (await getRoute(ns, 'web'))!;
      assert.deepEqual(after.spec.rules?.map((r) => r.name).slice(0, 3), ['canary-gate-sticky', 'canary-gate-sticky-primary', WEIGHT_RULE]);
      const weighted = after.spec.rules?.find((r) => r.name === WEIGHT_RULE);
      assert.ok(!weighted?.filters?.some((f) => f.type === 'RequestMirror'), 'the weight step ended the mirroring');
      assert.match(JSON.stringify(weighted?.backendRefs?.find((b) => b.name === 'web-canary')?.filters), /canary-session=c0ffee; Max-Age=600/);
      assert.match(JSON.stringify(weighted?.backendRefs?.find((b) => b.name === 'web-primary')?.filters), /primary-session=feed01; Max-Age=5/);
      assert.deepEqual(readWeights(after, routePlan(ctx)), { primary: 70, canary: 30 });
      await router.setWeight(ctx, { weight: 0 });
      after = (await getRoute(ns, 'web'))!;
      assert.deepEqual(after.spec.rules?.map((r) => r.name), [WEIGHT_RULE, undefined], 'the cookie rules go with the weight');
    });

    it('GAMMA (mesh) mode: an HTTPRoute whose parentRef is the apex Service, as Linkerd, Istio ambient and Cilium read it', async () => {
      await kubectlOk(['-n', ns, 'apply', '-f', '-'], { input: yamlOf(deployment('meshy', { image: 'meshy:1', replicas: 1 }), service('meshy', { selector: { app: 'meshy' } })) });
      const mesh = await anchorCanary(ns, 'meshy', { provider: 'gatewayapi', service: { port: 80, gatewayRefs: [{ group: '', kind: 'Service', name: 'meshy' }] } });
      const meshCtx = await context(ns, mesh, 'meshy', 'meshy');
      await router.reconcile(meshCtx);
      await router.setWeight(meshCtx, { weight: 10 });
      const route = (await getRoute(ns, 'meshy'))!;
      assert.deepEqual(route.spec.parentRefs, [{ group: '', kind: 'Service', name: 'meshy' }]);
      assert.deepEqual(readWeights(route, routePlan(meshCtx)), { primary: 90, canary: 10 });
      await router.finalize(meshCtx);
      assert.equal(await getRoute(ns, 'meshy'), undefined);
    });

    it('finalize sends everything to the primary, keeps the user rule and leaves the apex Service serving', async () => {
      await router.setWeight(ctx, { weight: 20 });
      await router.finalize(ctx);
      const route = await getRoute(ns, 'web');
      assert.ok(route, 'a route holding the user rule is kept');
      assert.equal(route.metadata.ownerReferences, undefined, 'and is no longer garbage-collected with the Canary');
      const ours = route.spec.rules?.find((r) => r.name === WEIGHT_RULE);
      assert.deepEqual(ours?.backendRefs?.map((b) => [b.name, b.weight]), [['web', 1]], 'handed back to the apex Service');
      assert.equal(ours?.filters?.[0]?.type, 'ResponseHeaderModifier');
      assert.ok(route.spec.rules?.some((r) => r.matches?.[0]?.path?.value === '/admin'));
      assert.equal(await getService(ns, 'web-primary'), undefined);
      assert.equal(await getService(ns, 'web-canary'), undefined);
      // Every backend the route names exists and has the primary's Pods ready behind it.
      const primaryPods = await podNames(ns, 'app=web');
      assert.equal(primaryPods.length, 2);
      for (const name of new Set(route.spec.rules?.flatMap((r) => r.backendRefs?.map((b) => b.name) ?? []))) {
        if (name === 'web') assert.deepEqual(await readyEndpointPods(ns, name), primaryPods);
      }
    });

    it('finalize deletes a route it created that holds only its rules', async () => {
      await kubectlOk(['-n', ns, 'apply', '-f', '-'], { input: yamlOf(deployment('shop', { image: 'shop:1', replicas: 1 }), service('shop', { selector: { app: 'shop' } })) });
      const canary = await anchorCanary(ns, 'shop', { ...gatewaySpec, service: { port: 80, hosts: ['shop.example.com'] } });
      const c = await context(ns, canary, 'shop', 'shop');
      await router.reconcile(c);
      await router.setWeight(c, { weight: 10 });
      assert.ok(await getRoute(ns, 'shop'));
      await router.finalize(c);
      assert.equal(await getRoute(ns, 'shop'), undefined);
      assert.equal(await getService(ns, 'shop-primary'), undefined);
      assert.equal(await getService(ns, 'shop-canary'), undefined);
      assert.ok(await getService(ns, 'shop'), "the user's Service is kept");
    });

    it('routes a Service target between the user Service and <name>-canary', async () => {
      await kubectlOk(['-n', ns, 'apply', '-f', '-'], {
        input: yamlOf(service('api', { selector: { app: 'api-v1' } }), service('api-canary', { selector: { app: 'api-v2' } })),
      });
      const canary = await anchorCanary(ns, 'api', { ...gatewaySpec, targetRef: { kind: 'Service', name: 'api' }, service: { port: 80 } });
      const c: RouterContext = { canary, namespace: ns, targetService: (await getService(ns, 'api'))!, service: (await getService(ns, 'api'))! };
      await router.reconcile(c);
      let route = (await getRoute(ns, 'api'))!;
      assert.deepEqual(route.spec.rules?.[0]?.backendRefs?.map((b) => [b.name, b.weight]), [['api', 100]]);
      await router.setWeight(c, { weight: 25 });
      route = (await getRoute(ns, 'api'))!;
      assert.deepEqual(route.spec.rules?.[0]?.backendRefs?.map((b) => [b.name, b.weight]), [
        ['api', 75],
        ['api-canary', 25],
      ]);
      await router.finalize(c);
      assert.equal(await getRoute(ns, 'api'), undefined);
      assert.ok(await getService(ns, 'api'));
    });
  });

  describe('kubernetes', function () {
    const router = new KubernetesRouter({ core: core() });

    async function pendingCopy(ctx: RouterContext, weight: number, image: string): Promise<k8s.V1Deployment> {
      const target = ctx.target!;
      const pendingTemplate = structuredClone(target.spec!.template);
      pendingTemplate.spec!.containers[0]!.image = image;
      const primary = target.spec?.replicas ?? 1;
      return buildCanaryDeployment({
        target,
        pendingTemplate,
        revision: 'b0b0b0b0b0b0',
        replicas: router.canaryReplicas(ctx, weight, primary),
        podLabels: router.canaryPodLabels(ctx, pendingTemplate.metadata?.labels ?? {}),
        canary: ctx.canary,
      });
    }

    it("gives a weighted canary's Pods to the user's Service, in proportion to the weight", async () => {
      await kubectlOk(['-n', ns, 'apply', '-f', '-'], { input: yamlOf(deployment('cart', { image: 'cart:1', replicas: 3 }), service('cart', { selector: { app: 'cart' } })) });
      await waitFor('cart to roll out', () => rolledOut(ns, 'cart', 3), { namespace: ns });
      const canary = await anchorCanary(ns, 'cart', { provider: 'kubernetes' });
      let ctx = await context(ns, canary, 'cart', 'cart');
      await router.reconcile(ctx);
      assert.equal(await getService(ns, 'cart-canary'), undefined, 'no Service of its own for a weighted canary');

      const copy = await pendingCopy(ctx, 25, 'cart:2');
      assert.equal(copy.spec?.replicas, 1, '1 of 4 Pods carries 25%');
      await apps().createNamespacedDeployment({ namespace: ns, body: copy });
      await waitFor('the canary copy to be ready', () => rolledOut(ns, 'cart-canary', 1), { namespace: ns });

      const canaryPods = await podNames(ns, `${ROLE_LABEL}=canary,app=cart`);
      assert.equal(canaryPods.length, 1);
      const all = await podNames(ns, 'app=cart');
      assert.equal(all.length, 4);
      await waitFor('the Service endpoints to include the canary Pod', async () => JSON.stringify(await readyEndpointPods(ns, 'cart')) === JSON.stringify(all), { namespace: ns });

      ctx = await context(ns, canary, 'cart', 'cart');
      assert.deepEqual(router.getWeights(ctx), { primary: 75, canary: 25 });
      // The primary Deployment does not count the canary Pods as its own.
      const primary = await apps().readNamespacedDeployment({ namespace: ns, name: 'cart' });
      assert.equal(primary.status?.replicas, 3);
    });

    it('keeps a blue/green copy out of the user Service and behind <svc>-canary', async () => {
      await kubectlOk(['-n', ns, 'apply', '-f', '-'], { input: yamlOf(deployment('pay', { image: 'pay:1', replicas: 2 }), service('pay', { selector: { app: 'pay' } })) });
      await waitFor('pay to roll out', () => rolledOut(ns, 'pay', 2), { namespace: ns });
      const canary = await anchorCanary(ns, 'pay', { provider: 'kubernetes', analysis: { iterations: 3 } });
      const ctx = await context(ns, canary, 'pay', 'pay');
      await router.reconcile(ctx);
      const svc = await getService(ns, 'pay-canary');
      assert.deepEqual(svc?.spec?.selector, { app: 'pay-canary', [ROLE_LABEL]: 'canary' });

      const copy = await pendingCopy(ctx, 0, 'pay:2');
      assert.equal(copy.spec?.replicas, 2, 'sized like the primary');
      await apps().createNamespacedDeployment({ namespace: ns, body: copy });
      await waitFor('the blue/green copy to be ready', () => rolledOut(ns, 'pay-canary', 2), { namespace: ns });
      const canaryPods = await podNames(ns, `${ROLE_LABEL}=canary`);
      const primaryPods = await podNames(ns, 'app=pay');
      const copyPods = await podNames(ns, 'app=pay-canary');
      assert.equal(copyPods.length, 2);
      assert.ok(copyPods.every((p) => canaryPods.includes(p)));
      await waitFor('pay-canary endpoints', async () => JSON.stringify(await readyEndpointPods(ns, 'pay-canary')) === JSON.stringify(copyPods), { namespace: ns });
      assert.deepEqual(await readyEndpointPods(ns, 'pay'), primaryPods, "the user's Service selects only the primary");
      assert.deepEqual(router.getWeights(await context(ns, canary, 'pay', 'pay')), { primary: 100, canary: 0 });

      await router.finalize(ctx);
      assert.equal(await getService(ns, 'pay-canary'), undefined);
      const r = await kubectl(['-n', ns, 'get', 'service', 'pay']);
      assert.equal(r.code, 0);
    });
  });
});
