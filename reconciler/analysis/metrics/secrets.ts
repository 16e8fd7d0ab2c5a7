// Reading the Secrets that MetricTemplates and AlertProviders reference. The
// reconciler's RBAC grants `get` on Secrets (never list/watch), so they are
// read by name, decoded, and kept for a short while: a metric checked every
// interval does not cost an API call each time, and a rotated credential is
// picked up within the TTL.

import { statusCode } from '../../../core/api/client.js';
import type { V1Secret } from '@kubernetes/client-node';

/** Decoded data of a Secret, undefined when it does not exist. */
export type SecretLookup = (namespace: string, name: string) => Promise<Record<string, string> | undefined>;

/** The part of CoreV1Api this needs (a fake in tests). */
export interface SecretApi {
  readNamespacedSecret(req: { name: string; namespace: string }): Promise<V1Secret>;
}

export interface SecretReaderOptions {
  /** How long a read Secret is reused; default 30 s. */
  ttlMs?: number;
  /** How long "not found" is remembered; default 5 s. */
  missingTtlMs?: number;
  now?: () => number;
}

/** A cached SecretLookup over the API. Other errors than 404 reject (and are not cached). */
export function secretReader(api: SecretApi, opts: SecretReaderOptions = {}): SecretLookup {
  const ttl = opts.ttlMs ?? 30_000;
  const missingTtl = opts.missingTtlMs ?? 5_000;
  const now = opts.now ?? Date.now;
  const cache = new Map<string, { at: number; value: Promise<Record<string, string> | undefined>; missing?: boolean }>();
  return async (namespace, name) => {
    const key = `${namespace}/${name}`;
    const hit = cache.get(key);
    if (hit && now() - hit.at < (hit.missing ? missingTtl : ttl)) return hit.value;
    const entry: { at: number; value: Promise<Record<string, string> | undefined>; missing?: boolean } = { at: now(), value: Promise.resolve(undefined) };
    entry.value = api.readNamespacedSecret({ name, namespace }).then(
      (s) => decodeSecret(s),
      (err: unknown) => {
        if (statusCode(err) === 404) {
          entry.missing = true;
          return undefined;
        }
        cache.delete(key);
        throw new Error(`could not read Secret ${key}: ${statusCode(err) ? `HTTP ${statusCode(err)}` : err instanceof Error ? err.message.slice(0, 120) : 'error'}`);
      },
    );
    cache.set(key, entry);
    return entry.value;
  };
}

/** data (base64) decoded, with stringData (as given to a fake or a dry run) on top. */
export function decodeSecret(s: V1Secret): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(s.data ?? {})) out[k] = Buffer.from(v, 'base64').toString('utf8');
  for (const [k, v] of Object.entries(s.stringData ?? {})) out[k] = v;
  return out;
}
