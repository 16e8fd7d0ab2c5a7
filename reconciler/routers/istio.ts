// The `istio` router: traffic enters through an Istio VirtualService
// (networking.istio.io/v1) named after the apex Service, whose HTTP route
// `canary-gate` splits requests by weight between `<svc>-primary` and
// `<svc>-canary`. Each of the two has a DestinationRule of its own
// (`<svc>-primary`, `<svc>-canary`) carrying spec.service.trafficPolicy. For
// a Deployment target the router owns the two Services as gatewayapi does.
// A/B runs add a route `canary-gate-ab` sending matching requests to the
// canary; session affinity adds `canary-gate-sticky` (and
// `canary-gate-sticky-primary`), which send a request carrying the side's
// cookie to that side, while the weight route's destinations set the cookie.
//
// The VirtualService may be the user's, or the user may add to the one
// canary-gate created: the router owns only its HTTP routes, recognised by
// their `name`, and in a VirtualService it created, hosts and gateways.
// Other HTTP routes, tcp and tls routes, labels and annotations are kept; in
// a user's VirtualService, so are their hosts and gateways (ours are added,
// none taken away). In a route of ours, the fields the Canary speaks for (match of the
// weight route, destinations, mirror, retries, timeout, headers, corsPolicy,
// rewrite) follow the Canary; anything else a user put there (fault, say) is
// kept. `spec.http` is an atomic list, so writes are read-modify-write
// replaces with the read resourceVersion as precondition, retried on
// conflict, and made only when the result differs.
//
// Istio applies the first HTTP route that matches, in list order: our routes
// form one block, kept where it is; a new block goes before the user's first
// catch-all route (one without a match), so the user's more specific routes
// keep winning while our catch-all takes over from theirs.
//
// The DestinationRules are wholly ours: one of that name that canary-gate did
// not create is a conflict (NameTakenError), never changed.

import type * as k8s from '@kubernetes/client-node';
import type { Canary, CorsPolicy, HeaderOperations, HttpMatch, StringMatch } from '../../core/api/types.js';
import { canonicalJson } from '../../core/revision.js';
import { CANARY_SUFFIX, MANAGED_BY, MANAGED_BY_LABEL, PRIMARY_SUFFIX } from '../../core/contract.js';
import type { RouterResource } from '../../core/providers.js';
import { parseDuration } from '../decide/analysis-config.js';
import type { ObjectCache } from '../observe/caches.js';
import { apexServiceName, canaryOwnerReference, ownedBy } from '../apply/copy.js';
import { isTrafficShifting } from './kubernetes.js';
import { NameTakenError, OwnedObjects, assertOurs, conflictOf, notOurs, customObjectApi, controlledByAnotherCanary, dropOwnership } from './owned.js';
import { RouterServices, renamedCanaryPodLabels, sizedLikePrimary } from './services.js';
import type { Router, RouterContext, RouterTraits, Split, StickyCookie, Weights } from './router.js';
import { cookieHeaderRegex, setCookieValue, escapeRegex } from './split.js';

export const ISTIO_GROUP = 'networking.istio.io';
export const ISTIO_VERSION = 'v1';
export const VIRTUAL_SERVICE: RouterResource = { group: ISTIO_GROUP, version: ISTIO_VERSION, plural: 'virtualservices', kind: 'VirtualService' };
export const DESTINATION_RULE: RouterResource = { group: ISTIO_GROUP, version: ISTIO_VERSION, plural: 'destinationrules', kind: 'DestinationRule' };

/** Name of the route that splits traffic by weight. */
export const WEIGHT_ROUTE = 'canary-gate';
/** Name of the A/B route: matching requests go to the canary. */
export const MATCH_ROUTE = 'canary-gate-ab';
/** Names of the session-affinity routes: a request with the side's cookie goes to that side. */
export const STICKY_CANARY_ROUTE = 'canary-gate-sticky';
export const STICKY_PRIMARY_ROUTE = 'canary-gate-sticky-primary';
const OUR_ROUTES = new Set([WEIGHT_ROUTE, MATCH_ROUTE, STICKY_CANARY_ROUTE, STICKY_PRIMARY_ROUTE]);

// ------------------------------------------------------------------ Istio shapes (the parts we read and write)

export interface IstioStringMatch {
  exact?: string;
  prefix?: string;
  regex?: string;
}

export interface IstioMatch {
  uri?: IstioStringMatch;
  method?: IstioStringMatch;
  headers?: Record<string, IstioStringMatch>;
  queryParams?: Record<string, IstioStringMatch>;
  sourceLabels?: Record<string, string>;
  [other: string]: unknown;
}

export interface Destination {
  host: string;
  port?: { number: number };
  subset?: string;
}

export interface IstioHeaders {
  request?: HeaderOperations;
  response?: HeaderOperations;
}

export interface RouteDestination {
  destination: Destination;
  weight?: number;
  headers?: IstioHeaders;
  [other: string]: unknown;
}

export interface IstioRetries {
  attempts?: number;
  perTryTimeout?: string;
  retryOn?: string;
}

export interface IstioCorsPolicy {
  allowOrigins?: IstioStringMatch[];
  allowMethods?: string[];
  allowHeaders?: string[];
  exposeHeaders?: string[];
  maxAge?: string;
  allowCredentials?: boolean;
}

export interface HttpRoute {
  name?: string;
  match?: IstioMatch[];
  route?: RouteDestination[];
  mirror?: Destination;
  mirrorPercentage?: { value: number };
  retries?: IstioRetries;
  timeout?: string;
  headers?: IstioHeaders;
  corsPolicy?: IstioCorsPolicy;
  rewrite?: { uri?: string; authority?: string };
  [other: string]: unknown;
}

export interface VirtualServiceSpec {
  hosts?: string[];
  gateways?: string[];
  http?: HttpRoute[];
  [other: string]: unknown;
}

export interface VirtualService {
  apiVersion: string;
  kind: 'VirtualService';
  metadata: k8s.V1ObjectMeta;
  spec: VirtualServiceSpec;
  status?: unknown;
}

export interface DestinationRule {
  apiVersion: string;
  kind: 'DestinationRule';
  metadata: k8s.V1ObjectMeta;
  spec: { host: string; trafficPolicy?: Record<string, unknown>; [other: string]: unknown };
  status?: unknown;
}

// ------------------------------------------------------------------ the plan: what the Canary asks of the VirtualService

/** The fields of each of our routes that follow spec.service (absent = removed from our routes). */
export interface RouteFields {
  retries?: IstioRetries;
  timeout?: string;
  headers?: IstioHeaders;
  corsPolicy?: IstioCorsPolicy;
  rewrite?: { uri?: string; authority?: string };
}
const ROUTE_FIELDS = ['retries', 'timeout', 'headers', 'corsPolicy', 'rewrite'] as const;

export interface IstioPlan {
  /** VirtualService name (the apex Service's name). */
  name: string;
  namespace: string;
  /** Host receiving the primary's share. */
  primary: string;
  /** Host receiving the canary's share. */
  canary: string;
  /** DestinationRule names: `<apex>-primary`, `<apex>-canary`. */
  primaryRule: string;
  canaryRule: string;
  port: number;
  /** A Service target's canary copy exists only during a run: refer to it only with weight > 0. */
  canaryAlways: boolean;
  /** A/B strategy: the weight route stays 100% primary; only matching requests reach the canary. */
  abStrategy: boolean;
  /** spec.service.hosts and the apex name. */
  hosts: string[];
  /** spec.service.gateways; empty means the VirtualService applies to the mesh. */
  gateways: string[];
  /** spec.service.match: the weight route's matches. */
  matches?: IstioMatch[];
  fields: RouteFields;
  trafficPolicy?: Record<string, unknown>;
  labels: Record<string, string>;
  annotations: Record<string, string>;
  owner: k8s.V1OwnerReference;
}

/** Milliseconds as an Istio (protobuf JSON) duration: seconds with a decimal fraction. */
export function istioDuration(ms: number): string {
  return `${Math.max(0, Math.round(ms)) / 1000}s`;
}


/** A canary-gate StringMatch as Istio's (which has no suffix: a full-match regex does it). */
export function istioStringMatch(m: StringMatch, what: string): IstioStringMatch {
  if (m.exact !== undefined) return { exact: m.exact };
  if (m.prefix !== undefined) return { prefix: m.prefix };
  if (m.regex !== undefined) return { regex: m.regex };
  if (m.suffix !== undefined) return { regex: `.*${escapeRegex(m.suffix)}` };
  throw new Error(`match on ${what} sets none of exact, prefix, suffix, regex`);
}

function stringMatches(ms: Record<string, StringMatch> | undefined, what: string): Record<string, IstioStringMatch> | undefined {
  const entries = Object.entries(ms ?? {});
  if (!entries.length) return undefined;
  return Object.fromEntries(entries.map(([k, v]) => [k, istioStringMatch(v, `${what} ${k}`)]));
}

/** Canary-gate HTTP matches as Istio HTTPMatchRequests. Cookies are headers.cookie regexes. */
export function toIstioMatches(matches: HttpMatch[]): IstioMatch[] {
  return matches.map((m) => {
    const out: IstioMatch = {};
    if (m.uri) out.uri = istioStringMatch(m.uri, 'uri');
    if (m.method) out.method = istioStringMatch(m.method, 'method');
    // Istio wants header names in lower case (HTTP header names are case-insensitive anyway).
    const headers = stringMatches(m.headers && Object.fromEntries(Object.entries(m.headers).map(([k, v]) => [k.toLowerCase(), v])), 'header');
    if (headers) out.headers = headers;
    const query = stringMatches(m.queryParams, 'query parameter');
    if (query) out.queryParams = query;
    if (m.sourceLabels && Object.keys(m.sourceLabels).length) out.sourceLabels = { ...m.sourceLabels };
    return out;
  });
}

function headerOps(ops: HeaderOperations | undefined): HeaderOperations | undefined {
  if (!ops) return undefined;
  const out: HeaderOperations = {};
  if (ops.set && Object.keys(ops.set).length) out.set = { ...ops.set };
  if (ops.add && Object.keys(ops.add).length) out.add = { ...ops.add };
  if (ops.remove?.length) out.remove = [...ops.remove];
  return Object.keys(out).length ? out : undefined;
}

function corsPolicy(c: CorsPolicy): IstioCorsPolicy {
  const out: IstioCorsPolicy = {};
  if (c.allowOrigins?.length) out.allowOrigins = c.allowOrigins.map((o) => istioStringMatch(o, 'corsPolicy.allowOrigins'));
  if (c.allowMethods?.length) out.allowMethods = [...c.allowMethods];
  if (c.allowHeaders?.length) out.allowHeaders = [...c.allowHeaders];
  if (c.exposeHeaders?.length) out.exposeHeaders = [...c.exposeHeaders];
  if (c.maxAge) out.maxAge = istioDuration(parseDuration(c.maxAge));
  if (c.allowCredentials !== undefined) out.allowCredentials = c.allowCredentials;
  return out;
}

/** The VirtualService plan of a Canary; pure. */
export function istioPlan(ctx: RouterContext): IstioPlan {
  const { canary } = ctx;
  const service = canary.spec.service;
  const apex = apexServiceName(canary);
  const serviceTarget = canary.spec.targetRef.kind === 'Service';
  const fields: RouteFields = {};
  if (service?.retries) {
    const r: IstioRetries = {};
    if (service.retries.attempts !== undefined) r.attempts = service.retries.attempts;
    if (service.retries.perTryTimeout) r.perTryTimeout = istioDuration(parseDuration(service.retries.perTryTimeout));
    if (service.retries.retryOn) r.retryOn = service.retries.retryOn;
    fields.retries = r;
  }
  if (service?.timeout) fields.timeout = istioDuration(parseDuration(service.timeout));
  const request = headerOps(service?.headers?.request);
  const response = headerOps(service?.headers?.response);
  if (request || response) fields.headers = { ...(request ? { request } : {}), ...(response ? { response } : {}) };
  if (service?.corsPolicy) fields.corsPolicy = corsPolicy(service.corsPolicy);
  if (service?.rewrite && (service.rewrite.uri || service.rewrite.authority)) {
    fields.rewrite = { ...(service.rewrite.uri ? { uri: service.rewrite.uri } : {}), ...(service.rewrite.authority ? { authority: service.rewrite.authority } : {}) };
  }
  const hosts = [...(service?.hosts ?? [])];
  if (!hosts.includes(apex)) hosts.push(apex);
  const plan: IstioPlan = {
    name: apex,
    namespace: ctx.namespace,
    primary: serviceTarget ? canary.spec.targetRef.name : `${apex}${PRIMARY_SUFFIX}`,
    canary: serviceTarget ? `${canary.spec.targetRef.name}${CANARY_SUFFIX}` : `${apex}${CANARY_SUFFIX}`,
    primaryRule: `${apex}${PRIMARY_SUFFIX}`,
    canaryRule: `${apex}${CANARY_SUFFIX}`,
    port: service?.port ?? ctx.service?.spec?.ports?.[0]?.port ?? 80,
    canaryAlways: !serviceTarget,
    abStrategy: !isTrafficShifting(canary) && (canary.spec.analysis?.match?.length ?? 0) > 0,
    hosts,
    gateways: [...(service?.gateways ?? [])],
    fields,
    labels: { ...(service?.apex?.labels ?? {}) },
    annotations: { ...(service?.apex?.annotations ?? {}) },
    owner: canaryOwnerReference(canary),
  };
  if (service?.match?.length) plan.matches = toIstioMatches(service.match);
  if (service?.trafficPolicy) plan.trafficPolicy = structuredClone(service.trafficPolicy);
  return plan;
}

// ------------------------------------------------------------------ pure VirtualService builders

/** Whether the route is one canary-gate added (by name). */
export function isOurRoute(route: HttpRoute): boolean {
  return OUR_ROUTES.has(route.name ?? '');
}

/** A destination host names the Service `name` (short, or qualified with the namespace). */
function sameHost(host: string | undefined, name: string, ns: string): boolean {
  if (!host) return false;
  return host === name || host === `${name}.${ns}` || host.startsWith(`${name}.${ns}.svc`);
}

function destination(plan: IstioPlan, host: string, weight: number): RouteDestination {
  return { destination: { host, port: { number: plan.port } }, weight };
}

/** Mirroring and sticky sessions, as the VirtualService spells them. */
export interface RouteExtras {
  /** Percent of the weight route's requests copied to the canary (0 = none). */
  mirror: number;
  sticky?: Split['sticky'];
}

function setCookieHeaders(cookie: StickyCookie): IstioHeaders {
  return { response: { add: { 'Set-Cookie': setCookieValue(cookie) } } };
}

/** The matches of a sticky route: the weight route's matches, each also asking for the cookie. */
function stickyMatches(plan: IstioPlan, cookie: StickyCookie): IstioMatch[] {
  const base = plan.matches ?? [{}];
  return base.map((m) => ({ ...structuredClone(m), headers: { ...(m.headers ?? {}), cookie: { regex: cookieHeaderRegex(cookie) } } }));
}

/**
 * The split of the weight route: {100, 0} when the VirtualService or route
 * is absent. For an A/B Canary (whose weight route always sends everything
 * to the primary) an A/B route in place reads as {0, 100}: "the canary gets
 * traffic", so that a caller re-asserting weight 0 removes a leftover one.
 * `mirror` is reported when the weight route mirrors to the canary.
 */
export function readWeights(vs: VirtualService | undefined, plan: Pick<IstioPlan, 'primary' | 'canary' | 'namespace'> & { abStrategy?: boolean }): Weights {
  const http = vs?.spec?.http ?? [];
  if (plan.abStrategy && http.some((r) => r.name === MATCH_ROUTE)) return { primary: 0, canary: 100 };
  const route = http.find((r) => r.name === WEIGHT_ROUTE);
  if (!route) return { primary: 100, canary: 0 };
  const dests = route.route ?? [];
  let p = 0;
  let c = 0;
  for (const d of dests) {
    // Istio: a lone destination without a weight gets everything.
    const w = d.weight ?? (dests.length === 1 ? 100 : 0);
    if (sameHost(d.destination?.host, plan.primary, plan.namespace)) p += w;
    else if (sameHost(d.destination?.host, plan.canary, plan.namespace)) c += w;
  }
  // Absent mirrorPercentage mirrors everything.
  const mirror = route.mirror && sameHost(route.mirror.host, plan.canary, plan.namespace) ? (route.mirrorPercentage?.value ?? 100) : 0;
  const extra = mirror > 0 ? { mirror } : {};
  if (p + c === 0) return { primary: 100, canary: 0, ...extra };
  const canary = Math.round((100 * c) / (p + c));
  return { primary: 100 - canary, canary, ...extra };
}

/** The object as last read, stripped of what a replace must not carry. */
function editable<T extends { metadata: k8s.V1ObjectMeta; status?: unknown }>(obj: T): T {
  const out = structuredClone(obj);
  delete out.status;
  delete out.metadata.managedFields;
  return out;
}

/** Our route with the fields the Canary speaks for set, and anything else a user added kept. */
function withOwnedFields(route: HttpRoute, plan: IstioPlan, isWeightRoute: boolean): HttpRoute {
  const out: HttpRoute = { ...structuredClone(route) };
  for (const f of ROUTE_FIELDS) {
    const v = plan.fields[f];
    if (v === undefined) delete out[f];
    else (out as Record<string, unknown>)[f] = structuredClone(v);
  }
  if (isWeightRoute) {
    if (plan.matches) out.match = structuredClone(plan.matches);
    else delete out.match;
  }
  return out;
}

/** Where a new block of our routes goes among the user's: before their first catch-all route. */
function blockPosition(http: HttpRoute[]): number {
  const first = http.findIndex(isOurRoute);
  if (first >= 0) return http.slice(0, first).filter((r) => !isOurRoute(r)).length;
  const users = http.filter((r) => !isOurRoute(r));
  const catchAll = users.findIndex((r) => !r.match?.length);
  return catchAll >= 0 ? catchAll : users.length;
}

/**
 * The VirtualService with canary-gate's routes in the wanted state.
 * `weight` undefined keeps the current split (or 0% for a new route); `ab`
 * undefined keeps the A/B route as it is, null removes it, a list of matches
 * puts it in place; `extras` undefined keeps mirroring and the sticky routes
 * as they are, else puts them in the given state. Pure.
 */
export function desiredVirtualService(existing: VirtualService | undefined, plan: IstioPlan, weight?: number, ab?: IstioMatch[] | null, extras?: RouteExtras): VirtualService {
  const vs: VirtualService = existing
    ? editable(existing)
    : {
        apiVersion: `${ISTIO_GROUP}/${ISTIO_VERSION}`,
        kind: 'VirtualService',
        metadata: { name: plan.name, namespace: plan.namespace, labels: { [MANAGED_BY_LABEL]: MANAGED_BY }, ownerReferences: [plan.owner] },
        spec: {},
      };
  vs.spec = vs.spec ?? {};
  if (Object.keys(plan.labels).length) vs.metadata.labels = { ...(vs.metadata.labels ?? {}), ...plan.labels };
  if (Object.keys(plan.annotations).length) vs.metadata.annotations = { ...(vs.metadata.annotations ?? {}), ...plan.annotations };

  if (!existing || (existing.metadata.ownerReferences ?? []).some((o) => o.uid === plan.owner.uid)) {
    // Ours: hosts and gateways follow the Canary (a host or gateway taken out of it stops being served).
    vs.spec.hosts = [...plan.hosts];
    vs.spec.gateways = plan.gateways.length ? [...plan.gateways] : ['mesh'];
  } else {
    // A user's: ours are added, none is ever taken away.
    const hosts = [...(vs.spec.hosts ?? [])];
    for (const h of plan.hosts) if (!hosts.includes(h)) hosts.push(h);
    vs.spec.hosts = hosts;
    // No gateways means "mesh" to Istio: said explicitly before adding ours, so the VirtualService keeps serving the mesh.
    if (plan.gateways.length) {
      const gateways = [...(vs.spec.gateways ?? ['mesh'])];
      for (const g of plan.gateways) if (!gateways.includes(g)) gateways.push(g);
      vs.spec.gateways = gateways;
    }
  }

  const http = vs.spec.http ?? [];
  const previous = (name: string) => http.find((r) => r.name === name);
  const at = blockPosition(http);
  const users = http.filter((r) => !isOurRoute(r));

  let w = Math.min(100, Math.max(0, Math.round(weight ?? readWeights(existing, { primary: plan.primary, canary: plan.canary, namespace: plan.namespace }).canary)));
  if (plan.abStrategy) w = 0; // A/B: only matching requests reach the canary
  const dests = [destination(plan, plan.primary, 100 - w)];
  if (plan.canaryAlways || w > 0) dests.push(destination(plan, plan.canary, w));

  const prevWeight = previous(WEIGHT_ROUTE);
  if (extras) {
    // Session affinity: each side's answers set its cookie (destination-level response headers).
    const canaryDest = dests.find((d) => d.destination.host === plan.canary);
    if (extras.sticky && canaryDest && w > 0) {
      canaryDest.headers = setCookieHeaders(extras.sticky.canary);
      if (extras.sticky.primary) (dests[0] as RouteDestination).headers = setCookieHeaders(extras.sticky.primary);
    }
  } else if (prevWeight) {
    for (const d of dests) {
      const old = (prevWeight.route ?? []).find((o) => o.destination?.host === d.destination.host);
      if (old?.headers) d.headers = structuredClone(old.headers);
    }
  }
  const weightRoute = withOwnedFields(prevWeight ?? { name: WEIGHT_ROUTE }, plan, true);
  weightRoute.route = dests;
  if (extras) {
    if (extras.mirror > 0) {
      weightRoute.mirror = { host: plan.canary, port: { number: plan.port } };
      weightRoute.mirrorPercentage = { value: Math.min(100, extras.mirror) };
    } else {
      delete weightRoute.mirror;
      delete weightRoute.mirrorPercentage;
    }
  }

  const toSide = (host: string) => [destination(plan, host, 100)];
  const block: HttpRoute[] = [];
  const prevAb = previous(MATCH_ROUTE);
  if (ab === undefined) {
    if (prevAb) block.push({ ...withOwnedFields(prevAb, plan, false), route: toSide(plan.canary) });
  } else if (ab !== null && ab.length > 0) {
    block.push({ ...withOwnedFields(prevAb ?? { name: MATCH_ROUTE }, plan, false), match: structuredClone(ab), route: toSide(plan.canary) });
  }
  for (const [name, cookie, host] of [
    [STICKY_CANARY_ROUTE, extras?.sticky?.canary, plan.canary],
    [STICKY_PRIMARY_ROUTE, extras?.sticky?.primary, plan.primary],
  ] as const) {
    const prev = previous(name);
    if (!extras) {
      if (prev) block.push(withOwnedFields(prev, plan, false));
    } else if (cookie && w > 0) {
      block.push({ ...withOwnedFields(prev ?? { name }, plan, false), match: stickyMatches(plan, cookie), route: toSide(host) });
    }
  }
  block.push(weightRoute);
  vs.spec.http = [...users.slice(0, at), ...block, ...users.slice(at)];
  return vs;
}

/**
 * The VirtualService handed back when the Canary goes: canary-gate's A/B
 * and sticky routes removed, and its weight route either removed
 * (`handBackTo` undefined) or sending everything to `handBackTo` (the
 * user's apex Service) without mirroring, its other fields kept. Pure.
 */
export function releasedVirtualService(existing: VirtualService, plan: IstioPlan, handBackTo?: string): VirtualService {
  const vs = editable(existing);
  const http: HttpRoute[] = [];
  for (const r of vs.spec.http ?? []) {
    if (!isOurRoute(r)) http.push(r);
    else if (r.name === WEIGHT_ROUTE && handBackTo) {
      const kept: HttpRoute = { ...r, route: [{ destination: { host: handBackTo, port: { number: plan.port } } }] };
      delete kept.mirror;
      delete kept.mirrorPercentage;
      http.push(kept);
    }
  }
  if (http.length) vs.spec.http = http;
  else delete vs.spec.http;
  return vs;
}

/** What of the VirtualService is not canary-gate's: other HTTP routes, tcp and tls routes. */
export function foreignRoutes(vs: VirtualService | undefined): unknown[] {
  const spec = vs?.spec ?? {};
  const list = (x: unknown) => (Array.isArray(x) ? x : []);
  return [...(spec.http ?? []).filter((r) => !isOurRoute(r)), ...list(spec.tcp), ...list(spec.tls)];
}

/** The object without canary-gate's ownership (ownerReference, managed-by label): it now holds only the user's parts. */
export function disowned<T extends { metadata: k8s.V1ObjectMeta; status?: unknown }>(obj: T, canary: Canary): T {
  const out = editable(obj);
  dropOwnership(out.metadata, canary);
  return out;
}

/** A DestinationRule of ours for one side: its host, and spec.service.trafficPolicy; other spec fields a user added kept. */
export function desiredDestinationRule(existing: DestinationRule | undefined, plan: IstioPlan, name: string, host: string): DestinationRule {
  const dr: DestinationRule = existing
    ? editable(existing)
    : {
        apiVersion: `${ISTIO_GROUP}/${ISTIO_VERSION}`,
        kind: 'DestinationRule',
        metadata: { name, namespace: plan.namespace, labels: { [MANAGED_BY_LABEL]: MANAGED_BY }, ownerReferences: [plan.owner] },
        spec: { host },
      };
  dr.spec = { ...(dr.spec ?? {}), host };
  if (plan.trafficPolicy) dr.spec.trafficPolicy = structuredClone(plan.trafficPolicy);
  else delete dr.spec.trafficPolicy;
  return dr;
}

// ------------------------------------------------------------------ comparing

/** JSON as the API server stores it: undefined members dropped. */
function stored(value: unknown): string {
  return canonicalJson(JSON.parse(JSON.stringify(value ?? {})));
}

/** True when writing `desired` would change `existing` (spec, labels, annotations, owners). */
export function objectDiffers<T extends { metadata: k8s.V1ObjectMeta; spec?: unknown }>(existing: T | undefined, desired: T): boolean {
  if (!existing) return true;
  if (stored(existing.spec) !== stored(desired.spec)) return true;
  const meta = (m: k8s.V1ObjectMeta) => canonicalJson({ l: m.labels ?? {}, a: m.annotations ?? {}, o: (m.ownerReferences ?? []).map((o) => o.uid) });
  return meta(existing.metadata) !== meta(desired.metadata);
}

// ------------------------------------------------------------------ built-in metrics

/** Istio's standard metrics, as the destination's sidecar reports them, for the canary copy's workload. */
const CANARY_WORKLOAD = 'reporter="destination",destination_workload_namespace="{{ namespace }}",destination_workload=~"{{ target }}-canary"';

export const ISTIO_REQUEST_SUCCESS_RATE_QUERY =
  `sum(rate(istio_requests_total{${CANARY_WORKLOAD},response_code!~"5.*"}[{{ interval }}]))` +
  ` / sum(rate(istio_requests_total{${CANARY_WORKLOAD}}[{{ interval }}])) * 100`;

export const ISTIO_REQUEST_DURATION_QUERY = `histogram_quantile(0.99, sum by (le) (rate(istio_request_duration_milliseconds_bucket{${CANARY_WORKLOAD}}[{{ interval }}])))`;

// ------------------------------------------------------------------ the router

export interface IstioRouterOptions {
  core: k8s.CoreV1Api;
  custom: k8s.CustomObjectsApi;
  /** Informer caches; without them every read is a GET. */
  caches?: { services: ObjectCache<k8s.V1Service>; routerObjects?: (resource: RouterResource) => ObjectCache<unknown> | undefined };
}

/** The copy has a Service of its own; the VirtualService's weights move traffic; the sidecars' metrics judge it. */
export const ISTIO_TRAITS: RouterTraits = {
  copySharesUserService: false,
  builtinMetrics: { 'request-success-rate': ISTIO_REQUEST_SUCCESS_RATE_QUERY, 'request-duration': ISTIO_REQUEST_DURATION_QUERY },
};


export class IstioRouter implements Router {
  readonly name = 'istio';
  readonly traits = ISTIO_TRAITS;
  private readonly services: RouterServices;
  private readonly virtualServices: OwnedObjects<VirtualService>;
  private readonly rules: OwnedObjects<DestinationRule>;
  /** Without informer caches, what this process wrote last is no proof of what is in force: every setWeight reads. */
  private readonly watching: boolean;

  constructor(opts: IstioRouterOptions) {
    this.watching = !!opts.caches?.routerObjects;
    this.services = new RouterServices(opts.core, opts.caches?.services);
    this.virtualServices = new OwnedObjects<VirtualService>(
      customObjectApi<VirtualService>(opts.custom, VIRTUAL_SERVICE),
      opts.caches?.routerObjects?.(VIRTUAL_SERVICE) as ObjectCache<VirtualService> | undefined,
    );
    this.rules = new OwnedObjects<DestinationRule>(
      customObjectApi<DestinationRule>(opts.custom, DESTINATION_RULE),
      opts.caches?.routerObjects?.(DESTINATION_RULE) as ObjectCache<DestinationRule> | undefined,
    );
  }

  /** The canary copy's Pods always get renamed selector labels: only `<svc>-canary` selects them. */
  canaryPodLabels(ctx: RouterContext, podLabels: Record<string, string>): Record<string, string> {
    return renamedCanaryPodLabels(ctx, podLabels);
  }

  /** Sized like the primary (at least one Pod), whatever the weight: the route may move a share to it at once. */
  canaryReplicas(ctx: RouterContext, _weight: number, primaryReplicas: number): number {
    return sizedLikePrimary(ctx, primaryReplicas);
  }

  conflicts(ctx: RouterContext): string[] {
    const out: string[] = [];
    const plan = istioPlan(ctx);
    if (ctx.canary.spec.targetRef.kind === 'Deployment') {
      for (const name of [plan.primary, plan.canary]) {
        const why = this.services.conflict(ctx.namespace, name, ctx.canary);
        if (why) out.push(why);
      }
    }
    for (const name of [plan.primaryRule, plan.canaryRule]) {
      const why = conflictOf(this.rules.cached(plan.namespace, name), ctx.canary, 'DestinationRule');
      if (why) out.push(why);
    }
    const vs = this.virtualServices.cached(plan.namespace, plan.name);
    // The VirtualService itself may be the user's (canary-gate adds its routes to it); another Canary's is not to be shared.
    if (vs && controlledByAnotherCanary(vs, ctx.canary)) out.push(sharedVirtualService(plan, ctx.canary).message);
    return out;
  }

  async reconcile(ctx: RouterContext): Promise<void> {
    const plan = istioPlan(ctx);
    await this.services.ensurePair(ctx);
    await this.ensureRules(ctx, plan);
    await this.writeVirtualService(ctx, plan, (cur) => desiredVirtualService(cur, plan));
  }

  async setWeight(ctx: RouterContext, split: Split): Promise<void> {
    const plan = istioPlan(ctx);
    const extras: RouteExtras = { mirror: split.mirror ?? 0, ...(split.sticky ? { sticky: split.sticky } : {}) };
    const ab = split.weight > 0 && split.match?.length ? toIstioMatches(split.match) : null;
    const want = (cur: VirtualService | undefined) => desiredVirtualService(cur, plan, split.weight, ab, extras);
    // The common case, every sync of a progressing run: the split is in force already (from the caches, no API call).
    const cached = this.virtualServices.cached(plan.namespace, plan.name);
    if (this.watching && cached && !objectDiffers(cached, want(cached)) && this.rulesInForce(plan)) return;
    await this.services.ensurePair(ctx);
    await this.ensureRules(ctx, plan);
    await this.writeVirtualService(ctx, plan, want);
  }

  getWeights(ctx: RouterContext): Weights {
    const plan = istioPlan(ctx);
    return readWeights(this.virtualServices.cached(plan.namespace, plan.name), plan);
  }

  async finalize(ctx: RouterContext): Promise<void> {
    const plan = istioPlan(ctx);
    const vs = await this.virtualServices.read(plan.namespace, plan.name);
    if (vs && !controlledByAnotherCanary(vs, ctx.canary)) {
      const involved = (v: VirtualService | undefined): v is VirtualService => !!v && (ownedBy(v, ctx.canary) || (v.spec?.http ?? []).some(isOurRoute));
      // 1. Everything to the primary, no mirror, no sticky routes (a VirtualService without our routes is not touched).
      const current = await this.writeVirtualService(ctx, plan, (cur) => (cur && (cur.spec?.http ?? []).some(isOurRoute) ? desiredVirtualService(cur, plan, 0, null, { mirror: 0 }) : undefined));
      // 2. Remove what is ours; the VirtualService keeps serving throughout.
      if (involved(current)) {
        // Deleted only when mesh traffic is all it carries: without it the mesh
        // routes to the apex Service by itself, while a gateway's hosts would
        // have no route at all (then it is handed back and kept, below).
        const meshOnly = (current.spec?.gateways ?? ['mesh']).every((g) => g === 'mesh');
        if (ownedBy(current, ctx.canary) && foreignRoutes(current).length === 0 && meshOnly) {
          // With its resourceVersion: one the user changed meanwhile is decided again on fresh data.
          await this.virtualServices.remove(plan.namespace, plan.name, current, true);
        } else {
          // A user's VirtualService (our routes removed: it is as it was), or
          // ours with the user's routes in it (our weight route is handed to
          // the apex Service, and it is given up so garbage collection spares it).
          const apex = ctx.canary.spec.targetRef.kind === 'Service' ? plan.primary : ctx.service ? plan.name : undefined;
          await this.writeVirtualService(ctx, plan, (cur) => (involved(cur) ? disowned(releasedVirtualService(cur, plan, ownedBy(cur, ctx.canary) ? apex : undefined), ctx.canary) : undefined));
        }
      }
    }
    // 3. Nothing routes to the sides any more: their DestinationRules and Services go.
    for (const name of [plan.canaryRule, plan.primaryRule]) {
      const dr = await this.rules.read(plan.namespace, name);
      if (dr && !notOurs(dr, ctx.canary)) await this.rules.remove(plan.namespace, name, dr);
    }
    await this.services.removePair(ctx);
  }

  // ---------------------------------------------------------------- internals

  private sides(plan: IstioPlan): Array<[name: string, host: string]> {
    return [
      [plan.primaryRule, plan.primary],
      [plan.canaryRule, plan.canary],
    ];
  }

  /** Both DestinationRules are in the wanted state in the caches (false without caches: then ensureRules reads). */
  private rulesInForce(plan: IstioPlan): boolean {
    return this.sides(plan).every(([name, host]) => {
      const dr = this.rules.cached(plan.namespace, name);
      return !!dr && !objectDiffers(dr, desiredDestinationRule(dr, plan, name, host));
    });
  }

  private async ensureRules(ctx: RouterContext, plan: IstioPlan): Promise<void> {
    for (const [name, host] of this.sides(plan)) {
      let desired: DestinationRule | undefined;
      await this.rules.write(
        plan.namespace,
        name,
        (cur) => {
          desired = desiredDestinationRule(cur, plan, name, host);
          return objectDiffers(cur, desired) ? desired : undefined;
        },
        {
          check: (cur) => assertOurs(cur, ctx.canary, 'DestinationRule'),
          // A trafficPolicy field the installed schema does not know is pruned: said, not rewritten every sync.
          verify: (written) => {
            if (desired && stored(written.spec) !== stored(desired.spec)) {
              throw new Error(`the API server changed spec.trafficPolicy of DestinationRule ${plan.namespace}/${name} (a field the installed Istio CRDs do not know?): check spec.service.trafficPolicy of Canary ${ctx.canary.metadata.name}`);
            }
          },
        },
      );
    }
  }

  /**
   * Read, compute, compare, write only on a difference (`compute` returning
   * undefined means "leave it as it is"); conflicts are retried on a fresh
   * read. Returns the VirtualService as it is after the call.
   */
  private async writeVirtualService(ctx: RouterContext, plan: IstioPlan, compute: (current: VirtualService | undefined) => VirtualService | undefined): Promise<VirtualService | undefined> {
    return this.virtualServices.write(
      plan.namespace,
      plan.name,
      (current) => {
        const desired = compute(current);
        return desired && objectDiffers(current, desired) ? desired : undefined;
      },
      {
        check: (current) => {
          if (controlledByAnotherCanary(current, ctx.canary)) throw sharedVirtualService(plan, ctx.canary);
        },
      },
    );
  }
}

function sharedVirtualService(plan: IstioPlan, canary: Canary): NameTakenError {
  return new NameTakenError('VirtualService', plan.namespace, plan.name, 'belongs to another Canary', `two Canaries cannot share a VirtualService: set spec.service.name of Canary ${canary.metadata.name}`);
}
