// What every router needs for the objects it owns (Services, HTTPRoutes, and
// whatever a new router writes), written once: reads through the informer
// cache, a memo of this process's own last write (a cache may lag behind
// it), writes only on a difference with the read resourceVersion as
// precondition, retries on 404/409 from a fresh read, and ownership checks
// so that an object canary-gate did not create is never changed or deleted.

import type * as k8s from '@kubernetes/client-node';
import type { Canary } from '../../core/api/types.js';
import { statusCode } from '../../core/api/client.js';
import { MANAGED_BY, MANAGED_BY_LABEL } from '../../core/contract.js';
import type { ObjectCache } from '../observe/caches.js';
import type { RouterResource } from '../../core/providers.js';
import { createdByCanaryGate, ownedBy } from '../apply/copy.js';

/** Field manager of every write the routers make. */
export const FIELD_MANAGER = 'canary-gate';
export const MAX_CONFLICT_RETRIES = 5;

export type Owned = { metadata?: k8s.V1ObjectMeta };

/** The ObjectApi of a resource served through the custom-objects API (any API group: HTTPRoutes, VirtualServices, Ingresses...). */
export function customObjectApi<T extends Owned>(custom: k8s.CustomObjectsApi, r: RouterResource): ObjectApi<T> {
  const at = { group: r.group, version: r.version, plural: r.plural };
  return {
    kind: r.kind,
    get: async (namespace, name) => (await custom.getNamespacedCustomObject({ ...at, namespace, name })) as T,
    create: async (namespace, body) => (await custom.createNamespacedCustomObject({ ...at, namespace, body, fieldManager: FIELD_MANAGER })) as T,
    replace: async (namespace, name, body) => (await custom.replaceNamespacedCustomObject({ ...at, namespace, name, body, fieldManager: FIELD_MANAGER })) as T,
    delete: (namespace, name, preconditions) => custom.deleteNamespacedCustomObject({ ...at, namespace, name, body: { preconditions } }),
  };
}

/** How the store reaches the API server for one kind of object. */
export interface ObjectApi<T extends Owned> {
  /** Kind name for messages ("Service", "HTTPRoute"). */
  readonly kind: string;
  get(namespace: string, name: string): Promise<T>;
  create(namespace: string, body: T): Promise<T>;
  replace(namespace: string, name: string, body: T): Promise<T>;
  delete(namespace: string, name: string, preconditions: k8s.V1Preconditions): Promise<unknown>;
}

/**
 * An object under a name canary-gate wants exists and is not this Canary's
 * to change: the user's own, or another Canary's. The reconciler reports it
 * on the Canary (condition and Warning Event) instead of touching it.
 */
export class NameTakenError extends Error {
  constructor(
    readonly kind: string,
    readonly namespace: string,
    readonly objectName: string,
    readonly why: string,
    hint: string,
  ) {
    super(`${kind} ${namespace}/${objectName} exists and ${why}; canary-gate leaves it alone: ${hint}`);
  }
}

/** Why `obj` (under a name canary-gate wants) is not this Canary's to change, or undefined when it is. */
export function notOurs(obj: Owned, canary: Canary): string | undefined {
  if (ownedBy(obj, canary)) return undefined;
  if (!createdByCanaryGate(obj)) return 'was not created by canary-gate';
  const other = (obj.metadata?.ownerReferences ?? []).find((o) => o.kind === 'Canary' && o.controller);
  if (other && other.name !== canary.metadata.name) return `belongs to Canary ${other.name}`;
  // Created by canary-gate for a Canary of the same name (deleted and created again): ours to take over.
  return undefined;
}

/** Why `obj` blocks this Canary, as the Canary reports it, or undefined when it is the Canary's to use. */
export function conflictOf(obj: Owned | undefined, canary: Canary, kind: string, hint?: string): string | undefined {
  if (!obj) return undefined;
  try {
    assertOurs(obj, canary, kind, hint);
    return undefined;
  } catch (err) {
    return (err as Error).message;
  }
}

/** Throws NameTakenError when `obj` exists under a name canary-gate wants but belongs to someone else. */
export function assertOurs(obj: Owned, canary: Canary, kind: string, hint = `rename it or set spec.service.name of Canary ${canary.metadata.name} to another name`): void {
  const why = notOurs(obj, canary);
  if (why) throw new NameTakenError(kind, obj.metadata?.namespace ?? '', obj.metadata?.name ?? '', why, hint);
}

/** The newer of two copies of one object, by resourceVersion (an informer cache may lag behind our own write). */
export function freshest<T extends Owned>(a: T | undefined, b: T | undefined): T | undefined {
  if (!a) return b;
  if (!b) return a;
  const ra = a.metadata?.resourceVersion ?? '';
  const rb = b.metadata?.resourceVersion ?? '';
  if (a.metadata?.uid && b.metadata?.uid && a.metadata.uid !== b.metadata.uid) return a; // recreated: trust the cache
  if (/^\d+$/.test(ra) && /^\d+$/.test(rb)) return BigInt(ra) >= BigInt(rb) ? a : b;
  return a;
}

type Memo<T> = T | { deletedUid: string };

/** The object as this process should see it: the cache, unless our own later write (or delete) has not reached it yet. */
export function latest<T extends Owned>(cached: T | undefined, mine: Memo<T> | undefined): T | undefined {
  if (mine && 'deletedUid' in mine) {
    if (!cached || cached.metadata?.uid === mine.deletedUid) return undefined;
    return cached;
  }
  return freshest(cached, mine);
}

export interface WriteOptions<T> {
  /** Throws when the current object may not be changed (see assertOurs); checked before every write. */
  check?: (current: T) => void;
  /** Checks what the API server stored (e.g. that it kept a field the CRD might drop). */
  verify?: (written: T) => void;
}

export class OwnedObjects<T extends Owned> {
  /** What this process last wrote per namespace/name; a tombstone after a delete. */
  private readonly written = new Map<string, Memo<T>>();

  constructor(
    private readonly api: ObjectApi<T>,
    private readonly cache?: ObjectCache<T>,
  ) {}

  private key(ns: string, name: string): string {
    return `${ns}/${name}`;
  }

  /** The object as last seen, from the cache (or our newer write); no API call. Undefined without a cache. */
  cached(ns: string, name: string): T | undefined {
    return latest(this.cache?.get(ns, name), this.written.get(this.key(ns, name)));
  }

  /** The object as last seen; `fresh` (or no cache) means a GET. */
  async read(ns: string, name: string, fresh = false): Promise<T | undefined> {
    if (!fresh && this.cache) return this.cached(ns, name);
    try {
      const obj = await this.api.get(ns, name);
      this.written.set(this.key(ns, name), obj);
      return obj;
    } catch (err) {
      if (statusCode(err) === 404) {
        this.written.delete(this.key(ns, name));
        return undefined;
      }
      throw err;
    }
  }

  /**
   * Read, compute, write only on a difference: `compute` gets the current
   * object (undefined when absent) and returns the object to write, or
   * undefined to leave it as it is. A create when absent, else a replace
   * carrying the read resourceVersion; a conflict (or a 404 of a replace)
   * re-reads from the API server and computes again. Returns the object as
   * it is after the call.
   */
  async write(ns: string, name: string, compute: (current: T | undefined) => T | undefined, opts: WriteOptions<T> = {}): Promise<T | undefined> {
    let current = await this.read(ns, name);
    for (let attempt = 0; ; attempt++) {
      if (current) opts.check?.(current);
      const desired = compute(current);
      if (!desired) return current;
      try {
        const written = current ? await this.api.replace(ns, name, desired) : await this.api.create(ns, desired);
        opts.verify?.(written);
        this.written.set(this.key(ns, name), written);
        return written;
      } catch (err) {
        const code = statusCode(err);
        if ((code !== 409 && code !== 404) || attempt >= MAX_CONFLICT_RETRIES) throw err;
        current = await this.read(ns, name, true);
      }
    }
  }

  /**
   * Deletes `current` (as read), with its uid as precondition, and with its
   * resourceVersion too when `exactVersion`: then a concurrent change (the
   * user added to it) makes the delete fail with an error, to be decided
   * again on fresh data. Gone already is fine.
   */
  async remove(ns: string, name: string, current: T, exactVersion = false): Promise<void> {
    const preconditions: k8s.V1Preconditions = {};
    if (current.metadata?.uid) preconditions.uid = current.metadata.uid;
    if (exactVersion && current.metadata?.resourceVersion) preconditions.resourceVersion = current.metadata.resourceVersion;
    try {
      await this.api.delete(ns, name, preconditions);
    } catch (err) {
      const code = statusCode(err);
      if (code === 404) return this.forget(ns, name, current);
      if (code !== 409) throw err;
      // A different object of that name now (uid), or changed since it was read.
      const fresh = await this.read(ns, name, true);
      if (!fresh || fresh.metadata?.uid !== current.metadata?.uid || !exactVersion) return;
      throw new Error(`${this.api.kind} ${ns}/${name} changed while it was being removed; retrying`);
    }
    this.forget(ns, name, current);
  }

  private forget(ns: string, name: string, current: T): void {
    this.written.set(this.key(ns, name), { deletedUid: current.metadata?.uid ?? '' });
  }
}

/**
 * Removes the Canary's ownership from a copy of an object canary-gate hands
 * back (its ownerReference and the managed-by label): the garbage collector
 * then spares it and canary-gate treats it as the user's. Mutates `meta`.
 */
export function dropOwnership(meta: k8s.V1ObjectMeta, canary: Canary): void {
  const owners = (meta.ownerReferences ?? []).filter((o) => o.uid !== canary.metadata.uid);
  if (owners.length) meta.ownerReferences = owners;
  else delete meta.ownerReferences;
  if (meta.labels?.[MANAGED_BY_LABEL] === MANAGED_BY) {
    const { [MANAGED_BY_LABEL]: _managed, ...labels } = meta.labels;
    meta.labels = labels;
  }
}

/** Whether another Canary controls the object (two Canaries never share a route): it is never touched. */
export function controlledByAnotherCanary(obj: Owned, canary: Canary): boolean {
  const controller = (obj.metadata?.ownerReferences ?? []).find((o) => o.controller);
  return !!controller && controller.kind === 'Canary' && controller.uid !== canary.metadata.uid && controller.name !== canary.metadata.name;
}
