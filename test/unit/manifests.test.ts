import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

import type { V1ClusterRole, V1Deployment, V1PodSpec, V1Role } from '@kubernetes/client-node';

import { CONFIG_TRACKING_ANNOTATION, CONFIG_TRACKING_ENABLED, MANAGED_LABEL, NAMESPACE_ENABLED_LABEL } from '../../core/contract.js';
import { HELD_KINDS, UNTRACKED_SECRET_TYPES } from '../../core/targets/index.js';
import { command, generateFiles, staleFiles } from '../../deploy/command.js';
import { crds, freeFormMaps, type JSONSchemaProps } from '../../deploy/crds.js';
import {
  RECONCILER_USER,
  SYSTEM_NAMESPACE,
  WEBHOOK_TLS_SECRET,
  baseManifests,
  webhookConfiguration,
} from '../../deploy/manifests.js';

// dist/test/unit -> repository root
const root = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
const deployDir = join(root, 'deploy');

const allObjects = baseManifests().flatMap((f) => f.objects);
function ofKind<T>(kind: string): T[] {
  return allObjects.filter((o) => o.kind === kind) as T[];
}

describe('deploy: generated files', () => {
  it('are up to date on disk (canary-gate manifests --check)', async () => {
    assert.deepEqual(await staleFiles(deployDir, generateFiles()), [], 'run `node dist/core/cli.js manifests`');
    const { log } = console;
    console.log = () => {};
    try {
      assert.equal(await command.run(['--check', '--out', join(deployDir, 'base')]), 0);
    } finally {
      console.log = log;
    }
  });

  it('write each CRD without losing a keyword on the way through the client model', async () => {
    for (const crd of crds) {
      const yaml = await readFile(join(deployDir, 'crds', `${crd.metadata.name}.yaml`), 'utf8');
      const json = JSON.stringify(crd);
      for (const key of ['x-kubernetes-int-or-string', 'x-kubernetes-validations', 'x-kubernetes-list-type', 'x-kubernetes-list-map-keys', 'default', 'pattern', 'enum', 'format', 'minimum', 'maximum', 'maxItems', 'minProperties', 'additionalProperties', 'required']) {
        const inJson = json.split(`"${key}":`).length - 1;
        const inYaml = (yaml.match(new RegExp(`^\\s*(- )?${key}:`, 'gm')) ?? []).length;
        assert.equal(inYaml, inJson, `${crd.metadata.name}: ${key}`);
      }
    }
  });

  it('--check fails when a file is stale, and writing makes it pass', async () => {
    const tmp = await mkdtemp(join(tmpdir(), 'canary-gate-manifests-'));
    const { log, error } = console;
    console.log = () => {};
    console.error = () => {};
    try {
      const base = join(tmp, 'base');
      assert.equal(await command.run(['--check', '--out', base]), 1, 'missing files');
      assert.equal(await command.run(['--out', base]), 0);
      assert.equal(await command.run(['--check', '--out', base]), 0);
      await writeFile(join(base, 'rbac.yaml'), '# edited by hand\n', { flag: 'a' });
      assert.equal(await command.run(['--check', '--out', base]), 1);
      assert.deepEqual(await staleFiles(tmp, generateFiles()), ['base/rbac.yaml']);
    } finally {
      console.log = log;
      console.error = error;
      await rm(tmp, { recursive: true, force: true });
    }
  });

  it('refuse unknown flags', async () => {
    const { error } = console;
    console.error = () => {};
    try {
      assert.equal(await command.run(['--nope']), 2);
    } finally {
      console.error = error;
    }
  });
});

describe('deploy: MutatingWebhookConfiguration', () => {
  const config = webhookConfiguration();
  const hook = config.webhooks?.[0];

  it('has one webhook on the Service, with failurePolicy Fail', () => {
    assert.equal(config.metadata?.name, 'canary-gate');
    assert.equal(config.webhooks?.length, 1);
    assert.ok(hook);
    assert.equal(hook.name, 'mutate.canarygate.dev');
    assert.deepEqual(hook.clientConfig.service, { name: 'canary-gate-webhook', namespace: SYSTEM_NAMESPACE, path: '/mutate', port: 443 });
    assert.equal(hook.clientConfig.url, undefined);
    assert.equal(hook.clientConfig.caBundle, undefined, 'left to the cert job, so re-applying never clears it');
    assert.equal(hook.failurePolicy, 'Fail');
  });

  it('matches UPDATE and CREATE of apps/v1 deployments and v1 services, UPDATE of v1 configmaps and secrets, no subresources', () => {
    assert.ok(hook);
    assert.deepEqual(hook.rules, [
      { apiGroups: ['apps'], apiVersions: ['v1'], resources: ['deployments'], operations: ['UPDATE', 'CREATE'], scope: 'Namespaced' },
      { apiGroups: [''], apiVersions: ['v1'], resources: ['services'], operations: ['UPDATE', 'CREATE'], scope: 'Namespaced' },
      { apiGroups: [''], apiVersions: ['v1'], resources: ['configmaps', 'secrets'], operations: ['UPDATE'], scope: 'Namespaced' },
    ]);
    for (const rule of hook.rules ?? []) for (const r of rule.resources ?? []) assert.ok(!r.includes('/') && r !== '*', r);
  });

  it('matches exactly the kinds the webhook holds changes of (one adapter per matched resource)', () => {
    assert.ok(hook);
    const matched = (hook.rules ?? []).flatMap((rule) => (rule.resources ?? []).map((r) => `${rule.apiGroups?.[0] ?? ''}/${r}`)).sort();
    const held = HELD_KINDS.map((k) => `${k.group}/${k.kind.toLowerCase()}s`).sort();
    assert.deepEqual(matched, held);
  });

  it('selects enabled namespaces except kube-system and its own, and managed objects only', () => {
    assert.ok(hook);
    assert.deepEqual(hook.namespaceSelector, {
      matchLabels: { [NAMESPACE_ENABLED_LABEL]: 'true' },
      matchExpressions: [{ key: 'kubernetes.io/metadata.name', operator: 'NotIn', values: ['kube-system', SYSTEM_NAMESPACE] }],
    });
    assert.deepEqual(hook.objectSelector, { matchLabels: { [MANAGED_LABEL]: 'true' } });
  });

  it('has no side effects, speaks v1, answers within 5s, is not reinvoked', () => {
    assert.ok(hook);
    assert.equal(hook.sideEffects, 'None');
    assert.deepEqual(hook.admissionReviewVersions, ['v1']);
    assert.equal(hook.timeoutSeconds, 5);
    assert.equal(hook.reinvocationPolicy, 'Never');
  });

  it("skips the reconciler's own requests", () => {
    assert.ok(hook);
    assert.deepEqual(hook.matchConditions?.[0], { name: 'not-the-reconciler', expression: `request.userInfo.username != "${RECONCILER_USER}"` });
    const other = webhookConfiguration({ reconcilerUser: 'admin' }).webhooks?.[0];
    assert.equal(other?.matchConditions?.[0]?.expression, 'request.userInfo.username != "admin"');
  });

  it('is not called for Secrets of the types configTracked() skips, unless annotated enabled (e2e: configs-webhook)', () => {
    assert.ok(hook);
    assert.equal(hook.matchConditions?.length, 2);
    const skip = hook.matchConditions?.[1];
    assert.equal(skip?.name, 'not-an-untracked-secret');
    for (const type of UNTRACKED_SECRET_TYPES) assert.ok(skip?.expression.includes(JSON.stringify(type)), type);
    assert.ok(skip?.expression.includes(`oldObject.metadata.annotations["${CONFIG_TRACKING_ANNOTATION}"] == "${CONFIG_TRACKING_ENABLED}"`));
  });

  it('can point at a URL with a given CA, name and failure policy (local e2e)', () => {
    const pem = '-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n';
    const local = webhookConfiguration({ url: 'https://127.0.0.1:8443/mutate', caBundle: pem, failurePolicy: 'Ignore', name: 'canary-gate-e2e' });
    const h = local.webhooks?.[0];
    assert.equal(local.metadata?.name, 'canary-gate-e2e');
    assert.deepEqual(h?.clientConfig, { url: 'https://127.0.0.1:8443/mutate', caBundle: Buffer.from(pem).toString('base64') });
    assert.equal(h?.failurePolicy, 'Ignore');
    assert.equal(webhookConfiguration({ caBundle: 'QUJD' }).webhooks?.[0]?.clientConfig.caBundle, 'QUJD', 'base64 passes through');
  });
});

describe('deploy: CRDs', () => {
  /** Every object schema below `node`; calls visit(path, schema). */
  function walk(node: JSONSchemaProps, path: string, visit: (path: string, s: JSONSchemaProps) => void): void {
    visit(path, node);
    for (const [k, v] of Object.entries(node.properties ?? {})) walk(v, `${path}.${k}`, visit);
    if (node.additionalProperties) walk(node.additionalProperties, `${path}{}`, visit);
    if (node.items) walk(node.items, `${path}[]`, visit);
  }

  // The documented free-form maps (all map string to string).
  const FREE_FORM: Record<string, string[]> = {
    Canary: [
      '.spec.service.headers.request.add',
      '.spec.service.headers.request.set',
      '.spec.service.headers.response.add',
      '.spec.service.headers.response.set',
      '.spec.service.apex.labels',
      '.spec.service.apex.annotations',
      '.spec.service.primary.labels',
      '.spec.service.primary.annotations',
      '.spec.service.canary.labels',
      '.spec.service.canary.annotations',
      '.spec.analysis.metrics[].templateVariables',
      '.spec.analysis.webhooks[].metadata',
      '.spec.service.match[].sourceLabels',
      '.spec.analysis.match[].sourceLabels',
      '.status.lastPromotion.labels',
      '.status.lastFailure.labels',
    ],
    MetricTemplate: ['.spec.provider.headers'],
    AlertProvider: [],
  };

  // Objects of another API passed through unchanged (validated by that API's CRD on write).
  const PASS_THROUGH: Record<string, string[]> = { Canary: ['.spec.service.trafficPolicy'] };

  for (const crd of crds) {
    const kind = crd.spec.names.kind;
    const version = crd.spec.versions[0];
    const schema = version?.schema.openAPIV3Schema as JSONSchemaProps;

    it(`${kind}: every object schema is closed`, () => {
      walk(schema, '', (path, s) => {
        // Istio's DestinationRule trafficPolicy is passed through as written: Istio's own CRD validates it when the router writes it.
        if (PASS_THROUGH[kind]?.includes(path)) return;
        assert.equal(s['x-kubernetes-preserve-unknown-fields'], undefined, `${kind}${path} preserves unknown fields`);
        if (s.type === 'object' && path !== '.metadata') {
          assert.ok(s.properties || s.additionalProperties, `${kind}${path} is an object without properties`);
          if (s.additionalProperties) assert.equal(s.properties, undefined, `${kind}${path} mixes properties and additionalProperties`);
        }
        if (s.type === 'array') assert.ok(s.items, `${kind}${path} has no items schema`);
        if (!s.type) assert.equal(s['x-kubernetes-int-or-string'], true, `${kind}${path} has no type`);
      });
      assert.deepEqual(freeFormMaps(schema).sort(), [...(FREE_FORM[kind] ?? [])].sort());
    });

    it(`${kind}: namespaced canarygate.dev/v1alpha1 with a status subresource`, () => {
      assert.equal(crd.spec.group, 'canarygate.dev');
      assert.equal(crd.spec.scope, 'Namespaced');
      assert.equal(crd.spec.versions.length, 1);
      assert.equal(version?.name, 'v1alpha1');
      assert.ok(version?.served && version.storage);
      assert.deepEqual(version?.subresources, { status: {} });
      assert.deepEqual(crd.spec.names.categories, ['canary-gate']);
      assert.deepEqual(schema.required, ['spec']);
    });

    it(`${kind}: printer columns point at fields of the schema`, () => {
      for (const col of version?.additionalPrinterColumns ?? []) {
        if (col.jsonPath.startsWith('.metadata.')) continue;
        let node: JSONSchemaProps | undefined = schema;
        for (const part of col.jsonPath.slice(1).split('.')) node = node?.properties?.[part];
        assert.ok(node, `${kind} column ${col.name}: ${col.jsonPath}`);
      }
    });
  }

  it('Canary: Flagger field names, enums, minimums and defaults', () => {
    const spec = crds[0]?.spec.versions[0]?.schema.openAPIV3Schema.properties?.spec as JSONSchemaProps;
    const p = (path: string): JSONSchemaProps => {
      let node: JSONSchemaProps | undefined = spec;
      for (const part of path.split('.')) node = part === '[]' ? node?.items : node?.properties?.[part];
      assert.ok(node, path);
      return node;
    };
    assert.deepEqual(spec.required, ['targetRef', 'service']);
    assert.deepEqual(p('targetRef.kind').enum, ['Deployment', 'Service']);
    assert.deepEqual(p('autoscalerRef.kind').enum, ['HorizontalPodAutoscaler']);
    assert.match(p('provider')['x-kubernetes-validations']?.[0]?.rule ?? '', /'istio'.*'linkerd'.*'osm'.*'nginx'.*'traefik'.*'contour'.*smi:v1alpha\[123\]/);
    assert.equal(p('provider').default, 'kubernetes');
    assert.equal(p('service.targetPort')['x-kubernetes-int-or-string'], true);
    assert.equal(p('analysis.interval').default, '60s');
    assert.equal(p('analysis.threshold').minimum, 1);
    assert.equal(p('analysis.threshold').default, 5);
    for (const w of ['maxWeight', 'stepWeight', 'stepWeightPromotion']) {
      assert.equal(p(`analysis.${w}`).minimum, 1);
      assert.equal(p(`analysis.${w}`).maximum, 100);
    }
    assert.equal(p('analysis.stepWeights.[]').maximum, 100);
    assert.equal(p('analysis.iterations').minimum, 0);
    assert.equal(p('analysis.canaryReadyThreshold').maximum, 100);
    assert.deepEqual(p('analysis.metrics.[].noDataPolicy').enum, ['fail', 'pass', 'hold']);
    assert.equal(p('analysis.metrics.[].noDataPolicy').default, 'fail');
    assert.equal(p('analysis.webhooks.[].url').format, 'uri');
    assert.equal(p('analysis.webhooks.[].retries').minimum, 0);
    assert.equal(p('analysis.webhooks.[].type').enum?.length, 8);
    assert.deepEqual(p('analysis.alerts.[].severity').enum, ['info', 'warn', 'error']);
    assert.equal(p('progressDeadlineSeconds').minimum, 1);
    assert.equal(p('progressDeadlineSeconds').default, 600);
    const re = new RegExp(p('analysis.interval').pattern as string);
    for (const ok of ['1s', '30s', '1m', '1m30s', '2h', '500ms', '1.5m']) assert.ok(re.test(ok), ok);
    for (const bad of ['', '1', 'm', '1 m', '-1s', '1d', '60']) assert.ok(!re.test(bad), bad);
  });
});

describe('deploy: RBAC', () => {
  const roles = [...ofKind<V1ClusterRole>('ClusterRole'), ...ofKind<V1Role>('Role')];

  it('has no wildcard verbs, resources or API groups', () => {
    assert.ok(roles.length >= 4);
    for (const role of roles) {
      for (const rule of role.rules ?? []) {
        for (const field of [rule.verbs, rule.resources, rule.apiGroups, rule.resourceNames ?? []]) {
          assert.ok(!field?.some((v) => v.includes('*')), `${role.metadata?.name}: ${JSON.stringify(rule)}`);
        }
        assert.equal(rule.nonResourceURLs, undefined);
        assert.ok(!rule.verbs.some((v) => ['escalate', 'bind', 'impersonate', 'deletecollection'].includes(v)), role.metadata?.name);
      }
    }
  });

  it('gives the reconciler on ConfigMaps and Secrets exactly what tracking, copies and promotion need: no deletecollection, no wildcard', () => {
    const reconciler = roles.find((r) => r.metadata?.name === 'canary-gate-reconciler');
    const secretRules = reconciler?.rules?.filter((r) => r.resources?.includes('secrets')) ?? [];
    assert.deepEqual(secretRules.flatMap((r) => r.verbs), ['get', 'list', 'watch', 'create', 'update', 'patch', 'delete']);
    assert.deepEqual(secretRules.flatMap((r) => r.resources).sort(), ['configmaps', 'secrets']);
  });

  it('limits the cert job to its Secret and its webhook configuration by name', () => {
    const role = roles.find((r) => r.kind === 'Role' && r.metadata?.name === 'canary-gate-certs');
    for (const rule of role?.rules ?? []) {
      if (rule.verbs.includes('create')) assert.deepEqual(rule.verbs, ['create'], 'create cannot be limited by name; nothing else rides on it');
      else assert.deepEqual(rule.resourceNames, [WEBHOOK_TLS_SECRET]);
    }
    const cluster = roles.find((r) => r.kind === 'ClusterRole' && r.metadata?.name === 'canary-gate-certs');
    assert.deepEqual(cluster?.rules, [
      { apiGroups: ['admissionregistration.k8s.io'], resources: ['mutatingwebhookconfigurations'], resourceNames: ['canary-gate'], verbs: ['get', 'patch'] },
    ]);
  });
});

describe('deploy: workloads', () => {
  const deployments = ofKind<V1Deployment>('Deployment');
  const podSpecs: [string, V1PodSpec][] = [
    ...deployments.map((d) => [d.metadata?.name ?? '', d.spec?.template.spec as V1PodSpec] as [string, V1PodSpec]),
    ...allObjects
      .filter((o) => o.kind === 'Job')
      .map((j) => [j.metadata?.name ?? '', (j as { spec: { template: { spec: V1PodSpec } } }).spec.template.spec] as [string, V1PodSpec]),
  ];

  it('run hardened: non-root, read-only root, no capabilities, RuntimeDefault seccomp', () => {
    assert.equal(podSpecs.length, 4);
    for (const [name, spec] of podSpecs) {
      assert.equal(spec.securityContext?.runAsNonRoot, true, name);
      assert.equal(spec.securityContext?.seccompProfile?.type, 'RuntimeDefault', name);
      for (const c of spec.containers) {
        assert.equal(c.securityContext?.readOnlyRootFilesystem, true, name);
        assert.equal(c.securityContext?.allowPrivilegeEscalation, false, name);
        assert.deepEqual(c.securityContext?.capabilities?.drop, ['ALL'], name);
        assert.ok(c.resources?.requests, name);
      }
    }
  });

  it('runs the load tester without an API token, sending load to in-cluster Service names only', () => {
    const lt = deployments.find((d) => d.metadata?.name === 'canary-gate-loadtester');
    const spec = lt?.spec?.template.spec;
    assert.equal(spec?.automountServiceAccountToken, false);
    const args = spec?.containers[0]?.args ?? [];
    assert.equal(args[0], 'loadtester');
    const hosts = args.flatMap((a, i) => (args[i - 1] === '--allow-host' ? [a] : []));
    assert.deepEqual(hosts, ['*.svc', '*.svc.cluster.local']);
    assert.ok(allObjects.some((o) => o.kind === 'Service' && o.metadata?.name === 'canary-gate-loadtester'));
  });

  it('runs two webhook replicas with a PDB, HTTPS probes and the TLS Secret', () => {
    const webhook = deployments.find((d) => d.metadata?.name === 'canary-gate-webhook');
    assert.equal(webhook?.spec?.replicas, 2);
    const pdb = allObjects.find((o) => o.kind === 'PodDisruptionBudget' && o.metadata?.name === 'canary-gate-webhook') as { spec: { minAvailable: number } } | undefined;
    assert.equal(pdb?.spec.minAvailable, 1);
    const spec = webhook?.spec?.template.spec;
    const c = spec?.containers[0];
    assert.equal(c?.readinessProbe?.httpGet?.path, '/readyz');
    assert.equal(c?.readinessProbe?.httpGet?.scheme, 'HTTPS');
    assert.equal(c?.livenessProbe?.httpGet?.path, '/healthz');
    assert.equal(c?.livenessProbe?.httpGet?.scheme, 'HTTPS');
    assert.deepEqual(c?.args?.slice(0, 1), ['webhook']);
    assert.ok(c?.args?.includes(RECONCILER_USER));
    assert.ok(spec?.volumes?.some((v) => v.secret?.secretName === WEBHOOK_TLS_SECRET));
    assert.ok(spec?.topologySpreadConstraints?.length);
    assert.equal(spec?.automountServiceAccountToken, false);
  });

  it('lets the certs bootstrap Job be re-created on upgrade: deleted after it finishes, a Sync hook for Argo CD', () => {
    const job = allObjects.find((o) => o.kind === 'Job') as { metadata: { name: string; annotations?: Record<string, string> }; spec: { ttlSecondsAfterFinished?: number } };
    assert.equal(job.metadata.name, 'canary-gate-certs-bootstrap');
    assert.ok((job.spec.ttlSecondsAfterFinished ?? 0) > 0 && (job.spec.ttlSecondsAfterFinished ?? 0) <= 3600);
    assert.equal(job.metadata.annotations?.['argocd.argoproj.io/hook'], 'Sync');
    assert.equal(job.metadata.annotations?.['argocd.argoproj.io/hook-delete-policy'], 'BeforeHookCreation');
  });

  it('runs two leader-elected reconciler replicas', () => {
    const reconciler = deployments.find((d) => d.metadata?.name === 'canary-gate-reconciler');
    assert.equal(reconciler?.spec?.replicas, 2);
    assert.deepEqual(reconciler?.spec?.template.spec?.containers[0]?.args, ['reconciler', '--leader-elect']);
  });
});
