// decide(): one test (or a few) per row of the decision rules, on
// real-looking objects. Patches are applied with fast-json-patch, as the API
// server would, and the resulting object is what gets asserted.

import assert from 'node:assert/strict';
import jsonpatch from 'fast-json-patch';
import { MANAGED_LABEL, PENDING_REVISION, PENDING_SPEC } from '../../core/contract.js';
import { revisionOf } from '../../core/revision.js';
import type { AdmissionRequest, JsonPatchOp, KubeObject } from '../../webhook/admission.js';
import { decide, type DecideConfig, type DecideResult } from '../../webhook/decide.js';
import { withoutAllocatedFields as serviceSpecForRevision } from '../../core/targets/index.js';
import {
  RECONCILER,
  deployment,
  mainContainer,
  request,
  service,
  shuffleKeys,
  template,
  unmanagedDeployment,
  withImage,
} from '../fixtures/objects.js';
import { Rng } from '../fixtures/rng.js';

const config: DecideConfig = { reconcilerUsers: new Set([RECONCILER]) };

function apply(obj: KubeObject, patch: JsonPatchOp[] | undefined): KubeObject {
  if (!patch) return obj;
  // validate=true: an op the API server would refuse (bad path, missing parent) fails here too.
  return jsonpatch.applyPatch(structuredClone(obj), patch as jsonpatch.Operation[], true, false).newDocument as KubeObject;
}

function annotations(obj: KubeObject): Record<string, string> {
  return obj.metadata?.annotations ?? {};
}

function run(req: AdmissionRequest, cfg: DecideConfig = config): { result: DecideResult; out: KubeObject } {
  const result = decide(req, cfg);
  return { result, out: apply(req.object as KubeObject, result.patch) };
}

/** Stores an intercepted change the way the API server would: the incoming object with the webhook's patch applied. */
function intercept(stored: KubeObject, incoming: KubeObject): { result: DecideResult; stored: KubeObject } {
  const { result, out } = run(request(incoming, stored));
  assert.equal(result.decision, 'intercepted');
  return { result, stored: out };
}

describe('decide(): requests canary-gate does not change', () => {
  it('passes a CREATE of a clean Deployment unchanged', () => {
    const r = decide(request(deployment(), null, { operation: 'CREATE' }), config);
    assert.deepEqual(r, { allowed: true, decision: 'skipped' });
  });

  it('passes a DELETE unchanged', () => {
    const d = deployment();
    const r = decide(request(null, d, { operation: 'DELETE' }), config);
    assert.deepEqual(r, { allowed: true, decision: 'skipped' });
  });

  it('passes a CONNECT unchanged', () => {
    const r = decide(request(deployment(), null, { operation: 'CONNECT' }), config);
    assert.deepEqual(r, { allowed: true, decision: 'skipped' });
  });

  for (const sub of ['status', 'scale']) {
    it(`passes an UPDATE of the ${sub} subresource unchanged, even with a different template`, () => {
      const old = deployment();
      const next = withImage(old, '2.0.0');
      (next.spec as Record<string, unknown>).replicas = 9;
      const r = decide(request(next, old, { subResource: sub }), config);
      assert.deepEqual(r, { allowed: true, decision: 'skipped' });
    });
  }

  const otherKinds = [
    { group: 'apps', version: 'v1', kind: 'StatefulSet' },
    { group: 'apps', version: 'v1', kind: 'DaemonSet' },
    { group: 'apps', version: 'v1', kind: 'ReplicaSet' },
    { group: '', version: 'v1', kind: 'Pod' },
    { group: 'extensions', version: 'v1beta1', kind: 'Deployment' },
    { group: 'apps', version: 'v1', kind: 'Service' },
  ];
  for (const kind of otherKinds) {
    it(`passes an UPDATE of ${kind.group || 'core'}/${kind.version} ${kind.kind} unchanged`, () => {
      const old = deployment();
      const r = decide(request(withImage(old, '2.0.0'), old, { kind }), config);
      assert.deepEqual(r, { allowed: true, decision: 'skipped' });
    });
  }

  it('passes a template change of an unmanaged Deployment unchanged', () => {
    const old = unmanagedDeployment();
    const r = decide(request(withImage(old, '2.0.0'), old), config);
    assert.deepEqual(r, { allowed: true, decision: 'skipped' });
  });

  it('passes a selector change of an unmanaged Service unchanged', () => {
    const old = service();
    delete old.metadata!.labels![MANAGED_LABEL];
    const next = structuredClone(old);
    next.spec!.selector = { app: 'checkout-v2' };
    assert.deepEqual(decide(request(next, old), config), { allowed: true, decision: 'skipped' });
  });
});

describe('decide(): CREATE with forged control annotations', () => {
  it('removes them and keeps every other annotation', () => {
    const d = deployment();
    d.metadata!.annotations = {
      'deployment.kubernetes.io/revision': '1',
      [PENDING_REVISION]: 'deadbeef0001',
      [PENDING_SPEC]: JSON.stringify(template(withImage(d, 'evil'))),
      'team.example.com/owner': 'payments',
    };
    const { result, out } = run(request(d, null, { operation: 'CREATE' }));
    assert.equal(result.allowed, true);
    assert.equal(result.decision, 'skipped');
    assert.equal(result.forgeryReverted, true);
    assert.deepEqual(annotations(out), { 'deployment.kubernetes.io/revision': '1', 'team.example.com/owner': 'payments' });
    assert.deepEqual(out.spec, d.spec, 'nothing else is touched');
  });

  it('removes a forged pending revision from a created Service too', () => {
    const s = service();
    s.metadata!.annotations![PENDING_REVISION] = 'deadbeef0001';
    const { result, out } = run(request(s, null, { operation: 'CREATE' }));
    assert.equal(result.forgeryReverted, true);
    assert.equal(annotations(out)[PENDING_REVISION], undefined);
  });

  it('lets the reconciler create objects carrying control annotations', () => {
    const d = deployment();
    d.metadata!.annotations![PENDING_REVISION] = 'abcdef012345';
    const r = decide(request(d, null, { operation: 'CREATE', username: RECONCILER }), config);
    assert.deepEqual(r, { allowed: true, decision: 'reconciler' });
  });
});

describe('decide(): the reconciler', () => {
  it("passes the reconciler's template change (a promotion) unchanged", () => {
    const old = deployment();
    const next = withImage(old, '2.0.0');
    next.metadata!.annotations![PENDING_REVISION] = 'abcdef012345';
    const r = decide(request(next, old, { username: RECONCILER }), config);
    assert.deepEqual(r, { allowed: true, decision: 'reconciler' });
  });

  it('does not treat a user as the reconciler', () => {
    const old = deployment();
    const r = decide(request(withImage(old, '2.0.0'), old, { username: 'system:serviceaccount:canary-gate:other' }), config);
    assert.equal(r.decision, 'intercepted');
  });
});

describe('decide(): template unchanged', () => {
  it('passes a scale through spec.replicas with no patch', () => {
    const old = deployment();
    const next = structuredClone(old);
    next.spec!.replicas = 10;
    const r = decide(request(next, old), config);
    assert.deepEqual(r, { allowed: true, decision: 'unchanged' });
  });

  it('passes label and annotation changes outside the template with no patch', () => {
    const old = deployment();
    const next = structuredClone(old);
    next.metadata!.labels!.team = 'payments';
    next.metadata!.annotations!['example.com/note'] = 'hello';
    (next.spec as Record<string, unknown>).revisionHistoryLimit = 3;
    const r = decide(request(next, old), config);
    assert.deepEqual(r, { allowed: true, decision: 'unchanged' });
  });
});

describe('decide(): template changed', () => {
  it('restores the stable template and records the change as the pending revision', () => {
    const old = deployment();
    const next = withImage(old, '1.15.0');
    next.spec!.replicas = 6;
    const { result, out } = run(request(next, old));
    assert.equal(result.allowed, true);
    assert.equal(result.decision, 'intercepted');
    assert.deepEqual(template(out), template(old), 'the live template stays the stable one');
    assert.equal(out.spec!.replicas, 6, 'fields outside the template go through');
    const ann = annotations(out);
    assert.equal(ann[PENDING_REVISION], revisionOf(template(next)));
    assert.equal(result.revision, ann[PENDING_REVISION]);
    assert.deepEqual(JSON.parse(ann[PENDING_SPEC] as string), template(next));
    assert.equal(ann['deployment.kubernetes.io/revision'], '17', 'other annotations are kept');
    assert.deepEqual(out.metadata!.labels, old.metadata!.labels);
    assert.equal(result.warnings?.length, 1);
    assert.match(result.warnings![0] as string, /pending revision [0-9a-f]{12}/);
  });

  it('treats `kubectl rollout restart` (restartedAt in the template) as a change', () => {
    const old = deployment();
    const next = structuredClone(old);
    (template(next).metadata as { annotations: Record<string, string> }).annotations['kubectl.kubernetes.io/restartedAt'] =
      '2025-06-03T10:00:00Z';
    const { result, out } = run(request(next, old, { fieldManager: 'kubectl-rollout' }));
    assert.equal(result.decision, 'intercepted');
    assert.deepEqual(template(out), template(old));
    const pending = JSON.parse(annotations(out)[PENDING_SPEC] as string);
    assert.equal(pending.metadata.annotations['kubectl.kubernetes.io/restartedAt'], '2025-06-03T10:00:00Z');
  });

  it('intercepts env, probe, resource and volume changes alike', () => {
    const edits: Array<(c: Record<string, unknown>, t: Record<string, unknown>) => void> = [
      (c) => (c.env as Array<Record<string, unknown>>).push({ name: 'NEW', value: '1' }),
      (c) => ((c.readinessProbe as Record<string, unknown>).periodSeconds = 7),
      (c) => ((c.resources as { limits: Record<string, string> }).limits.memory = '1Gi'),
      (_c, t) => ((t.spec as { volumes: unknown[] }).volumes = []),
    ];
    for (const edit of edits) {
      const old = deployment();
      const next = structuredClone(old);
      edit(mainContainer(next), template(next));
      const { result, out } = run(request(next, old));
      assert.equal(result.decision, 'intercepted');
      assert.deepEqual(template(out), template(old));
      assert.deepEqual(JSON.parse(annotations(out)[PENDING_SPEC] as string), template(next));
    }
  });
});

describe('decide(): a revision already pending', () => {
  it('re-applying the same change gives the identical object and the same revision (reapplied)', () => {
    const stable = deployment();
    const change = withImage(stable, '1.15.0');
    const first = intercept(stable, change);

    // kubectl apply / GitOps again: the stored object with the manifest's template merged in.
    const again = structuredClone(first.stored);
    (again.spec as Record<string, unknown>).template = structuredClone(template(change));
    const { result, out } = run(request(again, first.stored));
    assert.equal(result.decision, 'reapplied');
    assert.equal(result.revision, first.result.revision);
    assert.deepEqual(out, first.stored, 'nothing moves');
    assert.equal(result.warnings, undefined, 'no repeated warning');
  });

  it('a PUT of the manifest without the control annotations still lands on the same object', () => {
    const stable = deployment();
    const change = withImage(stable, '1.15.0');
    const first = intercept(stable, change);
    const replace = structuredClone(first.stored);
    delete replace.metadata!.annotations![PENDING_REVISION];
    delete replace.metadata!.annotations![PENDING_SPEC];
    (replace.spec as Record<string, unknown>).template = structuredClone(template(change));
    const { result, out } = run(request(replace, first.stored, { fieldManager: 'kubectl-replace' }));
    assert.equal(result.decision, 'reapplied');
    assert.deepEqual(out, first.stored);
  });

  it('the same change with its keys in another order has the same revision', () => {
    const stable = deployment();
    const change = withImage(stable, '1.15.0');
    const first = intercept(stable, change);
    const shuffled = structuredClone(first.stored);
    (shuffled.spec as Record<string, unknown>).template = shuffleKeys(template(change));
    assert.notEqual(JSON.stringify(template(shuffled)), JSON.stringify(template(change)), 'really reordered');
    const { result, out } = run(request(shuffled, first.stored));
    assert.equal(result.decision, 'reapplied');
    assert.equal(result.revision, first.result.revision);
    assert.deepEqual(out, first.stored);

    // and from scratch: a shuffled manifest is intercepted with the same id
    const fresh = structuredClone(stable);
    (fresh.spec as Record<string, unknown>).template = shuffleKeys(template(change));
    assert.equal(decide(request(fresh, stable), config).revision, first.result.revision);
  });

  it('a different change replaces the pending one', () => {
    const stable = deployment();
    const first = intercept(stable, withImage(stable, '1.15.0'));
    const other = withImage(first.stored, '1.16.0');
    const { result, out } = run(request(other, first.stored));
    assert.equal(result.decision, 'replaced');
    assert.notEqual(result.revision, first.result.revision);
    assert.deepEqual(template(out), template(stable), 'still on the stable template');
    assert.equal(annotations(out)[PENDING_REVISION], result.revision);
    assert.deepEqual(JSON.parse(annotations(out)[PENDING_SPEC] as string), template(other));
    assert.match(result.warnings?.[0] ?? '', /pending revision/);
  });

  it('setting the template back to the stable one withdraws the pending revision (cancelled)', () => {
    const stable = deployment();
    const first = intercept(stable, withImage(stable, '1.15.0'));
    // The user applies the old manifest again: its template is the live, stable one.
    const back = structuredClone(first.stored);
    (back.spec as Record<string, unknown>).template = structuredClone(template(stable));
    const { result, out } = run(request(back, first.stored, { fieldManager: 'kubectl-client-side-apply' }));
    assert.equal(result.decision, 'cancelled');
    assert.equal(result.revision, undefined);
    assert.equal(annotations(out)[PENDING_REVISION], undefined);
    assert.equal(annotations(out)[PENDING_SPEC], undefined);
    assert.deepEqual(template(out), template(stable));
    assert.match(result.warnings?.[0] ?? '', /withdrawn/);
  });

  for (const manager of ['kubectl-label', 'kubectl-annotate']) {
    it(`a metadata-only ${manager} keeps the pending revision`, () => {
      const stable = deployment();
      const first = intercept(stable, withImage(stable, '1.15.0'));
      const labelled = structuredClone(first.stored);
      labelled.metadata!.labels!.owner = 'team-a';
      labelled.metadata!.annotations!['example.com/ticket'] = 'OPS-42';
      const { result, out } = run(request(labelled, first.stored, { fieldManager: manager }));
      assert.equal(result.decision, 'unchanged');
      assert.equal(result.revision, first.result.revision);
      assert.equal(result.patch, undefined);
      assert.equal(annotations(out)[PENDING_REVISION], first.result.revision);
      assert.equal(annotations(out)[PENDING_SPEC], annotations(first.stored)[PENDING_SPEC]);
    });
  }

  it('`kubectl annotate <control annotation>-` cannot remove the pending revision', () => {
    const stable = deployment();
    const first = intercept(stable, withImage(stable, '1.15.0'));
    const stripped = structuredClone(first.stored);
    delete stripped.metadata!.annotations![PENDING_REVISION];
    const { result, out } = run(request(stripped, first.stored, { fieldManager: 'kubectl-annotate' }));
    assert.equal(result.forgeryReverted, true);
    assert.deepEqual(out, first.stored);
  });

  it('a dry run gets exactly the same answer and patch', () => {
    const stable = deployment();
    const change = withImage(stable, '1.15.0');
    const real = decide(request(change, stable), config);
    const dry = decide(request(change, stable, { dryRun: true }), config);
    assert.deepEqual(dry, real);

    const first = intercept(stable, change);
    const back = structuredClone(first.stored);
    (back.spec as Record<string, unknown>).template = template(stable);
    assert.deepEqual(decide(request(back, first.stored, { dryRun: true }), config), decide(request(back, first.stored), config));
  });
});

describe('decide(): forged control annotations and the managed label', () => {
  it('removes control annotations a user adds to a managed object with no pending revision', () => {
    const old = deployment();
    const next = structuredClone(old);
    next.metadata!.annotations![PENDING_REVISION] = 'ffffffffffff';
    next.metadata!.annotations![PENDING_SPEC] = JSON.stringify(template(withImage(old, 'evil')));
    const { result, out } = run(request(next, old));
    assert.equal(result.decision, 'unchanged');
    assert.equal(result.forgeryReverted, true);
    assert.deepEqual(out, old);
  });

  it('puts back the webhook-set values when a user rewrites them on a pending object', () => {
    const stable = deployment();
    const first = intercept(stable, withImage(stable, '1.15.0'));
    const forged = structuredClone(first.stored);
    forged.metadata!.annotations![PENDING_SPEC] = JSON.stringify(template(withImage(stable, 'evil')));
    forged.metadata!.annotations![PENDING_REVISION] = revisionOf(template(withImage(stable, 'evil')));
    const { result, out } = run(request(forged, first.stored, { fieldManager: 'kubectl-annotate' }));
    assert.equal(result.forgeryReverted, true);
    assert.deepEqual(out, first.stored);
  });

  it('puts the managed label back when a user removes it', () => {
    const old = deployment();
    const next = structuredClone(old);
    delete next.metadata!.labels![MANAGED_LABEL];
    const { result, out } = run(request(next, old));
    assert.equal(result.decision, 'unchanged');
    assert.equal(out.metadata!.labels![MANAGED_LABEL], 'true');
    assert.deepEqual(out, old);
  });

  it('puts the managed label back to "true" when a user sets it to "false" along with a template change', () => {
    const old = deployment();
    const next = withImage(old, '2.0.0');
    next.metadata!.labels![MANAGED_LABEL] = 'false';
    const { result, out } = run(request(next, old));
    assert.equal(result.decision, 'intercepted');
    assert.equal(out.metadata!.labels![MANAGED_LABEL], 'true');
    assert.deepEqual(template(out), template(old));
  });
});

describe('decide(): adding the managed label to an unmanaged object', () => {
  it('cannot bring a forged pending revision along with the label', () => {
    const old = unmanagedDeployment();
    const next = structuredClone(old);
    next.metadata!.labels = { ...(next.metadata!.labels ?? {}), [MANAGED_LABEL]: 'true' };
    next.metadata!.annotations = {
      ...(next.metadata!.annotations ?? {}),
      [PENDING_SPEC]: JSON.stringify(template(withImage(old, 'evil'))),
      [PENDING_REVISION]: revisionOf(template(withImage(old, 'evil'))),
    };
    const { result, out } = run(request(next, old));
    assert.equal(result.forgeryReverted, true);
    assert.equal(annotations(out)[PENDING_REVISION], undefined);
    assert.equal(annotations(out)[PENDING_SPEC], undefined);
    assert.equal(out.metadata!.labels![MANAGED_LABEL], 'true', 'the label itself is not a forgery: adoption is harmless');
  });

  it('lets an unmanaged object without control annotations through untouched', () => {
    const old = unmanagedDeployment();
    const r = decide(request(withImage(old, '2.0.0'), old), config);
    assert.deepEqual(r, { allowed: true, decision: 'skipped' });
  });
});

describe('decide(): objects missing their template', () => {
  it('passes an update whose new object has no template (the API server refuses it) without a patch', () => {
    const old = deployment();
    const next = structuredClone(old);
    delete (next.spec as Record<string, unknown>).template;
    const r = decide(request(next, old), config);
    assert.deepEqual(r, { allowed: true, decision: 'skipped' });
  });

  it('never emits a replace without a value when the stored object lacks a template', () => {
    const old = deployment();
    delete (old.spec as Record<string, unknown>).template;
    const r = decide(request(deployment(), old), config);
    assert.equal(r.patch, undefined);
  });
});

describe('decide(): objects without annotations or labels maps', () => {
  it('adds the annotations map when intercepting an object that has none', () => {
    const old = deployment();
    delete old.metadata!.annotations;
    const next = withImage(old, '2.0.0');
    const { result, out } = run(request(next, old));
    assert.equal(result.decision, 'intercepted');
    assert.deepEqual(Object.keys(annotations(out)).sort(), [PENDING_REVISION, PENDING_SPEC].sort());
    assert.deepEqual(template(out), template(old));
  });

  it('adds the labels map when the incoming object has none', () => {
    const old = deployment();
    delete old.metadata!.annotations;
    const next = structuredClone(old);
    delete next.metadata!.labels;
    const { result, out } = run(request(next, old));
    assert.equal(result.decision, 'unchanged');
    assert.deepEqual(out.metadata!.labels, { [MANAGED_LABEL]: 'true' });
  });

  it('restores pending annotations on a metadata-only update whose object lost its annotations map', () => {
    const stable = deployment();
    const first = intercept(stable, withImage(stable, '1.15.0'));
    const next = structuredClone(first.stored);
    delete next.metadata!.annotations;
    const { result, out } = run(request(next, first.stored, { fieldManager: 'kubectl-annotate' }));
    assert.equal(result.decision, 'unchanged');
    assert.equal(annotations(out)[PENDING_REVISION], first.result.revision);
    assert.equal(annotations(out)[PENDING_SPEC], annotations(first.stored)[PENDING_SPEC]);
  });

  it('removes nothing and adds nothing for an unmanaged CREATE with no metadata maps', () => {
    const d = unmanagedDeployment();
    delete d.metadata!.annotations;
    delete d.metadata!.labels;
    assert.deepEqual(decide(request(d, null, { operation: 'CREATE' }), config), { allowed: true, decision: 'skipped' });
  });
});

describe('decide(): Services', () => {
  it('intercepts a selector change and restores the spec with its clusterIP', () => {
    const old = service();
    const next = structuredClone(old);
    next.spec!.selector = { app: 'checkout', track: 'v2' };
    const { result, out } = run(request(next, old));
    assert.equal(result.decision, 'intercepted');
    assert.deepEqual(out.spec, old.spec);
    assert.equal(out.spec!.clusterIP, '10.96.143.27');
    const pending = JSON.parse(annotations(out)[PENDING_SPEC] as string);
    assert.deepEqual(pending.selector, { app: 'checkout', track: 'v2' });
    assert.equal(pending.clusterIP, undefined, 'allocated fields are not part of the pending spec');
    assert.deepEqual(pending, serviceSpecForRevision(next.spec));
    assert.equal(result.revision, revisionOf(serviceSpecForRevision(next.spec)));
  });

  it('does not count a manifest without clusterIP, clusterIPs, ipFamilies or nodePorts as a change', () => {
    const old = service();
    old.spec!.type = 'NodePort';
    (old.spec!.ports as Array<Record<string, unknown>>)[0]!.nodePort = 31080;
    const next = structuredClone(old);
    for (const k of ['clusterIP', 'clusterIPs', 'ipFamilies', 'ipFamilyPolicy']) delete next.spec![k];
    delete (next.spec!.ports as Array<Record<string, unknown>>)[0]!.nodePort;
    assert.deepEqual(decide(request(next, old), config), { allowed: true, decision: 'unchanged' });
  });

  it('intercepts a type change to ExternalName', () => {
    const old = service();
    const next = structuredClone(old);
    next.spec = { type: 'ExternalName', externalName: 'checkout.legacy.example.com', sessionAffinity: 'None' };
    const { result, out } = run(request(next, old));
    assert.equal(result.decision, 'intercepted');
    assert.deepEqual(out.spec, old.spec);
    assert.equal(JSON.parse(annotations(out)[PENDING_SPEC] as string).type, 'ExternalName');
  });

  it('intercepts a port change', () => {
    const old = service();
    const next = structuredClone(old);
    (next.spec!.ports as Array<Record<string, unknown>>)[0]!.targetPort = 8081;
    assert.equal(decide(request(next, old), config).decision, 'intercepted');
  });
});

describe('decide(): a pending spec too large for an annotation', () => {
  it('refuses the update with a clear message (default limit)', () => {
    const old = deployment();
    const next = structuredClone(old);
    (mainContainer(next).env as Array<Record<string, unknown>>).push({ name: 'BLOB', value: 'x'.repeat(200 * 1024) });
    const r = decide(request(next, old), config);
    assert.equal(r.allowed, false);
    assert.equal(r.decision, 'rejected');
    assert.equal(r.patch, undefined);
    assert.match(r.message ?? '', /pod template is \d+ bytes/);
    assert.match(r.message ?? '', /196608 bytes/);
    assert.match(r.message ?? '', /not applied/);
  });

  it('honours a configured limit', () => {
    const old = deployment();
    const r = decide(request(withImage(old, '2'), old), { ...config, maxPendingSpecBytes: 1024 });
    assert.equal(r.decision, 'rejected');
    assert.match(r.message ?? '', /1024 bytes/);
  });
});

describe('decide(): jsonEqual, the order-insensitive comparison on the hot path', () => {
  // Same answer as comparing canonical JSON texts, on random JSON values,
  // their key-shuffled copies and copies with one small change.
  let state = 12345;
  const rand = (n: number) => {
    state = (Math.imul(state, 1103515245) + 12345) >>> 0;
    return state % n;
  };
  const value = (depth: number): unknown => {
    switch (rand(depth > 3 ? 5 : 8)) {
      case 0: return null;
      case 1: return rand(2) === 0;
      case 2: return rand(5) - 2;
      case 3: return ['a', 'b', '', 'x y'][rand(4)];
      case 4: return rand(3) === 0 ? 0 : -0;
      case 5: return Array.from({ length: rand(4) }, () => value(depth + 1));
      default: {
        const o: Record<string, unknown> = {};
        for (let i = rand(5); i > 0; i--) o[['k', 'image', 'a', 'b', 'z'][rand(5)] as string] = value(depth + 1);
        return o;
      }
    }
  };
  const tweak = (v: unknown): unknown => {
    if (Array.isArray(v)) return v.length && rand(2) ? v.map((x, i) => (i === rand(v.length) ? tweak(x) : x)) : [...v, 1];
    if (v && typeof v === 'object') {
      const keys = Object.keys(v);
      const o = { ...(v as Record<string, unknown>) };
      if (keys.length && rand(3)) {
        const k = keys[rand(keys.length)] as string;
        if (rand(2)) o[k] = tweak(o[k]);
        else delete o[k];
      } else o.extra = 1;
      return o;
    }
    return v === 1 ? 2 : 1;
  };

  it('agrees with canonicalJson equality on 3000 pairs', async () => {
    const { jsonEqual } = await import('../../core/json.js');
    const { canonicalJson } = await import('../../core/revision.js');
    let equalPairs = 0;
    for (let i = 0; i < 1000; i++) {
      const a = value(0);
      for (const b of [shuffleKeys(a), tweak(a), value(0)]) {
        const expected = canonicalJson(a) === canonicalJson(b);
        if (expected) equalPairs++;
        assert.equal(jsonEqual(a, b), expected, `${JSON.stringify(a)} vs ${JSON.stringify(b)}`);
        assert.equal(jsonEqual(b, a), expected);
      }
    }
    assert.ok(equalPairs >= 1000, 'the shuffled copies compare equal');
  });

  it('restoreOps() is empty exactly when jsonEqual() holds, and otherwise turns one value into the other (3000 pairs)', async () => {
    const { jsonEqual, restoreOps } = await import('../../core/json.js');
    for (let i = 0; i < 1000; i++) {
      const a = { v: value(0) };
      for (const b of [shuffleKeys(a), tweak(a) as typeof a, { v: value(0) }]) {
        const ops = restoreOps('', b, a);
        assert.equal(ops.length === 0, jsonEqual(a, b), `${JSON.stringify(a)} vs ${JSON.stringify(b)}`);
        const restored = jsonpatch.applyPatch(structuredClone(b), ops as jsonpatch.Operation[], true, false).newDocument;
        assert.ok(jsonEqual(restored, a), `${JSON.stringify(b)} restored to ${JSON.stringify(restored)}, want ${JSON.stringify(a)}`);
      }
    }
  });

  it('restoreOps() does not mistake inherited members such as "constructor" for the object\'s own', async () => {
    const { restoreOps } = await import('../../core/json.js');
    const from = JSON.parse('{"labels":{"constructor":"x","app":"a"}}') as Record<string, unknown>;
    const to = JSON.parse('{"labels":{"app":"a","toString":"y"}}') as Record<string, unknown>;
    const ops = restoreOps('', from, to);
    const restored = jsonpatch.applyPatch(structuredClone(from), ops as jsonpatch.Operation[], true, false).newDocument;
    assert.deepEqual(restored, to);
  });

  it('treats undefined members as absent and undefined array elements as null', async () => {
    const { jsonEqual } = await import('../../core/json.js');
    assert.equal(jsonEqual({ a: 1, b: undefined }, { a: 1 }), true);
    assert.equal(jsonEqual([undefined], [null]), true);
    assert.equal(jsonEqual({ a: undefined }, { b: undefined }), true);
    assert.equal(jsonEqual({ a: null }, {}), false);
    assert.equal(jsonEqual([], {}), false);
    assert.equal(jsonEqual(undefined, null), false);
  });
});

describe('decide(): the restoring patch touches only what changed', () => {
  it('restores an image change with one small replace', () => {
    const stable = deployment();
    const { result } = run(request(withImage(stable, '9.9.9'), stable));
    const restore = (result.patch ?? []).filter((op) => op.path.startsWith('/spec/template'));
    assert.equal(restore.length, 1);
    assert.match(restore[0]?.path ?? '', /^\/spec\/template\/spec\/containers\/\d+\/image$/);
  });

  it('always gives back exactly the stable template for randomly mutated templates (seeded)', () => {
    const seed = Number(process.env.RESTORE_SEED ?? Date.now() % 100000);
    const rng = new Rng(seed);
    const stable = deployment();
    const keys = ['a', 'b/c', 'd~e', 'image', 'x', 'constructor', 'toString'];
    const mutate = (v: unknown, depth: number): unknown => {
      if (v === null || typeof v !== 'object' || depth > 6) return rng.chance(0.5) ? `v${rng.int(5)}` : v;
      if (Array.isArray(v)) {
        const out = v.map((x) => (rng.chance(0.2) ? mutate(x, depth + 1) : x));
        if (rng.chance(0.1)) out.push({ added: rng.int(9) });
        if (rng.chance(0.1)) out.pop();
        return out;
      }
      const out: Record<string, unknown> = {};
      for (const [k, x] of Object.entries(v)) {
        if (rng.chance(0.05)) continue; // removed
        out[k] = rng.chance(0.2) ? mutate(x, depth + 1) : x;
      }
      if (rng.chance(0.1)) out[rng.pick(keys)] = rng.int(100);
      return out;
    };
    for (let i = 0; i < 300; i++) {
      const next = structuredClone(stable);
      (next.spec as Record<string, unknown>).template = mutate(structuredClone(template(stable)), 0);
      const { result, out } = run(request(next, stable));
      assert.ok(result.decision === 'intercepted' || result.decision === 'unchanged', `seed ${seed}: ${result.decision}`);
      assert.deepEqual(template(out), template(stable), `seed ${seed}, case ${i}`);
    }
  });
});
