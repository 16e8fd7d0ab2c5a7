// HTTP load and acceptance checks for `canary-gate loadtester`: what a gate
// webhook asks for, parsed from its metadata, run with node:http, bounded in
// rate, concurrency, count and time. No shell, no external tool.

import http from 'node:http';
import https from 'node:https';
import { parseDuration } from '../../decide/analysis-config.js';

export interface Limits {
  maxRate: number;
  maxConcurrency: number;
  maxDurationMs: number;
  /** Host names (or `*.suffix` patterns) a request may go to. */
  allowHosts: string[];
}

export interface LoadSpec {
  url: URL;
  method: string;
  headers: Record<string, string>;
  body?: string;
  rate: number;
  concurrency: number;
  durationMs: number;
  timeoutMs: number;
  /** One new connection per request (kube-proxy balances connections), unless keepAlive. */
  keepAlive: boolean;
}

export interface AcceptanceSpec {
  url: URL;
  method: string;
  headers: Record<string, string>;
  body?: string;
  timeoutMs: number;
  expectStatus: number;
  /** A substring the answer's body must contain. */
  expectBody?: string;
}

export class SpecError extends Error {}

export function hostAllowed(host: string, allow: string[]): boolean {
  const h = host.toLowerCase();
  return allow.some((p) => {
    const q = p.toLowerCase();
    if (q === '*') return true;
    if (q.startsWith('*.')) return h.endsWith(q.slice(1));
    return h === q;
  });
}

function number(meta: Record<string, string>, key: string, fallback: number, min: number, max: number): number {
  const raw = meta[key];
  if (raw === undefined || raw === '') return fallback;
  const n = Number(raw);
  if (!Number.isFinite(n) || n < min || n > max) throw new SpecError(`metadata.${key} must be a number from ${min} to ${max}, got "${raw}"`);
  return n;
}

function common(meta: Record<string, string>, limits: Limits) {
  if (!meta.url) throw new SpecError('metadata.url is required');
  let url: URL;
  try {
    url = new URL(meta.url);
  } catch {
    throw new SpecError(`metadata.url is not a URL: "${meta.url}"`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new SpecError(`metadata.url must be http or https, got ${url.protocol}`);
  const host = url.hostname.replace(/^\[|\]$/g, '');
  if (!hostAllowed(host, limits.allowHosts)) throw new SpecError(`host ${host} is not allowed (--allow-host: ${limits.allowHosts.join(', ')})`);
  let headers: Record<string, string> = {};
  if (meta.headers) {
    try {
      const parsed = JSON.parse(meta.headers) as unknown;
      if (!parsed || typeof parsed !== 'object' || Array.isArray(parsed)) throw new Error('not an object');
      headers = Object.fromEntries(Object.entries(parsed as Record<string, unknown>).map(([k, v]) => [k, String(v)]));
    } catch {
      throw new SpecError('metadata.headers must be a JSON object of header names to values');
    }
  }
  const method = (meta.method ?? (meta.body ? 'POST' : 'GET')).toUpperCase();
  if (!/^[A-Z]+$/.test(method)) throw new SpecError(`metadata.method is not a method: "${meta.method}"`);
  let timeoutMs = 5000;
  if (meta.timeout) {
    try {
      timeoutMs = parseDuration(meta.timeout);
    } catch (err) {
      throw new SpecError(`metadata.timeout: ${(err as Error).message}`);
    }
  }
  return { url, method, headers, timeoutMs, ...(meta.body !== undefined ? { body: meta.body } : {}) };
}

export function loadSpec(meta: Record<string, string>, limits: Limits): LoadSpec {
  const c = common(meta, limits);
  let durationMs = 10_000;
  if (meta.duration) {
    try {
      durationMs = parseDuration(meta.duration);
    } catch (err) {
      throw new SpecError(`metadata.duration: ${(err as Error).message}`);
    }
  }
  if (durationMs <= 0 || durationMs > limits.maxDurationMs) throw new SpecError(`metadata.duration must be above 0 and at most ${limits.maxDurationMs / 1000}s`);
  return {
    ...c,
    rate: number(meta, 'rate', 10, 0.1, limits.maxRate),
    concurrency: Math.floor(number(meta, 'concurrency', 2, 1, limits.maxConcurrency)),
    durationMs,
    keepAlive: meta.keepAlive === 'true',
  };
}

export function acceptanceSpec(meta: Record<string, string>, limits: Limits): AcceptanceSpec {
  const c = common(meta, limits);
  return { ...c, expectStatus: number(meta, 'expectStatus', 200, 100, 599), ...(meta.expectBody !== undefined ? { expectBody: meta.expectBody } : {}) };
}

export interface Reply {
  status: number;
  body: string;
  ms: number;
  error?: string;
}

const agents = { http: new http.Agent({ keepAlive: true }), https: new https.Agent({ keepAlive: true }) };

/** One request; never rejects. The body read is capped at 64 KiB. */
export function request(spec: { url: URL; method: string; headers: Record<string, string>; body?: string; timeoutMs: number; keepAlive?: boolean }): Promise<Reply> {
  const t0 = performance.now();
  const mod = spec.url.protocol === 'https:' ? https : http;
  const agent = spec.keepAlive ? (spec.url.protocol === 'https:' ? agents.https : agents.http) : false;
  return new Promise((resolve) => {
    const req = mod.request(spec.url, { method: spec.method, headers: spec.keepAlive ? spec.headers : { ...spec.headers, connection: 'close' }, agent, timeout: spec.timeoutMs }, (res) => {
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (c: Buffer) => {
        if (size < 65_536) chunks.push(c);
        size += c.length;
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8').slice(0, 65_536), ms: performance.now() - t0 }));
      res.on('error', (err) => resolve({ status: 0, body: '', ms: performance.now() - t0, error: err.message }));
    });
    req.on('timeout', () => req.destroy(new Error(`no answer within ${spec.timeoutMs} ms`)));
    req.on('error', (err) => resolve({ status: 0, body: '', ms: performance.now() - t0, error: err.message }));
    req.end(spec.body);
  });
}

export interface LoadResult {
  sent: number;
  /** Answers by HTTP status; 0 counts requests that got no answer. */
  statuses: Record<string, number>;
  failed: number;
  p50Ms: number;
  p99Ms: number;
  durationMs: number;
  lastError?: string;
}

function quantile(sorted: number[], q: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] as number;
}

/**
 * Sends requests at `rate` per second (spread over `concurrency` workers)
 * for `durationMs`, or until `signal` aborts. A request counts as failed
 * without an answer or with a 5xx.
 */
export async function runLoad(spec: LoadSpec, signal?: AbortSignal, onProgress?: (r: LoadResult) => void): Promise<LoadResult> {
  const start = performance.now();
  const end = start + spec.durationMs;
  const statuses: Record<string, number> = {};
  const latencies: number[] = [];
  let sent = 0;
  let failed = 0;
  let lastError: string | undefined;
  const interval = 1000 / spec.rate;
  let nextAt = start;
  const snapshot = (): LoadResult => {
    const sorted = [...latencies].sort((a, b) => a - b);
    return { sent, statuses: { ...statuses }, failed, p50Ms: quantile(sorted, 0.5), p99Ms: quantile(sorted, 0.99), durationMs: Math.round(performance.now() - start), ...(lastError ? { lastError } : {}) };
  };
  let lastProgress = start;
  const worker = async () => {
    for (;;) {
      if (signal?.aborted) return;
      // Each request takes the next slot of the schedule: the rate holds whatever the latency.
      const at = nextAt;
      nextAt += interval;
      if (at >= end) return;
      const wait = at - performance.now();
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
      if (signal?.aborted) return;
      sent++;
      const reply = await request(spec);
      statuses[String(reply.status)] = (statuses[String(reply.status)] ?? 0) + 1;
      latencies.push(reply.ms);
      if (reply.status === 0 || reply.status >= 500) {
        failed++;
        lastError = reply.error ?? `HTTP ${reply.status}`;
      }
      if (onProgress && performance.now() - lastProgress > 5000) {
        lastProgress = performance.now();
        onProgress(snapshot());
      }
    }
  };
  await Promise.all(Array.from({ length: spec.concurrency }, worker));
  return snapshot();
}

export interface AcceptanceResult {
  passed: boolean;
  status: number;
  ms: number;
  reason: string;
}

export async function runAcceptance(spec: AcceptanceSpec): Promise<AcceptanceResult> {
  const reply = await request(spec);
  const ms = Math.round(reply.ms);
  if (reply.status === 0) return { passed: false, status: 0, ms, reason: `no answer from ${spec.url.href}: ${reply.error ?? 'unknown error'}` };
  if (reply.status !== spec.expectStatus) return { passed: false, status: reply.status, ms, reason: `${spec.url.href} answered ${reply.status}, expected ${spec.expectStatus}` };
  if (spec.expectBody !== undefined && !reply.body.includes(spec.expectBody)) {
    return { passed: false, status: reply.status, ms, reason: `the answer of ${spec.url.href} does not contain ${JSON.stringify(spec.expectBody)}` };
  }
  return { passed: true, status: reply.status, ms, reason: `${spec.url.href} answered ${reply.status}${spec.expectBody !== undefined ? ` containing ${JSON.stringify(spec.expectBody)}` : ''}` };
}
