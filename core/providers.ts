// The traffic providers a Canary may name in `spec.provider` (Flagger's
// provider strings, so a Flagger manifest migrates unchanged), what each
// family of routers writes, and which optional Canary fields it honours.
//
// One table, read by three readers: the CRD generator turns FIELD_SUPPORT
// into CEL rules (a field the chosen provider cannot express is refused by
// the API server with a message, never accepted and ignored), the install
// manifests grant the reconciler exactly the ROUTER_RESOURCES, and the
// reconciler's router registry starts one informer per resource.

/** A family of routers: every provider string maps to one. */
export type RouterFamily = 'kubernetes' | 'gatewayapi' | 'istio' | 'smi' | 'nginx' | 'traefik' | 'contour';

/** SMI TrafficSplit API versions, by provider string. */
export type SmiVersion = 'v1alpha1' | 'v1alpha2' | 'v1alpha3';

/** Provider strings that name a family directly. */
export const PLAIN_PROVIDERS = ['kubernetes', 'gatewayapi', 'gatewayapi:v1', 'istio', 'linkerd', 'osm', 'smi', 'nginx', 'traefik', 'contour'] as const;

/** `smi:v1alpha1`, `smi:v1alpha2:linkerd`, ...: an SMI version, optionally with the mesh's name. */
export const SMI_PROVIDER_PATTERN = '^smi:v1alpha[123](:[a-z0-9][a-z0-9.-]*)?$';

/** What the CRD says when spec.provider is none of the above. */
export const PROVIDER_MESSAGE = `provider must be one of ${PLAIN_PROVIDERS.join(', ')}, or smi:v1alpha1|v1alpha2|v1alpha3[:<mesh>]`;

/** The family of a provider string, or undefined for one canary-gate does not know. */
export function routerFamily(provider: string | undefined): RouterFamily | undefined {
  const p = provider ?? 'kubernetes';
  switch (p) {
    case 'kubernetes':
    case 'gatewayapi':
    case 'istio':
    case 'nginx':
    case 'traefik':
    case 'contour':
      return p;
    // Flagger's spelling of the HTTPRoute version canary-gate writes.
    case 'gatewayapi:v1':
      return 'gatewayapi';
    case 'linkerd':
    case 'osm':
    case 'smi':
      return 'smi';
  }
  return new RegExp(SMI_PROVIDER_PATTERN).test(p) ? 'smi' : undefined;
}

/** The TrafficSplit version a provider string asks for (Flagger: linkerd v1alpha1, osm and plain smi v1alpha2). */
export function smiVersion(provider: string | undefined): SmiVersion | undefined {
  if (routerFamily(provider) !== 'smi') return undefined;
  if (provider === 'linkerd') return 'v1alpha1';
  const m = /^smi:(v1alpha[123])/.exec(provider ?? '');
  return (m?.[1] as SmiVersion | undefined) ?? 'v1alpha2';
}

/** A Kubernetes resource a router reads (through an informer) and writes. */
export interface RouterResource {
  group: string;
  version: string;
  plural: string;
  kind: string;
}

/** What each family writes besides the `<apex>-primary`/`<apex>-canary` Services (core v1, always granted). */
export const ROUTER_RESOURCES: Readonly<Record<RouterFamily, readonly RouterResource[]>> = {
  kubernetes: [],
  gatewayapi: [{ group: 'gateway.networking.k8s.io', version: 'v1', plural: 'httproutes', kind: 'HTTPRoute' }],
  istio: [
    { group: 'networking.istio.io', version: 'v1', plural: 'virtualservices', kind: 'VirtualService' },
    { group: 'networking.istio.io', version: 'v1', plural: 'destinationrules', kind: 'DestinationRule' },
  ],
  // Each TrafficSplit version a provider string may write (a router reads the
  // cache of its own version), and the HTTPRouteGroup of v1alpha3 A/B runs
  // (specs.smi-spec.io/v1alpha3 is the version TrafficSplit v1alpha3 is
  // specified with). Versions a cluster does not serve are retried slowly.
  smi: [
    { group: 'split.smi-spec.io', version: 'v1alpha1', plural: 'trafficsplits', kind: 'TrafficSplit' },
    { group: 'split.smi-spec.io', version: 'v1alpha2', plural: 'trafficsplits', kind: 'TrafficSplit' },
    { group: 'split.smi-spec.io', version: 'v1alpha3', plural: 'trafficsplits', kind: 'TrafficSplit' },
    { group: 'specs.smi-spec.io', version: 'v1alpha3', plural: 'httproutegroups', kind: 'HTTPRouteGroup' },
  ],
  nginx: [{ group: 'networking.k8s.io', version: 'v1', plural: 'ingresses', kind: 'Ingress' }],
  traefik: [{ group: 'traefik.io', version: 'v1alpha1', plural: 'traefikservices', kind: 'TraefikService' }],
  contour: [{ group: 'projectcontour.io', version: 'v1', plural: 'httpproxies', kind: 'HTTPProxy' }],
};

/** Every resource of every family, once each (for RBAC and informers). */
export function allRouterResources(): RouterResource[] {
  const seen = new Map<string, RouterResource>();
  for (const list of Object.values(ROUTER_RESOURCES)) for (const r of list) seen.set(`${r.group}/${r.version}/${r.plural}`, r);
  return [...seen.values()];
}

/**
 * Optional Canary fields that only some routers can express, by the CEL
 * path under `spec` that tells whether the field is set, and the families
 * that honour it. A router that learns to honour a field adds its family here
 * (and a test of the effect); the CRD then accepts the field for it.
 */
export interface FieldSupport {
  /** Path under spec as a user writes it, for messages. */
  field: string;
  /** CEL expression over `self` (the spec) that is true when the field is set. */
  isSet: string;
  families: readonly RouterFamily[];
  /** For a family that honours the field only from some provider strings: a CEL condition over `{p}` (the provider). */
  only?: Partial<Record<RouterFamily, { cel: string; test: (provider: string) => boolean; what: string }>>;
}

/** The families whose routers set exact weights (their own objects move the traffic, not the copy's size). */
export const EXACT_WEIGHT_FAMILIES: readonly RouterFamily[] = ['gatewayapi', 'istio', 'smi', 'nginx', 'traefik', 'contour'];

const hasService = (f: string) => `has(self.service.${f})`;
const hasAnalysis = (f: string) => `has(self.analysis) && has(self.analysis.${f})`;

export const FIELD_SUPPORT: readonly FieldSupport[] = [
  { field: 'service.gatewayRefs', isSet: hasService('gatewayRefs'), families: ['gatewayapi'] },
  {
    field: 'service.hosts',
    isSet: hasService('hosts'),
    families: ['gatewayapi', 'istio', 'smi'],
    // A TrafficSplit has one root service: hosts[0] names it.
    only: { smi: { cel: 'size(self.service.hosts) == 1', test: () => true, what: 'smi (one host: the TrafficSplit root service)' } },
  },
  { field: 'service.headers', isSet: hasService('headers'), families: ['gatewayapi', 'istio', 'contour'] },
  { field: 'service.match', isSet: hasService('match'), families: ['gatewayapi', 'istio'] },
  { field: 'service.timeout', isSet: hasService('timeout'), families: ['gatewayapi', 'istio', 'contour'] },
  { field: 'service.retries', isSet: hasService('retries'), families: ['istio', 'contour'] },
  { field: 'service.gateways', isSet: hasService('gateways'), families: ['istio'] },
  { field: 'service.trafficPolicy', isSet: hasService('trafficPolicy'), families: ['istio'] },
  { field: 'service.corsPolicy', isSet: hasService('corsPolicy'), families: ['istio'] },
  { field: 'service.rewrite', isSet: hasService('rewrite'), families: ['istio'] },
  { field: 'ingressRef', isSet: 'has(self.ingressRef)', families: ['nginx'] },
  {
    field: 'analysis.match',
    isSet: hasAnalysis('match'),
    families: ['gatewayapi', 'istio', 'smi', 'nginx', 'contour'],
    // TrafficSplit matches exist from v1alpha3 on. One TrafficSplit limited to
    // the matching requests is an A/B run (analysis.iterations), and an
    // HTTPRouteGroup matches path, method and headers, not query parameters.
    only: {
      smi: {
        cel: "{p}.matches('^smi:v1alpha3(:.*)?$') && has(self.analysis.iterations) && self.analysis.iterations > 0 && self.analysis.match.all(m, !has(m.queryParams) && !has(m.sourceLabels))",
        test: (provider) => /^smi:v1alpha3(:.*)?$/.test(provider),
        what: 'smi:v1alpha3[:<mesh>] (A/B with analysis.iterations; path, method and headers only)',
      },
    },
  },
  // Matching the calling workload's labels needs the mesh's view of the caller: only Istio has it.
  {
    field: 'match[].sourceLabels',
    isSet: `(${hasService('match')} && self.service.match.exists(m, has(m.sourceLabels))) || (${hasAnalysis('match')} && self.analysis.match.exists(m, has(m.sourceLabels)))`,
    families: ['istio'],
  },
  { field: 'analysis.mirror', isSet: `${hasAnalysis('mirror')} && self.analysis.mirror`, families: ['gatewayapi', 'istio', 'contour', 'traefik'] },
  { field: 'analysis.mirrorWeight', isSet: hasAnalysis('mirrorWeight'), families: ['gatewayapi', 'istio', 'contour', 'traefik'] },
  { field: 'analysis.sessionAffinity', isSet: hasAnalysis('sessionAffinity'), families: ['gatewayapi', 'istio', 'traefik'] },
  // Stepping traffic back to the promoted primary needs exact weights; the
  // kubernetes router's weight is the copy's share of the ready Pods.
  { field: 'analysis.stepWeightPromotion', isSet: hasAnalysis('stepWeightPromotion'), families: EXACT_WEIGHT_FAMILIES },
  {
    field: 'service.portDiscovery',
    isSet: `${hasService('portDiscovery')} && self.service.portDiscovery`,
    families: ['kubernetes', ...EXACT_WEIGHT_FAMILIES],
    // A weighted kubernetes run creates no Service: the user's own carries the traffic.
    only: { kubernetes: { cel: 'has(self.analysis) && has(self.analysis.iterations) && self.analysis.iterations > 0', test: () => true, what: 'kubernetes (blue/green and A/B only: its <apex>-canary Service)' } },
  },
];

/** Families that require a field (nginx clones the user's Ingress). */
export const FIELD_REQUIRED: Partial<Record<RouterFamily, { field: string; isSet: string }>> = {
  nginx: { field: 'ingressRef', isSet: 'has(self.ingressRef)' },
};

/** CEL: the family of `p`, the provider string (as routerFamily does). */
function familyIs(family: RouterFamily, p: string): string {
  if (family === 'smi') return `(${p} in ['linkerd', 'osm', 'smi'] || ${p}.matches('${SMI_PROVIDER_PATTERN}'))`;
  if (family === 'gatewayapi') return `${p} in ['gatewayapi', 'gatewayapi:v1']`;
  return `${p} == '${family}'`;
}

/** The CEL rules the Canary spec carries: one per field of FIELD_SUPPORT, and one per required field. */
export function fieldSupportRules(): Array<{ rule: string; message: string }> {
  const p = "(has(self.provider) ? self.provider : 'kubernetes')";
  const rules: Array<{ rule: string; message: string }> = [];
  for (const f of FIELD_SUPPORT) {
    const ok = f.families.map((fam) => {
      const only = f.only?.[fam];
      return only ? `(${familyIs(fam, p)} && ${only.cel.replaceAll('{p}', p)})` : familyIs(fam, p);
    });
    const names = f.families.map((fam) => (f.only?.[fam] ? f.only[fam]?.what : fam));
    const allowed = ok.length ? ok.join(' || ') : 'false';
    rules.push({
      rule: `!(${f.isSet}) || ${allowed}`,
      message: names.length ? `${f.field} is honoured only by the providers ${names.join(', ')}` : `${f.field} is not honoured by any provider yet`,
    });
  }
  for (const [fam, req] of Object.entries(FIELD_REQUIRED) as Array<[RouterFamily, { field: string; isSet: string }]>) {
    rules.push({ rule: `!(${familyIs(fam, p)}) || (${req.isSet})`, message: `the ${fam} provider needs ${req.field}` });
  }
  return rules;
}

/** The same judgement in TypeScript (for the unit tests and the in-memory API): the messages of the rules a spec breaks. */
export function unsupportedFields(provider: string | undefined, isSet: (field: string) => boolean): string[] {
  const family = routerFamily(provider);
  const out: string[] = [];
  for (const f of FIELD_SUPPORT) {
    if (!isSet(f.field)) continue;
    const ok = f.families.some((fam) => fam === family && (f.only?.[fam]?.test(provider ?? 'kubernetes') ?? true));
    if (!ok) out.push(f.field);
  }
  return out;
}
