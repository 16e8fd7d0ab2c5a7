// Pure text for the operator commands: status tables, ages, progress bars,
// the plain lines `watch` prints in CI logs and the block it redraws in a
// terminal. No I/O: everything takes the objects and the time as arguments.

import type { ChangeRecord, Canary, CanaryPhase } from '../../core/api/types.js';
import { identityOf } from '../decide/stages.js';
import { ConditionType } from '../decide/reasons.js';
import { waitsForSharedConfig } from '../decide/shared-configs.js';
import { resolveAnalysis, type ResolvedAnalysis } from '../decide/analysis-config.js';

/** The resolved analysis, or undefined for a spec the reconciler would reject too. */
export function analysisOf(c: Canary): ResolvedAnalysis | undefined {
  try {
    return resolveAnalysis(c.spec);
  } catch {
    return undefined;
  }
}

/**
 * kubectl's duration for ages (apimachinery duration.HumanDuration):
 * 45s, 119s, 3m20s, 42m, 5h3m, 2d4h, 30d, 2y10d.
 */
export function humanDuration(ms: number): string {
  const seconds = Math.trunc(ms / 1000);
  if (seconds < -1) return '<invalid>';
  if (seconds < 0) return '0s';
  if (seconds < 120) return `${seconds}s`;
  const minutes = Math.trunc(seconds / 60);
  if (minutes < 10) {
    const s = seconds % 60;
    return s === 0 ? `${minutes}m` : `${minutes}m${s}s`;
  }
  if (minutes < 180) return `${minutes}m`;
  const hours = Math.trunc(minutes / 60);
  if (hours < 8) {
    const m = minutes % 60;
    return m === 0 ? `${hours}h` : `${hours}h${m}m`;
  }
  if (hours < 48) return `${hours}h`;
  if (hours < 24 * 8) {
    const h = hours % 24;
    return h === 0 ? `${Math.trunc(hours / 24)}d` : `${Math.trunc(hours / 24)}d${h}h`;
  }
  if (hours < 24 * 365 * 2) return `${Math.trunc(hours / 24)}d`;
  if (hours < 24 * 365 * 8) {
    const days = Math.trunc(hours / 24);
    const dy = days % 365;
    return dy === 0 ? `${Math.trunc(days / 365)}y` : `${Math.trunc(days / 365)}y${dy}d`;
  }
  return `${Math.trunc(hours / 24 / 365)}y`;
}

/** Age of a timestamp as kubectl prints it; `<unknown>` when there is none. */
export function age(timestamp: string | undefined, now: number): string {
  const t = Date.parse(timestamp ?? '');
  return Number.isNaN(t) ? '<unknown>' : humanDuration(now - t);
}

export interface Progress {
  /** weight: percent of traffic toward maxWeight; iterations: blue/green and A/B. */
  kind: 'weight' | 'iterations';
  value: number;
  max: number;
}

export function progressOf(c: Canary): Progress {
  const a = analysisOf(c);
  const s = c.status ?? {};
  if (a && a.strategy !== 'canary') return { kind: 'iterations', value: s.iterations ?? 0, max: a.iterations };
  return { kind: 'weight', value: s.canaryWeight ?? 0, max: a?.maxWeight ?? 0 };
}

/** `20/50` (weight) or `2/3` (iterations). */
export function progressText(p: Progress): string {
  return `${p.value}/${p.max}`;
}

/** failedChecks/threshold, e.g. `1/5`. */
export function checksText(c: Canary): string {
  return `${c.status?.failedChecks ?? 0}/${analysisOf(c)?.threshold ?? '?'}`;
}

export function targetText(c: Canary): string {
  const ref = c.spec?.targetRef;
  return ref ? `${ref.kind}/${ref.name}` : '<none>';
}

export function phaseText(c: Canary): string {
  const phase: CanaryPhase | 'Unknown' = c.status?.phase ?? 'Unknown';
  return c.spec?.suspend ? `${phase} (suspended)` : phase;
}

/**
 * One line per Canary whose run passed and waits for the other consumers
 * of a shared ConfigMap or Secret: who it waits for (the table has no room
 * for it).
 */
export function sharedWaitLines(canaries: Canary[]): string[] {
  return canaries
    .filter((c) => waitsForSharedConfig(c.status))
    .map((c) => `${c.metadata.namespace}/${c.metadata.name} waits: ${c.status?.conditions?.find((x) => x.type === ConditionType.SharedConfig)?.message ?? ''}`);
}

/** Header and one row per Canary, sorted by namespace and name. */
export function statusRows(canaries: Canary[], opts: { allNamespaces: boolean; now: number }): string[][] {
  const header = ['NAME', 'TARGET', 'PHASE', 'WEIGHT', 'CHECKS', 'PENDING', 'AGE'];
  if (opts.allNamespaces) header.unshift('NAMESPACE');
  const sorted = [...canaries].sort(
    (a, b) => (a.metadata.namespace ?? '').localeCompare(b.metadata.namespace ?? '') || (a.metadata.name ?? '').localeCompare(b.metadata.name ?? ''),
  );
  const rows = sorted.map((c) => {
    const row = [
      c.metadata.name ?? '',
      targetText(c),
      phaseText(c),
      progressText(progressOf(c)),
      checksText(c),
      c.status?.pendingRevision || '-',
      age(c.status?.lastTransitionTime, opts.now),
    ];
    if (opts.allNamespaces) row.unshift(c.metadata.namespace ?? '');
    return row;
  });
  return [header, ...rows];
}

/**
 * Where one change stands in each stage that has seen it: `id` is a
 * revision or an identity as status.changeIdentity shows it (images:...,
 * revision:..., label:key=value). Canaries that never saw it are left out.
 */
export function changeRows(canaries: Canary[], id: string, now: number): string[][] {
  const header = ['NAMESPACE', 'NAME', 'CHANGE', 'STATE', 'SINCE'];
  const matches = (c: Canary, r: ChangeRecord | undefined) => !!r && (r.revision === id || identityOf(c.spec?.promotion?.identity, r) === id);
  const rows: string[][] = [];
  const sorted = [...canaries].sort(
    (a, b) => (a.metadata.namespace ?? '').localeCompare(b.metadata.namespace ?? '') || (a.metadata.name ?? '').localeCompare(b.metadata.name ?? ''),
  );
  for (const c of sorted) {
    const st = c.status ?? {};
    const current = st.changeIdentity === id || st.pendingRevision === id || st.lastAppliedRevision === id;
    let state: string | undefined;
    let since: string | undefined;
    if (current && RUNNING.includes(st.phase ?? 'Initialized')) {
      const waiting = st.conditions?.find((x) => (x.type === 'UpstreamReady' && x.status === 'False') || (x.type === ConditionType.SharedConfig && waitsForSharedConfig(st)));
      state = waiting ? `waiting: ${waiting.message}` : `${st.phase}${st.phase === 'Progressing' ? ` ${progressText(progressOf(c))}` : ''}`;
      since = st.lastTransitionTime;
    } else if (matches(c, st.lastPromotion)) {
      state = 'promoted';
      since = st.lastPromotion?.at;
    } else if (matches(c, st.lastFailure)) {
      state = 'rolled back';
      since = st.lastFailure?.at;
    } else if (current) {
      state = st.phase ?? 'Unknown';
      since = st.lastTransitionTime;
    }
    if (state) rows.push([c.metadata.namespace ?? '', c.metadata.name ?? '', st.changeIdentity ?? id, state, age(since, now)]);
  }
  return [header, ...rows];
}

/** Columns left-aligned and separated by three spaces, as kubectl's tabwriter; no trailing blanks. */
export function renderTable(rows: string[][]): string {
  const widths: number[] = [];
  for (const row of rows) row.forEach((cell, i) => (widths[i] = Math.max(widths[i] ?? 0, cell.length)));
  return rows.map((row) => row.map((cell, i) => (i === row.length - 1 ? cell : cell.padEnd((widths[i] ?? 0) + 3))).join('').trimEnd()).join('\n');
}

/** `[#####-----]`: value toward max in width cells (clamped; an empty max is an empty bar). */
export function progressBar(value: number, max: number, width: number, chars: { full: string; empty: string } = { full: '#', empty: '-' }): string {
  const ratio = max > 0 ? Math.min(1, Math.max(0, value / max)) : 0;
  const full = Math.round(ratio * width);
  return `[${chars.full.repeat(full)}${chars.empty.repeat(width - full)}]`;
}

const RUNNING: readonly CanaryPhase[] = ['Waiting', 'Progressing', 'WaitingPromotion'];

/**
 * Milliseconds until the next analysis step (lastStepTime + interval − now),
 * negative when it is overdue; undefined when no step is scheduled (no run,
 * no step taken yet, suspended).
 */
export function nextStepIn(c: Canary, now: number): number | undefined {
  const s = c.status ?? {};
  if (!s.phase || !RUNNING.includes(s.phase) || c.spec?.suspend) return undefined;
  const last = Date.parse(s.lastStepTime ?? '');
  const a = analysisOf(c);
  if (Number.isNaN(last) || !a) return undefined;
  return last + a.intervalMs - now;
}

/** `in 12s`, `in 1m30s`, `due now`. */
export function formatIn(ms: number | undefined): string {
  if (ms === undefined) return '-';
  if (ms <= 0) return 'due now';
  const total = Math.ceil(ms / 1000);
  if (total < 60) return `in ${total}s`;
  const m = Math.trunc(total / 60);
  const s = total % 60;
  if (m < 60) return s === 0 ? `in ${m}m` : `in ${m}m${s}s`;
  const h = Math.trunc(m / 60);
  return m % 60 === 0 ? `in ${h}h` : `in ${h}h${m % 60}m`;
}

/** RFC 3339 in UTC to the second: 2026-01-01T12:00:00Z. */
export function timestamp(now: number): string {
  return new Date(now).toISOString().replace(/\.\d{3}Z$/, 'Z');
}

/** The revision the status is about: the running one, else the one just failed or promoted. */
export function revisionShown(c: Canary): string | undefined {
  const s = c.status ?? {};
  if (s.pendingRevision) return s.pendingRevision;
  if (s.phase === 'Failed') return s.failedRevision;
  return s.lastPromotedRevision;
}

/** Last metric results: `error-rate=0.2 pass, latency=412 fail`. */
export function metricsText(c: Canary): string {
  return (c.status?.metrics ?? [])
    .map((m) => `${m.name}=${m.value === undefined ? 'nodata' : String(m.value)} ${m.result ?? '?'}`)
    .join(', ');
}

/**
 * The state as one line, without the time: what `watch` compares to decide
 * whether something changed. E.g.
 * `Progressing weight 20/50 checks 0/5 revision 1a2b3c4d5e6f: weight 20/50`.
 */
export function summaryLine(c: Canary): string {
  const p = progressOf(c);
  const parts = [phaseText(c), `${p.kind} ${progressText(p)}`, `checks ${checksText(c)}`, `revision ${revisionShown(c) ?? '-'}`];
  const metrics = metricsText(c);
  if (metrics) parts.push(`metrics ${metrics}`);
  let line = parts.join(' ');
  if (c.status?.message) line += `: ${c.status.message}`;
  return line;
}

/** One timestamped line for logs: `2026-01-01T12:00:00Z Progressing weight 20/50 checks 0/5 revision …`. */
export function plainLine(c: Canary, now: number): string {
  return `${timestamp(now)} ${summaryLine(c)}`;
}

/** A line of the terminal block, cut to the terminal width so that redrawing counts lines right. */
function fit(line: string, width: number): string {
  if (width <= 1 || line.length < width) return line;
  return `${line.slice(0, Math.max(0, width - 2))}…`;
}

/** The block `watch` redraws in a terminal. */
export function ttyBlock(c: Canary, opts: { now: number; revision?: string | undefined; width?: number | undefined }): string[] {
  const s = c.status ?? {};
  const p = progressOf(c);
  const width = opts.width ?? 80;
  const bar = progressBar(p.value, p.max, 30, { full: '█', empty: '░' });
  const what = p.kind === 'weight' ? `weight ${p.value}% of ${p.max}%` : `iteration ${p.value} of ${p.max}`;
  const metricLines = (s.metrics ?? []).map((m) => {
    const when = m.checkedAt ? ` (${humanDuration(opts.now - Date.parse(m.checkedAt))} ago)` : '';
    return `  ${m.name.padEnd(24)} ${(m.value === undefined ? 'no data' : String(m.value)).padEnd(12)} ${m.result ?? '?'}${when}`;
  });
  const lines = [
    `${c.metadata.namespace}/${c.metadata.name} → ${targetText(c)}   revision ${opts.revision ?? revisionShown(c) ?? '-'}`,
    `${bar} ${what}`,
    `phase ${phaseText(c)} for ${age(s.lastTransitionTime, opts.now)}   failed checks ${checksText(c)}   next step ${formatIn(nextStepIn(c, opts.now))}`,
    `message ${s.message ?? '-'}`,
    ...(metricLines.length ? ['metrics', ...metricLines] : []),
  ];
  return lines.map((l) => fit(l, width));
}
