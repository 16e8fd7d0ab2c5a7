// decide() for ConfigMaps and Secrets: the same rules as for a Deployment's
// template (webhook-decide.test.ts), applied to their data, plus what only
// configs have: binaryData, stringData, Secret types skipped by default, the
// tracking annotation, immutable configs, and advice when data is too large
// for an annotation. Patches are applied with fast-json-patch, as the API
// server would, and the resulting object is what gets asserted.

import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import jsonpatch from 'fast-json-patch';
import { pino } from 'pino';
import supertest from 'supertest';
import {
  CONFIG_TRACKING_ANNOTATION,
  CONFIG_TRACKING_DISABLED,
  CONFIG_TRACKING_ENABLED,
  MANAGED_LABEL,
  PENDING_REVISION,
  PENDING_SPEC,
} from '../../core/contract.js';
import { revisionOf } from '../../core/revision.js';
import {
  configMapKind,
  configTracked,
  heldKindOf,
  secretKind,
  TARGET_KINDS,
  targetKind,
  targetKindOf,
  UNTRACKED_SECRET_TYPES,
} from '../../core/targets/index.js';
import type { AdmissionRequest, JsonPatchOp, KubeObject } from '../../webhook/admission.js';
import { decide, TOTAL_ANNOTATION_BYTES, type DecideConfig, type DecideResult } from '../../webhook/decide.js';
import { createWebhookHandler } from '../../webhook/server.js';
import { RECONCILER, SECRET_VALUE, admissionReview, configMap, request, secret, typedSecret, withData } from '../fixtures/objects.js';

const config: DecideConfig = { reconcilerUsers: new Set([RECONCILER]) };

function apply(obj: KubeObject, patch: JsonPatchOp[] | undefined): KubeObject {
  if (!patch) return obj;
  return jsonpatch.applyPatch(structuredClone(obj), patch as jsonpatch.Operation[], true, false).newDocument as KubeObject;
}

function annotations(obj: KubeObject): Record<string, string> {
  return obj.metadata?.annotations ?? {};
}

function run(req: AdmissionRequest, cfg: DecideConfig = config): { result: DecideResult; out: KubeObject } {
  const result = decide(req, cfg);
  return { result, out: apply(req.object as KubeObject, result.patch) };
}

/** The live contents of a config: what its Pods read. */
function contents(obj: KubeObject): unknown {
  return { data: obj.data, binaryData: obj.binaryData, stringData: obj.stringData };
}

/** Stores an intercepted change the way the API server would. */
function intercept(stored: KubeObject, incoming: KubeObject): KubeObject {
  const { result, out } = run(request(incoming, stored));
  assert.equal(result.decision, 'intercepted');
  return out;
}

/** Nothing a user can read of the result besides the patch (messages, warnings) names a value. */
function assertNoValues(result: DecideResult, values: string[]): void {
  const visible = JSON.stringify({ ...result, patch: undefined });
  for (const v of values) assert.ok(!visible.includes(v), `a message or warning carries the value ${JSON.stringify(v)}`);
}

describe('config adapters: the registry', () => {
  it('holds ConfigMaps and Secrets in the webhook, but a Canary still targets only Deployments and Services', () => {
    assert.equal(heldKindOf({ group: '', version: 'v1', kind: 'ConfigMap' }), configMapKind);
    assert.equal(heldKindOf({ group: '', version: 'v1', kind: 'Secret' }), secretKind);
    assert.equal(targetKindOf({ group: '', version: 'v1', kind: 'ConfigMap' }), undefined);
    assert.deepEqual(TARGET_KINDS.map((k) => k.kind), ['Deployment', 'Service']);
    assert.throws(() => targetKind('ConfigMap'), /cannot canary a ConfigMap; targetRef.kind must be one of Deployment, Service/);
    assert.throws(() => targetKind('Secret'), /cannot canary a Secret/);
  });

  it('the revision of a ConfigMap is revisionOf its {data, binaryData}; an empty map counts as absent', () => {
    const cm = configMap();
    assert.equal(revisionOf(configMapKind.specUnderCanary(cm)), revisionOf({ data: cm.data, binaryData: cm.binaryData }));
    const bare = configMap();
    bare.binaryData = {};
    delete bare.data;
    assert.deepEqual(configMapKind.specUnderCanary(bare), {});
  });

  it('promoteOps installs the pending data and drops a binaryData the pending spec lacks', () => {
    const live = configMap();
    const pending = { data: { LOG_LEVEL: 'debug' } };
    const out = apply(live, configMapKind.promoteOps(live, pending));
    assert.deepEqual(out.data, { LOG_LEVEL: 'debug' });
    assert.equal(out.binaryData, undefined);
    assert.deepEqual(configMapKind.specUnderCanary(out), pending);
    const s = secret();
    const next = { data: { url: 'bmV3' } };
    assert.deepEqual(apply(s, secretKind.promoteOps(s, next)).data, next.data);
  });
});

describe('config adapters: configTracked()', () => {
  it('tracks ConfigMaps and Opaque Secrets by default', () => {
    assert.equal(configTracked(configMap()), true);
    assert.equal(configTracked(secret()), true);
  });

  for (const type of UNTRACKED_SECRET_TYPES) {
    it(`does not track a ${type} Secret unless annotated ${CONFIG_TRACKING_ENABLED}`, () => {
      const s = typedSecret(type);
      assert.equal(configTracked(s), false);
      s.metadata!.annotations = { [CONFIG_TRACKING_ANNOTATION]: CONFIG_TRACKING_ENABLED };
      assert.equal(configTracked(s), true);
    });
  }

  it(`never tracks a config annotated ${CONFIG_TRACKING_DISABLED}, nor an immutable one`, () => {
    const cm = configMap();
    cm.metadata!.annotations![CONFIG_TRACKING_ANNOTATION] = CONFIG_TRACKING_DISABLED;
    assert.equal(configTracked(cm), false);
    const frozen = secret();
    frozen.immutable = true;
    assert.equal(configTracked(frozen), false);
  });

  it('judges an informer object without `kind` the same (a Secret is told by its type)', () => {
    const s = typedSecret('kubernetes.io/tls');
    delete s.kind;
    assert.equal(configTracked(s), false);
  });
});

describe('decide(): ConfigMap data changes', () => {
  it('holds a data change: live data restored, the change recorded as the pending revision', () => {
    const old = configMap();
    const next = withData(old, 'LOG_LEVEL', 'debug');
    next.metadata!.labels!.release = 'r42';
    const { result, out } = run(request(next, old));
    assert.equal(result.allowed, true);
    assert.equal(result.decision, 'intercepted');
    assert.deepEqual(contents(out), contents(old), 'Pods keep reading the stable data');
    assert.equal(out.metadata!.labels!.release, 'r42', 'metadata goes through');
    const spec = { data: next.data, binaryData: next.binaryData };
    assert.equal(annotations(out)[PENDING_REVISION], revisionOf(spec));
    assert.equal(result.revision, revisionOf(spec));
    assert.deepEqual(JSON.parse(annotations(out)[PENDING_SPEC] as string), spec);
    assert.equal(annotations(out)['team.example.com/owner'], 'payments');
    assert.match(result.warnings?.[0] ?? '', /pending revision [0-9a-f]{12}; the live ConfigMap/);
    assertNoValues(result, ['debug', 'taxEngine']);
  });

  it('holds a binaryData change', () => {
    const old = configMap();
    const next = structuredClone(old);
    (next.binaryData as Record<string, string>)['logo.png'] = 'R0lGODlhAQABAAAAACw=';
    const { result, out } = run(request(next, old));
    assert.equal(result.decision, 'intercepted');
    assert.deepEqual(contents(out), contents(old));
    assert.deepEqual(JSON.parse(annotations(out)[PENDING_SPEC] as string).binaryData, next.binaryData);
  });

  it('holds an added key, a removed key and a removed binaryData, restoring each', () => {
    const old = configMap();
    const next = withData(old, 'NEW_KEY', 'x');
    delete (next.data as Record<string, string>).LOG_LEVEL;
    delete next.binaryData;
    const { result, out } = run(request(next, old));
    assert.equal(result.decision, 'intercepted');
    assert.deepEqual(contents(out), contents(old));
    assert.deepEqual(JSON.parse(annotations(out)[PENDING_SPEC] as string), { data: next.data });
  });

  it('holds data given to a ConfigMap that had none', () => {
    const old = configMap();
    delete old.data;
    delete old.binaryData;
    const next = withData(old, 'LOG_LEVEL', 'debug');
    const { result, out } = run(request(next, old));
    assert.equal(result.decision, 'intercepted');
    assert.equal(out.data, undefined);
  });

  it('passes label and annotation changes of a managed ConfigMap with no patch', () => {
    const old = configMap();
    const next = structuredClone(old);
    next.metadata!.labels!.team = 'payments';
    next.metadata!.annotations!['example.com/note'] = 'hello';
    assert.deepEqual(decide(request(next, old), config), { allowed: true, decision: 'unchanged' });
  });

  it("passes the reconciler's data change (a promotion) untouched", () => {
    const old = configMap();
    assert.deepEqual(decide(request(withData(old, 'LOG_LEVEL', 'debug'), old, { username: RECONCILER }), config), {
      allowed: true,
      decision: 'reconciler',
    });
  });

  it('passes a data change of an unmanaged ConfigMap untouched', () => {
    const old = configMap();
    delete old.metadata!.labels![MANAGED_LABEL];
    assert.deepEqual(decide(request(withData(old, 'LOG_LEVEL', 'debug'), old), config), { allowed: true, decision: 'skipped' });
  });
});

describe('decide(): a config change already pending', () => {
  it('re-applying the same change gives the identical object and the same revision (reapplied)', () => {
    const old = configMap();
    const next = withData(old, 'LOG_LEVEL', 'debug');
    const stored = intercept(old, next);
    const again = withData(stored, 'LOG_LEVEL', 'debug');
    delete again.metadata!.annotations![PENDING_SPEC];
    const { result, out } = run(request(again, stored));
    assert.equal(result.decision, 'reapplied');
    assert.equal(result.warnings, undefined);
    assert.deepEqual(out, stored);
  });

  it('a different change replaces the pending one', () => {
    const old = configMap();
    const stored = intercept(old, withData(old, 'LOG_LEVEL', 'debug'));
    const other = withData(stored, 'LOG_LEVEL', 'warn');
    const { result, out } = run(request(other, stored));
    assert.equal(result.decision, 'replaced');
    assert.deepEqual(contents(out), contents(old));
    assert.equal(annotations(out)[PENDING_REVISION], revisionOf({ data: other.data, binaryData: other.binaryData }));
    assert.notEqual(annotations(out)[PENDING_REVISION], annotations(stored)[PENDING_REVISION]);
  });

  it('setting the data back to the stable one withdraws the pending revision (cancelled)', () => {
    const old = configMap();
    const stored = intercept(old, withData(old, 'LOG_LEVEL', 'debug'));
    const { result, out } = run(request(withData(stored, 'LOG_LEVEL', 'info'), stored));
    assert.equal(result.decision, 'cancelled');
    assert.equal(annotations(out)[PENDING_REVISION], undefined);
    assert.equal(annotations(out)[PENDING_SPEC], undefined);
    assert.match(result.warnings?.[0] ?? '', /back to the stable ConfigMap data; pending revision [0-9a-f]{12} withdrawn/);
  });

  it('`kubectl label` keeps the pending revision', () => {
    const old = configMap();
    const stored = intercept(old, withData(old, 'LOG_LEVEL', 'debug'));
    const next = structuredClone(stored);
    next.metadata!.labels!.team = 'payments';
    const { result, out } = run(request(next, stored, { fieldManager: 'kubectl-label' }));
    assert.equal(result.decision, 'unchanged');
    assert.equal(annotations(out)[PENDING_REVISION], annotations(stored)[PENDING_REVISION]);
  });

  it('a dry run gets exactly the same answer and patch', () => {
    const old = configMap();
    const next = withData(old, 'LOG_LEVEL', 'debug');
    const real = decide(request(next, old), config);
    const dry = decide(request(next, old, { dryRun: true }), config);
    assert.deepEqual(dry, real);
  });
});

describe('decide(): forged control annotations on configs', () => {
  it('removes control annotations a user adds to a managed ConfigMap with no pending revision', () => {
    const old = configMap();
    const next = structuredClone(old);
    next.metadata!.annotations![PENDING_REVISION] = 'deadbeef0001';
    next.metadata!.annotations![PENDING_SPEC] = JSON.stringify({ data: { LOG_LEVEL: 'evil' } });
    const { result, out } = run(request(next, old));
    assert.equal(result.forgeryReverted, true);
    assert.deepEqual(annotations(out), annotations(old));
  });

  it('puts back the webhook-set values when a user rewrites them on a pending Secret', () => {
    const old = secret();
    const stored = intercept(old, withData(old, 'url', 'postgres://new'));
    const next = structuredClone(stored);
    next.metadata!.annotations![PENDING_SPEC] = JSON.stringify({ data: { url: 'ZXZpbA==' } });
    const { result, out } = run(request(next, stored, { fieldManager: 'kubectl-annotate' }));
    assert.equal(result.forgeryReverted, true);
    assert.deepEqual(annotations(out), annotations(stored));
  });

  it('puts the managed label back when a user removes it', () => {
    const old = configMap();
    const next = structuredClone(old);
    delete next.metadata!.labels![MANAGED_LABEL];
    const { out } = run(request(next, old));
    assert.equal(out.metadata!.labels![MANAGED_LABEL], 'true');
  });

  it('keeps the control annotations of an untracked TLS Secret as they were', () => {
    const old = typedSecret('kubernetes.io/tls');
    const next = structuredClone(old);
    next.metadata!.annotations = { [PENDING_REVISION]: 'deadbeef0001' };
    const { result, out } = run(request(next, old));
    assert.equal(result.forgeryReverted, true);
    assert.equal(annotations(out)[PENDING_REVISION], undefined);
  });
});

describe('decide(): Secret data changes', () => {
  it('holds a data change; the pending spec is the Secret data, base64 as stored', () => {
    const old = secret();
    const next = withData(old, 'url', `postgres://checkout:${SECRET_VALUE}@db:5432/checkout`);
    const { result, out } = run(request(next, old));
    assert.equal(result.decision, 'intercepted');
    assert.deepEqual(out.data, old.data);
    assert.deepEqual(JSON.parse(annotations(out)[PENDING_SPEC] as string), { data: next.data });
    assert.equal(result.revision, revisionOf({ data: next.data }));
    assertNoValues(result, [SECRET_VALUE, (next.data as Record<string, string>).url as string]);
  });

  it('holds a stringData change that reaches the webhook still as stringData: both restored, merged data pending', () => {
    const old = secret();
    const next = structuredClone(old);
    next.stringData = { url: `postgres://checkout:${SECRET_VALUE}@db/checkout`, extra: 'x' };
    const { result, out } = run(request(next, old));
    assert.equal(result.decision, 'intercepted');
    assert.equal(out.stringData, undefined, 'stringData would be merged into data after the patch');
    assert.deepEqual(out.data, old.data);
    const merged = {
      url: Buffer.from(`postgres://checkout:${SECRET_VALUE}@db/checkout`).toString('base64'),
      extra: Buffer.from('x').toString('base64'),
    };
    assert.deepEqual(JSON.parse(annotations(out)[PENDING_SPEC] as string), { data: merged });
    assertNoValues(result, [SECRET_VALUE, merged.url]);
  });

  it('stringData that repeats the stored data is no change', () => {
    const old = secret();
    const next = structuredClone(old);
    next.stringData = { url: Buffer.from((old.data as Record<string, string>).url as string, 'base64').toString('utf8') };
    assert.deepEqual(decide(request(next, old), config), { allowed: true, decision: 'unchanged' });
  });

  for (const type of UNTRACKED_SECRET_TYPES) {
    it(`lets a ${type} Secret's renewal straight through`, () => {
      const old = typedSecret(type);
      const next = withData(old, 'tls.crt', '-----BEGIN CERTIFICATE-----\nrenewed\n');
      assert.deepEqual(decide(request(next, old), config), { allowed: true, decision: 'skipped' });
    });
  }

  it(`holds a TLS Secret annotated ${CONFIG_TRACKING_ENABLED}`, () => {
    const old = typedSecret('kubernetes.io/tls');
    old.metadata!.annotations = { [CONFIG_TRACKING_ANNOTATION]: CONFIG_TRACKING_ENABLED };
    const { result, out } = run(request(withData(old, 'tls.crt', 'renewed'), old));
    assert.equal(result.decision, 'intercepted');
    assert.deepEqual(out.data, old.data);
  });
});

describe('decide(): the tracking annotation', () => {
  it(`lets a data change of a config annotated ${CONFIG_TRACKING_DISABLED} straight through`, () => {
    const old = configMap();
    old.metadata!.annotations![CONFIG_TRACKING_ANNOTATION] = CONFIG_TRACKING_DISABLED;
    assert.deepEqual(decide(request(withData(old, 'LOG_LEVEL', 'debug'), old), config), { allowed: true, decision: 'skipped' });
  });

  it('is judged on the stored object: disabling in the same update still holds that update', () => {
    const old = configMap();
    const next = withData(old, 'LOG_LEVEL', 'debug');
    next.metadata!.annotations![CONFIG_TRACKING_ANNOTATION] = CONFIG_TRACKING_DISABLED;
    const { result, out } = run(request(next, old));
    assert.equal(result.decision, 'intercepted');
    assert.deepEqual(out.data, old.data);
  });

  it('refuses a value other than enabled or disabled, saying which are allowed', () => {
    const old = configMap();
    const next = structuredClone(old);
    next.metadata!.annotations![CONFIG_TRACKING_ANNOTATION] = 'off';
    const r = decide(request(next, old), config);
    assert.equal(r.allowed, false);
    assert.equal(r.decision, 'rejected');
    assert.match(r.message ?? '', /canarygate.dev\/config-tracking must be "enabled" or "disabled", got "off"; the update was not applied/);
  });

  it('refuses a value that is not a string with a message too (found by the fuzz test: it threw)', () => {
    const old = configMap();
    const next = structuredClone(old);
    (next.metadata!.annotations as Record<string, unknown>)[CONFIG_TRACKING_ANNOTATION] = 7;
    const r = decide(request(next, old), config);
    assert.equal(r.decision, 'rejected');
    assert.match(r.message ?? '', /got a number/);
  });
});

describe('decide(): immutable configs', () => {
  it("passes a data change of an immutable ConfigMap untouched, so that the API server's own refusal reaches the user", () => {
    const old = configMap();
    old.immutable = true;
    const next = withData(old, 'LOG_LEVEL', 'debug');
    assert.deepEqual(decide(request(next, old), config), { allowed: true, decision: 'skipped' });
  });

  it('refuses making a ConfigMap immutable in the same update as a data change (it could never be promoted)', () => {
    const old = configMap();
    const next = withData(old, 'LOG_LEVEL', 'debug');
    next.immutable = true;
    const r = decide(request(next, old), config);
    assert.equal(r.allowed, false);
    assert.match(r.message ?? '', /makes the ConfigMap immutable while a data change is held/);
  });

  it('refuses making a config immutable while a change is pending, and allows it when none is', () => {
    const old = configMap();
    const stored = intercept(old, withData(old, 'LOG_LEVEL', 'debug'));
    // GitOps re-applies the manifest of the pending data, now with immutable: true.
    const frozen = withData(stored, 'LOG_LEVEL', 'debug');
    frozen.immutable = true;
    assert.equal(decide(request(frozen, stored), config).allowed, false);
    const plain = structuredClone(old);
    plain.immutable = true;
    assert.deepEqual(decide(request(plain, old), config), { allowed: true, decision: 'unchanged' });
  });
});

describe('decide(): config data too large for an annotation', () => {
  it('refuses with the sizes and what to do instead (a generated name)', () => {
    const old = configMap();
    const next = withData(old, 'big.txt', 'x'.repeat(200 * 1024));
    const r = decide(request(next, old), config);
    assert.equal(r.allowed, false);
    assert.equal(r.decision, 'rejected');
    assert.match(r.message ?? '', /the new ConfigMap data is \d+ bytes of JSON, more than the 196608 bytes/);
    assert.match(r.message ?? '', /configMapGenerator/);
    assert.match(r.message ?? '', /canarygate.dev\/config-tracking: disabled/);
    assertNoValues(r, ['xxxxxxxx']);
  });

  it("refuses when the pending data and the object's other annotations together pass Kubernetes' 256 KiB", () => {
    const old = secret();
    // Client-side kubectl apply keeps the whole object in this annotation.
    old.metadata!.annotations = { 'kubectl.kubernetes.io/last-applied-configuration': 'y'.repeat(150 * 1024) };
    const next = withData(old, 'url', 'z'.repeat(90 * 1024));
    const r = decide(request(next, old), config);
    assert.equal(r.allowed, false);
    assert.match(r.message ?? '', new RegExp(`exceed the ${TOTAL_ANNOTATION_BYTES} bytes Kubernetes allows for all annotations`));
    assert.match(r.message ?? '', /secretGenerator/);
  });

  it('a Secret change that fits passes the size check', () => {
    const old = secret();
    assert.equal(decide(request(withData(old, 'url', 'z'.repeat(90 * 1024)), old), config).decision, 'intercepted');
  });
});

describe('webhook log lines for configs', () => {
  it('name the object and the decision, never a data value nor the pending spec (debug level, every outcome)', async () => {
    const lines: string[] = [];
    const sink = new Writable({
      write(chunk, _enc, done) {
        lines.push(String(chunk));
        done();
      },
    });
    const h = createWebhookHandler({ logger: pino({ level: 'debug' }, sink), reconcilerUsers: [RECONCILER] });
    const oldSecret = secret();
    const held = withData(oldSecret, 'url', `postgres://checkout:${SECRET_VALUE}@db/checkout`);
    const viaStringData = structuredClone(oldSecret);
    viaStringData.stringData = { url: SECRET_VALUE };
    const forged = structuredClone(oldSecret);
    forged.metadata!.annotations = { [PENDING_SPEC]: SECRET_VALUE };
    const tls = typedSecret('kubernetes.io/tls');
    const oldMap = configMap();
    const tooLarge = withData(oldMap, 'big', `${SECRET_VALUE}${'x'.repeat(200 * 1024)}`);
    const badTracking = structuredClone(oldMap);
    badTracking.metadata!.annotations![CONFIG_TRACKING_ANNOTATION] = SECRET_VALUE;
    const reviews = [
      request(held, oldSecret),
      request(viaStringData, oldSecret),
      request(forged, oldSecret),
      request(withData(tls, 'tls.key', SECRET_VALUE), tls),
      request(tooLarge, oldMap),
      request(badTracking, oldMap),
      request(withData(oldMap, 'LOG_LEVEL', SECRET_VALUE), oldMap, { dryRun: true }),
    ];
    const decisions: string[] = [];
    for (const r of reviews) {
      const res = await supertest(h.handler).post('/mutate').send(admissionReview(r)).expect(200);
      assert.equal(res.body.response.uid, r.uid);
    }
    for (const line of lines) decisions.push(JSON.parse(line).decision);
    assert.deepEqual(decisions, ['intercepted', 'intercepted', 'unchanged', 'skipped', 'rejected', 'rejected', 'intercepted']);
    const text = lines.join('');
    assert.match(text, /"name":"checkout-db"/, 'the log does name the object');
    for (const v of [SECRET_VALUE, Buffer.from(SECRET_VALUE).toString('base64'), 'postgres://', 'xxxxxxxx', PENDING_SPEC]) {
      assert.ok(!text.includes(v), `the log carries ${v}`);
    }
  });
});
