// No Canary field accepted and ignored: the walk below visits every field of
// the Canary spec schema (deploy/crds.ts) and holds it to an entry of
// FIELD_PROOFS, which names the tests that show its effect (and, where the
// API server refuses some of its values, the e2e in test/e2e/fields.test.ts
// that applies them and checks the message). It fails when the schema gains
// a field with no entry, when an entry names a field the schema no longer
// has, and when an entry names a test title that no test file holds.
//
// A StringMatch (exactly one of exact, prefix, suffix, regex) is one field:
// a test of a match exercises the kind of string match as a whole.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { canaryCRD, type JSONSchemaProps } from '../../deploy/crds.js';

interface Proof {
  /** Titles of tests (unit or e2e) that exercise the field's effect. */
  effect: string[];
  /** Titles of cases in test/e2e/fields.test.ts where the API server refuses some of its values. */
  refused?: string[];
}

const E2E_AUTOSCALER = 'autoscalerRef: a missing HPA holds the run; the copy then scales under its own <hpa>-canary, which goes when the run ends; the user\'s HPA is never written';
const E2E_PORTS = 'service.portDiscovery: the router Services expose every container port of the target';
const E2E_STEPS = 'stepWeightPromotion: after the promotion write the canary weight steps down to 0 one interval at a time';
const E2E_REVERT = 'revertOnDeletion: true: deleting the Canary mid-run restores the target (its Pods serve, canary-gate\'s objects gone, the route handed back)';
const E2E_READY = 'canaryReadyThreshold below 100 lets a run go on with one copy Pod not ready; at 100 it waits';
const READY_UNIT = 'the thresholds decide whether the primary and the copy count as ready for the run';
const APEX_META = 'spec.service.apex labels and annotations go on the apex route; a gatewayRef\'s group, kind and sectionName on its parentRef';
const SIDE_META = 'spec.service.primary and spec.service.canary labels and annotations go on <apex>-primary and <apex>-canary';
const SERVICE_PORTS = 'take the apex Service ports (node ports dropped), else spec.service';
const ISTIO_POLICY = 'retries, timeout, headers, corsPolicy and rewrite are set on every route of ours';
const CONTOUR_POLICY = 'turns timeout, retries and headers into route policies';
const ROUTE_HEADERS = 'spec.service.headers: every request and response operation (add, set, remove) becomes a header filter of the route';
const SERVICE_MATCH = 'spec.service.match becomes the weight route match: headers, cookie regex, sourceLabels, uri, method, queryParams';
const AB_ISTIO = 'A/B matches (headers, cookie, sourceLabels, method, queryParams), mirroring and sticky routes are accepted';
const STEPS = 'advances through stepWeight increments up to maxWeight, one step per interval, then promotes';
const NGINX_RUN = 'shifts canary-weight step by step, promotes, and on deletion removes the canary Ingress; the user Ingress is never changed';
const STICKY = 'session affinity: a cookie route to each side before the weight route, the sides set their cookie; gone without sticky';
const GATE_PAYLOAD = 'POSTs the payload: rollout progress, the hook type and metadata';
const ALERT_FANOUT = 'fans out to the alerts whose severity admits the event; providerRef namespace defaults to the Canary\'s';
const TEMPLATE_NS = 'templateRef.namespace selects a template (and its Secret) in another namespace';
const RANGE = 'below the minimum and above the maximum fail, naming value and range';
const UPSTREAM = 'a pending change waits (phase Waiting, UpstreamReady=False, one Event) while upstream has not promoted it, and starts once it has';
const KUBECONFIG = 'walks a change from a staging cluster to this one, through a kubeconfig Secret; while that API server is down the stage waits';

/** Field path under spec (`[]` an array's items, `{}` a map's values) -> its proof. */
export const FIELD_PROOFS: Readonly<Record<string, Proof>> = {
  'targetRef.apiVersion': { effect: ['uses the user Service and <name>-canary for a Service target'], refused: ['refuses a targetRef apiVersion that does not fit its kind'] },
  'targetRef.kind': { effect: ['uses the user Service and <name>-canary for a Service target', 'on deleting a Canary mid-run: traffic back to the primary, companions removed, the label removed, never zero replicas'] },
  'targetRef.name': { effect: ['on deleting a Canary mid-run: traffic back to the primary, companions removed, the label removed, never zero replicas'] },
  'autoscalerRef.apiVersion': { effect: [E2E_AUTOSCALER], refused: ['refuses an autoscalerRef of an API version canary-gate does not read'] },
  'autoscalerRef.kind': { effect: [E2E_AUTOSCALER], refused: ['refuses portDiscovery and autoscalerRef for a Service target'] },
  'autoscalerRef.name': { effect: [E2E_AUTOSCALER, 'a referenced HPA that does not exist holds the run with a condition and a Warning Event; it clears once the HPA exists'] },
  'ingressRef.apiVersion': { effect: [NGINX_RUN] },
  'ingressRef.kind': { effect: [NGINX_RUN] },
  'ingressRef.name': { effect: [NGINX_RUN] },
  provider: { effect: ['one router per provider string, each writing its version; every TrafficSplit version and the route group are watched'] },
  'service.name': { effect: ['rewrites the defaultBackend and uses spec.service.name as the apex'] },
  'service.port': { effect: [SERVICE_PORTS] },
  'service.portName': { effect: [SERVICE_PORTS] },
  'service.targetPort': { effect: [SERVICE_PORTS] },
  'service.portDiscovery': { effect: [E2E_PORTS, 'router Services expose every container port of the target (name and port), next to service.port'], refused: ['refuses portDiscovery in a weighted kubernetes run, where no Service of canary-gate carries the traffic', 'refuses portDiscovery and autoscalerRef for a Service target'] },
  'service.gatewayRefs[].name': { effect: [APEX_META] },
  'service.gatewayRefs[].namespace': { effect: [APEX_META] },
  'service.gatewayRefs[].group': { effect: [APEX_META] },
  'service.gatewayRefs[].kind': { effect: [APEX_META] },
  'service.gatewayRefs[].sectionName': { effect: [APEX_META] },
  'service.gateways[]': { effect: ['names everything after the apex Service; hosts are spec.service.hosts plus the apex; gateways default to mesh'] },
  'service.hosts[]': { effect: ['names everything after the apex Service; hosts are spec.service.hosts plus the apex; gateways default to mesh'] },
  'service.headers.request.add': { effect: [ROUTE_HEADERS, CONTOUR_POLICY, ISTIO_POLICY] },
  'service.headers.request.set': { effect: [ROUTE_HEADERS, CONTOUR_POLICY, ISTIO_POLICY] },
  'service.headers.request.remove[]': { effect: [ROUTE_HEADERS, CONTOUR_POLICY, ISTIO_POLICY] },
  'service.headers.response.add': { effect: [ROUTE_HEADERS, CONTOUR_POLICY, ISTIO_POLICY] },
  'service.headers.response.set': { effect: [ROUTE_HEADERS, CONTOUR_POLICY, ISTIO_POLICY] },
  'service.headers.response.remove[]': { effect: [ROUTE_HEADERS, CONTOUR_POLICY, ISTIO_POLICY] },
  'service.match[].headers{}': { effect: [SERVICE_MATCH] },
  'service.match[].queryParams{}': { effect: [SERVICE_MATCH] },
  'service.match[].uri': { effect: [SERVICE_MATCH] },
  'service.match[].method': { effect: [SERVICE_MATCH] },
  'service.match[].sourceLabels': { effect: [SERVICE_MATCH] },
  'service.retries.attempts': { effect: [CONTOUR_POLICY, ISTIO_POLICY] },
  'service.retries.perTryTimeout': { effect: [CONTOUR_POLICY, ISTIO_POLICY] },
  'service.retries.retryOn': { effect: [CONTOUR_POLICY, ISTIO_POLICY] },
  'service.timeout': { effect: [CONTOUR_POLICY, ISTIO_POLICY] },
  'service.trafficPolicy': { effect: ['the DestinationRules carry spec.service.trafficPolicy, host = their side; a user field in them is kept'] },
  'service.corsPolicy.allowOrigins[]': { effect: [ISTIO_POLICY] },
  'service.corsPolicy.allowMethods[]': { effect: [ISTIO_POLICY] },
  'service.corsPolicy.allowHeaders[]': { effect: [ISTIO_POLICY] },
  'service.corsPolicy.exposeHeaders[]': { effect: [ISTIO_POLICY] },
  'service.corsPolicy.maxAge': { effect: [ISTIO_POLICY] },
  'service.corsPolicy.allowCredentials': { effect: [ISTIO_POLICY] },
  'service.rewrite.uri': { effect: [ISTIO_POLICY] },
  'service.rewrite.authority': { effect: [ISTIO_POLICY] },
  'service.apex.labels': { effect: [APEX_META] },
  'service.apex.annotations': { effect: [APEX_META] },
  'service.primary.labels': { effect: [SIDE_META] },
  'service.primary.annotations': { effect: [SIDE_META] },
  'service.canary.labels': { effect: [SIDE_META] },
  'service.canary.annotations': { effect: [SIDE_META] },
  'analysis.interval': { effect: [STEPS] },
  'analysis.threshold': { effect: ['rolls back after `threshold` failed checks when the error rate crosses the range, and alerts with the failing check'] },
  'analysis.maxWeight': { effect: [STEPS] },
  'analysis.stepWeight': { effect: [STEPS] },
  'analysis.stepWeights[]': { effect: ['advances through stepWeights'] },
  'analysis.stepWeightPromotion': {
    effect: [E2E_STEPS, 'after the primary runs the promoted spec, the canary weight goes down one step per interval, then the run succeeds', 'killed between the status write of a step and its router write, the next process puts that step in force'],
    refused: ['refuses stepWeightPromotion with the kubernetes provider, naming the providers that honour it', 'refuses stepWeightPromotion in a blue/green run'],
  },
  'analysis.iterations': { effect: ['blue/green: counts one iteration per passing interval and promotes after `iterations`'] },
  'analysis.match[].headers{}': { effect: ['takes weights, an A/B route on a header, a cookie and a query parameter, and mirroring'] },
  'analysis.match[].queryParams{}': { effect: ['takes weights, an A/B route on a header, a cookie and a query parameter, and mirroring'] },
  'analysis.match[].uri': { effect: ['maps headers, cookies, query parameters and the uri; one route per match entry'] },
  'analysis.match[].method': { effect: [AB_ISTIO] },
  'analysis.match[].sourceLabels': { effect: [AB_ISTIO] },
  'analysis.mirror': { effect: ['mirroring: the weight route copies N% to the canary, reported by readWeights, removed with mirror 0'] },
  'analysis.mirrorWeight': { effect: ['mirroring: the weight route copies N% to the canary, reported by readWeights, removed with mirror 0'] },
  'analysis.sessionAffinity.cookieName': { effect: [STICKY] },
  'analysis.sessionAffinity.maxAge': { effect: ['sets Traefik\'s sticky cookie (name and maxAge of sessionAffinity) while both sides have a share, and removes it otherwise'] },
  'analysis.sessionAffinity.primaryCookieName': { effect: [STICKY] },
  'analysis.primaryReadyThreshold': { effect: [READY_UNIT, '3 of 4 ready Pods are ready at a threshold of 75 %, not at 76 % nor at the default 100 %'] },
  'analysis.canaryReadyThreshold': { effect: [E2E_READY, READY_UNIT], refused: ['refuses a ready threshold over 100 percent'] },
  'analysis.metrics[].name': { effect: ['promotes a canary whose error rate stays within the range, recording the value in status'] },
  'analysis.metrics[].interval': { effect: ['renders every variable, with any spacing inside the braces'] },
  'analysis.metrics[].thresholdRange.min': { effect: [RANGE] },
  'analysis.metrics[].thresholdRange.max': { effect: [RANGE] },
  'analysis.metrics[].templateRef.name': { effect: [TEMPLATE_NS] },
  'analysis.metrics[].templateRef.namespace': { effect: [TEMPLATE_NS] },
  'analysis.metrics[].templateVariables': { effect: ['a variables.X not given in templateVariables is an error naming it, never an empty string'] },
  'analysis.metrics[].noDataPolicy': { effect: ['follows the no-data policy: hold neither promotes nor counts a failure'] },
  'analysis.webhooks[].name': { effect: [GATE_PAYLOAD] },
  'analysis.webhooks[].type': { effect: [GATE_PAYLOAD, 'rolls back at once when a rollback gate says so'] },
  'analysis.webhooks[].url': { effect: [GATE_PAYLOAD] },
  'analysis.webhooks[].timeout': { effect: ['fails a hook that answers after its timeout'] },
  'analysis.webhooks[].retries': { effect: ['retries and passes when the second attempt succeeds'] },
  'analysis.webhooks[].metadata': { effect: [GATE_PAYLOAD] },
  'analysis.alerts[].name': { effect: [ALERT_FANOUT] },
  'analysis.alerts[].severity': { effect: [ALERT_FANOUT, 'severity: info gets everything, warn gets warn+error, error only error'] },
  'analysis.alerts[].providerRef.name': { effect: [ALERT_FANOUT] },
  'analysis.alerts[].providerRef.namespace': { effect: [ALERT_FANOUT] },
  progressDeadlineSeconds: { effect: ['rolls back when the copy is not ready within progressDeadlineSeconds'] },
  skipAnalysis: { effect: ['skipAnalysis: promotes as soon as the copy is ready, saying the analysis was skipped'] },
  suspend: { effect: ['does nothing while the Canary is suspended, even with a pending revision'] },
  revertOnDeletion: { effect: [E2E_REVERT], refused: ['refuses revertOnDeletion: false, saying deletion always reverts'] },
  'promotion.identity': { effect: ['prod starts a change only after staging promoted it (same images, another overlay); a rollback in staging blocks it', 'a label identity the pending change lacks is said, not guessed'] },
  'promotion.after[].namespace': { effect: [UPSTREAM] },
  'promotion.after[].name': { effect: [UPSTREAM] },
  'promotion.after[].soak': { effect: ['waits out the soak, and says until when'] },
  'promotion.after[].kubeconfigSecretRef.name': { effect: [KUBECONFIG] },
  'promotion.after[].kubeconfigSecretRef.key': { effect: [KUBECONFIG] },
  'promotion.windows[].schedule': { effect: ['a window that closes mid-run holds the run at its weight until the next opening, then it goes on'] },
  'promotion.windows[].timeZone': { effect: ['several windows: open when any is; UTC when no time zone is given'] },
};

/** A StringMatch: one of exact, prefix, suffix, regex. */
function isStringMatch(s: JSONSchemaProps): boolean {
  return s.maxProperties === 1 && !!s.properties?.exact && !!s.properties.regex;
}

/** Every field of a schema, as a path (`[]` array items, `{}` map values). */
export function schemaFields(schema: JSONSchemaProps, prefix = ''): string[] {
  if (isStringMatch(schema)) return [prefix];
  if (schema.properties) return Object.entries(schema.properties).flatMap(([k, v]) => schemaFields(v, prefix ? `${prefix}.${k}` : k));
  if (schema.items) return schemaFields(schema.items, `${prefix}[]`);
  if (schema.additionalProperties?.properties || (schema.additionalProperties && isStringMatch(schema.additionalProperties))) return schemaFields(schema.additionalProperties, `${prefix}{}`);
  return [prefix];
}

const testRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../test');

function testFiles(dir: string): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? testFiles(path.join(dir, e.name)) : e.name.endsWith('.test.ts') ? [path.join(dir, e.name)] : []));
}

const unquote = (s: string) => s.replace(/\\(['"`\\])/g, '$1');

/** Titles of the tests written as literals (it('...')) in every test file. */
function testTitles(): Set<string> {
  const out = new Set<string>();
  for (const f of testFiles(testRoot)) {
    for (const m of fs.readFileSync(f, 'utf8').matchAll(/\bit\((['"])((?:(?!\1)[^\\]|\\.)*)\1/g)) out.add(unquote(m[2] ?? ''));
  }
  return out;
}

/** Titles of the refusal cases of test/e2e/fields.test.ts (the first element of each case). */
function refusalTitles(): Set<string> {
  const text = fs.readFileSync(path.join(testRoot, 'e2e', 'fields.test.ts'), 'utf8');
  const table = text.slice(text.indexOf('const cases'), text.indexOf('for (const [title'));
  return new Set([...table.matchAll(/^\s*\['((?:[^'\\]|\\.)*)',/gm)].map((m) => unquote(m[1] ?? '')));
}

describe('fields: every Canary field has a tested effect or a tested refusal', () => {
  const spec = canaryCRD.spec.versions[0]?.schema.openAPIV3Schema.properties?.spec as JSONSchemaProps;
  const fields = schemaFields(spec);

  it('every field of the Canary schema has an entry in FIELD_PROOFS, and every entry is a field of the schema', () => {
    assert.ok(fields.length > 90, `the walk sees the whole schema (${fields.length} fields)`);
    const missing = fields.filter((f) => !FIELD_PROOFS[f]);
    assert.deepEqual(missing, [], 'fields accepted with no test of their effect: add a test and an entry, or refuse the field with a CEL rule');
    const stale = Object.keys(FIELD_PROOFS).filter((f) => !fields.includes(f));
    assert.deepEqual(stale, [], 'entries for fields the schema no longer has');
  });

  it('every test an entry names exists, and every refusal is an e2e case of test/e2e/fields.test.ts', () => {
    const titles = testTitles();
    const refusals = refusalTitles();
    assert.ok(refusals.size >= 5, `the refusal cases are read (${refusals.size})`);
    const unknown: string[] = [];
    for (const [field, proof] of Object.entries(FIELD_PROOFS)) {
      assert.ok(proof.effect.length > 0, `${field}: names no test`);
      for (const t of proof.effect) if (!titles.has(t)) unknown.push(`${field}: no test titled "${t}"`);
      for (const t of proof.refused ?? []) if (!refusals.has(t)) unknown.push(`${field}: no refusal case titled "${t}"`);
    }
    assert.deepEqual(unknown, []);
  });

  it('a field added to the schema without an entry makes the walk fail', () => {
    const grown = structuredClone(spec);
    (grown.properties as Record<string, JSONSchemaProps>).canaryScaleDown = { type: 'boolean' };
    assert.deepEqual(schemaFields(grown).filter((f) => !FIELD_PROOFS[f]), ['canaryScaleDown']);
  });
});
