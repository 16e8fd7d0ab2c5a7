// Built-in metrics: usable by name in a Canary's analysis.metrics without a
// MetricTemplate, queried on the Prometheus the reconciler is configured with.
// They read the common application-metrics convention (the one most HTTP
// instrumentation libraries export), scraped per Pod with the Pod's
// namespace and name as labels:
//
//   http_requests_total{namespace, pod, code}              counter
//   http_request_duration_seconds_bucket{namespace, pod, le}  histogram
//
// The canary's Pods are those of the `<target>-canary` Deployment, selected
// by pod=~"<target>-canary-<replicaset hash>-<pod hash>". The same queries
// serve both routers (kubernetes and gatewayapi): they look at the Pods, not
// at the router.
//
// - request-success-rate: percentage (0-100) of requests answered with a
//   non-5xx code over the interval. Use thresholdRange.min, e.g. 99.
// - request-duration: 99th percentile latency over the interval, in
//   milliseconds. Use thresholdRange.max, e.g. 500.
//
// Without traffic both queries return no value (an empty vector or NaN),
// which the metric's noDataPolicy decides.

/** Label matchers of the canary Pods (templated). */
export const CANARY_POD_SELECTOR = 'namespace="{{ namespace }}",pod=~"{{ target }}-canary-[a-z0-9]+-[a-z0-9]+"';

export const REQUEST_SUCCESS_RATE_QUERY =
  `sum(rate(http_requests_total{${CANARY_POD_SELECTOR},code!~"5.."}[{{ interval }}]))` +
  ` / sum(rate(http_requests_total{${CANARY_POD_SELECTOR}}[{{ interval }}])) * 100`;

export const REQUEST_DURATION_QUERY =
  `histogram_quantile(0.99, sum by (le) (rate(http_request_duration_seconds_bucket{${CANARY_POD_SELECTOR}}[{{ interval }}]))) * 1000`;

export const BUILTIN_METRICS: Readonly<Record<string, string>> = {
  'request-success-rate': REQUEST_SUCCESS_RATE_QUERY,
  'request-duration': REQUEST_DURATION_QUERY,
};

/** The templated PromQL of a built-in metric, or undefined. */
export function builtinQuery(name: string): string | undefined {
  return Object.prototype.hasOwnProperty.call(BUILTIN_METRICS, name) ? BUILTIN_METRICS[name] : undefined;
}
