// The registry of target kinds: the one place that maps a kind name or an
// AdmissionReview's group/version/kind to its adapter. Two lists: the kinds
// a Canary can target (`spec.targetRef.kind`), and the kinds whose changes
// the webhook holds, which add the configs a target references.

import { revisionOf } from '../revision.js';
import { deploymentKind } from './deployment.js';
import { configMapKind, secretKind } from './config.js';
import type { HeldKind, TargetKind, TargetObject } from './kind.js';
import { serviceKind } from './service.js';

export type { HeldKind, TargetKind, TargetObject } from './kind.js';
export { configMapKind, secretKind, configTracked, UNTRACKED_SECRET_TYPES } from './config.js';
export { deploymentKind, deploymentRolledOut } from './deployment.js';
export { serviceKind, withoutAllocatedFields, promotedServiceSpec, ALLOCATED_SERVICE_FIELDS } from './service.js';

/** The kinds a Canary can target. */
export const TARGET_KINDS: readonly TargetKind[] = [deploymentKind, serviceKind];

/** The kinds whose changes the webhook holds: the targets, and the ConfigMaps and Secrets they reference (never a targetRef.kind). */
export const HELD_KINDS: readonly HeldKind[] = [...TARGET_KINDS, configMapKind, secretKind];

/** The adapter for a `targetRef.kind`; throws for a kind canary-gate does not canary (the CRD refuses those). */
export function targetKind(kind: string): TargetKind {
  const found = TARGET_KINDS.find((k) => k.kind === kind);
  if (!found) throw new Error(`canary-gate cannot canary a ${kind}; targetRef.kind must be one of ${TARGET_KINDS.map((k) => k.kind).join(', ')}`);
  return found;
}

type Gvk = { group?: string; version?: string; kind?: string } | undefined;

function find<K extends HeldKind>(kinds: readonly K[], gvk: Gvk): K | undefined {
  if (!gvk) return undefined;
  for (const k of kinds) if (k.group === gvk.group && k.version === gvk.version && k.kind === gvk.kind) return k;
  return undefined;
}

/** The target adapter for a group/version/kind, or undefined when a Canary cannot target that kind. */
export function targetKindOf(gvk: Gvk): TargetKind | undefined {
  return find(TARGET_KINDS, gvk);
}

/** The adapter for an AdmissionReview's kind, or undefined when the webhook holds no changes of that kind. */
export function heldKindOf(gvk: Gvk): HeldKind | undefined {
  return find(HELD_KINDS, gvk);
}

const liveRevisionMemo = new WeakMap<object, { key: string; revision: string }>();

/**
 * The revision of an object's live spec under canary, memoised per object
 * and generation, so that an idle canary costs no hashing on a resync.
 */
export function liveRevision(kind: HeldKind, obj: TargetObject): string {
  const key = `${obj.metadata?.uid}/${obj.metadata?.generation ?? obj.metadata?.resourceVersion}`;
  const memo = liveRevisionMemo.get(obj);
  if (memo && memo.key === key) return memo.revision;
  const revision = revisionOf(kind.specUnderCanary(obj));
  liveRevisionMemo.set(obj, { key, revision });
  return revision;
}
