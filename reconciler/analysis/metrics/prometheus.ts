// Prometheus HTTP API, instant query: GET {address}/api/v1/query?query=...
// Thanos Query, Grafana Mimir/Cortex (address with the /prometheus prefix)
// and VictoriaMetrics serve the same API and work unchanged.
//
// Results:
// - vector: no series is "no data"; one series is its value; more than one
//   is an error naming the count (a check compares one number).
// - scalar: its value.
// - matrix (a range selector like x[1m]) and string: errors.
// - NaN is "no data", ±Inf is a value (see parseSample).
// Errors the server reports ({"status":"error","errorType":...,"error":...},
// e.g. bad_data for a PromQL syntax error) are quoted in the message.
//
// Auth from the Secret: `bearerToken` (alias `token`) as a Bearer token, or
// `username` + `password` as basic auth; spec.provider.headers are sent too
// (e.g. X-Scope-OrgID for Mimir).

import { Endpoint, isObject, oneSeries, parseSample } from './endpoint.js';
import { statusLine } from './http.js';
import type { MetricsProvider } from './provider.js';

export class PrometheusProvider implements MetricsProvider {
  readonly type = 'prometheus';

  constructor(private readonly ep: Endpoint) {}

  async query(q: string, signal?: AbortSignal): Promise<number | undefined> {
    const ep: Endpoint = this.ep;
    const res = await ep.send({ path: '/api/v1/query', params: { query: q } }, signal);
    let body: unknown;
    try {
      body = JSON.parse(res.body);
    } catch {
      body = undefined;
    }
    const apiError = isObject(body) && body.status === 'error' ? `${String(body.errorType ?? 'error')}: ${String(body.error ?? '')}` : undefined;
    if (res.status < 200 || res.status > 299) ep.failStatus(res, apiError);
    if (body === undefined) ep.json(res); // fails with the right words
    if (apiError) ep.fail(`query failed: ${apiError}`);
    if (!isObject(body) || body.status !== 'success' || !isObject(body.data)) ep.fail(`${statusLine(res)}: unexpected response (no "data")`);
    const data = body.data as Record<string, unknown>;
    const result = data.result;
    switch (data.resultType) {
      case 'vector': {
        if (!Array.isArray(result)) return ep.fail('unexpected response: the vector result is not a list');
        if (result.length === 0) return undefined;
        oneSeries(ep, result.length);
        const sample = (result[0] as { value?: unknown }).value;
        if (!Array.isArray(sample) || sample.length < 2) return ep.fail('unexpected response: a sample without a value');
        return parseSample(ep, sample[1]);
      }
      case 'scalar':
        if (!Array.isArray(result) || result.length < 2) return ep.fail('unexpected response: a scalar without a value');
        return parseSample(ep, result[1]);
      case 'matrix':
        return ep.fail('the query returned a range vector (matrix): use an instant vector, e.g. rate(x[1m]) rather than x[1m]');
      default:
        return ep.fail(`the query returned a ${String(data.resultType)} result, not a number`);
    }
  }
}
