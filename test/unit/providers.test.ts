// Provider strings, and which optional Canary fields each router family
// honours: the table core/providers.ts turns into the CRD's CEL rules.

import assert from 'node:assert/strict';
import { FIELD_SUPPORT, fieldSupportRules, routerFamily, smiVersion, unsupportedFields } from '../../core/providers.js';
import { splitFor, cookieHeaderRegex } from '../../reconciler/routers/split.js';
import type { Canary } from '../../core/api/types.js';

describe('provider strings (Flagger spelling)', () => {
  const table: Array<[string | undefined, string | undefined, string | undefined]> = [
    [undefined, 'kubernetes', undefined],
    ['kubernetes', 'kubernetes', undefined],
    ['gatewayapi', 'gatewayapi', undefined],
    ['gatewayapi:v1', 'gatewayapi', undefined],
    ['gatewayapi:v1beta1', undefined, undefined],
    ['istio', 'istio', undefined],
    ['linkerd', 'smi', 'v1alpha1'],
    ['osm', 'smi', 'v1alpha2'],
    ['smi', 'smi', 'v1alpha2'],
    ['smi:v1alpha1', 'smi', 'v1alpha1'],
    ['smi:v1alpha3:linkerd', 'smi', 'v1alpha3'],
    ['nginx', 'nginx', undefined],
    ['traefik', 'traefik', undefined],
    ['contour', 'contour', undefined],
    ['appmesh', undefined, undefined],
    ['smi:v1alpha4', undefined, undefined],
    ['Istio', undefined, undefined],
  ];
  for (const [provider, family, version] of table) {
    it(`${provider ?? '(none)'} -> ${family ?? 'unknown'}${version ? ` ${version}` : ''}`, () => {
      assert.equal(routerFamily(provider), family);
      assert.equal(smiVersion(provider), version);
    });
  }
});

describe('fields a provider cannot express', () => {
  it('every row of the table becomes one CEL rule naming the field and the providers that honour it', () => {
    const rules = fieldSupportRules();
    for (const f of FIELD_SUPPORT) {
      const r = rules.find((x) => x.message.startsWith(`${f.field} is `));
      assert.ok(r, f.field);
      assert.ok(r.rule.startsWith(`!(${f.isSet}) || `), r.rule);
      for (const fam of f.families) assert.match(r.message, new RegExp(`\\b${fam}\\b`));
    }
  });

  it('gatewayapi honours mirroring and sticky sessions; the kubernetes router none of the routing fields', () => {
    const set = (...fields: string[]) => (f: string) => fields.includes(f);
    assert.deepEqual(unsupportedFields('gatewayapi', set('analysis.mirror', 'analysis.sessionAffinity', 'service.gatewayRefs')), []);
    assert.deepEqual(unsupportedFields(undefined, set('analysis.mirror', 'service.timeout', 'analysis.match')), ['service.timeout', 'analysis.match', 'analysis.mirror']);
  });
});

describe('the split a weight asks for', () => {
  const canary = (analysis: NonNullable<Canary['spec']['analysis']>, uid = 'u-1'): Canary => ({
    apiVersion: 'canarygate.dev/v1alpha1',
    kind: 'Canary',
    metadata: { name: 'web', namespace: 'shop', uid },
    spec: { targetRef: { kind: 'Deployment', name: 'web' }, service: { port: 80 }, analysis },
  });
  const affinity = { sessionAffinity: { cookieName: 'c', primaryCookieName: 'p', maxAge: 600 } };

  it('sticky cookies only while the canary has a share that is neither none nor all', () => {
    const c = canary(affinity);
    assert.equal(splitFor(c, { weight: 0, revision: 'r1', intervalMs: 30_000 }).sticky, undefined);
    assert.equal(splitFor(c, { weight: 100, revision: 'r1', intervalMs: 30_000 }).sticky, undefined);
    const s = splitFor(c, { weight: 20, revision: 'r1', intervalMs: 30_000 }).sticky;
    assert.equal(s?.canary.name, 'c');
    assert.equal(s?.canary.maxAge, 600);
    assert.equal(s?.primary?.name, 'p');
    assert.equal(s?.primary?.maxAge, 30, 'the primary cookie lives one interval');
  });

  it('a cookie value is the same after a restart, new for a new revision or another Canary', () => {
    const v = (c: Canary, rev: string) => splitFor(c, { weight: 20, revision: rev, intervalMs: 1000 }).sticky?.canary.value;
    assert.equal(v(canary(affinity), 'r1'), v(canary(affinity), 'r1'));
    assert.notEqual(v(canary(affinity), 'r1'), v(canary(affinity), 'r2'));
    assert.notEqual(v(canary(affinity), 'r1'), v(canary(affinity, 'u-2'), 'r1'));
    assert.notEqual(splitFor(canary(affinity), { weight: 20, revision: 'r1', intervalMs: 1000 }).sticky?.primary?.value, v(canary(affinity), 'r1'));
  });

  it('carries the A/B matches and the mirror percent', () => {
    const c = canary({ match: [{ headers: { x: { exact: 'y' } } }] });
    assert.deepEqual(splitFor(c, { weight: 10, revision: 'r', intervalMs: 1 }).match, [{ headers: { x: { exact: 'y' } } }]);
    assert.equal(splitFor(canary({}), { weight: 0, revision: 'r', mirror: 30, intervalMs: 1 }).mirror, 30);
    assert.equal(splitFor(canary({}), { weight: 0, revision: 'r', intervalMs: 1 }).mirror, undefined);
  });

  it('the cookie regex escapes the name and value', () => {
    const re = new RegExp(cookieHeaderRegex({ name: 'a.b', value: 'x+y' }));
    assert.ok(re.test('a.b=x+y'));
    assert.ok(!re.test('aXb=x+y'));
    assert.ok(!re.test('a.b=xxy'));
  });
});
