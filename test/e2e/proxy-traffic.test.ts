// Real traffic through a real proxy: a Traefik v3 process on this machine
// (test/cluster/traefik-up.sh) reads the objects the traefik and gatewayapi
// routers write from the local API server and proxies to podinfo Pods on the
// real node. The real webhook and reconciler roll podinfo from one local
// image to another; the test sends real requests to Traefik's entry point
// and counts who answers:
//
// - weights (traefik, gatewayapi): at each step the canary's share of 2,000
//   requests is within 5 points of the weight; after the promotion every
//   request reaches the new version, and a background prober sees no
//   failed request throughout;
// - A/B (gatewayapi): requests with the header all reach the canary, others none;
// - mirroring (traefik): clients see only the primary while the canary's
//   Pods count copies of the requests (podinfo's own /metrics);
// - sticky sessions (traefik): a client keeps the side it first got.
//
// Every load loop is bounded in count and time; traffic goes only to
// 127.0.0.1 (Traefik) and to the real node's Pods (their /metrics).

import assert from 'node:assert/strict';
import { mkdir, rename, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { Canary } from '../../core/api/types.js';
import { createProvider } from '../../reconciler/analysis/metrics/provider.js';
import { renderQuery } from '../../reconciler/analysis/metrics/template.js';
import { TRAEFIK_BUILTIN_METRICS } from '../../reconciler/routers/traefik.js';
import { applyAsUser as apply, clusterDir, getObject as get, kubectl, repoRoot, run } from './cluster.js';
import { GateServer } from './gate-server.js';
import { createNamespace, deleteNamespace } from './namespaces.js';
import { service } from './objects.js';
import { assertRealNodeReady, burstVia, getInfoVia, podinfoDeployment, podinfoImage, PODINFO_VERSION, ProberVia, type Answer, type Via } from './real-node.js';
import { startReconciler, type RunningReconciler } from './reconciler-process.js';
import { sleep, waitFor } from './wait.js';

const N = 2000;
const PRIMARY_REPLICAS = 2;
const OLD = `podinfo ${PODINFO_VERSION}-a`;
const NEW = `podinfo ${PODINFO_VERSION}-b`;
const traefikUp = path.join(repoRoot, 'test/cluster/traefik-up.sh');
const PROMETHEUS = `http://127.0.0.1:${process.env.PROMETHEUS_PORT ?? '39090'}`;
/** Prometheus scrapes Traefik's own /metrics (file_sd, as test/e2e/prometheus.test.ts does for its exporter). */
const traefikTargets = path.join(clusterDir, 'prometheus', 'targets', `traefik-${process.pid}.json`);

interface Deploy {
  spec: { replicas?: number; template: { spec: { containers: { image: string }[] } } };
  status?: { readyReplicas?: number; replicas?: number };
}

/** A service as Traefik's API shows what it has in force. */
interface TraefikApiService {
  name: string;
  weighted?: { services?: Array<{ name: string; weight?: number }>; sticky?: { cookie?: { name?: string } } };
  mirroring?: { service?: string; mirrors?: Array<{ name: string; percent?: number }> };
}

let traefikPort = 0;
let adminPort = 0;

async function traefikServices(): Promise<TraefikApiService[]> {
  const r = await fetch(`http://127.0.0.1:${adminPort}/api/http/services?per_page=1000`).catch(() => undefined);
  return r?.ok ? ((await r.json()) as TraefikApiService[]) : [];
}

/**
 * The weights Traefik has in force between `<ns>-<apex>-primary-*` and
 * `<ns>-<apex>-canary-*` (its names of the Kubernetes Services, for both
 * providers), in the weighted service that holds the primary; undefined
 * while there is none.
 */
async function weightsInTraefik(ns: string, apex: string): Promise<{ primary: number; canary: number; sticky?: string } | undefined> {
  const isPrimary = (n: string) => n.startsWith(`${ns}-${apex}-primary-`);
  const isCanary = (n: string) => n.startsWith(`${ns}-${apex}-canary-`);
  for (const s of await traefikServices()) {
    const children = s.weighted?.services ?? [];
    if (!children.some((c) => isPrimary(c.name))) continue;
    const sum = (f: (n: string) => boolean) => children.filter((c) => f(c.name)).reduce((a, c) => a + (c.weight ?? 1), 0);
    const p = sum(isPrimary);
    const c = sum(isCanary);
    const out: { primary: number; canary: number; sticky?: string } = { primary: Math.round((100 * p) / (p + c)), canary: Math.round((100 * c) / (p + c)) };
    if (s.weighted?.sticky?.cookie?.name) out.sticky = s.weighted.sticky.cookie.name;
    return out;
  }
  return undefined;
}

function failures(answers: Answer[]): string[] {
  return answers.filter((a) => a.status !== 200).map((a) => `${a.status} ${a.pod ?? ''} ${a.error ?? ''}`.trim());
}

function image(d: Deploy | undefined): string | undefined {
  return d?.spec.template.spec.containers[0]?.image;
}

/** Requests to /api/info that podinfo counted, summed over the Pods of `prefix` (their own /metrics on the real node). */
async function podinfoRequests(ns: string, prefix: string): Promise<number> {
  const r = await kubectl(['-n', ns, 'get', 'pods', '-o', 'json']);
  const pods = (JSON.parse(r.stdout) as { items: Array<{ metadata: { name: string }; status: { podIP?: string; phase?: string } }> }).items.filter(
    (p) => p.metadata.name.startsWith(`${prefix}-`) && p.status.phase === 'Running' && p.status.podIP,
  );
  let total = 0;
  for (const p of pods) {
    const res = await fetch(`http://${p.status.podIP}:9797/metrics`, { signal: AbortSignal.timeout(3000) });
    for (const line of (await res.text()).split('\n')) {
      // http_request_duration_seconds_count{method="GET",path="api_info",status="200"} 42 (podinfo writes the route with underscores)
      const m = /^http_request_duration_seconds_count\{([^}]*)\} ([0-9.e+]+)$/.exec(line);
      if (m && /path="api_info"/.test(m[1]!)) total += Number(m[2]);
    }
  }
  return total;
}

describe('real traffic through a real Traefik v3 (traefik and gatewayapi routers)', function () {
  this.timeout(600_000);
  let ns: string;
  let reconciler: RunningReconciler;
  const gates = new GateServer();

  before(async function () {
    await assertRealNodeReady();
    const up = await run(traefikUp, [], { timeoutMs: 300_000 });
    if (up.code !== 0) throw new Error(`test/cluster/traefik-up.sh failed: ${up.stderr.trim()} ${up.stdout.trim()}`);
    [traefikPort, adminPort] = up.stdout.trim().split(/\s+/).map(Number) as [number, number];
    ns = await createNamespace('proxy');
    await mkdir(path.dirname(traefikTargets), { recursive: true });
    await writeFile(`${traefikTargets}.tmp`, JSON.stringify([{ targets: [`127.0.0.1:${adminPort}`], labels: { job: 'traefik' } }]));
    await rename(`${traefikTargets}.tmp`, traefikTargets);
    await gates.start();
    reconciler = await startReconciler({ namespace: ns });
    // The Gateway Traefik serves on its entry point (GatewayClass from traefik-up.sh).
    await apply(ns, {
      apiVersion: 'gateway.networking.k8s.io/v1',
      kind: 'Gateway',
      metadata: { name: 'traefik' },
      spec: { gatewayClassName: 'canary-gate-traefik', listeners: [{ name: 'web', protocol: 'HTTP', port: traefikPort }] },
    });
  });
  after(async function () {
    await reconciler?.stop();
    await gates.stop();
    if (ns) {
      await kubectl(['delete', 'namespace', ns, '--wait=false']);
      await deleteNamespace(ns);
    }
    await rm(traefikTargets, { force: true });
    await run(traefikUp, ['--down']);
  });

  /** podinfo `name` (image a) behind Service `name` and a Canary, adopted; returns how to reach it through Traefik. */
  async function adopt(name: string, canarySpec: Record<string, unknown>, route: 'ingressroute' | 'gateway'): Promise<Via> {
    const host = `${name}.test`;
    await apply(ns, { apiVersion: 'canarygate.dev/v1alpha1', kind: 'Canary', metadata: { name }, spec: { targetRef: { apiVersion: 'apps/v1', kind: 'Deployment', name }, progressDeadlineSeconds: 180, ...canarySpec } });
    await apply(ns, podinfoDeployment(name, { tag: 'a', replicas: PRIMARY_REPLICAS }));
    await apply(ns, service(name, { selector: { app: name } }));
    if (route === 'ingressroute') {
      // The user's own route to the TraefikService the traefik router keeps.
      await apply(ns, {
        apiVersion: 'traefik.io/v1alpha1',
        kind: 'IngressRoute',
        metadata: { name },
        spec: { entryPoints: ['web'], routes: [{ kind: 'Rule', match: `Host(\`${host}\`)`, services: [{ kind: 'TraefikService', name }] }] },
      });
    }
    await waitFor(`${name} adopted with ${PRIMARY_REPLICAS} ready Pods`, async () => {
      const c = await get<Canary>(ns, 'canary', name);
      const d = await get<Deploy>(ns, 'deployment', name);
      return c?.status?.phase === 'Initialized' && d?.status?.readyReplicas === PRIMARY_REPLICAS;
    }, { namespace: ns, timeoutMs: 120_000 });
    const via: Via = { host: '127.0.0.1', port: traefikPort, hostHeader: host };
    await waitFor(`Traefik to route ${host} to the primary`, async () => {
      const answers = await burstVia(via, 8, { concurrency: 4, deadlineMs: 10_000 });
      return answers.length === 8 && answers.every((a) => a.status === 200 && a.message === OLD);
    }, { namespace: ns, timeoutMs: 60_000 });
    return via;
  }

  /**
   * The traefik router's built-in metrics, rendered for Canary `name` as the
   * reconciler renders them, on the series Prometheus scraped from this
   * Traefik: every canary request succeeded, and its p99 is a real latency.
   */
  async function builtinMetrics(name: string): Promise<string> {
    const prom = createProvider({ type: 'prometheus', address: PROMETHEUS }, undefined, { timeoutMs: 5000 });
    const vars = { name, namespace: ns, target: name, service: name, interval: '30s', variables: {} };
    const success = renderQuery(TRAEFIK_BUILTIN_METRICS['request-success-rate']!, vars);
    const duration = renderQuery(TRAEFIK_BUILTIN_METRICS['request-duration']!, vars);
    const rate = await waitFor('request-success-rate from Traefik\'s metrics', async () => (await prom.query(success)) ?? false, { namespace: ns, timeoutMs: 30_000, intervalMs: 500 });
    const p99 = await waitFor('request-duration from Traefik\'s metrics', async () => (await prom.query(duration)) ?? false, { namespace: ns, timeoutMs: 30_000, intervalMs: 500 });
    assert.equal(rate, 100, 'no canary request failed');
    assert.ok(p99 > 0 && p99 < 1000, `p99 of the canary's requests through Traefik: ${p99} ms`);
    return `traefik built-in metrics from Prometheus scraping Traefik: request-success-rate ${rate}%, request-duration p99 ${p99.toFixed(1)} ms`;
  }

  for (const provider of ['traefik', 'gatewayapi'] as const) {
    it(`${provider}: the canary's share of ${N} real requests through Traefik follows each weight step; promotion moves every request to the new image with none failed`, async function () {
      const name = provider === 'traefik' ? 'tweights' : 'gweights';
      const copy = `${name}-canary`;
      const more = `${name}-more`;
      const promote = `${name}-promote`;
      gates.answer(more, 403);
      gates.answer(promote, 403);
      const spec: Record<string, unknown> = {
        provider,
        service: { port: 80, targetPort: 'http', ...(provider === 'gatewayapi' ? { gatewayRefs: [{ name: 'traefik' }], hosts: [`${name}.test`] } : {}) },
        analysis: {
          interval: '1s',
          threshold: 2,
          stepWeights: [20, 40, 60],
          // The test holds each weight until it has measured it.
          webhooks: [
            { name: 'measured', type: 'confirm-traffic-increase', url: gates.url(more) },
            { name: 'measured-last', type: 'confirm-promotion', url: gates.url(promote) },
          ],
        },
      };
      const via = await adopt(name, spec, provider === 'traefik' ? 'ingressroute' : 'gateway');
      const prober = new ProberVia(via, { rate: 40, concurrency: 4, maxMs: 420_000 }).start();
      try {
        const applied = Date.now();
        await apply(ns, podinfoDeployment(name, { tag: 'b', replicas: PRIMARY_REPLICAS }));
        const rows: string[] = [];
        for (const step of [20, 40, 60]) {
          // The router's run starts at weight 0: every step is a confirmed traffic increase.
          gates.allow(more);
          await waitFor(`weight ${step} in force in Traefik`, async () => {
            const c = await get<Canary>(ns, 'canary', name);
            if (c?.status?.canaryWeight !== step) return false;
            return (await weightsInTraefik(ns, name))?.canary === step;
          }, { namespace: ns, timeoutMs: 180_000 });
          const answers = await burstVia(via, N, { concurrency: 16, deadlineMs: 120_000 });
          assert.equal(answers.length, N, `${N} requests sent`);
          assert.deepEqual(failures(answers), [], `no request fails at weight ${step}`);
          const toCanary = answers.filter((a) => a.message === NEW);
          assert.ok(toCanary.every((a) => a.pod?.startsWith(`${copy}-`)), 'the new image answers only from the canary copy');
          const share = (100 * toCanary.length) / N;
          rows.push(`${provider} step ${step}%: canary share ${share.toFixed(1)}% of ${N} (diff ${(share - step).toFixed(1)} points)`);
          assert.ok(Math.abs(share - step) <= 5, `canary share ${share.toFixed(1)}% vs weight ${step}% at step ${step}`);
          if (provider === 'traefik' && step === 20) rows.push(await builtinMetrics(name));
        }
        gates.allow(promote);
        const promotedAt = Date.now();
        await waitFor('Succeeded', async () => (await get<Canary>(ns, 'canary', name))?.status?.phase === 'Succeeded', { namespace: ns, timeoutMs: 180_000 });
        await waitFor('the copy at zero Pods', async () => ((await get<Deploy>(ns, 'deployment', copy))?.status?.replicas ?? 0) === 0, { namespace: ns, timeoutMs: 90_000 });
        await sleep(3000); // traffic after the copy's Pods are gone
        const seen = await prober.stop();
        const after = await burstVia(via, 200);
        assert.deepEqual(failures(after), [], 'every request succeeds after the promotion');
        assert.ok(after.every((a) => a.message === NEW && !a.pod?.startsWith(`${copy}-`)), 'the promoted primary answers every request with the new image');
        assert.equal(image(await get<Deploy>(ns, 'deployment', name)), podinfoImage('b'));
        const old = seen.filter((a) => a.message === OLD);
        const lastOld = old[old.length - 1];
        const failed = failures(seen);
        console.log(
          [
            `      [proxy] ${rows.join('\n      [proxy] ')}`,
            `      [proxy] ${provider}: first answer of the new version ${(((seen.find((a) => a.at >= applied && a.message === NEW)?.at ?? applied) - applied) / 1000).toFixed(1)} s after kubectl apply; last of the old ${(((lastOld?.at ?? promotedAt) - promotedAt) / 1000).toFixed(1)} s after confirm-promotion opened`,
            `      [proxy] ${provider}: background requests during the rollout: ${seen.length}, failed: ${failed.length}`,
          ].join('\n'),
        );
        assert.deepEqual(failed, [], 'no request failed during the rollout, the promotion or the copy scaling to zero');
        if (provider === 'traefik') await deleteCanaryKeepsTraffic(name, via);
      } finally {
        await prober.stop();
      }
    });
  }

  /**
   * Deleting the Canary hands the TraefikService back to the apex Service
   * (the user's IngressRoute still refers to it): no request fails while
   * the router's Services go, and the TraefikService stays, given up.
   */
  async function deleteCanaryKeepsTraffic(name: string, via: Via): Promise<void> {
    const prober = new ProberVia(via, { rate: 40, concurrency: 4, maxMs: 120_000 }).start();
    let seen: Answer[] = [];
    try {
      await kubectl(['-n', ns, 'delete', 'canary', name, '--wait=false']);
      await waitFor('the Canary gone', async () => !(await get<Canary>(ns, 'canary', name)), { namespace: ns, timeoutMs: 90_000 });
      await waitFor('the router\'s Services gone', async () => !(await get(ns, 'service', `${name}-primary`)) && !(await get(ns, 'service', `${name}-canary`)), { namespace: ns, timeoutMs: 60_000 });
      await waitFor('Traefik to route to the apex Service', async () => (await traefikServices()).some((s) => s.name === `${ns}-${name}@kubernetescrd` && (s.weighted?.services ?? []).some((c) => c.name === `${ns}-${name}-80`)), { namespace: ns, timeoutMs: 30_000 });
      await sleep(2000);
    } finally {
      seen = await prober.stop();
    }
    const ts = await get<{ metadata: { ownerReferences?: unknown[] } }>(ns, 'traefikservice', name);
    assert.ok(ts, 'the TraefikService the IngressRoute uses is kept');
    assert.equal(ts.metadata.ownerReferences, undefined, 'and no longer collected with the Canary');
    console.log(`      [proxy] traefik: Canary deleted, TraefikService handed back to Service ${name}: ${seen.length} requests meanwhile, failed: ${failures(seen).length}`);
    assert.deepEqual(failures(seen), [], 'no request failed while the Canary went');
    assert.ok(seen.length > 0 && seen.every((a) => a.message === NEW), 'the promoted version answered throughout');
  }

  it('gatewayapi A/B: requests with the header all reach the canary, the others none', async function () {
    const name = 'gab';
    const promote = `${name}-promote`;
    gates.answer(promote, 403);
    const via = await adopt(
      name,
      {
        provider: 'gatewayapi',
        service: { port: 80, targetPort: 'http', gatewayRefs: [{ name: 'traefik' }], hosts: [`${name}.test`] },
        analysis: {
          interval: '1s',
          threshold: 2,
          iterations: 2,
          match: [{ headers: { 'x-canary': { exact: 'insider' } } }],
          webhooks: [{ name: 'measured', type: 'confirm-promotion', url: gates.url(promote) }],
        },
      },
      'gateway',
    );
    await apply(ns, podinfoDeployment(name, { tag: 'b', replicas: PRIMARY_REPLICAS }));
    const insider: Via = { ...via, headers: { 'x-canary': 'insider' } };
    await waitFor('Traefik to send the header to the canary', async () => {
      const a = await burstVia(insider, 8, { concurrency: 4, deadlineMs: 10_000 });
      return a.length === 8 && a.every((x) => x.message === NEW);
    }, { namespace: ns, timeoutMs: 180_000 });
    const withHeader = await burstVia(insider, 500, { concurrency: 16, deadlineMs: 60_000 });
    const without = await burstVia(via, 500, { concurrency: 16, deadlineMs: 60_000 });
    const count = (xs: Answer[], m: string) => xs.filter((a) => a.message === m).length;
    console.log(`      [proxy] gatewayapi A/B: with x-canary: insider ${count(withHeader, NEW)}/${withHeader.length} canary; without ${count(without, NEW)}/${without.length} canary, ${count(without, OLD)} primary`);
    assert.deepEqual(failures([...withHeader, ...without]), []);
    assert.equal(count(withHeader, NEW), 500, 'every request with the header reaches the canary');
    assert.equal(count(without, OLD), 500, 'no request without it does');
    gates.allow(promote);
    await waitFor('Succeeded', async () => (await get<Canary>(ns, 'canary', name))?.status?.phase === 'Succeeded', { namespace: ns, timeoutMs: 180_000 });
  });

  it('traefik mirroring: clients see only the primary while the canary Pods receive copies of the requests', async function () {
    const name = 'tmirror';
    const copy = `${name}-canary`;
    const promote = `${name}-promote`;
    gates.answer(promote, 403);
    const via = await adopt(
      name,
      {
        provider: 'traefik',
        service: { port: 80, targetPort: 'http' },
        analysis: { interval: '1s', threshold: 2, iterations: 2, mirror: true, mirrorWeight: 100, webhooks: [{ name: 'measured', type: 'confirm-promotion', url: gates.url(promote) }] },
      },
      'ingressroute',
    );
    await apply(ns, podinfoDeployment(name, { tag: 'b', replicas: PRIMARY_REPLICAS }));
    await waitFor('Traefik to mirror to the canary', async () => {
      const s = (await traefikServices()).find((x) => x.name === `${ns}-${name}@kubernetescrd`);
      return (s?.mirroring?.mirrors ?? []).some((m) => m.name.startsWith(`${ns}-${copy}-`) && m.percent === 100);
    }, { namespace: ns, timeoutMs: 180_000 });
    const before = await podinfoRequests(ns, copy);
    const answers = await burstVia(via, 500, { concurrency: 8, deadlineMs: 60_000 });
    await sleep(2000); // mirrored copies are sent asynchronously
    const copies = (await podinfoRequests(ns, copy)) - before;
    console.log(`      [proxy] traefik mirroring at 100%: ${answers.filter((a) => a.message === OLD).length}/${answers.length} answers from the primary, canary Pods counted ${copies} copies`);
    assert.deepEqual(failures(answers), []);
    assert.ok(answers.every((a) => a.message === OLD), 'clients see only the primary');
    assert.ok(copies >= 0.95 * answers.length && copies <= answers.length + 20, `the canary received a copy of (nearly) every request: ${copies} of ${answers.length}`);
    gates.allow(promote);
    await waitFor('Succeeded', async () => (await get<Canary>(ns, 'canary', name))?.status?.phase === 'Succeeded', { namespace: ns, timeoutMs: 180_000 });
    await waitFor('mirroring ended in Traefik', async () => !(await traefikServices()).find((x) => x.name === `${ns}-${name}@kubernetescrd`)?.mirroring, { namespace: ns, timeoutMs: 60_000 });
  });

  it('traefik sticky sessions: a client keeps the side Traefik first sent it to (its cookie)', async function () {
    const name = 'tsticky';
    const promote = `${name}-promote`;
    gates.answer(promote, 403);
    const cookieName = 'canary-gate-sticky';
    const via = await adopt(
      name,
      {
        provider: 'traefik',
        service: { port: 80, targetPort: 'http' },
        analysis: { interval: '1s', threshold: 2, stepWeights: [50], sessionAffinity: { cookieName, maxAge: 600 }, webhooks: [{ name: 'measured', type: 'confirm-promotion', url: gates.url(promote) }] },
      },
      'ingressroute',
    );
    await apply(ns, podinfoDeployment(name, { tag: 'b', replicas: PRIMARY_REPLICAS }));
    await waitFor('weight 50 with the sticky cookie in force in Traefik', async () => {
      const w = await weightsInTraefik(ns, name);
      return w?.canary === 50 && w.sticky === cookieName;
    }, { namespace: ns, timeoutMs: 180_000 });
    const clients = 30;
    const perClient = 20;
    const sides = { canary: 0, primary: 0 };
    const moved: string[] = [];
    for (let i = 0; i < clients; i++) {
      const first = await getInfoVia(via);
      assert.equal(first.status, 200);
      const cookie = first.cookies.find((c) => c.startsWith(`${cookieName}=`));
      assert.ok(cookie, `Traefik set ${cookieName} on the first answer (got ${first.cookies.join('; ') || 'none'})`);
      const side = first.message;
      sides[side === NEW ? 'canary' : 'primary']++;
      for (let j = 0; j < perClient; j++) {
        const next = await getInfoVia(via, { cookie });
        if (next.status !== 200 || next.message !== side) moved.push(`client ${i}: ${side} then ${next.status} ${next.message ?? next.error}`);
      }
    }
    console.log(`      [proxy] traefik sticky: ${clients} clients, ${sides.canary} first got the canary, ${sides.primary} the primary; ${clients * perClient} requests with the cookie, ${moved.length} changed side`);
    assert.deepEqual(moved, [], 'every client kept its side');
    assert.ok(sides.canary > 0 && sides.primary > 0, 'clients landed on both sides');
    gates.allow(promote);
    await waitFor('Succeeded', async () => (await get<Canary>(ns, 'canary', name))?.status?.phase === 'Succeeded', { namespace: ns, timeoutMs: 180_000 });
    await waitFor('no sticky cookie after the promotion', async () => (await weightsInTraefik(ns, name))?.sticky === undefined, { namespace: ns, timeoutMs: 60_000 });
  });
});
