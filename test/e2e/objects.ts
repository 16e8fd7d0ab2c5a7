// Manifests the end-to-end tests apply, as a user would write them.

import { MANAGED_LABEL } from '../../core/contract.js';

export function deployment(name: string, opts: { image: string; replicas?: number; managed?: boolean; labels?: Record<string, string> }) {
  const labels: Record<string, string> = { ...(opts.labels ?? {}) };
  if (opts.managed) labels[MANAGED_LABEL] = 'true';
  return {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name, labels },
    spec: {
      replicas: opts.replicas ?? 2,
      selector: { matchLabels: { app: name } },
      strategy: { rollingUpdate: { maxUnavailable: 0, maxSurge: 1 } },
      template: {
        metadata: { labels: { app: name } },
        spec: {
          containers: [
            {
              name: 'app',
              image: opts.image,
              ports: [{ name: 'http', containerPort: 8080 }],
              readinessProbe: { httpGet: { path: '/ready', port: 'http' }, periodSeconds: 5 },
              resources: { requests: { cpu: '10m', memory: '16Mi' } },
            },
          ],
        },
      },
    },
  };
}

export function service(name: string, opts: { selector: Record<string, string>; managed?: boolean; type?: string; externalName?: string }) {
  const labels: Record<string, string> = {};
  if (opts.managed) labels[MANAGED_LABEL] = 'true';
  const spec: Record<string, unknown> = opts.externalName
    ? { type: 'ExternalName', externalName: opts.externalName }
    : { type: opts.type ?? 'ClusterIP', selector: opts.selector, ports: [{ name: 'http', port: 80, targetPort: 'http' }] };
  return { apiVersion: 'v1', kind: 'Service', metadata: { name, labels }, spec };
}

export function yamlOf(...objects: unknown[]): string {
  // JSON is YAML; kubectl reads a List just as it reads several documents.
  return JSON.stringify({ apiVersion: 'v1', kind: 'List', items: objects });
}
