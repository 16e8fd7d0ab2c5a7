// The Grafana dashboard (deploy/grafana/canary-gate.json): a valid dashboard
// model with a Prometheus data-source variable, panels that do not overlap,
// and queries that only use metrics the code actually exports.

import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');

interface Panel {
  id: number;
  type: string;
  title: string;
  gridPos: { h: number; w: number; x: number; y: number };
  datasource?: { type: string; uid: string };
  targets?: Array<{ expr: string; refId: string; datasource?: { uid: string } }>;
}

function sources(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir)) {
    const p = path.join(dir, name);
    if (statSync(p).isDirectory()) out.push(...sources(p));
    else if (name.endsWith('.ts')) out.push(p);
  }
  return out;
}

describe('deploy/grafana dashboard', () => {
  const dash = JSON.parse(readFileSync(path.join(root, 'deploy/grafana/canary-gate.json'), 'utf8')) as {
    uid: string;
    title: string;
    schemaVersion: number;
    panels: Panel[];
    templating: { list: Array<{ name: string; type: string; query: unknown }> };
  };

  it('is a dashboard model with a Prometheus data-source variable', () => {
    assert.equal(dash.uid, 'canary-gate');
    assert.ok(dash.schemaVersion >= 36);
    const ds = dash.templating.list.find((v) => v.name === 'datasource');
    assert.deepEqual([ds?.type, ds?.query], ['datasource', 'prometheus']);
    assert.ok(dash.templating.list.some((v) => v.name === 'namespace'));
    assert.ok(dash.templating.list.some((v) => v.name === 'canary'));
  });

  it('panels have unique ids, fit the 24-column grid without overlapping, and query through the variable', () => {
    const ids = new Set<number>();
    const cells = new Set<string>();
    for (const p of dash.panels) {
      assert.ok(!ids.has(p.id), `duplicate panel id ${p.id}`);
      ids.add(p.id);
      const g = p.gridPos;
      assert.ok(g.x >= 0 && g.w > 0 && g.x + g.w <= 24 && g.h > 0, `${p.title}: gridPos ${JSON.stringify(g)}`);
      for (let x = g.x; x < g.x + g.w; x++) {
        for (let y = g.y; y < g.y + g.h; y++) {
          assert.ok(!cells.has(`${x},${y}`), `${p.title} overlaps another panel at ${x},${y}`);
          cells.add(`${x},${y}`);
        }
      }
      if (p.type === 'row') continue;
      assert.equal(p.datasource?.uid, '${datasource}', p.title);
      assert.ok((p.targets ?? []).length > 0, `${p.title} has no query`);
      const refs = new Set<string>();
      for (const t of p.targets ?? []) {
        assert.equal(t.datasource?.uid, '${datasource}', p.title);
        assert.ok(t.expr.trim(), p.title);
        assert.ok(!refs.has(t.refId), `${p.title}: duplicate refId`);
        refs.add(t.refId);
        assert.equal(t.expr.split('(').length, t.expr.split(')').length, `${p.title}: unbalanced parentheses in ${t.expr}`);
        assert.equal(t.expr.split('{').length, t.expr.split('}').length, `${p.title}: unbalanced braces in ${t.expr}`);
      }
    }
  });

  it('covers weight, phase, failed checks, step lag, sync duration, informers and webhook requests/latency', () => {
    const exprs = dash.panels.flatMap((p) => (p.targets ?? []).map((t) => t.expr)).join('\n');
    for (const name of [
      'canary_gate_canary_weight',
      'canary_gate_canary_phase',
      'canary_gate_canary_failed_checks',
      'canary_gate_reconciler_step_lag_seconds_bucket',
      'canary_gate_reconciler_sync_duration_seconds_bucket',
      'canary_gate_informer_synced',
      'canary_gate_informer_last_event_timestamp_seconds',
      'canary_gate_webhook_requests_total',
      'canary_gate_webhook_request_duration_seconds_bucket',
      'canary_gate_metric_checks_total',
      'canary_gate_alerts_total',
    ]) {
      assert.ok(exprs.includes(name), `no panel uses ${name}`);
    }
  });

  it('every metric it queries is declared in the code', () => {
    const code = ['core', 'reconciler', 'webhook'].flatMap((d) => sources(path.join(root, d))).map((f) => readFileSync(f, 'utf8')).join('\n');
    const used = new Set(
      dash.panels.flatMap((p) => (p.targets ?? []).flatMap((t) => [...t.expr.matchAll(/canary_gate_[a-z_]+/g)].map((m) => m[0].replace(/_(bucket|sum|count)$/, '')))),
    );
    assert.ok(used.size >= 15);
    for (const name of used) assert.ok(code.includes(`'${name}'`), `${name} is not exported by any component`);
  });
});
