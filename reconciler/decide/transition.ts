// The rollout state machine as one pure function: given what the reconciler
// observed (from informer caches) and the time, it returns the next status,
// the effects to apply and when to look again. No I/O happens here.
//
// Checks (webhook gates, metric queries) are I/O, so a step that needs them is
// two calls: the first returns `checks` (what to run); the caller runs them and
// calls again with `results`. Everything the machine needs to resume after a
// crash is in the status it returns: nothing is kept in memory between calls.

import type { CanaryPhase, CanaryStatus, Condition, MetricStatus, WebhookType } from '../../core/api/types.js';
import type { RouterTraits } from '../routers/router.js';
import type { ResolvedAnalysis } from './analysis-config.js';
import { identityOf, type ChangeFacts, type UpstreamBlock } from './stages.js';
import { ConditionReason, ConditionType, EventReason, RollbackCause } from './reasons.js';
import { sharedConfigVerdict, waitsForSharedConfig, type SharedConfig } from './shared-configs.js';

/** Status fields the state machine keeps so that a restarted process resumes exactly. */
export interface RolloutStatus extends CanaryStatus {
  /** When the current revision's run started (progress deadline). */
  progressStartedAt?: string;
  /** When the last analysis step ran; the next is due an interval later. */
  lastStepTime?: string;
  /** The revision that was rolled back; not retried until a new revision or `retry`. */
  failedRevision?: string;
  /** pre-rollout gates passed for the current revision. */
  preRolloutPassed?: boolean;
  /** A revision that went live without analysis (webhook bypassed). */
  bypassedRevision?: string;
}

/** What the reconciler saw of the target (the user's Deployment or Service). */
export interface TargetView {
  exists: boolean;
  /** Carries the managed label. */
  managed: boolean;
  /** Revision of the live pod template (Service spec). */
  liveRevision: string;
  /** Revision held by the webhook, if any (annotation canarygate.dev/pending-revision). */
  pendingRevision?: string;
  /** The live object has rolled out completely (always true for a Service). */
  ready: boolean;
  /** Replicas of the live Deployment (spec.replicas), 0 for a Service. */
  replicas: number;
  /** Some ConfigMaps or Secrets the pod template references are not labelled managed or looked up yet. */
  configsUnsettled?: boolean;
  /** A config the pod template references was just adopted (labelled managed): a live revision changed by it is no bypass. */
  configsAdopted?: boolean;
}

/** What the reconciler saw of `<name>-canary`. */
export interface CanaryCopyView {
  exists: boolean;
  /** Revision label of the copy. */
  revision?: string;
  /** Desired replicas of the copy. */
  replicas: number;
  /** All desired replicas are updated and ready (a Service copy: it exists). */
  ready: boolean;
  readyReplicas: number;
  /** Config copies (`<config>-canary`) the Canary owns. */
  configCopies?: number;
}

/** Commands given by the CLI (`canary-gate promote|abort|retry|pause|resume`). */
export interface Commands {
  /** Skip the remaining steps of this revision and promote it (after checks pass). */
  promote?: string;
  /** Roll this revision back now. */
  abort?: string;
  /** Start the failed revision again. */
  retry?: string;
}

export interface Observed {
  now: number;
  generation: number;
  deleting: boolean;
  /** The Canary carries the reconciler's finalizer. */
  hasFinalizer: boolean;
  analysis: ResolvedAnalysis;
  status: RolloutStatus;
  target: TargetView;
  copy: CanaryCopyView;
  /** What the Canary's router does with the copy (see routers/router.ts). */
  router: RouterTraits;
  /** Canary weight the router has in force now (0 when all traffic goes to the primary). */
  routedWeight: number;
  /** Percent of the requests the router copies to the canary now (mirroring); absent = none. */
  routedMirror?: number;
  commands: Commands;
  /**
   * Objects under names the Canary needs (its copy, the router's objects)
   * that are not canary-gate's: the user's own. Each a message saying what
   * to rename. No run starts or advances while there are any.
   */
  blockers: string[];
  /** spec.autoscalerRef names an HPA that does not exist (what to fix): no run starts or advances. */
  autoscalerMissing?: string;
  /** A change freeze or a closed promotion window: runs hold at their current step, no pending change starts. */
  hold?: Hold;
  /** What identifies the pending and the live change across stages (decide/stages.ts). */
  changes?: { pending?: ChangeFacts; live?: ChangeFacts };
  /** spec.promotion.identity (default images). */
  identityMode?: string;
  /** Why the pending change may not start yet: an upstream stage has not promoted it (spec.promotion.after). */
  upstream?: UpstreamBlock;
  /** The Canary has upstream stages (spec.promotion.after): their verdict is shown as the UpstreamReady condition. */
  hasUpstream?: boolean;
  /** ConfigMaps and Secrets the pod template needs that do not exist, as `Kind namespace/name`. */
  missingConfigs?: string[];
  /** Pending configs this run uses that other managed Deployments reference, and where those stand (decide/shared-configs.ts). */
  sharedConfigs?: SharedConfig[];
  /** Configs a managed Deployment's live template references that are being deleted and kept by the in-use finalizer, as `Kind namespace/name`. */
  configsDeletedInUse?: string[];
}

/** Why runs hold now (observe/context.ts derives it from namespace labels and spec.promotion.windows). */
export interface Hold {
  reason: 'Frozen' | 'OutsideWindow' | 'InvalidWindow';
  message: string;
  /** When the hold is known to end (the next window opening), epoch ms. */
  untilMs?: number;
}

/** One check's outcome, as the caller ran it. */
export interface CheckResult {
  name: string;
  kind: 'gate' | 'metric';
  gateType?: WebhookType;
  passed: boolean;
  /** Metric checks that found no data and whose policy is "hold": neither pass nor fail. */
  held?: boolean;
  message: string;
  metric?: MetricStatus;
}

/**
 * The checks the machine asks the caller to run in one round: the webhook
 * gates of the listed types, and the metric checks when `metrics` is true.
 * Confirmation gates that wait are never counted as failed checks.
 */
export interface CheckRequest {
  gates: WebhookType[];
  metrics: boolean;
}

export type Effect =
  | { type: 'add-finalizer' }
  | { type: 'remove-finalizer' }
  | { type: 'adopt-target' }
  | { type: 'release-target' }
  | { type: 'ensure-router' }
  | { type: 'remove-router' }
  /** Create or update `<name>-canary` from the pending spec, with `weight` (router decides the size). */
  | { type: 'ensure-canary-copy'; revision: string; weight: number }
  /** Traffic split; 0 sends everything to the primary. `mirror`: percent of the requests copied to the canary. */
  | { type: 'set-weight'; weight: number; revision: string; mirror?: number }
  /** The canary copy to zero replicas; its config copies (`<config>-canary`) are deleted. */
  | { type: 'scale-canary-to-zero' }
  | { type: 'delete-canary-copy' }
  /** Label managed (or look up) the ConfigMaps and Secrets the templates reference that are not yet. */
  | { type: 'track-configs' }
  /** One write: live spec := pending spec and pending annotations removed, if the pending revision is still `revision`. */
  | { type: 'promote-target'; revision: string }
  /** Not emitted any more: post-rollout gates are delivered with the notifications (Transition.postRollout). */
  | { type: 'clear-command'; command: keyof Commands };

/**
 * What a step did, for people: a Kubernetes Event, and the alerts and `event`
 * webhooks made from it. `revision` is the revision the step acted on (the
 * one started, analysed, promoted, rolled back or withdrawn; the live one for
 * adoption and a bypass), named where the event is made: every notification
 * of the event names it, never a revision re-derived from the new status.
 */
export interface Event {
  type: 'Normal' | 'Warning';
  reason: EventReason;
  message: string;
  revision: string;
  /** Why the revision was rolled back (reason RolledBack only). */
  cause?: RollbackCause;
}

/** A run ended (promoted or rolled back): its post-rollout gates are called once, about this revision. */
export interface PostRollout {
  revision: string;
}

export interface Transition {
  status: RolloutStatus;
  effects: Effect[];
  /** Sent once, after the status write of this transition succeeded (reconciler/notify/notifier.ts). */
  events: Event[];
  postRollout?: PostRollout;
  /** Checks to run before the step can be decided; call again with their results. */
  checks?: CheckRequest;
  /** Look again at this time at the latest (events may bring it sooner). */
  requeueAt?: number;
}

const POLL_MS = 2000;

export function transition(obs: Observed, results?: CheckResult[]): Transition {
  const m = new Machine(obs);
  m.run(results);
  return m.result();
}

class Machine {
  private status: RolloutStatus;
  private effects: Effect[] = [];
  private events: Event[] = [];
  private postRollout?: PostRollout;
  private checks?: CheckRequest;
  private requeueAt?: number;

  constructor(private readonly obs: Observed) {
    this.status = { ...obs.status };
  }

  result(): Transition {
    const t: Transition = { status: this.status, effects: this.effects, events: this.events };
    if (this.checks) t.checks = this.checks;
    if (this.postRollout) t.postRollout = this.postRollout;
    if (this.requeueAt !== undefined) t.requeueAt = this.requeueAt;
    return t;
  }

  run(results?: CheckResult[]): void {
    const { obs } = this;
    this.status.observedGeneration = obs.generation;
    if (obs.deleting) return this.terminate();
    if (!obs.target.exists) {
      this.setPhase(this.status.phase ?? 'Initializing', `target not found; waiting for it to be created`);
      return this.requeue(10_000);
    }
    if (obs.analysis.suspend) {
      // Pausing must not make an abort wait: stopping a bad change is always allowed.
      const running = ['Waiting', 'Progressing', 'WaitingPromotion'].includes(this.status.phase ?? '');
      if (running && obs.commands.abort && obs.commands.abort === this.status.pendingRevision) {
        this.effects.push({ type: 'clear-command', command: 'abort' });
        return this.rollback(RollbackCause.Aborted, 'aborted on request (while paused)');
      }
      this.status.message = 'suspended: spec.suspend is true';
      return;
    }
    if (obs.target.configsUnsettled) {
      this.effects.push({ type: 'track-configs' });
      this.requeue(POLL_MS);
    }
    this.noteMissingConfigs();
    this.noteConfigsDeletedInUse();
    const phase = this.status.phase;
    if (!phase || phase === 'Initializing' || !obs.target.managed) return this.initialize();
    if (!obs.hasFinalizer) this.effects.push({ type: 'add-finalizer' });
    // A name the Canary needs is the user's: no run starts or advances (a
    // promotion already written still completes).
    const blocked = [this.noteBlockers(), this.noteAutoscaler()].some(Boolean);
    this.noteHold();
    switch (phase) {
      case 'Initialized':
      case 'Succeeded':
      case 'Failed':
      case 'Terminating':
        if (blocked) return;
        return this.idle(results);
      case 'Waiting':
        if (blocked) return;
        return this.waiting(results);
      case 'Progressing':
      case 'WaitingPromotion':
        if (blocked) return;
        return this.progressing(results);
      case 'Promoting':
        return this.promoting(results);
    }
  }

  // ------------------------------------------------------------ lifecycle

  private initialize(): void {
    this.effects.push({ type: 'add-finalizer' }, { type: 'adopt-target' });
    // The router's objects are made once every name they need is free.
    if (this.obs.blockers.length === 0) this.effects.push({ type: 'ensure-router' });
    const first = !this.status.phase || this.status.phase === 'Initializing';
    if (first && (!this.obs.target.managed || this.obs.target.configsUnsettled)) {
      // Initialized is reported only once the label is seen on the target:
      // from then on the webhook holds every change, so a user (or a test)
      // who waits for it and then applies is always canaried.
      this.setPhase('Initializing', 'adopting the target: labelling it managed');
      return this.requeue(POLL_MS);
    }
    if (first) {
      this.status.lastPromotedRevision = this.obs.target.liveRevision;
      const live = this.obs.target.liveRevision;
      this.setPhase('Initialized', `adopted; revision ${live} is live`);
      this.setPromoted('True', ConditionReason.Initialized, 'the live spec is the promoted one');
      this.event('Normal', EventReason.Initialized, `target adopted; revision ${live} is live`, live);
    }
    // Otherwise the label is missing from what the cache shows: usually our own
    // adoption write not seen yet; the effect is a no-op once it is.
  }

  private terminate(): void {
    if (this.status.phase !== 'Terminating') {
      this.setPhase('Terminating', 'the Canary is being deleted: traffic back to the primary');
      this.event('Normal', EventReason.Terminating, 'routing all traffic to the primary and removing companions', this.status.pendingRevision ?? this.status.lastPromotedRevision ?? '');
    }
    this.effects.push(
      { type: 'set-weight', weight: 0, revision: this.status.pendingRevision ?? '' },
      { type: 'delete-canary-copy' },
      { type: 'remove-router' },
      { type: 'release-target' },
      { type: 'remove-finalizer' },
    );
  }

  /** No rollout running: start one when a new revision is pending. */
  private idle(results?: CheckResult[]): void {
    const { target, commands } = this.obs;
    const pending = target.pendingRevision;
    // Re-assert the idle state: after a crash between a status write and its
    // effects, this is what finishes a rollback, a cancel or a promotion.
    if (this.obs.routedWeight > 0 || (this.obs.routedMirror ?? 0) > 0) this.effects.push({ type: 'set-weight', weight: 0, revision: this.status.pendingRevision ?? '' });
    if ((this.obs.copy.exists && this.obs.copy.replicas > 0) || (this.obs.copy.configCopies ?? 0) > 0) this.effects.push({ type: 'scale-canary-to-zero' });
    if (!pending) {
      this.noteBypass();
      return;
    }
    if (this.status.phase === 'Failed' && pending === this.status.failedRevision) {
      if (commands.retry !== pending) return; // a failed revision waits for a new one or an explicit retry
      this.effects.push({ type: 'clear-command', command: 'retry' });
      this.clearCommandsFor(pending);
      this.event('Normal', EventReason.Retry, `retrying revision ${pending} on request`, pending);
    }
    if (this.held(`revision ${pending} waits to start`)) return;
    if (this.waitsForUpstream(pending)) return;
    this.start(pending, results);
  }

  private start(revision: string, results?: CheckResult[]): void {
    const a = this.obs.analysis;
    if (a.gates['confirm-rollout'].length > 0) {
      if (!results) {
        this.checks = { gates: ['confirm-rollout'], metrics: false };
        return;
      }
      const waiting = results.filter((r) => !r.passed);
      if (waiting.length > 0) {
        // Announced once per wait: asking the gate again each interval is not news.
        const alreadyWaiting = this.status.phase === 'Waiting' && this.status.pendingRevision === revision;
        this.status.pendingRevision = revision;
        this.status.lastStepTime = iso(this.obs.now);
        this.setPhase('Waiting', `waiting for approval: ${waiting.map((r) => r.message).join('; ')}`);
        this.setPromoted('Unknown', ConditionReason.Waiting, `revision ${revision} waits for confirm-rollout`);
        if (!alreadyWaiting) this.event('Normal', EventReason.Waiting, `revision ${revision} waits for confirm-rollout: ${waiting[0]?.message}`, revision);
        return this.requeue(a.intervalMs);
      }
    }
    this.status.pendingRevision = revision;
    this.status.lastAppliedRevision = revision;
    const identity = identityOf(this.obs.identityMode, this.factsOf(revision));
    if (identity) this.status.changeIdentity = identity;
    // A copy that shares the user's Service serves from its first ready Pod, so its weight starts at the first step.
    this.status.canaryWeight = this.firstCopyWeight();
    this.status.failedChecks = 0;
    this.status.iterations = 0;
    this.status.progressStartedAt = iso(this.obs.now);
    // The first step is due an interval from now: every weight, the first
    // included, is held for at least one interval before the run moves on, so
    // even a Canary with no checks is never promoted the moment its copy is ready.
    this.status.lastStepTime = iso(this.obs.now);
    delete this.status.failedRevision;
    delete this.status.preRolloutPassed;
    this.status.metrics = [];
    this.setPhase('Progressing', `starting revision ${revision}`);
    this.setPromoted('Unknown', ConditionReason.Progressing, `revision ${revision} is being analysed`);
    this.event('Normal', EventReason.Started, `new revision ${revision} detected; starting ${a.strategy} analysis`, revision);
    this.effects.push({ type: 'set-weight', weight: 0, revision }, { type: 'ensure-canary-copy', revision, weight: this.firstCopyWeight() });
    this.requeue(POLL_MS);
  }

  /**
   * True while the run has taken no analysis step and counted nothing since
   * it started: a change arriving now (the ConfigMap of the same `kubectl
   * apply`, a few milliseconds after its Deployment) joins it.
   */
  private joinable(): boolean {
    const s = this.status;
    return this.status.phase === 'Progressing' && !!s.progressStartedAt && s.lastStepTime === s.progressStartedAt && (s.iterations ?? 0) === 0 && (s.failedChecks ?? 0) === 0 && !s.preRolloutPassed;
  }

  /** The run goes on with the newer revision: no second start, its first step due an interval from now. */
  private join(running: string, pending: string): void {
    this.status.pendingRevision = pending;
    this.status.lastAppliedRevision = pending;
    const identity = identityOf(this.obs.identityMode, this.factsOf(pending));
    if (identity) this.status.changeIdentity = identity;
    this.status.progressStartedAt = iso(this.obs.now);
    this.status.lastStepTime = iso(this.obs.now);
    this.setPhase('Progressing', `starting revision ${pending}`);
    this.setPromoted('Unknown', ConditionReason.Progressing, `revision ${pending} is being analysed`);
    this.event('Normal', EventReason.Joined, `revision ${pending} joins the run of ${running} before its first step (changes applied together)`, pending);
    this.effects.push({ type: 'ensure-canary-copy', revision: pending, weight: this.currentCopyWeight() }, { type: 'set-weight', weight: this.status.canaryWeight ?? 0, revision: pending });
    this.requeue(POLL_MS);
  }

  /**
   * Keeps the ConfigMissing condition true to the observed configs (a
   * Warning Event when configs go missing or the set changes). A missing
   * config holds nothing: the copy then never becomes ready, and the
   * progress deadline rolls the run back.
   */
  private noteMissingConfigs(): void {
    const missing = this.obs.missingConfigs ?? [];
    const current = this.status.conditions?.find((c) => c.type === ConditionType.ConfigMissing);
    if (missing.length === 0) {
      if (current?.status === 'True') this.setCondition(ConditionType.ConfigMissing, 'False', ConditionReason.ConfigsFound, 'every ConfigMap and Secret the pod template needs exists');
      return;
    }
    const message = `the pod template needs ${missing.join(', ')}, which ${missing.length === 1 ? 'does' : 'do'} not exist (create ${missing.length === 1 ? 'it' : 'them'}, or mark the reference optional: true)`;
    const revision = this.obs.target.pendingRevision ?? this.status.pendingRevision ?? this.obs.target.liveRevision;
    if (current?.status !== 'True' || current.message !== message) this.event('Warning', EventReason.ConfigMissing, message, revision);
    this.setCondition(ConditionType.ConfigMissing, 'True', ConditionReason.ConfigMissing, message);
    this.requeue(10_000);
  }

  /**
   * Keeps the ConfigDeletedInUse condition true to the observed configs (a
   * Warning Event when the set changes): someone (typically a GitOps tool's
   * prune) wants a config gone that the live primary still mounts; it stays
   * until the live template stops referencing it.
   */
  private noteConfigsDeletedInUse(): void {
    const kept = this.obs.configsDeletedInUse ?? [];
    const current = this.status.conditions?.find((c) => c.type === ConditionType.ConfigDeletedInUse);
    if (kept.length === 0) {
      if (current?.status === 'True') this.setCondition(ConditionType.ConfigDeletedInUse, 'False', ConditionReason.ConfigsNotDeleted, 'no config the live primary mounts is being deleted');
      return;
    }
    const one = kept.length === 1;
    const message = `${kept.join(', ')} ${one ? 'is' : 'are'} being deleted while the live primary still mounts ${one ? 'it' : 'them'}: the finalizer canarygate.dev/in-use keeps ${one ? 'it' : 'them'} until the live pod template no longer references ${one ? 'it' : 'them'} (promote a change that drops the reference, or restore the object in git)`;
    const revision = this.obs.target.pendingRevision ?? this.status.pendingRevision ?? this.obs.target.liveRevision;
    if (current?.status !== 'True' || current.message !== message) this.event('Warning', EventReason.ConfigDeletedInUse, message, revision);
    this.setCondition(ConditionType.ConfigDeletedInUse, 'True', ConditionReason.ConfigDeletedInUse, message);
  }

  /** The weight the canary copy is first sized for: a copy that shares the user's Service carries traffic from its first Pod, so it starts at the first step. */
  private firstCopyWeight(): number {
    const a = this.obs.analysis;
    return a.strategy === 'canary' && this.obs.router.copySharesUserService ? (a.weights[0] ?? 0) : 0;
  }

  private waiting(results?: CheckResult[]): void {
    // Nothing runs while a change waits: after a crash between the status
    // write and its effects, this finishes stopping a run it replaced.
    if (this.obs.routedWeight > 0 || (this.obs.routedMirror ?? 0) > 0) this.effects.push({ type: 'set-weight', weight: 0, revision: this.status.pendingRevision ?? '' });
    if (this.obs.copy.exists && this.obs.copy.replicas > 0) this.effects.push({ type: 'scale-canary-to-zero' });
    const pending = this.obs.target.pendingRevision;
    if (!pending) return this.cancel();
    if (this.obs.commands.abort === pending) {
      this.effects.push({ type: 'clear-command', command: 'abort' });
      return this.rollback(RollbackCause.Aborted, 'aborted on request');
    }
    if (this.held(`revision ${pending} waits to start`)) return;
    if (this.waitsForUpstream(pending)) return;
    if (!results && !this.due()) return;
    this.status.lastStepTime = results ? iso(this.obs.now) : this.status.lastStepTime;
    this.start(pending, results);
  }

  private progressing(results?: CheckResult[]): void {
    const { obs } = this;
    const a = obs.analysis;
    const pending = obs.target.pendingRevision;
    const revision = this.status.pendingRevision ?? '';
    if (!pending) {
      // Already live: a promotion this status did not record (it cannot be a withdrawal).
      if (obs.target.liveRevision === revision) return this.finalise();
      return this.cancel();
    }
    if (pending !== revision) {
      if (this.replacedByWaitingChange(revision, pending)) return;
      if (this.joinable()) return this.join(revision, pending);
      this.event('Normal', EventReason.Restarted, `revision ${pending} replaces ${revision}; analysis restarts from zero weight`, pending);
      return this.start(pending, results);
    }
    if (obs.commands.abort === revision) {
      this.effects.push({ type: 'clear-command', command: 'abort' });
      return this.rollback(RollbackCause.Aborted, 'aborted on request');
    }
    const shared = sharedConfigVerdict(obs.sharedConfigs);
    if (shared.action === 'rollback') return this.rollback(RollbackCause.SharedConfigFailed, shared.message);

    // A copy scaled to zero (after a rollback of the same revision) is not ready, whatever its status says.
    const copyReady = obs.copy.exists && obs.copy.revision === revision && obs.copy.ready && obs.copy.replicas > 0;
    // Desired state, re-asserted every time (the executor writes only on a
    // difference): a crash between a status write and its effects heals here.
    // A/B routes the matching requests (weight 100 of them) once the copy is ready.
    const routed = a.strategy === 'ab' ? (copyReady ? 100 : 0) : (this.status.canaryWeight ?? 0);
    // Mirroring (analysis.mirror) while the ready canary has no weight of its
    // own: a blue/green run's whole analysis, a canary run's first interval.
    const mirror = a.mirrorPercent > 0 && copyReady && routed === 0 && a.strategy !== 'ab' ? a.mirrorPercent : 0;
    this.effects.push(
      { type: 'ensure-canary-copy', revision, weight: this.currentCopyWeight() },
      { type: 'set-weight', weight: routed, revision, ...(mirror ? { mirror } : {}) },
    );
    // The deadline runs from the last step that changed something, not from the
    // start of the run: a long, healthy canary must not time out.
    const started = Math.max(Date.parse(this.status.progressStartedAt ?? '') || 0, Date.parse(this.status.lastStepTime ?? '') || 0) || obs.now;
    if (!copyReady || !obs.target.ready) {
      if (obs.now - started > a.progressDeadlineMs) {
        const what = !copyReady ? 'the canary copy' : 'the primary';
        return this.rollback(RollbackCause.ProgressDeadlineExceeded, `${what} did not become ready within ${a.progressDeadlineMs / 1000}s`);
      }
      this.status.message = !copyReady ? 'waiting for the canary copy to be ready' : 'waiting for the primary to be ready';
      return this.requeue(POLL_MS);
    }
    // A freeze or a closed window: the run keeps its step (its split stays
    // in force above) and runs no checks; an abort still works (above).
    if (this.held(`revision ${revision} holds at ${a.strategy === 'canary' ? `weight ${this.status.canaryWeight ?? 0}` : `iteration ${this.status.iterations ?? 0}`}`)) return;
    // Passed and waiting for the other consumers of a shared config: promoted
    // as soon as they all passed, without waiting for the next step.
    if (waitsForSharedConfig(this.status) && shared.action === 'promote') return this.promoteShared();
    if (!results && !this.due()) return;
    if (a.skipAnalysis) {
      this.event('Normal', EventReason.AnalysisSkipped, 'spec.skipAnalysis is true: promoting without analysis', revision);
      return this.promoteShared();
    }

    const final = this.atFinalStep();
    if (!results) {
      const gates: WebhookType[] = ['rollback', 'rollout'];
      if (!this.status.preRolloutPassed) gates.unshift('pre-rollout');
      if (final) gates.push('confirm-promotion');
      else if (a.strategy === 'canary') gates.push('confirm-traffic-increase');
      this.checks = { gates: gates.filter((g) => a.gates[g].length > 0), metrics: a.hasMetrics };
      if (this.checks.gates.length === 0 && !this.checks.metrics) delete this.checks;
      else return;
    }
    const all = results ?? [];
    this.status.lastStepTime = iso(obs.now);
    this.requeue(a.intervalMs);
    this.recordMetrics(all);

    const rollbackGate = all.find((r) => r.gateType === 'rollback' && r.passed);
    if (rollbackGate) return this.rollback(RollbackCause.RollbackGate, `rollback gate ${rollbackGate.name} asked for a rollback`);

    const analysed = all.filter((r) => r.gateType === undefined || r.gateType === 'pre-rollout' || r.gateType === 'rollout');
    const failed = analysed.filter((r) => !r.passed && !r.held);
    if (failed.length > 0) {
      this.status.failedChecks = (this.status.failedChecks ?? 0) + 1;
      const why = failed.map((r) => r.message).join('; ');
      this.event('Warning', EventReason.CheckFailed, `check failed (${this.status.failedChecks}/${a.threshold}): ${why}`, revision);
      if (this.status.failedChecks >= a.threshold) return this.rollback(RollbackCause.FailedChecks, `${this.status.failedChecks} failed checks: ${why}`);
      this.status.message = `check failed: ${why}`;
      return;
    }
    if (analysed.some((r) => r.gateType === 'pre-rollout')) this.status.preRolloutPassed = true;
    const held = analysed.filter((r) => r.held);
    if (held.length > 0) {
      this.status.message = `holding: ${held.map((r) => r.message).join('; ')}`;
      this.event('Normal', EventReason.Holding, this.status.message, revision);
      return;
    }
    const waiting = (type: WebhookType) => all.filter((r) => r.gateType === type && !r.passed);
    if (!final) {
      const notYet = waiting('confirm-traffic-increase');
      if (notYet.length > 0) {
        this.status.message = `waiting for confirm-traffic-increase: ${notYet.map((r) => r.message).join('; ')}`;
        return;
      }
      return this.advance();
    }
    const notConfirmed = waiting('confirm-promotion');
    if (notConfirmed.length > 0) {
      if (this.status.phase !== 'WaitingPromotion') {
        this.setPhase('WaitingPromotion', `waiting for confirm-promotion: ${notConfirmed.map((r) => r.message).join('; ')}`);
        this.event('Normal', EventReason.WaitingPromotion, `${revision} passed analysis and waits for confirm-promotion`, revision);
      }
      return;
    }
    if (this.obs.commands.promote === this.status.pendingRevision) {
      this.effects.push({ type: 'clear-command', command: 'promote' });
      this.event('Normal', EventReason.PromoteRequested, `promoting ${revision} on request; remaining steps skipped`, revision);
    }
    this.promoteShared();
  }

  /**
   * The run passed: promoted, unless it shares pending config data with
   * other consumers that have not all passed. Then it waits in
   * WaitingPromotion (condition SharedConfig=False, the status message says
   * for whom; an Event when that changes) and looks again soon; its checks
   * keep running each interval meanwhile.
   */
  private promoteShared(): void {
    const revision = this.status.pendingRevision ?? '';
    const verdict = sharedConfigVerdict(this.obs.sharedConfigs);
    if (verdict.action === 'rollback') return this.rollback(RollbackCause.SharedConfigFailed, verdict.message);
    const current = this.status.conditions?.find((c) => c.type === ConditionType.SharedConfig);
    if (verdict.action === 'wait') {
      const message = `${revision} passed analysis and waits: ${verdict.message}`;
      if (!waitsForSharedConfig(this.status) || current?.message !== verdict.message) this.event('Normal', EventReason.WaitingPromotion, message, revision);
      this.setPhase('WaitingPromotion', message);
      this.setCondition(ConditionType.SharedConfig, 'False', ConditionReason.SharedConfigWaiting, verdict.message);
      return this.requeue(POLL_MS);
    }
    if (current) this.setCondition(ConditionType.SharedConfig, 'True', ConditionReason.SharedConfigPassed, `every consumer of the shared configs passed ${revision}'s change`);
    this.beginPromotion();
  }

  /** True when a passing step now leads to promotion rather than another step. */
  private atFinalStep(): boolean {
    const a = this.obs.analysis;
    if (this.obs.commands.promote === this.status.pendingRevision) return true;
    if (a.strategy === 'canary') return (this.status.canaryWeight ?? 0) >= a.maxWeight;
    return (this.status.iterations ?? 0) + 1 >= a.iterations;
  }

  /** Checks passed this interval and more steps remain: one step forward. */
  private advance(): void {
    const a = this.obs.analysis;
    const revision = this.status.pendingRevision ?? '';
    if (a.strategy === 'canary') {
      const weight = this.status.canaryWeight ?? 0;
      const next = a.weights.find((w) => w > weight) ?? a.maxWeight;
      this.status.canaryWeight = next;
      this.effects.push({ type: 'ensure-canary-copy', revision, weight: next }, { type: 'set-weight', weight: next, revision });
      this.setPhase('Progressing', `weight ${next}/${a.maxWeight}`);
      this.event('Normal', EventReason.WeightAdvanced, `advance ${revision} canary weight to ${next}`, revision);
      return;
    }
    const iterations = (this.status.iterations ?? 0) + 1;
    this.status.iterations = iterations;
    this.setPhase('Progressing', `iteration ${iterations}/${a.iterations}`);
    this.event('Normal', EventReason.Iteration, `${revision}: iteration ${iterations}/${a.iterations} passed`, revision);
  }

  private beginPromotion(): void {
    const revision = this.status.pendingRevision ?? '';
    this.setPhase('Promoting', `promoting ${revision} to the primary`);
    this.event('Normal', EventReason.Promoting, `copying revision ${revision} to the live object`, revision);
    this.effects.push({ type: 'promote-target', revision });
    this.requeue(POLL_MS);
  }

  private promoting(results?: CheckResult[]): void {
    const { target } = this.obs;
    const revision = this.status.pendingRevision ?? '';
    if (target.liveRevision !== revision) {
      if (target.pendingRevision !== revision) {
        // The change was withdrawn or replaced before the promotion write landed.
        if (!target.pendingRevision) return this.cancel();
        if (this.replacedByWaitingChange(revision, target.pendingRevision)) return;
        return this.start(target.pendingRevision, results);
      }
      this.effects.push({ type: 'promote-target', revision });
      return this.requeue(POLL_MS);
    }
    if (!target.ready) {
      const started = Date.parse(this.status.lastTransitionTime ?? '') || this.obs.now;
      if (this.obs.now - started > this.obs.analysis.progressDeadlineMs) {
        // The promoted spec is live and cannot be undone by routing; say so
        // loudly, once: the message in the status records that it was said.
        const late = `the primary did not become ready with ${revision} within the progress deadline; the canary keeps serving`;
        if (this.status.message !== late) this.event('Warning', EventReason.PrimaryNotReady, late, revision);
        this.status.message = late;
      } else {
        this.status.message = 'waiting for the primary to roll out the promoted spec';
      }
      return this.requeue(POLL_MS);
    }
    if (this.stepsBackToPrimary()) return;
    this.finalise();
  }

  /**
   * analysis.stepWeightPromotion, on a router with exact weights: the primary
   * now runs the promoted spec, and the copy's weight goes down by one step
   * per interval instead of all at once; at 0 the run finalises. True while
   * steps remain. The weight in force is re-asserted every sync, so a
   * process killed between the status write and the router write resumes.
   */
  private stepsBackToPrimary(): boolean {
    const step = this.obs.analysis.stepWeightPromotion;
    const weight = this.status.canaryWeight ?? 0;
    if (!(step > 0) || this.obs.router.copySharesUserService || weight <= 0) return false;
    const revision = this.status.pendingRevision ?? '';
    if (!this.due()) {
      this.effects.push({ type: 'set-weight', weight, revision });
      return true;
    }
    const next = Math.max(0, weight - step);
    this.status.lastStepTime = iso(this.obs.now);
    if (next === 0) return false;
    this.status.canaryWeight = next;
    this.effects.push({ type: 'set-weight', weight: next, revision });
    this.status.message = `promoting ${revision}: primary weight ${100 - next}`;
    this.event('Normal', EventReason.PromotionStep, `${revision} is live on the primary; primary weight ${100 - next}, canary ${next}`, revision);
    this.requeue(this.obs.analysis.intervalMs);
    return true;
  }

  private finalise(): void {
    const revision = this.status.pendingRevision ?? '';
    this.clearCommandsFor(revision);
    this.effects.push({ type: 'set-weight', weight: 0, revision }, { type: 'scale-canary-to-zero' });
    this.postRollout = { revision };
    this.status.canaryWeight = 0;
    this.status.lastPromotedRevision = revision;
    this.status.lastPromotion = { ...this.factsOf(revision), at: iso(this.obs.now) };
    delete this.status.pendingRevision;
    this.setPhase('Succeeded', `revision ${revision} promoted`);
    this.setPromoted('True', ConditionReason.Succeeded, `revision ${revision} promoted`);
    this.event('Normal', EventReason.Succeeded, `promotion of ${revision} completed`, revision);
  }

  private rollback(cause: RollbackCause, why: string): void {
    const revision = this.status.pendingRevision ?? this.obs.target.pendingRevision ?? '';
    this.clearCommandsFor(revision);
    this.effects.push({ type: 'set-weight', weight: 0, revision }, { type: 'scale-canary-to-zero' });
    this.postRollout = { revision };
    this.status.canaryWeight = 0;
    this.status.failedRevision = revision;
    this.status.lastFailure = { ...this.factsOf(revision), at: iso(this.obs.now) };
    delete this.status.pendingRevision;
    this.setPhase('Failed', `revision ${revision} rolled back: ${why}`);
    this.setPromoted('False', cause, `revision ${revision} rolled back: ${why}`);
    this.event('Warning', EventReason.RolledBack, `rolling back ${revision}: ${why}`, revision, cause);
  }

  /** The pending revision was withdrawn (the user went back to the stable spec). */
  private cancel(): void {
    const revision = this.status.pendingRevision ?? '';
    this.clearCommandsFor(revision);
    this.effects.push({ type: 'set-weight', weight: 0, revision }, { type: 'scale-canary-to-zero' });
    this.status.canaryWeight = 0;
    delete this.status.pendingRevision;
    this.setPhase('Initialized', `rollout of ${revision} cancelled: the pending revision was withdrawn`);
    this.setPromoted('True', ConditionReason.Cancelled, `the stable revision ${this.obs.target.liveRevision} is live`);
    this.event('Normal', EventReason.Cancelled, `pending revision ${revision} withdrawn; traffic back to the primary`, revision);
  }

  /**
   * Reports objects that hold names the Canary needs (the condition
   * NameTaken, and a Warning Event when it appears or changes); true while
   * there are any.
   */
  private noteBlockers(): boolean {
    const problem = this.obs.blockers.length > 0 ? this.obs.blockers.join('; ') : undefined;
    return this.noteProblem(problem, { type: ConditionType.NameTaken, problem: 'True', reason: ConditionReason.NameTaken, event: EventReason.NameTaken }, { reason: ConditionReason.NamesFree, message: 'every name the Canary needs is free' });
  }

  /** Reports a spec.autoscalerRef naming no HPA (condition AutoscalerReady=False, a Warning Event); true while it does. */
  private noteAutoscaler(): boolean {
    return this.noteProblem(this.obs.autoscalerMissing, { type: ConditionType.AutoscalerReady, problem: 'False', reason: ConditionReason.AutoscalerNotFound, event: EventReason.AutoscalerNotFound }, { reason: ConditionReason.AutoscalerFound, message: 'the HorizontalPodAutoscaler of spec.autoscalerRef exists' });
  }

  /**
   * A condition that holds every run while `problem` is set: set with a
   * Warning Event when the problem appears or changes, turned back once it
   * is gone (a condition never set stays absent). True while it holds.
   */
  private noteProblem(problem: string | undefined, bad: { type: ConditionType; problem: Condition['status']; reason: ConditionReason; event: EventReason }, good: { reason: ConditionReason; message: string }): boolean {
    const current = this.status.conditions?.find((c) => c.type === bad.type);
    if (problem === undefined) {
      if (current?.status === bad.problem) this.setCondition(bad.type, bad.problem === 'True' ? 'False' : 'True', good.reason, good.message);
      return false;
    }
    const revision = this.obs.target.pendingRevision ?? this.status.pendingRevision ?? this.obs.target.liveRevision;
    if (current?.status !== bad.problem || current.message !== problem) this.event('Warning', bad.event, problem, revision);
    this.setCondition(bad.type, bad.problem, bad.reason, problem);
    this.status.message = `held: ${problem}`;
    this.requeue(10_000);
    return true;
  }

  /**
   * Keeps the Held condition true to the observed hold (an Event when a hold
   * begins or changes, and when it ends), on every Canary in its scope,
   * running or not.
   */
  private noteHold(): void {
    const hold = this.obs.hold;
    const current = this.status.conditions?.find((c) => c.type === ConditionType.Held);
    const revision = this.obs.target.pendingRevision ?? this.status.pendingRevision ?? this.obs.target.liveRevision;
    if (!hold) {
      if (current?.status === 'True') {
        this.setCondition(ConditionType.Held, 'False', ConditionReason.Resumed, 'no freeze and inside a promotion window');
        this.event('Normal', EventReason.Resumed, `the hold ended (${current.reason}): runs go on`, revision);
      }
      return;
    }
    const reason = ConditionReason[hold.reason];
    if (current?.status !== 'True' || current.reason !== reason || current.message !== hold.message) {
      this.event(hold.reason === 'InvalidWindow' ? 'Warning' : 'Normal', EventReason.Held, hold.message, revision);
    }
    this.setCondition(ConditionType.Held, 'True', reason, hold.message);
  }

  /**
   * True when a hold stops the run here: says what holds and until when, and
   * comes back when the window opens (a lifted freeze comes back through the
   * namespace's informer event at once).
   */
  private held(what: string): boolean {
    const hold = this.obs.hold;
    if (!hold) return false;
    this.status.message = `${what}: ${hold.message}`;
    const wait = hold.untilMs !== undefined ? Math.max(1000, hold.untilMs - this.obs.now) : 60_000;
    this.requeue(Math.min(wait, 10 * 60_000));
    return true;
  }

  /** The facts of `revision`: the pending change's or the live one's, whichever it is. */
  private factsOf(revision: string): ChangeFacts {
    const { pending, live } = this.obs.changes ?? {};
    if (pending?.revision === revision) return pending;
    if (live?.revision === revision) return live;
    return { revision };
  }

  /**
   * A newer change replaced the one running, and an upstream stage has not
   * promoted the newer one: the run stops (traffic back to the primary, the
   * copy to zero) and the newer change waits like any other.
   */
  private replacedByWaitingChange(running: string, pending: string): boolean {
    if (!this.obs.hasUpstream || !this.obs.upstream) return false;
    this.effects.push({ type: 'set-weight', weight: 0, revision: running }, { type: 'scale-canary-to-zero' });
    this.status.canaryWeight = 0;
    this.event('Normal', EventReason.Restarted, `revision ${pending} replaces ${running}, which stops; ${pending} waits for its upstream stages`, pending);
    return this.waitsForUpstream(pending);
  }

  /**
   * True while an upstream stage has not promoted the pending change: the
   * Canary waits (phase Waiting, condition UpstreamReady=False with why,
   * an Event when the reason changes) and looks again.
   */
  private waitsForUpstream(pending: string): boolean {
    if (!this.obs.hasUpstream) return false;
    const block = this.obs.upstream;
    const current = this.status.conditions?.find((c) => c.type === ConditionType.UpstreamReady);
    if (!block) {
      if (current?.status !== 'True') this.setCondition(ConditionType.UpstreamReady, 'True', ConditionReason.UpstreamPromoted, `every upstream stage promoted revision ${pending}'s change`);
      return false;
    }
    const reason = ConditionReason[block.reason];
    if (current?.status !== 'False' || current.reason !== reason || this.status.pendingRevision !== pending) {
      this.event(block.reason === 'UpstreamFailed' || block.reason === 'UpstreamUnreachable' ? 'Warning' : 'Normal', EventReason.WaitingUpstream, `revision ${pending}: ${block.message}`, pending);
    }
    this.setCondition(ConditionType.UpstreamReady, 'False', reason, block.message);
    this.status.pendingRevision = pending;
    const identity = identityOf(this.obs.identityMode, this.factsOf(pending));
    if (identity) this.status.changeIdentity = identity;
    this.setPhase('Waiting', `revision ${pending} ${block.message}`);
    const wait = block.untilMs !== undefined ? Math.max(1000, block.untilMs - this.obs.now) : 15_000;
    this.requeue(Math.min(wait, 60_000));
    return true;
  }

  /** The live spec changed with no pending revision: the webhook was bypassed. */
  private noteBypass(): void {
    const live = this.obs.target.liveRevision;
    const promoted = this.status.lastPromotedRevision;
    if (!promoted || live === promoted) return;
    if (this.obs.target.configsAdopted) {
      // A config created (or first referenced) since: its data is live, and nothing was held from it.
      this.status.lastPromotedRevision = live;
      return;
    }
    this.status.lastPromotedRevision = live;
    this.status.bypassedRevision = live;
    this.event('Warning', EventReason.WebhookBypassed, `the live spec changed to ${live} without analysis (was ${promoted}): the admission webhook was bypassed or down`, live);
    this.setCondition(ConditionType.Bypassed, 'True', ConditionReason.LiveSpecChanged, `revision ${live} went live without analysis`);
  }

  // ------------------------------------------------------------ helpers

  /** A promote/abort of a finished run must not act on a later run of the same revision. */
  private clearCommandsFor(revision: string): void {
    for (const command of ['promote', 'abort'] as const) {
      if (this.obs.commands[command] !== revision) continue;
      if (this.effects.some((e) => e.type === 'clear-command' && e.command === command)) continue;
      this.effects.push({ type: 'clear-command', command });
    }
  }

  private currentCopyWeight(): number {
    const a = this.obs.analysis;
    if (a.strategy !== 'canary') return 0;
    const w = this.status.canaryWeight ?? 0;
    return this.obs.router.copySharesUserService ? Math.max(w, a.weights[0] ?? 0) : w;
  }

  private due(): boolean {
    const last = Date.parse(this.status.lastStepTime ?? '');
    if (Number.isNaN(last)) return true;
    const at = last + this.obs.analysis.intervalMs;
    if (this.obs.now >= at) return true;
    this.requeueAt = at;
    return false;
  }

  private requeue(ms: number): void {
    const at = this.obs.now + ms;
    if (this.requeueAt === undefined || at < this.requeueAt) this.requeueAt = at;
  }

  private setPhase(phase: CanaryPhase, message: string): void {
    if (this.status.phase !== phase) this.status.lastTransitionTime = iso(this.obs.now);
    this.status.phase = phase;
    this.status.message = message;
  }

  private setPromoted(status: Condition['status'], reason: ConditionReason, message: string): void {
    this.setCondition(ConditionType.Promoted, status, reason, message);
    this.setCondition(ConditionType.Ready, status === 'True' ? 'True' : 'False', reason, message);
    this.setCondition(ConditionType.Stalled, status === 'False' ? 'True' : 'False', reason, message);
  }

  private setCondition(type: ConditionType, status: Condition['status'], reason: ConditionReason, message: string): void {
    const conditions = [...(this.status.conditions ?? [])];
    const i = conditions.findIndex((c) => c.type === type);
    const prev = i >= 0 ? conditions[i] : undefined;
    const next: Condition = {
      type,
      status,
      reason,
      message,
      observedGeneration: this.obs.generation,
      lastTransitionTime: prev && prev.status === status ? prev.lastTransitionTime : iso(this.obs.now),
    };
    if (i >= 0) conditions[i] = next;
    else conditions.push(next);
    this.status.conditions = conditions;
  }

  private recordMetrics(results: CheckResult[]): void {
    const byName = new Map((this.status.metrics ?? []).map((m) => [m.name, m]));
    for (const r of results) if (r.metric) byName.set(r.metric.name, r.metric);
    this.status.metrics = [...byName.values()];
  }

  private event(type: Event['type'], reason: EventReason, message: string, revision: string, cause?: RollbackCause): void {
    this.events.push({ type, reason, message, revision, ...(cause ? { cause } : {}) });
  }
}

function iso(ms: number): string {
  return new Date(ms).toISOString();
}
