// v1 Service: the spec under canary is the whole spec, less the fields the
// API server allocates (cluster IPs, IP families, node ports, the
// health-check node port). A manifest that omits them (kubectl replace,
// GitOps) is therefore no change, a copy never carries them, and promotion
// keeps the live object's.

import { jsonEqual } from '../json.js';
import type { TargetKind, TargetObject } from './kind.js';

/** Service spec fields the API server allocates. The one list: revisions, copies and promotion all use it. */
export const ALLOCATED_SERVICE_FIELDS = ['clusterIP', 'clusterIPs', 'ipFamilies', 'ipFamilyPolicy', 'healthCheckNodePort'] as const;

type ServiceSpec = Record<string, unknown> & { type?: string; ports?: unknown };

/** A Service spec without its server-allocated fields (ports lose their nodePort). A new object; the input is not changed. */
export function withoutAllocatedFields(spec: Record<string, unknown> | undefined): Record<string, unknown> | undefined {
  if (!spec || typeof spec !== 'object') return undefined;
  const out: Record<string, unknown> = { ...spec };
  for (const f of ALLOCATED_SERVICE_FIELDS) delete out[f];
  if (Array.isArray(out.ports)) {
    out.ports = out.ports.map((p) => {
      if (!p || typeof p !== 'object') return p;
      const { nodePort: _nodePort, ...port } = p as Record<string, unknown>;
      return port;
    });
  }
  return out;
}

/** The pending Service spec with the live object's server-allocated fields kept (where the type still has them). */
export function promotedServiceSpec(live: ServiceSpec, pending: ServiceSpec): Record<string, unknown> {
  const out: Record<string, unknown> = { ...pending };
  const liveType = live.type ?? 'ClusterIP';
  const pendingType = pending.type ?? 'ClusterIP';
  if (pendingType === 'ExternalName' || liveType === 'ExternalName') return out;
  for (const f of ['clusterIP', 'clusterIPs', 'ipFamilies', 'ipFamilyPolicy'] as const) {
    if (out[f] === undefined && live[f] !== undefined) out[f] = live[f];
  }
  if (pending.type !== live.type) return out;
  if (out.healthCheckNodePort === undefined && live.healthCheckNodePort !== undefined) out.healthCheckNodePort = live.healthCheckNodePort;
  if (Array.isArray(out.ports) && liveType !== 'ClusterIP') {
    const livePorts = Array.isArray(live.ports) ? (live.ports as Array<Record<string, unknown>>) : [];
    out.ports = (out.ports as Array<Record<string, unknown>>).map((p) => {
      const match = livePorts.find((lp) => lp.name === p.name && lp.port === p.port);
      return p.nodePort === undefined && match?.nodePort !== undefined ? { ...p, nodePort: match.nodePort } : p;
    });
  }
  return out;
}

function spec(obj: TargetObject): ServiceSpec | undefined {
  const s = obj.spec;
  return s && typeof s === 'object' ? (s as ServiceSpec) : undefined;
}

export const serviceKind: TargetKind = {
  kind: 'Service',
  group: '',
  version: 'v1',
  specNoun: 'Service spec',
  runsPods: false,
  specUnderCanary: (obj) => withoutAllocatedFields(spec(obj)),
  restoreOps(incoming, old) {
    const from = withoutAllocatedFields(spec(incoming));
    const to = withoutAllocatedFields(spec(old));
    if (!from || !to || jsonEqual(from, to)) return [];
    // Restored whole: the old spec carries the allocated fields the new one may lack.
    return [{ op: 'replace', path: '/spec', value: old.spec }];
  },
  promoteOps(live, pending) {
    return [{ op: 'replace', path: '/spec', value: promotedServiceSpec(spec(live) ?? {}, pending) }];
  },
  rolledOut: () => true,
  replicas: () => 0,
};
