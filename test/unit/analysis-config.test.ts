// resolveAnalysis() and its helpers: what a Canary's analysis settings mean
// once every default is filled in, so the state machine never guesses.

import assert from 'node:assert/strict';
import type { CanaryAnalysis, CanarySpec } from '../../core/api/types.js';
import {
  DEFAULT_MAX_WEIGHT,
  DEFAULT_PROGRESS_DEADLINE_SECONDS,
  DEFAULT_THRESHOLD,
  parseDuration,
  resolveAnalysis,
  weightSteps,
} from '../../reconciler/decide/analysis-config.js';

function spec(analysis?: CanaryAnalysis, rest: Partial<CanarySpec> = {}): CanarySpec {
  const s: CanarySpec = { targetRef: { kind: 'Deployment', name: 'podinfo' }, service: { port: 9898 }, ...rest };
  if (analysis) s.analysis = analysis;
  return s;
}

describe('analysis-config', () => {
  describe('parseDuration', () => {
    it('reads whole seconds', () => {
      assert.equal(parseDuration('1s'), 1000);
      assert.equal(parseDuration('30s'), 30_000);
    });

    it('reads milliseconds (not minutes followed by seconds)', () => {
      assert.equal(parseDuration('500ms'), 500);
    });

    it('adds up compound durations like 1m30s', () => {
      assert.equal(parseDuration('1m30s'), 90_000);
      assert.equal(parseDuration('1h1m1s1ms'), 3_661_001);
    });

    it('accepts fractions like 1.5h', () => {
      assert.equal(parseDuration('1.5h'), 5_400_000);
      assert.equal(parseDuration('0.5s'), 500);
    });

    it('rejects an empty string', () => {
      assert.throws(() => parseDuration(''), /empty/);
    });

    it('rejects a number without a unit', () => {
      assert.throws(() => parseDuration('10'), /invalid duration/);
    });

    it('rejects words', () => {
      assert.throws(() => parseDuration('soon'), /invalid duration/);
    });

    it('rejects units Go does not have here, like days', () => {
      assert.throws(() => parseDuration('1d'), /invalid duration/);
    });

    it('rejects trailing garbage after a valid prefix', () => {
      assert.throws(() => parseDuration('1m30'), /invalid duration/);
      assert.throws(() => parseDuration('1s '), /invalid duration/);
      assert.throws(() => parseDuration('-1s'), /invalid duration/);
    });
  });

  describe('weightSteps', () => {
    it('steps by stepWeight up to maxWeight (10 up to 50 → 10,20,30,40,50)', () => {
      assert.deepEqual(weightSteps({ stepWeight: 10, maxWeight: 50 }), [10, 20, 30, 40, 50]);
    });

    it('uses stepWeight 10 and maxWeight 50 by default', () => {
      assert.deepEqual(weightSteps({}), [10, 20, 30, 40, 50]);
    });

    it('ends at maxWeight when it is not a multiple of stepWeight', () => {
      assert.deepEqual(weightSteps({ stepWeight: 20, maxWeight: 50 }), [20, 40, 50]);
      assert.deepEqual(weightSteps({ stepWeight: 30, maxWeight: 100 }), [30, 60, 90, 100]);
    });

    it('goes straight to maxWeight when stepWeight is larger than it', () => {
      assert.deepEqual(weightSteps({ stepWeight: 60, maxWeight: 50 }), [50]);
    });

    it('never goes above 100 percent', () => {
      assert.deepEqual(weightSteps({ stepWeight: 40, maxWeight: 150 }), [40, 80, 100]);
    });

    it('sorts stepWeights and drops duplicates', () => {
      assert.deepEqual(weightSteps({ stepWeights: [30, 5, 10, 30, 5] }), [5, 10, 30]);
    });

    it('drops stepWeights over maxWeight, over 100 or not positive', () => {
      assert.deepEqual(weightSteps({ stepWeights: [1, 80, 20, 5], maxWeight: 50 }), [1, 5, 20]);
      assert.deepEqual(weightSteps({ stepWeights: [0, -5, 10, 120, 60] }), [10, 60]);
    });

    it('prefers stepWeights over stepWeight', () => {
      assert.deepEqual(weightSteps({ stepWeight: 10, stepWeights: [25, 50] }), [25, 50]);
    });
  });

  describe('resolveAnalysis', () => {
    it('fills every default for an empty analysis', () => {
      const a = resolveAnalysis(spec());
      assert.equal(a.strategy, 'canary');
      assert.equal(a.intervalMs, 60_000);
      assert.equal(a.threshold, DEFAULT_THRESHOLD);
      assert.deepEqual(a.weights, [10, 20, 30, 40, 50]);
      assert.equal(a.maxWeight, DEFAULT_MAX_WEIGHT);
      assert.equal(a.iterations, 0);
      assert.deepEqual(a.match, []);
      assert.equal(a.progressDeadlineMs, DEFAULT_PROGRESS_DEADLINE_SECONDS * 1000);
      assert.equal(a.skipAnalysis, false);
      assert.equal(a.suspend, false);
      assert.equal(a.hasMetrics, false);
      for (const list of Object.values(a.gates)) assert.deepEqual(list, []);
      assert.deepEqual(Object.keys(a.gates).sort(), [
        'confirm-promotion', 'confirm-rollout', 'confirm-traffic-increase', 'event', 'post-rollout', 'pre-rollout', 'rollback', 'rollout',
      ]);
    });

    it('is a progressive canary when iterations are not set, even with a match', () => {
      const a = resolveAnalysis(spec({ match: [{ headers: { 'x-canary': { exact: 'insider' } } }] }));
      assert.equal(a.strategy, 'canary');
    });

    it('is blue/green with iterations and no match', () => {
      const a = resolveAnalysis(spec({ iterations: 5 }));
      assert.equal(a.strategy, 'blue-green');
      assert.equal(a.iterations, 5);
    });

    it('is A/B testing with iterations and a match', () => {
      const match = [{ headers: { cookie: { regex: '^(.*?;)?(canary=always)(;.*)?$' } } }];
      const a = resolveAnalysis(spec({ iterations: 10, match }));
      assert.equal(a.strategy, 'ab');
      assert.deepEqual(a.match, match);
    });

    it('takes the weights, maxWeight, interval and threshold from the spec', () => {
      const a = resolveAnalysis(spec({ interval: '1m30s', threshold: 2, stepWeights: [5, 25, 15] }));
      assert.equal(a.intervalMs, 90_000);
      assert.equal(a.threshold, 2);
      assert.deepEqual(a.weights, [5, 15, 25]);
      assert.equal(a.maxWeight, 25);
    });

    it('takes the deadline, skipAnalysis and suspend from the spec', () => {
      const a = resolveAnalysis(spec({}, { provider: 'gatewayapi', progressDeadlineSeconds: 120, skipAnalysis: true, suspend: true }));
      assert.equal(a.progressDeadlineMs, 120_000);
      assert.equal(a.skipAnalysis, true);
      assert.equal(a.suspend, true);
    });

    it('groups webhooks by type, a webhook without a type being a rollout gate', () => {
      const a = resolveAnalysis(
        spec({
          webhooks: [
            { name: 'load-test', url: 'http://tester/' },
            { name: 'smoke', type: 'pre-rollout', url: 'http://tester/smoke' },
            { name: 'approve', type: 'confirm-promotion', url: 'http://gate/approve' },
            { name: 'check', type: 'rollout', url: 'http://tester/check' },
          ],
        }),
      );
      assert.deepEqual(a.gates.rollout.map((h) => h.name), ['load-test', 'check']);
      assert.deepEqual(a.gates['pre-rollout'].map((h) => h.name), ['smoke']);
      assert.deepEqual(a.gates['confirm-promotion'].map((h) => h.name), ['approve']);
      assert.deepEqual(a.gates.rollback, []);
    });

    it('knows whether there are metrics to check', () => {
      assert.equal(resolveAnalysis(spec({ metrics: [] })).hasMetrics, false);
      assert.equal(resolveAnalysis(spec({ metrics: [{ name: 'error-rate', thresholdRange: { max: 1 } }] })).hasMetrics, true);
    });

    it('refuses an invalid interval', () => {
      assert.throws(() => resolveAnalysis(spec({ interval: '1 minute' })), /invalid duration/);
    });

    // Regression: when every stepWeight is filtered out (all above maxWeight, above 100
    // or not positive), weights is [] and maxWeight silently falls back to the
    // default 50, which may exceed the user's maxWeight (here 30): the canary
    // would then be sent 50% of the traffic. Expected: never above the user's
    // maxWeight — e.g. weights [30] (cap the list at maxWeight), or reject the spec.
    it('never lets the canary weight exceed the maxWeight the user set, even when all stepWeights are above it', () => {
      const a = resolveAnalysis(spec({ stepWeights: [40, 60], maxWeight: 30 }));
      assert.ok(a.maxWeight <= 30, `maxWeight resolved to ${a.maxWeight}`);
      assert.ok(a.weights.length > 0, 'no weights to step through');
      assert.ok(a.weights.every((w) => w <= 30), `weights ${a.weights}`);
    });
  });
});
