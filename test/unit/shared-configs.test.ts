// A ConfigMap or Secret shared by several canaried Deployments: its pending
// data goes live only when every consumer's run passed, and is rolled back
// for all when one fails (decide/shared-configs.ts, and the state machine's
// use of it).

import assert from 'node:assert/strict';
import type * as k8s from '@kubernetes/client-node';
import { MANAGED_LABEL, PENDING_REVISION, PENDING_SPEC } from '../../core/contract.js';
import { canonicalJson, revisionOf } from '../../core/revision.js';
import { sharedCopyOwners } from '../../reconciler/apply/configs.js';
import { configState, type ConfigObject } from '../../reconciler/observe/configs.js';
import { sharedConfigs } from '../../reconciler/observe/shared-configs.js';
import type { Canary, CanarySpec } from '../../core/api/types.js';
import { changeRows, sharedWaitLines } from '../../reconciler/cli/format.js';
import { resolveAnalysis } from '../../reconciler/decide/analysis-config.js';
import { ConditionReason, ConditionType, EventReason, RollbackCause } from '../../reconciler/decide/reasons.js';
import { consumerState, sharedConfigVerdict, waitsForSharedConfig, type SharedConfig } from '../../reconciler/decide/shared-configs.js';
import { transition, type Observed, type RolloutStatus } from '../../reconciler/decide/transition.js';
import { routerTraits } from '../../reconciler/routers/index.js';

const T0 = Date.parse('2025-03-01T12:00:00.000Z');
const iso = (ms: number) => new Date(ms).toISOString();
const LIVE = 'live-1';
const NEXT = 'next-2';
const CONFIG = 'ConfigMap shop/app-config';

const shared = (...states: Array<SharedConfig['consumers'][number]['state']>): SharedConfig[] => [
  { config: CONFIG, consumers: states.map((state, i) => ({ deployment: `web-${i}`, ...(state === 'no-canary' ? {} : { canary: `web-${i}` }), state })) },
];

describe('a config shared by several Deployments: the decision', () => {
  it('promotes when no other Deployment shares the pending data', () => {
    assert.deepEqual(sharedConfigVerdict(undefined), { action: 'promote' });
    assert.deepEqual(sharedConfigVerdict([]), { action: 'promote' });
  });

  it('promotes once every other consumer passed', () => {
    assert.deepEqual(sharedConfigVerdict(shared('passed', 'passed')), { action: 'promote' });
  });

  it('waits while another consumer is still running, and names it and the config', () => {
    const v = sharedConfigVerdict(shared('passed', 'running'));
    assert.equal(v.action, 'wait');
    assert.match((v as { message: string }).message, /ConfigMap shop\/app-config is shared with Canary web-1 \(Deployment web-1\), still running/);
    assert.doesNotMatch((v as { message: string }).message, /web-0/);
  });

  it('refuses to promote while a managed Deployment that references the config has no Canary', () => {
    const v = sharedConfigVerdict(shared('passed', 'no-canary'));
    assert.equal(v.action, 'wait');
    assert.match((v as { message: string }).message, /Deployment web-1 references ConfigMap shop\/app-config and is managed without a Canary/);
  });

  it('rolls back when any other consumer rolled the same data back, even while others still run', () => {
    const v = sharedConfigVerdict(shared('running', 'failed', 'passed'));
    assert.equal(v.action, 'rollback');
    assert.match((v as { message: string }).message, /Canary web-1 \(Deployment web-1\) rolled back the pending data of ConfigMap shop\/app-config/);
  });
});

describe('a config shared by several Deployments: where another consumer stands', () => {
  const waiting: RolloutStatus = {
    phase: 'WaitingPromotion',
    pendingRevision: NEXT,
    conditions: [{ type: ConditionType.SharedConfig, status: 'False', reason: ConditionReason.SharedConfigWaiting, message: 'x', lastTransitionTime: iso(T0) }],
  };

  it('passed: waiting on the shared config, promoting, or promoted, for the revision its Deployment wants now', () => {
    assert.equal(consumerState(waiting, NEXT), 'passed');
    assert.equal(consumerState({ phase: 'Promoting', pendingRevision: NEXT }, NEXT), 'passed');
    assert.equal(consumerState({ phase: 'Succeeded', lastPromotedRevision: NEXT }, NEXT), 'passed');
  });

  it('not passed: a wait for a confirm-promotion gate, or a wait for another revision', () => {
    assert.equal(consumerState({ phase: 'WaitingPromotion', pendingRevision: NEXT, conditions: [] }, NEXT), 'running');
    assert.equal(consumerState(waiting, 'other'), 'running');
    assert.equal(consumerState({ phase: 'Progressing', pendingRevision: NEXT }, NEXT), 'running');
    assert.equal(consumerState(undefined, NEXT), 'running');
  });

  it('failed only for the revision with this data', () => {
    assert.equal(consumerState({ phase: 'Failed', failedRevision: NEXT } as RolloutStatus, NEXT), 'failed');
    assert.equal(consumerState({ phase: 'Failed', failedRevision: 'older' } as RolloutStatus, NEXT), 'running');
  });

  it('waitsForSharedConfig reads the phase and the condition', () => {
    assert.equal(waitsForSharedConfig(waiting), true);
    assert.equal(waitsForSharedConfig({ ...waiting, phase: 'Progressing' }), false);
  });
});

/** A run of NEXT at its last step, checks due, copy ready: the next passing step promotes. */
function atLastStep(sharedConfigs?: SharedConfig[], status: Partial<RolloutStatus> = {}): Observed {
  const spec: CanarySpec = { targetRef: { kind: 'Deployment', name: 'web-a' }, service: { port: 80 }, analysis: { interval: '30s', stepWeight: 50, maxWeight: 50 } };
  return {
    now: T0 + 60_000,
    generation: 1,
    deleting: false,
    hasFinalizer: true,
    analysis: resolveAnalysis(spec),
    router: routerTraits(spec.provider),
    status: {
      phase: 'Progressing',
      lastPromotedRevision: LIVE,
      pendingRevision: NEXT,
      canaryWeight: 50,
      failedChecks: 0,
      iterations: 0,
      progressStartedAt: iso(T0),
      lastStepTime: iso(T0),
      ...status,
    },
    target: { exists: true, managed: true, liveRevision: LIVE, pendingRevision: NEXT, ready: true, replicas: 2 },
    copy: { exists: true, revision: NEXT, replicas: 1, ready: true, readyReplicas: 1 },
    routedWeight: 50,
    commands: {},
    blockers: [],
    ...(sharedConfigs ? { sharedConfigs } : {}),
  };
}

const promotes = (t: ReturnType<typeof transition>) => t.effects.some((e) => e.type === 'promote-target');

describe('a config shared by several Deployments: the state machine', () => {
  it('a run that passed waits in WaitingPromotion, says for whom, and does not promote', () => {
    const t = transition(atLastStep(shared('running')));
    assert.equal(t.status.phase, 'WaitingPromotion');
    assert.equal(promotes(t), false);
    assert.match(t.status.message ?? '', /passed analysis and waits: ConfigMap shop\/app-config is shared with Canary web-0/);
    const c = t.status.conditions?.find((x) => x.type === ConditionType.SharedConfig);
    assert.equal(c?.status, 'False');
    assert.equal(c?.reason, ConditionReason.SharedConfigWaiting);
    assert.deepEqual(t.events.map((e) => e.reason), [EventReason.WaitingPromotion]);
    assert.ok(t.requeueAt !== undefined && t.requeueAt <= T0 + 60_000 + 2000, 'looks again soon');
    // Still waiting a moment later: no second event, no promotion.
    const again = transition({ ...atLastStep(shared('running'), t.status), now: T0 + 62_000 });
    assert.equal(promotes(again), false);
    assert.equal(again.events.length, 0);
  });

  it('the waiting run promotes as soon as the others passed, without waiting for its next step', () => {
    const waiting = transition(atLastStep(shared('running'))).status;
    const t = transition({ ...atLastStep(shared('passed'), waiting), now: T0 + 61_000 });
    assert.equal(t.status.phase, 'Promoting');
    assert.ok(promotes(t));
    assert.equal(t.status.conditions?.find((x) => x.type === ConditionType.SharedConfig)?.status, 'True');
  });

  it('the waiting run promotes once another consumer wrote the shared data (no pending shared config left)', () => {
    const waiting = transition(atLastStep(shared('running'))).status;
    const t = transition({ ...atLastStep(undefined, waiting), now: T0 + 61_000 });
    assert.equal(t.status.phase, 'Promoting');
    assert.ok(promotes(t));
  });

  it('the last consumer to pass promotes at once when the others wait', () => {
    const t = transition(atLastStep(shared('passed', 'passed')));
    assert.equal(t.status.phase, 'Promoting');
    assert.ok(promotes(t));
  });

  it('another consumer rolled the data back: this run rolls back too, waiting or still running, with cause SharedConfigFailed', () => {
    const waiting = transition(atLastStep(shared('running'))).status;
    for (const status of [waiting, { phase: 'Progressing' as const, canaryWeight: 10 }]) {
      const t = transition({ ...atLastStep(shared('failed'), status), now: T0 + 61_000 });
      assert.equal(t.status.phase, 'Failed');
      assert.equal(t.status.failedRevision, NEXT);
      assert.equal(promotes(t), false);
      assert.ok(t.effects.some((e) => e.type === 'set-weight' && e.weight === 0));
      const e = t.events.find((x) => x.reason === EventReason.RolledBack);
      assert.equal(e?.cause, RollbackCause.SharedConfigFailed);
      assert.match(e?.message ?? '', /Canary web-0 \(Deployment web-0\) rolled back the pending data of ConfigMap shop\/app-config/);
    }
  });

  it('without other consumers a passing run promotes as before', () => {
    const t = transition(atLastStep());
    assert.equal(t.status.phase, 'Promoting');
    assert.equal(t.status.conditions?.some((x) => x.type === ConditionType.SharedConfig) ?? false, false);
  });
});

describe('a config shared by several Deployments: canary-gate status', () => {
  it('says under the table which Canary waits, and for whom; a wait for confirm-promotion is not listed', () => {
    const waitingRun = transition(atLastStep(shared('running'))).status;
    const canary = (name: string, status: RolloutStatus): Canary => ({ apiVersion: 'canarygate.dev/v1alpha1', kind: 'Canary', metadata: { name, namespace: 'shop' }, spec: { targetRef: { kind: 'Deployment', name }, service: { port: 80 } }, status });
    const lines = sharedWaitLines([canary('web-a', waitingRun), canary('web-b', { phase: 'WaitingPromotion', pendingRevision: NEXT })]);
    assert.deepEqual(lines, ['shop/web-a waits: ConfigMap shop/app-config is shared with Canary web-0 (Deployment web-0), still running']);
    // `canary-gate status --revision`: the change's row says the same.
    const rows = changeRows([canary('web-a', waitingRun)], NEXT, T0 + 61_000);
    assert.equal(rows[1]?.[3], 'waiting: ConfigMap shop/app-config is shared with Canary web-0 (Deployment web-0), still running');
  });
});

describe('a config shared by several Deployments: the caches\' view of the other consumers', () => {
  const pendingData = { 'app.conf': 'v2' };
  const config: k8s.V1ConfigMap = {
    metadata: { name: 'app-config', namespace: 'shop', resourceVersion: '5', labels: { [MANAGED_LABEL]: 'true' }, annotations: { [PENDING_REVISION]: revisionOf({ data: pendingData }), [PENDING_SPEC]: canonicalJson({ data: pendingData }) } },
    data: { 'app.conf': 'v1' },
  };
  const settled = { ...config, metadata: { ...config.metadata, resourceVersion: '6', annotations: {} }, data: pendingData };
  const dep = (name: string, managed: boolean, mounts = 'app-config'): k8s.V1Deployment => ({
    metadata: { name, namespace: 'shop', ...(managed ? { labels: { [MANAGED_LABEL]: 'true' } } : {}) },
    spec: { selector: {}, template: { metadata: { labels: { app: name } }, spec: { containers: [{ name: 'app', image: `${name}:1` }], volumes: [{ name: 'c', configMap: { name: mounts } }] } } },
  });
  const canaryFor = (name: string, status?: RolloutStatus): Canary => ({
    apiVersion: 'canarygate.dev/v1alpha1',
    kind: 'Canary',
    metadata: { name, namespace: 'shop', uid: `uid-${name}` },
    spec: { targetRef: { kind: 'Deployment', name }, service: { port: 80 } },
    ...(status ? { status } : {}),
  });
  const cache = <T extends { metadata?: k8s.V1ObjectMeta }>(items: T[]) => ({ get: (_ns: string, n: string) => items.find((i) => i.metadata?.name === n), list: () => items });
  const caches = (deployments: k8s.V1Deployment[], canaries: Canary[], cm: k8s.V1ConfigMap = config) => ({
    deployments: cache(deployments),
    canaries: cache(canaries),
    configs: { managed: { ConfigMap: cache<ConfigObject>([cm]), Secret: cache<ConfigObject>([]) }, copies: { ConfigMap: cache<ConfigObject>([]), Secret: cache<ConfigObject>([]) }, lookup: () => undefined },
  });
  const stateOf = (d: k8s.V1Deployment, cm: k8s.V1ConfigMap = config) => {
    const s = configState({ liveTemplate: d.spec?.template as Record<string, unknown>, get: (_k, n) => (n === cm.metadata?.name ? cm : undefined), lookup: () => undefined, promoting: false });
    assert.ok(s);
    return s;
  };
  const a = dep('web-a', true);
  const b = dep('web-b', true);
  const bWants = stateOf(b).desiredRevision;
  const waitingStatus: RolloutStatus = { phase: 'WaitingPromotion', pendingRevision: bWants, conditions: [{ type: ConditionType.SharedConfig, status: 'False', reason: ConditionReason.SharedConfigWaiting, message: 'x', lastTransitionTime: iso(T0) }] };

  it('names each other consumer with where its Canary stands for the revision its Deployment wants now', () => {
    const at = (status: RolloutStatus) => sharedConfigs(canaryFor('web-a'), 'web-a', stateOf(a), caches([a, b], [canaryFor('web-a'), canaryFor('web-b', status)]));
    assert.deepEqual(at(waitingStatus), [{ config: 'ConfigMap shop/app-config', consumers: [{ deployment: 'web-b', canary: 'web-b', state: 'passed' }] }]);
    assert.equal(at({ phase: 'Progressing', pendingRevision: bWants })[0]?.consumers[0]?.state, 'running');
    assert.equal(at({ phase: 'Failed', failedRevision: bWants })[0]?.consumers[0]?.state, 'failed');
    assert.equal(at({ ...waitingStatus, pendingRevision: 'an-older-run' })[0]?.consumers[0]?.state, 'running');
  });

  it('a managed Deployment without a Canary is reported; unmanaged ones and ones that do not reference the config are left out', () => {
    const out = sharedConfigs(canaryFor('web-a'), 'web-a', stateOf(a), caches([a, dep('orphan', true), dep('plain', false), dep('other', true, 'another-config')], [canaryFor('web-a'), canaryFor('other')]));
    assert.deepEqual(out, [{ config: 'ConfigMap shop/app-config', consumers: [{ deployment: 'orphan', state: 'no-canary' }] }]);
  });

  it('nothing shared once the data is live (another consumer promoted it)', () => {
    assert.deepEqual(sharedConfigs(canaryFor('web-a'), 'web-a', stateOf(a, settled), caches([a, b], [canaryFor('web-b', waitingStatus)], settled)), []);
  });
});

describe('a config copy several Canaries run', () => {
  const canaryNamed = (name: string): Canary => ({ apiVersion: 'canarygate.dev/v1alpha1', kind: 'Canary', metadata: { name, namespace: 'shop', uid: `uid-${name}` }, spec: { targetRef: { kind: 'Deployment', name }, service: { port: 80 } } });

  it('is owned by each of them, the first staying the controller', () => {
    const first = sharedCopyOwners(undefined, canaryNamed('a'));
    assert.deepEqual(first.map((o) => [o.name, o.controller]), [['a', true]]);
    const both = sharedCopyOwners(first, canaryNamed('b'));
    assert.deepEqual(both.map((o) => [o.name, o.controller]), [['a', true], ['b', false]]);
    assert.deepEqual(sharedCopyOwners(both, canaryNamed('b')).map((o) => o.name), ['a', 'b'], 'adding an owner twice keeps one reference');
  });
});
