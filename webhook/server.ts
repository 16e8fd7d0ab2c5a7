// The webhook's HTTP layer: HTTPS on the webhook port, plain HTTP for
// /metrics on a separate port. A thin shell over review.ts.
//
// The hot path (POST /mutate) is a raw Node request handler: it collects the
// body as Buffer chunks, parses it once and answers with a precomputed header
// set. Everything else (/healthz, /readyz, 404s) goes to a small express app.

import { X509Certificate } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import tls from 'node:tls';
import express from 'express';
import { pino, type Logger } from 'pino';
import { CONTENT_TYPE as METRICS_CONTENT_TYPE, type CounterChild, type HistogramChild, Registry } from '../core/metrics.js';
import { review, statusBody, type ReviewResult } from './review.js';

/**
 * Default body limit: 4 MiB. etcd refuses requests over 1.5 MiB by default
 * (--max-request-bytes), which bounds any object the API server can have
 * stored, and the API server itself takes write bodies of at most 3 MiB.
 * An AdmissionReview of an UPDATE carries the object twice (object and
 * oldObject) plus a small envelope (userInfo, options, kinds), so a review
 * of the largest storable object is about 3 MiB of JSON; 4 MiB leaves room
 * for JSON being somewhat larger than etcd's protobuf encoding and for the
 * envelope, while still refusing absurd bodies before they are buffered.
 * Real Deployments and Services are a few KiB to a few hundred KiB.
 */
export const DEFAULT_MAX_BODY_BYTES = 4 * 1024 * 1024;
export const DEFAULT_PORT = 8443;
export const DEFAULT_METRICS_PORT = 8080;
export const DEFAULT_CERT_POLL_INTERVAL_MS = 2000;
export const DEFAULT_DRAIN_TIMEOUT_MS = 25_000;
/**
 * Idle keep-alive connections are kept longer than the API server's own idle
 * timeout (90 s in its HTTP transport), so that it is always the client that
 * closes an idle connection. If the server closed first, a request the API
 * server sent at that same moment would fail, and with failurePolicy: Fail
 * the user's update would be refused for nothing.
 */
export const KEEP_ALIVE_TIMEOUT_MS = 120_000;
/**
 * After a 413 the rest of the body is read and discarded, so that closing
 * the connection does not reset it under a client that is still sending
 * (which would then lose the answer): at most this many bytes (default
 * 4 times the body limit, at least 1 MiB) and for at most this long.
 */
export const DEFAULT_OVERSIZE_DRAIN_MS = 10_000;
export function defaultOversizeDrainBytes(maxBodyBytes: number): number {
  return Math.max(4 * maxBodyBytes, 1024 * 1024);
}

export interface WebhookHandlerOptions {
  /** Usernames whose updates pass untouched (the reconciler's identity). */
  reconcilerUsers?: Iterable<string>;
  /** Largest request body; larger ones get 413 without being buffered. */
  maxBodyBytes?: number;
  maxPendingSpecBytes?: number;
  /** After a 413: body bytes read and discarded before the connection is cut. Default defaultOversizeDrainBytes(maxBodyBytes). */
  oversizeDrainBytes?: number;
  /** After a 413: how long the rest of the body is read before the connection is cut. Default 10 s. */
  oversizeDrainMs?: number;
  logger?: Logger;
  /** Shared registry (the reconciler registers into the same one when both run in one process). */
  registry?: Registry;
}

export interface WebhookServerOptions extends WebhookHandlerOptions {
  tlsCertFile: string;
  tlsKeyFile: string;
  /** Webhook (HTTPS) port; 0 picks a free one. Default 8443. */
  port?: number;
  /** Address both listeners bind to. Default 0.0.0.0. */
  bindAddress?: string;
  /** Plain-HTTP metrics port; 0 picks a free one, null disables it. Default 8080. */
  metricsPort?: number | null;
  /** How often the certificate files are checked for a change. */
  certPollIntervalMs?: number;
  /** How long close() waits for in-flight requests before cutting connections. */
  drainTimeoutMs?: number;
}

type Handler = (req: http.IncomingMessage, res: http.ServerResponse) => void;

export interface WebhookHandler {
  /** Handler for the webhook port's routes (also usable over plain HTTP, as in tests). */
  handler: Handler;
  /** Handler for the metrics port. */
  metricsHandler: Handler;
  registry: Registry;
  /** /readyz answers 200 only while this is true. */
  setReady(ready: boolean): void;
  /** Once set, every answer asks the client to close its connection. */
  setDraining(draining: boolean): void;
  /** Requests being processed now. */
  inFlight(): number;
}

export interface WebhookServer extends WebhookHandler {
  /** Binds both listeners; resolves with the ports actually bound. */
  start(): Promise<{ port: number; metricsPort?: number }>;
  /** Stops accepting, drains in-flight requests (bounded by drainTimeoutMs), closes both listeners. */
  close(): Promise<void>;
  /** Re-reads the certificate files now; false when the pair is unusable (the old one stays). */
  reloadCertificates(): Promise<boolean>;
}

const MUTATE_PATH = '/mutate';
const JSON_TYPE = 'application/json';
const LATENCY_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5];

function noop(): void {}

/** Values of the decision label: decide()'s decisions, then the HTTP layer's own outcomes. */
export const DECISIONS: readonly string[] = [
  'skipped', 'reconciler', 'unchanged', 'intercepted', 'reapplied', 'replaced', 'cancelled', 'rejected',
  'error', 'bad_request', 'too_large', 'aborted',
];

/** Metrics of the webhook, registered once per registry. */
function webhookMetrics(registry: Registry) {
  return {
    requests: registry.counter(
      'canary_gate_webhook_requests_total',
      'Admission requests handled by the webhook, by decision: one of decide()\'s (skipped, reconciler, unchanged, intercepted, ' +
        'reapplied, replaced, cancelled, rejected), error (refused after an internal error), bad_request and too_large (4xx answers), ' +
        'aborted (the client went away).',
      ['decision'],
    ),
    latency: registry.histogram(
      'canary_gate_webhook_request_duration_seconds',
      'Time from the start of an admission request to the end of its answer.',
      [],
      LATENCY_BUCKETS,
    ),
    forgeries: registry.counter(
      'canary_gate_webhook_forgeries_reverted_total',
      'Requests that tried to set or remove canary-gate control annotations, put back by the webhook.',
    ),
    inFlight: registry.gauge('canary_gate_webhook_in_flight_requests', 'Admission requests being processed.'),
    tlsReloads: registry.counter(
      'canary_gate_webhook_tls_reloads_total',
      'Reloads of the serving certificate after its files changed, by result (error: the old certificate stays).',
      ['result'],
    ),
    tlsNotAfter: registry.gauge(
      'canary_gate_webhook_tls_certificate_not_after_seconds',
      'Expiry (Unix time) of the serving certificate in use.',
    ),
  };
}

export function createWebhookHandler(opts: WebhookHandlerOptions = {}): WebhookHandler {
  const log = opts.logger ?? pino({ level: 'info' });
  const registry = opts.registry ?? new Registry();
  const metrics = webhookMetrics(registry);
  const maxBodyBytes = opts.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES;
  if (!Number.isSafeInteger(maxBodyBytes) || maxBodyBytes <= 0) throw new Error(`max body bytes must be a positive integer, got ${maxBodyBytes}`);
  const drainBytes = opts.oversizeDrainBytes ?? defaultOversizeDrainBytes(maxBodyBytes);
  const drainMs = opts.oversizeDrainMs ?? DEFAULT_OVERSIZE_DRAIN_MS;
  if (!Number.isSafeInteger(drainBytes) || drainBytes < 0) throw new Error(`oversize drain bytes must be a whole number >= 0, got ${drainBytes}`);
  if (!Number.isSafeInteger(drainMs) || drainMs < 0) throw new Error(`oversize drain time must be a whole number of ms >= 0, got ${drainMs}`);
  const config = {
    reconcilerUsers: new Set(opts.reconcilerUsers ?? []),
    ...(opts.maxPendingSpecBytes !== undefined ? { maxPendingSpecBytes: opts.maxPendingSpecBytes } : {}),
  };

  let ready = true;
  let draining = false;
  let inFlight = 0;

  // Children looked up once per decision, so that counting is an addition.
  const byDecision = new Map<string, CounterChild>();
  const decisionCounter = (decision: string): CounterChild => {
    let c = byDecision.get(decision);
    if (!c) {
      c = metrics.requests.labels(decision);
      byDecision.set(decision, c);
    }
    return c;
  };
  // Every outcome is exported from the start (at 0), so that rate() and
  // alerts on, say, decision="error" work before the first one happens.
  for (const d of DECISIONS) decisionCounter(d);
  const latency: HistogramChild = metrics.latency.labels();
  const forgeries = metrics.forgeries.labels();
  const inFlightGauge = metrics.inFlight.labels();

  function send(res: http.ServerResponse, status: number, text: string, extra?: Record<string, string>): void {
    const headers: Record<string, string | number> = { 'content-type': JSON_TYPE, 'content-length': Buffer.byteLength(text) };
    if (extra) Object.assign(headers, extra);
    if (draining) headers.connection = 'close';
    res.writeHead(status, headers);
    res.end(text);
  }

  function done(start: number, decision: string): void {
    inFlight--;
    inFlightGauge.value = inFlight;
    decisionCounter(decision).inc();
    latency.observe((performance.now() - start) / 1000);
  }

  function logReview(result: ReviewResult, latencyMs: number): void {
    // Identifiers and the outcome only: object contents never reach the log.
    const fields: Record<string, unknown> = {
      uid: result.uid,
      namespace: result.namespace,
      name: result.name,
      kind: result.kind,
      operation: result.operation,
      decision: result.decision,
      latencyMs: Math.round(latencyMs * 1000) / 1000,
    };
    if (result.revision !== undefined) fields.revision = result.revision;
    if (result.dryRun) fields.dryRun = true;
    if (result.error !== undefined) {
      // The error's message and stack only: they name code, never object contents.
      fields.err = result.error instanceof Error ? result.error : new Error(String(result.error));
      log.error(fields, 'internal error while judging an admission request; refused it');
    } else if (result.forgeryReverted) {
      fields.forgeryReverted = true;
      log.warn(fields, 'control annotations set by a user were put back');
    } else if (result.decision === 'skipped') {
      log.debug(fields, 'admission review');
    } else {
      log.info(fields, 'admission review');
    }
  }

  function tooLarge(req: http.IncomingMessage, res: http.ServerResponse, start: number): void {
    send(
      res,
      413,
      JSON.stringify(statusBody(413, 'RequestEntityTooLarge', `canary-gate: request body larger than ${maxBodyBytes} bytes (--max-body-bytes)`)),
      { connection: 'close' },
    );
    drainThenClose(req);
    log.warn({ limit: maxBodyBytes, contentLength: req.headers['content-length'] }, 'admission request body too large');
    done(start, 'too_large');
  }

  /**
   * After the 413 the client may still be sending. Closing the socket with
   * unread bytes in it makes the kernel answer with a reset, and a client
   * that reads its answer only after sending (or a busy one) then loses the
   * 413 and sees a broken pipe. So the rest of the body is read and
   * discarded (never buffered) until it ends, and only then is the
   * connection closed; a body longer than drainBytes, or still arriving
   * after drainMs, is cut off.
   *
   * Node ends a "Connection: close" answer with socket.destroySoon(), which
   * destroys the socket as soon as the answer is written; on this one
   * socket that call is deferred until the body has ended.
   */
  function drainThenClose(req: http.IncomingMessage): void {
    const socket = req.socket as Socket & { destroySoon?: () => void };
    const destroySoon = socket.destroySoon;
    let bodyEnded = req.readableEnded;
    let closeAsked = false;
    let discarded = 0;
    const cutOff = (why: string) => {
      log.warn({ why, discardedBytes: discarded }, 'cut off a client still sending an oversized body');
      socket.destroy();
    };
    const timer = setTimeout(() => cutOff(`body still arriving ${drainMs} ms after the 413`), drainMs);
    timer.unref();
    const closeNow = () => {
      clearTimeout(timer);
      if (typeof destroySoon === 'function') destroySoon.call(socket);
      else socket.end();
    };
    if (typeof destroySoon === 'function') {
      socket.destroySoon = () => {
        closeAsked = true;
        if (bodyEnded) closeNow();
      };
    }
    req.on('data', (chunk: Buffer) => {
      discarded += chunk.length;
      if (discarded > drainBytes) cutOff(`more than ${drainBytes} bytes after the 413`);
    });
    req.once('end', () => {
      bodyEnded = true;
      if (closeAsked || typeof destroySoon !== 'function') closeNow();
    });
    socket.once('close', () => clearTimeout(timer));
    // Discard what arrives from now on (the data listener keeps the stream flowing).
    req.resume();
  }

  function answer(res: http.ServerResponse, raw: Buffer, start: number): void {
    let parsed: unknown;
    try {
      parsed = JSON.parse(raw.toString('utf8'));
    } catch (err) {
      send(res, 400, JSON.stringify(statusBody(400, 'BadRequest', `canary-gate: request body is not valid JSON: ${(err as Error).message}`)));
      log.warn({ bytes: raw.length }, 'admission request body is not valid JSON');
      done(start, 'bad_request');
      return;
    }
    const result = review(parsed, config);
    send(res, result.status, result.text);
    if (result.forgeryReverted) forgeries.inc();
    done(start, result.decision);
    if (result.status === 400) {
      log.warn({ uid: result.uid, reason: (result.body as { message?: string }).message }, 'malformed admission review');
    } else {
      logReview(result, performance.now() - start);
    }
  }

  function mutate(req: http.IncomingMessage, res: http.ServerResponse): void {
    const start = performance.now();
    inFlight++;
    inFlightGauge.value = inFlight;
    if (req.method !== 'POST') {
      send(res, 405, JSON.stringify(statusBody(405, 'MethodNotAllowed', 'canary-gate: /mutate takes POST only')), { allow: 'POST' });
      done(start, 'bad_request');
      return;
    }
    const declared = req.headers['content-length'];
    if (declared !== undefined && Number(declared) > maxBodyBytes) {
      tooLarge(req, res, start);
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    let finished = false;
    req.on('data', (chunk: Buffer) => {
      if (finished) return;
      size += chunk.length;
      if (size > maxBodyBytes) {
        finished = true;
        chunks.length = 0;
        tooLarge(req, res, start);
        return;
      }
      chunks.push(chunk);
    });
    req.on('end', () => {
      if (finished) return;
      finished = true;
      try {
        answer(res, chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks, size), start);
      } catch (err) {
        // review() never throws; this is a bug in this file. Answer, don't crash.
        log.error({ err }, 'unexpected error answering an admission request');
        if (!res.headersSent) send(res, 500, JSON.stringify(statusBody(500, 'InternalError', 'canary-gate: internal error')));
        else res.destroy();
        done(start, 'error');
      }
    });
    const gone = () => {
      // The client went away mid-body: nothing to answer.
      if (finished) return;
      finished = true;
      done(start, 'aborted');
    };
    req.on('error', gone);
    req.on('close', gone);
  }

  const app = express();
  app.disable('x-powered-by');
  app.disable('etag');
  app.set('query parser', false);
  app.get('/healthz', (_req, res) => {
    res.type('text/plain').send('ok\n');
  });
  app.get('/readyz', (_req, res) => {
    if (ready && !draining) res.type('text/plain').send('ok\n');
    else res.status(503).type('text/plain').send(draining ? 'shutting down\n' : 'not ready\n');
  });
  app.all(['/healthz', '/readyz'], (_req, res) => {
    res.set('allow', 'GET, HEAD').status(405).json(statusBody(405, 'MethodNotAllowed', 'canary-gate: GET only'));
  });
  app.use((req, res) => {
    res.status(404).json(statusBody(404, 'NotFound', `canary-gate: no route for ${req.method} ${req.path}`));
  });
  app.use((err: unknown, _req: express.Request, res: express.Response, _next: express.NextFunction) => {
    log.error({ err }, 'unexpected error in a request');
    if (res.headersSent) {
      res.destroy();
      return;
    }
    res.status(500).json(statusBody(500, 'InternalError', 'canary-gate: internal error'));
  });

  const handler: Handler = (req, res) => {
    const url = req.url ?? '';
    if (url === MUTATE_PATH || (url.startsWith(MUTATE_PATH) && url.charCodeAt(MUTATE_PATH.length) === 63 /* ? */)) {
      try {
        mutate(req, res);
      } catch (err) {
        log.error({ err }, 'unexpected error in /mutate');
        if (!res.headersSent) send(res, 500, JSON.stringify(statusBody(500, 'InternalError', 'canary-gate: internal error')));
      }
      return;
    }
    if (draining) res.setHeader('connection', 'close');
    app(req as express.Request, res as express.Response, (err?: unknown) => {
      // Only reached if the app's own handlers fail to answer.
      if (err) log.error({ err }, 'unexpected error in a request');
      if (!res.headersSent) send(res, err ? 500 : 404, JSON.stringify(statusBody(err ? 500 : 404, err ? 'InternalError' : 'NotFound', 'canary-gate')));
    });
  };

  const metricsHandler: Handler = (req, res) => {
    const path = (req.url ?? '').split('?')[0];
    if (path === '/metrics' || path === '/healthz') {
      if (req.method !== 'GET' && req.method !== 'HEAD') {
        res.writeHead(405, { allow: 'GET, HEAD', 'content-type': 'text/plain' });
        res.end('GET only\n');
        return;
      }
      const text = path === '/metrics' ? registry.expose() : 'ok\n';
      res.writeHead(200, {
        'content-type': path === '/metrics' ? METRICS_CONTENT_TYPE : 'text/plain',
        'content-length': Buffer.byteLength(text),
      });
      res.end(req.method === 'HEAD' ? undefined : text);
      return;
    }
    res.writeHead(404, { 'content-type': 'text/plain' });
    res.end('not found\n');
  };

  return {
    handler,
    metricsHandler,
    registry,
    setReady(value) {
      ready = value;
    },
    setDraining(value) {
      draining = value;
    },
    inFlight: () => inFlight,
  };
}

interface CertState {
  signature: string;
  cert: string;
  key: string;
}

async function fileSignature(certFile: string, keyFile: string): Promise<string> {
  // stat follows symlinks: a Secret volume update (an atomic swap of the
  // ..data symlink) shows up as a new inode.
  const [c, k] = await Promise.all([fsp.stat(certFile), fsp.stat(keyFile)]);
  return `${c.ino}:${c.size}:${c.mtimeMs}|${k.ino}:${k.size}:${k.mtimeMs}`;
}

/** Reads and checks a certificate/key pair; throws if it is not a usable, matching pair. */
async function readPair(certFile: string, keyFile: string): Promise<CertState> {
  const signature = await fileSignature(certFile, keyFile);
  const [cert, key] = await Promise.all([fsp.readFile(certFile, 'utf8'), fsp.readFile(keyFile, 'utf8')]);
  // createSecureContext throws on an unparsable certificate or key and on a
  // key that does not belong to the certificate (a half-written pair).
  tls.createSecureContext({ cert, key, minVersion: 'TLSv1.2' });
  return { signature, cert, key };
}

function notAfterSeconds(cert: string): number | undefined {
  try {
    return Math.floor(new Date(new X509Certificate(cert).validTo).getTime() / 1000);
  } catch {
    return undefined;
  }
}

export function createWebhookServer(opts: WebhookServerOptions): WebhookServer {
  const log = opts.logger ?? pino({ level: 'info' });
  const base = createWebhookHandler({ ...opts, logger: log });
  const registry = base.registry;
  const metrics = webhookMetrics(registry);
  const reloadOk = metrics.tlsReloads.labels('success');
  const reloadErr = metrics.tlsReloads.labels('error');
  const port = opts.port ?? DEFAULT_PORT;
  const bindAddress = opts.bindAddress ?? '0.0.0.0';
  const metricsPort = opts.metricsPort === undefined ? DEFAULT_METRICS_PORT : opts.metricsPort;
  const pollMs = opts.certPollIntervalMs ?? DEFAULT_CERT_POLL_INTERVAL_MS;
  const drainMs = opts.drainTimeoutMs ?? DEFAULT_DRAIN_TIMEOUT_MS;

  let server: https.Server | undefined;
  let metricsServer: http.Server | undefined;
  let current: CertState | undefined;
  let failedSignature: string | undefined;
  let poll: NodeJS.Timeout | undefined;
  let polling = false;
  let closing: Promise<void> | undefined;
  base.setReady(false);

  function useCert(state: CertState): void {
    current = state;
    const notAfter = notAfterSeconds(state.cert);
    if (notAfter !== undefined) metrics.tlsNotAfter.set(notAfter);
  }

  async function reloadCertificates(): Promise<boolean> {
    let next: CertState;
    try {
      next = await readPair(opts.tlsCertFile, opts.tlsKeyFile);
    } catch (err) {
      reloadErr.inc();
      log.error(
        { error: (err as Error).message, certFile: opts.tlsCertFile, keyFile: opts.tlsKeyFile },
        'cannot load the changed TLS certificate/key pair; still serving the previous one',
      );
      return false;
    }
    if (current && next.cert === current.cert && next.key === current.key) {
      current.signature = next.signature;
      return true;
    }
    server?.setSecureContext({ cert: next.cert, key: next.key, minVersion: 'TLSv1.2' });
    useCert(next);
    reloadOk.inc();
    log.info({ certFile: opts.tlsCertFile, notAfter: new Date((notAfterSeconds(next.cert) ?? 0) * 1000).toISOString() }, 'TLS certificate reloaded');
    return true;
  }

  async function checkFiles(): Promise<void> {
    if (polling || !current) return;
    polling = true;
    try {
      let signature: string;
      try {
        signature = await fileSignature(opts.tlsCertFile, opts.tlsKeyFile);
      } catch {
        // A file is missing for a moment (being replaced): look again next tick.
        return;
      }
      if (signature === current.signature || signature === failedSignature) return;
      if (await reloadCertificates()) failedSignature = undefined;
      else failedSignature = signature;
    } finally {
      polling = false;
    }
  }

  function listen(srv: http.Server | https.Server, p: number): Promise<number> {
    return new Promise((resolve, reject) => {
      const onError = (err: Error) => reject(err);
      srv.once('error', onError);
      srv.listen(p, bindAddress, () => {
        srv.off('error', onError);
        resolve((srv.address() as AddressInfo).port);
      });
    });
  }

  async function start(): Promise<{ port: number; metricsPort?: number }> {
    if (server) throw new Error('the webhook server is already started');
    let first: CertState;
    try {
      first = await readPair(opts.tlsCertFile, opts.tlsKeyFile);
    } catch (err) {
      throw new Error(`cannot load the TLS certificate ${opts.tlsCertFile} and key ${opts.tlsKeyFile}: ${(err as Error).message}`);
    }
    useCert(first);
    const srv = https.createServer(
      {
        cert: first.cert,
        key: first.key,
        minVersion: 'TLSv1.2',
        keepAliveTimeout: KEEP_ALIVE_TIMEOUT_MS,
        // The API server gives a webhook at most 30 s.
        headersTimeout: 30_000,
        requestTimeout: 60_000,
      },
      base.handler,
    );
    srv.keepAliveTimeout = KEEP_ALIVE_TIMEOUT_MS;
    srv.on('tlsClientError', (err: Error & { code?: string }) => {
      log.debug({ error: err.message, code: err.code }, 'TLS handshake failed');
    });
    srv.on('clientError', (err: Error & { code?: string }, socket) => {
      log.debug({ error: err.message, code: err.code }, 'bad HTTP request');
      if (socket.writable && !socket.destroyed) socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n');
      else socket.destroy();
    });
    server = srv;
    const bound: { port: number; metricsPort?: number } = { port: await listen(srv, port) };
    if (metricsPort !== null) {
      const msrv = http.createServer(base.metricsHandler);
      msrv.on('clientError', (_err, socket) => socket.destroy());
      metricsServer = msrv;
      try {
        bound.metricsPort = await listen(msrv, metricsPort);
      } catch (err) {
        srv.close();
        throw err;
      }
    }
    poll = setInterval(() => void checkFiles().catch(noop), pollMs);
    poll.unref();
    base.setReady(true);
    log.info({ address: bindAddress, port: bound.port, metricsPort: bound.metricsPort }, 'webhook listening (HTTPS)');
    return bound;
  }

  function close(): Promise<void> {
    if (closing) return closing;
    base.setReady(false);
    base.setDraining(true);
    if (poll) clearInterval(poll);
    closing = new Promise<void>((resolve) => {
      const servers = [server, metricsServer].filter((s): s is http.Server | https.Server => s !== undefined);
      if (servers.length === 0) {
        resolve();
        return;
      }
      let left = servers.length;
      const timer = setTimeout(() => {
        log.warn({ inFlight: base.inFlight() }, 'drain timeout: closing the remaining connections');
        for (const s of servers) s.closeAllConnections();
      }, drainMs);
      timer.unref();
      // Connections that finish a request after close() began get
      // "Connection: close" on their answer (see setDraining) and end.
      const idle = setInterval(() => {
        for (const s of servers) s.closeIdleConnections();
      }, 100);
      idle.unref();
      for (const s of servers) {
        s.close(() => {
          if (--left === 0) {
            clearTimeout(timer);
            clearInterval(idle);
            log.info('webhook stopped');
            resolve();
          }
        });
        s.closeIdleConnections();
      }
    });
    return closing;
  }

  return { ...base, start, close, reloadCertificates };
}
