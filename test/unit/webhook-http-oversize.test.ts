// A body over the limit, against the real HTTPS server on 127.0.0.1: every
// client must read the whole 413 answer, also one that reads only after it
// has sent its whole body (as many HTTP/1.1 clients do) or that keeps
// sending while the answer arrives; and a body that never ends must be cut
// off after the drain bound instead of being read forever.

import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import tls from 'node:tls';
import { pino } from 'pino';
import { generateCertificates } from '../../certs/generate.js';
import { createWebhookServer, type WebhookServer } from '../../webhook/server.js';

const silent = pino({ level: 'silent' });
const LIMIT = 64 * 1024;
const DRAIN_BYTES = 2 * 1024 * 1024;
const DRAIN_MS = 2000;

interface ClientPlan {
  /** Body bytes to send; undefined: never stop (until the connection breaks or the client's own bounds). */
  bodyBytes?: number;
  chunkBytes: number;
  /** Pause between chunks (0: as fast as the socket takes them). */
  delayMs: number;
  /** Content-Length (false: chunked transfer encoding, the size is not known up front). */
  declareLength: boolean;
  /** false: read nothing until the whole body is sent, like a client that sends, then reads. */
  readWhileSending: boolean;
  /** The client's own bounds, so that no loop here is endless. */
  maxBytes: number;
  maxMs: number;
}

interface Outcome {
  status: number | undefined;
  /** The answer's body when it arrived complete (by its Content-Length). */
  body: string | undefined;
  error: string | undefined;
  sentBytes: number;
  /** Until the connection was closed (by either side). */
  elapsedMs: number;
  /** The client stopped at its own bound: the server kept reading. */
  hitClientBound: boolean;
}

function parseAnswer(raw: Buffer): { status: number | undefined; body: string | undefined } {
  const text = raw.toString('latin1');
  const status = /^HTTP\/1\.1 (\d{3}) /.exec(text)?.[1];
  const headEnd = text.indexOf('\r\n\r\n');
  if (headEnd < 0) return { status: status ? Number(status) : undefined, body: undefined };
  const length = /\r\ncontent-length: *(\d+)/i.exec(text.slice(0, headEnd))?.[1];
  const body = raw.subarray(Buffer.byteLength(text.slice(0, headEnd + 4), 'latin1'));
  const complete = length !== undefined && body.length >= Number(length);
  return { status: status ? Number(status) : undefined, body: complete ? body.subarray(0, Number(length)).toString('utf8') : undefined };
}

function send(port: number, ca: string, plan: ClientPlan): Promise<Outcome> {
  return new Promise((resolve) => {
    const started = performance.now();
    // Half-open: like Go's and most clients, keep sending after the server's FIN until the body is done.
    const raw = net.connect({ host: '127.0.0.1', port, allowHalfOpen: true });
    const socket = tls.connect({ socket: raw, ca, servername: 'localhost' });
    const received: Buffer[] = [];
    let error: string | undefined;
    let sentBytes = 0;
    let hitClientBound = false;
    let closed = false;
    const guard = setTimeout(() => {
      hitClientBound = true;
      socket.destroy();
    }, plan.maxMs);
    socket.on('data', (c: Buffer) => received.push(c));
    socket.on('error', (err: Error & { code?: string }) => (error ??= err.code ?? err.message));
    socket.on('end', () => socket.end());
    socket.on('close', () => {
      closed = true;
      clearTimeout(guard);
      resolve({ ...parseAnswer(Buffer.concat(received)), error, sentBytes, elapsedMs: performance.now() - started, hitClientBound });
    });
    const writable = () => !closed && !socket.destroyed && socket.writable;
    const wait = (ms: number) => new Promise((r) => setTimeout(r, ms));
    const drained = () =>
      new Promise<void>((r) => {
        const done = () => {
          socket.off('drain', done);
          socket.off('close', done);
          r();
        };
        socket.on('drain', done);
        socket.on('close', done);
      });
    socket.once('secureConnect', () => {
      if (!plan.readWhileSending) socket.pause();
      void (async () => {
        const head = plan.declareLength ? `Content-Length: ${plan.bodyBytes}` : 'Transfer-Encoding: chunked';
        socket.write(`POST /mutate HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n${head}\r\n\r\n`);
        const chunk = Buffer.alloc(plan.chunkBytes, 0x20);
        const frame = plan.declareLength ? chunk : Buffer.concat([Buffer.from(`${chunk.length.toString(16)}\r\n`), chunk, Buffer.from('\r\n')]);
        while (writable()) {
          if (plan.bodyBytes !== undefined && sentBytes >= plan.bodyBytes) break;
          if (sentBytes >= plan.maxBytes) {
            hitClientBound = true;
            break;
          }
          const ok = socket.write(frame);
          sentBytes += chunk.length;
          if (plan.delayMs > 0) await wait(plan.delayMs);
          else if (!ok) await drained();
        }
        if (writable() && !plan.declareLength && !hitClientBound) socket.write('0\r\n\r\n');
        if (hitClientBound) socket.destroy();
        // Now read the answer (a sending-first client), then close our side once the server has closed its own.
        socket.resume();
      })();
    });
  });
}

function assertRead413(o: Outcome, what: string): void {
  assert.equal(o.status, 413, `${what}: status ${o.status} (error ${o.error}, sent ${o.sentBytes} bytes)`);
  assert.ok(o.body !== undefined, `${what}: the 413 body did not arrive complete (error ${o.error})`);
  const status = JSON.parse(o.body) as { code?: number; reason?: string; message?: string };
  assert.equal(status.code, 413);
  assert.equal(status.reason, 'RequestEntityTooLarge');
  assert.match(status.message ?? '', new RegExp(`larger than ${LIMIT} bytes`));
}

describe('webhook HTTPS server: oversized bodies', function () {
  this.timeout(60_000);
  let dir: string;
  let server: WebhookServer;
  let port: number;
  let ca: string;

  before(async () => {
    const pair = generateCertificates({ dnsNames: ['localhost'], ipAddresses: ['127.0.0.1'] });
    ca = pair.caCert;
    dir = mkdtempSync(path.join(os.tmpdir(), 'canary-gate-413-'));
    writeFileSync(path.join(dir, 'tls.crt'), pair.cert);
    writeFileSync(path.join(dir, 'tls.key'), pair.key, { mode: 0o600 });
    server = createWebhookServer({
      tlsCertFile: path.join(dir, 'tls.crt'),
      tlsKeyFile: path.join(dir, 'tls.key'),
      port: 0,
      metricsPort: null,
      bindAddress: '127.0.0.1',
      logger: silent,
      maxBodyBytes: LIMIT,
      oversizeDrainBytes: DRAIN_BYTES,
      oversizeDrainMs: DRAIN_MS,
      drainTimeoutMs: 2000,
    });
    port = (await server.start()).port;
  });

  after(async () => {
    await server.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const base = { chunkBytes: 16 * 1024, delayMs: 0, maxBytes: 64 * 1024 * 1024, maxMs: 10_000 };

  it('a client that reads only after sending 8x the limit reads the 413, 20 times in a row', async () => {
    for (let i = 0; i < 20; i++) {
      const o = await send(port, ca, { ...base, bodyBytes: 8 * LIMIT, declareLength: i % 2 === 0, readWhileSending: false });
      assertRead413(o, `run ${i} (${i % 2 === 0 ? 'Content-Length' : 'chunked'})`);
      assert.equal(o.sentBytes, 8 * LIMIT, `run ${i}: the whole body was sent`);
    }
    const counted = /^canary_gate_webhook_requests_total\{decision="too_large"\} (\d+)$/m.exec(server.registry.expose())?.[1];
    assert.ok(Number(counted) >= 20, `too_large counted ${counted}`);
  });

  it('a client that keeps sending while it reads reads the 413, 20 times in a row', async () => {
    for (let i = 0; i < 20; i++) {
      const o = await send(port, ca, { ...base, bodyBytes: 6 * LIMIT, declareLength: i % 2 === 1, readWhileSending: true });
      assertRead413(o, `run ${i}`);
    }
  });

  it('a slow client (4x the limit over about 1.5 s) reads the 413', async () => {
    for (let i = 0; i < 3; i++) {
      const o = await send(port, ca, { ...base, bodyBytes: 4 * LIMIT, chunkBytes: 8 * 1024, delayMs: 45, declareLength: i !== 1, readWhileSending: i === 2 });
      assertRead413(o, `slow run ${i}`);
      assert.ok(o.elapsedMs > 1000, `slow run ${i} took ${Math.round(o.elapsedMs)} ms`);
    }
  });

  it('cuts off a body that never ends once it passes the drain bound in bytes', async () => {
    const o = await send(port, ca, { ...base, declareLength: false, readWhileSending: true });
    assert.equal(o.hitClientBound, false, `the server was still reading after ${o.sentBytes} bytes and ${Math.round(o.elapsedMs)} ms`);
    // What the client got rid of: the drain bound plus what socket buffers on both sides hold.
    assert.ok(o.sentBytes < DRAIN_BYTES + 16 * 1024 * 1024, `sent ${o.sentBytes} bytes before being cut off`);
    assert.ok(o.elapsedMs < DRAIN_MS, `cut off by bytes, not time: ${Math.round(o.elapsedMs)} ms`);
  });

  it('cuts off a slow body that never ends once the drain time has passed', async () => {
    const o = await send(port, ca, { ...base, chunkBytes: 4 * 1024, delayMs: 50, declareLength: false, readWhileSending: true, maxMs: DRAIN_MS + 6000 });
    assert.equal(o.hitClientBound, false, `the server was still reading after ${Math.round(o.elapsedMs)} ms`);
    assert.ok(o.elapsedMs >= DRAIN_MS, `cut off after ${Math.round(o.elapsedMs)} ms, before the drain time`);
    // It did read the answer, which went out before the drain began.
    assert.equal(o.status, 413);
  });
});
