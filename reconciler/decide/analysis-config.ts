// The analysis settings of a Canary with every default resolved, so the state
// machine never has to ask "was this set?".

import type { CanarySpec, CanaryWebhook, HttpMatch, WebhookType } from '../../core/api/types.js';

export type Strategy = 'canary' | 'blue-green' | 'ab';

export interface ResolvedAnalysis {
  strategy: Strategy;
  intervalMs: number;
  threshold: number;
  /** Weights the canary steps through, ascending, ending at maxWeight (strategy canary). */
  weights: number[];
  maxWeight: number;
  iterations: number;
  match: HttpMatch[];
  /** Weight moved back to the promoted primary per interval (0: all at once). */
  stepWeightPromotion: number;
  /** Percent of the requests copied to the canary while it has no weight (0: no mirroring). */
  mirrorPercent: number;
  progressDeadlineMs: number;
  skipAnalysis: boolean;
  suspend: boolean;
  hasMetrics: boolean;
  gates: Record<WebhookType, CanaryWebhook[]>;
}

export const DEFAULT_INTERVAL = '60s';
export const DEFAULT_THRESHOLD = 5;
export const DEFAULT_STEP_WEIGHT = 10;
export const DEFAULT_MAX_WEIGHT = 50;
export const DEFAULT_PROGRESS_DEADLINE_SECONDS = 600;

const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/** Parses a Go-style duration (1s, 500ms, 1m30s, 1.5h). Throws on anything else. */
export function parseDuration(text: string): number {
  const re = /([0-9]+(?:\.[0-9]+)?)(ms|h|m|s)/y;
  let total = 0;
  let pos = 0;
  if (!text) throw new Error('empty duration');
  while (pos < text.length) {
    re.lastIndex = pos;
    const m = re.exec(text);
    if (!m) throw new Error(`invalid duration "${text}" (use e.g. 30s, 1m, 1m30s, 500ms)`);
    total += Number(m[1]) * (UNIT_MS[m[2] as string] as number);
    pos = re.lastIndex;
  }
  return Math.round(total);
}

/** The ascending list of canary weights: stepWeights if given, else stepWeight increments up to maxWeight. */
export function weightSteps(spec: { stepWeight?: number; stepWeights?: number[]; maxWeight?: number }): number[] {
  if (spec.stepWeights && spec.stepWeights.length > 0) {
    const steps = [...new Set(spec.stepWeights)].filter((w) => w > 0 && w <= 100).sort((a, b) => a - b);
    const max = spec.maxWeight;
    const kept = max ? steps.filter((w) => w <= max) : steps;
    // Never exceed the user's maxWeight, even when every listed step is above it.
    return kept.length > 0 ? kept : [Math.min(max ?? 100, 100)];
  }
  const max = Math.min(spec.maxWeight ?? DEFAULT_MAX_WEIGHT, 100);
  const step = Math.max(1, spec.stepWeight ?? DEFAULT_STEP_WEIGHT);
  const out: number[] = [];
  for (let w = step; w < max; w += step) out.push(w);
  out.push(max);
  return out;
}

export function resolveAnalysis(spec: CanarySpec): ResolvedAnalysis {
  const a = spec.analysis ?? {};
  const iterations = a.iterations ?? 0;
  const match = a.match ?? [];
  const strategy: Strategy = iterations > 0 ? (match.length > 0 ? 'ab' : 'blue-green') : 'canary';
  const weights = weightSteps(a);
  const gates = {} as Record<WebhookType, CanaryWebhook[]>;
  for (const t of ['pre-rollout', 'rollout', 'confirm-rollout', 'confirm-traffic-increase', 'confirm-promotion', 'post-rollout', 'rollback', 'event'] as WebhookType[]) {
    gates[t] = [];
  }
  for (const hook of a.webhooks ?? []) gates[hook.type ?? 'rollout'].push(hook);
  return {
    strategy,
    intervalMs: parseDuration(a.interval ?? DEFAULT_INTERVAL),
    threshold: a.threshold ?? DEFAULT_THRESHOLD,
    weights,
    maxWeight: weights[weights.length - 1] ?? DEFAULT_MAX_WEIGHT,
    iterations,
    match,
    stepWeightPromotion: strategy === 'canary' ? (a.stepWeightPromotion ?? 0) : 0,
    mirrorPercent: a.mirror ? (a.mirrorWeight ?? 100) : 0,
    progressDeadlineMs: (spec.progressDeadlineSeconds ?? DEFAULT_PROGRESS_DEADLINE_SECONDS) * 1000,
    skipAnalysis: spec.skipAnalysis ?? false,
    suspend: spec.suspend ?? false,
    hasMetrics: (a.metrics ?? []).length > 0,
    gates,
  };
}
