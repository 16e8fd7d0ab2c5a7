// A list+watch cache of one Kubernetes collection that repairs itself.
//
// client-node's makeInformer (ListWatch) stops for good on any watch error
// other than 410 (kubernetes-client/javascript #364, #596, #958), cannot
// resume a new instance from a known resourceVersion, does not ask for
// bookmarks, and reports an 'error' even for a request it aborted itself.
// A restartable watchdog needs all of those, so this file runs its own
// list/watch loop on the same primitives (KubeConfig.applyToHTTPSOptions for
// TLS, credentials and proxies; the API server's JSON watch stream):
//
//   list (paged) -> diff against the cache -> watch from the list's
//   resourceVersion -> on a clean end resume from the last seen version,
//   on 410 list again, on any other error back off and retry.
//
// Three timers guard the watch: a watchdog (no event or bookmark for
// idleTimeoutMs means a silently dead connection: restart it), a periodic
// full relist (repairs anything a watch could have missed, emitting updates
// and deletes), and a connect timeout. A 404 on the list means the resource
// (an optional CRD) is not installed: that is reported, retried slowly, and
// the cache is empty, never a crash.
//
// Objects are the API server's JSON (timestamps are strings) unless a
// transform is given.

import http from 'node:http';
import https from 'node:https';
import { performance } from 'node:perf_hooks';
import * as k8s from '@kubernetes/client-node';
import { pino, type Logger } from 'pino';
import { ApiTimeoutError, apiTimeoutMs, statusCode } from '../../core/api/client.js';

/** The minimal shape the cache needs. */
export interface KubeObject {
  apiVersion?: string;
  kind?: string;
  metadata?: { name?: string; namespace?: string; resourceVersion?: string; uid?: string };
}

export type AddHandler<T> = (obj: T) => void;
export type UpdateHandler<T> = (obj: T, old: T) => void;
/**
 * finalStateUnknown: the deletion was found by a relist, not seen on the
 * watch, so `obj` is the last state the cache knew, not the state at deletion.
 */
export type DeleteHandler<T> = (obj: T, info: { finalStateUnknown: boolean }) => void;

export interface InformerHealth {
  name: string;
  /** A first list succeeded (or the resource was found not installed: an empty, known state). */
  synced: boolean;
  /** false after a 404 on list (CRD absent); undefined before the first answer. */
  installed: boolean | undefined;
  /** A watch stream is currently open. */
  watching: boolean;
  /** ms since epoch of the last watch event or bookmark (or successful list). */
  lastEventTime: number | undefined;
  /** Watches restarted after an error or by the watchdog. */
  restarts: number;
  /** Full lists done (first sync, 410s, periodic relists). */
  relists: number;
  lastError: string | undefined;
  lastErrorTime: number | undefined;
  objects: number;
}

export interface ResilientInformerOptions<T> {
  kubeConfig: k8s.KubeConfig;
  /**
   * Collection path: /api/v1/configmaps (cluster-wide),
   * /api/v1/namespaces/NS/configmaps, /apis/canarygate.dev/v1alpha1/canaries...
   */
  path: string;
  labelSelector?: string;
  fieldSelector?: string;
  /** For logs and metrics; defaults to the path. */
  name?: string;
  /** Full relist period; 0 disables. Default 5 min. */
  relistIntervalMs?: number;
  /**
   * Restart a watch that delivered no event or bookmark for this long.
   * Default 3 min: the API server sends a bookmark about every minute to a
   * watch that asks for them, so a quiet but healthy watch never trips it.
   */
  idleTimeoutMs?: number;
  /** Backoff after errors: first delay and cap (jittered). Defaults 500 ms and 30 s. */
  initialBackoffMs?: number;
  maxBackoffMs?: number;
  /** Retry period while the resource is not installed (404). Default 30 s. */
  notInstalledRetryMs?: number;
  /**
   * Timeout of a list page, and of a watch until its response headers
   * arrive. Default: the KubeConfig's API timeout (kit/api.ts), else 30 s.
   */
  requestTimeoutMs?: number;
  /** List page size (limit/continue). Default 500. */
  pageSize?: number;
  /** Converts a raw JSON object into T (e.g. ObjectSerializer.deserialize). Default: as served. */
  transform?: (raw: unknown) => T;
  logger?: Logger;
}

/** The cache key: namespace/name, or name for cluster-scoped objects (as client-go). */
export function objectKey(obj: KubeObject): string {
  const ns = obj.metadata?.namespace;
  const name = obj.metadata?.name ?? '';
  return ns ? `${ns}/${name}` : name;
}

/** An HTTP answer other than 200, with the Status body's reason when there is one. */
export class KubeHttpError extends Error {
  constructor(
    readonly statusCode: number,
    readonly reason: string | undefined,
    message: string,
  ) {
    super(message);
    this.name = 'KubeHttpError';
  }
}

/** Why this side ended a watch; not a failure of the connection. */
type StopReason = 'idle' | 'relist' | 'stop';
class WatchEnded extends Error {
  constructor(readonly why: StopReason) {
    super(`watch ended: ${why}`);
  }
}

interface RawList {
  kind?: string;
  apiVersion?: string;
  metadata?: { resourceVersion?: string; continue?: string };
  items?: KubeObject[];
}

interface WatchLine {
  type?: string;
  object?: KubeObject & { code?: number; reason?: string; message?: string };
}

const MIN_WATCH_TIMEOUT_S = 300;
/** A watch that ends cleanly sooner than this is treated as a failure, so a server that closes at once cannot spin us. */
const MIN_HEALTHY_WATCH_MS = 1000;
/** A watch that stayed open this long proves the connection good again: the next failure backs off from the start. */
const RESET_BACKOFF_AFTER_MS = 10_000;

export class ResilientInformer<T extends KubeObject> {
  readonly name: string;
  private readonly kc: k8s.KubeConfig;
  private readonly path: string;
  private readonly opts: Required<Pick<ResilientInformerOptions<T>, 'relistIntervalMs' | 'idleTimeoutMs' | 'initialBackoffMs' | 'maxBackoffMs' | 'notInstalledRetryMs' | 'requestTimeoutMs' | 'pageSize'>>;
  private readonly labelSelector: string | undefined;
  private readonly fieldSelector: string | undefined;
  private readonly transform: (raw: unknown) => T;
  private readonly log: Logger;

  /** namespace ('' for cluster-scoped) -> name -> object */
  private readonly store = new Map<string, Map<string, T>>();
  private count = 0;
  private readonly addHandlers: AddHandler<T>[] = [];
  private readonly updateHandlers: UpdateHandler<T>[] = [];
  private readonly deleteHandlers: DeleteHandler<T>[] = [];

  private running = false;
  private loopDone: Promise<void> | undefined;
  private resourceVersion = '';
  private synced = false;
  private syncWaiters: Array<() => void> = [];
  private installed: boolean | undefined;
  /** Monotonic (performance.now) times, for the relist period and the watchdog. */
  private lastListAt = 0;
  private lastActivityAt = 0;
  private watching = false;
  /** When the current watch stream opened (monotonic), 0 when none. */
  private watchOpenedAt = 0;
  private restarts = 0;
  private relists = 0;
  private lastError: string | undefined;
  private lastErrorTime: number | undefined;
  private lastEventTime: number | undefined;
  /** Ends the current list or watch request (set while one is in flight). */
  private abortCurrent: ((why: StopReason) => void) | undefined;
  private wakeSleep: (() => void) | undefined;
  private guardTimer: NodeJS.Timeout | undefined;

  constructor(options: ResilientInformerOptions<T>) {
    this.kc = options.kubeConfig;
    this.path = options.path.replace(/\/+$/, '');
    this.name = options.name ?? this.path;
    this.labelSelector = options.labelSelector;
    this.fieldSelector = options.fieldSelector;
    this.transform = options.transform ?? ((raw) => raw as T);
    this.log = (options.logger ?? pino({ level: 'info' })).child({ informer: this.name });
    this.opts = {
      relistIntervalMs: options.relistIntervalMs ?? 5 * 60_000,
      idleTimeoutMs: options.idleTimeoutMs ?? 3 * 60_000,
      initialBackoffMs: options.initialBackoffMs ?? 500,
      maxBackoffMs: options.maxBackoffMs ?? 30_000,
      notInstalledRetryMs: options.notInstalledRetryMs ?? 30_000,
      requestTimeoutMs: options.requestTimeoutMs ?? apiTimeoutMs(options.kubeConfig) ?? 30_000,
      pageSize: options.pageSize ?? 500,
    };
  }

  // ------------------------------------------------------------ handlers

  /**
   * Registers a handler. An 'add' handler registered after the first sync is
   * first called for every cached object, so late subscribers see the same
   * world as early ones. Returns a function that unregisters it.
   */
  on(event: 'add', handler: AddHandler<T>): () => void;
  on(event: 'update', handler: UpdateHandler<T>): () => void;
  on(event: 'delete', handler: DeleteHandler<T>): () => void;
  on(event: 'add' | 'update' | 'delete', handler: AddHandler<T> | UpdateHandler<T> | DeleteHandler<T>): () => void {
    const list = (event === 'add' ? this.addHandlers : event === 'update' ? this.updateHandlers : this.deleteHandlers) as unknown[];
    list.push(handler);
    if (event === 'add' && this.synced) for (const obj of this.list()) this.call(() => (handler as AddHandler<T>)(obj));
    return () => {
      const i = list.indexOf(handler);
      if (i >= 0) list.splice(i, 1);
    };
  }

  // ------------------------------------------------------------ cache

  /** The cached object; namespace '' for cluster-scoped objects. */
  get(namespace: string, name: string): T | undefined {
    return this.store.get(namespace)?.get(name);
  }

  /** By cache key: namespace/name, or name for a cluster-scoped object. */
  getByKey(key: string): T | undefined {
    const slash = key.indexOf('/');
    return slash < 0 ? this.get('', key) : this.get(key.slice(0, slash), key.slice(slash + 1));
  }

  list(): T[] {
    const out: T[] = [];
    for (const byName of this.store.values()) out.push(...byName.values());
    return out;
  }

  listNamespace(namespace: string): T[] {
    const byName = this.store.get(namespace);
    return byName ? [...byName.values()] : [];
  }

  size(): number {
    return this.count;
  }

  hasSynced(): boolean {
    return this.synced;
  }

  /** false while the resource is known to be absent (404 on list). */
  isInstalled(): boolean | undefined {
    return this.installed;
  }

  /** Resolves once hasSynced(), or rejects when the signal aborts first. */
  waitForSync(signal?: AbortSignal): Promise<void> {
    if (this.synced) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const onAbort = () => reject(signal?.reason ?? new Error('aborted'));
      if (signal?.aborted) return onAbort();
      signal?.addEventListener('abort', onAbort, { once: true });
      this.syncWaiters.push(() => {
        signal?.removeEventListener('abort', onAbort);
        resolve();
      });
    });
  }

  health(): InformerHealth {
    return {
      name: this.name,
      synced: this.synced,
      installed: this.installed,
      watching: this.watching,
      lastEventTime: this.lastEventTime,
      restarts: this.restarts,
      relists: this.relists,
      lastError: this.lastError,
      lastErrorTime: this.lastErrorTime,
      objects: this.count,
    };
  }

  // ------------------------------------------------------------ lifecycle

  /** Starts listing and watching in the background; idempotent. */
  start(): void {
    if (this.running) return;
    this.running = true;
    this.lastActivityAt = performance.now();
    // One timer for both the watchdog and the relist period: checked a few
    // times per shortest period so either fires within ~25% of its setting.
    const periods = [this.opts.idleTimeoutMs, this.opts.relistIntervalMs].filter((p) => p > 0);
    const tick = Math.min(5000, Math.max(50, Math.min(...periods, 20_000) / 4));
    this.guardTimer = setInterval(() => this.checkGuards(), tick);
    this.guardTimer.unref();
    this.loopDone = this.loop().catch((err: unknown) => {
      // The loop catches everything itself; this is a last resort, never a crash.
      this.log.error({ err }, 'informer loop failed');
    });
  }

  /** Stops the watch and timers; the cache keeps its last content. */
  async stop(): Promise<void> {
    if (!this.running) return;
    this.running = false;
    if (this.guardTimer) clearInterval(this.guardTimer);
    this.guardTimer = undefined;
    this.abortCurrent?.('stop');
    this.wakeSleep?.();
    await this.loopDone;
  }

  private checkGuards(): void {
    if (!this.watching || !this.abortCurrent) return;
    const now = performance.now();
    if (this.opts.relistIntervalMs > 0 && now - this.lastListAt >= this.opts.relistIntervalMs) {
      this.abortCurrent('relist');
    } else if (this.opts.idleTimeoutMs > 0 && now - this.lastActivityAt >= this.opts.idleTimeoutMs) {
      this.log.warn({ idleMs: now - this.lastActivityAt }, 'watch silent for too long, restarting it');
      this.abortCurrent('idle');
    }
  }

  // ------------------------------------------------------------ the loop

  private async loop(): Promise<void> {
    let failures = 0;
    while (this.running) {
      let delay = 0;
      try {
        if (!this.resourceVersion) {
          const found = await this.relist();
          if (!found) {
            delay = jitter(this.opts.notInstalledRetryMs);
            await this.sleep(delay);
            continue;
          }
        }
        const started = performance.now();
        await this.watch();
        // A clean end (the server's watch timeout): resume from where we are.
        if (performance.now() - started < MIN_HEALTHY_WATCH_MS) failures++;
        else failures = 0;
        if (failures > 0) delay = backoff(failures, this.opts.initialBackoffMs, this.opts.maxBackoffMs);
      } catch (err) {
        if (!this.running) break;
        if (err instanceof WatchEnded) {
          if (err.why === 'relist') this.resourceVersion = '';
          if (err.why === 'idle') this.restarts++;
          continue;
        }
        if (isGone(err)) {
          // Our resourceVersion is older than etcd keeps: a full list is the only way back.
          this.log.debug('resourceVersion expired, relisting');
          this.resourceVersion = '';
          continue;
        }
        // A 404 on a watch: the CRD vanished under it. The next list (after the backoff) will tell.
        if (err instanceof KubeHttpError && err.statusCode === 404) this.resourceVersion = '';
        if (this.watchOpenedAt > 0 && performance.now() - this.watchOpenedAt >= RESET_BACKOFF_AFTER_MS) failures = 0;
        failures++;
        this.restarts++;
        this.noteError(err);
        delay = backoff(failures, this.opts.initialBackoffMs, this.opts.maxBackoffMs);
        this.log.warn({ err: describe(err), retryInMs: Math.round(delay), failures }, 'list/watch failed, retrying');
      }
      this.watchOpenedAt = 0;
      if (delay > 0) await this.sleep(delay);
    }
    this.watching = false;
  }

  /** Lists everything and reconciles the cache with it. Returns false when the resource is not installed. */
  private async relist(): Promise<boolean> {
    const items: KubeObject[] = [];
    let rv = '';
    try {
      let cont: string | undefined;
      let itemKind: string | undefined;
      let apiVersion: string | undefined;
      do {
        const page = await this.getJson<RawList>({ limit: String(this.opts.pageSize), continue: cont });
        if (!rv) rv = page.metadata?.resourceVersion ?? '';
        itemKind ??= page.kind?.replace(/List$/, '');
        apiVersion ??= page.apiVersion;
        for (const item of page.items ?? []) {
          // List items come without apiVersion/kind; watch events carry them. Fill them in so both look alike.
          if (!item.kind && itemKind) item.kind = itemKind;
          if (!item.apiVersion && apiVersion) item.apiVersion = apiVersion;
          items.push(item);
        }
        cont = page.metadata?.continue || undefined;
      } while (cont && this.running);
    } catch (err) {
      if (err instanceof KubeHttpError && err.statusCode === 404) {
        if (this.installed !== false) this.log.warn({ path: this.path }, 'resource not installed (404 on list); will keep checking');
        this.installed = false;
        this.noteError(err);
        // Not installed means no objects: anything cached (the CRD was deleted) goes.
        this.reconcileWith([]);
        this.resourceVersion = '';
        this.markSynced();
        return false;
      }
      // Anything else, a 410 for an expired continue token included, goes to the loop (which lists again).
      throw err;
    }
    if (!this.running) throw new WatchEnded('stop');
    if (this.installed === false) this.log.info({ path: this.path }, 'resource is installed now');
    this.installed = true;
    this.relists++;
    this.reconcileWith(items);
    this.resourceVersion = rv;
    this.lastListAt = performance.now();
    this.lastEventTime = Date.now();
    this.markSynced();
    return true;
  }

  /** Applies a full list: upserts every item, deletes what is cached but absent. */
  private reconcileWith(items: KubeObject[]): void {
    const seen = new Set<string>();
    for (const raw of items) {
      const obj = this.transform(raw);
      seen.add(objectKey(obj));
      this.upsert(obj);
    }
    for (const obj of this.list()) {
      if (!seen.has(objectKey(obj))) this.remove(obj, true);
    }
  }

  /** One watch request; resolves on a clean end, rejects on an error or when ended by us (WatchEnded). */
  private async watch(): Promise<void> {
    // Spread the server-side timeout like client-go does, so many informers do not reconnect in step.
    const timeoutSeconds = String(Math.floor(MIN_WATCH_TIMEOUT_S * (1 + Math.random())));
    const { req, res } = await this.open({
      watch: '1',
      resourceVersion: this.resourceVersion,
      allowWatchBookmarks: 'true',
      timeoutSeconds,
    });
    this.watching = true;
    this.lastActivityAt = this.watchOpenedAt = performance.now();
    try {
      await new Promise<void>((resolve, reject) => {
        let buffer = '';
        let failed = false;
        const fail = (err: unknown) => {
          if (failed) return;
          failed = true;
          req.destroy();
          reject(err);
        };
        this.abortCurrent = (why) => fail(new WatchEnded(why));
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => {
          // Nothing may touch the cache once this watch is over (a relist may be running).
          if (failed) return;
          buffer += chunk;
          let start = 0;
          let nl: number;
          while ((nl = buffer.indexOf('\n', start)) >= 0) {
            const line = buffer.slice(start, nl);
            start = nl + 1;
            if (!line.trim()) continue;
            try {
              this.onWatchLine(JSON.parse(line) as WatchLine);
            } catch (err) {
              return fail(err);
            }
          }
          buffer = buffer.slice(start);
        });
        res.on('end', () => {
          if (!failed) resolve();
        });
        res.on('error', fail);
        res.on('close', () => {
          if (!res.complete) fail(new Error('watch connection closed'));
        });
      });
    } finally {
      this.watching = false;
      this.abortCurrent = undefined;
    }
  }

  private onWatchLine(line: WatchLine): void {
    this.lastActivityAt = performance.now();
    this.lastEventTime = Date.now();
    const obj = line.object;
    if (!obj) return;
    switch (line.type) {
      case 'ADDED':
      case 'MODIFIED':
        this.upsert(this.transform(obj));
        break;
      case 'DELETED':
        this.remove(this.transform(obj), false);
        break;
      case 'BOOKMARK':
        break;
      case 'ERROR': {
        // The object is a Status; a 410 here means "relist".
        throw new KubeHttpError(obj.code ?? 500, obj.reason, obj.message ?? 'watch error');
      }
      default:
        return;
    }
    const rv = obj.metadata?.resourceVersion;
    if (rv) this.resourceVersion = rv;
  }

  // ------------------------------------------------------------ cache writes

  private upsert(obj: T): void {
    const ns = obj.metadata?.namespace ?? '';
    const name = obj.metadata?.name ?? '';
    let byName = this.store.get(ns);
    if (!byName) this.store.set(ns, (byName = new Map()));
    const old = byName.get(name);
    if (!old) {
      byName.set(name, obj);
      this.count++;
      for (const h of [...this.addHandlers]) this.call(() => h(obj));
      return;
    }
    // Same resourceVersion = same object (a relist or a resumed watch repeating what we have): not an update.
    const rv = obj.metadata?.resourceVersion;
    if (rv && rv === old.metadata?.resourceVersion) return;
    byName.set(name, obj);
    for (const h of [...this.updateHandlers]) this.call(() => h(obj, old));
  }

  private remove(obj: T, finalStateUnknown: boolean): void {
    const ns = obj.metadata?.namespace ?? '';
    const byName = this.store.get(ns);
    const name = obj.metadata?.name ?? '';
    const old = byName?.get(name);
    if (!byName || !old) return;
    byName.delete(name);
    if (byName.size === 0) this.store.delete(ns);
    this.count--;
    const last = finalStateUnknown ? old : obj;
    for (const h of [...this.deleteHandlers]) this.call(() => h(last, { finalStateUnknown }));
  }

  /** A handler's exception must not break the watch loop or other handlers. */
  private call(fn: () => void): void {
    try {
      fn();
    } catch (err) {
      this.log.error({ err }, 'informer event handler threw');
    }
  }

  private markSynced(): void {
    if (this.synced) return;
    this.synced = true;
    const waiters = this.syncWaiters;
    this.syncWaiters = [];
    for (const w of waiters) w();
  }

  private noteError(err: unknown): void {
    this.lastError = describe(err);
    this.lastErrorTime = Date.now();
  }

  /** A pause that stop() cuts short. */
  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        if (this.wakeSleep === done) this.wakeSleep = undefined;
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.wakeSleep = done;
    });
  }

  // ------------------------------------------------------------ HTTP

  /**
   * Opens a GET on the collection and waits for the response headers (at most
   * requestTimeoutMs). A status other than 200 rejects with KubeHttpError.
   * While in flight, abortCurrent ends it (so stop() and the watchdog can cut
   * even a connect that hangs).
   */
  private async open(query: Record<string, string | undefined>): Promise<{ req: http.ClientRequest; res: http.IncomingMessage }> {
    const cluster = this.kc.getCurrentCluster();
    if (!cluster) throw new Error('kubeconfig has no current cluster');
    const url = new URL(cluster.server.replace(/\/+$/, '') + this.path);
    const params: Record<string, string | undefined> = { ...query, labelSelector: this.labelSelector, fieldSelector: this.fieldSelector };
    for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== '') url.searchParams.set(k, v);
    const options: https.RequestOptions = {};
    await this.kc.applyToHTTPSOptions(options);
    if (!this.running) throw new WatchEnded('stop');
    const transport = url.protocol === 'http:' ? http : https;
    return new Promise((resolve, reject) => {
      let settled = false;
      const req = transport.request(url, { ...options, method: 'GET', headers: { ...options.headers, Accept: 'application/json' } });
      const timer = setTimeout(() => req.destroy(new ApiTimeoutError(`no response from the API server within ${this.opts.requestTimeoutMs} ms`)), this.opts.requestTimeoutMs);
      timer.unref();
      const settle = (fn: () => void) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        if (this.abortCurrent === abort) this.abortCurrent = undefined;
        fn();
      };
      const abort = (why: StopReason) => {
        req.destroy();
        settle(() => reject(new WatchEnded(why)));
      };
      this.abortCurrent = abort;
      req.on('error', (err) => settle(() => reject(err)));
      req.on('response', (res) => {
        if (res.statusCode === 200) return settle(() => resolve({ req, res }));
        readBody(res).then(
          (body) => settle(() => reject(statusError(res.statusCode ?? 0, body))),
          (err: unknown) => settle(() => reject(err)),
        );
      });
      req.end();
    });
  }

  /** A whole JSON GET (a list page), bounded by requestTimeoutMs. */
  private async getJson<R>(query: Record<string, string | undefined>): Promise<R> {
    const { req, res } = await this.open(query);
    const timer = setTimeout(() => req.destroy(new ApiTimeoutError(`list not read within ${this.opts.requestTimeoutMs} ms`)), this.opts.requestTimeoutMs);
    timer.unref();
    this.abortCurrent = () => req.destroy();
    try {
      return JSON.parse(await readBody(res)) as R;
    } finally {
      clearTimeout(timer);
      this.abortCurrent = undefined;
    }
  }
}

// ------------------------------------------------------------ helpers

function readBody(res: http.IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    res.on('data', (c: Buffer) => chunks.push(c));
    res.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    res.on('error', reject);
    res.on('close', () => {
      if (!res.complete) reject(new Error('connection closed while reading the response'));
    });
  });
}

function statusError(code: number, body: string): KubeHttpError {
  try {
    const status = JSON.parse(body) as { reason?: string; message?: string };
    return new KubeHttpError(code, status.reason, status.message ?? `HTTP ${code}`);
  } catch {
    return new KubeHttpError(code, undefined, `HTTP ${code}: ${body.slice(0, 200)}`);
  }
}

function isGone(err: unknown): boolean {
  return err instanceof KubeHttpError && (err.statusCode === 410 || err.reason === 'Expired' || err.reason === 'Gone');
}

/** Exponential backoff with "equal jitter": between half and all of the exponential step, capped. */
export function backoff(failures: number, initialMs: number, maxMs: number): number {
  const step = Math.min(maxMs, initialMs * 2 ** Math.max(0, failures - 1));
  return step / 2 + Math.random() * (step / 2);
}

/** ±20 % so that many replicas retrying a slow period do not line up. */
function jitter(ms: number): number {
  return ms * (0.8 + Math.random() * 0.4);
}

function describe(err: unknown): string {
  if (err instanceof KubeHttpError) return `HTTP ${err.statusCode}${err.reason ? ` ${err.reason}` : ''}: ${err.message}`;
  if (err instanceof Error) return err.message;
  return String(err);
}
