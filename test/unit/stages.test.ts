// Stages: what makes two stages' changes the same, and when a downstream
// stage may start a change its upstream stages promoted (or must wait).

import assert from 'node:assert/strict';
import type { Canary, ChangeRecord } from '../../core/api/types.js';
import { changeFacts, identityOf, upstreamBlock, type UpstreamView } from '../../reconciler/decide/stages.js';

function template(images: string[], env: string, labels: Record<string, string> = { app: 'web' }) {
  return {
    metadata: { labels },
    spec: { containers: images.map((image, i) => ({ name: `c${i}`, image, env: [{ name: 'STAGE', value: env }] })) },
  };
}

const upstream = (status: Canary['status'], where = 'staging/web'): UpstreamView => ({
  dependency: { namespace: 'staging', name: 'web' },
  where,
  canary: { apiVersion: 'canarygate.dev/v1alpha1', kind: 'Canary', metadata: { name: 'web', namespace: 'staging' }, spec: { targetRef: { kind: 'Deployment', name: 'web' }, service: { port: 80 } }, ...(status ? { status } : {}) },
});
const record = (facts: ChangeRecord, at: string): ChangeRecord => ({ ...facts, at });

describe('the identity of a change', () => {
  it('images: two templates that differ only in an env var set by an overlay are the same change; another image is not', () => {
    const staging = changeFacts('rev-staging', template(['web:2', 'sidecar:1'], 'staging'));
    const prod = changeFacts('rev-prod', template(['sidecar:1', 'web:2'], 'prod'));
    assert.notEqual(staging.revision, prod.revision);
    assert.equal(identityOf('images', staging), identityOf('images', prod));
    assert.equal(identityOf(undefined, staging), identityOf('images', staging), 'images is the default');
    assert.notEqual(identityOf('images', changeFacts('r', template(['web:3', 'sidecar:1'], 'prod'))), identityOf('images', prod));
  });

  it('revision: the exact template; label:<key>: the value a pipeline set on the template', () => {
    const a = changeFacts('rev-a', template(['web:2'], 'staging', { app: 'web', 'ci.example.com/build': '1234' }));
    const b = changeFacts('rev-b', template(['web:2'], 'prod', { app: 'web', 'ci.example.com/build': '1234' }));
    assert.notEqual(identityOf('revision', a), identityOf('revision', b));
    assert.equal(identityOf('label:ci.example.com/build', a), 'label:ci.example.com/build=1234');
    assert.equal(identityOf('label:ci.example.com/build', a), identityOf('label:ci.example.com/build', b));
    assert.equal(identityOf('label:missing', a), undefined);
  });

  it('a Service target has no images: its revision is its identity', () => {
    assert.equal(identityOf('images', changeFacts('svc-rev', { type: 'ExternalName', externalName: 'green.example.test' })), 'revision:svc-rev');
  });
});

describe('upstream stages', () => {
  const now = Date.parse('2026-12-02T12:00:00Z');
  const pending = changeFacts('rev-prod', template(['web:2'], 'prod'));
  const sameInStaging = changeFacts('rev-staging', template(['web:2'], 'staging'));
  const older = changeFacts('rev-old', template(['web:1'], 'staging'));

  it('starts once the upstream promoted the same change (by images)', () => {
    assert.equal(upstreamBlock('images', pending, [upstream({ lastPromotion: record(sameInStaging, '2026-12-02T11:00:00Z') })], now), undefined);
  });

  it('waits while the upstream has promoted only an older change, saying for what', () => {
    const b = upstreamBlock('images', pending, [upstream({ lastPromotion: record(older, '2026-12-02T11:00:00Z') })], now);
    assert.equal(b?.reason, 'UpstreamPending');
    assert.match(b?.message ?? '', /waiting for staging\/web to promote images:[0-9a-f]{12}/);
  });

  it('waits out the soak, and says until when', () => {
    const view = upstream({ lastPromotion: record(sameInStaging, '2026-12-02T11:50:00Z') });
    view.dependency.soak = '30m';
    const b = upstreamBlock('images', pending, [view], now);
    assert.equal(b?.reason, 'Soaking');
    assert.equal(b?.untilMs, Date.parse('2026-12-02T12:20:00Z'));
    assert.equal(upstreamBlock('images', pending, [view], Date.parse('2026-12-02T12:20:00Z')), undefined);
  });

  it('a change rolled back upstream blocks downstream until a newer change succeeds there', () => {
    const failed = upstreamBlock('images', pending, [upstream({ lastPromotion: record(older, '2026-12-01T00:00:00Z'), lastFailure: record(sameInStaging, '2026-12-02T11:00:00Z') })], now);
    assert.equal(failed?.reason, 'UpstreamFailed');
    assert.match(failed?.message ?? '', /rolled back in staging\/web/);
  });

  it('an upstream that cannot be read holds: never proceeds on missing information', () => {
    const b = upstreamBlock('images', pending, [{ dependency: { name: 'web', namespace: 'staging' }, where: 'staging/web (cluster of Secret prod/staging)', error: 'connect ECONNREFUSED 127.0.0.1:46443' }], now);
    assert.equal(b?.reason, 'UpstreamUnreachable');
    assert.match(b?.message ?? '', /ECONNREFUSED/);
  });

  it('every stage must have promoted it: the first that has not is named', () => {
    const views = [upstream({ lastPromotion: record(sameInStaging, '2026-12-02T11:00:00Z') }), upstream({ lastPromotion: record(older, '2026-12-02T11:00:00Z') }, 'qa/web')];
    assert.match(upstreamBlock('images', pending, views, now)?.message ?? '', /qa\/web/);
  });

  it('a label identity the pending change lacks is said, not guessed', () => {
    assert.equal(upstreamBlock('label:ci.example.com/build', pending, [upstream({})], now)?.reason, 'NoIdentity');
  });
});
