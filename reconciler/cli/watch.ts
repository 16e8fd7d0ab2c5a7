// `canary-gate watch NAME`: follows one rollout to its end and exits with a
// code a CI job can gate on. In a terminal it redraws a small block; in a log
// (stdout not a TTY) it prints one timestamped line per change.
//
// Changes come from a watch on the single Canary (fieldSelector
// metadata.name=NAME), restarted when it ends; a periodic GET of the target
// and the Canary backs it up (a watch can stall silently) and notices a
// revision withdrawn from the target before the reconciler started it.

import { statusCode } from '../../core/api/client.js';
import * as k8s from '@kubernetes/client-node';
import type { Command } from '../../core/cli.js';
import type { Canary } from '../../core/api/types.js';
import { parseDuration } from '../decide/analysis-config.js';
import { readTargetPending } from './actions.js';
import { observedLine } from './observed.js';
import { plainLine, summaryLine, targetText, timestamp, ttyBlock } from './format.js';
import { EXIT, begin, judge, type Observation, type Track } from './judge.js';
import { CONNECTION_HELP, CONNECTION_OPTIONS, UsageError, canaryPath, connect, describeApiError, getCanary, parseCommandArgs, runCommand, type Connection } from './kube.js';

const help = `Usage: canary-gate watch [-n NS] NAME [--timeout DURATION] [flags]

Follows the rollout of one Canary until its revision is promoted or rolled
back, and exits with a code a CI job can gate on:

  0  the revision was promoted (or nothing was pending when the watch started)
  1  the revision failed and was rolled back (also: the Canary does not exist,
     the API server cannot be reached)
  2  usage error
  3  the rollout was cancelled (the pending revision was withdrawn or replaced
     by a newer one) or the Canary was deleted
  4  --timeout elapsed first

The revision watched is the one pending on the target when the watch starts
(the change just applied), else the one the Canary is analysing. A revision
pending on the target that the reconciler has not started yet is waited for.
A revision that already failed exits 1 at once, unless \`canary-gate retry\`
was asked for it.

In a terminal, a block is redrawn: progress toward maxWeight (or the
iterations), phase, failed checks, the last message, the last metric results
and the time to the next step. Otherwise (CI logs), one line per change:

  2026-01-01T12:00:00Z Progressing weight 20/50 checks 0/5 revision 1a2b3c4d5e6f: weight 20/50

Flags:
  --timeout DURATION       give up after this long, exit 4 (e.g. 90s, 10m, 1h30m; default: no limit)
  --plain                  print lines even in a terminal
  --prometheus URL         also show the canary's observed share of the requests and
                           its success rate over the last 10 s, from the Pods' own
                           http_requests_total / http_request_duration_seconds in Prometheus

${CONNECTION_HELP}

Example (CI):
  kubectl apply -f web.yaml && canary-gate watch -n shop web --timeout 15m`;

/** Period of the GET that backs the watch up. */
const POLL_MS = 5000;
const MAX_BACKOFF_MS = 10_000;

interface Output {
  update(c: Canary, track: Track): void;
  note(text: string): void;
  finish(code: number, message: string): void;
  /** Redraws what depends on the clock (next step, ages). */
  tick(): void;
}

function plainOutput(): Output {
  let last = '';
  return {
    update(c) {
      const line = summaryLine(c);
      if (line === last) return;
      last = line;
      console.log(plainLine(c, Date.now()));
    },
    note(text) {
      console.log(`${timestamp(Date.now())} ${text}`);
    },
    finish(code, message) {
      console.log(`${timestamp(Date.now())} result: ${message} (exit ${code})`);
    },
    tick() {},
  };
}

function ttyOutput(stream: NodeJS.WriteStream): Output {
  let drawn = 0;
  let latest: Canary | undefined;
  let track: Track | undefined;
  let notes: string[] = [];
  const draw = () => {
    if (!latest) return;
    const width = stream.columns || 80;
    const lines = ttyBlock(latest, { now: Date.now(), revision: track?.revision, width });
    if (track?.revision && !track.seenRunning && latest.status?.pendingRevision !== track.revision) {
      lines.push(`waiting for the reconciler to start revision ${track.revision}`.slice(0, width - 1));
    }
    lines.push(...notes.map((n) => n.slice(0, width - 1)));
    // Back to the first line of the previous block, clear to the end of the screen, draw again.
    stream.write(`${drawn > 0 ? `\x1b[${drawn}F\x1b[J` : ''}${lines.join('\n')}\n`);
    drawn = lines.length;
  };
  return {
    update(c, t) {
      latest = c;
      track = t;
      draw();
    },
    note(text) {
      // Before the first block: a header line above it. Afterwards: a line under the block.
      if (!latest) return void stream.write(`${text}\n`);
      notes = [text];
      draw();
    },
    finish(code, message) {
      notes = [];
      draw();
      stream.write(`${message} (exit ${code})\n`);
    },
    tick: draw,
  };
}

export interface WatchOptions {
  name: string;
  /** 0: no limit. */
  timeoutMs: number;
  plain: boolean;
  /** Prometheus address: show the observed traffic split and success rate. */
  prometheus?: string;
}

export async function watchCanary(conn: Connection, opts: WatchOptions): Promise<number> {
  const { name } = opts;
  const namespace = conn.namespace;
  const started = Date.now();
  const out = opts.plain || !process.stdout.isTTY ? plainOutput() : ttyOutput(process.stdout);

  const first = await getCanary(conn, name);
  const targetPending = await readTargetPending(conn, first);
  let track = begin({ canary: first, targetPending });
  let latest = first;
  const where = `canary ${namespace}/${name} (${targetText(first)})`;
  if (track.verdict) {
    out.note(`watching ${where}`);
    out.finish(track.verdict.code, track.verdict.message);
    return track.verdict.code;
  }
  out.note(
    track.revision
      ? `watching revision ${track.revision} of ${where}${targetPending === track.revision && first.status?.pendingRevision !== track.revision ? ': pending on the target, waiting for the reconciler to start it' : ''}`
      : `watching ${where}: no revision pending yet`,
  );
  out.update(first, track);

  return new Promise<number>((resolve) => {
    let finished = false;
    let watchAbort: AbortController | undefined;
    let resourceVersion = first.metadata.resourceVersion;
    let backoffMs = 500;
    let restartTimer: NodeJS.Timeout | undefined;
    let lastProblem = '';
    const timers: NodeJS.Timeout[] = [];

    if (opts.prometheus) {
      let shown = '';
      let busy = false;
      timers.push(
        setInterval(() => {
          if (busy || finished) return;
          busy = true;
          void observedLine(opts.prometheus as string, namespace, latest.spec.targetRef.name).then((line) => {
            busy = false;
            if (line !== shown && !finished) out.note((shown = line));
          });
        }, 2000),
      );
    }

    const finish = (code: number, message: string) => {
      if (finished) return;
      finished = true;
      for (const t of timers) clearInterval(t);
      if (restartTimer) clearTimeout(restartTimer);
      watchAbort?.abort();
      out.finish(code, message);
      // A keep-alive socket of the aborted watch must not hold the process: exit anyway shortly.
      setTimeout(() => process.exit(code), 2000).unref();
      resolve(code);
    };

    const problem = (text: string) => {
      if (text === lastProblem) return;
      lastProblem = text;
      console.error(`${timestamp(Date.now())} warning: ${text}`);
    };

    const take = (obs: Observation) => {
      if (finished) return;
      const before = track;
      track = judge(track, obs);
      // judge returns the same track for an observation older than one already taken.
      if (obs.canary && track !== before) {
        latest = obs.canary;
        out.update(latest, track);
      }
      if (track.verdict) finish(track.verdict.code, track.verdict.message);
    };

    const startWatch = () => {
      if (finished) return;
      const w = new k8s.Watch(conn.kc);
      const opened = Date.now();
      const params: Record<string, string | boolean> = { fieldSelector: `metadata.name=${name}`, allowWatchBookmarks: true };
      if (resourceVersion) params.resourceVersion = resourceVersion;
      let gone = false; // the resourceVersion is too old (410): start from the current state
      w.watch(
        canaryPath(namespace),
        params,
        (type, obj: Canary & { code?: number; message?: string }) => {
          if (type === 'ERROR') {
            if (obj.code === 410) gone = true;
            else problem(`watch error: ${obj.message ?? JSON.stringify(obj)}`);
            return;
          }
          if (obj?.metadata?.resourceVersion) resourceVersion = obj.metadata.resourceVersion;
          if (type === 'BOOKMARK') return;
          lastProblem = '';
          take({ canary: type === 'DELETED' ? null : obj });
        },
        (err: unknown) => {
          watchAbort = undefined;
          if (finished) return;
          if (gone || statusCode(err) === 410) resourceVersion = undefined;
          if (err) problem(`the watch ended (${describeApiError(err)}); restarting`);
          // A watch that lasted is healthy: start again at once; a failing one backs off.
          backoffMs = Date.now() - opened > 10_000 ? 500 : Math.min(backoffMs * 2, MAX_BACKOFF_MS);
          restartTimer = setTimeout(startWatch, err || gone ? backoffMs : 0);
        },
      ).then(
        (abort) => {
          if (finished) abort.abort();
          else watchAbort = abort;
        },
        (err: unknown) => {
          problem(`cannot watch: ${describeApiError(err)}`);
          restartTimer = setTimeout(startWatch, (backoffMs = Math.min(backoffMs * 2, MAX_BACKOFF_MS)));
        },
      );
    };

    const poll = async () => {
      if (finished) return;
      try {
        // The target first: the Canary read after it is at least as new (see judge.ts).
        const pending = await readTargetPending(conn, latest);
        let canary: Canary | null;
        try {
          canary = await getCanary(conn, name);
        } catch (err) {
          if ((err as Error).message.startsWith(`canary "${name}" not found`)) canary = null;
          else throw err;
        }
        take(pending === undefined ? { canary } : { canary, targetPending: pending });
      } catch (err) {
        problem(`cannot read ${name}: ${describeApiError(err)}`);
      }
    };

    timers.push(setInterval(() => void poll(), POLL_MS));
    if (!(opts.plain || !process.stdout.isTTY)) timers.push(setInterval(() => out.tick(), 1000));
    if (opts.timeoutMs > 0) {
      const left = opts.timeoutMs - (Date.now() - started);
      const t = setTimeout(() => {
        const what = track.revision ? `revision ${track.revision}` : 'a pending revision';
        finish(EXIT.timeout, `timed out after ${opts.timeoutMs / 1000}s waiting for ${what} (phase ${latest.status?.phase ?? 'Unknown'})`);
      }, Math.max(0, left));
      timers.push(t);
    }
    startWatch();
  });
}

export const command: Command = {
  summary: 'follow a rollout until it is promoted or rolled back (exit code for CI)',
  help,
  run: (argv) =>
    runCommand('watch', async () => {
      const { values, positionals } = parseCommandArgs(
        argv,
        { ...CONNECTION_OPTIONS, timeout: { type: 'string' }, plain: { type: 'boolean' }, prometheus: { type: 'string' } },
        { min: 1, max: 1, names: 'NAME (the Canary)' },
      );
      let timeoutMs = 0;
      if (values.timeout !== undefined) {
        const text = values.timeout as string;
        try {
          timeoutMs = text === '0' ? 0 : parseDuration(text);
        } catch {
          throw new UsageError(`--timeout must be a duration such as 90s, 10m or 1h30m, got "${text}"`);
        }
      }
      const conn = connect(values as { kubeconfig?: string; context?: string; namespace?: string });
      const prometheus = values.prometheus as string | undefined;
      return watchCanary(conn, { name: positionals[0] as string, timeoutMs, plain: values.plain === true, ...(prometheus ? { prometheus } : {}) });
    }),
};
