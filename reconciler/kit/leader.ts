// Leader election on a coordination.k8s.io/v1 Lease, so that of several
// reconciler replicas exactly one acts at a time.
//
// Safety rules, in order of importance:
// - Remote clocks are never trusted. A lease held by someone else counts as
//   expired only when its record (holder, renewTime, ...) has not changed for
//   leaseDuration as measured by OUR monotonic clock since WE first saw that
//   record.
// - A leader stops acting before anyone else may start: its signal is aborted
//   the moment a renewal is refused (409, or the Lease names someone else) or
//   when renewDeadline has passed since the last renewal that succeeded,
//   counted from when that renewal was SENT (others may have observed it as
//   early as that). renewDeadline < leaseDuration leaves the margin.
// - isLeader() re-checks the deadline against the clock, so effect code that
//   calls it right before each write is safe even if the timer that aborts
//   the signal runs late (a blocked event loop).
// - Writes use the resourceVersion read just before (optimistic concurrency):
//   of two candidates, one gets 409.
// After losing, the elector goes back to being a candidate instead of
// exiting: a crash loop on lost leadership (Flagger #638) helps nobody.

import { performance } from 'node:perf_hooks';
import * as k8s from '@kubernetes/client-node';
import { pino, type Logger } from 'pino';
import { errorMessage, requestTimeout, statusCode } from '../../core/api/client.js';

export interface LeaderElectorOptions {
  kubeConfig: k8s.KubeConfig;
  /** Lease name and namespace. */
  name: string;
  namespace: string;
  /** Unique per process (e.g. pod name + random suffix). */
  identity: string;
  /** How long a lease is valid without renewal. Default 15. */
  leaseDurationSeconds?: number;
  /** A leader that could not renew for this long stops leading. Default 10 s. */
  renewDeadlineMs?: number;
  /** Interval between attempts (renewals and candidate polls). Default 2 s. */
  retryPeriodMs?: number;
  /** Give the lease up on stop() so that another replica takes over at once. Default true. */
  releaseOnStop?: boolean;
  /**
   * Consulted before taking a Lease this elector does not hold (creating it,
   * or taking it over once expired): false keeps it a candidate. Shards use
   * it so that a replica takes another's shard only while that one is gone.
   */
  mayAcquire?: () => boolean;
  /**
   * Consulted after each renewal: true ends the term and releases the Lease
   * at once, so that the replica it belongs to takes it (a shard handed back).
   * Pair it with mayAcquire, or the elector takes the released Lease back.
   */
  shouldYield?: () => boolean;
  /**
   * Called on becoming leader. The signal aborts the moment leadership is
   * lost or stop() is called; work must stop then. A returned promise is
   * awaited (bounded) before the lease is released.
   */
  onStartedLeading: (signal: AbortSignal) => void | Promise<void>;
  /** Called once after each leadership term ends (after the signal was aborted). */
  onStoppedLeading?: () => void;
  /** Called when the observed holder changes ('' when nobody holds it). */
  onNewLeader?: (identity: string) => void;
  logger?: Logger;
}

export interface LeaderStats {
  isLeader: boolean;
  /** Holder last observed on the Lease ('' for none). */
  leader: string;
  /** Times this elector became leader. */
  acquisitions: number;
  /** Times this elector stopped leading (lost or stopped). */
  losses: number;
  /** Observed changes of holder, any identity (leader transitions). */
  transitions: number;
}

type Attempt = 'acquired' | 'held-by-other' | 'conflict' | 'error';

/** metav1.MicroTime needs exactly six fractional digits; Date#toISOString has three. */
export function microTime(d: Date = new Date()): string {
  return d.toISOString().replace(/\.(\d{3})Z$/, '.$1000Z');
}

const now = () => performance.now();

export class LeaderElector {
  private readonly api: k8s.CoordinationV1Api;
  private readonly o: Required<Omit<LeaderElectorOptions, 'kubeConfig' | 'onStoppedLeading' | 'onNewLeader' | 'logger' | 'mayAcquire' | 'shouldYield'>> &
    Pick<LeaderElectorOptions, 'onStoppedLeading' | 'onNewLeader' | 'mayAcquire' | 'shouldYield'>;
  private readonly log: Logger;

  private running = false;
  private loopDone: Promise<void> | undefined;
  private wake: (() => void) | undefined;

  // What we last saw on the Lease, and when (our monotonic clock).
  private observedRecord = '';
  private observedAt = 0;
  private observedHolder = '';

  private leading = false;
  /** Monotonic time at which the last successful acquire/renew attempt was sent. */
  private renewedAt = 0;
  /** Monotonic time after which we must consider ourselves deposed. */
  private deadline = 0;
  private deadlineTimer: NodeJS.Timeout | undefined;
  private abort: AbortController | undefined;
  private work: Promise<void> | undefined;
  private stats_ = { acquisitions: 0, losses: 0, transitions: 0 };

  constructor(options: LeaderElectorOptions) {
    const o = {
      name: options.name,
      namespace: options.namespace,
      identity: options.identity,
      leaseDurationSeconds: options.leaseDurationSeconds ?? 15,
      renewDeadlineMs: options.renewDeadlineMs ?? 10_000,
      retryPeriodMs: options.retryPeriodMs ?? 2_000,
      releaseOnStop: options.releaseOnStop ?? true,
      onStartedLeading: options.onStartedLeading,
      onStoppedLeading: options.onStoppedLeading,
      onNewLeader: options.onNewLeader,
      mayAcquire: options.mayAcquire,
      shouldYield: options.shouldYield,
    };
    if (!(o.leaseDurationSeconds >= 1 && Number.isInteger(o.leaseDurationSeconds))) throw new Error('leaseDurationSeconds must be a whole number >= 1');
    if (!(o.renewDeadlineMs < o.leaseDurationSeconds * 1000)) throw new Error('renewDeadlineMs must be shorter than the lease duration');
    // Candidates wait up to 2.2 retry periods (jitter); a leader must get more than one try before its deadline.
    if (!(o.retryPeriodMs * 1.2 < o.renewDeadlineMs)) throw new Error('retryPeriodMs * 1.2 must be shorter than renewDeadlineMs');
    if (!o.identity) throw new Error('identity is required');
    this.o = o;
    this.api = options.kubeConfig.makeApiClient(k8s.CoordinationV1Api);
    this.log = (options.logger ?? pino({ level: 'info' })).child({ lease: `${o.namespace}/${o.name}`, identity: o.identity });
  }

  /** True only while leading and within the renew deadline: check it right before each write. */
  isLeader(): boolean {
    return this.leading && now() < this.deadline;
  }

  /** Holder last observed on the Lease ('' for none). */
  leader(): string {
    return this.observedHolder;
  }

  stats(): LeaderStats {
    return { isLeader: this.isLeader(), leader: this.observedHolder, ...this.stats_ };
  }

  /** Starts campaigning in the background; idempotent. */
  start(): void {
    if (this.running) return;
    this.running = true;
    this.loopDone = this.loop().catch((err: unknown) => this.log.error({ err }, 'leader election loop failed'));
  }

  /**
   * Stops campaigning. A leader first aborts its signal and calls
   * onStoppedLeading, waits (at most renewDeadline) for the work started by
   * onStartedLeading, then releases the lease unless release is false
   * (release: false simulates a crash: the lease simply expires).
   */
  async stop(opts: { release?: boolean } = {}): Promise<void> {
    if (!this.running) return;
    this.running = false;
    this.depose('stopping');
    this.wake?.();
    await this.loopDone;
    // Also when not leading at this instant: an acquisition may have landed while stopping. release() only
    // writes if the Lease names us.
    if (opts.release ?? this.o.releaseOnStop) {
      await this.settleWork();
      await this.release();
    }
  }

  // ------------------------------------------------------------ the loop

  private async loop(): Promise<void> {
    while (this.running) {
      const result = await this.tryAcquireOrRenew();
      if (!this.running) break;
      if (result !== 'acquired') {
        // client-go's jitter: between 1 and 2.2 retry periods, so candidates do not hammer in step.
        await this.sleep(this.o.retryPeriodMs * (1 + Math.random() * 1.2));
        continue;
      }
      await this.lead();
    }
  }

  /** One leadership term: renew every retryPeriod until refused, past the deadline, or stopped. */
  private async lead(): Promise<void> {
    this.leading = true;
    this.stats_.acquisitions++;
    this.deadline = this.renewedAt + this.o.renewDeadlineMs;
    this.armDeadline();
    const abort = new AbortController();
    this.abort = abort;
    this.log.info('became leader');
    this.work = Promise.resolve()
      .then(() => this.o.onStartedLeading(abort.signal))
      .catch((err: unknown) => this.log.error({ err }, 'onStartedLeading failed'));
    while (this.leading && this.running) {
      await this.sleep(this.o.retryPeriodMs);
      if (!this.leading || !this.running) break;
      const result = await this.tryAcquireOrRenew();
      // The deadline timer may have deposed us while the request was in flight; a late success must not revive us.
      if (!this.leading) break;
      if (result === 'acquired') {
        this.deadline = this.renewedAt + this.o.renewDeadlineMs;
        this.armDeadline();
        if (this.o.shouldYield?.()) {
          // Stop acting first, then free the Lease: the next holder starts only after both.
          this.depose('handing the lease back');
          await this.settleWork();
          await this.release();
        }
      } else if (result === 'held-by-other' || result === 'conflict') {
        this.depose(result === 'conflict' ? 'renewal refused (409: someone else wrote the Lease)' : `the Lease is held by ${this.observedHolder || 'nobody'}`);
      }
      // 'error' (network, 5xx, timeout): keep trying until the deadline timer deposes us.
    }
  }

  private armDeadline(): void {
    if (this.deadline === 0 || !this.leading) return;
    if (this.deadlineTimer) clearTimeout(this.deadlineTimer);
    this.deadlineTimer = setTimeout(() => this.depose('renew deadline passed'), Math.max(0, this.deadline - now()));
  }

  /** Ends a term at once: abort the signal first, so no further write happens on our behalf. */
  private depose(why: string): void {
    if (!this.leading) return;
    this.leading = false;
    this.deadline = 0;
    if (this.deadlineTimer) clearTimeout(this.deadlineTimer);
    this.deadlineTimer = undefined;
    this.abort?.abort(new Error(`leadership lost: ${why}`));
    this.stats_.losses++;
    this.log.warn({ why }, 'stopped leading');
    this.wake?.();
    try {
      this.o.onStoppedLeading?.();
    } catch (err) {
      this.log.error({ err }, 'onStoppedLeading threw');
    }
  }

  /** Waits for the leader's work to wind down, but no longer than renewDeadline. */
  private async settleWork(): Promise<void> {
    if (!this.work) return;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([this.work, new Promise<void>((r) => (timer = setTimeout(r, this.o.renewDeadlineMs)))]);
    clearTimeout(timer);
  }

  // ------------------------------------------------------------ the Lease

  /** Reads the Lease and takes or renews it if we may. */
  private async tryAcquireOrRenew(): Promise<Attempt> {
    const { name, namespace, identity } = this.o;
    const timeout = requestTimeout(this.requestTimeoutMs());
    // Measured before the request: if it succeeds, others can have seen our renewTime no earlier than this.
    const attemptAt = now();
    let lease: k8s.V1Lease;
    try {
      lease = await this.api.readNamespacedLease({ name, namespace }, timeout);
    } catch (err) {
      if (statusCode(err) !== 404) return this.attemptFailed('read', err);
      if (this.o.mayAcquire && !this.o.mayAcquire()) return 'held-by-other';
      return this.create(attemptAt, timeout);
    }
    const spec = lease.spec ?? {};
    this.observe(spec, attemptAt);
    const holder = spec.holderIdentity ?? '';
    if (holder !== identity) {
      // Someone else holds it: while we lead that means we lost; otherwise wait for expiry by our clock.
      if (this.leading) return 'held-by-other';
      const durationMs = (spec.leaseDurationSeconds ?? this.o.leaseDurationSeconds) * 1000;
      if (holder && now() < this.observedAt + durationMs) return 'held-by-other';
      if (this.o.mayAcquire && !this.o.mayAcquire()) return 'held-by-other';
    }
    const wall = new Date();
    const renewing = holder === identity;
    const body: k8s.V1Lease = {
      apiVersion: 'coordination.k8s.io/v1',
      kind: 'Lease',
      metadata: { ...lease.metadata, name, namespace },
      spec: {
        ...spec,
        holderIdentity: identity,
        leaseDurationSeconds: this.o.leaseDurationSeconds,
        // Strings in MicroTime format: client-node would serialise a Date with 3 digits, which the API server refuses.
        renewTime: microTime(wall) as unknown as Date,
        acquireTime: (renewing && spec.acquireTime ? spec.acquireTime : microTime(wall)) as unknown as Date,
        leaseTransitions: renewing ? (spec.leaseTransitions ?? 0) : (spec.leaseTransitions ?? 0) + 1,
      },
    };
    try {
      const written = await this.api.replaceNamespacedLease({ name, namespace, body }, timeout);
      this.observe(written.spec ?? {}, attemptAt);
      this.renewedAt = attemptAt;
      if (!renewing) this.log.info({ previous: holder || undefined }, 'acquired the lease');
      return 'acquired';
    } catch (err) {
      if (statusCode(err) === 409) return 'conflict';
      return this.attemptFailed('update', err);
    }
  }

  private async create(attemptAt: number, timeout: k8s.ConfigurationOptions): Promise<Attempt> {
    const { name, namespace, identity } = this.o;
    const wall = microTime() as unknown as Date;
    const body: k8s.V1Lease = {
      apiVersion: 'coordination.k8s.io/v1',
      kind: 'Lease',
      metadata: { name, namespace },
      spec: { holderIdentity: identity, leaseDurationSeconds: this.o.leaseDurationSeconds, acquireTime: wall, renewTime: wall, leaseTransitions: 0 },
    };
    try {
      const created = await this.api.createNamespacedLease({ namespace, body }, timeout);
      this.observe(created.spec ?? {}, attemptAt);
      this.renewedAt = attemptAt;
      this.log.info('created and acquired the lease');
      return 'acquired';
    } catch (err) {
      // 409: another candidate created it first.
      if (statusCode(err) === 409) return 'conflict';
      return this.attemptFailed('create', err);
    }
  }

  /** Records the Lease's record and when we first saw it (our clock); reports holder changes. */
  private observe(spec: k8s.V1LeaseSpec, at: number): void {
    const record = JSON.stringify([spec.holderIdentity ?? '', String(spec.renewTime ?? ''), spec.leaseDurationSeconds, String(spec.acquireTime ?? ''), spec.leaseTransitions]);
    if (record === this.observedRecord) return;
    this.observedRecord = record;
    this.observedAt = at;
    const holder = spec.holderIdentity ?? '';
    if (holder !== this.observedHolder) {
      this.observedHolder = holder;
      this.stats_.transitions++;
      try {
        this.o.onNewLeader?.(holder);
      } catch (err) {
        this.log.error({ err }, 'onNewLeader threw');
      }
    }
  }

  /** Per request: long enough for a slow API server, short enough to retry before the deadline. */
  private requestTimeoutMs(): number {
    return Math.max(1000, Math.round(this.o.renewDeadlineMs / 2));
  }

  private attemptFailed(op: string, err: unknown): Attempt {
    this.log.warn({ op, code: statusCode(err), err: errorMessage(err) }, 'lease request failed');
    return 'error';
  }

  /** Hands the lease over: empty holder, 1 s duration, so any candidate may take it at its next poll. */
  private async release(): Promise<void> {
    const { name, namespace, identity } = this.o;
    const timeout = requestTimeout(this.requestTimeoutMs());
    try {
      const lease = await this.api.readNamespacedLease({ name, namespace }, timeout);
      if ((lease.spec?.holderIdentity ?? '') !== identity) return;
      const wall = microTime() as unknown as Date;
      await this.api.replaceNamespacedLease(
        {
          name,
          namespace,
          body: {
            ...lease,
            spec: { ...lease.spec, holderIdentity: '', leaseDurationSeconds: 1, renewTime: wall, acquireTime: wall },
          },
        },
        timeout,
      );
      this.log.info('released the lease');
    } catch (err) {
      // Not fatal: the lease then expires after leaseDuration.
      this.log.warn({ code: statusCode(err), err: errorMessage(err) }, 'could not release the lease');
    }
  }

  /** A pause that depose() and stop() cut short. */
  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        if (this.wake === done) this.wake = undefined;
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.wake = done;
    });
  }
}
