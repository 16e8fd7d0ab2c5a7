// Stages (`spec.promotion.after`): a Canary starts a change only once each
// upstream Canary (another namespace, or another cluster) has promoted the
// same change. "The same" is `spec.promotion.identity`:
//
//   images       the set of container and init-container images (default):
//                two templates that differ only in what a per-stage overlay
//                sets (an env var, a replica count, a label) are the same change
//   revision     the exact pod template (canary-gate's revision)
//   label:<key>  the value of a pod template label a pipeline sets
//
// Every Canary records, for the change it last promoted and the one it last
// rolled back, the facts each identity needs (status.lastPromotion,
// status.lastFailure); a downstream stage compares them with its own pending
// change. Pure: the caller reads the upstream Canaries.

import { createHash } from 'node:crypto';
import type { Canary, ChangeRecord, PromotionDependency } from '../../core/api/types.js';
import { parseDuration } from './analysis-config.js';

/** What identifies a change, from its spec under canary. */
export interface ChangeFacts {
  revision: string;
  images?: string;
  labels?: Record<string, string>;
}

type Container = { image?: string };
type PodTemplate = { metadata?: { labels?: Record<string, string> }; spec?: { containers?: Container[]; initContainers?: Container[] } };

/** The facts of a change whose spec under canary is `spec` (a pod template for a Deployment; a Service's spec has no images). */
export function changeFacts(revision: string, spec: unknown): ChangeFacts {
  const t = (spec ?? {}) as PodTemplate;
  const facts: ChangeFacts = { revision };
  const containers = [...(t.spec?.containers ?? []), ...(t.spec?.initContainers ?? [])];
  if (containers.length > 0) {
    const images = [...new Set(containers.map((c) => c.image ?? ''))].sort();
    facts.images = createHash('sha256').update(images.join('\n')).digest('hex').slice(0, 12);
  }
  const labels = t.metadata?.labels;
  if (labels && Object.keys(labels).length > 0) facts.labels = { ...labels };
  return facts;
}

/** The identity of a change under a mode, as status.changeIdentity shows it; undefined when the change lacks what the mode needs. */
export function identityOf(mode: string | undefined, facts: ChangeFacts | ChangeRecord | undefined): string | undefined {
  if (!facts) return undefined;
  const m = mode ?? 'images';
  if (m === 'revision') return `revision:${facts.revision}`;
  if (m.startsWith('label:')) {
    const key = m.slice('label:'.length);
    const value = facts.labels?.[key];
    return value === undefined ? undefined : `label:${key}=${value}`;
  }
  // images; a Service target has no images: its revision is its identity.
  return facts.images ? `images:${facts.images}` : `revision:${facts.revision}`;
}

/** One upstream Canary as read for this sync: the object, or why it could not be read. */
export interface UpstreamView {
  dependency: PromotionDependency;
  /** Where it was looked for, for messages (namespace/name, and the cluster's Secret). */
  where: string;
  canary?: Canary;
  error?: string;
}

export type UpstreamReason = 'UpstreamPending' | 'UpstreamFailed' | 'UpstreamUnreachable' | 'Soaking' | 'NoIdentity';

/** Why a pending change may not start yet, if it may not. */
export interface UpstreamBlock {
  reason: UpstreamReason;
  message: string;
  /** When the wait is known to end (soak), epoch ms. */
  untilMs?: number;
}

/**
 * Whether every upstream stage promoted the pending change (by this
 * Canary's identity), long enough ago; the first stage that has not, and
 * why. A stage that cannot be read blocks: the change never proceeds on
 * missing information.
 */
export function upstreamBlock(mode: string | undefined, pending: ChangeFacts, views: readonly UpstreamView[], nowMs: number): UpstreamBlock | undefined {
  if (views.length === 0) return undefined;
  const mine = identityOf(mode, pending);
  if (!mine) return { reason: 'NoIdentity', message: `the pending change has no ${mode}: it cannot be matched with the upstream stages` };
  for (const v of views) {
    if (v.error !== undefined || !v.canary) {
      return { reason: 'UpstreamUnreachable', message: `cannot read upstream Canary ${v.where}: ${v.error ?? 'not found'}; waiting` };
    }
    const status = v.canary.status ?? {};
    const promoted = status.lastPromotion;
    if (identityOf(mode, promoted) === mine && promoted) {
      const soakMs = v.dependency.soak ? parseDuration(v.dependency.soak) : 0;
      const at = Date.parse(promoted.at ?? '') || 0;
      if (at + soakMs > nowMs) {
        return { reason: 'Soaking', message: `${mine} was promoted in ${v.where} at ${promoted.at}; soaking until ${new Date(at + soakMs).toISOString()}`, untilMs: at + soakMs };
      }
      continue;
    }
    const failed = status.lastFailure;
    if (identityOf(mode, failed) === mine) {
      return { reason: 'UpstreamFailed', message: `${mine} was rolled back in ${v.where}: it waits for a newer change to succeed there` };
    }
    return { reason: 'UpstreamPending', message: `waiting for ${v.where} to promote ${mine}` };
  }
  return undefined;
}
