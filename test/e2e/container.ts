// Runs canary-gate commands as containers from the image `make image` built
// (deploy/image/build.sh), with podman on the host network, as the install
// runs them: user 65532, read-only root filesystem, only /tmp writable,
// every capability dropped, files mounted read-only.

import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { clusterDir, repoRoot, run, type RunResult } from './cluster.js';

/** Namespaces whose webhook runs from the image carry this label; the suite's global webhook leaves them alone. */
export const IMAGE_NAMESPACE_LABEL = 'canarygate.dev/e2e-image';

/** The tag `make image` gives the image: canary-gate:<package.json version>. */
export function imageTag(): string {
  if (process.env.CANARY_GATE_IMAGE) return process.env.CANARY_GATE_IMAGE;
  const pkg = JSON.parse(readFileSync(path.join(repoRoot, 'package.json'), 'utf8')) as { version: string };
  return `canary-gate:${pkg.version}`;
}

const podmanScript = path.join(repoRoot, 'deploy/image/podman.sh');

/** podman with the runtime, cgroup and rlimit settings this kind of host needs (deploy/image/podman.sh). */
export function podman(args: string[], opts: { timeoutMs?: number } = {}): Promise<RunResult> {
  return run(podmanScript, args, { timeoutMs: opts.timeoutMs ?? 60_000 });
}

/** Throws, saying what to do, unless the image is in the local image store. */
export async function requireImage(tag: string): Promise<void> {
  const r = await podman(['image', 'exists', tag]);
  if (r.code === 0) return;
  const why = r.code === 1 ? `image ${tag} is not in the local image store` : `podman failed (${r.code}): ${r.stderr.trim()}`;
  throw new Error(`${why}; build it with \`make image\` (make test-e2e does)`);
}

export interface Mount {
  source: string;
  target: string;
}

export class Container {
  private started = false;

  constructor(
    readonly name: string,
    private readonly image: string,
    private readonly args: string[],
    private readonly mounts: Mount[] = [],
  ) {}

  async start(): Promise<void> {
    const flags = [
      '--detach', '--name', this.name,
      '--label', 'canarygate.dev/e2e=true',
      // Should the test process die before its after() hook, the container still ends by itself.
      '--timeout', '900',
      '--user', '65532:65532',
      // As the manifests: the root filesystem read-only, /tmp an emptyDir.
      '--read-only', '--read-only-tmpfs=false', '--tmpfs', '/tmp:rw,size=64m,mode=1777',
      '--cap-drop', 'ALL', '--security-opt', 'no-new-privileges',
      ...this.mounts.flatMap((m) => ['--volume', `${m.source}:${m.target}:ro`]),
    ];
    this.started = true;
    const r = await podman(['run', ...flags, this.image, ...this.args]);
    if (r.code !== 0) throw new Error(`podman run ${this.name} failed (${r.code}): ${r.stderr.trim()}`);
  }

  async running(): Promise<boolean> {
    const r = await podman(['container', 'inspect', '--format', '{{.State.Running}}', this.name]);
    return r.code === 0 && r.stdout.trim() === 'true';
  }

  async logs(): Promise<string> {
    const r = await podman(['logs', this.name]);
    return r.stdout + r.stderr;
  }

  /** SIGTERM, up to graceSeconds, then SIGKILL; resolves to the exit code. */
  async stop(graceSeconds = 10): Promise<number> {
    await podman(['stop', '--time', String(graceSeconds), this.name], { timeoutMs: (graceSeconds + 20) * 1000 });
    const r = await podman(['container', 'inspect', '--format', '{{.State.ExitCode}}', this.name]);
    return Number(r.stdout.trim());
  }

  /** Saves the logs under .cluster/logs/ and removes the container, whatever state it is in. */
  async remove(): Promise<void> {
    if (!this.started) return;
    const logs = await this.logs().catch(() => '');
    writeFileSync(path.join(clusterDir, 'logs', `${this.name}.log`), logs);
    await podman(['rm', '--force', '--time', '2', this.name], { timeoutMs: 30_000 });
  }
}
