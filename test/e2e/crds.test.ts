// The CRDs on a real API server: schema validation, defaults, status
// subresource and printer columns are the API server's, not a mock's.

import assert from 'node:assert/strict';
import path from 'node:path';
import { kubectl, kubectlOk, repoRoot } from './cluster.js';
import { createNamespace, deleteNamespace } from './namespaces.js';

function canary(name: string, analysis: Record<string, unknown>, extra: Record<string, unknown> = {}) {
  return {
    apiVersion: 'canarygate.dev/v1alpha1',
    kind: 'Canary',
    metadata: { name },
    spec: { targetRef: { apiVersion: 'apps/v1', kind: 'Deployment', name: 'web' }, service: { port: 80 }, analysis, ...extra },
  };
}

describe('CRDs on a real API server', function () {
  let ns: string;
  before(async () => {
    ns = await createNamespace('crds', { enabled: false });
  });
  after(async () => deleteNamespace(ns));

  it('accepts a valid Canary and fills in the defaults', async function () {
    await kubectlOk(['-n', ns, 'apply', '-f', '-'], { input: JSON.stringify(canary('good', { stepWeight: 20, maxWeight: 60 })) });
    const stored = JSON.parse(await kubectlOk(['-n', ns, 'get', 'canary', 'good', '-o', 'json'])) as {
      spec: { provider: string; progressDeadlineSeconds: number; analysis: { interval: string; threshold: number } };
    };
    assert.equal(stored.spec.provider, 'kubernetes');
    assert.equal(stored.spec.progressDeadlineSeconds, 600);
    assert.equal(stored.spec.analysis.interval, '60s');
    assert.equal(stored.spec.analysis.threshold, 5);
  });

  const invalid: [string, Record<string, unknown>, Record<string, unknown>, RegExp][] = [
    ['a weight over 100', { stepWeight: 500 }, {}, /stepWeight/],
    ['a threshold of 0', { threshold: 0 }, {}, /threshold/],
    ['an unknown webhook type', { webhooks: [{ name: 'x', type: 'sometimes', url: 'http://x.test/' }] }, {}, /type/],
    ['a malformed interval', { interval: 'soon' }, {}, /interval/],
    ['an unknown router', {}, { provider: 'carrier-pigeon' }, /provider/],
    ['an unknown field', { stepWieght: 10 }, {}, /stepWieght/],
    ['a provider Flagger has but canary-gate has not', {}, { provider: 'appmesh' }, /provider must be one of kubernetes, gatewayapi, gatewayapi:v1, istio, linkerd, osm, smi, nginx, traefik, contour/],
    ['an SMI version that does not exist', {}, { provider: 'smi:v1alpha9' }, /provider must be one of/],
    ['an HTTPRoute version canary-gate does not write', {}, { provider: 'gatewayapi:v1beta1' }, /provider must be one of/],
    // No field accepted and ignored: a field the chosen router cannot express is refused, naming who honours it.
    ['a route timeout on the kubernetes router', {}, { service: { port: 80, timeout: '5s' } }, /service\.timeout is honoured only by the providers gatewayapi/],
    ['A/B matches on the kubernetes router', { iterations: 3, match: [{ headers: { x: { exact: 'y' } } }] }, {}, /analysis\.match is honoured only by the providers/],
    ['mirroring on the kubernetes router', { mirror: true }, {}, /analysis\.mirror is honoured only by the providers/],
    ['mirrorWeight without mirror', { mirrorWeight: 20 }, { provider: 'gatewayapi' }, /mirrorWeight needs mirror: true/],
    ['mirroring with A/B matches', { iterations: 2, mirror: true, match: [{ headers: { x: { exact: 'y' } } }] }, { provider: 'gatewayapi' }, /mirror and match cannot be combined/],
    ['session affinity on a blue/green run', { iterations: 2, sessionAffinity: { cookieName: 'c' } }, { provider: 'gatewayapi' }, /sessionAffinity applies to weighted runs/],
    ['a cookie name with a space', { sessionAffinity: { cookieName: 'my cookie' } }, { provider: 'gatewayapi' }, /cookieName/],
  ];

  it('accepts mirroring and session affinity with the gatewayapi router', async function () {
    const spec = { provider: 'gatewayapi' };
    await kubectlOk(['-n', ns, 'apply', '--validate=strict', '-f', '-'], { input: JSON.stringify(canary('mirrored', { iterations: 3, mirror: true, mirrorWeight: 50 }, spec)) });
    await kubectlOk(['-n', ns, 'apply', '--validate=strict', '-f', '-'], {
      input: JSON.stringify(canary('sticky', { stepWeight: 10, sessionAffinity: { cookieName: 'canary', primaryCookieName: 'primary', maxAge: 600 } }, spec)),
    });
    // Flagger's spelling of the same router migrates unchanged.
    await kubectlOk(['-n', ns, 'apply', '--validate=strict', '-f', '-'], {
      input: JSON.stringify(canary('flagger-spelling', { mirror: true }, { provider: 'gatewayapi:v1', service: { port: 80, gatewayRefs: [{ name: 'public' }] } })),
    });
  });
  for (const [what, analysis, extra, field] of invalid) {
    it(`rejects a Canary with ${what}, naming the field`, async function () {
      // Strict field validation is done by the API server (kubectl only asks for it),
      // so an unknown field is named rather than silently pruned.
      const r = await kubectl(['-n', ns, 'apply', '--validate=strict', '-f', '-'], { input: JSON.stringify(canary('bad', analysis, extra)) });
      assert.notEqual(r.code, 0, `the API server accepted a Canary with ${what}`);
      assert.match(r.stderr, field);
    });
  }

  it('shows the printer columns and serves the status subresource', async function () {
    await kubectlOk(['-n', ns, 'apply', '-f', '-'], { input: JSON.stringify(canary('cols', {})) });
    await kubectlOk([
      '-n', ns, 'patch', 'canary', 'cols', '--subresource=status', '--type=merge',
      '-p', JSON.stringify({ status: { phase: 'Progressing', canaryWeight: 30, failedChecks: 1 } }),
    ]);
    const table = await kubectlOk(['-n', ns, 'get', 'canary', 'cols']);
    assert.match(table, /STATUS\s+WEIGHT\s+FAILEDCHECKS/);
    assert.match(table, /cols\s+Progressing\s+30\s+1/);
    // A spec write cannot change the status.
    await kubectlOk(['-n', ns, 'patch', 'canary', 'cols', '--type=merge', '-p', JSON.stringify({ status: { phase: 'Succeeded' } })]);
    const phase = await kubectlOk(['-n', ns, 'get', 'canary', 'cols', '-o', 'jsonpath={.status.phase}']);
    assert.equal(phase, 'Progressing');
  });

  it('the whole install (kustomize base) is accepted by the API server', async function () {
    // Server-side dry-run: every object is defaulted, validated and admitted by
    // the real API server (RBAC, webhook configuration, PDBs, Jobs...), nothing is stored.
    const out = await kubectlOk(['apply', '--dry-run=server', '-k', path.join(repoRoot, 'deploy/base')]);
    const expected = [
      'customresourcedefinition.apiextensions.k8s.io/canaries.canarygate.dev',
      'clusterrole.rbac.authorization.k8s.io/canary-gate-reconciler',
      'deployment.apps/canary-gate-webhook',
      'deployment.apps/canary-gate-reconciler',
      'mutatingwebhookconfiguration.admissionregistration.k8s.io/canary-gate',
      'poddisruptionbudget.policy/canary-gate-webhook',
      'cronjob.batch/canary-gate-certs-renew',
    ];
    const accepted = new Set(out.split('\n').filter((l) => l.endsWith('(server dry run)')).map((l) => l.split(' ')[0]));
    for (const name of expected) assert.ok(accepted.has(name), `${name} accepted, in:\n${out}`);
  });
});
