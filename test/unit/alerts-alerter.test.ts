// The Alerter: severity filtering, provider resolution, timeout and one
// retry, never throwing, counters, and secrets never in logs or reasons;
// plus the mapping from the reconciler's event reasons to alerts.

import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { AlertProvider, AlertSeverity, Canary, CanaryAlert } from '../../core/api/types.js';
import { Registry } from '../../core/metrics.js';
import { admits, Alerter, type AlertLookups } from '../../reconciler/notify/alerts.js';
import { ALERT_RULES, alertForEvent } from '../../reconciler/notify/events.js';
import { EVENT_REASONS, EventReason, ROLLBACK_CAUSES, type RollbackCause } from '../../reconciler/decide/reasons.js';

async function receiver(answer: (n: number) => number | 'hang'): Promise<{ base: string; hits: () => number; close(): Promise<void> }> {
  let hits = 0;
  const server: Server = createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      hits++;
      const a = answer(hits);
      if (a === 'hang') return;
      res.writeHead(a, { 'content-type': 'text/plain' }).end(a >= 400 ? `error for ${req.url}` : 'ok');
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    base: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    hits: () => hits,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

function canaryWith(alerts: CanaryAlert[]): Canary {
  return {
    apiVersion: 'canarygate.dev/v1alpha1',
    kind: 'Canary',
    metadata: { name: 'shop', namespace: 'prod' },
    spec: { targetRef: { kind: 'Deployment', name: 'shop' }, service: { port: 80 }, analysis: { alerts } },
  };
}

function provider(namespace: string, name: string, spec: AlertProvider['spec']): AlertProvider {
  return { apiVersion: 'canarygate.dev/v1alpha1', kind: 'AlertProvider', metadata: { namespace, name }, spec };
}

class CapturingLogger {
  lines: string[] = [];
  warn(obj: object, msg: string): void {
    this.lines.push(`warn ${msg} ${JSON.stringify(obj)}`);
  }
  debug(obj: object, msg: string): void {
    this.lines.push(`debug ${msg} ${JSON.stringify(obj)}`);
  }
}

describe('alerts/alerter', function () {
  this.timeout(10_000);

  it('severity: info gets everything, warn gets warn+error, error only error', () => {
    const table: Array<[AlertSeverity | undefined, AlertSeverity, boolean]> = [
      [undefined, 'info', true],
      ['info', 'info', true],
      ['info', 'warn', true],
      ['info', 'error', true],
      ['warn', 'info', false],
      ['warn', 'warn', true],
      ['warn', 'error', true],
      ['error', 'info', false],
      ['error', 'warn', false],
      ['error', 'error', true],
    ];
    for (const [threshold, event, want] of table) assert.equal(admits(threshold, event), want, `${threshold} <- ${event}`);
  });

  it('fans out to the alerts whose severity admits the event; providerRef namespace defaults to the Canary\'s', async () => {
    const r = await receiver(() => 200);
    try {
      const providers = new Map([
        ['prod/local', provider('prod', 'local', { type: 'webhook', address: `${r.base}/local` })],
        ['shared/central', provider('shared', 'central', { type: 'webhook', address: `${r.base}/central` })],
      ]);
      const alerter = new Alerter({ provider: (ns, n) => providers.get(`${ns}/${n}`), secret: async () => undefined });
      const c = canaryWith([
        { name: 'all', providerRef: { name: 'local' } },
        { name: 'loud', severity: 'warn', providerRef: { name: 'central', namespace: 'shared' } },
        { name: 'pager', severity: 'error', providerRef: { name: 'central', namespace: 'shared' } },
      ]);
      const info = await alerter.send(c, { severity: 'info', reason: 'Started', message: 'rollout started' });
      assert.deepEqual(info.map((d) => [d.alert, d.provider, d.delivered]), [['all', 'prod/local', true]]);
      const warn = await alerter.send(c, { severity: 'warn', reason: 'CheckFailed', message: 'check failed' });
      assert.deepEqual(warn.map((d) => d.alert), ['all', 'loud']);
      const error = await alerter.send(c, { severity: 'error', reason: 'RolledBack', message: 'rolled back' });
      assert.deepEqual(error.map((d) => [d.alert, d.provider]), [['all', 'prod/local'], ['loud', 'shared/central'], ['pager', 'shared/central']]);
      assert.equal(r.hits(), 6);
      assert.deepEqual(alerter.stats(), { sent: { webhook: 6 }, failed: {} });
      assert.deepEqual(await alerter.send(canaryWith([]), { severity: 'error', reason: 'x', message: 'y' }), []);
    } finally {
      await r.close();
    }
  });

  it('retries once after a 5xx; not after a 4xx; counts sent and failed by type', async () => {
    let mode: 'flaky' | 'down' | 'bad' = 'flaky';
    const r = await receiver((n) => (mode === 'flaky' ? (n % 2 === 1 ? 503 : 200) : mode === 'down' ? 500 : 400));
    try {
      const registry = new Registry();
      const p = provider('prod', 'hook', { type: 'slack', address: `${r.base}/services/T0/B0/secret-path-token` });
      const log = new CapturingLogger();
      const alerter = new Alerter({ provider: () => p, secret: async () => undefined }, { registry, retryDelayMs: 10, logger: log });
      const c = canaryWith([{ name: 'a', providerRef: { name: 'hook' } }]);
      const [ok] = await alerter.send(c, { severity: 'info', reason: 'Started', message: 'm' });
      assert.deepEqual([ok!.delivered, ok!.attempts], [true, 2]);
      mode = 'down';
      const [down] = await alerter.send(c, { severity: 'info', reason: 'Started', message: 'm' });
      assert.deepEqual([down!.delivered, down!.attempts], [false, 2]);
      assert.match(down!.reason!, /^HTTP 500 Internal Server Error: error for \*\*\*$/);
      mode = 'bad';
      const before = r.hits();
      const [bad] = await alerter.send(c, { severity: 'info', reason: 'Started', message: 'm' });
      assert.deepEqual([bad!.delivered, bad!.attempts, r.hits() - before], [false, 1, 1]);
      assert.deepEqual(alerter.stats(), { sent: { slack: 1 }, failed: { slack: 2 } });
      const text = registry.expose();
      assert.match(text, /canary_gate_alerts_total\{type="slack",result="sent"\} 1/);
      assert.match(text, /canary_gate_alerts_total\{type="slack",result="failed"\} 2/);
      const all = log.lines.join('\n');
      assert.match(all, /alert not delivered/);
      assert.ok(!all.includes('secret-path-token') && !all.includes(r.base), `a log line leaks the address:\n${all}`);
    } finally {
      await r.close();
    }
  });

  it('times out a receiver that does not answer, and retries once', async () => {
    const r = await receiver(() => 'hang');
    try {
      const p = provider('prod', 'hook', { type: 'discord', address: `${r.base}/api/webhooks/1/tok` });
      const alerter = new Alerter({ provider: () => p, secret: async () => undefined }, { timeoutMs: 100, retryDelayMs: 10 });
      const [d] = await alerter.send(canaryWith([{ name: 'a', providerRef: { name: 'hook' } }]), { severity: 'info', reason: 'Started', message: 'm' });
      assert.deepEqual([d!.delivered, d!.attempts, d!.reason], [false, 2, 'timed out after 100ms']);
      assert.equal(r.hits(), 2);
    } finally {
      await r.close();
    }
  });

  it('never throws: missing provider, missing Secret, no address, broken lookups, unsupported proxy', async () => {
    const log = new CapturingLogger();
    const providers = new Map<string, AlertProvider>([
      ['prod/nosecret', provider('prod', 'nosecret', { type: 'slack', secretRef: { name: 'gone' } })],
      ['prod/noaddr', provider('prod', 'noaddr', { type: 'msteams', secretRef: { name: 'empty' } })],
      ['prod/boom', provider('prod', 'boom', { type: 'gchat', secretRef: { name: 'boom' } })],
      ['prod/proxied', provider('prod', 'proxied', { type: 'webhook', address: 'https://hooks.example/x', proxy: 'socks5://user:proxy-pw@proxy:1080' })],
    ]);
    const lookups: AlertLookups = {
      provider: (ns, n) => providers.get(`${ns}/${n}`),
      secret: async (_ns, n) => {
        if (n === 'boom') throw new Error('could not read Secret prod/boom: HTTP 403');
        return n === 'empty' ? {} : undefined;
      },
    };
    const alerter = new Alerter(lookups, { logger: log });
    const c = canaryWith(['missing', 'nosecret', 'noaddr', 'boom', 'proxied'].map((n) => ({ name: n, providerRef: { name: n } })));
    const out = await alerter.send(c, { severity: 'error', reason: 'RolledBack', message: 'm' });
    assert.deepEqual(
      out.map((d) => [d.alert, d.type, d.delivered, d.reason]),
      [
        ['missing', 'unknown', false, 'AlertProvider prod/missing not found'],
        ['nosecret', 'slack', false, 'Secret prod/gone not found'],
        ['noaddr', 'msteams', false, 'no address: set spec.address or the key "address" of the Secret'],
        ['boom', 'gchat', false, 'could not read Secret prod/boom: HTTP 403'],
        [
          'proxied',
          'webhook',
          false,
          'proxy scheme "socks5:" is not supported: use an http:// proxy (https targets are tunnelled through it with CONNECT)',
        ],
      ],
    );
    assert.equal(log.lines.filter((l) => l.startsWith('warn alert not delivered')).length, 5);
    assert.ok(!log.lines.join('\n').includes('proxy-pw'));
    const throwing = new Alerter({
      provider: () => {
        throw new Error('cache exploded');
      },
      secret: async () => undefined,
    });
    const [d] = await throwing.send(canaryWith([{ name: 'a', providerRef: { name: 'x' } }]), { severity: 'info', reason: 'Started', message: 'm' });
    assert.deepEqual([d!.delivered, d!.reason], [false, 'cache exploded']);
    assert.deepEqual(await throwing.send({ metadata: {} } as Canary, { severity: 'info', reason: 'Started', message: 'm' }), []);
  });

  it('never puts Secret values in a reason, even when the receiver echoes them', async () => {
    const token = 'xoxb-very-secret-token';
    const echo = createServer((req, res) => {
      res.writeHead(403).end(`rejected ${req.url} token=${token}`);
    });
    await new Promise<void>((resolve) => echo.listen(0, '127.0.0.1', resolve));
    try {
      const port = (echo.address() as AddressInfo).port;
      const p = provider('prod', 'hook', { type: 'rocket', secretRef: { name: 's' } });
      const log = new CapturingLogger();
      const alerter = new Alerter({ provider: () => p, secret: async () => ({ address: `http://127.0.0.1:${port}/hooks/abc/${token}`, token }) }, { logger: log });
      const [d] = await alerter.send(canaryWith([{ name: 'a', providerRef: { name: 'hook' } }]), { severity: 'info', reason: 'Started', message: 'm' });
      assert.equal(d!.delivered, false);
      assert.ok(!d!.reason!.includes(token), d!.reason);
      assert.ok(!log.lines.join('\n').includes(token));
    } finally {
      echo.closeAllConnections();
      await new Promise<void>((resolve) => echo.close(() => resolve()));
    }
  });
});

describe('alerts/alertForEvent', () => {
  it('maps the reconciler\'s reasons to severities and messages', () => {
    assert.deepEqual(alertForEvent({ reason: EventReason.Started, message: 'new revision abc detected; starting canary analysis', revision: 'abc' }), {
      severity: 'info',
      reason: 'Started',
      message: 'rollout started: new revision abc detected; starting canary analysis',
      revision: 'abc',
    });
    assert.equal(alertForEvent({ reason: EventReason.Succeeded, message: 'promotion of abc completed' })?.message, 'promoted: promotion of abc completed');
    assert.equal(alertForEvent({ reason: EventReason.Waiting, message: 'x' })?.message, 'waiting at a gate: x');
    assert.equal(alertForEvent({ reason: EventReason.WaitingPromotion, message: 'x' })?.severity, 'info');
    assert.equal(alertForEvent({ reason: EventReason.CheckFailed, message: 'check failed (1/5): metric m: ...' })?.severity, 'warn');
    assert.equal(alertForEvent({ reason: EventReason.WebhookBypassed, message: 'the live spec changed' })?.severity, 'error');
    assert.equal(alertForEvent({ reason: EventReason.PrimaryNotReady, message: 'x' })?.severity, 'error');
    assert.equal(alertForEvent({ reason: EventReason.WeightAdvanced, message: 'advance' }), undefined);
  });

  it('says why a revision was rolled back from the event\'s cause, whatever its message says', () => {
    const want: Record<RollbackCause, string> = {
      FailedChecks: 'rolled back: checks failed',
      ProgressDeadlineExceeded: 'rolled back: progress deadline exceeded',
      RollbackGate: 'rolled back by a rollback gate',
      Aborted: 'rolled back: aborted on request',
      SharedConfigFailed: 'rolled back: another consumer of a shared config failed',
    };
    for (const cause of ROLLBACK_CAUSES) {
      // A message that names another cause (a metric called "rollback-gate-latency", say) changes nothing.
      const message = 'rolling back abc: metric rollback-gate-latency did not become ready within 5s; aborted on request';
      const a = alertForEvent({ reason: EventReason.RolledBack, message, revision: 'abc', cause });
      assert.equal(a?.severity, 'error');
      assert.equal(a?.message, `${want[cause]}: ${message}`, cause);
      assert.deepEqual(a?.metadata, { cause });
    }
    assert.equal(new Set(ROLLBACK_CAUSES.map((cause) => alertForEvent({ reason: EventReason.RolledBack, message: '', cause })?.message)).size, ROLLBACK_CAUSES.length);
  });

  it('every event reason is either alerted or deliberately quiet, and the routine steps are quiet', () => {
    assert.ok(EVENT_REASONS.length >= 15);
    const quiet: string[] = [];
    for (const reason of EVENT_REASONS) {
      const rule = ALERT_RULES[reason];
      assert.ok(rule === 'quiet' || (rule && ['info', 'warn', 'error'].includes(rule.severity) && rule.summary), `reason ${reason} has no alert rule`);
      const alert = alertForEvent({ reason, message: 'm', revision: 'r' });
      assert.equal(alert === undefined, rule === 'quiet', reason);
      if (alert) assert.deepEqual([alert.reason, alert.revision], [reason, 'r']);
      else quiet.push(reason);
    }
    assert.deepEqual(quiet.sort(), ['Held', 'Holding', 'Initialized', 'Iteration', 'Joined', 'PromoteRequested', 'Promoting', 'PromotionStep', 'Resumed', 'Retry', 'Terminating', 'WeightAdvanced']);
  });
});
