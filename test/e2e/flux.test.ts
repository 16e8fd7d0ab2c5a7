// GitOps with the real Flux: commits pushed to a loopback git server, Flux's
// own source-controller and kustomize-controller applying them (server-side
// apply, drift detection by server-side dry-run, prune, force, wait), the
// real webhook holding each change and the real reconciler rolling it out.
// Flux is started on demand (test/cluster/flux-up.sh) and stopped after, if
// this file started it: no other file needs it.

import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as k8s from '@kubernetes/client-node';
import { IN_USE_FINALIZER, PENDING_REVISION } from '../../core/contract.js';
import { CANARY_PHASES, type Canary, type CanaryPhase } from '../../core/api/types.js';
import { clusterDir, kubectl, kubectlOk, getObject as get, repoRoot, run } from './cluster.js';
import {
  applyFluxObjects,
  fluxApplyActions,
  fluxDown,
  fluxUp,
  GitWorkTree,
  OWN_WEBHOOK_NAMESPACE_LABEL,
  readyOf,
  revisionOf,
  webhookDecisions,
  type FluxEnv,
  type Kustomization,
} from './flux.js';
import { GateServer } from './gate-server.js';
import { createNamespace, deleteNamespace } from './namespaces.js';
import { deployment, service } from './objects.js';
import { startReconciler, type RunningReconciler } from './reconciler-process.js';
import { sleep, waitFor } from './wait.js';
import { startWebhook, type RunningWebhook } from './webhook-process.js';

interface Deploy {
  metadata: { uid?: string; annotations?: Record<string, string>; labels?: Record<string, string>; managedFields?: { manager?: string; operation?: string }[] };
  spec: { replicas?: number; selector: { matchLabels: Record<string, string> }; template: { spec: { containers: { image: string }[] } } };
}
const image = (d: Deploy | undefined) => d?.spec.template.spec.containers[0]?.image;
const SHARED_WEBHOOK_LOG = 'webhook-e2e';

function canaryYaml(name: string, gates: GateServer, opts: { hold?: boolean } = {}): string {
  const webhooks: Record<string, unknown>[] = [{ name: 'smoke', type: 'rollout', url: gates.url(`${name}-rollout`) }];
  if (opts.hold) webhooks.push({ name: 'approve', type: 'confirm-promotion', url: gates.url(`${name}-approve`) });
  return JSON.stringify({
    apiVersion: 'canarygate.dev/v1alpha1',
    kind: 'Canary',
    metadata: { name },
    spec: {
      targetRef: { apiVersion: 'apps/v1', kind: 'Deployment', name },
      service: { port: 80 },
      progressDeadlineSeconds: 60,
      analysis: { interval: '1s', threshold: 2, stepWeight: 50, maxWeight: 50, webhooks },
    },
  });
}

/** The app as it sits in git: a Canary, its Deployment and Service, one file each. */
function appFiles(name: string, tag: string, gates: GateServer, opts: { hold?: boolean; selector?: Record<string, string> } = {}): Record<string, string> {
  const d = deployment(name, { image: `example.test/${name}:${tag}`, replicas: 2 });
  if (opts.selector) {
    // An immutable field: the selector (the template's labels follow it).
    (d.spec.selector as { matchLabels: Record<string, string> }).matchLabels = { app: name, ...opts.selector };
    (d.spec.template.metadata as { labels: Record<string, string> }).labels = { app: name, ...opts.selector };
  }
  return {
    'canary.yaml': canaryYaml(name, gates, opts),
    'deployment.yaml': JSON.stringify(d),
    'service.yaml': JSON.stringify(service(name, { selector: { app: name } })),
  };
}

describe('GitOps with the real Flux (git push, source-controller, kustomize-controller)', function () {
  this.timeout(240_000);
  let env: FluxEnv;
  let startedFlux = false;
  let ns: string;
  let reconciler: RunningReconciler | undefined;
  const gates = new GateServer();
  const trees: GitWorkTree[] = [];

  before(async function () {
    this.timeout(900_000); // a cold build of the Flux controllers, once
    const up = await fluxUp();
    env = up.env;
    startedFlux = up.started;
    ns = await createNamespace('flux');
    await gates.start();
  });
  /**
   * Flux's objects go first, while Flux and the reconciler run: their
   * finalizers (Flux prunes what it applied, the Canary's finalizer) would
   * keep the namespace Terminating once both are stopped.
   */
  async function deleteFluxObjects(namespace: string) {
    await kubectl(['-n', namespace, 'delete', 'kustomizations.kustomize.toolkit.fluxcd.io,gitrepositories.source.toolkit.fluxcd.io', '--all', '--timeout=60s'], { timeoutMs: 70_000 });
  }

  after(async function () {
    this.timeout(120_000);
    if (ns) await deleteFluxObjects(ns);
    await reconciler?.stop();
    await gates.stop();
    for (const t of trees) t.remove();
    if (ns) await deleteNamespace(ns);
    if (startedFlux) await fluxDown();
  });

  const kustomization = (name: string, namespace = ns) => get<Kustomization>(namespace, 'kustomizations.kustomize.toolkit.fluxcd.io', name);
  const canary = (name: string, namespace = ns) => get<Canary>(namespace, 'canaries.canarygate.dev', name);
  const live = (name: string, namespace = ns) => get<Deploy>(namespace, 'deployment', name);

  /** Pushes the first commit of an app, points Flux at it and waits for it to be applied and adopted. */
  async function gitopsApp(name: string, opts: { namespace?: string; hold?: boolean; kustomization?: Record<string, unknown>; files?: Record<string, string> } = {}) {
    const namespace = opts.namespace ?? ns;
    const tree = new GitWorkTree(env.GIT_PUSH_URL, `${namespace}-${name}`);
    trees.push(tree);
    await tree.init();
    const first = await tree.commit(`${name}: first release`, opts.files ?? appFiles(name, '1', gates, opts));
    await applyFluxObjects(namespace, name, { repoUrl: env.GIT_REPO_URL, branch: tree.branch, kustomization: opts.kustomization });
    await waitFor(`Flux to apply ${name}'s first commit`, async () => {
      const k = await kustomization(name, namespace);
      return readyOf(k)?.status === 'True' && k?.status?.lastAppliedRevision === revisionOf(tree.branch, first);
    }, { namespace, timeoutMs: 60_000 });
    return { tree, first };
  }

  async function adopted(name: string, namespace = ns) {
    await waitFor(`${name} to be adopted`, async () => (await canary(name, namespace))?.status?.phase === 'Initialized', { namespace, timeoutMs: 30_000 });
  }

  async function startNamespaceReconciler() {
    // Started after Flux's first apply: in an opted-in namespace a Deployment
    // that arrives before its Canary would get a generated one.
    reconciler ??= await startReconciler({ namespace: ns });
  }

  it("Argo CD's health check (deploy/gitops/argocd-cm-patch.yaml), run by gopher-lua as Argo CD runs it, names every phase's health", async function () {
    const cm = k8s.loadYaml<{ data: Record<string, string> }>(readFileSync(path.join(repoRoot, 'deploy/gitops/argocd-cm-patch.yaml'), 'utf8'));
    const script = cm.data['resource.customizations.health.canarygate.dev_Canary'];
    assert.ok(script, 'the patch carries the Canary health check');
    const expected: Record<CanaryPhase, string> = {
      Initializing: 'Progressing',
      Initialized: 'Healthy',
      Waiting: 'Suspended',
      Progressing: 'Progressing',
      WaitingPromotion: 'Suspended',
      Promoting: 'Progressing',
      Succeeded: 'Healthy',
      Failed: 'Degraded',
      Terminating: 'Progressing',
    };
    const objects: unknown[] = [
      { apiVersion: 'canarygate.dev/v1alpha1', kind: 'Canary', metadata: { name: 'new' }, spec: {} },
      ...CANARY_PHASES.map((phase) => ({ apiVersion: 'canarygate.dev/v1alpha1', kind: 'Canary', metadata: { name: phase }, status: { phase, message: `the ${phase} message` } })),
      { apiVersion: 'canarygate.dev/v1alpha1', kind: 'Canary', metadata: { name: 'no-message' }, status: { phase: 'Failed' } },
    ];
    const dir = mkdtempSync(path.join(os.tmpdir(), 'lua-health-'));
    try {
      writeFileSync(path.join(dir, 'canary.lua'), script);
      const r = await run(path.join(clusterDir, 'bin', 'lua-health'), [path.join(dir, 'canary.lua')], { input: JSON.stringify(objects) });
      assert.equal(r.code, 0, r.stderr);
      const health = JSON.parse(r.stdout) as { status: string; message: string }[];
      assert.deepEqual(health[0], { status: 'Progressing', message: 'waiting for the reconciler' });
      CANARY_PHASES.forEach((phase, i) => assert.deepEqual(health[i + 1], { status: expected[phase], message: `the ${phase} message` }, phase));
      assert.deepEqual(health.at(-1), { status: 'Degraded', message: 'Failed' }, 'the phase stands in for a missing message');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('a commit of a new image: Flux applies it, the webhook holds it, the canary is promoted; live equals git, Flux stays Ready and never re-applies in a loop', async function () {
    const name = 'shop';
    const { tree } = await gitopsApp(name, { hold: true });
    await startNamespaceReconciler();
    await adopted(name);
    const id = `Deployment/${ns}/${name}`;
    const appliesBefore = fluxApplyActions(ns, name, id).length;

    gates.answer(`${name}-approve`, 403); // hold the run at confirm-promotion a while, so Flux reconciles during it
    const commit = await tree.commit(`${name}: image 2`, appFiles(name, '2', gates, { hold: true }));
    const revision = revisionOf(tree.branch, commit);
    await waitFor('Flux to apply the new commit', async () => (await kustomization(name))?.status?.lastAppliedRevision === revision, { namespace: ns, timeoutMs: 30_000 });
    const held = await live(name);
    assert.equal(image(held), 'example.test/shop:1', 'the live Deployment stays on the stable image');
    assert.ok(held?.metadata.annotations?.[PENDING_REVISION], 'the new image is held as the pending revision');
    await waitFor('the run to start', async () => ['Progressing', 'WaitingPromotion'].includes((await canary(name))?.status?.phase ?? ''), { namespace: ns, timeoutMs: 30_000 });

    // While the run is held, Flux reconciles every 3 s: each time its
    // dry-run goes through the webhook, finds no drift, and applies nothing.
    const dryRunsBefore = webhookDecisions(SHARED_WEBHOOK_LOG, ns, name).filter((d) => d.dryRun).length;
    await waitFor('Flux to reconcile the held commit at least 4 times', () => fluxApplyActions(ns, name, id).length - appliesBefore >= 5, { timeoutMs: 40_000 });
    assert.equal((await canary(name))?.status?.phase, 'WaitingPromotion');
    assert.equal(readyOf(await kustomization(name))?.status, 'True', 'Flux reports Ready, no drift, during the run');
    gates.answer(`${name}-approve`, 200);

    await waitFor('Succeeded', async () => (await canary(name))?.status?.phase === 'Succeeded', { namespace: ns, timeoutMs: 60_000 });
    const promoted = await live(name);
    assert.equal(image(promoted), 'example.test/shop:2', 'live equals git');
    assert.equal(promoted?.metadata.annotations?.[PENDING_REVISION], undefined);
    // Two more reconciles after the promotion: Flux still sees no drift.
    const afterPromotion = fluxApplyActions(ns, name, id).length;
    await waitFor('two reconciles after the promotion', () => fluxApplyActions(ns, name, id).length - afterPromotion >= 2, { timeoutMs: 30_000 });
    const k = await kustomization(name);
    assert.equal(readyOf(k)?.status, 'True');
    assert.equal(k?.status?.lastAppliedRevision, revision);
    assert.ok(k?.status?.inventory?.entries?.some((e) => e.id === `${ns}_${name}_apps_Deployment`), 'the Deployment is in Flux\'s inventory');

    // Field ownership after the promotion (canary-gate wrote the template with an update).
    const owners = JSON.parse(await kubectlOk(['-n', ns, 'get', 'deployment', name, '-o', 'json', '--show-managed-fields'])) as Deploy;
    const imageOwners = (owners.metadata.managedFields ?? [])
      .filter((f) => JSON.stringify((f as { fieldsV1?: unknown }).fieldsV1 ?? {}).includes('"f:image"'))
      .map((f) => `${f.manager}/${f.operation}`);
    const sameAgain = await kubectl(['-n', ns, 'apply', '--server-side', '--dry-run=server', '--field-manager=kubectl', '-f', '-'], { input: appFiles(name, '2', gates, { hold: true })['deployment.yaml'] });
    const next = await kubectl(['-n', ns, 'apply', '--server-side', '--dry-run=server', '--field-manager=kubectl', '-f', '-'], { input: appFiles(name, '3', gates, { hold: true })['deployment.yaml'] });
    console.log(`      [flux] after the promotion: image owned by ${imageOwners.join(', ')}; kubectl apply --server-side of git's manifest: ${sameAgain.code === 0 ? 'ok' : sameAgain.stderr.trim()}; of a new image: ${next.code === 0 ? 'ok' : next.stderr.trim()}`);
    // Known and documented: the promoted fields are canary-gate's (an update);
    // Flux forces ownership on its applies (the next commit goes through:
    // see the next test), the same manifest again applies cleanly, and a plain
    // `kubectl apply --server-side` of a new value needs --force-conflicts.
    assert.deepEqual(imageOwners, ['canary-gate/Update']);
    assert.equal(sameAgain.code, 0, sameAgain.stderr);
    assert.match(next.stderr, /conflict with "canary-gate".*\.image/);
    const actions = fluxApplyActions(ns, name, id).slice(appliesBefore);
    const configured = actions.filter((a) => a !== 'unchanged');
    const decisions = webhookDecisions(SHARED_WEBHOOK_LOG, ns, name);
    const realReapplies = decisions.filter((d) => d.decision === 'reapplied' && !d.dryRun).length;
    const dryRuns = decisions.filter((d) => d.dryRun).length - dryRunsBefore;
    console.log(
      `      [flux] one image commit, held then promoted: ${actions.length} Flux reconciles, ${configured.length} apply of the Deployment (${configured.join(', ')}), ` +
        `${actions.length - configured.length} unchanged; webhook: ${dryRuns} dry-runs, ${realReapplies} real re-applies`,
    );
    assert.deepEqual(configured, ['configured'], 'Flux applied the Deployment once, for the commit, and never again');
    assert.equal(realReapplies, 0, 'no real re-apply reached the webhook');
  });

  it("a Kustomization with the shipped health check (deploy/gitops/flux-kustomization.yaml) is progressing until the promotion, Ready after it, failed after a rollback; the failed commit never restarts, a new commit does", async function () {
    const name = 'cart';
    const sample = k8s.loadYaml<{ spec: { healthChecks: Record<string, string>[] } }>(readFileSync(path.join(repoRoot, 'deploy/gitops/flux-kustomization.yaml'), 'utf8'));
    const healthChecks: Record<string, string>[] = sample.spec.healthChecks.map((h) => ({ ...h, name, namespace: ns }));
    assert.deepEqual(healthChecks.map((h) => h.kind), ['Canary']);
    const { tree } = await gitopsApp(name, { hold: true, kustomization: { healthChecks, timeout: '40s' } });
    await startNamespaceReconciler();
    await adopted(name);

    gates.answer(`${name}-approve`, 403); // the run waits at confirm-promotion
    const good = await tree.commit(`${name}: image 2`, appFiles(name, '2', gates, { hold: true }));
    await waitFor('the run to wait for approval', async () => (await canary(name))?.status?.phase === 'WaitingPromotion', { namespace: ns, timeoutMs: 30_000 });
    await waitFor('Flux to wait for the Canary', async () => {
      const k = await kustomization(name);
      return k?.status?.lastAttemptedRevision === revisionOf(tree.branch, good) && readyOf(k)?.status === 'Unknown' ? k : false;
    }, { namespace: ns, timeoutMs: 30_000 });
    // Sampled for 4 s (Flux reconciles every 3 s, and says Unknown at the start of each): never Ready while the run waits.
    const seen = new Set<string>();
    for (const t0 = Date.now(); Date.now() - t0 < 4000; await sleep(200)) seen.add(readyOf(await kustomization(name))?.status ?? 'none');
    assert.deepEqual([...seen], ['Unknown'], 'still progressing while the run waits');
    gates.answer(`${name}-approve`, 200);
    await waitFor('Flux Ready once the Canary is promoted', async () => {
      const k = await kustomization(name);
      return readyOf(k)?.status === 'True' && k?.status?.lastAppliedRevision === revisionOf(tree.branch, good);
    }, { namespace: ns, timeoutMs: 90_000 });
    assert.equal((await canary(name))?.status?.phase, 'Succeeded');

    // A failing revision: the smoke test answers 500.
    gates.answer(`${name}-rollout`, 500);
    const bad = await tree.commit(`${name}: image 3`, appFiles(name, '3', gates, { hold: true }));
    await waitFor('the rollback', async () => (await canary(name))?.status?.phase === 'Failed', { namespace: ns, timeoutMs: 60_000 });
    const failed = await waitFor('Flux to report the failed health check', async () => {
      const k = await kustomization(name);
      const ready = readyOf(k);
      return k?.status?.lastAttemptedRevision === revisionOf(tree.branch, bad) && ready?.status === 'False' ? ready : false;
    }, { namespace: ns, timeoutMs: 90_000 });
    console.log(`      [flux] healthChecks on the Canary after a rollback: Ready=False ${failed.reason}: ${failed.message}`);
    assert.match(failed.message ?? '', /Canary/);
    const c = await canary(name);
    assert.equal(c?.status?.conditions?.find((x) => x.type === 'Stalled')?.status, 'True');
    assert.equal(image(await live(name)), 'example.test/cart:2', 'the live Deployment never left the promoted image');

    // Flux goes on reconciling the same commit: the failed run never restarts.
    const calls = gates.callsTo(`${name}-rollout`).length;
    const attempts = fluxApplyActions(ns, name, `Deployment/${ns}/${name}`).length;
    await waitFor('Flux to try the failed commit again', () => fluxApplyActions(ns, name, `Deployment/${ns}/${name}`).length >= attempts + 1, { timeoutMs: 60_000 });
    assert.equal((await canary(name))?.status?.phase, 'Failed');
    assert.equal(gates.callsTo(`${name}-rollout`).length, calls, 'no gate is called again for the failed revision');

    // A new commit starts a new run, which is promoted.
    gates.answer(`${name}-rollout`, 200);
    const fixed = await tree.commit(`${name}: image 4`, appFiles(name, '4', gates, { hold: true }));
    await waitFor('Flux Ready with the fix promoted', async () => {
      const k = await kustomization(name);
      return readyOf(k)?.status === 'True' && k?.status?.lastAppliedRevision === revisionOf(tree.branch, fixed);
    }, { namespace: ns, timeoutMs: 90_000 });
    assert.equal(image(await live(name)), 'example.test/cart:4');
  });

  it('a revert commit during the run withdraws the pending change, and the Canary says so', async function () {
    const name = 'revert';
    const { tree } = await gitopsApp(name, { hold: true });
    await startNamespaceReconciler();
    await adopted(name);
    gates.answer(`${name}-approve`, 403);
    await tree.commit(`${name}: image 2`, appFiles(name, '2', gates, { hold: true }));
    await waitFor('the run to wait for approval', async () => (await canary(name))?.status?.phase === 'WaitingPromotion', { namespace: ns, timeoutMs: 60_000 });
    await tree.git('revert', '--no-edit', 'HEAD');
    const revert = await tree.push();
    await waitFor('the run to be cancelled', async () => {
      const c = await canary(name);
      return c?.status?.phase === 'Initialized' && /cancelled: the pending revision was withdrawn/.test(c.status.message ?? '');
    }, { namespace: ns, timeoutMs: 60_000 });
    const d = await live(name);
    assert.equal(image(d), 'example.test/revert:1');
    assert.equal(d?.metadata.annotations?.[PENDING_REVISION], undefined, 'no pending change left');
    const k = await kustomization(name);
    assert.equal(k?.status?.lastAppliedRevision, revisionOf(tree.branch, revert));
    assert.equal(readyOf(k)?.status, 'True');
    const events = await kubectlOk(['-n', ns, 'get', 'events', '--field-selector', `involvedObject.name=${name},involvedObject.kind=Canary`, '-o', 'jsonpath={.items[*].reason}']);
    assert.match(events, /Cancelled/);
  });

  /** The Canary's run-start Events (Started, Restarted), oldest first. */
  async function runStarts(name: string): Promise<string[]> {
    const reasons = await kubectlOk(['-n', ns, 'get', 'events', '--field-selector', `involvedObject.name=${name},involvedObject.kind=Canary`, '-o', 'jsonpath={.items[*].reason}']);
    return reasons.split(' ').filter((r) => r === 'Started' || r === 'Restarted');
  }
  const configMapNamed = (name: string) => get<{ data?: Record<string, string>; metadata: { finalizers?: string[]; deletionTimestamp?: string } }>(ns, 'configmap', name);
  const mountedConfig = async (name: string) => ((await live(name)) as unknown as { spec: { template: { spec: { volumes?: { configMap?: { name: string } }[] } } } } | undefined)?.spec.template.spec.volumes?.[0]?.configMap?.name;

  /** The app with its Deployment mounting ConfigMap `config` (by that name, or as kustomize rewrites it). */
  function appWithConfig(name: string, tag: string, config: string): Record<string, string> {
    const files = appFiles(name, tag, gates, { hold: true });
    const d = JSON.parse(files['deployment.yaml'] as string) as { spec: { template: { spec: Record<string, unknown> } } };
    d.spec.template.spec.volumes = [{ name: 'config', configMap: { name: config } }];
    return { ...files, 'deployment.yaml': JSON.stringify(d) };
  }

  it('one commit of a new image and new data of the ConfigMap it mounts: exactly one run, promoted; live equals git, Flux Ready', async function () {
    this.timeout(60_000);
    const name = 'menu';
    const config = (colour: string) => JSON.stringify({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: `${name}-config` }, data: { 'app.conf': `colour=${colour}` } });
    const { tree } = await gitopsApp(name, { files: { ...appWithConfig(name, '1', `${name}-config`), 'config.yaml': config('blue') } });
    await startNamespaceReconciler();
    await adopted(name);
    await waitFor('the ConfigMap to be tracked', async () => (await get<{ metadata: { labels?: Record<string, string> } }>(ns, 'configmap', `${name}-config`))?.metadata.labels?.['canarygate.dev/managed'] === 'true', { namespace: ns, timeoutMs: 15_000 });

    const commit = await tree.commit(`${name}: image 2 and colour green`, { ...appWithConfig(name, '2', `${name}-config`), 'config.yaml': config('green') });
    const revision = revisionOf(tree.branch, commit);
    await waitFor('Flux to apply the commit', async () => (await kustomization(name))?.status?.lastAppliedRevision === revision, { namespace: ns, timeoutMs: 30_000 });
    await waitFor('Succeeded', async () => (await canary(name))?.status?.phase === 'Succeeded', { namespace: ns, timeoutMs: 40_000 });
    assert.equal(image(await live(name)), `example.test/${name}:2`, 'live image equals git');
    assert.equal((await configMapNamed(`${name}-config`))?.data?.['app.conf'], 'colour=green', 'live data equals git');
    assert.deepEqual(await runStarts(name), ['Started'], 'one run for the one commit: image and data together');
    await waitFor('the Kustomization Ready at the commit', async () => {
      const k = await kustomization(name);
      return readyOf(k)?.status === 'True' && k?.status?.lastAppliedRevision === revision;
    }, { namespace: ns, timeoutMs: 15_000 });
  });

  it('a configMapGenerator rename with prune: the old ConfigMap survives the run (our finalizer) and is gone after the promotion; Flux ends Ready', async function () {
    this.timeout(60_000);
    const name = 'tea';
    const files = (colour: string, tag: string) => ({
      ...appWithConfig(name, tag, `${name}-config`),
      'kustomization.yaml': JSON.stringify({
        apiVersion: 'kustomize.config.k8s.io/v1beta1',
        kind: 'Kustomization',
        resources: ['canary.yaml', 'deployment.yaml', 'service.yaml'],
        configMapGenerator: [{ name: `${name}-config`, literals: [`colour=${colour}`] }],
      }),
    });
    const { tree } = await gitopsApp(name, { files: files('blue', '1') });
    await startNamespaceReconciler();
    await adopted(name);
    const before = await mountedConfig(name);
    assert.match(before ?? '', new RegExp(`^${name}-config-[a-z0-9]+$`), 'kustomize named the ConfigMap with a hash of its data');
    await waitFor('the generated ConfigMap to be tracked', async () => (await get<{ metadata: { labels?: Record<string, string> } }>(ns, 'configmap', before as string))?.metadata.labels?.['canarygate.dev/managed'] === 'true', { namespace: ns, timeoutMs: 15_000 });

    gates.answer(`${name}-approve`, 403); // hold the run while Flux prunes
    const commit = await tree.commit(`${name}: colour green`, files('green', '1'));
    const revision = revisionOf(tree.branch, commit);
    await waitFor('Flux to apply (and prune)', async () => (await kustomization(name))?.status?.lastAppliedRevision === revision, { namespace: ns, timeoutMs: 30_000 });
    await waitFor('the run to wait for promotion', async () => (await canary(name))?.status?.phase === 'WaitingPromotion', { namespace: ns, timeoutMs: 30_000 });
    assert.equal(await mountedConfig(name), before, 'the primary still mounts the old name');
    const old = await configMapNamed(before as string);
    assert.ok(old, 'the old ConfigMap survived the prune');
    assert.ok(old.metadata.finalizers?.includes(IN_USE_FINALIZER), 'kept by canarygate.dev/in-use');
    assert.ok(old.metadata.deletionTimestamp, 'Flux pruned it in the same reconcile as its apply: Terminating, not gone');

    gates.answer(`${name}-approve`, 200);
    await waitFor('Succeeded', async () => (await canary(name))?.status?.phase === 'Succeeded', { namespace: ns, timeoutMs: 30_000 });
    const after = await mountedConfig(name);
    assert.notEqual(after, before, 'the primary runs the new generated name');
    await waitFor('the old ConfigMap to be gone', async () => (await configMapNamed(before as string)) === undefined, { namespace: ns, timeoutMs: 20_000 });
    await waitFor('the Kustomization Ready at the commit', async () => {
      const k = await kustomization(name);
      return readyOf(k)?.status === 'True' && k?.status?.lastAppliedRevision === revision && !(k?.status?.inventory?.entries ?? []).some((e) => e.id === `${ns}_${before}__ConfigMap`);
    }, { namespace: ns, timeoutMs: 20_000 });
  });

  it('Flux prune and force (recreate) leave no lost pending change and no stuck Canary', async function () {
    const name = 'prune';
    const { tree } = await gitopsApp(name, { hold: true, kustomization: { force: true } });
    await startNamespaceReconciler();
    await adopted(name);
    gates.answer(`${name}-approve`, 403);
    const files = appFiles(name, '2', gates, { hold: true });
    await tree.commit(`${name}: image 2, and a ConfigMap`, { ...files, 'extra.yaml': JSON.stringify({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: `${name}-extra` }, data: { a: '1' } }) });
    await waitFor('the run to wait for approval', async () => (await canary(name))?.status?.phase === 'WaitingPromotion', { namespace: ns, timeoutMs: 60_000 });
    const pending = (await live(name))?.metadata.annotations?.[PENDING_REVISION];
    assert.ok(pending);

    // Prune: the ConfigMap leaves git; Flux deletes it; the held change stays.
    const pruned = await tree.commit(`${name}: drop the ConfigMap`, { 'extra.yaml': undefined });
    await waitFor('Flux to prune the ConfigMap', async () => {
      const k = await kustomization(name);
      return k?.status?.lastAppliedRevision === revisionOf(tree.branch, pruned) && (await kubectl(['-n', ns, 'get', 'configmap', `${name}-extra`])).code !== 0;
    }, { namespace: ns, timeoutMs: 30_000 });
    assert.equal((await live(name))?.metadata.annotations?.[PENDING_REVISION], pending, 'the pending change survives a prune');
    assert.equal((await canary(name))?.status?.phase, 'WaitingPromotion');

    // Force: an immutable field changes (the selector); Flux deletes and recreates the Deployment.
    const uid = (await live(name))?.metadata.uid;
    const recreated = await tree.commit(`${name}: new selector, image 3`, appFiles(name, '3', gates, { hold: true, selector: { track: 'v3' } }));
    await waitFor('Flux to recreate the Deployment', async () => {
      const k = await kustomization(name);
      const d = await live(name);
      return k?.status?.lastAppliedRevision === revisionOf(tree.branch, recreated) && d?.metadata.uid !== uid ? d : false;
    }, { namespace: ns, timeoutMs: 60_000 });
    const c = await waitFor('the Canary to leave the withdrawn run', async () => {
      const c = await canary(name);
      return c?.status?.phase !== 'WaitingPromotion' || c.status.pendingRevision !== pending ? c : false;
    }, { namespace: ns, timeoutMs: 60_000 });
    const d = await live(name);
    const bypassed = c.status?.conditions?.find((x) => x.type === 'Bypassed');
    console.log(
      `      [flux] force recreate during a run: Deployment image ${image(d)}, pending ${d?.metadata.annotations?.[PENDING_REVISION] ?? 'none'}; ` +
        `Canary ${c.status?.phase}: ${c.status?.message}; Bypassed=${bypassed?.status ?? 'unset'} ${bypassed?.message ?? ''}`,
    );
    // The recreated Deployment is git's: either its spec went live at once
    // (a create is never held) and the Canary says so, or it is held and a new run analyses it.
    if (d?.metadata.annotations?.[PENDING_REVISION]) {
      await waitFor('a run of the recreated spec', async () => (await canary(name))?.status?.pendingRevision === d.metadata.annotations?.[PENDING_REVISION], { namespace: ns, timeoutMs: 30_000 });
    } else {
      assert.equal(image(d), 'example.test/prune:3');
      await waitFor('the Canary to settle on the live spec', async () => {
        const c = await canary(name);
        return c?.status?.phase === 'Initialized' && c.status.pendingRevision === undefined;
      }, { namespace: ns, timeoutMs: 30_000 });
    }
    assert.equal(readyOf(await kustomization(name))?.status, 'True');
  });

  describe('the webhook down (fail closed)', function () {
    let ownNs: string;
    let webhook: RunningWebhook | undefined;
    let ownReconciler: RunningReconciler | undefined;
    before(async function () {
      // A namespace the suite's shared webhook leaves alone, with a webhook of its own to take down.
      ownNs = await createNamespace('flux-down');
      await kubectlOk(['label', 'namespace', ownNs, `${OWN_WEBHOOK_NAMESPACE_LABEL}=${ownNs}`]);
      webhook = await startWebhook({
        configName: `canary-gate-${ownNs}`,
        logName: `webhook-${ownNs}`,
        namespaceExpressions: [{ key: OWN_WEBHOOK_NAMESPACE_LABEL, operator: 'In', values: [ownNs] }],
      });
    });
    after(async function () {
      this.timeout(120_000);
      if (ownNs) await deleteFluxObjects(ownNs);
      await ownReconciler?.stop();
      await webhook?.stop();
      if (ownNs) await deleteNamespace(ownNs);
    });

    async function pointWebhookAt(url: string) {
      await kubectlOk(['patch', 'mutatingwebhookconfiguration', `canary-gate-${ownNs}`, '--type=json', '-p', JSON.stringify([{ op: 'replace', path: '/webhooks/0/clientConfig/url', value: url }])]);
    }

    it('Flux reports the refusal in its Kustomization status and recovers by itself once the webhook is back', async function () {
      const name = 'down';
      const { tree } = await gitopsApp(name, { namespace: ownNs });
      ownReconciler = await startReconciler({ namespace: ownNs });
      await adopted(name, ownNs);
      const upUrl = `https://127.0.0.1:${webhook?.port}/mutate`;
      // Down: the API server cannot reach the webhook (nothing listens on port 1).
      await pointWebhookAt('https://127.0.0.1:1/mutate');
      const commit = await tree.commit(`${name}: image 2`, appFiles(name, '2', gates));
      const refused = await waitFor('Flux to report the refusal', async () => {
        const k = await kustomization(name, ownNs);
        const ready = readyOf(k);
        return k?.status?.lastAttemptedRevision === revisionOf(tree.branch, commit) && ready?.status === 'False' ? ready : false;
      }, { namespace: ownNs, timeoutMs: 60_000 });
      console.log(`      [flux] webhook down: Ready=False ${refused.reason}: ${refused.message}`);
      assert.match(refused.message ?? '', /canarygate\.dev/, 'the message names canary-gate\'s webhook');
      assert.equal(image(await live(name, ownNs)), 'example.test/down:1', 'nothing was applied behind the webhook\'s back');
      assert.equal((await live(name, ownNs))?.metadata.annotations?.[PENDING_REVISION], undefined);
      // Flux retries every 3 s (Unknown while it tries): never Ready while the webhook is down.
      const seen = new Set<string>();
      for (const t0 = Date.now(); Date.now() - t0 < 4000; await sleep(200)) seen.add(readyOf(await kustomization(name, ownNs))?.status ?? 'none');
      assert.ok(!seen.has('True'), `still refused while the webhook is down (seen: ${[...seen].join(', ')})`);

      // Back: Flux's next retry goes through and the change is held and rolled out.
      await pointWebhookAt(upUrl);
      await waitFor('Flux to recover by itself', async () => {
        const k = await kustomization(name, ownNs);
        return readyOf(k)?.status === 'True' && k?.status?.lastAppliedRevision === revisionOf(tree.branch, commit);
      }, { namespace: ownNs, timeoutMs: 60_000 });
      await waitFor('the change to be promoted', async () => image(await live(name, ownNs)) === 'example.test/down:2', { namespace: ownNs, timeoutMs: 60_000 });
    });
  });
});
