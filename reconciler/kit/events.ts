// Kubernetes Events about the objects the reconciler works on, so that
// `kubectl describe canary x` (and `kubectl get events`) tells the story.
//
// core/v1 Events with involvedObject are written, not events.k8s.io/v1: they
// are what kubectl describe lists (it selects on involvedObject fields), and
// the API server serves both groups from the same storage anyway.
//
// - Repeats of the same (object, type, reason, message) within a window
//   update one Event (count, lastTimestamp) instead of creating new ones,
//   like client-go's correlator, so a check failing every 10 s makes one
//   Event with count 30, not 30 Events.
// - A token bucket per object bounds the write rate, so a hot loop cannot
//   flood the API server. A dropped repeat still counts: the next write of
//   that Event carries the full count.
// - Recording never throws and never blocks the caller on the API server:
//   failures are logged and dropped. The returned promise (always resolved)
//   is for callers that want to wait, e.g. tests.

import { REPORTING_CONTROLLER } from '../../core/contract.js';
import { hostname } from 'node:os';
import { randomBytes } from 'node:crypto';
import * as k8s from '@kubernetes/client-node';
import { pino, type Logger } from 'pino';
import { errorMessage, requestTimeout, statusCode } from '../../core/api/client.js';

export type EventType = 'Normal' | 'Warning';

/** The object an Event is about: a full object or a reference. Give the uid when known: kubectl describe selects on it. */
export interface InvolvedObject {
  apiVersion?: string;
  kind?: string;
  metadata?: { name?: string; namespace?: string; uid?: string; resourceVersion?: string };
}


export interface EventRecorderOptions {
  kubeConfig: k8s.KubeConfig;
  /** Default canarygate.dev/reconciler. */
  reportingController?: string;
  /** This replica (pod name). Default the host name. */
  reportingInstance?: string;
  /** Repeats within this time update the same Event. Default 10 min. */
  aggregationWindowMs?: number;
  /** Per-object bucket: burst size and refill (one token per interval). Defaults 25 and 10 s. */
  burst?: number;
  refillIntervalMs?: number;
  /** Bound on remembered Events and buckets (least recently used go first). Default 4096. */
  maxTracked?: number;
  /** Default 10 s. */
  requestTimeoutMs?: number;
  logger?: Logger;
}

export interface EventRecorderStats {
  created: number;
  /** Repeats folded into an existing Event by a patch. */
  aggregated: number;
  /** Dropped by the rate limit. */
  dropped: number;
  /** Writes that failed (logged, dropped). */
  failed: number;
}

interface Series {
  name: string;
  namespace: string;
  /** Occurrences already written to the Event. */
  count: number;
  /** Occurrences not written yet (rate-limited or in the queue). */
  unsent: number;
  exists: boolean;
  first: Date;
  lastSeen: number;
  /** Writes of one series are serialised: create before patch, counts in order. */
  chain: Promise<void>;
}

interface Bucket {
  tokens: number;
  at: number;
}

/** Kubernetes caps an Event's message in practice at 1 KiB (events.k8s.io note limit); keep core Events alike. */
const MAX_MESSAGE = 1024;

export class EventRecorder {
  private readonly api: k8s.CoreV1Api;
  private readonly controller: string;
  private readonly instance: string;
  private readonly windowMs: number;
  private readonly burst: number;
  private readonly refillMs: number;
  private readonly maxTracked: number;
  private readonly timeoutMs: number;
  private readonly log: Logger;
  private readonly series = new Map<string, Series>();
  private readonly buckets = new Map<string, Bucket>();
  private readonly inFlight = new Set<Promise<void>>();
  private readonly counters: EventRecorderStats = { created: 0, aggregated: 0, dropped: 0, failed: 0 };

  constructor(opts: EventRecorderOptions) {
    this.api = opts.kubeConfig.makeApiClient(k8s.CoreV1Api);
    this.controller = opts.reportingController ?? REPORTING_CONTROLLER;
    this.instance = (opts.reportingInstance ?? hostname()).slice(0, 128);
    this.windowMs = opts.aggregationWindowMs ?? 10 * 60_000;
    this.burst = opts.burst ?? 25;
    this.refillMs = opts.refillIntervalMs ?? 10_000;
    this.maxTracked = opts.maxTracked ?? 4096;
    this.timeoutMs = opts.requestTimeoutMs ?? 10_000;
    this.log = (opts.logger ?? pino({ level: 'info' })).child({ component: 'events' });
  }

  normal(obj: InvolvedObject, reason: string, message: string): Promise<void> {
    return this.event(obj, 'Normal', reason, message);
  }

  warning(obj: InvolvedObject, reason: string, message: string): Promise<void> {
    return this.event(obj, 'Warning', reason, message);
  }

  /** Records an Event. Never throws; the promise resolves when it was written or dropped. */
  event(obj: InvolvedObject, type: EventType, reason: string, message: string): Promise<void> {
    try {
      return this.record(obj, type, reason, message.length > MAX_MESSAGE ? `${message.slice(0, MAX_MESSAGE - 3)}...` : message);
    } catch (err) {
      this.log.warn({ err }, 'could not record event');
      return Promise.resolve();
    }
  }

  /** Waits for every write in progress (for shutdown and tests). */
  async flush(): Promise<void> {
    while (this.inFlight.size > 0) await Promise.all([...this.inFlight]);
  }

  stats(): EventRecorderStats {
    return { ...this.counters };
  }

  private record(obj: InvolvedObject, type: EventType, reason: string, message: string): Promise<void> {
    const meta = obj.metadata ?? {};
    if (!meta.name) throw new Error('involved object has no name');
    const objectId = meta.uid ?? `${obj.apiVersion}/${obj.kind}/${meta.namespace ?? ''}/${meta.name}`;
    const key = `${objectId}\u0000${type}\u0000${reason}\u0000${message}`;
    const now = Date.now();

    let s = this.series.get(key);
    if (s && now - s.lastSeen > this.windowMs) s = undefined;
    if (!s) {
      s = {
        name: eventName(meta.name),
        // Events of cluster-scoped objects live in "default", as client-go does.
        namespace: meta.namespace || 'default',
        count: 0,
        unsent: 0,
        exists: false,
        first: new Date(now),
        lastSeen: now,
        chain: Promise.resolve(),
      };
    }
    touch(this.series, key, s, this.maxTracked);
    s.unsent++;
    s.lastSeen = now;

    if (!this.take(objectId, now)) {
      this.counters.dropped++;
      this.log.debug({ reason, object: meta.name }, 'event rate-limited');
      return Promise.resolve();
    }
    const series = s;
    const ref = involvedObject(obj);
    const write = series.chain.then(() => this.write(series, ref, type, reason, message));
    series.chain = write;
    this.inFlight.add(write);
    void write.finally(() => this.inFlight.delete(write));
    return write;
  }

  /** Takes a token from the object's bucket; false when empty. */
  private take(objectId: string, now: number): boolean {
    const b = this.buckets.get(objectId) ?? { tokens: this.burst, at: now };
    b.tokens = Math.min(this.burst, b.tokens + (now - b.at) / this.refillMs);
    b.at = now;
    touch(this.buckets, objectId, b, this.maxTracked);
    if (b.tokens < 1) return false;
    b.tokens -= 1;
    return true;
  }

  private async write(s: Series, ref: k8s.V1ObjectReference, type: EventType, reason: string, message: string): Promise<void> {
    const n = s.unsent;
    if (n === 0) return; // an earlier write in the chain already carried these occurrences
    s.unsent = 0;
    const last = new Date();
    try {
      if (s.exists) {
        try {
          await this.api.patchNamespacedEvent(
            { name: s.name, namespace: s.namespace, body: { count: s.count + n, lastTimestamp: last } },
            requestTimeout(this.timeoutMs, k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.MergePatch)),
          );
          s.count += n;
          this.counters.aggregated += n;
          return;
        } catch (err) {
          // Gone (events expire after an hour by default): start a new Event, keeping the count.
          if (statusCode(err) !== 404) throw err;
          s.exists = false;
          s.name = eventName(ref.name ?? 'object');
        }
      }
      await this.api.createNamespacedEvent(
        {
          namespace: s.namespace,
          body: {
            metadata: { name: s.name, namespace: s.namespace },
            involvedObject: ref,
            type,
            reason,
            message,
            count: s.count + n,
            firstTimestamp: s.first,
            lastTimestamp: last,
            source: { component: this.controller },
            reportingComponent: this.controller,
            reportingInstance: this.instance,
          },
        },
        requestTimeout(this.timeoutMs),
      );
      s.exists = true;
      s.count += n;
      this.counters.created++;
      if (n > 1) this.counters.aggregated += n - 1;
    } catch (err) {
      this.counters.failed++;
      this.log.warn({ reason, object: ref.name, code: statusCode(err), err: errorMessage(err) }, 'event not recorded');
    }
  }
}

function involvedObject(obj: InvolvedObject): k8s.V1ObjectReference {
  const m = obj.metadata ?? {};
  return {
    apiVersion: obj.apiVersion,
    kind: obj.kind,
    name: m.name,
    namespace: m.namespace,
    uid: m.uid,
    resourceVersion: m.resourceVersion,
  };
}

/** <object>.<hex time><random>: unique across replicas, sortable by time like client-go's names. */
function eventName(objectName: string): string {
  const suffix = Date.now().toString(16) + randomBytes(3).toString('hex');
  return `${objectName.slice(0, 253 - suffix.length - 1)}.${suffix}`;
}

/** Map as LRU: re-inserting moves the key to the end; the oldest go beyond max. */
function touch<V>(map: Map<string, V>, key: string, value: V, max: number): void {
  map.delete(key);
  map.set(key, value);
  while (map.size > max) {
    const oldest = map.keys().next().value as string;
    map.delete(oldest);
  }
}
