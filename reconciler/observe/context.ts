// One sync's context: everything the reconciler knows about one Canary,
// read from the informer caches once per sync (in the manner of Argo
// Rollouts' rolloutContext). The state machine gets its `observed` view; the
// routers and the effects get the whole context. Pure given the caches, the
// router and the clock. The pending change is parsed and checked once per
// version of the target; the live revision is memoised per generation, so an
// idle canary costs no hashing.

import { inUseOf, type InUseChanges } from './in-use.js';
import type * as k8s from '@kubernetes/client-node';
import { COMMAND_ANNOTATIONS, FINALIZER, FREEZE_ALL, FREEZE_LABEL, MANAGED_LABEL, REVISION_LABEL, TRUE, canaryName } from '../../core/contract.js';
import type { Canary } from '../../core/api/types.js';
import { liveRevision, targetKind, type TargetKind } from '../../core/targets/index.js';
import { autoscalerView, type AutoscalerView } from '../apply/autoscaler.js';
import { createdByCanaryGate, ownedBy } from '../apply/copy.js';
import { resolveAnalysis } from '../decide/analysis-config.js';
import type { CanaryCopyView, Commands, Hold, Observed, RolloutStatus, TargetView } from '../decide/transition.js';
import { windowState } from '../decide/windows.js';
import { changeFacts, type ChangeFacts } from '../decide/stages.js';
import type { Router, RouterContext } from '../routers/router.js';
import type { Caches, ConfigCaches, ObjectCache } from './caches.js';
import { configState, type ConfigKind, type ConfigObject, type ConfigState } from './configs.js';
import { configsMayLead, sharedConfigs } from './shared-configs.js';

export { pendingChange, type PendingChange } from './pending.js';
import { pendingChange, type PendingChange } from './pending.js';

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
  /**
   * The configs the Deployment's templates reference (observe/configs.ts).
   * When `combined`, `pending` is the desired pod template under the
   * combined revision, and `ownPending` the Deployment's own held template.
   */
  configs?: ConfigState;
  ownPending?: PendingChange;
  /** The finalizer canarygate.dev/in-use writes of this sync (observe/in-use.ts). */
  inUse?: InUseChanges;
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
    if (kind.runsPods && caches.configs) joinConfigs(ctx, targetView, caches.configs);
  }
  const changes: NonNullable<Observed['changes']> = {};
  if (ctx.pending) changes.pending = factsOf(ctx.pending, () => changeFacts(ctx.pending?.revision ?? '', ctx.pending?.spec));
  if (live) changes.live = factsOf(live, () => changeFacts(targetView.liveRevision, kind.specUnderCanary(live)));

  let copyView: CanaryCopyView = { exists: false, replicas: 0, ready: false, readyReplicas: 0 };
  const configCopies = ownedConfigCopies(ctx, caches).length;
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
  if (configCopies > 0) copyView.configCopies = configCopies;

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
      ...configCopyBlockers(ctx, caches),
      ...router.conflicts(ctx),
      ...(ctx.autoscalers.conflict ? [ctx.autoscalers.conflict] : []),
    ],
  };
  if (ctx.autoscalers.missing) ctx.observed.autoscalerMissing = ctx.autoscalers.missing;
  ctx.observed.changes = changes;
  if (ctx.configs?.copyRechecks.length) ctx.observed.target.configsUnsettled = true;
  if (ctx.configs?.changed.size) {
    const shared = sharedConfigs(canary, name, ctx.configs, caches);
    if (shared.length > 0) ctx.observed.sharedConfigs = shared;
  }
  ctx.inUse = inUseOf(canary, caches);
  if (ctx.inUse?.deletedInUse.length) ctx.observed.configsDeletedInUse = ctx.inUse.deletedInUse.map((r) => `${r.kind} ${namespace}/${r.name}`);
  if (ctx.configs?.missing.length) ctx.observed.missingConfigs = ctx.configs.missing.map((r) => `${r.kind} ${namespace}/${r.name}`);
  if (canary.spec.promotion?.identity) ctx.observed.identityMode = canary.spec.promotion.identity;
  const hold = holdOf(canary, caches, now, holdSources);
  if (hold) ctx.observed.hold = hold;
  return ctx;
}

/**
 * Folds the configs the Deployment references into its revisions: with a
 * tracked config, the live and the pending revision are combined ones
 * (observe/configs.ts), and `pending` is the desired pod template whenever
 * the template, a config, or both changed.
 */
function joinConfigs(ctx: SyncContext, targetView: TargetView, configs: ConfigCaches): void {
  const live = ctx.live as k8s.V1Deployment;
  const ns = ctx.namespace;
  const own = ctx.pending;
  const state = configState({
    liveTemplate: (live.spec?.template ?? {}) as Record<string, unknown>,
    ...(own ? { pendingTemplate: own.spec } : {}),
    get: (k, n) => configs.managed[k].get(ns, n),
    lookup: (k, n) => configs.lookup(k, ns, n),
    promoting: configsMayLead(ctx.canary.status),
  });
  if (!state) return;
  ctx.configs = state;
  if (state.unsettled.length > 0) targetView.configsUnsettled = true;
  if (state.adopted) targetView.configsAdopted = true;
  for (const v of state.views.values()) {
    if (v.pendingError && !ctx.pendingError) ctx.pendingError = `${v.ref.kind} ${ns}/${v.ref.name}: ${v.pendingError}`;
  }
  if (!state.combined) return;
  if (own) ctx.ownPending = own;
  targetView.liveRevision = state.liveRevision;
  if (state.desiredRevision !== state.liveRevision) {
    targetView.pendingRevision = state.desiredRevision;
    ctx.pending = { revision: state.desiredRevision, spec: own?.spec ?? ((live.spec?.template ?? {}) as Record<string, unknown>) };
  } else {
    delete targetView.pendingRevision;
    delete ctx.pending;
  }
}

const CONFIG_KINDS: readonly ConfigKind[] = ['ConfigMap', 'Secret'];

/** The config copies (`<config>-canary`) this Canary owns. */
export function ownedConfigCopies(ctx: { canary: Canary; namespace: string }, caches: Pick<Caches, 'configs'>): Array<{ kind: ConfigKind; copy: ConfigObject }> {
  const out: Array<{ kind: ConfigKind; copy: ConfigObject }> = [];
  if (!caches.configs) return out;
  for (const kind of CONFIG_KINDS) for (const copy of caches.configs.copies[kind].list(ctx.namespace)) if (ownedBy(copy, ctx.canary)) out.push({ kind, copy });
  return out;
}

/** A copy name `<config>-canary` held by an object canary-gate did not create blocks the run, like the Deployment copy's. */
function configCopyBlockers(ctx: SyncContext, caches: Caches): string[] {
  const configs = caches.configs;
  if (!configs || !ctx.configs) return [];
  const out: string[] = [];
  const recheck = ctx.configs.copyRechecks;
  for (const key of ctx.configs.changed) {
    const view = ctx.configs.views.get(key);
    if (!view) continue;
    const { kind, name } = view.ref;
    const copyName = canaryName(name);
    const found = configs.copies[kind].get(ctx.namespace, copyName) ?? configs.managed[kind].get(ctx.namespace, copyName);
    const taken = configs.lookup(kind, ctx.namespace, copyName);
    // A taken name is looked at again now and then (the user may free it); until then it stays taken.
    if (!found && taken?.what === 'taken' && taken.stale) recheck.push(view.ref);
    const foreign = found ? !ownedBy(found, ctx.canary) && !createdByCanaryGate(found) : taken?.what === 'taken';
    if (foreign) out.push(`${kind} ${ctx.namespace}/${copyName} exists and was not created by canary-gate; canary-gate leaves it alone: rename it, or the ${kind}, to canary its changes`);
  }
  return out;
}

