// Runs the checks the state machine asks for: webhook gates and metric
// checks. Metric providers plug in through MetricChecker.

import type { Canary, CanaryMetric, CanaryStatus } from '../../core/api/types.js';
import { resolveAnalysis } from '../decide/analysis-config.js';
import { runGates } from './gates.js';
import type { CheckRequest, CheckResult } from '../decide/transition.js';

/** One metric provider family behind one small interface (Prometheus, Datadog, ...). */
export interface MetricChecker {
  check(canary: Canary, metric: CanaryMetric): Promise<CheckResult>;
}

export async function runChecks(canary: Canary, status: CanaryStatus, request: CheckRequest, metrics: MetricChecker): Promise<CheckResult[]> {
  const hooks = (canary.spec.analysis?.webhooks ?? []).filter((h) => request.gates.includes(h.type ?? 'rollout'));
  const payload = {
    name: canary.metadata.name ?? '',
    namespace: canary.metadata.namespace ?? '',
    phase: status.phase ?? 'Initializing',
    revision: status.pendingRevision ?? '',
    canaryWeight: status.canaryWeight ?? 0,
    iterations: status.iterations ?? 0,
    failedChecks: status.failedChecks ?? 0,
    step: stepOf(canary, status),
  };
  const gateResults = runGates(hooks, payload);
  const metricResults = request.metrics ? Promise.all((canary.spec.analysis?.metrics ?? []).map((m) => metrics.check(canary, m))) : Promise.resolve([]);
  const [g, m] = await Promise.all([gateResults, metricResults]);
  return [...g, ...m];
}

/** 1-based step of the run: the index of the current weight, or the iteration count. */
export function stepOf(canary: Canary, status: CanaryStatus): number {
  const a = resolveAnalysis(canary.spec);
  if (a.strategy !== 'canary') return status.iterations ?? 0;
  return a.weights.indexOf(status.canaryWeight ?? 0) + 1;
}
