// Webhook gates against real HTTP servers on 127.0.0.1: the status decides,
// timeouts and network errors fail, retries happen on transient failures,
// rollback hooks say "roll back" with a 2xx, and messages never leak secrets.

import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { CanaryWebhook } from '../../core/api/types.js';
import { redactUrl, runGates, sendEvent, type GateContext } from '../../reconciler/analysis/gates.js';

interface Received {
  method: string;
  url: string;
  headers: IncomingMessage['headers'];
  body: unknown;
}

interface TestServer {
  base: string;
  port: number;
  received: Received[];
  close(): Promise<void>;
}

/** A server whose `answer` decides each response; it records every request. */
async function serve(answer: (req: Received, n: number, res: ServerResponse) => void): Promise<TestServer> {
  const received: Received[] = [];
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const text = Buffer.concat(chunks).toString('utf8');
      let body: unknown = text;
      try {
        body = JSON.parse(text);
      } catch {
        // keep the text
      }
      const r: Received = { method: req.method ?? '', url: req.url ?? '', headers: req.headers, body };
      received.push(r);
      answer(r, received.length, res);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    base: `http://127.0.0.1:${port}`,
    port,
    received,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

function status(code: number, body = ''): (r: Received, n: number, res: ServerResponse) => void {
  return (_r, _n, res) => {
    res.writeHead(code, { 'content-type': 'text/plain' });
    res.end(body);
  };
}

/** A port nothing listens on. */
async function closedPort(): Promise<number> {
  const s = await serve(status(200));
  await s.close();
  return s.port;
}

const context: GateContext = {
  name: 'web',
  namespace: 'shop',
  phase: 'Progressing',
  revision: 'a1b2c3d4e5f6',
  canaryWeight: 20,
  step: 2,
  iterations: 0,
  failedChecks: 1,
};

const fast = { backoffMs: 10 };

describe('webhook gates', () => {
  const servers: TestServer[] = [];
  async function server(answer: Parameters<typeof serve>[0]): Promise<TestServer> {
    const s = await serve(answer);
    servers.push(s);
    return s;
  }
  afterEach(async () => {
    await Promise.all(servers.splice(0).map((s) => s.close()));
  });

  it('passes on 200, 201 and 202', async () => {
    for (const code of [200, 201, 202]) {
      const s = await server(status(code));
      const [r] = await runGates([{ name: 'load-test', type: 'rollout', url: `${s.base}/check` }], context, fast);
      assert.equal(r?.passed, true, `HTTP ${code}`);
      assert.equal(r?.kind, 'gate');
      assert.equal(r?.gateType, 'rollout');
      assert.equal(r?.name, 'load-test');
    }
  });

  it('fails on 500 with a message naming the hook, the host and the status', async () => {
    const s = await server(status(500, 'database   is\n down'));
    const [r] = await runGates([{ name: 'smoke', url: `${s.base}/smoke` }], context, fast);
    assert.equal(r?.passed, false);
    assert.equal(r?.gateType, 'rollout', 'type defaults to rollout');
    assert.match(r!.message, /smoke/);
    assert.ok(r!.message.includes(`127.0.0.1:${s.port}`), r!.message);
    assert.match(r!.message, /HTTP 500/);
    assert.match(r!.message, /database is down/);
  });

  it('fails on 204 and on a redirect (not followed)', async () => {
    const s = await server((req, _n, res) => {
      if (req.url === '/nocontent') {
        res.writeHead(204);
        res.end();
      } else {
        res.writeHead(302, { location: 'http://example.com/' });
        res.end();
      }
    });
    const [a, b] = await runGates(
      [
        { name: 'a', url: `${s.base}/nocontent` },
        { name: 'b', url: `${s.base}/redirect` },
      ],
      context,
      fast,
    );
    assert.equal(a?.passed, false);
    assert.equal(b?.passed, false);
    assert.equal(s.received.length, 2);
  });

  it('cuts a long response body to a short snippet', async () => {
    const s = await server(status(400, `${'x'.repeat(5000)}SECRET-AT-THE-END`));
    const [r] = await runGates([{ name: 'long', url: s.base }], context, fast);
    assert.equal(r?.passed, false);
    assert.ok(r!.message.length < 300, r!.message);
    assert.ok(!r!.message.includes('SECRET-AT-THE-END'));
  });

  it('fails a hook that answers after its timeout', async () => {
    const s = await server((_r, _n, res) => {
      setTimeout(() => {
        res.writeHead(200);
        res.end();
      }, 1000);
    });
    const t0 = Date.now();
    const [r] = await runGates([{ name: 'slow', url: s.base, timeout: '150ms' }], context, fast);
    assert.equal(r?.passed, false);
    assert.match(r!.message, /timed out after 150ms/);
    assert.ok(Date.now() - t0 < 900, 'did not wait for the answer');
  });

  it('retries and passes when the second attempt succeeds', async () => {
    const s = await server((_r, n, res) => {
      res.writeHead(n === 1 ? 503 : 200);
      res.end();
    });
    const [r] = await runGates([{ name: 'flaky', url: s.base, retries: 2 }], context, fast);
    assert.equal(r?.passed, true);
    assert.equal(s.received.length, 2);
  });

  it('gives up after the retries, saying how many attempts were made', async () => {
    const s = await server(status(500));
    const [r] = await runGates([{ name: 'down', url: s.base, retries: 2 }], context, fast);
    assert.equal(r?.passed, false);
    assert.equal(s.received.length, 3);
    assert.match(r!.message, /after 3 attempts/);
  });

  it('does not retry a deliberate refusal (4xx)', async () => {
    const s = await server(status(403));
    const [r] = await runGates([{ name: 'policy', url: s.base, retries: 3 }], context, fast);
    assert.equal(r?.passed, false);
    assert.equal(s.received.length, 1);
  });

  it('fails on connection refused, with the reason', async () => {
    const port = await closedPort();
    const [r] = await runGates([{ name: 'gone', url: `http://127.0.0.1:${port}/x`, retries: 1 }], context, fast);
    assert.equal(r?.passed, false);
    assert.match(r!.message, /connection refused/);
    assert.ok(r!.message.includes(`127.0.0.1:${port}`));
  });

  it('fails on an invalid URL without echoing it', async () => {
    const [r] = await runGates([{ name: 'bad', url: 'ftp://user:hunter2@files.example.com/x' }], context, fast);
    assert.equal(r?.passed, false);
    assert.ok(!r!.message.includes('hunter2'));
  });

  it('rollback hooks: passed means "roll back" (2xx); errors and refusals never roll back', async () => {
    const yes = await server(status(200));
    const no = await server(status(404));
    const port = await closedPort();
    const hooks: CanaryWebhook[] = [
      { name: 'yes', type: 'rollback', url: yes.base },
      { name: 'no', type: 'rollback', url: no.base },
      { name: 'down', type: 'rollback', url: `http://127.0.0.1:${port}` },
    ];
    const [y, n, d] = await runGates(hooks, context, fast);
    assert.deepEqual([y?.passed, n?.passed, d?.passed], [true, false, false]);
    assert.ok(hooks.every((_h, i) => [y, n, d][i]?.gateType === 'rollback'));
    assert.match(y!.message, /asked for a rollback/);
    assert.match(n!.message, /did not ask for a rollback/);
  });

  it('keeps user info, paths and query strings out of messages; sends user info as Basic auth', async () => {
    const s = await server(status(500));
    const url = `http://ci-bot:s3cr3t-pass@127.0.0.1:${s.port}/hooks/abc?token=sup3r-secret`;
    const [r] = await runGates([{ name: 'ci', url }], context, fast);
    assert.equal(r?.passed, false);
    for (const secret of ['s3cr3t-pass', 'ci-bot', 'sup3r-secret', 'token=', '/hooks/abc']) assert.ok(!r!.message.includes(secret), `${secret} in: ${r!.message}`);
    assert.equal(s.received[0]?.headers.authorization, `Basic ${Buffer.from('ci-bot:s3cr3t-pass').toString('base64')}`);
    assert.equal(s.received[0]?.url, '/hooks/abc?token=sup3r-secret', 'the query still reaches the hook');
    assert.equal(redactUrl(url), `http://127.0.0.1:${s.port}/hooks/abc`);
  });

  it('POSTs the payload: rollout progress, the hook type and metadata', async () => {
    const s = await server(status(200));
    await runGates([{ name: 'load-test', type: 'pre-rollout', url: `${s.base}/gate`, metadata: { cmd: 'hey -z 1m http://web-canary/' } }], context, fast);
    const req = s.received[0]!;
    assert.equal(req.method, 'POST');
    assert.match(String(req.headers['content-type']), /application\/json/);
    assert.deepEqual(req.body, {
      name: 'web',
      namespace: 'shop',
      phase: 'Progressing',
      revision: 'a1b2c3d4e5f6',
      canaryWeight: 20,
      step: 2,
      iterations: 0,
      failedChecks: 1,
      type: 'pre-rollout',
      metadata: { cmd: 'hey -z 1m http://web-canary/' },
    });
  });

  it('runs the hooks of a round concurrently and returns results in hook order', async () => {
    const s = await server((req, _n, res) => {
      setTimeout(
        () => {
          res.writeHead(req.url === '/b' ? 500 : 200);
          res.end();
        },
        req.url === '/a' ? 300 : 50,
      );
    });
    const t0 = Date.now();
    const results = await runGates(
      [
        { name: 'a', url: `${s.base}/a` },
        { name: 'b', url: `${s.base}/b` },
        { name: 'c', url: `${s.base}/c` },
      ],
      context,
      fast,
    );
    assert.ok(Date.now() - t0 < 600, 'concurrent');
    assert.deepEqual(
      results.map((r) => [r.name, r.passed]),
      [
        ['a', true],
        ['b', false],
        ['c', true],
      ],
    );
  });

  it('confirmation gates that refuse are reported as not approved', async () => {
    const s = await server(status(403));
    const [r] = await runGates([{ name: 'approve', type: 'confirm-promotion', url: s.base }], context, fast);
    assert.equal(r?.passed, false);
    assert.match(r!.message, /did not approve/);
  });

  it('sendEvent posts the event, never throws, even when the hook is down', async () => {
    const s = await server(status(200));
    await sendEvent({ name: 'slack-relay', type: 'event', url: s.base }, { ...context, reason: 'Started', message: 'new revision' });
    assert.equal((s.received[0]?.body as { type: string }).type, 'event');
    assert.equal((s.received[0]?.body as { reason: string }).reason, 'Started');
    const port = await closedPort();
    await sendEvent([{ name: 'down', url: `http://127.0.0.1:${port}` }], context);
    await sendEvent({ name: 'bad', url: 'not a url' }, context);
  });
});
