// The read side of the reconciler: everything it looks at comes from these
// caches, which informers keep current. Nothing here calls the API server.

import type * as k8s from '@kubernetes/client-node';
import type { AlertProvider, Canary, MetricTemplate } from '../../core/api/types.js';
import type { RouterResource } from '../../core/providers.js';
import type { ConfigKind, ConfigObject, LookupResult } from './configs.js';

export interface ObjectCache<T> {
  get(namespace: string, name: string): T | undefined;
  list(namespace?: string): T[];
}

export interface HttpRoute {
  apiVersion: string;
  kind: 'HTTPRoute';
  metadata: k8s.V1ObjectMeta;
  spec: Record<string, unknown>;
}

export interface Caches {
  canaries: ObjectCache<Canary>;
  deployments: ObjectCache<k8s.V1Deployment>;
  services: ObjectCache<k8s.V1Service>;
  namespaces: ObjectCache<k8s.V1Namespace>;
  hpas: ObjectCache<k8s.V2HorizontalPodAutoscaler>;
  httpRoutes: ObjectCache<HttpRoute>;
  /** ConfigMaps labelled canarygate.dev/defaults=true: a namespace's Canary defaults. */
  defaults: ObjectCache<k8s.V1ConfigMap>;
  metricTemplates: ObjectCache<MetricTemplate>;
  alertProviders: ObjectCache<AlertProvider>;
  /** The ConfigMaps and Secrets targets reference (absent: configs are not looked at). */
  configs?: ConfigCaches;
  /** The informer cache of a resource a router writes (core/providers.ts ROUTER_RESOURCES). */
  routerObjects?: (resource: RouterResource) => ObjectCache<unknown> | undefined;
}

/** What the reconciler knows of ConfigMaps and Secrets. */
export interface ConfigCaches {
  /** Configs labelled canarygate.dev/managed=true, by kind. */
  managed: Record<ConfigKind, ObjectCache<ConfigObject>>;
  /** Config copies (labelled canarygate.dev/role=canary), by kind. */
  copies: Record<ConfigKind, ObjectCache<ConfigObject>>;
  /**
   * What the last look-up of a config outside the managed cache found (a
   * missing or untracked config, a copy's name taken by a user's object);
   * undefined when not looked up recently.
   */
  lookup(kind: ConfigKind, namespace: string, name: string): LookupResult | undefined;
}
