// How `canary-gate watch` decides when it is done and with which exit code,
// as a pure reducer over what it observes: the Canary (from the watch or a
// periodic GET) and, when read, the pending revision on the target.
//
// The revision watched is the one pending on the target when the watch
// starts (what a CI job has just applied), else the one the Canary is
// running. It ends:
//   0  that revision was promoted (status.lastPromotedRevision), or nothing
//      was pending at all when the watch started;
//   1  it failed (phase Failed with failedRevision = it), unless a retry of
//      it has been requested and not yet picked up;
//   3  it was withdrawn or replaced by a newer revision, or the Canary was
//      deleted;
// (4, the timeout, is the caller's.)

import type { Canary, CanaryPhase } from '../../core/api/types.js';
import { COMMAND_ANNOTATIONS } from '../../core/contract.js';


export const EXIT = { promoted: 0, failed: 1, usage: 2, cancelled: 3, timeout: 4 } as const;

export interface Verdict {
  code: 0 | 1 | 3;
  message: string;
}

export interface Observation {
  /** null: the Canary is gone (a DELETED event or a 404). */
  canary: Canary | null;
  /** The target's pending revision when it was read with this observation: null = none; undefined = not read. */
  targetPending?: string | null;
}

export interface Track {
  /** The revision being watched; undefined while nothing is pending. */
  revision?: string;
  /** Revisions already in the status when the watch started (an older run): not a replacement of the watched one. */
  earlier: string[];
  /** The watched revision has been seen as status.pendingRevision. */
  seenRunning: boolean;
  /** resourceVersion of the last Canary taken into account: older ones (a slow GET) are ignored. */
  resourceVersion?: string;
  verdict?: Verdict;
}

const IDLE: readonly (CanaryPhase | undefined)[] = ['Initialized', 'Succeeded', 'Failed'];

/** The track at the start of a watch, with a verdict already when there is nothing to wait for. */
export function begin(first: Observation): Track {
  const s = first.canary?.status ?? {};
  const revision = first.targetPending ?? s.pendingRevision ?? (first.targetPending === undefined && s.phase === 'Failed' ? s.failedRevision : undefined);
  const earlier = [s.pendingRevision, s.failedRevision].filter((r): r is string => !!r && r !== revision);
  const track: Track = { earlier, seenRunning: false };
  if (revision) track.revision = revision;
  return judge(track, first);
}

/** Takes one observation into account; the returned track has a verdict once the watch is over. */
export function judge(track: Track, obs: Observation): Track {
  if (track.verdict) return track;
  const c = obs.canary;
  if (!c) return { ...track, verdict: { code: 3, message: 'the Canary was deleted' } };
  if (olderThan(c.metadata.resourceVersion, track.resourceVersion)) return track;
  const t: Track = { ...track };
  if (c.metadata.resourceVersion) t.resourceVersion = c.metadata.resourceVersion;
  const s = c.status ?? {};
  const done = (code: Verdict['code'], message: string): Track => ({ ...t, verdict: { code, message } });

  if (c.metadata.deletionTimestamp || s.phase === 'Terminating') return done(3, 'the Canary is being deleted');

  if (!t.revision) {
    if (typeof obs.targetPending === 'string') t.revision = obs.targetPending;
    else if (s.pendingRevision && !t.earlier.includes(s.pendingRevision)) t.revision = s.pendingRevision;
    else if (IDLE.includes(s.phase) && !s.pendingRevision) {
      const live = s.lastPromotedRevision ? `revision ${s.lastPromotedRevision} is live` : 'the live spec is the stable one';
      return done(0, `nothing to watch: no revision is pending (phase ${s.phase}); ${live}`);
    } else return t; // Initializing, or an older run still being wound down
  }
  const r = t.revision as string;

  if (s.lastPromotedRevision === r && s.pendingRevision !== r) {
    const how = s.bypassedRevision === r ? ' without analysis (the admission webhook was bypassed)' : '';
    return done(0, `revision ${r} promoted${how}`);
  }
  if (s.pendingRevision === r) {
    t.seenRunning = true;
    return t;
  }
  if (s.phase === 'Failed' && s.failedRevision === r) {
    if (c.metadata.annotations?.[COMMAND_ANNOTATIONS.retry] === r) return t; // a retry is requested: wait for it to start
    const again = t.seenRunning ? '' : ' before the watch started; `canary-gate retry` runs it again';
    return done(1, `revision ${r} failed${again}: ${s.message ?? 'rolled back'}`);
  }
  if (s.pendingRevision && !t.earlier.includes(s.pendingRevision)) {
    return done(3, `revision ${r} was replaced by revision ${s.pendingRevision} before it was promoted`);
  }
  if (t.seenRunning && !s.pendingRevision) {
    return done(3, `the rollout of revision ${r} was cancelled: ${s.message ?? 'the pending revision was withdrawn'}`);
  }
  if (obs.targetPending !== undefined && obs.targetPending !== r) {
    // Read before the Canary: the target no longer holds r, and the Canary
    // (read after it, so at least as new) neither runs nor promoted it.
    return done(3, obs.targetPending === null ? `revision ${r} was withdrawn from the target before it started` : `revision ${r} was replaced by revision ${obs.targetPending} before it started`);
  }
  return t; // pending on the target, not started yet
}

/** Folds a whole sequence (the first is the start): the verdict, or undefined if the watch would go on. */
export function decideExit(observations: Observation[]): Verdict | undefined {
  const [first, ...rest] = observations;
  if (!first) return undefined;
  let t = begin(first);
  for (const o of rest) t = judge(t, o);
  return t.verdict;
}

/** resourceVersions are opaque but integers on etcd; anything else is never "older". */
function olderThan(a: string | undefined, b: string | undefined): boolean {
  if (!a || !b || !/^\d+$/.test(a) || !/^\d+$/.test(b)) return false;
  return BigInt(a) < BigInt(b);
}
