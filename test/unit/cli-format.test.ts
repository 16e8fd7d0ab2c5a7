// The operator CLI's pure parts: status table, ages, progress bars, the
// plain lines of `watch`, and the exit code it decides from a sequence of
// Canary states.

import assert from 'node:assert/strict';
import type { Canary, CanaryStatus, CanarySpec } from '../../core/api/types.js';
import {
  age,
  changeRows,
  formatIn,
  humanDuration,
  nextStepIn,
  plainLine,
  progressBar,
  progressOf,
  renderTable,
  statusRows,
  summaryLine,
  timestamp,
  ttyBlock,
} from '../../reconciler/cli/format.js';
import { begin, decideExit, judge, type Observation } from '../../reconciler/cli/judge.js';

const NOW = Date.parse('2026-01-01T12:00:00Z');
const ago = (ms: number) => new Date(NOW - ms).toISOString();

let rv = 100;
function canary(status: CanaryStatus, opts: { name?: string; namespace?: string; spec?: Partial<CanarySpec>; annotations?: Record<string, string>; rv?: string } = {}): Canary {
  const metadata: Canary['metadata'] = { name: opts.name ?? 'web', namespace: opts.namespace ?? 'shop', resourceVersion: opts.rv ?? String(rv++) };
  if (opts.annotations) metadata.annotations = opts.annotations;
  return {
    apiVersion: 'canarygate.dev/v1alpha1',
    kind: 'Canary',
    metadata,
    spec: {
      targetRef: { kind: 'Deployment', name: opts.name ?? 'web' },
      service: { port: 80 },
      analysis: { interval: '30s', threshold: 5, stepWeight: 10, maxWeight: 50 },
      ...opts.spec,
    },
    status,
  };
}

describe('cli format', function () {
  describe('humanDuration (kubectl AGE)', function () {
    const cases: [number, string][] = [
      [-5000, '<invalid>'],
      [-1500, '0s'],
      [0, '0s'],
      [5_000, '5s'],
      [119_999, '119s'],
      [120_000, '2m'],
      [200_000, '3m20s'],
      [42 * 60_000, '42m'],
      [179 * 60_000, '179m'],
      [3 * 3_600_000, '3h'],
      [5 * 3_600_000 + 3 * 60_000, '5h3m'],
      [20 * 3_600_000, '20h'],
      [52 * 3_600_000, '2d4h'],
      [3 * 86_400_000, '3d'],
      [30 * 86_400_000, '30d'],
      [(2 * 365 + 10) * 86_400_000, '2y10d'],
      [9 * 365 * 86_400_000, '9y'],
    ];
    for (const [ms, text] of cases) {
      it(`${ms} ms is ${text}`, function () {
        assert.equal(humanDuration(ms), text);
      });
    }
    it('age of a missing or invalid timestamp is <unknown>', function () {
      assert.equal(age(undefined, NOW), '<unknown>');
      assert.equal(age('yesterday', NOW), '<unknown>');
      assert.equal(age(ago(65_000), NOW), '65s');
    });
  });

  describe('status table', function () {
    const progressing = canary(
      { phase: 'Progressing', canaryWeight: 20, failedChecks: 1, pendingRevision: 'abc123abc123', lastTransitionTime: ago(5000) },
      { name: 'web', namespace: 'shop' },
    );
    const blueGreen = canary(
      { phase: 'Succeeded', iterations: 2, lastTransitionTime: ago(4 * 3_600_000) },
      { name: 'api', namespace: 'shop', spec: { analysis: { iterations: 3, threshold: 2 } } },
    );
    const paused = canary({ phase: 'Initialized' }, { name: 'db', namespace: 'alpha', spec: { targetRef: { kind: 'Service', name: 'db' }, suspend: true } });

    it('has one row per Canary, sorted, with weight/maxWeight or iterations, checks/threshold, pending and age', function () {
      const rows = statusRows([progressing, blueGreen], { allNamespaces: false, now: NOW });
      assert.deepEqual(rows, [
        ['NAME', 'TARGET', 'PHASE', 'WEIGHT', 'CHECKS', 'PENDING', 'AGE'],
        ['api', 'Deployment/api', 'Succeeded', '2/3', '0/2', '-', '4h'],
        ['web', 'Deployment/web', 'Progressing', '20/50', '1/5', 'abc123abc123', '5s'],
      ]);
    });

    it('adds a NAMESPACE column with -A and marks a suspended Canary', function () {
      const rows = statusRows([progressing, paused], { allNamespaces: true, now: NOW });
      assert.deepEqual(rows[0], ['NAMESPACE', 'NAME', 'TARGET', 'PHASE', 'WEIGHT', 'CHECKS', 'PENDING', 'AGE']);
      assert.deepEqual(rows[1], ['alpha', 'db', 'Service/db', 'Initialized (suspended)', '0/50', '0/5', '-', '<unknown>']);
      assert.equal(rows[2]?.[0], 'shop');
    });

    it('renders aligned columns three spaces apart, without trailing blanks', function () {
      const text = renderTable([
        ['NAME', 'PHASE', 'AGE'],
        ['a-long-name', 'Failed', '5s'],
        ['b', 'Progressing', '10m'],
      ]);
      assert.equal(text, ['NAME          PHASE         AGE', 'a-long-name   Failed        5s', 'b             Progressing   10m'].join('\n'));
    });

    it('the weight toward maxWeight uses the resolved analysis (stepWeights, defaults)', function () {
      assert.deepEqual(progressOf(canary({ canaryWeight: 30 }, { spec: { analysis: { stepWeights: [5, 30, 80] } } })), { kind: 'weight', value: 30, max: 80 });
      assert.deepEqual(progressOf(canary({}, { spec: { analysis: {} } })), { kind: 'weight', value: 0, max: 50 });
      assert.deepEqual(progressOf(canary({ iterations: 1 }, { spec: { analysis: { iterations: 4, match: [{ headers: { x: { exact: 'y' } } }] } } })), { kind: 'iterations', value: 1, max: 4 });
    });
  });

  describe('progress bar and next step', function () {
    it('fills in proportion, clamped, and is empty for an unknown maximum', function () {
      assert.equal(progressBar(20, 50, 10), '[####------]');
      assert.equal(progressBar(50, 50, 10), '[##########]');
      assert.equal(progressBar(80, 50, 4), '[####]');
      assert.equal(progressBar(-1, 50, 4), '[----]');
      assert.equal(progressBar(3, 0, 4), '[----]');
      assert.equal(progressBar(1, 3, 6, { full: '█', empty: '░' }), '[██░░░░]');
    });

    it('the next step is lastStepTime + interval − now, only while a run is analysed', function () {
      const running = canary({ phase: 'Progressing', lastStepTime: ago(10_000) });
      assert.equal(nextStepIn(running, NOW), 20_000);
      assert.equal(formatIn(nextStepIn(running, NOW)), 'in 20s');
      assert.equal(formatIn(nextStepIn(canary({ phase: 'Progressing', lastStepTime: ago(45_000) }), NOW)), 'due now');
      assert.equal(nextStepIn(canary({ phase: 'Progressing' }), NOW), undefined, 'no step taken yet');
      assert.equal(nextStepIn(canary({ phase: 'Succeeded', lastStepTime: ago(1000) }), NOW), undefined);
      assert.equal(nextStepIn(canary({ phase: 'Progressing', lastStepTime: ago(1000) }, { spec: { suspend: true } }), NOW), undefined);
      assert.equal(formatIn(90_000), 'in 1m30s');
      assert.equal(formatIn(3_600_000), 'in 1h');
      assert.equal(formatIn(undefined), '-');
    });
  });

  describe('watch output', function () {
    it('prints one plain timestamped line per state', function () {
      const c = canary({ phase: 'Progressing', canaryWeight: 20, failedChecks: 0, pendingRevision: 'abc123abc123', message: 'weight 20/50' });
      assert.equal(timestamp(NOW), '2026-01-01T12:00:00Z');
      assert.equal(plainLine(c, NOW), '2026-01-01T12:00:00Z Progressing weight 20/50 checks 0/5 revision abc123abc123: weight 20/50');
    });

    it('names iterations, metrics and the failed revision', function () {
      const c = canary(
        {
          phase: 'Failed',
          iterations: 1,
          failedChecks: 2,
          failedRevision: 'fff000fff000',
          metrics: [
            { name: 'error-rate', value: 7.5, result: 'fail' },
            { name: 'latency', result: 'nodata' },
          ],
        },
        { spec: { analysis: { iterations: 3, threshold: 2 } } },
      );
      assert.equal(summaryLine(c), 'Failed iterations 1/3 checks 2/2 revision fff000fff000 metrics error-rate=7.5 fail, latency=nodata nodata');
    });

    it('draws a terminal block with the bar, phase, checks, message, metrics and next step, cut to the width', function () {
      const c = canary({
        phase: 'Progressing',
        canaryWeight: 25,
        failedChecks: 1,
        pendingRevision: 'abc123abc123',
        lastStepTime: ago(18_000),
        lastTransitionTime: ago(60_000),
        message: 'waiting for confirm-traffic-increase: gate approve answered 403 '.repeat(3),
        metrics: [{ name: 'error-rate', value: 0.5, result: 'pass', checkedAt: ago(18_000) }],
      });
      const lines = ttyBlock(c, { now: NOW, width: 80 });
      assert.match(lines[0] ?? '', /^shop\/web → Deployment\/web +revision abc123abc123$/);
      assert.equal(lines[1], `[${'█'.repeat(15)}${'░'.repeat(15)}] weight 25% of 50%`);
      assert.match(lines[2] ?? '', /^phase Progressing for 60s +failed checks 1\/5 +next step in 12s$/);
      assert.match(lines[3] ?? '', /^message waiting for confirm-traffic-increase/);
      assert.ok(lines.every((l) => l.length < 80), 'no line wraps');
      assert.ok((lines[3] ?? '').endsWith('…'));
      assert.equal(lines[4], 'metrics');
      assert.match(lines[5] ?? '', /error-rate +0\.5 +pass \(18s ago\)/);
    });
  });

  describe('watch exit code', function () {
    const R = 'aaaaaaaaaaaa';
    const OLD = 'oooooooooooo';
    const NEW = 'nnnnnnnnnnnn';
    const st = (s: CanaryStatus, annotations?: Record<string, string>): Observation => ({ canary: canary(s, annotations ? { annotations } : {}) });

    it('exits 0 at once when nothing is pending on the Canary nor the target', function () {
      const v = decideExit([{ ...st({ phase: 'Succeeded', lastPromotedRevision: OLD }), targetPending: null }]);
      assert.equal(v?.code, 0);
      assert.match(v?.message ?? '', /nothing to watch.*revision oooooooooooo is live/);
      assert.equal(decideExit([{ ...st({ phase: 'Initialized' }), targetPending: null }])?.code, 0);
    });

    it('waits for a revision pending on the target that the reconciler has not started, then exits 0 on promotion', function () {
      const seq: Observation[] = [{ ...st({ phase: 'Succeeded', lastPromotedRevision: OLD }), targetPending: R }];
      assert.equal(decideExit(seq), undefined, 'not started yet: keep watching');
      seq.push(st({ phase: 'Progressing', pendingRevision: R, canaryWeight: 10, lastPromotedRevision: OLD }));
      seq.push(st({ phase: 'Progressing', pendingRevision: R, canaryWeight: 50, lastPromotedRevision: OLD }));
      assert.equal(decideExit(seq), undefined);
      seq.push(st({ phase: 'Promoting', pendingRevision: R, lastPromotedRevision: OLD }));
      assert.equal(decideExit(seq), undefined, 'promotion under way is not the end');
      seq.push(st({ phase: 'Succeeded', lastPromotedRevision: R }));
      assert.deepEqual(decideExit(seq), { code: 0, message: `revision ${R} promoted` });
    });

    it('counts Initialized after the promotion (a missed Succeeded) as promoted', function () {
      assert.equal(decideExit([{ ...st({ phase: 'Progressing', pendingRevision: R }), targetPending: R }, st({ phase: 'Initialized', lastPromotedRevision: R })])?.code, 0);
    });

    it('exits 1 when the revision is rolled back', function () {
      const v = decideExit([
        { ...st({ phase: 'Progressing', pendingRevision: R }), targetPending: R },
        st({ phase: 'Progressing', pendingRevision: R, failedChecks: 1 }),
        st({ phase: 'Failed', failedRevision: R, message: `revision ${R} rolled back: 2 failed checks` }),
      ]);
      assert.equal(v?.code, 1);
      assert.match(v?.message ?? '', /failed: revision a+ rolled back: 2 failed checks/);
    });

    it('exits 1 at once for a revision that already failed, unless a retry of it is requested', function () {
      const failed = { phase: 'Failed' as const, failedRevision: R, message: 'rolled back' };
      const v = decideExit([{ ...st(failed), targetPending: R }]);
      assert.equal(v?.code, 1);
      assert.match(v?.message ?? '', /before the watch started; `canary-gate retry` runs it again/);

      const retried: Observation[] = [{ ...st(failed, { 'canarygate.dev/retry': R }), targetPending: R }];
      assert.equal(decideExit(retried), undefined, 'waits for the retry to start');
      retried.push(st({ phase: 'Progressing', pendingRevision: R }, { 'canarygate.dev/retry': R }));
      retried.push(st({ phase: 'Progressing', pendingRevision: R }));
      retried.push(st({ phase: 'Succeeded', lastPromotedRevision: R }));
      assert.equal(decideExit(retried)?.code, 0);
    });

    it('exits 3 when the running revision is withdrawn (cancelled)', function () {
      const v = decideExit([
        { ...st({ phase: 'Progressing', pendingRevision: R }), targetPending: R },
        st({ phase: 'Initialized', message: `rollout of ${R} cancelled: the pending revision was withdrawn`, lastPromotedRevision: OLD }),
      ]);
      assert.equal(v?.code, 3);
      assert.match(v?.message ?? '', /cancelled/);
    });

    it('exits 3 when a revision not yet started disappears from the target', function () {
      const seq: Observation[] = [{ ...st({ phase: 'Succeeded', lastPromotedRevision: OLD }), targetPending: R }];
      seq.push(st({ phase: 'Succeeded', lastPromotedRevision: OLD }));
      assert.equal(decideExit(seq), undefined, 'a watch event alone does not tell');
      seq.push({ ...st({ phase: 'Succeeded', lastPromotedRevision: OLD }), targetPending: null });
      assert.match(decideExit(seq)?.message ?? '', /withdrawn from the target before it started/);
      assert.equal(decideExit(seq)?.code, 3);
    });

    it('exits 3 when a newer revision replaces the watched one, but not for the older run still in the status', function () {
      const start: Observation = { ...st({ phase: 'Progressing', pendingRevision: OLD }), targetPending: R };
      assert.equal(decideExit([start, st({ phase: 'Progressing', pendingRevision: OLD, canaryWeight: 20 })]), undefined, 'the older run is winding down');
      const v = decideExit([start, st({ phase: 'Progressing', pendingRevision: R }), st({ phase: 'Progressing', pendingRevision: NEW })]);
      assert.equal(v?.code, 3);
      assert.match(v?.message ?? '', /replaced by revision n+/);
    });

    it('exits 3 when the Canary is deleted or being deleted', function () {
      assert.equal(decideExit([{ ...st({ phase: 'Progressing', pendingRevision: R }), targetPending: R }, { canary: null }])?.code, 3);
      assert.equal(decideExit([{ ...st({ phase: 'Progressing', pendingRevision: R }), targetPending: R }, st({ phase: 'Terminating' })])?.code, 3);
    });

    it('ignores an observation older than one already taken (a slow GET after a watch event)', function () {
      let t = begin({ canary: canary({ phase: 'Progressing', pendingRevision: R }, { rv: '10' }), targetPending: R });
      t = judge(t, { canary: canary({ phase: 'Succeeded', lastPromotedRevision: R }, { rv: '12' }) });
      assert.equal(t.verdict?.code, 0);
      let u = begin({ canary: canary({ phase: 'Progressing', pendingRevision: R }, { rv: '20' }), targetPending: R });
      const before = u;
      u = judge(u, { canary: canary({ phase: 'Initialized' }, { rv: '19' }) });
      assert.equal(u, before, 'an older state changes nothing');
      assert.equal(u.verdict, undefined);
    });

    it('watches the run in progress when the target cannot be read', function () {
      assert.equal(decideExit([st({ phase: 'Progressing', pendingRevision: R }), st({ phase: 'Failed', failedRevision: R })])?.code, 1);
    });
  });
});

describe('status --revision: one change across the stages', () => {
  const base = (ns: string, status: CanaryStatus): Canary => ({
    apiVersion: 'canarygate.dev/v1alpha1',
    kind: 'Canary',
    metadata: { name: 'web', namespace: ns },
    spec: { targetRef: { kind: 'Deployment', name: 'web' }, service: { port: 80 } },
    status,
  });
  const now = Date.parse('2026-12-02T12:00:00Z');

  it('names each stage that has seen it: promoted, rolled back, progressing or waiting (and for what); the others are left out', () => {
    const rows = changeRows(
      [
        base('staging', { phase: 'Succeeded', changeIdentity: 'images:aaa', lastPromotion: { revision: 'r1', images: 'aaa', at: '2026-12-02T11:00:00Z' } }),
        base('prod', { phase: 'Waiting', changeIdentity: 'images:aaa', pendingRevision: 'r2', lastTransitionTime: '2026-12-02T11:59:00Z', conditions: [{ type: 'UpstreamReady', status: 'False', reason: 'Soaking', message: 'soaking until 12:30', lastTransitionTime: '2026-12-02T11:59:00Z' }] }),
        base('qa', { phase: 'Failed', changeIdentity: 'images:aaa', lastFailure: { revision: 'r3', images: 'aaa', at: '2026-12-02T11:30:00Z' } }),
        base('other', { phase: 'Succeeded', changeIdentity: 'images:bbb', lastPromotion: { revision: 'r9', images: 'bbb' } }),
      ],
      'images:aaa',
      now,
    );
    assert.deepEqual(rows.map((r) => [r[0], r[3], r[4]]), [
      ['NAMESPACE', 'STATE', 'SINCE'],
      ['prod', 'waiting: soaking until 12:30', '60s'],
      ['qa', 'rolled back', '30m'],
      ['staging', 'promoted', '60m'],
    ]);
  });

  it('a revision finds the stage that ran exactly that template', () => {
    const rows = changeRows([base('staging', { phase: 'Succeeded', lastPromotion: { revision: 'r1', images: 'aaa' } })], 'r1', now);
    assert.equal(rows[1]?.[3], 'promoted');
  });
});
