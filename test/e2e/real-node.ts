// The real node of the local cluster (test/cluster/node-up.sh): podinfo
// manifests that schedule onto it, and real HTTP requests to a Service's
// ClusterIP, which kube-proxy's iptables rules DNAT to the Pods on the bridge
// this run created. Every request loop is bounded in count and in time.

import { readFileSync } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { kubectl, repoRoot } from './cluster.js';

export const REAL_NODE = 'canary-gate-node';

function versions(): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of readFileSync(path.join(repoRoot, 'test/cluster/versions.env'), 'utf8').split('\n')) {
    const m = /^([A-Z_]+)=(.*)$/.exec(line.trim());
    if (m) out[m[1]!] = m[2]!;
  }
  return out;
}
const v = versions();
/** podinfo's own version (what `/api/info` reports as `version`). */
export const PODINFO_VERSION = v.PODINFO_APP_VERSION ?? '';
/** The two local podinfo images: same build, `message` "podinfo <version>-a" or "-b". */
export const podinfoImage = (tag: 'a' | 'b') => `${v.PODINFO_IMAGE}:${PODINFO_VERSION}-${tag}`;

/** Fails with the reason when the real node is not there and Ready (never a silent skip). */
export async function assertRealNodeReady(): Promise<void> {
  const r = await kubectl(['get', 'node', REAL_NODE, '-o', 'jsonpath={.status.conditions[?(@.type=="Ready")].status}'], { timeoutMs: 10_000 });
  if (r.code !== 0 || r.stdout !== 'True') {
    throw new Error(`the real node ${REAL_NODE} is not Ready (${r.stderr.trim() || r.stdout || 'no status'}); see .cluster/logs/kubelet.log and containerd.log`);
  }
}

/** A podinfo Deployment on the real node. */
export function podinfoDeployment(name: string, opts: { tag: 'a' | 'b'; replicas?: number; args?: string[] }) {
  return {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name },
    spec: {
      replicas: opts.replicas ?? 2,
      selector: { matchLabels: { app: name } },
      strategy: { rollingUpdate: { maxUnavailable: 0, maxSurge: 1 } },
      template: {
        metadata: { labels: { app: name }, annotations: { 'prometheus.io/scrape': 'true', 'prometheus.io/port': '9797' } },
        spec: {
          nodeSelector: { 'canarygate.dev/node': 'real' },
          tolerations: [{ key: 'canarygate.dev/real-node', operator: 'Equal', value: 'true', effect: 'NoSchedule' }],
          automountServiceAccountToken: false,
          enableServiceLinks: false,
          terminationGracePeriodSeconds: 20,
          containers: [
            {
              name: 'podinfo',
              image: podinfoImage(opts.tag),
              imagePullPolicy: 'Never',
              // Out of the Service's endpoints (kube-proxy's rules) before podinfo closes its listener.
              lifecycle: { preStop: { sleep: { seconds: 5 } } },
              args: ['--port=9898', '--port-metrics=9797', '--level=info', ...(opts.args ?? [])],
              ports: [
                { name: 'http', containerPort: 9898 },
                { name: 'http-metrics', containerPort: 9797 },
              ],
              // podinfo --random-error fails a third of the probes too: five in a row before unready.
              readinessProbe: { httpGet: { path: '/readyz', port: 'http' }, periodSeconds: 1, failureThreshold: 5 },
              resources: { requests: { cpu: '10m', memory: '32Mi' } },
            },
          ],
        },
      },
    },
  };
}

export async function clusterIP(ns: string, service: string): Promise<string> {
  const r = await kubectl(['-n', ns, 'get', 'service', service, '-o', 'jsonpath={.spec.clusterIP}']);
  if (r.code !== 0 || !r.stdout) throw new Error(`service ${ns}/${service} has no ClusterIP: ${r.stderr}`);
  return r.stdout;
}

export interface Answer {
  at: number;
  /** HTTP status, or 0 when the request failed before an answer. */
  status: number;
  /** The Pod that answered (podinfo's `hostname`). */
  pod?: string;
  /** podinfo's `message`: which image answered. */
  message?: string;
  error?: string;
  /** For an answer that is not podinfo's JSON: its Server header and the start of its body, to tell who answered. */
  other?: string;
}

/**
 * One GET on a fresh connection (no keep-alive), so that kube-proxy picks an
 * endpoint for every request, as it does for every new connection.
 */
export function getInfo(ip: string, port = 80, timeoutMs = 3000): Promise<Answer> {
  return new Promise((resolve) => {
    const req = http.request({ host: ip, port, path: '/api/info', method: 'GET', agent: false, timeout: timeoutMs, headers: { connection: 'close' } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const answer: Answer = { at: Date.now(), status: res.statusCode ?? 0 };
        try {
          const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as { hostname?: string; message?: string };
          answer.pod = body.hostname;
          answer.message = body.message;
        } catch {
          // Not podinfo's JSON (its random errors have no body): keep enough to say who answered.
          const body = Buffer.concat(chunks).toString('utf8').slice(0, 60).replace(/[^\x20-\x7e]/g, '.');
          if (body || res.headers.server) answer.other = `server=${res.headers.server ?? '-'} body=${JSON.stringify(body)}`;
        }
        resolve(answer);
      });
      res.on('error', (err) => resolve({ at: Date.now(), status: 0, error: err.message }));
    });
    req.on('timeout', () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
    req.on('error', (err) => resolve({ at: Date.now(), status: 0, error: err.message }));
    req.end();
  });
}

/** `count` requests, `concurrency` at a time, stopping at `deadlineMs` whatever is left. */
export async function burst(ip: string, count: number, opts: { concurrency?: number; deadlineMs?: number } = {}): Promise<Answer[]> {
  const out: Answer[] = [];
  const deadline = Date.now() + (opts.deadlineMs ?? 60_000);
  let next = 0;
  const worker = async () => {
    while (next < count && Date.now() < deadline) {
      next++;
      out.push(await getInfo(ip));
    }
  };
  await Promise.all(Array.from({ length: opts.concurrency ?? 16 }, worker));
  return out;
}

/**
 * Steady background traffic: about `rate` requests per second until stop()
 * or `maxMs`, at most `maxRequests` in all.
 */
export class Prober {
  readonly answers: Answer[] = [];
  private stopped = false;
  private done?: Promise<void>;

  constructor(
    private readonly ip: string,
    private readonly opts: { rate?: number; concurrency?: number; maxMs?: number; maxRequests?: number } = {},
  ) {}

  start(): this {
    const rate = this.opts.rate ?? 50;
    const concurrency = this.opts.concurrency ?? 4;
    const until = Date.now() + (this.opts.maxMs ?? 180_000);
    const max = this.opts.maxRequests ?? 20_000;
    const gap = (1000 * concurrency) / rate;
    let sent = 0;
    const worker = async () => {
      while (!this.stopped && Date.now() < until && sent < max) {
        sent++;
        const t0 = Date.now();
        this.answers.push(await getInfo(this.ip));
        const wait = gap - (Date.now() - t0);
        if (wait > 0) await new Promise((r) => setTimeout(r, wait));
      }
    };
    this.done = Promise.all(Array.from({ length: concurrency }, worker)).then(() => undefined);
    return this;
  }

  async stop(): Promise<Answer[]> {
    this.stopped = true;
    await this.done;
    return this.answers;
  }
}

/** The ready endpoints of a Service per Pod-name prefix, as kube-proxy sees them (EndpointSlices). */
export async function readyEndpoints(ns: string, service: string): Promise<string[]> {
  const r = await kubectl(['-n', ns, 'get', 'endpointslices', '-l', `kubernetes.io/service-name=${service}`, '-o', 'json']);
  if (r.code !== 0) return [];
  const list = JSON.parse(r.stdout) as { items: { endpoints?: { conditions?: { ready?: boolean }; targetRef?: { name?: string } }[] }[] };
  return list.items.flatMap((s) => (s.endpoints ?? []).filter((e) => e.conditions?.ready !== false).map((e) => e.targetRef?.name ?? ''));
}

/** A request through a proxy on this machine: where to send it, and what to say. */
export interface Via {
  /** 127.0.0.1 (a proxy on this machine) or a Pod IP of the real node. */
  host: string;
  port: number;
  /** The Host header (a proxy's routes match on it). */
  hostHeader?: string;
  headers?: Record<string, string>;
}

/** An answer, with the cookies the proxy set. */
export interface ProxiedAnswer extends Answer {
  /** name=value of every Set-Cookie of the answer. */
  cookies: string[];
}

/** One GET of podinfo's /api/info through `via`, on a fresh connection, with `cookie` as the Cookie header. */
export function getInfoVia(via: Via, opts: { cookie?: string; timeoutMs?: number } = {}): Promise<ProxiedAnswer> {
  const timeoutMs = opts.timeoutMs ?? 3000;
  const headers: Record<string, string> = { connection: 'close', ...(via.headers ?? {}) };
  if (via.hostHeader) headers.host = via.hostHeader;
  if (opts.cookie) headers.cookie = opts.cookie;
  return new Promise((resolve) => {
    const req = http.request({ host: via.host, port: via.port, path: '/api/info', method: 'GET', agent: false, timeout: timeoutMs, headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const cookies = (res.headers['set-cookie'] ?? []).map((c) => c.split(';')[0]!.trim());
        const answer: ProxiedAnswer = { at: Date.now(), status: res.statusCode ?? 0, cookies };
        try {
          const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as { hostname?: string; message?: string };
          answer.pod = body.hostname;
          answer.message = body.message;
        } catch {
          /* not podinfo's JSON: status only */
        }
        resolve(answer);
      });
      res.on('error', (err) => resolve({ at: Date.now(), status: 0, error: err.message, cookies: [] }));
    });
    req.on('timeout', () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
    req.on('error', (err) => resolve({ at: Date.now(), status: 0, error: err.message, cookies: [] }));
    req.end();
  });
}

/** `count` requests through `via`, `concurrency` at a time, stopping at `deadlineMs` whatever is left. */
export async function burstVia(via: Via, count: number, opts: { concurrency?: number; deadlineMs?: number } = {}): Promise<ProxiedAnswer[]> {
  const out: ProxiedAnswer[] = [];
  const deadline = Date.now() + (opts.deadlineMs ?? 60_000);
  let next = 0;
  const worker = async () => {
    while (next < count && Date.now() < deadline) {
      next++;
      out.push(await getInfoVia(via));
    }
  };
  await Promise.all(Array.from({ length: opts.concurrency ?? 16 }, worker));
  return out;
}

/** Steady background traffic through `via` (as Prober): about `rate` per second until stop() or `maxMs`, at most `maxRequests`. */
export class ProberVia {
  readonly answers: Answer[] = [];
  private stopped = false;
  private done?: Promise<void>;

  constructor(
    private readonly via: Via,
    private readonly opts: { rate?: number; concurrency?: number; maxMs?: number; maxRequests?: number } = {},
  ) {}

  start(): this {
    const rate = this.opts.rate ?? 50;
    const concurrency = this.opts.concurrency ?? 4;
    const until = Date.now() + (this.opts.maxMs ?? 180_000);
    const max = this.opts.maxRequests ?? 20_000;
    const gap = (1000 * concurrency) / rate;
    let sent = 0;
    const worker = async () => {
      while (!this.stopped && Date.now() < until && sent < max) {
        sent++;
        const t0 = Date.now();
        this.answers.push(await getInfoVia(this.via));
        const wait = gap - (Date.now() - t0);
        if (wait > 0) await new Promise((r) => setTimeout(r, wait));
      }
    };
    this.done = Promise.all(Array.from({ length: concurrency }, worker)).then(() => undefined);
    return this;
  }

  async stop(): Promise<Answer[]> {
    this.stopped = true;
    await this.done;
    return this.answers;
  }
}
