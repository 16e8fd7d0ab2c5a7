// TypeScript shapes of the canarygate.dev/v1alpha1 custom resources, field for
// field as the CRD schemas in deploy/crds.ts declare them (wire names, as the
// API server serves them). Field names follow Flagger's flagger.app/v1beta1 so
// that a Flagger manifest migrates by changing its apiVersion.
//
// Defaults noted here are applied by the API server (CRD structural defaults);
// a reader of an object fetched from the cluster can rely on them.

import type { V1ObjectMeta } from '@kubernetes/client-node';

import { API_VERSION } from '../contract.js';

export { API_VERSION };

/** Go-style duration: one or more <number><unit> with unit h, m, s or ms (e.g. 30s, 1m, 1m30s, 500ms). */
export type Duration = string;
/** The pattern the CRDs enforce on every Duration field. */
export const DURATION_PATTERN = '^([0-9]+(\\.[0-9]+)?(ms|h|m|s))+$';

/** RFC 3339 timestamp, e.g. 2025-01-31T12:00:00Z. */
export type Timestamp = string;

export interface NamedObjectReference {
  name: string;
}

export interface CrossNamespaceReference {
  name: string;
  /** Defaults to the namespace of the referring object. */
  namespace?: string;
}

/** metav1.Condition */
export interface Condition {
  type: string;
  status: 'True' | 'False' | 'Unknown';
  observedGeneration?: number;
  lastTransitionTime: Timestamp;
  /** CamelCase, machine-readable. */
  reason: string;
  message: string;
}

// ---------------------------------------------------------------- Canary

export type TargetKind = 'Deployment' | 'Service';

export interface TargetRef {
  /** apps/v1 for a Deployment, v1 for a Service. */
  apiVersion?: string;
  kind: TargetKind;
  name: string;
}

export interface AutoscalerRef {
  /** e.g. autoscaling/v2 */
  apiVersion?: string;
  kind: 'HorizontalPodAutoscaler';
  name: string;
}

/** A provider string (core/providers.ts says which are known and what they honour). */
export type RouterProvider = string;

/** Exactly one of the fields is set. */
export interface StringMatch {
  exact?: string;
  prefix?: string;
  suffix?: string;
  regex?: string;
}

/** One HTTP request match; all given conditions must hold. Cookies are matched through headers.cookie. */
export interface HttpMatch {
  headers?: Record<string, StringMatch>;
  queryParams?: Record<string, StringMatch>;
  uri?: StringMatch;
  method?: StringMatch;
  /** Labels of the calling workload (Istio only). */
  sourceLabels?: Record<string, string>;
}

export interface HeaderOperations {
  add?: Record<string, string>;
  set?: Record<string, string>;
  remove?: string[];
}

export interface Headers {
  request?: HeaderOperations;
  response?: HeaderOperations;
}

export interface Retries {
  attempts?: number;
  perTryTimeout?: Duration;
  retryOn?: string;
}

export interface GatewayRef {
  name: string;
  namespace?: string;
  /** default gateway.networking.k8s.io */
  group?: string;
  /** default Gateway */
  kind?: string;
  sectionName?: string;
}

/** Istio's CorsPolicy, the fields Flagger passes through. */
export interface CorsPolicy {
  allowOrigins?: StringMatch[];
  allowMethods?: string[];
  allowHeaders?: string[];
  exposeHeaders?: string[];
  maxAge?: Duration;
  allowCredentials?: boolean;
}

export interface HttpRewrite {
  uri?: string;
  authority?: string;
}

export interface ObjectMetadataOverrides {
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}

export interface CanaryService {
  /** Name of the apex Service; defaults to the target's name. */
  name?: string;
  port: number;
  portName?: string;
  targetPort?: number | string;
  portDiscovery?: boolean;
  gatewayRefs?: GatewayRef[];
  /** Istio gateways of the VirtualService (default mesh). */
  gateways?: string[];
  hosts?: string[];
  headers?: Headers;
  match?: HttpMatch[];
  retries?: Retries;
  timeout?: Duration;
  /** Istio DestinationRule trafficPolicy, passed through as written. */
  trafficPolicy?: Record<string, unknown>;
  corsPolicy?: CorsPolicy;
  rewrite?: HttpRewrite;
  apex?: ObjectMetadataOverrides;
  primary?: ObjectMetadataOverrides;
  canary?: ObjectMetadataOverrides;
}

export interface ThresholdRange {
  min?: number;
  max?: number;
}

/** What a metric check does when its query returns no value. */
export type NoDataPolicy = 'fail' | 'pass' | 'hold';

export interface CanaryMetric {
  name: string;
  interval?: Duration;
  thresholdRange?: ThresholdRange;
  templateRef?: CrossNamespaceReference;
  templateVariables?: Record<string, string>;
  /** default fail */
  noDataPolicy?: NoDataPolicy;
}

export type WebhookType =
  | 'pre-rollout'
  | 'rollout'
  | 'confirm-rollout'
  | 'confirm-traffic-increase'
  | 'confirm-promotion'
  | 'post-rollout'
  | 'rollback'
  | 'event';

export const WEBHOOK_TYPES: readonly WebhookType[] = [
  'pre-rollout',
  'rollout',
  'confirm-rollout',
  'confirm-traffic-increase',
  'confirm-promotion',
  'post-rollout',
  'rollback',
  'event',
];

export interface CanaryWebhook {
  name: string;
  /** default rollout */
  type?: WebhookType;
  url: string;
  timeout?: Duration;
  retries?: number;
  metadata?: Record<string, string>;
}

export type AlertSeverity = 'info' | 'warn' | 'error';

export interface CanaryAlert {
  name: string;
  /** default info */
  severity?: AlertSeverity;
  providerRef: CrossNamespaceReference;
}

/** Sticky sessions during a weighted run (Flagger's field names). */
export interface SessionAffinity {
  /** Cookie that pins a client to the canary once the router sent it there. */
  cookieName: string;
  /** Seconds the canary cookie lives; default 86400. */
  maxAge?: number;
  /** Cookie that pins a client to the primary once it landed there. */
  primaryCookieName?: string;
}

export interface IngressRef {
  /** networking.k8s.io/v1 */
  apiVersion?: string;
  kind: 'Ingress';
  name: string;
}

export interface CanaryAnalysis {
  /** default 60s */
  interval?: Duration;
  /** Failed checks before rollback; default 5, min 1. */
  threshold?: number;
  maxWeight?: number;
  stepWeight?: number;
  stepWeights?: number[];
  stepWeightPromotion?: number;
  iterations?: number;
  match?: HttpMatch[];
  /** Copy the primary's requests to the canary (answers discarded) while it has no weight. */
  mirror?: boolean;
  /** Percent of the requests copied while mirroring; default 100. */
  mirrorWeight?: number;
  sessionAffinity?: SessionAffinity;
  primaryReadyThreshold?: number;
  canaryReadyThreshold?: number;
  metrics?: CanaryMetric[];
  webhooks?: CanaryWebhook[];
  alerts?: CanaryAlert[];
}

/** One promotion window: the minutes a cron expression matches, in a time zone. */
export interface PromotionWindow {
  /** Five-field cron expression (minute hour day-of-month month day-of-week). */
  schedule: string;
  /** IANA time zone; default UTC. */
  timeZone?: string;
}

/** A stage this Canary's changes must pass first. */
export interface PromotionDependency {
  /** Namespace of the upstream Canary; default this Canary's. */
  namespace?: string;
  name: string;
  /** The upstream must have promoted the change at least this long ago. */
  soak?: Duration;
  /** A kubeconfig in a Secret of this namespace: the upstream Canary is in another cluster. */
  kubeconfigSecretRef?: { name: string; key: string };
}

export interface CanaryPromotion {
  /** What makes two stages' changes the same: images (default), revision, or label:<key>. */
  identity?: string;
  /** This Canary starts a change only when each of these promoted the same change. */
  after?: PromotionDependency[];
  /** Runs advance and promote only inside one of these; none = always. */
  windows?: PromotionWindow[];
}

/** What identifies one change across stages, recorded when it is promoted or rolled back. */
export interface ChangeRecord {
  revision: string;
  /** Hash of the sorted container and init-container images (Deployment targets). */
  images?: string;
  /** The pod template's labels (for identity label:<key>). */
  labels?: Record<string, string>;
  at?: Timestamp;
}

export interface CanarySpec {
  targetRef: TargetRef;
  autoscalerRef?: AutoscalerRef;
  /** The user's Ingress, cloned as the canary Ingress (nginx). */
  ingressRef?: IngressRef;
  /** default kubernetes */
  provider?: RouterProvider;
  service: CanaryService;
  /** Always present on a stored object (defaulted to {} and then field by field). */
  analysis?: CanaryAnalysis;
  /** default 600 */
  progressDeadlineSeconds?: number;
  skipAnalysis?: boolean;
  suspend?: boolean;
  revertOnDeletion?: boolean;
  promotion?: CanaryPromotion;
}

export type CanaryPhase =
  | 'Initializing'
  | 'Initialized'
  | 'Waiting'
  | 'Progressing'
  | 'WaitingPromotion'
  | 'Promoting'
  | 'Succeeded'
  | 'Failed'
  | 'Terminating';

export const CANARY_PHASES: readonly CanaryPhase[] = [
  'Initializing',
  'Initialized',
  'Waiting',
  'Progressing',
  'WaitingPromotion',
  'Promoting',
  'Succeeded',
  'Failed',
  'Terminating',
];

/** Outcome of the last check of one metric. */
export type MetricResult = 'pass' | 'fail' | 'nodata' | 'error';

export interface MetricStatus {
  name: string;
  /** Absent when the query returned no value. */
  value?: number;
  checkedAt?: Timestamp;
  result?: MetricResult;
}

/** The condition type that tells whether the last revision was promoted (usable with kubectl wait). */
export const CONDITION_PROMOTED = 'Promoted';

export interface CanaryStatus {
  phase?: CanaryPhase;
  /** The identity (spec.promotion.identity) of the change pending or last run. */
  changeIdentity?: string;
  /** The change last promoted, as downstream stages compare it. */
  lastPromotion?: ChangeRecord;
  /** The change last rolled back. */
  lastFailure?: ChangeRecord;
  canaryWeight?: number;
  failedChecks?: number;
  iterations?: number;
  pendingRevision?: string;
  lastAppliedRevision?: string;
  lastPromotedRevision?: string;
  lastTransitionTime?: Timestamp;
  observedGeneration?: number;
  message?: string;
  /** When analysis of the current pending revision started (progress deadline). */
  progressStartedAt?: Timestamp;
  /** When the last analysis step ran (next one after analysis.interval). */
  lastStepTime?: Timestamp;
  /** The pre-rollout gates of the current revision passed. */
  preRolloutPassed?: boolean;
  /** The revision last rolled back; it is not analysed again unless retried. */
  failedRevision?: string;
  /** A revision that went live without analysis (written past the webhook). */
  bypassedRevision?: string;
  metrics?: MetricStatus[];
  conditions?: Condition[];
}

export interface Canary {
  apiVersion: typeof API_VERSION;
  kind: 'Canary';
  metadata: V1ObjectMeta;
  spec: CanarySpec;
  status?: CanaryStatus;
}

// ---------------------------------------------------------------- MetricTemplate

export type MetricProviderType = 'prometheus' | 'datadog' | 'newrelic' | 'graphite' | 'influxdb';

export interface MetricProvider {
  type: MetricProviderType;
  address?: string;
  secretRef?: NamedObjectReference;
  headers?: Record<string, string>;
  insecureSkipVerify?: boolean;
}

export interface MetricTemplateSpec {
  provider: MetricProvider;
  /** Query text with template variables ({{ namespace }}, {{ target }}, {{ interval }}, {{ variables.X }}...). */
  query: string;
}

export interface MetricTemplateStatus {
  observedGeneration?: number;
  conditions?: Condition[];
}

export interface MetricTemplate {
  apiVersion: typeof API_VERSION;
  kind: 'MetricTemplate';
  metadata: V1ObjectMeta;
  spec: MetricTemplateSpec;
  status?: MetricTemplateStatus;
}

// ---------------------------------------------------------------- AlertProvider

export type AlertProviderType = 'slack' | 'msteams' | 'discord' | 'rocket' | 'gchat' | 'webhook';

export interface AlertProviderSpec {
  type: AlertProviderType;
  channel?: string;
  username?: string;
  /** Either address or secretRef (with key "address") is required. */
  address?: string;
  proxy?: string;
  secretRef?: NamedObjectReference;
}

export interface AlertProviderStatus {
  observedGeneration?: number;
  conditions?: Condition[];
}

export interface AlertProvider {
  apiVersion: typeof API_VERSION;
  kind: 'AlertProvider';
  metadata: V1ObjectMeta;
  spec: AlertProviderSpec;
  status?: AlertProviderStatus;
}
