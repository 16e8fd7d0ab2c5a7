// The `nginx` router (ingress-nginx). Traffic enters through the user's
// Ingress (spec.ingressRef), which keeps pointing at the apex Service. In
// canary-gate the primary is the user's own Deployment and the canary copy's
// Pods carry renamed selector labels, so the apex Service (and with it the
// user's Ingress) reaches only the primary's Pods.
//
// The router clones the user's Ingress into `<ingress>-canary`, owned by the
// Canary, with every backend on the apex Service rewritten to
// `<apex>-canary`, and marks it as ingress-nginx's canary Ingress with
// annotations: `canary: "true"`, `canary-weight: "<w>"`, and for A/B the
// `canary-by-header*` / `canary-by-cookie` annotations. ingress-nginx merges
// a canary Ingress of the same host and path into the user's one as an
// alternative backend and decides per request: header first, then cookie,
// then weight. The user's Ingress is never modified.
//
// What the router owns on the canary Ingress: its spec (always the user's
// spec with the apex backends rewritten: an edit there is put back) and the
// `nginx.ingress.kubernetes.io/canary*` annotations. The user's other
// annotations and labels are copied (ingress-nginx takes the non-canary
// annotations from the main Ingress anyway); annotations someone adds to the
// canary Ingress are kept.
//
// Like gatewayapi, the router owns `<apex>-primary` and `<apex>-canary`
// Services; the canary Ingress sends its share to `<apex>-canary`.
//
// How analysis.match maps (ingress-nginx allows one header and one cookie):
//   headers: {x: {exact: v}}    canary-by-header: x, canary-by-header-value: v
//   headers: {x: {regex: r}}    canary-by-header: x, canary-by-header-pattern: r
//   headers: {x: {prefix: p}}   canary-by-header-pattern: ^<p escaped>
//   headers: {x: {suffix: s}}   canary-by-header-pattern: <s escaped>$
//   headers: {cookie: {exact: NAME}}  canary-by-cookie: NAME, i.e. a request
//                               whose cookie NAME has the value "always"
//                               goes to the canary (ingress-nginx's meaning;
//                               Flagger maps a cookie match the same way)
// Match entries are alternatives, as ingress-nginx's header and cookie
// rules are, so two entries (one header, one cookie) are fine; an entry with
// two conditions (an AND), a second header, a uri, query, method or a
// cookie matched other than by its name cannot be expressed and is refused
// with an error naming it.

import type * as k8s from '@kubernetes/client-node';
import type { Canary, HttpMatch, StringMatch } from '../../core/api/types.js';
import { CANARY_SUFFIX, MANAGED_BY, MANAGED_BY_LABEL } from '../../core/contract.js';
import type { RouterResource } from '../../core/providers.js';
import { canonicalJson } from '../../core/revision.js';
import { apexServiceName, canaryOwnerReference, copiedAnnotations, copiedLabels, ownedBy, withCanaryOwner } from '../apply/copy.js';
import type { ObjectCache } from '../observe/caches.js';
import { isTrafficShifting } from './kubernetes.js';
import { OwnedObjects, assertOurs, conflictOf, customObjectApi } from './owned.js';
import type { Router, RouterContext, RouterTraits, Split, Weights } from './router.js';
import { escapeRegex } from './split.js';
import { RouterServices, renamedCanaryPodLabels, sizedLikePrimary } from './services.js';

export const INGRESS_RESOURCE: RouterResource = { group: 'networking.k8s.io', version: 'v1', plural: 'ingresses', kind: 'Ingress' };

const PREFIX = 'nginx.ingress.kubernetes.io/';
export const CANARY_ANNOTATION = `${PREFIX}canary`;
export const WEIGHT_ANNOTATION = `${PREFIX}canary-weight`;
export const BY_HEADER = `${PREFIX}canary-by-header`;
export const BY_HEADER_VALUE = `${PREFIX}canary-by-header-value`;
export const BY_HEADER_PATTERN = `${PREFIX}canary-by-header-pattern`;
export const BY_COOKIE = `${PREFIX}canary-by-cookie`;
/** Every ingress-nginx canary annotation: ours on the canary Ingress, never copied from the user's. */
const isCanaryAnnotation = (key: string) => key === CANARY_ANNOTATION || key.startsWith(`${CANARY_ANNOTATION}-`);
const MATCH_ANNOTATIONS = [BY_HEADER, BY_HEADER_VALUE, BY_HEADER_PATTERN, BY_COOKIE];

// ------------------------------------------------------------------ Ingress shapes (plain JSON, as the API returns it)

export interface IngressBackend {
  service?: { name: string; port?: { number?: number; name?: string } };
  resource?: unknown;
}

export interface IngressSpec {
  ingressClassName?: string;
  defaultBackend?: IngressBackend;
  tls?: unknown[];
  rules?: Array<{ host?: string; http?: { paths: Array<{ path?: string; pathType?: string; backend: IngressBackend }> } }>;
  [other: string]: unknown;
}

export interface Ingress {
  apiVersion?: string;
  kind?: string;
  metadata: k8s.V1ObjectMeta;
  spec?: IngressSpec;
  status?: unknown;
}

// ------------------------------------------------------------------ pure parts

/** The canary Ingress's name: the user's Ingress name with `-canary`. */
export function canaryIngressName(canary: Canary): string {
  return `${ingressRefName(canary)}${CANARY_SUFFIX}`;
}

function ingressRefName(canary: Canary): string {
  const name = canary.spec.ingressRef?.name;
  // The CRD refuses provider nginx without ingressRef; a Canary stored before that rule gets a clear error.
  if (!name) throw new Error(`Canary ${canary.metadata.name}: the nginx provider needs spec.ingressRef (the Ingress to clone as the canary Ingress)`);
  return name;
}

/** Where the canary Ingress sends the apex Service's traffic. */
function canaryBackendService(ctx: RouterContext): { apex: string; canary: string } {
  if (ctx.canary.spec.targetRef.kind === 'Service') {
    const name = ctx.canary.spec.targetRef.name;
    return { apex: name, canary: `${name}${CANARY_SUFFIX}` };
  }
  const apex = apexServiceName(ctx.canary);
  return { apex, canary: `${apex}${CANARY_SUFFIX}` };
}


function headerRule(name: string, m: StringMatch): Record<string, string> {
  if (m.exact !== undefined) return { [BY_HEADER]: name, [BY_HEADER_VALUE]: m.exact };
  if (m.regex !== undefined) return { [BY_HEADER]: name, [BY_HEADER_PATTERN]: m.regex };
  if (m.prefix !== undefined) return { [BY_HEADER]: name, [BY_HEADER_PATTERN]: `^${escapeRegex(m.prefix)}` };
  if (m.suffix !== undefined) return { [BY_HEADER]: name, [BY_HEADER_PATTERN]: `${escapeRegex(m.suffix)}$` };
  throw new Error(`analysis.match: header ${name} sets none of exact, prefix, suffix, regex`);
}

/**
 * analysis.match as ingress-nginx canary annotations; throws an error that
 * says what cannot be expressed (see the table at the top of the file).
 */
export function matchAnnotations(matches: HttpMatch[]): Record<string, string> {
  const out: Record<string, string> = {};
  const refuse = (what: string) => {
    throw new Error(`analysis.match cannot be expressed with the nginx provider: ${what} (ingress-nginx routes a canary by one header and one cookie, each on its own)`);
  };
  matches.forEach((m, i) => {
    const at = `match[${i}]`;
    if (m.uri) refuse(`${at} matches the uri`);
    if (m.queryParams && Object.keys(m.queryParams).length) refuse(`${at} matches query parameters`);
    if (m.method) refuse(`${at} matches the method`);
    if (m.sourceLabels && Object.keys(m.sourceLabels).length) refuse(`${at} matches source labels`);
    const headers = Object.entries(m.headers ?? {});
    if (headers.length === 0) refuse(`${at} has no header condition`);
    if (headers.length > 1) refuse(`${at} asks for ${headers.length} headers at once (${headers.map(([h]) => h).join(', ')}); give each its own match entry`);
    const [name, sm] = headers[0] as [string, StringMatch];
    if (name.toLowerCase() === 'cookie') {
      if (sm.exact === undefined || sm.prefix !== undefined || sm.suffix !== undefined || sm.regex !== undefined) {
        refuse(`${at} matches the cookie header other than by exact name (with nginx, headers.cookie.exact is the name of a cookie whose value "always" selects the canary)`);
      }
      if (out[BY_COOKIE] !== undefined) refuse(`${at} is a second cookie match`);
      if (!/^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/.test(sm.exact as string)) refuse(`${at}: ${JSON.stringify(sm.exact)} is not a cookie name`);
      out[BY_COOKIE] = sm.exact as string;
      return;
    }
    if (out[BY_HEADER] !== undefined) refuse(`${at} is a second header match (${out[BY_HEADER]} and ${name})`);
    Object.assign(out, headerRule(name, sm));
  });
  return out;
}

/** The user's Ingress spec with every backend on `from` sent to `to`; throws when no backend is on `from`. */
export function rewriteBackends(spec: IngressSpec | undefined, from: string, to: string, where: string): IngressSpec {
  const out = structuredClone(spec ?? {});
  let rewritten = 0;
  const rewrite = (b: IngressBackend | undefined) => {
    if (b?.service?.name === from) {
      b.service.name = to;
      rewritten++;
    }
  };
  rewrite(out.defaultBackend);
  for (const rule of out.rules ?? []) for (const p of rule.http?.paths ?? []) rewrite(p.backend);
  if (rewritten === 0) {
    throw new Error(`${where} has no backend on Service ${from}: the canary Ingress could not send any traffic to ${to}; point the Ingress at Service ${from} (or set spec.service.name)`);
  }
  return out;
}

/** The state the canary Ingress's annotations put in force. */
export interface NginxSplit {
  weight: number;
  /** The A/B annotations (empty = none). */
  match: Record<string, string>;
}

/** What the canary Ingress says: its weight and A/B annotations (absent Ingress: all to the primary). */
export function readSplit(ingress: Ingress | undefined): NginxSplit {
  const a = ingress?.metadata?.annotations ?? {};
  if (!ingress || a[CANARY_ANNOTATION] !== 'true') return { weight: 0, match: {} };
  const n = Number(a[WEIGHT_ANNOTATION] ?? '0');
  const match: Record<string, string> = {};
  for (const k of MATCH_ANNOTATIONS) if (a[k] !== undefined) match[k] = a[k] as string;
  return { weight: Number.isFinite(n) ? Math.min(100, Math.max(0, Math.round(n))) : 0, match };
}

/**
 * The canary Ingress wanted: the user's spec with the apex backends
 * rewritten, the user's labels and annotations copied, annotations others
 * added to the canary Ingress kept, and ours set. `split` undefined keeps
 * the split in force (weight 0 for a new Ingress). Pure.
 */
export function desiredCanaryIngress(ctx: RouterContext, user: Ingress, existing: Ingress | undefined, split?: NginxSplit): Ingress {
  const { apex, canary } = canaryBackendService(ctx);
  const name = canaryIngressName(ctx.canary);
  const where = `Ingress ${ctx.namespace}/${user.metadata.name}`;
  const spec = rewriteBackends(user.spec, apex, canary, where);
  const inForce = split ?? readSplit(existing);
  const annotations: Record<string, string> = {};
  for (const [k, v] of Object.entries(existing?.metadata?.annotations ?? {})) if (!isCanaryAnnotation(k)) annotations[k] = v;
  for (const [k, v] of Object.entries(copiedAnnotations(user.metadata.annotations))) if (!isCanaryAnnotation(k)) annotations[k] = v;
  Object.assign(annotations, { [CANARY_ANNOTATION]: 'true', [WEIGHT_ANNOTATION]: String(inForce.weight) }, inForce.match);
  const metadata: k8s.V1ObjectMeta = {
    ...(existing ? editableMeta(existing.metadata) : {}),
    name,
    namespace: ctx.namespace,
    labels: { ...(existing?.metadata?.labels ?? {}), ...copiedLabels(user.metadata.labels), [MANAGED_BY_LABEL]: MANAGED_BY },
    annotations,
    ownerReferences: existing ? withOwner(existing.metadata.ownerReferences, ctx.canary) : [canaryOwnerReference(ctx.canary)],
  };
  return { apiVersion: 'networking.k8s.io/v1', kind: 'Ingress', metadata, spec };
}

function editableMeta(m: k8s.V1ObjectMeta): k8s.V1ObjectMeta {
  const out = { ...m };
  delete out.managedFields;
  return out;
}

/** The owners of an existing canary Ingress with this Canary as controller (unchanged when it is already). */
function withOwner(existing: k8s.V1OwnerReference[] | undefined, canary: Canary): k8s.V1OwnerReference[] {
  const list = existing ?? [];
  return list.some((o) => o.uid === canary.metadata.uid && o.controller) ? list : withCanaryOwner(list, canary);
}

/** True when writing `desired` would change `existing` (spec, labels, annotations, owners). */
export function ingressDiffers(existing: Ingress | undefined, desired: Ingress): boolean {
  if (!existing) return true;
  const view = (i: Ingress) =>
    canonicalJson({ s: i.spec ?? {}, l: i.metadata.labels ?? {}, a: i.metadata.annotations ?? {}, o: (i.metadata.ownerReferences ?? []).map((o) => o.uid) });
  return view(existing) !== view(desired);
}

// ------------------------------------------------------------------ built-in metrics

/**
 * ingress-nginx labels a request's series with the Ingress whose location
 * served it (the user's Ingress: the canary Ingress is merged into it) and,
 * when the canary backend answered, `canary` with that backend's upstream
 * name (empty otherwise): the canary's requests are
 * `ingress="<user's Ingress>",canary!=""`.
 */
const NGINX_CANARY = 'namespace="{{ namespace }}",ingress="{{ ingress }}",canary!=""';

export const NGINX_METRICS: Readonly<Record<string, string>> = {
  'request-success-rate':
    `sum(rate(nginx_ingress_controller_requests{${NGINX_CANARY},status!~"5.*"}[{{ interval }}]))` +
    ` / sum(rate(nginx_ingress_controller_requests{${NGINX_CANARY}}[{{ interval }}])) * 100`,
  'request-duration': `histogram_quantile(0.99, sum by (le) (rate(nginx_ingress_controller_request_duration_seconds_bucket{${NGINX_CANARY}}[{{ interval }}]))) * 1000`,
};

// ------------------------------------------------------------------ the router

function missingIngress(ctx: RouterContext, name: string): string {
  return `Ingress ${ctx.namespace}/${name} (spec.ingressRef of Canary ${ctx.canary.metadata.name}) does not exist: create it, or correct spec.ingressRef`;
}

export interface NginxRouterOptions {
  core: k8s.CoreV1Api;
  custom: k8s.CustomObjectsApi;
  /** Informer caches; without them every read is a GET. */
  caches?: { services: ObjectCache<k8s.V1Service>; routerObjects?: (r: RouterResource) => ObjectCache<unknown> | undefined };
}

/** The copy has a Service of its own; the canary Ingress's weight moves traffic. */
export const NGINX_TRAITS: RouterTraits = { copySharesUserService: false, builtinMetrics: NGINX_METRICS };

export class NginxRouter implements Router {
  readonly name = 'nginx';
  readonly traits = NGINX_TRAITS;
  private readonly services: RouterServices;
  private readonly ingresses: OwnedObjects<Ingress>;

  constructor(opts: NginxRouterOptions) {
    this.services = new RouterServices(opts.core, opts.caches?.services);
    const custom = opts.custom;
    this.ingresses = new OwnedObjects<Ingress>(
      customObjectApi<Ingress>(custom, INGRESS_RESOURCE),
      opts.caches?.routerObjects?.(INGRESS_RESOURCE) as ObjectCache<Ingress> | undefined,
    );
  }

  canaryPodLabels(ctx: RouterContext, podLabels: Record<string, string>): Record<string, string> {
    return renamedCanaryPodLabels(ctx, podLabels);
  }

  /** Sized like the primary (at least one Pod) whatever the weight, as with gatewayapi. */
  canaryReplicas(ctx: RouterContext, _weight: number, primaryReplicas: number): number {
    return sizedLikePrimary(ctx, primaryReplicas);
  }

  /**
   * Besides names taken, what keeps this router from routing, so that the
   * Canary reports it (condition, Warning Event, status message) and no run
   * starts: a referenced Ingress that does not exist, an analysis.match
   * ingress-nginx cannot express.
   */
  conflicts(ctx: RouterContext): string[] {
    const out = this.services.pairConflicts(ctx);
    const match = ctx.canary.spec.analysis?.match;
    if (match?.length) {
      try {
        matchAnnotations(match);
      } catch (err) {
        out.push((err as Error).message);
      }
    }
    const ref = ctx.canary.spec.ingressRef?.name;
    if (!ref) return out;
    if (!this.ingresses.cached(ctx.namespace, ref)) out.push(missingIngress(ctx, ref));
    const why = conflictOf(this.ingresses.cached(ctx.namespace, canaryIngressName(ctx.canary)), ctx.canary, 'Ingress', `rename it: canary-gate needs the name for the canary Ingress of ${ref}`);
    if (why) out.push(why);
    return out;
  }

  async reconcile(ctx: RouterContext): Promise<void> {
    this.checkMatch(ctx);
    const user = await this.userIngress(ctx);
    await this.services.ensurePair(ctx);
    await this.writeCanaryIngress(ctx, (cur) => desiredCanaryIngress(ctx, user, cur));
  }

  async setWeight(ctx: RouterContext, split: Split): Promise<void> {
    const wanted = this.wantedSplit(ctx, split);
    const user = await this.userIngress(ctx);
    const name = canaryIngressName(ctx.canary);
    // The common case, every sync of a progressing run: nothing to change.
    const cached = this.ingresses.cached(ctx.namespace, name);
    if (cached && !ingressDiffers(cached, desiredCanaryIngress(ctx, user, cached, wanted))) return;
    await this.services.ensurePair(ctx);
    await this.writeCanaryIngress(ctx, (cur) => desiredCanaryIngress(ctx, user, cur, wanted));
  }

  getWeights(ctx: RouterContext): Weights {
    if (!ctx.canary.spec.ingressRef?.name) return { primary: 100, canary: 0 };
    const s = readSplit(this.ingresses.cached(ctx.namespace, canaryIngressName(ctx.canary)));
    // A/B: the weight stays 0 and matching requests reach the canary; an
    // active match reads as "the canary gets traffic", so that a caller
    // re-asserting weight 0 removes a leftover one (as gatewayapi does).
    if (!isTrafficShifting(ctx.canary) && Object.keys(s.match).length > 0) return { primary: 0, canary: 100 };
    return { primary: 100 - s.weight, canary: s.weight };
  }

  async finalize(ctx: RouterContext): Promise<void> {
    if (ctx.canary.spec.ingressRef?.name) {
      const ns = ctx.namespace;
      const name = canaryIngressName(ctx.canary);
      const current = await this.ingresses.read(ns, name);
      if (current && ownedBy(current, ctx.canary)) {
        // 1. All traffic to the primary while the canary Ingress still exists
        //    (ingress-nginx drops a removed canary on its next reload; until
        //    then the weight 0 is what it applies).
        const zeroed = await this.ingresses.write(
          ns,
          name,
          (cur) => {
            if (!cur || !ownedBy(cur, ctx.canary)) return undefined;
            const s = readSplit(cur);
            if (s.weight === 0 && Object.keys(s.match).length === 0) return undefined;
            const out = structuredClone(cur);
            delete out.status;
            delete out.metadata.managedFields;
            const a = { ...(out.metadata.annotations ?? {}) };
            for (const k of MATCH_ANNOTATIONS) delete a[k];
            a[WEIGHT_ANNOTATION] = '0';
            out.metadata.annotations = a;
            return out;
          },
          { check: (cur) => assertOurs(cur, ctx.canary, 'Ingress') },
        );
        // 2. Then the canary Ingress goes.
        if (zeroed) await this.ingresses.remove(ns, name, zeroed);
      }
    }
    await this.services.removePair(ctx);
  }

  // ---------------------------------------------------------------- internals

  /** Refuses an analysis.match nginx cannot express, before any object is written. */
  private checkMatch(ctx: RouterContext): void {
    const match = ctx.canary.spec.analysis?.match;
    if (match?.length) matchAnnotations(match);
  }

  private wantedSplit(ctx: RouterContext, split: Split): NginxSplit {
    const w = Math.min(100, Math.max(0, Math.round(split.weight)));
    const match = w > 0 && split.match?.length ? matchAnnotations(split.match) : {};
    // A/B: only matching requests reach the canary; the weight stays 0.
    const weight = !isTrafficShifting(ctx.canary) && Object.keys(match).length > 0 ? 0 : w;
    return { weight, match };
  }

  /** The user's Ingress, from the cache; a clear error when it does not exist. */
  private async userIngress(ctx: RouterContext): Promise<Ingress> {
    const name = ingressRefName(ctx.canary);
    const user = await this.ingresses.read(ctx.namespace, name);
    if (!user) throw new Error(missingIngress(ctx, name));
    return user;
  }

  private async writeCanaryIngress(ctx: RouterContext, compute: (current: Ingress | undefined) => Ingress): Promise<void> {
    await this.ingresses.write(
      ctx.namespace,
      canaryIngressName(ctx.canary),
      (cur) => {
        const desired = compute(cur);
        return ingressDiffers(cur, desired) ? desired : undefined;
      },
      { check: (cur) => assertOurs(cur, ctx.canary, 'Ingress', `rename it: canary-gate needs the name for the canary Ingress of ${ctx.canary.spec.ingressRef?.name}`) },
    );
  }
}
