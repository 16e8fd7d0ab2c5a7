// What promote, abort, retry, pause and resume decide to write (or refuse)
// for a Canary in each state: pure, no API server.

import assert from 'node:assert/strict';
import type { Canary, CanarySpec, CanaryStatus } from '../../core/api/types.js';
import { plan, type Plan } from '../../reconciler/cli/actions.js';

const R = 'abc123abc123';
const ACTOR = 'user "admin" (context "test")';

function canary(status: CanaryStatus, opts: { spec?: Partial<CanarySpec>; annotations?: Record<string, string> } = {}): Canary {
  return {
    apiVersion: 'canarygate.dev/v1alpha1',
    kind: 'Canary',
    metadata: { name: 'web', namespace: 'shop', ...(opts.annotations ? { annotations: opts.annotations } : {}) },
    spec: { targetRef: { kind: 'Deployment', name: 'web' }, service: { port: 80 }, analysis: { interval: '1s' }, ...opts.spec },
    status,
  };
}

function write(p: Plan) {
  assert.equal(p.kind, 'write', p.kind !== 'write' ? p.message : '');
  return p as Extract<Plan, { kind: 'write' }>;
}

describe('cli actions', function () {
  it('promote writes the running revision into canarygate.dev/promote', function () {
    const p = write(plan('promote', canary({ phase: 'Progressing', pendingRevision: R }), ACTOR));
    assert.deepEqual(p.patch, { metadata: { annotations: { 'canarygate.dev/promote': R } } });
    assert.equal(p.reason, 'PromoteRequested');
    assert.match(p.eventMessage, /requested by user "admin" \(context "test"\)/);
    assert.match(p.message, /remaining steps are skipped: the next analysis step \(every 1s\)/);
  });

  it('promote says confirm-promotion gates still apply', function () {
    const c = canary({ phase: 'Progressing', pendingRevision: R }, { spec: { analysis: { webhooks: [{ name: 'ok', type: 'confirm-promotion', url: 'http://x' }] } } });
    assert.match(write(plan('promote', c, ACTOR)).message, /confirm-promotion gate must still approve/);
  });

  it('promote and abort refuse when nothing runs, pointing at retry after a failure', function () {
    for (const action of ['promote', 'abort'] as const) {
      const p = plan(action, canary({ phase: 'Failed', failedRevision: R }), ACTOR);
      assert.equal(p.kind, 'refuse');
      assert.match(p.message, new RegExp(`^nothing to ${action}: canary shop/web has no rollout in progress \\(phase Failed; revision ${R} failed.*canary-gate retry web`));
      assert.equal(plan(action, canary({ phase: 'Succeeded' }), ACTOR).kind, 'refuse');
    }
  });

  it('abort is refused once the promotion has begun; promote then has nothing to do', function () {
    assert.match(plan('abort', canary({ phase: 'Promoting', pendingRevision: R }), ACTOR).message, /too late to abort/);
    assert.equal(plan('promote', canary({ phase: 'Promoting', pendingRevision: R }), ACTOR).kind, 'noop');
  });

  it('does not write the same request twice', function () {
    assert.equal(plan('abort', canary({ phase: 'Progressing', pendingRevision: R }, { annotations: { 'canarygate.dev/abort': R } }), ACTOR).kind, 'noop');
    // A request left for an older revision is replaced.
    const p = write(plan('abort', canary({ phase: 'Progressing', pendingRevision: R }, { annotations: { 'canarygate.dev/abort': 'old' } }), ACTOR));
    assert.deepEqual(p.patch, { metadata: { annotations: { 'canarygate.dev/abort': R } } });
  });

  it('abort writes the running revision and says how to retry', function () {
    const p = write(plan('abort', canary({ phase: 'WaitingPromotion', pendingRevision: R }), ACTOR));
    assert.equal(p.reason, 'AbortRequested');
    assert.match(p.message, /canary-gate retry web/);
  });

  it('retry needs phase Failed and the failed revision still pending on the target', function () {
    const failed = canary({ phase: 'Failed', failedRevision: R });
    const p = write(plan('retry', failed, ACTOR, R));
    assert.deepEqual(p.patch, { metadata: { annotations: { 'canarygate.dev/retry': R } } });
    assert.equal(p.reason, 'RetryRequested');
    assert.equal(plan('retry', failed, ACTOR, undefined).kind, 'write', 'an unreadable target does not block');
    assert.match(plan('retry', failed, ACTOR, null).message, /no longer pending on Deployment\/web/);
    assert.match(plan('retry', failed, ACTOR, 'fffffffffff0').message, /now holds revision fffffffffff0/);
    const running = plan('retry', canary({ phase: 'Progressing', pendingRevision: R }), ACTOR);
    assert.equal(running.kind, 'refuse');
    assert.match(running.message, /phase Progressing; revision abc123abc123 is being analysed \(retry applies to a Failed rollout\)/);
  });

  it('retry removes a promote or abort of the same revision left over from its failed run', function () {
    const c = canary({ phase: 'Failed', failedRevision: R }, { annotations: { 'canarygate.dev/promote': R, 'canarygate.dev/abort': 'other0000000' } });
    const p = write(plan('retry', c, ACTOR, R));
    assert.deepEqual(p.patch, { metadata: { annotations: { 'canarygate.dev/retry': R, 'canarygate.dev/promote': null } } });
    assert.match(p.message, /The promote request left over from its failed run was removed/);
  });

  it('pause and resume patch spec.suspend, and say when there is nothing to change', function () {
    const p = write(plan('pause', canary({ phase: 'Progressing', pendingRevision: R }), ACTOR));
    assert.deepEqual(p.patch, { spec: { suspend: true } });
    assert.equal(p.reason, 'Paused');
    assert.equal(plan('pause', canary({}, { spec: { suspend: true } }), ACTOR).kind, 'noop');
    const r = write(plan('resume', canary({ phase: 'Progressing', pendingRevision: R }, { spec: { suspend: true } }), ACTOR));
    assert.deepEqual(r.patch, { spec: { suspend: false } });
    assert.equal(r.reason, 'Resumed');
    assert.equal(plan('resume', canary({}), ACTOR).kind, 'noop');
  });

  it('mentions that a paused Canary does not act on the request', function () {
    const p = write(plan('promote', canary({ phase: 'Progressing', pendingRevision: R }, { spec: { suspend: true } }), ACTOR));
    assert.match(p.message, /is paused \(spec\.suspend\): nothing happens until `canary-gate resume web`/);
  });
});
