// The reconciler killed at random instants, and a leader that dies: every
// rollout must still end correctly, because all state lives in the API.

import assert from 'node:assert/strict';
import type { Canary } from '../../core/api/types.js';
import { kubectl, kubectlOk, getObject as get, applyAsUser as apply } from './cluster.js';
import { GateServer } from './gate-server.js';
import { createNamespace, deleteNamespace } from './namespaces.js';
import { deployment, service } from './objects.js';
import { reconcilerLeaderElectionRole } from '../../deploy/manifests.js';
import { startReconciler, type RunningReconciler } from './reconciler-process.js';
import { RECONCILER_USER } from './webhook-process.js';
import { sleep, waitFor } from './wait.js';
import { Rng } from '../fixtures/rng.js';

interface Deploy {
  spec: { template: { spec: { containers: { image: string }[] } } };
}
const image = (d: Deploy | undefined) => d?.spec.template.spec.containers[0]?.image;
function canary(name: string, analysis: Record<string, unknown>) {
  return {
    apiVersion: 'canarygate.dev/v1alpha1',
    kind: 'Canary',
    metadata: { name },
    spec: { targetRef: { apiVersion: 'apps/v1', kind: 'Deployment', name }, service: { port: 80 }, progressDeadlineSeconds: 120, analysis },
  };
}

async function setUp(ns: string, name: string, analysis: Record<string, unknown>) {
  await apply(ns, canary(name, analysis));
  await apply(ns, deployment(name, { image: `example.test/${name}:1`, replicas: 2 }));
  await apply(ns, service(name, { selector: { app: name } }));
}

describe('resilience of the reconciler', function () {
  const gates = new GateServer();
  before(async () => {
    await gates.start();
  });
  after(async () => gates.stop());

  it('finishes every rollout correctly though the reconciler is killed with SIGKILL at random instants', async function () {
    const seed = Number(process.env.RESILIENCE_SEED ?? Date.now() % 100000);
    const rng = new Rng(seed);
    const random = () => rng.next();
    const ns = await createNamespace('kill');
    let reconciler: RunningReconciler | undefined;
    try {
      gates.answer('kill-bad', 500);
      const good = ['good-a', 'good-b'];
      const bad = ['bad-a'];
      for (const name of good) await setUp(ns, name, { interval: '1s', threshold: 2, stepWeight: 10, maxWeight: 40, webhooks: [{ name: 'ok', url: gates.url('kill-good') }] });
      for (const name of bad) await setUp(ns, name, { interval: '1s', threshold: 3, stepWeight: 10, maxWeight: 40, webhooks: [{ name: 'fails', url: gates.url('kill-bad') }] });
      reconciler = await startReconciler({ namespace: ns, identity: `kill-${ns}` });
      await waitFor('every Canary to be Initialized', async () => {
        for (const n of [...good, ...bad]) if ((await get<Canary>(ns, 'canary', n))?.status?.phase !== 'Initialized') return false;
        return true;
      }, { namespace: ns, timeoutMs: 30_000 });
      for (const n of [...good, ...bad]) await apply(ns, deployment(n, { image: `example.test/${n}:2`, replicas: 2 }));

      const kills = 4;
      for (let i = 0; i < kills; i++) {
        await sleep(300 + Math.floor(random() * 2500));
        await reconciler.kill();
        await sleep(Math.floor(random() * 500));
        reconciler = await startReconciler({ namespace: ns, identity: `kill-${ns}` });
      }
      await waitFor('every rollout to end', async () => {
        for (const n of good) if ((await get<Canary>(ns, 'canary', n))?.status?.phase !== 'Succeeded') return false;
        for (const n of bad) if ((await get<Canary>(ns, 'canary', n))?.status?.phase !== 'Failed') return false;
        return true;
      }, { namespace: ns, timeoutMs: 90_000 });
      for (const n of good) assert.equal(image(await get<Deploy>(ns, 'deployment', n)), `example.test/${n}:2`, `${n} promoted (seed ${seed})`);
      for (const n of bad) assert.equal(image(await get<Deploy>(ns, 'deployment', n)), `example.test/${n}:1`, `${n} never promoted (seed ${seed})`);
      for (const n of [...good, ...bad]) {
        await waitFor(`${n}-canary scaled to zero`, async () => (await get<{ spec: { replicas: number } }>(ns, 'deployment', `${n}-canary`))?.spec.replicas === 0, { namespace: ns });
      }
    } finally {
      await reconciler?.stop();
      await deleteNamespace(ns);
    }
  });

  it('hands over to the other replica within two lease durations when the leader dies, and the rollout completes', async function () {
    const ns = await createNamespace('leader');
    // The shipped lease Role, in the test's own namespace so parallel runs never share a Lease.
    const leaseName = 'canary-gate-reconciler';
    const role = reconcilerLeaderElectionRole();
    await kubectlOk(['apply', '-f', '-'], {
      input: JSON.stringify({
        apiVersion: 'v1',
        kind: 'List',
        items: [
          { ...role, metadata: { ...role.metadata, namespace: ns } },
          {
            apiVersion: 'rbac.authorization.k8s.io/v1',
            kind: 'RoleBinding',
            metadata: { name: 'reconciler-leases', namespace: ns },
            roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: role.metadata?.name },
            subjects: [{ apiGroup: 'rbac.authorization.k8s.io', kind: 'User', name: RECONCILER_USER }],
          },
        ],
      }),
    });
    const replicas: RunningReconciler[] = [];
    try {
      await setUp(ns, 'web', { interval: '1s', threshold: 2, stepWeight: 10, maxWeight: 50 });
      for (const id of ['a', 'b']) replicas.push(await startReconciler({ namespace: ns, identity: `${ns}-${id}`, leaderElect: true, leaseName, leaseNamespace: ns, leaseDurationSeconds: 2 }));
      const holder = async () => (await kubectl(['-n', ns, 'get', 'lease', leaseName, '-o', 'jsonpath={.spec.holderIdentity}'])).stdout;
      const first = await waitFor('a leader', async () => (await holder()) || false, { timeoutMs: 20_000 });
      await waitFor('Initialized', async () => (await get<Canary>(ns, 'canary', 'web'))?.status?.phase === 'Initialized', { namespace: ns, timeoutMs: 30_000 });
      await apply(ns, deployment('web', { image: 'example.test/web:2', replicas: 2 }));
      await waitFor('the rollout to be under way', async () => ((await get<Canary>(ns, 'canary', 'web'))?.status?.canaryWeight ?? 0) >= 20, { namespace: ns, timeoutMs: 30_000 });

      const leader = replicas.find((r) => r.identity === first);
      assert.ok(leader, `the leader ${first} is one of ours`);
      const killedAt = Date.now();
      await leader.kill();
      const second = await waitFor('a new leader', async () => {
        const h = await holder();
        return h && h !== first ? h : false;
      }, { timeoutMs: 10_000, intervalMs: 100 });
      const takeover = Date.now() - killedAt;
      assert.ok(takeover <= 4000 + 500, `takeover took ${takeover} ms, more than two lease durations`);
      console.log(`      leader ${first} killed; ${second} took over in ${takeover} ms`);

      await waitFor('Succeeded', async () => (await get<Canary>(ns, 'canary', 'web'))?.status?.phase === 'Succeeded', { namespace: ns, timeoutMs: 60_000 });
      assert.equal(image(await get<Deploy>(ns, 'deployment', 'web')), 'example.test/web:2');
    } finally {
      for (const r of replicas) await r.stop();
      await deleteNamespace(ns);
    }
  });
});
