// Which of the reconciler's Kubernetes Events become alerts, and how loud.
// The reasons are those transition.ts (and the controller) emit.
//
//   Started, Restarted        info   a rollout started (again, for a newer revision)
//   Waiting, WaitingPromotion info   waiting at a gate (confirm-rollout / confirm-promotion)
//   Succeeded                 info   promoted
//   Cancelled                 info   the pending change was withdrawn
//   CheckFailed               warn   a check failed (not yet the threshold)
//   AnalysisSkipped           warn   promoted without analysis (spec.skipAnalysis)
//   InvalidPendingRevision    warn   the held change could not be read
//   RolledBack                error  with the failing checks, the progress deadline,
//                                    the rollback gate or the abort command in the message
//   WebhookBypassed           error  a change went live without analysis
//   PrimaryNotReady           error  the promoted spec does not become ready
//
// Routine steps (Initialized, WeightAdvanced, Iteration, Promoting, Holding,
// PromoteRequested, Retry, Terminating) send nothing: an alert channel that
// speaks every interval stops being read. Any other Warning is a warn.

import type { AlertSeverity } from '../../core/api/types.js';

export interface AlertEvent {
  severity: AlertSeverity;
  reason: string;
  message: string;
  revision?: string;
  phase?: string;
  weight?: number;
  metadata?: Record<string, string>;
}

export const QUIET_REASONS: ReadonlySet<string> = new Set(['Initialized', 'WeightAdvanced', 'Iteration', 'Promoting', 'Holding', 'PromoteRequested', 'Retry', 'Terminating']);

/** The alert for an event, or undefined when the event is not worth one. */
export function alertForEvent(reason: string, type: 'Normal' | 'Warning', message = ''): AlertEvent | undefined {
  const say = (severity: AlertSeverity, what: string): AlertEvent => ({ severity, reason, message: message ? `${what}: ${message}` : what });
  switch (reason) {
    case 'Started':
      return say('info', 'rollout started');
    case 'Restarted':
      return say('info', 'rollout restarted for a newer revision');
    case 'Waiting':
    case 'WaitingPromotion':
      return say('info', 'waiting at a gate');
    case 'Succeeded':
      return say('info', 'promoted');
    case 'Cancelled':
      return say('info', 'rollout cancelled');
    case 'CheckFailed':
      return say('warn', 'check failed');
    case 'AnalysisSkipped':
      return say('warn', 'promoted without analysis');
    case 'RolledBack':
      return say('error', rollbackCause(message));
    case 'WebhookBypassed':
      return say('error', 'a change went live without analysis');
    case 'PrimaryNotReady':
      return say('error', 'the promoted revision is not becoming ready');
  }
  if (QUIET_REASONS.has(reason)) return undefined;
  return type === 'Warning' ? say('warn', reason) : undefined;
}

function rollbackCause(message: string): string {
  if (/ProgressDeadlineExceeded|did not become ready within/.test(message)) return 'rolled back: progress deadline exceeded';
  if (/failed checks?/.test(message)) return 'rolled back: checks failed';
  if (/rollback gate/.test(message)) return 'rolled back by a rollback gate';
  if (/aborted/.test(message)) return 'rolled back: aborted on request';
  return 'rolled back';
}
