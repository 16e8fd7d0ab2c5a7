// The control plane fails under running rollouts. A control plane of this
// file's own (.cluster-faults, its own ports, no real node), so that taking
// its API server or etcd away disturbs no other test file:
//
// - the API server killed (SIGKILL) and restarted in the middle of a weight
//   step, of the promotion write and of the finalising scale-down;
// - etcd stopped for 30 s while 20 rollouts progress;
// - the webhook killed during a burst of 200 applies (fail closed: each apply
//   is held or refused, none goes live), and with failurePolicy Ignore the
//   changes that went live while it was down are each reported as bypasses;
// - a GitOps tool and kubectl writing the Deployment while it is promoted.
//
// After each: no pending change lost, no promotion without its checks,
// traffic never pointing at nothing (the apex Service always has a ready
// endpoint whenever the API server answers), every Canary in a final phase.
// Each test prints what it injected and what it observed.

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import https from 'node:https';
import path from 'node:path';
import type { Canary } from '../../core/api/types.js';
import { MANAGED_LABEL, PENDING_SPEC } from '../../core/contract.js';
import { repoRoot, run } from './cluster.js';
import { GateServer } from './gate-server.js';
import { reconcilerLeaderElectionRole } from '../../deploy/manifests.js';
import { shardOf } from '../../reconciler/kit/shards.js';
import { deployment, service } from './objects.js';
import { startReconciler, type RunningReconciler } from './reconciler-process.js';
import { RECONCILER_USER, reconcilerRbacForUser, startWebhook, type RunningWebhook } from './webhook-process.js';
import { sleep, waitFor } from './wait.js';

const dir = path.join(repoRoot, '.cluster-faults');
const clusterEnv = {
  CANARY_GATE_CLUSTER_DIR: dir,
  REAL_NODE: '0',
  ETCD_PORT: '34379',
  ETCD_PEER_PORT: '34380',
  APISERVER_PORT: '38443',
  CONTROLLER_MANAGER_PORT: '38257',
  SCHEDULER_PORT: '38259',
  KWOK_PORT: '38247',
  PROMETHEUS_PORT: '40190',
  DEMO_GATE_PORT: '40191',
};
const kubeconfig = path.join(dir, 'kubeconfig');

interface Deploy {
  metadata: { annotations?: Record<string, string>; labels?: Record<string, string> };
  spec: { replicas?: number; template: { spec: { containers: { image: string }[] } } };
}
const image = (d: Deploy | undefined) => d?.spec.template.spec.containers[0]?.image;
const pendingImage = (d: Deploy | undefined): string | undefined => {
  const spec = d?.metadata.annotations?.[PENDING_SPEC];
  return spec ? (JSON.parse(spec) as { spec: { containers: { image: string }[] } }).spec.containers[0]?.image : undefined;
};

/** kubectl for this file's control plane: rejects with its stderr. */
async function kc(args: string[], opts: { input?: string; timeoutMs?: number } = {}): Promise<string> {
  const r = await run(path.join(dir, 'bin', 'kubectl'), ['--kubeconfig', kubeconfig, ...args], opts);
  if (r.code !== 0) throw new Error(`kubectl (faults cluster) ${args.join(' ')} failed: ${r.stderr.trim()}`);
  return r.stdout;
}
const applyAs = (manager: string, ns: string, obj: unknown) =>
  kc(['-n', ns, 'apply', '--server-side', '--force-conflicts', `--field-manager=${manager}`, '-f', '-'], { input: JSON.stringify(obj) });
const component = async (action: 'kill' | 'stop' | 'start', name: string) => {
  const r = await run(path.join(repoRoot, 'test/cluster/component.sh'), [action, name], { env: { ...process.env, ...clusterEnv }, timeoutMs: 30_000 });
  if (r.code !== 0) throw new Error(`component.sh ${action} ${name}: ${r.stderr}`);
};

/**
 * Direct HTTPS reads and writes of the API server with the admin identity:
 * the observers poll several times a second, and a failed call (the API
 * server away) is an answer, not an error. Every call has a timeout.
 */
class Api {
  private readonly agent: https.Agent;
  constructor(private readonly port: number) {
    const pki = path.join(dir, 'pki');
    this.agent = new https.Agent({
      ca: readFileSync(path.join(pki, 'ca.crt')),
      cert: readFileSync(path.join(pki, 'admin.crt')),
      key: readFileSync(path.join(pki, 'admin.key')),
      keepAlive: true,
      maxSockets: 16,
    });
  }

  request(method: string, urlPath: string, body?: unknown, contentType = 'application/json'): Promise<{ status: number; body: any }> {
    return new Promise((resolve) => {
      const data = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
      const req = https.request(
        { host: '127.0.0.1', port: this.port, path: urlPath, method, agent: this.agent, timeout: 5000, headers: data ? { 'content-type': contentType, 'content-length': data.length } : {} },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => {
            const text = Buffer.concat(chunks).toString('utf8');
            let parsed: unknown = text;
            try {
              parsed = JSON.parse(text);
            } catch {
              /* kept as text */
            }
            resolve({ status: res.statusCode ?? 0, body: parsed });
          });
          res.on('error', () => resolve({ status: 0, body: 'response error' }));
        },
      );
      req.on('timeout', () => req.destroy(new Error('timeout')));
      req.on('error', (e) => resolve({ status: 0, body: e.message }));
      req.end(data);
    });
  }

  async get<T>(urlPath: string): Promise<T | undefined> {
    const r = await this.request('GET', urlPath);
    return r.status === 200 ? (r.body as T) : undefined;
  }

  canary = (ns: string, name: string) => this.get<Canary>(`/apis/canarygate.dev/v1alpha1/namespaces/${ns}/canaries/${name}`);
  deployment = (ns: string, name: string) => this.get<Deploy>(`/apis/apps/v1/namespaces/${ns}/deployments/${name}`);

  close(): void {
    this.agent.destroy();
  }
}

/**
 * Samples the ready endpoints of Services several times a second. A sample
 * the API server cannot answer is counted apart: only a sample that the API
 * server answered with no ready endpoint means traffic pointed at nothing.
 */
class EndpointWatch {
  samples = 0;
  unanswered = 0;
  readonly empty: string[] = [];
  private stopped = false;
  private loop?: Promise<void>;

  constructor(private readonly api: Api, private readonly ns: string, private readonly services: string[]) {}

  /**
   * Starts sampling once every Service has a ready endpoint (a new Service
   * has none for a moment; after the API server was killed, the
   * controller-manager's EndpointSlice controller can take a minute or more
   * to catch up with its cache).
   */
  async start(): Promise<this> {
    await waitFor(`ready endpoints of ${this.services.join(', ')}`, async () => {
      for (const svc of this.services) {
        const list = await this.api.get<{ items: { endpoints?: { conditions?: { ready?: boolean } }[] }[] }>(
          `/apis/discovery.k8s.io/v1/namespaces/${this.ns}/endpointslices?labelSelector=kubernetes.io%2Fservice-name%3D${svc}`,
        );
        if (!list?.items.some((sl) => (sl.endpoints ?? []).some((e) => e.conditions?.ready !== false))) return false;
      }
      return true;
    }, { timeoutMs: 180_000 });
    this.loop = (async () => {
      while (!this.stopped) {
        for (const svc of this.services) {
          const list = await this.api.get<{ items: { endpoints?: { conditions?: { ready?: boolean } }[] }[] }>(
            `/apis/discovery.k8s.io/v1/namespaces/${this.ns}/endpointslices?labelSelector=kubernetes.io%2Fservice-name%3D${svc}`,
          );
          if (!list) {
            this.unanswered++;
            continue;
          }
          this.samples++;
          const endpoints = list.items.flatMap((s) => s.endpoints ?? []);
          const ready = endpoints.filter((e) => e.conditions?.ready !== false).length;
          if (ready === 0) this.empty.push(`${svc} at ${new Date().toISOString()}: ${list.items.length} slices, ${endpoints.length} endpoints, none ready`);
        }
        await sleep(250);
      }
    })();
    return this;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.loop;
  }
}

function canary(name: string, analysis: Record<string, unknown>) {
  return {
    apiVersion: 'canarygate.dev/v1alpha1',
    kind: 'Canary',
    metadata: { name },
    spec: { targetRef: { apiVersion: 'apps/v1', kind: 'Deployment', name }, service: { port: 80 }, progressDeadlineSeconds: 300, analysis },
  };
}

describe('faults of the control plane during rollouts', function () {
  this.timeout(600_000);
  const gates = new GateServer();
  let api: Api;
  let webhook: RunningWebhook | undefined;
  let reconciler: RunningReconciler | undefined;

  const created: string[] = [];
  const createNamespace = async (prefix: string, opts: { exact?: boolean } = {}) => {
    const name = opts.exact ? prefix : `${prefix}-${randomBytes(3).toString('hex')}`;
    created.push(name);
    await kc(['create', '-f', '-'], { input: JSON.stringify({ apiVersion: 'v1', kind: 'Namespace', metadata: { name, labels: { 'canarygate.dev/enabled': 'true' } } }) });
    return name;
  };
  const phases = async (ns: string, names: string[]) => Promise.all(names.map(async (n) => (await api.canary(ns, n))?.status?.phase));
  const apiReady = () => waitFor('the API server to answer again', async () => (await api.request('GET', '/readyz')).status === 200, { timeoutMs: 90_000 });

  before(async function () {
    const r = await run(path.join(repoRoot, 'test/cluster/up.sh'), [], { env: { ...process.env, ...clusterEnv }, timeoutMs: 240_000 });
    if (r.code !== 0) throw new Error(`the faults control plane did not start: ${r.stderr.slice(-2000)}`);
    api = new Api(Number(clusterEnv.APISERVER_PORT));
    await kc(['apply', '--server-side', '--force-conflicts', '-k', path.join(repoRoot, 'deploy/crds')]);
    await kc(['wait', '--for=condition=Established', '--timeout=60s', 'crd', '-l', 'app.kubernetes.io/part-of=canary-gate']);
    await kc(['apply', '--server-side', '--force-conflicts', '-f', '-'], { input: JSON.stringify({ apiVersion: 'v1', kind: 'List', items: reconcilerRbacForUser(RECONCILER_USER) }) });
    webhook = await startWebhook({ configName: 'canary-gate-faults', logName: 'webhook-faults', cluster: { dir, kubectl: kc } });
    await gates.start();
  });

  after(async function () {
    await reconciler?.stop();
    await webhook?.stop();
    await gates.stop();
    api?.close();
    if (!process.env.KEEP_CLUSTER) await run(path.join(repoRoot, 'test/cluster/down.sh'), [], { env: { ...process.env, ...clusterEnv } });
  });

  afterEach(async function () {
    await reconciler?.stop();
    reconciler = undefined;
    // Gone before the next test: the sharded reconcilers below watch every namespace.
    for (const ns of created.splice(0)) {
      await kc(['delete', 'namespace', ns, '--wait=false', '--ignore-not-found']).catch(() => undefined);
      const list = await kc(['-n', ns, 'get', 'canaries.canarygate.dev', '-o', 'name']).catch(() => '');
      for (const c of list.split('\n').filter(Boolean)) await kc(['-n', ns, 'patch', c, '--type=merge', '-p', '{"metadata":{"finalizers":null}}']).catch(() => undefined);
    }
  });

  it('etcd stopped for 30 s while 20 rollouts progress: every one ends right once it is back', async function () {
    const ns = await createNamespace('faults-etcd');
    const good = Array.from({ length: 16 }, (_, i) => `good-${i}`);
    const bad = Array.from({ length: 4 }, (_, i) => `bad-${i}`);
    const all = [...good, ...bad];
    gates.answer('etcd-bad', 500);
    const analysis = (gate: string) => ({ interval: '2s', threshold: 3, stepWeight: 10, maxWeight: 50, webhooks: [{ name: 'check', type: 'rollout', url: gates.url(gate) }] });
    const objects = all.flatMap((name) => [
      canary(name, analysis(name.startsWith('good') ? 'etcd-good' : 'etcd-bad')),
      deployment(name, { image: `example.test/${name}:1`, replicas: 1 }),
      service(name, { selector: { app: name } }),
    ]);
    await applyAs('e2e-user', ns, { apiVersion: 'v1', kind: 'List', items: objects });
    reconciler = await startReconciler({ namespace: ns, identity: 'faults-etcd', clusterDir: dir });
    await waitFor('20 Canaries Initialized', async () => (await phases(ns, all)).every((p) => p === 'Initialized'), { timeoutMs: 120_000 });
    const endpoints = new EndpointWatch(api, ns, ['good-0', 'bad-0']);
    await endpoints.start();
    try {
      await applyAs('e2e-user', ns, { apiVersion: 'v1', kind: 'List', items: all.map((name) => deployment(name, { image: `example.test/${name}:2`, replicas: 1 })) });
      const progressing = await waitFor('at least 15 of 20 progressing', async () => {
        const n = (await phases(ns, all)).filter((p) => p === 'Progressing').length;
        return n >= 15 ? n : undefined;
      }, { timeoutMs: 90_000, intervalMs: 200 });
      await component('stop', 'etcd');
      const stoppedAt = Date.now();
      await sleep(30_000);
      const duringOutage = (await api.request('GET', '/readyz')).status;
      await component('start', 'etcd');
      await apiReady();
      const outage = Math.round((Date.now() - stoppedAt) / 1000);

      await waitFor('every rollout to end', async () => {
        const p = await phases(ns, all);
        return p.every((phase, i) => phase === (all[i]!.startsWith('good') ? 'Succeeded' : 'Failed'));
      }, { timeoutMs: 240_000, intervalMs: 1000 });
      for (const name of all) {
        const d = await api.deployment(ns, name);
        assert.equal(image(d), `example.test/${name}:${name.startsWith('good') ? 2 : 1}`, `${name}: promoted if good, never if bad`);
        // A rolled-back change stays pending, marked failed, until a newer one replaces it: never lost.
        if (name.startsWith('good')) assert.equal(d?.metadata.annotations?.[PENDING_SPEC], undefined, `${name}: nothing left pending`);
        else assert.equal(pendingImage(d), `example.test/${name}:2`, `${name}: the failed change is kept pending`);
      }
      await endpoints.stop();
      assert.deepEqual(endpoints.empty, [], 'the apex Services always had a ready endpoint');
      console.log(`      injected: etcd stopped 30 s (API server /readyz ${duringOutage} meanwhile; ready again ${outage} s after the stop) with ${progressing} of 20 rollouts progressing`);
      console.log(`      observed: 16 Succeeded, 4 Failed (their change kept pending); endpoints sampled ${endpoints.samples} times, ${endpoints.unanswered} unanswered, 0 empty`);
    } finally {
      await endpoints.stop();
    }
  });

  it('the API server killed in a weight step, in the promotion write and in the finalising scale-down: the good change is promoted after its checks, the bad one rolled back', async function () {
    const ns = await createNamespace('faults-apiserver');
    const steps = 3;
    // minReadySeconds keeps the primary's roll-out (the Promoting phase) open for a few seconds, so the kill lands inside it.
    const withMinReady = (d: ReturnType<typeof deployment>) => ({ ...d, spec: { ...d.spec, minReadySeconds: 4 } });
    const analysis = (gate: string) => ({ interval: '1s', threshold: 2, stepWeight: 20, maxWeight: 20 * steps, webhooks: [{ name: 'check', type: 'rollout', url: gates.url(gate) }] });
    gates.answer('apiserver-bad', 500);
    for (const [name, gate] of [['web', 'apiserver-good'], ['bad', 'apiserver-bad']] as const) {
      await applyAs('e2e-user', ns, canary(name, analysis(gate)));
      await applyAs('e2e-user', ns, withMinReady(deployment(name, { image: `example.test/${name}:1`, replicas: 2 })));
      await applyAs('e2e-user', ns, service(name, { selector: { app: name } }));
    }
    reconciler = await startReconciler({ namespace: ns, identity: 'faults-apiserver', clusterDir: dir });
    await waitFor('both Canaries Initialized', async () => (await phases(ns, ['web', 'bad'])).every((p) => p === 'Initialized'), { timeoutMs: 60_000 });
    const endpoints = new EndpointWatch(api, ns, ['web', 'bad']);
    await endpoints.start();
    try {
      for (const name of ['web', 'bad']) await applyAs('e2e-user', ns, withMinReady(deployment(name, { image: `example.test/${name}:2`, replicas: 2 })));

      const injected: string[] = [];
      let copyAtKill: number | undefined;
      let lastSeen = '';
      const seen = (c: Canary | undefined) => ((lastSeen = `${c?.status?.phase} at weight ${c?.status?.canaryWeight ?? 0}`), c);
      const killAt = async (moment: string, when: () => Promise<boolean>) => {
        await waitFor(moment, when, { timeoutMs: 120_000, intervalMs: 50 });
        await component('kill', 'kube-apiserver');
        const c = lastSeen;
        await sleep(2000);
        await component('start', 'kube-apiserver');
        await apiReady();
        injected.push(`${moment} (status then: ${c})`);
      };
      await killAt('web at its second weight step', async () => {
        const c = seen(await api.canary(ns, 'web'));
        return c?.status?.phase === 'Progressing' && (c.status.canaryWeight ?? 0) >= 40;
      });
      await killAt('web promoting (the promotion write)', async () => seen(await api.canary(ns, 'web'))?.status?.phase === 'Promoting');
      // The status says Succeeded before its effects (ADR 0003): the copy's scale-down follows within milliseconds.
      await killAt('web promoted (the finalising scale-down)', async () => {
        if (seen(await api.canary(ns, 'web'))?.status?.phase !== 'Succeeded') return false;
        copyAtKill = (await api.deployment(ns, 'web-canary'))?.spec.replicas;
        return true;
      });
      await waitFor('both rollouts to end', async () => {
        const [web, bad] = await phases(ns, ['web', 'bad']);
        return web === 'Succeeded' && bad === 'Failed';
      }, { timeoutMs: 120_000 });
      for (const name of ['web', 'bad']) {
        await waitFor(`${name}-canary scaled to zero`, async () => (await api.deployment(ns, `${name}-canary`))?.spec.replicas === 0, { timeoutMs: 60_000 });
      }
      const web = await api.deployment(ns, 'web');
      const bad = await api.deployment(ns, 'bad');
      assert.equal(image(web), 'example.test/web:2', 'the good change is promoted');
      assert.equal(web?.metadata.annotations?.[PENDING_SPEC], undefined, 'and no longer pending');
      assert.equal(image(bad), 'example.test/bad:1', 'the failing change never goes live');
      const checks = gates.callsTo('apiserver-good').length;
      assert.ok(checks >= steps, `the good change was checked at each of its ${steps} steps before its promotion (${checks} checks)`);
      await endpoints.stop();
      assert.deepEqual(endpoints.empty, [], 'the apex Services always had a ready endpoint');
      console.log(`      injected: SIGKILL of kube-apiserver, 2 s down, at: ${injected.join('; ')}`);
      console.log(`      observed: web Succeeded (web:2, ${checks} checks), bad Failed (bad:1 live); the copy had ${copyAtKill} replicas at the last kill, 0 after; endpoints sampled ${endpoints.samples} times, ${endpoints.unanswered} unanswered, 0 empty`);
    } finally {
      await endpoints.stop();
    }
  });

  it('the webhook killed during a burst of 200 applies: each apply is held or refused, none goes live; with failurePolicy Ignore each change that went live is reported as a bypass', async function () {
    const ns = await createNamespace('faults-webhook');
    const names = Array.from({ length: 20 }, (_, i) => `app-${i}`);
    // Managed Deployments, no reconciler running: only the webhook stands between an apply and the live object.
    await applyAs('e2e-user', ns, { apiVersion: 'v1', kind: 'List', items: names.map((n) => deployment(n, { image: `example.test/${n}:1`, replicas: 1, managed: true })) });
    const lastHeld = new Map<string, string>();
    let held = 0;
    let refused = 0;
    const otherErrors: string[] = [];
    const burst = Array.from({ length: 200 }, (_, i) => ({ name: names[i % names.length]!, version: Math.floor(i / names.length) + 2 }));
    // One worker per Deployment keeps its applies in order, so the last held is the newest.
    const perName = names.map((name) => async () => {
      for (const b of burst.filter((x) => x.name === name)) {
        const i = burst.indexOf(b);
        if (i === 60) await webhook?.kill();
        const img = `example.test/${name}:${b.version}`;
        const patch = { spec: { template: { spec: { containers: [{ name: 'app', image: img }] } } } };
        const r = await api.request('PATCH', `/apis/apps/v1/namespaces/${ns}/deployments/${name}?fieldManager=gitops`, patch, 'application/strategic-merge-patch+json');
        if (r.status === 200) {
          assert.equal(image(r.body as Deploy), `example.test/${name}:1`, `the answer to a held apply of ${img} keeps the stable image`);
          assert.equal(pendingImage(r.body as Deploy), img, `the apply of ${img} is held as the pending change`);
          held++;
          lastHeld.set(name, img);
        } else if (r.status >= 500 && /mutate\.canarygate\.dev/.test(JSON.stringify(r.body))) {
          refused++;
        } else {
          otherErrors.push(`${img}: ${r.status} ${JSON.stringify(r.body).slice(0, 200)}`);
        }
      }
    });
    await Promise.all(perName.map((f) => f()));
    assert.deepEqual(otherErrors, [], 'every apply is held or refused by the API server naming the webhook');
    assert.equal(held + refused, 200);
    assert.ok(refused > 0, 'the applies after the kill are refused (fail closed)');
    for (const name of names) {
      const d = await api.deployment(ns, name);
      assert.equal(image(d), `example.test/${name}:1`, `${name}: nothing went live`);
      assert.equal(pendingImage(d), lastHeld.get(name), `${name}: the last held change is the pending one`);
    }
    console.log(`      injected: SIGKILL of the webhook after 60 of 200 applies (failurePolicy Fail)`);
    console.log(`      observed: ${held} held, ${refused} refused by the API server naming the webhook, 0 live, every last held change pending`);

    // failurePolicy Ignore: while the webhook is down the changes go live; the reconciler reports each one.
    webhook = await startWebhook({ configName: 'canary-gate-faults', logName: 'webhook-faults', failurePolicy: 'Ignore', cluster: { dir, kubectl: kc } });
    const ignoring = names.slice(0, 10);
    await applyAs('e2e-user', ns, { apiVersion: 'v1', kind: 'List', items: ignoring.map((n) => canary(n, { interval: '1s', stepWeight: 50, maxWeight: 50 })) });
    reconciler = await startReconciler({ namespace: ns, identity: 'faults-webhook', clusterDir: dir });
    // The pending changes run first; wait until every one is promoted.
    await waitFor('the held changes promoted', async () => (await phases(ns, ignoring)).every((p) => p === 'Succeeded'), { timeoutMs: 180_000, intervalMs: 1000 });
    await webhook.kill();
    let bypassed = 0;
    for (const name of ignoring) {
      const r = await api.request('PATCH', `/apis/apps/v1/namespaces/${ns}/deployments/${name}?fieldManager=gitops`, { spec: { template: { spec: { containers: [{ name: 'app', image: `example.test/${name}:99` }] } } } }, 'application/strategic-merge-patch+json');
      assert.equal(r.status, 200, `with failurePolicy Ignore the apply passes: ${JSON.stringify(r.body).slice(0, 200)}`);
      if (image(r.body as Deploy) === `example.test/${name}:99`) bypassed++;
    }
    const reported = await waitFor('every bypass reported on its Canary', async () => {
      const canaries = await Promise.all(ignoring.map((n) => api.canary(ns, n)));
      const n = canaries.filter((c) => c?.status?.conditions?.some((x) => x.type === 'Bypassed' && x.status === 'True')).length;
      return n === bypassed ? n : undefined;
    }, { timeoutMs: 60_000 });
    const metric = /canary_gate_webhook_bypasses_total(?:\{[^}]*\})? (\d+)/.exec(await reconciler.metrics())?.[1];
    assert.equal(Number(metric), bypassed, 'the bypass counter counts each one');
    console.log(`      injected: webhook killed with failurePolicy Ignore, then ${ignoring.length} applies`);
    console.log(`      observed: ${bypassed} went live, ${reported} reported (condition Bypassed, canary_gate_webhook_bypasses_total ${metric})`);
    webhook = await startWebhook({ configName: 'canary-gate-faults', logName: 'webhook-faults', cluster: { dir, kubectl: kc } });
  });

  it('a GitOps tool and kubectl write the Deployment while it is promoted: the promotion lands, no write is lost', async function () {
    const ns = await createNamespace('faults-conflicts');
    await applyAs('e2e-user', ns, canary('web', { interval: '1s', stepWeight: 50, maxWeight: 50 }));
    await applyAs('gitops', ns, deployment('web', { image: 'example.test/web:1', replicas: 2 }));
    await applyAs('e2e-user', ns, service('web', { selector: { app: 'web' } }));
    reconciler = await startReconciler({ namespace: ns, identity: 'faults-conflicts', clusterDir: dir });
    await waitFor('Initialized', async () => (await api.canary(ns, 'web'))?.status?.phase === 'Initialized', { timeoutMs: 60_000 });
    let stop = false;
    const counts = { gitops: 0, gitops409: 0, kubectl: 0, kubectl409: 0, failed: [] as string[] };
    // The GitOps tool re-applies git's state (web:2) again and again; a person labels and scales meanwhile.
    const gitops = (async () => {
      for (let i = 0; !stop && i < 2000; i++) {
        const r = await api.request('PATCH', `/apis/apps/v1/namespaces/${ns}/deployments/web?fieldManager=gitops&force=true`, deployment('web', { image: 'example.test/web:2', replicas: 2 }), 'application/apply-patch+yaml');
        if (r.status === 200) counts.gitops++;
        else if (r.status === 409) counts.gitops409++;
        else counts.failed.push(`gitops ${r.status} ${JSON.stringify(r.body).slice(0, 200)}`);
        await sleep(50);
      }
    })();
    // A person annotates (as `kubectl annotate --resource-version` does: a conflict when stale) and scales meanwhile.
    const person = (async () => {
      for (let i = 0; !stop && i < 2000; i++) {
        const d = await api.deployment(ns, 'web');
        const annotate = { metadata: { resourceVersion: (d?.metadata as { resourceVersion?: string } | undefined)?.resourceVersion, annotations: { 'example.test/touched': String(i) } } };
        const r = i % 5 === 4
          ? await api.request('PATCH', `/apis/apps/v1/namespaces/${ns}/deployments/web/scale?fieldManager=kubectl-scale`, { spec: { replicas: 2 + (i % 2) } }, 'application/merge-patch+json')
          : await api.request('PATCH', `/apis/apps/v1/namespaces/${ns}/deployments/web?fieldManager=kubectl-annotate`, annotate, 'application/merge-patch+json');
        if (r.status === 200) counts.kubectl++;
        else if (r.status === 409) counts.kubectl409++;
        else counts.failed.push(`kubectl ${r.status} ${JSON.stringify(r.body).slice(0, 200)}`);
        await sleep(50);
      }
    })();
    try {
      await waitFor('web:2 promoted while both write', async () => {
        const [c, d] = await Promise.all([api.canary(ns, 'web'), api.deployment(ns, 'web')]);
        return c?.status?.phase === 'Succeeded' && image(d) === 'example.test/web:2';
      }, { timeoutMs: 120_000 });
    } finally {
      stop = true;
      await Promise.all([gitops, person]);
    }
    assert.deepEqual(counts.failed, [], 'no write failed other than by conflict');
    const d = await api.deployment(ns, 'web');
    assert.equal(image(d), 'example.test/web:2');
    assert.equal(d?.metadata.annotations?.[PENDING_SPEC], undefined, 'nothing left pending');
    assert.equal(d?.metadata.labels?.[MANAGED_LABEL], 'true', 'still managed');
    assert.ok(counts.kubectl > 0 && counts.gitops > 0, 'both writers got writes in');
    console.log(`      injected: ${counts.gitops + counts.gitops409} server-side applies of git's state and ${counts.kubectl + counts.kubectl409} annotations and scalings by a person during the run`);
    const reconciler409 = readFileSync(path.join(dir, 'logs', 'reconciler-faults-conflicts.log'), 'utf8').split('\n').filter((l) => l.includes(ns) && l.includes('(HTTP 409)')).length;
    console.log(`      observed: conflicts (409): ${counts.kubectl409} for the person, ${reconciler409} for the reconciler (each retried on fresh caches); promotion landed, nothing pending`);
  });

  it('three reconciler shards split the Canaries by namespace; a killed shard is taken over within two lease durations and handed back, and no step is taken twice', async function () {
    const leaseSeconds = 3;
    const shards = 3;
    // Two namespaces per shard; Leases of this run's own.
    const tag = randomBytes(2).toString('hex');
    const leaseName = `cg-shards-${tag}`;
    const byShard = new Map<number, string[]>(Array.from({ length: shards }, (_, i) => [i, []]));
    for (let i = 0; [...byShard.values()].some((l) => l.length < 2); i++) {
      const ns = `shard-${tag}-${i}`;
      const list = byShard.get(shardOf(ns, shards))!;
      if (list.length < 2) list.push(ns);
    }
    const all = [...byShard.values()].flat();
    const analysis = { interval: '1s', stepWeight: 10, maxWeight: 50, webhooks: [{ name: 'events', type: 'event', url: gates.url('shard-events') }] };
    for (const ns of all) {
      await createNamespace(ns, { exact: true });
      await applyAs('e2e-user', ns, { apiVersion: 'v1', kind: 'List', items: [canary('web', analysis), deployment('web', { image: 'example.test/web:1', replicas: 1 }), service('web', { selector: { app: 'web' } })] });
    }
    const holder = async (shard: number) =>
      (await api.get<{ spec?: { holderIdentity?: string } }>(`/apis/coordination.k8s.io/v1/namespaces/canary-gate-system/leases/${leaseName}-shard-${shard}`))?.spec?.holderIdentity ?? '';
    // The shipped lease Role, for the shard and member Leases of three shards.
    await kc(['apply', '--server-side', '--force-conflicts', '-f', '-'], {
      input: JSON.stringify({
        apiVersion: 'v1',
        kind: 'List',
        items: [
          reconcilerLeaderElectionRole({ leaseName, shards, name: 'canary-gate-reconciler-shards' }),
          {
            apiVersion: 'rbac.authorization.k8s.io/v1',
            kind: 'RoleBinding',
            metadata: { name: 'canary-gate-reconciler-shards', namespace: 'canary-gate-system' },
            roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: 'canary-gate-reconciler-shards' },
            subjects: [{ apiGroup: 'rbac.authorization.k8s.io', kind: 'User', name: RECONCILER_USER }],
          },
        ],
      }),
    });
    const replicas: (RunningReconciler | undefined)[] = [];
    const start = (i: number, identity: string) =>
      startReconciler({
        namespace: undefined,
        identity,
        clusterDir: dir,
        extraArgs: ['--shards', String(shards), '--shard-index', String(i), '--lease-name', leaseName, '--lease-namespace', 'canary-gate-system', '--lease-duration', String(leaseSeconds)],
      });
    try {
      // Started together, as a StatefulSet's Pods are: each home is up within a lease duration, before any other would take its shard.
      await Promise.all(Array.from({ length: shards }, async (_, i) => (replicas[i] = await start(i, `shard-${i}`))));
      await waitFor('each replica leading its own shard', async () => {
        for (let i = 0; i < shards; i++) if ((await holder(i)) !== `shard-${i}`) return false;
        return true;
      }, { timeoutMs: 60_000 });
      const phase = async (ns: string) => (await api.canary(ns, 'web'))?.status?.phase;
      await waitFor('every Canary Initialized', async () => (await Promise.all(all.map(phase))).every((p) => p === 'Initialized'), { timeoutMs: 60_000 });
      for (const ns of all) await applyAs('e2e-user', ns, deployment('web', { image: 'example.test/web:2', replicas: 1 }));
      const victim = byShard.get(1)!;
      await waitFor("shard 1's rollouts progressing", async () => (await Promise.all(victim.map(phase))).every((p) => p === 'Progressing'), { timeoutMs: 60_000, intervalMs: 100 });

      await replicas[1]!.kill();
      const killedAt = Date.now();
      const taker = await waitFor('another replica to take shard 1 over', async () => {
        const h = await holder(1);
        return h && h !== 'shard-1' ? h : undefined;
      }, { timeoutMs: 30_000, intervalMs: 100 });
      const takeoverMs = Date.now() - killedAt;
      assert.ok(takeoverMs <= 2 * leaseSeconds * 1000, `taken over in ${takeoverMs} ms, within two lease durations (${2 * leaseSeconds} s)`);

      await waitFor('every rollout promoted', async () => (await Promise.all(all.map(phase))).every((p) => p === 'Succeeded'), { timeoutMs: 120_000 });
      for (const ns of all) assert.equal(image(await api.deployment(ns, 'web')), 'example.test/web:2', `${ns} promoted`);

      // The replica comes back (a new Pod of the StatefulSet): its shard is handed back to it.
      replicas[1] = await start(1, 'shard-1-again');
      const backAt = Date.now();
      await waitFor('shard 1 handed back to its replica', async () => (await holder(1)) === 'shard-1-again', { timeoutMs: 60_000, intervalMs: 100 });
      const handBackMs = Date.now() - backAt;
      for (const ns of victim) await applyAs('e2e-user', ns, deployment('web', { image: 'example.test/web:3', replicas: 1 }));
      await waitFor("shard 1's next change promoted by its own replica", async () => {
        for (const ns of victim) if (image(await api.deployment(ns, 'web')) !== 'example.test/web:3' || (await phase(ns)) !== 'Succeeded') return false;
        return true;
      }, { timeoutMs: 120_000 });

      // Each shard's Events came from the replica leading it: the untouched shards only ever from their own.
      for (const shard of [0, 2]) {
        for (const ns of byShard.get(shard)!) {
          const events = JSON.parse(await kc(['-n', ns, 'get', 'events', '-o', 'json'])) as { items: { reportingInstance?: string; reportingComponent?: string }[] };
          const by = new Set(events.items.filter((e) => e.reportingInstance?.startsWith('shard-')).map((e) => e.reportingInstance));
          assert.deepEqual([...by], [`shard-${shard}`], `${ns} (shard ${shard}) was reconciled by shard-${shard} alone`);
        }
      }
      // No step taken twice: each weight of each revision was announced at most once, across the kill and the hand-back.
      const steps = new Map<string, number>();
      for (const call of gates.callsTo('shard-events')) {
        const b = call.body as { namespace?: string; revision?: string; canaryWeight?: number; reason?: string };
        if (b.reason !== 'WeightAdvanced') continue;
        const k = `${b.namespace} ${b.revision} ${b.canaryWeight}`;
        steps.set(k, (steps.get(k) ?? 0) + 1);
      }
      const twice = [...steps].filter(([, n]) => n > 1).map(([k]) => k);
      assert.deepEqual(twice, [], 'no weight step announced twice');
      assert.ok(steps.size >= all.length * 4, `steps announced (${steps.size})`);
      console.log(`      injected: SIGKILL of the replica leading shard 1 of 3 (lease ${leaseSeconds} s) while its 2 rollouts progressed`);
      console.log(`      observed: ${taker} took shard 1 over in ${(takeoverMs / 1000).toFixed(1)} s; 6 of 6 promoted; handed back ${(handBackMs / 1000).toFixed(1)} s after the replica returned; ${steps.size} weight steps, none twice`);
    } finally {
      for (const r of replicas) await r?.stop();
    }
  });
});
