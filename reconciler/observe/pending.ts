// The pending change an object carries (canarygate.dev/pending-revision and
// pending-spec), parsed and checked once per version of the object: a
// Deployment's or Service's held spec, or a ConfigMap's or Secret's held data.

import type * as k8s from '@kubernetes/client-node';
import { PENDING_REVISION, PENDING_SPEC } from '../../core/contract.js';
import { revisionOfCanonical } from '../../core/revision.js';

export interface PendingChange {
  revision: string;
  /** Parsed pending spec (pod template or Service spec). */
  spec: Record<string, unknown>;
}

/**
 * The pending change recorded by the webhook, checked for integrity: the
 * revision must be the hash of the spec text, so a mangled annotation is
 * never run (and never promoted).
 */
export function pendingChange(obj: { metadata?: k8s.V1ObjectMeta }): PendingChange | { error: string } | undefined {
  const a = obj.metadata?.annotations;
  const key = `${obj.metadata?.resourceVersion ?? ''}/${a?.[PENDING_REVISION] ?? ''}/${a?.[PENDING_SPEC]?.length ?? -1}`;
  const memo = pendingMemo.get(obj);
  if (memo && memo.key === key) return memo.pending;
  const pending = parsePending(obj);
  pendingMemo.set(obj, { key, pending });
  return pending;
}

const pendingMemo = new WeakMap<object, { key: string; pending: PendingChange | { error: string } | undefined }>();

function parsePending(obj: { metadata?: k8s.V1ObjectMeta }): PendingChange | { error: string } | undefined {
  const annotations = obj.metadata?.annotations;
  const revision = annotations?.[PENDING_REVISION];
  const text = annotations?.[PENDING_SPEC];
  if (revision === undefined && text === undefined) return undefined;
  if (revision === undefined || text === undefined) return { error: `only one of ${PENDING_REVISION} and ${PENDING_SPEC} is set` };
  if (revisionOfCanonical(text) !== revision) return { error: `${PENDING_REVISION} ${revision} does not match the hash of ${PENDING_SPEC}` };
  try {
    const spec = JSON.parse(text) as unknown;
    if (!spec || typeof spec !== 'object' || Array.isArray(spec)) return { error: `${PENDING_SPEC} is not a JSON object` };
    return { revision, spec: spec as Record<string, unknown> };
  } catch (err) {
    return { error: `${PENDING_SPEC} is not valid JSON: ${(err as Error).message}` };
  }
}
