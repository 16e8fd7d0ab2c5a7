// The public contract of canary-gate: every name a user, a GitOps tool or
// another controller can see or rely on. The webhook and the reconciler take
// their names from here and nowhere else; README's contract table is checked
// against CONTRACT by a unit test, so the two cannot drift apart.

export const GROUP = 'canarygate.dev';
export const VERSION = 'v1alpha1';
export const API_VERSION = `${GROUP}/${VERSION}`;

// ------------------------------------------------------------------ labels

/** Namespace label that opts every Deployment in the namespace in. */
export const NAMESPACE_ENABLED_LABEL = 'canarygate.dev/enabled';
/**
 * Put on a Deployment or Service by the reconciler when it adopts it, and on
 * the ConfigMaps and Secrets their pod templates reference; the webhook acts
 * only on objects that carry it.
 */
export const MANAGED_LABEL = 'canarygate.dev/managed';
/** A Deployment carrying this label with value "true" is never adopted from namespace defaults. */
export const SKIP_LABEL = 'canarygate.dev/skip';
/** ConfigMaps with this label hold a namespace's Canary defaults (key `canary`). */
export const DEFAULTS_LABEL = 'canarygate.dev/defaults';
/**
 * Change freeze: on a Namespace, "true" holds every run in it at its current
 * step; on the reconciler's own namespace, "all" holds every run it manages.
 */
export const FREEZE_LABEL = 'canarygate.dev/freeze';
export const FREEZE_ALL = 'all';
/** Names the revision a canary copy runs (on the copy and on its pod template). */
export const REVISION_LABEL = 'canarygate.dev/revision';
/** Tells a canary copy (and its Pods) apart from everything else: value `canary`. */
export const ROLE_LABEL = 'canarygate.dev/role';
export const CANARY_ROLE = 'canary';
/** Standard label on every object canary-gate creates (router Services, HTTPRoutes). */
export const MANAGED_BY_LABEL = 'app.kubernetes.io/managed-by';
export const MANAGED_BY = 'canary-gate';

// ------------------------------------------------------------------ annotations

/** Short, stable id of the pending change (see core/revision.ts). */
export const PENDING_REVISION = 'canarygate.dev/pending-revision';
/** The pending change as compact canonical JSON: the spec under canary (see core/targets/). */
export const PENDING_SPEC = 'canarygate.dev/pending-spec';
/**
 * Annotations only the webhook (from the old object) or the reconciler may set.
 * A user's update can never change them.
 */
export const CONTROL_ANNOTATIONS: readonly string[] = [PENDING_REVISION, PENDING_SPEC];

/**
 * On a managed ConfigMap or Secret: `enabled` holds its data changes for a
 * canary even where the default skips it (TLS, service-account-token and
 * pull Secrets); `disabled` never holds them (they go live at once). Judged
 * on the stored object, so it takes effect from the update after the one
 * that sets it.
 */
export const CONFIG_TRACKING_ANNOTATION = 'canarygate.dev/config-tracking';
export const CONFIG_TRACKING_ENABLED = 'enabled';
export const CONFIG_TRACKING_DISABLED = 'disabled';
/**
 * On the pod template of a target's primary: the revisions of the configs it
 * references, set by the reconciler when it promotes a config change, so that
 * the primary's Pods roll and read the new data.
 */
export const CONFIG_REVISION_ANNOTATION = 'canarygate.dev/config-revision';

/** Annotations on a Canary through which the CLI asks for promote/abort/retry of a revision. */
export const COMMAND_ANNOTATIONS = {
  promote: 'canarygate.dev/promote',
  abort: 'canarygate.dev/abort',
  retry: 'canarygate.dev/retry',
} as const;

/** Marks a Canary the reconciler created from namespace defaults (not written by a user). */
export const GENERATED_ANNOTATION = 'canarygate.dev/generated-from-defaults';

// ------------------------------------------------------------------ other names

/** The reconciler's finalizer on a Canary: traffic goes back to the primary before the Canary goes. */
export const FINALIZER = 'canarygate.dev/finalizer';
/**
 * The reconciler's finalizer on a managed ConfigMap or Secret the stable
 * primary still references: it cannot go away under running Pods.
 */
export const IN_USE_FINALIZER = 'canarygate.dev/in-use';
/** reportingController of the reconciler's Events. */
export const REPORTING_CONTROLLER = 'canarygate.dev/reconciler';
/** Component of the CLI's Events. */
export const CLI_COMPONENT = 'canarygate.dev/cli';

/** Suffix of the canary copy and of a router's canary Service. */
export const CANARY_SUFFIX = '-canary';
/** Suffix of a router's primary Service (routers with Services of their own). */
export const PRIMARY_SUFFIX = '-primary';

export const TRUE = 'true';

/** The name of the canary copy of `name`: `<name>-canary`. */
export function canaryName(name: string): string {
  return `${name}${CANARY_SUFFIX}`;
}

/** One row of README's contract table. */
export interface ContractEntry {
  /** As README shows it, e.g. `canarygate.dev/enabled: "true"`. */
  name: string;
  kind: string;
}

/** The names README's contract table lists, with what they are put on. */
export const CONTRACT: readonly ContractEntry[] = [
  { name: `${NAMESPACE_ENABLED_LABEL}: "true"`, kind: 'Namespace label' },
  { name: `${MANAGED_LABEL}: "true"`, kind: 'label on a Deployment or Service' },
  { name: `${SKIP_LABEL}: "true"`, kind: 'Deployment label' },
  { name: `${DEFAULTS_LABEL}: "true"`, kind: 'ConfigMap label' },
  { name: `${FREEZE_LABEL}: "true"`, kind: 'Namespace label' },
  { name: `${FREEZE_LABEL}: "${FREEZE_ALL}"`, kind: "label on the reconciler's namespace" },
  { name: PENDING_REVISION, kind: 'annotation on a Deployment or Service' },
  { name: PENDING_SPEC, kind: 'annotation on a Deployment or Service' },
  { name: COMMAND_ANNOTATIONS.promote, kind: 'Canary annotation' },
  { name: COMMAND_ANNOTATIONS.abort, kind: 'Canary annotation' },
  { name: COMMAND_ANNOTATIONS.retry, kind: 'Canary annotation' },
  { name: GENERATED_ANNOTATION, kind: 'Canary annotation' },
  { name: FINALIZER, kind: 'Canary finalizer' },
  { name: `${CONFIG_TRACKING_ANNOTATION}: ${CONFIG_TRACKING_ENABLED}`, kind: 'annotation on a ConfigMap or Secret' },
  { name: `${CONFIG_TRACKING_ANNOTATION}: ${CONFIG_TRACKING_DISABLED}`, kind: 'annotation on a ConfigMap or Secret' },
  { name: CONFIG_REVISION_ANNOTATION, kind: "annotation on the primary's pod template" },
  { name: IN_USE_FINALIZER, kind: 'ConfigMap or Secret finalizer' },
  { name: `${ROLE_LABEL}: ${CANARY_ROLE}`, kind: 'label on the canary copy and its Pods' },
  { name: REVISION_LABEL, kind: 'label on the canary copy and its Pods' },
  { name: `${MANAGED_BY_LABEL}: ${MANAGED_BY}`, kind: 'label on objects canary-gate creates' },
  { name: `<name>${CANARY_SUFFIX}`, kind: 'the canary copy (and a router\'s canary Service)' },
  { name: `<service>${PRIMARY_SUFFIX}`, kind: 'a router\'s primary Service' },
];
