// The split a `set-weight` effect asks for, spelled for routers: the weight,
// the A/B matches, mirroring, and the sticky-session cookies.
//
// A sticky cookie's value is derived from the Canary's uid and the revision
// under analysis, not drawn at random and kept in the status: a reconciler
// killed at any instant computes the same value again, and a client pinned
// to the canary of one revision is not pinned to the next one's (Flagger
// keeps a random value in its status for the same reason of change).

import { createHash } from 'node:crypto';
import type { Canary } from '../../core/api/types.js';
import type { Split, StickyCookie } from './router.js';

/** Default lifetime of the canary cookie (Flagger's): one day. */
export const DEFAULT_STICKY_MAX_AGE = 86_400;

function cookieValue(canary: Canary, revision: string, side: string): string {
  return createHash('sha256').update(`${canary.metadata.uid ?? canary.metadata.name}/${revision}/${side}`).digest('hex').slice(0, 20);
}

/** Seconds the primary cookie lives: an analysis interval (a client re-rolls its side each interval, as in Flagger). */
function primaryMaxAge(intervalMs: number): number {
  return Math.max(1, Math.round(intervalMs / 1000));
}

/**
 * The split for a weight. Sticky cookies are set only while the canary
 * has a share of the traffic that is neither none nor all: at 0 nobody
 * should be pinned to the canary, and a client pinned there before simply
 * stops matching once the rule is gone.
 */
export function splitFor(canary: Canary, opts: { weight: number; revision: string; mirror?: number; intervalMs: number }): Split {
  const split: Split = { weight: opts.weight };
  const match = canary.spec.analysis?.match;
  if (match?.length) split.match = match;
  if (opts.mirror && opts.mirror > 0) split.mirror = opts.mirror;
  const affinity = canary.spec.analysis?.sessionAffinity;
  if (affinity && opts.weight > 0 && opts.weight < 100 && opts.revision) {
    const canaryCookie: StickyCookie = { name: affinity.cookieName, value: cookieValue(canary, opts.revision, 'canary'), maxAge: affinity.maxAge ?? DEFAULT_STICKY_MAX_AGE };
    split.sticky = { canary: canaryCookie };
    if (affinity.primaryCookieName) {
      split.sticky.primary = { name: affinity.primaryCookieName, value: cookieValue(canary, opts.revision, 'primary'), maxAge: primaryMaxAge(opts.intervalMs) };
    }
  }
  return split;
}

/** `s` as a regular expression that matches it literally (RE2 and ECMAScript alike): how routers write prefix, suffix and cookie matches. */
export function escapeRegex(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/** The regular expression (RE2 and ECMAScript alike) that a Cookie header carrying `cookie` matches. */
export function cookieHeaderRegex(cookie: Pick<StickyCookie, 'name' | 'value'>): string {
  return `^(.*?;\\s*)?${escapeRegex(cookie.name)}=${escapeRegex(cookie.value)}(;.*)?$`;
}

/** The Set-Cookie value that pins a client with `cookie`. */
export function setCookieValue(cookie: StickyCookie): string {
  return `${cookie.name}=${cookie.value}; Max-Age=${cookie.maxAge}; Path=/`;
}
