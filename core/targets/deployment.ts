// apps/v1 Deployment: the spec under canary is spec.template, the pod template.

import { restoreOps } from '../json.js';
import type { TargetKind, TargetObject } from './kind.js';

interface DeploymentShape {
  metadata?: { generation?: number };
  spec?: { replicas?: number; template?: Record<string, unknown> };
  status?: { observedGeneration?: number; updatedReplicas?: number; readyReplicas?: number; availableReplicas?: number; replicas?: number };
}

function template(obj: TargetObject): Record<string, unknown> | undefined {
  const t = (obj as DeploymentShape).spec?.template;
  return t && typeof t === 'object' ? t : undefined;
}

/**
 * True when a Deployment has rolled out its current spec: every desired
 * replica updated, no old ones left, and at least `readyPercent` percent of
 * the desired replicas ready and available (analysis.primaryReadyThreshold /
 * canaryReadyThreshold; default 100: all of them).
 */
export function deploymentRolledOut(obj: TargetObject | undefined, readyPercent = 100): boolean {
  if (!obj) return false;
  const d = obj as DeploymentShape;
  const want = d.spec?.replicas ?? 1;
  const s = d.status ?? {};
  return (
    (s.observedGeneration ?? 0) >= (d.metadata?.generation ?? 0) &&
    (s.updatedReplicas ?? 0) >= want &&
    enoughOf(s.readyReplicas ?? 0, want, readyPercent) &&
    enoughOf(s.availableReplicas ?? 0, want, readyPercent) &&
    (s.replicas ?? 0) <= want
  );
}

/** `have` is at least `percent` percent of `want`, in integers (3 of 4 is 75 %, not 74.99...). */
export function enoughOf(have: number, want: number, percent: number): boolean {
  return have * 100 >= want * Math.min(100, Math.max(0, percent));
}

export const deploymentKind: TargetKind = {
  kind: 'Deployment',
  group: 'apps',
  version: 'v1',
  specNoun: 'pod template',
  runsPods: true,
  specUnderCanary: template,
  restoreOps(incoming, old) {
    const from = template(incoming);
    const to = template(old);
    if (!from || !to) return [];
    // Only what differs: an image change becomes one small replace.
    return restoreOps('/spec/template', from, to);
  },
  promoteOps(_live, pending) {
    return [{ op: 'replace', path: '/spec/template', value: pending }];
  },
  rolledOut: deploymentRolledOut,
  replicas(obj) {
    return (obj as DeploymentShape).spec?.replicas ?? 1;
  },
};
