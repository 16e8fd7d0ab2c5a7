// Adds and removes the finalizer canarygate.dev/in-use on ConfigMaps and
// Secrets (the rule: observe/in-use.ts). JSON patches with a `test` of the
// list as read, so another controller's finalizer is never dropped and a
// list that moved meanwhile fails the write (the sync is retried).

import * as k8s from '@kubernetes/client-node';
import { IN_USE_FINALIZER } from '../../core/contract.js';
import { isNotFound, statusCode } from '../../core/api/client.js';
import type { ConfigKind, ConfigObject, ConfigRef } from '../observe/configs.js';
import type { InUseChanges } from '../observe/in-use.js';
import { configClient, ConfigWriteError } from './configs.js';
import type { JsonPatchOp } from '../../core/json.js';

const jsonPatch = k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.JsonPatch);

type Write = (fn: () => Promise<unknown>) => Promise<void>;

/** The patch that adds the finalizer to a config's list as read. */
export function addFinalizerOps(obj: ConfigObject): JsonPatchOp[] {
  const list = obj.metadata?.finalizers;
  // No list to test: the object's version stands in for it (an `add` of the list would replace one added meanwhile).
  if (!list) return [{ op: 'test', path: '/metadata/resourceVersion', value: obj.metadata?.resourceVersion ?? '' }, { op: 'add', path: '/metadata/finalizers', value: [IN_USE_FINALIZER] }];
  return [{ op: 'test', path: '/metadata/finalizers', value: list }, { op: 'add', path: '/metadata/finalizers/-', value: IN_USE_FINALIZER }];
}

/** The patch that removes the finalizer from a config's list as read (undefined: it has none). */
export function removeFinalizerOps(obj: ConfigObject): JsonPatchOp[] | undefined {
  const i = (obj.metadata?.finalizers ?? []).indexOf(IN_USE_FINALIZER);
  if (i < 0) return undefined;
  return [{ op: 'test', path: `/metadata/finalizers/${i}`, value: IN_USE_FINALIZER }, { op: 'remove', path: `/metadata/finalizers/${i}` }];
}

/** Makes the finalizer writes; `get` reads a config from the managed cache. */
export async function applyInUse(changes: InUseChanges, namespace: string, get: (kind: ConfigKind, name: string) => ConfigObject | undefined, core: k8s.CoreV1Api, write: Write): Promise<void> {
  const one = async (ref: ConfigRef, ops: JsonPatchOp[] | undefined, what: string) => {
    if (!ops) return;
    await write(async () => {
      try {
        await configClient(ref.kind, core).patch(ref.name, namespace, ops, jsonPatch);
      } catch (err) {
        if (isNotFound(err)) return; // gone already
        throw new ConfigWriteError(`${what} ${ref.kind} ${namespace}/${ref.name}`, statusCode(err));
      }
    });
  };
  for (const ref of changes.add) {
    const obj = get(ref.kind, ref.name);
    if (obj) await one(ref, addFinalizerOps(obj), `protecting (finalizer ${IN_USE_FINALIZER})`);
  }
  for (const ref of changes.remove) {
    const obj = get(ref.kind, ref.name);
    if (obj) await one(ref, removeFinalizerOps(obj), `releasing (finalizer ${IN_USE_FINALIZER})`);
  }
}
