// Canary fields a Flagger user writes, on a real API server with the real
// reconciler: each does what it says (the Services' ports, readiness in
// percent of Pods, the copy's own HPA, traffic back to the promoted primary
// in steps, the revert on deletion), or the API server refuses it with a
// message saying why. test/unit/fields-schema.test.ts holds every field of
// the schema to one of the two.

import assert from 'node:assert/strict';
import type * as k8s from '@kubernetes/client-node';
import type { Canary } from '../../core/api/types.js';
import { MANAGED_LABEL, ROLE_LABEL } from '../../core/contract.js';
import { kubectl, kubectlOk, getObject as get, applyAsUser as apply } from './cluster.js';
import { createNamespace, deleteNamespace } from './namespaces.js';
import { deployment, service } from './objects.js';
import { startReconciler, type RunningReconciler } from './reconciler-process.js';
import { sleep, waitFor } from './wait.js';

type Deploy = ReturnType<typeof deployment>;
type Hpa = k8s.V2HorizontalPodAutoscaler;
interface Route {
  spec: { rules?: Array<{ backendRefs?: Array<{ name: string; weight?: number }> }> };
}

function canary(name: string, spec: Record<string, unknown>) {
  return {
    apiVersion: 'canarygate.dev/v1alpha1',
    kind: 'Canary',
    metadata: { name },
    spec: { targetRef: { apiVersion: 'apps/v1', kind: 'Deployment', name }, service: { port: 80 }, progressDeadlineSeconds: 120, ...spec },
  };
}

/** A Deployment of `image`, with extra container ports or a pod-spec change. */
function app(name: string, image: string, replicas: number, edit?: (d: Deploy) => void): Deploy {
  const d = deployment(name, { image, replicas });
  edit?.(d);
  return d;
}

const phase = async (ns: string, name: string) => (await get<Canary>(ns, 'canary', name))?.status?.phase;

async function waitPhase(ns: string, name: string, wanted: string, timeoutMs = 60_000): Promise<Canary> {
  return waitFor(`${name} ${wanted}`, async () => {
    const c = await get<Canary>(ns, 'canary', name);
    return c?.status?.phase === wanted ? c : undefined;
  }, { namespace: ns, timeoutMs });
}

async function ports(ns: string, svc: string): Promise<string[] | undefined> {
  const s = await get<k8s.V1Service>(ns, 'service', svc);
  return s?.spec?.ports?.map((p) => `${p.name}:${p.port}`);
}

/** Weight of the canary's backend in the HTTPRoute's weighted rule. */
async function routeCanaryWeight(ns: string, name: string): Promise<number | undefined> {
  const route = await get<Route>(ns, 'httproute', name);
  const refs = route?.spec.rules?.find((r) => (r.backendRefs ?? []).length > 1)?.backendRefs ?? route?.spec.rules?.[0]?.backendRefs ?? [];
  return refs.find((b) => b.name === `${name}-canary`)?.weight ?? (refs.length ? 0 : undefined);
}

const refused = async (ns: string, obj: unknown) => {
  const r = await kubectl(['-n', ns, 'apply', '-f', '-'], { input: JSON.stringify(obj) });
  assert.notEqual(r.code, 0, `applied although it should be refused: ${r.stdout}`);
  return r.stderr;
};

describe('Canary fields: each has its effect, or is refused', function () {
  this.timeout(180_000);
  let ns: string;
  let reconciler: RunningReconciler;

  before(async function () {
    ns = await createNamespace('fields');
    reconciler = await startReconciler({ namespace: ns });
  });
  after(async function () {
    await reconciler?.stop();
    await deleteNamespace(ns);
  });

  describe('refused by the API server, saying why', function () {
    const cases: Array<[string, Record<string, unknown>, RegExp]> = [
      ['refuses stepWeightPromotion with the kubernetes provider, naming the providers that honour it', { analysis: { stepWeight: 10, stepWeightPromotion: 10 } }, /analysis\.stepWeightPromotion is honoured only by the providers gatewayapi, istio, smi, nginx, traefik, contour/],
      ['refuses stepWeightPromotion in a blue/green run', { provider: 'gatewayapi', analysis: { iterations: 3, stepWeightPromotion: 10 } }, /stepWeightPromotion applies to weighted runs/],
      ['refuses revertOnDeletion: false, saying deletion always reverts', { revertOnDeletion: false }, /revertOnDeletion: false is not supported: deleting a Canary always reverts/],
      ['refuses portDiscovery in a weighted kubernetes run, where no Service of canary-gate carries the traffic', { service: { port: 80, portDiscovery: true } }, /service\.portDiscovery is honoured only by the providers kubernetes \(blue\/green and A\/B only/],
      ['refuses portDiscovery and autoscalerRef for a Service target', { targetRef: { apiVersion: 'v1', kind: 'Service', name: 'svc' }, service: { port: 80, portDiscovery: true }, analysis: { iterations: 2 }, autoscalerRef: { kind: 'HorizontalPodAutoscaler', name: 'h' } }, /autoscalerRef needs a Deployment target[\s\S]*portDiscovery needs a Deployment target/],
      ['refuses an autoscalerRef of an API version canary-gate does not read', { autoscalerRef: { apiVersion: 'autoscaling/v1', kind: 'HorizontalPodAutoscaler', name: 'h' } }, /autoscalerRef\.apiVersion: Unsupported value: "autoscaling\/v1"/],
      ['refuses a targetRef apiVersion that does not fit its kind', { targetRef: { apiVersion: 'v1', kind: 'Deployment', name: 'web' } }, /apiVersion must be apps\/v1 for a Deployment and v1 for a Service/],
      ['refuses a ready threshold over 100 percent', { analysis: { canaryReadyThreshold: 101 } }, /canaryReadyThreshold: Invalid value: 101: .*less than or equal to 100/],
    ];
    for (const [title, spec, message] of cases) {
      it(title, async function () {
        const stderr = await refused(ns, canary('refused', spec));
        assert.match(stderr, message);
      });
    }
  });

  it('service.portDiscovery: the router Services expose every container port of the target', async function () {
    const name = 'ports';
    const withMetrics = (d: Deploy) => {
      (d.spec.template.spec.containers[0] as { ports: unknown[] }).ports.push({ name: 'metrics', containerPort: 9797 }, { name: 'admin', containerPort: 9000 });
    };
    // The Canary first: the namespace's defaults would give the Deployment a Canary of their own.
    await apply(ns, canary(name, { provider: 'gatewayapi', service: { port: 80, targetPort: 'http', portDiscovery: true }, analysis: { interval: '1s', stepWeight: 50, maxWeight: 50 } }));
    await apply(ns, app(name, 'example.test/ports:1', 1, withMetrics));
    await apply(ns, service(name, { selector: { app: name } }));
    // and the kubernetes router's <apex>-canary Service of a blue/green run
    await apply(ns, canary('bg', { service: { port: 80, targetPort: 'http', portDiscovery: true }, analysis: { interval: '1s', iterations: 100 } }));
    await apply(ns, app('bg', 'example.test/bg:1', 1, withMetrics));
    await apply(ns, service('bg', { selector: { app: 'bg' } }));
    await waitPhase(ns, name, 'Initialized');
    const expected = ['http:80', 'metrics:9797', 'admin:9000'];
    for (const svc of [`${name}-primary`, `${name}-canary`]) {
      await waitFor(`${svc} with the container ports`, async () => JSON.stringify(await ports(ns, svc)) === JSON.stringify(expected), { namespace: ns, timeoutMs: 30_000 });
    }
    await waitPhase(ns, 'bg', 'Initialized');
    await apply(ns, app('bg', 'example.test/bg:2', 1, withMetrics));
    await waitFor('bg-canary with the container ports', async () => JSON.stringify(await ports(ns, 'bg-canary')) === JSON.stringify(expected), { namespace: ns, timeoutMs: 30_000 });
  });

  it('canaryReadyThreshold below 100 lets a run go on with one copy Pod not ready; at 100 it waits', async function () {
    // Four copy Pods that may not share a node, on three nodes: one stays
    // Pending (not ready) for as long as the run lasts.
    const spread = (d: Deploy) => {
      (d.spec.template.spec as Record<string, unknown>).affinity = {
        podAntiAffinity: { requiredDuringSchedulingIgnoredDuringExecution: [{ topologyKey: 'kubernetes.io/hostname', labelSelector: { matchLabels: { [ROLE_LABEL]: 'canary', spread: d.metadata.name } } }] },
      };
      (d.spec.template.metadata.labels as Record<string, string>).spread = d.metadata.name;
    };
    const nodes = JSON.parse(await kubectlOk(['get', 'nodes', '-l', 'type=kwok', '-o', 'json'])) as { items: unknown[] };
    const replicas = nodes.items.length + 1;
    for (const [name, threshold] of [['loose', 75], ['strict', undefined]] as const) {
      await apply(ns, canary(name, { analysis: { interval: '1s', stepWeight: 50, maxWeight: 50, ...(threshold ? { canaryReadyThreshold: threshold } : {}) } }));
      await apply(ns, app(name, `example.test/${name}:1`, replicas));
    }
    for (const name of ['loose', 'strict']) await waitPhase(ns, name, 'Initialized');
    for (const name of ['loose', 'strict']) await apply(ns, app(name, `example.test/${name}:2`, replicas, spread));
    for (const name of ['loose', 'strict']) {
      await waitFor(`${name}-canary: ${replicas - 1} of ${replicas} ready`, async () => {
        const d = await get<{ spec: { replicas: number }; status?: { readyReplicas?: number } }>(ns, 'deployment', `${name}-canary`);
        return d?.spec.replicas === replicas && d.status?.readyReplicas === replicas - 1;
      }, { namespace: ns, timeoutMs: 60_000 });
    }
    // 3 of 4 is 75 %: the run passes its step and promotes.
    await waitFor('loose to promote', async () => ['Promoting', 'Succeeded'].includes((await phase(ns, 'loose')) ?? ''), { namespace: ns, timeoutMs: 60_000 });
    const strict = await get<Canary>(ns, 'canary', 'strict');
    assert.equal(strict?.status?.phase, 'Progressing');
    assert.equal(strict?.status?.message, 'waiting for the canary copy to be ready');
  });

  it('autoscalerRef: a missing HPA holds the run; the copy then scales under its own <hpa>-canary, which goes when the run ends; the user\'s HPA is never written', async function () {
    const name = 'scaled';
    const hpaSpec = (target: string, min: number, max: number) => ({
      minReplicas: min,
      maxReplicas: max,
      scaleTargetRef: { apiVersion: 'apps/v1', kind: 'Deployment', name: target },
      metrics: [{ type: 'Resource', resource: { name: 'cpu', target: { type: 'Utilization', averageUtilization: 80 } } }],
    });
    const spec = { provider: 'gatewayapi', autoscalerRef: { apiVersion: 'autoscaling/v2', kind: 'HorizontalPodAutoscaler', name: `${name}-hpa` }, analysis: { interval: '1m', stepWeight: 50, maxWeight: 50 } };
    await apply(ns, canary(name, spec));
    await apply(ns, app(name, 'example.test/scaled:1', 2));
    await apply(ns, service(name, { selector: { app: name } }));
    await waitPhase(ns, name, 'Initialized');
    await apply(ns, app(name, 'example.test/scaled:2', 2));
    const held = await waitFor('the missing HPA reported', async () => {
      const c = await get<Canary>(ns, 'canary', name);
      const cond = c?.status?.conditions?.find((x) => x.type === 'AutoscalerReady');
      return cond?.status === 'False' ? cond : undefined;
    }, { namespace: ns, timeoutMs: 30_000 });
    assert.equal(held.reason, 'AutoscalerNotFound');
    assert.match(held.message, new RegExp(`HorizontalPodAutoscaler ${ns}/${name}-hpa does not exist`));
    const events = await kubectlOk(['-n', ns, 'get', 'events', '--field-selector', `involvedObject.name=${name},involvedObject.kind=Canary`, '-o', 'jsonpath={range .items[*]}{.type} {.reason}{"\\n"}{end}']);
    assert.match(events, /Warning AutoscalerNotFound/);
    assert.equal(await phase(ns, name), 'Initialized', 'no run starts');
    assert.equal((await get(ns, 'deployment', `${name}-canary`)), undefined);

    await apply(ns, { apiVersion: 'autoscaling/v2', kind: 'HorizontalPodAutoscaler', metadata: { name: `${name}-hpa` }, spec: hpaSpec(name, 2, 4) });
    const userHpa = await get<Hpa>(ns, 'hpa', `${name}-hpa`);
    const copyHpa = await waitFor('the copy\'s HPA', () => get<Hpa>(ns, 'hpa', `${name}-hpa-canary`), { namespace: ns, timeoutMs: 30_000 });
    assert.deepEqual(copyHpa.spec?.scaleTargetRef, { apiVersion: 'apps/v1', kind: 'Deployment', name: `${name}-canary` });
    assert.deepEqual([copyHpa.spec?.minReplicas, copyHpa.spec?.maxReplicas], [2, 4]);
    assert.equal(copyHpa.metadata?.ownerReferences?.[0]?.kind, 'Canary');
    // The copy's size is its HPA's: above maxReplicas the HPA brings it back, and canary-gate does not size it like the primary again.
    await kubectlOk(['-n', ns, 'scale', 'deployment', `${name}-canary`, '--replicas=7']);
    await waitFor('the copy\'s HPA to bring the copy to its maxReplicas 4', async () => (await get<{ spec: { replicas: number } }>(ns, 'deployment', `${name}-canary`))?.spec.replicas === 4, { namespace: ns, timeoutMs: 60_000 });
    await sleep(3000);
    assert.equal((await get<{ spec: { replicas: number } }>(ns, 'deployment', `${name}-canary`))?.spec.replicas, 4, 'kept at the HPA\'s size, not the primary\'s 2');
    const user = await get<Hpa>(ns, 'hpa', `${name}-hpa`);
    assert.equal(user?.metadata?.generation, userHpa?.metadata?.generation, 'the user\'s HPA spec was never written');
    assert.deepEqual(user?.spec, userHpa?.spec);
    // The run ends (aborted here: the first step is a minute away): the copy's HPA goes with it.
    const revision = (await get<Canary>(ns, 'canary', name))?.status?.pendingRevision ?? '';
    await kubectlOk(['-n', ns, 'annotate', 'canary', name, `canarygate.dev/abort=${revision}`]);
    await waitPhase(ns, name, 'Failed');
    await waitFor('the copy\'s HPA removed with the run', async () => (await get(ns, 'hpa', `${name}-hpa-canary`)) === undefined, { namespace: ns, timeoutMs: 30_000 });
    assert.equal((await get<{ spec: { replicas: number } }>(ns, 'deployment', `${name}-canary`))?.spec.replicas, 0, 'and the copy is scaled to zero');
    assert.ok(await get(ns, 'hpa', `${name}-hpa`), 'the user\'s HPA stays');
  });

  it('stepWeightPromotion: after the promotion write the canary weight steps down to 0 one interval at a time', async function () {
    const name = 'stepped';
    await apply(ns, canary(name, { provider: 'gatewayapi', analysis: { interval: '2s', stepWeight: 60, maxWeight: 60, stepWeightPromotion: 25 } }));
    await apply(ns, app(name, 'example.test/stepped:1', 1));
    await apply(ns, service(name, { selector: { app: name } }));
    await waitPhase(ns, name, 'Initialized');
    await apply(ns, app(name, 'example.test/stepped:2', 1));
    await waitPhase(ns, name, 'Promoting');
    const seen: number[] = [];
    await waitFor('the run to finish', async () => {
      const w = await routeCanaryWeight(ns, name);
      if (w !== undefined && seen[seen.length - 1] !== w) seen.push(w);
      return (await phase(ns, name)) === 'Succeeded' && w === 0;
    }, { namespace: ns, timeoutMs: 60_000, intervalMs: 200 });
    assert.deepEqual(seen.filter((w) => w < 60), [35, 10, 0], `the weights seen during the promotion: ${seen}`);
    const live = await get<Deploy>(ns, 'deployment', name);
    assert.equal(live?.spec.template.spec.containers[0]?.image, 'example.test/stepped:2');
  });

  it('revertOnDeletion: true: deleting the Canary mid-run restores the target (its Pods serve, canary-gate\'s objects gone, the route handed back)', async function () {
    const name = 'reverted';
    await apply(ns, { apiVersion: 'autoscaling/v2', kind: 'HorizontalPodAutoscaler', metadata: { name: `${name}-hpa` }, spec: { minReplicas: 1, maxReplicas: 3, scaleTargetRef: { apiVersion: 'apps/v1', kind: 'Deployment', name }, metrics: [{ type: 'Resource', resource: { name: 'cpu', target: { type: 'Utilization', averageUtilization: 80 } } }] } });
    await apply(ns, canary(name, { provider: 'gatewayapi', service: { port: 80, gatewayRefs: [{ name: 'public', namespace: 'gateways' }] }, revertOnDeletion: true, autoscalerRef: { kind: 'HorizontalPodAutoscaler', name: `${name}-hpa` }, analysis: { interval: '4s', stepWeight: 10, maxWeight: 50 } }));
    await apply(ns, app(name, 'example.test/reverted:1', 1));
    await apply(ns, service(name, { selector: { app: name } }));
    await waitPhase(ns, name, 'Initialized');
    await apply(ns, app(name, 'example.test/reverted:2', 1));
    await waitFor('the run under way, copy HPA made', async () => ((await routeCanaryWeight(ns, name)) ?? 0) > 0 && !!(await get(ns, 'hpa', `${name}-hpa-canary`)), { namespace: ns, timeoutMs: 60_000 });
    await kubectlOk(['-n', ns, 'delete', 'canary', name, '--wait=true', '--timeout=60s']);
    for (const [kind, obj] of [['deployment', `${name}-canary`], ['hpa', `${name}-hpa-canary`], ['service', `${name}-primary`], ['service', `${name}-canary`]]) {
      await waitFor(`${kind} ${obj} gone`, async () => (await get(ns, kind as string, obj as string)) === undefined, { namespace: ns, timeoutMs: 30_000 });
    }
    const route = await get<Route & { metadata: { ownerReferences?: unknown[] } }>(ns, 'httproute', name);
    assert.deepEqual(route?.spec.rules?.flatMap((r) => r.backendRefs ?? []).map((b) => b.name), [name], 'the route is handed back to the apex Service');
    const target = await get<Deploy & { metadata: { labels?: Record<string, string> } }>(ns, 'deployment', name);
    assert.equal(target?.metadata.labels?.[MANAGED_LABEL], undefined, 'the target is no longer managed');
    assert.equal(target?.spec.template.spec.containers[0]?.image, 'example.test/reverted:1', 'the primary keeps its stable spec');
    assert.ok(await get(ns, 'hpa', `${name}-hpa`), 'the user\'s HPA stays');
    const svc = await get<k8s.V1Service>(ns, 'service', name);
    assert.deepEqual(svc?.spec?.selector, { app: name }, 'the apex Service selects the target\'s own Pods');
  });
});
