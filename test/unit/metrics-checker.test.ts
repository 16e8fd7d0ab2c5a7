// The metric checker's judgement table: in range, below min, above max, no
// data under each policy, errors never pass (whatever the policy), missing
// templates and Secrets, built-ins; and the cached Secret reader.

import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { V1Secret } from '@kubernetes/client-node';
import type { Canary, CanaryMetric, MetricTemplate, NoDataPolicy } from '../../core/api/types.js';
import { Registry } from '../../core/metrics.js';
import { TemplateMetricChecker, type MetricLookups } from '../../reconciler/analysis/metrics/checker.js';
import { secretReader } from '../../reconciler/analysis/metrics/secrets.js';

/** A Prometheus that answers by query: "value(N)", "nodata", "nan", "inf", "syntax", "auth". */
async function fakePrometheus(): Promise<{ base: string; queries: string[]; headers: Array<string | undefined>; close(): Promise<void> }> {
  const queries: string[] = [];
  const headers: Array<string | undefined> = [];
  const server: Server = createServer((req, res) => {
    const q = new URL(req.url ?? '/', 'http://x').searchParams.get('query') ?? '';
    queries.push(q);
    headers.push(req.headers.authorization);
    const vector = (...v: string[]) => JSON.stringify({ status: 'success', data: { resultType: 'vector', result: v.map((x) => ({ metric: {}, value: [1, x] })) } });
    res.setHeader('content-type', 'application/json');
    const m = /^value\((.*)\)$/.exec(q);
    if (m) return void res.end(vector(m[1]!));
    if (q === 'nodata') return void res.end(vector());
    if (q === 'nan') return void res.end(vector('NaN'));
    if (q === 'inf') return void res.end(vector('+Inf'));
    if (q === 'auth') {
      res.statusCode = 401;
      return void res.end(JSON.stringify({ status: 'error', errorType: 'unauthorized', error: `bad credentials ${req.headers.authorization}` }));
    }
    if (q.startsWith('http_requests_total') || q.includes('canary-[a-z0-9]+')) return void res.end(vector('99.5'));
    res.statusCode = 400;
    res.end(JSON.stringify({ status: 'error', errorType: 'bad_data', error: 'parse error: unexpected end of input' }));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    base: `http://127.0.0.1:${port}`,
    queries,
    headers,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

const NOW = Date.parse('2025-03-01T12:00:00Z');

function canary(metrics: CanaryMetric[] = []): Canary {
  return {
    apiVersion: 'canarygate.dev/v1alpha1',
    kind: 'Canary',
    metadata: { name: 'shop', namespace: 'prod' },
    spec: { targetRef: { kind: 'Deployment', name: 'shop-api' }, service: { port: 80 }, analysis: { interval: '30s', metrics } },
  } as Canary;
}

function template(namespace: string, name: string, query: string, address: string, secret?: string): MetricTemplate {
  return {
    apiVersion: 'canarygate.dev/v1alpha1',
    kind: 'MetricTemplate',
    metadata: { namespace, name },
    spec: { provider: { type: 'prometheus', address, ...(secret ? { secretRef: { name: secret } } : {}) }, query },
  };
}

describe('metrics/checker', () => {
  let prom: Awaited<ReturnType<typeof fakePrometheus>>;
  let templates: Map<string, MetricTemplate>;
  let secrets: Map<string, Record<string, string>>;
  let checker: TemplateMetricChecker;
  let registry: Registry;
  const lookups = (extra: Partial<MetricLookups> = {}): MetricLookups => ({
    template: (ns, name) => templates.get(`${ns}/${name}`),
    secret: async (ns, name) => secrets.get(`${ns}/${name}`),
    builtinPrometheus: prom.base,
    now: () => NOW,
    ...extra,
  });

  before(async () => {
    prom = await fakePrometheus();
  });
  after(() => prom.close());
  beforeEach(() => {
    templates = new Map();
    secrets = new Map();
    registry = new Registry();
    // one template per canned answer, in the Canary's namespace
    for (const q of ['value(5)', 'value(1)', 'value(10)', 'value(0.5)', 'value(12.345678)', 'nodata', 'nan', 'inf', 'syntax']) {
      templates.set(`prod/${q}`, template('prod', q, q, prom.base));
    }
    checker = new TemplateMetricChecker(lookups(), { registry, timeoutMs: 2000 });
  });

  const run = (m: CanaryMetric) => checker.check(canary([m]), m);
  const ref = (query: string, over: Partial<CanaryMetric> = {}): CanaryMetric => ({ name: 'm', templateRef: { name: query }, ...over });

  it('a value within the range passes (bounds inclusive)', async () => {
    for (const [q, want] of [
      ['value(5)', 5],
      ['value(1)', 1],
      ['value(10)', 10],
    ] as const) {
      const r = await run(ref(q, { thresholdRange: { min: 1, max: 10 } }));
      assert.equal(r.passed, true, r.message);
      assert.equal(r.kind, 'metric');
      assert.equal(r.name, 'm');
      assert.equal(r.held, undefined);
      assert.equal(r.message, `metric m (prometheus): ${want} is within [1, 10]`);
      assert.deepEqual(r.metric, { name: 'm', value: want, checkedAt: '2025-03-01T12:00:00.000Z', result: 'pass' });
    }
  });

  it('below the minimum and above the maximum fail, naming value and range', async () => {
    const low = await run(ref('value(0.5)', { thresholdRange: { min: 1 } }));
    assert.equal(low.passed, false);
    assert.equal(low.message, 'metric m (prometheus): 0.5 is below the minimum 1 (range [1, +Inf])');
    assert.deepEqual(low.metric, { name: 'm', value: 0.5, checkedAt: '2025-03-01T12:00:00.000Z', result: 'fail' });
    const high = await run(ref('value(12.345678)', { thresholdRange: { max: 10 } }));
    assert.equal(high.passed, false);
    assert.equal(high.message, 'metric m (prometheus): 12.3457 is above the maximum 10 (range [-Inf, 10])');
    assert.equal(high.metric?.value, 12.345678, 'the status keeps the exact value');
  });

  it('without a thresholdRange any value passes, and says so', async () => {
    const r = await run(ref('value(5)'));
    assert.equal(r.passed, true);
    assert.match(r.message, /5 \(no thresholdRange: any value passes\)/);
  });

  it('+Inf is a value (judged, not stored in the status); NaN is no data', async () => {
    const inf = await run(ref('inf', { thresholdRange: { max: 500 } }));
    assert.equal(inf.passed, false);
    assert.match(inf.message, /\+Inf is above the maximum 500/);
    assert.deepEqual(inf.metric, { name: 'm', checkedAt: '2025-03-01T12:00:00.000Z', result: 'fail' });
    const nan = await run(ref('nan', { thresholdRange: { max: 500 } }));
    assert.equal(nan.metric?.result, 'nodata');
  });

  const noData: Array<[NoDataPolicy | undefined, boolean, boolean | undefined, string]> = [
    [undefined, false, undefined, 'metric m (prometheus): no data (policy fail)'],
    ['fail', false, undefined, 'metric m (prometheus): no data (policy fail)'],
    ['pass', true, undefined, 'metric m (prometheus): no data (policy pass)'],
    ['hold', false, true, 'metric m (prometheus): no data (policy hold): analysis holds without counting'],
  ];
  for (const [policy, passed, held, message] of noData) {
    it(`no data with policy ${policy ?? '(default)'}: passed=${passed}, held=${held ?? false}`, async () => {
      const r = await run(ref('nodata', { thresholdRange: { min: 99 }, ...(policy ? { noDataPolicy: policy } : {}) }));
      assert.equal(r.passed, passed);
      assert.equal(r.held, held);
      assert.equal(r.message, message);
      assert.deepEqual(r.metric, { name: 'm', checkedAt: '2025-03-01T12:00:00.000Z', result: 'nodata' });
    });
  }

  for (const policy of ['fail', 'pass', 'hold'] as const) {
    it(`a query error never passes, with policy ${policy}`, async () => {
      const r = await run(ref('syntax', { noDataPolicy: policy, thresholdRange: { min: 0 } }));
      assert.equal(r.passed, false);
      assert.equal(r.held, undefined);
      assert.equal(r.metric?.result, 'error');
      assert.match(r.message, /^metric m: query failed: prometheus \(127\.0\.0\.1:\d+\): HTTP 400 Bad Request: bad_data: parse error: unexpected end of input$/);
    });
  }

  it('an unreachable provider is an error, never a pass', async () => {
    templates.set('prod/down', template('prod', 'down', 'value(1)', 'http://127.0.0.1:1'));
    const r = await run(ref('down', { noDataPolicy: 'pass' }));
    assert.equal(r.passed, false);
    assert.equal(r.metric?.result, 'error');
    assert.match(r.message, /^metric m: query failed: prometheus \(127\.0\.0\.1:1\): connection refused/);
  });

  it('a missing template is a failed check with a clear message', async () => {
    const r = await run({ name: 'latency', templateRef: { name: 'nope' }, noDataPolicy: 'pass' });
    assert.equal(r.passed, false);
    assert.equal(r.message, 'metric latency: MetricTemplate prod/nope not found');
    assert.equal(r.metric?.result, 'error');
    const r2 = await run({ name: 'latency', templateRef: { name: 'value(5)', namespace: 'shared' } });
    assert.equal(r2.message, 'metric latency: MetricTemplate shared/value(5) not found', 'an explicit namespace is used');
  });

  it('a reconciler watching one namespace says so for a template in another, instead of "not found"', async () => {
    templates.set('shared/elsewhere', template('shared', 'elsewhere', 'value(5)', prom.base));
    const scoped = new TemplateMetricChecker(lookups({ watchedNamespace: 'prod' }));
    const m: CanaryMetric = { name: 'latency', templateRef: { name: 'elsewhere', namespace: 'shared' }, thresholdRange: { max: 10 } };
    const r = await scoped.check(canary([m]), m);
    assert.equal(r.passed, false);
    assert.equal(r.metric?.result, 'error');
    assert.match(r.message, /MetricTemplate shared\/elsewhere is outside namespace prod, the only one this reconciler watches \(--namespace\)/);
    const local: CanaryMetric = { name: 'ok', templateRef: { name: 'value(5)' }, thresholdRange: { max: 10 } };
    templates.set('prod/value(5)', template('prod', 'value(5)', 'value(5)', prom.base));
    assert.equal((await scoped.check(canary([local]), local)).passed, true, 'its own namespace still works');
  });

  it('templateRef.namespace selects a template (and its Secret) in another namespace', async () => {
    templates.set('shared/guarded', template('shared', 'guarded', 'value({{ variables.v }})', prom.base, 'prom-auth'));
    secrets.set('shared/prom-auth', { bearerToken: 'shared-token-123456' });
    const r = await run({ name: 'x', templateRef: { name: 'guarded', namespace: 'shared' }, templateVariables: { v: '3' }, thresholdRange: { max: 5 } });
    assert.equal(r.passed, true, r.message);
    assert.equal(prom.queries.at(-1), 'value(3)');
    assert.equal(prom.headers.at(-1), 'Bearer shared-token-123456');
  });

  it('a missing or unreadable Secret is an error; credentials never appear in messages', async () => {
    templates.set('prod/auth', template('prod', 'auth', 'auth', prom.base, 'creds'));
    const missing = await run(ref('auth'));
    assert.equal(missing.passed, false);
    assert.equal(missing.message, 'metric m (prometheus): Secret prod/creds (secretRef of MetricTemplate prod/auth) not found');
    secrets.set('prod/creds', { username: 'admin', password: 'sup3r-secret-pw' });
    const denied = await run(ref('auth'));
    assert.equal(denied.passed, false);
    assert.match(denied.message, /HTTP 401 Unauthorized: unauthorized: bad credentials \*\*\*/);
    assert.ok(!denied.message.includes('sup3r-secret-pw'));
    assert.ok(!denied.message.includes(Buffer.from('admin:sup3r-secret-pw').toString('base64')));
    const broken = new TemplateMetricChecker(lookups({ secret: async () => Promise.reject(new Error('could not read Secret prod/creds: HTTP 403')) }));
    const r = await broken.check(canary(), ref('auth'));
    assert.equal(r.message, 'metric m (prometheus): could not read Secret prod/creds: HTTP 403');
  });

  it('a template error (unknown variable) is an error naming the variable', async () => {
    templates.set('prod/typo', template('prod', 'typo', 'sum(x{ns="{{ namespcae }}"})', prom.base));
    const r = await run(ref('typo', { noDataPolicy: 'pass' }));
    assert.equal(r.passed, false);
    assert.equal(r.metric?.result, 'error');
    assert.match(r.message, /^metric m \(prometheus\): MetricTemplate prod\/typo: unknown template variable "namespcae"/);
  });

  it('built-ins query the configured Prometheus with the canary Pods selected', async () => {
    const r = await run({ name: 'request-success-rate', interval: '1m', thresholdRange: { min: 99 } });
    assert.equal(r.passed, true, r.message);
    assert.equal(r.message, 'metric request-success-rate (prometheus): 99.5 is within [99, +Inf]');
    assert.match(prom.queries.at(-1)!, /namespace="prod",pod=~"shop-api-canary-\[a-z0-9\]\+-\[a-z0-9\]\+"/);
    assert.match(prom.queries.at(-1)!, /\[1m\]/);
  });

  it('a built-in without a configured Prometheus, or an unknown name without templateRef, is an error', async () => {
    const bare = new TemplateMetricChecker({ template: () => undefined, secret: async () => undefined });
    const r = await bare.check(canary(), { name: 'request-duration', thresholdRange: { max: 500 } });
    assert.equal(r.passed, false);
    assert.equal(r.message, "metric request-duration: the built-in metric needs the reconciler's Prometheus address, which is not configured");
    const r2 = await run({ name: 'error-rate' });
    assert.equal(r2.passed, false);
    assert.equal(r2.message, 'metric error-rate: no templateRef, and "error-rate" is not a built-in metric (request-success-rate, request-duration)');
  });

  it('counts checks by provider and result', async () => {
    await run(ref('value(5)', { thresholdRange: { max: 10 } }));
    await run(ref('value(5)', { thresholdRange: { max: 1 } }));
    await run(ref('nodata'));
    await run(ref('syntax'));
    await run(ref('missing'));
    const text = registry.expose();
    for (const result of ['pass', 'fail', 'nodata', 'error']) assert.match(text, new RegExp(`canary_gate_metric_checks_total\\{provider="prometheus",result="${result}"\\} 1`));
    assert.match(text, /canary_gate_metric_checks_total\{provider="none",result="error"\} 1/);
    assert.match(text, /canary_gate_metric_query_duration_seconds_count\{provider="prometheus"\} 4/);
    assert.deepEqual(checker.stats(), { 'prometheus/pass': 1, 'prometheus/fail': 1, 'prometheus/nodata': 1, 'prometheus/error': 1, 'none/error': 1 });
  });
});

describe('metrics/secrets', () => {
  const secret = (data: Record<string, string>): V1Secret => ({ data: Object.fromEntries(Object.entries(data).map(([k, v]) => [k, Buffer.from(v).toString('base64')])) });

  it('decodes, caches for the TTL, remembers 404 briefly, and does not cache other errors', async () => {
    let t = 0;
    const calls: string[] = [];
    let fail: unknown;
    const api = {
      async readNamespacedSecret(req: { name: string; namespace: string }): Promise<V1Secret> {
        calls.push(`${req.namespace}/${req.name}`);
        if (fail) throw fail;
        if (req.name === 'gone') throw Object.assign(new Error('HTTP-Code: 404 Message: Unknown API Status Code! Body: ...'), { code: 404 });
        return secret({ token: 'abc', address: 'https://hooks.example/x' });
      },
    };
    const read = secretReader(api, { ttlMs: 1000, missingTtlMs: 100, now: () => t });
    assert.deepEqual(await read('ns', 's'), { token: 'abc', address: 'https://hooks.example/x' });
    await read('ns', 's');
    assert.equal(calls.length, 1, 'cached');
    t = 1001;
    await read('ns', 's');
    assert.equal(calls.length, 2, 'read again after the TTL');
    assert.equal(await read('ns', 'gone'), undefined);
    await read('ns', 'gone');
    assert.equal(calls.length, 3);
    t = 1200;
    await read('ns', 'gone');
    assert.equal(calls.length, 4, 'a missing Secret is looked up again soon');
    fail = Object.assign(new Error('Forbidden: secrets "x" is forbidden for user'), { code: 403 });
    await assert.rejects(read('ns', 'other'), /^Error: could not read Secret ns\/other: HTTP 403$/);
    await assert.rejects(read('ns', 'other'));
    assert.equal(calls.length, 6, 'errors are not cached');
  });
});
