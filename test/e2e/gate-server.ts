// A local HTTP server that plays the webhook gates of a Canary: the test
// decides what each gate answers and reads back what the reconciler sent.

import http from 'node:http';
import type { AddressInfo } from 'node:net';

export interface GateCall {
  path: string;
  body: Record<string, unknown>;
  at: number;
}

export class GateServer {
  private server?: http.Server;
  private readonly answers = new Map<string, number>();
  private readonly passes = new Map<string, number>();
  readonly calls: GateCall[] = [];
  port = 0;

  async start(port = 0): Promise<this> {
    this.server = http.createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const path = (req.url ?? '/').replace(/^\//, '');
        let body: Record<string, unknown> = {};
        try {
          body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as Record<string, unknown>;
        } catch {
          /* recorded as empty */
        }
        this.calls.push({ path, body, at: Date.now() });
        const passes = this.passes.get(path) ?? 0;
        if (passes > 0) this.passes.set(path, passes - 1);
        const status = passes > 0 ? 200 : (this.answers.get(path) ?? 200);
        res.writeHead(status, { 'content-type': 'text/plain' }).end(status < 300 ? 'ok' : 'no');
      });
    });
    await new Promise<void>((r) => this.server?.listen(port, '127.0.0.1', r));
    this.port = (this.server.address() as AddressInfo).port;
    return this;
  }

  url(path: string): string {
    return `http://127.0.0.1:${this.port}/${path}`;
  }

  /** What the gate at `path` answers from now on (default 200). */
  answer(path: string, status: number): void {
    this.answers.set(path, status);
  }

  /** The next `times` calls to `path` pass (200), whatever it answers otherwise. */
  allow(path: string, times = 1): void {
    this.passes.set(path, (this.passes.get(path) ?? 0) + times);
  }

  callsTo(path: string): GateCall[] {
    return this.calls.filter((c) => c.path === path);
  }

  async stop(): Promise<void> {
    await new Promise<void>((r) => (this.server ? this.server.close(() => r()) : r()));
  }
}
