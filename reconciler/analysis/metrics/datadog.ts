// Datadog metrics API v1: GET {address}/api/v1/query?from=&to=&query=
// (default address https://api.datadoghq.com; use your site's, e.g.
// https://api.datadoghq.eu). Keys from the Secret: `apiKey` and
// `applicationKey` (aliases datadog_api_key / datadog_application_key), sent
// as DD-API-KEY and DD-APPLICATION-KEY.
//
// The window is [now - interval, now]. The value is the last non-null point
// of the one series returned; no series (or only null points) is "no data";
// several series is an error naming the count.

import { Endpoint, isObject, oneSeries, parseSample } from './endpoint.js';
import type { MetricsProvider } from './provider.js';

export const DATADOG_DEFAULT_ADDRESS = 'https://api.datadoghq.com';

export class DatadogProvider implements MetricsProvider {
  readonly type = 'datadog';

  constructor(
    private readonly ep: Endpoint,
    private readonly keys: { apiKey?: string; applicationKey?: string },
  ) {}

  async query(q: string, signal?: AbortSignal): Promise<number | undefined> {
    const ep: Endpoint = this.ep;
    const { apiKey, applicationKey } = this.keys;
    if (!apiKey || !applicationKey) ep.fail('the Secret must hold apiKey and applicationKey (spec.provider.secretRef)');
    const to = Math.floor(ep.now() / 1000);
    const from = to - Math.max(1, Math.round(ep.windowMs / 1000));
    const res = await ep.send(
      {
        path: '/api/v1/query',
        params: { from: String(from), to: String(to), query: q },
        headers: { 'DD-API-KEY': apiKey, 'DD-APPLICATION-KEY': applicationKey, accept: 'application/json' },
      },
      signal,
    );
    if (res.status < 200 || res.status > 299) {
      let why: string | undefined;
      try {
        const b = JSON.parse(res.body) as unknown;
        if (isObject(b) && Array.isArray(b.errors)) why = b.errors.map(String).join('; ');
        else if (isObject(b) && typeof b.error === 'string') why = b.error;
      } catch {
        // a snippet of the body instead
      }
      ep.failStatus(res, why);
    }
    const body = ep.json(res);
    if (!isObject(body)) return ep.fail('unexpected response: not a JSON object');
    if (body.status === 'error' || (typeof body.error === 'string' && body.error)) ep.fail(`query failed: ${String(body.error ?? 'error')}`);
    const series = body.series;
    if (series === undefined || series === null) return undefined;
    if (!Array.isArray(series)) return ep.fail('unexpected response: "series" is not a list');
    if (series.length === 0) return undefined;
    oneSeries(ep, series.length);
    const points = (series[0] as { pointlist?: unknown }).pointlist;
    if (!Array.isArray(points)) return undefined;
    for (let i = points.length - 1; i >= 0; i--) {
      const p = points[i];
      if (Array.isArray(p) && p.length >= 2 && p[1] !== null && p[1] !== undefined) return parseSample(ep, p[1]);
    }
    return undefined;
  }
}
