// The reconciler: informers feed a work queue keyed by the Canary's
// namespace/name; one sync builds one context from the caches
// (observe/context.ts), asks the pure state machine (decide/transition.ts)
// for the next step, runs the checks it asks for, writes the status (intent
// first), sends the step's notifications once (notify/notifier.ts) and then
// applies the effects (apply/effects.ts).

import { performance } from 'node:perf_hooks';
import * as k8s from '@kubernetes/client-node';
import type { Logger } from 'pino';
import { errorMessage } from '../core/api/client.js';
import type { AlertProvider, Canary, CanarySpec, MetricTemplate } from '../core/api/types.js';
import { CANARY_ROLE, DEFAULTS_LABEL, GROUP, MANAGED_LABEL, FREEZE_LABEL, NAMESPACE_ENABLED_LABEL, REVISION_LABEL, ROLE_LABEL, SKIP_LABEL, TRUE, VERSION, canaryName } from '../core/contract.js';
import { ConfigLookups } from './apply/configs.js';
import { applyInUse } from './apply/in-use.js';
import { Registry, type Gauge, type Histogram } from '../core/metrics.js';
import { targetKind } from '../core/targets/index.js';
import { runChecks, type MetricChecker } from './analysis/checks.js';
import { sendEvent, runGates } from './analysis/gates.js';
import { TemplateMetricChecker } from './analysis/metrics/checker.js';
import { secretReader } from './analysis/metrics/secrets.js';
import { applyEffect, NotLeaderError, writeCounter, type EffectClients, type EffectHooks } from './apply/effects.js';
import { targetClient } from './apply/targets.js';
import { ControllerReason, EventReason } from './decide/reasons.js';
import { transition, type Observed, type Transition } from './decide/transition.js';
import { ResilientInformer, type KubeObject } from './kit/informer.js';
import { WorkQueue } from './kit/queue.js';
import { Alerter } from './notify/alerts.js';
import { Notifier } from './notify/notifier.js';
import type { Caches, HttpRoute } from './observe/caches.js';
import { routerFamily, type RouterFamily, type RouterResource } from '../core/providers.js';
import { buildSyncContext, pendingChange, targetCache, type SyncContext } from './observe/context.js';
import { UpstreamReader } from './observe/upstream.js';
import { upstreamBlock } from './decide/stages.js';
import { defaultCanaryFor } from './observe/defaults.js';
import { Routers, watchedRouterResourcesByFamily } from './routers/index.js';

/** An object an Event is about: a Canary, or a target canary-gate released. */
export interface EventObject {
  apiVersion?: string;
  kind?: string;
  metadata?: { name?: string; namespace?: string; uid?: string };
}

export interface EventSink {
  record(obj: EventObject, type: 'Normal' | 'Warning', reason: string, message: string): void;
}

export interface ReconcilerOptions {
  kubeConfig: k8s.KubeConfig;
  logger: Logger;
  workers?: number;
  /** Spec defaults for Canaries created for Deployments in opted-in namespaces. */
  defaults?: Partial<CanarySpec>;
  metrics?: MetricChecker;
  events: EventSink;
  /**
   * True while this process may write for Canaries of the namespace (the
   * leader, or the replica leading the namespace's shard); checked before
   * every write.
   */
  isLeader: (namespace: string) => boolean;
  /** Full relist period of the informers. */
  relistIntervalMs?: number;
  registry?: Registry;
  /** Prometheus for the built-in request-success-rate and request-duration checks. */
  prometheusAddress?: string;
  /** Watch and act in this namespace only (default: all namespaces). */
  namespace?: string;
  /** How long a managed object that no Canary targets waits before it is released (a new Canary may not be in the cache yet). */
  orphanGraceMs?: number;
  /** The namespace whose label canarygate.dev/freeze=all freezes every run (the reconciler's own). */
  clusterFreezeNamespace?: string;
}

const DEFAULT_ORPHAN_GRACE_MS = 10_000;

export class Reconciler {
  readonly queue: WorkQueue;
  readonly caches: Caches;
  private readonly informers: ResilientInformer<KubeObject>[] = [];
  /** The informers of each router family's resources, started on first use (routerInformersReady). */
  private readonly routerInformers = new Map<RouterFamily, ResilientInformer<KubeObject>[]>();
  private readonly api: EffectClients;
  private readonly routers: Routers;
  private readonly upstream: UpstreamReader;
  /** What look-ups of configs outside the managed caches found (apply/configs.ts). */
  private readonly configLookups = new ConfigLookups();
  private readonly log: Logger;
  /** target "ns/Kind/name" -> Canary keys that name it. */
  private readonly byTarget = new Map<string, Set<string>>();
  /** resourceVersion of the last status this process wrote, per Canary key. */
  private readonly lastWritten = new Map<string, string>();
  /** resourceVersion of the last promotion write to each Canary's target. */
  private readonly targetWritten = new Map<string, string>();
  private running?: Promise<void>;
  /** Targets waiting out the grace period before they are released (see releaseOrphan). */
  private readonly orphanChecks = new Map<string, NodeJS.Timeout>();
  private readonly m: ReturnType<typeof reconcilerMetrics>;
  private readonly metrics!: MetricChecker;
  private readonly alerter!: Alerter;
  private readonly notifier!: Notifier;

  constructor(private readonly opts: ReconcilerOptions) {
    this.log = opts.logger;
    const registry = opts.registry ?? new Registry();
    this.m = reconcilerMetrics(registry);
    const kc = opts.kubeConfig;
    this.api = {
      apps: kc.makeApiClient(k8s.AppsV1Api),
      core: kc.makeApiClient(k8s.CoreV1Api),
      custom: kc.makeApiClient(k8s.CustomObjectsApi),
      autoscaling: kc.makeApiClient(k8s.AutoscalingV2Api),
    };
    const scope = opts.namespace;
    const informer = <T extends KubeObject>(path: string, name: string, labelSelector?: string, fieldSelector?: string, lazy = false) => {
      // /apis/G/V/R -> /apis/G/V/namespaces/NS/R when scoped to one namespace
      const scoped = scope && name !== 'namespaces' ? path.replace(/\/([a-z]+)$/, `/namespaces/${scope}/$1`) : path;
      const inf = new ResilientInformer<T>({
        kubeConfig: kc,
        path: scoped,
        name,
        ...(fieldSelector ? { fieldSelector } : {}),
        logger: this.log,
        ...(labelSelector ? { labelSelector } : {}),
        ...(opts.relistIntervalMs !== undefined ? { relistIntervalMs: opts.relistIntervalMs } : {}),
        transform: withoutManagedFields,
      });
      if (!lazy) this.informers.push(inf as unknown as ResilientInformer<KubeObject>);
      return inf;
    };
    const cache = <T extends KubeObject>(inf: ResilientInformer<T>) => ({
      get: (ns: string, n: string) => inf.get(ns, n),
      list: (ns?: string) => (ns === undefined ? inf.list() : inf.listNamespace(ns)),
    });
    const canaries = informer<Canary & KubeObject>(`/apis/${GROUP}/${VERSION}/canaries`, 'canaries');
    const deployments = informer<k8s.V1Deployment & KubeObject>('/apis/apps/v1/deployments', 'deployments');
    const services = informer<k8s.V1Service & KubeObject>('/api/v1/services', 'services');
    const namespaces = informer<k8s.V1Namespace & KubeObject>('/api/v1/namespaces', 'namespaces', undefined, scope ? `metadata.name=${scope}` : undefined);
    const hpas = informer<k8s.V2HorizontalPodAutoscaler & KubeObject>('/apis/autoscaling/v2/horizontalpodautoscalers', 'hpas');
    // One informer per resource the routers write (core/providers.ts),
    // started only once a Canary uses a router that writes it: a cluster
    // with no mesh pays nothing for the meshes' CRDs (a CRD not installed
    // is otherwise listed again every 30 s).
    const routerInformers = new Map<string, ResilientInformer<KubeObject>>();
    const resourceKey = (r: RouterResource) => `${r.group}/${r.version}/${r.plural}`;
    for (const [family, resources] of watchedRouterResourcesByFamily()) {
      const set: ResilientInformer<KubeObject>[] = [];
      for (const r of resources) {
        let inf = routerInformers.get(resourceKey(r));
        if (!inf) {
          const path = r.group ? `/apis/${r.group}/${r.version}/${r.plural}` : `/api/${r.version}/${r.plural}`;
          routerInformers.set(resourceKey(r), (inf = informer<KubeObject>(path, r.plural, undefined, undefined, true)));
        }
        set.push(inf);
      }
      this.routerInformers.set(family, set);
    }
    const httpRoutes = routerInformers.get('gateway.networking.k8s.io/v1/httproutes') as unknown as ResilientInformer<HttpRoute & KubeObject>;
    const defaults = informer<k8s.V1ConfigMap & KubeObject>('/api/v1/configmaps', 'defaults', `${DEFAULTS_LABEL}=true`);
    // Only the ConfigMaps and Secrets canary-gate manages or made: a
    // cluster's other configs (and their Secret values) never enter memory.
    const managedConfigMaps = informer<k8s.V1ConfigMap & KubeObject>('/api/v1/configmaps', 'managed-configmaps', `${MANAGED_LABEL}=${TRUE}`);
    const managedSecrets = informer<k8s.V1Secret & KubeObject>('/api/v1/secrets', 'managed-secrets', `${MANAGED_LABEL}=${TRUE}`);
    const configMapCopies = informer<k8s.V1ConfigMap & KubeObject>('/api/v1/configmaps', 'configmap-copies', `${ROLE_LABEL}=${CANARY_ROLE}`);
    const secretCopies = informer<k8s.V1Secret & KubeObject>('/api/v1/secrets', 'secret-copies', `${ROLE_LABEL}=${CANARY_ROLE}`);
    const metricTemplates = informer<MetricTemplate & KubeObject>(`/apis/${GROUP}/${VERSION}/metrictemplates`, 'metrictemplates');
    const alertProviders = informer<AlertProvider & KubeObject>(`/apis/${GROUP}/${VERSION}/alertproviders`, 'alertproviders');
    this.caches = {
      canaries: cache(canaries),
      deployments: cache(deployments),
      services: cache(services),
      namespaces: cache(namespaces),
      hpas: cache(hpas),
      httpRoutes: cache(httpRoutes),
      routerObjects: (r: RouterResource) => {
        const inf = routerInformers.get(resourceKey(r));
        return inf ? cache(inf) : undefined;
      },
      defaults: cache(defaults),
      configs: {
        managed: { ConfigMap: cache(managedConfigMaps), Secret: cache(managedSecrets) },
        copies: { ConfigMap: cache(configMapCopies), Secret: cache(secretCopies) },
        lookup: (kind, namespace, name) => this.configLookups.get(kind, namespace, name),
      },
      metricTemplates: cache(metricTemplates),
      alertProviders: cache(alertProviders),
    };
    const secret = secretReader(this.api.core);
    this.metrics =
      opts.metrics ??
      new TemplateMetricChecker(
        {
          template: (ns, n) => this.caches.metricTemplates.get(ns, n),
          secret,
          ...(scope ? { watchedNamespace: scope } : {}),
          ...(opts.prometheusAddress ? { builtinPrometheus: opts.prometheusAddress } : {}),
        },
        { registry },
      );
    this.alerter = new Alerter({ provider: (ns, n) => this.caches.alertProviders.get(ns, n), secret }, { logger: this.log, registry });
    this.notifier = new Notifier({
      record: (c, type, reason, message) => opts.events.record(c, type, reason, message),
      alert: (c, alert) => this.alerter.send(c, alert),
      eventWebhook: (hooks, payload) => sendEvent(hooks, payload),
      postRollout: async (hooks, payload) => {
        // The result changes nothing; it is counted and a failure is logged (gate messages carry no secrets).
        for (const r of await runGates(hooks, payload)) {
          this.m.gateResults.labels('post-rollout', r.passed ? 'pass' : 'fail').inc();
          if (!r.passed) this.log.warn({ canary: `${payload.namespace}/${payload.name}`, revision: payload.revision, gate: r.name }, r.message);
        }
      },
      log: (fields, message) => this.log.info(fields, message),
    });
    this.routers = new Routers({ core: this.api.core, custom: this.api.custom, caches: this.caches });
    this.upstream = new UpstreamReader({
      canaries: this.caches.canaries,
      readSecret: (namespace, name) => this.api.core.readNamespacedSecret({ namespace, name }),
      watches: (namespace) => !scope || namespace === scope,
      readCanary: async (namespace, name) => (await this.api.custom.getNamespacedCustomObject({ group: GROUP, version: VERSION, namespace, plural: 'canaries', name })) as Canary,
    });
    this.queue = new WorkQueue({
      name: 'canaries',
      onError: (key, err, retries) => {
        if (err instanceof NotLeaderError) return;
        this.log.warn({ canary: key, retries, err: errorMessage(err) }, 'sync failed; retrying with backoff');
      },
    });

    canaries.on('add', (c) => this.onCanary(c));
    canaries.on('update', (c, old) => {
      this.unindex(old);
      this.onCanary(c);
    });
    canaries.on('delete', (c) => {
      this.unindex(c);
      this.lastWritten.delete(keyOf(c));
      this.targetWritten.delete(keyOf(c));
    });
    onAny(deployments, (d) => this.onWorkload('Deployment', d));
    onAny(services, (s) => this.onWorkload('Service', s));
    for (const inf of routerInformers.values()) onAny(inf, (r) => this.enqueueNamespace(r.metadata?.namespace ?? ''));
    onAny(hpas, (h) => this.enqueueNamespace(h.metadata?.namespace ?? ''));
    // A config changed, labelled or copied: the Canaries of its namespace look again (cheap: caches only).
    for (const inf of [managedConfigMaps, managedSecrets, configMapCopies, secretCopies] as ResilientInformer<KubeObject>[]) onAny(inf, (o) => this.enqueueNamespace(o.metadata?.namespace ?? ''));
    namespaces.on('update', (ns, old) => {
      // A freeze set or lifted acts within one sync of every Canary in its scope.
      if (ns.metadata?.labels?.[FREEZE_LABEL] !== old.metadata?.labels?.[FREEZE_LABEL]) {
        if (ns.metadata?.name === opts.clusterFreezeNamespace) for (const c of this.caches.canaries.list()) this.queue.add(keyOf(c as KubeObject));
        else this.enqueueNamespace(ns.metadata?.name ?? '');
      }
      if (ns.metadata?.labels?.[NAMESPACE_ENABLED_LABEL] !== old.metadata?.labels?.[NAMESPACE_ENABLED_LABEL]) {
        for (const d of this.caches.deployments.list(ns.metadata?.name)) this.onWorkload('Deployment', d as KubeObject);
      }
    });
    namespaces.on('add', (ns) => {
      for (const d of this.caches.deployments.list(ns.metadata?.name)) this.onWorkload('Deployment', d as KubeObject);
    });
  }

  /** Starts the informers; resolves once their caches are filled. */
  async startInformers(signal?: AbortSignal): Promise<void> {
    for (const inf of this.informers) inf.start();
    await Promise.all(this.informers.map((inf) => inf.waitForSync(signal)));
  }

  /** Starts processing (call when leading). */
  startWorkers(): void {
    if (this.running) return;
    this.running = this.queue.run((key, queuedAt) => this.sync(key, queuedAt), this.opts.workers ?? 4);
    for (const c of this.caches.canaries.list()) this.queue.add(keyOf(c as KubeObject));
    for (const d of this.caches.deployments.list()) this.onWorkload('Deployment', d as KubeObject);
  }

  /** Queues every Canary, and replays every Deployment, of the namespaces given: a shard just taken. */
  replay(namespaces: (ns: string) => boolean): void {
    if (!this.running) return;
    for (const c of this.caches.canaries.list()) if (namespaces(c.metadata?.namespace ?? '')) this.queue.add(keyOf(c as KubeObject));
    for (const d of this.caches.deployments.list()) if (namespaces(d.metadata?.namespace ?? '')) this.onWorkload('Deployment', d as KubeObject);
  }

  async stop(): Promise<void> {
    for (const timer of this.orphanChecks.values()) clearTimeout(timer);
    this.orphanChecks.clear();
    await this.queue.shutDown();
    await Promise.all(this.informers.map((inf) => inf.stop()));
  }

  informerHealth() {
    return this.informers.map((i) => i.health());
  }

  /**
   * Starts the informers of the router a Canary's provider names, the first
   * time one asks; true once their caches are filled (a CRD found not
   * installed counts: there is nothing to cache).
   */
  private routerInformersReady(provider: string | undefined): boolean {
    const set = this.routerInformers.get(routerFamily(provider) ?? 'kubernetes') ?? [];
    for (const inf of set) {
      if (this.informers.includes(inf)) continue;
      this.informers.push(inf);
      inf.start();
    }
    return set.every((inf) => inf.hasSynced());
  }

  /** Refreshes the gauges from the caches; called at scrape time, so syncs pay nothing. */
  collectMetrics(): void {
    const { m } = this;
    m.weight.reset();
    m.phase.reset();
    m.failedChecks.reset();
    for (const c of this.caches.canaries.list()) {
      const ns = c.metadata.namespace ?? '';
      const name = c.metadata.name ?? '';
      m.weight.labels(ns, name).set(c.status?.canaryWeight ?? 0);
      m.failedChecks.labels(ns, name).set(c.status?.failedChecks ?? 0);
      m.phase.labels(ns, name, c.status?.phase ?? 'Initializing').set(1);
    }
    for (const h of this.informerHealth()) {
      m.informerSynced.labels(h.name).set(h.synced ? 1 : 0);
      m.informerRestarts.labels(h.name).set(h.restarts);
      m.informerObjects.labels(h.name).set(h.objects);
      m.informerLastEvent.labels(h.name).set(h.lastEventTime ? h.lastEventTime / 1000 : 0);
    }
    const q = this.queue.stats();
    m.queueDepth.set(q.depth);
    m.apiWrites.set(writeCounter.writes);
  }

  // ------------------------------------------------------------ event routing

  private onCanary(c: Canary): void {
    const key = keyOf(c as KubeObject);
    const ref = c.spec?.targetRef;
    if (ref) {
      const t = targetKey(c.metadata.namespace ?? '', ref.kind, ref.name);
      let set = this.byTarget.get(t);
      if (!set) this.byTarget.set(t, (set = new Set()));
      set.add(key);
    }
    this.queue.add(key);
  }

  private unindex(c: Canary): void {
    const ref = c.spec?.targetRef;
    if (!ref) return;
    const t = targetKey(c.metadata.namespace ?? '', ref.kind, ref.name);
    this.byTarget.get(t)?.delete(keyOf(c as KubeObject));
  }

  private onWorkload(kind: 'Deployment' | 'Service', obj: KubeObject): void {
    const ns = obj.metadata?.namespace ?? '';
    const name = obj.metadata?.name ?? '';
    const labels = (obj.metadata as k8s.V1ObjectMeta | undefined)?.labels ?? {};
    // A canary copy: its owner Canary wants to know about readiness changes.
    const revisionOwner = labels[REVISION_LABEL] !== undefined ? name.replace(/-canary$/, '') : undefined;
    const candidates = [targetKey(ns, kind, name)];
    if (revisionOwner) candidates.push(targetKey(ns, kind, revisionOwner));
    let matched = false;
    for (const t of candidates) {
      for (const key of this.byTarget.get(t) ?? []) {
        this.queue.add(key);
        matched = true;
      }
    }
    if (!matched && !revisionOwner && labels[MANAGED_LABEL] === TRUE) this.scheduleOrphanCheck(kind, ns, name);
    if (kind === 'Service') {
      // Apex or router Services of a Deployment target carry other names; look them up cheaply by namespace.
      if (!matched && (name.endsWith('-primary') || name.endsWith('-canary'))) this.enqueueNamespace(ns);
      return;
    }
    if (matched || revisionOwner || !this.opts.isLeader(ns)) return;
    this.maybeCreateCanary(obj as k8s.V1Deployment);
  }

  /**
   * A Deployment or Service labelled managed that no Canary targets (the user
   * put the label there, or its Canary went without its finalizer running):
   * the webhook would hold its changes forever. After a grace period, in
   * which a new Canary can reach the cache, it is released: the label is
   * removed and a Warning Event on the object says so, naming a pending
   * change that is not live. Nothing is promoted without analysis.
   */
  private scheduleOrphanCheck(kind: 'Deployment' | 'Service', ns: string, name: string): void {
    const key = targetKey(ns, kind, name);
    if (!this.running || !this.opts.isLeader(ns) || this.orphanChecks.has(key)) return;
    const timer = setTimeout(() => {
      this.orphanChecks.delete(key);
      this.releaseOrphan(kind, ns, name).catch((err: unknown) => {
        this.log.warn({ namespace: ns, name, kind, err: errorMessage(err) }, 'could not release a managed object that no Canary targets; trying again');
        this.scheduleOrphanCheck(kind, ns, name);
      });
    }, this.opts.orphanGraceMs ?? DEFAULT_ORPHAN_GRACE_MS);
    timer.unref();
    this.orphanChecks.set(key, timer);
  }

  private async releaseOrphan(kind: 'Deployment' | 'Service', ns: string, name: string): Promise<void> {
    const adapter = targetKind(kind);
    const obj = targetCache(adapter, this.caches).get(ns, name);
    if (!obj || obj.metadata?.labels?.[MANAGED_LABEL] !== TRUE || obj.metadata.deletionTimestamp) return;
    if ((this.byTarget.get(targetKey(ns, kind, name))?.size ?? 0) > 0 || !this.running || !this.opts.isLeader(ns)) return;
    // With the resourceVersion read: a Canary adopting it meanwhile makes this fail instead.
    const body = { metadata: { resourceVersion: obj.metadata.resourceVersion, labels: { [MANAGED_LABEL]: null } } };
    writeCounter.writes++;
    await targetClient(adapter, this.api).patch(name, ns, body, k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.MergePatch));
    const pending = pendingChange(obj);
    const held = pending && !('error' in pending) ? ` The change held as pending revision ${pending.revision} is not live: apply it again to deploy it, or create a Canary for it.` : '';
    const message = `no Canary targets this ${kind}: canary-gate released it (label ${MANAGED_LABEL} removed), so its changes are no longer held.${held}`;
    this.log.warn({ namespace: ns, name, kind }, message);
    this.opts.events.record({ apiVersion: adapter.group ? `${adapter.group}/${adapter.version}` : adapter.version, kind, metadata: { name, namespace: ns, uid: obj.metadata?.uid ?? '' } }, 'Warning', 'Released', message);
  }

  /**
   * The verdict of the upstream stages (spec.promotion.after) on the pending
   * change, read only while a change waits to start: a running change is
   * not stopped by what happens upstream later.
   */
  private async readUpstream(canary: Canary, observed: Observed): Promise<void> {
    if (!canary.spec.promotion?.after?.length) return;
    observed.hasUpstream = true;
    const pending = observed.changes?.pending;
    const phase = observed.status.phase ?? 'Initializing';
    if (!pending || phase === 'Initializing' || phase === 'Terminating') return;
    // A run already started goes on whatever happens upstream; a newer change replacing it is judged like any other.
    if (['Progressing', 'WaitingPromotion', 'Promoting'].includes(phase) && observed.status.pendingRevision === pending.revision) return;
    const views = await this.upstream.views(canary);
    const block = upstreamBlock(canary.spec.promotion.identity, pending, views, observed.now);
    if (block) observed.upstream = block;
  }

  private enqueueNamespace(ns: string): void {
    for (const c of this.caches.canaries.list(ns)) this.queue.add(keyOf(c as KubeObject));
  }

  /** One namespace label opts every Deployment in: each gets a Canary from the defaults. */
  private maybeCreateCanary(d: k8s.V1Deployment): void {
    // While the caches fill, a Canary may exist that the cache has not shown
    // yet; startWorkers() replays every Deployment once they are synced.
    if (!this.running) return;
    const ns = d.metadata?.namespace ?? '';
    const namespace = this.caches.namespaces.get('', ns);
    if (namespace?.metadata?.labels?.[NAMESPACE_ENABLED_LABEL] !== TRUE) return;
    if (d.metadata?.labels?.[SKIP_LABEL] === TRUE || d.metadata?.deletionTimestamp) return;
    if ((d.metadata?.ownerReferences ?? []).some((o) => o.apiVersion?.startsWith(`${GROUP}/`))) return;
    const name = d.metadata?.name ?? '';
    if (this.caches.canaries.get(ns, name)) return; // a Canary of that name exists for another target
    const body = defaultCanaryFor(d, this.opts.defaults ?? {}, this.caches.defaults.list(ns));
    if (!this.opts.isLeader(ns)) return;
    this.api.custom
      .createNamespacedCustomObject({ group: GROUP, version: VERSION, namespace: ns, plural: 'canaries', body, fieldManager: 'canary-gate-reconciler' })
      .then(
        () => this.log.info({ namespace: ns, deployment: name }, 'created a Canary from the namespace defaults'),
        (err: unknown) => {
          if ((err as { code?: number }).code !== 409) this.log.warn({ namespace: ns, deployment: name, err: errorMessage(err) }, 'could not create a Canary');
        },
      );
  }

  // ------------------------------------------------------------ sync

  /** Reconciles one Canary. Returns when to look again. */
  async sync(key: string, queuedAt?: number): Promise<{ requeueAfterMs?: number } | void> {
    if (!this.opts.isLeader(splitKey(key)[0])) return;
    const t0 = performance.now();
    try {
      return await this.syncOnce(key, queuedAt ?? t0);
    } finally {
      this.m.syncDuration.observe((performance.now() - t0) / 1000);
    }
  }

  private async syncOnce(key: string, queuedAt: number): Promise<{ requeueAfterMs?: number } | void> {
    const [ns, name] = splitKey(key);
    const canary = this.caches.canaries.get(ns, name);
    if (!canary) return;
    if (!this.routerInformersReady(canary.spec.provider)) return { requeueAfterMs: 200 };
    // Our own last status write may not have reached the cache yet; acting on
    // the older status could repeat a step. Wait for the cache to catch up.
    const written = this.lastWritten.get(key);
    if (written && olderThan(canary.metadata.resourceVersion, written)) return { requeueAfterMs: 50 };
    // Likewise for a promotion write: acting before the cache shows it would promote twice.
    const targetWrite = this.targetWritten.get(key);
    if (targetWrite) {
      const ref = canary.spec.targetRef;
      const target = targetCache(targetKind(ref.kind), this.caches).get(ns, ref.name);
      if (target && olderThan(target.metadata?.resourceVersion, targetWrite)) return { requeueAfterMs: 50 };
      this.targetWritten.delete(key);
    }

    // One context for the whole sync: the state machine, the routers and the effects all read it.
    const seen = buildSyncContext(canary, this.caches, this.routers.for(canary.spec.provider), Date.now(), {
      ...(this.opts.clusterFreezeNamespace ? { clusterFreezeNamespace: this.opts.clusterFreezeNamespace } : {}),
    });
    if (seen.pendingError) this.opts.events.record(canary, 'Warning', ControllerReason.InvalidPendingRevision, seen.pendingError);
    await this.readUpstream(canary, seen.observed);

    let t: Transition = transition(seen.observed);
    if (t.checks) {
      const results = await runChecks(canary, seen.observed.status, t.checks, this.metrics);
      t = transition({ ...seen.observed, now: Date.now() }, results);
      for (const r of results) if (r.gateType) this.m.gateResults.labels(r.gateType, r.passed ? 'pass' : 'fail').inc();
    }

    this.observeStepLag(seen.observed, t, queuedAt);
    this.observeOutcome(seen.observed, t);
    // Intent first: the status says what is being done before it is done, so
    // that a process killed in between resumes the same step.
    const wrote = await this.writeStatus(key, canary, t);
    // What the step tells (events, alerts, event webhooks, post-rollout gates)
    // goes out once, now that its status is written and before any effect can
    // throw: the retried sync starts from the new status and does not repeat it.
    if (wrote) void this.notifier.deliver(canary, t);
    const hooks: EffectHooks = {
      targetWritten: (rv) => this.targetWritten.set(key, rv),
      assertLeader: () => {
        if (!this.opts.isLeader(ns)) throw new NotLeaderError('not the leader');
      },
    };
    hooks.configs = { caches: this.caches, lookups: this.configLookups };
    if (seen.autoscalers.copy) hooks.copyHpa = seen.autoscalers.copy;
    // Before the effects: a Canary whose finalizer the effects remove must release its configs first.
    await this.applyInUse(seen, hooks);
    for (const effect of t.effects) {
      try {
        await applyEffect(effect, seen, hooks, this.api);
      } catch (err) {
        // The API server refused what we wrote (typically a pending spec that
        // does not validate): say so on the Canary, then retry with backoff;
        // the progress deadline rolls the revision back if it never works.
        if ((err as { code?: number }).code === 422) {
          this.opts.events.record(canary, 'Warning', ControllerReason.Invalid, `${effect.type} was refused by the API server: ${errorMessage(err)}`);
        }
        throw err;
      }
    }
    if (t.requeueAt !== undefined) return { requeueAfterMs: Math.max(0, t.requeueAt - Date.now()) };
  }

  /** The finalizer canarygate.dev/in-use writes of a sync (observe/in-use.ts). */
  private async applyInUse(seen: SyncContext, hooks: EffectHooks): Promise<void> {
    const changes = seen.inUse;
    const managed = this.caches.configs?.managed;
    if (!changes || !managed || changes.add.length + changes.remove.length === 0) return;
    await applyInUse(changes, seen.namespace, (k, n) => managed[k].get(seen.namespace, n), this.api.core, async (fn) => {
      hooks.assertLeader();
      writeCounter.writes++;
      await fn();
    });
  }

  /**
   * Time from a step's due time (last step + interval) to the sync that took
   * it; and the reconciler's own part of it: from the later of the due time
   * and the moment the key was queued (by its timer, or by the event that
   * made the step's preconditions hold, such as the copy's Pods turning
   * ready) to the sync. The first counts waits for other controllers; the
   * second only this process.
   */
  private observeStepLag(observed: Observed, t: Transition, queuedAt: number): void {
    const before = observed.status.lastStepTime;
    const after = t.status.lastStepTime;
    if (!before || !after || before === after) return;
    const now = Date.now();
    const due = Date.parse(before) + observed.analysis.intervalMs;
    const queuedWall = now - (performance.now() - queuedAt);
    this.m.stepLag.observe(Math.max(0, now - due) / 1000);
    this.m.stepOwnLag.observe(Math.max(0, now - Math.max(due, queuedWall)) / 1000);
  }

  /** Counts finished runs and their duration (from the run's start to its end). */
  private observeOutcome(observed: Observed, t: Transition): void {
    if (t.events.some((e) => e.reason === EventReason.WebhookBypassed)) this.m.bypasses.inc();
    const before = observed.status.phase;
    const after = t.status.phase;
    if (before === after || !after) return;
    const outcome = after === 'Succeeded' ? 'succeeded' : after === 'Failed' ? 'failed' : after === 'Initialized' && before !== 'Initializing' && before !== undefined ? 'cancelled' : undefined;
    if (!outcome) return;
    this.m.rollouts.labels(outcome).inc();
    const started = Date.parse(observed.status.progressStartedAt ?? '');
    if (!Number.isNaN(started)) this.m.rolloutDuration.labels(outcome).observe(Math.max(0, observed.now - started) / 1000);
  }

  /** Writes the transition's status; false when it is unchanged (nothing written). */
  private async writeStatus(key: string, canary: Canary, t: Transition): Promise<boolean> {
    if (JSON.stringify(canary.status ?? {}) === JSON.stringify(t.status)) return false;
    if (!this.opts.isLeader(splitKey(key)[0])) throw new NotLeaderError('not the leader');
    const [ns, name] = splitKey(key);
    // resourceVersion makes a write based on a stale read fail with 409
    // instead of overwriting; the key is then retried on fresh caches.
    const res = (await this.api.custom.patchNamespacedCustomObjectStatus(
      { group: GROUP, version: VERSION, namespace: ns, plural: 'canaries', name, body: { metadata: { resourceVersion: canary.metadata.resourceVersion }, status: withNulls(canary.status ?? {}, t.status) } },
      k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.MergePatch),
    )) as Canary;
    if (res?.metadata?.resourceVersion) this.lastWritten.set(key, res.metadata.resourceVersion);
    return true;
  }
}

/** A merge patch replaces maps key by key: fields dropped from the status must be sent as null. */
function withNulls(before: object, after: object): Record<string, unknown> {
  const out: Record<string, unknown> = { ...after };
  for (const k of Object.keys(before)) if (!(k in after)) out[k] = null;
  return out;
}

/**
 * Cached objects drop metadata.managedFields: nothing here reads them, they
 * are often the larger part of a small object, and at 10,000 Deployments
 * they were the bulk of the reconciler's memory. A write of a cached object
 * without them leaves the server's managedFields as they were.
 */
function withoutManagedFields<T>(raw: unknown): T {
  const meta = (raw as { metadata?: { managedFields?: unknown } } | undefined)?.metadata;
  if (meta && meta.managedFields !== undefined) delete meta.managedFields;
  return raw as T;
}

function onAny<T extends KubeObject>(inf: ResilientInformer<T>, handler: (obj: T) => void): void {
  inf.on('add', handler);
  inf.on('update', (obj) => handler(obj));
  inf.on('delete', (obj) => handler(obj));
}

function keyOf(obj: KubeObject): string {
  return `${obj.metadata?.namespace ?? ''}/${obj.metadata?.name ?? ''}`;
}

function splitKey(key: string): [string, string] {
  const i = key.indexOf('/');
  return [key.slice(0, i), key.slice(i + 1)];
}

function targetKey(ns: string, kind: string, name: string): string {
  return `${ns}/${kind}/${name}`;
}

/** resourceVersions are opaque, but etcd-backed ones are integers; if not, assume caught up. */
function olderThan(a: string | undefined, b: string): boolean {
  if (!a || !/^\d+$/.test(a) || !/^\d+$/.test(b)) return false;
  return BigInt(a) < BigInt(b);
}


export { MANAGED_LABEL };

function reconcilerMetrics(r: Registry) {
  return {
    weight: r.gauge('canary_gate_canary_weight', 'Canary traffic weight in percent, per Canary.', ['namespace', 'name']) as Gauge,
    phase: r.gauge('canary_gate_canary_phase', 'The phase of each Canary (1 for the current phase).', ['namespace', 'name', 'phase']) as Gauge,
    failedChecks: r.gauge('canary_gate_canary_failed_checks', 'Failed checks of the current run, per Canary.', ['namespace', 'name']) as Gauge,
    syncDuration: r.histogram('canary_gate_reconciler_sync_duration_seconds', 'Time one sync of one Canary takes, checks included.') as Histogram,
    stepLag: r.histogram(
      'canary_gate_reconciler_step_lag_seconds',
      'Delay between the time an analysis step was due and the sync that took it.',
      [],
      [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    ) as Histogram,
    stepOwnLag: r.histogram(
      'canary_gate_reconciler_step_own_lag_seconds',
      "The reconciler's own part of the step lag: from the later of a step's due time and the queueing of its Canary (its timer, or the event that let the step proceed) to the sync that took it.",
      [],
      [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    ) as Histogram,
    rollouts: r.counter('canary_gate_rollouts_total', 'Finished rollouts by outcome (succeeded, failed, cancelled).', ['outcome']),
    rolloutDuration: r.histogram(
      'canary_gate_rollout_duration_seconds',
      'Time from the start of a run to its promotion, rollback or cancellation.',
      ['outcome'],
      [5, 15, 30, 60, 120, 300, 600, 1200, 3600],
    ) as Histogram,
    bypasses: r.counter('canary_gate_webhook_bypasses_total', 'Live specs that changed without a pending revision (the webhook was down or bypassed).'),
    gateResults: r.counter('canary_gate_gate_results_total', 'Webhook gate results by gate type and result.', ['type', 'result']),
    queueDepth: r.gauge('canary_gate_reconciler_queue_depth', 'Canaries waiting for a worker.') as Gauge,
    apiWrites: r.gauge('canary_gate_reconciler_api_writes', 'API writes made by effects since start.') as Gauge,
    informerSynced: r.gauge('canary_gate_informer_synced', 'Whether an informer has filled its cache.', ['informer']) as Gauge,
    informerRestarts: r.gauge('canary_gate_informer_watch_restarts', 'Watch restarts of an informer since start.', ['informer']) as Gauge,
    informerObjects: r.gauge('canary_gate_informer_objects', 'Objects in an informer cache.', ['informer']) as Gauge,
    informerLastEvent: r.gauge('canary_gate_informer_last_event_timestamp_seconds', 'Unix time of the last watch event or bookmark of an informer.', ['informer']) as Gauge,
  };
}
