// The reconciler's writes to ConfigMaps and Secrets: labelling the configs a
// target references managed (so the webhook holds their changes), the
// copies `<config>-canary` the canary copy reads, and the promotion of the
// pending data into the live configs and then into the primary's template.
//
// Config data and Secret values are never logged or put into a message:
// errors name the object only.

import * as k8s from '@kubernetes/client-node';
import { CANARY_ROLE, CONFIG_REVISION_ANNOTATION, MANAGED_BY, MANAGED_BY_LABEL, MANAGED_LABEL, PENDING_REVISION, PENDING_SPEC, REVISION_LABEL, ROLE_LABEL, TRUE, canaryName } from '../../core/contract.js';
import type { Canary } from '../../core/api/types.js';
import { isNotFound, statusCode } from '../../core/api/client.js';
import { escapePointer, type JsonPatchOp } from '../../core/json.js';
import { canonicalJson } from '../../core/revision.js';
import { configTracked, type TargetObject } from '../../core/targets/index.js';
import { configAdapter, type ConfigKind, type ConfigLookup, type LookupResult, type ConfigObject, type ConfigState, type ConfigView } from '../observe/configs.js';
import type { PendingChange } from '../observe/pending.js';
import { canaryOwnerReference, ownedBy } from './copy.js';

const FIELD_MANAGER = 'canary-gate';
const mergePatch = k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.MergePatch);
const jsonPatch = k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.JsonPatch);
const annotationPath = (k: string) => `/metadata/annotations/${escapePointer(k)}`;

// ------------------------------------------------------------------ pure parts

/** The copy `<config>-canary` of a config, holding its pending data, controlled by the Canary. */
export function buildConfigCopy(kind: ConfigKind, live: ConfigObject, pending: PendingChange, canary: Canary): ConfigObject {
  const metadata: k8s.V1ObjectMeta = {
    name: canaryName(live.metadata?.name ?? ''),
    labels: { [ROLE_LABEL]: CANARY_ROLE, [REVISION_LABEL]: pending.revision, [MANAGED_BY_LABEL]: MANAGED_BY },
    ownerReferences: [canaryOwnerReference(canary)],
  };
  if (live.metadata?.namespace) metadata.namespace = live.metadata.namespace;
  const spec = pending.spec as { data?: Record<string, string>; binaryData?: Record<string, string> };
  if (kind === 'Secret') {
    const secret: k8s.V1Secret = { apiVersion: 'v1', kind: 'Secret', metadata, data: { ...(spec.data ?? {}) } };
    if ((live as k8s.V1Secret).type) secret.type = (live as k8s.V1Secret).type as string;
    return secret;
  }
  const cm: k8s.V1ConfigMap = { apiVersion: 'v1', kind: 'ConfigMap', metadata, data: { ...(spec.data ?? {}) } };
  if (spec.binaryData && Object.keys(spec.binaryData).length > 0) cm.binaryData = { ...spec.binaryData };
  return cm;
}

/** True when an existing copy must be rewritten: other data, or not (also) this Canary's. */
export function configCopyDiffers(existing: ConfigObject, desired: ConfigObject): boolean {
  const body = (o: ConfigObject) => canonicalJson({ data: o.data ?? {}, binaryData: (o as k8s.V1ConfigMap).binaryData ?? {} });
  if (body(existing) !== body(desired)) return true;
  if (existing.metadata?.labels?.[REVISION_LABEL] !== desired.metadata?.labels?.[REVISION_LABEL]) return true;
  const owner = desired.metadata?.ownerReferences?.[0];
  return !(existing.metadata?.ownerReferences ?? []).some((o) => o.uid === owner?.uid);
}

/**
 * The owners of a copy that several Canaries share (a config several
 * canaried Deployments reference, ADR 0009): every Canary that runs it,
 * this one added; the first stays the controller. The copy goes when the
 * last of them lets it go (deleteConfigCopies), or with the last of them.
 */
export function sharedCopyOwners(existing: k8s.V1OwnerReference[] | undefined, canary: Canary): k8s.V1OwnerReference[] {
  const others = (existing ?? []).filter((o) => o.uid !== canary.metadata.uid && o.kind === 'Canary');
  return [...others, { ...canaryOwnerReference(canary), controller: !others.some((o) => o.controller) }];
}

/** One write of a promotion. */
export type PromotionWrite =
  | { target: 'config'; kind: ConfigKind; name: string; ops: JsonPatchOp[] }
  | { target: 'deployment'; ops: JsonPatchOp[] };

export interface PromotionInput {
  configs: ConfigState;
  /** The live pod template of the Deployment. */
  liveTemplate: Record<string, unknown>;
  /** The Deployment's own held template, if any. */
  ownPending?: PendingChange;
}

/**
 * The writes that promote a combined revision, in order: first every config
 * whose pending data the run used (data := pending, pending annotations
 * removed, guarded by a `test` of its pending revision), then the
 * Deployment's template (its own pending one, else the live one) with
 * canarygate.dev/config-revision naming the configs now live, so the
 * primary's Pods roll onto them in one rollout.
 *
 * Resumable: what is already written is left out (a config without pending
 * data; a template that already names the config revision), so a process
 * killed between two writes finishes the promotion from the API alone: the
 * live template without the new config revision keeps the live revision
 * different from the run's (observe/configs.ts), and the state machine asks
 * for this promotion again.
 */
export function promotionWrites(input: PromotionInput): PromotionWrite[] {
  const out: PromotionWrite[] = [];
  for (const key of input.configs.changed) {
    const view = input.configs.views.get(key);
    if (!view?.pending) continue;
    out.push({ target: 'config', kind: view.ref.kind, name: view.ref.name, ops: configPromotionOps(view) });
  }
  const configRevision = input.configs.desiredConfigRevision;
  const own = input.ownPending;
  const template = structuredClone(own?.spec ?? input.liveTemplate) as { metadata?: k8s.V1ObjectMeta };
  const current = (input.liveTemplate as { metadata?: k8s.V1ObjectMeta }).metadata?.annotations?.[CONFIG_REVISION_ANNOTATION];
  if (!own && current === configRevision) return out;
  template.metadata = { ...(template.metadata ?? {}), annotations: { ...(template.metadata?.annotations ?? {}), [CONFIG_REVISION_ANNOTATION]: configRevision } };
  const ops: JsonPatchOp[] = [];
  if (own) ops.push({ op: 'test', path: annotationPath(PENDING_REVISION), value: own.revision });
  ops.push({ op: 'replace', path: '/spec/template', value: template });
  if (own) ops.push({ op: 'remove', path: annotationPath(PENDING_REVISION) }, { op: 'remove', path: annotationPath(PENDING_SPEC) });
  out.push({ target: 'deployment', ops });
  return out;
}

/** The JSON patch that makes a config's pending data live (all of it or nothing). */
export function configPromotionOps(view: ConfigView): JsonPatchOp[] {
  const pending = view.pending as PendingChange;
  const ops: JsonPatchOp[] = [{ op: 'test', path: annotationPath(PENDING_REVISION), value: pending.revision }];
  ops.push(...configAdapter(view.ref.kind).promoteOps(view.live as TargetObject, pending.spec));
  ops.push({ op: 'remove', path: annotationPath(PENDING_REVISION) }, { op: 'remove', path: annotationPath(PENDING_SPEC) });
  return ops;
}

// ------------------------------------------------------------------ look-ups

/**
 * What the reconciler found when it looked up configs outside its managed
 * cache (a referenced config that is missing or untracked, a copy name held
 * by a user's object). Kept for a short while, then looked up again: the
 * user may create the config or free the name, which no watch tells us.
 */
export class ConfigLookups {
  private readonly found = new Map<string, { what: ConfigLookup; at: number }>();
  constructor(private readonly ttlMs = 10_000, private readonly now: () => number = Date.now) {}

  get(kind: ConfigKind, namespace: string, name: string): LookupResult | undefined {
    const f = this.found.get(`${namespace}/${kind}/${name}`);
    // An untracked config (a TLS Secret many Deployments mount) changes its mind rarely: looked at less often.
    const ttl = f?.what === 'untracked' ? this.ttlMs * 6 : this.ttlMs;
    return f ? { what: f.what, stale: this.now() - f.at > ttl } : undefined;
  }

  delete(kind: ConfigKind, namespace: string, name: string): void {
    this.found.delete(`${namespace}/${kind}/${name}`);
  }

  set(kind: ConfigKind, namespace: string, name: string, what: ConfigLookup): void {
    this.found.set(`${namespace}/${kind}/${name}`, { what, at: this.now() });
  }
}

// ------------------------------------------------------------------ API calls

type Write = (fn: () => Promise<unknown>) => Promise<void>;

/** The calls on ConfigMaps and Secrets, one shape for both kinds. */
export interface ConfigClient {
  read(name: string, namespace: string): Promise<ConfigObject>;
  patch(name: string, namespace: string, body: unknown, options: k8s.ConfigurationOptions): Promise<ConfigObject>;
  create(namespace: string, body: ConfigObject): Promise<ConfigObject>;
  replace(name: string, namespace: string, body: ConfigObject): Promise<ConfigObject>;
  delete(name: string, namespace: string, uid?: string): Promise<unknown>;
}

export function configClient(kind: ConfigKind, core: k8s.CoreV1Api): ConfigClient {
  const preconditions = (uid?: string) => (uid ? { body: { preconditions: { uid } } } : {});
  if (kind === 'ConfigMap') {
    return {
      read: (name, namespace) => core.readNamespacedConfigMap({ name, namespace }),
      patch: (name, namespace, body, options) => core.patchNamespacedConfigMap({ name, namespace, body, fieldManager: FIELD_MANAGER }, options),
      create: (namespace, body) => core.createNamespacedConfigMap({ namespace, body: body as k8s.V1ConfigMap, fieldManager: FIELD_MANAGER }),
      replace: (name, namespace, body) => core.replaceNamespacedConfigMap({ name, namespace, body: body as k8s.V1ConfigMap, fieldManager: FIELD_MANAGER }),
      delete: (name, namespace, uid) => core.deleteNamespacedConfigMap({ name, namespace, ...preconditions(uid) }),
    };
  }
  return {
    read: (name, namespace) => core.readNamespacedSecret({ name, namespace }),
    patch: (name, namespace, body, options) => core.patchNamespacedSecret({ name, namespace, body, fieldManager: FIELD_MANAGER }, options),
    create: (namespace, body) => core.createNamespacedSecret({ namespace, body: body as k8s.V1Secret, fieldManager: FIELD_MANAGER }),
    replace: (name, namespace, body) => core.replaceNamespacedSecret({ name, namespace, body: body as k8s.V1Secret, fieldManager: FIELD_MANAGER }),
    delete: (name, namespace, uid) => core.deleteNamespacedSecret({ name, namespace, ...preconditions(uid) }),
  };
}

/** An API error about a config, without anything of its body (which may echo data). */
export class ConfigWriteError extends Error {
  constructor(what: string, readonly code: number | undefined) {
    super(`${what} failed${code ? ` (HTTP ${code})` : ''}`);
  }
}

async function guarded<T>(what: string, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    throw new ConfigWriteError(what, statusCode(err));
  }
}

/**
 * Labels managed every tracked config in `refs` not yet in the managed
 * cache; records the missing and the untracked ones. One read per config,
 * and only for configs not looked up within the look-ups' lifetime.
 */
export async function trackConfigs(configs: ConfigState, namespace: string, core: k8s.CoreV1Api, lookups: ConfigLookups, write: Write): Promise<void> {
  for (const ref of configs.unsettled) {
    const last = lookups.get(ref.kind, namespace, ref.name);
    if (last?.what === 'adopted' && !last.stale) continue; // labelled; the cache has not shown it yet
    const client = configClient(ref.kind, core);
    let obj: ConfigObject;
    try {
      obj = await client.read(ref.name, namespace);
    } catch (err) {
      if (isNotFound(err)) {
        lookups.set(ref.kind, namespace, ref.name, 'missing');
        continue;
      }
      throw new ConfigWriteError(`reading ${ref.kind} ${namespace}/${ref.name}`, statusCode(err));
    }
    if (!configTracked(obj as TargetObject)) {
      lookups.set(ref.kind, namespace, ref.name, 'untracked');
      continue;
    }
    if (obj.metadata?.labels?.[MANAGED_LABEL] !== TRUE) {
      await write(() => guarded(`labelling ${ref.kind} ${namespace}/${ref.name} managed`, () => client.patch(ref.name, namespace, { metadata: { labels: { [MANAGED_LABEL]: TRUE } } }, mergePatch)));
    }
    lookups.set(ref.kind, namespace, ref.name, 'adopted');
  }
  for (const ref of configs.copyRechecks) {
    const copyName = canaryName(ref.name);
    let found: ConfigObject | undefined;
    try {
      found = await configClient(ref.kind, core).read(copyName, namespace);
    } catch (err) {
      if (!isNotFound(err)) throw new ConfigWriteError(`reading ${ref.kind} ${namespace}/${copyName}`, statusCode(err));
    }
    if (found && found.metadata?.labels?.[MANAGED_BY_LABEL] !== MANAGED_BY && !(found.metadata?.ownerReferences ?? []).some((o) => o.kind === 'Canary')) lookups.set(ref.kind, namespace, copyName, 'taken');
    else lookups.delete(ref.kind, namespace, copyName);
  }
}

export interface ConfigCopyContext {
  canary: Canary;
  namespace: string;
  configs: ConfigState;
  existing(kind: ConfigKind, name: string): ConfigObject | undefined;
}

/**
 * Creates or rewrites the copy of every config whose pending data the run
 * uses. False when a copy's name turned out to be a user's object (the
 * look-up records it; the next sync reports NameTaken): the canary copy
 * must then not be made, or it would read the user's object.
 */
export async function ensureConfigCopies(ctx: ConfigCopyContext, core: k8s.CoreV1Api, lookups: ConfigLookups, write: Write): Promise<boolean> {
  for (const key of ctx.configs.changed) {
    const view = ctx.configs.views.get(key);
    if (!view?.pending) continue;
    const { kind, name } = view.ref;
    const client = configClient(kind, core);
    const desired = buildConfigCopy(kind, view.live, view.pending, ctx.canary);
    const copyName = canaryName(name);
    const existing = ctx.existing(kind, copyName);
    if (existing) {
      if (!ownedBy(existing, ctx.canary) && existing.metadata?.labels?.[MANAGED_BY_LABEL] !== MANAGED_BY) return false;
      if (!configCopyDiffers(existing, desired)) continue;
      const metadata = { ...desired.metadata, ownerReferences: sharedCopyOwners(existing.metadata?.ownerReferences, ctx.canary), resourceVersion: existing.metadata?.resourceVersion };
      const body = { ...desired, metadata } as ConfigObject;
      await write(() => guarded(`updating ${kind} ${ctx.namespace}/${copyName}`, () => client.replace(copyName, ctx.namespace, body)));
      continue;
    }
    try {
      await write(() => client.create(ctx.namespace, desired));
    } catch (err) {
      if (statusCode(err) !== 409) throw new ConfigWriteError(`creating ${kind} ${ctx.namespace}/${copyName}`, statusCode(err));
    }
    // A create that met an existing object: ours (not cached yet) or a user's.
    if (!ctx.existing(kind, copyName)) {
      const found = await client.read(copyName, ctx.namespace).catch(() => undefined);
      if (found && !ownedBy(found, ctx.canary) && found.metadata?.labels?.[MANAGED_BY_LABEL] !== MANAGED_BY) {
        lookups.set(kind, ctx.namespace, copyName, 'taken');
        return false;
      }
    }
  }
  return true;
}

/**
 * Deletes config copies the Canary owns (uid precondition: never another
 * object of that name). A copy other Canaries own too is only let go: this
 * Canary's owner reference is removed (resourceVersion precondition), the
 * copy stays for them.
 */
export async function deleteConfigCopies(copies: Array<{ kind: ConfigKind; copy: ConfigObject }>, namespace: string, core: k8s.CoreV1Api, write: Write, canary?: Canary): Promise<void> {
  for (const { kind, copy } of copies) {
    const name = copy.metadata?.name ?? '';
    const remaining = (copy.metadata?.ownerReferences ?? []).filter((o) => o.uid !== canary?.metadata.uid);
    if (canary && remaining.some((o) => o.kind === 'Canary')) {
      const ownerReferences = remaining.some((o) => o.controller) ? remaining : remaining.map((o, i) => (i === 0 ? { ...o, controller: true } : o));
      const body = { metadata: { ownerReferences, resourceVersion: copy.metadata?.resourceVersion } };
      await write(() => guarded(`releasing ${kind} ${namespace}/${name}`, () => configClient(kind, core).patch(name, namespace, body, mergePatch)));
      continue;
    }
    await write(async () => {
      try {
        await configClient(kind, core).delete(name, namespace, copy.metadata?.uid);
      } catch (err) {
        if (!isNotFound(err)) throw new ConfigWriteError(`deleting ${kind} ${namespace}/${name}`, statusCode(err));
      }
    });
  }
}

/** Makes the promotion writes in order; the Deployment's last. Returns the Deployment write's resourceVersion. */
export async function writePromotion(writes: PromotionWrite[], deployment: string, namespace: string, api: { core: k8s.CoreV1Api; apps: k8s.AppsV1Api }, write: Write): Promise<string | undefined> {
  let resourceVersion: string | undefined;
  for (const w of writes) {
    if (w.target === 'config') {
      await write(() => guarded(`promoting ${w.kind} ${namespace}/${w.name}`, () => configClient(w.kind, api.core).patch(w.name, namespace, w.ops, jsonPatch)));
    } else {
      await write(async () => {
        const res = await api.apps.patchNamespacedDeployment({ name: deployment, namespace, body: w.ops, fieldManager: FIELD_MANAGER }, jsonPatch);
        resourceVersion = res?.metadata?.resourceVersion;
      });
    }
  }
  return resourceVersion;
}

