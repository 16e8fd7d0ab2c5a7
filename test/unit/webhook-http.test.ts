// The HTTP layer: the AdmissionReview envelope over supertest, error
// answers, health and metrics routes, then the real HTTPS server: TLS
// versions, plaintext refusal, certificate rotation and draining.

import assert from 'node:assert/strict';
import { mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { pino } from 'pino';
import request from 'supertest';
import { generateCertificates } from '../../certs/generate.js';
import { PENDING_REVISION } from '../../core/contract.js';
import { Registry } from '../../core/metrics.js';
import type { AdmissionReview, JsonPatchOp } from '../../webhook/admission.js';
import { decide } from '../../webhook/decide.js';
import { createWebhookHandler, createWebhookServer, type WebhookServer } from '../../webhook/server.js';
import { RECONCILER, admissionReview, deployment, request as admissionRequest, withImage } from '../fixtures/objects.js';

const silent = pino({ level: 'silent' });

function interceptedReview(): AdmissionReview {
  const old = deployment();
  return admissionReview(admissionRequest(withImage(old, '1.15.0'), old));
}

function decodePatch(b64: string): JsonPatchOp[] {
  return JSON.parse(Buffer.from(b64, 'base64').toString('utf8')) as JsonPatchOp[];
}

/** A JSON nesting deeper than JSON.stringify's recursion can follow. */
function deeplyNested(depth: number): string {
  return `${'{"a":'.repeat(depth)}1${'}'.repeat(depth)}`;
}

describe('webhook HTTP layer (handler)', () => {
  const make = (opts: Parameters<typeof createWebhookHandler>[0] = {}) =>
    createWebhookHandler({ logger: silent, reconcilerUsers: [RECONCILER], ...opts });

  it('answers an intercepted change with a v1 AdmissionReview and a base64 JSON patch', async () => {
    const h = make();
    const review = interceptedReview();
    const res = await request(h.handler).post('/mutate?timeout=10s').send(review).expect(200).expect('content-type', /application\/json/);
    assert.equal(res.body.apiVersion, 'admission.k8s.io/v1');
    assert.equal(res.body.kind, 'AdmissionReview');
    assert.equal(res.body.request, undefined);
    const response = res.body.response;
    assert.equal(response.uid, review.request!.uid);
    assert.equal(response.allowed, true);
    assert.equal(response.patchType, 'JSONPatch');
    const expected = decide(review.request!, { reconcilerUsers: new Set([RECONCILER]) });
    assert.deepEqual(decodePatch(response.patch), expected.patch);
    assert.ok(decodePatch(response.patch).some((op) => op.path.endsWith(PENDING_REVISION.replace('/', '~1'))));
    assert.deepEqual(response.warnings, expected.warnings);
    assert.equal(response.status, undefined);
  });

  it('answers a request with nothing to change without patchType or patch', async () => {
    const old = deployment();
    const review = admissionReview(admissionRequest(old, old));
    const res = await request(make().handler).post('/mutate').send(review).expect(200);
    assert.deepEqual(res.body.response, { uid: review.request!.uid, allowed: true });
  });

  it('answers a refused change with allowed: false and a 403 status message', async () => {
    const old = deployment();
    const review = admissionReview(admissionRequest(withImage(old, '2'), old));
    const res = await request(make({ maxPendingSpecBytes: 100 }).handler).post('/mutate').send(review).expect(200);
    assert.equal(res.body.response.allowed, false);
    assert.equal(res.body.response.patch, undefined);
    assert.equal(res.body.response.status.code, 403);
    assert.match(res.body.response.status.message, /more than the 100 bytes/);
  });

  it('refuses (allowed: false, code 500) when judging a managed object fails internally', async () => {
    const old = deployment();
    const incoming = deployment();
    // A template nested deeper than JSON.stringify can follow makes decide() throw.
    const body = JSON.stringify(admissionReview(admissionRequest(incoming, old))).replace(
      '"template":{',
      `"template":{"deep":${deeplyNested(100_000)},`,
    );
    const h = make();
    const res = await request(h.handler).post('/mutate').set('content-type', 'application/json').send(body).expect(200);
    assert.equal(res.body.response.allowed, false);
    assert.equal(res.body.response.status.code, 500);
    assert.match(res.body.response.status.message, /internal error/);
    assert.match(res.body.response.status.message, /refused/);
    const metrics = await request(h.metricsHandler).get('/metrics').expect(200);
    assert.match(metrics.text, /canary_gate_webhook_requests_total\{decision="error"\} 1/);
  });

  it('answers 400 with a Status body for malformed JSON', async () => {
    const res = await request(make().handler).post('/mutate').set('content-type', 'application/json').send('{"apiVersion": "admission.k8s.io/v1", "kind": ').expect(400);
    assert.equal(res.body.kind, 'Status');
    assert.equal(res.body.code, 400);
    assert.match(res.body.message, /not valid JSON/);
  });

  it('answers 400 for an empty body', async () => {
    await request(make().handler).post('/mutate').set('content-type', 'application/json').expect(400);
  });

  it('answers 400 for a review without request, and for the wrong apiVersion or kind', async () => {
    const h = make();
    let res = await request(h.handler).post('/mutate').send({ apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview' }).expect(400);
    assert.match(res.body.message, /no request/);
    const v1beta1 = { ...interceptedReview(), apiVersion: 'admission.k8s.io/v1beta1' };
    res = await request(h.handler).post('/mutate').send(v1beta1).expect(400);
    assert.match(res.body.message, /apiVersion must be "admission.k8s.io\/v1"/);
    res = await request(h.handler).post('/mutate').send({ ...interceptedReview(), kind: 'Pod' }).expect(400);
    assert.match(res.body.message, /kind must be "AdmissionReview"/);
    res = await request(h.handler).post('/mutate').send([1, 2]).expect(400);
    assert.match(res.body.message, /JSON object/);
    const noUid = interceptedReview();
    delete (noUid.request as unknown as Record<string, unknown>).uid;
    res = await request(h.handler).post('/mutate').send(noUid).expect(400);
    assert.match(res.body.message, /request.uid/);
  });

  it('answers 413 for a body over the limit, declared by Content-Length', async () => {
    const h = make({ maxBodyBytes: 16 * 1024 });
    const big = JSON.stringify({ ...interceptedReview(), padding: 'x'.repeat(64 * 1024) });
    const res = await request(h.handler).post('/mutate').set('content-type', 'application/json').send(big).expect(413);
    assert.equal(res.body.code, 413);
    assert.match(res.body.message, /16384 bytes/);
  });

  it('answers 413 for the default limit (4 MiB) without buffering a 6 MiB body', async () => {
    const h = make();
    // A string, not a Buffer: superagent would otherwise serialise the Buffer as a JSON array first.
    const big = ' '.repeat(6 * 1024 * 1024);
    const res = await request(h.handler).post('/mutate').set('content-type', 'application/json').send(big).expect(413);
    assert.match(res.body.message, /4194304 bytes/);
  });

  it('answers 413 for a chunked body that grows over the limit', async () => {
    const h = make({ maxBodyBytes: 16 * 1024 });
    const server = http.createServer(h.handler);
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    try {
      const { port } = server.address() as AddressInfo;
      const status = await new Promise<number>((resolve, reject) => {
        const req = http.request({ port, host: '127.0.0.1', method: 'POST', path: '/mutate', headers: { 'content-type': 'application/json' } });
        req.on('response', (res) => {
          res.resume();
          resolve(res.statusCode ?? 0);
        });
        req.on('error', reject);
        let sent = 0;
        const pump = () => {
          // keep sending until the answer arrives (bounded: 1 MiB)
          while (sent < 1024 * 1024 && req.write(Buffer.alloc(4096, 0x20))) sent += 4096;
          if (sent < 1024 * 1024) req.once('drain', pump);
        };
        pump();
      });
      assert.equal(status, 413);
    } finally {
      server.closeAllConnections();
      server.close();
    }
  });

  it('counts a client that goes away mid-body as aborted and forgets the request', async () => {
    const h = make();
    const server = http.createServer(h.handler);
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    try {
      const { port } = server.address() as AddressInfo;
      const req = http.request({ port, host: '127.0.0.1', method: 'POST', path: '/mutate', headers: { 'content-type': 'application/json', 'content-length': '100000' } });
      req.on('error', () => undefined);
      req.write('{"apiVersion":');
      await eventually('the request to be in flight', async () => h.inFlight() === 1);
      req.destroy();
      await eventually('the request to be forgotten', async () => h.inFlight() === 0);
      const metrics = await request(h.metricsHandler).get('/metrics');
      assert.match(metrics.text, /^canary_gate_webhook_requests_total\{decision="aborted"\} 1$/m);
    } finally {
      server.closeAllConnections();
      server.close();
    }
  });

  it('answers 405 for GET /mutate and 404 for unknown paths', async () => {
    const h = make();
    const res = await request(h.handler).get('/mutate').expect(405);
    assert.equal(res.headers.allow, 'POST');
    await request(h.handler).post('/validate').send({}).expect(404);
    await request(h.handler).get('/').expect(404);
    await request(h.handler).post('/mutate/extra').send({}).expect(404);
    await request(h.handler).post('/healthz').expect(405);
  });

  it('serves /healthz and /readyz; /readyz turns 503 while draining', async () => {
    const h = make();
    await request(h.handler).get('/healthz').expect(200, 'ok\n');
    await request(h.handler).get('/readyz').expect(200);
    h.setDraining(true);
    await request(h.handler).get('/readyz').expect(503);
    await request(h.handler).get('/healthz').expect(200);
  });

  it('counts requests by decision and observes latency in /metrics', async () => {
    const h = make();
    const old = deployment();
    await request(h.handler).post('/mutate').send(interceptedReview()).expect(200);
    await request(h.handler).post('/mutate').send(interceptedReview()).expect(200);
    await request(h.handler).post('/mutate').send(admissionReview(admissionRequest(old, old))).expect(200);
    await request(h.handler).post('/mutate').send(admissionReview(admissionRequest(withImage(old, '9'), old, { username: RECONCILER }))).expect(200);
    await request(h.handler).post('/mutate').send('nope').set('content-type', 'application/json').expect(400);
    const res = await request(h.metricsHandler).get('/metrics').expect(200).expect('content-type', 'text/plain; version=0.0.4; charset=utf-8');
    const text = res.text;
    assert.match(text, /# TYPE canary_gate_webhook_requests_total counter/);
    assert.match(text, /^canary_gate_webhook_requests_total\{decision="intercepted"\} 2$/m);
    assert.match(text, /^canary_gate_webhook_requests_total\{decision="unchanged"\} 1$/m);
    assert.match(text, /^canary_gate_webhook_requests_total\{decision="reconciler"\} 1$/m);
    assert.match(text, /^canary_gate_webhook_requests_total\{decision="bad_request"\} 1$/m);
    assert.match(text, /# TYPE canary_gate_webhook_request_duration_seconds histogram/);
    assert.match(text, /^canary_gate_webhook_request_duration_seconds_count 5$/m);
    assert.match(text, /^canary_gate_webhook_request_duration_seconds_bucket\{le="\+Inf"\} 5$/m);
    assert.match(text, /^canary_gate_webhook_in_flight_requests 0$/m);
    await request(h.metricsHandler).get('/other').expect(404);
  });
});

describe('metrics registry (text exposition 0.0.4)', () => {
  it('renders counters, gauges and histograms with HELP, TYPE and escaped labels', () => {
    const r = new Registry();
    const c = r.counter('demo_requests_total', 'Requests.\nSecond line with a \\ backslash.', ['path']);
    c.labels('/a"b\\c\nd').inc();
    c.inc({ path: 'plain' }, 2);
    const g = r.gauge('demo_temperature', 'A gauge.');
    g.set(5);
    g.dec(undefined, 1.5);
    const h = r.histogram('demo_seconds', 'A histogram.', ['kind'], [0.1, 1]);
    h.observe(0.05, { kind: 'x' });
    h.observe(0.1, { kind: 'x' });
    h.observe(0.5, { kind: 'x' });
    h.observe(7, { kind: 'x' });
    assert.equal(
      r.expose(),
      [
        '# HELP demo_requests_total Requests.\\nSecond line with a \\\\ backslash.',
        '# TYPE demo_requests_total counter',
        'demo_requests_total{path="/a\\"b\\\\c\\nd"} 1',
        'demo_requests_total{path="plain"} 2',
        '# HELP demo_temperature A gauge.',
        '# TYPE demo_temperature gauge',
        'demo_temperature 3.5',
        '# HELP demo_seconds A histogram.',
        '# TYPE demo_seconds histogram',
        'demo_seconds_bucket{kind="x",le="0.1"} 2',
        'demo_seconds_bucket{kind="x",le="1"} 3',
        'demo_seconds_bucket{kind="x",le="+Inf"} 4',
        'demo_seconds_sum{kind="x"} 7.65',
        'demo_seconds_count{kind="x"} 4',
        '',
      ].join('\n'),
    );
  });

  it('refuses bad names, conflicting registrations and decreasing counters', () => {
    const r = new Registry();
    assert.throws(() => r.counter('bad-name', 'x'), /invalid metric name/);
    assert.throws(() => r.counter('ok_total', 'x', ['bad-label']), /invalid label name/);
    assert.throws(() => r.histogram('h', 'x', ['le']), /le/);
    assert.throws(() => r.histogram('h2', 'x', [], [1, 0.5]), /increasing/);
    const c = r.counter('same_total', 'x', ['a']);
    assert.equal(r.counter('same_total', 'x', ['a']), c, 'registering twice returns the first');
    assert.throws(() => r.gauge('same_total', 'x', ['a']), /already registered/);
    assert.throws(() => c.labels('v').inc(-1), /only go up/);
    assert.throws(() => c.inc({ b: 'x' }), /missing label/);
    assert.throws(() => c.labels('v', 'w'), /takes 1 label/);
    const g = r.gauge('special', 'x');
    g.set(Number.POSITIVE_INFINITY);
    assert.match(r.expose(), /^special \+Inf$/m);
    g.set(Number.NaN);
    assert.match(r.expose(), /^special NaN$/m);
  });
});

// ---------------------------------------------------------------------------
// The real HTTPS server.

interface Pair {
  caCert: string;
  cert: string;
  key: string;
}

function get(port: number, p: string, ca: string, extra: https.RequestOptions = {}): Promise<{ status: number; body: string; cert: tls.PeerCertificate }> {
  return new Promise((resolve, reject) => {
    const req = https.request({ host: '127.0.0.1', port, path: p, ca, agent: false, timeout: 5000, ...extra }, (res) => {
      const cert = (res.socket as tls.TLSSocket).getPeerCertificate();
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body, cert }));
    });
    req.on('error', reject);
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.end();
  });
}

function post(port: number, ca: string, body: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = https.request(
      { host: '127.0.0.1', port, path: '/mutate', method: 'POST', ca, agent: false, headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (text += c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text }));
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

function plainGet(url: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    http
      .get(url, { timeout: 5000 }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (body += c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      })
      .on('error', reject)
      .on('timeout', function (this: http.ClientRequest) {
        this.destroy(new Error('timeout'));
      });
  });
}

async function eventually(what: string, check: () => Promise<boolean>, timeoutMs = 5000): Promise<void> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    if (await check().catch(() => false)) return;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

describe('webhook HTTPS server', function () {
  this.timeout(20_000);
  let dir: string;
  let certFile: string;
  let keyFile: string;
  let first: Pair;
  let second: Pair;
  let server: WebhookServer;
  let port: number;
  let metricsPort: number;

  before(() => {
    first = generateCertificates({ dnsNames: ['localhost'], ipAddresses: ['127.0.0.1'] });
    second = generateCertificates({ dnsNames: ['localhost'], ipAddresses: ['127.0.0.1'] });
  });

  beforeEach(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'canary-gate-tls-'));
    certFile = path.join(dir, 'tls.crt');
    keyFile = path.join(dir, 'tls.key');
    writeFileSync(certFile, first.cert);
    writeFileSync(keyFile, first.key, { mode: 0o600 });
    server = createWebhookServer({
      tlsCertFile: certFile,
      tlsKeyFile: keyFile,
      port: 0,
      metricsPort: 0,
      bindAddress: '127.0.0.1',
      reconcilerUsers: [RECONCILER],
      logger: silent,
      certPollIntervalMs: 50,
      drainTimeoutMs: 5000,
    });
    const bound = await server.start();
    port = bound.port;
    metricsPort = bound.metricsPort as number;
  });

  afterEach(async () => {
    await server.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('serves /mutate, /healthz and /readyz over TLS, verified with the CA', async () => {
    assert.equal((await get(port, '/healthz', first.caCert)).status, 200);
    assert.equal((await get(port, '/readyz', first.caCert)).status, 200);
    const review = interceptedReview();
    const res = await post(port, first.caCert, JSON.stringify(review));
    assert.equal(res.status, 200);
    const body = JSON.parse(res.body);
    assert.equal(body.response.uid, review.request!.uid);
    assert.equal(body.response.patchType, 'JSONPatch');
  });

  it('refuses a client that does not trust the CA', async () => {
    await assert.rejects(get(port, '/healthz', second.caCert), /self[- ]signed|unable to verify|certificate/i);
  });

  it('speaks no plaintext HTTP on the webhook port', async () => {
    await assert.rejects(plainGet(`http://127.0.0.1:${port}/healthz`));
  });

  it('refuses TLS 1.1 and accepts TLS 1.2 and 1.3', async () => {
    // SECLEVEL=0 lets this client offer TLS 1.1 at all; the alert proves the refusal is the server's.
    await assert.rejects(
      get(port, '/healthz', first.caCert, { minVersion: 'TLSv1', maxVersion: 'TLSv1.1', ciphers: 'DEFAULT@SECLEVEL=0' }),
      /alert protocol version/,
    );
    assert.equal((await get(port, '/healthz', first.caCert, { minVersion: 'TLSv1.2', maxVersion: 'TLSv1.2' })).status, 200);
    assert.equal((await get(port, '/healthz', first.caCert, { minVersion: 'TLSv1.3' })).status, 200);
  });

  it('serves /metrics over plain HTTP on the metrics port', async () => {
    await post(port, first.caCert, JSON.stringify(interceptedReview()));
    const res = await plainGet(`http://127.0.0.1:${metricsPort}/metrics`);
    assert.equal(res.status, 200);
    assert.match(res.body, /canary_gate_webhook_requests_total\{decision="intercepted"\} 1/);
    assert.match(res.body, /canary_gate_webhook_tls_certificate_not_after_seconds \d+/);
  });

  it('picks up a rotated certificate without a restart', async () => {
    const before = await get(port, '/healthz', first.caCert);
    // Keep one connection open across the rotation: it must go on working.
    const agent = new https.Agent({ keepAlive: true, maxSockets: 1, ca: first.caCert });
    assert.equal((await get(port, '/healthz', first.caCert, { agent })).status, 200);

    writeFileSync(certFile, second.cert);
    writeFileSync(keyFile, second.key);
    await eventually('the new certificate', async () => (await get(port, '/healthz', second.caCert)).status === 200);
    const after = await get(port, '/healthz', second.caCert);
    assert.notEqual(after.cert.fingerprint256, before.cert.fingerprint256);
    await assert.rejects(get(port, '/healthz', first.caCert), 'new connections no longer get the old certificate');
    await assert.rejects(
      get(port, '/healthz', second.caCert, { minVersion: 'TLSv1', maxVersion: 'TLSv1.1', ciphers: 'DEFAULT@SECLEVEL=0' }),
      /alert protocol version/,
      'the new context keeps the TLS 1.2 floor',
    );
    assert.equal((await get(port, '/healthz', first.caCert, { agent })).status, 200, 'the open connection keeps working');
    agent.destroy();

    const metrics = await plainGet(`http://127.0.0.1:${metricsPort}/metrics`);
    assert.match(metrics.body, /canary_gate_webhook_tls_reloads_total\{result="success"\} 1/);
  });

  it('picks up a Secret-volume style atomic swap (rename over the files)', async () => {
    writeFileSync(`${certFile}.new`, second.cert);
    writeFileSync(`${keyFile}.new`, second.key);
    renameSync(`${keyFile}.new`, keyFile);
    renameSync(`${certFile}.new`, certFile);
    await eventually('the new certificate', async () => (await get(port, '/healthz', second.caCert)).status === 200);
  });

  it('keeps the old certificate when the new pair is broken or half-written, and recovers', async () => {
    // Key from another pair: the files do not match.
    writeFileSync(certFile, second.cert);
    await eventually('a reload error', async () => /tls_reloads_total\{result="error"\} [1-9]/.test((await plainGet(`http://127.0.0.1:${metricsPort}/metrics`)).body));
    assert.equal((await get(port, '/healthz', first.caCert)).status, 200, 'still serving the old certificate');
    // Garbage.
    writeFileSync(keyFile, '-----BEGIN PRIVATE KEY-----\nnot a key\n');
    await eventually('a second reload error', async () => /tls_reloads_total\{result="error"\} [2-9]/.test((await plainGet(`http://127.0.0.1:${metricsPort}/metrics`)).body));
    assert.equal((await get(port, '/healthz', first.caCert)).status, 200);
    assert.equal(await server.reloadCertificates(), false);
    // The key arrives: the pair is whole.
    writeFileSync(keyFile, second.key);
    await eventually('the new certificate', async () => (await get(port, '/healthz', second.caCert)).status === 200);
  });

  it('close() finishes a request in flight, then stops', async () => {
    const review = JSON.stringify(interceptedReview());
    const half = Math.floor(review.length / 2);
    let closed = false;
    const answer = new Promise<{ status: number; body: string }>((resolve, reject) => {
      const req = https.request(
        { host: '127.0.0.1', port, path: '/mutate', method: 'POST', ca: first.caCert, agent: false, headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(review) } },
        (res) => {
          let text = '';
          res.setEncoding('utf8');
          res.on('data', (c: string) => (text += c));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text }));
        },
      );
      req.on('error', reject);
      req.write(review.slice(0, half));
      // Wait until the server has started on this request, then close and send the rest.
      void eventually('the request to be in flight', async () => server.inFlight() === 1).then(() => {
        const closing = server.close().then(() => (closed = true));
        setTimeout(() => {
          assert.equal(closed, false, 'close() waits for the request in flight');
          req.end(review.slice(half));
        }, 200);
        return closing;
      });
    });
    const res = await answer;
    assert.equal(res.status, 200);
    assert.equal(JSON.parse(res.body).response.allowed, true);
    await eventually('close() to resolve', async () => closed);
    await assert.rejects(get(port, '/healthz', first.caCert), /ECONNREFUSED/);
  });
});
