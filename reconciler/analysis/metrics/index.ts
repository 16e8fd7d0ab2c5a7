// Metric analysis: the public surface for the reconciler.

export { TemplateMetricChecker, formatNumber, type MetricCheckerOptions, type MetricLookups } from './checker.js';
export { BUILTIN_METRICS, CANARY_POD_SELECTOR, REQUEST_DURATION_QUERY, REQUEST_SUCCESS_RATE_QUERY, builtinQuery } from './builtins.js';
export { createProvider, PROVIDER_TYPES, ProviderError, type MetricsProvider, type ProviderOptions } from './provider.js';
export { renderQuery, templateContext, metricIntervalMs, promDuration, TemplateError, TEMPLATE_VARIABLES, type TemplateContext } from './template.js';
export { secretReader, decodeSecret, type SecretApi, type SecretLookup, type SecretReaderOptions } from './secrets.js';
