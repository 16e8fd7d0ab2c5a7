// Reconciler shards: N replicas split the Canaries by a hash of their
// namespace, each shard behind a Lease of its own, so that a fleet scales
// out on Kubernetes itself (a StatefulSet of N, each replica given its
// ordinal as home shard).
//
// - Replica i is the home of shard i. It says it is alive by holding a
//   member Lease `<lease>-member-<i>`, and takes its shard's Lease
//   `<lease>-shard-<i>` only while it holds its member Lease (two replicas
//   configured with one ordinal: one acts, the other waits).
// - Any replica takes over another shard once that shard's member Lease has
//   not changed for a lease duration by its own clock (the home replica is
//   gone) and the shard Lease itself has expired: a takeover within about
//   two lease durations of a crash.
// - A replica holding another's shard hands it back as soon as the home
//   replica is alive again: it stops acting, then releases the Lease.
// Writes stay fenced per shard: `leads(namespace)` is the shard elector's
// isLeader(), which re-checks the renew deadline against the clock.

import { performance } from 'node:perf_hooks';
import * as k8s from '@kubernetes/client-node';
import type { Logger } from 'pino';
import { requestTimeout, statusCode } from '../../core/api/client.js';
import { memberLeaseName, shardLeaseName } from '../../core/contract.js';
import { LeaderElector } from './leader.js';

/** The shard of a namespace: FNV-1a of its name, modulo the number of shards. Every replica computes the same. */
export function shardOf(namespace: string, shards: number): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < namespace.length; i++) {
    h ^= namespace.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h % shards;
}

export interface ShardsOptions {
  kubeConfig: k8s.KubeConfig;
  /** Prefix of the Lease names and their namespace. */
  leaseName: string;
  namespace: string;
  identity: string;
  shards: number;
  /** This replica's own shard (its ordinal). */
  home: number;
  leaseDurationSeconds: number;
  logger: Logger;
  /** A shard's Lease was taken: its Canaries are this replica's to sync from now on. */
  onAcquired: (shard: number) => void;
  /** A shard's term ended. handedBack: given back to its home replica (expected), otherwise lost. */
  onLost: (shard: number, handedBack: boolean) => void;
}

/**
 * Watches another replica's member Lease: alive while its record changes
 * within a lease duration, measured by our clock from when we first saw each
 * record (remote clocks are not trusted). A Lease not there yet counts as a
 * record too, and so does a released one (its replica stopped): at start,
 * and across a restart, a replica gets a lease duration to come up before
 * another takes its shard.
 */
class MemberWatch {
  private record: string | undefined;
  private seenAt = 0;
  private durationMs: number;

  constructor(private readonly api: k8s.CoordinationV1Api, private readonly name: string, private readonly namespace: string, leaseDurationSeconds: number, private readonly timeoutMs: number) {
    this.durationMs = leaseDurationSeconds * 1000;
  }

  async poll(): Promise<void> {
    let record: string;
    try {
      const lease = await this.api.readNamespacedLease({ name: this.name, namespace: this.namespace }, requestTimeout(this.timeoutMs));
      const spec = lease.spec ?? {};
      record = JSON.stringify([spec.holderIdentity ?? '', String(spec.renewTime ?? ''), spec.leaseTransitions]);
      this.durationMs = (spec.leaseDurationSeconds ?? this.durationMs / 1000) * 1000;
    } catch (err) {
      // Network or timeout: keep what we saw; with no news it goes stale by itself.
      if (statusCode(err) !== 404) return;
      record = 'absent';
    }
    if (record !== this.record) {
      this.record = record;
      this.seenAt = performance.now();
    }
  }

  /** The home replica of this shard is (or may still be) alive. */
  alive(): boolean {
    if (this.record === undefined) return true;
    return performance.now() < this.seenAt + this.durationMs;
  }
}

export class Shards {
  private readonly member: LeaderElector;
  private readonly electors: LeaderElector[] = [];
  private readonly watches = new Map<number, MemberWatch>();
  private pollTimer: NodeJS.Timeout | undefined;
  private stopped = false;

  constructor(private readonly o: ShardsOptions) {
    if (!(Number.isInteger(o.shards) && o.shards >= 1)) throw new Error('shards must be a whole number >= 1');
    if (!(Number.isInteger(o.home) && o.home >= 0 && o.home < o.shards)) throw new Error(`shard index must be between 0 and ${o.shards - 1}`);
    const durationMs = o.leaseDurationSeconds * 1000;
    const timing = {
      leaseDurationSeconds: o.leaseDurationSeconds,
      renewDeadlineMs: Math.max(1000, Math.round(durationMs * (2 / 3))),
      retryPeriodMs: Math.max(200, Math.round(durationMs / 7)),
    };
    const api = o.kubeConfig.makeApiClient(k8s.CoordinationV1Api);
    this.member = new LeaderElector({
      kubeConfig: o.kubeConfig,
      name: memberLeaseName(o.leaseName, o.home),
      namespace: o.namespace,
      identity: o.identity,
      ...timing,
      logger: o.logger,
      onStartedLeading: () => undefined,
    });
    for (let shard = 0; shard < o.shards; shard++) {
      const home = shard === o.home;
      if (!home) this.watches.set(shard, new MemberWatch(api, memberLeaseName(o.leaseName, shard), o.namespace, o.leaseDurationSeconds, Math.max(1000, Math.round(timing.renewDeadlineMs / 2))));
      const homeAlive = () => this.watches.get(shard)?.alive() ?? false;
      let yielding = false;
      this.electors.push(
        new LeaderElector({
          kubeConfig: o.kubeConfig,
          name: shardLeaseName(o.leaseName, shard),
          namespace: o.namespace,
          identity: o.identity,
          ...timing,
          logger: o.logger.child({ shard }),
          mayAcquire: home ? () => this.member.isLeader() : () => !homeAlive(),
          shouldYield: home ? () => !this.member.isLeader() : () => (yielding = homeAlive()),
          onStartedLeading: () => {
            yielding = false;
            o.logger.info({ shard, home }, home ? 'leading my shard' : 'took over a shard whose replica is gone');
            o.onAcquired(shard);
          },
          onStoppedLeading: () => {
            if (!this.stopped) o.onLost(shard, yielding);
          },
        }),
      );
    }
    this.pollMs = timing.retryPeriodMs;
  }

  private readonly pollMs: number;

  /** This replica leads the shard of the namespace now (check right before each write). */
  leads(namespace: string): boolean {
    return this.electors[shardOf(namespace, this.o.shards)]?.isLeader() ?? false;
  }

  /** The shards this replica leads now. */
  held(): number[] {
    return this.electors.flatMap((e, shard) => (e.isLeader() ? [shard] : []));
  }

  start(): void {
    this.member.start();
    const poll = async () => {
      await Promise.all([...this.watches.values()].map((w) => w.poll()));
      if (!this.stopped) this.pollTimer = setTimeout(() => void poll(), this.pollMs);
    };
    void poll();
    for (const e of this.electors) e.start();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.pollTimer) clearTimeout(this.pollTimer);
    await Promise.all(this.electors.map((e) => e.stop()));
    await this.member.stop();
  }
}
