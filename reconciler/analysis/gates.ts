// Webhook gates: canary-gate POSTs a small JSON document about the rollout to
// each hook's URL and reads the answer from the HTTP status alone.
//
// - A gate passes on 200, 201 or 202. Any other status, a timeout or a
//   network error fails it.
// - For a `rollback` hook, `passed` means "the hook asked for a rollback"
//   (it answered 2xx): transition.ts rolls back on the first rollback result
//   with passed=true, so a rollback hook that is down never rolls anything
//   back.
// - Confirmation gates (confirm-rollout, confirm-traffic-increase,
//   confirm-promotion) are approvals: passed=false means "not yet".
// - `event` hooks are notifications: sendEvent() never throws and nobody
//   waits for it.
//
// Messages name the hook, the URL's host and the reason. They never carry the
// URL's user info, path or query string (tokens live there), nor more than a
// short snippet of a response body.

import type { CanaryWebhook, WebhookType } from '../../core/api/types.js';
import { networkReason } from './metrics/http.js';
import { parseDuration } from '../decide/analysis-config.js';
import type { CheckResult } from '../decide/transition.js';

/** What a hook is told about the rollout; `type` and `metadata` come from the hook. */
export interface GateContext {
  name: string;
  namespace: string;
  phase: string;
  /** The revision being analysed (the pending one). */
  revision: string;
  /** Current canary weight, percent. */
  canaryWeight: number;
  /** Index of the current analysis step (weight step or iteration), if the caller knows it. */
  step?: number;
  iterations: number;
  failedChecks: number;
  /** Anything else the caller adds (event hooks get reason and message) is sent as is. */
  [extra: string]: unknown;
}

/** The JSON body POSTed to a hook. */
export interface GatePayload extends GateContext {
  step: number;
  type: WebhookType;
  metadata: Record<string, string>;
}

export interface GateOptions {
  /** Timeout of one attempt when the hook sets none; default 10 s. */
  defaultTimeoutMs?: number;
  /** First pause between attempts; doubles each time, capped at 5 s. Default 500 ms. */
  backoffMs?: number;
  /** Aborts every attempt (e.g. on shutdown). */
  signal?: AbortSignal;
  /** fetch to use (tests); the global one by default. */
  fetch?: typeof fetch;
}

export const DEFAULT_GATE_TIMEOUT_MS = 10_000;
const DEFAULT_BACKOFF_MS = 500;
const MAX_BACKOFF_MS = 5_000;
/** Retries beyond this are ignored: a gate must answer within a step. */
const MAX_RETRIES = 10;
const SNIPPET_CHARS = 120;
const SNIPPET_READ_BYTES = 1024;
const USER_AGENT = 'canary-gate';

/** Runs the hooks concurrently and returns one CheckResult per hook, in the hooks' order. Never rejects. */
export async function runGates(hooks: CanaryWebhook[], context: GateContext, opts: GateOptions = {}): Promise<CheckResult[]> {
  return Promise.all(hooks.map((hook) => runGate(hook, context, opts)));
}

/** Sends an event hook (or several) and forgets about it: never throws, resolves when done. */
export async function sendEvent(hooks: CanaryWebhook | CanaryWebhook[], context: GateContext, opts: GateOptions = {}): Promise<void> {
  const list = Array.isArray(hooks) ? hooks : [hooks];
  await Promise.all(list.map((hook) => runGate({ ...hook, type: hook.type ?? 'event' }, context, opts).catch(() => undefined)));
}

/** The body sent to one hook. */
export function gatePayload(hook: CanaryWebhook, context: GateContext): GatePayload {
  return { ...context, step: context.step ?? 0, type: hook.type ?? 'rollout', metadata: { ...(hook.metadata ?? {}) } };
}

/** One hook, with its retries; never rejects. */
export async function runGate(hook: CanaryWebhook, context: GateContext, opts: GateOptions = {}): Promise<CheckResult> {
  const type: WebhookType = hook.type ?? 'rollout';
  const result = (passed: boolean, message: string): CheckResult => ({ name: hook.name, kind: 'gate', gateType: type, passed, message });
  let target: Target;
  try {
    target = parseTarget(hook.url);
  } catch {
    return result(false, `webhook ${hook.name}: the URL is not a valid http(s) URL`);
  }
  let timeoutMs = opts.defaultTimeoutMs ?? DEFAULT_GATE_TIMEOUT_MS;
  if (hook.timeout) {
    try {
      timeoutMs = parseDuration(hook.timeout);
    } catch {
      return result(false, `webhook ${hook.name} (${target.host}): invalid timeout ${JSON.stringify(hook.timeout)}`);
    }
  }
  const retries = Math.min(MAX_RETRIES, Math.max(0, Math.floor(hook.retries ?? 0)));
  const body = JSON.stringify(gatePayload({ ...hook, type }, context));
  let outcome: Attempt = { ok: false, retryable: false, reason: 'not attempted' };
  let attempts = 0;
  for (;;) {
    if (attempts > 0) {
      const pause = Math.min(MAX_BACKOFF_MS, (opts.backoffMs ?? DEFAULT_BACKOFF_MS) * 2 ** (attempts - 1));
      if (!(await sleep(pause, opts.signal))) break;
    }
    outcome = await attempt(target, body, timeoutMs, opts);
    attempts++;
    if (outcome.ok || !outcome.retryable || attempts > retries || opts.signal?.aborted) break;
  }
  const tries = attempts > 1 ? ` after ${attempts} attempts` : '';
  const who = `webhook ${hook.name} (${target.host})`;
  if (type === 'rollback') {
    return outcome.ok ? result(true, `${who} asked for a rollback (${outcome.reason})`) : result(false, `${who} did not ask for a rollback${tries}: ${outcome.reason}`);
  }
  if (outcome.ok) return result(true, `${who} passed (${outcome.reason})`);
  const verb = type.startsWith('confirm-') ? 'did not approve' : 'failed';
  return result(false, `${who} ${verb}${tries}: ${outcome.reason}`);
}

// ------------------------------------------------------------------ HTTP

interface Target {
  /** The URL without user info (fetch refuses credentials in URLs). */
  url: string;
  /** host[:port], for messages. */
  host: string;
  authorization?: string;
}

/** Splits a hook URL into what fetch gets and what messages may show. */
export function parseTarget(raw: string): Target {
  const u = new URL(raw);
  if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new Error('not http(s)');
  const target: Target = { url: '', host: u.host };
  if (u.username || u.password) {
    const user = decodeURIComponent(u.username);
    const pass = decodeURIComponent(u.password);
    target.authorization = `Basic ${Buffer.from(`${user}:${pass}`).toString('base64')}`;
    u.username = '';
    u.password = '';
  }
  target.url = u.toString();
  return target;
}

/** A URL as it may appear in logs and messages: scheme, host and path; no user info, query or fragment. */
export function redactUrl(raw: string): string {
  try {
    const u = new URL(raw);
    return `${u.protocol}//${u.host}${u.pathname}`;
  } catch {
    return '<invalid URL>';
  }
}

interface Attempt {
  ok: boolean;
  retryable: boolean;
  reason: string;
}

async function attempt(target: Target, body: string, timeoutMs: number, opts: GateOptions): Promise<Attempt> {
  const doFetch = opts.fetch ?? fetch;
  const timeout = AbortSignal.timeout(timeoutMs);
  const signal = opts.signal ? AbortSignal.any([timeout, opts.signal]) : timeout;
  const headers: Record<string, string> = { 'content-type': 'application/json', accept: 'application/json, text/plain, */*', 'user-agent': USER_AGENT };
  if (target.authorization) headers.authorization = target.authorization;
  let res: Response;
  try {
    // Redirects are not followed: a redirect could carry the payload (and an
    // Authorization header) to another host.
    res = await doFetch(target.url, { method: 'POST', headers, body, signal, redirect: 'manual' });
  } catch (err) {
    if (timeout.aborted) return { ok: false, retryable: true, reason: `timed out after ${formatMs(timeoutMs)}` };
    if (opts.signal?.aborted) return { ok: false, retryable: false, reason: 'cancelled' };
    return { ok: false, retryable: true, reason: networkReason(err) };
  }
  const status = `HTTP ${res.status}${res.statusText ? ` ${res.statusText}` : ''}`;
  if (res.status >= 200 && res.status <= 202) {
    await res.body?.cancel().catch(() => undefined);
    return { ok: true, retryable: false, reason: status };
  }
  const snippet = await readSnippet(res);
  const retryable = res.status >= 500 || res.status === 429 || res.status === 408;
  return { ok: false, retryable, reason: snippet ? `${status}: ${snippet}` : status };
}

/** The first bytes of a response body, one line, trimmed and cut short. */
async function readSnippet(res: Response): Promise<string> {
  if (!res.body) return '';
  const reader = res.body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  try {
    while (size < SNIPPET_READ_BYTES) {
      const { done, value } = await reader.read();
      if (done) break;
      chunks.push(value);
      size += value.byteLength;
    }
  } catch {
    // a broken body is no reason to fail differently
  } finally {
    reader.cancel().catch(() => undefined);
  }
  const text = Buffer.concat(chunks).subarray(0, SNIPPET_READ_BYTES).toString('utf8').replace(/\s+/g, ' ').trim();
  return text.length > SNIPPET_CHARS ? `${text.slice(0, SNIPPET_CHARS)}…` : text;
}

function formatMs(ms: number): string {
  return ms % 1000 === 0 ? `${ms / 1000}s` : `${ms}ms`;
}

/** Sleeps; false when aborted first. */
function sleep(ms: number, signal?: AbortSignal): Promise<boolean> {
  if (signal?.aborted) return Promise.resolve(false);
  return new Promise((resolve) => {
    const t = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve(true);
    }, ms);
    const onAbort = () => {
      clearTimeout(t);
      resolve(false);
    };
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}
