// Rendering of MetricTemplate queries. A query names values of the Canary
// being analysed with `{{ variable }}` (spacing inside the braces is free):
//
//   {{ name }}         the Canary's name
//   {{ namespace }}    the Canary's namespace
//   {{ target }}       spec.targetRef.name
//   {{ service }}      spec.service.name, else the target's name
//   {{ ingress }}      spec.ingressRef.name (the nginx provider's Ingress);
//                      an error when the Canary has no ingressRef
//   {{ interval }}     the metric's interval, else the analysis interval
//                      (default 60s), as a Prometheus duration (30s, 1m, 2h)
//   {{ variables.X }}  templateVariables.X of the Canary's metric entry
//
// Anything else between double braces is an error that names it: a typo must
// never turn into an empty string inside a query that then quietly matches
// nothing (or everything).

import type { Canary, CanaryMetric } from '../../../core/api/types.js';
import { DEFAULT_INTERVAL, parseDuration } from '../../decide/analysis-config.js';

export class TemplateError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'TemplateError';
  }
}

export interface TemplateContext {
  name: string;
  namespace: string;
  target: string;
  service: string;
  /** spec.ingressRef.name, when the Canary has one. */
  ingress?: string;
  /** Prometheus duration, e.g. 1m. */
  interval: string;
  variables: Record<string, string>;
}

export const TEMPLATE_VARIABLES = ['name', 'namespace', 'target', 'service', 'ingress', 'interval', 'variables.<key>'] as const;

const EXPRESSION = /\{\{([^{}]*)\}\}/g;

/** The query window of a metric, in milliseconds: its own interval, else the analysis interval. */
export function metricIntervalMs(canary: Canary, metric: CanaryMetric): number {
  const text = metric.interval ?? canary.spec.analysis?.interval ?? DEFAULT_INTERVAL;
  let ms: number;
  try {
    ms = parseDuration(text);
  } catch (err) {
    throw new TemplateError(`metric ${metric.name}: ${(err as Error).message}`);
  }
  if (ms <= 0) throw new TemplateError(`metric ${metric.name}: interval must be positive, got "${text}"`);
  return ms;
}

export function templateContext(canary: Canary, metric: CanaryMetric): TemplateContext {
  const target = canary.spec.targetRef.name;
  const out: TemplateContext = {
    name: canary.metadata.name ?? '',
    namespace: canary.metadata.namespace ?? '',
    target,
    service: canary.spec.service?.name || target,
    interval: promDuration(metricIntervalMs(canary, metric)),
    variables: { ...(metric.templateVariables ?? {}) },
  };
  if (canary.spec.ingressRef?.name) out.ingress = canary.spec.ingressRef.name;
  return out;
}

/** Replaces every {{ ... }} in the query; throws TemplateError naming an unknown or unset variable. */
export function renderQuery(query: string, ctx: TemplateContext): string {
  return query.replace(EXPRESSION, (_whole, inner: string) => {
    const key = inner.trim();
    if (key === '') throw new TemplateError('empty template expression "{{ }}" in the query');
    switch (key) {
      case 'name':
      case 'namespace':
      case 'target':
      case 'service':
      case 'interval':
        return ctx[key];
      case 'ingress':
        if (ctx.ingress === undefined) throw new TemplateError('template variable "ingress" is not set: the Canary has no spec.ingressRef');
        return ctx.ingress;
    }
    if (key.startsWith('variables.')) {
      const v = key.slice('variables.'.length);
      if (!Object.prototype.hasOwnProperty.call(ctx.variables, v)) {
        throw new TemplateError(`template variable "${key}" is not set: add "${v}" to the metric's templateVariables`);
      }
      return ctx.variables[v] as string;
    }
    throw new TemplateError(`unknown template variable "${key}" in the query (known: ${TEMPLATE_VARIABLES.join(', ')})`);
  });
}

/** Milliseconds as a Prometheus duration in the largest exact unit: 60000 -> 1m, 90000 -> 90s, 1500 -> 1500ms. */
export function promDuration(ms: number): string {
  if (!Number.isFinite(ms) || ms <= 0) throw new TemplateError(`invalid interval ${ms} ms`);
  const whole = Math.round(ms);
  for (const [unit, size] of [
    ['h', 3_600_000],
    ['m', 60_000],
    ['s', 1000],
  ] as const) {
    if (whole % size === 0) return `${whole / size}${unit}`;
  }
  return `${whole}ms`;
}
