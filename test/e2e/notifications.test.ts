// Notifications end to end: the Kubernetes Events, alerts, `event` webhooks
// and post-rollout gates of a step go out exactly once, even when an effect
// of the same sync fails. Here the API server refuses the canary copy (its
// pod template is invalid), so every sync of the run throws after its status
// write; the start and the rollback must each be told once, about the
// revision they concern.

import assert from 'node:assert/strict';
import { PENDING_REVISION } from '../../core/contract.js';
import type { Canary } from '../../core/api/types.js';
import { kubectlOk, getObject as get, applyAsUser as apply } from './cluster.js';
import { GateServer, type GateCall } from './gate-server.js';
import { createNamespace, deleteNamespace } from './namespaces.js';
import { deployment, service } from './objects.js';
import { startReconciler, type RunningReconciler } from './reconciler-process.js';
import { sleep, waitFor } from './wait.js';

describe('notifications when an effect fails', function () {
  let ns: string;
  let reconciler: RunningReconciler;
  const receiver = new GateServer();

  before(async function () {
    ns = await createNamespace('notify');
    await receiver.start();
    await apply(ns, { apiVersion: 'canarygate.dev/v1alpha1', kind: 'AlertProvider', metadata: { name: 'ops' }, spec: { type: 'webhook', address: receiver.url('alerts') } });
    reconciler = await startReconciler({ namespace: ns });
  });
  after(async function () {
    await reconciler?.stop();
    await receiver.stop();
    await deleteNamespace(ns);
  });

  it('tells the start and the rollback of a revision exactly once, naming that revision, while the API server refuses its canary copy', async function () {
    const name = 'refused';
    await apply(ns, {
      apiVersion: 'canarygate.dev/v1alpha1',
      kind: 'Canary',
      metadata: { name },
      spec: {
        targetRef: { apiVersion: 'apps/v1', kind: 'Deployment', name },
        service: { port: 80 },
        progressDeadlineSeconds: 3,
        analysis: {
          interval: '1s',
          webhooks: [
            { name: 'events', type: 'event', url: receiver.url('events') },
            { name: 'post', type: 'post-rollout', url: receiver.url('post') },
          ],
          alerts: [{ name: 'ops', severity: 'info', providerRef: { name: 'ops' } }],
        },
      },
    });
    await apply(ns, deployment(name, { image: 'example.test/refused:1' }));
    await apply(ns, service(name, { selector: { app: name } }));
    await waitFor('Initialized', async () => (await get<Canary>(ns, 'canary', name))?.status?.phase === 'Initialized', { namespace: ns, timeoutMs: 30_000 });
    const stable = (await get<Canary>(ns, 'canary', name))?.status?.lastPromotedRevision;

    // The webhook holds the change; the copy made from it is invalid (a
    // container name must be a DNS label), so creating it fails with 422.
    const bad = deployment(name, { image: 'example.test/refused:2' });
    bad.spec.template.spec.containers[0]!.name = 'Not_A_DNS_Label';
    await apply(ns, bad);
    const revision = (await get<{ metadata: { annotations?: Record<string, string> } }>(ns, 'deployment', name))?.metadata.annotations?.[PENDING_REVISION];
    assert.ok(revision && revision !== stable, 'the change is held as a pending revision');

    await waitFor('Failed', async () => (await get<Canary>(ns, 'canary', name))?.status?.phase === 'Failed', { namespace: ns, timeoutMs: 60_000 });
    const refusals = await kubectlOk(['-n', ns, 'get', 'events', '--field-selector', `involvedObject.name=${name},involvedObject.kind=Canary,reason=Invalid`, '-o', 'jsonpath={.items[*].message}']);
    assert.match(refusals, /ensure-canary-copy was refused/, 'the effect did fail');
    // Later syncs (retries of the failed effect included) must not tell it again.
    await sleep(4000);

    const about = (c: GateCall) => `${String(c.body.reason)}@${String(c.body.revision)}`;
    const alerts = receiver.callsTo('alerts').map(about);
    const events = receiver.callsTo('events').map(about);
    assert.deepEqual(alerts.filter((a) => a.startsWith('Started@')), [`Started@${revision}`], `alerts: ${alerts.join(' ')}`);
    assert.deepEqual(alerts.filter((a) => a.startsWith('RolledBack@')), [`RolledBack@${revision}`], `alerts: ${alerts.join(' ')}`);
    assert.deepEqual(events.filter((a) => a.startsWith('Started@')), [`Started@${revision}`], `event webhooks: ${events.join(' ')}`);
    assert.deepEqual(events.filter((a) => a.startsWith('RolledBack@')), [`RolledBack@${revision}`], `event webhooks: ${events.join(' ')}`);
    const rolledBack = receiver.callsTo('alerts').find((c) => c.body.reason === 'RolledBack');
    assert.match(String(rolledBack?.body.message), /^rolled back: progress deadline exceeded: /);

    const post = receiver.callsTo('post');
    assert.deepEqual(post.map((c) => [c.body.type, c.body.phase, c.body.revision]), [['post-rollout', 'Failed', revision]], 'one post-rollout call, about the failed revision');
    assert.match(await reconciler.metrics(), /^canary_gate_gate_results_total\{type="post-rollout",result="pass"\} 1$/m, 'counted in the reconciler metrics');

    const recorded = await kubectlOk(['-n', ns, 'get', 'events', '--field-selector', `involvedObject.name=${name},involvedObject.kind=Canary`, '-o', 'jsonpath={range .items[*]}{.reason}={.count}{"\\n"}{end}']);
    const counts = Object.fromEntries(recorded.split('\n').filter(Boolean).map((l) => l.split('=') as [string, string]));
    assert.equal(counts.Started, '1', recorded);
    assert.equal(counts.RolledBack, '1', recorded);
  });
});
