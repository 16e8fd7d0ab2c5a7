// The registry of target kinds: the one place that maps a kind name or an
// AdmissionReview's group/version/kind to its adapter.

import { revisionOf } from '../revision.js';
import { deploymentKind } from './deployment.js';
import type { TargetKind, TargetObject } from './kind.js';
import { serviceKind } from './service.js';

export type { TargetKind, TargetObject } from './kind.js';
export { deploymentKind, deploymentRolledOut } from './deployment.js';
export { serviceKind, withoutAllocatedFields, promotedServiceSpec, ALLOCATED_SERVICE_FIELDS } from './service.js';

export const TARGET_KINDS: readonly TargetKind[] = [deploymentKind, serviceKind];

/** The adapter for a `targetRef.kind`; throws for a kind canary-gate does not canary (the CRD refuses those). */
export function targetKind(kind: string): TargetKind {
  const found = TARGET_KINDS.find((k) => k.kind === kind);
  if (!found) throw new Error(`canary-gate cannot canary a ${kind}; targetRef.kind must be one of ${TARGET_KINDS.map((k) => k.kind).join(', ')}`);
  return found;
}

/** The adapter for an AdmissionReview's kind, or undefined when the kind is not one canary-gate canaries. */
export function targetKindOf(gvk: { group?: string; version?: string; kind?: string } | undefined): TargetKind | undefined {
  if (!gvk) return undefined;
  for (const k of TARGET_KINDS) if (k.group === gvk.group && k.version === gvk.version && k.kind === gvk.kind) return k;
  return undefined;
}

const liveRevisionMemo = new WeakMap<object, { key: string; revision: string }>();

/**
 * The revision of an object's live spec under canary, memoised per object
 * and generation, so that an idle canary costs no hashing on a resync.
 */
export function liveRevision(kind: TargetKind, obj: TargetObject): string {
  const key = `${obj.metadata?.uid}/${obj.metadata?.generation ?? obj.metadata?.resourceVersion}`;
  const memo = liveRevisionMemo.get(obj);
  if (memo && memo.key === key) return memo.revision;
  const revision = revisionOf(kind.specUnderCanary(obj));
  liveRevisionMemo.set(obj, { key, revision });
  return revision;
}
