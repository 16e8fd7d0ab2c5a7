// The webhook on a real API server: registration with a real caBundle,
// namespace and object selectors, interception of kubectl apply, GitOps-style
// server-side dry-run, and scale changes.

import assert from 'node:assert/strict';
import { MANAGED_LABEL, PENDING_REVISION, PENDING_SPEC } from '../../core/contract.js';
import { kubectl, kubectlOk } from './cluster.js';
import { createNamespace, deleteNamespace } from './namespaces.js';
import { deployment, service } from './objects.js';
import { RECONCILER_USER } from './webhook-process.js';
import { waitFor } from './wait.js';

interface Deploy {
  metadata: { annotations?: Record<string, string>; labels?: Record<string, string>; generation: number };
  spec: { replicas: number; template: { spec: { containers: { image: string }[] } } };
  status?: { readyReplicas?: number; updatedReplicas?: number; availableReplicas?: number; observedGeneration?: number };
}

async function getDeployment(ns: string, name: string): Promise<Deploy> {
  return JSON.parse(await kubectlOk(['-n', ns, 'get', 'deployment', name, '-o', 'json'])) as Deploy;
}

function apply(ns: string, obj: unknown, extra: string[] = []) {
  return kubectl(['-n', ns, 'apply', '--server-side', '--field-manager=e2e-user', ...extra, '-f', '-'], { input: JSON.stringify(obj) });
}

async function rolledOut(ns: string, name: string, replicas: number): Promise<boolean> {
  const d = await getDeployment(ns, name);
  return (
    d.status?.observedGeneration === d.metadata.generation &&
    d.status?.updatedReplicas === replicas &&
    d.status?.availableReplicas === replicas &&
    d.status?.readyReplicas === replicas
  );
}

describe('webhook on a real API server', function () {
  let enabled: string;
  let plain: string;

  before(async function () {
    [enabled, plain] = await Promise.all([createNamespace('wh-enabled'), createNamespace('wh-plain', { enabled: false })]);
  });
  after(async function () {
    await Promise.all([deleteNamespace(enabled), deleteNamespace(plain)]);
  });

  it('holds a changed image on a managed Deployment as a pending revision; the same apply goes live in an unlabelled namespace', async function () {
    for (const ns of [enabled, plain]) {
      const r = await apply(ns, deployment('web', { image: 'example.test/web:1.0', managed: true }));
      assert.equal(r.code, 0, r.stderr);
    }
    await Promise.all([enabled, plain].map((ns) => waitFor(`web to roll out in ${ns}`, () => rolledOut(ns, 'web', 2), { namespace: ns })));

    const intercepted = await apply(enabled, deployment('web', { image: 'example.test/web:2.0', managed: true }));
    assert.equal(intercepted.code, 0, intercepted.stderr);
    assert.match(intercepted.stderr, /pending revision/, 'kubectl shows the webhook warning to the user');
    const wentLive = await apply(plain, deployment('web', { image: 'example.test/web:2.0', managed: true }));
    assert.equal(wentLive.code, 0, wentLive.stderr);

    const held = await getDeployment(enabled, 'web');
    assert.equal(held.spec.template.spec.containers[0]?.image, 'example.test/web:1.0', 'live template stays stable');
    const annotations = held.metadata.annotations ?? {};
    assert.match(annotations[PENDING_REVISION] ?? '', /^[0-9a-f]{12}$/);
    const pending = JSON.parse(annotations[PENDING_SPEC] ?? '{}') as { spec: { containers: { image: string }[] } };
    assert.equal(pending.spec.containers[0]?.image, 'example.test/web:2.0');

    const live = await getDeployment(plain, 'web');
    assert.equal(live.spec.template.spec.containers[0]?.image, 'example.test/web:2.0');
    assert.equal(live.metadata.annotations?.[PENDING_REVISION], undefined);
    await waitFor('the unlabelled namespace to roll out 2.0', () => rolledOut(plain, 'web', 2), { namespace: plain });

    // The intercepted Deployment did not roll: its pods still run 1.0.
    const pods = JSON.parse(await kubectlOk(['-n', enabled, 'get', 'pods', '-l', 'app=web', '-o', 'json'])) as {
      items: { spec: { containers: { image: string }[] } }[];
    };
    assert.ok(pods.items.length > 0);
    for (const p of pods.items) assert.equal(p.spec.containers[0]?.image, 'example.test/web:1.0');
  });

  it('shows no drift to a server-side diff of the manifest already held as pending (GitOps sees no fight)', async function () {
    const manifest = deployment('gitops', { image: 'example.test/gitops:1', managed: true });
    assert.equal((await apply(enabled, manifest)).code, 0);
    const changed = deployment('gitops', { image: 'example.test/gitops:2', managed: true });
    assert.equal((await apply(enabled, changed)).code, 0);
    const before = await getDeployment(enabled, 'gitops');

    const diff = await kubectl(['-n', enabled, 'diff', '--server-side', '--field-manager=e2e-user', '-f', '-'], { input: JSON.stringify(changed) });
    assert.equal(diff.code, 0, `kubectl diff reported drift:\n${diff.stdout}${diff.stderr}`);

    // A real re-apply of the same manifest (a GitOps sync loop) changes nothing either.
    assert.equal((await apply(enabled, changed)).code, 0);
    const after = await getDeployment(enabled, 'gitops');
    assert.equal(after.metadata.generation, before.metadata.generation);
    assert.equal(after.metadata.annotations?.[PENDING_REVISION], before.metadata.annotations?.[PENDING_REVISION]);

    // The stable manifest, by contrast, is drift: it would withdraw the pending change.
    const revert = await kubectl(['-n', enabled, 'diff', '--server-side', '--field-manager=e2e-user', '-f', '-'], { input: JSON.stringify(manifest) });
    assert.equal(revert.code, 1, revert.stderr);
    assert.match(revert.stdout, /pending-revision/);
  });

  it('lets a scale-only change through and the Pods follow, keeping the pending revision', async function () {
    assert.equal((await apply(enabled, deployment('scaled', { image: 'example.test/s:1', managed: true, replicas: 1 }))).code, 0);
    await waitFor('scaled to roll out', () => rolledOut(enabled, 'scaled', 1), { namespace: enabled });
    assert.equal((await apply(enabled, deployment('scaled', { image: 'example.test/s:2', managed: true, replicas: 1 }))).code, 0);
    const revision = (await getDeployment(enabled, 'scaled')).metadata.annotations?.[PENDING_REVISION];
    assert.ok(revision);

    await kubectlOk(['-n', enabled, 'scale', 'deployment/scaled', '--replicas=3']);
    await waitFor('3 ready replicas', () => rolledOut(enabled, 'scaled', 3), { namespace: enabled });
    const d = await getDeployment(enabled, 'scaled');
    assert.equal(d.spec.template.spec.containers[0]?.image, 'example.test/s:1');
    assert.equal(d.metadata.annotations?.[PENDING_REVISION], revision);
  });

  it('lets the reconciler identity write the template, and refuses users forging the control annotations', async function () {
    assert.equal((await apply(enabled, deployment('owner', { image: 'example.test/o:1', managed: true }))).code, 0);
    const forged = await kubectl([
      '-n', enabled, 'annotate', 'deployment/owner', `${PENDING_REVISION}=deadbeef0000`, `${PENDING_SPEC}={}`,
    ]);
    assert.equal(forged.code, 0, forged.stderr);
    const afterForgery = await getDeployment(enabled, 'owner');
    assert.equal(afterForgery.metadata.annotations?.[PENDING_REVISION], undefined, 'a user cannot set a pending revision');

    const unlabel = await kubectl(['-n', enabled, 'label', 'deployment/owner', `${MANAGED_LABEL}-`]);
    assert.equal(unlabel.code, 0, unlabel.stderr);
    assert.equal((await getDeployment(enabled, 'owner')).metadata.labels?.[MANAGED_LABEL], 'true', 'a user cannot drop the managed label');

    const promote = await kubectl(
      ['-n', enabled, '--as', RECONCILER_USER, 'set', 'image', 'deployment/owner', 'app=example.test/o:2'],
    );
    assert.equal(promote.code, 0, promote.stderr);
    const promoted = await getDeployment(enabled, 'owner');
    assert.equal(promoted.spec.template.spec.containers[0]?.image, 'example.test/o:2');
  });

  it('intercepts a Service whose selector changes, keeping its cluster IP', async function () {
    const svc = service('front', { selector: { app: 'blue' }, managed: true });
    assert.equal((await apply(enabled, svc)).code, 0);
    const before = JSON.parse(await kubectlOk(['-n', enabled, 'get', 'service', 'front', '-o', 'json'])) as {
      spec: { clusterIP: string; selector: Record<string, string> };
    };
    assert.equal((await apply(enabled, service('front', { selector: { app: 'green' }, managed: true }))).code, 0);
    const after = JSON.parse(await kubectlOk(['-n', enabled, 'get', 'service', 'front', '-o', 'json'])) as {
      metadata: { annotations: Record<string, string> };
      spec: { clusterIP: string; selector: Record<string, string> };
    };
    assert.deepEqual(after.spec.selector, { app: 'blue' });
    assert.equal(after.spec.clusterIP, before.spec.clusterIP);
    const pending = JSON.parse(after.metadata.annotations[PENDING_SPEC] ?? '{}') as { selector: Record<string, string>; clusterIP?: string };
    assert.deepEqual(pending.selector, { app: 'green' });
    assert.equal(pending.clusterIP, undefined, 'server-allocated fields are not part of the pending spec');
  });
});
