// One small interface per metrics back end, and the factory that builds one
// from a MetricTemplate's provider spec and the decoded data of its Secret.
//
// Address: the Secret's `address` key wins over spec.provider.address (so an
// address that carries credentials can live in the Secret); Datadog and New
// Relic default to their public US endpoints, the others need one.

import type { MetricProvider } from '../../../core/api/types.js';
import { DatadogProvider, DATADOG_DEFAULT_ADDRESS } from './datadog.js';
import { Endpoint, pick, ProviderError, type ProviderOptions } from './endpoint.js';
import { GraphiteProvider } from './graphite.js';
import { basic } from './http.js';
import { InfluxDbProvider } from './influxdb.js';
import { NewRelicProvider, NEWRELIC_DEFAULT_ADDRESS } from './newrelic.js';
import { PrometheusProvider } from './prometheus.js';

export { ProviderError, type ProviderOptions };

export interface MetricsProvider {
  readonly type: string;
  /** The query's single value; undefined when it returned no data. Throws ProviderError. */
  query(q: string, signal?: AbortSignal): Promise<number | undefined>;
}

export const PROVIDER_TYPES = ['prometheus', 'datadog', 'newrelic', 'graphite', 'influxdb'] as const;

const DEFAULT_ADDRESS: Partial<Record<string, string>> = {
  datadog: DATADOG_DEFAULT_ADDRESS,
  newrelic: NEWRELIC_DEFAULT_ADDRESS,
};

/** Builds the provider; throws ProviderError for a configuration it cannot use. */
export function createProvider(spec: MetricProvider, credentials?: Record<string, string>, options?: ProviderOptions): MetricsProvider {
  const type = spec.type;
  if (!(PROVIDER_TYPES as readonly string[]).includes(type)) {
    throw new ProviderError(String(type), '<none>', `unsupported provider type "${String(type)}" (supported: ${PROVIDER_TYPES.join(', ')})`);
  }
  const address = pick(credentials, 'address') ?? spec.address ?? DEFAULT_ADDRESS[type];
  if (!address) throw new ProviderError(type, '<none>', 'no address: set spec.provider.address (or the key "address" of its Secret)');
  const secrets = [...Object.values(credentials ?? {}), ...Object.values(spec.headers ?? {})];
  const headers: Record<string, string> = { ...(spec.headers ?? {}) };
  const endpoint = (extra: Record<string, string> = {}) =>
    new Endpoint({
      type,
      address,
      headers: { ...headers, ...extra },
      // Derived credentials too (a basic-auth header, its base64 part), in case a server echoes them.
      secrets: [...secrets, ...Object.values(extra).flatMap((v) => [v, v.slice(v.indexOf(' ') + 1)])],
      ...(spec.insecureSkipVerify !== undefined ? { insecureSkipVerify: spec.insecureSkipVerify } : {}),
      ...(options ? { options } : {}),
    });
  switch (type) {
    case 'prometheus':
      return new PrometheusProvider(endpoint(authHeaders(credentials)));
    case 'graphite':
      return new GraphiteProvider(endpoint(authHeaders(credentials)));
    case 'datadog':
      return new DatadogProvider(endpoint(), {
        ...opt('apiKey', pick(credentials, 'apiKey', 'datadog_api_key')),
        ...opt('applicationKey', pick(credentials, 'applicationKey', 'datadog_application_key')),
      });
    case 'newrelic':
      return new NewRelicProvider(endpoint(), {
        ...opt('apiKey', pick(credentials, 'apiKey', 'newrelic_api_key')),
        ...opt('accountId', pick(credentials, 'accountId', 'newrelic_account_id')),
      });
    case 'influxdb':
      return new InfluxDbProvider(endpoint(), {
        ...opt('token', pick(credentials, 'token')),
        ...opt('org', pick(credentials, 'org')),
        ...opt('orgID', pick(credentials, 'orgID', 'orgId')),
      });
  }
}

/** Authorization from the Secret: bearerToken (or token), else username/password. */
function authHeaders(credentials?: Record<string, string>): Record<string, string> {
  const token = pick(credentials, 'bearerToken', 'token');
  if (token) return { authorization: `Bearer ${token}` };
  const user = pick(credentials, 'username');
  if (user !== undefined) return { authorization: basic(user, credentials?.password ?? '') };
  return {};
}

function opt<K extends string>(key: K, value: string | undefined): Partial<Record<K, string>> {
  return value === undefined ? {} : ({ [key]: value } as Record<K, string>);
}
