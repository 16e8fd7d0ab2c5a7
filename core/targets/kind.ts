// One adapter per kind of object canary-gate can canary, and per kind of
// config a target references: what part of the object is the spec under
// canary, its revision, the operations that restore the stable spec
// (webhook) and install the promoted one (reconciler), and
// the fields the API server allocates, which never count as a change and
// never travel to another object. The webhook and the reconciler both use
// these adapters; neither knows the kinds apart otherwise.

import type { JsonPatchOp } from '../json.js';

/** An object as the adapters see it: from an AdmissionReview or an informer cache. */
export interface TargetObject {
  apiVersion?: string;
  kind?: string;
  metadata?: { name?: string; namespace?: string; uid?: string; generation?: number; resourceVersion?: string; annotations?: Record<string, string>; labels?: Record<string, string> };
  spec?: unknown;
  status?: unknown;
  /** ConfigMaps and Secrets keep their contents at the top level. */
  data?: unknown;
  binaryData?: unknown;
  stringData?: unknown;
  type?: unknown;
  immutable?: unknown;
}

/**
 * What the webhook needs of a kind whose changes it holds: every target kind,
 * and the ConfigMaps and Secrets a target references (core/targets/config.ts).
 */
export interface HeldKind {
  /** The Kubernetes kind. */
  readonly kind: 'Deployment' | 'Service' | 'ConfigMap' | 'Secret';
  readonly group: string;
  readonly version: string;
  /** How messages name the spec under canary: "pod template", "Service spec", "ConfigMap data". */
  readonly specNoun: string;
  /**
   * The spec under canary of an object, as its revision sees it: what the
   * webhook holds and the reconciler promotes, without server-allocated
   * fields. Undefined when the object has none (the API server refuses such
   * an object anyway).
   */
  specUnderCanary(obj: TargetObject): Record<string, unknown> | undefined;
  /**
   * Operations that put the stable spec of `old` back into `incoming`, the
   * object of an UPDATE. Empty exactly when the two specs are equal (key
   * order ignored). The webhook's hot path: walks only the two specs.
   */
  restoreOps(incoming: TargetObject, old: TargetObject): JsonPatchOp[];
  /** Operations that install the pending spec into the live object (promotion), keeping its server-allocated fields. */
  promoteOps(live: TargetObject, pending: Record<string, unknown>): JsonPatchOp[];
  /**
   * False when changes of this stored object are not held at all (a Secret
   * type skipped by default, a config annotated `disabled`, an immutable
   * config). Absent: always held.
   */
  tracked?(obj: TargetObject): boolean;
  /**
   * Why this update of a managed object is refused, or undefined: a
   * malformed annotation of this kind, or (when `holding`: a change is held
   * now or already pending) a config being made immutable, whose pending
   * data could never be promoted.
   */
  holdRefusal?(incoming: TargetObject, holding: boolean): string | undefined;
  /** What the user can do instead when the pending spec is too large for an annotation; ends the refusal message. */
  readonly tooLargeAdvice?: string;
}

/** A kind a Canary can target (`spec.targetRef.kind`): canaried by a copy of its own. */
export interface TargetKind extends HeldKind {
  /** The Kubernetes kind, as `spec.targetRef.kind` names it. */
  readonly kind: 'Deployment' | 'Service';
  /**
   * True when the target runs Pods: its canary copy is a workload whose Pods
   * a router can size and label. False for a target whose copy is itself the
   * routing object (a Service).
   */
  readonly runsPods: boolean;
  /** The live object has rolled out its spec completely (always true for a kind without Pods). */
  rolledOut(obj: TargetObject): boolean;
  /** Desired Pods of the live object (0 for a kind without Pods). */
  replicas(obj: TargetObject): number;
}
