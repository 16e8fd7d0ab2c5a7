// Real traffic on the real node: podinfo Pods (real containers) behind a
// Service whose ClusterIP kube-proxy load-balances, rolled from one local
// image to another by the real webhook and reconciler with the `kubernetes`
// router. At each step the test sends 2,000 requests through the ClusterIP,
// each on a new connection, and compares the canary copy's share of the
// answers with the effective weight (the copy's share of the ready
// endpoints, which is how the router reports it). A background prober runs
// through the whole rollout: no request may fail.

import assert from 'node:assert/strict';
import type { Canary } from '../../core/api/types.js';
import { weightsFromReadyPods } from '../../reconciler/routers/kubernetes.js';
import { applyAsUser as apply, getObject as get, kubectl } from './cluster.js';
import { GateServer } from './gate-server.js';
import { createNamespace, deleteNamespace } from './namespaces.js';
import { service } from './objects.js';
import { assertRealNodeReady, burst, clusterIP, podinfoDeployment, podinfoImage, PODINFO_VERSION, Prober, readyEndpoints, type Answer } from './real-node.js';
import { startReconciler, type RunningReconciler } from './reconciler-process.js';
import { waitFor } from './wait.js';

const N = 2000;
const PRIMARY_REPLICAS = 4;

interface Deploy {
  spec: { replicas?: number; template: { spec: { containers: { image: string }[] } } };
  status?: { readyReplicas?: number; replicas?: number; updatedReplicas?: number };
}

describe('real traffic on the real node (podinfo, kubernetes router)', function () {
  this.timeout(420_000);
  let ns: string;
  let reconciler: RunningReconciler;
  const gates = new GateServer();

  before(async function () {
    await assertRealNodeReady();
    ns = await createNamespace('traffic');
    await gates.start();
    reconciler = await startReconciler({ namespace: ns });
  });
  after(async function () {
    await reconciler?.stop();
    await gates.stop();
    if (ns) {
      await kubectl(['delete', 'namespace', ns, '--wait=false']);
      await deleteNamespace(ns);
    }
  });

  it(`the canary's share of ${N} real requests follows the effective weight at every step; promotion moves every request to the new image with none failed`, async function () {
    const name = 'podinfo';
    const copy = `${name}-canary`;
    gates.answer('more', 403);
    gates.answer('promote', 403);
    await apply(ns, {
      apiVersion: 'canarygate.dev/v1alpha1',
      kind: 'Canary',
      metadata: { name },
      spec: {
        targetRef: { apiVersion: 'apps/v1', kind: 'Deployment', name },
        provider: 'kubernetes',
        service: { port: 80, targetPort: 'http' },
        progressDeadlineSeconds: 120,
        analysis: {
          interval: '1s',
          threshold: 2,
          stepWeight: 20,
          maxWeight: 60,
          // The test holds each weight until it has measured it.
          webhooks: [
            { name: 'measured', type: 'confirm-traffic-increase', url: gates.url('more') },
            { name: 'measured-last', type: 'confirm-promotion', url: gates.url('promote') },
          ],
        },
      },
    });
    await apply(ns, podinfoDeployment(name, { tag: 'a', replicas: PRIMARY_REPLICAS }));
    await apply(ns, service(name, { selector: { app: name } }));
    await waitFor('podinfo adopted with 4 ready Pods', async () => {
      const c = await get<Canary>(ns, 'canary', name);
      const d = await get<Deploy>(ns, 'deployment', name);
      return c?.status?.phase === 'Initialized' && d?.status?.readyReplicas === PRIMARY_REPLICAS;
    }, { namespace: ns, timeoutMs: 120_000 });
    const ip = await clusterIP(ns, name);
    await waitFor('4 ready endpoints', async () => (await readyEndpoints(ns, name)).length === PRIMARY_REPLICAS, { namespace: ns, timeoutMs: 30_000 });

    const before = await burst(ip, 200);
    assert.deepEqual(failures(before), [], 'the stable version answers every request');
    assert.ok(before.every((a) => a.message === `podinfo ${PODINFO_VERSION}-a`), 'only the stable image answers before the change');

    const prober = new Prober(ip, { rate: 40, concurrency: 4, maxMs: 360_000 }).start();
    try {
      const applied = Date.now();
      await apply(ns, podinfoDeployment(name, { tag: 'b', replicas: PRIMARY_REPLICAS }));

      const rows: string[] = [];
      for (const step of [20, 40, 60]) {
        // The step is in force when the copy's Pods for it are ready and in the Service's endpoints.
        const endpoints = await waitFor(`weight ${step} in force`, async () => {
          const c = await get<Canary>(ns, 'canary', name);
          const d = await get<Deploy>(ns, 'deployment', copy);
          if (c?.status?.canaryWeight !== step || !d?.spec.replicas || d.status?.readyReplicas !== d.spec.replicas) return false;
          const eps = await readyEndpoints(ns, name);
          const canary = eps.filter((e) => e.startsWith(`${copy}-`)).length;
          return canary === d.spec.replicas && eps.length - canary === PRIMARY_REPLICAS ? { canary, primary: eps.length - canary } : false;
        }, { namespace: ns, timeoutMs: 120_000 });
        await new Promise((r) => setTimeout(r, 1500)); // kube-proxy's iptables sync (minSyncPeriod 1 s)
        const effective = weightsFromReadyPods(endpoints.primary, endpoints.canary).canary;
        const answers = await burst(ip, N, { concurrency: 16, deadlineMs: 90_000 });
        assert.equal(answers.length, N, `${N} requests sent`);
        assert.deepEqual(failures(answers), [], `no request fails at weight ${step}`);
        const toCanary = answers.filter((a) => a.pod?.startsWith(`${copy}-`)).length;
        const share = (100 * toCanary) / N;
        assert.ok(answers.filter((a) => a.pod?.startsWith(`${copy}-`)).every((a) => a.message === `podinfo ${PODINFO_VERSION}-b`), 'the copy runs the new image');
        rows.push(`step ${step}%: ${endpoints.canary} canary + ${endpoints.primary} primary ready Pods, effective weight ${effective}%, canary share ${share.toFixed(1)}% of ${N} (diff ${(share - effective).toFixed(1)} points)`);
        assert.ok(Math.abs(share - effective) <= 5, `canary share ${share.toFixed(1)}% vs effective weight ${effective}% at step ${step}`);
        gates.allow(step === 60 ? 'promote' : 'more');
      }
      const promotedAt = Date.now();
      await waitFor('Succeeded', async () => (await get<Canary>(ns, 'canary', name))?.status?.phase === 'Succeeded', { namespace: ns, timeoutMs: 180_000 });
      await waitFor('the copy at zero Pods', async () => {
        const d = await get<Deploy>(ns, 'deployment', copy);
        return (d?.status?.replicas ?? 0) === 0;
      }, { namespace: ns, timeoutMs: 60_000 });
      await new Promise((r) => setTimeout(r, 3000)); // traffic after the copy's Pods are gone
      const seen = await prober.stop();

      const firstNew = seen.find((a) => a.at >= applied && a.message?.endsWith('-b'));
      const old = seen.filter((a) => a.message?.endsWith('-a'));
      const lastOld = old[old.length - 1];
      assert.ok(firstNew, 'the new version answered');
      const tail = seen.filter((a) => a.at > (lastOld?.at ?? 0));
      assert.ok(tail.length > 0 && tail.every((a) => a.message?.endsWith('-b')), 'after the last answer of the old version, only the new one answers');
      assert.equal(image(await get<Deploy>(ns, 'deployment', name)), podinfoImage('b'));
      const failed = failures(seen);
      console.log(
        [
          `      [traffic] ${rows.join('\n      [traffic] ')}`,
          `      [traffic] kubectl apply -> first request answered by the new version: ${((firstNew.at - applied) / 1000).toFixed(1)} s`,
          `      [traffic] promotion (confirm-promotion opened) -> 100% of requests on the new version: ${(((lastOld?.at ?? promotedAt) - promotedAt) / 1000).toFixed(1)} s`,
          `      [traffic] background requests during the rollout: ${seen.length}, failed: ${failed.length}`,
        ].join('\n'),
      );
      assert.deepEqual(failed, [], 'no request failed during the rollout, the promotion or the copy scaling to zero');
    } finally {
      await prober.stop();
    }
  });
});

function image(d: Deploy | undefined): string | undefined {
  return d?.spec.template.spec.containers[0]?.image;
}

function failures(answers: Answer[]): string[] {
  return answers.filter((a) => a.status !== 200).map((a) => `${a.status} ${a.pod ?? ''} ${a.error ?? ''}`.trim());
}
