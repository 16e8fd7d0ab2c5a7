// What one transition tells the world, and its delivery: the Kubernetes
// Events on the Canary, the alerts (analysis.alerts), the `event` webhooks
// and, when a run ended, the post-rollout gates.
//
// - When: once per transition, right after its status write succeeded and
//   before its effects are applied (docs/adr/0005). An effect that throws
//   cannot lose them, and the retried sync starts from the new status, whose
//   transition does not emit them again. A status write that fails (409)
//   sends nothing; the retry decides afresh.
// - About which revision: the one the event names (Event.revision, set by the
//   state machine where it emits the event: the revision started, analysed,
//   promoted, rolled back or withdrawn). Every notification of an event names
//   that revision; none re-derives it from the new status, where a rollback
//   or a cancel has already cleared pendingRevision.
// - notificationsOf() is pure (what goes out); Notifier.deliver() sends it
//   through the sinks and never rejects.

import type { Canary, CanaryWebhook } from '../../core/api/types.js';
import { stepOf } from '../analysis/checks.js';
import type { GateContext } from '../analysis/gates.js';
import type { Event, Transition } from '../decide/transition.js';
import { alertForEvent, type AlertEvent } from './events.js';

export type Outgoing =
  /** A Kubernetes Event on the Canary. */
  | { kind: 'event'; type: Event['type']; reason: Event['reason']; message: string; revision: string }
  /** An alert, to every alert entry of the Canary that admits its severity. */
  | { kind: 'alert'; alert: AlertEvent & { revision: string } }
  /** The Canary's `event` webhooks, told about one event. */
  | { kind: 'event-webhook'; hooks: CanaryWebhook[]; payload: GateContext }
  /** The Canary's post-rollout gates: the run of `payload.revision` ended. */
  | { kind: 'post-rollout'; hooks: CanaryWebhook[]; payload: GateContext };

/** The revision an outgoing notification is about. */
export function revisionOf(o: Outgoing): string {
  if (o.kind === 'event') return o.revision;
  if (o.kind === 'alert') return o.alert.revision;
  return o.payload.revision;
}

function hooksOf(canary: Canary, type: 'event' | 'post-rollout'): CanaryWebhook[] {
  return (canary.spec?.analysis?.webhooks ?? []).filter((h) => h.type === type);
}

/** The body of an `event` webhook or a post-rollout gate: the new status, about `revision`. */
export function hookPayload(canary: Canary, t: Pick<Transition, 'status'>, revision: string): GateContext {
  return {
    name: canary.metadata.name ?? '',
    namespace: canary.metadata.namespace ?? '',
    phase: t.status.phase ?? '',
    revision,
    canaryWeight: t.status.canaryWeight ?? 0,
    iterations: t.status.iterations ?? 0,
    failedChecks: t.status.failedChecks ?? 0,
    step: stepOf(canary, t.status),
  };
}

/** Everything a transition sends, in order. Pure. */
export function notificationsOf(canary: Canary, t: Pick<Transition, 'status' | 'events' | 'postRollout'>): Outgoing[] {
  const out: Outgoing[] = [];
  const eventHooks = hooksOf(canary, 'event');
  for (const e of t.events) {
    out.push({ kind: 'event', type: e.type, reason: e.reason, message: e.message, revision: e.revision });
    const alert = alertForEvent(e);
    if (alert) out.push({ kind: 'alert', alert: { ...alert, revision: e.revision, phase: t.status.phase ?? '', weight: t.status.canaryWeight ?? 0 } });
    if (eventHooks.length > 0) {
      out.push({
        kind: 'event-webhook',
        hooks: eventHooks,
        payload: { ...hookPayload(canary, t, e.revision), reason: e.reason, message: e.message, ...(e.cause ? { cause: e.cause } : {}) },
      });
    }
  }
  if (t.postRollout) {
    const hooks = hooksOf(canary, 'post-rollout');
    if (hooks.length > 0) out.push({ kind: 'post-rollout', hooks, payload: hookPayload(canary, t, t.postRollout.revision) });
  }
  return out;
}

/** Where notifications go. Each sink may fail; delivery carries on with the others. */
export interface NotifierSinks {
  /** Records a Kubernetes Event on the Canary (never blocks). */
  record(canary: Canary, type: Event['type'], reason: string, message: string): void;
  /** Sends an alert to the Canary's receivers (Alerter.send). */
  alert(canary: Canary, alert: AlertEvent): Promise<unknown>;
  /** Posts to `event` webhooks (sendEvent). */
  eventWebhook(hooks: CanaryWebhook[], payload: GateContext): Promise<unknown>;
  /** Calls post-rollout gates (runGates); their result changes nothing. */
  postRollout(hooks: CanaryWebhook[], payload: GateContext): Promise<unknown>;
  /** One log line per event (no secrets: reason, phase, weight, revision, message). */
  log?(fields: Record<string, unknown>, message: string): void;
}

export class Notifier {
  constructor(private readonly sinks: NotifierSinks) {}

  /**
   * Sends what a transition tells. Call once, after its status write
   * succeeded. Records the Kubernetes Events synchronously and starts every
   * HTTP delivery at once; the promise (never rejected) settles when all of
   * them have, for callers that want to wait (tests, shutdown).
   */
  deliver(canary: Canary, t: Pick<Transition, 'status' | 'events' | 'postRollout'>): Promise<void> {
    const pending: Promise<unknown>[] = [];
    const key = `${canary.metadata?.namespace ?? ''}/${canary.metadata?.name ?? ''}`;
    const guard = (fn: () => Promise<unknown>) => {
      try {
        pending.push(fn().catch(() => undefined));
      } catch {
        /* a sink that throws synchronously loses only its own delivery */
      }
    };
    for (const o of notificationsOf(canary, t)) {
      switch (o.kind) {
        case 'event':
          try {
            this.sinks.record(canary, o.type, o.reason, o.message);
          } catch {
            /* recording never stops the other notifications */
          }
          this.sinks.log?.({ canary: key, reason: o.reason, revision: o.revision, phase: t.status.phase, weight: t.status.canaryWeight }, o.message);
          break;
        case 'alert':
          guard(() => this.sinks.alert(canary, o.alert));
          break;
        case 'event-webhook':
          guard(() => this.sinks.eventWebhook(o.hooks, o.payload));
          break;
        case 'post-rollout':
          guard(() => this.sinks.postRollout(o.hooks, o.payload));
          break;
      }
    }
    return Promise.all(pending).then(() => undefined);
  }
}
