// Canaries created for Deployments in an opted-in namespace: the reconciler's
// defaults, overridden per namespace by a ConfigMap labelled
// canarygate.dev/defaults=true whose key `canary` holds a partial Canary spec
// (YAML or JSON). Several such ConfigMaps are merged in name order.

import * as k8s from '@kubernetes/client-node';
import { API_VERSION, GENERATED_ANNOTATION } from '../../core/contract.js';
import type { Canary, CanarySpec } from '../../core/api/types.js';

export const DEFAULTS_KEY = 'canary';

type Plain = Record<string, unknown>;

function isPlain(v: unknown): v is Plain {
  return !!v && typeof v === 'object' && !Array.isArray(v);
}

/** Deep merge of plain objects; arrays and scalars from `over` replace. */
export function mergeSpec(base: Plain, over: Plain): Plain {
  const out: Plain = { ...base };
  for (const [k, v] of Object.entries(over)) {
    out[k] = isPlain(v) && isPlain(out[k]) ? mergeSpec(out[k] as Plain, v) : v;
  }
  return out;
}

/** Parses one defaults ConfigMap; a broken one is reported, not applied. */
export function parseDefaults(cm: k8s.V1ConfigMap): { spec?: Plain; error?: string } {
  const text = cm.data?.[DEFAULTS_KEY];
  if (text === undefined) return { error: `ConfigMap ${cm.metadata?.name} has no key "${DEFAULTS_KEY}"` };
  try {
    const spec = k8s.loadYaml<unknown>(text);
    if (!isPlain(spec)) return { error: `ConfigMap ${cm.metadata?.name}: "${DEFAULTS_KEY}" is not a mapping` };
    return { spec };
  } catch (err) {
    return { error: `ConfigMap ${cm.metadata?.name}: "${DEFAULTS_KEY}" is not valid YAML: ${(err as Error).message}` };
  }
}

export function defaultCanaryFor(d: k8s.V1Deployment, reconcilerDefaults: Partial<CanarySpec>, namespaceDefaults: k8s.V1ConfigMap[]): Canary {
  const name = d.metadata?.name ?? '';
  const port = d.spec?.template?.spec?.containers?.[0]?.ports?.[0]?.containerPort ?? 80;
  let spec: Plain = mergeSpec({ service: { port } }, reconcilerDefaults as Plain);
  for (const cm of [...namespaceDefaults].sort((a, b) => (a.metadata?.name ?? '').localeCompare(b.metadata?.name ?? ''))) {
    const parsed = parseDefaults(cm);
    if (parsed.spec) spec = mergeSpec(spec, parsed.spec);
  }
  spec.targetRef = { apiVersion: 'apps/v1', kind: 'Deployment', name };
  return {
    apiVersion: API_VERSION,
    kind: 'Canary',
    metadata: {
      name,
      namespace: d.metadata?.namespace,
      labels: { 'app.kubernetes.io/managed-by': 'canary-gate' },
      annotations: { [GENERATED_ANNOTATION]: 'true' },
      // Deleting the Deployment deletes its generated Canary (the finalizer then has nothing to restore).
      ownerReferences: [{ apiVersion: 'apps/v1', kind: 'Deployment', name, uid: d.metadata?.uid ?? '' }],
    },
    spec: spec as unknown as CanarySpec,
  } as Canary;
}
