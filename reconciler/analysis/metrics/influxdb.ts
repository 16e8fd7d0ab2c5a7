// InfluxDB v2 query API with Flux: POST {address}/api/v2/query?org=<org>
// with Authorization: Token <token>. Secret: `token`, and `org` (name) or
// `orgID`. The answer is CSV (annotated or not; several tables separated by
// blank lines, each with its own header row). The value is the `_value`
// column of the last row; no rows (or an empty `_value`) is "no data".
// Errors come as JSON {code, message} with a 4xx/5xx status, or as a CSV
// table with an `error` column when the query fails mid-stream.

import { Endpoint, isObject, parseSample } from './endpoint.js';
import type { MetricsProvider } from './provider.js';

export class InfluxDbProvider implements MetricsProvider {
  readonly type = 'influxdb';

  constructor(
    private readonly ep: Endpoint,
    private readonly keys: { token?: string; org?: string; orgID?: string },
  ) {}

  async query(q: string, signal?: AbortSignal): Promise<number | undefined> {
    const ep: Endpoint = this.ep;
    const params: Record<string, string> = {};
    if (this.keys.org) params.org = this.keys.org;
    else if (this.keys.orgID) params.orgID = this.keys.orgID;
    const headers: Record<string, string> = { 'content-type': 'application/json', accept: 'application/csv' };
    if (this.keys.token) headers.authorization = `Token ${this.keys.token}`;
    const res = await ep.send(
      {
        path: '/api/v2/query',
        method: 'POST',
        params,
        headers,
        body: JSON.stringify({ query: q, type: 'flux', dialect: { header: true, delimiter: ',', annotations: [] } }),
      },
      signal,
    );
    if (res.status < 200 || res.status > 299) {
      let why: string | undefined;
      try {
        const b = JSON.parse(res.body) as unknown;
        if (isObject(b) && typeof b.message === 'string') why = typeof b.code === 'string' ? `${b.code}: ${b.message}` : b.message;
      } catch {
        // a snippet of the body instead
      }
      ep.failStatus(res, why);
    }
    const { value, error } = lastValue(parseCsv(res.body));
    if (error !== undefined) ep.fail(`query failed: ${error}`);
    if (value === undefined) return undefined;
    return parseSample(ep, value);
  }
}

/** The `_value` of the last record over all tables, or the error a failed query reported in-band. */
export function lastValue(rows: Array<string[] | null>): { value?: string; error?: string } {
  let header: string[] | undefined;
  let value: string | undefined;
  for (const row of rows) {
    if (row === null) {
      header = undefined; // a blank line ends a table
      continue;
    }
    if ((row[0] ?? '').startsWith('#')) continue; // annotation row
    if (!header) {
      header = row;
      continue;
    }
    const errorAt = header.indexOf('error');
    if (errorAt >= 0 && header.indexOf('_value') < 0) return { error: row[errorAt] || 'unknown error' };
    const at = header.indexOf('_value');
    if (at >= 0) value = row[at];
  }
  return value === undefined ? {} : { value };
}

/** RFC 4180 CSV; a blank line becomes null (InfluxDB separates tables with one). */
export function parseCsv(text: string): Array<string[] | null> {
  const rows: Array<string[] | null> = [];
  let row: string[] = [];
  let field = '';
  let quoted = false;
  let lineHasContent = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (quoted) {
      if (c === '"') {
        if (text[i + 1] === '"') {
          field += '"';
          i++;
        } else quoted = false;
      } else field += c;
      continue;
    }
    if (c === '"') {
      quoted = true;
      lineHasContent = true;
    } else if (c === ',') {
      row.push(field);
      field = '';
      lineHasContent = true;
    } else if (c === '\n' || c === '\r') {
      if (c === '\r' && text[i + 1] === '\n') i++;
      if (lineHasContent || field !== '') {
        row.push(field);
        rows.push(row);
      } else rows.push(null);
      row = [];
      field = '';
      lineHasContent = false;
    } else {
      field += c;
      lineHasContent = true;
    }
  }
  if (lineHasContent || field !== '') {
    row.push(field);
    rows.push(row);
  }
  return rows;
}
