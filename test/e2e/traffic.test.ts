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
import { sleep, waitFor } from './wait.js';

const N = 2000;
const PROMETHEUS = `http://127.0.0.1:${process.env.PROMETHEUS_PORT ?? '39090'}`;
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
    reconciler = await startReconciler({ namespace: ns, extraArgs: ['--prometheus-address', PROMETHEUS] });
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
    // kube-proxy programs the endpoints up to a second after they are ready (until then the
    // Service rejects connections): wait until it routes them before counting anything.
    await waitFor('kube-proxy to route the Service to the Pods', async () => failures(await burst(ip, 8)).length === 0, { namespace: ns, timeoutMs: 30_000 });

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

describe('real errors on the real node (podinfo --random-error)', function () {
  this.timeout(300_000);
  let ns: string;
  let reconciler: RunningReconciler;

  before(async function () {
    await assertRealNodeReady();
    ns = await createNamespace('errors');
    reconciler = await startReconciler({ namespace: ns, extraArgs: ['--prometheus-address', PROMETHEUS] });
  });
  after(async function () {
    await reconciler?.stop();
    if (ns) {
      await kubectl(['delete', 'namespace', ns, '--wait=false']);
      await deleteNamespace(ns);
    }
  });

  it('rolls back a version whose real requests fail: request-success-rate from Prometheus scraping the Pods', async function () {
    const name = 'bad';
    const copy = `${name}-canary`;
    await apply(ns, {
      apiVersion: 'canarygate.dev/v1alpha1',
      kind: 'Canary',
      metadata: { name },
      spec: {
        targetRef: { apiVersion: 'apps/v1', kind: 'Deployment', name },
        service: { port: 80, targetPort: 'http' },
        progressDeadlineSeconds: 120,
        analysis: {
          interval: '2s',
          threshold: 2,
          stepWeight: 20,
          maxWeight: 60,
          metrics: [{ name: 'request-success-rate', interval: '10s', thresholdRange: { min: 99 }, noDataPolicy: 'hold' }],
        },
      },
    });
    await apply(ns, podinfoDeployment(name, { tag: 'a', replicas: 2 }));
    await apply(ns, service(name, { selector: { app: name } }));
    await waitFor('bad adopted with 2 ready Pods', async () => {
      const c = await get<Canary>(ns, 'canary', name);
      const d = await get<Deploy>(ns, 'deployment', name);
      return c?.status?.phase === 'Initialized' && d?.status?.readyReplicas === 2;
    }, { namespace: ns, timeoutMs: 120_000 });
    const ip = await clusterIP(ns, name);
    await waitFor('2 ready endpoints', async () => (await readyEndpoints(ns, name)).length === 2, { namespace: ns, timeoutMs: 30_000 });
    // kube-proxy programs the endpoints up to a second after they are ready (until then the
    // Service rejects connections): wait until it routes them before counting anything.
    await waitFor('kube-proxy to route the Service to the Pods', async () => failures(await burst(ip, 8)).length === 0, { namespace: ns, timeoutMs: 30_000 });

    const prober = new Prober(ip, { rate: 40, concurrency: 4, maxMs: 240_000 }).start();
    const started = Date.now();
    let seen: Answer[] = [];
    try {
      await apply(ns, podinfoDeployment(name, { tag: 'b', replicas: 2, args: ['--random-error'] }));
      await waitFor('Failed', async () => (await get<Canary>(ns, 'canary', name))?.status?.phase === 'Failed', { namespace: ns, timeoutMs: 180_000 });
    } finally {
      seen = await prober.stop();
    }
    const status = (await get<Canary>(ns, 'canary', name))?.status;
    const metric = status?.metrics?.find((m) => m.name === 'request-success-rate');
    assert.match(status?.message ?? '', /request-success-rate/, 'rolled back because of the success rate');
    assert.equal(metric?.result, 'fail');
    assert.ok(metric?.value !== undefined && metric.value < 99, `the success rate Prometheus computed is below 99 (${metric?.value})`);

    // podinfo's random errors (500, 400, 409) carry no body, so they name no Pod;
    // the stable version fails nothing, so every error is the bad version's.
    const errors = seen.filter((a) => a.status !== 200);
    assert.deepEqual(errors.filter((a) => ![500, 400, 409].includes(a.status) || a.pod !== undefined).map((a) => `${a.status} ${a.pod ?? ''} ${a.error ?? ''} ${a.other ?? ''} at +${a.at - started} ms`), [], 'every failure is one of podinfo --random-error');
    const byCanary = seen.filter((a) => a.pod?.startsWith(`${copy}-`)).length + errors.length;
    const fiveXX = errors.filter((a) => a.status >= 500).length;
    console.log(
      `      [errors] requests answered by the bad version: ${byCanary}, errors: ${errors.length}, 5xx: ${fiveXX} ` +
        `(${((100 * (byCanary - fiveXX)) / Math.max(1, byCanary)).toFixed(1)}% non-5xx over the whole run); ` +
        `request-success-rate from Prometheus at the failing check: ${metric?.value?.toFixed(1)}%`,
    );
    assert.ok(fiveXX > 0, 'the bad version really answered 5xx');
    assert.equal(image(await get<Deploy>(ns, 'deployment', name)), podinfoImage('a'), 'the live Deployment never left the stable image');
    await waitFor('the copy at zero Pods', async () => ((await get<Deploy>(ns, 'deployment', copy))?.status?.replicas ?? 0) === 0, { namespace: ns, timeoutMs: 60_000 });
    await waitFor('the Service to have only the primary\'s endpoints', async () => !(await readyEndpoints(ns, name)).some((p) => p.startsWith(`${copy}-`)), { namespace: ns, timeoutMs: 30_000 });
    await sleep(2000); // kube-proxy applies an endpoint change within its 1 s sync period
    const after = await burst(ip, 200);
    assert.deepEqual(failures(after), [], 'after the rollback every request succeeds');
    assert.ok(after.every((a) => a.message === `podinfo ${PODINFO_VERSION}-a`), 'and the stable version answers all of them');
  });
});

function image(d: Deploy | undefined): string | undefined {
  return d?.spec.template.spec.containers[0]?.image;
}

function failures(answers: Answer[]): string[] {
  return answers.filter((a) => a.status !== 200).map((a) => `${a.status} ${a.pod ?? ''} ${a.error ?? ''} ${a.other ?? ''}`.trim());
}
