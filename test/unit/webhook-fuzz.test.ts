// Randomised AdmissionReviews, mangled in structure and in text, against the
// HTTP handler. Whatever arrives, the server answers: either a valid
// AdmissionReview (200, response.uid echoing the request's) or a 4xx, and
// it is still healthy afterwards. Never a 5xx, never a dropped connection,
// never a polluted Object.prototype.
//
// Reproduce a failure with FUZZ_SEED=<seed printed in the failure>.

import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { pino } from 'pino';
import jsonpatch from 'fast-json-patch';
import { CONFIG_TRACKING_ANNOTATION, MANAGED_LABEL, PENDING_REVISION, PENDING_SPEC } from '../../core/contract.js';
import { jsonEqual } from '../../core/json.js';
import { heldKindOf } from '../../core/targets/index.js';
import type { AdmissionRequest } from '../../webhook/admission.js';
import { decide } from '../../webhook/decide.js';
import { review } from '../../webhook/review.js';
import { createWebhookHandler } from '../../webhook/server.js';
import {
  RECONCILER,
  admissionReview,
  configMap,
  deployment,
  request as admissionRequest,
  secret,
  service,
  typedSecret,
  unmanagedDeployment,
  withData,
  withImage,
} from '../fixtures/objects.js';
import { Rng } from '../fixtures/rng.js';

const HTTP_CASES = 2000;
const DIRECT_CASES = 1500;
const MAX_BODY = 2 * 1024 * 1024;


const seed = process.env.FUZZ_SEED ? Number(process.env.FUZZ_SEED) : Math.floor(Math.random() * 2 ** 32);

const INTERESTING_STRINGS = [
  '', 'CREATE', 'UPDATE', 'DELETE', 'CONNECT', 'apps', 'v1', '', 'Deployment', 'Service', 'AdmissionReview',
  'admission.k8s.io/v1', 'admission.k8s.io/v1beta1', RECONCILER, 'kubectl-label', 'kubectl-annotate', 'status', 'scale',
  'true', 'false', MANAGED_LABEL, PENDING_REVISION, PENDING_SPEC, '__proto__', 'constructor', 'prototype', 'toString',
  'hasOwnProperty', '\u0000', '\ud800', '"quoted"', '~1/~0', 'é漢字🚀', '{"a":1}',
  'ConfigMap', 'Secret', 'data', 'binaryData', 'stringData', 'immutable', 'type', 'kubernetes.io/tls', 'Opaque',
  CONFIG_TRACKING_ANNOTATION, 'enabled', 'disabled',
];

function randomString(rng: Rng): string {
  if (rng.chance(0.5)) return rng.pick(INTERESTING_STRINGS);
  const len = rng.int(24);
  let s = '';
  for (let i = 0; i < len; i++) s += String.fromCharCode(rng.chance(0.9) ? 32 + rng.int(95) : rng.int(0xffff));
  return s;
}

// Deep nesting is spliced in as text after serialisation (JSON.parse copes
// with any depth, JSON.stringify does not): values carry a marker.
const DEEP_MARKER = /"@@deep(\d+)@@"/g;

function deepMarker(depth: number): string {
  return `@@deep${depth}@@`;
}

function expandDeep(text: string): string {
  return text.replace(DEEP_MARKER, (_m, d: string) => `${'['.repeat(Number(d))}${']'.repeat(Number(d))}`);
}

function randomValue(rng: Rng, depth = 0): unknown {
  switch (rng.int(14)) {
    case 0:
      return null;
    case 1:
      return rng.chance(0.5);
    case 2:
      return rng.int(2 ** 31) - 2 ** 30;
    case 3:
      return rng.pick([0, -0, 1e308, -1e308, 5e-324, 0.1, 2 ** 53 + 1, -1]);
    case 4:
    case 5:
      return randomString(rng);
    case 6: {
      if (depth > 3) return [];
      return Array.from({ length: rng.int(4) }, () => randomValue(rng, depth + 1));
    }
    case 7: {
      if (depth > 3) return {};
      const o: Record<string, unknown> = {};
      for (let i = rng.int(4); i > 0; i--) Object.defineProperty(o, randomString(rng), { value: randomValue(rng, depth + 1), enumerable: true, configurable: true, writable: true });
      return o;
    }
    case 8:
      // Huge strings, now and then.
      return 'x'.repeat(rng.chance(0.1) ? 300_000 : 5000);
    case 9:
      return deepMarker(rng.chance(0.2) ? 20_000 : 200);
    case 10:
      return rng.pick([deployment, service, configMap, secret])();
    case 11:
      return { group: rng.pick(['apps', '', 'batch']), version: 'v1', kind: rng.pick(['Deployment', 'Service', 'ConfigMap', 'Secret', 'Job']) };
    case 12:
      return { [MANAGED_LABEL]: rng.pick(['true', 'false', '']) };
    default:
      return { [PENDING_REVISION]: randomString(rng), [PENDING_SPEC]: randomString(rng) };
  }
}

/** A plausible review to start from. */
function baseReview(rng: Rng): unknown {
  const d = deployment();
  const s = service();
  const choices = [
    () => admissionReview(admissionRequest(withImage(d, '2.0.0'), d)),
    () => admissionReview(admissionRequest(d, d)),
    () => admissionReview(admissionRequest(withImage(d, '2.0.0'), d, { username: RECONCILER })),
    () => admissionReview(admissionRequest(d, null, { operation: 'CREATE' })),
    () => admissionReview(admissionRequest(null, d, { operation: 'DELETE' })),
    () => admissionReview(admissionRequest(withImage(d, '3'), d, { subResource: 'scale' })),
    () => admissionReview(admissionRequest(withImage(unmanagedDeployment(), '3'), unmanagedDeployment())),
    () => {
      const next = structuredClone(s);
      next.spec!.selector = { app: 'other' };
      return admissionReview(admissionRequest(next, s));
    },
    () => admissionReview(admissionRequest(s, s, { fieldManager: 'kubectl-label', dryRun: true })),
    ...configReviews(),
  ];
  return rng.pick(choices)();
}

/** Plausible ConfigMap and Secret reviews: data, binaryData and stringData changes, skipped types, the tracking annotation, immutable. */
function configReviews(): Array<() => unknown> {
  const cm = configMap();
  const sec = secret();
  const tls = typedSecret('kubernetes.io/tls');
  return [
    () => admissionReview(admissionRequest(withData(cm, 'LOG_LEVEL', 'debug'), cm)),
    () => {
      const next = structuredClone(cm);
      next.binaryData = { 'logo.png': 'R0lGODlh' };
      return admissionReview(admissionRequest(next, cm));
    },
    () => admissionReview(admissionRequest(withData(sec, 'url', 'postgres://new'), sec)),
    () => {
      const next = structuredClone(sec);
      next.stringData = { url: 'postgres://via-string-data' };
      return admissionReview(admissionRequest(next, sec));
    },
    () => admissionReview(admissionRequest(withData(tls, 'tls.crt', 'renewed'), tls)),
    () => {
      const next = withData(cm, 'LOG_LEVEL', 'warn');
      next.metadata!.annotations![CONFIG_TRACKING_ANNOTATION] = 'disabled';
      next.immutable = true;
      return admissionReview(admissionRequest(next, cm));
    },
  ];
}

/** The API server decodes ObjectMeta before admission: labels and annotations are maps of strings or absent. */
function decodable(obj: unknown): boolean {
  const meta = (obj as { metadata?: unknown }).metadata;
  if (meta === undefined) return true;
  if (!meta || typeof meta !== 'object' || Array.isArray(meta)) return false;
  for (const field of ['labels', 'annotations']) {
    const map = (meta as Record<string, unknown>)[field];
    if (map === undefined) continue;
    if (!map || typeof map !== 'object' || Array.isArray(map) || Object.values(map).some((v) => typeof v !== 'string')) return false;
  }
  return true;
}

/**
 * For a held kind whose change was held: the patched object carries exactly
 * the stable spec under canary of the old one (what Pods keep reading).
 */
function checkHeld(parsed: unknown, decision: string): void {
  if (!['intercepted', 'replaced', 'reapplied'].includes(decision)) return;
  const req = (parsed as { request: AdmissionRequest }).request;
  const kind = heldKindOf(req.kind);
  if (!kind || !req.object || !req.oldObject || !decodable(req.object)) return;
  let text: string;
  try {
    text = JSON.stringify(req);
  } catch {
    return; // nested deeper than the stack: no JS patch library could apply it either
  }
  // fast-json-patch sets a "__proto__" member through the prototype setter;
  // the API server's patch adds it as the own key it is.
  if (text.includes('"__proto__"')) return;
  const decided = decide(req, { reconcilerUsers: new Set([RECONCILER]) });
  const patched = jsonpatch.applyPatch(structuredClone(req.object), (decided.patch ?? []) as jsonpatch.Operation[], true, false, false).newDocument;
  assert.ok(jsonEqual(kind.specUnderCanary(patched), kind.specUnderCanary(req.oldObject)), `the patched ${kind.kind} keeps its stable spec`);
}

type Path = Array<string | number>;

function collectPaths(v: unknown, path: Path, out: Path[], depth: number): void {
  out.push(path);
  if (depth > 7 || v === null || typeof v !== 'object') return;
  if (Array.isArray(v)) {
    v.slice(0, 4).forEach((x, i) => collectPaths(x, [...path, i], out, depth + 1));
  } else {
    for (const k of Object.keys(v)) collectPaths((v as Record<string, unknown>)[k], [...path, k], out, depth + 1);
  }
}

function mutate(rng: Rng, root: unknown): unknown {
  const paths: Path[] = [];
  collectPaths(root, [], paths, 0);
  const path = rng.pick(paths);
  if (path.length === 0) return rng.chance(0.5) ? randomValue(rng) : root;
  let parent = root as Record<string | number, unknown>;
  for (const seg of path.slice(0, -1)) parent = parent[seg] as Record<string | number, unknown>;
  const last = path[path.length - 1] as string | number;
  const op = rng.int(5);
  if (op === 0 && !Array.isArray(parent)) delete parent[last];
  else if (op === 1) {
    const v = parent[last];
    // an array where an object goes, or the other way round
    parent[last] = v && typeof v === 'object' && !Array.isArray(v) ? Object.values(v) : Array.isArray(v) ? { ...v } : [v];
  } else parent[last] = randomValue(rng);
  return root;
}

/** Text-level damage: prototype-pollution keys, duplicate keys, truncation, junk. */
function mangleText(rng: Rng, text: string): string {
  const braces: number[] = [];
  for (let i = text.indexOf('{'); i >= 0 && braces.length < 400; i = text.indexOf('{', i + 1)) braces.push(i);
  const at = braces.length ? rng.pick(braces) + 1 : 0;
  switch (rng.int(9)) {
    case 0:
    case 1:
      return `${text.slice(0, at)}"__proto__":{"polluted":"yes","uid":"x","allowed":true},${text.slice(at)}`;
    case 2:
      return `${text.slice(0, at)}"constructor":{"prototype":{"polluted":"yes"}},${text.slice(at)}`;
    case 3:
      return `${text.slice(0, at)}"uid":${JSON.stringify(randomValue(rng)) ?? 'null'},${text.slice(at)}`;
    case 4:
      return text.slice(0, rng.int(text.length));
    case 5: {
      const i = rng.int(text.length);
      return text.slice(0, i) + rng.pick(['\u0000', '}', ']', ',', '"', '\\', '\ud800', 'NaN', 'undefined']) + text.slice(i);
    }
    case 6:
      return `${text.slice(0, at)}"deep":${'['.repeat(60_000)}${']'.repeat(60_000)},${text.slice(at)}`;
    case 7:
      return rng.pick(['', ' ', 'null', '0', '"AdmissionReview"', '[]', '{}', '[{}]', '\ufeff{}', 'true']);
    default:
      return text;
  }
}

function makeCase(rng: Rng): string {
  let value = baseReview(rng);
  for (let n = 1 + rng.int(3); n > 0; n--) if (rng.chance(0.8)) value = mutate(rng, value);
  let text = JSON.stringify(value) ?? 'null';
  if (rng.chance(0.35)) text = mangleText(rng, text);
  text = expandDeep(text);
  if (rng.chance(0.01)) text = `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","pad":"${'y'.repeat(MAX_BODY)}"}`;
  return text;
}

/** The uid the server must echo, if the body is a review it should answer with 200. */
function sentUid(text: string): unknown {
  try {
    const v = JSON.parse(text) as { request?: { uid?: unknown } };
    return v?.request?.uid;
  } catch {
    return undefined;
  }
}

function checkAnswer(text: string, status: number, answer: string): void {
  if (status === 200) {
    const body = JSON.parse(answer);
    assert.equal(body.apiVersion, 'admission.k8s.io/v1');
    assert.equal(body.kind, 'AdmissionReview');
    const uid = sentUid(text);
    assert.equal(typeof uid, 'string', 'a 200 only for a request with a string uid');
    assert.equal(body.response.uid, uid);
    assert.equal(typeof body.response.allowed, 'boolean');
    if (body.response.patch !== undefined) {
      assert.equal(body.response.patchType, 'JSONPatch');
      const ops = JSON.parse(Buffer.from(body.response.patch, 'base64').toString('utf8'));
      assert.ok(Array.isArray(ops) && ops.length > 0);
      for (const op of ops) assert.ok(['add', 'remove', 'replace'].includes(op.op) && typeof op.path === 'string');
    }
    if (!body.response.allowed) {
      assert.equal(typeof body.response.status.code, 'number');
      assert.equal(typeof body.response.status.message, 'string');
    }
  } else {
    assert.ok(status >= 400 && status < 500, `status ${status}: ${answer.slice(0, 300)}`);
  }
}

function failWith(err: unknown, i: number, text: string): never {
  const e = err instanceof Error ? err : new Error(String(err));
  e.message = `fuzz seed ${seed} (FUZZ_SEED=${seed}), case ${i}: ${e.message}\n  body (first 400 chars): ${text.slice(0, 400)}`;
  throw e;
}

function prototypeIsClean(): void {
  assert.deepEqual(Object.getOwnPropertyNames(Object.prototype).sort(), protoNames);
  assert.equal(({} as Record<string, unknown>).polluted, undefined);
}
const protoNames = Object.getOwnPropertyNames(Object.prototype).sort();

describe(`webhook fuzz (seed ${seed})`, function () {
  this.timeout(60_000);

  it(`review() answers ${DIRECT_CASES} mangled reviews with 200 + echoed uid or 400`, () => {
    const rng = new Rng(seed);
    const config = { reconcilerUsers: new Set([RECONCILER]) };
    const decisions = new Map<string, number>();
    const configDecisions = new Map<string, number>();
    for (let i = 0; i < DIRECT_CASES; i++) {
      const text = makeCase(rng);
      let parsed: unknown;
      try {
        parsed = JSON.parse(text);
      } catch {
        continue; // the HTTP test covers unparsable bodies
      }
      try {
        const result = review(parsed, config);
        decisions.set(result.decision, (decisions.get(result.decision) ?? 0) + 1);
        if (result.kind === 'ConfigMap' || result.kind === 'Secret') {
          configDecisions.set(result.decision, (configDecisions.get(result.decision) ?? 0) + 1);
        }
        checkHeld(parsed, result.decision);
        // The one accepted internal error: nesting deeper than the stack (refused, see review()).
        if (result.decision === 'error') assert.ok(result.error instanceof RangeError, `decide() threw: ${String(result.error)}`);
        assert.equal(result.text, JSON.stringify(result.body), 'the hand-written answer text is JSON.stringify of the body');
        checkAnswer(text, result.status, result.text);
        assert.ok(result.status === 200 || result.status === 400);
        const patch = (result.body as { response?: { patch?: string } }).response?.patch;
        if (patch !== undefined) {
          const decided = decide((parsed as { request: AdmissionRequest }).request, config);
          assert.equal(Buffer.from(patch, 'base64').toString('utf8'), JSON.stringify(decided.patch), 'the answer carries exactly the JSON of the patch decide() made');
        }
      } catch (err) {
        failWith(err, i, text);
      }
    }
    // The mangling must leave enough intact to exercise decide() itself.
    const seen = [...decisions.keys()];
    for (const d of ['bad_request', 'skipped', 'unchanged', 'intercepted']) {
      assert.ok(seen.includes(d), `decision ${d} reached (seed ${seed}): ${JSON.stringify([...decisions])}`);
    }
    for (const d of ['skipped', 'intercepted', 'rejected']) {
      assert.ok(configDecisions.has(d), `a ConfigMap or Secret review reached ${d} (seed ${seed}): ${JSON.stringify([...configDecisions])}`);
    }
    if (process.env.FUZZ_VERBOSE) console.log(JSON.stringify([...decisions]), JSON.stringify([...configDecisions]));
    prototypeIsClean();
  });

  it(`the server answers ${HTTP_CASES} mangled requests with a valid review or a 4xx, and stays healthy`, async () => {
    const rng = new Rng(seed ^ 0x5bd1e995);
    const h = createWebhookHandler({ logger: pino({ level: 'silent' }), reconcilerUsers: [RECONCILER], maxBodyBytes: MAX_BODY });
    const server = http.createServer(h.handler);
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const { port } = server.address() as AddressInfo;
    const agent = new http.Agent({ keepAlive: true, maxSockets: 4 });
    const send = (method: string, path: string, text?: string) =>
      new Promise<{ status: number; body: string }>((resolve, reject) => {
        const headers: http.OutgoingHttpHeaders = {};
        if (text !== undefined) {
          headers['content-type'] = 'application/json';
          headers['content-length'] = Buffer.byteLength(text);
        }
        const req = http.request({ host: '127.0.0.1', port, method, path, agent, headers }, (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
          res.on('error', reject);
        });
        req.on('error', reject);
        req.end(text);
      });

    const counts = new Map<number, number>();
    try {
      const cases = Array.from({ length: HTTP_CASES }, () => makeCase(rng));
      let next = 0;
      const worker = async () => {
        while (next < cases.length) {
          const i = next++;
          const text = cases[i] as string;
          try {
            const res = await send('POST', '/mutate', text);
            counts.set(res.status, (counts.get(res.status) ?? 0) + 1);
            // What the server received: a lone surrogate in the text reaches it as U+FFFD once encoded as UTF-8.
            checkAnswer(Buffer.from(text, 'utf8').toString('utf8'), res.status, res.body);
          } catch (err) {
            failWith(err, i, text);
          }
        }
      };
      await Promise.all([worker(), worker(), worker(), worker()]);
      assert.ok((counts.get(200) ?? 0) > HTTP_CASES / 10, `enough cases reach decide(): ${JSON.stringify([...counts])}`);
      assert.ok((counts.get(400) ?? 0) > 0, 'some cases are malformed');
      assert.equal((await send('GET', '/healthz')).status, 200);
      const good = admissionReview(admissionRequest(deployment(), deployment()));
      const res = await send('POST', '/mutate', JSON.stringify(good));
      assert.equal(JSON.parse(res.body).response.uid, good.request!.uid);
      prototypeIsClean();
    } finally {
      agent.destroy();
      server.closeAllConnections();
      server.close();
    }
  });
});
