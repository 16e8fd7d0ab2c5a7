// Applies the state machine's effects to the cluster. Each effect compares
// the desired state with the cache first and writes only on a difference, so
// re-asserting desired state every sync costs no API calls. Every write is
// preceded by a leadership check: a deposed leader stops acting at once.

import * as k8s from '@kubernetes/client-node';
import { COMMAND_ANNOTATIONS, FINALIZER, GROUP, MANAGED_LABEL, PENDING_REVISION, PENDING_SPEC, TRUE, VERSION, canaryName } from '../../core/contract.js';
import type { Canary } from '../../core/api/types.js';
import { escapePointer } from '../../webhook/decide.js';
import { buildCanaryDeployment, buildCanaryService, copyChange, needsUpdate } from './copy.js';
import { pendingChange } from '../observe/observe.js';
import type { Router, RouterContext } from '../routers/router.js';
import type { Effect } from '../decide/transition.js';


export interface EffectClients {
  apps: k8s.AppsV1Api;
  core: k8s.CoreV1Api;
  custom: k8s.CustomObjectsApi;
  autoscaling: k8s.AutoscalingV2Api;
}

export interface EffectContext {
  canary: Canary;
  router: Router;
  routerContext: RouterContext;
  target?: k8s.V1Deployment | k8s.V1Service;
  copy?: k8s.V1Deployment | k8s.V1Service;
  hpa?: k8s.V2HorizontalPodAutoscaler;
  copyHpa?: k8s.V2HorizontalPodAutoscaler;
  /** Runs post-rollout gates (best effort). */
  runPostRollout(): Promise<void>;
  /** Throws when this process is no longer the leader. */
  assertLeader(): void;
  /** Told the resourceVersion of a write to the target, so the next sync waits for the cache to show it. */
  targetWritten?(resourceVersion: string): void;
}

export class NotLeaderError extends Error {}

const mergePatch = k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.MergePatch);
const jsonPatch = k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.JsonPatch);

/** Counts the API writes made, for the benchmark and metrics. */
export const writeCounter = { writes: 0 };

export async function applyEffect(effect: Effect, ctx: EffectContext, api: EffectClients): Promise<void> {
  const { canary } = ctx;
  const ns = canary.metadata.namespace ?? '';
  const kind = canary.spec.targetRef.kind;
  const write: Write = async (fn) => {
    ctx.assertLeader();
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

  switch (effect.type) {
    case 'add-finalizer': {
      const finalizers = canary.metadata.finalizers ?? [];
      if (finalizers.includes(FINALIZER)) return;
      // A JSON patch that appends keeps other controllers' finalizers without
      // needing a fresh resourceVersion (the status was just written).
      const body = canary.metadata.finalizers
        ? [{ op: 'add', path: '/metadata/finalizers/-', value: FINALIZER }]
        : [{ op: 'add', path: '/metadata/finalizers', value: [FINALIZER] }];
      await write(() => api.custom.patchNamespacedCustomObject({ group: GROUP, version: VERSION, namespace: ns, plural: 'canaries', name: canary.metadata.name ?? '', body }, jsonPatch));
      return;
    }
    case 'remove-finalizer': {
      const finalizers = canary.metadata.finalizers ?? [];
      const i = finalizers.indexOf(FINALIZER);
      if (i < 0) return;
      // test + remove: fails (and is retried) if the list moved meanwhile, never removes another's finalizer.
      const body = [
        { op: 'test', path: `/metadata/finalizers/${i}`, value: FINALIZER },
        { op: 'remove', path: `/metadata/finalizers/${i}` },
      ];
      await write(() => api.custom.patchNamespacedCustomObject({ group: GROUP, version: VERSION, namespace: ns, plural: 'canaries', name: canary.metadata.name ?? '', body }, jsonPatch));
      return;
    }
    case 'clear-command': {
      const key = COMMAND_ANNOTATIONS[effect.command];
      if (!canary.metadata.annotations?.[key]) return;
      await write(() =>
        api.custom.patchNamespacedCustomObject(
          { group: GROUP, version: VERSION, namespace: ns, plural: 'canaries', name: canary.metadata.name ?? '', body: { metadata: { annotations: { [key]: null } } } },
          mergePatch,
        ),
      );
      return;
    }
    case 'adopt-target': {
      const target = ctx.target;
      if (!target || target.metadata?.labels?.[MANAGED_LABEL] === TRUE) return;
      // Adoption also drops control annotations put on the object while it
      // was unmanaged: only the webhook may record a pending revision (and it
      // records none on an object without the label, so no race with it).
      const body = {
        metadata: {
          labels: { [MANAGED_LABEL]: TRUE },
          annotations: { [PENDING_REVISION]: null, [PENDING_SPEC]: null },
        },
      };
      const name = target.metadata?.name ?? '';
      await write(() =>
        kind === 'Deployment'
          ? api.apps.patchNamespacedDeployment({ name, namespace: ns, body }, mergePatch)
          : api.core.patchNamespacedService({ name, namespace: ns, body }, mergePatch),
      );
      return;
    }
    case 'release-target': {
      const target = ctx.target;
      if (!target || target.metadata?.labels?.[MANAGED_LABEL] === undefined) return;
      const body = { metadata: { labels: { [MANAGED_LABEL]: null } } };
      const name = target.metadata?.name ?? '';
      await write(() =>
        kind === 'Deployment'
          ? api.apps.patchNamespacedDeployment({ name, namespace: ns, body }, mergePatch)
          : api.core.patchNamespacedService({ name, namespace: ns, body }, mergePatch),
      );
      return;
    }
    case 'ensure-router':
      ctx.assertLeader();
      await ctx.router.reconcile(ctx.routerContext);
      return;
    case 'remove-router':
      // With the target gone (a namespace being deleted) there is no traffic to
      // protect; the router's objects are owned by the Canary and collected with it.
      if (!ctx.target) return;
      ctx.assertLeader();
      await ctx.router.finalize(ctx.routerContext);
      return;
    case 'set-weight': {
      if (!ctx.target) return; // nothing left to route to
      const current = ctx.router.getWeights(ctx.routerContext);
      const match = canary.spec.analysis?.match;
      if (current.canary === effect.weight && ctx.router.name === 'gatewayapi' && !match?.length) return;
      if (ctx.router.name === 'kubernetes') return; // realised by the copy's size (ensure-canary-copy)
      ctx.assertLeader();
      await ctx.router.setWeight(ctx.routerContext, effect.weight, match);
      return;
    }
    case 'ensure-canary-copy':
      return ensureCopy(effect, ctx, api, write);
    case 'scale-canary-to-zero': {
      const copy = ctx.copy;
      if (!copy || kind !== 'Deployment') return;
      const d = copy as k8s.V1Deployment;
      if ((d.spec?.replicas ?? 0) === 0) return;
      if (ctx.copyHpa) {
        await write(() => api.autoscaling.deleteNamespacedHorizontalPodAutoscaler({ name: ctx.copyHpa?.metadata?.name ?? '', namespace: ns }));
      }
      await write(() => api.apps.patchNamespacedDeployment({ name: d.metadata?.name ?? '', namespace: ns, body: { spec: { replicas: 0 } } }, mergePatch));
      return;
    }
    case 'delete-canary-copy': {
      const copy = ctx.copy;
      if (!copy) return;
      const name = copy.metadata?.name ?? '';
      if (ctx.copyHpa) await write(() => api.autoscaling.deleteNamespacedHorizontalPodAutoscaler({ name: ctx.copyHpa?.metadata?.name ?? '', namespace: ns }));
      await write(() => (kind === 'Deployment' ? api.apps.deleteNamespacedDeployment({ name, namespace: ns }) : api.core.deleteNamespacedService({ name, namespace: ns })));
      return;
    }
    case 'promote-target':
      return promote(effect.revision, ctx, api, write);
    case 'run-gates':
      await ctx.runPostRollout();
      return;
  }
}

type Write = (fn: () => Promise<unknown>) => Promise<void>;

async function ensureCopy(effect: Extract<Effect, { type: 'ensure-canary-copy' }>, ctx: EffectContext, api: EffectClients, write: Write): Promise<void> {
  const { canary } = ctx;
  const ns = canary.metadata.namespace ?? '';
  const target = ctx.target;
  if (!target) return;
  const pending = pendingChange(target);
  // Only ever run the spec of the revision the state machine asked for.
  if (!pending || 'error' in pending || pending.revision !== effect.revision) return;

  if (canary.spec.targetRef.kind === 'Service') {
    const desired = buildCanaryService({ targetService: target as k8s.V1Service, pendingSpec: pending.spec, revision: pending.revision, canary });
    const existing = ctx.copy as k8s.V1Service | undefined;
    if (!existing) await write(() => api.core.createNamespacedService({ namespace: ns, body: desired }));
    else if (needsUpdate(existing, desired)) {
      desired.metadata = { ...desired.metadata, resourceVersion: existing.metadata?.resourceVersion };
      desired.spec = { ...desired.spec, clusterIP: existing.spec?.clusterIP, clusterIPs: existing.spec?.clusterIPs } as k8s.V1ServiceSpec;
      await write(() => api.core.replaceNamespacedService({ name: existing.metadata?.name ?? '', namespace: ns, body: desired }));
    }
    return;
  }

  const deployment = target as k8s.V1Deployment;
  const primaryReplicas = deployment.spec?.replicas ?? 1;
  const replicas = ctx.router.canaryReplicas(ctx.routerContext, effect.weight, primaryReplicas);
  const podLabels = ctx.router.canaryPodLabels(ctx.routerContext, (pending.spec as k8s.V1PodTemplateSpec).metadata?.labels ?? {});
  const desired = buildCanaryDeployment({
    target: deployment,
    pendingTemplate: pending.spec as k8s.V1PodTemplateSpec,
    revision: pending.revision,
    replicas,
    podLabels,
    canary,
  });
  const existing = ctx.copy as k8s.V1Deployment | undefined;
  if (!existing) {
    await write(() => api.apps.createNamespacedDeployment({ namespace: ns, body: desired }));
  } else {
    const change = copyChange(existing, desired);
    if (change === 'none') return;
    if (change === 'recreate') {
      // A Deployment's selector is immutable: replace the copy.
      await write(() => api.apps.deleteNamespacedDeployment({ name: existing.metadata?.name ?? '', namespace: ns, propagationPolicy: 'Background' }));
      return; // recreated on the next sync, once the cache has seen the delete
    }
    desired.metadata = { ...desired.metadata, resourceVersion: existing.metadata?.resourceVersion };
    await write(() => api.apps.replaceNamespacedDeployment({ name: existing.metadata?.name ?? '', namespace: ns, body: desired }));
  }
}

/**
 * Promotion is one JSON-patch write on the live object: a `test` that the
 * pending revision is still the analysed one, the new spec, and the removal
 * of both pending annotations. The API server applies all of it or nothing,
 * so no half-promoted state can exist, and a change that arrived meanwhile
 * makes the write fail instead of being overwritten.
 */
async function promote(revision: string, ctx: EffectContext, api: EffectClients, write: Write): Promise<void> {
  const target = ctx.target;
  if (!target) return;
  const pending = pendingChange(target);
  if (!pending || 'error' in pending || pending.revision !== revision) return;
  const ns = ctx.canary.metadata.namespace ?? '';
  const name = target.metadata?.name ?? '';
  const annotationPath = (k: string) => `/metadata/annotations/${escapePointer(k)}`;
  const ops: { op: string; path: string; value?: unknown }[] = [{ op: 'test', path: annotationPath(PENDING_REVISION), value: revision }];
  if (ctx.canary.spec.targetRef.kind === 'Deployment') {
    ops.push({ op: 'replace', path: '/spec/template', value: pending.spec });
  } else {
    ops.push({ op: 'replace', path: '/spec', value: promotedServiceSpec((target as k8s.V1Service).spec ?? {}, pending.spec) });
  }
  ops.push({ op: 'remove', path: annotationPath(PENDING_REVISION) }, { op: 'remove', path: annotationPath(PENDING_SPEC) });
  await write(async () => {
    const res: { metadata?: { resourceVersion?: string } } =
      ctx.canary.spec.targetRef.kind === 'Deployment'
        ? await api.apps.patchNamespacedDeployment({ name, namespace: ns, body: ops }, jsonPatch)
        : await api.core.patchNamespacedService({ name, namespace: ns, body: ops }, jsonPatch);
    if (res?.metadata?.resourceVersion) ctx.targetWritten?.(res.metadata.resourceVersion);
  });
}

/** The pending Service spec with the live object's server-allocated fields kept. */
export function promotedServiceSpec(live: k8s.V1ServiceSpec, pending: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = { ...pending };
  const sameKind = (pending.type ?? 'ClusterIP') !== 'ExternalName' && (live.type ?? 'ClusterIP') !== 'ExternalName';
  if (sameKind) {
    for (const f of ['clusterIP', 'clusterIPs', 'ipFamilies', 'ipFamilyPolicy'] as const) {
      if (out[f] === undefined && live[f] !== undefined) out[f] = live[f];
    }
    if (out.healthCheckNodePort === undefined && live.healthCheckNodePort !== undefined && pending.type === live.type) out.healthCheckNodePort = live.healthCheckNodePort;
    if (Array.isArray(out.ports) && pending.type === live.type && live.type !== 'ClusterIP') {
      out.ports = (out.ports as Record<string, unknown>[]).map((p) => {
        const match = live.ports?.find((lp) => lp.name === p.name && lp.port === p.port);
        return p.nodePort === undefined && match?.nodePort !== undefined ? { ...p, nodePort: match.nodePort } : p;
      });
    }
  }
  return out;
}


function isAlreadyExists(err: unknown): boolean {
  const e = err as { code?: number; body?: unknown };
  if (e?.code !== 409) return false;
  const body = typeof e.body === 'string' ? e.body : JSON.stringify(e.body ?? '');
  return body.includes('AlreadyExists');
}
