// Flux in the loop: starts (or reuses) the real source-controller,
// kustomize-controller and loopback git server of test/cluster/flux-up.sh
// next to the suite's control plane, and gives a test a git working copy
// that pushes to it, and the GitRepository and Kustomization that read it.

import { mkdtempSync, mkdirSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { clusterDir, kubectlOk, repoRoot, run } from './cluster.js';

/** Namespaces labelled so are left to a test's own webhook by the suite's shared one. */
export const OWN_WEBHOOK_NAMESPACE_LABEL = 'canarygate.dev/own-webhook';

const FLUX_UP = path.join(repoRoot, 'test/cluster/flux-up.sh');
const FLUX_ENV = path.join(clusterDir, 'flux.env');

export interface FluxEnv {
  GIT_PUSH_URL: string;
  GIT_REPO_URL: string;
  FLUX_NAMESPACE: string;
  [key: string]: string;
}

/** Reads .cluster/flux.env (KEY=value lines). */
export function readFluxEnv(): FluxEnv {
  const env: Record<string, string> = {};
  for (const line of readFileSync(FLUX_ENV, 'utf8').split('\n')) {
    const m = /^([A-Z_]+)=(.*)$/.exec(line);
    if (m) env[m[1] as string] = m[2] as string;
  }
  for (const key of ['GIT_PUSH_URL', 'GIT_REPO_URL', 'FLUX_NAMESPACE']) {
    if (!env[key]) throw new Error(`${FLUX_ENV} sets no ${key}`);
  }
  return env as FluxEnv;
}

/**
 * Starts Flux unless it runs already (flux-up.sh is idempotent); returns
 * whether this call started it, so the caller stops only what it started.
 */
export async function fluxUp(): Promise<{ env: FluxEnv; started: boolean }> {
  const before = existsSync(FLUX_ENV);
  const r = await run(FLUX_UP, [], { timeoutMs: 900_000 });
  if (r.code !== 0) throw new Error(`test/cluster/flux-up.sh failed (${r.code}): ${r.stderr.trim()}`);
  return { env: readFluxEnv(), started: !before || !/reusing the running Flux/.test(r.stderr) };
}

export async function fluxDown(): Promise<void> {
  await run(FLUX_UP, ['--down']);
}

/** A git working copy whose commits go to one branch of the loopback server. */
export class GitWorkTree {
  readonly dir: string;
  constructor(
    readonly pushUrl: string,
    readonly branch: string,
  ) {
    this.dir = mkdtempSync(path.join(os.tmpdir(), `flux-${branch}-`));
  }

  async git(...args: string[]): Promise<string> {
    const r = await run('git', ['-C', this.dir, ...args], {
      env: { GIT_AUTHOR_NAME: 'e2e', GIT_AUTHOR_EMAIL: 'e2e@example.test', GIT_COMMITTER_NAME: 'e2e', GIT_COMMITTER_EMAIL: 'e2e@example.test', GIT_TERMINAL_PROMPT: '0' },
      timeoutMs: 30_000,
    });
    if (r.code !== 0) throw new Error(`git ${args.join(' ')} failed (${r.code}): ${r.stderr.trim()}`);
    return r.stdout.trim();
  }

  async init(): Promise<void> {
    await this.git('init', '--quiet', '--initial-branch', this.branch);
  }

  /** Writes the files (path → text; undefined deletes), commits and pushes; returns the commit id. */
  async commit(message: string, files: Record<string, string | undefined>): Promise<string> {
    for (const [file, text] of Object.entries(files)) {
      const p = path.join(this.dir, file);
      if (text === undefined) rmSync(p, { force: true });
      else {
        mkdirSync(path.dirname(p), { recursive: true });
        writeFileSync(p, text);
      }
    }
    await this.git('add', '-A');
    await this.git('commit', '--quiet', '-m', message);
    return this.push();
  }

  async push(): Promise<string> {
    await this.git('push', '--quiet', this.pushUrl, `HEAD:refs/heads/${this.branch}`);
    return this.git('rev-parse', 'HEAD');
  }

  remove(): void {
    rmSync(this.dir, { recursive: true, force: true });
  }
}

export interface Condition {
  type: string;
  status: string;
  reason?: string;
  message?: string;
}
export interface Kustomization {
  metadata: { generation?: number };
  status?: {
    conditions?: Condition[];
    lastAppliedRevision?: string;
    lastAttemptedRevision?: string;
    inventory?: { entries?: { id: string; v: string }[] };
  };
}

export function readyOf(k: Kustomization | undefined): Condition | undefined {
  return k?.status?.conditions?.find((c) => c.type === 'Ready');
}

/** A GitRepository on `branch` and a Kustomization of its root, both in `ns`, reconciled every few seconds. */
export async function applyFluxObjects(
  ns: string,
  name: string,
  opts: { repoUrl: string; branch: string; kustomization?: Record<string, unknown> },
): Promise<void> {
  const objects = [
    {
      apiVersion: 'source.toolkit.fluxcd.io/v1',
      kind: 'GitRepository',
      metadata: { name, namespace: ns },
      spec: { url: opts.repoUrl, ref: { branch: opts.branch }, interval: '2s', timeout: '20s' },
    },
    {
      apiVersion: 'kustomize.toolkit.fluxcd.io/v1',
      kind: 'Kustomization',
      metadata: { name, namespace: ns },
      spec: {
        interval: '3s',
        retryInterval: '3s',
        path: './',
        prune: true,
        targetNamespace: ns,
        sourceRef: { kind: 'GitRepository', name },
        timeout: '60s',
        ...opts.kustomization,
      },
    },
  ];
  await kubectlOk(['apply', '--server-side', '--field-manager=e2e-user', '-f', '-'], { input: JSON.stringify({ apiVersion: 'v1', kind: 'List', items: objects }) });
}

/** A commit id as Flux writes it in a revision: `<branch>@sha1:<id>`. */
export function revisionOf(branch: string, commit: string): string {
  return `${branch}@sha1:${commit}`;
}

/**
 * What kustomize-controller did to one object in one Kustomization's
 * server-side applies, from its log ("server-side apply completed", one
 * output entry per object: created, configured, unchanged, deleted...).
 */
export function fluxApplyActions(ns: string, kustomization: string, objectId: string): string[] {
  const file = path.join(clusterDir, 'logs', 'flux-kustomize-controller.log');
  const actions: string[] = [];
  for (const line of readFileSync(file, 'utf8').split('\n')) {
    if (!line.includes('server-side apply')) continue;
    let entry: { name?: string; namespace?: string; output?: Record<string, string> };
    try {
      entry = JSON.parse(line) as typeof entry;
    } catch {
      continue;
    }
    if (entry.namespace !== ns || entry.name !== kustomization || !entry.output) continue;
    const action = entry.output[objectId];
    if (action) actions.push(action);
  }
  return actions;
}

/** The shared webhook's decisions on one object, from its log: [decision, dryRun]. */
export function webhookDecisions(logName: string, ns: string, name: string): { decision: string; dryRun: boolean }[] {
  const file = path.join(clusterDir, 'logs', `${logName}.log`);
  const out: { decision: string; dryRun: boolean }[] = [];
  for (const line of readFileSync(file, 'utf8').split('\n')) {
    if (!line.includes(`"${ns}"`)) continue;
    let e: { namespace?: string; name?: string; decision?: string; dryRun?: boolean };
    try {
      e = JSON.parse(line) as typeof e;
    } catch {
      continue;
    }
    if (e.namespace === ns && e.name === name && e.decision) out.push({ decision: e.decision, dryRun: e.dryRun === true });
  }
  return out;
}
