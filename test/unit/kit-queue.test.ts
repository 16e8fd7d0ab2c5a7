// WorkQueue: the guarantees the reconciler builds on. Timings use small real
// delays; assertions are on order and lower bounds, never on exact times.

import assert from 'node:assert/strict';
import { WorkQueue, WorkTimeoutError } from '../../reconciler/kit/queue.js';

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** A promise to resolve from outside, to hold a worker at a known point. */
function gate(): { promise: Promise<void>; open: () => void } {
  let open!: () => void;
  const promise = new Promise<void>((r) => (open = r));
  return { promise, open };
}

describe('kit WorkQueue', function () {
  let queue: WorkQueue;
  afterEach(async function () {
    await queue?.shutDown();
  });

  it('dedupes a key added many times before it is processed', async function () {
    queue = new WorkQueue();
    for (let i = 0; i < 5; i++) {
      queue.add('ns/a');
      queue.add('ns/b');
    }
    assert.equal(queue.len(), 2);
    const seen: string[] = [];
    void queue.run(async (key) => {
      seen.push(key);
    });
    await queue.whenIdle();
    assert.deepEqual(seen, ['ns/a', 'ns/b']);
  });

  it('tells the worker when the key was queued: a key that waited behind a busy worker says so (the step-lag figures use it)', async function () {
    queue = new WorkQueue();
    const hold = gate();
    const waited = new Map<string, number>();
    void queue.run(async (key, queuedAt) => {
      waited.set(key, performance.now() - queuedAt);
      if (key === 'ns/slow') await hold.promise;
    }, 1);
    queue.add('ns/slow');
    queue.add('ns/next');
    await sleep(60);
    hold.open();
    await queue.whenIdle();
    assert.ok((waited.get('ns/slow') ?? Infinity) < 30, `the first key started at once (${waited.get('ns/slow')} ms)`);
    assert.ok((waited.get('ns/next') ?? 0) >= 50, `the second waited for the only worker (${waited.get('ns/next')} ms)`);
  });

  it('never hands one key to two workers; a key added while in flight runs once more, after', async function () {
    queue = new WorkQueue();
    const running = new Map<string, number>();
    let maxSame = 0;
    const spans: Array<{ key: string; start: number; end: number }> = [];
    const first = gate();
    let calls = 0;
    void queue.run(async (key) => {
      calls++;
      const n = (running.get(key) ?? 0) + 1;
      running.set(key, n);
      maxSame = Math.max(maxSame, n);
      const start = performance.now();
      if (calls === 1) await first.promise;
      else await sleep(5);
      running.set(key, (running.get(key) ?? 1) - 1);
      spans.push({ key, start, end: performance.now() });
    }, 8);

    queue.add('ns/a');
    await sleep(5);
    assert.equal(queue.stats().inFlight, 1);
    // Added again (three times) while in flight, with seven idle workers: none may take it.
    queue.add('ns/a');
    queue.add('ns/a');
    queue.add('ns/a');
    await sleep(10);
    assert.equal(calls, 1, 'not started a second time while in flight');
    first.open();
    await queue.whenIdle();
    assert.equal(maxSame, 1);
    assert.equal(spans.length, 2, 'processed exactly once more');
    assert.ok(spans[1]!.start >= spans[0]!.end, 'the second run starts after the first ended');
  });

  it('runs different keys in parallel up to the concurrency bound', async function () {
    queue = new WorkQueue();
    let now = 0;
    let peak = 0;
    void queue.run(async () => {
      now++;
      peak = Math.max(peak, now);
      await sleep(10);
      now--;
    }, 3);
    for (let i = 0; i < 12; i++) queue.add(`ns/k${i}`);
    await queue.whenIdle();
    assert.equal(peak, 3);
    assert.equal(queue.stats().processed, 12);
  });

  it('backs off a failing key exponentially and forgets it after a success', async function () {
    const starts: number[] = [];
    const errors: number[] = [];
    queue = new WorkQueue({ baseDelayMs: 10, maxDelayMs: 1000, onError: (_k, _e, retries) => errors.push(retries) });
    void queue.run(async () => {
      starts.push(performance.now());
      if (starts.length < 5) throw new Error('not yet');
    });
    queue.add('ns/flaky');
    await queue.whenIdle();
    assert.equal(starts.length, 5);
    const gaps = starts.slice(1).map((t, i) => t - starts[i]!);
    // Delays are 10, 20, 40, 80 ms; timers never fire early (allow 2 ms of clock rounding).
    [10, 20, 40, 80].forEach((d, i) => assert.ok(gaps[i]! >= d - 2, `gap ${i} was ${gaps[i]} ms, expected >= ${d}`));
    assert.ok(gaps[3]! > gaps[0]!, 'delays grow');
    assert.deepEqual(errors, [0, 1, 2, 3]);
    assert.equal(queue.numRequeues('ns/flaky'), 0, 'forgotten after the success');
  });

  it('caps the backoff delay', async function () {
    const starts: number[] = [];
    queue = new WorkQueue({ baseDelayMs: 10, maxDelayMs: 25 });
    void queue.run(async () => {
      starts.push(performance.now());
      if (starts.length < 5) throw new Error('not yet');
    });
    queue.add('ns/x');
    await queue.whenIdle();
    const gaps = starts.slice(1).map((t, i) => t - starts[i]!);
    // 10, 20, then 25 (capped) instead of 40 and 80.
    assert.ok(gaps[2]! >= 23 && gaps[3]! >= 23, `capped delays still wait: ${gaps.join(', ')}`);
    assert.ok(gaps[3]! < 70, `the fourth retry waited ${gaps[3]} ms: not capped`);
  });

  it('counts requeues per key and keeps one schedule (the earliest) per key', function () {
    queue = new WorkQueue({ baseDelayMs: 100, maxDelayMs: 250 });
    for (let i = 0; i < 4; i++) queue.addRateLimited('ns/x');
    assert.equal(queue.numRequeues('ns/x'), 4);
    assert.equal(queue.stats().delayed, 1);
    queue.forget('ns/x');
    assert.equal(queue.numRequeues('ns/x'), 0);
  });

  it('addAfter: many keys, processed in due order, with a single timer for the whole queue', async function () {
    // Count the queue's live timers by wrapping the global timer functions while it schedules and fires.
    const realSet = globalThis.setTimeout;
    const realClear = globalThis.clearTimeout;
    const live = new Set<unknown>();
    let maxLive = 0;
    let created = 0;
    globalThis.setTimeout = ((fn: () => void, ms?: number) => {
      created++;
      const t = realSet(() => {
        live.delete(t);
        fn();
      }, ms);
      live.add(t);
      maxLive = Math.max(maxLive, live.size);
      return t;
    }) as typeof setTimeout;
    globalThis.clearTimeout = ((t: NodeJS.Timeout) => {
      live.delete(t);
      realClear(t);
    }) as typeof clearTimeout;
    const order: string[] = [];
    const due = new Map<string, number>();
    let slack = 0;
    try {
      queue = new WorkQueue();
      const n = 2000;
      const t0 = performance.now();
      for (let i = 0; i < n; i++) {
        const delay = Math.floor(Math.random() * 150) + 1;
        due.set(`ns/k${i}`, performance.now() + delay);
        queue.addAfter(`ns/k${i}`, delay);
      }
      // The queue reads its clock a moment after we do: due times may disagree by up to the loop's duration.
      slack = performance.now() - t0 + 1;
      assert.equal(queue.stats().delayed, n);
      assert.ok(maxLive <= 1, `at most one timer while scheduling, saw ${maxLive}`);
      void queue.run(async (key) => {
        order.push(key);
      });
      await queue.whenIdle();
      assert.ok(maxLive <= 1, `at most one timer at any time, saw ${maxLive}`);
      assert.ok(created < 200, `a handful of (re)armings, not one timer per key (created ${created})`);
    } finally {
      globalThis.setTimeout = realSet;
      globalThis.clearTimeout = realClear;
    }
    assert.equal(order.length, 2000, 'every key processed once');
    for (let i = 1; i < order.length; i++) {
      assert.ok(due.get(order[i]!)! >= due.get(order[i - 1]!)! - slack, `key ${order[i]} processed before an earlier-due key`);
    }
  });

  it('addAfter: when a key is scheduled twice, the earlier due time wins', async function () {
    queue = new WorkQueue();
    const at: Record<string, number[]> = { 'ns/early-second': [], 'ns/early-first': [] };
    const t0 = performance.now();
    void queue.run(async (key) => {
      at[key]!.push(performance.now() - t0);
    });
    queue.addAfter('ns/early-second', 400);
    queue.addAfter('ns/early-second', 20);
    queue.addAfter('ns/early-first', 20);
    queue.addAfter('ns/early-first', 400);
    await sleep(150);
    assert.equal(at['ns/early-second']!.length, 1);
    assert.equal(at['ns/early-first']!.length, 1);
    assert.ok(at['ns/early-second']![0]! < 150 && at['ns/early-first']![0]! < 150);
    assert.equal(queue.stats().delayed, 0, 'the later schedule was dropped, not kept');
    await sleep(300);
    assert.equal(at['ns/early-second']!.length, 1, 'not run again at the later time');
    assert.equal(at['ns/early-first']!.length, 1);
  });

  it('requeues after requeueAfterMs when the worker asks for it', async function () {
    queue = new WorkQueue();
    let runs = 0;
    void queue.run(async () => {
      runs++;
      return runs < 3 ? { requeueAfterMs: 10 } : undefined;
    });
    queue.add('ns/periodic');
    await queue.whenIdle();
    assert.equal(runs, 3);
  });

  it('shutDown waits for the work in flight, drops what is queued, refuses new keys', async function () {
    queue = new WorkQueue();
    const finished: string[] = [];
    const started: string[] = [];
    const done = queue.run(async (key) => {
      started.push(key);
      await sleep(50);
      finished.push(key);
    }, 2);
    for (let i = 0; i < 6; i++) queue.add(`ns/k${i}`);
    queue.addAfter('ns/later', 10);
    await sleep(5);
    assert.equal(started.length, 2);
    queue.add('ns/k0'); // re-added while in flight: must not run after shutdown
    const t0 = performance.now();
    await queue.shutDown();
    assert.ok(performance.now() - t0 >= 40, 'waited for the workers');
    assert.deepEqual(finished.sort(), ['ns/k0', 'ns/k1']);
    await done; // run() resolves too
    queue.add('ns/new');
    await sleep(30);
    assert.deepEqual(started.sort(), ['ns/k0', 'ns/k1'], 'nothing else ran: queued, delayed, re-added and new keys dropped');
    assert.equal(queue.len(), 0);
    assert.equal(queue.stats().delayed, 0);
  });

  it('releases the key of a worker that never settles at the deadline, retries it, and shuts down anyway', async function () {
    const errors: unknown[] = [];
    queue = new WorkQueue({ workTimeoutMs: 150, baseDelayMs: 10, onError: (_key, err) => errors.push(err) });
    const runs: string[] = [];
    let hung = 0;
    const done = queue.run(async (key) => {
      runs.push(key);
      // The first run of ns/stuck never returns (a call without a timeout somewhere).
      if (key === 'ns/stuck' && hung++ === 0) return new Promise<void>(() => undefined);
    }, 1);
    queue.add('ns/stuck');
    queue.add('ns/other');
    await sleep(100);
    assert.deepEqual(runs, ['ns/stuck'], 'before the deadline the only worker slot is held');
    const t0 = performance.now();
    while (runs.filter((k) => k === 'ns/stuck').length < 2 && performance.now() - t0 < 3000) await sleep(10);
    assert.deepEqual(runs, ['ns/stuck', 'ns/other', 'ns/stuck'], 'the slot was freed for the next key and the stuck key retried');
    assert.equal(errors.length, 1);
    assert.ok(errors[0] instanceof WorkTimeoutError, String(errors[0]));
    assert.match((errors[0] as Error).message, /ns\/stuck did not finish within 150 ms/);
    assert.equal(queue.stats().timedOut, 1);
    assert.equal(queue.stats().inFlight, 0);
    await queue.shutDown();
    await done;
  });

  it('shutDown returns within the work deadline though a worker hangs forever', async function () {
    queue = new WorkQueue({ workTimeoutMs: 100 });
    void queue.run(() => new Promise<void>(() => undefined), 1);
    queue.add('ns/hung');
    await sleep(10);
    const t0 = performance.now();
    await queue.shutDown();
    const ms = performance.now() - t0;
    assert.ok(ms < 1000, `shutDown took ${Math.round(ms)} ms`);
  });

  it('shutDown({ drain: true }) processes what is already queued first', async function () {
    queue = new WorkQueue();
    const finished: string[] = [];
    void queue.run(async (key) => {
      await sleep(5);
      finished.push(key);
    }, 2);
    for (let i = 0; i < 6; i++) queue.add(`ns/k${i}`);
    await queue.shutDown({ drain: true });
    assert.equal(finished.length, 6);
  });

  it('reports depth, in-flight work and latency', async function () {
    const latencies: number[] = [];
    queue = new WorkQueue({ onQueueLatency: (ms) => latencies.push(ms) });
    for (let i = 0; i < 3; i++) queue.add(`ns/k${i}`);
    assert.equal(queue.stats().depth, 3);
    await sleep(20);
    const g = gate();
    void queue.run(() => g.promise, 1);
    const s = queue.stats();
    assert.equal(s.inFlight, 1);
    assert.equal(s.depth, 2);
    assert.ok(s.queueLatencyMs.max >= 15, `latency counted from add (${s.queueLatencyMs.max})`);
    assert.equal(latencies.length, 1);
    g.open();
    await queue.whenIdle();
    assert.equal(queue.stats().processed, 3);
    assert.equal(queue.stats().longestRunningMs, 0);
  });
});
