import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

import { loadAllYaml, loadYaml } from '@kubernetes/client-node';

import { command, generateFiles, staleFiles, unexpectedFiles } from '../../deploy/command.js';
import { crds } from '../../deploy/crds.js';
import { CHART_DIR, SUBSTITUTIONS, chartManifests, defaultValues } from '../../deploy/helm/chart.js';
import { IMAGE, IMAGE_NAME, IMAGE_TAG, SYSTEM_NAMESPACE, baseManifests, kustomization } from '../../deploy/manifests.js';

// dist/test/unit -> repository root
const root = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
const deployDir = join(root, 'deploy');
const chartDir = join(deployDir, CHART_DIR);

/**
 * A minimal Helm renderer: replaces each `{{ .Values.a.b }}` with the value at
 * a.b and `{{ .Release.Namespace }}` with the release namespace, and refuses
 * any other template syntax (the chart uses nothing else).
 */
function render(template: string, values: Record<string, unknown>, releaseNamespace = SYSTEM_NAMESPACE): string {
  const out = template.replace(/\{\{\s*\.Release\.Namespace\s*\}\}/g, () => releaseNamespace).replace(/\{\{\s*\.Values\.([A-Za-z0-9_.]+)\s*\}\}/g, (_m, path: string) => {
    let v: unknown = values;
    for (const key of path.split('.')) {
      assert.ok(v && typeof v === 'object' && key in v, `values.yaml has no ${path}`);
      v = (v as Record<string, unknown>)[key];
    }
    assert.ok(typeof v === 'string' || typeof v === 'number', `${path} is not a scalar`);
    return String(v);
  });
  assert.ok(!out.includes('{{'), 'template syntax the minimal renderer does not know');
  return out;
}

async function chartValues(): Promise<Record<string, unknown>> {
  // values.yaml is no Kubernetes object: loadYaml passes it through unchanged.
  return loadYaml<Record<string, unknown>>(await readFile(join(chartDir, 'values.yaml'), 'utf8'));
}

describe('deploy: Helm chart', function () {
  // Renders and writes every generated file: seconds, not milliseconds, on a busy machine.
  this.timeout(20_000);
  it('is up to date on disk (the same check as canary-gate manifests --check)', async () => {
    const files = generateFiles();
    const chart = [...files.keys()].filter((p) => p.startsWith(`${CHART_DIR}/`));
    for (const p of ['Chart.yaml', 'values.yaml', 'values.schema.json', ...chartManifests().map((m) => `templates/${m.file}`)]) {
      assert.ok(chart.includes(`${CHART_DIR}/${p}`), `generator writes ${p}`);
    }
    assert.deepEqual(await staleFiles(deployDir, files), [], 'run `node dist/core/cli.js manifests`');
    assert.deepEqual(await unexpectedFiles(deployDir, files), [], 'run `node dist/core/cli.js manifests`');
  });

  it('canary-gate manifests --check fails when a chart file is stale', async () => {
    const tmp = await mkdtemp(join(tmpdir(), 'canary-gate-helm-'));
    const { log, error } = console;
    console.log = () => {};
    console.error = () => {};
    try {
      const base = join(tmp, 'base');
      assert.equal(await command.run(['--out', base]), 0);
      assert.equal(await command.run(['--check', '--out', base]), 0);
      await writeFile(join(tmp, CHART_DIR, 'templates', 'webhook.yaml'), '# edited by hand\n', { flag: 'a' });
      assert.equal(await command.run(['--check', '--out', base]), 1);
      assert.deepEqual(await staleFiles(tmp, generateFiles()), [`${CHART_DIR}/templates/webhook.yaml`]);
      // A template the generator no longer writes would still be rendered by Helm: --check names it, a run removes it.
      await writeFile(join(tmp, CHART_DIR, 'templates', 'webhook.yaml'), (await readFile(join(chartDir, 'templates', 'webhook.yaml'), 'utf8')));
      await writeFile(join(tmp, CHART_DIR, 'templates', 'old.yaml'), 'kind: ConfigMap\n');
      assert.equal(await command.run(['--check', '--out', base]), 1);
      assert.deepEqual(await unexpectedFiles(tmp, generateFiles()), [`${CHART_DIR}/templates/old.yaml`]);
      assert.equal(await command.run(['--out', base]), 0);
      assert.equal(await command.run(['--check', '--out', base]), 0);
    } finally {
      console.log = log;
      console.error = error;
      await rm(tmp, { recursive: true, force: true });
    }
  });

  it('Chart.yaml: apiVersion v2, canary-gate 0.1.0', async () => {
    const chart = loadYaml<Record<string, unknown>>(await readFile(join(chartDir, 'Chart.yaml'), 'utf8'));
    assert.equal(chart.apiVersion, 'v2');
    assert.equal(chart.name, 'canary-gate');
    assert.equal(chart.version, '0.1.0');
    assert.equal(chart.appVersion, '0.1.0');
  });

  it('crds/ holds the CRDs exactly as deploy/crds', async () => {
    for (const crd of crds) {
      const file = `${crd.metadata.name}.yaml`;
      assert.equal(await readFile(join(chartDir, 'crds', file), 'utf8'), await readFile(join(deployDir, 'crds', file), 'utf8'), file);
    }
  });

  it('values.yaml defaults are the values of the kustomize base', async () => {
    const values = await chartValues();
    assert.deepEqual(values, defaultValues());
    const images = kustomization([]).images as { name: string; newName: string; newTag: string }[];
    assert.deepEqual(values.image, { repository: images[0]!.newName, tag: images[0]!.newTag });
    assert.equal(`${IMAGE_NAME}:${IMAGE_TAG}`, IMAGE);
    assert.equal(values.namespace, undefined, 'the namespace is the release namespace');
    const deployments = Object.fromEntries(
      baseManifests()
        .flatMap((m) => m.objects)
        .filter((o) => o.kind === 'Deployment')
        .map((o) => [o.metadata!.name, (o as { spec: { replicas: number } }).spec.replicas]),
    );
    assert.deepEqual(values.webhook, { replicas: deployments['canary-gate-webhook'], failurePolicy: 'Fail' });
    assert.deepEqual(values.reconciler, { replicas: deployments['canary-gate-reconciler'] });
  });

  it('templates rendered with the defaults are the kustomize base, object for object, but the Namespace', async () => {
    const values = await chartValues();
    assert.deepEqual(
      baseManifests().filter((m) => !chartManifests().some((c) => c.file === m.file)).flatMap((m) => m.objects.map((o) => o.kind)),
      ['Namespace'],
      'only the Namespace is left to helm install --create-namespace',
    );
    for (const m of chartManifests()) {
      const template = await readFile(join(chartDir, 'templates', m.file), 'utf8');
      assert.ok(template.includes('{{ .'), `${m.file} is templated`);
      const rendered = loadAllYaml(render(template, values));
      // The base file as kustomize applies it; its images: entry maps canary-gate to itself (IMAGE).
      const base = loadAllYaml(await readFile(join(deployDir, 'base', m.file), 'utf8'));
      assert.deepStrictEqual(rendered, base, m.file);
    }
  });

  it('templates differ from the base only in the substituted fields', async () => {
    const exprs = Object.values(SUBSTITUTIONS).map((s) => s.expr);
    for (const m of chartManifests()) {
      const template = (await readFile(join(chartDir, 'templates', m.file), 'utf8')).split('\n');
      const base = (await readFile(join(deployDir, 'base', m.file), 'utf8')).split('\n');
      assert.equal(template.length, base.length, m.file);
      template.forEach((line, i) => {
        if (line !== base[i]) assert.ok(exprs.some((e) => line.includes(e)), `${m.file}:${i + 1}: ${line}`);
      });
    }
  });

  it('other values reach the rendered objects', async () => {
    const values = {
      image: { repository: 'registry.example/cg', tag: '9.9.9' },
      webhook: { replicas: 3, failurePolicy: 'Ignore' },
      reconciler: { replicas: 1 },
    };
    const objects = (
      await Promise.all(chartManifests().map(async (m) => loadAllYaml(render(await readFile(join(chartDir, 'templates', m.file), 'utf8'), values, 'other-ns'))))
    ).flat();
    const json = JSON.stringify(objects);
    assert.ok(!json.includes(SYSTEM_NAMESPACE), 'no namespace left behind');
    assert.ok(!json.includes(`"${IMAGE}"`), 'no image left behind');
    const byName = (kind: string, name: string) => objects.find((o) => o.kind === kind && o.metadata?.name === name) as any;
    assert.equal(byName('Deployment', 'canary-gate-webhook').spec.replicas, 3);
    assert.equal(byName('Deployment', 'canary-gate-reconciler').spec.replicas, 1);
    assert.equal(byName('Deployment', 'canary-gate-webhook').spec.template.spec.containers[0].image, 'registry.example/cg:9.9.9');
    assert.equal(byName('MutatingWebhookConfiguration', 'canary-gate').webhooks[0].failurePolicy, 'Ignore');
    assert.equal(byName('Deployment', 'canary-gate-webhook').metadata.namespace, 'other-ns');
    assert.equal(byName('MutatingWebhookConfiguration', 'canary-gate').webhooks[0].clientConfig.service.namespace, 'other-ns');
    assert.equal(objects.some((o) => o.kind === 'Namespace'), false);
  });
});
