// The SMI router (`smi`, `smi:v1alpha1|v1alpha2|v1alpha3[:<mesh>]`,
// `linkerd`, `osm`): a Service Mesh Interface TrafficSplit named after the
// apex Service tells the mesh how to share the apex's traffic between
// `<apex>-primary` (the primary's Pods) and `<apex>-canary` (the canary
// copy's Pods, whose selector labels are renamed so that only that Service
// selects them). The router owns both Services exactly as gatewayapi does.
//
// One router per provider string, each writing one TrafficSplit version:
// linkerd v1alpha1 (weights are Kubernetes quantities, "100"), osm and plain
// smi v1alpha2 (integers), smi:v1alphaN as named. v1alpha3 adds `matches`:
// an A/B run (analysis.iterations with analysis.match) gets an
// HTTPRouteGroup (specs.smi-spec.io/v1alpha3, the version split v1alpha3 is
// specified with) built from the matches, and the TrafficSplit, limited to
// the requests matching it, sends them all to the canary; other requests
// keep going to the apex Service, whose selector matches the primary only.
// The CRD refuses analysis.match for the other versions (core/providers.ts).
//
// The TrafficSplit's spec is canary-gate's (service, backends, matches); its
// labels and annotations are the user's to add to, and are kept. A
// TrafficSplit or HTTPRouteGroup of that name that canary-gate did not create
// is never changed: conflicts() reports it and the run holds.
//
// Weights are never both 0 (Flagger treats that as an error, and meshes
// read it as "no split"): weight 0 is primary 100, canary 0.

import type * as k8s from '@kubernetes/client-node';
import type { Canary, HttpMatch, StringMatch } from '../../core/api/types.js';
import { CANARY_SUFFIX, MANAGED_BY, MANAGED_BY_LABEL, PRIMARY_SUFFIX } from '../../core/contract.js';
import { ROUTER_RESOURCES, smiVersion, type RouterResource, type SmiVersion } from '../../core/providers.js';
import { canonicalJson } from '../../core/revision.js';
import { apexServiceName, renameSelectorLabels, selectorKeys, withCanaryOwner } from '../apply/copy.js';
import type { ObjectCache } from '../observe/caches.js';
import { isTrafficShifting } from './kubernetes.js';
import { OwnedObjects, assertOurs, conflictOf, notOurs, customObjectApi } from './owned.js';
import type { Router, RouterContext, RouterTraits, Split, Weights } from './router.js';
import { escapeRegex } from './split.js';
import { RouterServices, sizedLikePrimary } from './services.js';

export const SPLIT_GROUP = 'split.smi-spec.io';
export const SPECS_GROUP = 'specs.smi-spec.io';
/** Suffix of the HTTPRouteGroup of an A/B run: `<apex>-canary-gate-ab`. */
export const ROUTE_GROUP_SUFFIX = '-canary-gate-ab';

// ------------------------------------------------------------------ shapes

export interface TrafficSplitBackend {
  service: string;
  /** v1alpha1: a Kubernetes quantity ("100"); v1alpha2 and later: an integer. */
  weight: number | string;
}

export interface TrafficSplitMatch {
  kind: string;
  name: string;
  apiGroup?: string;
}

export interface TrafficSplitSpec {
  service: string;
  backends: TrafficSplitBackend[];
  matches?: TrafficSplitMatch[];
}

export interface TrafficSplit {
  apiVersion: string;
  kind: 'TrafficSplit';
  metadata: k8s.V1ObjectMeta;
  spec: TrafficSplitSpec;
}

export interface RouteGroupMatch {
  name: string;
  pathRegex?: string;
  methods?: string[];
  /** One single-entry map per header: name -> regular expression (the wire format of specs v1alpha3). */
  headers?: Array<Record<string, string>>;
}

export interface HTTPRouteGroup {
  apiVersion: string;
  kind: 'HTTPRouteGroup';
  metadata: k8s.V1ObjectMeta;
  spec: { matches: RouteGroupMatch[] };
}

// ------------------------------------------------------------------ resources

function resource(group: string, version: string, plural: string): RouterResource {
  const r = ROUTER_RESOURCES.smi.find((x) => x.group === group && x.version === version && x.plural === plural);
  if (!r) throw new Error(`core/providers.ts lists no ${plural}.${group}/${version} for the smi family`);
  return r;
}

/** The TrafficSplit resource of a version (listed in ROUTER_RESOURCES.smi, so it is watched and granted). */
export function trafficSplitResource(version: SmiVersion): RouterResource {
  return resource(SPLIT_GROUP, version, 'trafficsplits');
}

/** The HTTPRouteGroup resource the v1alpha3 A/B runs write. */
export function routeGroupResource(): RouterResource {
  return resource(SPECS_GROUP, 'v1alpha3', 'httproutegroups');
}

// ------------------------------------------------------------------ the plan

export interface SplitPlan {
  version: SmiVersion;
  /** TrafficSplit name: the apex Service's. */
  name: string;
  namespace: string;
  /** spec.service of the TrafficSplit: spec.service.hosts[0], else the apex. */
  rootService: string;
  primary: string;
  canary: string;
  /** A/B strategy (analysis.iterations): the canary gets only the matching requests, and only on v1alpha3. */
  abStrategy: boolean;
  /** The HTTPRouteGroup of an A/B run on v1alpha3 (absent otherwise). */
  routeGroup?: { name: string; matches: RouteGroupMatch[] };
  labels: Record<string, string>;
  annotations: Record<string, string>;
  /** The Canary that owns the objects (their controller ownerReference). */
  owner: Canary;
}

/** The plan of a Canary for one TrafficSplit version; pure. */
export function splitPlan(ctx: RouterContext, version: SmiVersion): SplitPlan {
  const { canary } = ctx;
  const apex = apexServiceName(canary);
  const match = canary.spec.analysis?.match ?? [];
  const plan: SplitPlan = {
    version,
    name: apex,
    namespace: ctx.namespace,
    rootService: canary.spec.service?.hosts?.[0] || apex,
    primary: `${apex}${PRIMARY_SUFFIX}`,
    canary: `${apex}${CANARY_SUFFIX}`,
    abStrategy: !isTrafficShifting(canary) && match.length > 0,
    labels: { ...(canary.spec.service?.apex?.labels ?? {}) },
    annotations: { ...(canary.spec.service?.apex?.annotations ?? {}) },
    owner: canary,
  };
  if (plan.abStrategy && version === 'v1alpha3') plan.routeGroup = { name: `${apex}${ROUTE_GROUP_SUFFIX}`, matches: toRouteGroupMatches(match) };
  return plan;
}


/** A string match as the regular expression SMI route groups match with (header values and paths are regexes). */
export function matchRegex(m: StringMatch, what: string): string {
  if (m.exact !== undefined) return `^${escapeRegex(m.exact)}$`;
  if (m.prefix !== undefined) return `^${escapeRegex(m.prefix)}.*`;
  if (m.suffix !== undefined) return `.*${escapeRegex(m.suffix)}$`;
  if (m.regex !== undefined) return m.regex;
  throw new Error(`match on ${what} sets none of exact, prefix, suffix, regex`);
}

const METHODS = new Set(['GET', 'HEAD', 'PUT', 'POST', 'DELETE', 'CONNECT', 'OPTIONS', 'TRACE', 'PATCH']);

/**
 * Canary-gate HTTP matches as HTTPRouteGroup matches: each one a route
 * (its conditions all hold), a request matching any route matches. A cookie
 * is the `cookie` header's regex. Query parameters and source labels have no
 * SMI spelling (the CRD refuses them for smi); they are refused here too.
 */
export function toRouteGroupMatches(matches: HttpMatch[]): RouteGroupMatch[] {
  return matches.map((m, i) => {
    if (m.queryParams && Object.keys(m.queryParams).length) throw new Error('an SMI HTTPRouteGroup cannot match query parameters');
    if (m.sourceLabels && Object.keys(m.sourceLabels).length) throw new Error('an SMI HTTPRouteGroup cannot match source labels');
    const out: RouteGroupMatch = { name: `match-${i}` };
    if (m.uri) out.pathRegex = matchRegex(m.uri, 'the path');
    if (m.method) {
      const method = m.method.exact?.toUpperCase();
      if (!method || !METHODS.has(method)) throw new Error(`an HTTPRouteGroup matches a method exactly (one of ${[...METHODS].join(', ')}); got ${JSON.stringify(m.method)}`);
      out.methods = [method];
    }
    const headers = Object.entries(m.headers ?? {}).map(([name, sm]) => ({ [name.toLowerCase()]: matchRegex(sm, `header ${name}`) }));
    if (headers.length) out.headers = headers;
    return out;
  });
}

// ------------------------------------------------------------------ pure builders

/** A weight as the version spells it. */
export function weightValue(version: SmiVersion, weight: number): number | string {
  return version === 'v1alpha1' ? String(weight) : weight;
}

/**
 * A weight as written by any version: an integer, or a Kubernetes quantity
 * ("100", "500m", "1k"); NaN for something else.
 */
export function parseWeight(w: unknown): number {
  if (typeof w === 'number') return w;
  if (typeof w !== 'string') return Number.NaN;
  const m = /^([+-]?\d+(?:\.\d+)?)(m|k|M|G)?$/.exec(w.trim());
  if (!m) return Number.NaN;
  const scale = { m: 1e-3, k: 1e3, M: 1e6, G: 1e9 }[m[2] ?? ''] ?? 1;
  return Number(m[1]) * scale;
}

function hasOurMatch(split: TrafficSplit | undefined, plan: Pick<SplitPlan, 'name'>): boolean {
  return (split?.spec?.matches ?? []).some((m) => m.kind === 'HTTPRouteGroup' && m.name === `${plan.name}${ROUTE_GROUP_SUFFIX}`);
}

/** The split in force: the canary's share of the two backends' weights; {100, 0} without a TrafficSplit. */
export function readWeights(split: TrafficSplit | undefined, plan: Pick<SplitPlan, 'primary' | 'canary'>): Weights {
  let p = 0;
  let c = 0;
  for (const b of split?.spec?.backends ?? []) {
    const w = parseWeight(b.weight);
    if (!Number.isFinite(w) || w < 0) continue;
    if (b.service === plan.primary) p += w;
    else if (b.service === plan.canary) c += w;
  }
  if (p + c === 0) return { primary: 100, canary: 0 };
  const canary = Math.round((100 * c) / (p + c));
  return { primary: 100 - canary, canary };
}

/** The TrafficSplit as last read, stripped of what a replace must not carry. */
function editable(split: TrafficSplit): TrafficSplit {
  const out = structuredClone(split) as TrafficSplit & { status?: unknown };
  delete out.status;
  delete out.metadata.managedFields;
  return out;
}

function withOurMetadata<T extends { metadata: k8s.V1ObjectMeta }>(obj: T, plan: SplitPlan): T {
  obj.metadata.labels = { ...(obj.metadata.labels ?? {}), ...plan.labels, [MANAGED_BY_LABEL]: MANAGED_BY };
  if (Object.keys(plan.annotations).length) obj.metadata.annotations = { ...(obj.metadata.annotations ?? {}), ...plan.annotations };
  obj.metadata.ownerReferences = withCanaryOwner(obj.metadata.ownerReferences, plan.owner);
  return obj;
}

/**
 * The TrafficSplit in the wanted state. `weight` undefined keeps the split
 * in force (0 for a new one); `ab` true sends the requests matching the
 * plan's HTTPRouteGroup to the canary (v1alpha3 A/B runs), false removes the
 * matches. A leftover A/B split whose Canary no longer asks for one goes
 * back to the primary, never to "everything to the canary". Pure.
 */
export function desiredSplit(existing: TrafficSplit | undefined, plan: SplitPlan, weight?: number, ab?: boolean): TrafficSplit {
  const split: TrafficSplit = existing
    ? editable(existing)
    : { apiVersion: `${SPLIT_GROUP}/${plan.version}`, kind: 'TrafficSplit', metadata: { name: plan.name, namespace: plan.namespace }, spec: { service: plan.rootService, backends: [] } };
  split.apiVersion = `${SPLIT_GROUP}/${plan.version}`;
  withOurMetadata(split, plan);
  let w: number;
  let matched: boolean;
  if (weight === undefined) {
    matched = hasOurMatch(existing, plan) && !!plan.routeGroup;
    w = hasOurMatch(existing, plan) && !plan.routeGroup ? 0 : readWeights(existing, plan).canary;
  } else {
    matched = !!ab && !!plan.routeGroup;
    w = Math.min(100, Math.max(0, Math.round(weight)));
  }
  // A/B: only the matching requests are split, and all of them go to the canary.
  if (plan.abStrategy) w = matched ? 100 : 0;
  const spec: TrafficSplitSpec = {
    service: plan.rootService,
    backends: [
      { service: plan.primary, weight: weightValue(plan.version, 100 - w) },
      { service: plan.canary, weight: weightValue(plan.version, w) },
    ],
  };
  if (matched && plan.routeGroup) spec.matches = [{ kind: 'HTTPRouteGroup', name: plan.routeGroup.name }];
  split.spec = spec;
  return split;
}

/** The HTTPRouteGroup of a v1alpha3 A/B run, the user's labels and annotations kept. Pure. */
export function desiredRouteGroup(existing: HTTPRouteGroup | undefined, plan: SplitPlan): HTTPRouteGroup | undefined {
  if (!plan.routeGroup) return undefined;
  const group: HTTPRouteGroup = existing
    ? (() => {
        const out = structuredClone(existing);
        delete out.metadata.managedFields;
        return out;
      })()
    : { apiVersion: `${SPECS_GROUP}/v1alpha3`, kind: 'HTTPRouteGroup', metadata: { name: plan.routeGroup.name, namespace: plan.namespace }, spec: { matches: [] } };
  withOurMetadata(group, plan);
  group.spec = { matches: structuredClone(plan.routeGroup.matches) };
  return group;
}

/** Normal form of a TrafficSplit spec (weights as numbers), so that equal splits compare equal. */
function normalSplitSpec(spec: TrafficSplitSpec | undefined): unknown {
  return {
    service: spec?.service ?? '',
    backends: (spec?.backends ?? []).map((b) => ({ service: b.service, weight: parseWeight(b.weight), quoted: typeof b.weight === 'string' })),
    matches: (spec?.matches ?? []).map((m) => ({ kind: m.kind, name: m.name })),
  };
}

function metaKey(m: k8s.V1ObjectMeta): string {
  return canonicalJson({ l: m.labels ?? {}, a: m.annotations ?? {}, o: (m.ownerReferences ?? []).map((o) => o.uid) });
}

/** True when writing `desired` would change `existing` (spec, labels, annotations, owners). */
export function splitDiffers(existing: TrafficSplit | undefined, desired: TrafficSplit): boolean {
  if (!existing) return true;
  return canonicalJson(normalSplitSpec(existing.spec)) !== canonicalJson(normalSplitSpec(desired.spec)) || metaKey(existing.metadata) !== metaKey(desired.metadata);
}

export function routeGroupDiffers(existing: HTTPRouteGroup | undefined, desired: HTTPRouteGroup): boolean {
  if (!existing) return true;
  return canonicalJson(existing.spec ?? {}) !== canonicalJson(desired.spec) || metaKey(existing.metadata) !== metaKey(desired.metadata);
}

// ------------------------------------------------------------------ built-in metrics

/**
 * Linkerd's proxy metrics (Flagger's linkerd queries), of the inbound side
 * of the canary copy's Pods: `response_total` classified by the proxy, and
 * `response_latency_ms_bucket` (already in milliseconds).
 */
const LINKERD_CANARY = 'namespace="{{ namespace }}",deployment="{{ target }}-canary",direction="inbound"';
export const LINKERD_METRICS: Readonly<Record<string, string>> = {
  'request-success-rate':
    `sum(rate(response_total{${LINKERD_CANARY},classification!="failure"}[{{ interval }}]))` + ` / sum(rate(response_total{${LINKERD_CANARY}}[{{ interval }}])) * 100`,
  'request-duration': `histogram_quantile(0.99, sum by (le) (rate(response_latency_ms_bucket{${LINKERD_CANARY}}[{{ interval }}])))`,
};

/**
 * OSM's Envoy metrics (Flagger's osm queries): `osm_request_total` and
 * `osm_request_duration_ms_bucket` by destination workload, the canary copy.
 */
const OSM_CANARY = 'destination_namespace="{{ namespace }}",destination_kind="Deployment",destination_name="{{ target }}-canary"';
export const OSM_METRICS: Readonly<Record<string, string>> = {
  'request-success-rate':
    `sum(rate(osm_request_total{${OSM_CANARY},response_code!~"5.*"}[{{ interval }}]))` + ` / sum(rate(osm_request_total{${OSM_CANARY}}[{{ interval }}])) * 100`,
  'request-duration': `histogram_quantile(0.99, sum by (le) (rate(osm_request_duration_ms_bucket{${OSM_CANARY}}[{{ interval }}])))`,
};

/** The mesh a provider string names: linkerd, osm, `smi:<version>:<mesh>`, or none (plain smi). */
export function smiMesh(provider: string): string | undefined {
  if (provider === 'linkerd' || provider === 'osm') return provider;
  return /^smi:v1alpha[123]:(.+)$/.exec(provider)?.[1];
}

/**
 * The traits of an SMI provider string: the copy has a Service of its own,
 * and the built-in metrics read the mesh's proxies where the provider string
 * names a mesh whose metrics canary-gate knows (linkerd, osm); other meshes
 * keep the Pod-level defaults.
 */
export function smiTraits(provider: string): RouterTraits {
  const mesh = smiMesh(provider);
  if (mesh === 'linkerd') return LINKERD_TRAITS;
  if (mesh === 'osm') return OSM_TRAITS;
  return SMI_TRAITS;
}
const SMI_TRAITS: RouterTraits = { copySharesUserService: false };
const LINKERD_TRAITS: RouterTraits = { copySharesUserService: false, builtinMetrics: LINKERD_METRICS };
const OSM_TRAITS: RouterTraits = { copySharesUserService: false, builtinMetrics: OSM_METRICS };

// ------------------------------------------------------------------ the router

export interface SmiRouterOptions {
  core: k8s.CoreV1Api;
  custom: k8s.CustomObjectsApi;
  /** The exact provider string: it decides the TrafficSplit version and the built-in metrics. */
  provider: string;
  /** Informer caches; without them every read is a GET. */
  caches?: { services: ObjectCache<k8s.V1Service>; routerObjects?: (r: RouterResource) => ObjectCache<unknown> | undefined };
}


export class SmiRouter implements Router {
  readonly name: string;
  readonly traits: RouterTraits;
  readonly version: SmiVersion;
  private readonly services: RouterServices;
  private readonly splits: OwnedObjects<TrafficSplit>;
  private readonly groups: OwnedObjects<HTTPRouteGroup>;

  constructor(opts: SmiRouterOptions) {
    const version = smiVersion(opts.provider);
    if (!version) throw new Error(`${opts.provider} is not an SMI provider`);
    this.name = opts.provider;
    this.version = version;
    this.traits = smiTraits(opts.provider);
    this.services = new RouterServices(opts.core, opts.caches?.services);
    const splitResource = trafficSplitResource(version);
    const groupResource = routeGroupResource();
    this.splits = new OwnedObjects<TrafficSplit>(customObjectApi<TrafficSplit>(opts.custom, splitResource), opts.caches?.routerObjects?.(splitResource) as ObjectCache<TrafficSplit> | undefined);
    this.groups = new OwnedObjects<HTTPRouteGroup>(customObjectApi<HTTPRouteGroup>(opts.custom, groupResource), opts.caches?.routerObjects?.(groupResource) as ObjectCache<HTTPRouteGroup> | undefined);
  }

  /** The copy's selector labels are renamed: only `<apex>-canary` selects its Pods, and the apex Service keeps the primary's. */
  canaryPodLabels(ctx: RouterContext, podLabels: Record<string, string>): Record<string, string> {
    return renameSelectorLabels(podLabels, selectorKeys(ctx.target, ctx.service));
  }

  /** Sized like the primary (at least one Pod), whatever the weight: the mesh may move a share to it at once. */
  canaryReplicas(ctx: RouterContext, _weight: number, primaryReplicas: number): number {
    return sizedLikePrimary(ctx, primaryReplicas);
  }

  conflicts(ctx: RouterContext): string[] {
    if (ctx.canary.spec.targetRef.kind !== 'Deployment') return [];
    const plan = this.plan(ctx);
    const out = this.services.pairConflicts(ctx);
    const split = conflictOf(this.splits.cached(plan.namespace, plan.name), ctx.canary, 'TrafficSplit');
    if (split) out.push(split);
    if (plan.routeGroup) {
      const group = conflictOf(this.groups.cached(plan.namespace, plan.routeGroup.name), ctx.canary, 'HTTPRouteGroup');
      if (group) out.push(group);
    }
    return out;
  }

  async reconcile(ctx: RouterContext): Promise<void> {
    const plan = this.checked(ctx);
    await this.services.ensurePair(ctx);
    if (plan.routeGroup) await this.writeRouteGroup(ctx, plan);
    await this.writeSplit(ctx, plan, (cur) => desiredSplit(cur, plan));
    // An A/B configuration removed from the Canary: its route group goes once the split no longer names it.
    if (!plan.routeGroup) await this.removeRouteGroup(ctx, plan);
  }

  async setWeight(ctx: RouterContext, split: Split): Promise<void> {
    const plan = this.checked(ctx);
    const ab = !!plan.routeGroup && split.weight > 0 && (split.match?.length ?? 0) > 0;
    // The common case, every sync of a progressing run: the split is in force already.
    const cached = this.splits.cached(plan.namespace, plan.name);
    if (cached && (!ab || this.routeGroupInPlace(plan)) && !splitDiffers(cached, desiredSplit(cached, plan, split.weight, ab))) return;
    await this.services.ensurePair(ctx);
    // The route group before the split that names it.
    if (ab) await this.writeRouteGroup(ctx, plan);
    await this.writeSplit(ctx, plan, (cur) => desiredSplit(cur, plan, split.weight, ab));
  }

  getWeights(ctx: RouterContext): Weights {
    const plan = this.plan(ctx);
    return readWeights(this.splits.cached(plan.namespace, plan.name), plan);
  }

  async finalize(ctx: RouterContext): Promise<void> {
    if (ctx.canary.spec.targetRef.kind !== 'Deployment') return;
    const plan = this.plan(ctx);
    const current = await this.splits.read(plan.namespace, plan.name);
    if (current && !notOurs(current, ctx.canary)) {
      // 1. Everything to the primary, while the Services still exist.
      const back = await this.splits.write(plan.namespace, plan.name, (cur) => (cur ? this.ifDiffers(cur, desiredSplit(cur, plan, 0, false)) : undefined), {
        check: (cur) => assertOurs(cur, ctx.canary, 'TrafficSplit'),
      });
      // 2. Then what is ours goes: without a TrafficSplit the mesh sends the apex's traffic to its own endpoints, the primary's.
      if (back) await this.splits.remove(plan.namespace, plan.name, back);
    }
    await this.removeRouteGroup(ctx, plan);
    await this.services.removePair(ctx);
  }

  // ---------------------------------------------------------------- internals

  private plan(ctx: RouterContext): SplitPlan {
    return splitPlan(ctx, this.version);
  }

  /** The plan of a Canary this router can route, or an error saying what is missing. */
  private checked(ctx: RouterContext): SplitPlan {
    if (ctx.canary.spec.targetRef.kind !== 'Deployment') throw new Error(`the ${this.name} provider routes Deployment targets only; ${ctx.canary.spec.targetRef.kind} ${ctx.canary.spec.targetRef.name} has none of the Pods a mesh splits`);
    const plan = this.plan(ctx);
    // The mesh splits the traffic sent to the apex Service: without it there is nothing to split.
    if (!ctx.service) throw new Error(`Service ${ctx.namespace}/${plan.name} does not exist: the ${this.name} provider splits the traffic of the apex Service; create it (or set spec.service.name)`);
    return plan;
  }

  private routeGroupInPlace(plan: SplitPlan): boolean {
    const cached = plan.routeGroup ? this.groups.cached(plan.namespace, plan.routeGroup.name) : undefined;
    const desired = desiredRouteGroup(cached, plan);
    return !!desired && !routeGroupDiffers(cached, desired);
  }

  private ifDiffers(current: TrafficSplit | undefined, desired: TrafficSplit): TrafficSplit | undefined {
    return splitDiffers(current, desired) ? desired : undefined;
  }

  private async writeSplit(ctx: RouterContext, plan: SplitPlan, compute: (current: TrafficSplit | undefined) => TrafficSplit): Promise<void> {
    await this.splits.write(plan.namespace, plan.name, (cur) => this.ifDiffers(cur, compute(cur)), { check: (cur) => assertOurs(cur, ctx.canary, 'TrafficSplit') });
  }

  private async writeRouteGroup(ctx: RouterContext, plan: SplitPlan): Promise<void> {
    const name = plan.routeGroup?.name;
    if (!name) return;
    await this.groups.write(
      plan.namespace,
      name,
      (cur) => {
        const desired = desiredRouteGroup(cur, plan) as HTTPRouteGroup;
        return routeGroupDiffers(cur, desired) ? desired : undefined;
      },
      { check: (cur) => assertOurs(cur, ctx.canary, 'HTTPRouteGroup') },
    );
  }

  /** Deletes our HTTPRouteGroup, if there is one (only v1alpha3 writes any). */
  private async removeRouteGroup(ctx: RouterContext, plan: SplitPlan): Promise<void> {
    if (this.version !== 'v1alpha3') return;
    const name = `${plan.name}${ROUTE_GROUP_SUFFIX}`;
    const group = await this.groups.read(plan.namespace, name);
    if (group && !notOurs(group, ctx.canary)) await this.groups.remove(plan.namespace, name, group);
  }
}
