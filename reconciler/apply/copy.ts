// Pure builders for the objects the reconciler creates next to the user's
// target: the canary copy `<name>-canary` (a Deployment running the pending
// pod template, or a Service holding the pending Service spec) and the
// companion Services a router needs. No I/O here: every function returns a
// fresh object and never mutates its inputs, so each one is unit-tested on
// plain data.

import type * as k8s from '@kubernetes/client-node';
import { API_VERSION, CANARY_ROLE, CANARY_SUFFIX, CONTROL_ANNOTATIONS, GROUP, MANAGED_BY, MANAGED_BY_LABEL, MANAGED_LABEL, REVISION_LABEL, ROLE_LABEL, canaryName } from '../../core/contract.js';
import type { Canary, CanaryService, ObjectMetadataOverrides } from '../../core/api/types.js';
import { canonicalJson } from '../../core/revision.js';
import { withoutAllocatedFields } from '../../core/targets/index.js';
import type { SyncContext } from '../observe/context.js';
import { withCopyReferences } from '../observe/configs.js';

// ------------------------------------------------------------------ metadata

/** Annotations that are never carried over from the target to anything canary-gate creates. */
const DROPPED_ANNOTATIONS: ReadonlySet<string> = new Set([
  ...CONTROL_ANNOTATIONS,
  'kubectl.kubernetes.io/last-applied-configuration',
  'deployment.kubernetes.io/revision',
]);

/**
 * Prefixes of labels and annotations by which GitOps and packaging tools
 * claim an object as theirs. The copy is canary-gate's object: carrying such a
 * marker would make Argo CD, Flux or Helm treat it as part of the user's
 * release (and offer to prune or adopt it).
 */
const OWNERSHIP_PREFIXES: readonly string[] = ['argocd.argoproj.io/', 'kustomize.toolkit.fluxcd.io/', 'helm.toolkit.fluxcd.io/', 'meta.helm.sh/', 'kapp.k14s.io/'];
const OWNERSHIP_LABELS: ReadonlySet<string> = new Set(['app.kubernetes.io/instance', 'app.kubernetes.io/managed-by', 'helm.sh/chart']);

function carried(key: string): boolean {
  return !OWNERSHIP_PREFIXES.some((p) => key.startsWith(p));
}

/** The target's labels that the copy keeps: no managed label, no GitOps ownership markers. */
export function copiedLabels(labels: Record<string, string> | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(labels ?? {})) {
    if (k === MANAGED_LABEL || k === REVISION_LABEL || k === ROLE_LABEL || OWNERSHIP_LABELS.has(k) || !carried(k)) continue;
    out[k] = v;
  }
  return out;
}

/** The target's annotations that the copy keeps: no control annotations, no last-applied configuration, no GitOps markers. */
export function copiedAnnotations(annotations: Record<string, string> | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(annotations ?? {})) {
    if (DROPPED_ANNOTATIONS.has(k) || !carried(k)) continue;
    out[k] = v;
  }
  return out;
}

/** The ownerReference that ties an object to its Canary, so deleting the Canary garbage-collects it. */
export function canaryOwnerReference(canary: Canary): k8s.V1OwnerReference {
  // No blockOwnerDeletion: setting it needs update rights on canaries/finalizers,
  // and the reconciler's finalizer already orders the clean-up.
  return {
    apiVersion: canary.apiVersion || API_VERSION,
    kind: 'Canary',
    name: canary.metadata.name ?? '',
    uid: canary.metadata.uid ?? '',
    controller: true,
  };
}

/** True when `obj` is controlled by this Canary (same uid). */
export function ownedBy(obj: { metadata?: k8s.V1ObjectMeta } | undefined, canary: Canary): boolean {
  const uid = canary.metadata.uid;
  return !!uid && (obj?.metadata?.ownerReferences ?? []).some((o) => o.uid === uid);
}

/** True when `obj` was created by canary-gate (any Canary): owned by a canarygate.dev object or labelled managed-by. */
export function createdByCanaryGate(obj: { metadata?: k8s.V1ObjectMeta } | undefined): boolean {
  if (obj?.metadata?.labels?.[MANAGED_BY_LABEL] === MANAGED_BY) return true;
  return (obj?.metadata?.ownerReferences ?? []).some((o) => o.apiVersion?.startsWith(`${GROUP}/`) && o.kind === 'Canary');
}

/** ownerReferences of an existing object with this Canary as its controller (other owners kept, older Canary owners dropped). */
export function withCanaryOwner(existing: k8s.V1OwnerReference[] | undefined, canary: Canary): k8s.V1OwnerReference[] {
  const others = (existing ?? []).filter((o) => !(o.kind === 'Canary' && o.apiVersion?.startsWith(`${GROUP}/`)));
  return [...others.map((o) => (o.controller ? { ...o, controller: false } : o)), canaryOwnerReference(canary)];
}

// ------------------------------------------------------------------ labels

/** Label values are at most 63 characters of [A-Za-z0-9-_.], starting and ending alphanumeric. */
const LABEL_VALUE_MAX = 63;

/** `value` with `-canary` appended, shortened so that the result is still a valid label value. */
export function canaryLabelValue(value: string): string {
  if (value === '') return CANARY_ROLE;
  let base = value.slice(0, LABEL_VALUE_MAX - CANARY_SUFFIX.length);
  base = base.replace(/[^A-Za-z0-9]+$/, '');
  return base === '' ? CANARY_ROLE : `${base}${CANARY_SUFFIX}`;
}

/**
 * Pod labels for a canary copy that must not receive the user's traffic:
 * the value of every label named in `keys` (the selector labels of the
 * target and of the user's Service) gets `-canary` appended, e.g. app=web
 * becomes app=web-canary. Other labels are kept as they are.
 */
export function renameSelectorLabels(labels: Record<string, string>, keys: Iterable<string>): Record<string, string> {
  const out: Record<string, string> = { ...labels };
  for (const k of keys) {
    const v = out[k];
    if (v !== undefined) out[k] = canaryLabelValue(v);
  }
  return out;
}

/** The label keys that select the primary's Pods: the target's matchLabels and the user's Service selector. */
export function selectorKeys(target: k8s.V1Deployment | undefined, service: k8s.V1Service | undefined): string[] {
  const keys = new Set<string>(Object.keys(target?.spec?.selector?.matchLabels ?? {}));
  for (const k of Object.keys(service?.spec?.selector ?? {})) keys.add(k);
  return [...keys];
}

/**
 * The selector of the canary copy: the target's matchLabels keys with the
 * values the canary Pods get (`podLabels`), plus role=canary. Built from the
 * target's (immutable) selector keys, so it stays the same across revisions
 * and never selects the primary's Pods (those lack role=canary).
 */
export function canarySelector(target: k8s.V1Deployment, podLabels: Record<string, string>): Record<string, string> {
  const selector: Record<string, string> = {};
  for (const k of Object.keys(target.spec?.selector?.matchLabels ?? {})) {
    const v = podLabels[k];
    if (v !== undefined) selector[k] = v;
  }
  if (Object.keys(selector).length === 0) {
    // A target selected by matchExpressions only: select on all the Pod labels.
    Object.assign(selector, podLabels);
  }
  selector[ROLE_LABEL] = CANARY_ROLE;
  // Keys sorted, as the API server returns a map: a stored selector and a
  // freshly built one then serialise alike.
  return Object.fromEntries(Object.entries(selector).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}

// ------------------------------------------------------------------ the canary copy

export interface CanaryDeploymentInput {
  /** The user's Deployment (live, stable spec). */
  target: k8s.V1Deployment;
  /** The pending pod template (parsed from canarygate.dev/pending-spec). */
  pendingTemplate: k8s.V1PodTemplateSpec;
  revision: string;
  replicas: number;
  /** Labels of the canary Pods, from router.canaryPodLabels(). */
  podLabels: Record<string, string>;
  canary: Canary;
}

/** The canary copy `<name>-canary` of a Deployment, running the pending pod template. */
export function buildCanaryDeployment(input: CanaryDeploymentInput): k8s.V1Deployment {
  const { target, pendingTemplate, revision, replicas, podLabels, canary } = input;
  const name = canaryName(target.metadata?.name ?? '');
  const template = structuredClone(pendingTemplate) as k8s.V1PodTemplateSpec;
  template.metadata = {
    ...(template.metadata ?? {}),
    labels: { ...podLabels, [ROLE_LABEL]: CANARY_ROLE, [REVISION_LABEL]: revision },
  };
  const labels = { ...copiedLabels(target.metadata?.labels), [ROLE_LABEL]: CANARY_ROLE, [REVISION_LABEL]: revision };
  const annotations = copiedAnnotations(target.metadata?.annotations);
  const spec: k8s.V1DeploymentSpec = {
    replicas: Math.max(0, Math.floor(replicas)),
    selector: { matchLabels: canarySelector(target, podLabels) },
    template,
  };
  const t = target.spec;
  if (t?.strategy) spec.strategy = structuredClone(t.strategy);
  if (t?.minReadySeconds !== undefined) spec.minReadySeconds = t.minReadySeconds;
  if (t?.progressDeadlineSeconds !== undefined) spec.progressDeadlineSeconds = t.progressDeadlineSeconds;
  // The copy's history is of no use: every revision is a fresh template.
  spec.revisionHistoryLimit = Math.min(t?.revisionHistoryLimit ?? 2, 2);
  const metadata: k8s.V1ObjectMeta = {
    name,
    labels,
    ownerReferences: [canaryOwnerReference(canary)],
  };
  if (target.metadata?.namespace) metadata.namespace = target.metadata.namespace;
  if (Object.keys(annotations).length > 0) metadata.annotations = annotations;
  return { apiVersion: 'apps/v1', kind: 'Deployment', metadata, spec };
}

/**
 * The spec of a Service target's copy: the pending spec without the fields
 * the API server allocates (core/targets/service.ts), and without
 * `loadBalancerIP`, which is the user's to request but can belong to one
 * Service only.
 */
export function serviceCopySpec(pending: Record<string, unknown>): k8s.V1ServiceSpec {
  const out = structuredClone(withoutAllocatedFields(pending) ?? {});
  delete out.loadBalancerIP;
  return out as k8s.V1ServiceSpec;
}

export interface CanaryServiceInput {
  /** The user's Service (live, stable spec). */
  targetService: k8s.V1Service;
  /** The pending Service spec (parsed from canarygate.dev/pending-spec). */
  pendingSpec: Record<string, unknown>;
  revision: string;
  canary: Canary;
}

/**
 * The canary copy `<name>-canary` of a Service target: the pending spec minus
 * the fields the API server allocates (a copy cannot share the live
 * Service's cluster IP or node ports). `loadBalancerIP` is dropped as well: a
 * requested static address can only belong to one Service.
 */
export function buildCanaryService(input: CanaryServiceInput): k8s.V1Service {
  const { targetService, pendingSpec, revision, canary } = input;
  const labels = { ...copiedLabels(targetService.metadata?.labels), [ROLE_LABEL]: CANARY_ROLE, [REVISION_LABEL]: revision };
  const annotations = copiedAnnotations(targetService.metadata?.annotations);
  const metadata: k8s.V1ObjectMeta = {
    name: canaryName(targetService.metadata?.name ?? ''),
    labels,
    ownerReferences: [canaryOwnerReference(canary)],
  };
  if (targetService.metadata?.namespace) metadata.namespace = targetService.metadata.namespace;
  if (Object.keys(annotations).length > 0) metadata.annotations = annotations;
  return { apiVersion: 'v1', kind: 'Service', metadata, spec: serviceCopySpec(pendingSpec) };
}

/**
 * The desired canary copy for this sync: a Deployment sized and labelled by
 * the router for `weight`, or a Service holding the pending spec.
 */
export function buildCopy(ctx: SyncContext, pending: { revision: string; spec: Record<string, unknown> }, weight: number): k8s.V1Deployment | k8s.V1Service {
  const { canary, router } = ctx;
  if (!ctx.kind.runsPods) return buildCanaryService({ targetService: ctx.live as k8s.V1Service, pendingSpec: pending.spec, revision: pending.revision, canary });
  const target = ctx.live as k8s.V1Deployment;
  // Configs under canary are read from their copies `<config>-canary`.
  const changed = ctx.configs?.combined ? ctx.configs.changed : undefined;
  const template = (changed?.size ? withCopyReferences(pending.spec, changed) : pending.spec) as k8s.V1PodTemplateSpec;
  return buildCanaryDeployment({
    target,
    pendingTemplate: template,
    revision: pending.revision,
    replicas: router.canaryReplicas(ctx, weight, ctx.kind.replicas(target)),
    podLabels: router.canaryPodLabels(ctx, template.metadata?.labels ?? {}),
    canary,
  });
}

/** `desired` made ready to replace `existing`: its resourceVersion, and a Service's allocated cluster IPs, which cannot change. */
export function forReplace<T extends k8s.V1Deployment | k8s.V1Service>(existing: T, desired: T): T {
  const out = { ...desired, metadata: { ...desired.metadata, resourceVersion: existing.metadata?.resourceVersion } } as T;
  if (desired.kind === 'Service') {
    const e = existing as k8s.V1Service;
    (out as k8s.V1Service).spec = { ...(desired as k8s.V1Service).spec, clusterIP: e.spec?.clusterIP, clusterIPs: e.spec?.clusterIPs } as k8s.V1ServiceSpec;
  }
  return out;
}

// ------------------------------------------------------------------ comparing

function same(a: unknown, b: unknown): boolean {
  return canonicalJson(a ?? null) === canonicalJson(b ?? null);
}

function hasLabels(actual: Record<string, string> | undefined, wanted: Record<string, string> | undefined): boolean {
  for (const [k, v] of Object.entries(wanted ?? {})) if (actual?.[k] !== v) return false;
  return true;
}

function hasOwners(actual: k8s.V1OwnerReference[] | undefined, wanted: k8s.V1OwnerReference[] | undefined): boolean {
  return (wanted ?? []).every((w) => (actual ?? []).some((a) => a.uid === w.uid && !!a.controller === !!w.controller));
}

/**
 * How an existing copy differs from the desired one, in the fields the
 * reconciler owns: `none`, `update` (a replace will do) or `recreate` (the
 * selector, which is immutable on a Deployment, changed).
 */
export function copyChange(existing: k8s.V1Deployment | k8s.V1Service, desired: k8s.V1Deployment | k8s.V1Service): 'none' | 'update' | 'recreate' {
  if (desired.kind === 'Deployment') {
    const e = existing as k8s.V1Deployment;
    const d = desired as k8s.V1Deployment;
    if (!same(e.spec?.selector?.matchLabels, d.spec?.selector?.matchLabels) || (e.spec?.selector?.matchExpressions?.length ?? 0) > 0) return 'recreate';
    if ((e.spec?.replicas ?? 1) !== (d.spec?.replicas ?? 1)) return 'update';
    // The revision label stands for the whole template: the API server
    // defaults fields in it, so a deep comparison would always differ.
    if (!same(e.spec?.template?.metadata?.labels, d.spec?.template?.metadata?.labels)) return 'update';
    if (d.spec?.strategy && !same(e.spec?.strategy, d.spec.strategy)) return 'update';
  }
  if (!hasLabels(existing.metadata?.labels, desired.metadata?.labels)) return 'update';
  if (!hasOwners(existing.metadata?.ownerReferences, desired.metadata?.ownerReferences)) return 'update';
  return 'none';
}

/** True when the existing copy must be written to match the desired one (compares only the fields the reconciler owns). */
export function needsUpdate(existing: k8s.V1Deployment | k8s.V1Service, desired: k8s.V1Deployment | k8s.V1Service): boolean {
  return copyChange(existing, desired) !== 'none';
}

// ------------------------------------------------------------------ router Services

/** The apex Service's name: spec.service.name, else the target's name. */
export function apexServiceName(canary: Canary): string {
  return canary.spec.service?.name || canary.spec.targetRef.name;
}

/**
 * Ports of a Service a router creates: the apex Service's ports (node ports
 * dropped) when the user has one, else the port described by spec.service.
 * spec.service.port is always among them (routes send traffic to it).
 */
export function routerServicePorts(service: CanaryService | undefined, apex: k8s.V1Service | undefined, discovered: k8s.V1ServicePort[] = []): k8s.V1ServicePort[] {
  const out: k8s.V1ServicePort[] = [];
  for (const p of apex?.spec?.ports ?? []) {
    const port: k8s.V1ServicePort = { port: p.port, protocol: p.protocol ?? 'TCP', targetPort: p.targetPort ?? p.port };
    if (p.name) port.name = p.name;
    if (p.appProtocol) port.appProtocol = p.appProtocol;
    out.push(port);
  }
  const wanted = service?.port;
  if (wanted !== undefined && !out.some((p) => p.port === wanted)) {
    const port: k8s.V1ServicePort = { name: service?.portName ?? 'http', port: wanted, protocol: 'TCP', targetPort: service?.targetPort ?? wanted };
    out.unshift(port);
  }
  // service.portDiscovery: the target's other container ports (services.ts
  // discoveredPorts); one a port above already leads to is not added twice.
  const taken = (p: k8s.V1ServicePort) => out.some((o) => o.port === p.port || o.targetPort === p.targetPort || (!!p.name && (o.name === p.name || o.targetPort === p.name)));
  for (const p of discovered) if (!taken(p)) out.push({ ...p });
  if (out.length > 1) {
    // Every port of a multi-port Service needs a unique name.
    const used = new Set(out.map((p) => p.name).filter(Boolean));
    for (const p of out) {
      if (p.name) continue;
      let name = `port-${p.port}`;
      for (let i = 2; used.has(name); i++) name = `port-${p.port}-${i}`;
      p.name = name;
      used.add(name);
    }
  }
  return out;
}

export interface RouterServiceInput {
  name: string;
  namespace: string;
  selector: Record<string, string>;
  ports: k8s.V1ServicePort[];
  canary: Canary;
  /** spec.service.primary / spec.service.canary label and annotation overrides. */
  overrides?: ObjectMetadataOverrides;
}

/** A ClusterIP Service a router owns (`<svc>-primary`, `<svc>-canary`). */
export function buildRouterService(input: RouterServiceInput): k8s.V1Service {
  const metadata: k8s.V1ObjectMeta = {
    name: input.name,
    namespace: input.namespace,
    labels: { ...(input.overrides?.labels ?? {}), [MANAGED_BY_LABEL]: MANAGED_BY },
    ownerReferences: [canaryOwnerReference(input.canary)],
  };
  if (input.overrides?.annotations && Object.keys(input.overrides.annotations).length > 0) metadata.annotations = { ...input.overrides.annotations };
  return {
    apiVersion: 'v1',
    kind: 'Service',
    metadata,
    spec: { type: 'ClusterIP', selector: { ...input.selector }, ports: input.ports.map((p) => ({ ...p })) },
  };
}

function normalPorts(ports: k8s.V1ServicePort[] | undefined): unknown {
  return (ports ?? []).map((p) => ({
    name: p.name ?? '',
    port: p.port,
    protocol: p.protocol ?? 'TCP',
    targetPort: p.targetPort ?? p.port,
    appProtocol: p.appProtocol ?? '',
  }));
}

/** True when a router Service differs from the desired one in what the router owns (type, selector, ports, its labels, annotations and owner). */
export function routerServiceNeedsUpdate(existing: k8s.V1Service, desired: k8s.V1Service): boolean {
  if ((existing.spec?.type ?? 'ClusterIP') !== (desired.spec?.type ?? 'ClusterIP')) return true;
  if (!same(existing.spec?.selector ?? {}, desired.spec?.selector ?? {})) return true;
  if (!same(normalPorts(existing.spec?.ports), normalPorts(desired.spec?.ports))) return true;
  if (!hasLabels(existing.metadata?.labels, desired.metadata?.labels)) return true;
  if (!hasLabels(existing.metadata?.annotations, desired.metadata?.annotations)) return true;
  return !hasOwners(existing.metadata?.ownerReferences, desired.metadata?.ownerReferences);
}

/**
 * The existing router Service rewritten to the desired one, for a replace:
 * server-allocated fields (cluster IPs) and everything else the router does
 * not own (other labels, annotations, owners) are kept.
 */
export function mergeRouterService(existing: k8s.V1Service, desired: k8s.V1Service, canary: Canary): k8s.V1Service {
  const out = structuredClone(existing);
  out.metadata = {
    ...out.metadata,
    labels: { ...(out.metadata?.labels ?? {}), ...(desired.metadata?.labels ?? {}) },
    ownerReferences: withCanaryOwner(out.metadata?.ownerReferences, canary),
  };
  if (desired.metadata?.annotations) out.metadata.annotations = { ...(out.metadata.annotations ?? {}), ...desired.metadata.annotations };
  delete out.metadata.managedFields;
  out.spec = { ...(out.spec ?? {}), type: desired.spec?.type ?? 'ClusterIP', selector: { ...(desired.spec?.selector ?? {}) }, ports: (desired.spec?.ports ?? []).map((p) => ({ ...p })) };
  delete (out as { status?: unknown }).status;
  return out;
}
