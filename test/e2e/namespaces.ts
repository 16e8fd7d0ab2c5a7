// Throwaway namespaces, so that test files can run in parallel.

import { randomBytes } from 'node:crypto';
import { IN_USE_FINALIZER, NAMESPACE_ENABLED_LABEL } from '../../core/contract.js';
import { kubectl, kubectlOk } from './cluster.js';

/** Creates a namespace `<prefix>-<random>`; opted in to canary-gate unless enabled is false. */
export async function createNamespace(prefix: string, opts: { enabled?: boolean } = {}): Promise<string> {
  const name = `${prefix}-${randomBytes(3).toString('hex')}`;
  const labels: Record<string, string> = { 'canarygate.dev/e2e': 'true' };
  if (opts.enabled !== false) labels[NAMESPACE_ENABLED_LABEL] = 'true';
  await kubectlOk(['create', '-f', '-'], {
    input: JSON.stringify({ apiVersion: 'v1', kind: 'Namespace', metadata: { name, labels } }),
  });
  return name;
}

/**
 * Deletes a test namespace. Its reconciler is usually stopped already, so
 * nothing would remove the Canaries' finalizers: drop them here, or the
 * namespace would stay Terminating.
 */
export async function deleteNamespace(name: string): Promise<void> {
  await kubectl(['delete', 'namespace', name, '--wait=false', '--ignore-not-found']);
  const list = await kubectl(['-n', name, 'get', 'canaries.canarygate.dev', '-o', 'name']);
  for (const canary of list.stdout.split('\n').filter(Boolean)) {
    await kubectl(['-n', name, 'patch', canary, '--type=merge', '-p', '{"metadata":{"finalizers":null}}']);
  }
  // Likewise the reconciler's in-use finalizer on the configs its live templates mount (it removes it itself while it runs).
  for (const kind of ['configmaps', 'secrets']) {
    const held = await kubectl(['-n', name, 'get', kind, '-o', `jsonpath={range .items[?(@.metadata.finalizers)]}{.metadata.name}{"\\n"}{end}`]);
    for (const config of held.stdout.split('\n').filter(Boolean)) {
      await kubectl(['-n', name, 'patch', kind, config, '--type=json', '-p', JSON.stringify([{ op: 'test', path: '/metadata/finalizers', value: [IN_USE_FINALIZER] }, { op: 'remove', path: '/metadata/finalizers' }])]);
    }
  }
}
