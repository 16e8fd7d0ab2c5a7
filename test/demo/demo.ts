// `make demo` / `make demo-rollback`: the whole system on this machine.
// Starts (or reuses) the local control plane with its real node, installs the
// CRDs, runs the webhook, the reconciler and the load tester as local
// processes (the same processes the install runs in a cluster), deploys
// podinfo (a real image, real Pods) in an opted-in namespace, changes its
// image with `kubectl apply`, and follows the rollout with `canary-gate watch`,
// which shows the canary's observed share of the real requests and their
// success rate from Prometheus, until it is promoted (or, with --rollback,
// rolled back because the new version's requests fail: podinfo
// --random-error). With --traefik the requests go through a real Traefik v3
// and the gatewayapi router's HTTPRoute (exact weights) instead of the
// Service's ClusterIP. With --gitops the manifests live in git: a loopback
// git server and the real Flux (test/cluster/flux-up.sh) apply them, and the
// change is a commit. Everything it started is stopped at the end or on
// Ctrl-C; a cluster that was already running is left running.

import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, openSync, readFileSync } from 'node:fs';
import { fluxDown, fluxUp, GitWorkTree, applyFluxObjects } from '../e2e/flux.js';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { NAMESPACE_ENABLED_LABEL } from '../../core/contract.js';
import { cliPath, clusterDir, clusterDown, clusterUp, kubeconfigPath, kubectl, kubectlOk, repoRoot, run } from '../e2e/cluster.js';
import { assertRealNodeReady, PODINFO_VERSION } from '../e2e/real-node.js';
import { startReconciler, type RunningReconciler } from '../e2e/reconciler-process.js';
import { deleteNamespace } from '../e2e/namespaces.js';
import { waitFor } from '../e2e/wait.js';
import { DEMO_NAMESPACE_LABEL, RECONCILER_USER, reconcilerRbacForUser, startWebhook, type RunningWebhook } from '../e2e/webhook-process.js';

const NAMESPACE = 'demo';
const GATE_PORT = Number(process.env.DEMO_GATE_PORT ?? 39091);
const PROMETHEUS = `http://127.0.0.1:${process.env.PROMETHEUS_PORT ?? '39090'}`;
const TRAEFIK_PORT = Number(process.env.TRAEFIK_PORT ?? Number(process.env.PROMETHEUS_PORT ?? 39090) + 2);
const TRAEFIK_UP = path.join(repoRoot, 'test/cluster/traefik-up.sh');
const OLD = `${PODINFO_VERSION}-a`;
const NEW = `${PODINFO_VERSION}-b`;

/** A demo manifest, its load-tester and Traefik ports pointed at the ones the demo uses; `without` drops documents of that kind. */
function manifest(file: string, without?: string): string {
  const text = readFileSync(path.join(repoRoot, 'deploy/demo', file), 'utf8')
    .replaceAll('http://127.0.0.1:39091/', `http://127.0.0.1:${GATE_PORT}/`)
    .replaceAll('127.0.0.1:39092/', `127.0.0.1:${TRAEFIK_PORT}/`)
    .replaceAll('port: 39092', `port: ${TRAEFIK_PORT}`);
  if (!without) return text;
  return text
    .split(/^---$/m)
    .filter((doc) => !new RegExp(`^kind: ${without}$`, 'm').test(doc))
    .join('---');
}

/** `canary-gate loadtester` on 127.0.0.1, allowed to send load to one host only (the Service's ClusterIP, or Traefik on 127.0.0.1). */
async function startLoadTester(allowHost: string): Promise<ChildProcess> {
  mkdirSync(path.join(clusterDir, 'logs'), { recursive: true });
  const log = openSync(path.join(clusterDir, 'logs', 'loadtester-demo.log'), 'w');
  const child = spawn(process.execPath, [cliPath, 'loadtester', '--port', String(GATE_PORT), '--bind-address', '127.0.0.1', '--allow-host', allowHost, '--max-duration', '5m'], {
    stdio: ['ignore', log, log],
  });
  await waitFor('the load tester', async () => (await fetch(`http://127.0.0.1:${GATE_PORT}/healthz`).catch(() => undefined))?.status === 200, { timeoutMs: 15_000 });
  return child;
}

const say = (text: string) => console.log(`\x1b[1m[demo]\x1b[0m ${text}`);
const show = (cmd: string) => console.log(`\x1b[36m$ ${cmd}\x1b[0m`);

async function shell(cmd: string, args: string[], input?: string, file?: string): Promise<void> {
  show(`${cmd} ${args.join(' ')}${file ? ` < ${file}` : ''}`);
  const r = await kubectl(args, input === undefined ? {} : { input });
  process.stdout.write(r.stdout);
  process.stdout.write(r.stderr);
  if (r.code !== 0) throw new Error(`${cmd} ${args.join(' ')} failed`);
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: { rollback: { type: 'boolean', default: false }, keep: { type: 'boolean', default: false }, traefik: { type: 'boolean', default: false }, gitops: { type: 'boolean', default: false } },
  });
  const rollback = values.rollback as boolean;
  const traefik = values.traefik as boolean;
  const gitops = values.gitops as boolean;
  let traefikStarted = false;
  let fluxStarted = false;
  let repo: GitWorkTree | undefined;
  let webhook: RunningWebhook | undefined;
  let reconciler: RunningReconciler | undefined;
  let loadtester: ChildProcess | undefined;
  const clusterWasUp = (await kubectl(['get', '--raw', '/readyz'], { timeoutMs: 5000 }).catch(() => undefined))?.code === 0;

  const cleanup = async () => {
    if (values.keep) {
      say(`left running (--keep): export KUBECONFIG=${kubeconfigPath}; stop with make cluster-down`);
      return;
    }
    say('cleaning up what the demo started');
    // Flux's objects first, while Flux runs to remove their finalizers; then the namespace, while the reconciler still runs to release its Canary.
    if (gitops) await kubectl(['-n', NAMESPACE, 'delete', 'kustomizations.kustomize.toolkit.fluxcd.io,gitrepositories.source.toolkit.fluxcd.io', '--all', '--ignore-not-found', '--timeout=30s']);
    repo?.remove();
    if (fluxStarted) await fluxDown();
    await kubectl(['delete', 'namespace', NAMESPACE, '--ignore-not-found', '--timeout=30s']);
    await deleteNamespace(NAMESPACE);
    await reconciler?.stop();
    await webhook?.stop();
    if (traefikStarted) await run(TRAEFIK_UP, ['--down']);
    if (loadtester && loadtester.exitCode === null) {
      const gone = new Promise((r) => loadtester?.once('exit', r));
      loadtester.kill('SIGTERM');
      await Promise.race([gone, new Promise((r) => setTimeout(r, 5000))]);
    }
    if (!clusterWasUp) await clusterDown();
  };
  let interrupted = false;
  process.once('SIGINT', () => {
    interrupted = true;
    void cleanup().then(() => process.exit(130));
  });

  try {
    say(clusterWasUp ? 'reusing the running local control plane' : 'starting a local control plane (the first run builds Kubernetes; later ones start in seconds)');
    await clusterUp();
    await assertRealNodeReady();
    say('installing the CRDs and the reconciler RBAC');
    await kubectlOk(['apply', '--server-side', '--force-conflicts', '--field-manager=canary-gate-demo', '-k', path.join(repoRoot, 'deploy/crds')]);
    await kubectlOk(['wait', '--for=condition=Established', '--timeout=60s', 'crd', '-l', 'app.kubernetes.io/part-of=canary-gate']);
    await kubectlOk(['apply', '--server-side', '--force-conflicts', '--field-manager=canary-gate-demo', '-f', '-'], {
      input: JSON.stringify({ apiVersion: 'v1', kind: 'List', items: reconcilerRbacForUser(RECONCILER_USER) }),
    });

    await deleteNamespace(NAMESPACE); // a leftover from an interrupted run
    await waitFor(`namespace ${NAMESPACE} from an earlier run to be gone`, async () => (await kubectl(['get', 'namespace', NAMESPACE])).code !== 0, { timeoutMs: 60_000 });
    await kubectlOk(['create', '-f', '-'], {
      input: JSON.stringify({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: NAMESPACE, labels: { [NAMESPACE_ENABLED_LABEL]: 'true', [DEMO_NAMESPACE_LABEL]: 'true' } } }),
    });
    say(`namespace ${NAMESPACE} opted in with the label ${NAMESPACE_ENABLED_LABEL}=true`);

    webhook = await startWebhook({
      configName: 'canary-gate-demo',
      logName: 'webhook-demo',
      namespaceExpressions: [{ key: DEMO_NAMESPACE_LABEL, operator: 'Exists' }],
    });
    say(`webhook serving https://127.0.0.1:${webhook.port}/mutate, registered with its CA in MutatingWebhookConfiguration canary-gate-demo`);
    const startDemoReconciler = async () => {
      reconciler = await startReconciler({ namespace: NAMESPACE, identity: 'demo', extraArgs: ['--prometheus-address', PROMETHEUS] });
      say(`reconciler running as user ${RECONCILER_USER} (logs: .cluster/logs/reconciler-demo.log)`);
    };
    // With Flux, the reconciler starts once git's Canary is there: in an opted-in namespace it would otherwise give a
    // Deployment that arrives first a Canary of its own (Flux applies the Deployment before the Canary).
    if (!gitops) await startDemoReconciler();

    if (traefik) {
      show('test/cluster/traefik-up.sh');
      const up = await run(TRAEFIK_UP, [], { timeoutMs: 600_000 });
      if (up.code !== 0) throw new Error(`test/cluster/traefik-up.sh failed: ${up.stderr.trim()}`);
      traefikStarted = true;
      say(`Traefik v3 serving Gateways of class canary-gate-traefik on 127.0.0.1:${TRAEFIK_PORT} (log: .cluster/logs/traefik.log)`);
    }
    loadtester = await startLoadTester(traefik ? '127.0.0.1' : '10.0.0.10');
    say(`load tester on 127.0.0.1:${GATE_PORT}: the rollout gate sends real requests to podinfo ${traefik ? 'through Traefik' : 'through its Service'} (logs: .cluster/logs/loadtester-demo.log)`);

    if (gitops) {
      show('FLUX=1 make cluster-up   # here: test/cluster/flux-up.sh next to the running control plane');
      const flux = await fluxUp();
      fluxStarted = flux.started;
      say(`Flux (source-controller, kustomize-controller) and a git server on 127.0.0.1; . .cluster/flux.env sets GIT_PUSH_URL=${flux.env.GIT_PUSH_URL}`);
      repo = new GitWorkTree(flux.env.GIT_PUSH_URL, 'demo');
      await repo.init();
      show('git add podinfo.yaml && git commit -m "podinfo" && git push "$GIT_PUSH_URL" HEAD:refs/heads/demo');
      await repo.commit('podinfo', { 'podinfo.yaml': manifest('podinfo.yaml') });
      show(`kubectl -n ${NAMESPACE} apply -f deploy/gitops/flux-kustomization.yaml   # a GitRepository and a Kustomization with a health check on the Canary`);
      await applyFluxObjects(NAMESPACE, 'podinfo', {
        repoUrl: flux.env.GIT_REPO_URL,
        branch: 'demo',
        kustomization: { healthChecks: [{ apiVersion: 'canarygate.dev/v1alpha1', kind: 'Canary', name: 'podinfo', namespace: NAMESPACE }], timeout: '5m' },
      });
      await waitFor('Flux to apply the first commit', async () => (await kubectl(['-n', NAMESPACE, 'get', 'canary', 'podinfo'])).code === 0, { namespace: NAMESPACE, timeoutMs: 60_000 });
      await startDemoReconciler();
    } else if (traefik) {
      await shell('kubectl', ['-n', NAMESPACE, 'apply', '-f', '-'], manifest('podinfo.yaml', 'Canary'), 'deploy/demo/podinfo.yaml (the Deployment and Service)');
      await shell('kubectl', ['-n', NAMESPACE, 'apply', '-f', '-'], manifest('podinfo-traefik.yaml'), 'deploy/demo/podinfo-traefik.yaml');
    } else {
      await shell('kubectl', ['-n', NAMESPACE, 'apply', '-f', '-'], manifest('podinfo.yaml'), 'deploy/demo/podinfo.yaml');
    }
    await waitFor('the sample app to be adopted and rolled out', async () => {
      const phase = (await kubectl(['-n', NAMESPACE, 'get', 'canary', 'podinfo', '-o', 'jsonpath={.status.phase}'])).stdout;
      const ready = (await kubectl(['-n', NAMESPACE, 'get', 'deployment', 'podinfo', '-o', 'jsonpath={.status.readyReplicas}'])).stdout;
      return phase === 'Initialized' && ready === '4';
    }, { namespace: NAMESPACE, timeoutMs: 120_000 });
    await shell('kubectl', ['-n', NAMESPACE, 'get', traefik ? 'deployments,canaries,httproutes,pods' : 'deployments,canaries,pods', '-o', 'wide']);

    const change = rollback ? 'podinfo-v2-bad.yaml' : 'podinfo-v2.yaml';
    if (repo) {
      await shell('kubectl', ['-n', NAMESPACE, 'get', 'kustomization', 'podinfo']);
      say('now the change: a commit of the new image; Flux applies it, the webhook holds it');
      show(`git commit -am "podinfo ${NEW}" && git push "$GIT_PUSH_URL" HEAD:refs/heads/demo   # the Deployment of deploy/demo/${change}`);
      await repo.commit(`podinfo ${NEW}`, { 'podinfo.yaml': `${manifest('podinfo.yaml', 'Deployment')}\n---\n${manifest(change)}` });
      await waitFor('Flux to apply the commit', async () => {
        const pending = (await kubectl(['-n', NAMESPACE, 'get', 'deployment', 'podinfo', '-o', 'jsonpath={.metadata.annotations.canarygate\\.dev/pending-revision}'])).stdout;
        return pending !== '';
      }, { namespace: NAMESPACE, timeoutMs: 60_000 });
      await shell('kubectl', ['-n', NAMESPACE, 'get', 'kustomization', 'podinfo']);
    } else {
      say('now the change: a new image, applied exactly as a user or a GitOps tool would');
      await shell('kubectl', ['-n', NAMESPACE, 'apply', '-f', '-'], manifest(change), `deploy/demo/${change}`);
    }
    await shell('kubectl', ['-n', NAMESPACE, 'get', 'deployment', 'podinfo', '-o', 'custom-columns=LIVE IMAGE:.spec.template.spec.containers[0].image,PENDING REVISION:.metadata.annotations.canarygate\\.dev/pending-revision']);
    say(`the live Deployment stays on ${OLD}; the reconciler runs ${NEW}${rollback ? ' (with --random-error)' : ''} as podinfo-canary and shifts real traffic step by step${traefik ? ' through the HTTPRoute Traefik serves' : ''}`);

    show(`canary-gate watch -n ${NAMESPACE} podinfo --prometheus ${PROMETHEUS}`);
    const code = await new Promise<number>((resolve) => {
      const child = spawn(process.execPath, [cliPath, 'watch', '-n', NAMESPACE, 'podinfo', '--timeout', '5m', '--prometheus', PROMETHEUS], {
        stdio: 'inherit',
        env: { ...process.env, KUBECONFIG: kubeconfigPath },
      });
      child.on('exit', (c) => resolve(c ?? 1));
    });
    const expected = rollback ? 1 : 0;
    if (code === expected) {
      // The copy is scaled to zero as the run ends; its Pods take a moment to
      // go, and the table below should show the settled state. (After an
      // unexpected outcome the table is shown at once, as it is.)
      await waitFor('the canary copy to scale to zero', async () => {
        const replicas = (await kubectl(['-n', NAMESPACE, 'get', 'deployment', 'podinfo-canary', '-o', 'jsonpath={.status.replicas}'])).stdout;
        return replicas === '' || replicas === '0';
      }, { namespace: NAMESPACE, timeoutMs: 60_000 });
    }
    await shell('kubectl', ['-n', NAMESPACE, 'get', 'deployments,canaries', '-o', 'wide']);
    if (repo && code === expected) {
      // Flux's health check follows the Canary: Ready once promoted, failed after a rollback.
      const want = rollback ? 'False' : 'True';
      await waitFor(`the Kustomization to say Ready=${want}`, async () => (await kubectl(['-n', NAMESPACE, 'get', 'kustomization', 'podinfo', '-o', 'jsonpath={.status.conditions[?(@.type=="Ready")].status}'])).stdout === want, { namespace: NAMESPACE, timeoutMs: 60_000 });
      await shell('kubectl', ['-n', NAMESPACE, 'get', 'kustomization', 'podinfo']);
    }
    if (code === expected) {
      await showLoad();
      say(rollback ? `rolled back: the live Deployment never left ${OLD}, the canary copy is at zero` : `promoted: podinfo now runs ${NEW}, the canary copy is at zero`);
      return 0;
    }
    say(`unexpected outcome (watch exited ${code}); see .cluster/logs/`);
    return 1;
  } finally {
    if (!interrupted) await cleanup();
  }
}

/** The load tester's account of the requests it sent. */
async function showLoad(): Promise<void> {
  show(`curl -s http://127.0.0.1:${GATE_PORT}/runs`);
  const r = await fetch(`http://127.0.0.1:${GATE_PORT}/runs`, { signal: AbortSignal.timeout(3000) }).catch(() => undefined);
  if (!r?.ok) return say('the load tester did not answer');
  const runs = (await r.json()) as { running: { result?: unknown }[]; finished: { result?: unknown }[] };
  for (const run of [...runs.finished, ...runs.running]) console.log(JSON.stringify(run));
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    console.error(`[demo] failed: ${err instanceof Error ? err.message : String(err)}`);
    process.exit(1);
  },
);
