// The routers by `spec.provider` (Flagger's provider strings). The one place
// that knows which routers exist: adding one is a file in this folder and a
// line here.

import type * as k8s from '@kubernetes/client-node';
import type { RouterProvider } from '../../core/api/types.js';
import type { Caches } from '../observe/caches.js';
import { GATEWAY_API_TRAITS, GatewayApiRouter } from './gatewayapi.js';
import { KUBERNETES_TRAITS, KubernetesRouter } from './kubernetes.js';
import type { Router, RouterTraits } from './router.js';

export interface RouterDeps {
  core: k8s.CoreV1Api;
  custom: k8s.CustomObjectsApi;
  caches: Pick<Caches, 'services' | 'httpRoutes'>;
}

const REGISTRY: Record<RouterProvider, { traits: RouterTraits; create(deps: RouterDeps): Router }> = {
  kubernetes: { traits: KUBERNETES_TRAITS, create: (d) => new KubernetesRouter({ core: d.core, caches: d.caches }) },
  gatewayapi: { traits: GATEWAY_API_TRAITS, create: (d) => new GatewayApiRouter({ core: d.core, custom: d.custom, caches: d.caches }) },
};

export const DEFAULT_PROVIDER: RouterProvider = 'kubernetes';

function entry(provider: string | undefined) {
  return REGISTRY[(provider ?? DEFAULT_PROVIDER) as RouterProvider] ?? REGISTRY[DEFAULT_PROVIDER];
}

/** The traits of the router a Canary's `spec.provider` names (static: no router is built). */
export function routerTraits(provider: string | undefined): RouterTraits {
  return entry(provider).traits;
}

/** One router of each provider, sharing the reconciler's API clients and caches. */
export class Routers {
  private readonly byProvider = new Map<string, Router>();

  constructor(private readonly deps: RouterDeps) {}

  /** The router for a Canary's `spec.provider` (the CRD allows only known providers). */
  for(provider: string | undefined): Router {
    const key = provider ?? DEFAULT_PROVIDER;
    let router = this.byProvider.get(key);
    if (!router) this.byProvider.set(key, (router = entry(key).create(this.deps)));
    return router;
  }
}
