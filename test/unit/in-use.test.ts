// Which ConfigMaps and Secrets carry the finalizer canarygate.dev/in-use
// (observe/in-use.ts), and the patches that add and remove it.

import assert from 'node:assert/strict';
import type * as k8s from '@kubernetes/client-node';
import { IN_USE_FINALIZER, MANAGED_LABEL, PENDING_REVISION, PENDING_SPEC } from '../../core/contract.js';
import { canonicalJson, revisionOf } from '../../core/revision.js';
import { inUseChanges, inUseOf, keepingTargets, type TemplatePair } from '../../reconciler/observe/in-use.js';
import { addFinalizerOps, removeFinalizerOps } from '../../reconciler/apply/in-use.js';
import type { ConfigKind, ConfigObject } from '../../reconciler/observe/configs.js';
import type { Canary } from '../../core/api/types.js';
import type { Caches, ObjectCache } from '../../reconciler/observe/caches.js';

const mounting = (...names: string[]) => ({ spec: { containers: [{ name: 'app', image: 'web:1' }], volumes: names.map((n) => ({ name: n, configMap: { name: n } })) } });

function cm(name: string, opts: { finalizers?: string[]; deleting?: boolean } = {}): { kind: ConfigKind; obj: ConfigObject } {
  const metadata: k8s.V1ObjectMeta = { name, namespace: 'ns', resourceVersion: '7', labels: { [MANAGED_LABEL]: 'true' } };
  if (opts.finalizers) metadata.finalizers = opts.finalizers;
  if (opts.deleting) metadata.deletionTimestamp = new Date(0);
  return { kind: 'ConfigMap', obj: { metadata, data: { k: 'v' } } };
}

const names = (refs: Array<{ name: string }>) => refs.map((r) => r.name);

describe('in-use finalizer: which configs carry it', () => {
  it('protects every managed config a live template references, before any change arrives (a prune follows the apply at once)', () => {
    const targets: TemplatePair[] = [{ live: mounting('cfg-aaa', 'shared') }];
    const r = inUseChanges({ targets, configs: [cm('cfg-aaa'), cm('cfg-bbb'), cm('shared')] });
    assert.deepEqual(names(r.add), ['cfg-aaa', 'shared'], 'the new name, referenced only by the held template, is not protected');
    assert.deepEqual(r.remove, []);
  });

  it('writes nothing when the finalizer is already there', () => {
    assert.deepEqual(inUseChanges({ targets: [{ live: mounting('cfg-aaa') }], configs: [cm('cfg-aaa', { finalizers: [IN_USE_FINALIZER] })] }), { add: [], remove: [], deletedInUse: [] });
  });

  it('releases it once no live template references the config (after the promotion), deleting or not; another controller\'s finalizer is not its business', () => {
    const promoted = [{ live: mounting('cfg-bbb') }];
    const r = inUseChanges({ targets: promoted, configs: [cm('cfg-aaa', { finalizers: ['other/x', IN_USE_FINALIZER], deleting: true }), cm('cfg-bbb', { finalizers: [IN_USE_FINALIZER] })] });
    assert.deepEqual(names(r.remove), ['cfg-aaa']);
    assert.deepEqual(r.add, []);
    assert.deepEqual(r.deletedInUse, []);
  });

  it('keeps it, and reports the config, while it is being deleted and a live template still references it (pruned during a run, or after a rollback)', () => {
    const r = inUseChanges({ targets: [{ live: mounting('cfg-aaa') }], configs: [cm('cfg-aaa', { finalizers: [IN_USE_FINALIZER], deleting: true })] });
    assert.deepEqual(r.remove, []);
    assert.deepEqual(names(r.deletedInUse), ['cfg-aaa']);
  });

  it('never adds it to an object already being deleted (the API server refuses a new finalizer there), nor reports one it does not hold', () => {
    const r = inUseChanges({ targets: [{ live: mounting('cfg-aaa') }], configs: [cm('cfg-aaa', { deleting: true })] });
    assert.deepEqual(r, { add: [], remove: [], deletedInUse: [] });
  });

  it('a config another managed Deployment still mounts keeps it', () => {
    const targets = [{ live: mounting('cfg-bbb') }, { live: mounting('cfg-aaa') }];
    assert.deepEqual(inUseChanges({ targets, configs: [cm('cfg-aaa', { finalizers: [IN_USE_FINALIZER] })] }).remove, []);
  });
});

function deployment(name: string, live: object, pending?: object, over: Partial<k8s.V1ObjectMeta> = {}): k8s.V1Deployment {
  const metadata: k8s.V1ObjectMeta = { name, namespace: 'ns', resourceVersion: '3', labels: { [MANAGED_LABEL]: 'true' }, ...over };
  if (pending) metadata.annotations = { [PENDING_REVISION]: revisionOf(pending), [PENDING_SPEC]: canonicalJson(pending) };
  return { metadata, spec: { selector: {}, template: live as k8s.V1PodTemplateSpec } };
}

describe('in-use finalizer: the Deployments that keep configs', () => {
  it('only managed Deployments that are not being deleted keep configs, by their live template (a held one keeps nothing)', () => {
    const held = deployment('web', mounting('cfg-aaa'), mounting('cfg-bbb'));
    const unmanaged = deployment('other', mounting('x'), undefined, { labels: {} });
    const gone = deployment('gone', mounting('y'), undefined, { deletionTimestamp: new Date(0) });
    assert.deepEqual(keepingTargets([held, unmanaged, gone], { namespaceDeleting: false }), [{ live: mounting('cfg-aaa') }]);
  });

  it('the Deployment of a Canary being deleted, and every Deployment of a namespace being deleted, keep nothing: no finalizer is left behind', () => {
    const held = deployment('web', mounting('cfg-aaa'), mounting('cfg-bbb'));
    assert.deepEqual(keepingTargets([held], { namespaceDeleting: false, releasing: 'web' }), []);
    assert.deepEqual(keepingTargets([held], { namespaceDeleting: true }), []);
    const list = <T>(items: T[]): ObjectCache<T> => ({ get: (_ns, n) => items.find((i) => (i as { metadata?: k8s.V1ObjectMeta }).metadata?.name === n), list: () => items });
    const protectedCm = cm('cfg-aaa', { finalizers: [IN_USE_FINALIZER] }).obj;
    const caches = (nsDeleting: boolean): Pick<Caches, 'deployments' | 'namespaces' | 'configs'> => ({
      deployments: list([held]),
      namespaces: list([{ metadata: { name: 'ns', ...(nsDeleting ? { deletionTimestamp: new Date(0) } : {}) } }]),
      configs: { managed: { ConfigMap: list([protectedCm]), Secret: list([]) }, copies: { ConfigMap: list([]), Secret: list([]) }, lookup: () => undefined },
    });
    const canary = (deleting: boolean) => ({ metadata: { name: 'web', namespace: 'ns', ...(deleting ? { deletionTimestamp: '2026-01-01T00:00:00Z' } : {}) }, spec: { targetRef: { kind: 'Deployment', name: 'web' } } }) as unknown as Canary;
    assert.deepEqual(inUseOf(canary(false), caches(false))?.remove, [], 'kept while the live template mounts it');
    assert.deepEqual(names(inUseOf(canary(true), caches(false))?.remove ?? []), ['cfg-aaa'], 'Canary deleted');
    assert.deepEqual(names(inUseOf(canary(false), caches(true))?.remove ?? []), ['cfg-aaa'], 'namespace deleted');
  });
});

describe('in-use finalizer: the patches', () => {
  it('adds to the list as read (tested), or to a new list guarded by the resourceVersion; removes only its own entry', () => {
    assert.deepEqual(addFinalizerOps(cm('a').obj), [
      { op: 'test', path: '/metadata/resourceVersion', value: '7' },
      { op: 'add', path: '/metadata/finalizers', value: [IN_USE_FINALIZER] },
    ]);
    assert.deepEqual(addFinalizerOps(cm('a', { finalizers: ['other/x'] }).obj), [
      { op: 'test', path: '/metadata/finalizers', value: ['other/x'] },
      { op: 'add', path: '/metadata/finalizers/-', value: IN_USE_FINALIZER },
    ]);
    assert.deepEqual(removeFinalizerOps(cm('a', { finalizers: ['other/x', IN_USE_FINALIZER] }).obj), [
      { op: 'test', path: '/metadata/finalizers/1', value: IN_USE_FINALIZER },
      { op: 'remove', path: '/metadata/finalizers/1' },
    ]);
    assert.equal(removeFinalizerOps(cm('a', { finalizers: ['other/x'] }).obj), undefined);
  });
});
