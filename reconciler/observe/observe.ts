// Builds the state machine's view of one Canary from the caches. Pure given
// the caches and the clock; the revision of a live spec is memoised per
// object generation so an idle canary costs no hashing.

import type * as k8s from '@kubernetes/client-node';
import { COMMAND_ANNOTATIONS, FINALIZER, MANAGED_LABEL, PENDING_REVISION, PENDING_SPEC, REVISION_LABEL, TRUE, canaryName } from '../../core/contract.js';
import type { Canary } from '../../core/api/types.js';
import { revisionOf, revisionOfCanonical } from '../../core/revision.js';
import { serviceSpecForRevision } from '../../webhook/decide.js';
import { resolveAnalysis } from '../decide/analysis-config.js';
import type { Caches } from './caches.js';

import type { CanaryCopyView, Commands, Observed, RolloutStatus, TargetView } from '../decide/transition.js';


const liveRevisionMemo = new WeakMap<object, { key: string; revision: string }>();

/** Revision of the live spec of a Deployment (pod template) or Service (spec minus allocated fields). */
export function liveRevision(obj: k8s.V1Deployment | k8s.V1Service, kind: 'Deployment' | 'Service'): string {
  const key = `${obj.metadata?.uid}/${obj.metadata?.generation ?? obj.metadata?.resourceVersion}`;
  const memo = liveRevisionMemo.get(obj);
  if (memo && memo.key === key) return memo.revision;
  const spec = kind === 'Deployment' ? (obj as k8s.V1Deployment).spec?.template : serviceSpecForRevision((obj as k8s.V1Service).spec as Record<string, unknown>);
  const revision = revisionOf(spec);
  liveRevisionMemo.set(obj, { key, revision });
  return revision;
}

export interface PendingChange {
  revision: string;
  /** Parsed pending spec (pod template or Service spec). */
  spec: Record<string, unknown>;
}

/**
 * The pending change recorded by the webhook, checked for integrity: the
 * revision must be the hash of the spec text, so a mangled annotation is
 * never run (and never promoted).
 */
export function pendingChange(obj: { metadata?: k8s.V1ObjectMeta }): PendingChange | { error: string } | undefined {
  const annotations = obj.metadata?.annotations;
  const revision = annotations?.[PENDING_REVISION];
  const text = annotations?.[PENDING_SPEC];
  if (revision === undefined && text === undefined) return undefined;
  if (revision === undefined || text === undefined) return { error: `only one of ${PENDING_REVISION} and ${PENDING_SPEC} is set` };
  if (revisionOfCanonical(text) !== revision) return { error: `${PENDING_REVISION} ${revision} does not match the hash of ${PENDING_SPEC}` };
  try {
    const spec = JSON.parse(text) as unknown;
    if (!spec || typeof spec !== 'object' || Array.isArray(spec)) return { error: `${PENDING_SPEC} is not a JSON object` };
    return { revision, spec: spec as Record<string, unknown> };
  } catch (err) {
    return { error: `${PENDING_SPEC} is not valid JSON: ${(err as Error).message}` };
  }
}

export function deploymentRolledOut(d: k8s.V1Deployment | undefined): boolean {
  if (!d) return false;
  const want = d.spec?.replicas ?? 1;
  const s = d.status ?? {};
  return (
    (s.observedGeneration ?? 0) >= (d.metadata?.generation ?? 0) &&
    (s.updatedReplicas ?? 0) >= want &&
    (s.readyReplicas ?? 0) >= want &&
    (s.availableReplicas ?? 0) >= want &&
    (s.replicas ?? 0) <= want
  );
}

export function commandsOf(canary: Canary): Commands {
  const a = canary.metadata.annotations ?? {};
  const out: Commands = {};
  for (const [k, name] of Object.entries(COMMAND_ANNOTATIONS)) {
    const v = a[name];
    if (v) out[k as keyof Commands] = v;
  }
  return out;
}

export interface Observation {
  observed: Observed;
  /** Set when the pending annotations are unusable; the run does not start. */
  pendingError?: string;
  target?: k8s.V1Deployment | k8s.V1Service;
  copy?: k8s.V1Deployment | k8s.V1Service;
}

export function observe(canary: Canary, caches: Caches, now: number, routedWeight: number): Observation {
  const ns = canary.metadata.namespace ?? '';
  const kind = canary.spec.targetRef.kind;
  const name = canary.spec.targetRef.name;
  const target = kind === 'Deployment' ? caches.deployments.get(ns, name) : caches.services.get(ns, name);
  const copy = kind === 'Deployment' ? caches.deployments.get(ns, canaryName(name)) : caches.services.get(ns, canaryName(name));

  let pendingError: string | undefined;
  let targetView: TargetView = { exists: false, managed: false, liveRevision: '', ready: false, replicas: 0 };
  if (target) {
    const pending = pendingChange(target);
    if (pending && 'error' in pending) pendingError = pending.error;
    targetView = {
      exists: true,
      managed: target.metadata?.labels?.[MANAGED_LABEL] === TRUE,
      liveRevision: liveRevision(target, kind),
      ready: kind === 'Deployment' ? deploymentRolledOut(target as k8s.V1Deployment) : true,
      replicas: kind === 'Deployment' ? ((target as k8s.V1Deployment).spec?.replicas ?? 1) : 0,
    };
    if (pending && !('error' in pending)) targetView.pendingRevision = pending.revision;
  }

  let copyView: CanaryCopyView = { exists: false, replicas: 0, ready: false, readyReplicas: 0 };
  if (copy) {
    const revision = copy.metadata?.labels?.[REVISION_LABEL];
    if (kind === 'Deployment') {
      const d = copy as k8s.V1Deployment;
      copyView = {
        exists: true,
        replicas: d.spec?.replicas ?? 1,
        ready: deploymentRolledOut(d),
        readyReplicas: d.status?.readyReplicas ?? 0,
      };
    } else {
      copyView = { exists: true, replicas: 1, ready: true, readyReplicas: 1 };
    }
    if (revision) copyView.revision = revision;
  }

  const observed: Observed = {
    now,
    generation: canary.metadata.generation ?? 0,
    deleting: !!canary.metadata.deletionTimestamp,
    hasFinalizer: (canary.metadata.finalizers ?? []).includes(FINALIZER),
    analysis: resolveAnalysis(canary.spec),
    status: (canary.status ?? {}) as RolloutStatus,
    target: targetView,
    copy: copyView,
    routedWeight,
    commands: commandsOf(canary),
  };
  const result: Observation = { observed };
  if (pendingError) result.pendingError = pendingError;
  if (target) result.target = target;
  if (copy) result.copy = copy;
  return result;
}
