// Which of the state machine's events become alerts, and how loud: one entry
// per EventReason (the compiler insists on all of them), and for a rollback
// one summary per RollbackCause, read from the event's typed cause.
//
// Routine steps (Initialized, WeightAdvanced, Iteration, Promoting, Holding,
// PromoteRequested, Retry, Terminating) send nothing: an alert channel that
// speaks every interval stops being read. Waiting and PrimaryNotReady are
// emitted once per wait / per promotion by the state machine, so they alert
// once, not every sync.

import type { AlertSeverity } from '../../core/api/types.js';
import { type EventReason, type RollbackCause } from '../decide/reasons.js';

export interface AlertEvent {
  severity: AlertSeverity;
  reason: string;
  message: string;
  revision?: string;
  phase?: string;
  weight?: number;
  metadata?: Record<string, string>;
}

/** An event as the state machine emits it (reconciler/decide/transition.ts Event). */
export interface AlertableEvent {
  reason: EventReason;
  message: string;
  revision?: string;
  cause?: RollbackCause;
}

type Rule = { severity: AlertSeverity; summary: string } | 'quiet';

/** Every reason, alerted (with its severity and summary) or deliberately quiet. */
export const ALERT_RULES: Readonly<Record<EventReason, Rule>> = {
  Initialized: 'quiet',
  Started: { severity: 'info', summary: 'rollout started' },
  Restarted: { severity: 'info', summary: 'rollout restarted for a newer revision' },
  // Part of the start just announced: a second announcement would read as a second run.
  Joined: 'quiet',
  ConfigMissing: { severity: 'warn', summary: 'a ConfigMap or Secret the pod template needs is missing' },
  ConfigDeletedInUse: { severity: 'warn', summary: 'a ConfigMap or Secret the live primary mounts is being deleted (kept by canarygate.dev/in-use)' },
  Retry: 'quiet',
  Waiting: { severity: 'info', summary: 'waiting at a gate' },
  WaitingPromotion: { severity: 'info', summary: 'waiting at a gate' },
  WeightAdvanced: 'quiet',
  Iteration: 'quiet',
  Holding: 'quiet',
  CheckFailed: { severity: 'warn', summary: 'check failed' },
  AnalysisSkipped: { severity: 'warn', summary: 'promoted without analysis' },
  PromoteRequested: 'quiet',
  Promoting: 'quiet',
  PrimaryNotReady: { severity: 'error', summary: 'the promoted revision is not becoming ready' },
  Succeeded: { severity: 'info', summary: 'promoted' },
  RolledBack: { severity: 'error', summary: 'rolled back' },
  Cancelled: { severity: 'info', summary: 'rollout cancelled' },
  WebhookBypassed: { severity: 'error', summary: 'a change went live without analysis' },
  Terminating: 'quiet',
  NameTaken: { severity: 'warn', summary: 'a name the Canary needs is taken' },
  // Deliberate and frequent (a window closes every evening): the status and Events say it.
  Held: 'quiet',
  Resumed: 'quiet',
  WaitingUpstream: { severity: 'info', summary: 'waiting for an upstream stage' },
  AutoscalerNotFound: { severity: 'warn', summary: 'the autoscaler the Canary names does not exist' },
  PromotionStep: 'quiet',
};

/** How a rollback alert opens, by its cause. */
export const ROLLBACK_SUMMARIES: Readonly<Record<RollbackCause, string>> = {
  FailedChecks: 'rolled back: checks failed',
  ProgressDeadlineExceeded: 'rolled back: progress deadline exceeded',
  RollbackGate: 'rolled back by a rollback gate',
  Aborted: 'rolled back: aborted on request',
  SharedConfigFailed: 'rolled back: another consumer of a shared config failed',
};

/** The alert for an event, or undefined when the event is not worth one. */
export function alertForEvent(e: AlertableEvent): AlertEvent | undefined {
  const rule = ALERT_RULES[e.reason];
  if (rule === undefined || rule === 'quiet') return undefined;
  const summary = e.cause ? ROLLBACK_SUMMARIES[e.cause] : rule.summary;
  const alert: AlertEvent = { severity: rule.severity, reason: e.reason, message: e.message ? `${summary}: ${e.message}` : summary };
  if (e.revision !== undefined) alert.revision = e.revision;
  if (e.cause) alert.metadata = { cause: e.cause };
  return alert;
}
