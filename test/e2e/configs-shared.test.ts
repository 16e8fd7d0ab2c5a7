// A ConfigMap two canaried Deployments mount, end to end (real webhook,
// real reconciler, real API server): its pending data runs as a canary in
// both, goes live only when both passed (the first to pass waits and says
// so, in its status and in `canary-gate status`), and is rolled back for both
// when one fails, the live ConfigMap untouched.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { CONFIG_REVISION_ANNOTATION, MANAGED_LABEL, PENDING_REVISION } from '../../core/contract.js';
import type { Canary } from '../../core/api/types.js';
import { applyAsUser as applyJson, cliPath, getObject as get, kubeconfigPath, kubectlPath, run } from './cluster.js';
import { GateServer } from './gate-server.js';
import { createNamespace, deleteNamespace } from './namespaces.js';
import { deployment, service } from './objects.js';
import { startReconciler, type RunningReconciler } from './reconciler-process.js';
import { waitFor } from './wait.js';

interface Deploy {
  spec: { template: { metadata?: { annotations?: Record<string, string> }; spec: { volumes?: Array<{ name: string; configMap?: { name: string } }> } } };
}
interface Config {
  metadata: { annotations?: Record<string, string>; labels?: Record<string, string>; ownerReferences?: Array<{ name: string }> };
  data?: Record<string, string>;
}

/** A Canary with a rollout gate (each step) and a confirm-promotion gate (the last), both served by the test. */
function canary(name: string, gates: GateServer) {
  return {
    apiVersion: 'canarygate.dev/v1alpha1',
    kind: 'Canary',
    metadata: { name },
    spec: {
      targetRef: { apiVersion: 'apps/v1', kind: 'Deployment', name },
      service: { port: 80 },
      progressDeadlineSeconds: 60,
      analysis: {
        interval: '1s',
        threshold: 1,
        stepWeight: 50,
        maxWeight: 50,
        webhooks: [
          { name: 'smoke', type: 'rollout', url: gates.url(`${name}-smoke`) },
          { name: 'judge', type: 'confirm-promotion', url: gates.url(`${name}-promote`) },
        ],
      },
    },
  };
}

function mounting(name: string, config: string) {
  const d = deployment(name, { image: `example.test/${name}:1`, replicas: 1 }) as unknown as Deploy & Record<string, unknown>;
  d.spec.template.spec.volumes = [{ name: 'config', configMap: { name: config } }];
  return d;
}

/** Every value of the ConfigMap's `app.conf` the API server reports from now on, through a watch; `stop()` returns them. */
function watchData(ns: string, name: string): { stop(): string[] } {
  const child = spawn(kubectlPath, ['--kubeconfig', kubeconfigPath, '-n', ns, 'get', 'configmap', name, '--watch', '-o', 'jsonpath={.data.app\\.conf}{"\\n"}'], { stdio: ['ignore', 'pipe', 'ignore'] });
  let out = '';
  child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
  return {
    stop() {
      child.kill();
      return out.split('\n').filter(Boolean);
    },
  };
}

const configMap = (name: string, data: Record<string, string>) => ({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name }, data });

describe('a ConfigMap shared by two canaried Deployments, on a real control plane', function () {
  let ns: string;
  let reconciler: RunningReconciler;
  const gates = new GateServer();

  before(async function () {
    ns = await createNamespace('shared');
    await gates.start();
    reconciler = await startReconciler({ namespace: ns });
  });
  after(async function () {
    await reconciler?.stop();
    await gates.stop();
    await deleteNamespace(ns);
  });

  const canaryOf = (name: string) => get<Canary>(ns, 'canary', name);
  const phaseOf = async (name: string) => (await canaryOf(name))?.status?.phase;
  const cm = (name: string) => get<Config>(ns, 'configmap', name);

  /** Two Deployments `<prefix>-a` and `<prefix>-b` mounting `<prefix>-config`, each with a Canary; waits for adoption. */
  async function setUp(prefix: string): Promise<[string, string, string]> {
    const [a, b, config] = [`${prefix}-a`, `${prefix}-b`, `${prefix}-config`];
    for (const n of [a, b]) await applyJson(ns, canary(n, gates));
    await applyJson(ns, configMap(config, { 'app.conf': 'v1' }));
    for (const n of [a, b]) {
      await applyJson(ns, mounting(n, config));
      await applyJson(ns, service(n, { selector: { app: n } }));
    }
    await waitFor(`${a}, ${b} and ${config} to be adopted`, async () => (await phaseOf(a)) === 'Initialized' && (await phaseOf(b)) === 'Initialized' && (await cm(config))?.metadata.labels?.[MANAGED_LABEL] === 'true', { namespace: ns, timeoutMs: 30_000 });
    return [a, b, config];
  }

  it('one consumer fails: both roll back, the live ConfigMap untouched and its change still pending', async function () {
    const [a, b, config] = await setUp('fail');
    gates.answer(`${b}-smoke`, 500);
    await applyJson(ns, configMap(config, { 'app.conf': 'v2' }));

    await waitFor('both Canaries to fail', async () => (await phaseOf(a)) === 'Failed' && (await phaseOf(b)) === 'Failed', { namespace: ns, timeoutMs: 60_000 });
    const promoted = (await canaryOf(a))?.status?.conditions?.find((c) => c.type === 'Promoted');
    assert.equal(promoted?.reason, 'SharedConfigFailed', `${a} was rolled back because ${b} failed: ${promoted?.message}`);
    assert.match(promoted?.message ?? '', new RegExp(`Canary ${b} \\(Deployment ${b}\\) rolled back the pending data of ConfigMap ${ns}/${config}`));
    assert.equal((await canaryOf(b))?.status?.conditions?.find((c) => c.type === 'Promoted')?.reason, 'FailedChecks');
    const live = await cm(config);
    assert.equal(live?.data?.['app.conf'], 'v1', 'the live ConfigMap keeps its data');
    assert.ok(live?.metadata.annotations?.[PENDING_REVISION], 'the change stays pending: nothing is lost');
    for (const n of [a, b]) assert.equal((await get<Deploy>(ns, 'deployment', n))?.spec.template.metadata?.annotations?.[CONFIG_REVISION_ANNOTATION], undefined, `${n}'s template untouched`);
    await waitFor('the shared ConfigMap copy to be removed', async () => (await cm(`${config}-canary`)) === undefined, { namespace: ns });
  });

  it('both pass: the first waits (status and canary-gate status say for whom), then both are promoted onto the same config revision', async function () {
    const [a, b, config] = await setUp('pass');
    gates.answer(`${b}-promote`, 403); // b's run holds at its confirm-promotion gate
    await applyJson(ns, configMap(config, { 'app.conf': 'v2' }));

    await waitFor(`${a} to pass and wait for ${b}`, async () => (await canaryOf(a))?.status?.conditions?.some((c) => c.type === 'SharedConfig' && c.reason === 'SharedConfigWaiting') ?? false, { namespace: ns, timeoutMs: 60_000 });
    const waiting = await canaryOf(a);
    assert.equal(waiting?.status?.phase, 'WaitingPromotion');
    assert.match(waiting?.status?.message ?? '', new RegExp(`ConfigMap ${ns}/${config} is shared with Canary ${b} \\(Deployment ${b}\\), still running`));
    const status = await run(process.execPath, [cliPath, 'status', '-n', ns], { env: { ...process.env, KUBECONFIG: kubeconfigPath } });
    assert.equal(status.code, 0, status.stderr);
    assert.match(status.stdout, new RegExp(`${ns}/${a} waits: ConfigMap ${ns}/${config} is shared with Canary ${b}`));
    // While a waits, nothing is live: both copies run the pending data from one shared copy.
    await new Promise((r) => setTimeout(r, 2500));
    assert.equal(await phaseOf(a), 'WaitingPromotion');
    assert.equal((await cm(config))?.data?.['app.conf'], 'v1', 'the live ConfigMap keeps its data while a consumer has not passed');
    const copy = await cm(`${config}-canary`);
    assert.equal(copy?.data?.['app.conf'], 'v2');
    assert.deepEqual(copy?.metadata.ownerReferences?.map((o) => o.name).sort(), [a, b], 'the copy belongs to both runs');
    for (const n of [a, b]) assert.equal((await get<Deploy>(ns, 'deployment', `${n}-canary`))?.spec.template.spec.volumes?.[0]?.configMap?.name, `${config}-canary`);

    const watch = watchData(ns, config);
    await new Promise((r) => setTimeout(r, 500)); // the watch's first line: the data now
    gates.answer(`${b}-promote`, 200);
    await waitFor('both Canaries to succeed', async () => (await phaseOf(a)) === 'Succeeded' && (await phaseOf(b)) === 'Succeeded', { namespace: ns, timeoutMs: 60_000 });
    await new Promise((r) => setTimeout(r, 500));
    const seen = watch.stop();
    const changes = seen.filter((v, i) => i === 0 || v !== seen[i - 1]);
    assert.deepEqual(changes, ['v1', 'v2'], `the live data changed once, from v1 to v2 (watch saw ${seen.join(', ')})`);
    const live = await cm(config);
    assert.equal(live?.data?.['app.conf'], 'v2', 'the shared data is live');
    assert.equal(live?.metadata.annotations?.[PENDING_REVISION], undefined);
    const revisions = await Promise.all([a, b].map(async (n) => (await get<Deploy>(ns, 'deployment', n))?.spec.template.metadata?.annotations?.[CONFIG_REVISION_ANNOTATION]));
    assert.ok(revisions[0], `${a}'s template names the promoted config revision`);
    assert.equal(revisions[1], revisions[0], 'both primaries roll onto the same config revision');
    assert.equal((await canaryOf(a))?.status?.lastPromotedRevision, (await canaryOf(a))?.status?.lastAppliedRevision);
    await waitFor('the shared copy to be removed', async () => (await cm(`${config}-canary`)) === undefined, { namespace: ns });
  });
});
