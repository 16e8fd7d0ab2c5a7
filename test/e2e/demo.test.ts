// The README's "run it" command, in CI: `make demo` and `make demo-rollback`
// run the same script against the suite's control plane (the script reuses a
// running cluster and leaves it running). podinfo runs on the real node and
// the load tester sends it real requests.

import assert from 'node:assert/strict';
import path from 'node:path';
import { repoRoot, run } from './cluster.js';
import { PODINFO_VERSION } from './real-node.js';

const demo = (args: string[]) => run(process.execPath, [path.join(repoRoot, 'dist/test/demo/demo.js'), ...args], { timeoutMs: 240_000 });
const v = PODINFO_VERSION.replaceAll('.', '\\.');

describe('the local demo', function () {
  this.timeout(260_000);

  it('rolls podinfo out to the new image under real load and says it was promoted', async function () {
    const r = await demo([]);
    assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
    assert.match(r.stdout, /Warning: canary-gate: change held as pending revision/);
    assert.match(r.stdout, /observed \(Prometheus, 10s\): canary [1-9][0-9]*% of requests, success 100%/, 'watch shows real requests reaching the canary');
    assert.match(r.stdout, /result: revision [0-9a-f]{12} promoted \(exit 0\)/);
    assert.match(r.stdout, new RegExp(`promoted: podinfo now runs ${v}-b`));
  });

  it('with --traefik, the requests go through a real Traefik and the HTTPRoute, and the change is promoted', async function () {
    const r = await demo(['--traefik']);
    assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
    assert.match(r.stdout, /Traefik v3 serving Gateways/);
    assert.match(r.stdout, /observed \(Prometheus, 10s\): canary [1-9][0-9]*% of requests, success 100%/, 'watch shows real requests reaching the canary through Traefik');
    assert.match(r.stdout, /result: revision [0-9a-f]{12} promoted \(exit 0\)/);
    assert.match(r.stdout, new RegExp(`promoted: podinfo now runs ${v}-b`));
  });

  it('with --gitops, a commit pushed to git is applied by the real Flux, held, rolled out and promoted; the Kustomization says Ready after', async function () {
    const r = await demo(['--gitops']);
    assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
    assert.match(r.stdout, /git commit -am "podinfo/);
    assert.match(r.stdout, /observed \(Prometheus, 10s\): canary [1-9][0-9]*% of requests, success 100%/, 'watch shows real requests reaching the canary');
    assert.match(r.stdout, /result: revision [0-9a-f]{12} promoted \(exit 0\)/);
    assert.match(r.stdout, /podinfo\s+\S+\s+True\s+Applied revision: demo@sha1:/, 'kubectl get kustomization shows Ready after the promotion');
    assert.match(r.stdout, new RegExp(`promoted: podinfo now runs ${v}-b`));
  });

  it('with --rollback, the new version\'s failing requests roll the change back', async function () {
    const r = await demo(['--rollback']);
    assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
    // The new version's real requests fail: the success rate, or the acceptance request when it reached the canary.
    assert.match(r.stdout, /rolled back: 2 failed checks: (metric request-success-rate \(prometheus\): [0-9.]+ is below the minimum 99|webhook acceptance .*answered (500|400|409))/);
    assert.match(r.stdout, new RegExp(`rolled back: the live Deployment never left ${v}-a`));
  });
});
