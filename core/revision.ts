import { createHash } from 'node:crypto';

/**
 * JSON with object keys sorted at every level, so that two equal specs always
 * serialise to the same text whatever order their keys arrived in.
 */
export function canonicalJson(value: unknown): string {
  return JSON.stringify(sortKeys(value));
}

function sortKeys(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(sortKeys);
  if (value === null || typeof value !== 'object') return value;
  const source = value as Record<string, unknown>;
  // No prototype: a key named __proto__ is then an ordinary member, as in JSON.
  const out: Record<string, unknown> = Object.create(null) as Record<string, unknown>;
  for (const key of Object.keys(source).sort()) {
    const v = source[key];
    if (v !== undefined) out[key] = sortKeys(v);
  }
  return out;
}

/** Length of a revision id in hex characters (48 bits: collisions are not a practical concern per object). */
export const REVISION_LENGTH = 12;

/** The revision id of a canonical JSON text. */
export function revisionOfCanonical(canonical: string): string {
  return createHash('sha256').update(canonical).digest('hex').slice(0, REVISION_LENGTH);
}

/** The revision id of a spec: equal specs give equal ids, different specs different ids. */
export function revisionOf(spec: unknown): string {
  return revisionOfCanonical(canonicalJson(spec));
}
