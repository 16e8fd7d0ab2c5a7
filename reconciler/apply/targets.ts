// The API calls for each target kind: the reconciler's half of the
// target-kind adapters in core/targets/ (which are pure and shared with the
// webhook). A new kind adds its adapter there and its client here.

import type * as k8s from '@kubernetes/client-node';
import type { TargetKind } from '../../core/targets/index.js';

type Obj = k8s.V1Deployment | k8s.V1Service;

/**
 * The field manager of the reconciler's writes to targets and copies, so
 * that managedFields (and a server-side apply that conflicts after a
 * promotion) name canary-gate rather than the HTTP library.
 */
const FIELD_MANAGER = 'canary-gate';

export interface TargetClients {
  apps: k8s.AppsV1Api;
  core: k8s.CoreV1Api;
}

/** The calls the effects make on a target and its copy. */
export interface TargetClient {
  patch(name: string, namespace: string, body: unknown, options: k8s.ConfigurationOptions): Promise<Obj>;
  create(namespace: string, body: Obj): Promise<Obj>;
  replace(name: string, namespace: string, body: Obj): Promise<Obj>;
  delete(name: string, namespace: string, opts: { preconditions?: k8s.V1Preconditions; propagationPolicy?: string }): Promise<unknown>;
}

const CLIENTS: Record<TargetKind['kind'], (api: TargetClients) => TargetClient> = {
  Deployment: ({ apps }) => ({
    patch: (name, namespace, body, options) => apps.patchNamespacedDeployment({ name, namespace, body, fieldManager: FIELD_MANAGER }, options),
    create: (namespace, body) => apps.createNamespacedDeployment({ namespace, body: body as k8s.V1Deployment, fieldManager: FIELD_MANAGER }),
    replace: (name, namespace, body) => apps.replaceNamespacedDeployment({ name, namespace, body: body as k8s.V1Deployment, fieldManager: FIELD_MANAGER }),
    delete: (name, namespace, { preconditions, propagationPolicy }) =>
      apps.deleteNamespacedDeployment({ name, namespace, ...(propagationPolicy ? { propagationPolicy } : {}), ...(preconditions ? { body: { preconditions } } : {}) }),
  }),
  Service: ({ core }) => ({
    patch: (name, namespace, body, options) => core.patchNamespacedService({ name, namespace, body, fieldManager: FIELD_MANAGER }, options),
    create: (namespace, body) => core.createNamespacedService({ namespace, body: body as k8s.V1Service, fieldManager: FIELD_MANAGER }),
    replace: (name, namespace, body) => core.replaceNamespacedService({ name, namespace, body: body as k8s.V1Service, fieldManager: FIELD_MANAGER }),
    delete: (name, namespace, { preconditions, propagationPolicy }) =>
      core.deleteNamespacedService({ name, namespace, ...(propagationPolicy ? { propagationPolicy } : {}), ...(preconditions ? { body: { preconditions } } : {}) }),
  }),
};

const made = new WeakMap<TargetClients, Map<string, TargetClient>>();

/** The client for a kind, made once per set of API clients. */
export function targetClient(kind: TargetKind, api: TargetClients): TargetClient {
  let byKind = made.get(api);
  if (!byKind) made.set(api, (byKind = new Map()));
  let client = byKind.get(kind.kind);
  if (!client) byKind.set(kind.kind, (client = CLIENTS[kind.kind](api)));
  return client;
}
