// Applies the state machine's effects to the cluster. Each effect compares
// the desired state with the sync's context (read from the caches) first and
// writes only on a difference, so re-asserting desired state every sync costs
// no API calls. Every write is preceded by a leadership check: a deposed
// leader stops acting at once. Nothing here tells the target kinds apart:
// the kind's adapter (core/targets/) and client (targets.ts) do.

import * as k8s from '@kubernetes/client-node';
import { COMMAND_ANNOTATIONS, FINALIZER, GROUP, MANAGED_LABEL, PENDING_REVISION, PENDING_SPEC, TRUE, VERSION } from '../../core/contract.js';
import { escapePointer, type JsonPatchOp } from '../../core/json.js';
import { isAlreadyExists, isNotFound } from '../../core/api/client.js';
import type { SyncContext } from '../observe/context.js';
import type { Effect } from '../decide/transition.js';
import { buildCopy, copyChange, forReplace, ownedBy } from './copy.js';
import { targetClient, type TargetClients } from './targets.js';
import { splitFor } from '../routers/split.js';
import { FIELD_MANAGER, NameTakenError } from '../routers/owned.js';
import { buildCopyHpa, copyHpaUpdate, copyReplicasWithAutoscaler } from './autoscaler.js';
import { ownedConfigCopies } from '../observe/context.js';
import type { Caches } from '../observe/caches.js';
import { deleteConfigCopies, ensureConfigCopies, promotionWrites, trackConfigs, writePromotion, type ConfigLookups } from './configs.js';

export interface EffectClients extends TargetClients {
  custom: k8s.CustomObjectsApi;
  autoscaling: k8s.AutoscalingV2Api;
}

/** What one sync lends the effects besides its context. */
export interface EffectHooks {
  /** Throws when this process is no longer the leader. */
  assertLeader(): void;
  /** Told the resourceVersion of a write to the target, so the next sync waits for the cache to show it. */
  targetWritten?(resourceVersion: string): void;
  /** The HPA named like the copy, if any (only one the Canary owns is ever deleted). */
  copyHpa?: k8s.V2HorizontalPodAutoscaler;
  /** The config caches and look-ups, when the reconciler tracks ConfigMaps and Secrets. */
  configs?: { caches: Pick<Caches, 'configs'>; lookups: ConfigLookups };
}

export class NotLeaderError extends Error {}

const mergePatch = k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.MergePatch);
const jsonPatch = k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.JsonPatch);

/** Counts the API writes made, for the benchmark and metrics. */
export const writeCounter = { writes: 0 };

type Write = (fn: () => Promise<unknown>) => Promise<void>;

export async function applyEffect(effect: Effect, ctx: SyncContext, hooks: EffectHooks, api: EffectClients): Promise<void> {
  const { canary, namespace: ns, kind } = ctx;
  const client = targetClient(kind, api);
  const write: Write = async (fn) => {
    hooks.assertLeader();
    writeCounter.writes++;
    try {
      await fn();
    } catch (err) {
      // Created by an earlier sync whose result the cache has not shown yet:
      // the next sync sees it and updates it if needed.
      if (isAlreadyExists(err)) return;
      throw err;
    }
  };
  const patchCanary = (body: unknown, options: k8s.ConfigurationOptions) =>
    write(() => api.custom.patchNamespacedCustomObject({ group: GROUP, version: VERSION, namespace: ns, plural: 'canaries', name: canary.metadata.name ?? '', body }, options));

  switch (effect.type) {
    case 'add-finalizer': {
      const finalizers = canary.metadata.finalizers ?? [];
      if (finalizers.includes(FINALIZER)) return;
      // A JSON patch that appends keeps other controllers' finalizers without
      // needing a fresh resourceVersion (the status was just written).
      const body = canary.metadata.finalizers
        ? [{ op: 'add', path: '/metadata/finalizers/-', value: FINALIZER }]
        : [{ op: 'add', path: '/metadata/finalizers', value: [FINALIZER] }];
      return patchCanary(body, jsonPatch);
    }
    case 'remove-finalizer': {
      const i = (canary.metadata.finalizers ?? []).indexOf(FINALIZER);
      if (i < 0) return;
      // test + remove: fails (and is retried) if the list moved meanwhile, never removes another's finalizer.
      return patchCanary(
        [
          { op: 'test', path: `/metadata/finalizers/${i}`, value: FINALIZER },
          { op: 'remove', path: `/metadata/finalizers/${i}` },
        ],
        jsonPatch,
      );
    }
    case 'clear-command': {
      const key = COMMAND_ANNOTATIONS[effect.command];
      if (!canary.metadata.annotations?.[key]) return;
      return patchCanary({ metadata: { annotations: { [key]: null } } }, mergePatch);
    }
    case 'adopt-target': {
      const live = ctx.live;
      if (!live || live.metadata?.labels?.[MANAGED_LABEL] === TRUE) return;
      // Adoption also drops control annotations put on the object while it
      // was unmanaged: only the webhook may record a pending revision (and it
      // records none on an object without the label, so no race with it).
      const body = { metadata: { labels: { [MANAGED_LABEL]: TRUE }, annotations: { [PENDING_REVISION]: null, [PENDING_SPEC]: null } } };
      return write(() => client.patch(live.metadata?.name ?? '', ns, body, mergePatch));
    }
    case 'release-target': {
      const live = ctx.live;
      if (!live || live.metadata?.labels?.[MANAGED_LABEL] === undefined) return;
      return write(() => client.patch(live.metadata?.name ?? '', ns, { metadata: { labels: { [MANAGED_LABEL]: null } } }, mergePatch));
    }
    case 'ensure-router':
      hooks.assertLeader();
      return ctx.router.reconcile(ctx);
    case 'remove-router':
      // With the target gone (a namespace being deleted) there is no traffic to
      // protect; the router's objects are owned by the Canary and collected with it.
      if (!ctx.live) return;
      hooks.assertLeader();
      return ctx.router.finalize(ctx);
    case 'set-weight':
      if (!ctx.live) return; // nothing left to route to
      hooks.assertLeader();
      // The router writes only when the split in force differs.
      try {
        return await ctx.router.setWeight(ctx, splitFor(canary, { weight: effect.weight, revision: effect.revision, ...(effect.mirror ? { mirror: effect.mirror } : {}), intervalMs: ctx.observed.analysis.intervalMs }));
      } catch (err) {
        // A Canary being deleted may already have handed its route back (a
        // sync retried after the hand-back): nothing of its own routes
        // traffic any more, so there is nothing to set.
        if (canary.metadata.deletionTimestamp && err instanceof NameTakenError) return;
        throw err;
      }
    case 'ensure-canary-copy':
      return ensureCopy(effect, ctx, hooks, api, write);
    case 'scale-canary-to-zero': {
      const copy = ctx.liveCopy;
      if (copy && kind.runsPods && kind.replicas(copy) > 0) {
        await deleteCopyHpa(ctx, hooks, api, write);
        await write(() => client.patch(copy.metadata?.name ?? '', ns, { spec: { replicas: 0 } }, mergePatch));
      }
      // The copy's config copies go with the run (a next run makes them again).
      if (hooks.configs) await deleteConfigCopies(ownedConfigCopies(ctx, hooks.configs.caches), ns, api.core, write, ctx.canary);
      return;
    }
    case 'track-configs':
      if (!ctx.configs || !hooks.configs) return;
      return trackConfigs(ctx.configs, ns, api.core, hooks.configs.lookups, write);
    case 'delete-canary-copy': {
      if (hooks.configs) await deleteConfigCopies(ownedConfigCopies(ctx, hooks.configs.caches), ns, api.core, write, ctx.canary);
      const copy = ctx.liveCopy;
      if (!copy) return;
      await deleteCopyHpa(ctx, hooks, api, write);
      const uid = copy.metadata?.uid;
      return write(() => client.delete(copy.metadata?.name ?? '', ns, uid ? { preconditions: { uid } } : {}));
    }
    case 'promote-target':
      return promote(effect.revision, ctx, hooks, api, write);
  }
}

/** The copy's own HPA (spec.autoscalerRef, exact-weight routers), once the copy exists: created, or made to match the user's. */
async function ensureCopyHpa(ctx: SyncContext, copy: k8s.V1Deployment | k8s.V1Service, api: EffectClients, write: Write): Promise<void> {
  const { user, copy: current } = ctx.autoscalers;
  if (!user || ctx.autoscalers.conflict) return;
  const desired = buildCopyHpa(user, copy.metadata?.name ?? '', ctx.canary);
  const name = desired.metadata?.name ?? '';
  if (!current) {
    await write(() => api.autoscaling.createNamespacedHorizontalPodAutoscaler({ namespace: ctx.namespace, body: desired, fieldManager: FIELD_MANAGER }));
    return;
  }
  const body = copyHpaUpdate(current, desired, ctx.canary);
  if (body) await write(() => api.autoscaling.replaceNamespacedHorizontalPodAutoscaler({ name, namespace: ctx.namespace, body, fieldManager: FIELD_MANAGER }));
}

/** An HPA named like the copy is deleted only when this Canary owns it: a user's own is never touched. */
async function deleteCopyHpa(ctx: SyncContext, hooks: EffectHooks, api: EffectClients, write: Write): Promise<void> {
  const hpa = hooks.copyHpa;
  if (!hpa || !ownedBy(hpa, ctx.canary)) return;
  const uid = hpa.metadata?.uid;
  await write(async () => {
    try {
      await api.autoscaling.deleteNamespacedHorizontalPodAutoscaler({ name: hpa.metadata?.name ?? '', namespace: ctx.namespace, ...(uid ? { body: { preconditions: { uid } } } : {}) });
    } catch (err) {
      if (!isNotFound(err)) throw err; // already gone (the cache had not shown it yet)
    }
  });
}

async function ensureCopy(effect: Extract<Effect, { type: 'ensure-canary-copy' }>, ctx: SyncContext, hooks: EffectHooks, api: EffectClients, write: Write): Promise<void> {
  const { live, pending, namespace: ns } = ctx;
  // Only ever run the spec of the revision the state machine asked for, and
  // never over an object of that name that is not canary-gate's (the
  // context leaves such an object out, and the create then fails).
  if (!live || !pending || pending.revision !== effect.revision || ctx.observed.blockers.length > 0) return;
  // The configs it reads first: a copy must never start on the live data of a config under canary.
  const configs = ctx.configs;
  if (configs?.combined && configs.changed.size > 0) {
    if (!hooks.configs) return;
    const cache = hooks.configs.caches.configs;
    const ready = await ensureConfigCopies(
      { canary: ctx.canary, namespace: ns, configs, existing: (k, n) => cache?.copies[k].get(ns, n) ?? cache?.managed[k].get(ns, n) },
      api.core,
      hooks.configs.lookups,
      write,
    );
    if (!ready) return;
  }
  const client = targetClient(ctx.kind, api);
  const desired = buildCopy(ctx, pending, effect.weight);
  const existing = ctx.liveCopy;
  const ownHpa = !ctx.observed.router.copySharesUserService;
  if (ctx.autoscalers.user && desired.kind === 'Deployment') {
    const d = desired as k8s.V1Deployment;
    d.spec = { ...(d.spec as k8s.V1DeploymentSpec), replicas: copyReplicasWithAutoscaler(d.spec?.replicas ?? 0, ctx.autoscalers, { ownHpa, runningReplicas: existing ? ctx.kind.replicas(existing) : 0 }) };
  }
  if (!existing) return write(() => client.create(ns, desired));
  if (ownHpa && ctx.kind.replicas(desired) > 0) await ensureCopyHpa(ctx, existing, api, write);
  const change = copyChange(existing, desired);
  if (change === 'none') return;
  if (change === 'recreate') {
    // A Deployment's selector is immutable: replace the copy.
    await write(() => client.delete(existing.metadata?.name ?? '', ns, { propagationPolicy: 'Background' }));
    return; // recreated on the next sync, once the cache has seen the delete
  }
  await write(() => client.replace(existing.metadata?.name ?? '', ns, forReplace(existing, desired)));
}

/**
 * Promotion is one JSON-patch write on the live object: a `test` that the
 * pending revision is still the analysed one, the new spec, and the removal
 * of both pending annotations. The API server applies all of it or nothing,
 * so no half-promoted state can exist, and a change that arrived meanwhile
 * makes the write fail instead of being overwritten.
 */
async function promote(revision: string, ctx: SyncContext, hooks: EffectHooks, api: EffectClients, write: Write): Promise<void> {
  const { live, pending } = ctx;
  if (!live || !pending || pending.revision !== revision) return;
  if (ctx.configs?.combined) {
    // Configs first, the template last (apply/configs.ts promotionWrites).
    const writes = promotionWrites({ configs: ctx.configs, liveTemplate: ((live as k8s.V1Deployment).spec?.template ?? {}) as Record<string, unknown>, ...(ctx.ownPending ? { ownPending: ctx.ownPending } : {}) });
    const rv = await writePromotion(writes, live.metadata?.name ?? '', ctx.namespace, api, write);
    if (rv) hooks.targetWritten?.(rv);
    return;
  }
  const annotationPath = (k: string) => `/metadata/annotations/${escapePointer(k)}`;
  const ops: JsonPatchOp[] = [
    { op: 'test', path: annotationPath(PENDING_REVISION), value: revision },
    ...ctx.kind.promoteOps(live, pending.spec),
    { op: 'remove', path: annotationPath(PENDING_REVISION) },
    { op: 'remove', path: annotationPath(PENDING_SPEC) },
  ];
  const client = targetClient(ctx.kind, api);
  await write(async () => {
    const res = await client.patch(live.metadata?.name ?? '', ctx.namespace, ops, jsonPatch);
    if (res?.metadata?.resourceVersion) hooks.targetWritten?.(res.metadata.resourceVersion);
  });
}
