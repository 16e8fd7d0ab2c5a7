// What every metric provider shares: the address, credentials-derived
// headers, timeouts, and errors that name the provider and the host but never
// the credentials, the address's path or query, or the spec's header values.

import type { MetricProviderType } from '../../../core/api/types.js';
import { basic, DEFAULT_TIMEOUT_MS, httpRequest, RequestError, scrub, snippet, statusLine, type HttpResponse } from './http.js';

/** A failed query. The message is "<provider> (<host>): <reason>". */
export class ProviderError extends Error {
  constructor(
    readonly provider: string,
    readonly host: string,
    readonly reason: string,
  ) {
    super(`${provider} (${host}): ${reason}`);
    this.name = 'ProviderError';
  }
}

export interface ProviderOptions {
  /** Timeout of one query; default 10 s. */
  timeoutMs?: number;
  /** Query window of providers that take one (Datadog from/to, Graphite from); default 60 s. */
  windowMs?: number;
  /** Clock (tests). */
  now?: () => number;
}

export interface EndpointConfig {
  type: MetricProviderType;
  address: string;
  /** Headers sent with every request (the spec's, then auth). */
  headers: Record<string, string>;
  insecureSkipVerify?: boolean;
  /** Values that must never appear in an error message. */
  secrets: string[];
  options?: ProviderOptions;
}

export interface EndpointRequest {
  /** Appended to the address's path (which may carry a prefix, e.g. /prometheus). */
  path: string;
  params?: Record<string, string>;
  method?: 'GET' | 'POST';
  headers?: Record<string, string>;
  body?: string;
}

export class Endpoint {
  readonly type: MetricProviderType;
  /** host[:port] of the address, for messages. */
  readonly host: string;
  readonly timeoutMs: number;
  readonly windowMs: number;
  readonly now: () => number;
  private readonly base: URL;
  private readonly config: EndpointConfig;

  constructor(config: EndpointConfig) {
    this.type = config.type;
    this.config = config;
    let base: URL | undefined;
    try {
      base = new URL(config.address);
    } catch {
      // reported below
    }
    if (!base || (base.protocol !== 'http:' && base.protocol !== 'https:') || !base.host) {
      throw new ProviderError(config.type, '<invalid address>', 'the address is not a valid http(s) URL');
    }
    this.host = base.host;
    if (base.username || base.password) {
      // http.ts turns user info into a basic-auth header: keep that out of messages too.
      const header = basic(decodeURIComponent(base.username), decodeURIComponent(base.password));
      this.config = { ...config, secrets: [...config.secrets, header, header.slice('Basic '.length)] };
    }
    base.search = '';
    base.hash = '';
    this.base = base;
    this.timeoutMs = config.options?.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    this.windowMs = config.options?.windowMs ?? 60_000;
    this.now = config.options?.now ?? Date.now;
  }

  url(path: string, params?: Record<string, string>): string {
    const u = new URL(this.base.href);
    u.pathname = `${u.pathname.replace(/\/+$/, '')}${path}`;
    if (params) for (const [k, v] of Object.entries(params)) u.searchParams.set(k, v);
    return u.href;
  }

  /** One request; a network failure or timeout throws a ProviderError. */
  async send(req: EndpointRequest, signal?: AbortSignal): Promise<HttpResponse> {
    try {
      return await httpRequest({
        url: this.url(req.path, req.params),
        method: req.method ?? 'GET',
        headers: { ...this.config.headers, ...(req.headers ?? {}) },
        ...(req.body !== undefined ? { body: req.body } : {}),
        timeoutMs: this.timeoutMs,
        insecureSkipVerify: this.config.insecureSkipVerify ?? false,
        ...(signal ? { signal } : {}),
      });
    } catch (err) {
      if (err instanceof RequestError) this.fail(err.reason);
      throw err;
    }
  }

  /** Throws the provider's error for this reason, with every secret blanked out. */
  fail(reason: string): never {
    throw new ProviderError(this.type, this.host, scrub(reason, [this.config.address, ...this.config.secrets]));
  }

  /** Parses a JSON body or fails saying what came back instead. */
  json(res: HttpResponse): unknown {
    try {
      return JSON.parse(res.body);
    } catch {
      this.fail(`${statusLine(res)}: the response is not valid JSON${res.body.trim() ? `: ${snippet(res.body)}` : ' (empty body)'}`);
    }
  }

  /** Fails for a non-2xx answer, with the reason the server gave (or a snippet of its body). */
  failStatus(res: HttpResponse, serverReason?: string): never {
    const why = serverReason?.trim() || snippet(res.body);
    this.fail(why ? `${statusLine(res)}: ${why}` : statusLine(res));
  }
}

/**
 * A sample value as a number. Numbers and numeric strings (Prometheus sends
 * strings, including "NaN", "+Inf", "-Inf") are accepted.
 *
 * NaN is "no data" (undefined): it is what a ratio returns when there was no
 * traffic (0/0), which is exactly the case a no-data policy is for. ±Inf is a
 * value (a ratio over a zero denominator that is not 0/0, or an unbounded
 * latency bucket) and is judged against the range like any other.
 */
export function parseSample(ep: Endpoint, raw: unknown): number | undefined {
  if (raw === null || raw === undefined) return undefined;
  if (typeof raw === 'number') return Number.isNaN(raw) ? undefined : raw;
  if (typeof raw === 'string') {
    const t = raw.trim();
    if (t === '') return undefined;
    if (/^nan$/i.test(t)) return undefined;
    if (/^\+?inf(inity)?$/i.test(t)) return Infinity;
    if (/^-inf(inity)?$/i.test(t)) return -Infinity;
    const n = Number(t);
    if (!Number.isNaN(n)) return n;
  }
  ep.fail(`the value ${JSON.stringify(raw).slice(0, 40)} is not a number`);
}

/** Fails when a query returned several series: a check needs exactly one value. */
export function oneSeries(ep: Endpoint, count: number): void {
  if (count > 1) ep.fail(`the query returned ${count} series; it must return one value (aggregate it, e.g. with sum())`);
}

export function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** The first non-empty value among keys of a Secret (aliases of one setting). */
export function pick(credentials: Record<string, string> | undefined, ...keys: string[]): string | undefined {
  for (const k of keys) {
    const v = credentials?.[k];
    if (v !== undefined && v !== '') return v;
  }
  return undefined;
}
