// The routers by `spec.provider` (Flagger's provider strings). The one place
// that knows which routers exist: adding one is a file in this folder, a line
// here, and its row in core/providers.ts (what it writes, which fields it
// honours).

import type * as k8s from '@kubernetes/client-node';
import { ROUTER_RESOURCES, routerFamily, type RouterFamily, type RouterResource } from '../../core/providers.js';
import type { Caches, ObjectCache } from '../observe/caches.js';
import { CONTOUR_TRAITS, ContourRouter } from './contour.js';
import { GATEWAY_API_TRAITS, GatewayApiRouter } from './gatewayapi.js';
import { ISTIO_TRAITS, IstioRouter } from './istio.js';
import { KUBERNETES_TRAITS, KubernetesRouter } from './kubernetes.js';
import { NGINX_TRAITS, NginxRouter } from './nginx.js';
import type { Router, RouterTraits } from './router.js';
import { SmiRouter, smiTraits } from './smi.js';
import { TRAEFIK_SERVICE_RESOURCE, TRAEFIK_TRAITS, TraefikRouter, type TraefikService } from './traefik.js';

export interface RouterDeps {
  core: k8s.CoreV1Api;
  custom: k8s.CustomObjectsApi;
  caches: Pick<Caches, 'services' | 'httpRoutes' | 'routerObjects'>;
}

interface Entry {
  /** The traits, or for a family whose providers differ (SMI meshes' metrics), the traits of a provider string. */
  traits: RouterTraits | ((provider: string) => RouterTraits);
  /** One router for a family; `provider` is the exact provider string (SMI versions differ in their objects). */
  create(deps: RouterDeps, provider: string): Router;
}

const REGISTRY: Partial<Record<RouterFamily, Entry>> = {
  kubernetes: { traits: KUBERNETES_TRAITS, create: (d) => new KubernetesRouter({ core: d.core, caches: d.caches }) },
  gatewayapi: { traits: GATEWAY_API_TRAITS, create: (d) => new GatewayApiRouter({ core: d.core, custom: d.custom, caches: d.caches }) },
  istio: { traits: ISTIO_TRAITS, create: (d) => new IstioRouter({ core: d.core, custom: d.custom, caches: d.caches }) },
  smi: { traits: smiTraits, create: (d, provider) => new SmiRouter({ core: d.core, custom: d.custom, caches: d.caches, provider }) },
  contour: { traits: CONTOUR_TRAITS, create: (d) => new ContourRouter({ core: d.core, custom: d.custom, caches: d.caches }) },
  nginx: { traits: NGINX_TRAITS, create: (d) => new NginxRouter({ core: d.core, custom: d.custom, caches: d.caches }) },
  traefik: {
    traits: TRAEFIK_TRAITS,
    create: (d) => new TraefikRouter({ core: d.core, custom: d.custom, caches: { services: d.caches.services, traefikServices: d.caches.routerObjects?.(TRAEFIK_SERVICE_RESOURCE) as ObjectCache<TraefikService> | undefined } }),
  },
};

export const DEFAULT_PROVIDER = 'kubernetes';

function entry(provider: string | undefined): Entry {
  const family = routerFamily(provider ?? DEFAULT_PROVIDER);
  const found = family ? REGISTRY[family] : undefined;
  // The CRD refuses unknown providers; a Canary stored before a downgrade falls back to the safe default.
  return found ?? (REGISTRY.kubernetes as Entry);
}

/** The traits of the router a Canary's `spec.provider` names (static: no router is built). */
export function routerTraits(provider: string | undefined): RouterTraits {
  const traits = entry(provider).traits;
  return typeof traits === 'function' ? traits(provider ?? DEFAULT_PROVIDER) : traits;
}

/** The resources each router family reads through informers (the reconciler starts them when the family is first used). */
export function watchedRouterResourcesByFamily(): Array<[RouterFamily, readonly RouterResource[]]> {
  return (Object.keys(REGISTRY) as RouterFamily[]).map((family) => [family, ROUTER_RESOURCES[family]]);
}

/** Every resource the routers read through informers. */
export function watchedRouterResources(): RouterResource[] {
  return watchedRouterResourcesByFamily().flatMap(([, resources]) => resources);
}

/** One router per provider string, sharing the reconciler's API clients and caches. */
export class Routers {
  private readonly byProvider = new Map<string, Router>();

  constructor(private readonly deps: RouterDeps) {}

  /** The router for a Canary's `spec.provider` (the CRD allows only known providers). */
  for(provider: string | undefined): Router {
    const key = provider ?? DEFAULT_PROVIDER;
    let router = this.byProvider.get(key);
    if (!router) this.byProvider.set(key, (router = entry(key).create(this.deps, key)));
    return router;
  }
}
