// The traefik router: the TraefikService it builds (weights, mirroring,
// sticky cookie), and against an in-memory API that it writes only on
// change, puts back what it owns, keeps what the user added, hands traffic
// back to the primary before removing anything, and never touches a
// TraefikService it did not create.

import assert from 'node:assert/strict';
import type * as k8s from '@kubernetes/client-node';
import type { Canary, CanarySpec } from '../../core/api/types.js';
import { MANAGED_BY, MANAGED_BY_LABEL, ROLE_LABEL } from '../../core/contract.js';
import { unsupportedFields } from '../../core/providers.js';
import { Routers, routerTraits, watchedRouterResources } from '../../reconciler/routers/index.js';
import type { RouterContext, Split } from '../../reconciler/routers/router.js';
import {
  TRAEFIK_BUILTIN_METRICS,
  TraefikRouter,
  desiredTraefikService,
  readSticky,
  readWeights,
  releasedTraefikService,
  traefikPlan,
  type TraefikService,
} from '../../reconciler/routers/traefik.js';

const UID = '6a0d2c1e-0000-4000-8000-0000000000t1';

function canary(spec: Partial<CanarySpec> = {}): Canary {
  return {
    apiVersion: 'canarygate.dev/v1alpha1',
    kind: 'Canary',
    metadata: { name: 'web', namespace: 'shop', uid: UID },
    spec: { provider: 'traefik', targetRef: { kind: 'Deployment', name: 'web' }, service: { port: 80 }, ...spec },
  };
}

function target(): k8s.V1Deployment {
  return {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name: 'web', namespace: 'shop' },
    spec: { replicas: 2, selector: { matchLabels: { app: 'web' } }, template: { metadata: { labels: { app: 'web' } }, spec: { containers: [{ name: 'app', image: 'web:1' }] } } },
    status: { readyReplicas: 2 },
  };
}

function apexService(): k8s.V1Service {
  return { apiVersion: 'v1', kind: 'Service', metadata: { name: 'web', namespace: 'shop' }, spec: { selector: { app: 'web' }, ports: [{ name: 'http', port: 80, targetPort: 'http' }] } };
}

function ctx(c: Canary = canary(), over: Partial<RouterContext> = {}): RouterContext {
  return { canary: c, namespace: 'shop', target: target(), service: apexService(), ...over };
}

const sticky = (name = 'canary-session', maxAge = 600): NonNullable<Split['sticky']> => ({ canary: { name, value: 'ignored-by-traefik', maxAge } });

// ------------------------------------------------------------------ pure builders

describe('traefik: TraefikService builder', () => {
  it('is named after the apex Service and weighs <apex>-primary against <apex>-canary on the Service port', () => {
    const plan = traefikPlan(ctx(canary({ service: { port: 9898, name: 'front' } })));
    const ts = desiredTraefikService(undefined, plan, canary(), { weight: 25 });
    assert.equal(ts.metadata.name, 'front');
    assert.equal(ts.apiVersion, 'traefik.io/v1alpha1');
    assert.deepEqual(ts.spec, {
      weighted: {
        services: [
          { name: 'front-primary', kind: 'Service', port: 9898, weight: 75 },
          { name: 'front-canary', kind: 'Service', port: 9898, weight: 25 },
        ],
      },
    });
    assert.equal(ts.metadata.labels?.[MANAGED_BY_LABEL], MANAGED_BY);
    assert.deepEqual(ts.metadata.ownerReferences?.map((o) => [o.kind, o.uid, o.controller]), [['Canary', UID, true]]);
  });

  it('refers to the canary Service only while it has weight (Traefik drops a TraefikService with a Service without endpoints)', () => {
    const plan = traefikPlan(ctx());
    assert.deepEqual(desiredTraefikService(undefined, plan, canary()).spec, { weighted: { services: [{ name: 'web-primary', kind: 'Service', port: 80, weight: 100 }] } });
    const on = desiredTraefikService(undefined, plan, canary(), { weight: 10 });
    assert.deepEqual(desiredTraefikService(on, plan, canary(), { weight: 0 }).spec.weighted?.services?.map((s) => s.name), ['web-primary']);
  });

  it('weighs a Service target against its copy, and hands back to the target Service', () => {
    const c = canary({ targetRef: { kind: 'Service', name: 'api' } });
    const plan = traefikPlan(ctx(c, { target: undefined }));
    assert.deepEqual(desiredTraefikService(undefined, plan, c).spec.weighted?.services?.map((s) => s.name), ['api']);
    assert.deepEqual(desiredTraefikService(undefined, plan, c, { weight: 10 }).spec.weighted?.services?.map((s) => `${s.name}=${s.weight}`), ['api=90', 'api-canary=10']);
    assert.equal(plan.handBackTo, 'api');
  });

  it('reads the weights back, counting an entry without weight as 1 (Traefik\'s default)', () => {
    const plan = traefikPlan(ctx());
    for (const w of [0, 5, 33, 50, 100]) assert.deepEqual(readWeights(desiredTraefikService(undefined, plan, canary(), { weight: w }), plan), { primary: 100 - w, canary: w });
    const ts = desiredTraefikService(undefined, plan, canary());
    ts.spec.weighted!.services = [{ name: 'web-primary' }, { name: 'web-canary' }];
    assert.deepEqual(readWeights(ts, plan), { primary: 50, canary: 50 });
    assert.deepEqual(readWeights(undefined, plan), { primary: 100, canary: 0 });
  });

  it('mirrors by turning the same TraefikService into a mirroring service (main primary, canary mirror), and back', () => {
    const plan = traefikPlan(ctx());
    const weighted = desiredTraefikService(undefined, plan, canary());
    const mirroring = desiredTraefikService(weighted, plan, canary(), { weight: 0, mirror: 30 });
    assert.equal(mirroring.metadata.name, 'web', 'the IngressRoute keeps referring to the same name');
    assert.deepEqual(mirroring.spec, { mirroring: { name: 'web-primary', kind: 'Service', port: 80, mirrors: [{ name: 'web-canary', kind: 'Service', port: 80, percent: 30 }] } });
    assert.deepEqual(readWeights(mirroring, plan), { primary: 100, canary: 0, mirror: 30 });
    // Reconcile (no split given) keeps the mirroring as it is.
    assert.deepEqual(desiredTraefikService(mirroring, plan, canary()).spec, mirroring.spec);
    const back = desiredTraefikService(mirroring, plan, canary(), { weight: 20, mirror: 0 });
    assert.equal(back.spec.mirroring, undefined);
    assert.deepEqual(readWeights(back, plan), { primary: 80, canary: 20 });
  });

  it('refuses mirroring together with a weight of the canary\'s own (one TraefikService cannot say both)', () => {
    const plan = traefikPlan(ctx());
    assert.throws(() => desiredTraefikService(undefined, plan, canary(), { weight: 20, mirror: 50 }), /only while it has no weight/);
  });

  it('sets Traefik\'s sticky cookie (name and maxAge of sessionAffinity) while both sides have a share, and removes it otherwise', () => {
    const plan = traefikPlan(ctx());
    const on = desiredTraefikService(undefined, plan, canary(), { weight: 20, sticky: sticky('cg', 3600) });
    assert.deepEqual(on.spec.weighted?.sticky, { cookie: { name: 'cg', maxAge: 3600 } });
    // The revision-derived value is not Traefik's to use: it sets its own.
    assert.ok(!JSON.stringify(on).includes('ignored-by-traefik'));
    assert.deepEqual(readSticky(desiredTraefikService(on, plan, canary())), { name: 'cg', maxAge: 3600 }, 'reconcile keeps it');
    assert.equal(desiredTraefikService(on, plan, canary(), { weight: 20, sticky: null }).spec.weighted?.sticky, undefined);
    assert.equal(desiredTraefikService(on, plan, canary(), { weight: 100, sticky: sticky() }).spec.weighted?.sticky, undefined);
    assert.equal(desiredTraefikService(on, plan, canary(), { weight: 0, sticky: sticky() }).spec.weighted?.sticky, undefined);
  });

  it('keeps what a user added to our entries and cookie, puts back what we own', () => {
    const plan = traefikPlan(ctx());
    const ts = desiredTraefikService(undefined, plan, canary(), { weight: 20, sticky: sticky('cg', 60) });
    const edited = structuredClone(ts);
    edited.metadata.labels = { ...edited.metadata.labels, team: 'shop' };
    edited.spec.weighted!.services![0]!.passHostHeader = false;
    edited.spec.weighted!.services![1]!.weight = 90; // ours: put back
    edited.spec.weighted!.sticky!.cookie!.secure = true;
    edited.spec.highestRandomWeight = { services: [{ name: 'other' }] }; // not a field the user may set here
    const fixed = desiredTraefikService(edited, plan, canary(), { weight: 20, sticky: sticky('cg', 60) });
    assert.deepEqual(fixed.spec, {
      weighted: {
        services: [
          { name: 'web-primary', kind: 'Service', port: 80, weight: 80, passHostHeader: false },
          { name: 'web-canary', kind: 'Service', port: 80, weight: 20 },
        ],
        sticky: { cookie: { name: 'cg', maxAge: 60, secure: true } },
      },
    });
    assert.equal(fixed.metadata.labels?.team, 'shop');
  });

  it('hands back to the apex Service without our ownerReference, keeping the managed-by label (a new Canary may take it over)', () => {
    const plan = traefikPlan(ctx());
    const released = releasedTraefikService(desiredTraefikService(undefined, plan, canary(), { weight: 40 }), plan, canary(), 'web');
    assert.deepEqual(released.spec, { weighted: { services: [{ name: 'web', kind: 'Service', port: 80, weight: 1 }] } });
    assert.equal(released.metadata.ownerReferences, undefined);
    assert.equal(released.metadata.labels?.[MANAGED_BY_LABEL], MANAGED_BY);
  });
});

describe('traefik: registry, field support and built-in metrics', () => {
  it('is the router of provider traefik, watching traefikservices', () => {
    const routers = new Routers({ core: {} as k8s.CoreV1Api, custom: {} as k8s.CustomObjectsApi, caches: { services: { get: () => undefined, list: () => [] }, httpRoutes: { get: () => undefined, list: () => [] } } });
    assert.equal(routers.for('traefik').name, 'traefik');
    assert.ok(watchedRouterResources().some((r) => r.group === 'traefik.io' && r.plural === 'traefikservices' && r.version === 'v1alpha1'));
    assert.equal(routerTraits('traefik').copySharesUserService, false);
  });

  it('accepts mirroring and session affinity for traefik, still refuses what a TraefikService cannot say (A/B matches, hosts)', () => {
    const set = (fields: string[]) => (f: string) => fields.includes(f);
    assert.deepEqual(unsupportedFields('traefik', set(['analysis.mirror', 'analysis.mirrorWeight', 'analysis.sessionAffinity'])), []);
    assert.deepEqual(unsupportedFields('traefik', set(['analysis.match', 'service.hosts', 'service.gatewayRefs'])), ['service.gatewayRefs', 'service.hosts', 'analysis.match']);
  });

  it('reads request-success-rate and request-duration from Traefik\'s own per-service metrics of the canary Service', () => {
    assert.deepEqual(Object.keys(routerTraits('traefik').builtinMetrics ?? {}).sort(), ['request-duration', 'request-success-rate']);
    for (const q of Object.values(TRAEFIK_BUILTIN_METRICS)) assert.match(q, /service=~"\{\{ namespace \}\}-\{\{ service \}\}-canary-/);
    assert.match(TRAEFIK_BUILTIN_METRICS['request-success-rate']!, /traefik_service_requests_total\{service=~"[^"]*",code!~"5\.\."\}/);
    assert.match(TRAEFIK_BUILTIN_METRICS['request-duration']!, /histogram_quantile\(0\.99, sum by \(le\) \(rate\(traefik_service_request_duration_seconds_bucket/);
  });
});

// ------------------------------------------------------------------ against an in-memory API

interface Call {
  verb: 'create' | 'replace' | 'delete';
  name: string;
}

class FakeApi {
  readonly calls: Call[] = [];
  readonly objects = new Map<string, TraefikService>();
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
    getNamespacedCustomObject: async (p: { name: string; plural: string }) => {
      assert.equal(p.plural, 'traefikservices');
      const o = this.objects.get(p.name);
      if (!o) throw this.err(404);
      return structuredClone(o);
    },
    createNamespacedCustomObject: async (p: { body: TraefikService }) => {
      this.calls.push({ verb: 'create', name: `ts/${p.body.metadata.name}` });
      if (this.objects.has(p.body.metadata.name!)) throw this.err(409);
      const s = this.stamp(p.body);
      this.objects.set(s.metadata.name!, s);
      return structuredClone(s);
    },
    replaceNamespacedCustomObject: async (p: { name: string; body: TraefikService }) => {
      this.calls.push({ verb: 'replace', name: `ts/${p.name}` });
      const cur = this.objects.get(p.name);
      if (!cur) throw this.err(404);
      if (p.body.metadata.resourceVersion !== cur.metadata.resourceVersion) throw this.err(409);
      const s = this.stamp(p.body, cur.metadata.uid);
      this.objects.set(p.name, s);
      return structuredClone(s);
    },
    deleteNamespacedCustomObject: async (p: { name: string }) => {
      this.calls.push({ verb: 'delete', name: `ts/${p.name}` });
      if (!this.objects.delete(p.name)) throw this.err(404);
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
      s.spec = { ...s.spec, clusterIP: '10.0.0.10' };
      this.services.set(s.metadata!.name!, s);
      return structuredClone(s);
    },
    replaceNamespacedService: async (p: { name: string; body: k8s.V1Service }) => {
      this.calls.push({ verb: 'replace', name: `service/${p.name}` });
      const cur = this.services.get(p.name);
      if (!cur) throw this.err(404);
      if (p.body.metadata?.resourceVersion !== cur.metadata?.resourceVersion) throw this.err(409);
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
  private snapshot = { objects: new Map<string, TraefikService>(), services: new Map<string, k8s.V1Service>() };
  sync(): void {
    this.snapshot = { objects: new Map(this.objects), services: new Map(this.services) };
  }
  readonly caches = {
    services: { get: (_ns: string, n: string) => this.snapshot.services.get(n), list: () => [...this.snapshot.services.values()] },
    traefikServices: { get: (_ns: string, n: string) => this.snapshot.objects.get(n), list: () => [...this.snapshot.objects.values()] },
  };

  writes(): number {
    return this.calls.length;
  }
  verbs(): string[] {
    return this.calls.map((x) => `${x.verb} ${x.name}`);
  }
}

function router(api: FakeApi, withCaches: boolean): TraefikRouter {
  return new TraefikRouter({ core: api.core as unknown as k8s.CoreV1Api, custom: api.custom as unknown as k8s.CustomObjectsApi, ...(withCaches ? { caches: api.caches } : {}) });
}

describe('traefik router against an in-memory API', () => {
  for (const withCaches of [false, true]) {
    describe(withCaches ? 'with (lagging) informer caches' : 'reading with GETs', () => {
      it('creates both Services and the TraefikService, then writes nothing when reconciled again', async () => {
        const api = new FakeApi();
        const r = router(api, withCaches);
        const c = ctx();
        await r.reconcile(c);
        assert.deepEqual(api.verbs().sort(), ['create service/web-canary', 'create service/web-primary', 'create ts/web']);
        assert.deepEqual(api.services.get('web-canary')?.spec?.selector, { app: 'web-canary', [ROLE_LABEL]: 'canary' });
        assert.deepEqual(readWeights(api.objects.get('web'), traefikPlan(c)), { primary: 100, canary: 0 });
        const n = api.writes();
        await r.reconcile(c);
        api.sync();
        await r.reconcile(c);
        await r.setWeight(c, { weight: 0 });
        assert.equal(api.writes(), n, 'no write when nothing changed');
      });

      it('changes the weights with one replace, reports them, and writes nothing when asked again', async () => {
        const api = new FakeApi();
        const r = router(api, withCaches);
        const c = ctx();
        await r.reconcile(c);
        api.sync();
        const n = api.writes();
        await r.setWeight(c, { weight: 30 });
        assert.deepEqual(api.verbs().slice(n), ['replace ts/web']);
        assert.deepEqual(r.getWeights(c), { primary: 70, canary: 30 });
        await r.setWeight(c, { weight: 30 });
        api.sync();
        await r.setWeight(c, { weight: 30 });
        assert.equal(api.writes(), n + 1);
      });

      it('reports mirroring from the TraefikService and ends it when the split has none', async () => {
        const api = new FakeApi();
        const r = router(api, withCaches);
        const c = ctx(canary({ analysis: { iterations: 3, mirror: true, mirrorWeight: 40 } }));
        await r.reconcile(c);
        await r.setWeight(c, { weight: 0, mirror: 40 });
        assert.deepEqual(r.getWeights(c), { primary: 100, canary: 0, mirror: 40 });
        assert.equal(api.objects.get('web')?.spec.mirroring?.mirrors?.[0]?.percent, 40);
        await r.setWeight(c, { weight: 0 });
        assert.deepEqual(r.getWeights(c), { primary: 100, canary: 0 });
        assert.equal(api.objects.get('web')?.spec.mirroring, undefined);
      });

      it('puts back a weight the user edited (conflict: re-read and retry) and keeps their label', async () => {
        const api = new FakeApi();
        const r = router(api, withCaches);
        const c = ctx();
        await r.reconcile(c);
        await r.setWeight(c, { weight: 10 });
        api.sync();
        const edited = structuredClone(api.objects.get('web')!);
        edited.spec.weighted!.services![1]!.weight = 100;
        edited.metadata.labels = { ...edited.metadata.labels, team: 'shop' };
        edited.metadata.resourceVersion = '999';
        api.objects.set('web', edited);
        await r.setWeight(c, { weight: 50 });
        const after = api.objects.get('web')!;
        assert.deepEqual(readWeights(after, traefikPlan(c)), { primary: 50, canary: 50 });
        assert.equal(after.metadata.labels?.team, 'shop');
      });

      it('finalizes: all to the primary first, then hands the TraefikService back to the apex Service and removes the Services', async () => {
        const api = new FakeApi();
        const r = router(api, withCaches);
        const c = ctx();
        await r.reconcile(c);
        await r.setWeight(c, { weight: 40, sticky: sticky() });
        api.sync();
        const n = api.writes();
        const seen: string[] = [];
        const replace = api.custom.replaceNamespacedCustomObject;
        api.custom.replaceNamespacedCustomObject = async (p) => {
          seen.push(JSON.stringify(p.body.spec));
          return replace(p);
        };
        await r.finalize(c);
        assert.deepEqual(api.verbs().slice(n), ['replace ts/web', 'replace ts/web', 'delete service/web-canary', 'delete service/web-primary']);
        assert.deepEqual(JSON.parse(seen[0]!), { weighted: { services: [{ name: 'web-primary', kind: 'Service', port: 80, weight: 100 }] } });
        const kept = api.objects.get('web')!;
        assert.deepEqual(kept.spec.weighted?.services?.map((s) => s.name), ['web']);
        assert.equal(kept.metadata.ownerReferences, undefined, 'no longer garbage-collected with the Canary');
        assert.equal(api.services.size, 0);
      });
    });
  }

  it('finalize without an apex Service: all to the primary, then the TraefikService is deleted', async () => {
    const api = new FakeApi();
    const r = router(api, false);
    const c = ctx(canary(), { service: undefined });
    await r.reconcile(c);
    await r.setWeight(c, { weight: 60 });
    const n = api.writes();
    await r.finalize(c);
    assert.deepEqual(api.verbs().slice(n), ['replace ts/web', 'delete ts/web', 'delete service/web-canary', 'delete service/web-primary']);
    assert.equal(api.objects.size, 0);
  });

  it('a new Canary of the same name takes over a TraefikService a former one handed back', async () => {
    const api = new FakeApi();
    await router(api, false).reconcile(ctx());
    await router(api, false).finalize(ctx());
    const again = canary();
    again.metadata.uid = 'second-canary';
    const r = router(api, false);
    assert.deepEqual(r.conflicts(ctx(again)), []);
    await r.reconcile(ctx(again));
    assert.deepEqual(api.objects.get('web')?.metadata.ownerReferences?.map((o) => o.uid), ['second-canary']);
    assert.deepEqual(api.objects.get('web')?.spec.weighted?.services?.map((s) => s.name), ['web-primary']);
  });

  it('a Canary being deleted never takes back the TraefikService it handed back (the garbage collector would delete it)', async () => {
    const api = new FakeApi();
    const r = router(api, false);
    await r.reconcile(ctx());
    await r.finalize(ctx());
    const deleting = canary();
    deleting.metadata.deletionTimestamp = new Date() as never;
    const n = api.writes();
    // What a sync of the terminating Canary asks again: traffic to the primary, the router removed.
    await r.setWeight(ctx(deleting), { weight: 0 });
    await r.finalize(ctx(deleting));
    assert.deepEqual(api.verbs().slice(n).filter((v) => v.includes('ts/')), [], 'no write to the handed-back TraefikService');
    assert.equal(api.objects.get('web')?.metadata.ownerReferences, undefined);
  });

  it('never touches a TraefikService of that name that canary-gate did not create, and says so in conflicts()', async () => {
    const api = new FakeApi();
    const theirs: TraefikService = {
      apiVersion: 'traefik.io/v1alpha1',
      kind: 'TraefikService',
      metadata: { name: 'web', namespace: 'shop', resourceVersion: '1', uid: 'user-ts' },
      spec: { weighted: { services: [{ name: 'web', port: 80 }] } },
    };
    api.objects.set('web', structuredClone(theirs));
    api.sync();
    const r = router(api, true);
    assert.match(r.conflicts(ctx()).join('\n'), /TraefikService shop\/web exists and was not created by canary-gate/);
    await assert.rejects(r.reconcile(ctx()), /not created by canary-gate/);
    await assert.rejects(r.setWeight(ctx(), { weight: 20 }), /not created by canary-gate/);
    await r.finalize(ctx());
    assert.deepEqual(api.objects.get('web'), theirs);
    assert.ok(!api.verbs().some((v) => v.endsWith('ts/web')), api.verbs().join(', '));
  });
});
