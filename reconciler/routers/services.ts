// The Services a router owns (`<svc>-primary`, `<svc>-canary`): made to
// match what the router wants in the fields it owns, and removed only when
// canary-gate created them. Shared by every router that has Services of its own.

import type * as k8s from '@kubernetes/client-node';
import type { Canary } from '../../core/api/types.js';
import { CANARY_SUFFIX, PRIMARY_SUFFIX } from '../../core/contract.js';
import { apexServiceName, buildRouterService, mergeRouterService, renameSelectorLabels, routerServiceNeedsUpdate, routerServicePorts, selectorKeys } from '../apply/copy.js';
import type { ObjectCache } from '../observe/caches.js';
import { buildCanaryRouterService, primarySelector } from './kubernetes.js';
import { FIELD_MANAGER, OwnedObjects, assertOurs, conflictOf, notOurs } from './owned.js';
import type { RouterContext } from './router.js';

export class RouterServices {
  private readonly store: OwnedObjects<k8s.V1Service>;

  constructor(core: k8s.CoreV1Api, cache?: ObjectCache<k8s.V1Service>) {
    this.store = new OwnedObjects<k8s.V1Service>(
      {
        kind: 'Service',
        get: (namespace, name) => core.readNamespacedService({ name, namespace }),
        create: (namespace, body) => core.createNamespacedService({ namespace, body, fieldManager: FIELD_MANAGER }),
        replace: (namespace, name, body) => core.replaceNamespacedService({ name, namespace, body, fieldManager: FIELD_MANAGER }),
        delete: (namespace, name, preconditions) => core.deleteNamespacedService({ name, namespace, body: { preconditions } }),
      },
      cache,
    );
  }

  /** Makes the Service match `desired` in what the router owns. Refuses to touch a Service canary-gate did not create. */
  async ensure(desired: k8s.V1Service, canary: Canary): Promise<void> {
    const ns = desired.metadata?.namespace ?? '';
    const name = desired.metadata?.name ?? '';
    await this.store.write(ns, name, (current) => (!current ? desired : routerServiceNeedsUpdate(current, desired) ? mergeRouterService(current, desired, canary) : undefined), {
      check: (current) => assertOurs(current, canary, 'Service'),
    });
  }

  /** Why the Service of that name (from the cache) blocks the Canary, if it does. */
  conflict(ns: string, name: string, canary: Canary): string | undefined {
    return conflictOf(this.store.cached(ns, name), canary, 'Service');
  }

  /** Deletes the Service if canary-gate created it; a Service of the user's is left alone. */
  async remove(ns: string, name: string, canary: Canary): Promise<void> {
    const existing = await this.store.read(ns, name);
    if (!existing || notOurs(existing, canary)) return;
    await this.store.remove(ns, name, existing);
  }

  // ---------------------------------------------------------------- the pair of a Deployment target

  /** `<apex>-primary` (the primary's Pods) and `<apex>-canary` (the copy's renamed Pods), as every router with Services of its own builds them. */
  async ensurePair(ctx: RouterContext): Promise<void> {
    if (ctx.canary.spec.targetRef.kind !== 'Deployment') return;
    const svc = apexServiceName(ctx.canary);
    await this.ensure(
      buildRouterService({
        name: `${svc}${PRIMARY_SUFFIX}`,
        namespace: ctx.namespace,
        selector: primarySelector(ctx),
        ports: routerPortsFor(ctx),
        canary: ctx.canary,
        ...(ctx.canary.spec.service?.primary ? { overrides: ctx.canary.spec.service.primary } : {}),
      }),
      ctx.canary,
    );
    await this.ensure(buildCanaryRouterService(ctx), ctx.canary);
  }

  /** Why `<apex>-primary` or `<apex>-canary` (from the cache) blocks the Canary. */
  pairConflicts(ctx: RouterContext): string[] {
    if (ctx.canary.spec.targetRef.kind !== 'Deployment') return [];
    const svc = apexServiceName(ctx.canary);
    const out: string[] = [];
    for (const name of [`${svc}${PRIMARY_SUFFIX}`, `${svc}${CANARY_SUFFIX}`]) {
      const why = this.conflict(ctx.namespace, name, ctx.canary);
      if (why) out.push(why);
    }
    return out;
  }

  /** Removes the pair (the canary's first), where canary-gate created it. */
  async removePair(ctx: RouterContext): Promise<void> {
    if (ctx.canary.spec.targetRef.kind !== 'Deployment') return;
    const svc = apexServiceName(ctx.canary);
    await this.remove(ctx.namespace, `${svc}${CANARY_SUFFIX}`, ctx.canary);
    await this.remove(ctx.namespace, `${svc}${PRIMARY_SUFFIX}`, ctx.canary);
  }
}

/**
 * The canary copy's Pods get renamed selector labels (app=web -> app=web-canary):
 * only `<apex>-canary` selects them, the apex Service and `<apex>-primary` only
 * the primary's. A Service target's copy is a Service: nothing to rename.
 */
export function renamedCanaryPodLabels(ctx: RouterContext, podLabels: Record<string, string>): Record<string, string> {
  if (ctx.canary.spec.targetRef.kind === 'Service') return { ...podLabels };
  return renameSelectorLabels(podLabels, selectorKeys(ctx.target, ctx.service));
}

/**
 * The size of the copy for a router whose objects move the traffic: like the
 * primary (at least one Pod), whatever the weight, since the router may move
 * a share to it before new Pods would be ready, and load tests during
 * blue/green see the same capacity. A Service target's copy runs no Pods.
 */
export function sizedLikePrimary(ctx: RouterContext, primaryReplicas: number): number {
  if (ctx.canary.spec.targetRef.kind === 'Service') return 0;
  return Math.max(1, primaryReplicas);
}

/**
 * The container ports of the target's pod template, as Service ports (name,
 * port, protocol; the port is its own target), for service.portDiscovery.
 * Empty when the field is not true or the target runs no Pods.
 */
export function discoveredPorts(ctx: RouterContext): k8s.V1ServicePort[] {
  if (ctx.canary.spec.service?.portDiscovery !== true) return [];
  const out: k8s.V1ServicePort[] = [];
  for (const c of ctx.target?.spec?.template?.spec?.containers ?? []) {
    for (const p of c.ports ?? []) {
      const port: k8s.V1ServicePort = { port: p.containerPort, protocol: p.protocol ?? 'TCP', targetPort: p.containerPort };
      if (p.name) port.name = p.name;
      out.push(port);
    }
  }
  return out;
}

/** Ports of the Services a router creates: the apex's or spec.service's, and with portDiscovery every container port. */
export function routerPortsFor(ctx: RouterContext): k8s.V1ServicePort[] {
  return routerServicePorts(ctx.canary.spec.service, ctx.service, discoveredPorts(ctx));
}
