// JSON helpers shared by the webhook and the reconciler: an order-insensitive
// equality, the JSON-patch operations that turn one value into another, and
// JSON-pointer escaping. Pure and allocation-light: the webhook's hot path
// runs them on every intercepted change.

/** One RFC 6902 operation, as the webhook answers them and the reconciler writes them. */
export interface JsonPatchOp {
  op: 'add' | 'remove' | 'replace' | 'test';
  path: string;
  value?: unknown;
}

/**
 * Deep equality of two JSON values with object keys in any order: for values
 * that came from JSON.parse, exactly `canonicalJson(a) === canonicalJson(b)`
 * (an undefined member counts as absent, an undefined array element as
 * null), without building either text. One difference: an own "__proto__"
 * key counts here, while canonicalJson's sortKeys loses it (its assignment
 * hits the prototype setter).
 */
export function jsonEqual(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (typeof a !== 'object' || typeof b !== 'object' || a === null || b === null) return false;
  const arrayA = Array.isArray(a);
  if (arrayA !== Array.isArray(b)) return false;
  if (arrayA) {
    const x = a as unknown[];
    const y = b as unknown[];
    if (x.length !== y.length) return false;
    for (let i = 0; i < x.length; i++) {
      if (!jsonEqual(x[i] === undefined ? null : x[i], y[i] === undefined ? null : y[i])) return false;
    }
    return true;
  }
  const x = a as Record<string, unknown>;
  const y = b as Record<string, unknown>;
  let members = 0;
  for (const key of Object.keys(x)) {
    const v = x[key];
    if (v === undefined) continue;
    members++;
    const w = y[key];
    if (w === undefined || !Object.prototype.hasOwnProperty.call(y, key) || !jsonEqual(v, w)) return false;
  }
  for (const key of Object.keys(y)) if (y[key] !== undefined) members--;
  return members === 0;
}

/** Above this many operations, one replace of the whole subtree is smaller and simpler. */
const MAX_RESTORE_OPS = 16;

/**
 * Operations that turn `from` (the incoming template) back into `to` (the
 * stable one), touching only the parts that differ: an image change becomes
 * one small replace instead of the whole template in every answer. Empty
 * exactly when the two are equal as jsonEqual() sees it. Only the two
 * templates are walked, once, never the whole object.
 */
export function restoreOps(path: string, from: unknown, to: unknown): JsonPatchOp[] {
  const walk = new RestoreWalk(path);
  if (!walk.diff(from, to)) return [{ op: 'replace', path, value: to }];
  return walk.ops;
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

const hasOwn = Object.prototype.hasOwnProperty;

/** An own member only: a key such as "constructor" must not find Object.prototype's. */
function own(o: Record<string, unknown>, key: string): unknown {
  return hasOwn.call(o, key) ? o[key] : undefined;
}

/**
 * One walk of two values that collects the operations turning the first into
 * the second. Each pair of values is visited once; the path is kept as a
 * stack of segments and written out as a JSON pointer only for an operation,
 * so equal parts (nearly all of a template) cost no strings at all.
 */
class RestoreWalk {
  readonly ops: JsonPatchOp[] = [];
  private readonly segments: Array<string | number> = [];
  constructor(private readonly base: string) {}

  private pointer(last?: string): string {
    let out = this.base;
    for (const s of this.segments) out += `/${typeof s === 'number' ? s : escapePointer(s)}`;
    return last === undefined ? out : `${out}/${escapePointer(last)}`;
  }

  /** Appends an operation; false once there are more than MAX_RESTORE_OPS (the caller replaces the whole subtree). */
  private emit(op: JsonPatchOp): boolean {
    return this.ops.push(op) <= MAX_RESTORE_OPS;
  }

  diff(from: unknown, to: unknown): boolean {
    if (from === to) return true;
    if (isPlainObject(from) && isPlainObject(to)) {
      const fromKeys = Object.keys(from);
      let matched = 0;
      for (const key of Object.keys(to)) {
        const want = to[key];
        if (want === undefined) continue;
        const have = own(from, key);
        if (have !== undefined) matched++;
        if (have === want) continue;
        if (have === undefined) {
          if (!this.emit({ op: 'add', path: this.pointer(key), value: want })) return false;
          continue;
        }
        this.segments.push(key);
        const ok = this.diff(have, want);
        this.segments.pop();
        if (!ok) return false;
      }
      // Every member of `from` had its counterpart: nothing to remove.
      if (matched === fromKeys.length) return true;
      for (const key of fromKeys) {
        if (from[key] !== undefined && own(to, key) === undefined && !this.emit({ op: 'remove', path: this.pointer(key) })) return false;
      }
      return true;
    }
    if (Array.isArray(from) && Array.isArray(to) && from.length === to.length) {
      for (let i = 0; i < to.length; i++) {
        const have = from[i] ?? null;
        const want = to[i] ?? null;
        if (have === want) continue;
        this.segments.push(i);
        const ok = this.diff(have, want);
        this.segments.pop();
        if (!ok) return false;
      }
      return true;
    }
    return this.emit({ op: 'replace', path: this.pointer(), value: to });
  }
}

/** JSON pointer escaping (RFC 6901) for one path segment. */
export function escapePointer(segment: string): string {
  if (segment.indexOf('~') < 0 && segment.indexOf('/') < 0) return segment;
  return segment.replace(/~/g, '~0').replace(/\//g, '~1');
}

