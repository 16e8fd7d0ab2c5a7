// Promotion windows (`spec.promotion.windows`): cron expressions whose
// matching minutes are open, each in its own time zone. Outside every window
// a run holds at its current step and a pending change does not start.
//
// The expressions are parsed and matched by node-cron (minute granularity:
// five fields; a sixth, seconds, field is refused). Whether a minute is open
// is always node-cron's answer. Finding the next open minute scans forward in
// blocks of 15 minutes (every time zone's offset is a multiple of 15
// minutes, so a block is one local hour's run of minutes): a block whose
// local hour or month the expression never names is skipped without asking
// node-cron about each minute. The answer is memoised per window set: while
// the clock has not reached the memoised opening, no minute before it can be
// open, so it stands.

import cron from 'node-cron';
import type { PromotionWindow } from '../../core/api/types.js';

const MINUTE = 60_000;
/** How far ahead the next opening is looked for: a week and a day covers every weekly schedule. */
const HORIZON_MINUTES = 8 * 24 * 60;

export interface WindowState {
  open: boolean;
  /** Epoch ms of the next open minute (absent when open, or none within 8 days). */
  nextOpenMs?: number;
  /** What is wrong with a window: the run holds (never proceeds on a schedule it cannot read). */
  error?: string;
}

interface Matcher {
  match(date: Date): boolean;
  /** Local hours, minutes and months the expression names (for skipping blocks). */
  hours: Set<number>;
  minutes: Set<number>;
  months: Set<number>;
  /** Local month, hour and minute of an instant in the window's zone. */
  local(ms: number): { month: number; hour: number; minute: number };
}

const formatters = new Map<string, Intl.DateTimeFormat>();

function localParts(timeZone: string, ms: number): { month: number; hour: number; minute: number } {
  let f = formatters.get(timeZone);
  if (!f) {
    f = new Intl.DateTimeFormat('en-US', { timeZone, month: 'numeric', hour: 'numeric', minute: 'numeric', hourCycle: 'h23' });
    formatters.set(timeZone, f);
  }
  const out = { month: 0, hour: 0, minute: 0 };
  for (const p of f.formatToParts(new Date(ms))) {
    if (p.type === 'month') out.month = Number(p.value);
    else if (p.type === 'hour') out.hour = Number(p.value);
    else if (p.type === 'minute') out.minute = Number(p.value);
  }
  return out;
}

const matchers = new Map<string, Matcher>();

/** Why a window is invalid, or undefined. */
export function windowError(w: PromotionWindow): string | undefined {
  const fields = w.schedule.trim().split(/\s+/);
  if (fields.length !== 5) return `schedule "${w.schedule}" must have five fields (minute hour day-of-month month day-of-week); got ${fields.length}`;
  const v = cron.validateDetailed(w.schedule);
  if (!v.valid) return `schedule "${w.schedule}": ${v.errors.map((e) => e.message).join('; ')}`;
  if (w.timeZone !== undefined) {
    try {
      new Intl.DateTimeFormat('en-US', { timeZone: w.timeZone });
    } catch {
      return `timeZone "${w.timeZone}" is not an IANA time zone (e.g. Europe/Berlin, America/New_York, UTC)`;
    }
  }
  return undefined;
}

function matcher(w: PromotionWindow): Matcher {
  const key = `${w.schedule}\u0000${w.timeZone ?? 'UTC'}`;
  let m = matchers.get(key);
  if (!m) {
    // A task that is never started: node-cron's matcher, time zone included.
    const zone = w.timeZone ?? 'UTC';
    const task = cron.createTask(w.schedule, () => undefined, { timezone: zone });
    const fields = cron.parse(w.schedule);
    m = {
      match: (d) => task.match(d),
      hours: new Set(fields.hour),
      minutes: new Set(fields.minute),
      months: new Set(fields.month),
      local: (ms) => localParts(zone, ms),
    };
    matchers.set(key, m);
  }
  return m;
}

/** Whether the minute starting at `minuteMs` is open in any window (node-cron's answer). */
export function openAt(windows: readonly PromotionWindow[], minuteMs: number): boolean {
  const d = new Date(minuteMs);
  return windows.some((w) => matcher(w).match(d));
}

const BLOCK = 15 * MINUTE;

/** The first open minute in [fromMs, toMs] (whole minutes), or undefined. Exported for tests. */
export function scanForOpening(windows: readonly PromotionWindow[], fromMs: number, toMs: number): number | undefined {
  let best: number | undefined;
  for (const w of windows) {
    const m = matcher(w);
    let t = fromMs;
    while (t <= toMs && (best === undefined || t < best)) {
      const blockEnd = Math.min(toMs, (Math.floor(t / BLOCK) + 1) * BLOCK - MINUTE);
      const local = m.local(t);
      if (m.months.has(local.month) && m.hours.has(local.hour)) {
        let found: number | undefined;
        for (let u = t, lm = local.minute; u <= blockEnd; u += MINUTE, lm++) {
          if (m.minutes.has(lm) && m.match(new Date(u))) {
            found = u;
            break;
          }
        }
        if (found !== undefined) {
          best = best === undefined ? found : Math.min(best, found);
          break;
        }
      }
      t = blockEnd + MINUTE;
    }
  }
  return best;
}

const nextOpenMemo = new Map<string, { fromMs: number; nextMs: number | undefined }>();

/** Whether `nowMs` is inside one of the windows, and if not, when the next one opens. Pure but for memos. */
export function windowState(windows: readonly PromotionWindow[] | undefined, nowMs: number): WindowState {
  if (!windows || windows.length === 0) return { open: true };
  for (const w of windows) {
    const error = windowError(w);
    if (error) return { open: false, error };
  }
  const minute = Math.floor(nowMs / MINUTE) * MINUTE;
  if (openAt(windows, minute)) return { open: true };
  const key = windows.map((w) => `${w.schedule}\u0000${w.timeZone ?? 'UTC'}`).join('\u0001');
  const memo = nextOpenMemo.get(key);
  if (memo && memo.fromMs <= minute && (memo.nextMs === undefined ? minute - memo.fromMs < 60 * MINUTE : minute < memo.nextMs)) {
    return memo.nextMs === undefined ? { open: false } : { open: false, nextOpenMs: memo.nextMs };
  }
  const next = scanForOpening(windows, minute + MINUTE, minute + HORIZON_MINUTES * MINUTE);
  if (nextOpenMemo.size > 1000) nextOpenMemo.clear();
  nextOpenMemo.set(key, { fromMs: minute, nextMs: next });
  return next === undefined ? { open: false } : { open: false, nextOpenMs: next };
}
