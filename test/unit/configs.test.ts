// The pure parts of ConfigMap and Secret canaries: which configs a pod
// template references, the combined revision of a template and its configs,
// the copy's template, and the order (and resumption) of a promotion.

import assert from 'node:assert/strict';
import type * as k8s from '@kubernetes/client-node';
import { CONFIG_REVISION_ANNOTATION, CONFIG_TRACKING_ANNOTATION, PENDING_REVISION, PENDING_SPEC } from '../../core/contract.js';
import { canonicalJson, revisionOf } from '../../core/revision.js';
import { buildConfigCopy, ConfigLookups, promotionWrites } from '../../reconciler/apply/configs.js';
import { configReferences, configState, withCopyReferences, type ConfigInputs, type ConfigKind, type ConfigLookup, type ConfigObject } from '../../reconciler/observe/configs.js';
import type { Canary } from '../../core/api/types.js';

type Template = { metadata?: k8s.V1ObjectMeta; spec: k8s.V1PodSpec };

function template(spec: Partial<k8s.V1PodSpec>, annotations?: Record<string, string>): Template {
  return { metadata: { labels: { app: 'web' }, ...(annotations ? { annotations } : {}) }, spec: { containers: [{ name: 'app', image: 'web:1' }], ...spec } };
}

const mounted = () => template({ volumes: [{ name: 'c', configMap: { name: 'web-config' } }] });

function configMap(name: string, data: Record<string, string>, pendingData?: Record<string, string>, rv = '1'): k8s.V1ConfigMap {
  const cm: k8s.V1ConfigMap = { metadata: { name, namespace: 'ns', resourceVersion: rv, labels: { 'canarygate.dev/managed': 'true' } }, data };
  if (pendingData) {
    const text = canonicalJson({ data: pendingData });
    cm.metadata!.annotations = { [PENDING_REVISION]: revisionOf({ data: pendingData }), [PENDING_SPEC]: text };
  }
  return cm;
}

function inputs(objects: ConfigObject[], over: Partial<ConfigInputs> = {}, lookups: Record<string, ConfigLookup> = {}): ConfigInputs {
  return {
    liveTemplate: mounted(),
    get: (kind: ConfigKind, name: string) => objects.find((o) => o.metadata?.name === name && (kind === 'Secret') === ('type' in o)),
    lookup: (kind: ConfigKind, name: string) => {
      const what = lookups[`${kind}/${name}`];
      return what ? { what, stale: false } : undefined;
    },
    promoting: false,
    ...over,
  };
}

describe('configReferences()', () => {
  it('finds volumes, projected sources, env valueFrom and envFrom, in init and app containers, each once, in a stable order', () => {
    const refs = configReferences(
      template({
        volumes: [
          { name: 'a', configMap: { name: 'cm-vol' } },
          { name: 'b', secret: { secretName: 'sec-vol' } },
          { name: 'p', projected: { sources: [{ configMap: { name: 'cm-proj' } }, { secret: { name: 'sec-proj' } }] } },
        ],
        initContainers: [{ name: 'init', envFrom: [{ configMapRef: { name: 'cm-init' } }] }],
        containers: [
          {
            name: 'app',
            env: [
              { name: 'A', valueFrom: { configMapKeyRef: { name: 'cm-env', key: 'k' } } },
              { name: 'B', valueFrom: { secretKeyRef: { name: 'sec-env', key: 'k' } } },
              { name: 'C', valueFrom: { fieldRef: { fieldPath: 'metadata.name' } } },
              { name: 'D', value: 'plain' },
            ],
            envFrom: [{ secretRef: { name: 'sec-from' } }, { configMapRef: { name: 'cm-vol' } }],
          },
        ],
      }),
    );
    assert.deepEqual(
      refs.map((r) => `${r.kind}/${r.name}`),
      ['ConfigMap/cm-env', 'ConfigMap/cm-init', 'ConfigMap/cm-proj', 'ConfigMap/cm-vol', 'Secret/sec-env', 'Secret/sec-from', 'Secret/sec-proj', 'Secret/sec-vol'],
    );
  });

  it('is optional only when every reference is optional', () => {
    const refs = configReferences(
      template({
        volumes: [{ name: 'a', configMap: { name: 'both', optional: true } }, { name: 'b', configMap: { name: 'opt', optional: true } }],
        containers: [{ name: 'app', env: [{ name: 'X', valueFrom: { configMapKeyRef: { name: 'both', key: 'k' } } }] }],
      }),
    );
    assert.deepEqual(refs, [
      { kind: 'ConfigMap', name: 'both', optional: false },
      { kind: 'ConfigMap', name: 'opt', optional: true },
    ]);
  });

  it('is empty for a template without configs or without a spec', () => {
    assert.deepEqual(configReferences(template({})), []);
    assert.deepEqual(configReferences(undefined), []);
    assert.deepEqual(configReferences({ metadata: {} }), []);
  });
});

describe('withCopyReferences()', () => {
  it('points exactly the renamed configs at <name>-canary, everywhere, and leaves the input alone', () => {
    const t = template({
      volumes: [{ name: 'a', configMap: { name: 'changed' } }, { name: 'b', configMap: { name: 'same' } }, { name: 'p', projected: { sources: [{ secret: { name: 'tok' } }] } }],
      containers: [{ name: 'app', env: [{ name: 'X', valueFrom: { configMapKeyRef: { name: 'changed', key: 'k' } } }], envFrom: [{ secretRef: { name: 'tok' } }] }],
    });
    const before = structuredClone(t);
    const out = withCopyReferences(t, new Set(['ConfigMap/changed', 'Secret/tok']));
    assert.deepEqual(t, before);
    assert.deepEqual(out.spec.volumes?.map((v) => v.configMap?.name ?? v.projected?.sources?.[0]?.secret?.name), ['changed-canary', 'same', 'tok-canary']);
    assert.equal(out.spec.containers[0]?.env?.[0]?.valueFrom?.configMapKeyRef?.name, 'changed-canary');
    assert.equal(out.spec.containers[0]?.envFrom?.[0]?.secretRef?.name, 'tok-canary');
  });
});

describe('configState(): the combined revision', () => {
  it('is undefined for a template without configs: its revision stays the template\'s', () => {
    assert.equal(configState(inputs([], { liveTemplate: template({}) })), undefined);
  });

  it('no change: live and desired agree; a held ConfigMap change makes a pending revision; so does a template change', () => {
    const idle = configState(inputs([configMap('web-config', { a: '1' })]));
    assert.ok(idle?.combined);
    assert.equal(idle.desiredRevision, idle.liveRevision);
    assert.equal(idle.changed.size, 0);

    const held = configState(inputs([configMap('web-config', { a: '1' }, { a: '2' })]));
    assert.notEqual(held?.desiredRevision, held?.liveRevision);
    assert.equal(held?.liveRevision, idle.liveRevision, 'the live side does not move while the change is held');
    assert.deepEqual([...(held?.changed ?? [])], ['ConfigMap/web-config']);

    const pendingTemplate = template({ volumes: [{ name: 'c', configMap: { name: 'web-config' } }], containers: [{ name: 'app', image: 'web:2' }] });
    const image = configState(inputs([configMap('web-config', { a: '1' })], { pendingTemplate }));
    assert.notEqual(image?.desiredRevision, idle.liveRevision);

    const both = configState(inputs([configMap('web-config', { a: '1' }, { a: '2' })], { pendingTemplate }));
    assert.ok(both && both.desiredRevision !== held?.desiredRevision && both.desiredRevision !== image?.desiredRevision, 'template and config together are one revision of their own');
  });

  it('after promotion (configs live, template annotated) the live revision is the run\'s, so the run completes', () => {
    const held = configState(inputs([configMap('web-config', { a: '1' }, { a: '2' })]));
    const annotated = template({ volumes: [{ name: 'c', configMap: { name: 'web-config' } }] }, { [CONFIG_REVISION_ANNOTATION]: held?.desiredConfigRevision ?? '' });
    const after = configState(inputs([configMap('web-config', { a: '2' }, undefined, '2')], { liveTemplate: annotated }));
    assert.equal(after?.liveRevision, held?.desiredRevision);
    assert.equal(after?.desiredRevision, held?.desiredRevision, 'nothing pending any more');
  });

  it('killed between the config write and the template write: the run is still pending and not live, so promotion is asked for again', () => {
    const held = configState(inputs([configMap('web-config', { a: '1' }, { a: '2' })]));
    // The ConfigMap already carries the new data; the template has no annotation yet.
    const half = configState(inputs([configMap('web-config', { a: '2' }, undefined, '2')], { promoting: true }));
    assert.equal(half?.desiredRevision, held?.desiredRevision, 'the same run');
    assert.notEqual(half?.liveRevision, half?.desiredRevision, 'not promoted yet');
    // With an older annotation (an earlier promotion), the same holds.
    const earlier = template({ volumes: [{ name: 'c', configMap: { name: 'web-config' } }] }, { [CONFIG_REVISION_ANNOTATION]: held?.liveConfigRevision ?? '' });
    const halfAnnotated = configState(inputs([configMap('web-config', { a: '2' }, undefined, '2')], { liveTemplate: earlier }));
    assert.equal(halfAnnotated?.desiredRevision, held?.desiredRevision);
    assert.notEqual(halfAnnotated?.liveRevision, halfAnnotated?.desiredRevision);
  });

  it('ignores untracked configs (disabled), reports missing non-optional ones, and leaves unknown ones unsettled', () => {
    const disabled = configMap('web-config', { a: '1' });
    disabled.metadata!.annotations = { [CONFIG_TRACKING_ANNOTATION]: 'disabled' };
    const s = configState(inputs([disabled]));
    assert.equal(s, undefined, 'a disabled config makes no combined revision');
    const t = template({ volumes: [{ name: 'a', configMap: { name: 'gone' } }, { name: 'b', configMap: { name: 'maybe', optional: true } }, { name: 'c', configMap: { name: 'new' } }] });
    const missing = configState(inputs([], { liveTemplate: t }, { 'ConfigMap/gone': 'missing', 'ConfigMap/maybe': 'missing' }));
    assert.deepEqual(missing?.missing.map((r) => r.name), ['gone']);
    assert.deepEqual(missing?.unsettled.map((r) => r.name), ['new']);
    assert.equal(missing?.combined, false);
  });
});

describe('promotionWrites(): the order of a promotion', () => {
  const canaryObj = { metadata: { name: 'web', uid: 'u-1' } } as Canary;

  it('writes every changed config first (guarded by its pending revision), then the template with the config revision', () => {
    const live = configMap('web-config', { a: '1', gone: 'x' }, { a: '2' });
    const state = configState(inputs([live]));
    assert.ok(state);
    const writes = promotionWrites({ configs: state, liveTemplate: mounted() });
    assert.deepEqual(writes.map((w) => w.target), ['config', 'deployment']);
    const [config, deployment] = writes;
    assert.equal(config?.target === 'config' && config.name, 'web-config');
    assert.deepEqual(config?.ops[0], { op: 'test', path: '/metadata/annotations/canarygate.dev~1pending-revision', value: live.metadata?.annotations?.[PENDING_REVISION] });
    assert.ok(config?.ops.some((o) => o.op === 'replace' && o.path === '/data' && canonicalJson(o.value) === canonicalJson({ a: '2' })));
    assert.deepEqual(config?.ops.slice(-2).map((o) => o.op), ['remove', 'remove']);
    const replace = deployment?.ops.find((o) => o.path === '/spec/template') as { value: Template } | undefined;
    assert.equal(replace?.value.metadata?.annotations?.[CONFIG_REVISION_ANNOTATION], state.desiredConfigRevision);
    assert.ok(!deployment?.ops.some((o) => o.op === 'test'), 'no own pending template to test');
  });

  it('with the Deployment\'s own pending template: its template is written (tested, annotations removed), never the live one', () => {
    const pendingTemplate = template({ volumes: [{ name: 'c', configMap: { name: 'web-config' } }], containers: [{ name: 'app', image: 'web:2' }] });
    const state = configState(inputs([configMap('web-config', { a: '1' }, { a: '2' })], { pendingTemplate }));
    assert.ok(state);
    const own = { revision: 'own-rev', spec: pendingTemplate as unknown as Record<string, unknown> };
    const writes = promotionWrites({ configs: state, liveTemplate: mounted(), ownPending: own });
    const d = writes.at(-1);
    assert.equal(d?.target, 'deployment');
    assert.deepEqual(d?.ops[0], { op: 'test', path: '/metadata/annotations/canarygate.dev~1pending-revision', value: 'own-rev' });
    const replace = d?.ops.find((o) => o.path === '/spec/template') as { value: Template } | undefined;
    assert.equal(replace?.value.spec.containers[0]?.image, 'web:2');
  });

  it('resumes: after the configs are written only the template write is left; after both, nothing', () => {
    const held = configState(inputs([configMap('web-config', { a: '1' }, { a: '2' })]));
    const half = configState(inputs([configMap('web-config', { a: '2' }, undefined, '2')], { promoting: true }));
    assert.ok(held && half);
    const rest = promotionWrites({ configs: half, liveTemplate: mounted() });
    assert.deepEqual(rest.map((w) => w.target), ['deployment']);
    const replace = rest[0]?.ops.find((o) => o.path === '/spec/template') as { value: Template } | undefined;
    assert.equal(replace?.value.metadata?.annotations?.[CONFIG_REVISION_ANNOTATION], held.desiredConfigRevision, 'the same config revision as the first attempt');
    const annotated = template({ volumes: [{ name: 'c', configMap: { name: 'web-config' } }] }, { [CONFIG_REVISION_ANNOTATION]: held.desiredConfigRevision });
    const done = configState(inputs([configMap('web-config', { a: '2' }, undefined, '2')], { liveTemplate: annotated, promoting: true }));
    assert.ok(done);
    assert.deepEqual(promotionWrites({ configs: done, liveTemplate: annotated }), []);
  });

  it('the copy of a config holds the pending data and is controlled by the Canary; a Secret keeps its type', () => {
    const cm = configMap('web-config', { a: '1' }, { a: '2' });
    const state = configState(inputs([cm]));
    const view = state?.views.get('ConfigMap/web-config');
    assert.ok(view?.pending);
    const copy = buildConfigCopy('ConfigMap', cm, view.pending, canaryObj);
    assert.equal(copy.metadata?.name, 'web-config-canary');
    assert.deepEqual(copy.data, { a: '2' });
    assert.deepEqual(copy.metadata?.ownerReferences?.map((o) => [o.kind, o.uid, o.controller]), [['Canary', 'u-1', true]]);
    assert.equal(copy.metadata?.labels?.['canarygate.dev/managed'], undefined, 'a copy is never held by the webhook');
    const secret: k8s.V1Secret = { metadata: { name: 'tok', namespace: 'ns' }, type: 'example.com/token', data: { t: 'YQ==' } };
    const sCopy = buildConfigCopy('Secret', secret, { revision: 'r', spec: { data: { t: 'Yg==' } } }, canaryObj) as k8s.V1Secret;
    assert.equal(sCopy.type, 'example.com/token');
    assert.deepEqual(sCopy.data, { t: 'Yg==' });
  });
});

describe('ConfigLookups', () => {
  it('keeps a finding, stale after its lifetime (looked up again, still used meanwhile: a missing config or taken name does not flap)', () => {
    let now = 0;
    const l = new ConfigLookups(10_000, () => now);
    l.set('ConfigMap', 'ns', 'a', 'missing');
    assert.deepEqual(l.get('ConfigMap', 'ns', 'a'), { what: 'missing', stale: false });
    assert.equal(l.get('Secret', 'ns', 'a'), undefined, 'kinds apart');
    now = 10_001;
    assert.deepEqual(l.get('ConfigMap', 'ns', 'a'), { what: 'missing', stale: true });
  });

  it('a stale finding is looked up again, and a stale missing config is still reported meanwhile', () => {
    const t = template({ volumes: [{ name: 'a', configMap: { name: 'gone' } }] });
    const s = configState({ ...inputs([], { liveTemplate: t }), lookup: () => ({ what: 'missing', stale: true }) });
    assert.deepEqual(s?.missing.map((r) => r.name), ['gone']);
    assert.deepEqual(s?.unsettled.map((r) => r.name), ['gone']);
  });
});
