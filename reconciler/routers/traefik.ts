// The `traefik` router: a Traefik TraefikService (traefik.io/v1alpha1) named
// after the apex Service splits the requests between two Services the router
// owns, `<svc>-primary` and `<svc>-canary`, exactly as the gatewayapi router
// does. The user routes to it from their own IngressRoute:
//
//   routes:
//     - match: Host(`web.example.com`)
//       services:
//         - kind: TraefikService
//           name: web            # the apex Service's name
//
// The TraefikService is canary-gate's whole: its spec is either
//
//   weighted:  services [<svc>-primary (100-w), <svc>-canary (w, only when
//              w > 0: Traefik drops a TraefikService one of whose Services has
//              no endpoint, and the copy has none between runs)], and while
//              sessions are sticky, Traefik's own sticky cookie;
//   mirroring: main <svc>-primary, mirrors [<svc>-canary, percent N], while the
//              canary gets copies of the requests and no weight of its own.
//
// Switching between the two keeps the object, so the user's IngressRoute
// never points at a missing service. Extra fields a user sets on our two
// service entries (passHostHeader, strategy, ...) or on the cookie (secure,
// sameSite, ...), and labels and annotations, are kept; anything else in the
// spec is put back.
//
// Sticky sessions are Traefik's weighted round robin's own cookie: a client
// keeps the service it first got. Traefik chooses the cookie's value (a hash
// of the service's name), so the revision-derived value of the Split is not
// used, and one cookie pins a client to either side: a separate primary
// cookie (sessionAffinity.primaryCookieName) has no meaning here.
//
// On finalize the TraefikService is turned back to the apex Service (or the
// target Service) and given up (no ownerReference, so garbage collection
// spares it; the managed-by label stays, so a new Canary may take it over):
// the user's IngressRoute keeps working without canary-gate.

import type * as k8s from '@kubernetes/client-node';
import type { Canary } from '../../core/api/types.js';
import { canonicalJson } from '../../core/revision.js';
import { CANARY_SUFFIX, MANAGED_BY, MANAGED_BY_LABEL, PRIMARY_SUFFIX } from '../../core/contract.js';
import { ROUTER_RESOURCES, type RouterResource } from '../../core/providers.js';
import { apexServiceName, ownedBy, renameSelectorLabels, selectorKeys, withCanaryOwner } from '../apply/copy.js';
import type { ObjectCache } from '../observe/caches.js';
import { OwnedObjects, assertOurs, conflictOf, notOurs, customObjectApi } from './owned.js';
import type { Router, RouterContext, RouterTraits, Split, Weights } from './router.js';
import { RouterServices, sizedLikePrimary } from './services.js';

/** The resource this router writes, as core/providers.ts declares it (for RBAC and the informer). */
export const TRAEFIK_SERVICE_RESOURCE = ROUTER_RESOURCES.traefik.find((r) => r.kind === 'TraefikService') as RouterResource;

// ------------------------------------------------------------------ TraefikService shapes (the parts we read and write)

export interface ServiceRef {
  name: string;
  kind?: 'Service' | 'TraefikService';
  namespace?: string;
  port?: number | string;
  weight?: number;
  /** Mirrors only: percent of the requests copied (Traefik's default 0 copies none). */
  percent?: number;
  [other: string]: unknown;
}

export interface CookieSpec {
  name?: string;
  maxAge?: number;
  [other: string]: unknown;
}

export interface TraefikServiceSpec {
  weighted?: { services?: ServiceRef[]; sticky?: { cookie?: CookieSpec } };
  mirroring?: ServiceRef & { mirrors?: ServiceRef[] };
  [other: string]: unknown;
}

export interface TraefikService {
  apiVersion: string;
  kind: 'TraefikService';
  metadata: k8s.V1ObjectMeta;
  spec: TraefikServiceSpec;
  status?: unknown;
}

// ------------------------------------------------------------------ the plan

export interface TraefikPlan {
  /** TraefikService name (the apex Service's name). */
  name: string;
  namespace: string;
  /** Service receiving the primary's share. */
  primary: string;
  /** Service receiving the canary's share. */
  canary: string;
  port: number;
  /** Where the TraefikService points once canary-gate lets go of it (undefined: nowhere, delete it). */
  handBackTo?: string;
  labels: Record<string, string>;
  annotations: Record<string, string>;
}

/** The TraefikService plan of a Canary; pure. */
export function traefikPlan(ctx: RouterContext): TraefikPlan {
  const { canary } = ctx;
  const apex = apexServiceName(canary);
  const serviceTarget = canary.spec.targetRef.kind === 'Service';
  const plan: TraefikPlan = {
    name: apex,
    namespace: ctx.namespace,
    primary: serviceTarget ? canary.spec.targetRef.name : `${apex}${PRIMARY_SUFFIX}`,
    canary: serviceTarget ? `${canary.spec.targetRef.name}${CANARY_SUFFIX}` : `${apex}${CANARY_SUFFIX}`,
    port: canary.spec.service?.port ?? ctx.service?.spec?.ports?.[0]?.port ?? 80,
    labels: { ...(canary.spec.service?.apex?.labels ?? {}) },
    annotations: { ...(canary.spec.service?.apex?.annotations ?? {}) },
  };
  const handBack = serviceTarget ? canary.spec.targetRef.name : ctx.service ? apex : undefined;
  if (handBack) plan.handBackTo = handBack;
  return plan;
}

// ------------------------------------------------------------------ pure builders

function isService(ref: ServiceRef): boolean {
  return (ref.kind ?? 'Service') === 'Service' && !ref.namespace;
}

/**
 * The split in force: {100, 0} when the TraefikService is absent; while it
 * mirrors, all to the primary and the percent copied to the canary.
 */
export function readWeights(ts: TraefikService | undefined, plan: Pick<TraefikPlan, 'primary' | 'canary'>): Weights {
  const m = ts?.spec?.mirroring;
  if (m) {
    const copy = (m.mirrors ?? []).find((x) => x.name === plan.canary && isService(x));
    const mirror = copy?.percent ?? 0;
    return { primary: 100, canary: 0, ...(mirror > 0 ? { mirror } : {}) };
  }
  let p = 0;
  let c = 0;
  for (const ref of ts?.spec?.weighted?.services ?? []) {
    if (!isService(ref)) continue;
    // Traefik counts an entry without a weight as weight 1.
    if (ref.name === plan.primary) p += ref.weight ?? 1;
    else if (ref.name === plan.canary) c += ref.weight ?? 1;
  }
  if (p + c === 0) return { primary: 100, canary: 0 };
  const canary = Math.round((100 * c) / (p + c));
  return { primary: 100 - canary, canary };
}

/** The sticky cookie in force (name and maxAge), if any. */
export function readSticky(ts: TraefikService | undefined): CookieSpec | undefined {
  return ts?.spec?.weighted?.sticky?.cookie;
}

/** The object as last read, stripped of what a replace must not carry. */
function editable(ts: TraefikService): TraefikService {
  const out = structuredClone(ts);
  delete out.status;
  delete out.metadata.managedFields;
  out.spec = out.spec ?? {};
  return out;
}

/** Our entry for a Service, keeping what a user added to the entry of that name. */
function entry(previous: ServiceRef[] | undefined, name: string, port: number, extra: Partial<ServiceRef>): ServiceRef {
  const old = (previous ?? []).find((r) => r.name === name && isService(r));
  const out: ServiceRef = { ...(old ? structuredClone(old) : {}), name, kind: 'Service', port, ...extra };
  if (extra.weight === undefined) delete out.weight;
  if (extra.percent === undefined) delete out.percent;
  return out;
}

/** What `desiredTraefikService` should put in force; undefined parts keep what is there. */
export interface TraefikSplit {
  weight?: number;
  mirror?: number;
  sticky?: Split['sticky'] | null;
}

/**
 * The TraefikService with the split in force. `split.weight` undefined keeps
 * the current weight; `split.mirror` undefined keeps the mirroring; `sticky`
 * undefined keeps the cookie, null removes it. Pure: `existing` is not
 * modified. Mirroring and a weight of the canary's own cannot be expressed
 * together by one TraefikService (the reconciler mirrors only at weight 0).
 */
export function desiredTraefikService(existing: TraefikService | undefined, plan: TraefikPlan, canary: Canary, split: TraefikSplit = {}): TraefikService {
  const ts: TraefikService = existing
    ? editable(existing)
    : {
        apiVersion: `${TRAEFIK_SERVICE_RESOURCE.group}/${TRAEFIK_SERVICE_RESOURCE.version}`,
        kind: 'TraefikService',
        metadata: { name: plan.name, namespace: plan.namespace },
        spec: {},
      };
  ts.metadata.labels = { ...(ts.metadata.labels ?? {}), ...plan.labels, [MANAGED_BY_LABEL]: MANAGED_BY };
  if (Object.keys(plan.annotations).length) ts.metadata.annotations = { ...(ts.metadata.annotations ?? {}), ...plan.annotations };
  if (!ownedBy(ts, canary)) ts.metadata.ownerReferences = withCanaryOwner(ts.metadata.ownerReferences, canary);

  const now = readWeights(existing, plan);
  const w = Math.min(100, Math.max(0, Math.round(split.weight ?? now.canary)));
  const mirror = Math.min(100, Math.max(0, Math.round(split.mirror ?? now.mirror ?? 0)));
  const old = existing?.spec ?? {};
  if (mirror > 0) {
    if (w > 0) throw new Error(`TraefikService ${plan.namespace}/${plan.name}: Traefik mirrors to the canary only while it has no weight of its own (asked: weight ${w}, mirror ${mirror})`);
    const main = old.mirroring?.name === plan.primary ? old.mirroring : undefined;
    const { mirrors: _mirrors, ...mainExtras } = main ?? { name: plan.primary };
    ts.spec = { mirroring: { ...structuredClone(mainExtras), name: plan.primary, kind: 'Service', port: plan.port, mirrors: [entry(main?.mirrors, plan.canary, plan.port, { percent: mirror })] } };
    return ts;
  }
  const previous = old.weighted?.services;
  const services = [entry(previous, plan.primary, plan.port, { weight: 100 - w })];
  // Only with a weight: Traefik refuses the whole TraefikService (and the
  // IngressRoute using it) while one of its Services has no ready endpoint,
  // as the canary's has before the copy is ready and after it scaled to zero.
  if (w > 0) services.push(entry(previous, plan.canary, plan.port, { weight: w }));
  const weighted: NonNullable<TraefikServiceSpec['weighted']> = { services };
  // A sticky cookie only while both sides have a share (the Split has one only then).
  const oldCookie = old.weighted?.sticky?.cookie;
  let cookie: CookieSpec | undefined;
  if (split.sticky === undefined) cookie = oldCookie ? structuredClone(oldCookie) : undefined;
  else if (split.sticky) cookie = { ...structuredClone(oldCookie ?? {}), name: split.sticky.canary.name, maxAge: split.sticky.canary.maxAge };
  if (cookie && w > 0 && w < 100) weighted.sticky = { cookie };
  ts.spec = { weighted };
  return ts;
}

/** The TraefikService handed back when the Canary goes: all to `handBackTo`, no ownerReference of this Canary. Pure. */
export function releasedTraefikService(existing: TraefikService, plan: TraefikPlan, canary: Canary, handBackTo: string): TraefikService {
  const ts = editable(existing);
  const previous = existing.spec?.weighted?.services;
  ts.spec = { weighted: { services: [entry(previous, handBackTo, plan.port, { weight: 1 })] } };
  const owners = (ts.metadata.ownerReferences ?? []).filter((o) => o.uid !== canary.metadata.uid);
  if (owners.length) ts.metadata.ownerReferences = owners;
  else delete ts.metadata.ownerReferences;
  return ts;
}

/** True when writing `desired` would change `existing` (spec, labels, annotations, owners). */
export function traefikServiceDiffers(existing: TraefikService | undefined, desired: TraefikService): boolean {
  if (!existing) return true;
  if (canonicalJson(existing.spec ?? {}) !== canonicalJson(desired.spec ?? {})) return true;
  const meta = (m: k8s.V1ObjectMeta) => canonicalJson({ l: m.labels ?? {}, a: m.annotations ?? {}, o: (m.ownerReferences ?? []).map((o) => o.uid) });
  return meta(existing.metadata) !== meta(desired.metadata);
}

// ------------------------------------------------------------------ built-in metrics

/**
 * Traefik names the service of a Kubernetes Service backend
 * `<namespace>-<service>-<port>@<provider>` (kubernetescrd for a
 * TraefikService, kubernetesgateway for an HTTPRoute): the canary's is
 * `<namespace>-<apex>-canary-<port>@...`.
 */
export const TRAEFIK_CANARY_SERVICE = 'service=~"{{ namespace }}-{{ service }}-canary-[0-9a-zA-Z-]+@kubernetes(crd|gateway)"';

export const TRAEFIK_BUILTIN_METRICS: Readonly<Record<string, string>> = {
  'request-success-rate':
    `sum(rate(traefik_service_requests_total{${TRAEFIK_CANARY_SERVICE},code!~"5.."}[{{ interval }}]))` +
    ` / sum(rate(traefik_service_requests_total{${TRAEFIK_CANARY_SERVICE}}[{{ interval }}])) * 100`,
  'request-duration': `histogram_quantile(0.99, sum by (le) (rate(traefik_service_request_duration_seconds_bucket{${TRAEFIK_CANARY_SERVICE}}[{{ interval }}]))) * 1000`,
};

// ------------------------------------------------------------------ the router

export interface TraefikRouterOptions {
  core: k8s.CoreV1Api;
  custom: k8s.CustomObjectsApi;
  /** Informer caches; without them every read is a GET. */
  caches?: { services: ObjectCache<k8s.V1Service>; traefikServices?: ObjectCache<TraefikService> };
}

/** The copy has a Service of its own; the TraefikService's weights move traffic; Traefik's metrics judge it. */
export const TRAEFIK_TRAITS: RouterTraits = { copySharesUserService: false, builtinMetrics: TRAEFIK_BUILTIN_METRICS };

export class TraefikRouter implements Router {
  readonly name = 'traefik';
  readonly traits = TRAEFIK_TRAITS;
  private readonly services: RouterServices;
  private readonly store: OwnedObjects<TraefikService>;

  constructor(opts: TraefikRouterOptions) {
    this.services = new RouterServices(opts.core, opts.caches?.services);
    const custom = opts.custom;
    this.store = new OwnedObjects<TraefikService>(
      customObjectApi<TraefikService>(custom, TRAEFIK_SERVICE_RESOURCE),
      opts.caches?.traefikServices,
    );
  }

  /** The canary copy's Pods get renamed selector labels: only `<svc>-canary` selects them. */
  canaryPodLabels(ctx: RouterContext, podLabels: Record<string, string>): Record<string, string> {
    if (ctx.canary.spec.targetRef.kind === 'Service') return { ...podLabels };
    return renameSelectorLabels(podLabels, selectorKeys(ctx.target, ctx.service));
  }

  /** Sized like the primary whatever the weight (as gatewayapi): Traefik may move a share before new Pods would be ready. */
  canaryReplicas(ctx: RouterContext, _weight: number, primaryReplicas: number): number {
    return sizedLikePrimary(ctx, primaryReplicas);
  }

  conflicts(ctx: RouterContext): string[] {
    const out: string[] = [];
    const plan = traefikPlan(ctx);
    if (ctx.canary.spec.targetRef.kind === 'Deployment') {
      for (const name of [plan.primary, plan.canary]) {
        const why = this.services.conflict(ctx.namespace, name, ctx.canary);
        if (why) out.push(why);
      }
    }
    const why = conflictOf(this.store.cached(plan.namespace, plan.name), ctx.canary, 'TraefikService');
    if (why) out.push(why);
    return out;
  }

  async reconcile(ctx: RouterContext): Promise<void> {
    await this.services.ensurePair(ctx);
    const plan = traefikPlan(ctx);
    await this.write(ctx, plan, (cur) => desiredTraefikService(cur, plan, ctx.canary));
  }

  async setWeight(ctx: RouterContext, split: Split): Promise<void> {
    const plan = traefikPlan(ctx);
    const want: TraefikSplit = { weight: split.weight, mirror: split.mirror ?? 0, sticky: split.sticky ?? null };
    // Every sync of a progressing run asks again: nothing to do when it is in force.
    const cached = this.store.cached(plan.namespace, plan.name);
    if (cached && !notOurs(cached, ctx.canary) && !traefikServiceDiffers(cached, desiredTraefikService(cached, plan, ctx.canary, want))) return;
    await this.services.ensurePair(ctx);
    await this.write(ctx, plan, (cur) => desiredTraefikService(cur, plan, ctx.canary, want));
  }

  getWeights(ctx: RouterContext): Weights {
    const plan = traefikPlan(ctx);
    return readWeights(this.store.cached(plan.namespace, plan.name), plan);
  }

  async finalize(ctx: RouterContext): Promise<void> {
    const plan = traefikPlan(ctx);
    const ts = await this.store.read(plan.namespace, plan.name);
    if (ts && !notOurs(ts, ctx.canary)) {
      // 1. Everything to the primary, no mirroring, no cookie.
      const current = await this.write(ctx, plan, (cur) => (cur ? desiredTraefikService(cur, plan, ctx.canary, { weight: 0, mirror: 0, sticky: null }) : undefined));
      // 2. Handed back to the Service the user's IngressRoute reached before (kept, given up), or removed.
      if (current && plan.handBackTo) {
        const to = plan.handBackTo;
        await this.write(ctx, plan, (cur) => (cur && ownedBy(cur, ctx.canary) ? releasedTraefikService(cur, plan, ctx.canary, to) : undefined));
      } else if (current) {
        await this.store.remove(plan.namespace, plan.name, current);
      }
    }
    await this.services.removePair(ctx);
  }

  // ---------------------------------------------------------------- internals

  /** Read, compute, write only on a difference; an object canary-gate did not create is refused. */
  private async write(ctx: RouterContext, plan: TraefikPlan, compute: (current: TraefikService | undefined) => TraefikService | undefined): Promise<TraefikService | undefined> {
    return this.store.write(
      plan.namespace,
      plan.name,
      (current) => {
        // A Canary being deleted never takes back what it handed back (its
        // ownerReference would make the garbage collector delete the
        // TraefikService the user's IngressRoute uses, once the Canary is gone).
        if (ctx.canary.metadata.deletionTimestamp && (!current || !ownedBy(current, ctx.canary))) return undefined;
        const desired = compute(current);
        return desired && traefikServiceDiffers(current, desired) ? desired : undefined;
      },
      { check: (current) => assertOurs(current, ctx.canary, 'TraefikService', `rename it or set spec.service.name of Canary ${ctx.canary.metadata.name} to another name`) },
    );
  }
}
