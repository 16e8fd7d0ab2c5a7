// The load tester's HTTP server: a Canary's gate webhooks POST their payload
// here. `metadata.type: load` starts HTTP load in the background (one run per
// canary, revision and URL at a time) and answers at once; `acceptance` runs
// one request now and answers 200 only if it got the expected status and body,
// so as a `pre-rollout` gate it blocks the rollout until the canary answers
// right. Shell commands are never run.

import http from 'node:http';
import type { Logger } from 'pino';
import { acceptanceSpec, loadSpec, runAcceptance, runLoad, SpecError, type Limits, type LoadResult, type LoadSpec } from './load.js';

export interface Run {
  id: number;
  key: string;
  canary: string;
  url: string;
  rate: number;
  concurrency: number;
  durationMs: number;
  startedAt: string;
  finishedAt?: string;
  result?: LoadResult;
}

export interface LoadTesterOptions {
  limits: Limits;
  maxRuns: number;
  log: Logger;
  maxBodyBytes?: number;
}

interface GatePayload {
  name?: string;
  namespace?: string;
  phase?: string;
  revision?: string;
  metadata?: Record<string, unknown>;
}

export class LoadTester {
  readonly server: http.Server;
  private readonly running = new Map<string, { run: Run; abort: AbortController; done: Promise<void> }>();
  private readonly finished: Run[] = [];
  private nextId = 1;

  constructor(private readonly opts: LoadTesterOptions) {
    this.server = http.createServer((req, res) => void this.handle(req, res));
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const send = (status: number, body: unknown) => {
      res.writeHead(status, { 'content-type': 'application/json' }).end(`${JSON.stringify(body)}\n`);
    };
    const url = (req.url ?? '/').split('?')[0];
    if (req.method === 'GET' && url === '/healthz') return send(200, { ok: true });
    if (req.method === 'GET' && url === '/runs') return send(200, { running: [...this.running.values()].map((r) => r.run), finished: this.finished });
    if (req.method !== 'POST' || (url !== '/' && url !== '/gate')) return send(404, { error: 'POST a gate payload to / (GET /runs lists the runs)' });

    const limit = this.opts.maxBodyBytes ?? 65_536;
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const c of req as AsyncIterable<Buffer>) {
      size += c.length;
      if (size > limit) return send(413, { error: `payload over ${limit} bytes` });
      chunks.push(c);
    }
    let payload: GatePayload;
    try {
      payload = JSON.parse(Buffer.concat(chunks).toString('utf8')) as GatePayload;
      if (!payload || typeof payload !== 'object') throw new Error('not an object');
    } catch {
      return send(400, { error: 'the body must be a JSON gate payload' });
    }
    const meta = Object.fromEntries(Object.entries(payload.metadata ?? {}).map(([k, v]) => [k, String(v)]));
    const canary = `${payload.namespace ?? ''}/${payload.name ?? ''}`;
    const log = this.opts.log.child({ canary, revision: payload.revision, phase: payload.phase });
    if (meta.cmd !== undefined) {
      log.warn('refused a shell command');
      return send(400, { error: 'shell commands are not run by this load tester; use metadata.type load or acceptance' });
    }
    const type = meta.type ?? 'load';
    try {
      if (type === 'acceptance') {
        const spec = acceptanceSpec(meta, this.opts.limits);
        const result = await runAcceptance(spec);
        log.info({ url: spec.url.href, passed: result.passed, status: result.status, ms: result.ms }, `acceptance ${result.passed ? 'passed' : 'failed'}: ${result.reason}`);
        return send(result.passed ? 200 : 500, result);
      }
      if (type === 'load') {
        const spec = loadSpec(meta, this.opts.limits);
        const key = `${canary}/${payload.revision ?? ''}/${spec.url.href}`;
        const current = this.running.get(key);
        if (current) return send(200, { running: true, run: current.run });
        if (this.running.size >= this.opts.maxRuns) return send(503, { error: `${this.opts.maxRuns} load runs already running (--max-runs)` });
        const run = this.start(key, canary, spec, log);
        return send(200, { started: true, run });
      }
      return send(400, { error: `metadata.type must be load or acceptance, got "${type}"` });
    } catch (err) {
      if (err instanceof SpecError) return send(400, { error: err.message });
      log.error({ err }, 'gate request failed');
      return send(500, { error: err instanceof Error ? err.message : String(err) });
    }
  }

  private start(key: string, canary: string, spec: LoadSpec, log: Logger): Run {
    const run: Run = { id: this.nextId++, key, canary, url: spec.url.href, rate: spec.rate, concurrency: spec.concurrency, durationMs: spec.durationMs, startedAt: new Date().toISOString() };
    const abort = new AbortController();
    log.info({ run: run.id, url: run.url, rate: run.rate, concurrency: run.concurrency, durationMs: run.durationMs }, 'load started');
    const done = runLoad(spec, abort.signal, (p) => {
      run.result = p;
      log.info({ run: run.id, sent: p.sent, failed: p.failed, statuses: p.statuses }, 'load progress');
    }).then((result) => {
      run.result = result;
      run.finishedAt = new Date().toISOString();
      this.running.delete(key);
      this.finished.push(run);
      if (this.finished.length > 50) this.finished.shift();
      log.info({ run: run.id, ...result }, 'load finished');
    });
    this.running.set(key, { run, abort, done });
    return run;
  }

  listen(port: number, host: string): Promise<number> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(port, host, () => resolve((this.server.address() as { port: number }).port));
    });
  }

  /** Stops every run and the server. */
  async close(): Promise<void> {
    for (const r of this.running.values()) r.abort.abort();
    await Promise.all([...this.running.values()].map((r) => r.done));
    this.server.closeAllConnections();
    await new Promise<void>((r) => this.server.close(() => r()));
  }
}
