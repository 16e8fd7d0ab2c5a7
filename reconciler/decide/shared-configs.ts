// A ConfigMap or Secret several managed Deployments reference: its pending
// data is shared, so it goes live for all of them or for none. Each
// consumer's Canary runs the change on its own copy; one that passes waits
// (WaitingPromotion, condition SharedConfig=False SharedConfigWaiting) until
// every other consumer passed for a revision with the same pending data,
// then each promotes (the first writes the data, the rest find it written).
// One that fails rolls the change back for all. Pure: the caches' view of
// the other consumers comes in (observe/shared-configs.ts), a verdict goes
// out; everything it reads is in the API, so a restarted process decides
// the same.

import type { CanaryStatus } from '../../core/api/types.js';
import { ConditionReason, ConditionType } from './reasons.js';

/** Where another consumer of a shared pending config stands, as its Canary's status says. */
export type ConsumerState =
  /** Its run has not passed (or not started) for a revision with this pending data. */
  | 'running'
  /** Passed for a revision with this pending data: waiting on the others, promoting, or promoted. */
  | 'passed'
  /** Rolled back a revision with this pending data. */
  | 'failed'
  /** A managed Deployment no Canary targets: nothing analyses the change for it. */
  | 'no-canary';

/** One other Deployment that references the config (live or pending template). */
export interface SharedConsumer {
  deployment: string;
  /** Its Canary's name; absent when state is `no-canary`. */
  canary?: string;
  state: ConsumerState;
}

/** A config whose pending data this run uses and other managed Deployments reference. */
export interface SharedConfig {
  /** `Kind namespace/name`, for messages. */
  config: string;
  consumers: SharedConsumer[];
}

export type SharedVerdict = { action: 'promote' } | { action: 'wait'; message: string } | { action: 'rollback'; message: string };

const who = (c: SharedConsumer) => (c.canary ? `Canary ${c.canary} (Deployment ${c.deployment})` : `Deployment ${c.deployment}`);

/**
 * Whether a run that passed (or is running) may promote its shared pending
 * configs: rollback when another consumer rolled the same data back; wait
 * while one is still running, or is managed without a Canary; promote once
 * every other consumer passed. No shared configs: promote.
 */
export function sharedConfigVerdict(shared: readonly SharedConfig[] | undefined): SharedVerdict {
  const all = shared ?? [];
  for (const s of all) {
    const failed = s.consumers.filter((c) => c.state === 'failed');
    if (failed.length > 0) return { action: 'rollback', message: `${failed.map(who).join(', ')} rolled back the pending data of ${s.config}, which this run shares` };
  }
  const waits: string[] = [];
  for (const s of all) {
    const orphans = s.consumers.filter((c) => c.state === 'no-canary');
    if (orphans.length > 0) waits.push(`${orphans.map(who).join(', ')} ${orphans.length === 1 ? 'references' : 'reference'} ${s.config} and ${orphans.length === 1 ? 'is' : 'are'} managed without a Canary: the shared change is not promoted until ${orphans.length === 1 ? 'it has' : 'they have'} one or stop${orphans.length === 1 ? 's' : ''} referencing it`);
    const running = s.consumers.filter((c) => c.state === 'running');
    if (running.length > 0) waits.push(`${s.config} is shared with ${running.map(who).join(', ')}, still running`);
  }
  return waits.length > 0 ? { action: 'wait', message: waits.join('; ') } : { action: 'promote' };
}

/** True when the status says its run passed and waits for the other consumers of a shared config. */
export function waitsForSharedConfig(status: CanaryStatus | undefined): boolean {
  if (status?.phase !== 'WaitingPromotion') return false;
  const c = status.conditions?.find((x) => x.type === ConditionType.SharedConfig);
  return c?.status === 'False' && c.reason === ConditionReason.SharedConfigWaiting;
}

/**
 * Where another consumer stands, given its Canary's status and the revision
 * its Deployment's desired state has now (which includes the shared pending
 * data, as long as the config holds it).
 */
export function consumerState(status: CanaryStatus | undefined, desiredRevision: string | undefined): Exclude<ConsumerState, 'no-canary'> {
  const s = (status ?? {}) as CanaryStatus & { failedRevision?: string };
  if (!desiredRevision) return 'running';
  if (s.phase === 'Failed' && s.failedRevision === desiredRevision) return 'failed';
  if (s.pendingRevision === desiredRevision && (s.phase === 'Promoting' || waitsForSharedConfig(s))) return 'passed';
  if (s.phase === 'Succeeded' && s.lastPromotedRevision === desiredRevision) return 'passed';
  return 'running';
}
