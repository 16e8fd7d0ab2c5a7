// Runs `canary-gate webhook` as a real local process with a real certificate,
// and registers it with the API server through a MutatingWebhookConfiguration
// whose clientConfig.url points at it.

import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, openSync, writeFileSync } from 'node:fs';
import https from 'node:https';
import net from 'node:net';
import path from 'node:path';
import { generateCertificates } from '../../certs/generate.js';
import { reconcilerClusterRole, reconcilerLeaderElectionRole, SYSTEM_NAMESPACE, webhookConfiguration } from '../../deploy/manifests.js';
import { cliPath, clusterDir as suiteClusterDir, kubectlOk as suiteKubectlOk } from './cluster.js';
import { waitFor } from './wait.js';

/** The identity the tests (and the local demo) use for the reconciler. */
export const RECONCILER_USER = 'canary-gate-reconciler';

export interface RunningWebhook {
  port: number;
  metricsPort: number;
  caCert: string;
  configName: string;
  stop(): Promise<void>;
  /** SIGKILL, the registration left in place: the API server keeps calling a webhook that is gone. */
  kill(): Promise<void>;
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as net.AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}

/** Namespaces the demo runs in carry this label; the test suite's webhook leaves them to the demo's. */
export const DEMO_NAMESPACE_LABEL = 'canarygate.dev/demo';

export async function startWebhook(
  opts: {
    configName?: string;
    failurePolicy?: 'Fail' | 'Ignore';
    logName?: string;
    /** Extra namespaceSelector expressions, so two local webhooks never handle the same namespace. */
    namespaceExpressions?: { key: string; operator: string; values?: string[] }[];
    /** Another local control plane to register with: its folder and a kubectl for it (default: the suite's). */
    cluster?: { dir: string; kubectl: (args: string[], opts?: { input?: string }) => Promise<string> };
  } = {},
): Promise<RunningWebhook> {
  const configName = opts.configName ?? 'canary-gate';
  const clusterDir = opts.cluster?.dir ?? suiteClusterDir;
  const kubectlOk = opts.cluster?.kubectl ?? suiteKubectlOk;
  const tlsDir = path.join(clusterDir, `webhook-tls-${configName}`);
  mkdirSync(tlsDir, { recursive: true });
  mkdirSync(path.join(clusterDir, 'logs'), { recursive: true });
  const bundle = generateCertificates({ dnsNames: ['localhost'], ipAddresses: ['127.0.0.1'] });
  writeFileSync(path.join(tlsDir, 'tls.crt'), bundle.cert);
  writeFileSync(path.join(tlsDir, 'tls.key'), bundle.key, { mode: 0o600 });
  writeFileSync(path.join(tlsDir, 'ca.crt'), bundle.caCert);

  const port = await freePort();
  const metricsPort = await freePort();
  const logFd = openSync(path.join(clusterDir, 'logs', `${opts.logName ?? 'webhook'}.log`), 'a');
  const child: ChildProcess = spawn(
    process.execPath,
    [
      cliPath, 'webhook',
      '--bind-address', '127.0.0.1',
      '--port', String(port),
      '--metrics-port', String(metricsPort),
      '--tls-cert', path.join(tlsDir, 'tls.crt'),
      '--tls-key', path.join(tlsDir, 'tls.key'),
      '--reconciler-user', RECONCILER_USER,
    ],
    { stdio: ['ignore', logFd, logFd] },
  );
  let exited = false;
  child.on('exit', () => (exited = true));

  await waitFor('the webhook to answer /readyz over TLS', async () => {
    if (exited) throw new Error('the webhook process exited; see .cluster/logs');
    return (await httpsStatus(`https://127.0.0.1:${port}/readyz`, bundle.caCert)) === 200;
  }, { timeoutMs: 20_000 });

  const config = webhookConfiguration({
    name: configName,
    url: `https://127.0.0.1:${port}/mutate`,
    caBundle: Buffer.from(bundle.caCert).toString('base64'),
    failurePolicy: opts.failurePolicy ?? 'Fail',
    reconcilerUser: RECONCILER_USER,
  });
  for (const hook of config.webhooks ?? []) {
    hook.namespaceSelector?.matchExpressions?.push(...(opts.namespaceExpressions ?? []));
  }
  await kubectlOk(['apply', '--server-side', '--force-conflicts', '--field-manager=canary-gate-e2e', '-f', '-'], { input: JSON.stringify(config) });

  return {
    port,
    metricsPort,
    caCert: bundle.caCert,
    configName,
    async stop() {
      await kubectlOk(['delete', 'mutatingwebhookconfiguration', configName, '--ignore-not-found', '--wait=false']).catch(() => undefined);
      if (!exited) {
        const done = new Promise((r) => child.once('exit', r));
        child.kill('SIGTERM');
        await Promise.race([done, new Promise((r) => setTimeout(r, 5000))]);
        if (!exited) child.kill('SIGKILL');
      }
    },
    async kill() {
      if (exited) return;
      const done = new Promise((r) => child.once('exit', r));
      child.kill('SIGKILL');
      await done;
    },
  };
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

/** The shipped reconciler roles, bound to a plain user instead of the in-cluster ServiceAccount. */
export function reconcilerRbacForUser(user: string): object[] {
  const clusterRole = reconcilerClusterRole();
  const leaseRole = reconcilerLeaderElectionRole();
  const subject = { apiGroup: 'rbac.authorization.k8s.io', kind: 'User', name: user };
  return [
    { apiVersion: 'v1', kind: 'Namespace', metadata: { name: SYSTEM_NAMESPACE } },
    clusterRole,
    leaseRole,
    {
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'ClusterRoleBinding',
      metadata: { name: 'canary-gate-e2e-reconciler' },
      roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: clusterRole.metadata?.name },
      subjects: [subject],
    },
    {
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'RoleBinding',
      metadata: { name: 'canary-gate-e2e-reconciler-leader-election', namespace: SYSTEM_NAMESPACE },
      roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: leaseRole.metadata?.name },
      subjects: [subject],
    },
  ];
}
