// `canary-gate reconciler` flags that bound its API calls, its lease and its shards.

import assert from 'node:assert/strict';
import { command, parseReconcilerArgs } from '../../reconciler/command.js';
import { shardOf } from '../../reconciler/kit/shards.js';

describe('canary-gate reconciler flags', () => {
  it('--api-timeout: 30 s by default, whole seconds, refused when not a positive whole number', () => {
    assert.equal(parseReconcilerArgs([]).apiTimeoutMs, 30_000);
    assert.equal(parseReconcilerArgs(['--api-timeout', '5']).apiTimeoutMs, 5000);
    for (const bad of ['0', '-1', '1.5', '30s', '']) {
      assert.throws(() => parseReconcilerArgs([`--api-timeout=${bad}`]), /--api-timeout must be a whole number >= 1/, bad);
    }
    assert.match(command.help, /--api-timeout SECONDS/);
  });

  it('--workers: 16 by default (a sync mostly waits on one API write: 4 workers capped 10,000 canaries at ~85 syncs/s)', () => {
    assert.equal(parseReconcilerArgs([]).workers, 16);
    assert.equal(parseReconcilerArgs(['--workers', '4']).workers, 4);
    assert.throws(() => parseReconcilerArgs(['--workers', '0']), /--workers must be a whole number >= 1/);
  });

  it('--lease-duration below 2 s is refused with the reason, not a crash at start', () => {
    assert.equal(parseReconcilerArgs(['--lease-duration', '2']).leaseDurationSeconds, 2);
    assert.throws(() => parseReconcilerArgs(['--lease-duration', '1']), /--lease-duration must be a whole number >= 2/);
  });

  it('--shards N --shard-index I: sharding elects, the index comes from the flag or a StatefulSet Pod name, bad values are refused', () => {
    const one = parseReconcilerArgs([]);
    assert.equal(one.shards, 1);
    assert.equal(one.leaderElect, false);
    const third = parseReconcilerArgs(['--shards', '3', '--shard-index', '2']);
    assert.deepEqual([third.shards, third.shardIndex, third.leaderElect], [3, 2, true]);
    const pod = process.env.POD_NAME;
    try {
      process.env.POD_NAME = 'canary-gate-reconciler-1';
      assert.equal(parseReconcilerArgs(['--shards', '3']).shardIndex, 1);
      delete process.env.POD_NAME;
      assert.throws(() => parseReconcilerArgs(['--shards', '3']), /--shards needs --shard-index/);
    } finally {
      if (pod === undefined) delete process.env.POD_NAME;
      else process.env.POD_NAME = pod;
    }
    assert.throws(() => parseReconcilerArgs(['--shards', '3', '--shard-index', '3']), /--shard-index must be below --shards \(3\), got 3/);
    assert.throws(() => parseReconcilerArgs(['--shard-index', '0']), /--shard-index needs --shards greater than 1/);
    assert.throws(() => parseReconcilerArgs(['--shards', '0']), /--shards must be a whole number >= 1/);
    assert.match(command.help, /--shards N/);
  });
});

describe('shardOf', () => {
  it('puts a namespace in the same shard on every replica, and spreads many namespaces evenly', () => {
    assert.equal(shardOf('payments', 3), shardOf('payments', 3));
    assert.equal(shardOf('anything', 1), 0);
    const counts = [0, 0, 0, 0];
    for (let i = 0; i < 4000; i++) counts[shardOf(`team-${i}`, 4)]!++;
    for (const c of counts) assert.ok(c > 850 && c < 1150, `each of 4 shards gets about a quarter of 4000 namespaces: ${counts.join(', ')}`);
  });
});
