// The MetricChecker of the reconciler: resolves a Canary metric to a query
// (its MetricTemplate, or a built-in by name), renders it, runs it on the
// template's provider and judges the value against thresholdRange.
//
// Outcomes (CheckResult.metric.result):
//   pass    a value within [min, max] (inclusive; a missing bound is open)
//   fail    a value outside the range
//   nodata  no value; noDataPolicy (default fail) decides:
//             fail -> a failed check, pass -> a passed check,
//             hold -> held: neither passes nor counts as failed
//   error   anything that kept the query from answering: a missing template
//           or Secret, a template error, a provider error (HTTP status,
//           unreachable, bad answer, query syntax). An error NEVER passes,
//           whatever the no-data policy: it is a failed check.
//
// Messages name the metric, the provider, the value and the range, or the
// reason; never a credential or the provider's address beyond its host.

import { performance } from 'node:perf_hooks';
import type { Canary, CanaryMetric, MetricProvider, MetricResult, MetricTemplate } from '../../../core/api/types.js';
import type { Counter, Histogram, Registry } from '../../../core/metrics.js';
import type { MetricChecker } from '../checks.js';
import type { CheckResult } from '../../decide/transition.js';
import { BUILTIN_METRICS, builtinQuery } from './builtins.js';
import { routerTraits } from '../../routers/index.js';
import { scrub } from './http.js';
import { createProvider, ProviderError } from './provider.js';
import { metricIntervalMs, renderQuery, templateContext } from './template.js';

export interface MetricLookups {
  /** A MetricTemplate from the informer cache. */
  template(namespace: string, name: string): MetricTemplate | undefined;
  /** Decoded data of a Secret; undefined when it does not exist. */
  secret(namespace: string, name: string): Promise<Record<string, string> | undefined>;
  /** Prometheus address for the built-in metrics (request-success-rate, request-duration). */
  builtinPrometheus?: string;
  /** The one namespace the reconciler watches (--namespace); templates elsewhere are never in its cache. */
  watchedNamespace?: string;
  now?: () => number;
}

export interface MetricCheckerOptions {
  /** Timeout of one query; default 10 s. */
  timeoutMs?: number;
  /** Registers canary_gate_metric_checks_total and canary_gate_metric_query_duration_seconds. */
  registry?: Registry;
  /** Aborts queries in flight (shutdown). */
  signal?: AbortSignal;
}

interface Source {
  provider: MetricProvider;
  query: string;
  /** Namespace of the template (its Secret lives there). */
  namespace: string;
  /** "MetricTemplate ns/name" or "built-in", for messages. */
  label: string;
}

export class TemplateMetricChecker implements MetricChecker {
  private readonly checks?: Counter;
  private readonly duration?: Histogram;
  private readonly counts = new Map<string, number>();

  constructor(
    private readonly lookups: MetricLookups,
    private readonly opts: MetricCheckerOptions = {},
  ) {
    if (opts.registry) {
      this.checks = opts.registry.counter('canary_gate_metric_checks_total', 'Metric checks run, by provider type and result (pass, fail, nodata, error).', [
        'provider',
        'result',
      ]);
      this.duration = opts.registry.histogram('canary_gate_metric_query_duration_seconds', 'Time a metric provider took to answer a query.', ['provider'], [
        0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
      ]);
    }
  }

  /** Checks run so far, by "provider/result" (also exported through the registry). */
  stats(): Record<string, number> {
    return Object.fromEntries(this.counts);
  }

  async check(canary: Canary, metric: CanaryMetric): Promise<CheckResult> {
    const now = this.lookups.now ?? Date.now;
    const who = `metric ${metric.name}`;
    let providerType = 'none';
    const done = (result: MetricResult, passed: boolean, message: string, value?: number, held?: boolean): CheckResult => {
      const key = `${providerType}/${result}`;
      this.counts.set(key, (this.counts.get(key) ?? 0) + 1);
      this.checks?.labels(providerType, result).inc();
      const r: CheckResult = {
        name: metric.name,
        kind: 'metric',
        passed,
        message,
        metric: {
          name: metric.name,
          // JSON (and the status schema) has no Infinity: an infinite value shows in the message only.
          ...(value !== undefined && Number.isFinite(value) ? { value } : {}),
          checkedAt: new Date(now()).toISOString(),
          result,
        },
      };
      if (held) r.held = true;
      return r;
    };
    const error = (message: string) => done('error', false, message);

    const canaryNs = canary.metadata.namespace ?? '';
    let source: Source;
    const ref = metric.templateRef;
    if (ref) {
      const ns = ref.namespace || canaryNs;
      const watched = this.lookups.watchedNamespace;
      if (watched !== undefined && ns !== watched) {
        return error(
          `${who}: MetricTemplate ${ns}/${ref.name} is outside namespace ${watched}, the only one this reconciler watches (--namespace); ` +
            `put the template in ${watched} or run the reconciler for all namespaces`,
        );
      }
      const template = this.lookups.template(ns, ref.name);
      if (!template) return error(`${who}: MetricTemplate ${ns}/${ref.name} not found`);
      source = { provider: template.spec.provider, query: template.spec.query, namespace: ns, label: `MetricTemplate ${ns}/${ref.name}` };
    } else {
      // A router with a proxy of its own reads the proxy's metrics (routers declare them); else the Pods' own.
      const query = routerTraits(canary.spec.provider).builtinMetrics?.[metric.name] ?? builtinQuery(metric.name);
      if (!query) {
        return error(`${who}: no templateRef, and "${metric.name}" is not a built-in metric (${Object.keys(BUILTIN_METRICS).join(', ')})`);
      }
      if (!this.lookups.builtinPrometheus) {
        return error(`${who}: the built-in metric needs the reconciler's Prometheus address, which is not configured`);
      }
      source = { provider: { type: 'prometheus', address: this.lookups.builtinPrometheus }, query, namespace: canaryNs, label: 'built-in' };
    }
    providerType = source.provider?.type ?? 'none';
    const tag = `${who} (${providerType})`;

    let query: string;
    let windowMs: number;
    try {
      windowMs = metricIntervalMs(canary, metric);
      query = renderQuery(source.query ?? '', templateContext(canary, metric));
    } catch (err) {
      return error(`${tag}: ${source.label}: ${errorText(err)}`);
    }

    let credentials: Record<string, string> | undefined;
    const secretRef = source.provider.secretRef;
    if (secretRef?.name) {
      try {
        credentials = await this.lookups.secret(source.namespace, secretRef.name);
      } catch (err) {
        return error(`${tag}: ${errorText(err)}`);
      }
      if (!credentials) return error(`${tag}: Secret ${source.namespace}/${secretRef.name} (secretRef of ${source.label}) not found`);
    }

    let value: number | undefined;
    const t0 = performance.now();
    try {
      const provider = createProvider(source.provider, credentials, {
        windowMs,
        now,
        ...(this.opts.timeoutMs !== undefined ? { timeoutMs: this.opts.timeoutMs } : {}),
      });
      value = await provider.query(query, this.opts.signal);
    } catch (err) {
      const reason = err instanceof ProviderError ? err.message : `${providerType}: ${scrub(errorText(err), Object.values(credentials ?? {}))}`;
      return error(`${who}: query failed: ${reason}`);
    } finally {
      this.duration?.labels(providerType).observe((performance.now() - t0) / 1000);
    }

    if (value === undefined) {
      const policy = metric.noDataPolicy ?? 'fail';
      if (policy === 'pass') return done('nodata', true, `${tag}: no data (policy pass)`);
      if (policy === 'hold') return done('nodata', false, `${tag}: no data (policy hold): analysis holds without counting`, undefined, true);
      return done('nodata', false, `${tag}: no data (policy fail)`);
    }
    return judge(metric, value, tag, done);
  }
}

function judge(
  metric: CanaryMetric,
  value: number,
  tag: string,
  done: (result: MetricResult, passed: boolean, message: string, value?: number) => CheckResult,
): CheckResult {
  const { min, max } = metric.thresholdRange ?? {};
  const shown = formatNumber(value);
  if (min === undefined && max === undefined) return done('pass', true, `${tag}: ${shown} (no thresholdRange: any value passes)`, value);
  const range = `[${min === undefined ? '-Inf' : formatNumber(min)}, ${max === undefined ? '+Inf' : formatNumber(max)}]`;
  if (min !== undefined && value < min) return done('fail', false, `${tag}: ${shown} is below the minimum ${formatNumber(min)} (range ${range})`, value);
  if (max !== undefined && value > max) return done('fail', false, `${tag}: ${shown} is above the maximum ${formatNumber(max)} (range ${range})`, value);
  return done('pass', true, `${tag}: ${shown} is within ${range}`, value);
}

/** A value for a message: ±Inf spelled out, at most 6 significant digits. */
export function formatNumber(v: number): string {
  if (v === Infinity) return '+Inf';
  if (v === -Infinity) return '-Inf';
  if (Number.isInteger(v)) return String(v);
  return String(Number(v.toPrecision(6)));
}

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
