// The other consumers of the pending configs a run uses, as the informer
// caches show them (decide/shared-configs.ts decides on it): the managed
// Deployments of the namespace whose live or pending template references
// the config, their Canaries, and whether each Canary passed or rolled back
// a revision with the same pending data. Reads caches only.

import type * as k8s from '@kubernetes/client-node';
import { MANAGED_LABEL, TRUE } from '../../core/contract.js';
import type { Canary } from '../../core/api/types.js';
import { consumerState, waitsForSharedConfig, type SharedConfig, type SharedConsumer } from '../decide/shared-configs.js';
import type { Caches, ConfigCaches } from './caches.js';
import { configKey, configReferences, configState, type ConfigState } from './configs.js';
import { pendingChange } from './pending.js';

/**
 * True while the primary's template may lag the live configs: a promotion
 * is being written, or the run waits for another consumer of a shared
 * config, which may write the shared data first (observe/configs.ts).
 */
export function configsMayLead(status: Canary['status']): boolean {
  return status?.phase === 'Promoting' || waitsForSharedConfig(status);
}

const refsMemo = new WeakMap<object, Set<string>>();

/** The configKeys a Deployment's live and pending templates reference, once per object version. */
function referencedBy(d: k8s.V1Deployment): Set<string> {
  let keys = refsMemo.get(d);
  if (keys) return keys;
  const pending = pendingChange(d);
  const templates = [d.spec?.template as Record<string, unknown> | undefined, pending && !('error' in pending) ? pending.spec : undefined];
  keys = new Set(templates.flatMap((t) => configReferences(t).map(configKey)));
  refsMemo.set(d, keys);
  return keys;
}

/** The combined revision a Deployment's desired state has now, as its own sync would compute it. */
function desiredRevision(d: k8s.V1Deployment, canary: Canary, configs: ConfigCaches, namespace: string): string | undefined {
  const pending = pendingChange(d);
  const own = pending && !('error' in pending) ? pending : undefined;
  const state: ConfigState | undefined = configState({
    liveTemplate: (d.spec?.template ?? {}) as Record<string, unknown>,
    ...(own ? { pendingTemplate: own.spec } : {}),
    get: (k, n) => configs.managed[k].get(namespace, n),
    lookup: (k, n) => configs.lookup(k, namespace, n),
    promoting: configsMayLead(canary.status),
  });
  return state?.combined ? state.desiredRevision : own?.revision;
}

/**
 * For each config whose pending data this run uses (`state.changed`), the
 * other managed Deployments that reference it and where their Canaries
 * stand. Configs no other Deployment references are left out.
 */
export function sharedConfigs(canary: Canary, deployment: string, state: ConfigState, caches: Pick<Caches, 'deployments' | 'canaries' | 'configs'>): SharedConfig[] {
  const namespace = canary.metadata.namespace ?? '';
  const configs = caches.configs;
  if (!configs || state.changed.size === 0) return [];
  const others = caches.deployments.list(namespace).filter((d) => d.metadata?.name !== deployment);
  const canaries = caches.canaries.list(namespace).filter((c) => c.spec?.targetRef?.kind === 'Deployment' && !c.metadata.deletionTimestamp);
  const out: SharedConfig[] = [];
  for (const key of state.changed) {
    const view = state.views.get(key);
    if (!view?.pending) continue;
    const consumers: SharedConsumer[] = [];
    for (const d of others) {
      if (!referencedBy(d).has(key)) continue;
      const name = d.metadata?.name ?? '';
      const owner = canaries.find((c) => c.spec.targetRef.name === name);
      if (!owner) {
        // An unmanaged Deployment is not canary-gate's to hold for (ADR 0009); a managed one without a Canary is refused.
        if (d.metadata?.labels?.[MANAGED_LABEL] === TRUE) consumers.push({ deployment: name, state: 'no-canary' });
        continue;
      }
      consumers.push({ deployment: name, canary: owner.metadata.name ?? '', state: consumerState(owner.status, desiredRevision(d, owner, configs, namespace)) });
    }
    if (consumers.length > 0) out.push({ config: `${view.ref.kind} ${namespace}/${view.ref.name}`, consumers });
  }
  return out;
}
