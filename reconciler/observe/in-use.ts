// Which ConfigMaps and Secrets carry the finalizer canarygate.dev/in-use.
// Pure: works on plain objects from the informer caches.
//
// A change that renames a config (kustomize's configMapGenerator and
// secretGenerator put a hash of the data into the name) is a template
// change: the held template references `app-config-<new>`, while the
// stable primary's Pods still mount `app-config-<old>`. A GitOps tool prunes
// the old object in the same reconcile that applied the new one, i.e. while
// the run is under way; without protection the primary would lose it
// before the promotion rolls it onto the new name (and a rollback would
// leave the primary on a config that no longer exists).
//
// The rule, per config in the managed cache: it carries the finalizer
// while some managed Deployment's LIVE pod template references it, and
// loses it as soon as none does (after the promotion rolled the primary
// onto the new name, or when the reference is dropped). Protection cannot
// wait for the held change: Flux's prune follows its apply within
// milliseconds, before any controller sees the held template (measured in
// test/e2e/flux.test.ts), and a finalizer cannot be added to an object
// already being deleted. A config being deleted while still referenced
// (pruned during a run, or left mounted by a rollback) is kept and
// reported. Deployments whose Canary is being deleted, and every
// Deployment of a namespace being deleted, count as referencing nothing:
// uninstalling and namespace deletion never hang on this finalizer.

import type * as k8s from '@kubernetes/client-node';
import { IN_USE_FINALIZER, MANAGED_LABEL, TRUE } from '../../core/contract.js';
import { configKey, configReferences, type ConfigKind, type ConfigObject, type ConfigRef } from './configs.js';
import type { Canary } from '../../core/api/types.js';
import type { Caches } from './caches.js';

/** A managed Deployment's live pod template, as far as config references go. */
export interface TemplatePair {
  live: Record<string, unknown>;
}

export interface InUseInput {
  /** Managed Deployments of the namespace whose templates keep configs (see the file's head). */
  targets: TemplatePair[];
  /** Configs of the managed cache in the namespace. */
  configs: Array<{ kind: ConfigKind; obj: ConfigObject }>;
}

export interface InUseChanges {
  add: ConfigRef[];
  remove: ConfigRef[];
  /** Being deleted while a live template still references them: kept, and reported. */
  deletedInUse: ConfigRef[];
}

/** The configKeys a live template references, memoised per template object (every sync of the namespace's Canaries reads every template). */
function liveKeys(template: Record<string, unknown>): string[] {
  let keys = keysMemo.get(template);
  if (!keys) keysMemo.set(template, (keys = configReferences(template).map(configKey)));
  return keys;
}
const keysMemo = new WeakMap<object, string[]>();

/** The finalizer writes the rule asks for, and the configs held back from deletion. */
export function inUseChanges(input: InUseInput): InUseChanges {
  const liveRefs = new Set<string>();
  for (const t of input.targets) for (const key of liveKeys(t.live)) liveRefs.add(key);
  const out: InUseChanges = { add: [], remove: [], deletedInUse: [] };
  for (const { kind, obj } of input.configs) {
    const name = obj.metadata?.name ?? '';
    const ref: ConfigRef = { kind, name, optional: false };
    const key = configKey(ref);
    const deleting = !!obj.metadata?.deletionTimestamp;
    const has = (obj.metadata?.finalizers ?? []).includes(IN_USE_FINALIZER);
    const needed = liveRefs.has(key);
    // A finalizer cannot be added to an object already being deleted.
    if (needed && !has && !deleting) out.add.push(ref);
    if (!needed && has) out.remove.push(ref);
    if (needed && has && deleting) out.deletedInUse.push(ref);
  }
  return out;
}

/**
 * The templates of the namespace's managed Deployments that keep configs:
 * none in a namespace being deleted; `releasing` (the Deployment of a
 * Canary being deleted) left out.
 */
export function keepingTargets(deployments: k8s.V1Deployment[], opts: { namespaceDeleting: boolean; releasing?: string }): TemplatePair[] {
  if (opts.namespaceDeleting) return [];
  const out: TemplatePair[] = [];
  for (const d of deployments) {
    if (d.metadata?.labels?.[MANAGED_LABEL] !== TRUE || d.metadata?.name === opts.releasing || d.metadata?.deletionTimestamp) continue;
    const pair: TemplatePair = { live: (d.spec?.template ?? {}) as Record<string, unknown> };
    out.push(pair);
  }
  return out;
}

const CONFIG_KINDS: readonly ConfigKind[] = ['ConfigMap', 'Secret'];

/** The finalizer writes one Canary's sync makes in its namespace (every Canary there sweeps the same configs: writes only on change). */
export function inUseOf(canary: Canary, caches: Pick<Caches, 'deployments' | 'namespaces' | 'configs'>): InUseChanges | undefined {
  const configs = caches.configs;
  const namespace = canary.metadata.namespace ?? '';
  if (!configs) return undefined;
  const ns = caches.namespaces.get('', namespace);
  const releasing = canary.metadata.deletionTimestamp && canary.spec.targetRef.kind === 'Deployment' ? canary.spec.targetRef.name : undefined;
  const targets = keepingTargets(caches.deployments.list(namespace), { namespaceDeleting: !!ns?.metadata?.deletionTimestamp, ...(releasing ? { releasing } : {}) });
  const list: InUseInput['configs'] = [];
  for (const kind of CONFIG_KINDS) for (const obj of configs.managed[kind].list(namespace)) list.push({ kind, obj });
  return inUseChanges({ targets, configs: list });
}
