// The notifier: what one transition sends (Kubernetes Events, alerts,
// `event` webhooks, post-rollout gates), which revision each names, and a
// delivery in which one failing receiver loses nothing else.

import { routerTraits } from '../../reconciler/routers/index.js';
import assert from 'node:assert/strict';
import type { Canary, CanaryAnalysis, CanarySpec, CanaryWebhook } from '../../core/api/types.js';
import type { GateContext } from '../../reconciler/analysis/gates.js';
import { resolveAnalysis } from '../../reconciler/decide/analysis-config.js';
import { transition, type CheckResult, type Observed, type RolloutStatus, type Transition } from '../../reconciler/decide/transition.js';
import type { AlertEvent } from '../../reconciler/notify/events.js';
import { Notifier, notificationsOf, revisionOf, type NotifierSinks } from '../../reconciler/notify/notifier.js';

const T0 = Date.parse('2025-03-01T12:00:00.000Z');
const LIVE = 'live-7c9d';
const NEXT = 'next-4f2a';

const analysis: CanaryAnalysis = {
  threshold: 1,
  webhooks: [
    { name: 'smoke', type: 'rollout', url: 'http://gates.test/smoke' },
    { name: 'audit', type: 'event', url: 'http://gates.test/audit' },
    { name: 'report', type: 'post-rollout', url: 'http://gates.test/report' },
  ],
  alerts: [{ name: 'ops', severity: 'info', providerRef: { name: 'ops' } }],
};
const spec: CanarySpec = { targetRef: { kind: 'Deployment', name: 'shop' }, service: { port: 80 }, analysis };
const canary: Canary = { apiVersion: 'canarygate.dev/v1alpha1', kind: 'Canary', metadata: { name: 'shop', namespace: 'prod' }, spec };

/** A run of NEXT at weight 30 with its copy ready, LIVE serving. */
function running(over: Partial<Observed> = {}, status: RolloutStatus = {}): Observed {
  return {
    now: T0 + 60_000,
    generation: 1,
    deleting: false,
    hasFinalizer: true,
    analysis: resolveAnalysis(spec),
    status: {
      phase: 'Progressing',
      lastPromotedRevision: LIVE,
      pendingRevision: NEXT,
      lastAppliedRevision: NEXT,
      canaryWeight: 30,
      failedChecks: 0,
      progressStartedAt: new Date(T0).toISOString(),
      lastStepTime: new Date(T0).toISOString(),
      ...status,
    },
    target: { exists: true, managed: true, liveRevision: LIVE, pendingRevision: NEXT, ready: true, replicas: 3 },
    copy: { exists: true, revision: NEXT, replicas: 1, ready: true, readyReplicas: 1 },
    routedWeight: 30,
    router: routerTraits(spec.provider),
    blockers: [],
    commands: {},
    ...over,
  };
}

const smoke = (passed: boolean): CheckResult => ({ name: 'smoke', kind: 'gate', gateType: 'rollout', passed, message: passed ? 'ok' : 'HTTP 500' });

function step(obs: Observed, results?: CheckResult[]): Transition {
  const t = transition(obs);
  return t.checks ? transition(obs, results ?? [smoke(true)]) : t;
}

describe('notify/notifier', () => {
  it('names the revision each step acted on in every notification: rolled back, cancelled, promoted', () => {
    const ends: Array<[string, Transition, string]> = [
      ['rollback', step(running(), [smoke(false)]), 'Failed'],
      ['abort', step(running({ commands: { abort: NEXT } })), 'Failed'],
      ['cancel', step(running({ target: { exists: true, managed: true, liveRevision: LIVE, ready: true, replicas: 3 } })), 'Initialized'],
      ['promotion', step(running({ target: { exists: true, managed: true, liveRevision: NEXT, ready: true, replicas: 3 } }, { phase: 'Promoting' })), 'Succeeded'],
    ];
    for (const [what, t, phase] of ends) {
      assert.equal(t.status.phase, phase, what);
      assert.equal(t.status.pendingRevision, undefined, `${what}: the new status no longer names the run's revision`);
      const out = notificationsOf(canary, t);
      const kinds = new Set(out.map((o) => o.kind));
      assert.ok(kinds.has('event') && kinds.has('alert') && kinds.has('event-webhook'), `${what}: ${[...kinds]}`);
      assert.equal(kinds.has('post-rollout'), what !== 'cancel', `${what}: post-rollout only when a run ends`);
      for (const o of out) assert.equal(revisionOf(o), NEXT, `${what}: ${o.kind} names ${revisionOf(o)}`);
      for (const o of out) if (o.kind === 'event-webhook' || o.kind === 'post-rollout') assert.equal(o.payload.phase, phase, `${what}: ${o.kind} phase`);
    }
  });

  it('tells event webhooks the reason, the message and the cause of a rollback', () => {
    const t = step(running(), [smoke(false)]);
    const hook = notificationsOf(canary, t).find((o) => o.kind === 'event-webhook' && o.payload.reason === 'RolledBack');
    assert.ok(hook && hook.kind === 'event-webhook');
    assert.deepEqual(hook.hooks.map((h) => h.name), ['audit']);
    assert.equal(hook.payload.cause, 'FailedChecks');
    assert.match(String(hook.payload.message), /HTTP 500/);
  });

  it('sends nothing for a step that tells nothing', () => {
    const t = transition(running({ now: T0 + 10_000 }));
    assert.deepEqual(t.events, []);
    assert.deepEqual(notificationsOf(canary, t), []);
  });

  it('delivers each notification once through its sink; a failing sink loses nothing else and delivery never rejects', async () => {
    const t = step(running(), [smoke(false)]);
    const got = { records: [] as string[], alerts: [] as AlertEvent[], hooks: [] as GateContext[], post: [] as Array<[CanaryWebhook[], GateContext]>, logs: 0 };
    const sinks: NotifierSinks = {
      record: (_c, type, reason) => {
        got.records.push(`${type}/${reason}`);
        throw new Error('event recorder broken');
      },
      alert: async (_c, a) => {
        got.alerts.push(a);
        throw new Error('receiver down');
      },
      eventWebhook: (_h, p) => {
        got.hooks.push(p);
        throw new Error('synchronous failure');
      },
      postRollout: async (h, p) => {
        got.post.push([h, p]);
      },
      log: () => void got.logs++,
    };
    await new Notifier(sinks).deliver(canary, t);
    const told = t.events.map((e) => `${e.type}/${e.reason}`);
    assert.ok(told.includes('Warning/RolledBack'));
    assert.deepEqual(got.records, told);
    assert.equal(got.logs, t.events.length);
    assert.deepEqual(got.alerts.map((a) => [a.reason, a.severity, a.revision]), t.events.map((e) => [e.reason, e.reason === 'RolledBack' ? 'error' : 'warn', NEXT]));
    assert.deepEqual(got.hooks.map((p) => p.reason), t.events.map((e) => e.reason));
    assert.deepEqual(got.post.map(([h, p]) => [h.map((x) => x.name), p.revision, p.phase]), [[['report'], NEXT, 'Failed']]);
  });
});
