// The `kubernetes` router: no mesh, no gateway. The canary copy's Pods keep
// the user's Pod labels, so the user's own Service selects them next to the
// primary's, and kube-proxy spreads requests over all ready endpoints: the
// canary's share of the traffic is its share of the ready Pods. A weight is
// therefore realised by the copy's size (canaryReplicas), which the
// reconciler sets through the `ensure-canary-copy` effect; setWeight has
// nothing to write.
//
// Blue/green and A/B (analysis.iterations > 0) shift no traffic: the copy
// must not get any user request. Its selector labels are renamed
// (app=web -> app=web-canary) so the user's Service no longer selects it,
// and a Service `<svc>-canary` selecting the renamed labels lets load tests
// and webhooks reach it.
//
// A Service target (blue/green only) has a Service as its copy, built by
// copy.ts; this router has nothing to do for it.

import type * as k8s from '@kubernetes/client-node';
import type { Canary } from '../../core/api/types.js';
import { CANARY_ROLE, CANARY_SUFFIX, ROLE_LABEL } from '../../core/contract.js';
import { apexServiceName, buildRouterService, renameSelectorLabels, selectorKeys } from '../apply/copy.js';
import type { ObjectCache } from '../observe/caches.js';
import type { Router, RouterContext, RouterTraits, Split, Weights } from './router.js';
import { RouterServices, routerPortsFor } from './services.js';

/** A percentage of traffic below which a split counts as reached: getWeights reports whole percents. */
const WEIGHT_TOLERANCE = 0.005;

/** True for the progressive (weighted) strategy; false for blue/green and A/B (analysis.iterations > 0). */
export function isTrafficShifting(canary: Canary): boolean {
  return !((canary.spec.analysis?.iterations ?? 0) > 0);
}

/**
 * Size of a canary copy whose ready Pods carry `weight` percent of the
 * requests next to `primary` ready Pods: the smallest n >= 1 with
 * n / (n + primary) >= weight/100 (less half a percent, so that 20% of 4 is
 * 1 and not 2), capped at nine times the primary (90%) and at 100 Pods.
 * Weight 0 needs no Pod.
 */
export function replicasForWeight(weight: number, primary: number): number {
  if (!(weight > 0)) return 0;
  const p = Math.max(0, Math.floor(primary));
  const cap = Math.min(100, Math.max(1, p * 9));
  if (p === 0) return 1;
  if (weight >= 100) return cap;
  const share = weight / 100 - WEIGHT_TOLERANCE;
  const n = Math.ceil((p * share) / (1 - share) - 1e-9);
  return Math.min(cap, Math.max(1, n));
}

/** The split that ready Pods give: the canary's share of all ready Pods, in whole percent. */
export function weightsFromReadyPods(primaryReady: number, canaryReady: number): Weights {
  const p = Math.max(0, primaryReady);
  const c = Math.max(0, canaryReady);
  if (c === 0 || p + c === 0) return { primary: 100, canary: 0 };
  const canary = Math.round((100 * c) / (p + c));
  return { primary: 100 - canary, canary };
}

/** The labels that select the primary's Pods: the target's matchLabels, else the user's Service selector. */
export function primarySelector(ctx: RouterContext): Record<string, string> {
  const fromTarget = ctx.target?.spec?.selector?.matchLabels ?? {};
  if (Object.keys(fromTarget).length > 0) return { ...fromTarget };
  const fromService = ctx.service?.spec?.selector ?? {};
  if (Object.keys(fromService).length > 0) return { ...fromService };
  throw new Error(
    `cannot tell the primary's Pods apart: Deployment ${ctx.target?.metadata?.name ?? ctx.canary.spec.targetRef.name} has no selector.matchLabels and the Service has no selector`,
  );
}

/** Selector of a router's `<svc>-canary` Service: the primary's selector with renamed values, plus role=canary. */
export function canaryServiceSelector(ctx: RouterContext): Record<string, string> {
  const renamed = renameSelectorLabels(primarySelector(ctx), selectorKeys(ctx.target, ctx.service));
  return { ...renamed, [ROLE_LABEL]: CANARY_ROLE };
}

/** The router's `<svc>-canary` Service (blue/green and A/B with this router; every canary with gatewayapi). */
export function buildCanaryRouterService(ctx: RouterContext): k8s.V1Service {
  const svc = apexServiceName(ctx.canary);
  return buildRouterService({
    name: `${svc}${CANARY_SUFFIX}`,
    namespace: ctx.namespace,
    selector: canaryServiceSelector(ctx),
    ports: routerPortsFor(ctx),
    canary: ctx.canary,
    ...(ctx.canary.spec.service?.canary ? { overrides: ctx.canary.spec.service.canary } : {}),
  });
}

// ------------------------------------------------------------------ the router

export interface KubernetesRouterOptions {
  core: k8s.CoreV1Api;
  /** Informer caches; only `services` is read. */
  caches?: { services: ObjectCache<k8s.V1Service> };
}

/** The copy's Pods share the user's Service: its size is the weight. */
export const KUBERNETES_TRAITS: RouterTraits = { copySharesUserService: true };

export class KubernetesRouter implements Router {
  readonly name = 'kubernetes';
  readonly traits = KUBERNETES_TRAITS;
  private readonly services: RouterServices;

  constructor(opts: KubernetesRouterOptions) {
    this.services = new RouterServices(opts.core, opts.caches?.services);
  }

  canaryPodLabels(ctx: RouterContext, podLabels: Record<string, string>): Record<string, string> {
    if (ctx.canary.spec.targetRef.kind === 'Service' || isTrafficShifting(ctx.canary)) return { ...podLabels };
    return renameSelectorLabels(podLabels, selectorKeys(ctx.target, ctx.service));
  }

  canaryReplicas(ctx: RouterContext, weight: number, primaryReplicas: number): number {
    if (ctx.canary.spec.targetRef.kind === 'Service') return 0;
    // Blue/green and A/B: the copy takes no user traffic; it is sized like
    // the primary so that load tests see the same capacity.
    if (!isTrafficShifting(ctx.canary)) return Math.max(1, primaryReplicas);
    return replicasForWeight(weight, primaryReplicas);
  }

  conflicts(ctx: RouterContext): string[] {
    if (ctx.canary.spec.targetRef.kind === 'Service' || isTrafficShifting(ctx.canary)) return [];
    const why = this.services.conflict(ctx.namespace, `${apexServiceName(ctx.canary)}${CANARY_SUFFIX}`, ctx.canary);
    return why ? [why] : [];
  }

  async reconcile(ctx: RouterContext): Promise<void> {
    if (ctx.canary.spec.targetRef.kind === 'Service') return;
    const name = `${apexServiceName(ctx.canary)}${CANARY_SUFFIX}`;
    if (isTrafficShifting(ctx.canary)) {
      // The user's Service reaches the copy; a `<svc>-canary` left over from
      // a blue/green configuration would only confuse.
      await this.services.remove(ctx.namespace, name, ctx.canary);
      return;
    }
    await this.services.ensure(buildCanaryRouterService(ctx), ctx.canary);
  }

  /**
   * Nothing to write: with this router a weight is the copy's share of the
   * ready Pods, which the reconciler sets through canaryReplicas when it
   * sizes the copy (ensure-canary-copy). Blue/green, A/B and Service
   * targets shift no traffic at all.
   */
  async setWeight(_ctx: RouterContext, _split: Split): Promise<void> {}

  getWeights(ctx: RouterContext): Weights {
    if (ctx.canary.spec.targetRef.kind === 'Service' || !isTrafficShifting(ctx.canary)) return { primary: 100, canary: 0 };
    const copyReplicas = ctx.copy?.spec?.replicas ?? 0;
    const canaryReady = copyReplicas > 0 ? (ctx.copy?.status?.readyReplicas ?? 0) : 0;
    return weightsFromReadyPods(ctx.target?.status?.readyReplicas ?? 0, canaryReady);
  }

  async finalize(ctx: RouterContext): Promise<void> {
    if (ctx.canary.spec.targetRef.kind === 'Service') return;
    await this.services.remove(ctx.namespace, `${apexServiceName(ctx.canary)}${CANARY_SUFFIX}`, ctx.canary);
  }
}
