// Change freezes and promotion windows on a real control plane: a namespace
// label holds twenty running canaries at once, and a promotion window that
// closes mid-run holds the run until it opens again.

import assert from 'node:assert/strict';
import type { Canary } from '../../core/api/types.js';
import { kubectlOk, getObject as get, applyAsUser as apply } from './cluster.js';
import { createNamespace, deleteNamespace } from './namespaces.js';
import { deployment } from './objects.js';
import { startReconciler, type RunningReconciler } from './reconciler-process.js';
import { waitFor } from './wait.js';

function canary(name: string, spec: Record<string, unknown> = {}) {
  return {
    apiVersion: 'canarygate.dev/v1alpha1',
    kind: 'Canary',
    metadata: { name },
    spec: { targetRef: { apiVersion: 'apps/v1', kind: 'Deployment', name }, service: { port: 80 }, progressDeadlineSeconds: 120, ...spec },
  };
}

const held = (c: Canary | undefined) => c?.status?.conditions?.find((x) => x.type === 'Held');

async function canaries(ns: string): Promise<Canary[]> {
  return (JSON.parse(await kubectlOk(['-n', ns, 'get', 'canaries', '-o', 'json'])) as { items: Canary[] }).items;
}

describe('change freezes and promotion windows on a real control plane', function () {
  this.timeout(300_000);

  describe('a namespace freeze', function () {
    let ns: string;
    let reconciler: RunningReconciler;
    before(async function () {
      ns = await createNamespace('freeze');
      reconciler = await startReconciler({ namespace: ns });
    });
    after(async function () {
      await reconciler?.stop();
      await deleteNamespace(ns);
    });

    it('holds twenty running canaries at once, each saying so; abort still works; lifting it lets them finish', async function () {
      const N = 20;
      const names = Array.from({ length: N }, (_, i) => `svc-${i}`);
      const analysis = { interval: '3s', stepWeights: [10, 20, 30, 40, 50, 60, 70, 80], maxWeight: 80 };
      for (const name of names) {
        await apply(ns, canary(name, { analysis }));
        await apply(ns, deployment(name, { image: 'example.test/app:1', replicas: 1 }));
      }
      await waitFor('all Initialized', async () => (await canaries(ns)).filter((c) => c.status?.phase === 'Initialized').length === N, { namespace: ns, timeoutMs: 120_000 });
      for (const name of names) await apply(ns, deployment(name, { image: 'example.test/app:2', replicas: 1 }));
      await waitFor('all progressing', async () => (await canaries(ns)).filter((c) => c.status?.phase === 'Progressing').length === N, { namespace: ns, timeoutMs: 120_000 });

      const frozenAt = Date.now();
      await kubectlOk(['label', 'namespace', ns, 'canarygate.dev/freeze=true']);
      await waitFor('every Canary Held', async () => (await canaries(ns)).every((c) => held(c)?.status === 'True'), { namespace: ns, timeoutMs: 30_000, intervalMs: 100 });
      const allHeldMs = Date.now() - frozenAt;
      const at = new Map((await canaries(ns)).map((c) => [c.metadata.name, c.status?.canaryWeight]));
      console.log(`      [freeze] ${N} running canaries held ${(allHeldMs / 1000).toFixed(1)} s after the label (one sync each, event-driven)`);
      for (const c of await canaries(ns)) {
        assert.equal(held(c)?.reason, 'Frozen');
        assert.match(held(c)?.message ?? '', /is frozen/);
      }

      // Four intervals later nobody moved, nobody was promoted.
      await new Promise((r) => setTimeout(r, 4000));
      for (const c of await canaries(ns)) {
        assert.equal(c.status?.phase, 'Progressing', `${c.metadata.name} stays Progressing`);
        assert.equal(c.status?.canaryWeight, at.get(c.metadata.name), `${c.metadata.name} keeps its weight`);
        // (A step whose copy is still getting ready says that first; the freeze applies from then on.)
        assert.match(c.status?.message ?? '', /holds at weight|waiting for the canary copy/);
      }

      // An abort during the freeze still rolls back.
      const aborted = names[0] as string;
      await kubectlOk(['-n', ns, 'annotate', 'canary', aborted, `canarygate.dev/abort=${(await get<Canary>(ns, 'canary', aborted))?.status?.pendingRevision}`]);
      await waitFor('the aborted one Failed', async () => (await get<Canary>(ns, 'canary', aborted))?.status?.phase === 'Failed', { namespace: ns, timeoutMs: 30_000 });

      await kubectlOk(['label', 'namespace', ns, 'canarygate.dev/freeze-']);
      await waitFor('the others Succeeded', async () => (await canaries(ns)).filter((c) => c.status?.phase === 'Succeeded').length === N - 1, { namespace: ns, timeoutMs: 180_000 });
      for (const c of await canaries(ns)) assert.equal(held(c)?.status, 'False', `${c.metadata.name}: Held=False once lifted`);
    });
  });

  describe('a promotion window', function () {
    let ns: string;
    let reconciler: RunningReconciler;
    before(async function () {
      ns = await createNamespace('window');
      reconciler = await startReconciler({ namespace: ns });
    });
    after(async function () {
      await reconciler?.stop();
      await deleteNamespace(ns);
    });

    it('a window that closes mid-run holds the run at its weight until the next opening, then it goes on', async function () {
      const name = 'web';
      const always = [{ schedule: '* * * * *', timeZone: 'UTC' }];
      await apply(ns, canary(name, { analysis: { interval: '1s', stepWeights: [10, 20, 30, 40, 50, 60, 70, 80, 90], maxWeight: 90 }, promotion: { windows: always } }));
      await apply(ns, deployment(name, { image: 'example.test/web:1', replicas: 1 }));
      await waitFor('Initialized', async () => (await get<Canary>(ns, 'canary', name))?.status?.phase === 'Initialized', { namespace: ns, timeoutMs: 60_000 });
      await apply(ns, deployment(name, { image: 'example.test/web:2', replicas: 1 }));
      await waitFor('weight 20', async () => ((await get<Canary>(ns, 'canary', name))?.status?.canaryWeight ?? 0) >= 20, { namespace: ns, timeoutMs: 60_000 });

      // The window now opens only at a minute to come (at least 20 s away, in New York's time).
      const now = new Date();
      const ahead = now.getUTCSeconds() > 40 ? 2 : 1;
      const opening = new Date(Math.floor(now.getTime() / 60_000) * 60_000 + ahead * 60_000);
      const nyMinute = Number(new Intl.DateTimeFormat('en-US', { timeZone: 'America/New_York', minute: 'numeric' }).format(opening));
      await apply(ns, canary(name, { analysis: { interval: '1s', stepWeights: [10, 20, 30, 40, 50, 60, 70, 80, 90], maxWeight: 90 }, promotion: { windows: [{ schedule: `${nyMinute} * * * *`, timeZone: 'America/New_York' }] } }));
      const c = await waitFor('Held outside the window', async () => {
        const c = await get<Canary>(ns, 'canary', name);
        return held(c)?.status === 'True' ? c : undefined;
      }, { namespace: ns, timeoutMs: 30_000 });
      assert.equal(held(c)?.reason, 'OutsideWindow');
      assert.match(held(c)?.message ?? '', new RegExp(`next opens at ${opening.toISOString().replace(/\./g, '\\.')}`));
      const weight = (await get<Canary>(ns, 'canary', name))?.status?.canaryWeight;
      await new Promise((r) => setTimeout(r, 3000));
      assert.equal((await get<Canary>(ns, 'canary', name))?.status?.canaryWeight, weight, 'no step while closed');

      // The clock reaches the window: the run goes on by itself.
      await waitFor('resumed at the opening', async () => held(await get<Canary>(ns, 'canary', name))?.status === 'False', { namespace: ns, timeoutMs: 150_000 });
      assert.ok(Date.now() >= opening.getTime(), 'not before the window opened');
      await waitFor('a step after the opening', async () => ((await get<Canary>(ns, 'canary', name))?.status?.canaryWeight ?? 0) > (weight ?? 0) || (await get<Canary>(ns, 'canary', name))?.status?.phase !== 'Progressing', { namespace: ns, timeoutMs: 30_000 });
      // Let it finish whatever the minute: always open again.
      await apply(ns, canary(name, { analysis: { interval: '1s', stepWeights: [10, 20, 30, 40, 50, 60, 70, 80, 90], maxWeight: 90 }, promotion: { windows: always } }));
      await waitFor('Succeeded', async () => (await get<Canary>(ns, 'canary', name))?.status?.phase === 'Succeeded', { namespace: ns, timeoutMs: 60_000 });
    });

    it('an unreadable window holds the run and says what is wrong; the API server refuses one that is not five fields', async function () {
      const name = 'bad-window';
      await apply(ns, canary(name, { promotion: { windows: [{ schedule: '* * * * *', timeZone: 'Atlantis/Central' }] } }));
      await apply(ns, deployment(name, { image: 'example.test/bad:1', replicas: 1 }));
      const c = await waitFor('Held', async () => {
        const c = await get<Canary>(ns, 'canary', name);
        return held(c)?.status === 'True' ? c : undefined;
      }, { namespace: ns, timeoutMs: 60_000 });
      assert.equal(held(c)?.reason, 'InvalidWindow');
      assert.match(held(c)?.message ?? '', /timeZone "Atlantis\/Central" is not an IANA time zone/);
      const refused = await kubectlOk(['-n', ns, 'apply', '-f', '-'], { input: JSON.stringify(canary('six', { promotion: { windows: [{ schedule: '0 * * * * *' }] } })) }).catch((e: Error) => e.message);
      assert.match(refused, /schedule/);
    });
  });
});
