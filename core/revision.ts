import { createHash } from 'node:crypto';

/**
 * JSON with object keys sorted at every level, so that two equal specs always
 * serialise to the same text whatever order their keys arrived in.
 */
export function canonicalJson(value: unknown): string {
  // Written directly rather than through JSON.stringify of a sorted copy: no
  // intermediate objects on the webhook's hot path. Same rules as JSON.stringify
  // (undefined and functions dropped from objects, null in arrays, toJSON honoured).
  return value !== null && typeof value === 'object' ? writeCanonical(value) : (JSON.stringify(value) as string);
}

function writeCanonical(value: unknown): string {
  if (value === null) return 'null';
  switch (typeof value) {
    case 'string':
    case 'number':
      return JSON.stringify(value);
    case 'boolean':
      return value ? 'true' : 'false';
    case 'object':
      break;
    default:
      return 'null'; // undefined, function, symbol inside an array
  }
  const v = value as { toJSON?: () => unknown };
  if (typeof v.toJSON === 'function') return writeCanonical(v.toJSON());
  if (Array.isArray(value)) {
    let out = '[';
    for (let i = 0; i < value.length; i++) out += (i ? ',' : '') + writeCanonical(value[i]);
    return out + ']';
  }
  const source = value as Record<string, unknown>;
  const keys = Object.keys(source).sort();
  let out = '{';
  let first = true;
  for (const key of keys) {
    const member = source[key];
    if (member === undefined || typeof member === 'function' || typeof member === 'symbol') continue;
    out += (first ? '' : ',') + JSON.stringify(key) + ':' + writeCanonical(member);
    first = false;
  }
  return out + '}';
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
