// Mocha global fixtures for the end-to-end suite: one control plane and one
// webhook for the whole run. A healthy cluster that is already running (a
// developer's `make cluster-up`) is reused and left running; one started here
// is stopped at the end unless KEEP_CLUSTER=1, or CANARY_GATE_E2E_MORE=1 says
// another mocha run follows (`make test-e2e` runs two): the marker file
// .cluster/started-by-e2e passes the ownership on to it.

import { existsSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { clusterDir, clusterDown, clusterUp, kubectl, kubectlOk, repoRoot } from './cluster.js';
import { IMAGE_NAMESPACE_LABEL } from './container.js';
import { OWN_WEBHOOK_NAMESPACE_LABEL } from './flux.js';
import { DEMO_NAMESPACE_LABEL, RECONCILER_USER, reconcilerRbacForUser, startWebhook, type RunningWebhook } from './webhook-process.js';

let webhook: RunningWebhook | undefined;
let startedCluster = false;
const STARTED_MARKER = path.join(clusterDir, 'started-by-e2e');

async function clusterHealthy(): Promise<boolean> {
  const r = await kubectl(['get', '--raw', '/readyz'], { timeoutMs: 5000 }).catch(() => undefined);
  return r?.code === 0;
}

export async function mochaGlobalSetup(): Promise<void> {
  const t0 = Date.now();
  if (!(await clusterHealthy())) {
    startedCluster = true;
  } else if (existsSync(STARTED_MARKER)) {
    startedCluster = true; // started by the run before this one
  }
  await clusterUp();
  if (startedCluster) writeFileSync(STARTED_MARKER, `${process.pid}\n`);
  await kubectlOk(['apply', '--server-side', '--force-conflicts', '--field-manager=canary-gate-e2e', '-k', path.join(repoRoot, 'deploy/crds')]);
  await kubectlOk(['wait', '--for=condition=Established', '--timeout=60s', 'crd', '-l', 'app.kubernetes.io/part-of=canary-gate']);
  // The reconciler's identity in the tests is a client certificate user bound
  // to the same least-privilege roles the install ships (deploy/manifests.ts).
  await kubectlOk(['apply', '--server-side', '--force-conflicts', '--field-manager=canary-gate-e2e', '-f', '-'], {
    input: JSON.stringify({ apiVersion: 'v1', kind: 'List', items: reconcilerRbacForUser(RECONCILER_USER) }),
  });
  webhook = await startWebhook({
    configName: 'canary-gate-e2e',
    logName: 'webhook-e2e',
    namespaceExpressions: [
      { key: DEMO_NAMESPACE_LABEL, operator: 'DoesNotExist' },
      { key: 'canarygate.dev/bench', operator: 'DoesNotExist' },
      { key: IMAGE_NAMESPACE_LABEL, operator: 'DoesNotExist' },
      { key: OWN_WEBHOOK_NAMESPACE_LABEL, operator: 'DoesNotExist' },
    ],
  });
  process.env.CANARY_GATE_E2E_WEBHOOK_PORT = String(webhook.port);
  process.env.CANARY_GATE_E2E_WEBHOOK_METRICS_PORT = String(webhook.metricsPort);
  console.log(`[e2e] control plane and webhook ready in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
}

export async function mochaGlobalTeardown(): Promise<void> {
  await webhook?.stop();
  await kubectl(['delete', 'namespace', '-l', 'canarygate.dev/e2e=true', '--wait=false']).catch(() => undefined);
  if (!startedCluster || process.env.CANARY_GATE_E2E_MORE === '1') return;
  rmSync(STARTED_MARKER, { force: true });
  if (process.env.KEEP_CLUSTER !== '1') await clusterDown();
}
