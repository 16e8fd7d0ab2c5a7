// The `gatewayapi` router: traffic enters through a Gateway API HTTPRoute
// (gateway.networking.k8s.io/v1) named after the apex Service. For a
// Deployment target the router owns two Services, `<svc>-primary` (the
// primary's Pods) and `<svc>-canary` (the canary copy's Pods, whose selector
// labels are renamed so that nothing else selects them), and one rule of
// the route that splits requests between them by weight. A/B runs add a
// second rule that sends matching requests to the canary.
//
// The route may be the user's, or the user may add to the one canary-gate
// created: the router owns only its rules, recognised by their `name`
// (`canary-gate`, `canary-gate-ab`; rule names are in the standard channel
// of the v1 schema since Gateway API v1.4). Everything else in the route
// (other rules, filters and timeouts on any rule, parentRefs, hostnames,
// labels, annotations) is kept. `spec.rules` is an atomic list, so
// server-side apply cannot own single rules: writes are read-modify-write
// replaces with the read resourceVersion as precondition, retried on
// conflict, and made only when the result differs.
//
// Our rules go first in the list: Gateway API gives a more specific match
// precedence whatever the order, and breaks ties by list order, so the
// user's more specific rules keep winning while our catch-all wins over an
// equal catch-all of theirs.

import * as k8s from '@kubernetes/client-node';
import type { Canary, HttpMatch, StringMatch } from '../../core/api/types.js';
import { canonicalJson } from '../../core/revision.js';
import { parseDuration } from '../decide/analysis-config.js';
import type { HttpRoute, ObjectCache } from '../observe/caches.js';
import { apexServiceName, canaryOwnerReference, ownedBy } from '../apply/copy.js';
import { isTrafficShifting } from './kubernetes.js';
import { NameTakenError, OwnedObjects, customObjectApi, controlledByAnotherCanary, dropOwnership } from './owned.js';
import type { RouterResource } from '../../core/providers.js';
import { RouterServices, renamedCanaryPodLabels, sizedLikePrimary } from './services.js';
import type { Router, RouterContext, RouterTraits, Split, StickyCookie, Weights } from './router.js';
import { cookieHeaderRegex, setCookieValue, escapeRegex } from './split.js';
import { CANARY_SUFFIX, MANAGED_BY, MANAGED_BY_LABEL, PRIMARY_SUFFIX } from '../../core/contract.js';

export const GATEWAY_GROUP = 'gateway.networking.k8s.io';
export const GATEWAY_VERSION = 'v1';
export const HTTPROUTE_PLURAL = 'httproutes';
export const HTTPROUTE_RESOURCE: RouterResource = { group: GATEWAY_GROUP, version: GATEWAY_VERSION, plural: HTTPROUTE_PLURAL, kind: 'HTTPRoute' };
/** Name of the rule that splits traffic by weight. */
export const WEIGHT_RULE = 'canary-gate';
/** Name of the A/B rule: matching requests go to the canary. */
export const MATCH_RULE = 'canary-gate-ab';
/** Names of the session-affinity rules: a request with the side's cookie goes to that side. */
export const STICKY_CANARY_RULE = 'canary-gate-sticky';
export const STICKY_PRIMARY_RULE = 'canary-gate-sticky-primary';
const OUR_RULES = new Set([WEIGHT_RULE, MATCH_RULE, STICKY_CANARY_RULE, STICKY_PRIMARY_RULE]);

// ------------------------------------------------------------------ HTTPRoute shapes (the parts we read and write)

export interface BackendRef {
  group?: string;
  kind?: string;
  name: string;
  namespace?: string;
  port?: number;
  weight?: number;
  [other: string]: unknown;
}

export interface RouteStringMatch {
  type?: string;
  value: string;
}

export interface RouteMatch {
  path?: { type?: string; value?: string };
  headers?: Array<{ type?: string; name: string; value: string }>;
  queryParams?: Array<{ type?: string; name: string; value: string }>;
  method?: string;
}

export interface RouteFilter {
  type: string;
  [other: string]: unknown;
}

export interface RouteRule {
  name?: string;
  matches?: RouteMatch[];
  filters?: RouteFilter[];
  backendRefs?: BackendRef[];
  timeouts?: { request?: string; backendRequest?: string };
  [other: string]: unknown;
}

export interface ParentRef {
  group?: string;
  kind?: string;
  namespace?: string;
  name: string;
  sectionName?: string;
  port?: number;
}

export interface HTTPRouteSpec {
  parentRefs?: ParentRef[];
  hostnames?: string[];
  rules?: RouteRule[];
  [other: string]: unknown;
}

export interface HTTPRoute {
  apiVersion: string;
  kind: 'HTTPRoute';
  metadata: k8s.V1ObjectMeta;
  spec: HTTPRouteSpec;
  status?: unknown;
}

// ------------------------------------------------------------------ the plan: what the Canary asks of the route

export interface RoutePlan {
  /** HTTPRoute name (the apex Service's name). */
  name: string;
  namespace: string;
  /** Service receiving the primary's share. */
  primary: string;
  /** Service receiving the canary's share. */
  canary: string;
  port: number;
  /** A Service target's canary copy exists only during a run: refer to it only with weight > 0. */
  canaryAlways: boolean;
  /** A/B strategy: the weight rule stays 100% primary; only matching requests reach the canary. */
  abStrategy: boolean;
  parentRefs: ParentRef[];
  hostnames: string[];
  /** spec.service.match: the weight rule's matches (owned only when set). */
  matches?: RouteMatch[];
  /** spec.service.timeout (owned only when set). */
  requestTimeout?: string;
  /** spec.service.headers as filters (each filter type owned only when set). */
  filters: RouteFilter[];
  labels: Record<string, string>;
  annotations: Record<string, string>;
  owner: k8s.V1OwnerReference;
}

/** The route plan of a Canary; pure. */
export function routePlan(ctx: RouterContext): RoutePlan {
  const { canary } = ctx;
  const service = canary.spec.service;
  const apex = apexServiceName(canary);
  const serviceTarget = canary.spec.targetRef.kind === 'Service';
  const plan: RoutePlan = {
    name: apex,
    namespace: ctx.namespace,
    primary: serviceTarget ? canary.spec.targetRef.name : `${apex}${PRIMARY_SUFFIX}`,
    canary: serviceTarget ? `${canary.spec.targetRef.name}${CANARY_SUFFIX}` : `${apex}${CANARY_SUFFIX}`,
    port: service?.port ?? ctx.service?.spec?.ports?.[0]?.port ?? 80,
    canaryAlways: !serviceTarget,
    abStrategy: !isTrafficShifting(canary) && (canary.spec.analysis?.match?.length ?? 0) > 0,
    parentRefs: (service?.gatewayRefs ?? []).map((g) => {
      const ref: ParentRef = { group: g.group ?? GATEWAY_GROUP, kind: g.kind ?? 'Gateway', name: g.name };
      if (g.namespace) ref.namespace = g.namespace;
      if (g.sectionName) ref.sectionName = g.sectionName;
      return ref;
    }),
    hostnames: [...(service?.hosts ?? [])],
    filters: headerFilters(service?.headers),
    labels: { ...(service?.apex?.labels ?? {}) },
    annotations: { ...(service?.apex?.annotations ?? {}) },
    owner: canaryOwnerReference(canary),
  };
  if (service?.match?.length) plan.matches = toRouteMatches(service.match);
  if (service?.timeout) plan.requestTimeout = gatewayDuration(parseDuration(service.timeout));
  return plan;
}

function headerFilters(headers: NonNullable<Canary['spec']['service']>['headers']): RouteFilter[] {
  const out: RouteFilter[] = [];
  const modifier = (ops: { add?: Record<string, string>; set?: Record<string, string>; remove?: string[] } | undefined) => {
    if (!ops) return undefined;
    const m: Record<string, unknown> = {};
    const pairs = (r: Record<string, string>) => Object.entries(r).map(([name, value]) => ({ name, value }));
    if (ops.set && Object.keys(ops.set).length) m.set = pairs(ops.set);
    if (ops.add && Object.keys(ops.add).length) m.add = pairs(ops.add);
    if (ops.remove?.length) m.remove = [...ops.remove];
    return Object.keys(m).length ? m : undefined;
  };
  const req = modifier(headers?.request);
  if (req) out.push({ type: 'RequestHeaderModifier', requestHeaderModifier: req });
  const res = modifier(headers?.response);
  if (res) out.push({ type: 'ResponseHeaderModifier', responseHeaderModifier: res });
  return out;
}

/** Milliseconds as a Gateway API duration (GEP-2257: up to four <=5-digit h/m/s/ms parts). */
export function gatewayDuration(ms: number): string {
  let rest = Math.max(0, Math.round(ms));
  if (rest === 0) return '0s';
  const parts: string[] = [];
  for (const [unit, size] of [
    ['h', 3_600_000],
    ['m', 60_000],
    ['s', 1000],
    ['ms', 1],
  ] as const) {
    const n = Math.floor(rest / size);
    if (n > 0) {
      parts.push(`${Math.min(n, 99_999)}${unit}`);
      rest -= n * size;
    }
  }
  return parts.join('');
}


function stringMatch(m: StringMatch, what: string): RouteStringMatch {
  if (m.exact !== undefined) return { type: 'Exact', value: m.exact };
  if (m.regex !== undefined) return { type: 'RegularExpression', value: m.regex };
  if (m.prefix !== undefined) return { type: 'RegularExpression', value: `^${escapeRegex(m.prefix)}.*` };
  if (m.suffix !== undefined) return { type: 'RegularExpression', value: `.*${escapeRegex(m.suffix)}$` };
  throw new Error(`match on ${what} sets none of exact, prefix, suffix, regex`);
}

const METHODS = new Set(['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'CONNECT', 'OPTIONS', 'TRACE', 'PATCH']);

/**
 * Canary-gate HTTP matches as Gateway API HTTPRouteMatches, written with
 * every default the API server would fill in (so that a stored route and a
 * freshly built one compare equal). Cookies are headers.cookie regexes.
 */
export function toRouteMatches(matches: HttpMatch[]): RouteMatch[] {
  return matches.map((m) => {
    const out: RouteMatch = { path: { type: 'PathPrefix', value: '/' } };
    if (m.uri) {
      if (m.uri.exact !== undefined) out.path = { type: 'Exact', value: m.uri.exact };
      else if (m.uri.prefix !== undefined) out.path = { type: 'PathPrefix', value: m.uri.prefix };
      else if (m.uri.regex !== undefined) out.path = { type: 'RegularExpression', value: m.uri.regex };
      else if (m.uri.suffix !== undefined) out.path = { type: 'RegularExpression', value: `.*${escapeRegex(m.uri.suffix)}$` };
    }
    const headers = Object.entries(m.headers ?? {}).map(([name, sm]) => ({ name, ...stringMatch(sm, `header ${name}`) }));
    if (headers.length) out.headers = headers.map((h) => ({ type: h.type ?? 'Exact', name: h.name, value: h.value }));
    const query = Object.entries(m.queryParams ?? {}).map(([name, sm]) => ({ name, ...stringMatch(sm, `query parameter ${name}`) }));
    if (query.length) out.queryParams = query.map((q) => ({ type: q.type ?? 'Exact', name: q.name, value: q.value }));
    if (m.method) {
      const method = m.method.exact?.toUpperCase();
      if (!method || !METHODS.has(method)) throw new Error(`an HTTPRoute matches a method exactly (one of ${[...METHODS].join(', ')}); got ${JSON.stringify(m.method)}`);
      out.method = method;
    }
    return out;
  });
}

// ------------------------------------------------------------------ pure route builders

function serviceRef(name: string, port: number, weight: number): BackendRef {
  return { group: '', kind: 'Service', name, port, weight };
}

function isService(ref: BackendRef): boolean {
  return (ref.group ?? '') === '' && (ref.kind ?? 'Service') === 'Service';
}

/** Whether the rule is one canary-gate added (by name). */
export function isOurRule(rule: RouteRule): boolean {
  return OUR_RULES.has(rule.name ?? '');
}

/** Mirroring and sticky sessions, as the route spells them. */
export interface RouteExtras {
  /** Percent of the weight rule's requests copied to the canary (0 = none). */
  mirror: number;
  sticky?: Split['sticky'];
}

/** Our RequestMirror filter on the weight rule: it copies to the canary Service. */
function isOurMirror(f: RouteFilter, plan: Pick<RoutePlan, 'canary'>): boolean {
  const ref = (f as { requestMirror?: { backendRef?: BackendRef } }).requestMirror?.backendRef;
  return f.type === 'RequestMirror' && !!ref && ref.name === plan.canary && isService(ref);
}

function mirrorPercent(rule: RouteRule | undefined, plan: Pick<RoutePlan, 'canary'>): number {
  const f = (rule?.filters ?? []).find((x) => isOurMirror(x, plan)) as { requestMirror?: { percent?: number; fraction?: { numerator: number; denominator?: number } } } | undefined;
  if (!f) return 0;
  const m = f.requestMirror ?? {};
  if (m.percent !== undefined) return m.percent;
  if (m.fraction) return Math.round((100 * m.fraction.numerator) / (m.fraction.denominator ?? 100));
  return 100;
}

function mirrorFilter(plan: RoutePlan, percent: number): RouteFilter {
  const requestMirror: Record<string, unknown> = { backendRef: { group: '', kind: 'Service', name: plan.canary, port: plan.port } };
  if (percent < 100) requestMirror.percent = percent;
  return { type: 'RequestMirror', requestMirror };
}

function setCookieFilter(cookie: StickyCookie): RouteFilter {
  return { type: 'ResponseHeaderModifier', responseHeaderModifier: { add: [{ name: 'Set-Cookie', value: setCookieValue(cookie) }] } };
}

/** The matches of a sticky rule: the weight rule's matches, each also asking for the cookie. */
function stickyMatches(plan: RoutePlan, cookie: StickyCookie): RouteMatch[] {
  const base = plan.matches ?? [{ path: { type: 'PathPrefix', value: '/' } }];
  return base.map((m) => ({ ...structuredClone(m), headers: [...(m.headers ?? []), { type: 'RegularExpression', name: 'Cookie', value: cookieHeaderRegex(cookie) }] }));
}

/**
 * The split of the weight rule of a route: {100, 0} when the route or rule
 * is absent. For an A/B Canary (whose weight rule always sends everything to
 * the primary) an active match rule reads as {0, 100}: "the canary gets
 * traffic", so that a caller re-asserting weight 0 removes a leftover one.
 */
export function readWeights(route: HTTPRoute | undefined, plan: Pick<RoutePlan, 'primary' | 'canary'> & { abStrategy?: boolean }): Weights {
  if (plan.abStrategy && route?.spec?.rules?.some((r) => r.name === MATCH_RULE)) return { primary: 0, canary: 100 };
  const rule = route?.spec?.rules?.find((r) => r.name === WEIGHT_RULE);
  if (!rule) return { primary: 100, canary: 0 };
  let p = 0;
  let c = 0;
  for (const ref of rule.backendRefs ?? []) {
    if (!isService(ref)) continue;
    if (ref.name === plan.primary) p += ref.weight ?? 1;
    else if (ref.name === plan.canary) c += ref.weight ?? 1;
  }
  const mirror = mirrorPercent(rule, plan);
  if (p + c === 0) return { primary: 100, canary: 0, ...(mirror ? { mirror } : {}) };
  const canary = Math.round((100 * c) / (p + c));
  return { primary: 100 - canary, canary, ...(mirror ? { mirror } : {}) };
}

function sameParent(a: ParentRef, b: ParentRef, ns: string): boolean {
  return (
    (a.group ?? GATEWAY_GROUP) === (b.group ?? GATEWAY_GROUP) &&
    (a.kind ?? 'Gateway') === (b.kind ?? 'Gateway') &&
    (a.namespace || ns) === (b.namespace || ns) &&
    a.name === b.name &&
    (a.sectionName ?? '') === (b.sectionName ?? '') &&
    (a.port ?? 0) === (b.port ?? 0)
  );
}

/** The route as last read, stripped of what a replace must not carry. */
function editable(route: HTTPRoute): HTTPRoute {
  const out = structuredClone(route);
  delete out.status;
  delete out.metadata.managedFields;
  out.spec = out.spec ?? {};
  return out;
}

/** Our rule with the fields the Canary owns set and everything else (filters, timeouts, matches a user added) kept. */
function ownedFields(rule: RouteRule, plan: RoutePlan, isWeightRule: boolean): RouteRule {
  const out = { ...rule };
  if (isWeightRule && plan.matches) out.matches = structuredClone(plan.matches);
  if (plan.requestTimeout) out.timeouts = { ...(out.timeouts ?? {}), request: plan.requestTimeout };
  if (plan.filters.length) {
    const types = new Set(plan.filters.map((f) => f.type));
    out.filters = [...(out.filters ?? []).filter((f) => !types.has(f.type)), ...structuredClone(plan.filters)];
  }
  return out;
}

/**
 * The route with canary-gate's rules in the wanted state. `weight`
 * undefined keeps the current split (or 0% for a new rule); `ab` undefined
 * keeps the A/B rule as it is, null removes it, a list of matches puts it in
 * place; `extras` undefined keeps mirroring and sticky rules as they are,
 * else puts them in the given state. Pure: `existing` is not modified.
 */
export function desiredRoute(existing: HTTPRoute | undefined, plan: RoutePlan, weight?: number, ab?: RouteMatch[] | null, extras?: RouteExtras): HTTPRoute {
  const route: HTTPRoute = existing
    ? editable(existing)
    : {
        apiVersion: `${GATEWAY_GROUP}/${GATEWAY_VERSION}`,
        kind: 'HTTPRoute',
        metadata: { name: plan.name, namespace: plan.namespace, labels: { [MANAGED_BY_LABEL]: MANAGED_BY }, ownerReferences: [plan.owner] },
        spec: {},
      };
  if (Object.keys(plan.labels).length) route.metadata.labels = { ...(route.metadata.labels ?? {}), ...plan.labels };
  if (Object.keys(plan.annotations).length) route.metadata.annotations = { ...(route.metadata.annotations ?? {}), ...plan.annotations };

  // parentRefs and hostnames: ours are added, none is ever taken away.
  const parents = [...(route.spec.parentRefs ?? [])];
  for (const p of plan.parentRefs) if (!parents.some((q) => sameParent(p, q, plan.namespace))) parents.push({ ...p });
  if (parents.length) route.spec.parentRefs = parents;
  const hosts = [...(route.spec.hostnames ?? [])];
  for (const h of plan.hostnames) if (!hosts.includes(h)) hosts.push(h);
  if (hosts.length) route.spec.hostnames = hosts;

  const rules = [...(route.spec.rules ?? [])];
  let w = Math.min(100, Math.max(0, Math.round(weight ?? readWeights(existing, { primary: plan.primary, canary: plan.canary }).canary)));
  if (plan.abStrategy) w = 0; // A/B: only matching requests reach the canary
  const refs = [serviceRef(plan.primary, plan.port, 100 - w)];
  if (plan.canaryAlways || w > 0) refs.push(serviceRef(plan.canary, plan.port, w));

  let wi = rules.findIndex((r) => r.name === WEIGHT_RULE);
  const previous = wi >= 0 ? (rules[wi] as RouteRule) : undefined;
  if (extras) {
    // Session affinity: each side's answers set its cookie (backend filters).
    const canaryRef = refs.find((r) => r.name === plan.canary);
    if (extras.sticky && canaryRef && w > 0) {
      canaryRef.filters = [setCookieFilter(extras.sticky.canary)];
      const primaryRef = refs[0] as BackendRef;
      if (extras.sticky.primary) primaryRef.filters = [setCookieFilter(extras.sticky.primary)];
    }
  } else if (previous) {
    // Kept as they are: the backend filters of our refs.
    for (const ref of refs) {
      const old = (previous.backendRefs ?? []).find((b) => b.name === ref.name && isService(b));
      if (old?.filters) ref.filters = structuredClone(old.filters);
    }
  }
  if (wi >= 0) {
    const rule = ownedFields(rules[wi] as RouteRule, plan, true);
    if (extras) {
      const others = (rule.filters ?? []).filter((f) => !isOurMirror(f, plan));
      const filters = extras.mirror > 0 ? [...others, mirrorFilter(plan, extras.mirror)] : others;
      if (filters.length) rule.filters = filters;
      else delete rule.filters;
    }
    rules[wi] = { ...rule, backendRefs: refs };
  } else {
    const rule = ownedFields({ name: WEIGHT_RULE, matches: [{ path: { type: 'PathPrefix', value: '/' } }] }, plan, true);
    if (extras && extras.mirror > 0) rule.filters = [...(rule.filters ?? []), mirrorFilter(plan, extras.mirror)];
    rules.unshift({ ...rule, backendRefs: refs });
    wi = 0;
  }
  if (extras) {
    // The sticky rules sit before the weight rule: a cookie match is more specific anyway.
    for (const [ruleName, cookie, backend] of [
      [STICKY_CANARY_RULE, w > 0 ? extras.sticky?.canary : undefined, plan.canary],
      [STICKY_PRIMARY_RULE, w > 0 ? extras.sticky?.primary : undefined, plan.primary],
    ] as const) {
      const at = rules.findIndex((r) => r.name === ruleName);
      if (!cookie) {
        if (at >= 0) {
          rules.splice(at, 1);
          if (at < wi) wi--;
        }
        continue;
      }
      const rule: RouteRule = { ...ownedFields(at >= 0 ? (rules[at] as RouteRule) : { name: ruleName }, plan, false), matches: stickyMatches(plan, cookie), backendRefs: [serviceRef(backend, plan.port, 100)] };
      if (at >= 0) rules[at] = rule;
      else {
        rules.splice(wi, 0, rule);
        wi++;
      }
    }
  }

  const ai = rules.findIndex((r) => r.name === MATCH_RULE);
  const abRefs = [serviceRef(plan.canary, plan.port, 100)];
  if (ab === null || (ab !== undefined && ab.length === 0)) {
    if (ai >= 0) rules.splice(ai, 1);
  } else if (ab === undefined) {
    if (ai >= 0) rules[ai] = { ...ownedFields(rules[ai] as RouteRule, plan, false), backendRefs: abRefs };
  } else if (ai >= 0) {
    rules[ai] = { ...ownedFields(rules[ai] as RouteRule, plan, false), matches: structuredClone(ab), backendRefs: abRefs };
  } else {
    // Before the weight rule: on an equal path, more header matches win anyway; the order settles the rest.
    rules.splice(wi, 0, { ...ownedFields({ name: MATCH_RULE }, plan, false), matches: structuredClone(ab), backendRefs: abRefs });
  }
  route.spec.rules = rules;
  return route;
}

/**
 * The route handed back when the Canary goes: canary-gate's A/B rule
 * removed, and its weight rule either removed (`handBackTo` undefined) or
 * sending everything to `handBackTo` (the user's apex Service), with its
 * filters, timeouts and matches kept. Pure.
 */
export function releasedRoute(existing: HTTPRoute, plan: RoutePlan, handBackTo?: string): HTTPRoute {
  const route = editable(existing);
  const rules: RouteRule[] = [];
  for (const r of route.spec.rules ?? []) {
    if (r.name === MATCH_RULE || r.name === STICKY_CANARY_RULE || r.name === STICKY_PRIMARY_RULE) continue;
    if (r.name === WEIGHT_RULE) {
      if (handBackTo) {
        const kept: RouteRule = { ...r, backendRefs: [serviceRef(handBackTo, plan.port, 1)] };
        const filters = (r.filters ?? []).filter((f) => !isOurMirror(f, plan));
        if (filters.length) kept.filters = filters;
        else delete kept.filters;
        rules.push(kept);
      }
      continue;
    }
    rules.push(r);
  }
  route.spec.rules = rules;
  return route;
}

/**
 * True when the route was handed back by this Canary's finalize already: not
 * its own any more, and its only rule of canary-gate's is the weight rule
 * sending everything to the apex Service. Finalizing again must leave it.
 */
export function handedBack(route: HTTPRoute, plan: RoutePlan, canary: Canary): boolean {
  if (ownedBy(route, canary)) return false;
  const ours = (route.spec?.rules ?? []).filter(isOurRule);
  return ours.length > 0 && ours.every((r) => r.name === WEIGHT_RULE && (r.backendRefs ?? []).every((b) => b.name === plan.name));
}

/** Rules of the route that are not canary-gate's. */
export function foreignRules(route: HTTPRoute | undefined): RouteRule[] {
  return (route?.spec?.rules ?? []).filter((r) => !isOurRule(r));
}

/** The route without canary-gate's ownership (ownerReference, managed-by label): it now holds the user's rules. */
export function disowned(route: HTTPRoute, canary: Canary): HTTPRoute {
  const out = editable(route);
  dropOwnership(out.metadata, canary);
  return out;
}

// ------------------------------------------------------------------ comparing routes

function normalRef(ref: BackendRef, ns: string): BackendRef {
  return { ...ref, group: ref.group ?? '', kind: ref.kind ?? 'Service', namespace: ref.namespace ?? ns, weight: ref.weight ?? 1 };
}

function normalMatch(m: RouteMatch): RouteMatch {
  const out: RouteMatch = { ...m, path: { type: m.path?.type ?? 'PathPrefix', value: m.path?.value ?? '/' } };
  if (m.headers) out.headers = m.headers.map((h) => ({ ...h, type: h.type ?? 'Exact' }));
  if (m.queryParams) out.queryParams = m.queryParams.map((q) => ({ ...q, type: q.type ?? 'Exact' }));
  return out;
}

/** A route spec with the API server's defaults filled in, so that equal routes compare equal. */
export function normalizeSpec(spec: HTTPRouteSpec | undefined, ns: string): HTTPRouteSpec {
  const s = structuredClone(spec ?? {});
  if (s.parentRefs) s.parentRefs = s.parentRefs.map((p) => ({ ...p, group: p.group ?? GATEWAY_GROUP, kind: p.kind ?? 'Gateway' }));
  s.rules = (s.rules ?? [{}]).map((r) => {
    const out: RouteRule = { ...r, matches: (r.matches?.length ? r.matches : [{}]).map(normalMatch) };
    if (r.backendRefs) out.backendRefs = r.backendRefs.map((b) => normalRef(b, ns));
    return out;
  });
  return s;
}

/** True when writing `desired` would change `existing` (spec, labels, annotations, owners). */
export function routeDiffers(existing: HTTPRoute | undefined, desired: HTTPRoute): boolean {
  if (!existing) return true;
  const ns = desired.metadata.namespace ?? existing.metadata.namespace ?? '';
  if (canonicalJson(normalizeSpec(existing.spec, ns)) !== canonicalJson(normalizeSpec(desired.spec, ns))) return true;
  const meta = (m: k8s.V1ObjectMeta) => canonicalJson({ l: m.labels ?? {}, a: m.annotations ?? {}, o: (m.ownerReferences ?? []).map((o) => o.uid) });
  return meta(existing.metadata) !== meta(desired.metadata);
}

// ------------------------------------------------------------------ the router

export interface GatewayApiRouterOptions {
  core: k8s.CoreV1Api;
  custom: k8s.CustomObjectsApi;
  /** Informer caches: Services and HTTPRoutes are read from them; without them every read is a GET. */
  caches?: { services: ObjectCache<k8s.V1Service>; httpRoutes: ObjectCache<HttpRoute> };
}

/** The copy has a Service of its own; the HTTPRoute's weights move traffic. */
export const GATEWAY_API_TRAITS: RouterTraits = { copySharesUserService: false };

export class GatewayApiRouter implements Router {
  readonly name = 'gatewayapi';
  readonly traits = GATEWAY_API_TRAITS;
  private readonly services: RouterServices;
  private readonly routes: OwnedObjects<HTTPRoute>;

  constructor(opts: GatewayApiRouterOptions) {
    this.services = new RouterServices(opts.core, opts.caches?.services);
    const custom = opts.custom;
    this.routes = new OwnedObjects<HTTPRoute>(
      customObjectApi<HTTPRoute>(custom, HTTPROUTE_RESOURCE),
      opts.caches?.httpRoutes as ObjectCache<HTTPRoute> | undefined,
    );
  }

  /** The canary copy's Pods always get renamed selector labels: only `<svc>-canary` selects them. */
  canaryPodLabels(ctx: RouterContext, podLabels: Record<string, string>): Record<string, string> {
    return renamedCanaryPodLabels(ctx, podLabels);
  }

  /**
   * The copy is sized like the primary (at least one Pod), whatever the
   * weight: the route may move a share to it before new Pods would be ready,
   * and load tests during blue/green see the same capacity.
   */
  canaryReplicas(ctx: RouterContext, _weight: number, primaryReplicas: number): number {
    return sizedLikePrimary(ctx, primaryReplicas);
  }

  conflicts(ctx: RouterContext): string[] {
    const out = this.services.pairConflicts(ctx);
    const plan = routePlan(ctx);
    const route = this.cached(plan.namespace, plan.name);
    // The route itself may be the user's (canary-gate adds its rules to it); another Canary's is not to be shared.
    if (route && controlledByAnotherCanary(route, ctx.canary)) {
      out.push(`HTTPRoute ${plan.namespace}/${plan.name} exists and belongs to another Canary; canary-gate leaves it alone: two Canaries cannot share a route: set spec.service.name of Canary ${ctx.canary.metadata.name}`);
    }
    return out;
  }

  async reconcile(ctx: RouterContext): Promise<void> {
    await this.services.ensurePair(ctx);
    const plan = routePlan(ctx);
    await this.writeRoute(ctx, plan, (cur) => desiredRoute(cur, plan));
  }

  async setWeight(ctx: RouterContext, split: Split): Promise<void> {
    const plan = routePlan(ctx);
    const { weight, match } = split;
    const extras: RouteExtras = { mirror: split.mirror ?? 0, ...(split.sticky ? { sticky: split.sticky } : {}) };
    const ab = weight > 0 && match && match.length > 0 ? toRouteMatches(match) : null;
    // The common case, every sync of a progressing run: the split is in force
    // already (desiredRoute on the cached route changes nothing).
    const cached = this.cached(plan.namespace, plan.name);
    if (cached && !routeDiffers(cached, desiredRoute(cached, plan, weight, ab, extras))) return;
    // A Canary being deleted that already handed its route back (a retried
    // sync) must not take it again, nor make its Services again.
    if (ctx.canary.metadata.deletionTimestamp && (!cached || handedBack(cached, plan, ctx.canary))) return;
    await this.services.ensurePair(ctx);
    await this.writeRoute(ctx, plan, (cur) => desiredRoute(cur, plan, weight, ab, extras));
  }

  getWeights(ctx: RouterContext): Weights {
    const plan = routePlan(ctx);
    return readWeights(this.cached(plan.namespace, plan.name), plan);
  }

  async finalize(ctx: RouterContext): Promise<void> {
    const plan = routePlan(ctx);
    const route = await this.read(plan.namespace, plan.name);
    if (route && !controlledByAnotherCanary(route, ctx.canary) && !handedBack(route, plan, ctx.canary)) {
      const involved = (r: HTTPRoute | undefined): r is HTTPRoute => !!r && (ownedBy(r, ctx.canary) || (r.spec?.rules ?? []).some(isOurRule));
      // 1. Everything to the primary, in our rules as they are (a route
      //    without our rules is not touched).
      const current = await this.writeRoute(ctx, plan, (cur) => (cur && (cur.spec?.rules ?? []).some(isOurRule) ? desiredRoute(cur, plan, 0, null, { mirror: 0 }) : undefined));
      // 2. Remove what is ours; the route keeps serving throughout.
      if (involved(current)) {
        // Deleted only when it is attached to nothing but Services (GAMMA):
        // the mesh then routes to the apex Service by itself, while a
        // Gateway's listeners would have no route at all (then it is handed
        // back to the apex Service and kept, below).
        const meshOnly = (current.spec?.parentRefs ?? []).every((p) => (p.group ?? GATEWAY_GROUP) === '' && (p.kind ?? 'Gateway') === 'Service');
        if (ownedBy(current, ctx.canary) && foreignRules(current).length === 0 && meshOnly) {
          await this.deleteRoute(plan, current);
        } else {
          // A user's route (our rules are removed: it is as it was), or ours
          // with the user's rules in it (our weight rule is handed to the apex
          // Service, and the route is given up so garbage collection spares it).
          const apex = ctx.canary.spec.targetRef.kind === 'Service' ? plan.primary : ctx.service ? plan.name : undefined;
          await this.writeRoute(ctx, plan, (cur) => (involved(cur) ? disowned(releasedRoute(cur, plan, ownedBy(cur, ctx.canary) ? apex : undefined), ctx.canary) : undefined));
        }
      }
    }
    await this.services.removePair(ctx);
  }

  // ---------------------------------------------------------------- internals

  private cached(ns: string, name: string): HTTPRoute | undefined {
    return this.routes.cached(ns, name);
  }

  private async read(ns: string, name: string): Promise<HTTPRoute | undefined> {
    return this.routes.read(ns, name);
  }

  /**
   * Read, compute, compare, write only on a difference (`compute` returning
   * undefined means "leave it as it is"); conflicts are retried on a fresh
   * read. Returns the route as it is after the call.
   */
  private async writeRoute(ctx: RouterContext, plan: RoutePlan, compute: (current: HTTPRoute | undefined) => HTTPRoute | undefined): Promise<HTTPRoute | undefined> {
    const { namespace: ns, name } = plan;
    let wantsOurRules = false;
    return this.routes.write(
      ns,
      name,
      (current) => {
        const desired = compute(current);
        if (!desired || !routeDiffers(current, desired)) return undefined;
        if ((desired.spec.rules?.length ?? 0) > 16) {
          throw new Error(`HTTPRoute ${ns}/${name} would have ${desired.spec.rules?.length} rules; Gateway API allows 16`);
        }
        wantsOurRules = (desired.spec.rules ?? []).some(isOurRule);
        return desired;
      },
      {
        check: (current) => {
          if (controlledByAnotherCanary(current, ctx.canary)) {
            throw new NameTakenError('HTTPRoute', ns, name, 'belongs to another Canary', `two Canaries cannot share a route: set spec.service.name of Canary ${ctx.canary.metadata.name}`);
          }
        },
        verify: (written) => {
          if (wantsOurRules && (written.spec?.rules ?? []).every((r) => !isOurRule(r))) {
            throw new Error(
              `the API server dropped the rule names of HTTPRoute ${ns}/${name}: the installed Gateway API CRDs are too old for canary-gate (HTTPRoute rule names need v1.4 standard or v1.2 experimental)`,
            );
          }
        },
      },
    );
  }

  private async deleteRoute(plan: RoutePlan, route: HTTPRoute): Promise<void> {
    // With its resourceVersion: a route the user changed meanwhile is decided again on fresh data.
    await this.routes.remove(plan.namespace, plan.name, route, true);
  }
}
