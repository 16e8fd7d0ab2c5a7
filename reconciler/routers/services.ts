// The Services a router owns (`<svc>-primary`, `<svc>-canary`): made to
// match what the router wants in the fields it owns, and removed only when
// canary-gate created them. Shared by every router that has Services of its own.

import type * as k8s from '@kubernetes/client-node';
import type { Canary } from '../../core/api/types.js';
import { mergeRouterService, routerServiceNeedsUpdate } from '../apply/copy.js';
import type { ObjectCache } from '../observe/caches.js';
import { FIELD_MANAGER, OwnedObjects, assertOurs, conflictOf, notOurs } from './owned.js';

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
}
