// The webhook's whole judgement: a pure function of one AdmissionRequest.
// It makes no API calls and never diffs whole objects: it compares only the
// spec under canary (a Deployment's pod template, a Service's spec, a
// ConfigMap's or Secret's data) of the old and new object, as the kind's
// adapter in core/targets/ defines it, and writes a handful of JSON-patch
// operations. It never logs and never puts a value into a message.

import {
  CONTROL_ANNOTATIONS,
  MANAGED_LABEL,
  PENDING_REVISION,
  PENDING_SPEC,
  TRUE,
} from '../core/contract.js';
import { escapePointer, type JsonPatchOp } from '../core/json.js';
import { canonicalBytes, REVISION_LENGTH, revisionOfCanonical } from '../core/revision.js';
import { heldKindOf, type HeldKind } from '../core/targets/index.js';
import type { AdmissionRequest, KubeObject } from './admission.js';

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
/** What the API server allows for all annotations of one object together: keys and values, in bytes. */
export const TOTAL_ANNOTATION_BYTES = 256 * 1024;

/**
 * Field managers of kubectl commands that can only touch metadata. A request
 * from them can never be a revert of the pod template, so it keeps the pending
 * revision (see docs/adr/0002-what-an-update-means-while-a-revision-is-pending.md).
 */
const METADATA_ONLY_FIELD_MANAGERS: ReadonlySet<string> = new Set(['kubectl-label', 'kubectl-annotate']);

function isManaged(obj: KubeObject | null | undefined): boolean {
  return obj?.metadata?.labels?.[MANAGED_LABEL] === TRUE;
}

const skipped: DecideResult = { allowed: true, decision: 'skipped' };

export function decide(request: AdmissionRequest, config: DecideConfig): DecideResult {
  if (request.subResource) return skipped;
  const target = heldKindOf(request.kind);
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
    return keepControlAnnotations(incoming, old);
  }
  const malformed = target.holdRefusal?.(incoming, false);
  if (malformed) return { allowed: false, decision: 'rejected', message: malformed };
  // A config whose changes are not held (a TLS Secret, one annotated
  // disabled, an immutable one the API server guards itself) passes as an
  // unmanaged object does: only its control annotations stay as they were.
  if (target.tracked && !target.tracked(old)) return keepControlAnnotations(incoming, old);

  const stableSpec = target.specUnderCanary(old);
  const incomingSpec = target.specUnderCanary(incoming);
  // Without both specs there is nothing to hold or restore; the API server's
  // own validation refuses an object that lacks its template.
  if (!stableSpec || !incomingSpec) return skipped;
  const oldRevision = old.metadata?.annotations?.[PENDING_REVISION];

  let desired: Record<string, string>;
  let decision: Decision;
  let restore = false;
  let revision: string | undefined;
  const warnings: string[] = [];

  // One walk of the two specs, in place, decides both whether they are
  // equal (ignoring key order) and which operations restore the stable one:
  // no serialisation at all when they are equal. Only a changed spec pays
  // for its canonical form (needed for the revision and the annotation
  // anyway). This is the hot path: comparing through two JSON.stringify and
  // two canonicalJson calls cost 2.5x more.
  const restorePatch = target.restoreOps(incoming, old);
  const same = restorePatch.length === 0;

  if (same) {
    const metadataOnly = METADATA_ONLY_FIELD_MANAGERS.has(request.options?.fieldManager ?? '');
    if (oldRevision !== undefined && !metadataOnly) {
      decision = 'cancelled';
      desired = {};
      warnings.push(`canary-gate: back to the stable ${target.specNoun}; pending revision ${oldRevision} withdrawn`);
    } else {
      decision = 'unchanged';
      desired = pick(old.metadata?.annotations, CONTROL_ANNOTATIONS);
      revision = oldRevision;
    }
  } else {
    const bytes = canonicalBytes(incomingSpec);
    const tooLarge = tooLargeMessage(target, bytes.length, incoming, config);
    if (tooLarge) return { allowed: false, decision: 'rejected', message: tooLarge };
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
      warnings.push(`canary-gate: change held as pending revision ${revision}; the live ${target.kind} stays on its stable spec until the canary is promoted`);
    }
  }

  if (restore || revision !== undefined) {
    const refused = target.holdRefusal?.(incoming, true);
    if (refused) return { allowed: false, decision: 'rejected', message: refused };
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

/** The answer for an object whose changes are not held: whatever it brings, its control annotations stay as they were. */
function keepControlAnnotations(incoming: KubeObject, old: KubeObject): DecideResult {
  const patch = controlAnnotationPatch(incoming, pick(old.metadata?.annotations, CONTROL_ANNOTATIONS));
  return patch.length ? { allowed: true, decision: 'skipped', patch, forgeryReverted: true } : skipped;
}

function utf8Length(s: string): number {
  return Buffer.byteLength(s, 'utf8');
}

/**
 * Why a pending spec of `specBytes` cannot be stored, or undefined: it must
 * fit the configured limit, and, with the object's other annotations, the
 * API server's limit for all annotations together (a config applied with
 * client-side kubectl apply already carries its data once, in
 * last-applied-configuration).
 */
function tooLargeMessage(target: HeldKind, specBytes: number, incoming: KubeObject, config: DecideConfig): string | undefined {
  const limit = config.maxPendingSpecBytes ?? DEFAULT_MAX_PENDING_SPEC_BYTES;
  const advice = target.tooLargeAdvice ? ` ${target.tooLargeAdvice}` : '';
  if (specBytes > limit) {
    return (
      `canary-gate: the new ${target.specNoun} is ${specBytes} bytes ` +
      `of JSON, more than the ${limit} bytes a pending revision may hold in an annotation; the update was not applied.${advice}`
    );
  }
  const current = incoming.metadata?.annotations;
  let others = 0;
  if (current && typeof current === 'object') {
    for (const [key, value] of Object.entries(current)) {
      if (!CONTROL_ANNOTATIONS.includes(key) && typeof value === 'string') others += utf8Length(key) + utf8Length(value);
    }
  }
  const control = utf8Length(PENDING_REVISION) + REVISION_LENGTH + utf8Length(PENDING_SPEC) + specBytes;
  if (others + control <= TOTAL_ANNOTATION_BYTES) return undefined;
  return (
    `canary-gate: the new ${target.specNoun} is ${specBytes} bytes of JSON; with the object's other annotations ` +
    `(${others} bytes) the pending revision would exceed the ${TOTAL_ANNOTATION_BYTES} bytes Kubernetes allows for all ` +
    `annotations of an object; the update was not applied.${advice}`
  );
}

function pick(source: Record<string, string> | undefined, keys: readonly string[]): Record<string, string> {
  const out: Record<string, string> = {};
  if (!source) return out;
  for (const k of keys) if (source[k] !== undefined) out[k] = source[k];
  return out;
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
