// Runs `canary-gate reconciler` as a real process with its own identity
// (client certificate user canary-gate-reconciler, least-privilege RBAC),
// scoped to one test namespace so test files can run in parallel.

import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, openSync } from 'node:fs';
import path from 'node:path';
import { cliPath, clusterDir as suiteClusterDir } from './cluster.js';
import { waitFor } from './wait.js';
import { freePort } from './webhook-process.js';

export interface RunningReconciler {
  readonly child: ChildProcess;
  readonly port: number;
  readonly identity: string;
  exited(): boolean;
  /** SIGTERM and wait. */
  stop(): Promise<void>;
  /** SIGKILL: a crash at an arbitrary instant. */
  kill(): Promise<void>;
  metrics(): Promise<string>;
}

export async function startReconciler(opts: {
  /** The one namespace it watches; undefined: every namespace (only in a control plane of the test's own). */
  namespace: string | undefined;
  identity?: string;
  leaderElect?: boolean;
  leaseName?: string;
  leaseNamespace?: string;
  leaseDurationSeconds?: number;
  extraArgs?: string[];
  /** Another local control plane's folder (its reconciler.kubeconfig); default the suite's. */
  clusterDir?: string;
}): Promise<RunningReconciler> {
  const clusterDir = opts.clusterDir ?? suiteClusterDir;
  const port = await freePort();
  const identity = opts.identity ?? `rec-${opts.namespace ?? 'all'}`;
  mkdirSync(path.join(clusterDir, 'logs'), { recursive: true });
  const logFd = openSync(path.join(clusterDir, 'logs', `reconciler-${identity}.log`), 'a');
  const args = [
    cliPath, 'reconciler',
    '--kubeconfig', path.join(clusterDir, 'reconciler.kubeconfig'),
    ...(opts.namespace ? ['--namespace', opts.namespace] : []),
    '--identity', identity,
    '--http-port', String(port),
    '--bind-address', '127.0.0.1',
    '--log-level', 'debug',
    ...(opts.extraArgs ?? []),
  ];
  if (opts.leaderElect) {
    args.push('--leader-elect', '--lease-name', opts.leaseName ?? 'canary-gate-reconciler', '--lease-namespace', opts.leaseNamespace ?? opts.namespace ?? 'canary-gate-system', '--lease-duration', String(opts.leaseDurationSeconds ?? 2));
  }
  const child = spawn(process.execPath, args, { stdio: ['ignore', logFd, logFd] });
  let gone = false;
  const exitedPromise = new Promise<void>((resolve) => child.once('exit', () => ((gone = true), resolve())));
  await waitFor(`reconciler ${identity} to be ready`, async () => {
    if (gone) throw new Error(`reconciler ${identity} exited; see .cluster/logs/reconciler-${identity}.log`);
    const r = await fetch(`http://127.0.0.1:${port}/readyz`).catch(() => undefined);
    return r?.status === 200;
  }, { timeoutMs: 30_000 });
  const stopWith = async (signal: NodeJS.Signals) => {
    if (gone) return;
    child.kill(signal);
    await Promise.race([exitedPromise, new Promise((r) => setTimeout(r, 10_000))]);
    if (!gone) child.kill('SIGKILL');
    await exitedPromise;
  };
  return {
    child,
    port,
    identity,
    exited: () => gone,
    stop: () => stopWith('SIGTERM'),
    kill: () => stopWith('SIGKILL'),
    metrics: async () => (await fetch(`http://127.0.0.1:${port}/metrics`)).text(),
  };
}
