// kit/api.ts: a prepared KubeConfig times out requests to a local API
// server that never answers (TCP accepted but silent, TLS done but no
// answer, headers but no body), shares one keep-alive connection, and the
// error functions read client-node's and the informer's errors alike.

import assert from 'node:assert/strict';
import https from 'node:https';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { performance } from 'node:perf_hooks';
import * as k8s from '@kubernetes/client-node';
import { generateCertificates } from '../../certs/generate.js';
import {
  ApiTimeoutError,
  apiTimeoutMs,
  errorMessage,
  isAlreadyExists,
  isConflict,
  isNotFound,
  isTimeout,
  prepareKubeConfig,
  requestTimeout,
  statusCode,
} from '../../core/api/client.js';
import { KubeHttpError } from '../../reconciler/kit/informer.js';

function kubeConfigFor(port: number, ca: string): k8s.KubeConfig {
  const kc = new k8s.KubeConfig();
  kc.loadFromOptions({
    clusters: [{ name: 'local', server: `https://127.0.0.1:${port}`, caData: Buffer.from(ca).toString('base64'), skipTLSVerify: false }],
    users: [{ name: 'u', token: 'not-a-real-token' }],
    contexts: [{ name: 'local', cluster: 'local', user: 'u' }],
    currentContext: 'local',
  });
  return kc;
}

async function timed<T>(p: Promise<T>): Promise<{ ms: number; err: unknown; value?: T }> {
  const start = performance.now();
  try {
    const value = await p;
    return { ms: performance.now() - start, err: undefined, value };
  } catch (err) {
    return { ms: performance.now() - start, err };
  }
}

describe('kit/api: timeouts and one connection pool for every API call', function () {
  this.timeout(20_000);
  let pair: ReturnType<typeof generateCertificates>;
  const closers: Array<() => void> = [];

  before(() => {
    pair = generateCertificates({ dnsNames: ['localhost'], ipAddresses: ['127.0.0.1'] });
  });
  afterEach(() => {
    for (const c of closers.splice(0)) c();
  });

  /** A TCP listener that accepts and never sends a byte (a blackholed path): not even the TLS handshake completes. */
  async function silentTcp(): Promise<number> {
    const sockets = new Set<net.Socket>();
    const srv = net.createServer((s) => {
      sockets.add(s);
      s.on('error', () => undefined);
    });
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
    closers.push(() => {
      for (const s of sockets) s.destroy();
      srv.close();
    });
    return (srv.address() as AddressInfo).port;
  }

  /** An HTTPS server; the handler decides how (or whether) to answer. Counts TLS connections. */
  async function httpsServer(handler: (req: import('node:http').IncomingMessage, res: import('node:http').ServerResponse) => void) {
    const srv = https.createServer({ cert: pair.cert, key: pair.key, keepAliveTimeout: 60_000 }, handler);
    let connections = 0;
    srv.on('secureConnection', () => connections++);
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
    closers.push(() => {
      srv.closeAllConnections();
      srv.close();
    });
    return { port: (srv.address() as AddressInfo).port, connections: () => connections };
  }

  async function expectTimeout(kc: k8s.KubeConfig, timeoutMs: number, call?: (api: k8s.CoreV1Api) => Promise<unknown>) {
    const api = kc.makeApiClient(k8s.CoreV1Api);
    const r = await timed(call ? call(api) : api.readNamespace({ name: 'default' }));
    assert.ok(r.err, `the call should have failed, got ${JSON.stringify(r.value)}`);
    assert.ok(r.ms >= timeoutMs - 50, `rejected after ${Math.round(r.ms)} ms, before the ${timeoutMs} ms timeout`);
    assert.ok(r.ms < timeoutMs + 1500, `rejected only after ${Math.round(r.ms)} ms (timeout ${timeoutMs} ms)`);
    assert.ok(isTimeout(r.err), `isTimeout(${String(r.err)})`);
    assert.equal(statusCode(r.err), undefined);
    assert.match(errorMessage(r.err), /did not answer within the request timeout/);
  }

  it('times out a request to a server that accepts the connection and never answers', async () => {
    const kc = kubeConfigFor(await silentTcp(), pair.caCert);
    await prepareKubeConfig(kc, { timeoutMs: 400 });
    assert.equal(apiTimeoutMs(kc), 400);
    await expectTimeout(kc, 400);
  });

  it('times out a request whose TLS handshake completed but that gets no answer', async () => {
    let received = 0;
    const srv = await httpsServer(() => void received++);
    const kc = kubeConfigFor(srv.port, pair.caCert);
    await prepareKubeConfig(kc, { timeoutMs: 400 });
    await expectTimeout(kc, 400);
    assert.equal(received, 1, 'the request reached the server');
  });

  it('times out a response whose headers arrived but whose body stops', async () => {
    const srv = await httpsServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': '1000' });
      res.write('{"kind":"Namespace",');
    });
    const kc = kubeConfigFor(srv.port, pair.caCert);
    await prepareKubeConfig(kc, { timeoutMs: 400 });
    await expectTimeout(kc, 400);
  });

  it('lets a per-call requestTimeout() shorten the default', async () => {
    const kc = kubeConfigFor(await silentTcp(), pair.caCert);
    await prepareKubeConfig(kc, { timeoutMs: 10_000 });
    await expectTimeout(kc, 300, (api) => api.readNamespace({ name: 'default' }, requestTimeout(300)));
    // A fractional timeout (half a renew deadline of 2667 ms) works too: AbortSignal.timeout() alone would throw.
    await expectTimeout(kc, 301, (api) => api.readNamespace({ name: 'default' }, requestTimeout(300.5)));
  });

  it('serves many calls over one keep-alive connection, and answers still arrive', async () => {
    const srv = await httpsServer((_req, res) => {
      const body = JSON.stringify({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'default' } });
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
      res.end(body);
    });
    const kc = kubeConfigFor(srv.port, pair.caCert);
    await prepareKubeConfig(kc, { timeoutMs: 2000 });
    const api = kc.makeApiClient(k8s.CoreV1Api);
    for (let i = 0; i < 10; i++) assert.equal((await api.readNamespace({ name: 'default' })).metadata?.name, 'default');
    assert.equal(srv.connections(), 1, 'ten calls, one TLS connection');
  });

  it('refuses a timeout that is not a positive whole number of ms', async () => {
    const kc = kubeConfigFor(1, pair.caCert);
    await assert.rejects(prepareKubeConfig(kc, { timeoutMs: 0 }), /positive whole number/);
    await assert.rejects(prepareKubeConfig(kc, { timeoutMs: 1.5 }), /positive whole number/);
  });
});

describe('kit/api: reading API errors', () => {
  const apiError = (code: number, body: unknown) => new k8s.ApiException(code, `HTTP-Code: ${code}`, body, {});

  it('reads the status code of client-node, informer and plain errors', () => {
    assert.equal(statusCode(apiError(404, { reason: 'NotFound' })), 404);
    assert.equal(statusCode(new KubeHttpError(410, 'Expired', 'too old')), 410);
    assert.equal(statusCode({ code: 409 }), 409);
    assert.equal(statusCode(new Error('ECONNREFUSED')), undefined);
    assert.equal(statusCode(undefined), undefined);
  });

  it('tells NotFound, Conflict and AlreadyExists apart', () => {
    const exists = apiError(409, { kind: 'Status', reason: 'AlreadyExists', message: 'deployments.apps "web-canary" already exists' });
    const conflict = apiError(409, { kind: 'Status', reason: 'Conflict', message: 'the object has been modified' });
    const existsText = apiError(409, '{"kind":"Status","reason":"AlreadyExists","message":"x"}');
    assert.equal(isAlreadyExists(exists), true);
    assert.equal(isAlreadyExists(existsText), true);
    assert.equal(isConflict(exists), false);
    assert.equal(isAlreadyExists(conflict), false);
    assert.equal(isConflict(conflict), true);
    assert.equal(isNotFound(apiError(404, { reason: 'NotFound' })), true);
    assert.equal(isNotFound(conflict), false);
  });

  it('recognises timeouts, and nothing else, as timeouts', () => {
    const aborted = Object.assign(new Error('The user aborted a request.'), { name: 'AbortError', type: 'aborted' });
    assert.equal(isTimeout(aborted), true);
    assert.equal(isTimeout(new ApiTimeoutError('no response within 30000 ms')), true);
    assert.equal(isTimeout(apiError(504, { reason: 'Timeout' })), true);
    assert.equal(isTimeout(Object.assign(new Error('connect'), { code: 'ETIMEDOUT' })), true);
    assert.equal(isTimeout(apiError(409, { reason: 'Conflict' })), false);
    assert.equal(isTimeout(Object.assign(new Error('refused'), { code: 'ECONNREFUSED' })), false);
  });

  it('describes an error in one line with the API server message, never headers or bodies sent', () => {
    const e = apiError(422, { kind: 'Status', reason: 'Invalid', message: 'spec.replicas: Invalid value: -1' });
    assert.equal(errorMessage(e), 'spec.replicas: Invalid value: -1 (HTTP 422)');
    assert.equal(errorMessage(new KubeHttpError(403, 'Forbidden', 'forbidden: no')), 'forbidden: no');
    assert.equal(errorMessage(new Error('first line\nsecond line')), 'first line');
    assert.equal(errorMessage('plain'), 'plain');
  });
});
