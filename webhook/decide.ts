// The webhook's whole judgement: a pure function of one AdmissionRequest.
// It makes no API calls and never diffs whole objects: it compares only the
// pod template (or Service spec) of the old and new object and writes a
// handful of JSON-patch operations.

import {
  CONTROL_ANNOTATIONS,
  MANAGED_LABEL,
  PENDING_REVISION,
  PENDING_SPEC,
  TRUE,
} from '../core/contract.js';
import { canonicalBytes, revisionOfCanonical } from '../core/revision.js';
import type { AdmissionRequest, JsonPatchOp, KubeObject } from './admission.js';

export interface DecideConfig {
  /** Usernames whose updates pass untouched: the reconciler promotes through them. */
  reconcilerUsers: ReadonlySet<string>;
  /** Largest pending spec, in bytes of compact JSON, that may be stored in an annotation. */
  maxPendingSpecBytes?: number;
}

/**
 * What the webhook did. The names are used as the `decision` metric label and log field.
 * - skipped: not a request canary-gate changes (kind, operation, subresource, unmanaged object)
 * - reconciler: written by the reconciler's own identity
 * - unchanged: template (Service spec) unchanged, and no revision pending or a
 *   metadata-only kubectl command (label, annotate) that keeps it
 * - intercepted: a new change is held as the pending revision
 * - reapplied: the change already pending was applied again (GitOps re-apply); nothing moves
 * - replaced: a different change replaces the pending one
 * - cancelled: the template was set back to the stable one; the pending revision is withdrawn
 * - rejected: the change cannot be held (too large); the update is refused with a reason
 */
export type Decision =
  | 'skipped'
  | 'reconciler'
  | 'unchanged'
  | 'intercepted'
  | 'reapplied'
  | 'replaced'
  | 'cancelled'
  | 'rejected';

export interface DecideResult {
  allowed: boolean;
  decision: Decision;
  /** JSON patch to apply to the incoming object; absent when nothing changes. */
  patch?: JsonPatchOp[];
  /** Revision id of the pending change after this request, if any. */
  revision?: string;
  /** Why the request was refused (only when allowed is false). */
  message?: string;
  /** Shown to the user by kubectl as `Warning: ...`. */
  warnings?: string[];
  /** True when the request tried to set control annotations and they were put back. */
  forgeryReverted?: boolean;
}

/** The annotation store of one object holds 256 KiB in total; leave room for the user's own. */
export const DEFAULT_MAX_PENDING_SPEC_BYTES = 192 * 1024;

/**
 * Field managers of kubectl commands that can only touch metadata. A request
 * from them can never be a revert of the pod template, so it keeps the pending
 * revision (see docs/adr/0002-what-an-update-means-while-a-revision-is-pending.md).
 */
const METADATA_ONLY_FIELD_MANAGERS: ReadonlySet<string> = new Set(['kubectl-label', 'kubectl-annotate']);

type Target = 'Deployment' | 'Service';

function targetOf(request: AdmissionRequest): Target | undefined {
  const { group, version, kind } = request.kind ?? ({} as AdmissionRequest['kind']);
  if (group === 'apps' && version === 'v1' && kind === 'Deployment') return 'Deployment';
  if (group === '' && version === 'v1' && kind === 'Service') return 'Service';
  return undefined;
}

function isManaged(obj: KubeObject | null | undefined): boolean {
  return obj?.metadata?.labels?.[MANAGED_LABEL] === TRUE;
}

const skipped: DecideResult = { allowed: true, decision: 'skipped' };

export function decide(request: AdmissionRequest, config: DecideConfig): DecideResult {
  if (request.subResource) return skipped;
  const target = targetOf(request);
  if (!target) return skipped;
  const incoming = request.object;
  if (!incoming || typeof incoming !== 'object') return skipped;

  if (request.operation === 'CREATE') {
    // A new object has no stable spec yet; it can only carry control
    // annotations if someone tried to forge them.
    if (config.reconcilerUsers.has(request.userInfo?.username ?? '')) return { allowed: true, decision: 'reconciler' };
    const patch = controlAnnotationPatch(incoming, {});
    return patch.length ? { allowed: true, decision: 'skipped', patch, forgeryReverted: true } : skipped;
  }
  if (request.operation !== 'UPDATE') return skipped;

  const old = request.oldObject;
  if (!old) return skipped;
  if (config.reconcilerUsers.has(request.userInfo?.username ?? '')) return { allowed: true, decision: 'reconciler' };
  if (!isManaged(old)) {
    // Reaches us only because the new object carries the managed label (the
    // objectSelector matches old or new). Whoever adds the label cannot bring
    // a pending revision along with it: control annotations stay as they were.
    const patch = controlAnnotationPatch(incoming, pick(old.metadata?.annotations, CONTROL_ANNOTATIONS));
    return patch.length ? { allowed: true, decision: 'skipped', patch, forgeryReverted: true } : skipped;
  }

  const stableSpec = target === 'Deployment' ? old.spec?.template : serviceSpecForRevision(old.spec);
  const incomingSpec = target === 'Deployment' ? incoming.spec?.template : serviceSpecForRevision(incoming.spec);
  // Without both specs there is nothing to hold or restore; the API server's
  // own validation refuses an object that lacks its template.
  if (!stableSpec || typeof stableSpec !== 'object' || !incomingSpec || typeof incomingSpec !== 'object') return skipped;
  const oldRevision = old.metadata?.annotations?.[PENDING_REVISION];

  let desired: Record<string, string>;
  let decision: Decision;
  let restore = false;
  let revision: string | undefined;
  const warnings: string[] = [];

  // One walk of the two templates, in place, decides both whether they are
  // equal (ignoring key order) and which operations restore the stable one:
  // no serialisation at all when they are equal. Only a changed spec pays
  // for its canonical form (needed for the revision and the annotation
  // anyway). A Service spec is compared without its server-allocated fields
  // and restored whole. This is the hot path: comparing through two
  // JSON.stringify and two canonicalJson calls cost 2.5x more.
  let restorePatch: JsonPatchOp[];
  let same: boolean;
  if (target === 'Deployment') {
    restorePatch = restoreOps('/spec/template', incomingSpec, stableSpec);
    same = restorePatch.length === 0;
  } else {
    same = jsonEqual(incomingSpec, stableSpec);
    restorePatch = same ? [] : [{ op: 'replace', path: '/spec', value: old.spec }];
  }

  if (same) {
    const metadataOnly = METADATA_ONLY_FIELD_MANAGERS.has(request.options?.fieldManager ?? '');
    if (oldRevision !== undefined && !metadataOnly) {
      decision = 'cancelled';
      desired = {};
      warnings.push(`canary-gate: back to the stable ${target === 'Deployment' ? 'pod template' : 'Service spec'}; pending revision ${oldRevision} withdrawn`);
    } else {
      decision = 'unchanged';
      desired = pick(old.metadata?.annotations, CONTROL_ANNOTATIONS);
      revision = oldRevision;
    }
  } else {
    const bytes = canonicalBytes(incomingSpec);
    const limit = config.maxPendingSpecBytes ?? DEFAULT_MAX_PENDING_SPEC_BYTES;
    if (bytes.length > limit) {
      return {
        allowed: false,
        decision: 'rejected',
        message:
          `canary-gate: the new ${target === 'Deployment' ? 'pod template' : 'Service spec'} is ${bytes.length} bytes ` +
          `of JSON, more than the ${limit} bytes a pending revision may hold in an annotation; the update was not applied`,
      };
    }
    revision = revisionOfCanonical(bytes);
    // Decoded from the bytes: a flat string, which JSON.stringify of the
    // patch escapes in one native pass.
    const text = bytes.toString('utf8');
    restore = true;
    desired = { [PENDING_REVISION]: revision, [PENDING_SPEC]: text };
    if (oldRevision === undefined) decision = 'intercepted';
    else if (oldRevision === revision) decision = 'reapplied';
    else decision = 'replaced';
    if (decision !== 'reapplied') {
      warnings.push(`canary-gate: change held as pending revision ${revision}; the live ${target} stays on its stable spec until the canary is promoted`);
    }
  }

  const patch: JsonPatchOp[] = restore ? restorePatch : [];
  const annotationOps = controlAnnotationPatch(incoming, desired);
  const forgeryReverted = annotationOps.length > 0 && !restore && decision !== 'cancelled';
  patch.push(...annotationOps);
  if (!isManaged(incoming)) patch.push(...labelPatch(incoming, MANAGED_LABEL, TRUE));

  const result: DecideResult = { allowed: true, decision };
  if (patch.length) result.patch = patch;
  if (revision !== undefined) result.revision = revision;
  if (warnings.length) result.warnings = warnings;
  if (forgeryReverted) result.forgeryReverted = true;
  return result;
}

/**
 * A Service spec without the fields the API server allocates, so that a
 * manifest that omits them (kubectl replace, GitOps) is not seen as a change.
 */
export function serviceSpecForRevision(spec: Record<string, unknown> | undefined): Record<string, unknown> | undefined {
  if (!spec) return spec;
  const { clusterIP: _a, clusterIPs: _b, ipFamilies: _c, ipFamilyPolicy: _d, healthCheckNodePort: _e, ...rest } = spec;
  const ports = rest.ports;
  if (Array.isArray(ports)) {
    rest.ports = ports.map((p) => {
      if (!p || typeof p !== 'object') return p;
      const { nodePort: _n, ...port } = p as Record<string, unknown>;
      return port;
    });
  }
  return rest;
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

function pick(source: Record<string, string> | undefined, keys: readonly string[]): Record<string, string> {
  const out: Record<string, string> = {};
  if (!source) return out;
  for (const k of keys) if (source[k] !== undefined) out[k] = source[k];
  return out;
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

/** Operations that make the object's control annotations exactly `desired`. */
function controlAnnotationPatch(obj: KubeObject, desired: Record<string, string>): JsonPatchOp[] {
  const current = obj.metadata?.annotations;
  const ops: JsonPatchOp[] = [];
  if (!current || typeof current !== 'object') {
    if (Object.keys(desired).length === 0) return ops;
    if (!obj.metadata) ops.push({ op: 'add', path: '/metadata', value: {} });
    ops.push({ op: 'add', path: '/metadata/annotations', value: { ...desired } });
    return ops;
  }
  for (const key of CONTROL_ANNOTATIONS) {
    const want = desired[key];
    const have = current[key];
    if (want === have) continue;
    const path = `/metadata/annotations/${escapePointer(key)}`;
    if (want === undefined) ops.push({ op: 'remove', path });
    else ops.push({ op: 'add', path, value: want });
  }
  return ops;
}

function labelPatch(obj: KubeObject, key: string, value: string): JsonPatchOp[] {
  const labels = obj.metadata?.labels;
  if (!labels || typeof labels !== 'object') {
    const ops: JsonPatchOp[] = [];
    if (!obj.metadata) ops.push({ op: 'add', path: '/metadata', value: {} });
    ops.push({ op: 'add', path: '/metadata/labels', value: { [key]: value } });
    return ops;
  }
  return [{ op: 'add', path: `/metadata/labels/${escapePointer(key)}`, value }];
}
