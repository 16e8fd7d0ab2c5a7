// Each metric provider against a local HTTP server on 127.0.0.1 that answers
// in that service's documented format: values, no data, server errors, bad
// bodies, the auth headers sent, and secrets never in error messages.

import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { MetricProvider } from '../../core/api/types.js';
import { createProvider, ProviderError } from '../../reconciler/analysis/metrics/provider.js';
import { lastValue, parseCsv } from '../../reconciler/analysis/metrics/influxdb.js';

interface Received {
  method: string;
  url: URL;
  headers: IncomingMessage['headers'];
  body: string;
}

interface TestServer {
  base: string;
  host: string;
  received: Received[];
  close(): Promise<void>;
}

type Answer = (req: Received, res: ServerResponse) => void;

async function serve(answer: Answer): Promise<TestServer> {
  const received: Received[] = [];
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const r: Received = { method: req.method ?? '', url: new URL(req.url ?? '/', 'http://x'), headers: req.headers, body: Buffer.concat(chunks).toString('utf8') };
      received.push(r);
      answer(r, res);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    base: `http://127.0.0.1:${port}`,
    host: `127.0.0.1:${port}`,
    received,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

const json =
  (body: unknown, status = 200): Answer =>
  (_r, res) => {
    res.writeHead(status, { 'content-type': 'application/json' });
    res.end(typeof body === 'string' ? body : JSON.stringify(body));
  };
const text =
  (body: string, status = 200, type = 'text/plain'): Answer =>
  (_r, res) => {
    res.writeHead(status, { 'content-type': type });
    res.end(body);
  };

async function rejects(p: Promise<unknown>, ...patterns: RegExp[]): Promise<ProviderError> {
  try {
    await p;
  } catch (err) {
    assert.ok(err instanceof ProviderError, `expected a ProviderError, got ${String(err)}`);
    for (const re of patterns) assert.match(err.message, re);
    return err;
  }
  assert.fail('expected the query to fail');
}

function notLeaking(err: Error, ...secrets: string[]): void {
  for (const s of secrets) assert.ok(!err.message.includes(s), `the message leaks "${s}": ${err.message}`);
}

let server: TestServer | undefined;
afterEach(async () => {
  await server?.close();
  server = undefined;
});

async function with_(answer: Answer): Promise<TestServer> {
  server = await serve(answer);
  return server;
}

const vector = (...values: string[]) => ({
  status: 'success',
  data: { resultType: 'vector', result: values.map((v, i) => ({ metric: { i: String(i) }, value: [1700000000.5, v] })) },
});

describe('metrics/prometheus', () => {
  const prom = (address: string, extra: Partial<MetricProvider> = {}, creds?: Record<string, string>) =>
    createProvider({ type: 'prometheus', address, ...extra }, creds, { timeoutMs: 2000 });

  it('reads one value from an instant vector, with the query in the URL and the address prefix kept', async () => {
    const s = await with_(json(vector('99.5')));
    const q = 'sum(rate(http_requests_total{code!~"5.."}[1m]))';
    assert.equal(await prom(`${s.base}/prometheus/`).query(q), 99.5);
    const r = s.received[0]!;
    assert.equal(r.method, 'GET');
    assert.equal(r.url.pathname, '/prometheus/api/v1/query');
    assert.equal(r.url.searchParams.get('query'), q);
  });

  it('reads a scalar', async () => {
    const s = await with_(json({ status: 'success', data: { resultType: 'scalar', result: [1700000000, '42'] } }));
    assert.equal(await prom(s.base).query('scalar(1)'), 42);
  });

  it('an empty vector is no data; NaN is no data; ±Inf are values', async () => {
    let answer: unknown = vector();
    const s = await with_((r, res) => json(answer)(r, res));
    const p = prom(s.base);
    assert.equal(await p.query('nothing'), undefined);
    answer = vector('NaN');
    assert.equal(await p.query('0/0'), undefined);
    answer = vector('+Inf');
    assert.equal(await p.query('1/0'), Infinity);
    answer = vector('-Inf');
    assert.equal(await p.query('-1/0'), -Infinity);
  });

  it('several series are an error naming the count', async () => {
    const s = await with_(json(vector('1', '2', '3')));
    await rejects(prom(s.base).query('up'), /^prometheus \(127\.0\.0\.1:\d+\): the query returned 3 series; it must return one value/);
  });

  it('a range vector is an error that says how to fix it', async () => {
    const s = await with_(json({ status: 'success', data: { resultType: 'matrix', result: [] } }));
    await rejects(prom(s.base).query('up[1m]'), /range vector \(matrix\)/);
  });

  it('a PromQL syntax error quotes the server\'s reason', async () => {
    const s = await with_(json({ status: 'error', errorType: 'bad_data', error: '1:5: parse error: unclosed left parenthesis' }, 400));
    const err = await rejects(prom(s.base).query('sum('), /^prometheus \(127\.0\.0\.1:\d+\): HTTP 400 Bad Request: bad_data: 1:5: parse error: unclosed left parenthesis$/);
    assert.equal(err.provider, 'prometheus');
    assert.equal(err.host, s.host);
  });

  it('a server error shows the status and a short snippet; a bad body says it is not JSON', async () => {
    let answer: Answer = text('<html><body><h1>502 Bad Gateway</h1></body></html>', 502, 'text/html');
    const s = await with_((r, res) => answer(r, res));
    await rejects(prom(s.base).query('up'), /HTTP 502 Bad Gateway: 502 Bad Gateway$/);
    answer = text('this is not json');
    await rejects(prom(s.base).query('up'), /HTTP 200 OK: the response is not valid JSON: this is not json/);
    answer = json({ status: 'success' });
    await rejects(prom(s.base).query('up'), /unexpected response/);
    answer = json(vector('abc'));
    await rejects(prom(s.base).query('up'), /the value "abc" is not a number/);
  });

  it('sends a bearer token, basic auth and the spec headers; secrets never appear in errors', async () => {
    const token = 'tok-9f8e7d6c5b4a';
    // A server that echoes what it got: the provider must still not repeat the secret.
    const s = await with_((r, res) => {
      res.writeHead(500, { 'content-type': 'text/plain' });
      res.end(`denied: ${r.headers.authorization ?? ''} ${r.headers['x-scope-orgid'] ?? ''}`);
    });
    const err = await rejects(prom(s.base, { headers: { 'X-Scope-OrgID': 'tenant-secret-1' } }, { bearerToken: token }).query('up'), /HTTP 500/);
    assert.equal(s.received[0]!.headers.authorization, `Bearer ${token}`);
    assert.equal(s.received[0]!.headers['x-scope-orgid'], 'tenant-secret-1');
    notLeaking(err, token, 'tenant-secret-1');

    const err2 = await rejects(prom(s.base, {}, { username: 'ops', password: 'pa55-w0rd-x' }).query('up'), /HTTP 500/);
    const basic = Buffer.from('ops:pa55-w0rd-x').toString('base64');
    assert.equal(s.received[1]!.headers.authorization, `Basic ${basic}`);
    notLeaking(err2, 'pa55-w0rd-x', basic);
  });

  it('the Secret\'s address wins; credentials in the address become basic auth and stay out of messages', async () => {
    const s = await with_(json({ status: 'error', errorType: 'execution', error: 'boom' }, 422));
    const err = await rejects(
      prom('http://127.0.0.1:1', {}, { address: `http://alice:hunter2-long@${s.host}/base?token=abcdef123` }).query('up'),
      /^prometheus \(127\.0\.0\.1:\d+\): HTTP 422 Unprocessable Entity: execution: boom$/,
    );
    assert.equal(s.received[0]!.url.pathname, '/base/api/v1/query');
    assert.equal(s.received[0]!.url.searchParams.get('token'), null, 'the address query string is not sent along');
    assert.equal(s.received[0]!.headers.authorization, `Basic ${Buffer.from('alice:hunter2-long').toString('base64')}`);
    notLeaking(err, 'hunter2-long', 'alice', 'abcdef123');
  });

  it('an unreachable address and a timeout are errors naming prometheus and the host', async () => {
    const closed = await serve(json({}));
    const addr = closed.base;
    await closed.close();
    await rejects(prom(addr).query('up'), /^prometheus \(127\.0\.0\.1:\d+\): connection refused \(ECONNREFUSED\)$/);
    const s = await with_(() => undefined); // never answers
    const p = createProvider({ type: 'prometheus', address: s.base }, undefined, { timeoutMs: 150 });
    await rejects(p.query('up'), /^prometheus \(127\.0\.0\.1:\d+\): timed out after 150ms$/);
  });

  it('configuration errors: unknown type, no address, not a URL', () => {
    assert.throws(() => createProvider({ type: 'cloudwatch' } as unknown as MetricProvider), /unsupported provider type "cloudwatch"/);
    assert.throws(() => createProvider({ type: 'prometheus' }), /^ProviderError: prometheus|prometheus \(<none>\): no address/);
    assert.throws(
      () => createProvider({ type: 'graphite', address: 'ftp://user:pw-secret@host' }),
      (err: Error) => /graphite \(<invalid address>\): the address is not a valid http\(s\) URL/.test(err.message) && !err.message.includes('pw-secret'),
    );
  });
});

describe('metrics/datadog', () => {
  const keys = { apiKey: 'dd-api-0123456789', applicationKey: 'dd-app-9876543210' };
  const dd = (address: string, creds: Record<string, string> | undefined = keys) =>
    createProvider({ type: 'datadog', address }, creds, { timeoutMs: 2000, windowMs: 300_000, now: () => 1_700_000_000_000 });

  it('sends the keys as headers and the window as from/to; reads the last non-null point', async () => {
    const s = await with_(json({ status: 'ok', series: [{ metric: 'x', pointlist: [[1, 1.5], [2, 2.5], [3, null]] }] }));
    assert.equal(await dd(s.base).query('avg:trace.http.request.errors{service:shop}'), 2.5);
    const r = s.received[0]!;
    assert.equal(r.url.pathname, '/api/v1/query');
    assert.equal(r.url.searchParams.get('query'), 'avg:trace.http.request.errors{service:shop}');
    assert.equal(r.url.searchParams.get('to'), '1700000000');
    assert.equal(r.url.searchParams.get('from'), String(1700000000 - 300));
    assert.equal(r.headers['dd-api-key'], keys.apiKey);
    assert.equal(r.headers['dd-application-key'], keys.applicationKey);
  });

  it('accepts Flagger\'s key names too', async () => {
    const s = await with_(json({ status: 'ok', series: [{ pointlist: [[1, 7]] }] }));
    assert.equal(await dd(s.base, { datadog_api_key: 'a-key-123', datadog_application_key: 'b-key-456' }).query('q'), 7);
    assert.equal(s.received[0]!.headers['dd-api-key'], 'a-key-123');
  });

  it('no series, or only null points, is no data; several series is an error', async () => {
    let answer: unknown = { status: 'ok', series: [] };
    const s = await with_((r, res) => json(answer)(r, res));
    assert.equal(await dd(s.base).query('q'), undefined);
    answer = { status: 'ok', series: [{ pointlist: [[1, null]] }] };
    assert.equal(await dd(s.base).query('q'), undefined);
    answer = { status: 'ok', series: [{ pointlist: [] }, { pointlist: [] }] };
    await rejects(dd(s.base).query('q'), /^datadog \(127\.0\.0\.1:\d+\): the query returned 2 series/);
  });

  it('errors: HTTP status with the API\'s errors, a query error, missing keys; keys never shown', async () => {
    let answer: Answer = json({ errors: ['Forbidden'] }, 403);
    const s = await with_((r, res) => answer(r, res));
    const e1 = await rejects(dd(s.base).query('q'), /^datadog \(127\.0\.0\.1:\d+\): HTTP 403 Forbidden: Forbidden$/);
    notLeaking(e1, keys.apiKey, keys.applicationKey);
    answer = json({ status: 'error', error: 'Error parsing query: unable to parse avg:: Rule \'scope_expr\' didn\'t match' });
    await rejects(dd(s.base).query('avg::'), /query failed: Error parsing query/);
    await rejects(dd(s.base, {}).query('q'), /the Secret must hold apiKey and applicationKey/);
    answer = text('{oops');
    await rejects(dd(s.base).query('q'), /not valid JSON/);
  });

  it('defaults to the US API address', () => {
    const p = createProvider({ type: 'datadog' }, keys);
    assert.equal(p.type, 'datadog');
  });
});

describe('metrics/newrelic', () => {
  const keys = { apiKey: 'NRAK-SECRETKEY0123', accountId: '1234567' };
  const nr = (address: string, creds: Record<string, string> = keys) => createProvider({ type: 'newrelic', address }, creds, { timeoutMs: 2000 });
  const results = (rows: unknown[]) => ({ data: { actor: { account: { nrql: { results: rows } } } } });

  it('POSTs NRQL to NerdGraph as a variable with the API-Key header; reads the first number', async () => {
    const s = await with_(json(results([{ count: 12, other: 3 }])));
    const nrql = "SELECT count(*) FROM Transaction WHERE appName = 'shop' SINCE 1 minute ago";
    assert.equal(await nr(s.base).query(nrql), 12);
    const r = s.received[0]!;
    assert.equal(r.method, 'POST');
    assert.equal(r.url.pathname, '/graphql');
    assert.equal(r.headers['api-key'], keys.apiKey);
    assert.match(String(r.headers['content-type']), /application\/json/);
    const body = JSON.parse(r.body) as { query: string; variables: { accountId: number; nrql: string } };
    assert.deepEqual(body.variables, { accountId: 1234567, nrql });
    assert.match(body.query, /actor \{ account\(id: \$accountId\) \{ nrql\(query: \$nrql\) \{ results \} \} \}/);
  });

  it('finds nested numbers (percentile) and treats empty or null results as no data', async () => {
    let answer: unknown = results([{ 'percentile.duration': { '99': 0.25 } }]);
    const s = await with_((r, res) => json(answer)(r, res));
    assert.equal(await nr(s.base).query('SELECT percentile(duration, 99) FROM Transaction'), 0.25);
    answer = results([]);
    assert.equal(await nr(s.base).query('q'), undefined);
    answer = results([{ average: null }]);
    assert.equal(await nr(s.base).query('q'), undefined);
  });

  it('GraphQL errors (200 with errors) and HTTP errors fail; the key never shows', async () => {
    let answer: Answer = json({ errors: [{ message: 'NRQL Syntax Error: Error at line 1 position 7' }], data: { actor: { account: { nrql: null } } } });
    const s = await with_((r, res) => answer(r, res));
    const e1 = await rejects(nr(s.base).query('SELECT'), /^newrelic \(127\.0\.0\.1:\d+\): query failed: NRQL Syntax Error/);
    notLeaking(e1, keys.apiKey);
    answer = json({ errors: [{ message: 'Invalid API key' }] }, 401);
    const e2 = await rejects(nr(s.base).query('q'), /HTTP 401 Unauthorized: Invalid API key/);
    notLeaking(e2, keys.apiKey);
    await rejects(nr(s.base, { apiKey: 'k-123456', accountId: 'abc' }).query('q'), /accountId in the Secret is not a positive integer/);
    await rejects(nr(s.base, { accountId: '1' }).query('q'), /the Secret must hold apiKey and accountId/);
  });
});

describe('metrics/graphite', () => {
  const gr = (address: string, creds?: Record<string, string>) =>
    createProvider({ type: 'graphite', address }, creds, { timeoutMs: 2000, windowMs: 120_000 });

  it('GETs /render with format=json and from=-<interval>; reads the last non-null datapoint', async () => {
    const s = await with_(json([{ target: 'x', datapoints: [[1, 100], [4.5, 160], [null, 220]] }]));
    assert.equal(await gr(s.base).query('sumSeries(app.shop.*.errors)'), 4.5);
    const r = s.received[0]!;
    assert.equal(r.url.pathname, '/render');
    assert.equal(r.url.searchParams.get('target'), 'sumSeries(app.shop.*.errors)');
    assert.equal(r.url.searchParams.get('format'), 'json');
    assert.equal(r.url.searchParams.get('from'), '-120s');
    assert.equal(r.headers.authorization, undefined);
  });

  it('no series or only nulls is no data; several series is an error; basic auth from the Secret', async () => {
    let answer: unknown = [];
    const s = await with_((r, res) => json(answer)(r, res));
    assert.equal(await gr(s.base).query('x'), undefined);
    answer = [{ target: 'x', datapoints: [[null, 1]] }];
    assert.equal(await gr(s.base).query('x'), undefined);
    answer = [{ target: 'a', datapoints: [] }, { target: 'b', datapoints: [] }];
    await rejects(gr(s.base, { username: 'u', password: 'graphite-pw-1' }).query('x'), /^graphite \(127\.0\.0\.1:\d+\): the query returned 2 series/);
    assert.equal(s.received[2]!.headers.authorization, `Basic ${Buffer.from('u:graphite-pw-1').toString('base64')}`);
  });

  it('server errors and bad bodies', async () => {
    let answer: Answer = text('Invalid target: sumSeries(', 400);
    const s = await with_((r, res) => answer(r, res));
    await rejects(gr(s.base).query('sumSeries('), /HTTP 400 Bad Request: Invalid target: sumSeries\($/);
    answer = json({ not: 'a list' });
    await rejects(gr(s.base).query('x'), /not a list of series/);
  });
});

describe('metrics/influxdb', () => {
  const creds = { token: 'influx-token-abcdef', org: 'my-org' };
  const fx = (address: string, c: Record<string, string> = creds) => createProvider({ type: 'influxdb', address }, c, { timeoutMs: 2000 });
  const csv = [
    ',result,table,_start,_stop,_time,_value,_field,_measurement',
    ',_result,0,2024-01-01T00:00:00Z,2024-01-01T00:01:00Z,2024-01-01T00:00:30Z,1.5,errors,http',
    ',_result,0,2024-01-01T00:00:00Z,2024-01-01T00:01:00Z,2024-01-01T00:00:40Z,2.5,errors,http',
    '',
    ',result,table,_start,_stop,_time,_value,_field,_measurement',
    ',_result,1,2024-01-01T00:00:00Z,2024-01-01T00:01:00Z,2024-01-01T00:00:50Z,3.25,errors,http',
    '',
    '',
  ].join('\r\n');

  it('POSTs Flux with the token and org; reads _value of the last row over all tables', async () => {
    const s = await with_(text(csv, 200, 'text/csv'));
    const flux = 'from(bucket: "app") |> range(start: -1m) |> filter(fn: (r) => r._measurement == "http")';
    assert.equal(await fx(s.base).query(flux), 3.25);
    const r = s.received[0]!;
    assert.equal(r.method, 'POST');
    assert.equal(r.url.pathname, '/api/v2/query');
    assert.equal(r.url.searchParams.get('org'), 'my-org');
    assert.equal(r.headers.authorization, `Token ${creds.token}`);
    assert.deepEqual(JSON.parse(r.body), { query: flux, type: 'flux', dialect: { header: true, delimiter: ',', annotations: [] } });
  });

  it('reads annotated CSV and quoted fields; an empty answer is no data', async () => {
    let body = ['#group,false,false,true', '#datatype,string,long,double', '#default,_result,,', ',result,table,_value', ',,0,"7"', ''].join('\n');
    const s = await with_((r, res) => text(body)(r, res));
    assert.equal(await fx(s.base).query('q'), 7);
    body = '\r\n';
    assert.equal(await fx(s.base).query('q'), undefined);
    body = ',result,table,_value\r\n,,0,\r\n';
    assert.equal(await fx(s.base).query('q'), undefined);
    assert.deepEqual(parseCsv('a,"b,""c""",d\n\nx'), [['a', 'b,"c"', 'd'], null, ['x']]);
  });

  it('errors: JSON error with status, in-band CSV error; the token never shows', async () => {
    let answer: Answer = json({ code: 'invalid', message: 'compilation failed: error at @1:1-1:5: undefined identifier fromm' }, 400);
    const s = await with_((r, res) => answer(r, res));
    const e1 = await rejects(fx(s.base).query('fromm()'), /^influxdb \(127\.0\.0\.1:\d+\): HTTP 400 Bad Request: invalid: compilation failed/);
    notLeaking(e1, creds.token);
    answer = json({ code: 'unauthorized', message: 'unauthorized access' }, 401);
    const e2 = await rejects(fx(s.base).query('q'), /HTTP 401 Unauthorized: unauthorized: unauthorized access/);
    notLeaking(e2, creds.token);
    answer = text(',error,reference\n,panic: runtime error in query,897\n');
    await rejects(fx(s.base).query('q'), /query failed: panic: runtime error in query/);
    assert.deepEqual(lastValue([['error', 'reference'], ['boom', '']]), { error: 'boom' });
  });
});
