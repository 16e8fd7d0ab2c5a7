// The install path, proven: `canary-gate webhook` and `canary-gate reconciler`
// run as containers from the image `make image` built, as user 65532 on a
// read-only root filesystem, against the real control plane. The webhook has
// its own MutatingWebhookConfiguration for one namespace of its own (the
// suite's global webhook skips namespaces with IMAGE_NAMESPACE_LABEL), and the
// reconciler runs with its own identity and the shipped least-privilege RBAC.

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { chmodSync, chownSync, copyFileSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import https from 'node:https';
import path from 'node:path';
import { generateCertificates } from '../../certs/generate.js';
import { MANAGED_LABEL, NAMESPACE_ENABLED_LABEL, PENDING_REVISION } from '../../core/contract.js';
import type { Canary } from '../../core/api/types.js';
import { IMAGE, webhookConfiguration } from '../../deploy/manifests.js';
import { applyAsUser as applyJson, clusterDir, getObject as get, kubectl, kubectlOk } from './cluster.js';
import { Container, IMAGE_NAMESPACE_LABEL, imageTag, podman, requireImage } from './container.js';
import { GateServer } from './gate-server.js';
import { deleteNamespace } from './namespaces.js';
import { deployment, service } from './objects.js';
import { waitFor } from './wait.js';
import { freePort, RECONCILER_USER } from './webhook-process.js';

interface Deploy {
  metadata: { annotations?: Record<string, string>; labels?: Record<string, string> };
  spec: { replicas?: number; template: { spec: { containers: { image: string }[] } } };
}

const liveImage = (d: Deploy | undefined) => d?.spec.template.spec.containers[0]?.image;
const TLS_MOUNT = '/etc/canary-gate/tls';
const KUBE_MOUNT = '/etc/canary-gate/kube';

/** Files the container user (65532) reads, as the manifests' Secret volume gives them (fsGroup 65532). */
function ownForContainer(dir: string, files: string[]): void {
  if (process.getuid?.() === 0) {
    for (const p of [dir, ...files]) chownSync(p, 65532, 65532);
  } else {
    // Not root (rootless podman maps users differently): readable by all, test material only.
    chmodSync(dir, 0o755);
    for (const f of files) chmodSync(f, 0o644);
  }
}

function httpsStatus(url: string, ca: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = https.get(url, { ca, timeout: 2000 }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on('error', reject);
    req.on('timeout', () => req.destroy(new Error('timeout')));
  });
}

async function waitReady(c: Container, what: string, probe: () => Promise<boolean>): Promise<void> {
  await waitFor(what, async () => {
    if (!(await c.running())) throw new Error(`container ${c.name} is not running:\n${(await c.logs()).slice(-3000)}`);
    return probe();
  }, { timeoutMs: 60_000, intervalMs: 300 });
}

describe('the built image on a real control plane', function () {
  const tag = imageTag();
  const ns = `image-${randomBytes(3).toString('hex')}`;
  const work = path.join(clusterDir, `image-e2e-${ns}`);
  const configName = `canary-gate-e2e-${ns}`;
  const gates = new GateServer();
  let webhook: Container | undefined;
  let reconciler: Container | undefined;
  let webhookMetricsPort = 0;

  before(async function () {
    await requireImage(tag);
    mkdirSync(path.join(clusterDir, 'logs'), { recursive: true });

    // The webhook's serving certificate for 127.0.0.1, mounted read-only.
    const tlsDir = path.join(work, 'tls');
    mkdirSync(tlsDir, { recursive: true, mode: 0o700 });
    const bundle = generateCertificates({ dnsNames: ['localhost'], ipAddresses: ['127.0.0.1'] });
    writeFileSync(path.join(tlsDir, 'tls.crt'), bundle.cert);
    writeFileSync(path.join(tlsDir, 'tls.key'), bundle.key, { mode: 0o600 });
    ownForContainer(tlsDir, ['tls.crt', 'tls.key'].map((f) => path.join(tlsDir, f)));

    // The reconciler's identity (client certificate canary-gate-reconciler):
    // the cluster's reconciler kubeconfig with its files at the mount path.
    const kubeDir = path.join(work, 'kube');
    mkdirSync(kubeDir, { recursive: true, mode: 0o700 });
    const pki = path.join(clusterDir, 'pki');
    const files = ['ca.crt', 'reconciler.crt', 'reconciler.key'];
    for (const f of files) copyFileSync(path.join(pki, f), path.join(kubeDir, f));
    const source = readFileSync(path.join(clusterDir, 'reconciler.kubeconfig'), 'utf8');
    const kubeconfig = source.split(`${pki}/`).join(`${KUBE_MOUNT}/`);
    assert.equal(kubeconfig.split(KUBE_MOUNT).length - 1, files.length, 'the reconciler kubeconfig names its three files under .cluster/pki');
    writeFileSync(path.join(kubeDir, 'kubeconfig'), kubeconfig, { mode: 0o600 });
    ownForContainer(kubeDir, [...files, 'kubeconfig'].map((f) => path.join(kubeDir, f)));

    await kubectlOk(['create', '-f', '-'], {
      input: JSON.stringify({
        apiVersion: 'v1',
        kind: 'Namespace',
        metadata: { name: ns, labels: { 'canarygate.dev/e2e': 'true', [NAMESPACE_ENABLED_LABEL]: 'true', [IMAGE_NAMESPACE_LABEL]: ns } },
      }),
    });

    const port = await freePort();
    webhookMetricsPort = await freePort();
    webhook = new Container(`canary-gate-e2e-webhook-${ns}`, tag, [
      'webhook',
      '--bind-address', '127.0.0.1',
      '--port', String(port),
      '--metrics-port', String(webhookMetricsPort),
      '--tls-cert', `${TLS_MOUNT}/tls.crt`,
      '--tls-key', `${TLS_MOUNT}/tls.key`,
      '--reconciler-user', RECONCILER_USER,
    ], [{ source: tlsDir, target: TLS_MOUNT }]);
    await webhook.start();
    await waitReady(webhook, 'the webhook container to answer /readyz over TLS', async () => (await httpsStatus(`https://127.0.0.1:${port}/readyz`, bundle.caCert)) === 200);

    const config = webhookConfiguration({
      name: configName,
      url: `https://127.0.0.1:${port}/mutate`,
      caBundle: bundle.caCert,
      failurePolicy: 'Fail',
      reconcilerUser: RECONCILER_USER,
    });
    for (const hook of config.webhooks ?? []) {
      hook.namespaceSelector?.matchExpressions?.push({ key: IMAGE_NAMESPACE_LABEL, operator: 'In', values: [ns] });
    }
    await kubectlOk(['apply', '--server-side', '--field-manager=canary-gate-e2e', '-f', '-'], { input: JSON.stringify(config) });

    const httpPort = await freePort();
    reconciler = new Container(`canary-gate-e2e-reconciler-${ns}`, tag, [
      'reconciler',
      '--kubeconfig', `${KUBE_MOUNT}/kubeconfig`,
      '--namespace', ns,
      '--identity', `image-${ns}`,
      '--http-port', String(httpPort),
      '--bind-address', '127.0.0.1',
      '--log-level', 'debug',
    ], [{ source: kubeDir, target: KUBE_MOUNT }]);
    await reconciler.start();
    await waitReady(reconciler, 'the reconciler container to be ready', async () => (await fetch(`http://127.0.0.1:${httpPort}/readyz`).catch(() => undefined))?.status === 200);
    await gates.start();
  });

  after(async function () {
    // Runs even when before() failed half-way: remove whatever was made.
    await kubectl(['delete', 'mutatingwebhookconfiguration', configName, '--ignore-not-found', '--wait=false']).catch(() => undefined);
    await webhook?.remove().catch(() => undefined);
    await reconciler?.remove().catch(() => undefined);
    await gates.stop();
    await deleteNamespace(ns).catch(() => undefined);
    rmSync(work, { recursive: true, force: true });
  });

  async function phaseOf(name: string): Promise<string | undefined> {
    return (await get<Canary>(ns, 'canary', name))?.status?.phase;
  }

  async function setUp(name: string, analysis: Record<string, unknown>): Promise<void> {
    await applyJson(ns, {
      apiVersion: 'canarygate.dev/v1alpha1',
      kind: 'Canary',
      metadata: { name },
      spec: { targetRef: { apiVersion: 'apps/v1', kind: 'Deployment', name }, service: { port: 80 }, progressDeadlineSeconds: 60, analysis },
    });
    await applyJson(ns, deployment(name, { image: `example.test/${name}:1`, replicas: 2 }));
    await applyJson(ns, service(name, { selector: { app: name } }));
    await waitFor(`${name} to be adopted by the reconciler container`, async () => {
      const d = await get<Deploy>(ns, 'deployment', name);
      return d?.metadata.labels?.[MANAGED_LABEL] === 'true' && (await phaseOf(name)) === 'Initialized';
    }, { namespace: ns, timeoutMs: 30_000 });
  }

  /** kubectl apply of a new image, as a user does; returns what kubectl printed on stderr. */
  async function applyNewImage(name: string, image: string): Promise<string> {
    const r = await kubectl(['-n', ns, 'apply', '--server-side', '--field-manager=e2e-user', '-f', '-'], { input: JSON.stringify(deployment(name, { image, replicas: 2 })) });
    assert.equal(r.code, 0, r.stderr);
    return r.stderr;
  }

  async function intercepted(): Promise<number> {
    const text = await (await fetch(`http://127.0.0.1:${webhookMetricsPort}/metrics`)).text();
    const line = text.split('\n').find((l) => l.startsWith('canary_gate_webhook_requests_total{decision="intercepted"}'));
    return Number(line?.split(' ').pop() ?? NaN);
  }

  it('is the image the manifests install, with the non-root user and entry point they rely on', async function () {
    assert.equal(tag, IMAGE, 'deploy/ references the tag make image builds');
    // runAsNonRoot needs a numeric USER in the image; the manifests give only args.
    const r = await podman(['image', 'inspect', '--format', '{{.Config.User}}|{{json .Config.Entrypoint}}', tag]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.trim(), '65532:65532|["node","dist/core/cli.js"]');
  });

  it('promotes a new image: the webhook container holds it, the reconciler container rolls it out', async function () {
    const name = 'promote';
    await setUp(name, { interval: '1s', threshold: 2, stepWeight: 25, maxWeight: 50, webhooks: [{ name: 'load', type: 'rollout', url: gates.url('promote') }] });
    const before = await intercepted();
    const warning = await applyNewImage(name, 'example.test/promote:2');
    assert.match(warning, /canary-gate: change held as pending revision [0-9a-f]{12}/);
    // At least once: the API server re-runs admission when its write of a patch meets a concurrent status update.
    assert.ok((await intercepted()) > before, 'the webhook in the container made the decision');
    assert.equal(liveImage(await get<Deploy>(ns, 'deployment', name)), 'example.test/promote:1', 'the live Deployment stays stable while the canary runs');

    await waitFor('the canary copy to run the new image', async () => liveImage(await get<Deploy>(ns, 'deployment', `${name}-canary`)) === 'example.test/promote:2', { namespace: ns, timeoutMs: 30_000 });
    await waitFor('Succeeded', async () => (await phaseOf(name)) === 'Succeeded', { namespace: ns, timeoutMs: 90_000 });
    const live = await get<Deploy>(ns, 'deployment', name);
    assert.equal(liveImage(live), 'example.test/promote:2');
    assert.equal(live?.metadata.annotations?.[PENDING_REVISION], undefined);
    assert.ok(gates.callsTo('promote').length >= 2, 'the reconciler container called the rollout gate at each step');
    await waitFor('the canary copy to be scaled to zero', async () => (await get<Deploy>(ns, 'deployment', `${name}-canary`))?.spec.replicas === 0, { namespace: ns });
  });

  it('rolls back when the gate keeps failing: the live Deployment never changes', async function () {
    const name = 'rollback';
    gates.answer('rollback', 500);
    await setUp(name, { interval: '1s', threshold: 2, stepWeight: 50, maxWeight: 50, webhooks: [{ name: 'smoke', type: 'rollout', url: gates.url('rollback') }] });
    await applyNewImage(name, 'example.test/rollback:2');
    await waitFor('Failed', async () => (await phaseOf(name)) === 'Failed', { namespace: ns, timeoutMs: 60_000 });
    const live = await get<Deploy>(ns, 'deployment', name);
    assert.equal(liveImage(live), 'example.test/rollback:1');
    assert.ok(live?.metadata.annotations?.[PENDING_REVISION], 'the change is still pending: nothing is lost');
    assert.ok(gates.callsTo('rollback').length >= 2, 'the gate was asked until the threshold was reached');
    await waitFor('the canary copy to be scaled to zero', async () => (await get<Deploy>(ns, 'deployment', `${name}-canary`))?.spec.replicas === 0, { namespace: ns });
  });

  it('both containers stop on SIGTERM with exit code 0 within the grace period (node runs as PID 1)', async function () {
    assert.ok(webhook && reconciler);
    // A process that ignored SIGTERM would be killed after the grace period: exit code 137.
    const [w, r] = await Promise.all([webhook.stop(15), reconciler.stop(15)]);
    assert.equal(w, 0, `webhook exit code ${w}:\n${(await webhook.logs()).slice(-2000)}`);
    assert.equal(r, 0, `reconciler exit code ${r}:\n${(await reconciler.logs()).slice(-2000)}`);
  });
});
