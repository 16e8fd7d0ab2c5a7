// One change through stages on real control planes: `prod` starts a change
// only once `staging` promoted the same change (by its images, whatever the
// overlay changed), a rollback in `staging` blocks it, and a change promoted
// by canary-gate in a second local control plane is read through a
// kubeconfig Secret before it starts here; while that API server is down,
// the downstream stage waits.

import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import type { Canary } from '../../core/api/types.js';
import { cliPath, kubeconfigPath, kubectlOk, getObject as get, applyAsUser as apply, repoRoot, run } from './cluster.js';
import { GateServer } from './gate-server.js';
import { createNamespace, deleteNamespace } from './namespaces.js';
import { deployment } from './objects.js';
import { startReconciler, type RunningReconciler } from './reconciler-process.js';
import { RECONCILER_USER, reconcilerRbacForUser, startWebhook, type RunningWebhook } from './webhook-process.js';
import { waitFor } from './wait.js';

type Deploy = { spec: { template: { spec: { containers: Array<{ image: string; env?: Array<{ name: string; value: string }> }> } } } };
const image = (d: Deploy | undefined) => d?.spec.template.spec.containers[0]?.image;

/** A Deployment as a per-stage overlay would render it: the same image, a stage-specific env var. */
function staged(name: string, tag: string, stage: string) {
  const d = deployment(name, { image: `example.test/web:${tag}`, replicas: 1 });
  (d.spec.template.spec.containers[0] as { env?: unknown }).env = [{ name: 'STAGE', value: stage }];
  return d;
}

function canary(name: string, spec: Record<string, unknown>) {
  return {
    apiVersion: 'canarygate.dev/v1alpha1',
    kind: 'Canary',
    metadata: { name },
    spec: { targetRef: { apiVersion: 'apps/v1', kind: 'Deployment', name }, service: { port: 80 }, progressDeadlineSeconds: 120, ...spec },
  };
}

const upstreamReady = (c: Canary | undefined) => c?.status?.conditions?.find((x) => x.type === 'UpstreamReady');

/** How a GitOps tool applies each stage's manifests: server-side, taking over fields (the promotion wrote the template). */
const sync = (ns: string, obj: unknown) => kubectlOk(['-n', ns, 'apply', '--server-side', '--force-conflicts', '--field-manager=gitops', '-f', '-'], { input: JSON.stringify(obj) });

describe('stages on real control planes', function () {
  this.timeout(300_000);

  describe('two namespaces', function () {
    let staging: string;
    let prod: string;
    const reconcilers: RunningReconciler[] = [];
    const gates = new GateServer();

    before(async function () {
      await gates.start();
      staging = await createNamespace('staging');
      prod = await createNamespace('prod');
      reconcilers.push(await startReconciler({ namespace: staging }), await startReconciler({ namespace: prod }));
    });
    after(async function () {
      await Promise.all(reconcilers.map((r) => r.stop()));
      await gates.stop();
      await deleteNamespace(staging);
      await deleteNamespace(prod);
    });

    it('prod starts a change only after staging promoted it (same images, another overlay); a rollback in staging blocks it', async function () {
      const analysis = { interval: '1s', stepWeight: 50, maxWeight: 50, webhooks: [{ name: 'smoke', type: 'rollout', url: gates.url('smoke') }] };
      await apply(staging, canary('web', { analysis }));
      await apply(prod, canary('web', { analysis: { interval: '1s', stepWeight: 50, maxWeight: 50 }, promotion: { after: [{ namespace: staging, name: 'web' }] } }));
      await apply(staging, staged('web', '1', 'staging'));
      await apply(prod, staged('web', '1', 'prod'));
      for (const ns of [staging, prod]) await waitFor(`${ns} Initialized`, async () => (await get<Canary>(ns, 'canary', 'web'))?.status?.phase === 'Initialized', { namespace: ns, timeoutMs: 60_000 });

      // The change reaches prod first: it waits, and says for what.
      await apply(prod, staged('web', '2', 'prod'));
      const waiting = await waitFor('prod waiting for staging', async () => {
        const c = await get<Canary>(prod, 'canary', 'web');
        return c?.status?.phase === 'Waiting' ? c : undefined;
      }, { namespace: prod, timeoutMs: 30_000 });
      assert.equal(upstreamReady(waiting)?.reason, 'UpstreamPending');
      assert.match(upstreamReady(waiting)?.message ?? '', new RegExp(`waiting for ${staging}/web to promote images:[0-9a-f]{12}`));
      assert.match(waiting.status?.changeIdentity ?? '', /^images:[0-9a-f]{12}$/);
      await new Promise((r) => setTimeout(r, 3000));
      assert.equal((await get<Canary>(prod, 'canary', 'web'))?.status?.phase, 'Waiting', 'still waiting: staging has not even seen the change');
      assert.equal(image(await get<Deploy>(prod, 'deployment', 'web')), 'example.test/web:1');

      // Staging promotes it; then prod runs it.
      await apply(staging, staged('web', '2', 'staging'));
      await waitFor('staging Succeeded', async () => (await get<Canary>(staging, 'canary', 'web'))?.status?.lastPromotion?.revision !== undefined && (await get<Canary>(staging, 'canary', 'web'))?.status?.phase === 'Succeeded', { namespace: staging, timeoutMs: 90_000 });
      const upstream = (await get<Canary>(staging, 'canary', 'web'))?.status;
      assert.equal(`images:${upstream?.lastPromotion?.images}`, waiting.status?.changeIdentity, 'the overlays differ, the images are the same change');
      await waitFor('prod promoted', async () => image(await get<Deploy>(prod, 'deployment', 'web')) === 'example.test/web:2', { namespace: prod, timeoutMs: 90_000 });
      // The template is written first; the run ends (Succeeded) once the primary has rolled it out.
      await waitFor('prod Succeeded', async () => (await get<Canary>(prod, 'canary', 'web'))?.status?.phase === 'Succeeded', { namespace: prod, timeoutMs: 90_000 });
      const p = await get<Canary>(prod, 'canary', 'web');
      assert.ok(Date.parse(p?.status?.progressStartedAt ?? '') >= Date.parse(upstream?.lastPromotion?.at ?? ''), 'prod started after staging promoted');
      assert.equal(upstreamReady(p)?.status, 'True');
      // One change across the stages, as a person asks for it.
      const id = waiting.status?.changeIdentity ?? '';
      const view = await run(process.execPath, [cliPath, 'status', '-A', '--revision', id], { env: { ...process.env, KUBECONFIG: kubeconfigPath } });
      assert.equal(view.code, 0, view.stderr);
      for (const ns of [staging, prod]) assert.match(view.stdout, new RegExp(`${ns}\\s+web\\s+${id}\\s+promoted`), view.stdout);

      // A change staging rolls back never starts in prod.
      gates.answer('smoke', 500);
      await sync(prod, staged('web', '3', 'prod'));
      await sync(staging, staged('web', '3', 'staging'));
      await waitFor('staging Failed', async () => (await get<Canary>(staging, 'canary', 'web'))?.status?.phase === 'Failed', { namespace: staging, timeoutMs: 90_000 });
      const blocked = await waitFor('prod blocked', async () => {
        const c = await get<Canary>(prod, 'canary', 'web');
        return upstreamReady(c)?.reason === 'UpstreamFailed' ? c : undefined;
      }, { namespace: prod, timeoutMs: 30_000 });
      assert.match(upstreamReady(blocked)?.message ?? '', /was rolled back in .*: it waits for a newer change to succeed there/);
      assert.equal(blocked.status?.phase, 'Waiting');
      assert.equal(image(await get<Deploy>(prod, 'deployment', 'web')), 'example.test/web:2', 'prod keeps its promoted version');
    });
  });

  describe('another cluster', function () {
    const dir = path.join(repoRoot, '.cluster-upstream');
    const env = {
      CANARY_GATE_CLUSTER_DIR: dir,
      REAL_NODE: '0',
      ETCD_PORT: '33379',
      ETCD_PEER_PORT: '33380',
      APISERVER_PORT: '37443',
      CONTROLLER_MANAGER_PORT: '37257',
      SCHEDULER_PORT: '37259',
      KWOK_PORT: '37247',
      PROMETHEUS_PORT: '40090',
      DEMO_GATE_PORT: '40091',
    };
    const remoteKubeconfig = path.join(dir, 'kubeconfig');
    /** kubectl for the upstream control plane: rejects with its stderr. */
    const remote = async (args: string[], opts: { input?: string } = {}): Promise<string> => {
      const r = await run(path.join(dir, 'bin', 'kubectl'), ['--kubeconfig', remoteKubeconfig, ...args], opts);
      if (r.code !== 0) throw new Error(`kubectl (upstream cluster) ${args.join(' ')} failed: ${r.stderr.trim()}`);
      return r.stdout;
    };
    const remoteGet = async <T>(ns: string, kind: string, name: string): Promise<T | undefined> => {
      const r = await run(path.join(dir, 'bin', 'kubectl'), ['--kubeconfig', remoteKubeconfig, '-n', ns, 'get', kind, name, '-o', 'json']);
      return r.code === 0 ? (JSON.parse(r.stdout) as T) : undefined;
    };
    const remoteApply = (ns: string, obj: unknown) => remote(['-n', ns, 'apply', '--server-side', '--force-conflicts', '--field-manager=gitops', '-f', '-'], { input: JSON.stringify(obj) });
    let prod: string;
    let reconciler: RunningReconciler;
    let upstreamReconciler: RunningReconciler | undefined;
    let upstreamWebhook: RunningWebhook | undefined;

    before(async function () {
      const r = await run(path.join(repoRoot, 'test/cluster/up.sh'), [], { env: { ...process.env, ...env }, timeoutMs: 180_000 });
      if (r.code !== 0) throw new Error(`the second control plane did not start: ${r.stderr.slice(-2000)}`);
      // canary-gate in the upstream cluster too: CRDs, the reconciler's roles, a webhook and a reconciler.
      await remote(['apply', '--server-side', '--force-conflicts', '-k', path.join(repoRoot, 'deploy/crds')]);
      await remote(['wait', '--for=condition=Established', '--timeout=60s', 'crd', '-l', 'app.kubernetes.io/part-of=canary-gate']);
      await remote(['apply', '--server-side', '--force-conflicts', '-f', '-'], { input: JSON.stringify({ apiVersion: 'v1', kind: 'List', items: reconcilerRbacForUser(RECONCILER_USER) }) });
      await remote(['apply', '-f', '-'], { input: JSON.stringify({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'staging', labels: { 'canarygate.dev/e2e': 'true', 'canarygate.dev/enabled': 'true' } } }) });
      upstreamWebhook = await startWebhook({ configName: 'canary-gate-upstream', logName: 'webhook-upstream', cluster: { dir, kubectl: remote } });
      upstreamReconciler = await startReconciler({ namespace: 'staging', identity: 'upstream', clusterDir: dir });
      prod = await createNamespace('prod-remote');
      reconciler = await startReconciler({ namespace: prod });
    });
    after(async function () {
      await reconciler?.stop();
      await upstreamReconciler?.stop();
      await upstreamWebhook?.stop();
      if (prod) await deleteNamespace(prod);
      await run(path.join(repoRoot, 'test/cluster/down.sh'), [], { env: { ...process.env, ...env } });
    });

    it('walks a change from a staging cluster to this one, through a kubeconfig Secret; while that API server is down the stage waits', async function () {
      const analysis = { interval: '1s', stepWeight: 50, maxWeight: 50 };
      await remoteApply('staging', canary('web', { analysis }));
      await remoteApply('staging', staged('web', '4', 'staging'));
      const kubeconfig = await readFile(remoteKubeconfig, 'utf8');
      await kubectlOk(['-n', prod, 'create', 'secret', 'generic', 'staging-cluster', `--from-literal=kubeconfig=${kubeconfig}`]);
      await apply(prod, canary('web', { analysis, promotion: { after: [{ namespace: 'staging', name: 'web', soak: '5s', kubeconfigSecretRef: { name: 'staging-cluster', key: 'kubeconfig' } }] } }));
      await apply(prod, staged('web', '4', 'prod'));
      await waitFor('staging Initialized (upstream cluster)', async () => (await remoteGet<Canary>('staging', 'canary', 'web'))?.status?.phase === 'Initialized', { namespace: prod, timeoutMs: 60_000 });
      await waitFor('prod Initialized', async () => (await get<Canary>(prod, 'canary', 'web'))?.status?.phase === 'Initialized', { namespace: prod, timeoutMs: 60_000 });

      await apply(prod, staged('web', '5', 'prod'));
      await waitFor('prod waiting for the other cluster', async () => upstreamReady(await get<Canary>(prod, 'canary', 'web'))?.reason === 'UpstreamPending', { namespace: prod, timeoutMs: 30_000 });
      await remoteApply('staging', staged('web', '5', 'staging'));
      await waitFor('staging promoted web:5 in its cluster', async () => image(await remoteGet<Deploy>('staging', 'deployment', 'web')) === 'example.test/web:5', { namespace: prod, timeoutMs: 90_000 });
      await waitFor('prod promoted web:5', async () => image(await get<Deploy>(prod, 'deployment', 'web')) === 'example.test/web:5', { namespace: prod, timeoutMs: 90_000 });
      const upstream = (await remoteGet<Canary>('staging', 'canary', 'web'))?.status?.lastPromotion;
      const started = Date.parse((await get<Canary>(prod, 'canary', 'web'))?.status?.progressStartedAt ?? '');
      assert.ok(started >= Date.parse(upstream?.at ?? '') + 5000, `prod started after staging promoted, and the 5 s soak (${upstream?.at} -> ${new Date(started).toISOString()})`);

      // The upstream cluster's API server goes away; the next change waits instead of guessing.
      await upstreamReconciler?.stop();
      await upstreamWebhook?.stop();
      upstreamReconciler = undefined;
      upstreamWebhook = undefined;
      await run(path.join(repoRoot, 'test/cluster/down.sh'), [], { env: { ...process.env, ...env } });
      await sync(prod, staged('web', '6', 'prod'));
      const unreachable = await waitFor('UpstreamUnreachable', async () => {
        const c = await get<Canary>(prod, 'canary', 'web');
        return upstreamReady(c)?.reason === 'UpstreamUnreachable' ? c : undefined;
      }, { namespace: prod, timeoutMs: 60_000 });
      assert.match(upstreamReady(unreachable)?.message ?? '', /cannot read upstream Canary staging\/web \(cluster of Secret/);
      await new Promise((r) => setTimeout(r, 3000));
      assert.equal(image(await get<Deploy>(prod, 'deployment', 'web')), 'example.test/web:5', 'nothing proceeds on missing information');
      assert.equal((await get<Canary>(prod, 'canary', 'web'))?.status?.phase, 'Waiting');
    });
  });
});
