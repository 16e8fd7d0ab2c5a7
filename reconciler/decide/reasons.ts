// The reasons the reconciler gives, as named constants: the reasons of the
// Kubernetes Events (and of the alerts and `event` webhooks made from them),
// why a run was rolled back, and the reasons of the Canary's conditions.
// Everything downstream (alerts, payloads, metrics, tests) switches on these
// constants; nothing parses a message back.

/** Why the state machine emitted an event. One event per step that changes something. */
export const EventReason = {
  /** The target was adopted; its live revision is the promoted one. */
  Initialized: 'Initialized',
  /** A run of a new pending revision started. */
  Started: 'Started',
  /** A newer revision replaced the one being analysed; the run starts again. */
  Restarted: 'Restarted',
  /**
   * A change joined the run before its first analysis step (a Deployment
   * and its ConfigMap applied together reach the API server as two
   * requests): the same run goes on with the combined revision.
   */
  Joined: 'Joined',
  /** A ConfigMap or Secret the pod template needs (not optional) does not exist (once per set of missing configs). */
  ConfigMissing: 'ConfigMissing',
  /** A ConfigMap or Secret the live primary still mounts is being deleted (pruned by a GitOps tool): the finalizer canarygate.dev/in-use keeps it (once per set). */
  ConfigDeletedInUse: 'ConfigDeletedInUse',
  /** A failed revision is started again (`canary-gate retry`). */
  Retry: 'Retry',
  /** A pending revision waits for its confirm-rollout gate (once per wait). */
  Waiting: 'Waiting',
  /** The run passed analysis and waits for its confirm-promotion gate (once per wait). */
  WaitingPromotion: 'WaitingPromotion',
  /** One weight step forward (canary strategy). */
  WeightAdvanced: 'WeightAdvanced',
  /** One iteration passed (blue/green, A/B). */
  Iteration: 'Iteration',
  /** A metric without data and policy "hold": the step neither advances nor fails. */
  Holding: 'Holding',
  /** A check failed; the run goes on until the threshold. */
  CheckFailed: 'CheckFailed',
  /** spec.skipAnalysis: promoted without analysis. */
  AnalysisSkipped: 'AnalysisSkipped',
  /** `canary-gate promote`: the remaining steps are skipped. */
  PromoteRequested: 'PromoteRequested',
  /** The promotion write is being made. */
  Promoting: 'Promoting',
  /** The promoted spec did not become ready within the progress deadline (once per promotion). */
  PrimaryNotReady: 'PrimaryNotReady',
  /** The revision was promoted; traffic is back on the primary. */
  Succeeded: 'Succeeded',
  /** The revision was rolled back; the event carries a RollbackCause. */
  RolledBack: 'RolledBack',
  /** The pending revision was withdrawn; the run stopped. */
  Cancelled: 'Cancelled',
  /** The live spec changed without a pending revision (the webhook was bypassed or down). */
  WebhookBypassed: 'WebhookBypassed',
  /** The Canary is being deleted. */
  Terminating: 'Terminating',
  /** A name the Canary needs (its copy, a router's object) is held by an object canary-gate did not create. */
  NameTaken: 'NameTaken',
  /** A change freeze or a closed promotion window holds the Canary's runs (once per hold). */
  Held: 'Held',
  /** The freeze was lifted or a window opened: runs go on. */
  Resumed: 'Resumed',
  /** A pending change waits for an upstream stage (spec.promotion.after); once per reason. */
  WaitingUpstream: 'WaitingUpstream',
  /** spec.autoscalerRef names a HorizontalPodAutoscaler that does not exist: runs hold. */
  AutoscalerNotFound: 'AutoscalerNotFound',
  /** One step of traffic back to the promoted primary (analysis.stepWeightPromotion). */
  PromotionStep: 'PromotionStep',
} as const;
export type EventReason = (typeof EventReason)[keyof typeof EventReason];

export const EVENT_REASONS: readonly EventReason[] = Object.values(EventReason);

/** Why a revision was rolled back. Also the reason of the Promoted=False condition. */
export const RollbackCause = {
  /** `threshold` failed checks. */
  FailedChecks: 'FailedChecks',
  /** The canary copy (or the primary) did not become ready within progressDeadlineSeconds. */
  ProgressDeadlineExceeded: 'ProgressDeadlineExceeded',
  /** A rollback gate asked for it. */
  RollbackGate: 'RollbackGate',
  /** `canary-gate abort`. */
  Aborted: 'Aborted',
  /** Another consumer of a shared ConfigMap or Secret rolled back its pending data (decide/shared-configs.ts). */
  SharedConfigFailed: 'SharedConfigFailed',
} as const;
export type RollbackCause = (typeof RollbackCause)[keyof typeof RollbackCause];

export const ROLLBACK_CAUSES: readonly RollbackCause[] = Object.values(RollbackCause);

/** Reasons of Events the controller records itself, outside the state machine. They are never alerted. */
export const ControllerReason = {
  /** The pending-spec annotation could not be read. */
  InvalidPendingRevision: 'InvalidPendingRevision',
  /** The API server refused a write of an effect (422). */
  Invalid: 'Invalid',
} as const;
export type ControllerReason = (typeof ControllerReason)[keyof typeof ControllerReason];

/** Condition types the reconciler sets on a Canary. */
export const ConditionType = {
  /** True when the live spec is the promoted one; `kubectl wait --for=condition=Promoted`. */
  Promoted: 'Promoted',
  /** True once a revision went live without analysis. */
  Bypassed: 'Bypassed',
  /** True while a name the Canary needs is held by an object canary-gate did not create: no run starts or advances. */
  NameTaken: 'NameTaken',
  /** True while a change freeze or a closed promotion window holds the Canary's runs at their current step. */
  Held: 'Held',
  /** False while an upstream stage (spec.promotion.after) has not promoted the pending change. */
  UpstreamReady: 'UpstreamReady',
  /** False while spec.autoscalerRef names a HorizontalPodAutoscaler that does not exist: no run starts or advances. */
  AutoscalerReady: 'AutoscalerReady',
  /**
   * kstatus' conditions (what Flux's `wait`/`healthChecks` and `kubectl wait`
   * read), derived from Promoted: Ready=True when the live spec is the
   * promoted one, False while a run is under way (in progress) or after a
   * rollback; Stalled=True after a rollback (failed), until a new revision.
   * Without them kstatus reads a Canary as Current at any phase.
   */
  Ready: 'Ready',
  Stalled: 'Stalled',
  /** True while a ConfigMap or Secret the pod template needs (not optional) does not exist. */
  ConfigMissing: 'ConfigMissing',
  /**
   * False while the run passed and waits for the other consumers of a shared
   * ConfigMap or Secret (decide/shared-configs.ts); True once all passed.
   */
  SharedConfig: 'SharedConfig',
  /** True while a config the live primary mounts is being deleted and kept by the finalizer canarygate.dev/in-use. */
  ConfigDeletedInUse: 'ConfigDeletedInUse',
} as const;
export type ConditionType = (typeof ConditionType)[keyof typeof ConditionType];

/** Reasons of the Canary's conditions (Promoted=False carries the RollbackCause). */
export const ConditionReason = {
  Initialized: 'Initialized',
  Waiting: 'Waiting',
  Progressing: 'Progressing',
  Succeeded: 'Succeeded',
  Cancelled: 'Cancelled',
  LiveSpecChanged: 'LiveSpecChanged',
  NameTaken: 'NameTaken',
  NamesFree: 'NamesFree',
  /** Held: the namespace, or every namespace, is frozen (canarygate.dev/freeze). */
  Frozen: 'Frozen',
  /** Held: outside every spec.promotion.windows entry. */
  OutsideWindow: 'OutsideWindow',
  /** Held: a promotion window cannot be read; nothing advances on a schedule canary-gate cannot read. */
  InvalidWindow: 'InvalidWindow',
  /** Held=False: the hold ended. */
  Resumed: 'Resumed',
  /** ConfigMissing=True: a referenced config does not exist. */
  ConfigMissing: 'ConfigMissing',
  /** ConfigDeletedInUse=True: a config the live primary mounts is being deleted and kept. */
  ConfigDeletedInUse: 'ConfigDeletedInUse',
  /** ConfigDeletedInUse=False: no config the live primary mounts is being deleted. */
  ConfigsNotDeleted: 'ConfigsNotDeleted',
  /** ConfigMissing=False: every referenced config exists. */
  ConfigsFound: 'ConfigsFound',
  /** UpstreamReady: every upstream stage promoted the change. */
  UpstreamPromoted: 'UpstreamPromoted',
  /** AutoscalerReady=False: the HPA of spec.autoscalerRef does not exist. */
  AutoscalerNotFound: 'AutoscalerNotFound',
  /** AutoscalerReady=True: it exists (again). */
  AutoscalerFound: 'AutoscalerFound',
  /** UpstreamReady=False: an upstream stage has not promoted the change yet. */
  UpstreamPending: 'UpstreamPending',
  /** UpstreamReady=False: an upstream stage rolled the change back. */
  UpstreamFailed: 'UpstreamFailed',
  /** UpstreamReady=False: an upstream Canary cannot be read. */
  UpstreamUnreachable: 'UpstreamUnreachable',
  /** UpstreamReady=False: promoted upstream, not long enough ago (soak). */
  Soaking: 'Soaking',
  /** UpstreamReady=False: the change lacks what spec.promotion.identity needs (label:<key> unset). */
  NoIdentity: 'NoIdentity',
  /** SharedConfig=False: passed; another consumer of a shared config has not (or has no Canary). */
  SharedConfigWaiting: 'SharedConfigWaiting',
  /** SharedConfig=True: every consumer of the shared configs passed. */
  SharedConfigPassed: 'SharedConfigPassed',
  ...RollbackCause,
} as const;
export type ConditionReason = (typeof ConditionReason)[keyof typeof ConditionReason];
