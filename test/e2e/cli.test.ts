import { spawn } from 'node:child_process';
// The operator CLI end to end: `canary-gate status|watch|promote|abort|retry|
// pause|resume` run as child processes (stdout not a terminal, so `watch`
// prints plain lines) against the real control plane, the real webhook and a
// reconciler scoped to this file's namespace.

import assert from 'node:assert/strict';
import type { Canary } from '../../core/api/types.js';
import { MANAGED_LABEL, PENDING_REVISION } from '../../core/contract.js';
import { cliPath, kubeconfigPath, kubectl, kubectlOk, run, type RunResult, getObject as get, applyAsUser as applyJson } from './cluster.js';
import { GateServer } from './gate-server.js';
import { createNamespace, deleteNamespace } from './namespaces.js';
import { deployment, service } from './objects.js';
import { startReconciler, type RunningReconciler } from './reconciler-process.js';
import { sleep, waitFor } from './wait.js';

interface Deploy {
  metadata: { annotations?: Record<string, string>; labels?: Record<string, string> };
  spec: { replicas?: number; template: { spec: { containers: { image: string }[] } } };
}

interface EventItem {
  reason: string;
  message: string;
  type: string;
  source?: { component?: string };
}

const TS = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ /;

function cli(args: string[], timeoutMs = 150_000): Promise<RunResult> {
  return run(process.execPath, [cliPath, ...args], { env: { KUBECONFIG: kubeconfigPath }, timeoutMs });
}

/**
 * Starts `canary-gate watch` and resolves once it has read the state and says
 * what it watches (on a loaded machine Node's start-up alone can take seconds),
 * so that the test changes the world only after the watch is looking.
 */
async function startWatch(args: string[]): Promise<{ done: Promise<RunResult> }> {
  const child = spawn(process.execPath, [cliPath, ...args], { env: { ...process.env, KUBECONFIG: kubeconfigPath } });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
  child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
  const done = new Promise<RunResult>((resolve) => child.on('exit', (code) => resolve({ code: code ?? 1, stdout, stderr })));
  await waitFor('watch to be watching a revision', () => / checks \d+\/\d+/.test(stdout) || child.exitCode !== null, { timeoutMs: 30_000, intervalMs: 100 });
  return { done };
}

const image = (d: Deploy | undefined) => d?.spec.template.spec.containers[0]?.image;

function canaryManifest(name: string, analysis: Record<string, unknown>) {
  return {
    apiVersion: 'canarygate.dev/v1alpha1',
    kind: 'Canary',
    metadata: { name },
    spec: { targetRef: { apiVersion: 'apps/v1', kind: 'Deployment', name }, service: { port: 80 }, progressDeadlineSeconds: 60, analysis },
  };
}

describe('the operator CLI on a real control plane', function () {
  let ns: string;
  let reconciler: RunningReconciler;
  const gates = new GateServer();

  before(async function () {
    ns = await createNamespace('cli');
    await gates.start();
    reconciler = await startReconciler({ namespace: ns });
  });
  after(async function () {
    // Delete the namespace while the reconciler runs: it removes its finalizer
    // from each Canary (a stopped one would leave the namespace Terminating).
    await deleteNamespace(ns);
    const remaining = async () => (await kubectl(['-n', ns, 'get', 'canaries', '-o', 'name'])).stdout.trim().split('\n').filter(Boolean);
    await waitFor('the Canaries to be finalized', async () => (await remaining()).length === 0, { timeoutMs: 30_000 }).catch(() => undefined);
    await reconciler?.stop();
    await gates.stop();
    for (const c of await remaining()) await kubectl(['-n', ns, 'patch', c, '--type=merge', '-p', '{"metadata":{"finalizers":null}}']);
  });

  const canaryOf = (name: string) => get<Canary>(ns, 'canary', name);
  const pendingOf = async (name: string) => (await get<Deploy>(ns, 'deployment', name))?.metadata.annotations?.[PENDING_REVISION];

  async function setUp(name: string, analysis: Record<string, unknown>) {
    await applyJson(ns, canaryManifest(name, { interval: '1s', ...analysis }));
    await applyJson(ns, deployment(name, { image: `example.test/${name}:1`, replicas: 2 }));
    await applyJson(ns, service(name, { selector: { app: name } }));
    await waitFor(`${name} to be adopted`, async () => {
      const d = await get<Deploy>(ns, 'deployment', name);
      return d?.metadata.labels?.[MANAGED_LABEL] === 'true' && (await canaryOf(name))?.status?.phase === 'Initialized';
    }, { namespace: ns, timeoutMs: 30_000 });
  }

  /** Applies image :2 and returns the revision the webhook holds. */
  async function newImage(name: string, tag = '2'): Promise<string> {
    await applyJson(ns, deployment(name, { image: `example.test/${name}:${tag}`, replicas: 2 }));
    const rev = await pendingOf(name);
    assert.ok(rev, 'the webhook holds the change as a pending revision');
    return rev;
  }

  async function waitHeld(name: string, rev: string, gate: string) {
    await waitFor(`${name} to hold at its first step`, async () => {
      const c = await canaryOf(name);
      return c?.status?.phase === 'Progressing' && c.status.pendingRevision === rev && (c.status.canaryWeight ?? 0) > 0 && gates.callsTo(gate).length >= 2;
    }, { namespace: ns, timeoutMs: 30_000 });
  }

  async function eventsOf(name: string): Promise<EventItem[]> {
    const out = await kubectlOk(['-n', ns, 'get', 'events', '--field-selector', `involvedObject.name=${name},involvedObject.kind=Canary`, '-o', 'json']);
    return (JSON.parse(out) as { items: EventItem[] }).items;
  }

  it('status shows the canary as a table, json and yaml, and names a missing one', async function () {
    const name = 'shown';
    await setUp(name, { stepWeight: 25, maxWeight: 50 });

    const table = await cli(['status', '-n', ns]);
    assert.equal(table.code, 0, table.stderr);
    const lines = table.stdout.trimEnd().split('\n');
    assert.match(lines[0] ?? '', /^NAME\s+TARGET\s+PHASE\s+WEIGHT\s+CHECKS\s+PENDING\s+AGE$/);
    assert.ok(
      lines.some((l) => /^shown\s+Deployment\/shown\s+Initialized\s+0\/50\s+0\/5\s+-\s+\d+s$/.test(l)),
      table.stdout,
    );

    const all = await cli(['status', '-A']);
    assert.equal(all.code, 0, all.stderr);
    assert.match(all.stdout, /^NAMESPACE\s+NAME\s+TARGET/);
    assert.match(all.stdout, new RegExp(`^${ns}\\s+shown\\s+Deployment/shown\\s+Initialized`, 'm'));

    const json = await cli(['status', '-n', ns, name, '-o', 'json']);
    assert.equal(json.code, 0, json.stderr);
    const obj = JSON.parse(json.stdout) as Canary;
    assert.equal(obj.metadata.name, name);
    assert.equal(obj.status?.phase, 'Initialized');
    assert.equal(obj.metadata.managedFields, undefined);

    const yaml = await cli(['status', `--namespace=${ns}`, '-o', 'yaml']);
    assert.equal(yaml.code, 0, yaml.stderr);
    assert.match(yaml.stdout, /^kind: List$/m);
    assert.match(yaml.stdout, /name: shown/);

    const missing = await cli(['status', '-n', ns, 'nope']);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, new RegExp(`canary "nope" not found in namespace "${ns}"`));
    const bad = await cli(['status', '--bogus']);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /Unknown option '--bogus'/);
  });

  it('watch exits 0 when the revision is promoted, and at once when nothing is pending', async function () {
    const name = 'good';
    gates.answer('good-traffic', 403); // hold the first step until the watch is surely running
    await setUp(name, {
      threshold: 2,
      stepWeight: 25,
      maxWeight: 50,
      webhooks: [
        { name: 'load', type: 'rollout', url: gates.url('good-rollout') },
        { name: 'approve', type: 'confirm-traffic-increase', url: gates.url('good-traffic') },
      ],
    });
    const rev = await newImage(name);

    // As a CI job does: apply, then watch.
    const watching = cli(['watch', '-n', ns, name, '--timeout', '90s']);
    await waitHeld(name, rev, 'good-traffic');
    await sleep(1500);
    gates.answer('good-traffic', 200);
    const r = await watching;
    assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
    const lines = r.stdout.trimEnd().split('\n');
    assert.ok(lines.every((l) => TS.test(l)), `every line is timestamped:\n${r.stdout}`);
    assert.match(lines[0] ?? '', new RegExp(`watching revision ${rev} of canary ${ns}/good \\(Deployment/good\\)`));
    assert.ok(lines.some((l) => new RegExp(`Progressing weight 25/50 checks 0/2 revision ${rev}: waiting for confirm-traffic-increase`).test(l)), r.stdout);
    assert.ok(lines.some((l) => new RegExp(`Progressing weight 50/50 checks 0/2 revision ${rev}`).test(l)), r.stdout);
    assert.ok(lines.some((l) => new RegExp(`Succeeded weight 0/50 checks 0/2 revision ${rev}`).test(l)), r.stdout);
    assert.match(lines.at(-1) ?? '', new RegExp(`result: revision ${rev} promoted \\(exit 0\\)$`));
    assert.equal(new Set(lines.map((l) => l.replace(TS, ''))).size, lines.length, 'one line per change: no repeats');
    assert.equal(image(await get<Deploy>(ns, 'deployment', name)), 'example.test/good:2');

    const again = await cli(['watch', '-n', ns, name]);
    assert.equal(again.code, 0, again.stderr);
    assert.match(again.stdout, new RegExp(`nothing to watch: no revision is pending \\(phase Succeeded\\); revision ${rev} is live`));
  });

  it('watch exits 1 when the revision is rolled back, and at once for a revision that already failed', async function () {
    const name = 'bad';
    gates.answer('bad-rollout', 500);
    gates.answer('bad-start', 403); // hold the run until the watch is looking: three failed 1 s checks outrun Node's start-up
    await setUp(name, {
      threshold: 3,
      stepWeight: 50,
      maxWeight: 50,
      webhooks: [
        { name: 'start', type: 'confirm-rollout', url: gates.url('bad-start') },
        { name: 'smoke', type: 'rollout', url: gates.url('bad-rollout') },
      ],
    });
    const rev = await newImage(name);

    const watching = await startWatch(['watch', '-n', ns, name, '--timeout', '90s']);
    gates.answer('bad-start', 200);
    const r = await watching.done;
    assert.equal(r.code, 1, `${r.stdout}\n${r.stderr}`);
    assert.match(r.stdout, new RegExp(`Progressing weight 50/50 checks [12]/3 revision ${rev}: check failed`));
    assert.match(r.stdout, new RegExp(`Failed weight 0/50 checks 3/3 revision ${rev}: revision ${rev} rolled back`));
    assert.match(r.stdout.trimEnd().split('\n').at(-1) ?? '', new RegExp(`result: revision ${rev} failed: .*\\(exit 1\\)$`));
    assert.equal(image(await get<Deploy>(ns, 'deployment', name)), 'example.test/bad:1');

    const again = await cli(['watch', '-n', ns, name]);
    assert.equal(again.code, 1);
    assert.match(again.stdout, /before the watch started; `canary-gate retry` runs it again/);
  });

  it('watch exits 4 on timeout, and 3 when the pending revision is withdrawn or the Canary deleted', async function () {
    const name = 'gone';
    gates.answer('gone-traffic', 403);
    await setUp(name, { stepWeight: 20, maxWeight: 40, webhooks: [{ name: 'approve', type: 'confirm-traffic-increase', url: gates.url('gone-traffic') }] });
    const rev = await newImage(name);

    const t0 = Date.now();
    const timedOut = await cli(['watch', '-n', ns, name, '--timeout', '3s']);
    assert.equal(timedOut.code, 4, `${timedOut.stdout}\n${timedOut.stderr}`);
    assert.ok(Date.now() - t0 < 15_000);
    assert.match(timedOut.stdout, new RegExp(`result: timed out after 3s waiting for revision ${rev}`));

    await waitHeld(name, rev, 'gone-traffic');
    const watching = await startWatch(['watch', '-n', ns, name, '--timeout', '60s']);
    await applyJson(ns, deployment(name, { image: 'example.test/gone:1', replicas: 2 })); // back to the stable spec
    const r = await watching.done;
    assert.equal(r.code, 3, `${r.stdout}\n${r.stderr}`);
    assert.match(r.stdout, new RegExp(`result: the rollout of revision ${rev} was cancelled`));

    // A new run, then the Canary is deleted under the watch.
    const rev3 = await newImage(name, '3');
    await waitHeld(name, rev3, 'gone-traffic');
    const watching3 = await startWatch(['watch', '-n', ns, name, '--timeout', '60s']);
    await kubectlOk(['-n', ns, 'delete', 'canary', name, '--wait=false']);
    const d = await watching3.done;
    assert.equal(d.code, 3, `${d.stdout}\n${d.stderr}`);
    assert.match(d.stdout, /result: the Canary (is being deleted|was deleted) \(exit 3\)/);
  });

  it('abort rolls the running revision back (reason Aborted); retry starts it again', async function () {
    const name = 'aborted';
    gates.answer('aborted-traffic', 403);
    await setUp(name, { stepWeight: 20, maxWeight: 40, webhooks: [{ name: 'approve', type: 'confirm-traffic-increase', url: gates.url('aborted-traffic') }] });

    const early = await cli(['abort', '-n', ns, name]);
    assert.equal(early.code, 1);
    assert.match(early.stderr, new RegExp(`nothing to abort: canary ${ns}/aborted has no rollout in progress \\(phase Initialized\\)`));

    const rev = await newImage(name);
    await waitHeld(name, rev, 'aborted-traffic');
    const abort = await cli(['abort', '-n', ns, name]);
    assert.equal(abort.code, 0, abort.stderr);
    assert.match(abort.stdout, new RegExp(`abort requested for revision ${rev} of canary ${ns}/aborted`));

    await waitFor('the run to be aborted', async () => {
      const c = await canaryOf(name);
      const promoted = c?.status?.conditions?.find((x) => x.type === 'Promoted');
      return c?.status?.phase === 'Failed' && promoted?.status === 'False' && promoted.reason === 'Aborted' && c.status.failedRevision === rev;
    }, { namespace: ns, timeoutMs: 30_000 });
    await waitFor('the abort annotation to be cleared', async () => (await canaryOf(name))?.metadata.annotations?.['canarygate.dev/abort'] === undefined, { namespace: ns });
    const aborted = (await eventsOf(name)).find((e) => e.reason === 'AbortRequested');
    assert.ok(aborted, 'an AbortRequested Event is recorded');
    assert.equal(aborted.type, 'Normal');
    assert.match(aborted.message, new RegExp(`abort of revision ${rev} requested by user "admin"`));
    assert.equal(aborted.source?.component, 'canarygate.dev/cli');
    const described = await kubectlOk(['-n', ns, 'describe', 'canary', name]);
    assert.match(described, /AbortRequested/, 'kubectl describe shows it');
    assert.equal(await pendingOf(name), rev, 'the change stays pending on the target');

    const callsBefore = gates.callsTo('aborted-traffic').length;
    const retry = await cli(['retry', '-n', ns, name]);
    assert.equal(retry.code, 0, retry.stderr);
    assert.match(retry.stdout, new RegExp(`retry requested for revision ${rev} of canary ${ns}/aborted`));
    await waitFor('the failed revision to run again', async () => {
      const c = await canaryOf(name);
      return c?.status?.phase === 'Progressing' && c.status.pendingRevision === rev && gates.callsTo('aborted-traffic').length > callsBefore;
    }, { namespace: ns, timeoutMs: 30_000 });
    await waitFor('the retry annotation to be cleared', async () => (await canaryOf(name))?.metadata.annotations?.['canarygate.dev/retry'] === undefined, { namespace: ns });
    const reasons = (await eventsOf(name)).map((e) => e.reason);
    assert.ok(reasons.includes('RetryRequested') && reasons.includes('Retry'), reasons.join(' '));

    const notFailed = await cli(['retry', '-n', ns, name]);
    assert.equal(notFailed.code, 1);
    assert.match(notFailed.stderr, /nothing to retry: .* is in phase Progressing; revision \w+ is being analysed/);
  });

  it('promote during a held run skips the remaining steps (confirm-traffic-increase does not hold it)', async function () {
    const name = 'promoted';
    gates.answer('promoted-traffic', 403);
    await setUp(name, { stepWeight: 20, maxWeight: 60, webhooks: [{ name: 'approve', type: 'confirm-traffic-increase', url: gates.url('promoted-traffic') }] });
    const rev = await newImage(name);
    await waitHeld(name, rev, 'promoted-traffic');

    const watching = cli(['watch', '-n', ns, name, '--timeout', '60s']);
    await sleep(1000);
    const promote = await cli(['promote', '-n', ns, name]);
    assert.equal(promote.code, 0, promote.stderr);
    assert.match(promote.stdout, new RegExp(`promote requested for revision ${rev} of canary ${ns}/promoted: the remaining steps are skipped`));

    const w = await watching;
    assert.equal(w.code, 0, `${w.stdout}\n${w.stderr}`);
    assert.doesNotMatch(w.stdout, /weight 40\/60|weight 60\/60/, 'no step beyond the first');
    const c = await canaryOf(name);
    assert.equal(c?.status?.phase, 'Succeeded');
    assert.equal(c?.status?.lastPromotedRevision, rev);
    assert.equal(image(await get<Deploy>(ns, 'deployment', name)), 'example.test/promoted:2');
    await waitFor('the promote annotation to be cleared', async () => (await canaryOf(name))?.metadata.annotations?.['canarygate.dev/promote'] === undefined, { namespace: ns });
    const events = await eventsOf(name);
    assert.ok(events.some((e) => e.reason === 'PromoteRequested' && e.source?.component === 'canarygate.dev/cli'));
    assert.ok(!events.some((e) => e.reason === 'WeightAdvanced'), 'the weight never advanced');

    const nothing = await cli(['promote', '-n', ns, name]);
    assert.equal(nothing.code, 1);
    assert.match(nothing.stderr, /nothing to promote: .* has no rollout in progress \(phase Succeeded\)/);
  });

  it('promote still waits for confirm-promotion gates', async function () {
    const name = 'confirm';
    gates.answer('confirm-traffic', 403);
    gates.answer('confirm-promotion', 403);
    await setUp(name, {
      stepWeight: 20,
      maxWeight: 60,
      webhooks: [
        { name: 'approve', type: 'confirm-traffic-increase', url: gates.url('confirm-traffic') },
        { name: 'release', type: 'confirm-promotion', url: gates.url('confirm-promotion') },
      ],
    });
    const rev = await newImage(name);
    await waitHeld(name, rev, 'confirm-traffic');
    const promote = await cli(['promote', '-n', ns, name]);
    assert.equal(promote.code, 0, promote.stderr);
    assert.match(promote.stdout, /its confirm-promotion gate must still approve/);

    await waitFor('WaitingPromotion', async () => (await canaryOf(name))?.status?.phase === 'WaitingPromotion', { namespace: ns, timeoutMs: 30_000 });
    await sleep(2500);
    const held = await canaryOf(name);
    assert.equal(held?.status?.phase, 'WaitingPromotion');
    assert.equal(held?.status?.canaryWeight, 20, 'the remaining steps stay skipped');
    assert.equal(image(await get<Deploy>(ns, 'deployment', name)), 'example.test/confirm:1');

    gates.answer('confirm-promotion', 200);
    await waitFor('Succeeded', async () => (await canaryOf(name))?.status?.phase === 'Succeeded', { namespace: ns, timeoutMs: 30_000 });
    assert.equal(image(await get<Deploy>(ns, 'deployment', name)), 'example.test/confirm:2');
  });

  it('pause stops the run from advancing; resume continues it to promotion', async function () {
    const name = 'paused';
    // A 3 s interval: from weight 20 the run needs at least three more steps
    // (9 s) to finish, time enough for the CLI to start and pause it.
    await setUp(name, { interval: '3s', stepWeight: 10, maxWeight: 50, webhooks: [{ name: 'load', type: 'rollout', url: gates.url('paused-rollout') }] });
    const rev = await newImage(name);
    await waitFor('the first advance', async () => ((await canaryOf(name))?.status?.canaryWeight ?? 0) >= 20, { namespace: ns, timeoutMs: 30_000 });

    const pause = await cli(['pause', '-n', ns, name]);
    assert.equal(pause.code, 0, pause.stderr);
    assert.match(pause.stdout, new RegExp(`paused canary ${ns}/paused: the reconciler stops acting on it. Revision ${rev} stays where it is`));
    assert.equal((await canaryOf(name))?.spec.suspend, true);
    await waitFor('the reconciler to see the pause', async () => (await canaryOf(name))?.status?.message === 'suspended: spec.suspend is true', { namespace: ns, timeoutMs: 15_000 });
    const before = await canaryOf(name);
    const calls = gates.callsTo('paused-rollout').length;
    await sleep(4000); // more than an interval: unpaused, a check and a step would have come
    const after = await canaryOf(name);
    assert.equal(after?.status?.phase, 'Progressing');
    assert.equal(after?.status?.canaryWeight, before?.status?.canaryWeight, 'no step while paused');
    assert.ok((after?.status?.canaryWeight ?? 100) < 50);
    assert.equal(gates.callsTo('paused-rollout').length, calls, 'no checks while paused');
    const table = await cli(['status', '-n', ns, name]);
    assert.match(table.stdout, /Progressing \(suspended\)/);
    const again = await cli(['pause', '-n', ns, name]);
    assert.equal(again.code, 0);
    assert.match(again.stdout, /is already paused/);

    const resume = await cli(['resume', '-n', ns, name]);
    assert.equal(resume.code, 0, resume.stderr);
    assert.match(resume.stdout, new RegExp(`resumed canary ${ns}/paused: the reconciler acts on it again and continues revision ${rev}`));
    assert.equal((await canaryOf(name))?.spec.suspend, false);
    const w = await cli(['watch', '-n', ns, name, '--timeout', '60s']);
    assert.equal(w.code, 0, `${w.stdout}\n${w.stderr}`);
    const reasons = (await eventsOf(name)).map((e) => e.reason);
    assert.ok(reasons.includes('Paused') && reasons.includes('Resumed'), reasons.join(' '));
  });
});
