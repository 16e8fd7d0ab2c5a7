// spec.autoscalerRef: the user's HorizontalPodAutoscaler keeps scaling the
// primary (the user's own Deployment) and is never written. The canary copy
// gets an HPA of its own, `<hpa>-canary`, cloned from the user's with its
// scaleTargetRef pointing at the copy, owned by the Canary and removed when
// the copy is scaled to zero or deleted. That is for routers with exact
// weights, whose copy is sized like the primary (routers/services.ts
// sizedLikePrimary). With the kubernetes router the copy's size is its
// traffic share (ADR 0004): an HPA would move the weight, so the user's HPA
// only bounds the ratio sizing with its minReplicas and maxReplicas.

import type * as k8s from '@kubernetes/client-node';
import { MANAGED_BY, MANAGED_BY_LABEL, canaryName } from '../../core/contract.js';
import type { Canary } from '../../core/api/types.js';
import { canonicalJson } from '../../core/revision.js';
import { conflictOf } from '../routers/owned.js';
import type { ObjectCache } from '../observe/caches.js';
import { canaryOwnerReference, copiedLabels, ownedBy, withCanaryOwner } from './copy.js';

export type Hpa = k8s.V2HorizontalPodAutoscaler;

/** What one sync knows of the Canary's autoscalers. */
export interface AutoscalerView {
  /** The user's HPA named by spec.autoscalerRef. */
  user?: Hpa;
  /** The HPA under the copy's HPA name, if it is this Canary's to write (a user's own is never in here). */
  copy?: Hpa;
  /** spec.autoscalerRef names an HPA that does not exist: the run holds. */
  missing?: string;
  /** `<hpa>-canary` exists and is not canary-gate's: the run holds (NameTaken). */
  conflict?: string;
}

/** `<hpa>-canary`, the name of the copy's HPA. */
export function copyHpaName(canary: Canary): string | undefined {
  const ref = canary.spec.autoscalerRef;
  return ref ? canaryName(ref.name) : undefined;
}

/** The Canary's autoscalers as the caches show them. */
export function autoscalerView(canary: Canary, hpas: ObjectCache<Hpa>): AutoscalerView {
  const ref = canary.spec.autoscalerRef;
  if (!ref) return {};
  const ns = canary.metadata.namespace ?? '';
  const view: AutoscalerView = {};
  const user = hpas.get(ns, ref.name);
  if (user) view.user = user;
  else view.missing = `spec.autoscalerRef: HorizontalPodAutoscaler ${ns}/${ref.name} does not exist; the run holds until it does (or the field is removed)`;
  const name = canaryName(ref.name);
  const found = hpas.get(ns, name);
  const conflict = conflictOf(found, canary, 'HorizontalPodAutoscaler', `rename it, or the HPA ${ref.name}, to let the canary copy scale`);
  if (conflict) view.conflict = conflict;
  else if (found) view.copy = found;
  return view;
}

/**
 * The copy's HPA: the user's spec with scaleTargetRef on the copy, labelled
 * managed-by canary-gate and owned by the Canary (garbage-collected with it).
 */
export function buildCopyHpa(user: Hpa, copyDeployment: string, canary: Canary): Hpa {
  const spec = structuredClone(user.spec) as k8s.V2HorizontalPodAutoscalerSpec;
  spec.scaleTargetRef = { apiVersion: 'apps/v1', kind: 'Deployment', name: copyDeployment };
  const metadata: k8s.V1ObjectMeta = {
    name: canaryName(user.metadata?.name ?? ''),
    labels: { ...copiedLabels(user.metadata?.labels), [MANAGED_BY_LABEL]: MANAGED_BY },
    ownerReferences: [canaryOwnerReference(canary)],
  };
  if (user.metadata?.namespace) metadata.namespace = user.metadata.namespace;
  return { apiVersion: 'autoscaling/v2', kind: 'HorizontalPodAutoscaler', metadata, spec };
}

/** The existing copy HPA rewritten to `desired` (its spec, labels and owner), for a replace; undefined when nothing differs. */
export function copyHpaUpdate(existing: Hpa, desired: Hpa, canary: Canary): Hpa | undefined {
  const labelsOk = Object.entries(desired.metadata?.labels ?? {}).every(([k, v]) => existing.metadata?.labels?.[k] === v);
  if (canonicalJson(existing.spec ?? null) === canonicalJson(desired.spec ?? null) && labelsOk && ownedBy(existing, canary)) return undefined;
  const out = structuredClone(existing);
  out.metadata = {
    ...out.metadata,
    labels: { ...(out.metadata?.labels ?? {}), ...(desired.metadata?.labels ?? {}) },
    ownerReferences: withCanaryOwner(out.metadata?.ownerReferences, canary),
  };
  delete out.metadata.managedFields;
  out.spec = structuredClone(desired.spec) as k8s.V2HorizontalPodAutoscalerSpec;
  delete (out as { status?: unknown }).status;
  return out;
}

/**
 * The size the copy is given, as the autoscaler has it: with an HPA of its
 * own (exact-weight routers) the size it already runs at is the HPA's to
 * keep; otherwise the router's size, held within the user's HPA's bounds.
 * A copy sized 0 (no traffic) stays at 0.
 */
export function copyReplicasWithAutoscaler(routerReplicas: number, view: AutoscalerView, opts: { ownHpa: boolean; runningReplicas?: number }): number {
  if (!view.user || routerReplicas <= 0) return routerReplicas;
  if (opts.ownHpa && view.copy && (opts.runningReplicas ?? 0) > 0) return opts.runningReplicas ?? routerReplicas;
  const min = Math.max(1, view.user.spec?.minReplicas ?? 1);
  const max = Math.max(min, view.user.spec?.maxReplicas ?? routerReplicas);
  return Math.min(max, Math.max(min, routerReplicas));
}
