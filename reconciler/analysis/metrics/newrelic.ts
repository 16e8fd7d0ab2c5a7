// New Relic NerdGraph: POST {address}/graphql (default address
// https://api.newrelic.com; EU accounts https://api.eu.newrelic.com) with the
// NRQL query passed as a GraphQL variable, so no escaping is involved.
// Secret: `apiKey` (a user key; alias newrelic_api_key) sent as API-Key, and
// `accountId` (alias newrelic_account_id).
//
// The value is the first numeric value of the first result row (depth
// first, so `percentile(duration, 99)`'s {"99": x} works). No rows, or a row
// without a number, is "no data". GraphQL errors (NerdGraph answers 200 with
// an "errors" list, e.g. for an NRQL syntax error) fail the query.

import { Endpoint, isObject, parseSample } from './endpoint.js';
import type { MetricsProvider } from './provider.js';

export const NEWRELIC_DEFAULT_ADDRESS = 'https://api.newrelic.com';

export const NERDGRAPH_NRQL = 'query CanaryGateNrql($accountId: Int!, $nrql: Nrql!) { actor { account(id: $accountId) { nrql(query: $nrql) { results } } } }';

export class NewRelicProvider implements MetricsProvider {
  readonly type = 'newrelic';

  constructor(
    private readonly ep: Endpoint,
    private readonly keys: { apiKey?: string; accountId?: string },
  ) {}

  async query(q: string, signal?: AbortSignal): Promise<number | undefined> {
    const ep: Endpoint = this.ep;
    const { apiKey } = this.keys;
    if (!apiKey || !this.keys.accountId) ep.fail('the Secret must hold apiKey and accountId (spec.provider.secretRef)');
    const accountId = Number(this.keys.accountId);
    if (!Number.isSafeInteger(accountId) || accountId <= 0) ep.fail('accountId in the Secret is not a positive integer');
    const res = await ep.send(
      {
        path: '/graphql',
        method: 'POST',
        headers: { 'API-Key': apiKey, 'content-type': 'application/json', accept: 'application/json' },
        body: JSON.stringify({ query: NERDGRAPH_NRQL, variables: { accountId, nrql: q } }),
      },
      signal,
    );
    let body: unknown;
    try {
      body = JSON.parse(res.body);
    } catch {
      body = undefined;
    }
    const errors = isObject(body) && Array.isArray(body.errors) && body.errors.length > 0 ? graphqlErrors(body.errors) : undefined;
    if (res.status < 200 || res.status > 299) ep.failStatus(res, errors);
    if (body === undefined) ep.json(res);
    if (errors) ep.fail(`query failed: ${errors}`);
    const results = dig(body, ['data', 'actor', 'account', 'nrql', 'results']);
    if (results === undefined || results === null) return ep.fail('unexpected response: no data.actor.account.nrql.results');
    if (!Array.isArray(results)) return ep.fail('unexpected response: results is not a list');
    if (results.length === 0) return undefined;
    return firstNumber(ep, results[0]);
  }
}

function graphqlErrors(errors: unknown[]): string {
  return errors.map((e) => (isObject(e) && typeof e.message === 'string' ? e.message : String(e))).join('; ');
}

function dig(v: unknown, path: string[]): unknown {
  let cur = v;
  for (const k of path) {
    if (!isObject(cur)) return undefined;
    cur = cur[k];
  }
  return cur;
}

function firstNumber(ep: Endpoint, v: unknown, depth = 0): number | undefined {
  if (typeof v === 'number') return parseSample(ep, v);
  if (depth > 3 || (!isObject(v) && !Array.isArray(v))) return undefined;
  for (const x of Object.values(v)) {
    const n = firstNumber(ep, x, depth + 1);
    if (n !== undefined) return n;
  }
  return undefined;
}
