// API connections that stop answering, between a real reconciler process and
// the real API server: a TCP proxy in this process forwards the reconciler's
// traffic and can go silent (connections stay open, nothing is forwarded, no
// reset), like a dead network path or a hung API server front end.
//
// - Everything silent (open and new connections): the leader's calls time
//   out, it stops leading, exits, and a standby connected directly takes
//   over and finishes the rollout. The leader gauge follows.
// - Only the open connections silent (new ones work): the calls stuck on
//   them time out, so the keys they held are retried over fresh connections
//   and the rollout finishes instead of hanging forever.

import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import type { Canary } from '../../core/api/types.js';
import { reconcilerLeaderElectionRole } from '../../deploy/manifests.js';
import { applyAsUser as apply, clusterDir, getObject as get, kubectl, kubectlOk } from './cluster.js';
import { createNamespace, deleteNamespace } from './namespaces.js';
import { deployment, service } from './objects.js';
import { startReconciler, type RunningReconciler } from './reconciler-process.js';
import { RECONCILER_USER } from './webhook-process.js';
import { waitFor } from './wait.js';

/** A TCP proxy on 127.0.0.1 that can stop forwarding without closing anything. */
class SilentProxy {
  private readonly server = net.createServer((client) => this.accept(client));
  private readonly pairs = new Set<{ client: net.Socket; upstream?: net.Socket; silent: boolean }>();
  private silentForNew = false;
  port = 0;

  constructor(private readonly targetPort: number) {}

  async start(): Promise<void> {
    await new Promise<void>((r) => this.server.listen(0, '127.0.0.1', r));
    this.port = (this.server.address() as net.AddressInfo).port;
  }

  private accept(client: net.Socket): void {
    client.on('error', () => undefined);
    if (this.silentForNew) {
      // Accepted, then nothing: not even the TLS handshake gets an answer.
      const pair = { client, silent: true };
      this.pairs.add(pair);
      client.on('data', () => undefined);
      client.on('close', () => this.pairs.delete(pair));
      return;
    }
    const upstream = net.connect(this.targetPort, '127.0.0.1');
    const pair = { client, upstream, silent: false };
    this.pairs.add(pair);
    upstream.on('error', () => undefined);
    client.on('data', (d) => pair.silent || upstream.write(d));
    upstream.on('data', (d) => pair.silent || client.write(d));
    // Whoever closes, the other side follows (a client that gives up on a silent connection frees it).
    const close = () => {
      client.destroy();
      upstream.destroy();
      this.pairs.delete(pair);
    };
    client.on('close', close);
    upstream.on('close', close);
  }

  /** Open connections carry nothing any more (both directions), but stay open. */
  silenceOpen(): void {
    for (const p of this.pairs) p.silent = true;
  }

  /** Open and new connections: all silent. */
  silenceAll(): void {
    this.silentForNew = true;
    this.silenceOpen();
  }

  silentConnections(): number {
    let n = 0;
    for (const p of this.pairs) if (p.silent) n++;
    return n;
  }

  async close(): Promise<void> {
    for (const p of this.pairs) {
      p.client.destroy();
      p.upstream?.destroy();
    }
    await new Promise<void>((r) => this.server.close(() => r()));
  }
}

/** The reconciler's kubeconfig, pointed at the proxy (same CA: the API server's certificate names 127.0.0.1). */
function kubeconfigVia(dir: string, port: number): string {
  const original = readFileSync(path.join(clusterDir, 'reconciler.kubeconfig'), 'utf8');
  const rewritten = original.replace(/server: https:\/\/127\.0\.0\.1:\d+/, `server: https://127.0.0.1:${port}`);
  assert.notEqual(rewritten, original, 'the reconciler kubeconfig names https://127.0.0.1:PORT');
  const file = path.join(dir, 'reconciler-via-proxy.kubeconfig');
  writeFileSync(file, rewritten, { mode: 0o600 });
  return file;
}

function apiServerPort(): number {
  const text = readFileSync(path.join(clusterDir, 'reconciler.kubeconfig'), 'utf8');
  const port = /server: https:\/\/127\.0\.0\.1:(\d+)/.exec(text)?.[1];
  assert.ok(port, 'the API server port from the reconciler kubeconfig');
  return Number(port);
}

async function leaderGauge(r: RunningReconciler): Promise<number | undefined> {
  const text = await r.metrics();
  const v = /^canary_gate_reconciler_leader (\S+)$/m.exec(text)?.[1];
  return v === undefined ? undefined : Number(v);
}

function logOf(r: RunningReconciler): string {
  return readFileSync(path.join(clusterDir, 'logs', `reconciler-${r.identity}.log`), 'utf8');
}

interface Deploy {
  spec: { template: { spec: { containers: { image: string }[] } } };
}
const image = (d: Deploy | undefined) => d?.spec.template.spec.containers[0]?.image;

async function setUp(ns: string, name: string) {
  await apply(ns, {
    apiVersion: 'canarygate.dev/v1alpha1',
    kind: 'Canary',
    metadata: { name },
    spec: {
      targetRef: { apiVersion: 'apps/v1', kind: 'Deployment', name },
      service: { port: 80 },
      progressDeadlineSeconds: 300,
      analysis: { interval: '1s', threshold: 2, stepWeight: 10, maxWeight: 50 },
    },
  });
  await apply(ns, deployment(name, { image: `example.test/${name}:1`, replicas: 2 }));
  await apply(ns, service(name, { selector: { app: name } }));
}

async function startRollout(ns: string, name: string) {
  await waitFor(`${name} Initialized`, async () => (await get<Canary>(ns, 'canary', name))?.status?.phase === 'Initialized', { namespace: ns, timeoutMs: 30_000 });
  await apply(ns, deployment(name, { image: `example.test/${name}:2`, replicas: 2 }));
  await waitFor(`the rollout of ${name} to be under way`, async () => ((await get<Canary>(ns, 'canary', name))?.status?.canaryWeight ?? 0) >= 20, {
    namespace: ns,
    timeoutMs: 30_000,
  });
}

async function leaseRbac(ns: string) {
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
}

describe('API connections that stop answering', function () {
  let dir: string;
  before(() => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'canary-gate-silent-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('a leader whose connections all go silent times out, steps down and exits; a standby takes over and the rollout finishes', async function () {
    const ns = await createNamespace('silent-all');
    const leaseName = 'canary-gate-reconciler';
    const proxy = new SilentProxy(apiServerPort());
    await proxy.start();
    const replicas: RunningReconciler[] = [];
    try {
      await leaseRbac(ns);
      await setUp(ns, 'web');
      // 6 s, not the 2 s of other tests: on a busy machine (load 20 on 2 cores) Lease requests alone can take
      // longer than a 1.3 s renew deadline, and the leader would step down before any fault.
      const common = { namespace: ns, leaderElect: true, leaseName, leaseNamespace: ns, leaseDurationSeconds: 6 };
      const viaProxy = await startReconciler({ ...common, identity: `${ns}-proxied`, extraArgs: ['--kubeconfig', kubeconfigVia(dir, proxy.port), '--api-timeout', '3'] });
      replicas.push(viaProxy);
      const holder = async () => (await kubectl(['-n', ns, 'get', 'lease', leaseName, '-o', 'jsonpath={.spec.holderIdentity}'])).stdout;
      await waitFor('the proxied reconciler to lead', async () => (await holder()) === viaProxy.identity, { timeoutMs: 20_000 });
      const standby = await startReconciler({ ...common, identity: `${ns}-direct`, extraArgs: ['--api-timeout', '3'] });
      replicas.push(standby);
      await waitFor('the leader gauge 1 on the leader', async () => (await leaderGauge(viaProxy)) === 1, { timeoutMs: 5000 });
      assert.equal(await leaderGauge(standby), 0, 'the standby exports 0');

      await startRollout(ns, 'web');
      const silencedAt = Date.now();
      assert.equal(viaProxy.exited(), false, 'the proxied leader still runs before the silence');
      assert.equal(await holder(), viaProxy.identity, 'and still leads');
      proxy.silenceAll();
      await waitFor('the silenced leader to exit', () => viaProxy.exited(), { timeoutMs: 30_000, intervalMs: 100 });
      const exitedAfter = Date.now() - silencedAt;
      assert.equal(viaProxy.child.exitCode, 1, 'it exits with 1 (lost leadership)');
      const second = await waitFor('the standby to lead', async () => ((await holder()) === standby.identity ? Date.now() - silencedAt : false), {
        timeoutMs: 20_000,
        intervalMs: 100,
      });
      await waitFor('the leader gauge 1 on the new leader', async () => (await leaderGauge(standby)) === 1, { timeoutMs: 5000 });
      console.log(`      silenced leader exited after ${exitedAfter} ms; the standby led after ${second} ms`);
      // The standby may take the lease one duration (6 s) after the last renewal it saw, plus its poll period.
      assert.ok(second <= 15_000, `takeover took ${second} ms`);

      const log = logOf(viaProxy);
      assert.match(log, /"op":"update".*did not answer within the request timeout|"op":"read".*did not answer within the request timeout/, 'lease requests timed out');
      assert.match(log, /renew deadline passed/);
      assert.match(log, /lost the leader lease; exiting/);
      assert.doesNotMatch(log, /shutdown did not finish in time/, 'the shutdown finished on its own, every call having timed out');

      await waitFor('the rollout to finish', async () => (await get<Canary>(ns, 'canary', 'web'))?.status?.phase === 'Succeeded', { namespace: ns, timeoutMs: 60_000 });
      assert.equal(image(await get<Deploy>(ns, 'deployment', 'web')), 'example.test/web:2');
    } finally {
      for (const r of replicas) await r.stop();
      await proxy.close();
      await deleteNamespace(ns);
    }
  });

  it('calls stuck on connections that went silent time out, and the rollout finishes over fresh ones', async function () {
    const ns = await createNamespace('silent-open');
    const proxy = new SilentProxy(apiServerPort());
    await proxy.start();
    let reconciler: RunningReconciler | undefined;
    try {
      await setUp(ns, 'web');
      // No leader election: nothing but the timeouts can free a stuck key here.
      // A short relist repairs the informers' watches, which the proxy silences too.
      reconciler = await startReconciler({
        namespace: ns,
        identity: `${ns}-proxied`,
        extraArgs: ['--kubeconfig', kubeconfigVia(dir, proxy.port), '--api-timeout', '2', '--relist-interval', '5'],
      });
      assert.equal(await leaderGauge(reconciler), 1, 'without leader election the only replica leads');
      await startRollout(ns, 'web');
      proxy.silenceOpen();
      const silent = proxy.silentConnections();
      assert.ok(silent > 0, 'some connections were open');
      await waitFor('the rollout to finish', async () => (await get<Canary>(ns, 'canary', 'web'))?.status?.phase === 'Succeeded', { namespace: ns, timeoutMs: 60_000 });
      assert.equal(image(await get<Deploy>(ns, 'deployment', 'web')), 'example.test/web:2');
      assert.equal(reconciler.exited(), false);
      const log = logOf(reconciler);
      assert.match(log, /"err":"[^"]*(aborted|did not answer within)[^"]*","msg":"sync failed; retrying with backoff"/, 'a sync call timed out and was retried');
      console.log(`      ${silent} connections silenced; the rollout finished`);
    } finally {
      await reconciler?.stop();
      await proxy.close();
      await deleteNamespace(ns);
    }
  });
});
