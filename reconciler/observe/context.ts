// One sync's context: everything the reconciler knows about one Canary,
// read from the informer caches once per sync (in the manner of Argo
// Rollouts' rolloutContext). The state machine gets its `observed` view; the
// routers and the effects get the whole context. Pure given the caches, the
// router and the clock. The pending change is parsed and checked once per
// version of the target; the live revision is memoised per generation, so an
// idle canary costs no hashing.

import type * as k8s from '@kubernetes/client-node';
import { COMMAND_ANNOTATIONS, FINALIZER, FREEZE_ALL, FREEZE_LABEL, MANAGED_LABEL, PENDING_REVISION, PENDING_SPEC, REVISION_LABEL, TRUE, canaryName } from '../../core/contract.js';
import type { Canary } from '../../core/api/types.js';
import { revisionOfCanonical } from '../../core/revision.js';
import { liveRevision, targetKind, type TargetKind } from '../../core/targets/index.js';
import { autoscalerView, type AutoscalerView } from '../apply/autoscaler.js';
import { createdByCanaryGate, ownedBy } from '../apply/copy.js';
import { resolveAnalysis } from '../decide/analysis-config.js';
import type { CanaryCopyView, Commands, Hold, Observed, RolloutStatus, TargetView } from '../decide/transition.js';
import { windowState } from '../decide/windows.js';
import { changeFacts, type ChangeFacts } from '../decide/stages.js';
import type { Router, RouterContext } from '../routers/router.js';
import type { Caches, ObjectCache } from './caches.js';

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
  const a = obj.metadata?.annotations;
  const key = `${obj.metadata?.resourceVersion ?? ''}/${a?.[PENDING_REVISION] ?? ''}/${a?.[PENDING_SPEC]?.length ?? -1}`;
  const memo = pendingMemo.get(obj);
  if (memo && memo.key === key) return memo.pending;
  const pending = parsePending(obj);
  pendingMemo.set(obj, { key, pending });
  return pending;
}

const pendingMemo = new WeakMap<object, { key: string; pending: PendingChange | { error: string } | undefined }>();

function parsePending(obj: { metadata?: k8s.V1ObjectMeta }): PendingChange | { error: string } | undefined {
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

export function commandsOf(canary: Canary): Commands {
  const a = canary.metadata.annotations ?? {};
  const out: Commands = {};
  for (const [k, name] of Object.entries(COMMAND_ANNOTATIONS)) {
    const v = a[name];
    if (v) out[k as keyof Commands] = v;
  }
  return out;
}

/** One sync's view of one Canary. Routers take it as their RouterContext. */
export interface SyncContext extends RouterContext {
  /** The Canary's work-queue key, namespace/name. */
  key: string;
  /** The adapter of the target's kind. */
  kind: TargetKind;
  router: Router;
  /** The user's object (Deployment or Service), if it exists. */
  live?: k8s.V1Deployment | k8s.V1Service;
  /** The canary copy, if it exists and is canary-gate's (a user's own object of that name is never in here). */
  liveCopy?: k8s.V1Deployment | k8s.V1Service;
  /** The pending change, parsed and checked once. */
  pending?: PendingChange;
  /** Set when the pending annotations are unusable; the run does not start. */
  pendingError?: string;
  /** The user's HPA (spec.autoscalerRef) and the copy's, when the Canary names one. */
  autoscalers: AutoscalerView;
  /** The state machine's view. */
  observed: Observed;
}

/** The informer cache that holds objects of a target's kind (its copies are of the same kind). */
export function targetCache(kind: TargetKind, caches: Caches): ObjectCache<k8s.V1Deployment | k8s.V1Service> {
  return kind.runsPods ? caches.deployments : caches.services;
}

const factsMemo = new WeakMap<object, ChangeFacts>();

/** The change facts of an object (or parsed pending change), computed once per version of it. */
function factsOf(key: object, compute: () => ChangeFacts): ChangeFacts {
  let f = factsMemo.get(key);
  if (!f) factsMemo.set(key, (f = compute()));
  return f;
}

/** Where a change freeze is read: the Canary's namespace, and the reconciler's own for the cluster-wide switch. */
export interface HoldSources {
  /** The namespace whose label `canarygate.dev/freeze: all` freezes every run (the reconciler's own). */
  clusterFreezeNamespace?: string;
}

/** A freeze or a closed promotion window that holds the Canary's runs now, if any. Pure given the caches and the clock. */
export function holdOf(canary: Canary, caches: Pick<Caches, 'namespaces'>, now: number, sources: HoldSources = {}): Hold | undefined {
  const namespace = canary.metadata.namespace ?? '';
  const label = (ns: string | undefined) => (ns ? caches.namespaces.get('', ns)?.metadata?.labels?.[FREEZE_LABEL] : undefined);
  if (label(sources.clusterFreezeNamespace) === FREEZE_ALL) {
    return { reason: 'Frozen', message: `every run is frozen: namespace ${sources.clusterFreezeNamespace} is labelled ${FREEZE_LABEL}=${FREEZE_ALL}` };
  }
  if (label(namespace) === TRUE) return { reason: 'Frozen', message: `namespace ${namespace} is frozen (${FREEZE_LABEL}=true)` };
  const windows = windowState(canary.spec.promotion?.windows, now);
  if (windows.error) return { reason: 'InvalidWindow', message: `spec.promotion.windows: ${windows.error}` };
  if (!windows.open) {
    const until = windows.nextOpenMs;
    return {
      reason: 'OutsideWindow',
      message: until !== undefined ? `outside every promotion window; the next opens at ${new Date(until).toISOString()}` : 'outside every promotion window; none opens within 8 days',
      ...(until !== undefined ? { untilMs: until } : {}),
    };
  }
  return undefined;
}

export function buildSyncContext(canary: Canary, caches: Caches, router: Router, now: number, holdSources: HoldSources = {}): SyncContext {
  const namespace = canary.metadata.namespace ?? '';
  const kind = targetKind(canary.spec.targetRef.kind);
  const name = canary.spec.targetRef.name;
  const objects = targetCache(kind, caches);
  const live = objects.get(namespace, name);
  const found = objects.get(namespace, canaryName(name));
  // An object of the copy's name that canary-gate did not create is the
  // user's: it is never adopted, scaled, changed or deleted.
  const foreign = found && !ownedBy(found, canary) && !createdByCanaryGate(found);
  const liveCopy = foreign ? undefined : found;
  const service = caches.services.get(namespace, canary.spec.service?.name ?? name);

  const ctx: SyncContext = { key: `${namespace}/${canary.metadata.name ?? ''}`, canary, namespace, kind, router, autoscalers: autoscalerView(canary, caches.hpas), observed: undefined as unknown as Observed };
  if (live) ctx.live = live;
  if (liveCopy) ctx.liveCopy = liveCopy;
  if (service) ctx.service = service;
  // The router's view: the Deployment and its copy, or the target Service.
  if (kind.runsPods) {
    if (live) ctx.target = live as k8s.V1Deployment;
    if (liveCopy) ctx.copy = liveCopy as k8s.V1Deployment;
  } else if (live) {
    ctx.targetService = live as k8s.V1Service;
  }

  let targetView: TargetView = { exists: false, managed: false, liveRevision: '', ready: false, replicas: 0 };
  if (live) {
    const pending = pendingChange(live);
    if (pending && 'error' in pending) ctx.pendingError = pending.error;
    else if (pending) ctx.pending = pending;
    targetView = {
      exists: true,
      managed: live.metadata?.labels?.[MANAGED_LABEL] === TRUE,
      liveRevision: liveRevision(kind, live),
      ready: kind.rolledOut(live, canary.spec.analysis?.primaryReadyThreshold),
      replicas: kind.replicas(live),
    };
    if (ctx.pending) targetView.pendingRevision = ctx.pending.revision;
  }
  const changes: NonNullable<Observed['changes']> = {};
  if (ctx.pending) changes.pending = factsOf(ctx.pending, () => changeFacts(ctx.pending?.revision ?? '', ctx.pending?.spec));
  if (live) changes.live = factsOf(live, () => changeFacts(targetView.liveRevision, kind.specUnderCanary(live)));

  let copyView: CanaryCopyView = { exists: false, replicas: 0, ready: false, readyReplicas: 0 };
  if (liveCopy) {
    const revision = liveCopy.metadata?.labels?.[REVISION_LABEL];
    if (kind.runsPods) {
      const d = liveCopy as k8s.V1Deployment;
      copyView = { exists: true, replicas: d.spec?.replicas ?? 1, ready: kind.rolledOut(d, canary.spec.analysis?.canaryReadyThreshold), readyReplicas: d.status?.readyReplicas ?? 0 };
    } else {
      copyView = { exists: true, replicas: 1, ready: true, readyReplicas: 1 };
    }
    if (revision) copyView.revision = revision;
  }

  const routed = router.getWeights(ctx);
  ctx.observed = {
    now,
    generation: canary.metadata.generation ?? 0,
    deleting: !!canary.metadata.deletionTimestamp,
    hasFinalizer: (canary.metadata.finalizers ?? []).includes(FINALIZER),
    analysis: resolveAnalysis(canary.spec),
    router: router.traits,
    status: (canary.status ?? {}) as RolloutStatus,
    target: targetView,
    copy: copyView,
    routedWeight: routed.canary,
    ...(routed.mirror ? { routedMirror: routed.mirror } : {}),
    commands: commandsOf(canary),
    blockers: [
      ...(foreign ? [`${kind.kind} ${namespace}/${canaryName(name)} exists and was not created by canary-gate; canary-gate leaves it alone: rename it, or the target, to run canaries`] : []),
      ...router.conflicts(ctx),
      ...(ctx.autoscalers.conflict ? [ctx.autoscalers.conflict] : []),
    ],
  };
  if (ctx.autoscalers.missing) ctx.observed.autoscalerMissing = ctx.autoscalers.missing;
  ctx.observed.changes = changes;
  if (canary.spec.promotion?.identity) ctx.observed.identityMode = canary.spec.promotion.identity;
  const hold = holdOf(canary, caches, now, holdSources);
  if (hold) ctx.observed.hold = hold;
  return ctx;
}
