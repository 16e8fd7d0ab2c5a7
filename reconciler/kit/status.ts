// Status writes for custom resources that never lose a concurrent change.
//
// The write is a JSON merge patch on the status subresource that carries
// metadata.resourceVersion: the API server applies it only to the version
// the caller computed from, and answers 409 otherwise. On 409 the current
// object is read again and the caller's mutation re-applied to it, a bounded
// number of times. The patch holds only what changed (fields removed by the
// mutation are sent as null), and nothing at all is written when the
// mutation changes nothing, so an idle reconcile costs no API write and no
// watch event for every other watcher.

import * as k8s from '@kubernetes/client-node';
import { apiStatusCode, requestTimeout } from './informer.js';

export interface StatusObject<S> {
  apiVersion?: string;
  kind?: string;
  metadata?: { name?: string; namespace?: string; resourceVersion?: string };
  status?: S;
}

export interface PatchStatusOptions<T extends StatusObject<S>, S extends object> {
  api: k8s.CustomObjectsApi;
  group: string;
  version: string;
  plural: string;
  /** Omit for a cluster-scoped resource. */
  namespace?: string;
  name: string;
  /**
   * The current object. Called before every attempt: the first can come from
   * an informer cache; after a 409 (attempt > 1) the cache may lag, so when
   * it returns the very version that conflicted, a direct GET is made instead.
   * Defaults to a GET. undefined means the object is gone.
   */
  get?: (attempt: number) => T | undefined | Promise<T | undefined>;
  /** Computes the desired status from a private copy of the current one ({} if none): edit it in place and/or return it. */
  mutate: (status: S, obj: Readonly<T>) => S | void;
  /** Attempts in all (the first write plus retries after 409). Default 5. */
  maxAttempts?: number;
  /** Checked right before each write: a deposed leader's signal stops the write. */
  signal?: AbortSignal;
  /** Checked right before each write too, e.g. () => elector.isLeader(). */
  canWrite?: () => boolean;
  /** Per request. Default 10 s. */
  requestTimeoutMs?: number;
}

export interface PatchStatusResult<T> {
  outcome: 'patched' | 'unchanged' | 'not-found';
  /** The object as written (patched), or as read (unchanged). */
  object?: T;
  attempts: number;
}

/** Every attempt met a 409. */
export class StatusConflictError extends Error {
  constructor(
    readonly resource: string,
    readonly attempts: number,
  ) {
    super(`status of ${resource}: still conflicting after ${attempts} attempts`);
    this.name = 'StatusConflictError';
  }
}

/** Refused to write because the caller lost the right to (signal aborted or canWrite() false). */
export class WriteNotAllowedError extends Error {
  constructor(resource: string) {
    super(`status of ${resource}: not written, this process may not write any more (leadership lost or stopping)`);
    this.name = 'WriteNotAllowedError';
  }
}

export async function patchStatusWithRetry<T extends StatusObject<S>, S extends object>(o: PatchStatusOptions<T, S>): Promise<PatchStatusResult<T>> {
  const maxAttempts = o.maxAttempts ?? 5;
  const resource = `${o.plural}.${o.group} ${o.namespace ? `${o.namespace}/` : ''}${o.name}`;
  const timeoutMs = o.requestTimeoutMs ?? 10_000;
  let conflictedVersion: string | undefined;

  for (let attempt = 1; attempt <= maxAttempts; attempt++) {
    let obj = o.get ? await o.get(attempt) : await getObject<T>(o, timeoutMs);
    if (obj && conflictedVersion !== undefined && obj.metadata?.resourceVersion === conflictedVersion) {
      // The getter (a cache) has not seen the change that beat us yet: ask the API server.
      obj = await getObject<T>(o, timeoutMs);
    }
    if (!obj) return { outcome: 'not-found', attempts: attempt };

    const current = (obj.status ?? {}) as S;
    const draft = structuredClone(current);
    const desired = o.mutate(draft, obj) ?? draft;
    const statusPatch = mergePatch(current, desired);
    if (statusPatch === undefined) return { outcome: 'unchanged', object: obj, attempts: attempt };

    if (o.signal?.aborted || (o.canWrite && !o.canWrite())) throw new WriteNotAllowedError(resource);
    const body = { metadata: { resourceVersion: obj.metadata?.resourceVersion }, status: statusPatch };
    const options = requestTimeout(timeoutMs, k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.MergePatch));
    try {
      const written = (o.namespace
        ? await o.api.patchNamespacedCustomObjectStatus({ group: o.group, version: o.version, namespace: o.namespace, plural: o.plural, name: o.name, body }, options)
        : await o.api.patchClusterCustomObjectStatus({ group: o.group, version: o.version, plural: o.plural, name: o.name, body }, options)) as T;
      return { outcome: 'patched', object: written, attempts: attempt };
    } catch (err) {
      const code = apiStatusCode(err);
      if (code === 404) return { outcome: 'not-found', attempts: attempt };
      if (code !== 409) throw err;
      conflictedVersion = obj.metadata?.resourceVersion;
      // A short, growing, jittered pause lets the winner's change reach the cache the getter reads.
      if (attempt < maxAttempts) await sleep(attempt * (20 + Math.random() * 30));
    }
  }
  throw new StatusConflictError(resource, maxAttempts);
}

type ObjectAddress = Pick<PatchStatusOptions<StatusObject<object>, object>, 'api' | 'group' | 'version' | 'plural' | 'namespace' | 'name'>;

async function getObject<T>(o: ObjectAddress, timeoutMs: number): Promise<T | undefined> {
  try {
    const options = requestTimeout(timeoutMs);
    return (o.namespace
      ? await o.api.getNamespacedCustomObject({ group: o.group, version: o.version, namespace: o.namespace, plural: o.plural, name: o.name }, options)
      : await o.api.getClusterCustomObject({ group: o.group, version: o.version, plural: o.plural, name: o.name }, options)) as T;
  } catch (err) {
    if (apiStatusCode(err) === 404) return undefined;
    throw err;
  }
}

/**
 * The RFC 7386 merge patch that turns `from` into `to`, or undefined when
 * they are equal. Objects are diffed key by key; arrays and scalars are
 * replaced whole (merge patch cannot address array items); a key missing
 * from `to` (or undefined) becomes null, which deletes it.
 */
export function mergePatch(from: unknown, to: unknown): unknown {
  if (deepEqual(from, to)) return undefined;
  if (!isPlainObject(from) || !isPlainObject(to)) return to === undefined ? null : to;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(to)) {
    if (v === undefined) continue;
    const d = k in from ? mergePatch(from[k], v) : v;
    if (d !== undefined) out[k] = d;
  }
  for (const k of Object.keys(from)) {
    if (from[k] !== undefined && (!(k in to) || to[k] === undefined)) out[k] = null;
  }
  return Object.keys(out).length > 0 ? out : undefined;
}

/** Structural equality of JSON-like values (undefined-valued keys count as absent). */
export function deepEqual(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (a instanceof Date || b instanceof Date) {
    return a instanceof Date && b instanceof Date ? a.getTime() === b.getTime() : false;
  }
  if (Array.isArray(a) || Array.isArray(b)) {
    if (!Array.isArray(a) || !Array.isArray(b) || a.length !== b.length) return false;
    return a.every((v, i) => deepEqual(v, b[i]));
  }
  if (!isPlainObject(a) || !isPlainObject(b)) return false;
  const ka = Object.keys(a).filter((k) => a[k] !== undefined);
  const kb = Object.keys(b).filter((k) => b[k] !== undefined);
  if (ka.length !== kb.length) return false;
  return ka.every((k) => deepEqual(a[k], b[k]));
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof Date);
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
