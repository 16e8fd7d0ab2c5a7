// The processes' loggers: pino JSON lines with an ISO 8601 `time`, the same
// in the webhook and the reconciler.

import { pino, type Logger } from 'pino';

let lastMs = Number.NaN;
let lastField = '';

/**
 * pino's timestamp function, writing what pino.stdTimeFunctions.isoTime
 * writes, but formatting the date once per millisecond: under load many
 * lines share one, and toISOString() was half the cost of a log call on the
 * webhook's hot path.
 */
export function isoTimestamp(): string {
  const now = Date.now();
  if (now !== lastMs) {
    lastMs = now;
    lastField = `,"time":"${new Date(now).toISOString()}"`;
  }
  return lastField;
}

export function createLogger(component: string, level: string, base: Record<string, unknown> = {}): Logger {
  return pino({ level, base: { component, ...base }, timestamp: isoTimestamp });
}
