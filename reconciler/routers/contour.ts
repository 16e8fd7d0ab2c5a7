// The `contour` router: a Contour HTTPProxy (projectcontour.io/v1) named
// after the apex Service, splitting requests between `<apex>-primary` and
// `<apex>-canary` (Services the router owns, as with gatewayapi) by the
// weights of its services.
//
// The proxy has no virtualhost: like Flagger's, it is meant to be included
// by the user's root HTTPProxy (`includes: [{name: <apex>}]`), which keeps
// the host, TLS and path prefix. A user may also add a virtualhost to it to
// make it a root: fields the router does not own are kept.
//
// What the router owns: `spec.routes`, whole (Contour routes have no name to
// tell ours from a user's, and every one of them is derived from the
// Canary). Its layout:
//   - one A/B route per analysis.match entry while the canary has traffic
//     (conditions from the match, all to `<apex>-canary`); Contour orders
//     routes by specificity, so these win over the catch-all;
//   - the weighted route last: prefix `/`, `<apex>-primary` and
//     `<apex>-canary` with the weights; while mirroring (the canary has no
//     weight then) `<apex>-canary` is instead a `mirror: true` entry whose
//     `weight` is the percent of requests copied (omitted for 100).
// Every route carries spec.service.timeout (`timeoutPolicy.response`),
// spec.service.retries (`retryPolicy`) and spec.service.headers
// (`requestHeadersPolicy`/`responseHeadersPolicy`; Contour can only set or
// remove a header, so `add` is written as `set`).
//
// When the Canary goes, the proxy is handed back rather than deleted: the
// user's root HTTPProxy includes it, and a root including a missing proxy is
// invalid to Contour (its whole virtualhost would stop serving). All traffic
// first goes to the primary, then the routes are pointed at the apex
// Service and the Canary's ownership is removed, so garbage collection
// spares it; the user deletes it once the root no longer includes it.

import type * as k8s from '@kubernetes/client-node';
import type { Canary, HeaderOperations, HttpMatch, StringMatch } from '../../core/api/types.js';
import { CANARY_SUFFIX, MANAGED_BY, MANAGED_BY_LABEL, PRIMARY_SUFFIX } from '../../core/contract.js';
import type { RouterResource } from '../../core/providers.js';
import { canonicalJson } from '../../core/revision.js';
import { parseDuration } from '../decide/analysis-config.js';
import { apexServiceName, canaryOwnerReference, ownedBy, withCanaryOwner } from '../apply/copy.js';
import type { ObjectCache } from '../observe/caches.js';
import { gatewayDuration } from './gatewayapi.js';
import { isTrafficShifting } from './kubernetes.js';

import { OwnedObjects, assertOurs, conflictOf, customObjectApi, dropOwnership } from './owned.js';
import type { Router, RouterContext, RouterTraits, Split, Weights } from './router.js';
import { escapeRegex } from './split.js';
import { RouterServices, renamedCanaryPodLabels, sizedLikePrimary } from './services.js';

export const HTTPPROXY_RESOURCE: RouterResource = { group: 'projectcontour.io', version: 'v1', plural: 'httpproxies', kind: 'HTTPProxy' };

// ------------------------------------------------------------------ HTTPProxy shapes (the parts we write)

export interface ProxyService {
  name: string;
  port: number;
  weight?: number;
  mirror?: boolean;
  [other: string]: unknown;
}

export interface HeaderCondition {
  name: string;
  exact?: string;
  regex?: string;
  present?: boolean;
  [other: string]: unknown;
}

export interface MatchCondition {
  prefix?: string;
  exact?: string;
  regex?: string;
  header?: HeaderCondition;
  queryParameter?: { name: string; exact?: string; prefix?: string; regex?: string };
}

export interface HeadersPolicy {
  set?: Array<{ name: string; value: string }>;
  remove?: string[];
}

export interface ProxyRoute {
  conditions?: MatchCondition[];
  services?: ProxyService[];
  timeoutPolicy?: { response?: string };
  retryPolicy?: { count: number; perTryTimeout?: string; retryOn?: string[] };
  requestHeadersPolicy?: HeadersPolicy;
  responseHeadersPolicy?: HeadersPolicy;
  [other: string]: unknown;
}

export interface HTTPProxy {
  apiVersion: string;
  kind: 'HTTPProxy';
  metadata: k8s.V1ObjectMeta;
  spec: { routes?: ProxyRoute[]; virtualhost?: unknown; includes?: unknown[]; [other: string]: unknown };
  status?: unknown;
}

// ------------------------------------------------------------------ the plan: what the Canary asks of the proxy

export interface ProxyPlan {
  name: string;
  namespace: string;
  primary: string;
  canary: string;
  port: number;
  /** A Service target's canary copy exists only during a run: Contour marks a proxy naming a missing Service invalid. */
  canaryAlways: boolean;
  abStrategy: boolean;
  /** What every route of ours carries (timeouts, retries, header policies). */
  policies: Pick<ProxyRoute, 'timeoutPolicy' | 'retryPolicy' | 'requestHeadersPolicy' | 'responseHeadersPolicy'>;
  owner: k8s.V1OwnerReference;
}

function headersPolicy(ops: HeaderOperations | undefined): HeadersPolicy | undefined {
  if (!ops) return undefined;
  const set = new Map<string, string>();
  // Contour sets (replaces) headers; an `add` is the closest it can do.
  for (const [k, v] of Object.entries(ops.add ?? {})) set.set(k, v);
  for (const [k, v] of Object.entries(ops.set ?? {})) set.set(k, v);
  const out: HeadersPolicy = {};
  if (set.size) out.set = [...set].map(([name, value]) => ({ name, value }));
  if (ops.remove?.length) out.remove = [...ops.remove];
  return Object.keys(out).length ? out : undefined;
}

/** The proxy plan of a Canary; pure. */
export function proxyPlan(ctx: RouterContext): ProxyPlan {
  const { canary } = ctx;
  const service = canary.spec.service;
  const serviceTarget = canary.spec.targetRef.kind === 'Service';
  const apex = serviceTarget ? canary.spec.targetRef.name : apexServiceName(canary);
  const policies: ProxyPlan['policies'] = {};
  if (service?.timeout) policies.timeoutPolicy = { response: gatewayDuration(parseDuration(service.timeout)) };
  if (service?.retries) {
    const r = service.retries;
    // count written always: the CRD defaults it to 1, and a stored default must compare equal.
    const retry: NonNullable<ProxyRoute['retryPolicy']> = { count: r.attempts ?? 1 };
    if (r.perTryTimeout) retry.perTryTimeout = gatewayDuration(parseDuration(r.perTryTimeout));
    const on = (r.retryOn ?? '').split(',').map((s) => s.trim()).filter(Boolean);
    if (on.length) retry.retryOn = on;
    policies.retryPolicy = retry;
  }
  const req = headersPolicy(service?.headers?.request);
  if (req) policies.requestHeadersPolicy = req;
  const res = headersPolicy(service?.headers?.response);
  if (res) policies.responseHeadersPolicy = res;
  return {
    name: apex,
    namespace: ctx.namespace,
    primary: serviceTarget ? apex : `${apex}${PRIMARY_SUFFIX}`,
    canary: `${apex}${CANARY_SUFFIX}`,
    port: service?.port ?? ctx.service?.spec?.ports?.[0]?.port ?? 80,
    canaryAlways: !serviceTarget,
    abStrategy: !isTrafficShifting(canary) && (canary.spec.analysis?.match?.length ?? 0) > 0,
    policies,
    owner: canaryOwnerReference(canary),
  };
}


function headerCondition(name: string, m: StringMatch): HeaderCondition {
  if (m.exact !== undefined) return { name, exact: m.exact };
  if (m.regex !== undefined) return { name, regex: m.regex };
  if (m.prefix !== undefined) return { name, regex: `${escapeRegex(m.prefix)}.*` };
  if (m.suffix !== undefined) return { name, regex: `.*${escapeRegex(m.suffix)}` };
  throw new Error(`analysis.match: header ${name} sets none of exact, prefix, suffix, regex`);
}

/**
 * analysis.match as Contour route conditions, one list per match entry (the
 * entries are alternatives: one route each). Headers (cookies through
 * headers.cookie), query parameters and the uri are expressible; a method or
 * source labels are refused with an error saying so.
 */
export function toConditions(matches: HttpMatch[]): MatchCondition[][] {
  return matches.map((m, i) => {
    const at = `analysis.match[${i}]`;
    if (m.method) throw new Error(`${at} matches the method, which the contour provider cannot express (Contour matches paths, headers and query parameters)`);
    if (m.sourceLabels && Object.keys(m.sourceLabels).length) throw new Error(`${at} matches source labels, which only the istio provider can express`);
    const out: MatchCondition[] = [];
    if (m.uri?.exact !== undefined) out.push({ exact: m.uri.exact });
    else if (m.uri?.prefix !== undefined) out.push({ prefix: m.uri.prefix });
    else if (m.uri?.regex !== undefined) out.push({ regex: m.uri.regex });
    else if (m.uri?.suffix !== undefined) out.push({ regex: `.*${escapeRegex(m.uri.suffix)}` });
    else out.push({ prefix: '/' });
    for (const [name, sm] of Object.entries(m.headers ?? {})) out.push({ header: headerCondition(name, sm) });
    for (const [name, sm] of Object.entries(m.queryParams ?? {})) {
      const q = headerCondition(name, sm);
      const { name: _n, ...rest } = q;
      out.push({ queryParameter: { name, ...(rest as { exact?: string; regex?: string }) } });
    }
    if (out.length === 1) throw new Error(`${at} has no condition`);
    return out;
  });
}

/** The split the proxy's routes put in force. */
export interface ProxySplit {
  weight: number;
  /** A/B route conditions (empty: no A/B route). */
  ab: MatchCondition[][];
  /** Percent of requests mirrored to the canary (0: none). */
  mirror: number;
}

function isAbRoute(r: ProxyRoute, plan: Pick<ProxyPlan, 'canary'>): boolean {
  return (r.conditions ?? []).some((c) => c.header || c.queryParameter || c.exact || c.regex || (c.prefix && c.prefix !== '/')) && (r.services ?? []).every((s) => s.name === plan.canary);
}

/** What the proxy's routes say (an absent proxy: all to the primary). */
export function readSplit(proxy: HTTPProxy | undefined, plan: Pick<ProxyPlan, 'primary' | 'canary'>): ProxySplit {
  const routes = proxy?.spec?.routes ?? [];
  const weighted = routes[routes.length - 1];
  const ab = routes.filter((r) => isAbRoute(r, plan)).map((r) => structuredClone(r.conditions ?? []));
  if (!weighted || isAbRoute(weighted, plan)) return { weight: 0, ab, mirror: 0 };
  let p = 0;
  let c = 0;
  let mirror = 0;
  for (const s of weighted.services ?? []) {
    if (s.mirror) {
      if (s.name === plan.canary) mirror = s.weight ?? 100;
      continue;
    }
    if (s.name === plan.primary) p += s.weight ?? 0;
    else if (s.name === plan.canary) c += s.weight ?? 0;
  }
  const weight = p + c === 0 ? 0 : Math.round((100 * c) / (p + c));
  return { weight, ab, mirror };
}

/** Our routes for a split; pure. */
export function proxyRoutes(plan: ProxyPlan, split: ProxySplit): ProxyRoute[] {
  const w = plan.abStrategy ? 0 : Math.min(100, Math.max(0, Math.round(split.weight)));
  const services: ProxyService[] = [{ name: plan.primary, port: plan.port, weight: 100 - w }];
  // Mirroring happens while the canary has no weight: then the canary is named once, as the mirror.
  const mirroring = split.mirror > 0 && w === 0;
  if ((plan.canaryAlways || w > 0) && !mirroring) services.push({ name: plan.canary, port: plan.port, weight: w });
  if (mirroring) {
    const m: ProxyService = { name: plan.canary, port: plan.port, mirror: true };
    if (split.mirror < 100) m.weight = Math.max(1, Math.round(split.mirror));
    services.push(m);
  }
  const policies = structuredClone(plan.policies);
  const routes: ProxyRoute[] = split.ab.map((conditions) => ({ conditions: structuredClone(conditions), services: [{ name: plan.canary, port: plan.port, weight: 100 }], ...structuredClone(policies) }));
  routes.push({ conditions: [{ prefix: '/' }], services, ...policies });
  return routes;
}

/** The proxy wanted: `existing` (fields we do not own kept) with our routes for `split`; pure. */
export function desiredProxy(existing: HTTPProxy | undefined, plan: ProxyPlan, split: ProxySplit, canary: Canary): HTTPProxy {
  const proxy: HTTPProxy = existing
    ? editable(existing)
    : { apiVersion: 'projectcontour.io/v1', kind: 'HTTPProxy', metadata: { name: plan.name, namespace: plan.namespace }, spec: {} };
  proxy.metadata.labels = { ...(proxy.metadata.labels ?? {}), [MANAGED_BY_LABEL]: MANAGED_BY };
  proxy.metadata.ownerReferences = existing ? withOwner(existing.metadata.ownerReferences, canary) : [plan.owner];
  proxy.spec.routes = proxyRoutes(plan, split);
  return proxy;
}

function editable(p: HTTPProxy): HTTPProxy {
  const out = structuredClone(p);
  delete out.status;
  delete out.metadata.managedFields;
  out.spec = out.spec ?? {};
  return out;
}

function withOwner(existing: k8s.V1OwnerReference[] | undefined, canary: Canary): k8s.V1OwnerReference[] {
  const list = existing ?? [];
  return list.some((o) => o.uid === canary.metadata.uid && o.controller) ? list : withCanaryOwner(list, canary);
}

/**
 * The proxy handed back to the user when the Canary goes: every route of
 * ours sends everything to `apex`, policies kept, and the Canary's
 * ownership (ownerReference, managed-by label) removed. Pure.
 */
export function handedBack(existing: HTTPProxy, plan: ProxyPlan, apex: string, canary: Canary): HTTPProxy {
  const out = editable(existing);
  out.spec.routes = [{ conditions: [{ prefix: '/' }], services: [{ name: apex, port: plan.port, weight: 100 }], ...structuredClone(plan.policies) }];
  dropOwnership(out.metadata, canary);
  return out;
}

/** True when writing `desired` would change `existing` (spec, labels, annotations, owners). */
export function proxyDiffers(existing: HTTPProxy | undefined, desired: HTTPProxy): boolean {
  if (!existing) return true;
  const view = (p: HTTPProxy) => canonicalJson({ s: p.spec ?? {}, l: p.metadata.labels ?? {}, a: p.metadata.annotations ?? {}, o: (p.metadata.ownerReferences ?? []).map((o) => o.uid) });
  return view(existing) !== view(desired);
}

// ------------------------------------------------------------------ built-in metrics

/**
 * Envoy's upstream cluster statistics as Contour names them:
 * `envoy_cluster_name="<namespace>_<service>_<port>"`; the canary is the
 * `<apex>-canary` Service. `envoy_cluster_upstream_rq_time` is in
 * milliseconds already.
 */
const CONTOUR_CANARY = 'envoy_cluster_name=~"{{ namespace }}_{{ service }}-canary_[0-9a-zA-Z-]+"';

export const CONTOUR_METRICS: Readonly<Record<string, string>> = {
  'request-success-rate':
    `sum(rate(envoy_cluster_upstream_rq{${CONTOUR_CANARY},envoy_response_code!~"5.*"}[{{ interval }}]))` +
    ` / sum(rate(envoy_cluster_upstream_rq{${CONTOUR_CANARY}}[{{ interval }}])) * 100`,
  'request-duration': `histogram_quantile(0.99, sum by (le) (rate(envoy_cluster_upstream_rq_time_bucket{${CONTOUR_CANARY}}[{{ interval }}])))`,
};

// ------------------------------------------------------------------ the router

export interface ContourRouterOptions {
  core: k8s.CoreV1Api;
  custom: k8s.CustomObjectsApi;
  caches?: { services: ObjectCache<k8s.V1Service>; routerObjects?: (r: RouterResource) => ObjectCache<unknown> | undefined };
}

export const CONTOUR_TRAITS: RouterTraits = { copySharesUserService: false, builtinMetrics: CONTOUR_METRICS };

export class ContourRouter implements Router {
  readonly name = 'contour';
  readonly traits = CONTOUR_TRAITS;
  private readonly services: RouterServices;
  private readonly proxies: OwnedObjects<HTTPProxy>;

  constructor(opts: ContourRouterOptions) {
    this.services = new RouterServices(opts.core, opts.caches?.services);
    const custom = opts.custom;
    this.proxies = new OwnedObjects<HTTPProxy>(
      customObjectApi<HTTPProxy>(custom, HTTPPROXY_RESOURCE),
      opts.caches?.routerObjects?.(HTTPPROXY_RESOURCE) as ObjectCache<HTTPProxy> | undefined,
    );
  }

  canaryPodLabels(ctx: RouterContext, podLabels: Record<string, string>): Record<string, string> {
    return renamedCanaryPodLabels(ctx, podLabels);
  }

  canaryReplicas(ctx: RouterContext, _weight: number, primaryReplicas: number): number {
    return sizedLikePrimary(ctx, primaryReplicas);
  }

  /** Names taken, and an analysis.match Contour cannot express (reported on the Canary; no run starts). */
  conflicts(ctx: RouterContext): string[] {
    const out = this.services.pairConflicts(ctx);
    const match = ctx.canary.spec.analysis?.match;
    if (match?.length) {
      try {
        toConditions(match);
      } catch (err) {
        out.push((err as Error).message);
      }
    }
    const plan = proxyPlan(ctx);
    const why = conflictOf(this.proxies.cached(plan.namespace, plan.name), ctx.canary, 'HTTPProxy', this.hint(ctx));
    if (why) out.push(why);
    return out;
  }

  async reconcile(ctx: RouterContext): Promise<void> {
    const match = ctx.canary.spec.analysis?.match;
    if (match?.length) toConditions(match); // refused before anything is written
    await this.services.ensurePair(ctx);
    const plan = proxyPlan(ctx);
    await this.write(ctx, plan, (cur) => desiredProxy(cur, plan, readSplit(cur, plan), ctx.canary));
  }

  async setWeight(ctx: RouterContext, split: Split): Promise<void> {
    const plan = proxyPlan(ctx);
    const w = Math.min(100, Math.max(0, Math.round(split.weight)));
    const wanted: ProxySplit = { weight: w, ab: w > 0 && split.match?.length ? toConditions(split.match) : [], mirror: split.mirror ?? 0 };
    const cached = this.proxies.cached(plan.namespace, plan.name);
    if (cached && !proxyDiffers(cached, desiredProxy(cached, plan, wanted, ctx.canary))) return;
    await this.services.ensurePair(ctx);
    await this.write(ctx, plan, (cur) => desiredProxy(cur, plan, wanted, ctx.canary));
  }

  getWeights(ctx: RouterContext): Weights {
    const plan = proxyPlan(ctx);
    const s = readSplit(this.proxies.cached(plan.namespace, plan.name), plan);
    if (plan.abStrategy && s.ab.length > 0) return { primary: 0, canary: 100 };
    return { primary: 100 - s.weight, canary: s.weight, ...(s.mirror ? { mirror: s.mirror } : {}) };
  }

  async finalize(ctx: RouterContext): Promise<void> {
    const plan = proxyPlan(ctx);
    const current = await this.proxies.read(plan.namespace, plan.name);
    if (current && ownedBy(current, ctx.canary)) {
      // 1. Everything to the primary while our Services still exist.
      const zeroed = await this.write(ctx, plan, (cur) => (cur && ownedBy(cur, ctx.canary) ? desiredProxy(cur, plan, { weight: 0, ab: [], mirror: 0 }, ctx.canary) : undefined));
      // 2. Handed back to the apex Service (a root may include it); without one, nothing can serve: removed.
      const apex = ctx.canary.spec.targetRef.kind === 'Service' ? plan.primary : ctx.service ? plan.name : undefined;
      if (zeroed && apex) await this.write(ctx, plan, (cur) => (cur && ownedBy(cur, ctx.canary) ? handedBack(cur, plan, apex, ctx.canary) : undefined));
      else if (zeroed) await this.proxies.remove(plan.namespace, plan.name, zeroed, true);
    }
    await this.services.removePair(ctx);
  }

  private hint(ctx: RouterContext): string {
    return `rename it or set spec.service.name of Canary ${ctx.canary.metadata.name} to another name`;
  }

  private async write(ctx: RouterContext, plan: ProxyPlan, compute: (cur: HTTPProxy | undefined) => HTTPProxy | undefined): Promise<HTTPProxy | undefined> {
    return this.proxies.write(
      plan.namespace,
      plan.name,
      (cur) => {
        const desired = compute(cur);
        return desired && proxyDiffers(cur, desired) ? desired : undefined;
      },
      { check: (cur) => assertOurs(cur, ctx.canary, 'HTTPProxy', this.hint(ctx)) },
    );
  }
}
