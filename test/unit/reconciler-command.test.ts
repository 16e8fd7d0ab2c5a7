// `canary-gate reconciler` flags that bound its API calls and its lease.

import assert from 'node:assert/strict';
import { command, parseReconcilerArgs } from '../../reconciler/command.js';

describe('canary-gate reconciler flags', () => {
  it('--api-timeout: 30 s by default, whole seconds, refused when not a positive whole number', () => {
    assert.equal(parseReconcilerArgs([]).apiTimeoutMs, 30_000);
    assert.equal(parseReconcilerArgs(['--api-timeout', '5']).apiTimeoutMs, 5000);
    for (const bad of ['0', '-1', '1.5', '30s', '']) {
      assert.throws(() => parseReconcilerArgs([`--api-timeout=${bad}`]), /--api-timeout must be a whole number >= 1/, bad);
    }
    assert.match(command.help, /--api-timeout SECONDS/);
  });

  it('--lease-duration below 2 s is refused with the reason, not a crash at start', () => {
    assert.equal(parseReconcilerArgs(['--lease-duration', '2']).leaseDurationSeconds, 2);
    assert.throws(() => parseReconcilerArgs(['--lease-duration', '1']), /--lease-duration must be a whole number >= 2/);
  });
});
