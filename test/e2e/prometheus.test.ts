// The Prometheus provider and the built-in metrics against the REAL
// Prometheus the test cluster runs (scrape interval 1 s, file-based service
// discovery). The test starts its own exporter, points Prometheus at it by
// writing a target file, sets the values it exports, and waits for them to be
// scraped and queryable.

import assert from 'node:assert/strict';
import { mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import type { Canary, CanaryMetric } from '../../core/api/types.js';
import { TemplateMetricChecker } from '../../reconciler/analysis/metrics/checker.js';
import { createProvider, ProviderError, type MetricsProvider } from '../../reconciler/analysis/metrics/provider.js';
import type { CheckResult } from '../../reconciler/decide/transition.js';
import { clusterDir, repoRoot } from './cluster.js';
import { waitFor } from './wait.js';

const PROMETHEUS = `http://127.0.0.1:${process.env.PROMETHEUS_PORT ?? '39090'}`;
const PROMETHEUS_HOST = new URL(PROMETHEUS).host;

/** A /metrics endpoint whose content the test decides; counters move on every scrape. */
class Exporter {
  gauge = 0;
  scrapes = 0;
  private server?: Server;

  constructor(
    private readonly run: string,
    private readonly ns: string,
  ) {}

  async start(): Promise<number> {
    this.server = createServer((req, res) => {
      if (req.url !== '/metrics') return void res.writeHead(404).end();
      this.scrapes++;
      res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4' }).end(this.render());
    });
    await new Promise<void>((resolve) => this.server!.listen(0, '127.0.0.1', resolve));
    return (this.server.address() as AddressInfo).port;
  }

  async stop(): Promise<void> {
    if (!this.server) return;
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server!.close(() => resolve()));
  }

  private render(): string {
    const n = this.scrapes;
    const run = `run="${this.run}"`;
    const canaryPod = `namespace="${this.ns}",pod="app-canary-5d8f7c9b6-x2x4z"`;
    const primaryPod = `namespace="${this.ns}",pod="app-primary-6c7d8e9f0-abcde"`;
    const otherNs = `namespace="${this.ns}-other",pod="app-canary-5d8f7c9b6-qwert"`;
    const lines = [
      '# TYPE cg_e2e_value gauge',
      `cg_e2e_value{${run}} ${this.gauge}`,
      '# TYPE cg_e2e_multi gauge',
      `cg_e2e_multi{${run},i="1"} 1`,
      `cg_e2e_multi{${run},i="2"} 2`,
      '# TYPE http_requests_total counter',
      // The canary: 99 % non-5xx. The primary and another namespace fail half the time and must not count.
      `http_requests_total{${canaryPod},code="200"} ${99 * n}`,
      `http_requests_total{${canaryPod},code="503"} ${1 * n}`,
      `http_requests_total{${primaryPod},code="200"} ${50 * n}`,
      `http_requests_total{${primaryPod},code="500"} ${50 * n}`,
      `http_requests_total{${otherNs},code="500"} ${100 * n}`,
      '# TYPE http_request_duration_seconds histogram',
      // The canary: 90 % under 100 ms, 99 % under 250 ms -> p99 = 250 ms. The primary is slow.
      ...[
        ['0.1', 90],
        ['0.25', 99],
        ['0.5', 100],
        ['+Inf', 100],
      ].map(([le, c]) => `http_request_duration_seconds_bucket{${canaryPod},le="${le}"} ${Number(c) * n}`),
      `http_request_duration_seconds_sum{${canaryPod}} ${12 * n}`,
      `http_request_duration_seconds_count{${canaryPod}} ${100 * n}`,
      ...[
        ['0.1', 0],
        ['0.25', 0],
        ['0.5', 0],
        ['+Inf', 100],
      ].map(([le, c]) => `http_request_duration_seconds_bucket{${primaryPod},le="${le}"} ${Number(c) * n}`),
      `http_request_duration_seconds_sum{${primaryPod}} ${300 * n}`,
      `http_request_duration_seconds_count{${primaryPod}} ${100 * n}`,
    ];
    return `${lines.join('\n')}\n`;
  }
}

function canaryFor(namespace: string, target: string, metrics: CanaryMetric[]): Canary {
  return {
    apiVersion: 'canarygate.dev/v1alpha1',
    kind: 'Canary',
    metadata: { name: target, namespace },
    spec: { targetRef: { kind: 'Deployment', name: target }, service: { port: 80 }, analysis: { interval: '10s', metrics } },
  };
}

async function queryError(p: Promise<unknown>): Promise<ProviderError> {
  try {
    await p;
  } catch (err) {
    assert.ok(err instanceof ProviderError, `expected a ProviderError, got ${String(err)}`);
    return err;
  }
  assert.fail('expected the query to fail');
}

describe('prometheus provider against a real Prometheus', function () {
  this.timeout(120_000);
  const run = `e2e${process.pid}${Date.now().toString(36)}`;
  const ns = `ns-${run}`;
  const exporter = new Exporter(run, ns);
  const targetsFile = path.join(clusterDir, 'prometheus', 'targets', `prometheus-test-${run}.json`);
  let prom: MetricsProvider;

  before(async () => {
    const ready = await fetch(`${PROMETHEUS}/-/ready`).catch(() => undefined);
    assert.ok(ready?.ok, `Prometheus is not ready at ${PROMETHEUS} (make cluster-up)`);
    const port = await exporter.start();
    await mkdir(path.dirname(targetsFile), { recursive: true });
    // Written whole, then renamed: file_sd must never read half a file.
    await writeFile(`${targetsFile}.tmp`, JSON.stringify([{ targets: [`127.0.0.1:${port}`], labels: { job: `canary-gate-${run}` } }]));
    await rename(`${targetsFile}.tmp`, targetsFile);
    prom = createProvider({ type: 'prometheus', address: PROMETHEUS }, undefined, { timeoutMs: 5000 });
  });

  after(async () => {
    await rm(targetsFile, { force: true });
    await rm(`${targetsFile}.tmp`, { force: true });
    await exporter.stop();
  });

  it('reads a value through a real query once it is scraped, and follows changes', async () => {
    exporter.gauge = 42.5;
    const q = `cg_e2e_value{run="${run}"}`;
    await waitFor('the exporter value to be scraped', async () => (await prom.query(q)) === 42.5, { timeoutMs: 60_000, intervalMs: 500 });
    assert.ok(exporter.scrapes > 0);
    exporter.gauge = 7.25;
    await waitFor('the new value to be scraped', async () => (await prom.query(q)) === 7.25, { timeoutMs: 30_000, intervalMs: 500 });
    // A scalar result and arithmetic work too.
    assert.equal(await prom.query(`scalar(${q}) * 2`), 14.5);
  });

  it('a series that does not exist is no data; 0/0 is no data', async () => {
    assert.equal(await prom.query(`cg_e2e_does_not_exist{run="${run}"}`), undefined);
    assert.equal(await prom.query(`sum(cg_e2e_does_not_exist{run="${run}"})`), undefined);
    assert.equal(await prom.query('vector(0) / vector(0)'), undefined);
  });

  it('several series are an error naming the count', async () => {
    const q = `cg_e2e_multi{run="${run}"}`;
    await waitFor('both series to be scraped', async () => (await prom.query(`count(${q})`)) === 2, { timeoutMs: 60_000, intervalMs: 500 });
    const err = await queryError(prom.query(q));
    assert.match(err.message, new RegExp(`^prometheus \\(${PROMETHEUS_HOST}\\): the query returned 2 series`));
  });

  it('bad PromQL gives an error naming prometheus and the reason the server gave', async () => {
    const err = await queryError(prom.query(`sum(cg_e2e_value{run="${run}"}`));
    assert.equal(err.provider, 'prometheus');
    assert.equal(err.host, PROMETHEUS_HOST);
    assert.match(err.message, new RegExp(`^prometheus \\(${PROMETHEUS_HOST}\\): HTTP 400 Bad Request: bad_data: .*(parse error|unclosed)`));
    const err2 = await queryError(prom.query(`cg_e2e_value{run="${run}"}[1m]`));
    assert.match(err2.message, /range vector \(matrix\)/);
  });

  it('an unreachable address gives an error', async () => {
    const dead = createServer();
    await new Promise<void>((resolve) => dead.listen(0, '127.0.0.1', resolve));
    const port = (dead.address() as AddressInfo).port;
    await new Promise<void>((resolve) => dead.close(() => resolve()));
    const err = await queryError(createProvider({ type: 'prometheus', address: `http://127.0.0.1:${port}` }).query('up'));
    assert.equal(err.message, `prometheus (127.0.0.1:${port}): connection refused (ECONNREFUSED)`);
  });

  it('the built-in metrics judge the canary Pods only (success rate and p99 latency)', async () => {
    const checker = new TemplateMetricChecker({ template: () => undefined, secret: async () => undefined, builtinPrometheus: PROMETHEUS });
    const successRate: CanaryMetric = { name: 'request-success-rate', interval: '10s', thresholdRange: { min: 98.9 } };
    const duration: CanaryMetric = { name: 'request-duration', interval: '10s', thresholdRange: { max: 500 } };
    const canary = canaryFor(ns, 'app', [successRate, duration]);
    const passed = async (m: CanaryMetric): Promise<CheckResult | undefined> => {
      const r = await checker.check(canary, m);
      return r.metric?.result === 'pass' ? r : undefined;
    };
    const sr = await waitFor('request-success-rate to have data', () => passed(successRate), { timeoutMs: 60_000, intervalMs: 1000 });
    assert.ok(Math.abs((sr.metric?.value ?? 0) - 99) < 0.01, sr.message);
    assert.match(sr.message, /^metric request-success-rate \(prometheus\): (99|98\.99\d*|99\.00\d*) is within \[98\.9, \+Inf\]$/);
    const d = await waitFor('request-duration to have data', () => passed(duration), { timeoutMs: 60_000, intervalMs: 1000 });
    assert.ok(Math.abs((d.metric?.value ?? 0) - 250) < 0.5, d.message);

    // The same queries with a stricter range fail, naming the value and the bound.
    const strict = await checker.check(canary, { ...duration, thresholdRange: { max: 200 } });
    assert.equal(strict.passed, false);
    assert.match(strict.message, /^metric request-duration \(prometheus\): 25\d(\.\d+)? is above the maximum 200/);

    // A target without canary Pods has no data: the policy decides.
    const ghost = canaryFor(ns, 'ghost', []);
    const held = await checker.check(ghost, { ...successRate, noDataPolicy: 'hold' });
    assert.deepEqual([held.passed, held.held, held.metric?.result], [false, true, 'nodata']);
    assert.equal(held.message, 'metric request-success-rate (prometheus): no data (policy hold): analysis holds without counting');
    const failed = await checker.check(ghost, successRate);
    assert.deepEqual([failed.passed, failed.held, failed.message], [false, undefined, 'metric request-success-rate (prometheus): no data (policy fail)']);
  });

  it('every query of the Grafana dashboard is valid PromQL on this Prometheus', async () => {
    const dash = JSON.parse(await readFile(path.join(repoRoot, 'deploy/grafana/canary-gate.json'), 'utf8')) as {
      panels: Array<{ title: string; targets?: Array<{ expr: string }> }>;
    };
    let checked = 0;
    for (const p of dash.panels) {
      for (const t of p.targets ?? []) {
        const expr = t.expr.replace(/\$__rate_interval/g, '1m').replace(/\$(namespace|canary)/g, '.*');
        // No data is fine here (nothing exports these metrics to this Prometheus); a parse error is not.
        await prom.query(expr).catch((err: unknown) => {
          if (!(err instanceof ProviderError) || !/series/.test(err.reason)) throw new Error(`panel "${p.title}": ${String(err)}`);
        });
        checked++;
      }
    }
    assert.ok(checked >= 20, `checked ${checked} queries`);
  });
});
