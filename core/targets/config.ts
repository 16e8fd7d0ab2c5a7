// v1 ConfigMap and Secret: the configs a target's pod template references.
// They are not Canary targets themselves (spec.targetRef names a Deployment
// or Service); the webhook holds their data changes exactly as it holds a
// Deployment's template, and the reconciler runs them through the canary of
// the target that references them.
//
// The spec under canary is the contents: a ConfigMap's `data` and
// `binaryData`, a Secret's `data`. An empty map counts as absent (the API
// server drops empty maps when it stores an object).

import {
  CONFIG_TRACKING_ANNOTATION,
  CONFIG_TRACKING_DISABLED,
  CONFIG_TRACKING_ENABLED,
} from '../contract.js';
import { jsonEqual, restoreOps, type JsonPatchOp } from '../json.js';
import type { HeldKind, TargetObject } from './kind.js';

/**
 * Secret types whose changes are not held unless annotated
 * `canarygate.dev/config-tracking: enabled`: certificates renewed by
 * cert-manager, tokens the API server writes, and image pull secrets. A
 * renewal that waited for a canary could let a certificate expire, and Pods
 * never read a pull secret at run time, so no canary could judge it.
 */
export const UNTRACKED_SECRET_TYPES: ReadonlySet<string> = new Set([
  'kubernetes.io/tls',
  'kubernetes.io/service-account-token',
  'kubernetes.io/dockercfg',
  'kubernetes.io/dockerconfigjson',
]);

const TRACKING_VALUES: ReadonlySet<string> = new Set([CONFIG_TRACKING_ENABLED, CONFIG_TRACKING_DISABLED]);

/**
 * True when data changes of this managed ConfigMap or Secret are held for a
 * canary: not immutable (the API server refuses its data changes itself),
 * not annotated `disabled`, and not a Secret type skipped by default unless
 * annotated `enabled`. The one rule, for the webhook and the reconciler.
 */
export function configTracked(obj: TargetObject): boolean {
  if (obj.immutable === true) return false;
  const tracking = obj.metadata?.annotations?.[CONFIG_TRACKING_ANNOTATION];
  if (tracking === CONFIG_TRACKING_DISABLED) return false;
  if (tracking === CONFIG_TRACKING_ENABLED) return true;
  // Only Secrets have a type; no kind check, so that informer objects
  // (which lack `kind`) are judged alike.
  return !(typeof obj.type === 'string' && UNTRACKED_SECRET_TYPES.has(obj.type));
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

/** A content field as the revision sees it: absent when missing or an empty map. */
function content(v: unknown): unknown {
  if (v === undefined || v === null) return undefined;
  if (isPlainObject(v) && Object.keys(v).length === 0) return undefined;
  return v;
}

/**
 * A Secret's data with `stringData` merged in, as the API server stores it
 * (stringData wins). The API server merges it before admission already; this
 * keeps a review that still carries it from slipping a change past the hold.
 */
function secretData(obj: TargetObject): unknown {
  const data = content(obj.data);
  const strings = obj.stringData;
  if (!isPlainObject(strings) || Object.keys(strings).length === 0) return data;
  const merged: Record<string, unknown> = isPlainObject(data) ? { ...data } : {};
  for (const [key, value] of Object.entries(strings)) {
    merged[key] = typeof value === 'string' ? Buffer.from(value, 'utf8').toString('base64') : value;
  }
  return merged;
}

/** Operations that turn the raw field `have` of the incoming object into `want` of the stored one. */
function restoreField(path: string, have: unknown, want: unknown): JsonPatchOp[] {
  if (content(want) === undefined) return have === undefined ? [] : [{ op: 'remove', path }];
  if (!isPlainObject(have)) return [{ op: have === undefined ? 'add' : 'replace', path, value: want }];
  return restoreOps(path, have, want);
}

/** Operations that make the raw field of `live` the pending value (absent: removed). */
function promoteField(path: string, live: unknown, pending: unknown): JsonPatchOp[] {
  if (pending === undefined) return live === undefined ? [] : [{ op: 'remove', path }];
  return [{ op: live === undefined ? 'add' : 'replace', path, value: pending }];
}

/** Refusals common to both kinds: a malformed tracking annotation, a config made immutable under a change. */
function configRefusal(kind: string, incoming: TargetObject, holding: boolean): string | undefined {
  const tracking: unknown = incoming.metadata?.annotations?.[CONFIG_TRACKING_ANNOTATION];
  if (tracking !== undefined && !(typeof tracking === 'string' && TRACKING_VALUES.has(tracking))) {
    const got = typeof tracking === 'string' ? JSON.stringify(tracking.slice(0, 64)) : `a ${tracking === null ? 'null' : typeof tracking}`;
    return (
      `canary-gate: annotation ${CONFIG_TRACKING_ANNOTATION} must be "${CONFIG_TRACKING_ENABLED}" or ` +
      `"${CONFIG_TRACKING_DISABLED}", got ${got}; the update was not applied`
    );
  }
  if (holding && incoming.immutable === true) {
    return (
      `canary-gate: this update makes the ${kind} immutable while a data change is held for a canary; ` +
      `an immutable ${kind} could never be promoted. Let the canary finish (or set the data back) first, ` +
      `or give the new data a ${kind} of its own name; the update was not applied`
    );
  }
  return undefined;
}

function tooLargeAdvice(kind: string, generator: string): string {
  return (
    `Give each version of the ${kind} a name of its own (for example kustomize's ${generator}, which appends a hash), ` +
    `so that the Deployment change that references it is canaried instead; or annotate the ${kind} ` +
    `${CONFIG_TRACKING_ANNOTATION}: ${CONFIG_TRACKING_DISABLED} to let its changes go live at once.`
  );
}

function configMapSpec(obj: TargetObject): Record<string, unknown> {
  const spec: Record<string, unknown> = {};
  const data = content(obj.data);
  const binaryData = content(obj.binaryData);
  if (data !== undefined) spec.data = data;
  if (binaryData !== undefined) spec.binaryData = binaryData;
  return spec;
}

export const configMapKind: HeldKind = {
  kind: 'ConfigMap',
  group: '',
  version: 'v1',
  specNoun: 'ConfigMap data',
  specUnderCanary: configMapSpec,
  restoreOps(incoming, old) {
    const from = configMapSpec(incoming);
    const to = configMapSpec(old);
    if (jsonEqual(from, to)) return [];
    return [...restoreField('/data', incoming.data, old.data), ...restoreField('/binaryData', incoming.binaryData, old.binaryData)];
  },
  promoteOps(live, pending) {
    return [...promoteField('/data', live.data, content(pending.data)), ...promoteField('/binaryData', live.binaryData, content(pending.binaryData))];
  },
  tracked: configTracked,
  holdRefusal: (incoming, holding) => configRefusal('ConfigMap', incoming, holding),
  tooLargeAdvice: tooLargeAdvice('ConfigMap', 'configMapGenerator'),
};

function secretSpec(obj: TargetObject): Record<string, unknown> {
  const data = secretData(obj);
  return data === undefined ? {} : { data };
}

export const secretKind: HeldKind = {
  kind: 'Secret',
  group: '',
  version: 'v1',
  specNoun: 'Secret data',
  specUnderCanary: secretSpec,
  restoreOps(incoming, old) {
    const from = secretSpec(incoming);
    const to = secretSpec(old);
    if (jsonEqual(from, to)) return [];
    // stringData would be merged into data again after the patch: it goes.
    const ops: JsonPatchOp[] = incoming.stringData !== undefined ? [{ op: 'remove', path: '/stringData' }] : [];
    return [...ops, ...restoreField('/data', incoming.data, old.data)];
  },
  promoteOps(live, pending) {
    return promoteField('/data', live.data, content(pending.data));
  },
  tracked: configTracked,
  holdRefusal: (incoming, holding) => configRefusal('Secret', incoming, holding),
  tooLargeAdvice: tooLargeAdvice('Secret', 'secretGenerator'),
};
