// The reconciler's controller kit against a real API server: informer
// (events, recovery, relist, watchdog, missing CRD), leader election on a
// 2-second Lease, the event recorder and status patches with conflicts.
//
// Connection failures are real: informers under test reach the API server
// through a TCP proxy in this process that can cut every connection and
// refuse new ones (a network outage), or silently stop forwarding on the
// open ones (a half-dead connection that only a watchdog or relist notices).

import assert from 'node:assert/strict';
import net from 'node:net';
import * as k8s from '@kubernetes/client-node';
import { pino } from 'pino';
import { EventRecorder } from '../../reconciler/kit/events.js';
import { type KubeObject, ResilientInformer } from '../../reconciler/kit/informer.js';
import { LeaderElector, microTime } from '../../reconciler/kit/leader.js';
import { kubeConfig, kubectl, kubectlOk } from './cluster.js';
import { createNamespace, deleteNamespace } from './namespaces.js';
import { sleep, waitFor } from './wait.js';

const quiet = pino({ level: 'silent' });

interface ConfigMap extends KubeObject {
  data?: Record<string, string>;
}

// ------------------------------------------------------------ a proxy we can break

class FaultyProxy {
  private readonly server = net.createServer((client) => this.accept(client));
  private readonly pairs = new Set<{ client: net.Socket; upstream: net.Socket; frozen: boolean }>();
  private refusing = false;
  port = 0;

  constructor(
    private readonly host: string,
    private readonly targetPort: number,
  ) {}

  async start(): Promise<void> {
    await new Promise<void>((r) => this.server.listen(0, '127.0.0.1', r));
    this.port = (this.server.address() as net.AddressInfo).port;
  }

  private accept(client: net.Socket): void {
    if (this.refusing) return void client.destroy();
    const upstream = net.connect(this.targetPort, this.host);
    const pair = { client, upstream, frozen: false };
    this.pairs.add(pair);
    // Forward by hand so that a frozen pair can swallow traffic while staying open.
    client.on('data', (d) => pair.frozen || upstream.write(d));
    upstream.on('data', (d) => pair.frozen || client.write(d));
    const close = () => {
      client.destroy();
      upstream.destroy();
      this.pairs.delete(pair);
    };
    client.on('close', close).on('error', close);
    upstream.on('close', close).on('error', close);
  }

  /** Network outage: drop every connection and refuse new ones until heal(). */
  cut(): void {
    this.refusing = true;
    for (const p of this.pairs) {
      p.client.destroy();
      p.upstream.destroy();
    }
  }

  heal(): void {
    this.refusing = false;
  }

  /** Half-dead connections: the open ones stay open but carry nothing any more; new ones work. */
  freeze(): void {
    for (const p of this.pairs) p.frozen = true;
  }

  openConnections(): number {
    return this.pairs.size;
  }

  async close(): Promise<void> {
    this.cut();
    await new Promise<void>((r) => this.server.close(() => r()));
  }
}

/** The test kubeconfig, pointed at another server address (the proxy). */
function kubeConfigVia(server: string): k8s.KubeConfig {
  const base = kubeConfig();
  const kc = new k8s.KubeConfig();
  kc.loadFromOptions({
    clusters: base.clusters.map((c) => ({ ...c, server })),
    users: base.users,
    contexts: base.contexts,
    currentContext: base.currentContext,
  });
  return kc;
}

async function startProxy(): Promise<{ proxy: FaultyProxy; kc: k8s.KubeConfig }> {
  const server = new URL(kubeConfig().getCurrentCluster()!.server);
  const proxy = new FaultyProxy(server.hostname, Number(server.port || 443));
  await proxy.start();
  return { proxy, kc: kubeConfigVia(`https://${server.hostname}:${proxy.port}`) };
}

function configMap(ns: string, name: string, data: Record<string, string>, labels: Record<string, string> = {}) {
  return JSON.stringify({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name, namespace: ns, labels }, data });
}

/** Records what an informer reports, per object name. */
function recordEvents<T extends ConfigMap>(inf: ResilientInformer<T>) {
  const log: Array<{ type: 'add' | 'update' | 'delete'; name: string; data?: Record<string, string>; finalStateUnknown?: boolean }> = [];
  inf.on('add', (o) => log.push({ type: 'add', name: o.metadata!.name!, data: o.data }));
  inf.on('update', (o) => log.push({ type: 'update', name: o.metadata!.name!, data: o.data }));
  inf.on('delete', (o, info) => log.push({ type: 'delete', name: o.metadata!.name!, finalStateUnknown: info.finalStateUnknown }));
  return log;
}

describe('controller kit on a real API server', function () {
  this.timeout(60_000);
  let ns: string;
  const cleanup: Array<() => Promise<unknown> | unknown> = [];

  before(async function () {
    ns = await createNamespace('kit', { enabled: false });
  });
  afterEach(async function () {
    while (cleanup.length) await cleanup.pop()!();
  });
  after(async function () {
    await deleteNamespace(ns);
  });

  describe('ResilientInformer', function () {
    it('sees add, update and delete of ConfigMaps cluster-wide through a label selector, without duplicate updates', async function () {
      const run = `run-${ns}`;
      const inf = new ResilientInformer<ConfigMap>({
        kubeConfig: kubeConfig(),
        path: '/api/v1/configmaps',
        labelSelector: `kit-run=${run}`,
        // Several full relists during the test, none of which may show as an
        // update; far enough apart that the watch, not a relist, sees the
        // delete first even on a loaded machine.
        relistIntervalMs: 1500,
        logger: quiet,
      });
      const events = recordEvents(inf);
      inf.start();
      cleanup.push(() => inf.stop());
      await inf.waitForSync();

      await kubectlOk(['create', '-f', '-'], { input: configMap(ns, 'a', { v: '1' }, { 'kit-run': run }) });
      await kubectlOk(['create', '-f', '-'], { input: configMap(ns, 'unlabelled', { v: '1' }) });
      await waitFor('add of a', () => inf.get(ns, 'a'));
      await kubectlOk(['-n', ns, 'patch', 'configmap', 'a', '--type=merge', '-p', '{"data":{"v":"2"}}']);
      await waitFor('update of a', () => inf.get(ns, 'a')?.data?.v === '2');
      const relists = inf.health().relists;
      await waitFor('two more relists', () => inf.health().relists >= relists + 2, { timeoutMs: 10_000 });
      await kubectlOk(['-n', ns, 'delete', 'configmap', 'a']);
      await waitFor('delete of a', () => !inf.get(ns, 'a'));

      assert.deepEqual(
        events.map((e) => [e.type, e.name, e.data?.v]),
        [
          ['add', 'a', '1'],
          ['update', 'a', '2'],
          ['delete', 'a', undefined],
        ],
        'exactly one update: relists of an unchanged object are not updates; the unlabelled ConfigMap is never seen',
      );
      assert.equal(events[2]!.finalStateUnknown, false, 'the delete came from the watch');
      assert.equal(inf.listNamespace(ns).length, 0);
      assert.equal(inf.health().restarts, 0);
    });

    it('recovers after its connections are cut, and catches up with the changes made meanwhile', async function () {
      await kubectlOk(['create', '-f', '-'], { input: configMap(ns, 'cut-x', { v: '1' }) });
      await kubectlOk(['create', '-f', '-'], { input: configMap(ns, 'cut-z', { v: '1' }) });
      const { proxy, kc } = await startProxy();
      cleanup.push(() => proxy.close());
      const inf = new ResilientInformer<ConfigMap>({
        kubeConfig: kc,
        path: `/api/v1/namespaces/${ns}/configmaps`,
        initialBackoffMs: 100,
        maxBackoffMs: 400,
        logger: quiet,
      });
      const events = recordEvents(inf);
      inf.start();
      cleanup.push(() => inf.stop());
      await inf.waitForSync();
      await waitFor('the watch to be open', () => inf.health().watching);

      proxy.cut();
      await waitFor('the informer to notice and fail to reconnect', () => inf.health().restarts >= 2, { timeoutMs: 5000 });
      assert.equal(inf.health().watching, false);
      await kubectlOk(['-n', ns, 'patch', 'configmap', 'cut-x', '--type=merge', '-p', '{"data":{"v":"2"}}']);
      await kubectlOk(['create', '-f', '-'], { input: configMap(ns, 'cut-y', { v: '1' }) });
      await kubectlOk(['-n', ns, 'delete', 'configmap', 'cut-z']);
      await sleep(300);
      assert.equal(inf.get(ns, 'cut-x')?.data?.v, '1', 'nothing arrives while the network is down');

      proxy.heal();
      await waitFor('the informer to catch up', () => inf.get(ns, 'cut-x')?.data?.v === '2' && inf.get(ns, 'cut-y') && !inf.get(ns, 'cut-z'), {
        timeoutMs: 10_000,
      });
      const h = inf.health();
      assert.ok(h.restarts >= 2, `restarts counted (${h.restarts})`);
      assert.ok(h.lastError, 'the last error is reported');
      assert.ok(h.watching, 'watching again');
      assert.ok(events.some((e) => e.type === 'delete' && e.name === 'cut-z'));
    });

    it('a relist finds a deletion that a half-dead watch never delivered', async function () {
      await kubectlOk(['create', '-f', '-'], { input: configMap(ns, 'relist-gone', { v: '1' }) });
      const { proxy, kc } = await startProxy();
      cleanup.push(() => proxy.close());
      const inf = new ResilientInformer<ConfigMap>({
        kubeConfig: kc,
        path: `/api/v1/namespaces/${ns}/configmaps`,
        relistIntervalMs: 1500,
        idleTimeoutMs: 60_000, // the watchdog stays out of it: only the relist can notice
        logger: quiet,
      });
      const events = recordEvents(inf);
      inf.start();
      cleanup.push(() => inf.stop());
      await inf.waitForSync();
      await waitFor('the watch to be open', () => inf.health().watching);
      const relists = inf.health().relists;

      proxy.freeze();
      await kubectlOk(['-n', ns, 'delete', 'configmap', 'relist-gone']);
      await waitFor('the delete', () => events.find((e) => e.type === 'delete' && e.name === 'relist-gone'), { timeoutMs: 6000 });
      const del = events.find((e) => e.type === 'delete')!;
      assert.equal(del.finalStateUnknown, true, 'reported as found by a relist');
      assert.ok(inf.health().relists > relists);
      assert.equal(inf.get(ns, 'relist-gone'), undefined);
    });

    it('the watchdog restarts a watch that went silent', async function () {
      await kubectlOk(['create', '-f', '-'], { input: configMap(ns, 'silent', { v: '1' }) });
      const { proxy, kc } = await startProxy();
      cleanup.push(() => proxy.close());
      const inf = new ResilientInformer<ConfigMap>({
        kubeConfig: kc,
        path: `/api/v1/namespaces/${ns}/configmaps`,
        relistIntervalMs: 0,
        idleTimeoutMs: 1000,
        logger: quiet,
      });
      inf.start();
      cleanup.push(() => inf.stop());
      await inf.waitForSync();
      await waitFor('the watch to be open', () => inf.health().watching);

      proxy.freeze();
      await kubectlOk(['-n', ns, 'patch', 'configmap', 'silent', '--type=merge', '-p', '{"data":{"v":"2"}}']);
      await waitFor('the update through a new watch', () => inf.get(ns, 'silent')?.data?.v === '2', { timeoutMs: 6000 });
      const h = inf.health();
      assert.ok(h.restarts >= 1, `a watchdog restart is counted (${h.restarts})`);
      assert.equal(h.relists, 1, 'caught up by resuming the watch, not by listing again');
    });

    it('reports a CRD that is not installed, keeps checking, picks it up once installed, and copes with its removal', async function () {
      const group = `${ns}.kit.example.com`;
      const inf = new ResilientInformer<KubeObject>({
        kubeConfig: kubeConfig(),
        path: `/apis/${group}/v1/widgets`,
        notInstalledRetryMs: 300,
        initialBackoffMs: 100,
        logger: quiet,
      });
      const added: string[] = [];
      inf.on('add', (o) => added.push(o.metadata!.name!));
      inf.start();
      cleanup.push(() => inf.stop());
      await inf.waitForSync();
      assert.equal(inf.isInstalled(), false);
      assert.match(inf.health().lastError ?? '', /404/);
      await sleep(800); // a few slow retries: still alive, still empty
      assert.equal(inf.isInstalled(), false);
      assert.equal(inf.size(), 0);

      const crd = {
        apiVersion: 'apiextensions.k8s.io/v1',
        kind: 'CustomResourceDefinition',
        metadata: { name: `widgets.${group}` },
        spec: {
          group,
          scope: 'Cluster',
          names: { plural: 'widgets', singular: 'widget', kind: 'Widget', listKind: 'WidgetList' },
          versions: [{ name: 'v1', served: true, storage: true, schema: { openAPIV3Schema: { type: 'object', 'x-kubernetes-preserve-unknown-fields': true } } }],
        },
      };
      await kubectlOk(['create', '-f', '-'], { input: JSON.stringify(crd) });
      cleanup.push(() => kubectl(['delete', 'crd', `widgets.${group}`, '--wait=false']));
      await kubectlOk(['wait', '--for=condition=Established', '--timeout=30s', `crd/widgets.${group}`]);
      await waitFor('the widget to be created', async () => (await kubectl(['create', '-f', '-'], { input: JSON.stringify({ apiVersion: `${group}/v1`, kind: 'Widget', metadata: { name: 'w1' } }) })).code === 0, { timeoutMs: 10_000 });
      await waitFor('the informer to see the widget', () => added.includes('w1'), { timeoutMs: 10_000 });
      assert.equal(inf.isInstalled(), true);
      assert.equal(inf.getByKey('w1')?.kind, 'Widget');

      // And uninstalled again under a running watch: the objects go, the informer keeps going.
      await kubectlOk(['delete', 'crd', `widgets.${group}`, '--timeout=30s']);
      await waitFor('the informer to see the CRD gone', () => inf.isInstalled() === false && inf.size() === 0, { timeoutMs: 15_000 });
    });
  });

  describe('LeaderElector (2-second lease)', function () {
    const timing = { leaseDurationSeconds: 2, renewDeadlineMs: 1500, retryPeriodMs: 250 };

    function elector(lease: string, identity: string, log: string[], gates: { mayAcquire?: () => boolean; shouldYield?: () => boolean } = {}) {
      const state = { signal: undefined as AbortSignal | undefined, stopped: 0 };
      const e = new LeaderElector({
        kubeConfig: kubeConfig(),
        name: lease,
        namespace: ns,
        identity,
        ...timing,
        ...gates,
        logger: quiet,
        onStartedLeading: (signal) => {
          state.signal = signal;
          log.push(`${identity} started`);
        },
        onStoppedLeading: () => {
          state.stopped++;
          log.push(`${identity} stopped`);
        },
      });
      cleanup.push(() => e.stop({ release: false }));
      return { e, state };
    }

    it('exactly one of two leads; the other takes over within two lease durations after the leader crashes', async function () {
      const log: string[] = [];
      const a = elector('kit-crash', 'a', log);
      const b = elector('kit-crash', 'b', log);
      a.e.start();
      b.e.start();
      const leader = await waitFor('a leader', () => (a.e.isLeader() ? a : b.e.isLeader() ? b : undefined), { timeoutMs: 10_000, intervalMs: 20 });
      const follower = leader === a ? b : a;
      // Watch for a while: never two leaders.
      for (let i = 0; i < 30; i++) {
        assert.ok(!(a.e.isLeader() && b.e.isLeader()), 'two leaders at once');
        assert.ok(leader.e.isLeader(), 'leadership kept while renewing');
        await sleep(50);
      }
      assert.equal(log.length, 1);

      // Crash: stop renewing without releasing.
      const t0 = performance.now();
      await leader.e.stop({ release: false });
      assert.equal(leader.state.signal?.aborted, true);
      await waitFor('the follower to take over', () => follower.e.isLeader(), { timeoutMs: 10_000, intervalMs: 20 });
      const took = performance.now() - t0;
      assert.ok(took < 2 * 2000, `took over in ${Math.round(took)} ms, over two lease durations`);
      assert.ok(took > 2000 - 2 * timing.retryPeriodMs, `took over in ${Math.round(took)} ms, before the lease could have expired`);
      assert.equal(follower.e.stats().acquisitions, 1);
    });

    it('a released lease is taken over at once', async function () {
      const log: string[] = [];
      const a = elector('kit-release', 'a', log);
      a.e.start();
      await waitFor('a to lead', () => a.e.isLeader(), { intervalMs: 20 });
      const b = elector('kit-release', 'b', log);
      b.e.start();
      await sleep(500);
      assert.equal(b.e.isLeader(), false);
      const t0 = performance.now();
      await a.e.stop(); // releases
      await waitFor('b to lead', () => b.e.isLeader(), { timeoutMs: 5000, intervalMs: 20 });
      const took = performance.now() - t0;
      assert.ok(took < 1500, `took over in ${Math.round(took)} ms after the release`);
      assert.deepEqual(log, ['a started', 'a stopped', 'b started']);
    });

    it('a leader whose Lease is taken by someone else aborts its signal at once, without writing again', async function () {
      const log: string[] = [];
      const c = elector('kit-steal', 'c', log);
      c.e.start();
      await waitFor('c to lead', () => c.e.isLeader(), { intervalMs: 20 });
      let abortedAt = 0;
      c.state.signal!.addEventListener('abort', () => (abortedAt = performance.now()));

      const api = kubeConfig().makeApiClient(k8s.CoordinationV1Api);
      const lease = await api.readNamespacedLease({ name: 'kit-steal', namespace: ns });
      const now = microTime() as unknown as Date;
      lease.spec = { ...lease.spec, holderIdentity: 'thief', renewTime: now, acquireTime: now, leaseDurationSeconds: 30 };
      await api.replaceNamespacedLease({ name: 'kit-steal', namespace: ns, body: lease });
      const stolenAt = performance.now();

      await waitFor('c to notice', () => abortedAt > 0, { timeoutMs: 5000, intervalMs: 10 });
      assert.ok(abortedAt - stolenAt < timing.retryPeriodMs + 500, `aborted ${Math.round(abortedAt - stolenAt)} ms after the theft`);
      assert.equal(c.e.isLeader(), false);
      assert.match(String((c.state.signal!.reason as Error).message), /leadership lost/);
      assert.equal(c.state.stopped, 1);
      await sleep(600);
      const after = await api.readNamespacedLease({ name: 'kit-steal', namespace: ns });
      assert.equal(after.spec?.holderIdentity, 'thief', 'the deposed leader did not write the Lease back');
      assert.equal(c.e.stats().losses, 1);
    });

    it('mayAcquire false keeps a candidate from creating or taking over a Lease; shouldYield hands a held one over at once', async function () {
      const log: string[] = [];
      let mayTake = false;
      const waiting = elector('kit-gated', 'w', log, { mayAcquire: () => mayTake });
      waiting.e.start();
      await sleep(1000);
      const api = kubeConfig().makeApiClient(k8s.CoordinationV1Api);
      assert.equal(await api.readNamespacedLease({ name: 'kit-gated', namespace: ns }).then(() => 'exists', () => 'absent'), 'absent', 'not even created');
      let yieldNow = false;
      const holder = elector('kit-gated', 'h', log, { shouldYield: () => yieldNow });
      holder.e.start();
      await waitFor('h to lead', () => holder.e.isLeader(), { intervalMs: 20 });
      await holder.e.stop({ release: false });
      await sleep(2 * 2000 + 500);
      assert.equal(waiting.e.isLeader(), false, 'an expired Lease is not taken while mayAcquire says no');
      mayTake = true;
      await waitFor('w to take it once it may', () => waiting.e.isLeader(), { timeoutMs: 5000, intervalMs: 20 });

      // The other way round: a leader told to yield stops acting, then releases; the candidate takes it at once.
      const log2: string[] = [];
      // Told to yield, it must not take the Lease straight back either (as a shard's replica is told).
      const leader = elector('kit-yield', 'y', log2, { shouldYield: () => yieldNow, mayAcquire: () => !yieldNow });
      leader.e.start();
      await waitFor('y to lead', () => leader.e.isLeader(), { intervalMs: 20 });
      const next = elector('kit-yield', 'z', log2);
      next.e.start();
      await sleep(500);
      yieldNow = true;
      const t0 = performance.now();
      await waitFor('z to lead', () => next.e.isLeader(), { timeoutMs: 5000, intervalMs: 20 });
      assert.ok(performance.now() - t0 < 1500, 'handed over without waiting for the lease to expire');
      assert.equal(leader.state.signal?.aborted, true);
      assert.deepEqual(log2, ['y started', 'y stopped', 'z started'], 'y stopped acting before z started');
    });
  });

  describe('EventRecorder', function () {
    it('aggregates repeats into one Event that kubectl describe shows, and rate-limits per object', async function () {
      await kubectlOk(['create', '-f', '-'], { input: configMap(ns, 'described', { v: '1' }) });
      const cm = JSON.parse(await kubectlOk(['-n', ns, 'get', 'configmap', 'described', '-o', 'json'])) as KubeObject;
      const rec = new EventRecorder({ kubeConfig: kubeConfig(), reportingInstance: 'kit-test', burst: 4, refillIntervalMs: 600_000, logger: quiet });
      for (let i = 0; i < 3; i++) await rec.normal(cm, 'Synced', 'all good');
      await rec.warning(cm, 'CheckFailed', 'error rate 7% above 5%');
      // The bucket (4) is empty now: these are dropped, and never throw.
      await rec.warning(cm, 'CheckFailed', 'error rate 9% above 5%');
      await rec.normal({ metadata: {} }, 'Broken', 'an object without a name is refused quietly');
      await rec.flush();

      const list = JSON.parse(await kubectlOk(['-n', ns, 'get', 'events', '--field-selector', 'involvedObject.name=described', '-o', 'json'])) as {
        items: Array<{ reason: string; count: number; type: string; reportingComponent: string; reportingInstance: string; involvedObject: { uid: string } }>;
      };
      const synced = list.items.filter((e) => e.reason === 'Synced');
      assert.equal(synced.length, 1, 'one Event for three repeats');
      assert.equal(synced[0]!.count, 3);
      assert.equal(synced[0]!.reportingComponent, 'canarygate.dev/reconciler');
      assert.equal(synced[0]!.reportingInstance, 'kit-test');
      assert.equal(synced[0]!.involvedObject.uid, cm.metadata!.uid);
      assert.equal(list.items.filter((e) => e.reason === 'CheckFailed').length, 1, 'the second warning was rate-limited');
      assert.deepEqual(rec.stats(), { created: 2, aggregated: 2, dropped: 1, failed: 0 });

      const described = await kubectlOk(['-n', ns, 'describe', 'configmap', 'described']);
      assert.match(described, /Normal\s+Synced\s+.*canarygate\.dev\/reconciler\s+all good/);
      assert.match(described, /Warning\s+CheckFailed\s+.*error rate 7% above 5%/);
    });
  });
});
