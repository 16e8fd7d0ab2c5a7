// Sends a Canary's events to its alert receivers (analysis.alerts), each
// through its AlertProvider.
//
// - Severity: an alert entry with severity info gets every event, warn gets
//   warn and error, error only error.
// - providerRef.namespace defaults to the Canary's namespace; the
//   AlertProvider's Secret (key "address", and optionally "proxy") lives in
//   the AlertProvider's namespace and wins over spec.address / spec.proxy.
// - One POST per receiver with a timeout (default 10 s) and one retry after a
//   network error, a timeout, a 5xx, 408 or 429.
// - send() never throws: failures are logged and counted. The address (an
//   incoming-webhook URL is a credential) is never logged, nor is any other
//   Secret value; logs name the Canary, the alert, the AlertProvider and its type.
// - proxy: http:// proxies are supported (CONNECT for https receivers);
//   other schemes fail the delivery with a message saying so.

import type { AlertProvider, AlertSeverity, Canary } from '../../core/api/types.js';
import type { Counter, Registry } from '../../core/metrics.js';
import { DEFAULT_TIMEOUT_MS, httpRequest, RequestError, scrub, snippet, statusLine } from '../analysis/metrics/http.js';
import type { AlertEvent } from './events.js';
import { payloadFor, type Notification } from './payloads.js';

export { alertForEvent, type AlertEvent } from './events.js';
export type { Notification } from './payloads.js';

export interface AlertLookups {
  /** An AlertProvider from the informer cache. */
  provider(namespace: string, name: string): AlertProvider | undefined;
  /** Decoded data of a Secret; undefined when it does not exist. */
  secret(namespace: string, name: string): Promise<Record<string, string> | undefined>;
  now?: () => number;
}

/** The logger calls the Alerter makes (a pino Logger fits). */
export interface AlertLogger {
  warn(obj: object, msg: string): void;
  debug(obj: object, msg: string): void;
}

export interface AlerterOptions {
  logger?: AlertLogger;
  /** Registers canary_gate_alerts_total{type, result}. */
  registry?: Registry;
  /** Timeout of one attempt; default 10 s. */
  timeoutMs?: number;
  /** Pause before the retry; default 1 s. */
  retryDelayMs?: number;
  /** Aborts deliveries in flight (shutdown). */
  signal?: AbortSignal;
}

export interface AlertDelivery {
  /** The Canary's alert entry. */
  alert: string;
  /** namespace/name of the AlertProvider. */
  provider: string;
  /** Its type, or "unknown" when it could not be resolved. */
  type: string;
  delivered: boolean;
  attempts: number;
  /** Why it was not delivered (no secrets in it). */
  reason?: string;
}

const RANK: Record<AlertSeverity, number> = { info: 0, warn: 1, error: 2 };

/** True when an alert entry of severity `threshold` receives an event of severity `event`. */
export function admits(threshold: AlertSeverity | undefined, event: AlertSeverity): boolean {
  return RANK[event] >= RANK[threshold ?? 'info'];
}

export class Alerter {
  private readonly counter?: Counter;
  private readonly sent = new Map<string, number>();
  private readonly failed = new Map<string, number>();

  constructor(
    private readonly lookups: AlertLookups,
    private readonly opts: AlerterOptions = {},
  ) {
    if (opts.registry) {
      this.counter = opts.registry.counter('canary_gate_alerts_total', 'Alerts posted to receivers, by AlertProvider type and result (sent, failed).', [
        'type',
        'result',
      ]);
    }
  }

  /** Deliveries so far by provider type. */
  stats(): { sent: Record<string, number>; failed: Record<string, number> } {
    return { sent: Object.fromEntries(this.sent), failed: Object.fromEntries(this.failed) };
  }

  /** Sends the event to every alert of the Canary that admits its severity. Never rejects. */
  async send(canary: Canary, event: AlertEvent): Promise<AlertDelivery[]> {
    try {
      const alerts = (canary.spec?.analysis?.alerts ?? []).filter((a) => admits(a.severity, event.severity));
      if (alerts.length === 0) return [];
      const n = this.notification(canary, event);
      return await Promise.all(alerts.map((a) => this.deliver(canary, a.name, a.providerRef, n)));
    } catch (err) {
      this.opts.logger?.warn({ canary: keyOf(canary), err: err instanceof Error ? err.name : 'error' }, 'alerts not sent');
      return [];
    }
  }

  private notification(canary: Canary, e: AlertEvent): Notification {
    const now = this.lookups.now ?? Date.now;
    return {
      canary: { name: canary.metadata.name ?? '', namespace: canary.metadata.namespace ?? '' },
      severity: e.severity,
      reason: e.reason,
      message: e.message,
      revision: e.revision ?? canary.status?.pendingRevision ?? canary.status?.lastPromotedRevision ?? '',
      phase: e.phase ?? canary.status?.phase ?? '',
      weight: e.weight ?? canary.status?.canaryWeight ?? 0,
      timestamp: new Date(now()).toISOString(),
      metadata: { ...(e.metadata ?? {}) },
    };
  }

  private async deliver(canary: Canary, alert: string, ref: { name: string; namespace?: string }, n: Notification): Promise<AlertDelivery> {
    const ns = ref.namespace || canary.metadata.namespace || '';
    const providerKey = `${ns}/${ref.name}`;
    let type = 'unknown';
    let secrets: string[] = [];
    let attempts = 0;
    const outcome = (delivered: boolean, reason?: string): AlertDelivery => {
      const d: AlertDelivery = { alert, provider: providerKey, type, delivered, attempts };
      const counts = delivered ? this.sent : this.failed;
      counts.set(type, (counts.get(type) ?? 0) + 1);
      this.counter?.labels(type, delivered ? 'sent' : 'failed').inc();
      const fields = { canary: keyOf(canary), alert, provider: providerKey, type, reason: n.reason, attempts };
      if (delivered) {
        this.opts.logger?.debug(fields, 'alert sent');
      } else {
        d.reason = scrub(reason ?? 'not delivered', secrets);
        this.opts.logger?.warn({ ...fields, error: d.reason }, 'alert not delivered');
      }
      return d;
    };
    try {
      const provider = this.lookups.provider(ns, ref.name);
      if (!provider) return outcome(false, `AlertProvider ${providerKey} not found`);
      const spec = provider.spec;
      type = spec.type;
      let data: Record<string, string> | undefined;
      if (spec.secretRef?.name) {
        try {
          data = await this.lookups.secret(ns, spec.secretRef.name);
        } catch (err) {
          return outcome(false, err instanceof Error ? err.message : 'could not read the Secret');
        }
        if (!data) return outcome(false, `Secret ${ns}/${spec.secretRef.name} not found`);
      }
      const address = data?.address || spec.address;
      const proxy = data?.proxy || spec.proxy;
      secrets = [address, proxy, ...Object.values(data ?? {})].filter((s): s is string => !!s);
      if (!address) return outcome(false, 'no address: set spec.address or the key "address" of the Secret');
      const payload = payloadFor(spec.type, n, { ...(spec.channel ? { channel: spec.channel } : {}), ...(spec.username ? { username: spec.username } : {}) });
      if (payload === undefined) return outcome(false, `unsupported AlertProvider type "${String(spec.type)}"`);
      const body = JSON.stringify(payload);
      let reason = '';
      for (;;) {
        attempts++;
        let retryable: boolean;
        try {
          const res = await httpRequest({
            url: address,
            method: 'POST',
            headers: { 'content-type': 'application/json; charset=utf-8', accept: 'application/json, text/plain, */*' },
            body,
            timeoutMs: this.opts.timeoutMs ?? DEFAULT_TIMEOUT_MS,
            ...(proxy ? { proxy } : {}),
            ...(this.opts.signal ? { signal: this.opts.signal } : {}),
            maxResponseBytes: 64 * 1024,
          });
          if (res.status >= 200 && res.status <= 299) return outcome(true);
          const s = snippet(res.body, 120);
          reason = s ? `${statusLine(res)}: ${s}` : statusLine(res);
          retryable = res.status >= 500 || res.status === 429 || res.status === 408;
        } catch (err) {
          reason = err instanceof RequestError ? err.reason : 'request failed';
          retryable = err instanceof RequestError ? err.retryable : false;
        }
        if (!retryable || attempts >= 2 || this.opts.signal?.aborted) break;
        await sleep(this.opts.retryDelayMs ?? 1000, this.opts.signal);
      }
      return outcome(false, reason);
    } catch (err) {
      return outcome(false, err instanceof Error ? err.message : 'error');
    }
  }
}

function keyOf(c: Canary): string {
  return `${c.metadata?.namespace ?? ''}/${c.metadata?.name ?? ''}`;
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const t = setTimeout(resolve, ms);
    signal?.addEventListener(
      'abort',
      () => {
        clearTimeout(t);
        resolve();
      },
      { once: true },
    );
  });
}
