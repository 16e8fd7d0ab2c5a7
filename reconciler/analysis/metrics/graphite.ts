// Graphite render API: GET {address}/render?target=...&format=json&from=-<interval>
// (graphite-web and compatible back ends such as carbonapi). Optional auth
// from the Secret: `username` + `password` (basic) or `bearerToken`.
//
// The answer is a list of series, each {target, datapoints: [[value|null, ts]]}.
// The value is the last non-null datapoint of the one series; no series (or
// only nulls) is "no data"; several series is an error naming the count.

import { Endpoint, isObject, oneSeries, parseSample } from './endpoint.js';
import type { MetricsProvider } from './provider.js';

export class GraphiteProvider implements MetricsProvider {
  readonly type = 'graphite';

  constructor(private readonly ep: Endpoint) {}

  async query(q: string, signal?: AbortSignal): Promise<number | undefined> {
    const ep: Endpoint = this.ep;
    // Seconds are unambiguous in every Graphite implementation (m is not).
    const from = `-${Math.max(1, Math.round(ep.windowMs / 1000))}s`;
    const res = await ep.send({ path: '/render', params: { target: q, format: 'json', from, until: 'now' }, headers: { accept: 'application/json' } }, signal);
    if (res.status < 200 || res.status > 299) ep.failStatus(res);
    const body = ep.json(res);
    if (!Array.isArray(body)) return ep.fail('unexpected response: not a list of series');
    if (body.length === 0) return undefined;
    oneSeries(ep, body.length);
    const first = body[0];
    const points = isObject(first) ? first.datapoints : undefined;
    if (!Array.isArray(points)) return ep.fail('unexpected response: a series without datapoints');
    for (let i = points.length - 1; i >= 0; i--) {
      const p = points[i];
      if (Array.isArray(p) && p[0] !== null && p[0] !== undefined) return parseSample(ep, p[0]);
    }
    return undefined;
  }
}
