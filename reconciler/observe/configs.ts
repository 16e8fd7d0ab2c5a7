// The ConfigMaps and Secrets a Deployment's pod template references, and
// how their changes join the Deployment's run. Pure: everything here works
// on plain objects from the informer caches, so each rule is unit-tested on
// plain data.
//
// A run's revision for a Deployment that references tracked configs covers
// the pod template and the data of every one of them ("combined revision"):
// a change of the template, of a config, or of both in one `kubectl apply`,
// is one revision, run as one canary. The live side reads the config part
// from the template annotation canarygate.dev/config-revision that
// promotion writes, because that is what the primary's Pods were rolled
// onto; the desired side reads each config's pending data, else its live
// data.

import type * as k8s from '@kubernetes/client-node';
import { CONFIG_REVISION_ANNOTATION, canaryName } from '../../core/contract.js';
import { configMapKind, configTracked, secretKind, type HeldKind, type TargetObject } from '../../core/targets/index.js';
import { revisionOf } from '../../core/revision.js';
import { pendingChange, type PendingChange } from './pending.js';

export type ConfigKind = 'ConfigMap' | 'Secret';
export type ConfigObject = k8s.V1ConfigMap | k8s.V1Secret;

/** One config a pod template names. */
export interface ConfigRef {
  kind: ConfigKind;
  name: string;
  /** True only when every reference to it is `optional: true`: a missing one is then fine. */
  optional: boolean;
}

/** `ConfigMap/name` or `Secret/name`: the key of a config within one namespace. */
export function configKey(ref: { kind: ConfigKind; name: string }): string {
  return `${ref.kind}/${ref.name}`;
}

type Template = { metadata?: k8s.V1ObjectMeta; spec?: k8s.V1PodSpec } | Record<string, unknown>;

/**
 * Every ConfigMap and Secret a pod template references: volumes (and their
 * projected sources), `env[].valueFrom` and `envFrom`, in containers, init
 * containers and ephemeral containers. Each config once, in a stable order
 * (kind, then name); optional only when every reference to it is.
 */
export function configReferences(template: Template | undefined): ConfigRef[] {
  const found = new Map<string, ConfigRef>();
  const add = (kind: ConfigKind, name: string | undefined, optional: boolean | undefined) => {
    if (!name) return;
    const key = configKey({ kind, name });
    const prev = found.get(key);
    found.set(key, { kind, name, optional: (prev ? prev.optional : true) && optional === true });
  };
  const spec = (template as { spec?: k8s.V1PodSpec } | undefined)?.spec;
  if (!spec || typeof spec !== 'object') return [];
  for (const v of spec.volumes ?? []) {
    if (v.configMap) add('ConfigMap', v.configMap.name, v.configMap.optional);
    if (v.secret) add('Secret', v.secret.secretName, v.secret.optional);
    for (const s of v.projected?.sources ?? []) {
      if (s.configMap) add('ConfigMap', s.configMap.name, s.configMap.optional);
      if (s.secret) add('Secret', s.secret.name, s.secret.optional);
    }
  }
  const containers = [...(spec.initContainers ?? []), ...(spec.containers ?? []), ...((spec.ephemeralContainers ?? []) as k8s.V1Container[])];
  for (const c of containers) {
    for (const e of c.env ?? []) {
      const from = e.valueFrom;
      if (from?.configMapKeyRef) add('ConfigMap', from.configMapKeyRef.name, from.configMapKeyRef.optional);
      if (from?.secretKeyRef) add('Secret', from.secretKeyRef.name, from.secretKeyRef.optional);
    }
    for (const f of c.envFrom ?? []) {
      if (f.configMapRef) add('ConfigMap', f.configMapRef.name, f.configMapRef.optional);
      if (f.secretRef) add('Secret', f.secretRef.name, f.secretRef.optional);
    }
  }
  return [...found.values()].sort((a, b) => (a.kind === b.kind ? (a.name < b.name ? -1 : a.name > b.name ? 1 : 0) : a.kind < b.kind ? -1 : 1));
}

/**
 * The pod template with every reference to a config in `renamed` pointed at
 * its copy `<name>-canary` instead. A new object; the input is not changed.
 */
export function withCopyReferences<T extends Template>(template: T, renamed: ReadonlySet<string>): T {
  const out = structuredClone(template) as { spec?: k8s.V1PodSpec };
  const spec = out.spec;
  if (!spec || renamed.size === 0) return out as T;
  const to = (kind: ConfigKind, name: string | undefined) => (name && renamed.has(configKey({ kind, name })) ? canaryName(name) : name);
  for (const v of spec.volumes ?? []) {
    if (v.configMap) v.configMap.name = to('ConfigMap', v.configMap.name) as string;
    if (v.secret) v.secret.secretName = to('Secret', v.secret.secretName) as string;
    for (const s of v.projected?.sources ?? []) {
      if (s.configMap) s.configMap.name = to('ConfigMap', s.configMap.name) as string;
      if (s.secret) s.secret.name = to('Secret', s.secret.name) as string;
    }
  }
  for (const c of [...(spec.initContainers ?? []), ...(spec.containers ?? []), ...((spec.ephemeralContainers ?? []) as k8s.V1Container[])]) {
    for (const e of c.env ?? []) {
      const from = e.valueFrom;
      if (from?.configMapKeyRef) from.configMapKeyRef.name = to('ConfigMap', from.configMapKeyRef.name) as string;
      if (from?.secretKeyRef) from.secretKeyRef.name = to('Secret', from.secretKeyRef.name) as string;
    }
    for (const f of c.envFrom ?? []) {
      if (f.configMapRef) f.configMapRef.name = to('ConfigMap', f.configMapRef.name) as string;
      if (f.secretRef) f.secretRef.name = to('Secret', f.secretRef.name) as string;
    }
  }
  return out as T;
}

/** The adapter of a config kind (core/targets/config.ts): the webhook's rule for what is held and how it is hashed. */
export function configAdapter(kind: ConfigKind): HeldKind {
  return kind === 'Secret' ? secretKind : configMapKind;
}

/** The part of a config under canary, exactly as the webhook hashes it for its pending revision. */
export function configSpec(kind: ConfigKind, obj: ConfigObject): Record<string, unknown> {
  return configAdapter(kind).specUnderCanary(obj as TargetObject) ?? {};
}

/** The revision of a config's live data, memoised per object version. */
export function configDataRevision(kind: ConfigKind, obj: ConfigObject): string {
  const key = obj.metadata?.resourceVersion ?? '';
  const memo = liveMemo.get(obj);
  if (memo && memo.key === key) return memo.revision;
  const revision = revisionOf(configSpec(kind, obj));
  liveMemo.set(obj, { key, revision });
  return revision;
}
const liveMemo = new WeakMap<object, { key: string; revision: string }>();

/**
 * What a look-up of a config outside the managed cache found: `missing`,
 * `untracked`, `taken` (a copy's name is a user's object), or `adopted` (just
 * labelled managed: its data joins the live revision, which is no bypass).
 */
export type ConfigLookup = 'missing' | 'untracked' | 'taken' | 'adopted';

/** A look-up's finding, and whether it is old enough to be looked up again (still used meanwhile: no flapping). */
export interface LookupResult {
  what: ConfigLookup;
  stale: boolean;
}

/** One tracked config the templates reference, as the caches show it. */
export interface ConfigView {
  ref: ConfigRef;
  live: ConfigObject;
  liveRevision: string;
  /** Its pending data, if a change is held (checked like a Deployment's). */
  pending?: PendingChange;
  /** Set when its pending annotations are unusable: the change is not run. */
  pendingError?: string;
}

/** Everything one sync knows of the configs a Deployment's templates reference. */
export interface ConfigState {
  /**
   * False when no tracked config is referenced (only missing or unsettled
   * ones): the revisions below are then unused, the template's own apply.
   */
  combined: boolean;
  /** Tracked configs, by configKey. */
  views: Map<string, ConfigView>;
  /** Referenced, not optional, and not found. */
  missing: ConfigRef[];
  /** Referenced and not looked up yet (not in the managed cache): the reconciler labels or looks them up. */
  unsettled: ConfigRef[];
  /** Revision of the configs the primary's Pods run (see the file's head). */
  liveConfigRevision: string;
  /** Revision of the configs the desired (pending) state runs. */
  desiredConfigRevision: string;
  /** Combined revision of the live template and the live configs. */
  liveRevision: string;
  /** Combined revision of the desired template (pending, else live) and the desired configs. */
  desiredRevision: string;
  /** A config was just labelled managed: its data joining the live revision is adoption, not a change made past the webhook. */
  adopted: boolean;
  /** Configs whose copy name was found taken by a user's object a while ago: looked at again (apply/configs.ts). */
  copyRechecks: ConfigRef[];
  /** configKeys of the tracked configs whose pending data the desired state uses (the copy reads their `-canary` copies). */
  changed: Set<string>;
}

/** The pod template without the annotation promotion writes: it is not part of what the user changes. */
export function withoutConfigRevision<T extends Template>(template: T): T {
  const annotations = (template as { metadata?: k8s.V1ObjectMeta }).metadata?.annotations;
  if (!annotations || !(CONFIG_REVISION_ANNOTATION in annotations)) return template;
  const { [CONFIG_REVISION_ANNOTATION]: _dropped, ...rest } = annotations;
  const metadata = { ...(template as { metadata?: k8s.V1ObjectMeta }).metadata } as k8s.V1ObjectMeta;
  if (Object.keys(rest).length > 0) metadata.annotations = rest;
  else delete metadata.annotations;
  return { ...template, metadata } as T;
}

/** The revision of a set of configs: configKey → the revision of its data. */
export function configsRevision(revisions: Record<string, string>): string {
  return revisionOf(revisions);
}

/** The combined revision of a pod template and the revision of its configs (memoised per template object). */
export function combinedRevision(template: Template, configRevision: string): string {
  let templateRevision = templateMemo.get(template);
  if (templateRevision === undefined) templateMemo.set(template, (templateRevision = revisionOf(withoutConfigRevision(template))));
  return revisionOf({ template: templateRevision, configs: configRevision });
}
const templateMemo = new WeakMap<object, string>();

export interface ConfigInputs {
  liveTemplate: Template;
  /** The Deployment's own pending template, if any. */
  pendingTemplate?: Template;
  /** A config from the cache of managed configs. */
  get(kind: ConfigKind, name: string): ConfigObject | undefined;
  /** What the last look-up of a config outside that cache found. */
  lookup(kind: ConfigKind, name: string): LookupResult | undefined;
  /**
   * The Canary's status says a promotion is being written (or the run
   * waits for a shared config, which another consumer may write): a template
   * without the config-revision annotation then does not yet run the live
   * configs (they may have been written first, see apply/configs.ts).
   */
  promoting: boolean;
}

/**
 * The config state of a Deployment, or undefined when its templates
 * reference no config. Not `combined` when none of them is tracked and no
 * config revision was ever promoted: the revision is then the template's,
 * exactly as without configs.
 */
export function configState(input: ConfigInputs): ConfigState | undefined {
  const desiredTemplate = input.pendingTemplate ?? input.liveTemplate;
  const liveRefs = configReferences(input.liveTemplate);
  const desiredRefs = configReferences(desiredTemplate);
  const views = new Map<string, ConfigView>();
  const missing: ConfigRef[] = [];
  const unsettled: ConfigRef[] = [];
  const seen = new Set<string>();
  let adopted = false;
  for (const ref of [...desiredRefs, ...liveRefs]) {
    const key = configKey(ref);
    if (seen.has(key)) continue;
    seen.add(key);
    const live = input.get(ref.kind, ref.name);
    const result = input.lookup(ref.kind, ref.name);
    const found = result?.what;
    if (found === 'adopted' && !result?.stale) adopted = true;
    if (live && !live.metadata?.deletionTimestamp && configTracked(live as TargetObject)) {
      const view: ConfigView = { ref, live, liveRevision: configDataRevision(ref.kind, live) };
      const pending = pendingChange(live);
      if (pending && 'error' in pending) view.pendingError = pending.error;
      else if (pending) view.pending = pending;
      views.set(key, view);
      continue;
    }
    if (live) continue; // in the managed cache but not tracked (disabled, immutable, a skipped Secret type)
    // Looked up again when unknown, just adopted (until the cache shows it) or stale; a stale finding still counts meanwhile.
    if (found === undefined || found === 'adopted' || result?.stale) unsettled.push(ref);
    if (found === 'missing' && !ref.optional && desiredRefs.some((r) => configKey(r) === key)) missing.push(ref);
  }
  const annotated = (t: Template | undefined) => (t as { metadata?: k8s.V1ObjectMeta } | undefined)?.metadata?.annotations?.[CONFIG_REVISION_ANNOTATION];
  const recorded = annotated(input.liveTemplate);
  if (views.size === 0 && recorded === undefined && annotated(input.pendingTemplate) === undefined) {
    if (unsettled.length === 0 && missing.length === 0) return undefined;
    return { combined: false, adopted, copyRechecks: [], views, missing, unsettled, liveConfigRevision: '', desiredConfigRevision: '', liveRevision: '', desiredRevision: '', changed: new Set() };
  }
  const revisions = (refs: ConfigRef[], desired: boolean) => {
    const out: Record<string, string> = {};
    for (const ref of refs) {
      const v = views.get(configKey(ref));
      if (v) out[configKey(ref)] = desired && v.pending ? v.pending.revision : v.liveRevision;
    }
    return out;
  };
  const changed = new Set<string>();
  for (const ref of desiredRefs) {
    const v = views.get(configKey(ref));
    if (v?.pending) changed.add(configKey(ref));
  }
  const desiredConfigRevision = configsRevision(revisions(desiredRefs, true));
  // Without the annotation, the primary's Pods read the live configs as they
  // are, except while a promotion is being written: then the configs may be
  // new already and the template not yet.
  const livePart = recorded ?? (input.promoting ? '' : configsRevision(revisions(liveRefs, false)));
  return {
    combined: true,
    adopted,
    copyRechecks: [],
    views,
    missing,
    unsettled,
    liveConfigRevision: livePart,
    desiredConfigRevision,
    liveRevision: combinedRevision(input.liveTemplate, livePart),
    desiredRevision: combinedRevision(desiredTemplate, desiredConfigRevision),
    changed,
  };
}
