// The public label and annotation contract. Every name lives under canarygate.dev/.

export const GROUP = 'canarygate.dev';
export const VERSION = 'v1alpha1';
export const API_VERSION = `${GROUP}/${VERSION}`;

/** Namespace label that opts every Deployment in the namespace in. */
export const NAMESPACE_ENABLED_LABEL = 'canarygate.dev/enabled';
/** Put on a Deployment or Service by the reconciler when it adopts it. */
export const MANAGED_LABEL = 'canarygate.dev/managed';
/** A Deployment carrying this label with value "true" is never adopted. */
export const SKIP_LABEL = 'canarygate.dev/skip';

/** Short, stable id of the pending change (see core/revision.ts). */
export const PENDING_REVISION = 'canarygate.dev/pending-revision';
/** The pending change as compact JSON: spec.template of a Deployment, spec of a Service. */
export const PENDING_SPEC = 'canarygate.dev/pending-spec';

/**
 * Annotations only the webhook (from the old object) or the reconciler may set.
 * A user's update can never change them.
 */
export const CONTROL_ANNOTATIONS: readonly string[] = [PENDING_REVISION, PENDING_SPEC];

export const TRUE = 'true';
