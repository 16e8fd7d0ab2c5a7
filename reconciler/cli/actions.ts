// `canary-gate promote|abort|retry|pause|resume NAME`: each reads the Canary,
// refuses clearly when the action does not apply, makes one small write and
// records an Event naming who asked.
//
// promote, abort and retry write an annotation whose value is the revision
// concerned (reconciler/observe.ts COMMAND_ANNOTATIONS): the reconciler acts
// on it only while that revision is the one in question, then clears it, so
// a command can never land on a newer revision by accident. pause and resume
// merge-patch spec.suspend.

import { requestTimeout, statusCode } from '../../core/api/client.js';
import * as k8s from '@kubernetes/client-node';
import { COMMAND_ANNOTATIONS, CONFIG_REVISION_ANNOTATION, PENDING_REVISION } from '../../core/contract.js';
import { configReferences } from '../observe/configs.js';
import type { Command } from '../../core/cli.js';
import type { Canary, CanaryPhase } from '../../core/api/types.js';

import { analysisOf } from './format.js';
import {
  CONNECTION_HELP,
  CONNECTION_OPTIONS,
  CliError,
  REQUEST_TIMEOUT_MS,
  actorOf,
  connect,
  describeApiError,
  getCanary,
  parseCommandArgs,
  patchCanary,
  recordEvent,
  runCommand,
  type Connection,
} from './kube.js';

export type Action = 'promote' | 'abort' | 'retry' | 'pause' | 'resume';

/** What one action decided to do: nothing (with a message), or a patch, an Event and a message. */
export type Plan =
  | { kind: 'refuse'; message: string }
  | { kind: 'noop'; message: string }
  | { kind: 'write'; patch: object; reason: string; eventMessage: string; message: string };

const ANALYSING: readonly CanaryPhase[] = ['Waiting', 'Progressing', 'WaitingPromotion'];
const PROMOTING: readonly CanaryPhase[] = ['Promoting'];

function ref(c: Canary): string {
  return `canary ${c.metadata.namespace}/${c.metadata.name}`;
}

function phaseOf(c: Canary): string {
  return c.status?.phase ?? 'Unknown';
}

function pausedNote(c: Canary): string {
  return c.spec?.suspend ? `\nNote: ${ref(c)} is paused (spec.suspend): nothing happens until \`canary-gate resume ${c.metadata.name}\`.` : '';
}

function nothingRunning(c: Canary, what: string): string {
  const s = c.status ?? {};
  const failed = s.phase === 'Failed' && s.failedRevision ? `; revision ${s.failedRevision} failed and was rolled back (\`canary-gate retry ${c.metadata.name}\` runs it again)` : '';
  return `nothing to ${what}: ${ref(c)} has no rollout in progress (phase ${phaseOf(c)}${failed})`;
}

/**
 * Decides what an action does to this Canary. Pure: `targetPending` is the
 * pending revision on the target (null: none; undefined: not known), read
 * by the caller for retry only.
 */
export function plan(action: Action, c: Canary, actor: string, targetPending?: string | null): Plan {
  const s = c.status ?? {};
  const annotations = c.metadata.annotations ?? {};
  const name = c.metadata.name ?? '';
  const phase = s.phase;
  switch (action) {
    case 'promote': {
      const rev = s.pendingRevision;
      if (!rev) return { kind: 'refuse', message: nothingRunning(c, 'promote') };
      if (phase && PROMOTING.includes(phase)) return { kind: 'noop', message: `revision ${rev} of ${ref(c)} is already being promoted (phase ${phase})` };
      if (annotations[COMMAND_ANNOTATIONS.promote] === rev) return { kind: 'noop', message: `promotion of revision ${rev} of ${ref(c)} was already requested; waiting for the reconciler${pausedNote(c)}` };
      const a = analysisOf(c);
      const confirms = a?.gates['confirm-promotion'].length ?? 0;
      const interval = a ? `${a.intervalMs / 1000}s` : 'analysis.interval';
      const when =
        phase === 'Waiting'
          ? 'it still waits for its confirm-rollout gates; once it starts, its first analysis step promotes it'
          : `the remaining steps are skipped: the next analysis step (every ${interval}) promotes it once its checks pass`;
      const gates = confirms > 0 ? `; its confirm-promotion gate${confirms > 1 ? 's' : ''} must still approve` : '';
      return {
        kind: 'write',
        patch: { metadata: { annotations: { [COMMAND_ANNOTATIONS.promote]: rev } } },
        reason: 'PromoteRequested',
        eventMessage: `promotion of revision ${rev} requested by ${actor}: remaining steps skipped`,
        message: `promote requested for revision ${rev} of ${ref(c)}: ${when}${gates}.${pausedNote(c)}`,
      };
    }
    case 'abort': {
      const rev = s.pendingRevision;
      if (!rev) return { kind: 'refuse', message: nothingRunning(c, 'abort') };
      if (phase && PROMOTING.includes(phase)) return { kind: 'refuse', message: `too late to abort: revision ${rev} of ${ref(c)} is already being promoted (phase ${phase})` };
      if (annotations[COMMAND_ANNOTATIONS.abort] === rev) return { kind: 'noop', message: `abort of revision ${rev} of ${ref(c)} was already requested; waiting for the reconciler${pausedNote(c)}` };
      return {
        kind: 'write',
        patch: { metadata: { annotations: { [COMMAND_ANNOTATIONS.abort]: rev } } },
        reason: 'AbortRequested',
        eventMessage: `abort of revision ${rev} requested by ${actor}`,
        message:
          `abort requested for revision ${rev} of ${ref(c)}: the reconciler rolls it back at its next sync ` +
          `(all traffic to the primary, the canary copy scaled to zero). The change stays pending on ` +
          `${c.spec.targetRef.kind}/${c.spec.targetRef.name}; \`canary-gate retry ${name}\` runs it again.${pausedNote(c)}`,
      };
    }
    case 'retry': {
      const rev = s.failedRevision;
      if (phase !== 'Failed' || !rev) {
        const running = s.pendingRevision && phase && ANALYSING.includes(phase) ? `; revision ${s.pendingRevision} is being analysed` : '';
        return { kind: 'refuse', message: `nothing to retry: ${ref(c)} is in phase ${phaseOf(c)}${running} (retry applies to a Failed rollout)` };
      }
      const target = `${c.spec.targetRef.kind}/${c.spec.targetRef.name}`;
      if (targetPending === null) return { kind: 'refuse', message: `nothing to retry: revision ${rev} is no longer pending on ${target} (the change was withdrawn)` };
      if (targetPending !== undefined && targetPending !== rev) {
        return { kind: 'refuse', message: `nothing to retry: ${target} now holds revision ${targetPending}, which replaces the failed ${rev} and starts on its own` };
      }
      if (annotations[COMMAND_ANNOTATIONS.retry] === rev) return { kind: 'noop', message: `retry of revision ${rev} of ${ref(c)} was already requested; waiting for the reconciler${pausedNote(c)}` };
      // A promote or abort asked for this revision in its failed run and never
      // acted on is still there: the retried run would be promoted at its first
      // step, or aborted at once. Remove it in the same write.
      const leftovers = (['promote', 'abort'] as const).filter((k) => annotations[COMMAND_ANNOTATIONS[k]] === rev);
      const patchAnnotations: Record<string, string | null> = { [COMMAND_ANNOTATIONS.retry]: rev };
      for (const k of leftovers) patchAnnotations[COMMAND_ANNOTATIONS[k]] = null;
      const cleared = leftovers.length ? ` The ${leftovers.join(' and ')} request left over from its failed run was removed.` : '';
      return {
        kind: 'write',
        patch: { metadata: { annotations: patchAnnotations } },
        reason: 'RetryRequested',
        eventMessage: `retry of failed revision ${rev} requested by ${actor}`,
        message: `retry requested for revision ${rev} of ${ref(c)}: its analysis starts again from the first step, with no failed checks.${cleared}${pausedNote(c)}`,
      };
    }
    case 'pause': {
      if (c.spec?.suspend) return { kind: 'noop', message: `${ref(c)} is already paused` };
      const rolling = s.pendingRevision ? ` Revision ${s.pendingRevision} stays where it is (phase ${phaseOf(c)}); its traffic split is kept.` : '';
      return {
        kind: 'write',
        patch: { spec: { suspend: true } },
        reason: 'Paused',
        eventMessage: `paused (spec.suspend=true) by ${actor}`,
        message: `paused ${ref(c)}: the reconciler stops acting on it.${rolling} \`canary-gate resume ${name}\` continues.`,
      };
    }
    case 'resume': {
      if (!c.spec?.suspend) return { kind: 'noop', message: `${ref(c)} is not paused` };
      return {
        kind: 'write',
        patch: { spec: { suspend: false } },
        reason: 'Resumed',
        eventMessage: `resumed (spec.suspend=false) by ${actor}`,
        message: `resumed ${ref(c)}: the reconciler acts on it again${s.pendingRevision ? ` and continues revision ${s.pendingRevision}` : ''}.`,
      };
    }
  }
}

/** The pending revision on the Canary's target: null when none, undefined when it cannot be read. */
export async function readTargetPending(conn: Connection, c: Canary): Promise<string | null | undefined> {
  const namespace = c.metadata.namespace ?? conn.namespace;
  const { kind, name } = c.spec.targetRef;
  try {
    const obj =
      kind === 'Service'
        ? await conn.core.readNamespacedService({ name, namespace }, requestTimeout(REQUEST_TIMEOUT_MS))
        : await conn.apps.readNamespacedDeployment({ name, namespace }, requestTimeout(REQUEST_TIMEOUT_MS));
    // A Deployment that references ConfigMaps or Secrets runs combined
    // revisions of its template and their data, which only the reconciler
    // derives (from its caches): the target's own annotation does not tell.
    if (kind !== 'Service' && revisionCoversConfigs((obj as k8s.V1Deployment).spec?.template)) return undefined;
    return (obj as k8s.V1Deployment | k8s.V1Service).metadata?.annotations?.[PENDING_REVISION] ?? null;
  } catch (err) {
    if (statusCode(err) === 404) return null;
    return undefined;
  }
}

/** True when a pod template's revision is a combined one (reconciler/observe/configs.ts). */
function revisionCoversConfigs(template: k8s.V1PodTemplateSpec | undefined): boolean {
  return configReferences(template).length > 0 || template?.metadata?.annotations?.[CONFIG_REVISION_ANNOTATION] !== undefined;
}

const HELP: Record<Action, { usage: string; summary: string; text: string }> = {
  promote: {
    usage: 'canary-gate promote NAME [flags]',
    summary: 'skip the remaining steps of the running revision and promote it',
    text: `Asks the reconciler to promote the revision the Canary is analysing now
(status.pendingRevision) without the remaining traffic steps or iterations.
The promotion happens at the next analysis step, once that step's checks
pass (rollout gates and metrics); confirm-traffic-increase gates no longer
hold it, but confirm-promotion gates still must approve.

Writes the annotation ${COMMAND_ANNOTATIONS.promote}=<revision> (the reconciler clears it) and records
a PromoteRequested Event. Refused when no rollout is in progress.`,
  },
  abort: {
    usage: 'canary-gate abort NAME [flags]',
    summary: 'roll back the running revision now',
    text: `Asks the reconciler to roll back the revision the Canary is analysing now
(status.pendingRevision): all traffic back to the primary, the canary copy
scaled to zero, phase Failed with reason Aborted. The change stays pending on
the target; \`canary-gate retry NAME\` runs it again.

Writes the annotation ${COMMAND_ANNOTATIONS.abort}=<revision> (the reconciler clears it) and records an
AbortRequested Event. Refused when no rollout is in progress, or when the
revision is already being promoted.`,
  },
  retry: {
    usage: 'canary-gate retry NAME [flags]',
    summary: 'run a failed (rolled back) revision again',
    text: `Asks the reconciler to start the analysis of the revision that failed
(status.failedRevision) again from the first step. A failed revision is
otherwise never re-run, not even when the same manifest is applied again.

Writes the annotation ${COMMAND_ANNOTATIONS.retry}=<revision> (the reconciler clears it) and records a
RetryRequested Event. A promote or abort request for the same revision left
over from its failed run is removed in the same write (it would otherwise
promote the new run at its first step, or abort it at once). Refused unless
the phase is Failed and the revision is still pending on the target.`,
  },
  pause: {
    usage: 'canary-gate pause NAME [flags]',
    summary: 'stop the reconciler acting on a Canary (spec.suspend=true)',
    text: `Sets spec.suspend to true (a merge patch) and records a Paused Event. The
reconciler then leaves the Canary as it is: a running revision keeps its
traffic split and does not advance, no checks run, no command is acted on.
\`canary-gate resume NAME\` undoes it.`,
  },
  resume: {
    usage: 'canary-gate resume NAME [flags]',
    summary: 'let the reconciler act on a paused Canary again (spec.suspend=false)',
    text: `Sets spec.suspend to false (a merge patch) and records a Resumed Event. A
running revision continues from where it stood.`,
  },
};

function helpOf(action: Action): string {
  const h = HELP[action];
  return `Usage: ${h.usage}\n\n${h.text}\n\n${CONNECTION_HELP}\n\nExample:\n  canary-gate ${action} -n shop web`;
}

export function actionCommand(action: Action): Command {
  return {
    summary: HELP[action].summary,
    help: helpOf(action),
    run: (argv) =>
      runCommand(action, async () => {
        const { values, positionals } = parseCommandArgs(argv, { ...CONNECTION_OPTIONS }, { min: 1, max: 1, names: 'NAME (the Canary)' });
        const conn = connect(values as { kubeconfig?: string; context?: string; namespace?: string });
        const name = positionals[0] as string;
        const canary = await getCanary(conn, name);
        const targetPending = action === 'retry' && canary.status?.phase === 'Failed' ? await readTargetPending(conn, canary) : undefined;
        const p = plan(action, canary, actorOf(conn), targetPending);
        if (p.kind === 'refuse') throw new CliError(p.message);
        if (p.kind === 'noop') {
          console.log(p.message);
          return 0;
        }
        let updated: Canary;
        try {
          updated = await patchCanary(conn, name, p.patch);
        } catch (err) {
          if (err instanceof CliError) throw err;
          throw new CliError(`could not update ${name}: ${describeApiError(err)}`);
        }
        await recordEvent(conn, updated, 'Normal', p.reason, p.eventMessage);
        console.log(p.message);
        return 0;
      }),
  };
}
