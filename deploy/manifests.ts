// The kustomize base of canary-gate, as typed objects (the @kubernetes/client-node
// models, so a misspelt field does not compile). `canary-gate manifests`
// writes them to deploy/base; deploy/crds holds the CRDs (deploy/crds.ts).

import { allRouterResources } from '../core/providers.js';
import type {
  AdmissionregistrationV1WebhookClientConfig,
  KubernetesObject,
  V1ClusterRole,
  V1ClusterRoleBinding,
  V1Container,
  V1CronJob,
  V1Deployment,
  V1Job,
  V1MutatingWebhookConfiguration,
  V1Namespace,
  V1PodDisruptionBudget,
  V1PodSpec,
  V1PolicyRule,
  V1Role,
  V1RoleBinding,
  V1Service,
  V1ServiceAccount,
} from '@kubernetes/client-node';

import { CONFIG_TRACKING_ANNOTATION, CONFIG_TRACKING_ENABLED, GROUP, MANAGED_LABEL, memberLeaseName, NAMESPACE_ENABLED_LABEL, shardLeaseName, TRUE } from '../core/contract.js';
import { UNTRACKED_SECRET_TYPES } from '../core/targets/config.js';

// ---------------------------------------------------------------- names

export const SYSTEM_NAMESPACE = 'canary-gate-system';
export const WEBHOOK_NAME = 'canary-gate-webhook';
export const RECONCILER_NAME = 'canary-gate-reconciler';
export const CERTS_NAME = 'canary-gate-certs';
export const LOADTESTER_NAME = 'canary-gate-loadtester';
/** Plain-HTTP port of the load tester (gates POST to its Service on port 80). */
export const LOADTESTER_PORT = 8080;
export const WEBHOOK_SERVICE = WEBHOOK_NAME;
export const WEBHOOK_TLS_SECRET = 'canary-gate-webhook-tls';
export const WEBHOOK_CONFIGURATION_NAME = 'canary-gate';
export const MUTATING_WEBHOOK_NAME = `mutate.${GROUP}`;
export const WEBHOOK_PATH = '/mutate';
/** Port the webhook container listens on (HTTPS); the Service maps 443 to it. */
export const WEBHOOK_PORT = 8443;
/** Plain-HTTP port of the webhook's /metrics (its default). */
export const WEBHOOK_METRICS_PORT = 8080;
/** Plain-HTTP port of the reconciler's /healthz and /readyz. */
export const RECONCILER_HEALTH_PORT = 8081;
/** The Lease the reconciler replicas elect a leader with, in SYSTEM_NAMESPACE. */
export const RECONCILER_LEASE = 'canary-gate-reconciler';
export const RECONCILER_USER = `system:serviceaccount:${SYSTEM_NAMESPACE}:${RECONCILER_NAME}`;
/** Image reference in the manifests; kustomization.yaml `images:` rewrites it. */
export const IMAGE_NAME = 'canary-gate';
export const IMAGE_TAG = '0.1.0';
export const IMAGE = `${IMAGE_NAME}:${IMAGE_TAG}`;
export const TLS_MOUNT = '/etc/canary-gate/tls';
export const RENEW_BEFORE_DAYS = 30;

export type FailurePolicy = 'Fail' | 'Ignore';
/** See docs/adr/0001-webhook-failure-policy.md. */
export const DEFAULT_FAILURE_POLICY: FailurePolicy = 'Fail';

const PART_OF = { 'app.kubernetes.io/part-of': 'canary-gate' };
function labels(component: string): Record<string, string> {
  return { 'app.kubernetes.io/name': 'canary-gate', 'app.kubernetes.io/component': component, ...PART_OF };
}
function selectorLabels(component: string): Record<string, string> {
  return { 'app.kubernetes.io/name': 'canary-gate', 'app.kubernetes.io/component': component };
}

// ---------------------------------------------------------------- pod hardening

const podSecurity: V1PodSpec['securityContext'] = {
  runAsNonRoot: true,
  runAsUser: 65532,
  runAsGroup: 65532,
  fsGroup: 65532,
  seccompProfile: { type: 'RuntimeDefault' },
};

const containerSecurity: V1Container['securityContext'] = {
  allowPrivilegeEscalation: false,
  readOnlyRootFilesystem: true,
  runAsNonRoot: true,
  capabilities: { drop: ['ALL'] },
  seccompProfile: { type: 'RuntimeDefault' },
};

/** Spread replicas over nodes and zones; preferred only, so a one-node test cluster still runs both. */
function spread(component: string): Pick<V1PodSpec, 'topologySpreadConstraints' | 'affinity'> {
  const labelSelector = { matchLabels: selectorLabels(component) };
  return {
    topologySpreadConstraints: [
      { maxSkew: 1, topologyKey: 'kubernetes.io/hostname', whenUnsatisfiable: 'ScheduleAnyway', labelSelector },
      { maxSkew: 1, topologyKey: 'topology.kubernetes.io/zone', whenUnsatisfiable: 'ScheduleAnyway', labelSelector },
    ],
    affinity: {
      podAntiAffinity: {
        preferredDuringSchedulingIgnoredDuringExecution: [
          { weight: 100, podAffinityTerm: { topologyKey: 'kubernetes.io/hostname', labelSelector } },
        ],
      },
    },
  };
}

const tmpVolume = { name: 'tmp', emptyDir: { sizeLimit: '64Mi' } };
const tmpMount = { name: 'tmp', mountPath: '/tmp' };

// ---------------------------------------------------------------- namespace

export function namespace(): V1Namespace {
  return {
    apiVersion: 'v1',
    kind: 'Namespace',
    metadata: {
      name: SYSTEM_NAMESPACE,
      labels: {
        ...PART_OF,
        'pod-security.kubernetes.io/enforce': 'restricted',
        'pod-security.kubernetes.io/enforce-version': 'latest',
      },
    },
  };
}

// ---------------------------------------------------------------- RBAC

function serviceAccount(name: string, component: string, automount: boolean): V1ServiceAccount {
  return {
    apiVersion: 'v1',
    kind: 'ServiceAccount',
    metadata: { name, namespace: SYSTEM_NAMESPACE, labels: labels(component) },
    automountServiceAccountToken: automount,
  };
}

const RW: string[] = ['get', 'list', 'watch', 'create', 'update', 'patch', 'delete'];

/**
 * What the reconciler does, and nothing more: it adopts and updates the
 * targets, creates/updates/deletes their `-primary`/`-canary` companions
 * (create cannot be limited by name in RBAC), copies autoscalers, writes
 * HTTPRoutes for the gatewayapi provider, runs the Canary resources with
 * their status and finalizers, reads namespaces (opt-in label) and the
 * Secrets that MetricTemplates/AlertProviders reference (get only: it knows
 * the name and never lists), and records Events.
 */
function routerResourceRules(): V1PolicyRule[] {
  const byGroup = new Map<string, string[]>();
  for (const r of allRouterResources()) byGroup.set(r.group, [...(byGroup.get(r.group) ?? []), r.plural]);
  return [...byGroup].map(([group, resources]) => ({ apiGroups: [group], resources: [...new Set(resources)].sort(), verbs: RW }));
}

export function reconcilerClusterRole(): V1ClusterRole {
  const rules: V1PolicyRule[] = [
    { apiGroups: ['apps'], resources: ['deployments'], verbs: RW },
    { apiGroups: [''], resources: ['services'], verbs: RW },
    { apiGroups: ['autoscaling'], resources: ['horizontalpodautoscalers'], verbs: RW },
    // What the routers write (core/providers.ts), one rule per API group.
    ...routerResourceRules(),
    // create: a Deployment in an opted-in namespace gets a Canary from the defaults.
    { apiGroups: [GROUP], resources: ['canaries'], verbs: ['get', 'list', 'watch', 'create', 'update', 'patch'] },
    { apiGroups: [GROUP], resources: ['metrictemplates', 'alertproviders'], verbs: ['get', 'list', 'watch'] },
    {
      apiGroups: [GROUP],
      resources: ['canaries/status', 'metrictemplates/status', 'alertproviders/status'],
      verbs: ['get', 'update', 'patch'],
    },
    { apiGroups: [GROUP], resources: ['canaries/finalizers'], verbs: ['update'] },
    { apiGroups: [''], resources: ['namespaces'], verbs: ['get', 'list', 'watch'] },
    // ConfigMaps and Secrets: namespace defaults for generated Canaries, the
    // configs a target references (watched only when labelled managed or a
    // copy, but RBAC cannot restrict a watch to a label), labelling them
    // managed (patch), their copies <config>-canary (create, update,
    // delete), and promoting their pending data (patch).
    { apiGroups: [''], resources: ['configmaps', 'secrets'], verbs: ['get', 'list', 'watch', 'create', 'update', 'patch', 'delete'] },
    { apiGroups: ['', 'events.k8s.io'], resources: ['events'], verbs: ['create', 'patch'] },
  ];
  return {
    apiVersion: 'rbac.authorization.k8s.io/v1',
    kind: 'ClusterRole',
    metadata: { name: RECONCILER_NAME, labels: labels('reconciler') },
    rules,
  };
}

function clusterRoleBinding(name: string, component: string, serviceAccountName: string): V1ClusterRoleBinding {
  return {
    apiVersion: 'rbac.authorization.k8s.io/v1',
    kind: 'ClusterRoleBinding',
    metadata: { name, labels: labels(component) },
    roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name },
    subjects: [{ kind: 'ServiceAccount', name: serviceAccountName, namespace: SYSTEM_NAMESPACE }],
  };
}

function roleBinding(name: string, component: string, serviceAccountName: string): V1RoleBinding {
  return {
    apiVersion: 'rbac.authorization.k8s.io/v1',
    kind: 'RoleBinding',
    metadata: { name, namespace: SYSTEM_NAMESPACE, labels: labels(component) },
    roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name },
    subjects: [{ kind: 'ServiceAccount', name: serviceAccountName, namespace: SYSTEM_NAMESPACE }],
  };
}

/** Leader election: create the Lease once, then only read and renew that one Lease. */
/**
 * The Leases the reconciler may read and write, by name: the leader's, or
 * with `shards` > 1 each shard's and each replica's member Lease
 * (reconciler --shards, see reconciler/kit/shards.ts).
 */
export function reconcilerLeaderElectionRole(opts: { leaseName?: string; shards?: number; name?: string } = {}): V1Role {
  const lease = opts.leaseName ?? RECONCILER_LEASE;
  const shards = opts.shards ?? 1;
  const names = shards > 1 ? Array.from({ length: shards }, (_, i) => [shardLeaseName(lease, i), memberLeaseName(lease, i)]).flat() : [lease];
  return {
    apiVersion: 'rbac.authorization.k8s.io/v1',
    kind: 'Role',
    metadata: { name: opts.name ?? `${RECONCILER_NAME}-leader-election`, namespace: SYSTEM_NAMESPACE, labels: labels('reconciler') },
    rules: [
      { apiGroups: ['coordination.k8s.io'], resources: ['leases'], verbs: ['create'] },
      { apiGroups: ['coordination.k8s.io'], resources: ['leases'], resourceNames: names, verbs: ['get', 'update', 'patch'] },
    ],
  };
}

/** The cert job reads and writes one Secret (create cannot be limited by name). */
export function certsRole(): V1Role {
  return {
    apiVersion: 'rbac.authorization.k8s.io/v1',
    kind: 'Role',
    metadata: { name: CERTS_NAME, namespace: SYSTEM_NAMESPACE, labels: labels('certs') },
    rules: [
      { apiGroups: [''], resources: ['secrets'], verbs: ['create'] },
      { apiGroups: [''], resources: ['secrets'], resourceNames: [WEBHOOK_TLS_SECRET], verbs: ['get', 'update'] },
    ],
  };
}

/** ... and patches the caBundle of one MutatingWebhookConfiguration. */
export function certsClusterRole(): V1ClusterRole {
  return {
    apiVersion: 'rbac.authorization.k8s.io/v1',
    kind: 'ClusterRole',
    metadata: { name: CERTS_NAME, labels: labels('certs') },
    rules: [
      {
        apiGroups: ['admissionregistration.k8s.io'],
        resources: ['mutatingwebhookconfigurations'],
        resourceNames: [WEBHOOK_CONFIGURATION_NAME],
        verbs: ['get', 'patch'],
      },
    ],
  };
}

// ---------------------------------------------------------------- webhook

export function webhookDeployment(image = IMAGE): V1Deployment {
  const component = 'webhook';
  return {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name: WEBHOOK_NAME, namespace: SYSTEM_NAMESPACE, labels: labels(component) },
    spec: {
      replicas: 2,
      revisionHistoryLimit: 3,
      selector: { matchLabels: selectorLabels(component) },
      // Never go below the replicas that serve: with failurePolicy Fail an
      // unavailable webhook blocks updates of managed objects.
      strategy: { type: 'RollingUpdate', rollingUpdate: { maxUnavailable: 0, maxSurge: 1 } },
      template: {
        metadata: { labels: labels(component) },
        spec: {
          serviceAccountName: WEBHOOK_NAME,
          // The webhook makes no API calls: it needs no token.
          automountServiceAccountToken: false,
          securityContext: podSecurity,
          ...spread(component),
          terminationGracePeriodSeconds: 30,
          containers: [
            {
              name: 'webhook',
              image,
              imagePullPolicy: 'IfNotPresent',
              args: [
                'webhook',
                '--tls-cert',
                `${TLS_MOUNT}/tls.crt`,
                '--tls-key',
                `${TLS_MOUNT}/tls.key`,
                '--reconciler-user',
                RECONCILER_USER,
              ],
              ports: [
                { name: 'https', containerPort: WEBHOOK_PORT, protocol: 'TCP' },
                { name: 'metrics', containerPort: WEBHOOK_METRICS_PORT, protocol: 'TCP' },
              ],
              // Let the Service endpoints drop this pod before it stops accepting connections.
              lifecycle: { preStop: { sleep: { seconds: 5 } } },
              readinessProbe: {
                httpGet: { path: '/readyz', port: 'https', scheme: 'HTTPS' },
                periodSeconds: 5,
                timeoutSeconds: 2,
                failureThreshold: 2,
              },
              livenessProbe: {
                httpGet: { path: '/healthz', port: 'https', scheme: 'HTTPS' },
                initialDelaySeconds: 5,
                periodSeconds: 10,
                timeoutSeconds: 2,
                failureThreshold: 3,
              },
              resources: { requests: { cpu: '50m', memory: '64Mi' }, limits: { memory: '256Mi' } },
              securityContext: containerSecurity,
              volumeMounts: [{ name: 'tls', mountPath: TLS_MOUNT, readOnly: true }, tmpMount],
            },
          ],
          volumes: [
            // Mounted as a directory (no subPath) so a renewed certificate reaches the pod.
            { name: 'tls', secret: { secretName: WEBHOOK_TLS_SECRET, defaultMode: 0o440 } },
            tmpVolume,
          ],
        },
      },
    },
  };
}

function podDisruptionBudget(name: string, component: string): V1PodDisruptionBudget {
  return {
    apiVersion: 'policy/v1',
    kind: 'PodDisruptionBudget',
    metadata: { name, namespace: SYSTEM_NAMESPACE, labels: labels(component) },
    spec: { minAvailable: 1, selector: { matchLabels: selectorLabels(component) } },
  };
}

export function webhookService(): V1Service {
  return {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { name: WEBHOOK_SERVICE, namespace: SYSTEM_NAMESPACE, labels: labels('webhook') },
    spec: {
      type: 'ClusterIP',
      selector: selectorLabels('webhook'),
      ports: [{ name: 'https', port: 443, targetPort: 'https', protocol: 'TCP' }],
    },
  };
}

export interface WebhookConfigurationOptions {
  /** Call the webhook at this URL (e.g. https://127.0.0.1:8443/mutate) instead of the in-cluster Service. */
  url?: string;
  /** CA that signed the webhook's serving certificate: PEM text or its base64. Omitted: filled in by `canary-gate certs`. */
  caBundle?: string;
  /** Default Fail; see docs/adr/0001-webhook-failure-policy.md. */
  failurePolicy?: FailurePolicy;
  /** Name of the MutatingWebhookConfiguration; default canary-gate. */
  name?: string;
  /** The reconciler's username, whose requests skip the webhook; default the in-cluster service account. */
  reconcilerUser?: string;
}

/**
 * CEL that is false for an update of a Secret whose type is not tracked by
 * default (TLS, tokens, pull secrets; configTracked() in core/targets/config.ts)
 * and that is not annotated `enabled`: the API server does not call the
 * webhook for it at all, so a certificate renewal never waits on the webhook
 * being up (failurePolicy Fail would otherwise refuse it while it is down).
 */
export function untrackedSecretSkipExpression(): string {
  const types = JSON.stringify([...UNTRACKED_SECRET_TYPES]);
  const key = JSON.stringify(CONFIG_TRACKING_ANNOTATION);
  return (
    `!(request.resource.group == "" && request.resource.resource == "secrets" && oldObject != null && ` +
    `has(oldObject.type) && oldObject.type in ${types} && ` +
    `!(has(oldObject.metadata.annotations) && ${key} in oldObject.metadata.annotations && ` +
    `oldObject.metadata.annotations[${key}] == ${JSON.stringify(CONFIG_TRACKING_ENABLED)}))`
  );
}

function base64Bundle(caBundle: string): string {
  const text = caBundle.trim();
  return text.startsWith('-----BEGIN') ? Buffer.from(text + '\n').toString('base64') : text;
}

export function webhookConfiguration(opts: WebhookConfigurationOptions = {}): V1MutatingWebhookConfiguration {
  const clientConfig: AdmissionregistrationV1WebhookClientConfig = opts.url
    ? { url: opts.url }
    : { service: { name: WEBHOOK_SERVICE, namespace: SYSTEM_NAMESPACE, path: WEBHOOK_PATH, port: 443 } };
  if (opts.caBundle) clientConfig.caBundle = base64Bundle(opts.caBundle);
  const reconcilerUser = opts.reconcilerUser ?? RECONCILER_USER;
  return {
    apiVersion: 'admissionregistration.k8s.io/v1',
    kind: 'MutatingWebhookConfiguration',
    metadata: { name: opts.name ?? WEBHOOK_CONFIGURATION_NAME, labels: labels('webhook') },
    webhooks: [
      {
        name: MUTATING_WEBHOOK_NAME,
        clientConfig,
        rules: [
          // Only the main resources: deployments/scale (HPA, kubectl scale) and
          // */status never reach the webhook.
          { apiGroups: ['apps'], apiVersions: ['v1'], resources: ['deployments'], operations: ['UPDATE', 'CREATE'], scope: 'Namespaced' },
          { apiGroups: [''], apiVersions: ['v1'], resources: ['services'], operations: ['UPDATE', 'CREATE'], scope: 'Namespaced' },
          // The configs a target references: their data changes are held
          // like a template change (core/targets/config.ts). UPDATE only: a
          // new config holds nothing yet, and the reconciler creates its own
          // copies through the matchCondition below.
          { apiGroups: [''], apiVersions: ['v1'], resources: ['configmaps', 'secrets'], operations: ['UPDATE'], scope: 'Namespaced' },
        ],
        namespaceSelector: {
          matchLabels: { [NAMESPACE_ENABLED_LABEL]: TRUE },
          matchExpressions: [
            { key: 'kubernetes.io/metadata.name', operator: 'NotIn', values: ['kube-system', SYSTEM_NAMESPACE] },
          ],
        },
        objectSelector: { matchLabels: { [MANAGED_LABEL]: TRUE } },
        // The reconciler's own writes pass untouched anyway (webhook/decide.ts);
        // skipping them here means it can still promote and roll back while the
        // webhook is down.
        matchConditions: [
          { name: 'not-the-reconciler', expression: `request.userInfo.username != ${JSON.stringify(reconcilerUser)}` },
          { name: 'not-an-untracked-secret', expression: untrackedSecretSkipExpression() },
        ],
        matchPolicy: 'Equivalent',
        sideEffects: 'None',
        admissionReviewVersions: ['v1'],
        timeoutSeconds: 5,
        reinvocationPolicy: 'Never',
        failurePolicy: opts.failurePolicy ?? DEFAULT_FAILURE_POLICY,
      },
    ],
  };
}

// ---------------------------------------------------------------- certificates

export function certsArgs(): string[] {
  return [
    'certs',
    '--service',
    WEBHOOK_SERVICE,
    '--namespace',
    SYSTEM_NAMESPACE,
    '--secret',
    WEBHOOK_TLS_SECRET,
    '--webhook-config',
    WEBHOOK_CONFIGURATION_NAME,
    '--renew-before',
    String(RENEW_BEFORE_DAYS),
  ];
}

function certsPodSpec(image: string): V1PodSpec {
  return {
    serviceAccountName: CERTS_NAME,
    restartPolicy: 'OnFailure',
    securityContext: podSecurity,
    containers: [
      {
        name: 'certs',
        image,
        imagePullPolicy: 'IfNotPresent',
        args: certsArgs(),
        resources: { requests: { cpu: '50m', memory: '64Mi' }, limits: { memory: '128Mi' } },
        securityContext: containerSecurity,
        volumeMounts: [tmpMount],
      },
    ],
    volumes: [tmpVolume],
  };
}

/** How long a finished bootstrap Job stays for its logs before Kubernetes deletes it. */
export const CERTS_JOB_TTL_SECONDS = 600;

/**
 * Runs at install: creates the Secret and fills the caBundle (a no-op when
 * both are already good). A Job's pod template cannot be changed, so a
 * finished Job is deleted after CERTS_JOB_TTL_SECONDS: the next
 * `kubectl apply` or `helm upgrade` (a new image) creates it afresh instead of
 * failing on an immutable field. Argo CD runs it as a Sync hook, so the
 * deleted Job is no drift.
 */
export function certsJob(image = IMAGE): V1Job {
  return {
    apiVersion: 'batch/v1',
    kind: 'Job',
    metadata: {
      name: `${CERTS_NAME}-bootstrap`,
      namespace: SYSTEM_NAMESPACE,
      labels: labels('certs'),
      annotations: {
        'argocd.argoproj.io/hook': 'Sync',
        'argocd.argoproj.io/hook-delete-policy': 'BeforeHookCreation',
      },
    },
    spec: {
      ttlSecondsAfterFinished: CERTS_JOB_TTL_SECONDS,
      backoffLimit: 10,
      template: { metadata: { labels: labels('certs') }, spec: certsPodSpec(image) },
    },
  };
}

/** Runs daily: renews the serving certificate (and the CA) well before expiry; a no-op otherwise. */
export function certsCronJob(image = IMAGE): V1CronJob {
  return {
    apiVersion: 'batch/v1',
    kind: 'CronJob',
    metadata: { name: `${CERTS_NAME}-renew`, namespace: SYSTEM_NAMESPACE, labels: labels('certs') },
    spec: {
      schedule: '17 3 * * *',
      concurrencyPolicy: 'Forbid',
      successfulJobsHistoryLimit: 1,
      failedJobsHistoryLimit: 3,
      jobTemplate: {
        metadata: { labels: labels('certs') },
        spec: { backoffLimit: 6, template: { metadata: { labels: labels('certs') }, spec: certsPodSpec(image) } },
      },
    },
  };
}

// ---------------------------------------------------------------- reconciler

export function reconcilerDeployment(image = IMAGE): V1Deployment {
  const component = 'reconciler';
  return {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name: RECONCILER_NAME, namespace: SYSTEM_NAMESPACE, labels: labels(component) },
    spec: {
      replicas: 2,
      revisionHistoryLimit: 3,
      selector: { matchLabels: selectorLabels(component) },
      template: {
        metadata: { labels: labels(component) },
        spec: {
          serviceAccountName: RECONCILER_NAME,
          securityContext: podSecurity,
          ...spread(component),
          terminationGracePeriodSeconds: 30,
          containers: [
            {
              name: 'reconciler',
              image,
              imagePullPolicy: 'IfNotPresent',
              args: ['reconciler', '--leader-elect'],
              env: [
                { name: 'POD_NAME', valueFrom: { fieldRef: { fieldPath: 'metadata.name' } } },
                { name: 'POD_NAMESPACE', valueFrom: { fieldRef: { fieldPath: 'metadata.namespace' } } },
              ],
              ports: [{ name: 'health', containerPort: RECONCILER_HEALTH_PORT, protocol: 'TCP' }],
              readinessProbe: { httpGet: { path: '/readyz', port: 'health' }, periodSeconds: 10, timeoutSeconds: 2 },
              livenessProbe: {
                httpGet: { path: '/healthz', port: 'health' },
                initialDelaySeconds: 10,
                periodSeconds: 10,
                timeoutSeconds: 2,
                failureThreshold: 3,
              },
              resources: { requests: { cpu: '100m', memory: '128Mi' }, limits: { memory: '512Mi' } },
              securityContext: containerSecurity,
              volumeMounts: [tmpMount],
            },
          ],
          volumes: [tmpVolume],
        },
      },
    },
  };
}

/**
 * The load tester: gates of any namespace POST to
 * http://canary-gate-loadtester.canary-gate-system/. It sends load only to
 * in-cluster Service names, runs no shell command and needs no API access.
 */
export function loadtesterDeployment(image = IMAGE): V1Deployment {
  const component = 'loadtester';
  return {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name: LOADTESTER_NAME, namespace: SYSTEM_NAMESPACE, labels: labels(component) },
    spec: {
      replicas: 1,
      revisionHistoryLimit: 3,
      selector: { matchLabels: selectorLabels(component) },
      template: {
        metadata: { labels: labels(component) },
        spec: {
          serviceAccountName: LOADTESTER_NAME,
          automountServiceAccountToken: false,
          securityContext: podSecurity,
          terminationGracePeriodSeconds: 10,
          containers: [
            {
              name: 'loadtester',
              image,
              imagePullPolicy: 'IfNotPresent',
              args: ['loadtester', '--port', String(LOADTESTER_PORT), '--allow-host', '*.svc', '--allow-host', '*.svc.cluster.local'],
              ports: [{ name: 'http', containerPort: LOADTESTER_PORT, protocol: 'TCP' }],
              readinessProbe: { httpGet: { path: '/healthz', port: 'http' }, periodSeconds: 10, timeoutSeconds: 2 },
              livenessProbe: { httpGet: { path: '/healthz', port: 'http' }, periodSeconds: 10, timeoutSeconds: 2, failureThreshold: 3 },
              resources: { requests: { cpu: '50m', memory: '64Mi' }, limits: { memory: '256Mi' } },
              securityContext: containerSecurity,
              volumeMounts: [tmpMount],
            },
          ],
          volumes: [tmpVolume],
        },
      },
    },
  };
}

export function loadtesterService(): V1Service {
  return {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { name: LOADTESTER_NAME, namespace: SYSTEM_NAMESPACE, labels: labels('loadtester') },
    spec: { type: 'ClusterIP', selector: selectorLabels('loadtester'), ports: [{ name: 'http', port: 80, targetPort: 'http', protocol: 'TCP' }] },
  };
}

// ---------------------------------------------------------------- files

export interface ManifestFile {
  /** File name inside the base directory. */
  file: string;
  objects: KubernetesObject[];
}

/** The base, one file per concern, in apply order. */
export function baseManifests(opts: { failurePolicy?: FailurePolicy } = {}): ManifestFile[] {
  return [
    { file: 'namespace.yaml', objects: [namespace()] },
    {
      file: 'rbac.yaml',
      objects: [
        serviceAccount(WEBHOOK_NAME, 'webhook', false),
        serviceAccount(RECONCILER_NAME, 'reconciler', true),
        reconcilerClusterRole(),
        clusterRoleBinding(RECONCILER_NAME, 'reconciler', RECONCILER_NAME),
        reconcilerLeaderElectionRole(),
        roleBinding(`${RECONCILER_NAME}-leader-election`, 'reconciler', RECONCILER_NAME),
      ],
    },
    {
      file: 'certs.yaml',
      objects: [
        serviceAccount(CERTS_NAME, 'certs', true),
        certsRole(),
        roleBinding(CERTS_NAME, 'certs', CERTS_NAME),
        certsClusterRole(),
        clusterRoleBinding(CERTS_NAME, 'certs', CERTS_NAME),
        certsJob(),
        certsCronJob(),
      ],
    },
    { file: 'webhook.yaml', objects: [webhookDeployment(), podDisruptionBudget(WEBHOOK_NAME, 'webhook'), webhookService()] },
    { file: 'reconciler.yaml', objects: [reconcilerDeployment(), podDisruptionBudget(RECONCILER_NAME, 'reconciler')] },
    { file: 'loadtester.yaml', objects: [serviceAccount(LOADTESTER_NAME, 'loadtester', false), loadtesterDeployment(), loadtesterService()] },
    { file: 'webhook-configuration.yaml', objects: [webhookConfiguration({ failurePolicy: opts.failurePolicy ?? DEFAULT_FAILURE_POLICY })] },
  ];
}

export function kustomization(resources: string[]): KubernetesObject & Record<string, unknown> {
  return {
    apiVersion: 'kustomize.config.k8s.io/v1beta1',
    kind: 'Kustomization',
    resources,
    // Override with `kustomize edit set image canary-gate=REGISTRY/canary-gate:TAG`.
    images: [{ name: IMAGE_NAME, newName: IMAGE_NAME, newTag: IMAGE_TAG }],
  };
}
