// The CustomResourceDefinitions of canarygate.dev/v1alpha1, as data.
//
// The objects are written in wire form (the JSON the API server takes, e.g.
// `x-kubernetes-int-or-string`, `default`), typed by the small schema
// interface below so that a misspelt keyword does not compile. The shapes
// match core/api/types.ts field for field.
//
// Every object schema is closed: no x-kubernetes-preserve-unknown-fields
// anywhere; free-form maps (labels, annotations, template variables, webhook
// metadata, headers) are `additionalProperties: {type: string}`.

import { GROUP, VERSION } from '../core/contract.js';
import { CANARY_PHASES, DURATION_PATTERN, WEBHOOK_TYPES } from '../core/api/types.js';
import { PLAIN_PROVIDERS, PROVIDER_MESSAGE, SMI_PROVIDER_PATTERN, fieldSupportRules } from '../core/providers.js';

export interface ValidationRule {
  rule: string;
  message?: string;
  reason?: 'FieldValueInvalid' | 'FieldValueForbidden' | 'FieldValueRequired' | 'FieldValueDuplicate';
  fieldPath?: string;
}

/** The subset of apiextensions.k8s.io/v1 JSONSchemaProps that canary-gate uses, in wire names. */
export interface JSONSchemaProps {
  type?: 'object' | 'array' | 'string' | 'integer' | 'number' | 'boolean';
  format?: 'int32' | 'int64' | 'date-time' | 'uri' | 'double';
  description?: string;
  properties?: Record<string, JSONSchemaProps>;
  required?: string[];
  additionalProperties?: JSONSchemaProps;
  items?: JSONSchemaProps;
  enum?: (string | number)[];
  default?: unknown;
  minimum?: number;
  maximum?: number;
  minLength?: number;
  maxLength?: number;
  minItems?: number;
  maxItems?: number;
  minProperties?: number;
  maxProperties?: number;
  pattern?: string;
  'x-kubernetes-int-or-string'?: true;
  'x-kubernetes-preserve-unknown-fields'?: boolean;
  'x-kubernetes-list-type'?: 'atomic' | 'set' | 'map';
  'x-kubernetes-list-map-keys'?: string[];
  'x-kubernetes-map-type'?: 'atomic' | 'granular';
  'x-kubernetes-validations'?: ValidationRule[];
}

export interface PrinterColumn {
  name: string;
  type: 'integer' | 'number' | 'string' | 'boolean' | 'date';
  jsonPath: string;
  description?: string;
  priority?: number;
  format?: string;
}

export interface CustomResourceDefinition {
  apiVersion: 'apiextensions.k8s.io/v1';
  kind: 'CustomResourceDefinition';
  metadata: { name: string; labels?: Record<string, string>; annotations?: Record<string, string> };
  spec: {
    group: string;
    names: { kind: string; listKind: string; plural: string; singular: string; shortNames?: string[]; categories?: string[] };
    scope: 'Namespaced' | 'Cluster';
    versions: {
      name: string;
      served: boolean;
      storage: boolean;
      schema: { openAPIV3Schema: JSONSchemaProps };
      subresources?: { status?: Record<string, never> };
      additionalPrinterColumns?: PrinterColumn[];
    }[];
  };
}

// ---------------------------------------------------------------- helpers

function object(properties: Record<string, JSONSchemaProps>, extra: Omit<JSONSchemaProps, 'type' | 'properties'> = {}): JSONSchemaProps {
  return { type: 'object', ...extra, properties };
}
const string = (extra: Omit<JSONSchemaProps, 'type'> = {}): JSONSchemaProps => ({ type: 'string', ...extra });
const integer = (extra: Omit<JSONSchemaProps, 'type'> = {}): JSONSchemaProps => ({ type: 'integer', ...extra });
const boolean = (description?: string): JSONSchemaProps => (description ? { type: 'boolean', description } : { type: 'boolean' });
const array = (items: JSONSchemaProps, extra: Omit<JSONSchemaProps, 'type' | 'items'> = {}): JSONSchemaProps => ({ type: 'array', ...extra, items });
/** A free-form map of strings: the only kind of open object the schemas allow. */
const stringMap = (description: string): JSONSchemaProps => ({ type: 'object', description, additionalProperties: { type: 'string' } });
const percent = (description: string): JSONSchemaProps => integer({ description, minimum: 0, maximum: 100 });
const weight = (description: string): JSONSchemaProps => integer({ description, minimum: 1, maximum: 100 });
const duration = (description: string, def?: string): JSONSchemaProps =>
  string({ description, pattern: DURATION_PATTERN, ...(def !== undefined ? { default: def } : {}) });
const name = (description = 'Name of the object.'): JSONSchemaProps => string({ description, minLength: 1, maxLength: 253 });
const namespacedRef = (what: string): JSONSchemaProps =>
  object(
    { name: name(`Name of the ${what}.`), namespace: string({ description: `Namespace of the ${what}; defaults to the namespace of this object.`, maxLength: 63 }) },
    { description: `Reference to a ${what}.`, required: ['name'] },
  );
const secretRef = (description: string): JSONSchemaProps => object({ name: name('Name of the Secret in the same namespace.') }, { description, required: ['name'] });

const conditions: JSONSchemaProps = array(
  object(
    {
      type: string({ description: 'Type of the condition, e.g. Promoted.', maxLength: 316, pattern: '^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$' }),
      status: string({ enum: ['True', 'False', 'Unknown'] }),
      observedGeneration: integer({ format: 'int64', minimum: 0 }),
      lastTransitionTime: string({ format: 'date-time' }),
      reason: string({ minLength: 1, maxLength: 1024, pattern: '^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$' }),
      message: string({ maxLength: 32768 }),
    },
    { description: 'A metav1.Condition.', required: ['type', 'status', 'lastTransitionTime', 'reason', 'message'] },
  ),
  { description: 'Standard conditions.', 'x-kubernetes-list-type': 'map', 'x-kubernetes-list-map-keys': ['type'] },
);

const stringMatch: JSONSchemaProps = object(
  { exact: string(), prefix: string(), suffix: string(), regex: string({ description: 'RE2 regular expression.' }) },
  { description: 'Exactly one of exact, prefix, suffix, regex.', minProperties: 1, maxProperties: 1 },
);

const httpMatch: JSONSchemaProps = object(
  {
    headers: { type: 'object', description: 'Header name to match; a cookie is matched through the "cookie" header.', additionalProperties: stringMatch },
    queryParams: { type: 'object', description: 'Query parameter name to match.', additionalProperties: stringMatch },
    uri: stringMatch,
    method: stringMatch,
    sourceLabels: stringMap('Labels of the calling workload (istio).'),
  },
  { description: 'An HTTP request match; every condition given must hold.' },
);

const metadataOverrides = (which: string): JSONSchemaProps =>
  object(
    { labels: stringMap(`Labels added to the ${which} Service.`), annotations: stringMap(`Annotations added to the ${which} Service.`) },
    { description: `Metadata of the ${which} Service.` },
  );

const headerOperations: JSONSchemaProps = object({
  add: stringMap('Headers appended.'),
  set: stringMap('Headers set, replacing any value.'),
  remove: array(string(), { description: 'Header names removed.' }),
});

function statusSchema(): JSONSchemaProps {
  return object({
    observedGeneration: integer({ format: 'int64', description: 'The generation the status was computed from.' }),
    conditions,
  });
}

function crd(opts: {
  kind: string;
  plural: string;
  singular: string;
  shortNames: string[];
  description: string;
  spec: JSONSchemaProps;
  status: JSONSchemaProps;
  columns?: PrinterColumn[];
}): CustomResourceDefinition {
  return {
    apiVersion: 'apiextensions.k8s.io/v1',
    kind: 'CustomResourceDefinition',
    metadata: { name: `${opts.plural}.${GROUP}`, labels: { 'app.kubernetes.io/part-of': 'canary-gate' } },
    spec: {
      group: GROUP,
      names: {
        kind: opts.kind,
        listKind: `${opts.kind}List`,
        plural: opts.plural,
        singular: opts.singular,
        shortNames: opts.shortNames,
        categories: ['canary-gate'],
      },
      scope: 'Namespaced',
      versions: [
        {
          name: VERSION,
          served: true,
          storage: true,
          subresources: { status: {} },
          ...(opts.columns ? { additionalPrinterColumns: opts.columns } : {}),
          schema: {
            openAPIV3Schema: object(
              {
                apiVersion: string(),
                kind: string(),
                metadata: { type: 'object' },
                spec: opts.spec,
                status: opts.status,
              },
              { description: opts.description, required: ['spec'] },
            ),
          },
        },
      ],
    },
  };
}

// ---------------------------------------------------------------- Canary

const changeRecord = (description: string): JSONSchemaProps =>
  object(
    {
      revision: string(),
      images: string({ description: 'Hash of the sorted container images.' }),
      labels: stringMap('Pod template labels.'),
      at: string({ format: 'date-time' }),
    },
    { description, required: ['revision'] },
  );

/** Combinations of Canary fields that canary-gate cannot honour, refused with what to do instead. */
export const CANARY_SPEC_RULES: readonly ValidationRule[] = [
  {
    rule: "!has(self.autoscalerRef) || self.targetRef.kind == 'Deployment'",
    message: 'autoscalerRef needs a Deployment target: a Service target runs no Pods to scale',
  },
  {
    rule: "!has(self.service.portDiscovery) || !self.service.portDiscovery || self.targetRef.kind == 'Deployment'",
    message: 'service.portDiscovery needs a Deployment target: it exposes the container ports of its pod template',
  },
  {
    // Deleting a Canary always hands the target back (ADR 0004 and the
    // README's lifecycle): nothing of canary-gate is left to keep in place.
    rule: '!has(self.revertOnDeletion) || self.revertOnDeletion',
    message: 'revertOnDeletion: false is not supported: deleting a Canary always reverts (traffic back to the target\'s own Pods, every object canary-gate created removed or handed back); remove the field or set it to true',
  },
];

const canarySpec: JSONSchemaProps = object(
  {
    targetRef: object(
      {
        apiVersion: string({ description: 'apps/v1 for a Deployment, v1 for a Service.' }),
        kind: string({ enum: ['Deployment', 'Service'] }),
        name: name('Name of the Deployment or Service in the same namespace.'),
      },
      {
        description: 'The workload whose changes are canaried.',
        required: ['kind', 'name'],
        'x-kubernetes-validations': [
          {
            rule: "!has(self.apiVersion) || self.apiVersion == (self.kind == 'Deployment' ? 'apps/v1' : 'v1')",
            message: 'apiVersion must be apps/v1 for a Deployment and v1 for a Service',
          },
        ],
      },
    ),
    autoscalerRef: object(
      {
        apiVersion: string({ enum: ['autoscaling/v2', 'autoscaling/v2beta2'], description: 'The HPA is read through autoscaling/v2 (v2beta2 is the same object).' }),
        kind: string({ enum: ['HorizontalPodAutoscaler'] }),
        name: name('Name of the HorizontalPodAutoscaler in the same namespace.'),
      },
      { description: 'The HPA of the target: it keeps scaling the primary; the canary copy gets a clone <name>-canary (exact-weight providers), or, with the kubernetes provider, its minReplicas/maxReplicas bound the copy\'s size.', required: ['kind', 'name'] },
    ),
    ingressRef: object(
      {
        apiVersion: string({ enum: ['networking.k8s.io/v1'] }),
        kind: string({ enum: ['Ingress'] }),
        name: name('Name of the Ingress in the same namespace.'),
      },
      { description: 'The Ingress cloned as the canary Ingress (nginx provider).', required: ['kind', 'name'] },
    ),
    provider: string({
      description: `How traffic is split: ${PLAIN_PROVIDERS.join(', ')}, or smi:v1alpha1|v1alpha2|v1alpha3[:<mesh>].`,
      default: 'kubernetes',
      maxLength: 63,
      'x-kubernetes-validations': [{ rule: `self in [${PLAIN_PROVIDERS.map((p) => `'${p}'`).join(', ')}] || self.matches('${SMI_PROVIDER_PATTERN}')`, message: PROVIDER_MESSAGE }],
    }),
    service: object(
      {
        name: name('Name of the apex Service; defaults to the target name.'),
        port: integer({ format: 'int32', minimum: 1, maximum: 65535, description: 'Port of the Services.' }),
        portName: string({ maxLength: 15, description: 'Name of the port; default http.' }),
        targetPort: { 'x-kubernetes-int-or-string': true, description: 'Container port number or name; defaults to port.' },
        portDiscovery: boolean('The Services canary-gate creates also expose every container port of the target\'s pod template.'),
        gatewayRefs: array(
          object(
            {
              name: name('Name of the Gateway.'),
              namespace: string({ maxLength: 63 }),
              group: string({ description: 'default gateway.networking.k8s.io' }),
              kind: string({ description: 'default Gateway' }),
              sectionName: string({ maxLength: 253 }),
            },
            { required: ['name'] },
          ),
          { description: 'Gateways the HTTPRoute attaches to (gatewayapi provider).', maxItems: 32 },
        ),
        gateways: array(string({ maxLength: 253 }), { description: 'Gateways of the VirtualService (istio; default mesh).', maxItems: 32 }),
        hosts: array(string({ maxLength: 253 }), { description: 'Hostnames of the route.', maxItems: 16 }),
        headers: object({ request: headerOperations, response: headerOperations }, { description: 'Header operations applied by the route.' }),
        match: array(httpMatch, { description: 'Requests the route applies to.', maxItems: 16 }),
        retries: object(
          {
            attempts: integer({ minimum: 0 }),
            perTryTimeout: duration('Timeout of one attempt.'),
            retryOn: string({ description: 'Conditions that trigger a retry.' }),
          },
          { description: 'Retry policy of the route.' },
        ),
        timeout: duration('Request timeout of the route.'),
        trafficPolicy: { type: 'object', description: 'Traffic policy of the DestinationRules (istio), as Istio defines it.', 'x-kubernetes-preserve-unknown-fields': true },
        corsPolicy: object(
          {
            allowOrigins: array(stringMatch, { maxItems: 32 }),
            allowMethods: array(string(), { maxItems: 16 }),
            allowHeaders: array(string(), { maxItems: 64 }),
            exposeHeaders: array(string(), { maxItems: 64 }),
            maxAge: duration('How long a preflight answer may be cached.'),
            allowCredentials: boolean(),
          },
          { description: 'CORS policy of the route (istio).' },
        ),
        rewrite: object({ uri: string(), authority: string() }, { description: 'Rewrite of the path prefix and the authority (istio).', minProperties: 1 }),
        apex: metadataOverrides('apex'),
        primary: metadataOverrides('primary'),
        canary: metadataOverrides('canary'),
      },
      { description: 'The Services (and route) that carry the traffic.', required: ['port'] },
    ),
    analysis: object(
      {
        interval: duration('Time between two checks.', '60s'),
        threshold: integer({ minimum: 1, default: 5, description: 'Failed checks before the canary is rolled back.' }),
        maxWeight: weight('Largest canary traffic weight, in percent, before promotion.'),
        stepWeight: weight('Weight added at each step.'),
        stepWeights: array(weight('Weight of one step.'), { description: 'Explicit weights of the steps, ascending.', maxItems: 100 }),
        stepWeightPromotion: weight('After the primary runs the promoted spec, the canary\'s weight goes down by this much per interval until 0 (exact-weight providers); unset: all at once.'),
        iterations: integer({ minimum: 0, description: 'Number of checks for A/B testing and blue/green.' }),
        match: array(httpMatch, { description: 'A/B testing: requests that go to the canary.', maxItems: 16 }),
        mirror: boolean('Copy the requests to the canary, whose answers are discarded, while it has no weight (blue/green: the whole run; canary: the first step).'),
        mirrorWeight: weight('Percent of the requests copied while mirroring; default 100.'),
        sessionAffinity: object(
          {
            cookieName: string({ minLength: 1, maxLength: 64, pattern: "^[!#$%&'*+.^_`|~0-9A-Za-z-]+$", description: 'Cookie that keeps a client on the canary once it landed there.' }),
            maxAge: integer({ minimum: 1, description: 'Seconds the canary cookie lives; default 86400.' }),
            primaryCookieName: string({ minLength: 1, maxLength: 64, pattern: "^[!#$%&'*+.^_`|~0-9A-Za-z-]+$", description: 'Cookie that keeps a client on the primary once it landed there.' }),
          },
          {
            description: 'Sticky sessions during a weighted run.',
            required: ['cookieName'],
            'x-kubernetes-validations': [{ rule: '!has(self.primaryCookieName) || self.primaryCookieName != self.cookieName', message: 'primaryCookieName must differ from cookieName' }],
          },
        ),
        primaryReadyThreshold: percent('Percent of the primary\'s desired Pods that must be ready for it to count as ready; default 100.'),
        canaryReadyThreshold: percent('Percent of the canary copy\'s desired Pods that must be ready for it to count as ready; default 100.'),
        metrics: array(
          object(
            {
              name: name('Name of the check.'),
              interval: duration('Query window.'),
              thresholdRange: object(
                { min: { type: 'number' }, max: { type: 'number' } },
                {
                  description: 'The check passes when min <= value <= max.',
                  'x-kubernetes-validations': [{ rule: '!has(self.min) || !has(self.max) || self.min <= self.max', message: 'min must not exceed max' }],
                },
              ),
              templateRef: namespacedRef('MetricTemplate'),
              templateVariables: stringMap('Values of {{ variables.X }} in the query.'),
              noDataPolicy: string({
                description: 'What a query without a value means: fail counts a failed check, pass counts it as passed, hold neither advances nor fails.',
                enum: ['fail', 'pass', 'hold'],
                default: 'fail',
              }),
            },
            { required: ['name'] },
          ),
          { description: 'Metric checks.', maxItems: 64, 'x-kubernetes-list-type': 'map', 'x-kubernetes-list-map-keys': ['name'] },
        ),
        webhooks: array(
          object(
            {
              name: name('Name of the hook.'),
              type: string({ enum: [...WEBHOOK_TYPES], default: 'rollout' }),
              url: string({ format: 'uri', minLength: 1 }),
              timeout: duration('Request timeout.'),
              retries: integer({ minimum: 0 }),
              metadata: stringMap('Sent in the payload.'),
            },
            { required: ['name', 'url'] },
          ),
          { description: 'HTTP gates and notifications.', maxItems: 64, 'x-kubernetes-list-type': 'map', 'x-kubernetes-list-map-keys': ['name'] },
        ),
        alerts: array(
          object(
            {
              name: name('Name of the alert.'),
              severity: string({ enum: ['info', 'warn', 'error'], default: 'info' }),
              providerRef: namespacedRef('AlertProvider'),
            },
            { required: ['name', 'providerRef'] },
          ),
          { description: 'Where events are sent.', maxItems: 32, 'x-kubernetes-list-type': 'map', 'x-kubernetes-list-map-keys': ['name'] },
        ),
      },
      {
        description: 'How the canary is judged and how traffic moves.',
        default: {},
        'x-kubernetes-validations': [
          {
            rule: '!has(self.stepWeight) || !has(self.maxWeight) || self.stepWeight <= self.maxWeight',
            message: 'stepWeight must not exceed maxWeight',
          },
          { rule: '!has(self.mirrorWeight) || (has(self.mirror) && self.mirror)', message: 'mirrorWeight needs mirror: true' },
          { rule: '!has(self.mirror) || !self.mirror || !has(self.match)', message: 'mirror and match cannot be combined: A/B sends the matching requests themselves to the canary' },
          { rule: '!has(self.sessionAffinity) || !has(self.iterations) || self.iterations == 0', message: 'sessionAffinity applies to weighted runs (no iterations)' },
          { rule: '!has(self.stepWeightPromotion) || !has(self.iterations) || self.iterations == 0', message: 'stepWeightPromotion applies to weighted runs (no iterations): blue/green and A/B promote all at once' },
        ],
      },
    ),
    progressDeadlineSeconds: integer({ format: 'int32', minimum: 1, default: 600, description: 'Seconds a rollout may make no progress before it is rolled back.' }),
    skipAnalysis: boolean('Promote without analysis.'),
    suspend: boolean('Pause the canary: changes stay pending.'),
    revertOnDeletion: boolean('Deleting the Canary reverts: traffic back to the target\'s own Pods, the copy, its HPA and the router\'s own objects removed, routes handed back, the target unlabelled. Always done; false is refused.'),
    promotion: object(
      {
        identity: string({
          description: 'What makes two stages\' changes the same: images (the set of container images; default), revision (the exact pod template), or label:<key> (a pod template label a pipeline sets).',
          pattern: '^(images|revision|label:[A-Za-z0-9]([-A-Za-z0-9_./]*[A-Za-z0-9])?)$',
          maxLength: 320,
        }),
        after: array(
          object(
            {
              namespace: string({ maxLength: 63, description: 'Namespace of the upstream Canary; default this one.' }),
              name: name('Name of the upstream Canary.'),
              soak: duration('The upstream must have promoted the change at least this long ago.'),
              kubeconfigSecretRef: object(
                { name: name('Secret in this namespace.'), key: string({ minLength: 1, maxLength: 253, description: 'Key holding the kubeconfig.' }) },
                { description: 'The upstream Canary is in the cluster of this kubeconfig (read access to Canaries is enough).', required: ['name', 'key'] },
              ),
            },
            { required: ['name'] },
          ),
          { description: 'Stages a change must have passed: it starts here only once each promoted the same change.', maxItems: 16 },
        ),
        windows: array(
          object(
            {
              schedule: string({
                description: 'Cron expression, five fields (minute hour day-of-month month day-of-week): the minutes it matches are open.',
                pattern: '^\\s*\\S+(\\s+\\S+){4}\\s*$',
                maxLength: 128,
              }),
              timeZone: string({ description: 'IANA time zone of the schedule; default UTC.', maxLength: 64 }),
            },
            { required: ['schedule'] },
          ),
          { description: 'Runs advance and promote only inside one of these windows; a pending change starts only inside one.', minItems: 1, maxItems: 16 },
        ),
      },
      { description: 'When a change may move forward.' },
    ),
  },
  { description: 'Desired canary behaviour.', required: ['targetRef', 'service'], 'x-kubernetes-validations': [...fieldSupportRules(), ...CANARY_SPEC_RULES] },
);

const canaryStatus: JSONSchemaProps = object(
  {
    phase: string({ enum: [...CANARY_PHASES] }),
    canaryWeight: integer({ minimum: 0, maximum: 100 }),
    failedChecks: integer({ minimum: 0 }),
    iterations: integer({ minimum: 0 }),
    pendingRevision: string({ description: 'Revision held by the webhook, waiting for analysis.' }),
    lastAppliedRevision: string({ description: 'Revision under (or last under) analysis.' }),
    lastPromotedRevision: string({ description: 'Revision last promoted to the primary.' }),
    lastTransitionTime: string({ format: 'date-time' }),
    observedGeneration: integer({ format: 'int64' }),
    message: string(),
    progressStartedAt: string({ format: 'date-time', description: 'When analysis of the current revision started.' }),
    lastStepTime: string({ format: 'date-time', description: 'When the last analysis step ran.' }),
    preRolloutPassed: boolean('The pre-rollout gates of the current revision passed.'),
    failedRevision: string({ description: 'Revision last rolled back.' }),
    bypassedRevision: string({ description: 'Revision that went live without analysis.' }),
    changeIdentity: string({ description: 'Identity (spec.promotion.identity) of the change pending or last run.' }),
    lastPromotion: changeRecord('The change last promoted, as downstream stages compare it.'),
    lastFailure: changeRecord('The change last rolled back.'),
    metrics: array(
      object(
        {
          name: string(),
          value: { type: 'number' },
          checkedAt: string({ format: 'date-time' }),
          result: string({ enum: ['pass', 'fail', 'nodata', 'error'] }),
        },
        { required: ['name'] },
      ),
      { description: 'Last value of each metric check.', 'x-kubernetes-list-type': 'map', 'x-kubernetes-list-map-keys': ['name'] },
    ),
    conditions,
  },
  { description: 'Observed state of the canary.' },
);

export const canaryCRD: CustomResourceDefinition = crd({
  kind: 'Canary',
  plural: 'canaries',
  singular: 'canary',
  shortNames: ['cgc'],
  description: 'A Canary analyses every change of a Deployment or Service before it is promoted.',
  spec: canarySpec,
  status: canaryStatus,
  columns: [
    { name: 'Status', type: 'string', jsonPath: '.status.phase' },
    { name: 'Weight', type: 'integer', jsonPath: '.status.canaryWeight' },
    { name: 'FailedChecks', type: 'integer', jsonPath: '.status.failedChecks' },
    { name: 'LastTransitionTime', type: 'date', jsonPath: '.status.lastTransitionTime' },
    { name: 'Target', type: 'string', jsonPath: '.spec.targetRef.name', priority: 1 },
    { name: 'Revision', type: 'string', jsonPath: '.status.lastAppliedRevision', priority: 1 },
    { name: 'Change', type: 'string', jsonPath: '.status.changeIdentity', priority: 1 },
    { name: 'Pending', type: 'string', jsonPath: '.status.pendingRevision', priority: 1 },
  ],
});

// ---------------------------------------------------------------- MetricTemplate

export const metricTemplateCRD: CustomResourceDefinition = crd({
  kind: 'MetricTemplate',
  plural: 'metrictemplates',
  singular: 'metrictemplate',
  shortNames: ['cgmt'],
  description: 'A MetricTemplate is a query against a metrics provider, used by Canary metric checks.',
  spec: object(
    {
      provider: object(
        {
          type: string({ enum: ['prometheus', 'datadog', 'newrelic', 'graphite', 'influxdb'] }),
          address: string({ format: 'uri', description: 'API address of the provider.' }),
          secretRef: secretRef('Secret with the provider credentials.'),
          headers: stringMap('HTTP headers sent with each query.'),
          insecureSkipVerify: boolean('Skip TLS verification of the provider.'),
        },
        { required: ['type'] },
      ),
      query: string({ minLength: 1, description: 'Query text; may use {{ namespace }}, {{ target }}, {{ interval }}, {{ variables.X }}.' }),
    },
    { required: ['provider', 'query'] },
  ),
  status: statusSchema(),
  columns: [
    { name: 'Provider', type: 'string', jsonPath: '.spec.provider.type' },
    { name: 'Age', type: 'date', jsonPath: '.metadata.creationTimestamp' },
  ],
});

// ---------------------------------------------------------------- AlertProvider

export const alertProviderCRD: CustomResourceDefinition = crd({
  kind: 'AlertProvider',
  plural: 'alertproviders',
  singular: 'alertprovider',
  shortNames: ['cgap'],
  description: 'An AlertProvider is a chat or HTTP endpoint that receives Canary events.',
  spec: object(
    {
      type: string({ enum: ['slack', 'msteams', 'discord', 'rocket', 'gchat', 'webhook'] }),
      channel: string(),
      username: string(),
      address: string({ format: 'uri', description: 'Incoming webhook address; or key "address" of the Secret.' }),
      proxy: string({ format: 'uri', description: 'HTTP(S) proxy used to reach the address.' }),
      secretRef: secretRef('Secret whose key "address" holds the address.'),
    },
    {
      required: ['type'],
      'x-kubernetes-validations': [{ rule: 'has(self.address) || has(self.secretRef)', message: 'one of address or secretRef is required' }],
    },
  ),
  status: statusSchema(),
  columns: [
    { name: 'Type', type: 'string', jsonPath: '.spec.type' },
    { name: 'Age', type: 'date', jsonPath: '.metadata.creationTimestamp' },
  ],
});

export const crds: readonly CustomResourceDefinition[] = [canaryCRD, metricTemplateCRD, alertProviderCRD];

/**
 * Paths (from openAPIV3Schema, `.` separated, `[]` for array items, `{}` for
 * map values) of the objects that are deliberately free-form maps of strings.
 */
export function freeFormMaps(schema: JSONSchemaProps, path = ''): string[] {
  const out: string[] = [];
  if (schema.additionalProperties?.type === 'string') out.push(path);
  for (const [key, child] of Object.entries(schema.properties ?? {})) out.push(...freeFormMaps(child, `${path}.${key}`));
  if (schema.additionalProperties) out.push(...freeFormMaps(schema.additionalProperties, `${path}{}`));
  if (schema.items) out.push(...freeFormMaps(schema.items, `${path}[]`));
  return out;
}
