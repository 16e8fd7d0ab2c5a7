// The README's "run it" command, in CI: `make demo` and `make demo-rollback`
// run the same script against the suite's control plane (the script reuses a
// running cluster and leaves it running).

import assert from 'node:assert/strict';
import path from 'node:path';
import { repoRoot, run } from './cluster.js';

const demo = (args: string[]) => run(process.execPath, [path.join(repoRoot, 'dist/test/demo/demo.js'), ...args], { timeoutMs: 240_000 });

describe('the local demo', function () {
  it('rolls the sample app out to 6.7.1 and says it was promoted', async function () {
    const r = await demo([]);
    assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
    assert.match(r.stdout, /Warning: canary-gate: change held as pending revision/);
    assert.match(r.stdout, /result: revision [0-9a-f]{12} promoted \(exit 0\)/);
    assert.match(r.stdout, /promoted: podinfo now runs 6\.7\.1/);
  });

  it('with --rollback, a failing smoke test rolls the change back', async function () {
    const r = await demo(['--rollback']);
    assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
    assert.match(r.stdout, /rolled back: 2 failed checks: webhook smoke-test/);
    assert.match(r.stdout, /rolled back: the live Deployment never left 6\.7\.0/);
  });
});
