// The SMI router against the real API server with Open Service Mesh's SMI
// CRDs (github.com/openservicemesh/osm, cmd/osm-bootstrap/crds): every
// TrafficSplit and HTTPRouteGroup it writes is validated by their schemas; a
// whole osm rollout runs through the real reconciler; the CRD's CEL rules
// refuse analysis.match where the TrafficSplit version has no matches; and
// the linkerd and osm built-in metrics are read from the real Prometheus on
// series in the meshes' own formats.
//
// What OSM's CRDs serve: TrafficSplit v1alpha2 (v1alpha3 and v1alpha4 are
// in the file with served: false) and HTTPRouteGroup v1alpha4 (v1alpha1-3
// served: false). No v1 CRD serves TrafficSplit v1alpha1 at all. The
// v1alpha3 tests therefore make OSM's own v1alpha3 schemas served (and, for
// TrafficSplit, the storage version, so that `matches` is not pruned) for
// their duration, and put the CRDs back after. v1alpha1 objects are tested
// in the unit tests only; here the test checks that the API server has no
// v1alpha1.

import assert from 'node:assert/strict';
import { mkdir, rename, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import type * as k8s from '@kubernetes/client-node';
import type { Canary, CanaryMetric, CanarySpec } from '../../core/api/types.js';
import { TemplateMetricChecker } from '../../reconciler/analysis/metrics/checker.js';
import type { RouterContext } from '../../reconciler/routers/router.js';
import { SmiRouter, type HTTPRouteGroup, type TrafficSplit } from '../../reconciler/routers/smi.js';
import { ROLE_LABEL } from '../../core/contract.js';
import { apps, applyAsUser as apply, clusterDir, core, custom, getObject as get, kubectl, kubectlOk } from './cluster.js';
import { createNamespace, deleteNamespace } from './namespaces.js';
import { deployment, service, yamlOf } from './objects.js';
import { startReconciler, type RunningReconciler } from './reconciler-process.js';
import { waitFor } from './wait.js';

const SPLIT = (version: string) => ({ group: 'split.smi-spec.io', version, plural: 'trafficsplits' });
const GROUP_V3 = { group: 'specs.smi-spec.io', version: 'v1alpha3', plural: 'httproutegroups' };

async function getCustom<T>(at: { group: string; version: string; plural: string }, ns: string, name: string): Promise<T | undefined> {
  try {
    return (await custom().getNamespacedCustomObject({ ...at, namespace: ns, name })) as T;
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

/** The API versions the API server serves for a group. */
async function servedVersions(group: string): Promise<string[]> {
  const r = await kubectl(['get', '--raw', `/apis/${group}`]);
  if (r.code !== 0) return [];
  return (JSON.parse(r.stdout) as { versions: Array<{ version: string }> }).versions.map((v) => v.version).sort();
}

interface CrdVersions {
  versions: Array<{ name: string; served: boolean; storage: boolean }>;
}

/** The served and storage flags of every version of a CRD. */
async function crdVersions(crd: string): Promise<CrdVersions['versions']> {
  const obj = JSON.parse(await kubectlOk(['get', 'crd', crd, '-o', 'json'])) as { spec: CrdVersions };
  return obj.spec.versions.map((v) => ({ name: v.name, served: v.served, storage: v.storage }));
}

/** Sets the served and storage flags of a CRD's versions (exactly one stores). */
async function setCrdVersions(crd: string, flags: CrdVersions['versions']): Promise<void> {
  const current = await crdVersions(crd);
  const ops = current.flatMap((v, i) => {
    const want = flags.find((f) => f.name === v.name) ?? v;
    return [
      { op: 'replace', path: `/spec/versions/${i}/served`, value: want.served },
      { op: 'replace', path: `/spec/versions/${i}/storage`, value: want.storage },
    ];
  });
  await kubectlOk(['patch', 'crd', crd, '--type=json', '-p', JSON.stringify(ops)]);
}

/**
 * Serves OSM's own v1alpha3 schemas of TrafficSplit and HTTPRouteGroup, and
 * stores TrafficSplit as v1alpha3: OSM stores v1alpha2, whose schema has no
 * `matches`, and the API server prunes what the storage version's schema
 * does not know. Returns the flags to put back.
 */
async function serveV1alpha3(): Promise<Array<[string, CrdVersions['versions']]>> {
  const restore: Array<[string, CrdVersions['versions']]> = [];
  for (const crd of ['trafficsplits.split.smi-spec.io', 'httproutegroups.specs.smi-spec.io']) {
    const was = await crdVersions(crd);
    restore.push([crd, was]);
    const storeV3 = crd.startsWith('trafficsplits');
    await setCrdVersions(crd, was.map((v) => (v.name === 'v1alpha3' ? { ...v, served: true, storage: storeV3 || v.storage } : storeV3 ? { ...v, storage: false } : v)));
  }
  await waitFor('v1alpha3 to be served', async () => (await servedVersions('split.smi-spec.io')).includes('v1alpha3') && (await servedVersions('specs.smi-spec.io')).includes('v1alpha3'), { timeoutMs: 30_000 });
  return restore;
}

/**
 * A stored Canary to own what the router creates (the garbage collector
 * deletes objects whose owner does not exist). Its targetRef names nothing,
 * so a reconciler leaves it alone; the router is handed the spec under test.
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

async function context(ns: string, canary: Canary, name: string): Promise<RouterContext> {
  const ctx: RouterContext = { canary, namespace: ns, target: await apps().readNamespacedDeployment({ namespace: ns, name }) };
  const svc = await getService(ns, name);
  if (svc) ctx.service = svc;
  return ctx;
}

const backends = (s: TrafficSplit | undefined) => (s?.spec.backends ?? []).map((b) => [b.service, b.weight]);

describe('smi router on a real API server with OSM\'s SMI CRDs', function () {
  let ns: string;
  before(async () => {
    ns = await createNamespace('smi', { enabled: false });
    await kubectlOk(['-n', ns, 'apply', '-f', '-'], {
      input: yamlOf(deployment('web', { image: 'web:1', replicas: 2 }), service('web', { selector: { app: 'web' } }), deployment('shop', { image: 'shop:1', replicas: 1 }), service('shop', { selector: { app: 'shop' } })),
    });
  });
  after(async () => deleteNamespace(ns));

  it('OSM\'s CRDs serve TrafficSplit v1alpha2 and HTTPRouteGroup v1alpha4; no CRD serves TrafficSplit v1alpha1', async () => {
    assert.deepEqual(await servedVersions('split.smi-spec.io'), ['v1alpha2']);
    assert.deepEqual(await servedVersions('specs.smi-spec.io'), ['v1alpha4']);
    const r = await kubectl(['-n', ns, 'apply', '--dry-run=server', '-f', '-'], {
      input: JSON.stringify({ apiVersion: 'split.smi-spec.io/v1alpha1', kind: 'TrafficSplit', metadata: { name: 'v1' }, spec: { service: 'web', backends: [{ service: 'web-primary', weight: '100' }] } }),
    });
    assert.notEqual(r.code, 0, 'the API server has no TrafficSplit v1alpha1');
    assert.match(r.stderr, /no matches for kind "TrafficSplit" in version "split.smi-spec.io\/v1alpha1"/);
  });

  describe('osm (TrafficSplit v1alpha2)', function () {
    let router: SmiRouter;
    let ctx: RouterContext;
    before(async () => {
      ctx = await context(ns, await anchorCanary(ns, 'web', { provider: 'osm' }), 'web');
      router = new SmiRouter({ core: core(), custom: custom(), provider: 'osm' });
    });

    it('creates <apex>-primary, <apex>-canary and a TrafficSplit the API server accepts, all to the primary', async () => {
      await router.reconcile(ctx);
      assert.deepEqual((await getService(ns, 'web-primary'))?.spec?.selector, { app: 'web' });
      assert.deepEqual((await getService(ns, 'web-canary'))?.spec?.selector, { app: 'web-canary', [ROLE_LABEL]: 'canary' });
      const split = await getCustom<TrafficSplit>(SPLIT('v1alpha2'), ns, 'web');
      assert.equal(split?.spec.service, 'web');
      assert.deepEqual(backends(split), [
        ['web-primary', 100],
        ['web-canary', 0],
      ]);
      assert.equal(split?.metadata.ownerReferences?.[0]?.uid, ctx.canary.metadata.uid);
    });

    it('writes nothing when reconciled again; setWeight moves the weights, keeping the user\'s labels and putting back the user\'s weights', async () => {
      const before = await getCustom<TrafficSplit>(SPLIT('v1alpha2'), ns, 'web');
      await router.reconcile(ctx);
      await router.setWeight(ctx, { weight: 0 });
      assert.equal((await getCustom<TrafficSplit>(SPLIT('v1alpha2'), ns, 'web'))?.metadata.resourceVersion, before?.metadata.resourceVersion);
      await kubectlOk(['-n', ns, 'label', 'trafficsplit', 'web', 'team=shop']);
      // A fresh router (a restarted reconciler) sees the user's change on its first read.
      router = new SmiRouter({ core: core(), custom: custom(), provider: 'osm' });
      await router.setWeight(ctx, { weight: 30 });
      const split = await getCustom<TrafficSplit>(SPLIT('v1alpha2'), ns, 'web');
      assert.deepEqual(backends(split), [
        ['web-primary', 70],
        ['web-canary', 30],
      ]);
      assert.equal(split?.metadata.labels?.team, 'shop');
      assert.deepEqual(router.getWeights(ctx), { primary: 70, canary: 30 });
      // A user's edit of the weights (canary-gate's) is put back on the next sync. Without
      // informer caches a router trusts its own last write, so a fresh one stands for the
      // reconciler whose informer has seen the edit (the unit tests cover the lagging cache).
      await kubectlOk(['-n', ns, 'patch', 'trafficsplit', 'web', '--type=merge', '-p', JSON.stringify({ spec: { backends: [{ service: 'web-primary', weight: 50 }, { service: 'web-canary', weight: 50 }] } })]);
      router = new SmiRouter({ core: core(), custom: custom(), provider: 'osm' });
      await router.setWeight(ctx, { weight: 30 });
      assert.deepEqual(backends(await getCustom<TrafficSplit>(SPLIT('v1alpha2'), ns, 'web')), [
        ['web-primary', 70],
        ['web-canary', 30],
      ]);
    });

    it('finalize removes the TrafficSplit and both Services, leaving the apex Service', async () => {
      await router.finalize(ctx);
      assert.equal(await getCustom(SPLIT('v1alpha2'), ns, 'web'), undefined);
      assert.equal(await getService(ns, 'web-primary'), undefined);
      assert.equal(await getService(ns, 'web-canary'), undefined);
      assert.ok(await getService(ns, 'web'));
    });

    it('never touches a TrafficSplit of that name that canary-gate did not create', async () => {
      await apply(ns, { apiVersion: 'split.smi-spec.io/v1alpha2', kind: 'TrafficSplit', metadata: { name: 'shop' }, spec: { service: 'shop', backends: [{ service: 'shop-v1', weight: 100 }] } });
      const theirs = await getCustom<TrafficSplit>(SPLIT('v1alpha2'), ns, 'shop');
      const shop = await context(ns, await anchorCanary(ns, 'shop', { provider: 'osm' }), 'shop');
      const r = new SmiRouter({ core: core(), custom: custom(), provider: 'osm' });
      await assert.rejects(r.reconcile(shop), /TrafficSplit .*\/shop exists and was not created by canary-gate/);
      await r.finalize(shop);
      assert.equal((await getCustom<TrafficSplit>(SPLIT('v1alpha2'), ns, 'shop'))?.metadata.resourceVersion, theirs?.metadata.resourceVersion);
    });
  });

  describe('smi:v1alpha3 (OSM\'s v1alpha3 schemas, served and stored for these tests)', function () {
    const restore: Array<[string, CrdVersions['versions']]> = [];
    let router: SmiRouter;
    let ctx: RouterContext;
    before(async function () {
      restore.push(...(await serveV1alpha3()));
      ctx = await context(ns, await anchorCanary(ns, 'web', { provider: 'smi:v1alpha3' }), 'web');
      ctx.canary.spec.analysis = { iterations: 3, match: [{ headers: { 'x-canary': { exact: 'insider' }, cookie: { regex: '^(.*?;)?(canary=always)(;.*)?$' } }, uri: { prefix: '/api' }, method: { exact: 'GET' } }] };
      router = new SmiRouter({ core: core(), custom: custom(), provider: 'smi:v1alpha3' });
    });
    after(async () => {
      for (const [crd, was] of restore) await setCrdVersions(crd, was);
    });

    it('an A/B run writes an HTTPRouteGroup and a TrafficSplit with matches that the schemas keep whole', async () => {
      await router.reconcile(ctx);
      await router.setWeight(ctx, { weight: 100, match: ctx.canary.spec.analysis?.match ?? [] });
      const group = await getCustom<HTTPRouteGroup>(GROUP_V3, ns, 'web-canary-gate-ab');
      assert.deepEqual(group?.spec.matches, [{ name: 'match-0', pathRegex: '^/api.*', methods: ['GET'], headers: [{ 'x-canary': '^insider$' }, { cookie: '^(.*?;)?(canary=always)(;.*)?$' }] }]);
      const split = await getCustom<TrafficSplit>(SPLIT('v1alpha3'), ns, 'web');
      assert.deepEqual(split?.spec.matches, [{ kind: 'HTTPRouteGroup', name: 'web-canary-gate-ab' }]);
      assert.deepEqual(backends(split), [
        ['web-primary', 0],
        ['web-canary', 100],
      ]);
      // Nothing was pruned: a second pass writes nothing.
      const rv = split?.metadata.resourceVersion;
      await router.setWeight(ctx, { weight: 100, match: ctx.canary.spec.analysis?.match ?? [] });
      assert.equal((await getCustom<TrafficSplit>(SPLIT('v1alpha3'), ns, 'web'))?.metadata.resourceVersion, rv);
    });

    it('the end of the run drops the matches; finalize removes the split, then the route group', async () => {
      await router.setWeight(ctx, { weight: 0, match: ctx.canary.spec.analysis?.match ?? [] });
      const split = await getCustom<TrafficSplit>(SPLIT('v1alpha3'), ns, 'web');
      assert.equal(split?.spec.matches, undefined);
      assert.deepEqual(backends(split), [
        ['web-primary', 100],
        ['web-canary', 0],
      ]);
      await router.finalize(ctx);
      assert.equal(await getCustom(SPLIT('v1alpha3'), ns, 'web'), undefined);
      assert.equal(await getCustom(GROUP_V3, ns, 'web-canary-gate-ab'), undefined);
    });

    it('a weighted v1alpha3 TrafficSplit is accepted with integer weights', async () => {
      const weighted = { ...ctx, canary: { ...ctx.canary, spec: { ...ctx.canary.spec, analysis: { stepWeight: 20 } } } };
      const r = new SmiRouter({ core: core(), custom: custom(), provider: 'smi:v1alpha3' });
      await r.reconcile(weighted);
      await r.setWeight(weighted, { weight: 20 });
      assert.deepEqual(backends(await getCustom<TrafficSplit>(SPLIT('v1alpha3'), ns, 'web')), [
        ['web-primary', 80],
        ['web-canary', 20],
      ]);
      await r.finalize(weighted);
      assert.equal(await getCustom(SPLIT('v1alpha3'), ns, 'web'), undefined);
    });
  });

  describe('the Canary CRD refuses what an SMI version cannot express', function () {
    const canaryWith = (name: string, spec: Record<string, unknown>) => ({
      apiVersion: 'canarygate.dev/v1alpha1',
      kind: 'Canary',
      metadata: { name },
      spec: { targetRef: { apiVersion: 'apps/v1', kind: 'Deployment', name }, service: { port: 80 }, ...spec },
    });
    const dryRun = (obj: unknown) => kubectl(['-n', ns, 'apply', '--dry-run=server', '-f', '-'], { input: JSON.stringify(obj) });
    const ab = { iterations: 3, match: [{ headers: { 'x-canary': { exact: 'insider' } } }] };

    it('analysis.match on provider linkerd (TrafficSplit v1alpha1 has no matches), with the API server\'s message', async () => {
      const r = await dryRun(canaryWith('ab-linkerd', { provider: 'linkerd', analysis: ab }));
      assert.notEqual(r.code, 0);
      assert.match(r.stderr, /analysis\.match is honoured only by the providers [a-z, ]*smi:v1alpha3\[:<mesh>\] \(A\/B with analysis\.iterations; path, method and headers only\)/);
      for (const provider of ['osm', 'smi', 'smi:v1alpha2:linkerd']) assert.notEqual((await dryRun(canaryWith('ab', { provider, analysis: ab }))).code, 0, provider);
    });

    it('accepts analysis.match on smi:v1alpha3 for A/B only, without query parameters; hosts with one entry', async () => {
      const ok = await dryRun(canaryWith('ab-v3', { provider: 'smi:v1alpha3:osm', analysis: ab }));
      assert.equal(ok.code, 0, ok.stderr);
      assert.notEqual((await dryRun(canaryWith('ab-v3w', { provider: 'smi:v1alpha3', analysis: { stepWeight: 10, match: ab.match } }))).code, 0, 'a weighted run with matches');
      assert.notEqual((await dryRun(canaryWith('ab-v3q', { provider: 'smi:v1alpha3', analysis: { iterations: 3, match: [{ queryParams: { q: { exact: '1' } } }] } }))).code, 0, 'query parameters');
      assert.equal((await dryRun(canaryWith('hosts', { provider: 'osm', service: { port: 80, hosts: ['web.shop.svc.cluster.local'] } }))).code, 0);
      const two = await dryRun(canaryWith('hosts2', { provider: 'osm', service: { port: 80, hosts: ['a.example', 'b.example'] } }));
      assert.notEqual(two.code, 0);
      assert.match(two.stderr, /service\.hosts is honoured only by the providers [a-z, ]*smi \(one host/);
    });
  });
});

describe('smi: an osm rollout through the real reconciler', function () {
  let ns: string;
  let reconciler: RunningReconciler;
  before(async function () {
    ns = await createNamespace('smi-rollout');
    reconciler = await startReconciler({ namespace: ns });
  });
  after(async function () {
    await reconciler?.stop();
    await deleteNamespace(ns);
  });

  it('shifts the TrafficSplit weights step by step, then ends promoted with everything on the primary', async function () {
    const name = 'mesh';
    const phase = async () => (await get<Canary>(ns, 'canary', name))?.status?.phase;
    await apply(ns, {
      apiVersion: 'canarygate.dev/v1alpha1',
      kind: 'Canary',
      metadata: { name },
      spec: { provider: 'osm', progressDeadlineSeconds: 60, targetRef: { apiVersion: 'apps/v1', kind: 'Deployment', name }, service: { port: 80, targetPort: 'http' }, analysis: { interval: '1s', stepWeight: 25, maxWeight: 50 } },
    });
    // A mesh splits the traffic of the apex Service: it exists before the workload is adopted.
    await apply(ns, service(name, { selector: { app: name } }));
    await apply(ns, deployment(name, { image: 'example.test/mesh:1' }));
    await waitFor('Initialized', async () => (await phase()) === 'Initialized', { namespace: ns, timeoutMs: 30_000 });
    const weights = (s: TrafficSplit | undefined) => Object.fromEntries((s?.spec.backends ?? []).map((b) => [b.service, Number(b.weight)]));
    const initial = await waitFor('the TrafficSplit', () => get<TrafficSplit>(ns, 'trafficsplits.split.smi-spec.io', name), { namespace: ns });
    assert.deepEqual(weights(initial), { [`${name}-primary`]: 100, [`${name}-canary`]: 0 });

    await apply(ns, deployment(name, { image: 'example.test/mesh:2' }));
    const seen = new Set<number>();
    await waitFor('Succeeded', async () => {
      const s = await get<TrafficSplit>(ns, 'trafficsplits.split.smi-spec.io', name);
      if (s) seen.add(weights(s)[`${name}-canary`] ?? 0);
      return (await phase()) === 'Succeeded';
    }, { namespace: ns, timeoutMs: 90_000, intervalMs: 100 });
    assert.ok(seen.has(25) || seen.has(50), `the TrafficSplit carried canary weight on the way (saw ${[...seen].join(', ')})`);
    // The status is written before its effects: the split follows a moment later.
    const final = await waitFor('everything back on the primary', async () => {
      const s = await get<TrafficSplit>(ns, 'trafficsplits.split.smi-spec.io', name);
      return weights(s)[`${name}-primary`] === 100 ? s : undefined;
    }, { namespace: ns, timeoutMs: 30_000 });
    assert.deepEqual(weights(final), { [`${name}-primary`]: 100, [`${name}-canary`]: 0 });
    const live = await get<{ spec: { template: { spec: { containers: Array<{ image: string }> } } } }>(ns, 'deployment', name);
    assert.equal(live?.spec.template.spec.containers[0]?.image, 'example.test/mesh:2');
  });
});

describe('smi:v1alpha3: an A/B rollout through the real reconciler', function () {
  let ns: string;
  let reconciler: RunningReconciler;
  const restore: Array<[string, CrdVersions['versions']]> = [];
  before(async function () {
    // Before the reconciler's informers start.
    restore.push(...(await serveV1alpha3()));
    ns = await createNamespace('smi-ab');
    reconciler = await startReconciler({ namespace: ns });
  });
  after(async function () {
    await reconciler?.stop();
    await deleteNamespace(ns);
    for (const [crd, was] of restore) await setCrdVersions(crd, was);
  });

  it('sends the requests with the header to the canary during the run only, then promotes', async function () {
    const name = 'ab';
    const phase = async () => (await get<Canary>(ns, 'canary', name))?.status?.phase;
    const splitOf = () => getCustom<TrafficSplit>(SPLIT('v1alpha3'), ns, name);
    await apply(ns, {
      apiVersion: 'canarygate.dev/v1alpha1',
      kind: 'Canary',
      metadata: { name },
      spec: {
        provider: 'smi:v1alpha3',
        progressDeadlineSeconds: 60,
        targetRef: { apiVersion: 'apps/v1', kind: 'Deployment', name },
        service: { port: 80, targetPort: 'http' },
        analysis: { interval: '1s', iterations: 3, match: [{ headers: { 'x-canary': { exact: 'insider' } } }] },
      },
    });
    await apply(ns, service(name, { selector: { app: name } }));
    await apply(ns, deployment(name, { image: 'example.test/ab:1' }));
    await waitFor('Initialized', async () => (await phase()) === 'Initialized', { namespace: ns, timeoutMs: 30_000 });
    const initial = await waitFor('the TrafficSplit', splitOf, { namespace: ns });
    assert.equal(initial.spec.matches, undefined, 'no A/B before a run');
    assert.deepEqual(backends(initial), [
      [`${name}-primary`, 100],
      [`${name}-canary`, 0],
    ]);

    await apply(ns, deployment(name, { image: 'example.test/ab:2' }));
    const during = await waitFor('the A/B split', async () => ((await splitOf())?.spec.matches?.length ? splitOf() : undefined), { namespace: ns, timeoutMs: 30_000, intervalMs: 100 });
    assert.deepEqual(during?.spec.matches, [{ kind: 'HTTPRouteGroup', name: `${name}-canary-gate-ab` }]);
    assert.deepEqual(backends(during), [
      [`${name}-primary`, 0],
      [`${name}-canary`, 100],
    ]);
    const group = await getCustom<HTTPRouteGroup>(GROUP_V3, ns, `${name}-canary-gate-ab`);
    assert.deepEqual(group?.spec.matches, [{ name: 'match-0', headers: [{ 'x-canary': '^insider$' }] }]);

    await waitFor('Succeeded', async () => (await phase()) === 'Succeeded', { namespace: ns, timeoutMs: 60_000 });
    const final = await waitFor('the matches to be gone', async () => {
      const s = await splitOf();
      return s && !s.spec.matches ? s : undefined;
    }, { namespace: ns });
    assert.deepEqual(backends(final), [
      [`${name}-primary`, 100],
      [`${name}-canary`, 0],
    ]);
    const live = await get<{ spec: { template: { spec: { containers: Array<{ image: string }> } } } }>(ns, 'deployment', name);
    assert.equal(live?.spec.template.spec.containers[0]?.image, 'example.test/ab:2');
  });
});

// ------------------------------------------------------------------ built-in metrics on the real Prometheus

const PROMETHEUS = `http://127.0.0.1:${process.env.PROMETHEUS_PORT ?? '39090'}`;

/** Serves linkerd-proxy and OSM (Envoy) series for a canary copy and a primary; counters grow on every scrape. */
class MeshExporter {
  private scrapes = 0;
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
    // linkerd-proxy: labels as Linkerd's Prometheus adds them (namespace, deployment, pod) plus the proxy's own.
    const l = (deploy: string, dir: string) => `namespace="${this.ns}",deployment="${deploy}",pod="${deploy}-5d8f7c9b6-x2x4z",direction="${dir}",tls="true"`;
    // OSM's Envoy: request counters and durations by source and destination workload.
    const o = (dest: string) => `source_namespace="${this.ns}",source_kind="Deployment",source_name="client",destination_namespace="${this.ns}",destination_kind="Deployment",destination_name="${dest}",destination_pod="${dest}-6c7d8e9f0-abcde"`;
    const lines = [
      '# TYPE response_total counter',
      // The canary, inbound: 98 % success. Its outbound calls and the primary fail more and must not count.
      `response_total{${l('app-canary', 'inbound')},classification="success",status_code="200"} ${98 * n}`,
      `response_total{${l('app-canary', 'inbound')},classification="failure",status_code="503"} ${2 * n}`,
      `response_total{${l('app-canary', 'outbound')},classification="failure",status_code="503"} ${50 * n}`,
      `response_total{${l('app', 'inbound')},classification="failure",status_code="500"} ${50 * n}`,
      '# TYPE response_latency_ms histogram',
      // The canary, inbound: 90 % under 50 ms, 99 % under 300 ms -> p99 = 300 ms.
      ...[
        ['50', 90],
        ['300', 99],
        ['1000', 100],
        ['+Inf', 100],
      ].map(([le, c]) => `response_latency_ms_bucket{${l('app-canary', 'inbound')},le="${le}"} ${Number(c) * n}`),
      `response_latency_ms_sum{${l('app-canary', 'inbound')}} ${4000 * n}`,
      `response_latency_ms_count{${l('app-canary', 'inbound')}} ${100 * n}`,
      ...[
        ['50', 0],
        ['300', 0],
        ['1000', 0],
        ['+Inf', 100],
      ].map(([le, c]) => `response_latency_ms_bucket{${l('app', 'inbound')},le="${le}"} ${Number(c) * n}`),
      '# TYPE osm_request_total counter',
      // The canary: 97 % non-5xx; the primary fails half the time.
      `osm_request_total{${o('app-canary')},response_code="200"} ${97 * n}`,
      `osm_request_total{${o('app-canary')},response_code="404"} ${1 * n}`,
      `osm_request_total{${o('app-canary')},response_code="500"} ${2 * n}`,
      `osm_request_total{${o('app')},response_code="500"} ${50 * n}`,
      `osm_request_total{${o('app')},response_code="200"} ${50 * n}`,
      '# TYPE osm_request_duration_ms histogram',
      // The canary: p99 = 120 ms.
      ...[
        ['10', 50],
        ['120', 99],
        ['500', 100],
        ['+Inf', 100],
      ].map(([le, c]) => `osm_request_duration_ms_bucket{${o('app-canary')},le="${le}"} ${Number(c) * n}`),
      `osm_request_duration_ms_sum{${o('app-canary')}} ${3000 * n}`,
      `osm_request_duration_ms_count{${o('app-canary')}} ${100 * n}`,
    ];
    return `${lines.join('\n')}\n`;
  }
}

describe('smi built-in metrics against a real Prometheus', function () {
  this.timeout(120_000);
  const run = `smi${process.pid}${Date.now().toString(36)}`;
  const ns = `ns-${run}`;
  const exporter = new MeshExporter(ns);
  const targetsFile = path.join(clusterDir, 'prometheus', 'targets', `smi-test-${run}.json`);
  const checker = new TemplateMetricChecker({ template: () => undefined, secret: async () => undefined, builtinPrometheus: PROMETHEUS });
  const canaryFor = (provider: string, target: string): Canary => ({
    apiVersion: 'canarygate.dev/v1alpha1',
    kind: 'Canary',
    metadata: { name: target, namespace: ns },
    spec: { provider, targetRef: { kind: 'Deployment', name: target }, service: { port: 80 }, analysis: { interval: '10s' } },
  });
  const successRate: CanaryMetric = { name: 'request-success-rate', interval: '10s', thresholdRange: { min: 90 } };
  const duration: CanaryMetric = { name: 'request-duration', interval: '10s', thresholdRange: { max: 500 } };
  const passed = async (c: Canary, m: CanaryMetric) => {
    const r = await checker.check(c, m);
    return r.metric?.result === 'pass' ? r : undefined;
  };

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

  it('linkerd: success rate of the canary copy\'s inbound requests and their p99, from response_total and response_latency_ms', async () => {
    for (const provider of ['linkerd', 'smi:v1alpha2:linkerd']) {
      const c = canaryFor(provider, 'app');
      const sr = await waitFor(`${provider} request-success-rate`, () => passed(c, successRate), { timeoutMs: 60_000, intervalMs: 1000 });
      assert.ok(Math.abs((sr.metric?.value ?? 0) - 98) < 0.01, sr.message);
      const d = await waitFor(`${provider} request-duration`, () => passed(c, duration), { timeoutMs: 60_000, intervalMs: 1000 });
      assert.ok(Math.abs((d.metric?.value ?? 0) - 300) < 1, d.message);
    }
  });

  it('osm: non-5xx share and p99 of the requests to the canary copy, from osm_request_total and osm_request_duration_ms', async () => {
    const c = canaryFor('osm', 'app');
    const sr = await waitFor('osm request-success-rate', () => passed(c, successRate), { timeoutMs: 60_000, intervalMs: 1000 });
    assert.ok(Math.abs((sr.metric?.value ?? 0) - 98) < 0.01, sr.message);
    const d = await waitFor('osm request-duration', () => passed(c, duration), { timeoutMs: 60_000, intervalMs: 1000 });
    assert.ok(Math.abs((d.metric?.value ?? 0) - 120) < 1, d.message);
    // A stricter bound fails, naming the value.
    const strict = await checker.check(c, { ...successRate, thresholdRange: { min: 99 } });
    assert.equal(strict.passed, false);
    assert.match(strict.message, /^metric request-success-rate \(prometheus\): 98(\.\d+)? is below the minimum 99/);
  });

  it('plain smi names no mesh: the Pod-level defaults apply, which these mesh series do not feed', async () => {
    const r = await checker.check(canaryFor('smi', 'app'), { ...successRate, noDataPolicy: 'hold' });
    assert.equal(r.metric?.result, 'nodata');
  });
});
