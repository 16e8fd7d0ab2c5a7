// What `canary-gate watch --prometheus URL` shows beside the weight: the
// canary copy's observed share of the requests and its success rate, from the
// Pods' own request counters in Prometheus (the built-in metrics' convention),
// over the last 10 seconds. Probes (/readyz, /healthz) are not requests.

import { CANARY_POD_SELECTOR } from '../analysis/metrics/builtins.js';

const WINDOW = '10s';

export function observedQueries(namespace: string, target: string): { share: string; success: string } {
  const canary = CANARY_POD_SELECTOR.replace('{{ namespace }}', namespace).replace('{{ target }}', target);
  const all = `namespace="${namespace}",pod=~"${target}-(canary-)?[a-z0-9]+-[a-z0-9]+"`;
  const served = 'path!~"readyz|healthz"';
  return {
    share:
      `sum(rate(http_request_duration_seconds_count{${canary},${served}}[${WINDOW}]))` +
      ` / sum(rate(http_request_duration_seconds_count{${all},${served}}[${WINDOW}])) * 100`,
    success: `sum(rate(http_requests_total{${canary},code!~"5.."}[${WINDOW}])) / sum(rate(http_requests_total{${canary}}[${WINDOW}])) * 100`,
  };
}

async function scalar(address: string, query: string): Promise<number | undefined> {
  const url = `${address.replace(/\/$/, '')}/api/v1/query?query=${encodeURIComponent(query)}`;
  const res = await fetch(url, { signal: AbortSignal.timeout(3000) });
  if (!res.ok) throw new Error(`Prometheus answered ${res.status}`);
  const body = (await res.json()) as { data?: { result?: { value?: [number, string] }[] } };
  const v = Number(body.data?.result?.[0]?.value?.[1]);
  return Number.isFinite(v) ? v : undefined;
}

/** One line, e.g. "observed (Prometheus, 10s): canary 21% of requests, success 100%". */
export async function observedLine(address: string, namespace: string, target: string): Promise<string> {
  const q = observedQueries(namespace, target);
  try {
    const [share, success] = await Promise.all([scalar(address, q.share), scalar(address, q.success)]);
    const pct = (v: number | undefined) => (v === undefined ? 'no data' : `${Math.round(v)}%`);
    return `observed (Prometheus, ${WINDOW}): canary ${pct(share ?? (success === undefined ? undefined : 0))} of requests, success ${pct(success)}`;
  } catch (err) {
    return `observed: Prometheus not reachable (${err instanceof Error ? err.message : String(err)})`;
  }
}
