// The reconciler at scale on the real local control plane: one cluster-wide
// `canary-gate reconciler` process (its own identity and least-privilege
// RBAC, exactly as the e2e tests run it) managing N Canaries, M of which roll
// out a new image at once.
//
//   npx tsc -p . && npm run bench:reconciler
//   BENCH_MANAGED=1000 BENCH_PROGRESSING=100 BENCH_INTERVAL=5s BENCH_NAMESPACES=10 (the defaults)
//   BENCH_IDLE_SECONDS=30          length of the idle window
//   BENCH_PROXY=0                  no counting proxy: only apiserver-wide figures (and no shield)
//   BENCH_SHIELD=0                 let the reconciler see (and act on) every namespace
//   BENCH_RECONCILER_ARGS="--workers 8"   extra flags for the reconciler
//   BENCH_QUIET_WAIT_SECONDS=60    how long to wait for other canary-gate runs to finish
//   BENCH_CLI=/path/to/cli.js      run another build of the reconciler (A/B comparisons)
//   BENCH_NODE_OPTIONS="--trace-gc"  node flags for the reconciler process only
//   BENCH_KEEP=1                   leave the namespaces (and say how to delete them)
//
// Phases:
//   setup        cluster up, CRDs, RBAC, our own webhook (config canary-gate-bench,
//                scoped to this run's namespaces), NS namespaces labelled
//                canarygate.dev/bench=true and opted in, N Deployments (1
//                replica) and one explicit Canary each; then the reconciler.
//   idle         every Canary Initialized and every Deployment rolled out; for
//                BENCH_IDLE_SECONDS nothing of ours touches the API: reads and
//                writes of the reconciler are counted.
//   progressing  a new image is pushed to M Deployments at once (the webhook
//                holds each as a pending revision) and they run to promotion.
//
// What is counted, and by whom:
//   - The reconciler talks to the API server through a counting TLS proxy in
//     this process (BENCH_PROXY=1, the default): the proxy re-originates each
//     request with the reconciler user's own client certificate, so identity
//     and RBAC are unchanged, and counts verb x resource, status codes, bytes
//     and TLS handshakes of that one user. These are the headline figures.
//   - apiserver_request_total deltas (kubectl get --raw /metrics) over the
//     same windows, as a cross-check. They are APISERVER-WIDE: they include
//     kube-controller-manager, the scheduler, kwok, this benchmark's own
//     pushes and anyone else's tests running at the same time.
//   - Step lag, the target: the reconciler's own part,
//     canary_gate_reconciler_step_own_lag_seconds (from the later of a step's
//     due time and the queueing of its Canary by its timer or by the event
//     that let it proceed, to the sync; quantiles are the upper bound of the
//     bucket they fall in). Shown beside it, for what a user waits:
//     canary_gate_reconciler_step_lag_seconds and, exactly, from the
//     Canaries' status (a step taken at lastStepTime[k+1] was due at
//     lastStepTime[k] + interval); both count the waits for the copy's Pods
//     to turn ready, which are the controller-manager's and kwok's.
//   - CPU and RSS of the reconciler process from /proc/<pid>/stat and
//     /proc/<pid>/status (RSS sampled every second).
//
// Care taken on a shared cluster:
//   - The reconciler runs cluster-wide (no --namespace: cluster-wide lists and
//     watches, the cluster-wide code paths), but the proxy SHIELDS it: objects
//     of namespaces other than this run's are removed from the lists and watch
//     streams it receives, and requests into other namespaces are refused.
//     Without that it would act on the Canaries of anyone's e2e tests running
//     at the same time (their own namespaced reconcilers included), which
//     happened while this benchmark was written. The API server still serves
//     the full cluster-wide lists and watches (their bytes are counted).
//   - The webhook is started here (not with test/e2e's startWebhook) so that
//     its configuration selects this run's namespaces by a label of their own
//     and nothing else; its TLS files live in a temporary folder. Another
//     canary-gate webhook for opted-in namespaces (an e2e run's) would undo
//     our holds, as ours would undo its: each sees the other's pending
//     annotations as forged. The benchmark waits a while for such a
//     configuration to go away; if one is there at push time it removes the
//     opt-in label from its namespaces (it changes nothing for explicit
//     Canaries, and says so in the output), and it checks every push.
//   - Everything created is removed at the end: the reconciler is stopped, the
//     Canaries' finalizers are stripped, then the namespaces are deleted.
//
// Exits non-zero only when the benchmark itself failed; a missed target is MISS.

import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import type { TLSSocket } from 'node:tls';
import * as k8s from '@kubernetes/client-node';
import { pino } from 'pino';
import { generateCertificates } from '../../certs/generate.js';
import { MANAGED_LABEL, NAMESPACE_ENABLED_LABEL, PENDING_REVISION } from '../../core/contract.js';
import type { Canary } from '../../core/api/types.js';
import { MUTATING_WEBHOOK_NAME, webhookConfiguration } from '../../deploy/manifests.js';
import { ResilientInformer, type KubeObject } from '../../reconciler/kit/informer.js';
import type { RolloutStatus } from '../../reconciler/decide/transition.js';
import { cliPath, clusterDir, clusterUp, kubeconfigPath, kubectl, kubectlOk, repoRoot } from '../e2e/cluster.js';
import { deployment } from '../e2e/objects.js';
import { freePort, RECONCILER_USER, reconcilerRbacForUser } from '../e2e/webhook-process.js';

// ---------------------------------------------------------------------------
// Parameters

function envInt(name: string, def: number, min: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return def;
  if (!/^\d+$/.test(raw) || Number(raw) < min) throw new Error(`${name} must be a whole number >= ${min}, got "${raw}"`);
  return Number(raw);
}

function parseDurationMs(text: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m)$/.exec(text);
  if (!m) throw new Error(`BENCH_INTERVAL must look like 5s, 500ms or 1m, got "${text}"`);
  return Math.round(Number(m[1]) * ({ ms: 1, s: 1000, m: 60_000 } as Record<string, number>)[m[2] as string]!);
}

const P = {
  managed: envInt('BENCH_MANAGED', 1000, 1),
  progressing: envInt('BENCH_PROGRESSING', 100, 0),
  interval: process.env.BENCH_INTERVAL || '5s',
  namespaces: envInt('BENCH_NAMESPACES', 10, 1),
  idleSeconds: envInt('BENCH_IDLE_SECONDS', 30, 5),
  proxy: process.env.BENCH_PROXY !== '0',
  /** Hide other namespaces from the reconciler (needs the proxy). */
  shield: process.env.BENCH_PROXY !== '0' && process.env.BENCH_SHIELD !== '0',
  reconcilerArgs: (process.env.BENCH_RECONCILER_ARGS ?? '').split(/\s+/).filter(Boolean),
  quietWaitSeconds: envInt('BENCH_QUIET_WAIT_SECONDS', 60, 0),
  keep: process.env.BENCH_KEEP === '1',
  cli: process.env.BENCH_CLI || cliPath,
  nodeOptions: (process.env.BENCH_NODE_OPTIONS ?? '').split(/\s+/).filter(Boolean),
  /** Everything, cleanup included, must end within this (the brief: < 10 min). */
  budgetSeconds: envInt('BENCH_BUDGET_SECONDS', 570, 60),
};
const INTERVAL_MS = parseDurationMs(P.interval);
const RELIST_INTERVAL_S = 300; // the reconciler's default --relist-interval
const RUN_ID = randomBytes(3).toString('hex');
const BENCH_LABEL = 'canarygate.dev/bench';
const RUN_LABEL = 'canarygate.dev/bench-run';
const WEBHOOK_CONFIG = 'canary-gate-bench';
const GROUP = 'canarygate.dev';
const VERSION = 'v1alpha1';
const IMAGE_1 = 'example.test/bench:1';
const IMAGE_2 = 'example.test/bench:2';
/** Kept free at the end of the budget for cleanup. */
const CLEANUP_RESERVE_MS = 100_000;

const started = performance.now();
const deadline = started + P.budgetSeconds * 1000;
const abort = new AbortController();
const log = (msg: string) => console.log(`[bench ${((performance.now() - started) / 1000).toFixed(1).padStart(6)} s] ${msg}`);

class BenchError extends Error {}

/** Time left for a phase: its own cap, never eating into the cleanup reserve. */
function phaseTimeout(capMs: number): number {
  return Math.max(1000, Math.min(capMs, deadline - CLEANUP_RESERVE_MS - performance.now()));
}

const sleep = (ms: number) =>
  new Promise<void>((resolve, reject) => {
    if (abort.signal.aborted) return reject(new BenchError('interrupted'));
    const t = setTimeout(() => {
      abort.signal.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(t);
      reject(new BenchError('interrupted'));
    };
    abort.signal.addEventListener('abort', onAbort, { once: true });
  });

async function until<T>(what: string, timeoutMs: number, probe: () => T | undefined | false | Promise<T | undefined | false>, everyMs = 500, progress?: () => string): Promise<T> {
  const end = performance.now() + timeoutMs;
  let lastReport = performance.now();
  for (;;) {
    const v = await probe();
    if (v !== undefined && v !== false) return v as T;
    if (performance.now() > end) throw new BenchError(`timed out after ${(timeoutMs / 1000).toFixed(0)} s waiting for ${what}${progress ? ` (${progress()})` : ''}`);
    if (progress && performance.now() - lastReport > 10_000) {
      lastReport = performance.now();
      log(`  waiting for ${what}: ${progress()}`);
    }
    await sleep(everyMs);
  }
}

async function pool<T>(items: readonly T[], concurrency: number, fn: (item: T, i: number) => Promise<void>): Promise<void> {
  let next = 0;
  const workers = Array.from({ length: Math.min(concurrency, items.length) }, async () => {
    while (next < items.length) {
      const i = next++;
      await fn(items[i] as T, i);
    }
  });
  await Promise.all(workers);
}

// ---------------------------------------------------------------------------
// A small admin client with one keep-alive connection pool (the bench's own
// calls should cost the shared 2-core machine as little as possible).

interface TlsFiles {
  server: URL;
  ca: Buffer;
  cert: Buffer;
  key: Buffer;
}

function tlsFilesOf(kubeconfigFile: string): TlsFiles {
  const kc = new k8s.KubeConfig();
  kc.loadFromFile(kubeconfigFile);
  const cluster = kc.getCurrentCluster();
  const user = kc.getCurrentUser();
  if (!cluster?.caFile || !user?.certFile || !user.keyFile) throw new BenchError(`${kubeconfigFile}: expected file-based CA and client certificate`);
  return { server: new URL(cluster.server), ca: readFileSync(cluster.caFile), cert: readFileSync(user.certFile), key: readFileSync(user.keyFile) };
}

class AdminApi {
  private readonly agent: https.Agent;
  constructor(private readonly tls: TlsFiles) {
    this.agent = new https.Agent({ keepAlive: true, maxSockets: 32, ca: tls.ca, cert: tls.cert, key: tls.key });
  }

  request(method: string, p: string, body?: unknown, contentType = 'application/json'): Promise<{ status: number; text: string }> {
    return new Promise((resolve, reject) => {
      const data = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
      const req = https.request(
        {
          host: this.tls.server.hostname,
          port: this.tls.server.port,
          method,
          path: p,
          agent: this.agent,
          headers: { accept: 'application/json', ...(data ? { 'content-type': contentType, 'content-length': data.length } : {}) },
          timeout: 60_000,
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') }));
          res.on('error', reject);
        },
      );
      req.on('timeout', () => req.destroy(new Error(`${method} ${p}: timeout`)));
      req.on('error', reject);
      req.end(data);
    });
  }

  async ok<T = unknown>(method: string, p: string, body?: unknown, contentType?: string, accept: number[] = []): Promise<T> {
    for (let attempt = 0; ; attempt++) {
      const r = await this.request(method, p, body, contentType);
      if ((r.status >= 200 && r.status < 300) || accept.includes(r.status)) return (r.text ? JSON.parse(r.text) : undefined) as T;
      // 429/5xx under load: a few retries, as kubectl would.
      if ((r.status === 429 || r.status >= 500) && attempt < 4) {
        await sleep(200 * 2 ** attempt);
        continue;
      }
      throw new BenchError(`${method} ${p}: HTTP ${r.status}: ${r.text.slice(0, 300)}`);
    }
  }

  close(): void {
    this.agent.destroy();
  }
}

// ---------------------------------------------------------------------------
// The counting proxy in front of the API server, for the reconciler user only.

type Verb = 'GET' | 'LIST' | 'WATCH' | 'POST' | 'PUT' | 'PATCH' | 'DELETE' | 'DELETECOLLECTION' | 'OTHER';
const WRITE_VERBS: ReadonlySet<string> = new Set(['POST', 'PUT', 'PATCH', 'DELETE', 'DELETECOLLECTION']);
const READ_VERBS: ReadonlySet<string> = new Set(['GET', 'LIST']);

interface PathInfo {
  verb: Verb;
  /** e.g. deployments.apps, pods/status */
  resource: string;
  /** The plain resource name (deployments). */
  base: string;
  name?: string;
  /** The namespace in the path (/namespaces/NS/...), if any. */
  namespace?: string;
}

/** GET /api/v1/namespaces/ns/pods/x/status -> { verb: 'GET', resource: 'pods/status', namespace: 'ns', ... } */
function describePath(pathname: string, search: URLSearchParams, method: string): PathInfo {
  const s = pathname.split('/').filter(Boolean);
  let rest: string[];
  let group = '';
  if (s[0] === 'api') rest = s.slice(2);
  else if (s[0] === 'apis') {
    group = s[1] ?? '';
    rest = s.slice(3);
  } else return { verb: method === 'GET' ? 'GET' : 'OTHER', resource: pathname, base: '' };
  let watchPath = false;
  if (rest[0] === 'watch') {
    watchPath = true;
    rest = rest.slice(1);
  }
  let namespace: string | undefined;
  if (rest[0] === 'namespaces' && rest.length >= 3) {
    namespace = rest[1];
    rest = rest.slice(2);
  }
  const [res, name, sub] = rest;
  const shortGroup = group === '' ? '' : `.${group.split('.')[0]}`;
  const resource = `${res ?? ''}${shortGroup}${sub ? `/${sub}` : ''}`;
  let verb: Verb;
  switch (method) {
    case 'GET':
      verb = watchPath || search.get('watch') === 'true' || search.get('watch') === '1' ? 'WATCH' : name ? 'GET' : 'LIST';
      break;
    case 'DELETE':
      verb = name ? 'DELETE' : 'DELETECOLLECTION';
      break;
    case 'POST':
    case 'PUT':
    case 'PATCH':
      verb = method;
      break;
    default:
      verb = 'OTHER';
  }
  const info: PathInfo = { verb, resource, base: res ?? '' };
  if (name) info.name = name;
  if (namespace) info.namespace = namespace;
  return info;
}

interface ProxySnapshot {
  at: number;
  /** "VERB resource" -> requests */
  requests: Map<string, number>;
  /** "VERB code" -> responses */
  codes: Map<string, number>;
  /** response bytes per verb */
  bytes: Map<string, number>;
  handshakes: number;
  /** upstream latency (ms) of every write so far, in order */
  writeLatencies: number[];
}

class CountingProxy {
  private server: https.Server | undefined;
  private readonly agent: https.Agent;
  private readonly requests = new Map<string, number>();
  private readonly codes = new Map<string, number>();
  private readonly bytes = new Map<string, number>();
  private readonly writeLatencies: number[] = [];
  private handshakes = 0;
  /** Objects and watch events of other namespaces kept from the reconciler, and requests refused. */
  hidden = 0;
  refused = 0;
  /** performance.now() of the last request other than a watch. */
  lastRequestAt = 0;
  private readonly sockets = new Set<TLSSocket>();

  /**
   * shield: the namespaces the reconciler may see. Objects of any other
   * namespace are removed from cluster-wide lists and watches, and requests
   * into other namespaces are refused with 403, so that a cluster-wide
   * reconciler cannot act on other people's Canaries on a shared cluster.
   */
  constructor(
    private readonly upstream: TlsFiles,
    private readonly shield?: ReadonlySet<string>,
  ) {
    this.agent = new https.Agent({ keepAlive: true, maxSockets: 64, ca: upstream.ca, cert: upstream.cert, key: upstream.key });
  }

  async start(): Promise<{ port: number; caCert: string }> {
    const bundle = generateCertificates({ dnsNames: ['localhost'], ipAddresses: ['127.0.0.1'] });
    const server = https.createServer({ cert: bundle.cert, key: bundle.key, keepAliveTimeout: 30_000 }, (req, res) => this.handle(req, res));
    server.on('secureConnection', (socket: TLSSocket) => {
      this.handshakes++;
      this.sockets.add(socket);
      socket.once('close', () => this.sockets.delete(socket));
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, '127.0.0.1', () => resolve());
    });
    this.server = server;
    return { port: (server.address() as AddressInfo).port, caCert: bundle.caCert };
  }

  private bump(map: Map<string, number>, key: string, by = 1): void {
    map.set(key, (map.get(key) ?? 0) + by);
  }

  private handle(req: IncomingMessage, res: ServerResponse): void {
    const url = new URL(req.url ?? '/', 'https://proxy.invalid');
    const info = describePath(url.pathname, url.searchParams, req.method ?? 'GET');
    const { verb, resource } = info;
    const t0 = performance.now();
    const shield = this.shield;
    const pathNamespace = info.namespace ?? (info.base === 'namespaces' ? info.name : undefined);
    if (shield && pathNamespace !== undefined && !shield.has(pathNamespace)) {
      this.refused++;
      this.bump(this.requests, `REFUSED-${verb} ${resource}`);
      const body = JSON.stringify({ kind: 'Status', apiVersion: 'v1', status: 'Failure', reason: 'Forbidden', code: 403, message: `namespace ${pathNamespace} is hidden by the benchmark's proxy` });
      res.writeHead(403, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) }).end(body);
      req.resume();
      return;
    }
    this.bump(this.requests, `${verb} ${resource}`);
    if (verb !== 'WATCH') this.lastRequestAt = performance.now();
    const headers = { ...req.headers };
    delete headers.host;
    delete headers.connection;
    delete headers['keep-alive'];
    // Cluster-wide lists and watches are filtered: ask for plain JSON.
    const filter = shield && pathNamespace === undefined && (verb === 'LIST' || verb === 'WATCH') ? shield : undefined;
    if (filter) delete headers['accept-encoding'];
    const keep = (obj: { kind?: string; metadata?: { name?: string; namespace?: string } } | undefined): boolean => {
      const ns = info.base === 'namespaces' ? obj?.metadata?.name : obj?.metadata?.namespace;
      if (ns === undefined || obj?.kind === 'Status' || filter?.has(ns)) return true;
      this.hidden++;
      return false;
    };
    const up = https.request(
      {
        host: this.upstream.server.hostname,
        port: this.upstream.server.port,
        method: req.method,
        path: req.url,
        headers,
        agent: this.agent,
      },
      (upRes) => {
        this.bump(this.codes, `${verb} ${upRes.statusCode}`);
        const h = { ...upRes.headers };
        delete h.connection;
        delete h['keep-alive'];
        upRes.on('data', (c: Buffer | string) => this.bump(this.bytes, verb, typeof c === 'string' ? Buffer.byteLength(c) : c.length));
        upRes.on('end', () => {
          if (WRITE_VERBS.has(verb)) this.writeLatencies.push(performance.now() - t0);
        });
        if (filter && upRes.statusCode === 200 && String(h['content-type'] ?? '').includes('json') && !h['content-encoding']) {
          delete h['content-length'];
          delete h['transfer-encoding'];
          if (verb === 'LIST') {
            const chunks: Buffer[] = [];
            upRes.on('data', (c: Buffer) => chunks.push(c));
            upRes.on('end', () => {
              let body = Buffer.concat(chunks);
              try {
                const list = JSON.parse(body.toString('utf8')) as { items?: Array<{ metadata?: { namespace?: string } }> };
                if (Array.isArray(list.items)) list.items = list.items.filter(keep);
                body = Buffer.from(JSON.stringify(list));
              } catch {
                // not a list: pass it on as it came
              }
              res.writeHead(200, { ...h, 'content-length': body.length }).end(body);
            });
            upRes.on('error', () => res.destroy());
            return;
          }
          res.writeHead(200, h);
          res.flushHeaders();
          let buffer = '';
          upRes.setEncoding('utf8');
          upRes.on('data', (chunk: string) => {
            buffer += chunk;
            let out = '';
            let nl: number;
            while ((nl = buffer.indexOf('\n')) >= 0) {
              const line = buffer.slice(0, nl);
              buffer = buffer.slice(nl + 1);
              if (!line.trim()) continue;
              try {
                const event = JSON.parse(line) as { object?: { kind?: string; metadata?: { namespace?: string } } };
                if (!keep(event.object)) continue;
              } catch {
                // pass on what cannot be read
              }
              out += `${line}\n`;
            }
            if (out) res.write(out);
          });
          upRes.on('end', () => res.end(buffer));
          upRes.on('error', () => res.destroy());
          return;
        }
        res.writeHead(upRes.statusCode ?? 502, h);
        // Send the headers now: a watch with nothing to report yet must still look open to the client.
        res.flushHeaders();
        upRes.pipe(res);
      },
    );
    up.on('error', (err) => {
      if (!res.headersSent) res.writeHead(502, { 'content-type': 'text/plain' }).end(`bench proxy: ${err.message}`);
      else res.destroy();
    });
    // The client ended a watch (or gave up): end the upstream request too.
    res.on('close', () => {
      if (!res.writableFinished) up.destroy();
    });
    req.pipe(up);
  }

  snapshot(): ProxySnapshot {
    return {
      at: performance.now(),
      requests: new Map(this.requests),
      codes: new Map(this.codes),
      bytes: new Map(this.bytes),
      handshakes: this.handshakes,
      writeLatencies: [...this.writeLatencies],
    };
  }

  async stop(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
    this.agent.destroy();
  }
}

interface ProxyDelta {
  seconds: number;
  requests: Map<string, number>;
  byVerb: Map<string, number>;
  codes: Map<string, number>;
  bytes: Map<string, number>;
  handshakes: number;
  writeLatencies: number[];
  reads: number;
  writes: number;
  watches: number;
  nonWatchRequests: number;
}

function proxyDelta(a: ProxySnapshot, b: ProxySnapshot): ProxyDelta {
  const diff = (x: Map<string, number>, y: Map<string, number>) => {
    const out = new Map<string, number>();
    for (const [k, v] of y) {
      const d = v - (x.get(k) ?? 0);
      if (d) out.set(k, d);
    }
    return out;
  };
  const requests = diff(a.requests, b.requests);
  const byVerb = new Map<string, number>();
  for (const [k, v] of requests) {
    const verb = k.split(' ')[0] as string;
    byVerb.set(verb, (byVerb.get(verb) ?? 0) + v);
  }
  const sum = (pred: (verb: string) => boolean) => [...byVerb].filter(([v]) => pred(v)).reduce((s, [, n]) => s + n, 0);
  return {
    seconds: (b.at - a.at) / 1000,
    requests,
    byVerb,
    codes: diff(a.codes, b.codes),
    bytes: diff(a.bytes, b.bytes),
    handshakes: b.handshakes - a.handshakes,
    writeLatencies: b.writeLatencies.slice(a.writeLatencies.length),
    reads: sum((v) => READ_VERBS.has(v)),
    writes: sum((v) => WRITE_VERBS.has(v)),
    watches: byVerb.get('WATCH') ?? 0,
    nonWatchRequests: sum((v) => v !== 'WATCH'),
  };
}

// ---------------------------------------------------------------------------
// apiserver_request_total, apiserver-wide

type Counter = Map<string, number>; // "VERB resource[/sub]" -> count

function parseApiserverRequests(text: string): Counter {
  const out: Counter = new Map();
  for (const line of text.split('\n')) {
    if (!line.startsWith('apiserver_request_total{')) continue;
    const close = line.lastIndexOf('}');
    const labels: Record<string, string> = {};
    for (const m of line.slice(24, close).matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[m[1] as string] = m[2] as string;
    if (!labels.resource) continue; // non-resource URLs (/metrics, /readyz, discovery)
    const group = labels.group ? `.${labels.group.split('.')[0]}` : '';
    const key = `${labels.verb} ${labels.resource}${group}${labels.subresource ? `/${labels.subresource}` : ''}`;
    out.set(key, (out.get(key) ?? 0) + Number(line.slice(close + 1).trim()));
  }
  return out;
}

function counterDelta(a: Counter, b: Counter): Counter {
  const out: Counter = new Map();
  for (const [k, v] of b) {
    const d = v - (a.get(k) ?? 0);
    if (d > 0) out.set(k, d);
  }
  return out;
}

function byVerbOf(c: Counter): Map<string, number> {
  const out = new Map<string, number>();
  for (const [k, v] of c) {
    const verb = k.split(' ')[0] as string;
    out.set(verb, (out.get(verb) ?? 0) + v);
  }
  return out;
}

const APISERVER_WRITE_VERBS: ReadonlySet<string> = new Set(['POST', 'PUT', 'PATCH', 'DELETE', 'DELETECOLLECTION', 'APPLY', 'CREATE', 'UPDATE']);

// ---------------------------------------------------------------------------
// The reconciler's /metrics

interface Buckets {
  /** [upper bound, cumulative count], ascending, +Inf last */
  buckets: Array<[number, number]>;
  count: number;
  sum: number;
}

function parseHistogram(text: string, name: string): Buckets {
  const buckets: Array<[number, number]> = [];
  let count = 0;
  let sum = 0;
  for (const line of text.split('\n')) {
    if (line.startsWith(`${name}_bucket{`)) {
      const le = /le="([^"]+)"/.exec(line)?.[1] ?? '';
      buckets.push([le === '+Inf' ? Infinity : Number(le), Number(line.slice(line.lastIndexOf(' ') + 1))]);
    } else if (line.startsWith(`${name}_count`)) count = Number(line.slice(line.lastIndexOf(' ') + 1));
    else if (line.startsWith(`${name}_sum`)) sum = Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  buckets.sort((x, y) => x[0] - y[0]);
  return { buckets, count, sum };
}

function histogramDelta(a: Buckets, b: Buckets): Buckets {
  return {
    buckets: b.buckets.map(([le, n]) => [le, n - (a.buckets.find(([l]) => l === le)?.[1] ?? 0)] as [number, number]),
    count: b.count - a.count,
    sum: b.sum - a.sum,
  };
}

/** The upper bound of the bucket the q-quantile falls in (Infinity past the last finite bucket). */
function bucketQuantile(h: Buckets, q: number): number | undefined {
  if (h.count <= 0) return undefined;
  const target = q * h.count;
  for (const [le, n] of h.buckets) if (n >= target) return le;
  return Infinity;
}

function gauge(text: string, name: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${name} `));
  return line ? Number(line.slice(name.length + 1)) : undefined;
}

// ---------------------------------------------------------------------------
// /proc

const CLK_TCK = (() => {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
  } catch {
    return 100;
  }
})();

function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // fields[0] is field 3 (state): utime is field 14, stime 15.
  return (Number(fields[11]) + Number(fields[12])) / CLK_TCK;
}

function rssMB(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = /VmRSS:\s+(\d+)\s+kB/.exec(status)?.[1];
  return kb ? Number(kb) / 1024 : 0;
}

class RssSampler {
  private timer: NodeJS.Timeout | undefined;
  private phase = 'startup';
  readonly max = new Map<string, number>();
  constructor(private readonly pid: number) {}
  start(): void {
    const sample = () => {
      try {
        const mb = rssMB(this.pid);
        this.max.set(this.phase, Math.max(this.max.get(this.phase) ?? 0, mb));
      } catch {
        // the process is gone
      }
    };
    sample();
    this.timer = setInterval(sample, 1000);
    this.timer.unref();
  }
  setPhase(phase: string): void {
    this.phase = phase;
  }
  overall(): number {
    return Math.max(0, ...this.max.values());
  }
  stop(): void {
    if (this.timer) clearInterval(this.timer);
  }
}

// ---------------------------------------------------------------------------
// Processes: the webhook (own TLS folder) and the reconciler (cluster-wide)

interface Proc {
  child: ChildProcess;
  port: number;
  exited(): boolean;
  stop(): Promise<void>;
}

function spawnLogged(args: string[], logName: string, nodeOptions: string[] = []): { child: ChildProcess; exited: () => boolean; stop: () => Promise<void> } {
  mkdirSync(path.join(clusterDir, 'logs'), { recursive: true });
  const logFd = openSync(path.join(clusterDir, 'logs', logName), 'a');
  const child = spawn(process.execPath, [...nodeOptions, ...args], { stdio: ['ignore', logFd, logFd] });
  let gone = false;
  const exitedPromise = new Promise<void>((resolve) => child.once('exit', () => ((gone = true), resolve())));
  return {
    child,
    exited: () => gone,
    async stop() {
      if (gone) return;
      child.kill('SIGTERM');
      await Promise.race([exitedPromise, new Promise((r) => setTimeout(r, 10_000))]);
      if (!gone) child.kill('SIGKILL');
      await exitedPromise;
    },
  };
}

async function startBenchWebhook(tmp: string): Promise<Proc> {
  const tlsDir = path.join(tmp, 'webhook-tls');
  mkdirSync(tlsDir, { recursive: true });
  const bundle = generateCertificates({ dnsNames: ['localhost'], ipAddresses: ['127.0.0.1'] });
  writeFileSync(path.join(tlsDir, 'tls.crt'), bundle.cert);
  writeFileSync(path.join(tlsDir, 'tls.key'), bundle.key, { mode: 0o600 });
  const port = await freePort();
  const metricsPort = await freePort();
  const p = spawnLogged(
    [
      cliPath, 'webhook',
      '--bind-address', '127.0.0.1',
      '--port', String(port),
      '--metrics-port', String(metricsPort),
      '--tls-cert', path.join(tlsDir, 'tls.crt'),
      '--tls-key', path.join(tlsDir, 'tls.key'),
      '--reconciler-user', RECONCILER_USER,
    ],
    `webhook-bench-${RUN_ID}.log`,
  );
  await until('the bench webhook to be ready', 20_000, async () => {
    if (p.exited()) throw new BenchError(`the webhook exited; see .cluster/logs/webhook-bench-${RUN_ID}.log`);
    return (await httpsStatus(`https://127.0.0.1:${port}/readyz`, bundle.caCert).catch(() => 0)) === 200;
  }, 200);
  const config = webhookConfiguration({
    name: WEBHOOK_CONFIG,
    url: `https://127.0.0.1:${port}/mutate`,
    caBundle: Buffer.from(bundle.caCert).toString('base64'),
    failurePolicy: 'Fail',
    reconcilerUser: RECONCILER_USER,
  });
  // Only this run's namespaces (opted in or not): never a second webhook on anyone else's objects.
  for (const w of config.webhooks ?? []) {
    w.namespaceSelector = { ...w.namespaceSelector, matchLabels: { [RUN_LABEL]: RUN_ID } };
  }
  await kubectlOk(['apply', '--server-side', '--force-conflicts', '--field-manager=canary-gate-bench', '-f', '-'], { input: JSON.stringify(config) });
  return {
    child: p.child,
    port,
    exited: p.exited,
    async stop() {
      await kubectl(['delete', 'mutatingwebhookconfiguration', WEBHOOK_CONFIG, '--ignore-not-found', '--wait=false']).catch(() => undefined);
      await p.stop();
    },
  };
}

function httpsStatus(url: string, ca: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = https.get(url, { ca, timeout: 2000 }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on('error', reject);
    req.on('timeout', () => req.destroy(new Error('timeout')));
  });
}

async function startBenchReconciler(kubeconfig: string): Promise<Proc> {
  const port = await freePort();
  const identity = `bench-${RUN_ID}`;
  const p = spawnLogged(
    [
      P.cli, 'reconciler',
      '--kubeconfig', kubeconfig,
      '--identity', identity,
      '--http-port', String(port),
      '--bind-address', '127.0.0.1',
      '--log-level', 'info',
      ...P.reconcilerArgs,
    ],
    `reconciler-bench-${RUN_ID}.log`,
    P.nodeOptions,
  );
  return { child: p.child, port, exited: p.exited, stop: p.stop };
}

// ---------------------------------------------------------------------------
// Objects

interface Target {
  ns: string;
  name: string;
}

function benchCanary(t: Target): object {
  return {
    apiVersion: `${GROUP}/${VERSION}`,
    kind: 'Canary',
    metadata: { name: t.name, namespace: t.ns, labels: { [BENCH_LABEL]: 'true', [RUN_LABEL]: RUN_ID } },
    spec: {
      targetRef: { apiVersion: 'apps/v1', kind: 'Deployment', name: t.name },
      provider: 'kubernetes',
      service: { port: 80 },
      analysis: { interval: P.interval, stepWeight: 10, maxWeight: 50, threshold: 5 },
    },
  };
}

function benchDeployment(t: Target): object {
  const d = deployment(t.name, { image: IMAGE_1, replicas: 1, labels: { [BENCH_LABEL]: 'true', [RUN_LABEL]: RUN_ID } });
  return { ...d, metadata: { ...d.metadata, namespace: t.ns } };
}

type Deploy = k8s.V1Deployment & KubeObject;
type CanaryObj = Canary & KubeObject;

function rolledOut(d: Deploy | undefined): boolean {
  if (!d) return false;
  const want = d.spec?.replicas ?? 1;
  const s = d.status ?? {};
  return (s.observedGeneration ?? 0) >= (d.metadata?.generation ?? 0) && (s.updatedReplicas ?? 0) >= want && (s.readyReplicas ?? 0) >= want && (s.availableReplicas ?? 0) >= want;
}

// ---------------------------------------------------------------------------
// Formatting

const fmt = (n: number | undefined, digits = 2) => (n === undefined || Number.isNaN(n) ? 'n/a' : n.toFixed(digits));
const fmtLe = (le: number | undefined) => (le === undefined ? 'n/a (no steps)' : le === Infinity ? '> 10 s' : `<= ${le} s`);

function exactQuantile(values: number[], q: number): number | undefined {
  if (values.length === 0) return undefined;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))];
}

function top(map: Map<string, number>, n = 12): string {
  if (map.size === 0) return 'none';
  return [...map]
    .sort((a, b) => b[1] - a[1])
    .slice(0, n)
    .map(([k, v]) => `${k}=${v}`)
    .join(', ');
}

function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  return rows.map((r) => r.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd()).join('\n');
}

// ---------------------------------------------------------------------------
// main

interface Rollout {
  revision: string;
  pushedAt: number;
  /** Distinct status.lastStepTime values seen, in order (ms since epoch). */
  steps: number[];
  doneAt?: number;
  outcome?: 'Succeeded' | 'Failed';
}

async function main(): Promise<number> {
  if (P.progressing > P.managed) throw new BenchError('BENCH_PROGRESSING must not exceed BENCH_MANAGED');
  console.log(
    `canary-gate reconciler benchmark: N=${P.managed} managed, M=${P.progressing} progressing, interval ${P.interval}, ${P.namespaces} namespaces, ` +
      `${os.cpus().length} cores, counting proxy ${P.proxy ? 'on' : 'off'}, run ${RUN_ID}`,
  );
  const tmp = mkdtempSync(path.join(os.tmpdir(), 'canary-gate-rbench-'));
  // Cleanups run in ascending order: the reconciler first (so that nothing
  // acts any more), then the webhook configuration, then the namespaces.
  const cleanups: Array<[number, string, () => Promise<unknown>]> = [];
  const namespaces = Array.from({ length: P.namespaces }, (_, i) => `bench-${RUN_ID}-${i}`);
  let failed = false;
  try {
    // ------------------------------------------------------------ setup
    await clusterUp();
    const admin = new AdminApi(tlsFilesOf(kubeconfigPath));
    cleanups.push([9, 'admin client', async () => admin.close()]);
    await kubectlOk(['apply', '--server-side', '--force-conflicts', '--field-manager=canary-gate-bench', '-k', path.join(repoRoot, 'deploy/crds')]);
    await kubectlOk(['wait', '--for=condition=Established', '--timeout=60s', 'crd', '-l', 'app.kubernetes.io/part-of=canary-gate']);
    // The same RBAC the e2e fixtures apply (shared, idempotent, left in place).
    await kubectlOk(['apply', '--server-side', '--force-conflicts', '--field-manager=canary-gate-bench', '-f', '-'], {
      input: JSON.stringify({ apiVersion: 'v1', kind: 'List', items: reconcilerRbacForUser(RECONCILER_USER) }),
    });

    await waitForQuietCluster(admin);

    const webhook = await startBenchWebhook(tmp);
    cleanups.push([3, 'webhook', () => webhook.stop()]);
    log(`webhook ready on 127.0.0.1:${webhook.port}, configuration ${WEBHOOK_CONFIG} (this run's namespaces only)`);

    for (const ns of namespaces) {
      await admin.ok('POST', '/api/v1/namespaces', {
        apiVersion: 'v1',
        kind: 'Namespace',
        metadata: { name: ns, labels: { [BENCH_LABEL]: 'true', [RUN_LABEL]: RUN_ID, [NAMESPACE_ENABLED_LABEL]: 'true' } },
      });
    }
    cleanups.push([6, 'namespaces', () => deleteNamespaces(admin)]);
    const targets: Target[] = Array.from({ length: P.managed }, (_, i) => ({ ns: namespaces[i % P.namespaces] as string, name: `app-${String(i).padStart(4, '0')}` }));

    // The bench's own view, by watch (no polling load on the API server).
    const silent = pino({ level: 'silent' });
    const benchKc = new k8s.KubeConfig();
    benchKc.loadFromFile(kubeconfigPath);
    const canaries = new ResilientInformer<CanaryObj>({ kubeConfig: benchKc, path: `/apis/${GROUP}/${VERSION}/canaries`, labelSelector: `${RUN_LABEL}=${RUN_ID}`, relistIntervalMs: 0, logger: silent, name: 'bench-canaries' });
    const deployments = new ResilientInformer<Deploy>({ kubeConfig: benchKc, path: '/apis/apps/v1/deployments', labelSelector: `${RUN_LABEL}=${RUN_ID}`, relistIntervalMs: 0, logger: silent, name: 'bench-deployments' });
    canaries.start();
    deployments.start();
    cleanups.push([4, 'bench informers', () => Promise.all([canaries.stop(), deployments.stop()])]);
    await Promise.all([canaries.waitForSync(abort.signal), deployments.waitForSync(abort.signal)]);

    let t = performance.now();
    let createErrors = 0;
    await pool(targets, 16, async (tg) => {
      await admin.ok('POST', `/apis/${GROUP}/${VERSION}/namespaces/${tg.ns}/canaries`, benchCanary(tg));
      await admin.ok('POST', `/apis/apps/v1/namespaces/${tg.ns}/deployments`, benchDeployment(tg)).catch((err: unknown) => {
        createErrors++;
        throw err;
      });
    });
    log(`created ${P.managed} Canaries and ${P.managed} Deployments in ${((performance.now() - t) / 1000).toFixed(1)} s (errors: ${createErrors})`);
    const createdAt = t;
    const isTarget = (d: Deploy) => !(d.metadata?.name ?? '').endsWith('-canary');

    // ------------------------------------------------------------ the reconciler
    // Started at once: adoption overlaps kube-controller-manager rolling the
    // Deployments out (it is rate-limited to 20 requests/s, which makes that
    // the slowest part of the setup).
    let reconcilerKubeconfig = path.join(clusterDir, 'reconciler.kubeconfig');
    let proxy: CountingProxy | undefined;
    if (P.proxy) {
      const upstream = tlsFilesOf(reconcilerKubeconfig);
      proxy = new CountingProxy(upstream, P.shield ? new Set(namespaces) : undefined);
      const { port, caCert } = await proxy.start();
      const p = proxy;
      cleanups.push([5, 'proxy', () => p.stop()]);
      const kc = new k8s.KubeConfig();
      kc.loadFromFile(reconcilerKubeconfig);
      const user = kc.getCurrentUser()!;
      reconcilerKubeconfig = path.join(tmp, 'reconciler-via-proxy.kubeconfig');
      // JSON is YAML. The client certificate stays the reconciler's; the proxy presents it upstream.
      writeFileSync(
        reconcilerKubeconfig,
        JSON.stringify({
          apiVersion: 'v1',
          kind: 'Config',
          clusters: [{ name: 'bench-proxy', cluster: { server: `https://127.0.0.1:${port}`, 'certificate-authority-data': Buffer.from(caCert).toString('base64') } }],
          users: [{ name: 'reconciler', user: { 'client-certificate': user.certFile, 'client-key': user.keyFile } }],
          contexts: [{ name: 'bench', context: { cluster: 'bench-proxy', user: 'reconciler' } }],
          'current-context': 'bench',
        }),
      );
    }
    const beforeStart = proxy?.snapshot();
    t = performance.now();
    const reconciler = await startBenchReconciler(reconcilerKubeconfig);
    cleanups.push([1, 'reconciler', () => reconciler.stop()]);
    const pid = reconciler.child.pid!;
    const rss = new RssSampler(pid);
    rss.start();
    cleanups.push([2, 'rss sampler', async () => rss.stop()]);
    const metricsUrl = `http://127.0.0.1:${reconciler.port}/metrics`;
    await until('the reconciler to be ready', phaseTimeout(60_000), async () => {
      if (reconciler.exited()) throw new BenchError(`the reconciler exited; see .cluster/logs/reconciler-bench-${RUN_ID}.log`);
      const r = await fetch(`http://127.0.0.1:${reconciler.port}/readyz`).catch(() => undefined);
      return r?.status === 200;
    }, 100);
    const syncedAt = performance.now();
    const initialSync = proxy?.snapshot();
    log(`reconciler ready (caches synced) in ${((syncedAt - t) / 1000).toFixed(1)} s; pid ${pid}, log .cluster/logs/reconciler-bench-${RUN_ID}.log`);
    const initialized = () => canaries.list().filter((c) => c.status?.phase === 'Initialized').length;
    const adopted = () => deployments.list().filter((d) => isTarget(d) && d.metadata?.labels?.[MANAGED_LABEL] === 'true').length;
    const ready = () => deployments.list().filter((d) => isTarget(d) && rolledOut(d)).length;
    let initDone: number | undefined;
    let readyDone: number | undefined;
    await until(`${P.managed} Canaries to be Initialized and ${P.managed} Deployments to roll out`, phaseTimeout(420_000), () => {
      if (initDone === undefined && initialized() >= P.managed && adopted() >= P.managed) {
        initDone = performance.now();
        log(`all ${P.managed} Canaries Initialized ${((initDone - t) / 1000).toFixed(1)} s after the reconciler started`);
      }
      if (readyDone === undefined && ready() >= P.managed) {
        readyDone = performance.now();
        log(`all ${P.managed} Deployments rolled out ${((readyDone - createdAt) / 1000).toFixed(1)} s after they were created`);
      }
      return initDone !== undefined && readyDone !== undefined;
    }, 500, () => `${initialized()}/${P.managed} Initialized, ${adopted()} adopted, ${ready()} Deployments rolled out`);
    await settle(proxy, 'initialization');
    const initSnap = proxy?.snapshot();
    const initCpu = cpuSeconds(pid);
    const initWall = (performance.now() - t) / 1000;

    // ------------------------------------------------------------ idle
    rss.setPhase('idle');
    const idleStartMetrics = await apiserverMetrics(admin);
    const idleP0 = proxy?.snapshot();
    const idleCpu0 = cpuSeconds(pid);
    const idleT0 = performance.now();
    log(`idle window: ${P.idleSeconds} s with all ${P.managed} Canaries idle (the benchmark makes no API calls meanwhile)`);
    await sleep(P.idleSeconds * 1000);
    const idleP1 = proxy?.snapshot();
    const idleCpu1 = cpuSeconds(pid);
    const idleWall = (performance.now() - idleT0) / 1000;
    const idleEndMetrics = await apiserverMetrics(admin);
    const idleApi = counterDelta(parseApiserverRequests(idleStartMetrics), parseApiserverRequests(idleEndMetrics));
    const idle = idleP0 && idleP1 ? proxyDelta(idleP0, idleP1) : undefined;
    const canaryTicks = P.managed * (idleWall / (INTERVAL_MS / 1000));

    // ------------------------------------------------------------ progressing
    rss.setPhase('progressing');
    const metricsBefore = await (await fetch(metricsUrl)).text();
    const lagBefore = parseHistogram(metricsBefore, 'canary_gate_reconciler_step_lag_seconds');
    const ownLagBefore = parseHistogram(metricsBefore, 'canary_gate_reconciler_step_own_lag_seconds');
    const syncBefore = parseHistogram(await (await fetch(metricsUrl)).text(), 'canary_gate_reconciler_sync_duration_seconds');
    const chosen = targets.slice(0, P.progressing);
    const rollouts = new Map<string, Rollout>();
    const track = (c: CanaryObj) => {
      const r = rollouts.get(`${c.metadata?.namespace}/${c.metadata?.name}`);
      if (!r) return;
      const status = (c.status ?? {}) as RolloutStatus;
      const last = Date.parse(status.lastStepTime ?? '');
      if (!Number.isNaN(last) && last >= r.pushedAt - 1000 && r.steps[r.steps.length - 1] !== last) r.steps.push(last);
      const phase = status.phase;
      if (r.doneAt === undefined && phase === 'Succeeded' && status.lastPromotedRevision === r.revision) {
        r.doneAt = Date.now();
        r.outcome = 'Succeeded';
      } else if (r.doneAt === undefined && phase === 'Failed' && status.failedRevision === r.revision) {
        r.doneAt = Date.now();
        r.outcome = 'Failed';
      }
    };
    canaries.on('update', (c) => track(c));
    // Another canary-gate webhook for opted-in namespaces (an e2e run that
    // started meanwhile) would undo every hold. The opt-in label changes
    // nothing for explicit Canaries, so drop it rather than fail.
    let optedIn = true;
    const dodgeForeignWebhooks = async (): Promise<boolean> => {
      const foreign = await foreignWebhooks(admin);
      if (!foreign.length || !optedIn) return false;
      log(`another canary-gate webhook selects opted-in namespaces (${foreign.join(', ')}): removing the opt-in label from this run's namespaces so that only ours holds the pushes`);
      for (const ns of namespaces) await admin.ok('PATCH', `/api/v1/namespaces/${ns}`, { metadata: { labels: { [NAMESPACE_ENABLED_LABEL]: null } } }, 'application/merge-patch+json');
      optedIn = false;
      await sleep(2000);
      return true;
    };
    await dodgeForeignWebhooks();
    const progStartMetrics = await apiserverMetrics(admin);
    const progP0 = proxy?.snapshot();
    const progCpu0 = cpuSeconds(pid);
    const progT0 = performance.now();
    const pushWall0 = Date.now();
    const patch = [{ op: 'replace', path: '/spec/template/spec/containers/0/image', value: IMAGE_2 }];
    const push = async (list: Target[]): Promise<Target[]> => {
      const notHeld: Target[] = [];
      await pool(list, 32, async (tg) => {
        const pushedAt = Date.now();
        const d = await admin.ok<Deploy>('PATCH', `/apis/apps/v1/namespaces/${tg.ns}/deployments/${tg.name}`, patch, 'application/json-patch+json');
        const revision = d.metadata?.annotations?.[PENDING_REVISION];
        const image = d.spec?.template?.spec?.containers?.[0]?.image;
        if (!revision || image !== IMAGE_1) notHeld.push(tg);
        else rollouts.set(`${tg.ns}/${tg.name}`, { revision, pushedAt, steps: [] });
      });
      return notHeld;
    };
    let notHeld = (await push(chosen)).length;
    for (const c of canaries.list()) track(c);
    log(`pushed ${IMAGE_2} to ${P.progressing} Deployments in ${((performance.now() - progT0) / 1000).toFixed(1)} s; ${rollouts.size} held as pending revisions`);
    if (notHeld > 0 && (await dodgeForeignWebhooks())) {
      notHeld = (await push(chosen.filter((tg) => !rollouts.has(`${tg.ns}/${tg.name}`)))).length;
      for (const c of canaries.list()) track(c);
      log(`pushed again: ${rollouts.size} held as pending revisions`);
    }
    if (notHeld > 0) {
      const foreign = await foreignWebhooks(admin);
      throw new BenchError(
        `${notHeld} of ${P.progressing} pushes were not held as a pending revision` +
          (foreign.length ? ` (another canary-gate webhook is registered for opted-in namespaces: ${foreign.join(', ')}; two webhooks undo each other's hold)` : ''),
      );
    }
    const done = () => [...rollouts.values()].filter((r) => r.doneAt !== undefined).length;
    await until(`${rollouts.size} rollouts to finish`, phaseTimeout(360_000), () => done() >= rollouts.size, 250, () => {
      const phases = new Map<string, number>();
      for (const key of rollouts.keys()) {
        const [ns, name] = key.split('/') as [string, string];
        const p = canaries.get(ns, name)?.status?.phase ?? '?';
        phases.set(p, (phases.get(p) ?? 0) + 1);
      }
      return `${done()}/${rollouts.size} done; phases ${top(phases)}`;
    });
    const lastDone = Math.max(...[...rollouts.values()].map((r) => r.doneAt ?? 0));
    const timeToAllPromoted = (lastDone - pushWall0) / 1000;
    log(`all rollouts finished ${timeToAllPromoted.toFixed(1)} s after the push`);
    // The final sync writes the status first, then scales the copy down; events are sent after.
    await settle(proxy, 'the final writes');
    const progP1 = proxy?.snapshot();
    const progCpu1 = cpuSeconds(pid);
    const progWall = (performance.now() - progT0) / 1000;
    const progEndMetrics = await apiserverMetrics(admin);
    const reconcilerMetricsText = await (await fetch(metricsUrl)).text();
    const lag = histogramDelta(lagBefore, parseHistogram(reconcilerMetricsText, 'canary_gate_reconciler_step_lag_seconds'));
    const ownLag = histogramDelta(ownLagBefore, parseHistogram(reconcilerMetricsText, 'canary_gate_reconciler_step_own_lag_seconds'));
    const syncDur = histogramDelta(syncBefore, parseHistogram(reconcilerMetricsText, 'canary_gate_reconciler_sync_duration_seconds'));
    const effectWrites = gauge(reconcilerMetricsText, 'canary_gate_reconciler_api_writes');
    const progApi = counterDelta(parseApiserverRequests(progStartMetrics), parseApiserverRequests(progEndMetrics));
    const prog = progP0 && progP1 ? proxyDelta(progP0, progP1) : undefined;

    // ------------------------------------------------------------ figures
    const all = [...rollouts.values()];
    const succeeded = all.filter((r) => r.outcome === 'Succeeded').length;
    const steps = all.reduce((s, r) => s + r.steps.length, 0);
    const exactLags: number[] = [];
    for (const r of all) for (let i = 1; i < r.steps.length; i++) exactLags.push(Math.max(0, (r.steps[i]! - r.steps[i - 1]! - INTERVAL_MS) / 1000));
    const lagP50 = bucketQuantile(lag, 0.5);
    const lagP99 = bucketQuantile(lag, 0.99);
    const ownLagP50 = bucketQuantile(ownLag, 0.5);
    const ownLagP99 = bucketQuantile(ownLag, 0.99);
    const exactP50 = exactQuantile(exactLags, 0.5);
    const exactP99 = exactQuantile(exactLags, 0.99);
    const exactMax = exactLags.length ? Math.max(...exactLags) : undefined;

    const idleReadsPerTick = idle ? idle.reads / canaryTicks : undefined;
    const idleGets = idle?.byVerb.get('GET') ?? 0;
    const idleLists = idle?.byVerb.get('LIST') ?? 0;
    const idleApiVerbs = byVerbOf(idleApi);
    const idleApiReads = (idleApiVerbs.get('GET') ?? 0) + (idleApiVerbs.get('LIST') ?? 0);
    // The proxy started with the reconciler: its first lists (one full relist) are all it listed before readiness.
    const relistLists = initialSync ? [...initialSync.requests].filter(([k]) => k.startsWith('LIST ')).reduce((s, [, v]) => s + v, 0) : undefined;
    const relistBytes = initialSync?.bytes.get('LIST');
    const amortisedRelist = relistLists !== undefined ? relistLists / (P.managed * (RELIST_INTERVAL_S / (INTERVAL_MS / 1000))) : undefined;

    const progApiVerbs = byVerbOf(progApi);
    const progApiWrites = [...progApiVerbs].filter(([v]) => APISERVER_WRITE_VERBS.has(v)).reduce((s, [, n]) => s + n, 0);
    const writesPerStep = prog && steps > 0 ? prog.writes / steps : undefined;
    const progCpu = progCpu1 - progCpu0;
    const idleCpu = idleCpu1 - idleCpu0;
    const rssMax = rss.overall();
    const wlat = prog?.writeLatencies ?? [];

    const pass = (ok: boolean | undefined) => (ok === undefined ? 'n/a' : ok ? 'PASS' : 'MISS');
    const full = P.managed === 1000 && P.progressing === 100;
    console.log('');
    console.log(`== canary-gate reconciler benchmark (run ${RUN_ID}) ==`);
    console.log(
      table([
        ['measure', 'value', 'target', ''],
        ['managed Canaries N', String(P.managed), '', ''],
        ['progressing M (held / promoted)', `${P.progressing} (${rollouts.size} / ${succeeded})`, '', ''],
        [
          'API reads per idle canary per tick',
          idle ? `${fmt(idleReadsPerTick, 4)}  (${idle.reads} reads: GET ${idleGets}, LIST ${idleLists} in ${fmt(idleWall, 1)} s = ${fmt(canaryTicks, 0)} canary-ticks)` : 'n/a (no proxy)',
          '0',
          pass(idle ? idle.reads === 0 : undefined),
        ],
        [
          '  informer relists, amortised',
          relistLists !== undefined ? `${fmt(amortisedRelist, 5)} reads per canary per tick  (${relistLists} LIST pages, ${fmt((relistBytes ?? 0) / 1e6, 1)} MB every ${RELIST_INTERVAL_S} s)` : 'n/a',
          'report',
          '',
        ],
        [
          'writes per progressing step',
          prog ? `${fmt(writesPerStep)}  (${prog.writes} writes / ${steps} steps)` : 'n/a (no proxy)',
          '<= 4',
          pass(writesPerStep === undefined ? undefined : writesPerStep <= 4),
        ],
        // The reconciler's own lag is the target: the whole lag also counts the waits for the copy's Pods, which are the controller-manager's and kwok's.
        ['reconciler step lag p50 / p99 (own, histogram bucket)', `${fmtLe(ownLagP50)} / ${fmtLe(ownLagP99)}  (${ownLag.count} steps observed)`, 'p99 < 1 s', pass(ownLagP99 === undefined ? undefined : ownLagP99 <= 1)],
        ['step lag incl. readiness waits p50 / p99 (histogram bucket)', `${fmtLe(lagP50)} / ${fmtLe(lagP99)}  (${lag.count} steps observed)`, '', ''],
        ['step lag incl. readiness waits p50 / p99 / max (exact, status)', `${fmt(exactP50, 3)} / ${fmt(exactP99, 3)} / ${fmt(exactMax, 3)} s  (${exactLags.length} steps)`, '', ''],
        ['RSS max', `${fmt(rssMax, 0)} MB  (startup+init ${fmt(rss.max.get('startup'), 0)}, idle ${fmt(rss.max.get('idle'), 0)}, progressing ${fmt(rss.max.get('progressing'), 0)})`, '< 250 MB', pass(rssMax < 250)],
        ['CPU, progressing phase', `${fmt(progCpu, 1)} s in ${fmt(progWall, 1)} s = ${fmt((100 * progCpu) / progWall, 1)} % of one core`, '', ''],
        ['CPU, idle phase', `${fmt(idleCpu, 2)} s in ${fmt(idleWall, 1)} s = ${fmt((100 * idleCpu) / idleWall, 1)} % of one core`, '', ''],
        ['CPU, startup + initialization', `${fmt(initCpu, 1)} s in ${fmt(initWall, 1)} s (overlaps the Deployments' rollout)`, '', ''],
        ['time to all promoted', `${fmt(timeToAllPromoted, 1)} s  (5 steps x ${P.interval} minimum)`, '', ''],
      ]),
    );
    if (!full) console.log(`(targets are set for N=1000, M=100; this run is N=${P.managed}, M=${P.progressing})`);
    // One line for scripts (npm run bench:curve reads it).
    console.log(
      `BENCH_RESULT ${JSON.stringify({
        managed: P.managed,
        progressing: P.progressing,
        idleReadsPerTick: idleReadsPerTick ?? null,
        writesPerStep: writesPerStep ?? null,
        // Beyond the histogram's last bucket (10 s) a quantile has no upper bound.
        ownLagP50: ownLagP50 ?? (ownLag.count > 0 ? 'above 10' : null),
        ownLagP99: ownLagP99 ?? (ownLag.count > 0 ? 'above 10' : null),
        lagP99: exactP99 ?? null,
        lagMax: exactMax ?? null,
        rssMb: rssMax,
        cpuSecondsPerProgressing: P.progressing ? progCpu / P.progressing : null,
        progressingWallSeconds: progWall,
      })}`,
    );
    if (!optedIn) console.log('(the opt-in label was removed from this run\'s namespaces before the push, to keep another canary-gate webhook off them)');
    console.log('');
    console.log('Details');
    if (proxy && P.shield) console.log(`  shield: ${proxy.hidden} objects/watch events of other namespaces hidden from the reconciler, ${proxy.refused} requests refused`);
    if (initSnap && initialSync && beforeStart) {
      const init = proxyDelta(beforeStart, initSnap);
      console.log(`  initialization (reconciler user): ${init.writes} writes = ${fmt(init.writes / P.managed)} per Canary; ${top(init.requests, 10)}; codes ${top(init.codes, 8)}`);
      console.log(`  initial sync (= one relist): ${top(new Map([...proxyDelta(beforeStart, initialSync).requests].filter(([k]) => k.startsWith('LIST '))), 10)}`);
    }
    if (idle) {
      console.log(`  idle, reconciler user: ${idle.nonWatchRequests} requests besides watches; by verb ${top(idle.byVerb)}; ${idle.watches} watch (re)opened`);
      if (idle.requests.size) console.log(`    ${top(idle.requests)}`);
    }
    console.log(`  idle, APISERVER-WIDE (all users: controller-manager, scheduler, kwok, anyone's tests): reads ${idleApiReads} (${fmt(idleApiReads / canaryTicks, 4)} per canary-tick); by verb ${top(idleApiVerbs)}`);
    console.log(`    ${top(idleApi, 14)}`);
    if (prog) {
      console.log(`  progressing, reconciler user: ${prog.writes} writes, ${prog.reads} reads; by verb ${top(prog.byVerb)}`);
      console.log(`    writes: ${top(new Map([...prog.requests].filter(([k]) => WRITE_VERBS.has(k.split(' ')[0]!))), 14)}`);
      console.log(`    per rollout: ${top(new Map([...prog.requests].filter(([k]) => WRITE_VERBS.has(k.split(' ')[0]!)).map(([k, v]) => [k, Number((v / Math.max(1, rollouts.size)).toFixed(2))])), 14)}`);
      console.log(`    response codes: ${top(prog.codes, 10)}`);
      console.log(
        `    TLS handshakes to the API (via the proxy): ${prog.handshakes} for ${prog.nonWatchRequests} requests; write latency p50 ${fmt(exactQuantile(wlat, 0.5), 1)} ms, p99 ${fmt(exactQuantile(wlat, 0.99), 1)} ms (proxy to API server and back)`,
      );
    }
    console.log(`  progressing, APISERVER-WIDE: ${progApiWrites} writes (${fmt(steps ? progApiWrites / steps : undefined)} per step, includes the ${P.progressing} pushes, kube-controller-manager's ReplicaSets/Pods/status and kwok); by verb ${top(progApiVerbs)}`);
    console.log(`    ${top(new Map([...progApi].filter(([k]) => APISERVER_WRITE_VERBS.has(k.split(' ')[0]!))), 14)}`);
    console.log(`  steps: ${steps} analysis steps (status.lastStepTime changes) for ${rollouts.size} rollouts; the step-lag histogram counts ${lag.count} (the first step of a run has no due time)`);
    console.log(`  sync duration (histogram buckets): p50 ${fmtLe(bucketQuantile(syncDur, 0.5))}, p99 ${fmtLe(bucketQuantile(syncDur, 0.99))}, ${syncDur.count} syncs, mean ${fmt(syncDur.count ? (1000 * syncDur.sum) / syncDur.count : undefined, 1)} ms`);
    if (effectWrites !== undefined) console.log(`  canary_gate_reconciler_api_writes (effects only, since start): ${effectWrites}`);
    const rolloutTimes = all.filter((r) => r.doneAt).map((r) => ((r.doneAt ?? 0) - r.pushedAt) / 1000);
    const withSteps = all.filter((r) => r.doneAt && r.steps.length > 0);
    const span = (f: (r: Rollout) => number) => {
      const v = withSteps.map(f);
      return `p50 ${fmt(exactQuantile(v, 0.5), 1)} s, max ${fmt(v.length ? Math.max(...v) : undefined, 1)} s`;
    };
    console.log(`  rollout duration p50 ${fmt(exactQuantile(rolloutTimes, 0.5), 1)} s, max ${fmt(Math.max(0, ...rolloutTimes), 1)} s; of which`);
    console.log(`    push -> first step (canary copy created and ready):  ${span((r) => (r.steps[0]! - r.pushedAt) / 1000)}`);
    console.log(`    first -> last step (${P.interval} each, plus lag):          ${span((r) => (r.steps[r.steps.length - 1]! - r.steps[0]!) / 1000)}`);
    console.log(`    last step -> Succeeded (primary rolls out the promoted spec): ${span((r) => ((r.doneAt ?? 0) - r.steps[r.steps.length - 1]!) / 1000)}`);
    if (succeeded < rollouts.size) {
      failed = true;
      console.log(`  ${rollouts.size - succeeded} rollouts did not succeed`);
    }
    return failed ? 1 : 0;
  } finally {
    log('cleaning up');
    for (const [, name, fn] of cleanups.sort((a, b) => a[0] - b[0])) {
      try {
        await fn();
      } catch (err) {
        console.error(`cleanup of ${name} failed: ${(err as Error).message}`);
      }
    }
    rmSync(tmp, { recursive: true, force: true });
    log('done');
  }

  // ---------------------------------------------------------- helpers of main

  async function apiserverMetrics(admin: AdminApi): Promise<string> {
    const r = await admin.request('GET', '/metrics');
    if (r.status !== 200) throw new BenchError(`GET /metrics: HTTP ${r.status}`);
    return r.text;
  }

  /** Waits until the reconciler made no request (watches aside) for 3 s, at most 60 s. */
  async function settle(proxy: CountingProxy | undefined, what: string): Promise<void> {
    if (!proxy) return sleep(5000);
    const t0 = performance.now();
    await until(`the reconciler to go quiet after ${what}`, phaseTimeout(60_000), () => performance.now() - proxy.lastRequestAt > 3000, 250).catch((err: unknown) => {
      log(`note: ${(err as Error).message}; measuring anyway`);
    });
    log(`reconciler quiet after ${what} (${((performance.now() - t0) / 1000).toFixed(1)} s)`);
  }

  async function deleteNamespaces(admin: AdminApi): Promise<void> {
    if (P.keep) {
      log(`BENCH_KEEP=1: leaving namespaces; delete them with: kubectl delete ns -l ${RUN_LABEL}=${RUN_ID} (strip Canary finalizers first if no reconciler runs)`);
      return;
    }
    // Nobody runs the reconciler any more: strip its finalizers, then delete.
    const list = await admin.ok<{ items: CanaryObj[] }>('GET', `/apis/${GROUP}/${VERSION}/canaries?labelSelector=${encodeURIComponent(`${RUN_LABEL}=${RUN_ID}`)}`);
    await pool(list.items.filter((c) => (c.metadata?.finalizers ?? []).length > 0), 16, async (c) => {
      await admin.ok('PATCH', `/apis/${GROUP}/${VERSION}/namespaces/${c.metadata?.namespace}/canaries/${c.metadata?.name}`, { metadata: { finalizers: null } }, 'application/merge-patch+json', [404]);
    });
    for (const ns of namespaces) await admin.ok('DELETE', `/api/v1/namespaces/${ns}`, undefined, undefined, [404]);
    const left = async () => {
      const r = await admin.ok<{ items: unknown[] }>('GET', `/api/v1/namespaces?labelSelector=${encodeURIComponent(`${RUN_LABEL}=${RUN_ID}`)}`);
      return r.items.length;
    };
    const waitMs = Math.max(10_000, deadline - performance.now() - 5000);
    const end = performance.now() + waitMs;
    let n = await left();
    while (n > 0 && performance.now() < end) {
      await new Promise((r) => setTimeout(r, 2000));
      n = await left();
    }
    if (n > 0) log(`${n} namespaces still terminating (no finalizers of ours remain; the namespace controller finishes them)`);
    else log(`namespaces deleted (${list.items.length} Canaries' finalizers stripped)`);
  }
}

/** Other canary-gate webhooks for opted-in namespaces: they would undo our webhook's holds (and ours theirs). */
async function foreignWebhooks(admin: AdminApi): Promise<string[]> {
  const r = await admin.ok<{ items: k8s.V1MutatingWebhookConfiguration[] }>('GET', '/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations');
  return r.items
    .filter((c) => c.metadata?.name !== WEBHOOK_CONFIG && (c.webhooks ?? []).some((w) => w.name === MUTATING_WEBHOOK_NAME && !w.namespaceSelector?.matchLabels?.[RUN_LABEL]))
    .map((c) => c.metadata?.name ?? '');
}

/** Namespaces other than ours holding Canaries, and their state. */
async function foreignCanaryNamespaces(admin: AdminApi): Promise<{ active: string[]; terminating: string[] }> {
  const [cs, nss] = await Promise.all([
    admin.ok<{ items: CanaryObj[] }>('GET', `/apis/${GROUP}/${VERSION}/canaries`),
    admin.ok<{ items: k8s.V1Namespace[] }>('GET', '/api/v1/namespaces'),
  ]);
  const withCanaries = new Set(cs.items.map((c) => c.metadata?.namespace ?? ''));
  const active: string[] = [];
  const terminating: string[] = [];
  for (const ns of nss.items) {
    const name = ns.metadata?.name ?? '';
    if (!withCanaries.has(name)) continue;
    if (ns.status?.phase === 'Terminating') terminating.push(name);
    else active.push(name);
  }
  return { active, terminating };
}

/**
 * The reconciler is cluster-wide: it acts on every Canary it can see, and
 * another canary-gate webhook would undo our holds. Wait (bounded) for other
 * runs to finish; then go on and say what is there.
 */
async function waitForQuietCluster(admin: AdminApi): Promise<void> {
  const end = performance.now() + P.quietWaitSeconds * 1000;
  let first = true;
  for (;;) {
    const [hooks, nss] = await Promise.all([foreignWebhooks(admin), foreignCanaryNamespaces(admin)]);
    // Shielded, the reconciler never sees other namespaces: only other webhooks matter.
    if (hooks.length === 0 && (P.shield || nss.active.length === 0)) {
      if (P.shield && nss.active.length) log(`note: other namespaces with Canaries (${nss.active.join(', ')}): hidden from the reconciler by the proxy`);
      if (nss.terminating.length && !P.shield) log(`note: namespaces left Terminating with Canaries (finalizers nobody removes): ${nss.terminating.join(', ')}; the cluster-wide reconciler will finalize them`);
      return;
    }
    if (performance.now() > end) {
      log(
        `WARNING: other canary-gate activity on the cluster: ${hooks.length ? `webhook configurations ${hooks.join(', ')}` : ''}${hooks.length && nss.active.length ? '; ' : ''}` +
          `${nss.active.length ? `namespaces with Canaries ${nss.active.join(', ')} (the cluster-wide reconciler will act on them too)` : ''}. Going on; apiserver-wide figures include it.`,
      );
      return;
    }
    if (first) log(`waiting up to ${P.quietWaitSeconds} s for other canary-gate runs to finish (webhooks: ${hooks.join(', ') || 'none'}; namespaces with Canaries: ${nss.active.join(', ') || 'none'})`);
    first = false;
    await sleep(3000);
  }
}

// ---------------------------------------------------------------------------

for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.once(sig, () => {
    log(`${sig}: stopping and cleaning up`);
    abort.abort();
  });
}

main().then(
  (code) => {
    process.exitCode = code;
    // Open handles (sockets of the informers' last watches) must not keep us alive.
    setTimeout(() => process.exit(code), 500).unref();
  },
  (err: unknown) => {
    console.error(`benchmark failed: ${err instanceof Error ? err.message : String(err)}`);
    if (!(err instanceof BenchError) && err instanceof Error) console.error(err.stack);
    process.exitCode = 1;
    setTimeout(() => process.exit(1), 500).unref();
  },
);
