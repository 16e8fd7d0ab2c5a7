// Query templates: every variable, free spacing, unknown and unset variables
// are errors that name them, and the built-in queries render to valid-looking PromQL.

import assert from 'node:assert/strict';
import type { Canary, CanaryMetric } from '../../core/api/types.js';
import { REQUEST_DURATION_QUERY, REQUEST_SUCCESS_RATE_QUERY, builtinQuery } from '../../reconciler/analysis/metrics/builtins.js';
import { metricIntervalMs, promDuration, renderQuery, templateContext, TemplateError } from '../../reconciler/analysis/metrics/template.js';

function canary(over: Partial<Canary['spec']> = {}): Canary {
  return {
    apiVersion: 'canarygate.dev/v1alpha1',
    kind: 'Canary',
    metadata: { name: 'shop', namespace: 'prod' },
    spec: { targetRef: { kind: 'Deployment', name: 'shop-api' }, service: { port: 80 }, analysis: { interval: '30s' }, ...over },
  } as Canary;
}

const metric = (over: Partial<CanaryMetric> = {}): CanaryMetric => ({ name: 'errors', ...over });

describe('metrics/template', () => {
  it('renders every variable, with any spacing inside the braces', () => {
    const ctx = templateContext(canary({ service: { port: 80, name: 'shop-svc' } }), metric({ interval: '2m', templateVariables: { route: '/cart', code: '5..' } }));
    const out = renderQuery(
      '{{name}} {{ namespace }} {{  target  }} {{service}} {{ interval }} {{ variables.route }} {{variables.code}}',
      ctx,
    );
    assert.equal(out, 'shop prod shop-api shop-svc 2m /cart 5..');
  });

  it('service defaults to the target name; interval to the analysis interval, then 60s', () => {
    assert.equal(renderQuery('{{ service }} {{ interval }}', templateContext(canary(), metric())), 'shop-api 30s');
    assert.equal(renderQuery('{{ interval }}', templateContext(canary({ analysis: {} }), metric())), '1m');
    assert.equal(renderQuery('{{ interval }}', templateContext(canary({ analysis: { interval: '1m30s' } }), metric())), '90s');
  });

  it('leaves single braces (PromQL label matchers) alone', () => {
    const ctx = templateContext(canary(), metric());
    assert.equal(renderQuery('sum(rate(x{ns="{{ namespace }}"}[{{ interval }}]))', ctx), 'sum(rate(x{ns="prod"}[30s]))');
  });

  it('an unknown variable is an error naming it', () => {
    const ctx = templateContext(canary(), metric());
    assert.throws(() => renderQuery('up{job="{{ jobb }}"}', ctx), (err: Error) => err instanceof TemplateError && /unknown template variable "jobb"/.test(err.message));
    assert.throws(() => renderQuery('{{ .namespace }}', ctx), /unknown template variable "\.namespace"/);
    assert.throws(() => renderQuery('{{ }}', ctx), /empty template expression/);
  });

  it('a variables.X not given in templateVariables is an error naming it, never an empty string', () => {
    const ctx = templateContext(canary(), metric({ templateVariables: { a: '' } }));
    assert.equal(renderQuery('[{{ variables.a }}]', ctx), '[]', 'an explicitly empty value is a value');
    assert.throws(() => renderQuery('{{ variables.missing }}', ctx), /"variables\.missing" is not set: add "missing" to the metric's templateVariables/);
    assert.throws(() => renderQuery('{{ variables.toString }}', ctx), /"variables\.toString" is not set/);
  });

  it('an invalid interval is an error naming the metric', () => {
    assert.throws(() => metricIntervalMs(canary(), metric({ interval: 'soon' })), /metric errors: invalid duration "soon"/);
  });

  it('formats Prometheus durations in the largest exact unit', () => {
    assert.equal(promDuration(60_000), '1m');
    assert.equal(promDuration(3_600_000), '1h');
    assert.equal(promDuration(5_400_000), '90m');
    assert.equal(promDuration(45_000), '45s');
    assert.equal(promDuration(1500), '1500ms');
    assert.throws(() => promDuration(0));
  });

  it('the built-in queries select the canary Pods of the target', () => {
    const ctx = templateContext(canary(), metric({ interval: '1m' }));
    assert.equal(builtinQuery('request-success-rate'), REQUEST_SUCCESS_RATE_QUERY);
    assert.equal(builtinQuery('constructor'), undefined);
    const sr = renderQuery(REQUEST_SUCCESS_RATE_QUERY, ctx);
    assert.equal(
      sr,
      'sum(rate(http_requests_total{namespace="prod",pod=~"shop-api-canary-[a-z0-9]+-[a-z0-9]+",code!~"5.."}[1m]))' +
        ' / sum(rate(http_requests_total{namespace="prod",pod=~"shop-api-canary-[a-z0-9]+-[a-z0-9]+"}[1m])) * 100',
    );
    const d = renderQuery(REQUEST_DURATION_QUERY, ctx);
    assert.equal(
      d,
      'histogram_quantile(0.99, sum by (le) (rate(http_request_duration_seconds_bucket{namespace="prod",pod=~"shop-api-canary-[a-z0-9]+-[a-z0-9]+"}[1m]))) * 1000',
    );
    const podRe = /^shop-api-canary-[a-z0-9]+-[a-z0-9]+$/;
    assert.ok(podRe.test('shop-api-canary-7d9f8b6c5-x2x4z'));
    assert.ok(!podRe.test('shop-api-primary-7d9f8b6c5-x2x4z'));
    assert.ok(!podRe.test('shop-api-7d9f8b6c5-x2x4z'));
  });
});
