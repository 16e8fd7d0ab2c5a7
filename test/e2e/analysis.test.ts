// Metric analysis end to end: the reconciler queries the real Prometheus of
// the local control plane through a MetricTemplate, judges the value, and
// sends alerts to a generic webhook receiver.

import assert from 'node:assert/strict';
import { mkdir, rename, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import type { Canary } from '../../core/api/types.js';
import { clusterDir, kubectl, kubectlOk, getObject as get, applyAsUser as apply } from './cluster.js';
import { GateServer } from './gate-server.js';
import { createNamespace, deleteNamespace } from './namespaces.js';
import { deployment, service } from './objects.js';
import { startReconciler, type RunningReconciler } from './reconciler-process.js';
import { waitFor } from './wait.js';

const PROMETHEUS = `http://127.0.0.1:${process.env.PROMETHEUS_PORT ?? '39090'}`;

/** Exports cg_error_rate{namespace,canary} per canary, with values the test sets. */
class ErrorRateExporter {
  readonly rates = new Map<string, number>();
  private server?: Server;
  private targetFile = '';
  constructor(private readonly ns: string) {}

  async start(): Promise<void> {
    this.server = createServer((_req, res) => {
      const lines = ['# TYPE cg_error_rate gauge'];
      for (const [canary, v] of this.rates) lines.push(`cg_error_rate{namespace="${this.ns}",canary="${canary}"} ${v}`);
      res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4' }).end(lines.join('\n') + '\n');
    });
    await new Promise<void>((r) => this.server!.listen(0, '127.0.0.1', r));
    const port = (this.server.address() as AddressInfo).port;
    const dir = path.join(clusterDir, 'prometheus', 'targets');
    await mkdir(dir, { recursive: true });
    this.targetFile = path.join(dir, `analysis-${this.ns}.json`);
    await writeFile(`${this.targetFile}.tmp`, JSON.stringify([{ targets: [`127.0.0.1:${port}`], labels: { job: `analysis-${this.ns}` } }]));
    await rename(`${this.targetFile}.tmp`, this.targetFile);
  }

  async stop(): Promise<void> {
    await rm(this.targetFile, { force: true });
    this.server?.closeAllConnections();
    await new Promise<void>((r) => (this.server ? this.server.close(() => r()) : r()));
  }
}

async function promValue(query: string): Promise<number | undefined> {
  const r = await fetch(`${PROMETHEUS}/api/v1/query?query=${encodeURIComponent(query)}`);
  const body = (await r.json()) as { data?: { result?: { value: [number, string] }[] } };
  const v = body.data?.result?.[0]?.value[1];
  return v === undefined ? undefined : Number(v);
}

const image = (d: { spec: { template: { spec: { containers: { image: string }[] } } } } | undefined) => d?.spec.template.spec.containers[0]?.image;

describe('metric analysis with the real Prometheus', function () {
  let ns: string;
  let reconciler: RunningReconciler;
  let exporter: ErrorRateExporter;
  const receiver = new GateServer();

  before(async function () {
    ns = await createNamespace('analysis');
    exporter = new ErrorRateExporter(ns);
    await exporter.start();
    await receiver.start();
    await apply(ns, {
      apiVersion: 'canarygate.dev/v1alpha1',
      kind: 'MetricTemplate',
      metadata: { name: 'error-rate' },
      spec: { provider: { type: 'prometheus', address: PROMETHEUS }, query: 'max(cg_error_rate{namespace="{{ namespace }}",canary="{{ target }}"})' },
    });
    await apply(ns, {
      apiVersion: 'canarygate.dev/v1alpha1',
      kind: 'MetricTemplate',
      metadata: { name: 'unreachable' },
      spec: { provider: { type: 'prometheus', address: 'http://127.0.0.1:9' }, query: 'vector(0)' },
    });
    await apply(ns, { apiVersion: 'canarygate.dev/v1alpha1', kind: 'AlertProvider', metadata: { name: 'ops' }, spec: { type: 'webhook', address: receiver.url('alerts') } });
    reconciler = await startReconciler({ namespace: ns });
  });
  after(async function () {
    await reconciler?.stop();
    await exporter?.stop();
    await receiver.stop();
    await deleteNamespace(ns);
  });

  async function run(name: string, metric: Record<string, unknown>, threshold = 2) {
    await apply(ns, {
      apiVersion: 'canarygate.dev/v1alpha1',
      kind: 'Canary',
      metadata: { name },
      spec: {
        targetRef: { apiVersion: 'apps/v1', kind: 'Deployment', name },
        service: { port: 80 },
        progressDeadlineSeconds: 60,
        analysis: {
          interval: '1s',
          threshold,
          stepWeight: 25,
          maxWeight: 50,
          metrics: [{ name: 'error-rate', interval: '1m', templateRef: { name: 'error-rate' }, ...metric }],
          alerts: [{ name: 'ops', severity: 'info', providerRef: { name: 'ops' } }],
        },
      },
    });
    await apply(ns, deployment(name, { image: `example.test/${name}:1` }));
    await apply(ns, service(name, { selector: { app: name } }));
    await waitFor('Initialized', async () => (await get<Canary>(ns, 'canary', name))?.status?.phase === 'Initialized', { namespace: ns, timeoutMs: 30_000 });
    await apply(ns, deployment(name, { image: `example.test/${name}:2` }));
  }
  const phase = async (name: string) => (await get<Canary>(ns, 'canary', name))?.status?.phase;
  async function scraped(name: string, value: number) {
    exporter.rates.set(name, value);
    await waitFor(`Prometheus to have ${name}=${value}`, async () => (await promValue(`cg_error_rate{namespace="${ns}",canary="${name}"}`)) === value, { timeoutMs: 30_000 });
  }

  it('promotes a canary whose error rate stays within the range, recording the value in status', async function () {
    await scraped('healthy', 0.5);
    await run('healthy', { thresholdRange: { max: 1 } });
    await waitFor('Succeeded', async () => (await phase('healthy')) === 'Succeeded', { namespace: ns, timeoutMs: 60_000 });
    const c = await get<Canary>(ns, 'canary', 'healthy');
    const m = c?.status?.metrics?.find((x) => x.name === 'error-rate');
    assert.equal(m?.value, 0.5);
    assert.equal(m?.result, 'pass');
    assert.equal(image(await get(ns, 'deployment', 'healthy')), 'example.test/healthy:2');
    await waitFor('the promotion alert', () => receiver.callsTo('alerts').some((c) => c.body.reason === 'Succeeded' && (c.body.canary as { name: string }).name === 'healthy'), { timeoutMs: 10_000 });
  });

  it('rolls back after `threshold` failed checks when the error rate crosses the range, and alerts with the failing check', async function () {
    await scraped('failing', 7);
    await run('failing', { thresholdRange: { max: 1 } }, 3);
    await waitFor('Failed', async () => (await phase('failing')) === 'Failed', { namespace: ns, timeoutMs: 60_000 });
    assert.equal(image(await get(ns, 'deployment', 'failing')), 'example.test/failing:1');
    const events = await kubectlOk(['-n', ns, 'get', 'events', '--field-selector', 'involvedObject.name=failing,involvedObject.kind=Canary,reason=CheckFailed', '-o', 'jsonpath={.items[*].message}']);
    assert.match(events, /error-rate/);
    assert.match(events, /7/);
    const alert = await waitFor('the rollback alert', () => receiver.callsTo('alerts').find((c) => c.body.reason === 'RolledBack' && (c.body.canary as { name: string }).name === 'failing'), { timeoutMs: 10_000 });
    assert.equal(alert.body.severity, 'error');
    assert.match(String(alert.body.message), /error-rate/);
  });

  it('follows the no-data policy: hold neither promotes nor counts a failure', async function () {
    await run('nodata', { thresholdRange: { max: 1 }, noDataPolicy: 'hold' });
    await waitFor('a hold', async () => /holding/.test((await get<Canary>(ns, 'canary', 'nodata'))?.status?.message ?? ''), { namespace: ns, timeoutMs: 30_000 });
    await new Promise((r) => setTimeout(r, 3000));
    const c = await get<Canary>(ns, 'canary', 'nodata');
    assert.equal(c?.status?.phase, 'Progressing');
    assert.equal(c?.status?.failedChecks, 0);
    assert.equal(image(await get(ns, 'deployment', 'nodata')), 'example.test/nodata:1');
    // Data arrives: the run goes on to promotion.
    await scraped('nodata', 0);
    await waitFor('Succeeded', async () => (await phase('nodata')) === 'Succeeded', { namespace: ns, timeoutMs: 60_000 });
  });

  it('never promotes while Prometheus is unreachable', async function () {
    await run('down', { templateRef: { name: 'unreachable' }, thresholdRange: { max: 1 }, noDataPolicy: 'pass' });
    await waitFor('Failed', async () => (await phase('down')) === 'Failed', { namespace: ns, timeoutMs: 60_000 });
    assert.equal(image(await get(ns, 'deployment', 'down')), 'example.test/down:1');
    const c = await get<Canary>(ns, 'canary', 'down');
    assert.equal(c?.status?.metrics?.find((m) => m.name === 'error-rate')?.result, 'error');
  });
});
