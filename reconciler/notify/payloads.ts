// The message each alert receiver gets, in that service's incoming-webhook
// format. One Notification (what happened) is rendered per provider type:
//
//   slack    text + attachments (color by severity, fields), channel/username when set
//   msteams  an Adaptive Card in a "message" (Workflows webhooks and connectors)
//   discord  content + embeds (color by severity, fields); mentions disabled
//   rocket   text + attachments (Rocket.Chat's Slack-like format), channel/username
//   gchat    a cardsV2 card with a plain-text fallback (Google Chat)
//   webhook  the Notification itself as JSON

import type { AlertProviderType, AlertSeverity } from '../../core/api/types.js';

/** What a generic `webhook` receiver gets, field for field. */
export interface Notification {
  canary: { name: string; namespace: string };
  severity: AlertSeverity;
  /** The reconciler's event reason (Started, Succeeded, RolledBack, ...). */
  reason: string;
  message: string;
  revision: string;
  phase: string;
  weight: number;
  /** RFC 3339. */
  timestamp: string;
  metadata: Record<string, string>;
}

export interface PayloadOptions {
  channel?: string;
  username?: string;
}

export const SEVERITY_COLORS: Record<AlertSeverity, string> = { info: '#2eb886', warn: '#daa038', error: '#a30200' };
const TEAMS_COLORS: Record<AlertSeverity, string> = { info: 'Good', warn: 'Warning', error: 'Attention' };

export function payloadFor(type: AlertProviderType, n: Notification, opts: PayloadOptions = {}): unknown {
  switch (type) {
    case 'slack':
      return slackPayload(n, opts);
    case 'msteams':
      return teamsPayload(n);
    case 'discord':
      return discordPayload(n, opts);
    case 'rocket':
      return rocketPayload(n, opts);
    case 'gchat':
      return gchatPayload(n);
    case 'webhook':
      return n;
  }
}

function title(n: Notification): string {
  return `${n.canary.namespace}/${n.canary.name}: ${n.reason}`;
}

function facts(n: Notification): Array<[string, string]> {
  const out: Array<[string, string]> = [['Severity', n.severity]];
  if (n.revision) out.push(['Revision', n.revision]);
  if (n.phase) out.push(['Phase', n.phase]);
  out.push(['Canary weight', `${n.weight}%`]);
  return out;
}

/** Slack and Rocket.Chat markup: only &, < and > need escaping. */
function escapeMrkdwn(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

function cut(s: string, max: number): string {
  return s.length > max ? `${s.slice(0, max - 1)}…` : s;
}

export function slackPayload(n: Notification, opts: PayloadOptions = {}): Record<string, unknown> {
  return {
    ...(opts.channel ? { channel: opts.channel } : {}),
    ...(opts.username ? { username: opts.username } : {}),
    text: `*${escapeMrkdwn(title(n))}*`,
    attachments: [
      {
        color: SEVERITY_COLORS[n.severity],
        fallback: `${title(n)}: ${n.message}`,
        text: escapeMrkdwn(n.message),
        fields: facts(n).map(([t, v]) => ({ title: t, value: escapeMrkdwn(v), short: true })),
        footer: 'canary-gate',
        ts: Math.floor(Date.parse(n.timestamp) / 1000),
        mrkdwn_in: ['text'],
      },
    ],
  };
}

export function teamsPayload(n: Notification): Record<string, unknown> {
  return {
    type: 'message',
    attachments: [
      {
        contentType: 'application/vnd.microsoft.card.adaptive',
        contentUrl: null,
        content: {
          $schema: 'http://adaptivecards.io/schemas/adaptive-card.json',
          type: 'AdaptiveCard',
          version: '1.4',
          msteams: { width: 'Full' },
          body: [
            { type: 'TextBlock', text: title(n), weight: 'Bolder', size: 'Medium', color: TEAMS_COLORS[n.severity], wrap: true },
            { type: 'TextBlock', text: n.message, wrap: true },
            { type: 'FactSet', facts: facts(n).map(([t, v]) => ({ title: t, value: v })) },
          ],
        },
      },
    ],
  };
}

export function discordPayload(n: Notification, opts: PayloadOptions = {}): Record<string, unknown> {
  return {
    ...(opts.username ? { username: cut(opts.username, 80) } : {}),
    content: cut(`**${title(n)}**`, 2000),
    embeds: [
      {
        title: cut(title(n), 256),
        description: cut(n.message, 4096),
        color: parseInt(SEVERITY_COLORS[n.severity].slice(1), 16),
        fields: facts(n).map(([t, v]) => ({ name: t, value: cut(v || '-', 1024), inline: true })),
        timestamp: n.timestamp,
        footer: { text: 'canary-gate' },
      },
    ],
    // A message quoting "@everyone" from an event must not ping anyone.
    allowed_mentions: { parse: [] },
  };
}

export function rocketPayload(n: Notification, opts: PayloadOptions = {}): Record<string, unknown> {
  return {
    ...(opts.channel ? { channel: opts.channel } : {}),
    ...(opts.username ? { username: opts.username } : {}),
    text: `*${escapeMrkdwn(title(n))}*`,
    attachments: [
      {
        color: SEVERITY_COLORS[n.severity],
        text: escapeMrkdwn(n.message),
        fields: facts(n).map(([t, v]) => ({ title: t, value: v, short: true })),
        ts: n.timestamp,
      },
    ],
  };
}

/** Google Chat card text takes a little HTML: escape the rest. */
function escapeHtml(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

export function gchatPayload(n: Notification): Record<string, unknown> {
  return {
    fallbackText: cut(`${title(n)}: ${n.message}`, 4000),
    cardsV2: [
      {
        cardId: 'canary-gate',
        card: {
          header: { title: `${n.canary.namespace}/${n.canary.name}`, subtitle: `${n.severity}: ${n.reason}` },
          sections: [
            {
              widgets: [
                { textParagraph: { text: `<font color="${SEVERITY_COLORS[n.severity]}"><b>${escapeHtml(n.reason)}</b></font> ${escapeHtml(n.message)}` } },
                ...facts(n).map(([t, v]) => ({ decoratedText: { topLabel: t, text: escapeHtml(v) } })),
              ],
            },
          ],
        },
      },
    ],
  };
}
