// A small HTTP client on node:http/https for metric providers and alert
// receivers. Node's global fetch cannot skip TLS verification or go through a
// proxy without undici's dispatchers (not a dependency), so requests are made
// with the core modules, which can do both:
//
// - `insecureSkipVerify` turns off certificate verification for this request
//   only (rejectUnauthorized: false), never process-wide.
// - `proxy` (http:// only, optionally with user:password) tunnels https
//   targets with CONNECT and sends http targets in absolute form. Other proxy
//   schemes are refused with a clear error rather than ignored.
//
// Every request has a timeout (default 10 s) covering the whole exchange, a
// cap on the response size, and follows no redirects. Failures throw a
// RequestError whose reason never contains the URL (credentials and tokens
// live in URLs): callers add the host themselves.

import http from 'node:http';
import https from 'node:https';
import type { Socket } from 'node:net';
import tls from 'node:tls';

export const DEFAULT_TIMEOUT_MS = 10_000;
export const DEFAULT_MAX_RESPONSE_BYTES = 8 * 1024 * 1024;
const USER_AGENT = 'canary-gate';

export interface HttpRequest {
  url: string;
  method?: 'GET' | 'POST';
  headers?: Record<string, string>;
  body?: string;
  /** Whole-exchange timeout; default 10 s. */
  timeoutMs?: number;
  /** Skip verification of the server's TLS certificate. */
  insecureSkipVerify?: boolean;
  /** http://[user:password@]host:port of a forward proxy. */
  proxy?: string;
  signal?: AbortSignal;
  maxResponseBytes?: number;
}

export interface HttpResponse {
  status: number;
  statusText: string;
  headers: http.IncomingHttpHeaders;
  body: string;
}

/** Why a request got no response. `reason` never contains the URL. */
export class RequestError extends Error {
  constructor(
    readonly reason: string,
    /** A later attempt may succeed (network trouble, timeout). */
    readonly retryable: boolean,
  ) {
    super(reason);
    this.name = 'RequestError';
  }
}

/** Sends one request and reads the whole response. Rejects only with RequestError. */
export async function httpRequest(req: HttpRequest): Promise<HttpResponse> {
  let url: URL;
  try {
    url = new URL(req.url);
  } catch {
    throw new RequestError('the address is not a valid URL', false);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new RequestError(`unsupported URL scheme "${url.protocol}" (use http or https)`, false);
  const proxy = req.proxy ? parseProxy(req.proxy) : undefined;
  const timeoutMs = req.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const controller = new AbortController();
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    controller.abort();
  }, timeoutMs);
  const onAbort = () => controller.abort();
  if (req.signal?.aborted) controller.abort();
  req.signal?.addEventListener('abort', onAbort, { once: true });
  try {
    return await exchange(url, req, proxy, controller.signal);
  } catch (err) {
    if (timedOut) throw new RequestError(`timed out after ${formatMs(timeoutMs)}`, true);
    if (req.signal?.aborted) throw new RequestError('cancelled', false);
    if (err instanceof RequestError) throw err;
    throw new RequestError(networkReason(err), true);
  } finally {
    clearTimeout(timer);
    req.signal?.removeEventListener('abort', onAbort);
  }
}

interface Proxy {
  host: string;
  port: number;
  authorization?: string;
}

function parseProxy(raw: string): Proxy {
  let u: URL;
  try {
    u = new URL(raw);
  } catch {
    throw new RequestError('the proxy is not a valid URL', false);
  }
  if (u.protocol !== 'http:') {
    throw new RequestError(`proxy scheme "${u.protocol}" is not supported: use an http:// proxy (https targets are tunnelled through it with CONNECT)`, false);
  }
  const p: Proxy = { host: bare(u.hostname), port: Number(u.port || 80) };
  if (u.username || u.password) p.authorization = basic(decodeURIComponent(u.username), decodeURIComponent(u.password));
  return p;
}

async function exchange(url: URL, req: HttpRequest, proxy: Proxy | undefined, signal: AbortSignal): Promise<HttpResponse> {
  const secure = url.protocol === 'https:';
  const port = Number(url.port || (secure ? 443 : 80));
  const host = bare(url.hostname);
  const headers: Record<string, string> = { 'user-agent': USER_AGENT, accept: '*/*', ...lower(req.headers ?? {}) };
  if ((url.username || url.password) && !headers.authorization) headers.authorization = basic(decodeURIComponent(url.username), decodeURIComponent(url.password));
  if (req.body !== undefined) headers['content-length'] = String(Buffer.byteLength(req.body));
  const path = `${url.pathname}${url.search}`;
  const tlsOptions = { rejectUnauthorized: !req.insecureSkipVerify, ...(isIp(host) ? {} : { servername: host }) };
  const method = req.method ?? 'GET';

  let options: http.RequestOptions;
  let tunnel: Socket | undefined;
  if (!proxy) {
    options = { method, host, port, path, headers, signal, ...(secure ? tlsOptions : {}) };
  } else if (secure) {
    tunnel = await connectTunnel(proxy, `${host.includes(':') ? `[${host}]` : host}:${port}`, signal);
    const socket = tunnel;
    options = {
      method,
      host,
      port,
      defaultPort: 443,
      path,
      headers,
      signal,
      createConnection: () => tls.connect({ socket, ...tlsOptions }),
    };
  } else {
    // Absolute-form request line to the proxy; the target's credentials stay out of it.
    const target = new URL(url.href);
    target.username = '';
    target.password = '';
    const proxyHeaders = { ...headers, host: url.host, ...(proxy.authorization ? { 'proxy-authorization': proxy.authorization } : {}) };
    options = { method, host: proxy.host, port: proxy.port, path: target.href, headers: proxyHeaders, signal, agent: false };
  }
  const send = secure && !proxy ? https.request : http.request;
  try {
    return await new Promise<HttpResponse>((resolve, reject) => {
      const r = send(options, (res) => {
        const limit = req.maxResponseBytes ?? DEFAULT_MAX_RESPONSE_BYTES;
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (c: Buffer) => {
          size += c.byteLength;
          if (size > limit) {
            reject(new RequestError(`the response is larger than ${limit} bytes`, false));
            res.destroy();
            return;
          }
          chunks.push(c);
        });
        res.on('end', () =>
          resolve({ status: res.statusCode ?? 0, statusText: res.statusMessage ?? '', headers: res.headers, body: Buffer.concat(chunks).toString('utf8') }),
        );
        res.on('error', reject);
        res.on('close', () => {
          if (!res.complete) reject(new RequestError('the connection closed before the response was complete', true));
        });
      });
      r.on('error', reject);
      if (req.body !== undefined) r.write(req.body);
      r.end();
    });
  } finally {
    tunnel?.destroy();
  }
}

/** Opens a CONNECT tunnel through the proxy to host:port. */
function connectTunnel(proxy: Proxy, authority: string, signal: AbortSignal): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const headers: Record<string, string> = { host: authority, 'user-agent': USER_AGENT };
    if (proxy.authorization) headers['proxy-authorization'] = proxy.authorization;
    const r = http.request({ host: proxy.host, port: proxy.port, method: 'CONNECT', path: authority, headers, signal, agent: false });
    r.once('connect', (res, socket) => {
      if (res.statusCode === 200) return resolve(socket);
      socket.destroy();
      const code = res.statusCode ?? 0;
      reject(new RequestError(`the proxy refused the tunnel: HTTP ${code}${res.statusMessage ? ` ${res.statusMessage}` : ''}`, code >= 500));
    });
    r.once('response', (res) => {
      // A proxy that answers CONNECT with a normal response refused it.
      res.resume();
      reject(new RequestError(`the proxy refused the tunnel: HTTP ${res.statusCode}`, false));
    });
    r.once('error', (err) => reject(new RequestError(`proxy: ${networkReason(err)}`, true)));
    r.end();
  });
}

const NETWORK_CODES: Record<string, string> = {
  ECONNREFUSED: 'connection refused',
  ECONNRESET: 'connection reset',
  ENOTFOUND: 'host not found',
  EAI_AGAIN: 'DNS lookup failed',
  EHOSTUNREACH: 'host unreachable',
  ENETUNREACH: 'network unreachable',
  ETIMEDOUT: 'connection timed out',
  EPIPE: 'connection closed',
  UND_ERR_SOCKET: 'connection closed',
  UND_ERR_CONNECT_TIMEOUT: 'connection timed out',
  EPROTO: 'TLS handshake failed',
  ERR_SSL_WRONG_VERSION_NUMBER: 'TLS handshake failed (is the server plain HTTP?)',
  CERT_HAS_EXPIRED: 'TLS certificate expired',
  DEPTH_ZERO_SELF_SIGNED_CERT: 'self-signed TLS certificate (set insecureSkipVerify to accept it)',
  SELF_SIGNED_CERT_IN_CHAIN: 'TLS certificate signed by an untrusted CA (set insecureSkipVerify to accept it)',
  UNABLE_TO_VERIFY_LEAF_SIGNATURE: 'TLS certificate not trusted',
  UNABLE_TO_GET_ISSUER_CERT_LOCALLY: 'TLS certificate issuer not trusted',
  ERR_TLS_CERT_ALTNAME_INVALID: 'TLS certificate does not match the host',
  HPE_INVALID_CONSTANT: 'the server did not answer HTTP',
  HPE_INVALID_STATUS: 'the server did not answer HTTP',
};

/** Why a request failed before a response, in words, without the URL (shared by gates, metrics and alerts). */
export function networkReason(err: unknown): string {
  let e: unknown = err;
  for (let depth = 0; depth < 4 && e && typeof e === 'object'; depth++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string' && code !== 'ABORT_ERR') return NETWORK_CODES[code] ? `${NETWORK_CODES[code]} (${code})` : `network error (${code})`;
    e = (e as { cause?: unknown }).cause;
  }
  const message = err instanceof Error ? err.message : String(err);
  // Node's messages may name host:port but not paths or queries; cut them short anyway.
  return `network error: ${message.replace(/\bhttps?:\/\/\S+/g, '<url>').slice(0, 120)}`;
}

/** The host[:port] of an address, for messages; never user info, path or query. */
export function hostOf(raw: string): string {
  try {
    return new URL(raw).host || '<no host>';
  } catch {
    return '<invalid address>';
  }
}

/**
 * Replaces every occurrence of the given secret strings (and the pieces of a
 * secret URL: user info, path, query) in text. Empty and very short values
 * are ignored (they would match everywhere and are not secrets worth the name).
 */
export function scrub(text: string, secrets: Iterable<string | undefined>): string {
  const pieces = new Set<string>();
  for (const s of secrets) {
    if (!s) continue;
    pieces.add(s);
    try {
      const u = new URL(s);
      if (u.host) {
        if (u.pathname.length > 1) pieces.add(u.pathname);
        for (const seg of u.pathname.split('/')) if (seg.length >= 6) pieces.add(seg);
        if (u.search.length > 1) pieces.add(u.search);
        for (const v of u.searchParams.values()) pieces.add(v);
        if (u.username) pieces.add(u.username);
        if (u.password) pieces.add(u.password);
      }
    } catch {
      // not a URL: the whole value is the secret
    }
  }
  let out = text;
  for (const p of [...pieces].filter((x) => x.length >= 4).sort((a, b) => b.length - a.length)) out = out.split(p).join('***');
  return out;
}

/** A response body as a one-line snippet for an error message. */
export function snippet(body: string, max = 160): string {
  const text = body.replace(/<[^>]*>/g, ' ').replace(/\s+/g, ' ').trim();
  return text.length > max ? `${text.slice(0, max)}…` : text;
}

export function statusLine(res: HttpResponse): string {
  return `HTTP ${res.status}${res.statusText ? ` ${res.statusText}` : ''}`;
}

export function basic(user: string, password: string): string {
  return `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;
}

export function formatMs(ms: number): string {
  return ms % 1000 === 0 ? `${ms / 1000}s` : `${ms}ms`;
}

function lower(h: Record<string, string>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(h)) out[k.toLowerCase()] = v;
  return out;
}

/** [::1] -> ::1 (node:http wants bare IPv6 literals). */
function bare(hostname: string): string {
  return hostname.startsWith('[') && hostname.endsWith(']') ? hostname.slice(1, -1) : hostname;
}

function isIp(host: string): boolean {
  return /^[0-9.]+$/.test(host) || host.includes(':');
}
