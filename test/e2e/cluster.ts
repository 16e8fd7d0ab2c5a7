// Access to the local control plane that test/cluster/up.sh runs: paths, a
// kubectl runner and typed clients. Shared by the e2e tests, the demo and
// the benchmarks.

import { execFile, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as k8s from '@kubernetes/client-node';

/** The repository root (this file is compiled to dist/test/e2e/). */
export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
export const clusterDir = path.join(repoRoot, '.cluster');
export const kubeconfigPath = path.join(clusterDir, 'kubeconfig');
export const kubectlPath = path.join(clusterDir, 'bin', 'kubectl');
export const cliPath = path.join(repoRoot, 'dist', 'core', 'cli.js');

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs a program to completion; never rejects on a non-zero exit. */
export function run(file: string, args: string[], opts: { input?: string; env?: NodeJS.ProcessEnv; timeoutMs?: number } = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = execFile(
      file,
      args,
      { env: { ...process.env, ...opts.env }, timeout: opts.timeoutMs ?? 120_000, maxBuffer: 64 * 1024 * 1024 },
      (err, stdout, stderr) => {
        if (err && typeof (err as NodeJS.ErrnoException).code === 'string') return reject(err);
        resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
      },
    );
    if (opts.input !== undefined) child.stdin?.end(opts.input);
  });
}

/** kubectl against the local cluster. */
export function kubectl(args: string[], opts: { input?: string; timeoutMs?: number } = {}): Promise<RunResult> {
  return run(kubectlPath, ['--kubeconfig', kubeconfigPath, ...args], opts);
}

/** kubectl that must succeed: rejects with its stderr otherwise. */
export async function kubectlOk(args: string[], opts: { input?: string; timeoutMs?: number } = {}): Promise<string> {
  const r = await kubectl(args, opts);
  if (r.code !== 0) throw new Error(`kubectl ${args.join(' ')} failed (${r.code}): ${r.stderr.trim()}`);
  return r.stdout;
}

export function clusterExists(): boolean {
  return existsSync(kubeconfigPath) && existsSync(kubectlPath);
}

/** Runs test/cluster/up.sh (reuses a healthy cluster), streaming its log lines. */
export function clusterUp(): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(path.join(repoRoot, 'test/cluster/up.sh'), [], { stdio: ['ignore', 'inherit', 'inherit'] });
    child.on('error', reject);
    child.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`test/cluster/up.sh exited with ${code}`))));
  });
}

export function clusterDown(): Promise<RunResult> {
  return run(path.join(repoRoot, 'test/cluster/down.sh'), []);
}

let kc: k8s.KubeConfig | undefined;
export function kubeConfig(): k8s.KubeConfig {
  if (!kc) {
    kc = new k8s.KubeConfig();
    kc.loadFromFile(kubeconfigPath);
  }
  return kc;
}

export function core(): k8s.CoreV1Api {
  return kubeConfig().makeApiClient(k8s.CoreV1Api);
}
export function apps(): k8s.AppsV1Api {
  return kubeConfig().makeApiClient(k8s.AppsV1Api);
}
export function custom(): k8s.CustomObjectsApi {
  return kubeConfig().makeApiClient(k8s.CustomObjectsApi);
}
export function admission(): k8s.AdmissionregistrationV1Api {
  return kubeConfig().makeApiClient(k8s.AdmissionregistrationV1Api);
}

/** One object as JSON, or undefined when it does not exist. */
export async function getObject<T>(ns: string, kind: string, name: string): Promise<T | undefined> {
  const r = await kubectl(['-n', ns, 'get', kind, name, '-o', 'json']);
  return r.code === 0 ? (JSON.parse(r.stdout) as T) : undefined;
}

/** Server-side apply as a user (field manager e2e-user) would; must succeed. */
export function applyAsUser(ns: string, obj: unknown): Promise<string> {
  return kubectlOk(['-n', ns, 'apply', '--server-side', '--field-manager=e2e-user', '-f', '-'], { input: JSON.stringify(obj) });
}
