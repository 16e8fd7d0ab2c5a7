// The canary copy builders: what the copy carries from the target, what it
// must never carry, and when an existing copy needs a write.

import assert from 'node:assert/strict';
import type * as k8s from '@kubernetes/client-node';
import { MANAGED_LABEL, PENDING_REVISION, PENDING_SPEC, REVISION_LABEL, ROLE_LABEL, canaryName } from '../../core/contract.js';
import type { Canary } from '../../core/api/types.js';
import { withoutAllocatedFields as serviceSpecForRevision } from '../../core/targets/index.js';
import { buildCanaryDeployment, buildCanaryService, buildRouterService, canaryLabelValue, copyChange, mergeRouterService, needsUpdate, renameSelectorLabels, routerServiceNeedsUpdate, routerServicePorts, serviceCopySpec } from '../../reconciler/apply/copy.js';
import { deployment as fixtureDeployment, service as fixtureService } from '../fixtures/objects.js';

const CANARY_UID = '0c4b7f3e-3f5a-4e0b-9a51-7d0f5b2c9e11';

function canary(over: Partial<Canary['spec']> = {}): Canary {
  return {
    apiVersion: 'canarygate.dev/v1alpha1',
    kind: 'Canary',
    metadata: { name: 'checkout', namespace: 'shop', uid: CANARY_UID },
    spec: { targetRef: { kind: 'Deployment', name: 'checkout' }, service: { port: 80 }, ...over },
  };
}

function target(): k8s.V1Deployment {
  const d = fixtureDeployment() as unknown as k8s.V1Deployment;
  d.metadata!.annotations = {
    ...d.metadata!.annotations,
    [PENDING_REVISION]: 'a1b2c3d4e5f6',
    [PENDING_SPEC]: '{"spec":{}}',
    'kubectl.kubernetes.io/last-applied-configuration': '{"big":"blob"}',
    'argocd.argoproj.io/tracking-id': 'shop:apps/Deployment:shop/checkout',
    'team.example.com/owner': 'payments',
  };
  return d;
}

function pendingTemplate(d: k8s.V1Deployment, image = 'registry.example.com/shop/checkout:1.15.0'): k8s.V1PodTemplateSpec {
  const t = structuredClone(d.spec!.template);
  t.spec!.containers[0]!.image = image;
  return t;
}

function build(opts: { replicas?: number; podLabels?: Record<string, string>; revision?: string } = {}) {
  const d = target();
  const t = pendingTemplate(d);
  return buildCanaryDeployment({
    target: d,
    pendingTemplate: t,
    revision: opts.revision ?? 'a1b2c3d4e5f6',
    replicas: opts.replicas ?? 1,
    podLabels: opts.podLabels ?? { ...(t.metadata?.labels ?? {}) },
    canary: canary(),
  });
}

describe('canaryName', () => {
  it('appends -canary', () => {
    assert.equal(canaryName('checkout'), 'checkout-canary');
  });
});

describe('buildCanaryDeployment', () => {
  it('is <name>-canary in the target namespace, owned by the Canary as controller', () => {
    const c = build();
    assert.equal(c.apiVersion, 'apps/v1');
    assert.equal(c.kind, 'Deployment');
    assert.equal(c.metadata?.name, 'checkout-canary');
    assert.equal(c.metadata?.namespace, 'shop');
    assert.deepEqual(c.metadata?.ownerReferences, [{ apiVersion: 'canarygate.dev/v1alpha1', kind: 'Canary', name: 'checkout', uid: CANARY_UID, controller: true }]);
  });

  it('labels the copy and its Pods with the revision and role=canary, and never with the managed label', () => {
    const c = build();
    assert.equal(c.metadata?.labels?.[REVISION_LABEL], 'a1b2c3d4e5f6');
    assert.equal(c.metadata?.labels?.[ROLE_LABEL], 'canary');
    assert.equal(c.metadata?.labels?.[MANAGED_LABEL], undefined);
    assert.equal(c.spec?.template.metadata?.labels?.[REVISION_LABEL], 'a1b2c3d4e5f6');
    assert.equal(c.spec?.template.metadata?.labels?.[ROLE_LABEL], 'canary');
    assert.equal(c.spec?.template.metadata?.labels?.app, 'checkout');
  });

  it('does not carry control annotations, last-applied-configuration or GitOps ownership markers', () => {
    const c = build();
    const a = c.metadata?.annotations ?? {};
    assert.equal(a[PENDING_REVISION], undefined);
    assert.equal(a[PENDING_SPEC], undefined);
    assert.equal(a['kubectl.kubernetes.io/last-applied-configuration'], undefined);
    assert.equal(a['argocd.argoproj.io/tracking-id'], undefined);
    assert.equal(a['deployment.kubernetes.io/revision'], undefined);
    assert.equal(a['team.example.com/owner'], 'payments');
    assert.equal(c.metadata?.labels?.['app.kubernetes.io/instance'], undefined);
  });

  it('selects on the target selector keys with the Pod labels given, plus role=canary (never the primary Pods)', () => {
    const c = build({ podLabels: { app: 'checkout-canary', tier: 'backend' } });
    assert.deepEqual(c.spec?.selector, { matchLabels: { app: 'checkout-canary', [ROLE_LABEL]: 'canary' } });
    // Every selector label is on the canary template...
    for (const [k, v] of Object.entries(c.spec!.selector.matchLabels!)) assert.equal(c.spec?.template.metadata?.labels?.[k], v);
    // ...and the primary's Pods lack role=canary.
    const primaryLabels = target().spec!.template.metadata!.labels!;
    assert.ok(Object.entries(c.spec!.selector.matchLabels!).some(([k, v]) => primaryLabels[k] !== v));
  });

  it('returns the selector with sorted keys, as the API server stores it', () => {
    const d = target();
    d.spec!.selector = { matchLabels: { zone: 'a', app: 'checkout' } };
    const t = pendingTemplate(d);
    t.metadata!.labels = { ...t.metadata!.labels, zone: 'a' };
    const c = buildCanaryDeployment({ target: d, pendingTemplate: t, revision: 'r', replicas: 1, podLabels: t.metadata!.labels!, canary: canary() });
    assert.deepEqual(Object.keys(c.spec!.selector.matchLabels!), ['app', ROLE_LABEL, 'zone']);
  });

  it('runs the pending template, with the replicas given and the target strategy', () => {
    const c = build({ replicas: 3 });
    assert.equal(c.spec?.replicas, 3);
    assert.equal(c.spec?.template.spec?.containers[0]?.image, 'registry.example.com/shop/checkout:1.15.0');
    assert.deepEqual(c.spec?.strategy, target().spec?.strategy);
    assert.equal(c.spec?.template.metadata?.annotations?.['prometheus.io/scrape'], 'true');
  });

  it('does not modify its inputs', () => {
    const d = target();
    const t = pendingTemplate(d);
    const before = JSON.stringify({ d, t });
    buildCanaryDeployment({ target: d, pendingTemplate: t, revision: 'r', replicas: 2, podLabels: { app: 'checkout' }, canary: canary() });
    assert.equal(JSON.stringify({ d, t }), before);
  });
});

describe('buildCanaryService', () => {
  function liveService(): k8s.V1Service {
    const s = fixtureService() as unknown as k8s.V1Service;
    s.spec = { ...s.spec, type: 'NodePort', clusterIP: '10.0.0.42', clusterIPs: ['10.0.0.42'], ipFamilies: ['IPv4'], ipFamilyPolicy: 'SingleStack' };
    s.spec.ports = [{ name: 'http', port: 80, targetPort: 'http', nodePort: 30080, protocol: 'TCP' }];
    return s;
  }

  it('is <name>-canary with the pending spec minus every server-allocated field', () => {
    const live = liveService();
    const pending = { ...(live.spec as Record<string, unknown>), selector: { app: 'checkout-v2' }, healthCheckNodePort: 31000 };
    const c = buildCanaryService({ targetService: live, pendingSpec: pending, revision: 'b1', canary: canary({ targetRef: { kind: 'Service', name: live.metadata!.name! } }) });
    assert.equal(c.metadata?.name, `${live.metadata!.name}-canary`);
    for (const f of ['clusterIP', 'clusterIPs', 'ipFamilies', 'ipFamilyPolicy', 'healthCheckNodePort']) assert.equal((c.spec as Record<string, unknown>)[f], undefined, f);
    assert.equal(c.spec?.ports?.[0]?.nodePort, undefined);
    assert.deepEqual(c.spec?.selector, { app: 'checkout-v2' });
    assert.equal(c.spec?.type, 'NodePort');
    assert.equal(c.metadata?.labels?.[REVISION_LABEL], 'b1');
    assert.equal(c.metadata?.labels?.[MANAGED_LABEL], undefined);
    assert.equal(c.metadata?.ownerReferences?.[0]?.controller, true);
    // The input is untouched.
    assert.equal(pending.healthCheckNodePort, 31000);
  });

  it('accepts the pending spec exactly as the webhook stores it', () => {
    const live = liveService();
    const pending = serviceSpecForRevision(live.spec as Record<string, unknown>)!;
    const c = buildCanaryService({ targetService: live, pendingSpec: pending, revision: 'b1', canary: canary() });
    assert.deepEqual(c.spec, serviceCopySpec(live.spec as Record<string, unknown>));
  });
});

describe('needsUpdate / copyChange', () => {
  /** The copy as the API server would return it: defaults, status, managedFields added. */
  function stored(c: k8s.V1Deployment): k8s.V1Deployment {
    const s = structuredClone(c);
    s.metadata = { ...s.metadata, uid: 'u1', resourceVersion: '77', generation: 3, labels: { ...s.metadata!.labels, extra: 'added-by-someone' } };
    s.spec!.template.spec!.containers[0]!.terminationMessagePath = '/dev/termination-log';
    s.spec!.template.spec!.dnsPolicy = 'ClusterFirst';
    s.status = { replicas: 1, readyReplicas: 1 };
    return s;
  }

  it('is false when only server-side defaults and foreign labels differ', () => {
    const desired = build();
    assert.equal(needsUpdate(stored(desired), desired), false);
  });

  it('is true when the replicas differ', () => {
    const existing = stored(build({ replicas: 1 }));
    assert.equal(copyChange(existing, build({ replicas: 2 })), 'update');
  });

  it('is true when the revision differs (the template is compared through its revision label)', () => {
    const existing = stored(build({ revision: 'aaaaaaaaaaaa' }));
    assert.equal(copyChange(existing, build({ revision: 'bbbbbbbbbbbb' })), 'update');
  });

  it('asks for a re-creation when the selector changes (it is immutable)', () => {
    const existing = stored(build({ podLabels: { app: 'checkout', tier: 'backend' } }));
    const desired = build({ podLabels: { app: 'checkout-canary', tier: 'backend' } });
    assert.equal(copyChange(existing, desired), 'recreate');
    assert.equal(needsUpdate(existing, desired), true);
  });

  it('is true when the ownerReference is missing', () => {
    const existing = stored(build());
    delete existing.metadata!.ownerReferences;
    assert.equal(needsUpdate(existing, build()), true);
  });

  it('compares a Service copy by its revision label', () => {
    const live = fixtureService() as unknown as k8s.V1Service;
    const a = buildCanaryService({ targetService: live, pendingSpec: live.spec as Record<string, unknown>, revision: 'r1', canary: canary() });
    const storedA = structuredClone(a);
    storedA.spec = { ...storedA.spec, clusterIP: '10.0.0.9', clusterIPs: ['10.0.0.9'] };
    assert.equal(needsUpdate(storedA, a), false);
    const b = buildCanaryService({ targetService: live, pendingSpec: { ...(live.spec as object), selector: { app: 'v2' } }, revision: 'r2', canary: canary() });
    assert.equal(needsUpdate(storedA, b), true);
  });
});

describe('label renaming', () => {
  it('appends -canary to the selector labels only', () => {
    assert.deepEqual(renameSelectorLabels({ app: 'web', tier: 'frontend', version: '1.2' }, ['app', 'tier', 'absent']), {
      app: 'web-canary',
      tier: 'frontend-canary',
      version: '1.2',
    });
  });

  it('keeps values valid label values (<= 63 chars, alphanumeric at the end)', () => {
    const long = 'a'.repeat(70);
    const v = canaryLabelValue(long);
    assert.ok(v.length <= 63);
    assert.match(v, /^[a-z0-9]([-a-z0-9_.]*[a-z0-9])?$/);
    assert.ok(v.endsWith('-canary'));
    assert.equal(canaryLabelValue(`${'b'.repeat(55)}-x`), `${'b'.repeat(55)}-canary`);
    assert.equal(canaryLabelValue(''), 'canary');
  });
});

describe('router Services', () => {
  it('take the apex Service ports (node ports dropped), else spec.service', () => {
    const apex: k8s.V1Service = { spec: { ports: [{ name: 'http', port: 80, targetPort: 'http', nodePort: 30001, protocol: 'TCP' }] } };
    assert.deepEqual(routerServicePorts({ port: 80 }, apex), [{ name: 'http', port: 80, targetPort: 'http', protocol: 'TCP' }]);
    assert.deepEqual(routerServicePorts({ port: 9898, portName: 'web', targetPort: 8080 }, undefined), [{ name: 'web', port: 9898, targetPort: 8080, protocol: 'TCP' }]);
    assert.deepEqual(routerServicePorts({ port: 9898 }, undefined), [{ name: 'http', port: 9898, targetPort: 9898, protocol: 'TCP' }]);
  });

  it('name every port of a multi-port Service', () => {
    const apex: k8s.V1Service = { spec: { ports: [{ port: 8080 }] } };
    const ports = routerServicePorts({ port: 80 }, apex);
    assert.equal(ports.length, 2);
    assert.ok(ports.every((p) => p.name));
    assert.equal(new Set(ports.map((p) => p.name)).size, 2);
  });

  it('compare equal to their stored form and merge over it keeping allocated fields', () => {
    const c = canary();
    const desired = buildRouterService({ name: 'checkout-primary', namespace: 'shop', selector: { app: 'checkout' }, ports: [{ name: 'http', port: 80, targetPort: 8080 }], canary: c });
    const existing = structuredClone(desired);
    existing.metadata = { ...existing.metadata, resourceVersion: '5', labels: { ...existing.metadata!.labels, mine: 'x' } };
    existing.spec = { ...existing.spec, clusterIP: '10.0.0.7', clusterIPs: ['10.0.0.7'], sessionAffinity: 'None', ports: [{ name: 'http', port: 80, targetPort: 8080, protocol: 'TCP' }] };
    assert.equal(routerServiceNeedsUpdate(existing, desired), false);
    const moved = buildRouterService({ name: 'checkout-primary', namespace: 'shop', selector: { app: 'checkout', tier: 'web' }, ports: desired.spec!.ports!, canary: c });
    assert.equal(routerServiceNeedsUpdate(existing, moved), true);
    const merged = mergeRouterService(existing, moved, c);
    assert.equal(merged.spec?.clusterIP, '10.0.0.7');
    assert.equal(merged.metadata?.resourceVersion, '5');
    assert.equal(merged.metadata?.labels?.mine, 'x');
    assert.deepEqual(merged.spec?.selector, { app: 'checkout', tier: 'web' });
  });
});
