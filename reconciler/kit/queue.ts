// A rate-limited work queue of string keys ("namespace/name"), with the
// semantics of client-go's workqueue that Kubernetes' sample-controller
// relies on:
//
// - a key is queued at most once however often it is added (dirty set);
// - a key is never handed to two workers at once: added while in flight it
//   is marked dirty and queued again when that work is done, so the latest
//   state is always reconciled after the change that caused the add;
// - per-key exponential backoff for failures (addRateLimited / forget);
// - addAfter(key, ms) through one min-heap and one timer for the whole
//   queue, so thousands of scheduled keys cost one timer (the same one
//   watches the work deadline below), and scheduling a
//   key twice keeps the earlier due time;
// - run(worker, concurrency) with bounded parallelism, and shutDown() that
//   waits for the work in flight;
// - a deadline per work item (workTimeoutMs): a worker that has not settled
//   by then counts as failed, its key and slot are released and the key is
//   retried with backoff, so one hung sync cannot hold its key (or a worker
//   slot, or shutDown()) forever. Its late result is ignored.

import { performance } from 'node:perf_hooks';

/** What a worker may ask for besides success or failure. */
export interface WorkResult {
  /** Process the key again after this delay (a periodic check); resets its backoff. */
  requeueAfterMs?: number;
}

/** Processes one key; queuedAt is when it became ready to process (performance.now()), for lag figures. */
export type Worker = (key: string, queuedAt: number) => Promise<WorkResult | void>;

export interface WorkQueueOptions {
  name?: string;
  /** First retry delay after a failure. Default 100 ms. */
  baseDelayMs?: number;
  /** Retry delay cap. Default 5 min: a key failing for long is retried at least that often. */
  maxDelayMs?: number;
  /**
   * A worker that has not settled after this long fails with
   * WorkTimeoutError (its key is released and retried with backoff).
   * Default 5 min; 0 disables. The worker is not cancelled (JavaScript
   * cannot); it should bound its own waits (API calls have timeouts), so
   * this only catches what slipped through.
   */
  workTimeoutMs?: number;
  /** Called when a worker throws (the key is then retried with backoff). */
  onError?: (key: string, err: unknown, retries: number) => void;
  /** Metrics hooks: time from ready to started, and time spent in the worker. */
  onQueueLatency?: (ms: number) => void;
  onWorkDuration?: (ms: number) => void;
}

export interface QueueStats {
  /** Keys ready and waiting for a worker. */
  depth: number;
  /** Keys being processed. */
  inFlight: number;
  /** Keys scheduled for later (addAfter / addRateLimited). */
  delayed: number;
  /** Keys with a failure count (retrying). */
  retrying: number;
  adds: number;
  retries: number;
  processed: number;
  failed: number;
  /** Work items given up on at the deadline (also counted in failed). */
  timedOut: number;
  /** Time from ready to picked up. */
  queueLatencyMs: { count: number; sum: number; max: number };
  /** Time in the worker. */
  workDurationMs: { count: number; sum: number; max: number };
  /** Age of the longest running work item, 0 when idle (a stuck worker shows here). */
  longestRunningMs: number;
}

interface HeapEntry {
  due: number;
  key: string;
}

/** A worker that did not settle before the queue's workTimeoutMs. */
export class WorkTimeoutError extends Error {
  constructor(
    readonly key: string,
    readonly timeoutMs: number,
  ) {
    super(`work on ${key} did not finish within ${timeoutMs} ms; released for a retry`);
    this.name = 'WorkTimeoutError';
  }
}

/** Monotonic: a wall-clock step must not fire or stall scheduled keys. */
const now = () => performance.now();

/** setTimeout refuses delays above 2^31-1 ms (about 24.8 days). */
const MAX_TIMER_MS = 2 ** 31 - 1;

export class WorkQueue {
  readonly name: string;
  private readonly baseDelayMs: number;
  private readonly maxDelayMs: number;
  private readonly opts: WorkQueueOptions;
  private readonly workTimeoutMs: number;

  // Ready FIFO as an array with a moving head: O(1) push and shift.
  private ready: string[] = [];
  private head = 0;
  /** Keys that need processing (queued, or re-added while in flight). */
  private readonly dirty = new Set<string>();
  /** Keys in flight, with their start time. */
  private readonly processing = new Map<string, number>();
  /** When each queued key became ready (for the latency stat). */
  private readonly readySince = new Map<string, number>();
  private readonly failures = new Map<string, number>();

  // Delayed keys: a min-heap on due time plus the authoritative due time per
  // key. A heap entry whose due time no longer matches the map is stale (the
  // key was rescheduled earlier or already added) and is skipped when popped.
  private readonly heap: HeapEntry[] = [];
  private readonly waiting = new Map<string, number>();
  private timer: NodeJS.Timeout | undefined;
  private timerDue = Infinity;
  /** Fails the work in flight on a key (its deadline passed). */
  private readonly abandon = new Map<string, () => void>();

  private shuttingDown = false;
  private draining = false;
  private worker: Worker | undefined;
  private concurrency = 0;
  private runDone: (() => void) | undefined;
  private runPromise: Promise<void> | undefined;
  private idleWaiters: Array<() => void> = [];

  private stat = {
    adds: 0,
    retries: 0,
    processed: 0,
    failed: 0,
    timedOut: 0,
    latency: { count: 0, sum: 0, max: 0 },
    work: { count: 0, sum: 0, max: 0 },
  };

  constructor(opts: WorkQueueOptions = {}) {
    this.name = opts.name ?? 'queue';
    this.baseDelayMs = opts.baseDelayMs ?? 100;
    this.maxDelayMs = opts.maxDelayMs ?? 5 * 60_000;
    this.workTimeoutMs = opts.workTimeoutMs ?? 5 * 60_000;
    if (!(this.workTimeoutMs >= 0)) throw new Error(`work queue ${this.name}: workTimeoutMs must be >= 0`);
    this.opts = opts;
  }

  // ------------------------------------------------------------ adding

  /** Queues the key now (no-op if already queued; deferred if in flight). */
  add(key: string): void {
    if (this.shuttingDown) return;
    if (this.dirty.has(key)) return;
    this.stat.adds++;
    this.dirty.add(key);
    // In flight: done() will queue it again, so no two workers ever hold it.
    if (this.processing.has(key)) return;
    this.push(key);
  }

  /** Queues the key after delayMs; if it is already scheduled, the earlier time wins. */
  addAfter(key: string, delayMs: number): void {
    if (this.shuttingDown) return;
    if (!(delayMs > 0)) return this.add(key);
    const due = now() + delayMs;
    const current = this.waiting.get(key);
    if (current !== undefined && current <= due) return;
    this.waiting.set(key, due);
    heapPush(this.heap, { due, key });
    this.armTimer();
  }

  /** Queues the key after its next backoff delay (base * 2^failures, capped). */
  addRateLimited(key: string): void {
    if (this.shuttingDown) return;
    this.stat.retries++;
    this.addAfter(key, this.nextDelay(key));
  }

  /** The delay addRateLimited would use now, counting one more failure. */
  private nextDelay(key: string): number {
    const n = this.failures.get(key) ?? 0;
    this.failures.set(key, n + 1);
    return Math.min(this.maxDelayMs, this.baseDelayMs * 2 ** n);
  }

  /** Clears the key's failure count (after a success). */
  forget(key: string): void {
    this.failures.delete(key);
  }

  /** Failures counted for the key since its last forget. */
  numRequeues(key: string): number {
    return this.failures.get(key) ?? 0;
  }

  /** Keys ready and waiting. */
  len(): number {
    return this.ready.length - this.head;
  }

  isShuttingDown(): boolean {
    return this.shuttingDown;
  }

  stats(): QueueStats {
    const t = now();
    let oldest = t;
    for (const started of this.processing.values()) oldest = Math.min(oldest, started);
    return {
      depth: this.len(),
      inFlight: this.processing.size,
      delayed: this.waiting.size,
      retrying: this.failures.size,
      adds: this.stat.adds,
      retries: this.stat.retries,
      processed: this.stat.processed,
      failed: this.stat.failed,
      timedOut: this.stat.timedOut,
      queueLatencyMs: { ...this.stat.latency },
      workDurationMs: { ...this.stat.work },
      longestRunningMs: t - oldest,
    };
  }

  // ------------------------------------------------------------ processing

  /**
   * Processes keys with at most `concurrency` workers at once until
   * shutDown(). A worker that resolves has its key forgotten (and requeued
   * after requeueAfterMs if it asks); one that throws has it retried with
   * backoff. Resolves when the queue is shut down and the work in flight is
   * done. Only one run() per queue.
   */
  run(worker: Worker, concurrency = 1): Promise<void> {
    if (this.worker) throw new Error(`work queue ${this.name}: run() called twice`);
    if (!(concurrency >= 1)) throw new Error(`work queue ${this.name}: concurrency must be >= 1`);
    this.worker = worker;
    this.concurrency = Math.floor(concurrency);
    this.runPromise = new Promise((resolve) => (this.runDone = resolve));
    this.pump();
    this.checkFinished();
    return this.runPromise;
  }

  /**
   * Stops accepting keys and cancels scheduled ones; resolves once the work
   * in flight has finished. With drain, keys already queued are still
   * processed first (their failures are not retried); without, they are
   * dropped: the informers' next list will queue them again wherever the
   * work resumes.
   */
  async shutDown(opts: { drain?: boolean } = {}): Promise<void> {
    this.shuttingDown = true;
    this.draining = opts.drain === true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.timerDue = Infinity;
    this.heap.length = 0;
    this.waiting.clear();
    // Work in flight keeps its deadline.
    this.armTimer();
    if (!this.draining) {
      for (let i = this.head; i < this.ready.length; i++) {
        const key = this.ready[i]!;
        this.dirty.delete(key);
        this.readySince.delete(key);
      }
      this.ready = [];
      this.head = 0;
    }
    // Keys re-added while in flight must not run again after shutdown.
    for (const key of this.processing.keys()) if (!this.isQueued(key)) this.dirty.delete(key);
    if (!this.worker) return;
    this.pump();
    this.checkFinished();
    await this.runPromise;
  }

  /** Resolves when nothing is queued, delayed or in flight (for tests and orderly handovers). */
  whenIdle(): Promise<void> {
    if (this.isIdle()) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  private isIdle(): boolean {
    return this.len() === 0 && this.processing.size === 0 && this.waiting.size === 0;
  }

  private isQueued(key: string): boolean {
    return this.readySince.has(key);
  }

  private push(key: string): void {
    this.ready.push(key);
    this.readySince.set(key, now());
    this.pump();
  }

  private shift(): string | undefined {
    if (this.head >= this.ready.length) return undefined;
    const key = this.ready[this.head++];
    // Compact once the consumed prefix dominates, keeping shift O(1) amortised.
    if (this.head > 1024 && this.head * 2 > this.ready.length) {
      this.ready = this.ready.slice(this.head);
      this.head = 0;
    }
    return key;
  }

  /** Starts workers while there is ready work and a free slot. */
  private pump(): void {
    if (!this.worker) return;
    while (this.processing.size < this.concurrency) {
      const key = this.shift();
      if (key === undefined) break;
      const t = now();
      const since = this.readySince.get(key) ?? t;
      this.readySince.delete(key);
      this.observe(this.stat.latency, t - since);
      this.opts.onQueueLatency?.(t - since);
      this.dirty.delete(key);
      this.processing.set(key, t);
      void this.process(key, t, since);
    }
  }

  private async process(key: string, started: number, queuedAt: number): Promise<void> {
    let result: WorkResult | void = undefined;
    let failed = false;
    try {
      const work = this.worker!(key, queuedAt);
      if (this.workTimeoutMs > 0) {
        // A late rejection of abandoned work must not surface as unhandled.
        Promise.resolve(work).catch(() => undefined);
        const deadline = new Promise<never>((_, reject) => {
          this.abandon.set(key, () => reject(new WorkTimeoutError(key, this.workTimeoutMs)));
        });
        this.armTimer();
        result = await Promise.race([work, deadline]);
      } else {
        result = await work;
      }
    } catch (err) {
      failed = true;
      this.stat.failed++;
      if (err instanceof WorkTimeoutError) this.stat.timedOut++;
      try {
        this.opts.onError?.(key, err, this.numRequeues(key));
      } catch {
        // A faulty error hook must not wedge the queue.
      }
    }
    this.abandon.delete(key);
    const ms = now() - started;
    this.observe(this.stat.work, ms);
    this.opts.onWorkDuration?.(ms);
    this.stat.processed++;
    this.processing.delete(key);
    if (failed) {
      if (!this.shuttingDown) this.addRateLimited(key);
    } else {
      this.forget(key);
      const after = result?.requeueAfterMs;
      if (after !== undefined && !this.shuttingDown) this.addAfter(key, after);
    }
    // Re-added while in flight: queue it again now that no worker holds it.
    if (this.dirty.has(key) && !this.isQueued(key)) {
      if (this.shuttingDown && !this.draining) this.dirty.delete(key);
      else this.push(key);
    }
    this.pump();
    this.checkFinished();
  }

  private checkFinished(): void {
    // Nothing scheduled and nothing in flight: a timer armed for a deadline would only keep the process alive.
    if (this.timer && this.heap.length === 0 && this.processing.size === 0) {
      clearTimeout(this.timer);
      this.timer = undefined;
      this.timerDue = Infinity;
    }
    if (this.isIdle()) {
      const waiters = this.idleWaiters;
      this.idleWaiters = [];
      for (const w of waiters) w();
    }
    if (this.shuttingDown && this.processing.size === 0 && this.len() === 0) this.runDone?.();
  }

  private observe(s: { count: number; sum: number; max: number }, ms: number): void {
    s.count++;
    s.sum += ms;
    if (ms > s.max) s.max = ms;
  }

  // ------------------------------------------------------------ the timer

  /** The earliest work deadline: work items start in order, so the oldest in flight is the first entry. */
  private nextDeadline(): number {
    if (this.workTimeoutMs <= 0) return Infinity;
    for (const started of this.processing.values()) return started + this.workTimeoutMs;
    return Infinity;
  }

  /** Keeps the single timer set for the earliest due key or work deadline. */
  private armTimer(): void {
    const due = Math.min(this.heap[0]?.due ?? Infinity, this.nextDeadline());
    if (due === Infinity) return;
    if (this.timer && this.timerDue <= due) return;
    if (this.timer) clearTimeout(this.timer);
    this.timerDue = due;
    this.timer = setTimeout(() => this.fireDue(), Math.min(MAX_TIMER_MS, Math.max(0, due - now())));
  }

  private fireDue(): void {
    this.timer = undefined;
    this.timerDue = Infinity;
    const t = now();
    while (this.heap.length > 0 && this.heap[0]!.due <= t) {
      const entry = heapPop(this.heap)!;
      // Stale entry: the key was rescheduled earlier (and already fired) since.
      if (this.waiting.get(entry.key) !== entry.due) continue;
      this.waiting.delete(entry.key);
      this.add(entry.key);
    }
    if (this.workTimeoutMs > 0) {
      for (const [key, started] of this.processing) {
        if (t - started < this.workTimeoutMs) break;
        const abandon = this.abandon.get(key);
        this.abandon.delete(key);
        abandon?.();
      }
    }
    this.armTimer();
    this.checkFinished();
  }
}

// ------------------------------------------------------------ binary min-heap on due time

function heapPush(heap: HeapEntry[], entry: HeapEntry): void {
  heap.push(entry);
  let i = heap.length - 1;
  while (i > 0) {
    const parent = (i - 1) >> 1;
    if (heap[parent]!.due <= entry.due) break;
    heap[i] = heap[parent]!;
    i = parent;
  }
  heap[i] = entry;
}

function heapPop(heap: HeapEntry[]): HeapEntry | undefined {
  const top = heap[0];
  const last = heap.pop();
  if (heap.length === 0 || !last) return top;
  let i = 0;
  for (;;) {
    const l = 2 * i + 1;
    if (l >= heap.length) break;
    const r = l + 1;
    const child = r < heap.length && heap[r]!.due < heap[l]!.due ? r : l;
    if (heap[child]!.due >= last.due) break;
    heap[i] = heap[child]!;
    i = child;
  }
  heap[i] = last;
  return top;
}
