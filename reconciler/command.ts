// `canary-gate reconciler`: the process that runs canaries. Informers keep
// their caches warm on every replica; only the leader processes the queue and
// writes. A replica that loses its lease exits at once (its writes are already
// fenced by the leadership check before each write) and is restarted as a
// candidate, the simplest way to never act on a stale term.

import http from 'node:http';
import os from 'node:os';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import * as k8s from '@kubernetes/client-node';
import { createLogger } from '../core/log.js';
import type { Command } from '../core/cli.js';
import type { Canary, CanarySpec } from '../core/api/types.js';
import { CONTENT_TYPE, Registry } from '../core/metrics.js';
import { Reconciler } from './controller.js';
import { EventRecorder } from './kit/events.js';
import { LeaderElector } from './kit/leader.js';
import { shardOf, Shards } from './kit/shards.js';
import { DEFAULT_API_TIMEOUT_MS, prepareKubeConfig } from '../core/api/client.js';

const help = `Usage: canary-gate reconciler [flags]

Runs canaries: adopts the targets of Canary objects (and every Deployment in
namespaces labelled canarygate.dev/enabled=true), turns each pending revision
into a canary copy, shifts traffic step by step, runs gates and metric checks,
then promotes the change to the live object or rolls it back.

Flags:
  --kubeconfig FILE        kubeconfig to use (default: $KUBECONFIG, then in-cluster)
  --leader-elect           elect a leader on a coordination.k8s.io Lease; only the leader acts
  --lease-name NAME        Lease name (default canary-gate-reconciler)
  --lease-namespace NS     Lease namespace (default $POD_NAMESPACE or canary-gate-system)
  --lease-duration SECONDS lease duration (default 15, at least 2); a leader that cannot renew
                           for two thirds of it stops acting and exits
  --shards N               split the Canaries among N replicas by a hash of their namespace (default 1);
                           each shard has its own Lease (<lease-name>-shard-<i>), a replica takes over
                           the shard of one that is gone and hands it back when that one returns
  --shard-index I          this replica's own shard, 0 to N-1 (default: the ordinal ending $POD_NAME,
                           as a StatefulSet names its Pods)
  --identity ID            leader-election identity (default $POD_NAME or the host name, plus a random suffix)
  --namespace NS           watch and act in this namespace only (default: all namespaces); metric
                           templates and alert providers must then live there too
  --prometheus-address URL Prometheus for the built-in request-success-rate and request-duration metrics
  --workers N              canaries reconciled in parallel (default 16: a sync mostly waits on one API write)
  --defaults FILE          YAML/JSON partial Canary spec used for Canaries created in opted-in namespaces
  --relist-interval SECONDS  full relist of every informer (default 300)
  --api-timeout SECONDS    timeout of every API request (reads, writes, list pages; default 30);
                           watches are exempt and restarted when they go silent
  --http-port N            plain-HTTP port for /healthz, /readyz and /metrics (default 8081, 0 = any)
  --bind-address ADDR      address of the HTTP port (default 0.0.0.0)
  --log-level LEVEL        trace, debug, info, warn, error (default info)
  -h, --help               this text
`;

export interface ReconcilerProcessOptions {
  kubeconfig?: string;
  namespace?: string;
  prometheusAddress?: string;
  leaderElect: boolean;
  /** Number of shards (1: no sharding) and this replica's own. */
  shards: number;
  shardIndex: number;
  leaseName: string;
  leaseNamespace: string;
  leaseDurationSeconds: number;
  identity: string;
  workers: number;
  defaults: Partial<CanarySpec>;
  relistIntervalMs: number;
  apiTimeoutMs: number;
  httpPort: number;
  bindAddress: string;
  logLevel: string;
}

export function parseReconcilerArgs(argv: string[]): ReconcilerProcessOptions {
  const { values } = parseArgs({
    args: argv,
    strict: true,
    allowPositionals: false,
    options: {
      kubeconfig: { type: 'string' },
      'leader-elect': { type: 'boolean', default: false },
      'lease-name': { type: 'string', default: 'canary-gate-reconciler' },
      'lease-namespace': { type: 'string' },
      'lease-duration': { type: 'string', default: '15' },
      shards: { type: 'string', default: '1' },
      'shard-index': { type: 'string' },
      identity: { type: 'string' },
      workers: { type: 'string', default: '16' },
      namespace: { type: 'string' },
      'prometheus-address': { type: 'string' },
      defaults: { type: 'string' },
      'relist-interval': { type: 'string', default: '300' },
      'api-timeout': { type: 'string', default: String(DEFAULT_API_TIMEOUT_MS / 1000) },
      'http-port': { type: 'string', default: '8081' },
      'bind-address': { type: 'string', default: '0.0.0.0' },
      'log-level': { type: 'string', default: 'info' },
    },
  });
  const int = (flag: string, v: string, min: number) => {
    if (!/^\d+$/.test(v) || Number(v) < min) throw new UsageError(`--${flag} must be a whole number >= ${min}, got "${v}"`);
    return Number(v);
  };
  let defaults: Partial<CanarySpec> = {};
  if (values.defaults) {
    let parsed: unknown;
    try {
      parsed = k8s.loadYaml(readFileSync(values.defaults, 'utf8'));
    } catch (err) {
      throw new UsageError(`--defaults ${values.defaults}: ${(err as Error).message}`);
    }
    if (!parsed || typeof parsed !== 'object' || Array.isArray(parsed)) throw new UsageError(`--defaults ${values.defaults}: not a mapping of Canary spec fields`);
    defaults = parsed as Partial<CanarySpec>;
  }
  const levels = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'];
  if (!levels.includes(values['log-level'] as string)) throw new UsageError(`--log-level must be one of ${levels.join(', ')}`);
  const shards = int('shards', values.shards as string, 1);
  let shardIndex = 0;
  if (shards > 1) {
    const given = (values['shard-index'] as string | undefined) ?? /-(\d+)$/.exec(process.env.POD_NAME ?? '')?.[1];
    if (given === undefined) throw new UsageError('--shards needs --shard-index (or a $POD_NAME ending in its ordinal, as in a StatefulSet)');
    shardIndex = int('shard-index', given, 0);
    if (shardIndex >= shards) throw new UsageError(`--shard-index must be below --shards (${shards}), got ${shardIndex}`);
  } else if (values['shard-index'] !== undefined) {
    throw new UsageError('--shard-index needs --shards greater than 1');
  }
  const opts: ReconcilerProcessOptions = {
    // Shards are Leases: sharding always elects.
    leaderElect: (values['leader-elect'] as boolean) || shards > 1,
    shards,
    shardIndex,
    leaseName: values['lease-name'] as string,
    leaseNamespace: (values['lease-namespace'] as string | undefined) ?? process.env.POD_NAMESPACE ?? 'canary-gate-system',
    // 1 s leaves no renew deadline shorter than the lease with a 1 s floor.
    leaseDurationSeconds: int('lease-duration', values['lease-duration'] as string, 2),
    identity: (values.identity as string | undefined) ?? `${process.env.POD_NAME ?? os.hostname()}-${randomBytes(3).toString('hex')}`,
    workers: int('workers', values.workers as string, 1),
    defaults,
    relistIntervalMs: int('relist-interval', values['relist-interval'] as string, 0) * 1000,
    apiTimeoutMs: int('api-timeout', values['api-timeout'] as string, 1) * 1000,
    httpPort: int('http-port', values['http-port'] as string, 0),
    bindAddress: values['bind-address'] as string,
    logLevel: values['log-level'] as string,
  };
  if (values.kubeconfig) opts.kubeconfig = values.kubeconfig as string;
  if (values.namespace) opts.namespace = values.namespace as string;
  if (values['prometheus-address']) opts.prometheusAddress = values['prometheus-address'] as string;
  return opts;
}

class UsageError extends Error {}

export async function runReconciler(opts: ReconcilerProcessOptions): Promise<number> {
  const log = createLogger('reconciler', opts.logLevel, { identity: opts.identity });
  const kc = new k8s.KubeConfig();
  if (opts.kubeconfig) kc.loadFromFile(opts.kubeconfig);
  else kc.loadFromDefault();
  await prepareKubeConfig(kc, { timeoutMs: opts.apiTimeoutMs });

  const registry = new Registry();
  const leaderGauge = registry.gauge('canary_gate_reconciler_leader', 'Whether this replica is the leader (1) or a candidate (0).');
  leaderGauge.set(opts.leaderElect ? 0 : 1);
  const events = new EventRecorder({ kubeConfig: kc, reportingInstance: opts.identity, logger: log, requestTimeoutMs: Math.min(10_000, opts.apiTimeoutMs) });
  let leading = !opts.leaderElect;
  let shards: Shards | undefined;
  const reconciler = new Reconciler({
    kubeConfig: kc,
    logger: log,
    workers: opts.workers,
    defaults: opts.defaults,
    relistIntervalMs: opts.relistIntervalMs,
    isLeader: (namespace) => (shards ? shards.leads(namespace) : leading),
    events: {
      record: (obj, type, reason, message) => void events.event(obj as never, type, reason, message),
    },
    registry,
    // The reconciler's own namespace carries the cluster-wide freeze switch (canarygate.dev/freeze=all).
    clusterFreezeNamespace: opts.namespace ?? opts.leaseNamespace,
    ...(opts.namespace ? { namespace: opts.namespace } : {}),
    ...(opts.prometheusAddress ? { prometheusAddress: opts.prometheusAddress } : {}),
  });

  let ready = false;
  const server = http.createServer((req, res) => {
    if (req.url === '/healthz') return void res.writeHead(200).end('ok');
    if (req.url === '/readyz') return void res.writeHead(ready ? 200 : 503).end(ready ? 'ok' : 'caches not synced');
    if (req.url === '/metrics') {
      reconciler.collectMetrics();
      return void res.writeHead(200, { 'content-type': CONTENT_TYPE }).end(registry.expose());
    }
    res.writeHead(404).end('not found');
  });
  await new Promise<void>((resolve) => server.listen(opts.httpPort, opts.bindAddress, resolve));
  const port = (server.address() as { port: number }).port;
  log.info({ port }, 'serving /healthz, /readyz and /metrics');

  const stopping = new AbortController();
  let exitCode = 0;
  const shutdown = async (code: number, why: string) => {
    if (stopping.signal.aborted) return;
    exitCode = code;
    log.info({ why }, 'shutting down');
    stopping.abort();
    leading = false;
    leaderGauge.set(0);
    // Every API call times out, so the steps below end; this bounds them all the same (a stuck
    // sync, a flood of Events), and a handle left open (a socket) cannot keep the process alive.
    const graceMs = SHUTDOWN_GRACE_MS + opts.apiTimeoutMs;
    setTimeout(() => {
      log.error({ graceMs }, 'shutdown did not finish in time; exiting anyway');
      process.exit(code);
    }, graceMs).unref();
    try {
      await elector?.stop();
      await shards?.stop();
      await reconciler.stop();
      await events.flush();
    } catch (err) {
      log.error({ err }, 'error while shutting down');
    } finally {
      server.close();
      server.closeAllConnections();
    }
  };
  process.once('SIGTERM', () => void shutdown(0, 'SIGTERM'));
  process.once('SIGINT', () => void shutdown(0, 'SIGINT'));

  await reconciler.startInformers(stopping.signal);
  ready = true;
  log.info('caches synced');

  let elector: LeaderElector | undefined;
  if (opts.shards > 1) {
    const shardGauge = registry.gauge('canary_gate_reconciler_shards_led', 'Shards this replica leads now (its own and any taken over).');
    const setGauges = () => {
      const held = shards?.held().length ?? 0;
      shardGauge.set(held);
      leaderGauge.set(held > 0 ? 1 : 0);
    };
    reconciler.startWorkers();
    shards = new Shards({
      kubeConfig: kc,
      leaseName: opts.leaseName,
      namespace: opts.leaseNamespace,
      identity: opts.identity,
      shards: opts.shards,
      home: opts.shardIndex,
      leaseDurationSeconds: opts.leaseDurationSeconds,
      logger: log,
      onAcquired: (shard) => {
        setGauges();
        reconciler.replay((ns) => shardOf(ns, opts.shards) === shard);
      },
      onLost: (shard, handedBack) => {
        setGauges();
        if (handedBack) return log.info({ shard }, 'handed a shard back to its replica');
        // As for a lost leader lease: exit, so a fresh candidate with fresh connections takes over.
        if (!stopping.signal.aborted) {
          log.error({ shard }, 'lost a shard lease; exiting so a fresh candidate takes over');
          void shutdown(1, 'lost a shard');
        }
      },
    });
    shards.start();
  } else if (opts.leaderElect) {
    elector = new LeaderElector({
      kubeConfig: kc,
      name: opts.leaseName,
      namespace: opts.leaseNamespace,
      identity: opts.identity,
      leaseDurationSeconds: opts.leaseDurationSeconds,
      renewDeadlineMs: Math.max(1000, Math.round(opts.leaseDurationSeconds * 1000 * (2 / 3))),
      retryPeriodMs: Math.max(200, Math.round((opts.leaseDurationSeconds * 1000) / 7)),
      logger: log,
      onStartedLeading: (signal) => {
        leading = true;
        leaderGauge.set(1);
        log.info('became the leader');
        signal.addEventListener('abort', () => {
          leading = false;
          leaderGauge.set(0);
        });
        reconciler.startWorkers();
      },
      onStoppedLeading: () => {
        leading = false;
        leaderGauge.set(0);
        if (!stopping.signal.aborted) {
          log.error('lost the leader lease; exiting so a fresh candidate takes over');
          void shutdown(1, 'lost leadership');
        }
      },
    });
    elector.start();
  } else {
    reconciler.startWorkers();
  }

  await new Promise<void>((resolve) => stopping.signal.addEventListener('abort', () => resolve(), { once: true }));
  // Give shutdown() a moment to finish its awaits.
  await new Promise((r) => setTimeout(r, 10));
  return exitCode;
}

/** Time for an orderly shutdown beyond one API timeout (lease release, last Events). */
const SHUTDOWN_GRACE_MS = 15_000;

export const command: Command = {
  summary: 'run the reconciler (canary copies, traffic steps, checks, promotion)',
  help,
  async run(argv) {
    let opts: ReconcilerProcessOptions;
    try {
      opts = parseReconcilerArgs(argv);
    } catch (err) {
      console.error(`canary-gate reconciler: ${(err as Error).message}\n\n${help}`);
      return 2;
    }
    return runReconciler(opts);
  },
};
