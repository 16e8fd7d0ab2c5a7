// The HTTP client under the metric providers and alert receivers: TLS
// verification and insecureSkipVerify, http:// proxies (CONNECT tunnel and
// absolute form), timeouts, size limits, cancellation, and scrubbing.

import assert from 'node:assert/strict';
import { createServer as createHttpServer, request, type Server } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { connect, type AddressInfo, type Socket } from 'node:net';
import { generateCertificates } from '../../certs/generate.js';
import { createProvider, ProviderError } from '../../reconciler/analysis/metrics/provider.js';
import { hostOf, httpRequest, RequestError, scrub } from '../../reconciler/analysis/metrics/http.js';

const sockets = new WeakMap<Server, Set<Socket>>();

async function listen(server: Server): Promise<number> {
  // Tunnelled (CONNECT) sockets leave the server's books: track them to close them.
  const set = new Set<Socket>();
  sockets.set(server, set);
  server.on('connection', (s: Socket) => {
    set.add(s);
    s.on('close', () => set.delete(s));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return (server.address() as AddressInfo).port;
}

function close(server: Server): Promise<void> {
  return new Promise((resolve) => {
    for (const s of sockets.get(server) ?? []) s.destroy();
    server.closeAllConnections();
    server.close(() => resolve());
  });
}

async function failure(p: Promise<unknown>): Promise<RequestError> {
  try {
    await p;
  } catch (err) {
    assert.ok(err instanceof RequestError, String(err));
    return err;
  }
  assert.fail('expected a RequestError');
}

const promAnswer = JSON.stringify({ status: 'success', data: { resultType: 'scalar', result: [0, '5'] } });

describe('metrics/http', function () {
  this.timeout(20_000);
  const servers: Server[] = [];
  afterEach(async () => {
    await Promise.all(servers.splice(0).map(close));
  });

  let tls: { cert: string; key: string };
  before(() => {
    const b = generateCertificates({ dnsNames: ['localhost'], ipAddresses: ['127.0.0.1'] });
    tls = { cert: b.cert, key: b.key };
  });

  async function httpsServer(): Promise<number> {
    const s = createHttpsServer(tls, (_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(promAnswer);
    });
    servers.push(s);
    return listen(s);
  }

  it('an https server with an untrusted certificate fails verification, unless insecureSkipVerify', async () => {
    const port = await httpsServer();
    const address = `https://127.0.0.1:${port}`;
    await assert.rejects(createProvider({ type: 'prometheus', address }).query('x'), (err: Error) => {
      assert.ok(err instanceof ProviderError);
      assert.match(err.message, /^prometheus \(127\.0\.0\.1:\d+\): (self-signed|TLS certificate)/);
      return true;
    });
    assert.equal(await createProvider({ type: 'prometheus', address, insecureSkipVerify: true }).query('x'), 5);
  });

  /** A forward proxy: CONNECT tunnels and absolute-form requests; records what it saw. */
  async function proxyServer(seen: string[], requireAuth?: string): Promise<number> {
    const proxy = createHttpServer((req, res) => {
      seen.push(`${req.method} ${req.url} auth=${req.headers['proxy-authorization'] ?? ''}`);
      if (requireAuth && req.headers['proxy-authorization'] !== requireAuth) {
        res.writeHead(407).end();
        return;
      }
      const target = new URL(req.url ?? '');
      const up = request({ host: target.hostname, port: Number(target.port), method: req.method, path: `${target.pathname}${target.search}` }, (r) => {
        res.writeHead(r.statusCode ?? 502, { ...r.headers, 'x-via': 'proxy' });
        r.pipe(res);
      });
      req.pipe(up);
    });
    proxy.on('connect', (req, client: Socket) => {
      seen.push(`CONNECT ${req.url} auth=${req.headers['proxy-authorization'] ?? ''}`);
      if (requireAuth && req.headers['proxy-authorization'] !== requireAuth) {
        client.end('HTTP/1.1 407 Proxy Authentication Required\r\n\r\n');
        return;
      }
      const [host, port] = (req.url ?? '').split(':');
      const upstream = connect(Number(port), host, () => {
        client.write('HTTP/1.1 200 Connection Established\r\n\r\n');
        upstream.pipe(client);
        client.pipe(upstream);
      });
      upstream.on('error', () => client.destroy());
      client.on('error', () => upstream.destroy());
    });
    servers.push(proxy);
    return listen(proxy);
  }

  it('tunnels https through an http:// proxy with CONNECT, with proxy credentials', async () => {
    const target = await httpsServer();
    const seen: string[] = [];
    const auth = `Basic ${Buffer.from('p:proxy-pass').toString('base64')}`;
    const proxyPort = await proxyServer(seen, auth);
    const res = await httpRequest({ url: `https://127.0.0.1:${target}/api/v1/query?query=x`, proxy: `http://p:proxy-pass@127.0.0.1:${proxyPort}`, insecureSkipVerify: true });
    assert.equal(res.status, 200);
    assert.equal(res.body, promAnswer);
    assert.deepEqual(seen, [`CONNECT 127.0.0.1:${target} auth=${auth}`]);
    // Wrong credentials: the tunnel is refused, and the error says so without the proxy's password.
    const err = await failure(httpRequest({ url: `https://127.0.0.1:${target}/`, proxy: `http://p:wrong-pass@127.0.0.1:${proxyPort}`, timeoutMs: 3000 }));
    assert.match(err.reason, /the proxy refused the tunnel: HTTP 407/);
    assert.ok(!err.message.includes('wrong-pass'));
  });

  it('sends http targets to the proxy in absolute form', async () => {
    const target = createHttpServer((_req, res) => res.writeHead(200).end('plain'));
    servers.push(target);
    const port = await listen(target);
    const seen: string[] = [];
    const proxyPort = await proxyServer(seen);
    const res = await httpRequest({ url: `http://127.0.0.1:${port}/hook?x=1`, method: 'POST', body: '{}', proxy: `http://127.0.0.1:${proxyPort}` });
    assert.equal(res.body, 'plain');
    assert.equal(res.headers['x-via'], 'proxy');
    assert.deepEqual(seen, [`POST http://127.0.0.1:${port}/hook?x=1 auth=`]);
  });

  it('refuses proxy schemes it cannot speak, with a clear message', async () => {
    const err = await failure(httpRequest({ url: 'https://example.invalid/', proxy: 'https://proxy.example:3128' }));
    assert.match(err.reason, /proxy scheme "https:" is not supported: use an http:\/\/ proxy/);
    const err2 = await failure(httpRequest({ url: 'https://example.invalid/', proxy: 'socks5://proxy.example:1080' }));
    assert.match(err2.reason, /proxy scheme "socks5:" is not supported/);
  });

  it('caps the response size and honours cancellation', async () => {
    const big = createHttpServer((_req, res) => res.writeHead(200).end('x'.repeat(10_000)));
    servers.push(big);
    const port = await listen(big);
    const err = await failure(httpRequest({ url: `http://127.0.0.1:${port}/`, maxResponseBytes: 1000 }));
    assert.match(err.reason, /larger than 1000 bytes/);
    const silent = createHttpServer(() => undefined);
    servers.push(silent);
    const port2 = await listen(silent);
    const ac = new AbortController();
    setTimeout(() => ac.abort(), 50);
    const err2 = await failure(httpRequest({ url: `http://127.0.0.1:${port2}/`, signal: ac.signal, timeoutMs: 5000 }));
    assert.equal(err2.reason, 'cancelled');
  });

  it('rejects non-http schemes and malformed URLs without echoing them', async () => {
    assert.match((await failure(httpRequest({ url: 'file:///etc/passwd' }))).reason, /unsupported URL scheme "file:"/);
    assert.match((await failure(httpRequest({ url: 'not a url secret-xyz' }))).reason, /^the address is not a valid URL$/);
  });

  it('scrub removes secrets and the secret pieces of URLs', () => {
    const hook = 'https://hooks.slack.com/services/T0000/B0000/XXXXXXXXXXXXXXXXXXXX';
    assert.equal(scrub(`posting to ${hook} failed`, [hook]), 'posting to *** failed');
    assert.equal(scrub('token XXXXXXXXXXXXXXXXXXXX leaked', [hook]), 'token *** leaked');
    assert.equal(scrub('a key-123456 b', ['key-123456', '', undefined, 'ab']), 'a *** b');
    assert.equal(hostOf('https://user:pw@example.com:8443/x?y=1'), 'example.com:8443');
    assert.equal(hostOf('::'), '<invalid address>');
  });
});
