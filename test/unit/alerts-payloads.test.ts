// What each alert receiver gets, as its documented incoming-webhook format,
// asserted on the JSON a local receiver on 127.0.0.1 got.

import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { AlertProvider, AlertProviderSpec, Canary } from '../../core/api/types.js';
import { Alerter } from '../../reconciler/notify/alerts.js';

interface Got {
  path: string;
  headers: IncomingMessage['headers'];
  body: Record<string, unknown>;
}

async function receiver(status = 200): Promise<{ base: string; got: Got[]; close(): Promise<void> }> {
  const got: Got[] = [];
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      got.push({ path: req.url ?? '', headers: req.headers, body: JSON.parse(Buffer.concat(chunks).toString('utf8')) as Record<string, unknown> });
      res.writeHead(status, { 'content-type': 'text/plain' }).end(status === 204 ? undefined : 'ok');
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    base: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    got,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

const canary: Canary = {
  apiVersion: 'canarygate.dev/v1alpha1',
  kind: 'Canary',
  metadata: { name: 'shop', namespace: 'prod' },
  spec: {
    targetRef: { kind: 'Deployment', name: 'shop' },
    service: { port: 80 },
    analysis: { alerts: [{ name: 'team', severity: 'info', providerRef: { name: 'chat' } }] },
  },
  status: { phase: 'Progressing', canaryWeight: 20, pendingRevision: 'abc123' },
};

const NOW = Date.parse('2025-03-01T12:00:00Z');

async function deliver(spec: AlertProviderSpec, secret?: Record<string, string>, status = 200): Promise<Got> {
  const r = await receiver(status);
  try {
    const provider: AlertProvider = { apiVersion: 'canarygate.dev/v1alpha1', kind: 'AlertProvider', metadata: { namespace: 'prod', name: 'chat' }, spec };
    const withAddress = secret ? { ...secret, address: `${r.base}${secret.address}` } : undefined;
    if (!secret) spec.address = `${r.base}${spec.address ?? '/hook'}`;
    const alerter = new Alerter({ provider: (ns, n) => (ns === 'prod' && n === 'chat' ? provider : undefined), secret: async () => withAddress, now: () => NOW });
    const [d] = await alerter.send(canary, { severity: 'error', reason: 'RolledBack', message: 'rolled back: checks failed: metric error-rate <high> & rising' });
    assert.equal(d?.delivered, true, d?.reason);
    assert.equal(r.got.length, 1);
    assert.match(String(r.got[0]!.headers['content-type']), /^application\/json/);
    return r.got[0]!;
  } finally {
    await r.close();
  }
}

const MSG = 'rolled back: checks failed: metric error-rate <high> & rising';

describe('alerts/payloads', () => {
  it('slack: text + a colored attachment with fields; channel and username when set', async () => {
    const got = await deliver({ type: 'slack', channel: '#deploys', username: 'canary-gate' });
    assert.deepEqual(got.body, {
      channel: '#deploys',
      username: 'canary-gate',
      text: '*prod/shop: RolledBack*',
      attachments: [
        {
          color: '#a30200',
          fallback: `prod/shop: RolledBack: ${MSG}`,
          text: 'rolled back: checks failed: metric error-rate &lt;high&gt; &amp; rising',
          fields: [
            { title: 'Severity', value: 'error', short: true },
            { title: 'Revision', value: 'abc123', short: true },
            { title: 'Phase', value: 'Progressing', short: true },
            { title: 'Canary weight', value: '20%', short: true },
          ],
          footer: 'canary-gate',
          ts: NOW / 1000,
          mrkdwn_in: ['text'],
        },
      ],
    });
  });

  it('slack without channel/username sends neither', async () => {
    const got = await deliver({ type: 'slack' });
    assert.ok(!('channel' in got.body) && !('username' in got.body));
  });

  it('msteams: an Adaptive Card message', async () => {
    const got = await deliver({ type: 'msteams' });
    const attachments = got.body.attachments as Array<Record<string, unknown>>;
    assert.equal(got.body.type, 'message');
    assert.equal(attachments.length, 1);
    assert.equal(attachments[0]!.contentType, 'application/vnd.microsoft.card.adaptive');
    const card = attachments[0]!.content as { type: string; version: string; body: Array<Record<string, unknown>> };
    assert.equal(card.type, 'AdaptiveCard');
    assert.equal(card.version, '1.4');
    assert.deepEqual(card.body[0], { type: 'TextBlock', text: 'prod/shop: RolledBack', weight: 'Bolder', size: 'Medium', color: 'Attention', wrap: true });
    assert.deepEqual(card.body[1], { type: 'TextBlock', text: MSG, wrap: true });
    assert.deepEqual(card.body[2], {
      type: 'FactSet',
      facts: [
        { title: 'Severity', value: 'error' },
        { title: 'Revision', value: 'abc123' },
        { title: 'Phase', value: 'Progressing' },
        { title: 'Canary weight', value: '20%' },
      ],
    });
  });

  it('discord: content + an embed with an integer color; mentions disabled; 204 is success', async () => {
    const got = await deliver({ type: 'discord', username: 'canary-gate' }, undefined, 204);
    assert.deepEqual(got.body, {
      username: 'canary-gate',
      content: '**prod/shop: RolledBack**',
      embeds: [
        {
          title: 'prod/shop: RolledBack',
          description: MSG,
          color: 0xa30200,
          fields: [
            { name: 'Severity', value: 'error', inline: true },
            { name: 'Revision', value: 'abc123', inline: true },
            { name: 'Phase', value: 'Progressing', inline: true },
            { name: 'Canary weight', value: '20%', inline: true },
          ],
          timestamp: '2025-03-01T12:00:00.000Z',
          footer: { text: 'canary-gate' },
        },
      ],
      allowed_mentions: { parse: [] },
    });
  });

  it('rocket: text + attachments, channel and username', async () => {
    const got = await deliver({ type: 'rocket', channel: '#ops', username: 'gate' });
    assert.equal(got.body.channel, '#ops');
    assert.equal(got.body.username, 'gate');
    assert.equal(got.body.text, '*prod/shop: RolledBack*');
    const [a] = got.body.attachments as Array<Record<string, unknown>>;
    assert.equal(a!.color, '#a30200');
    assert.equal(a!.text, 'rolled back: checks failed: metric error-rate &lt;high&gt; &amp; rising');
    assert.deepEqual((a!.fields as unknown[])[1], { title: 'Revision', value: 'abc123', short: true });
  });

  it('gchat: a cardsV2 card with a fallback text; HTML escaped', async () => {
    const got = await deliver({ type: 'gchat' });
    assert.equal(got.body.fallbackText, `prod/shop: RolledBack: ${MSG}`);
    const [c] = got.body.cardsV2 as Array<{ cardId: string; card: { header: unknown; sections: Array<{ widgets: Array<Record<string, unknown>> }> } }>;
    assert.equal(c!.cardId, 'canary-gate');
    assert.deepEqual(c!.card.header, { title: 'prod/shop', subtitle: 'error: RolledBack' });
    const widgets = c!.card.sections[0]!.widgets;
    assert.deepEqual(widgets[0], {
      textParagraph: { text: '<font color="#a30200"><b>RolledBack</b></font> rolled back: checks failed: metric error-rate &lt;high&gt; &amp; rising' },
    });
    assert.deepEqual(widgets[2], { decoratedText: { topLabel: 'Revision', text: 'abc123' } });
  });

  it('webhook: the generic JSON document, to the address from the Secret (which wins)', async () => {
    const got = await deliver({ type: 'webhook', address: 'http://127.0.0.1:1/never', secretRef: { name: 'hook' } }, { address: '/from-secret?token=t0ken-123' });
    assert.equal(got.path, '/from-secret?token=t0ken-123');
    assert.deepEqual(got.body, {
      canary: { name: 'shop', namespace: 'prod' },
      severity: 'error',
      reason: 'RolledBack',
      message: MSG,
      revision: 'abc123',
      phase: 'Progressing',
      weight: 20,
      timestamp: '2025-03-01T12:00:00.000Z',
      metadata: {},
    });
  });
});
