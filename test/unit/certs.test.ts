import assert from 'node:assert/strict';
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { createServer, get } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import forge from 'node-forge';

import { command, parseCertsArgs, planCertificates, runCerts, serviceDnsNames, splitPem, type CertRequest } from '../../certs/command.js';
import {
  certificateExpiry,
  generateCertificateAuthority,
  generateCertificates,
  issueServingCertificate,
  issuedBy,
  needsRenewal,
  subjectAltNames,
} from '../../certs/generate.js';

const DAY = 24 * 60 * 60 * 1000;
const SERVER_AUTH = '1.3.6.1.5.5.7.3.1';

async function quietly<T>(fn: () => Promise<T>): Promise<T> {
  const { log, error } = console;
  console.log = () => {};
  console.error = () => {};
  try {
    return await fn();
  } finally {
    console.log = log;
    console.error = error;
  }
}

describe('certs/generate', function () {
  this.timeout(60_000);

  const dnsNames = ['canary-gate-webhook.canary-gate-system.svc', 'localhost'];
  const ipAddresses = ['127.0.0.1', '::1'];
  const before = Date.now();
  const bundle = generateCertificates({ dnsNames, ipAddresses, validityDays: 90, caValidityDays: 365 });
  const after = Date.now();
  const ca = new X509Certificate(bundle.caCert);
  const cert = new X509Certificate(bundle.cert);

  it('signs the serving certificate with the CA', () => {
    assert.ok(cert.verify(ca.publicKey), 'signature verifies with the CA public key');
    assert.ok(cert.checkIssued(ca), 'issuer matches the CA subject');
    assert.ok(issuedBy(bundle.cert, bundle.caCert));
    const other = generateCertificateAuthority();
    assert.equal(cert.verify(new X509Certificate(other.caCert).publicKey), false);
    assert.equal(issuedBy(bundle.cert, other.caCert), false);
  });

  it('makes a CA and a non-CA leaf', () => {
    assert.equal(ca.ca, true);
    assert.equal(cert.ca, false);
    assert.ok(ca.checkIssued(ca), 'the CA is self-signed');
  });

  it('puts exactly the requested SANs in the certificate', () => {
    assert.deepEqual(subjectAltNames(bundle.cert), { dnsNames, ipAddresses });
    assert.match(cert.subject, /CN=canary-gate-webhook\.canary-gate-system\.svc/);
  });

  it('has the requested validity window, starting a little in the past', () => {
    const notBefore = new Date(cert.validFrom).getTime();
    const notAfter = new Date(cert.validTo).getTime();
    assert.ok(notBefore < before, 'notBefore is before issuance (clock skew)');
    assert.ok(notBefore > before - 60 * 60 * 1000, 'but not by more than an hour');
    assert.ok(Math.abs(notAfter - (before + 90 * DAY)) < after - before + 2000, 'notAfter = now + validityDays');
    assert.ok(Math.abs(new Date(ca.validTo).getTime() - (before + 365 * DAY)) < after - before + 2000);
    assert.equal(certificateExpiry(bundle.cert).getTime(), notAfter);
  });

  it('is for server authentication only', () => {
    assert.deepEqual(cert.keyUsage, [SERVER_AUTH]);
  });

  it('pairs each certificate with its key', () => {
    assert.ok(cert.checkPrivateKey(createPrivateKey(bundle.key)));
    assert.ok(ca.checkPrivateKey(createPrivateKey(bundle.caKey)));
    assert.equal(cert.checkPrivateKey(createPrivateKey(bundle.caKey)), false);
  });

  it('uses random serials and SHA-256', () => {
    const again = generateCertificates({ dnsNames: ['a.example'] });
    assert.notEqual(new X509Certificate(again.cert).serialNumber, cert.serialNumber);
    assert.notEqual(new X509Certificate(again.caCert).serialNumber, ca.serialNumber);
    for (const pem of [bundle.cert, bundle.caCert]) {
      assert.equal(forge.pki.certificateFromPem(pem).siginfo.algorithmOid, forge.pki.oids.sha256WithRSAEncryption);
    }
  });

  it('serves TLS that a client trusting only the CA accepts, by DNS name and IP', async () => {
    const server = createServer({ cert: bundle.cert, key: bundle.key }, (_req, res) => res.end('ok'));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const { port } = server.address() as AddressInfo;
    const fetchOk = (servername: string | undefined) =>
      new Promise<string>((resolve, reject) => {
        get({ host: '127.0.0.1', port, path: '/', ca: bundle.caCert, ...(servername ? { servername } : {}) }, (res) => {
          let body = '';
          res.on('data', (d) => (body += d)).on('end', () => resolve(body));
        }).on('error', reject);
      });
    try {
      assert.equal(await fetchOk('localhost'), 'ok');
      assert.equal(await fetchOk(undefined), 'ok');
      await assert.rejects(fetchOk('elsewhere.example'), /altnames|Hostname/i);
    } finally {
      server.close();
    }
  });

  it('renews a serving certificate from the same CA', () => {
    const renewed = issueServingCertificate({ caCert: bundle.caCert, caKey: bundle.caKey }, { dnsNames, ipAddresses });
    assert.ok(issuedBy(renewed.cert, bundle.caCert));
    assert.notEqual(renewed.key, bundle.key);
  });

  it('never lets a serving certificate outlive its CA', () => {
    const shortCa = generateCertificateAuthority({ validityDays: 10 });
    const leaf = issueServingCertificate(shortCa, { dnsNames: ['x.example'], validityDays: 365 });
    assert.ok(certificateExpiry(leaf.cert) <= certificateExpiry(shortCa.caCert));
  });

  it('rejects bad names', () => {
    assert.throws(() => generateCertificates({ dnsNames: [] }), /at least one/);
    assert.throws(() => generateCertificates({ dnsNames: ['bad name'] }), /not a DNS name/);
    assert.throws(() => generateCertificates({ dnsNames: ['ok.example'], ipAddresses: ['300.1.1.1'] }), /not an IP/);
  });

  it('tells when a certificate needs renewal', () => {
    const now = new Date();
    assert.equal(needsRenewal(bundle.cert, 30, now), false);
    assert.equal(needsRenewal(bundle.cert, 30, new Date(now.getTime() + 61 * DAY)), true, 'within 30 days of expiry');
    assert.equal(needsRenewal(bundle.cert, 30, new Date(now.getTime() + 59 * DAY)), false);
    assert.equal(needsRenewal(bundle.cert, 30, new Date(now.getTime() + 100 * DAY)), true, 'expired');
    assert.equal(needsRenewal(bundle.cert, 30, new Date(now.getTime() - DAY)), true, 'not yet valid');
  });
});

describe('certs: planCertificates', function () {
  this.timeout(60_000);

  const want: CertRequest = {
    dnsNames: serviceDnsNames('canary-gate-webhook', 'canary-gate-system'),
    ipAddresses: [],
    validityDays: 365,
    caValidityDays: 3650,
    renewBeforeDays: 30,
  };
  const now = new Date();
  const first = planCertificates(undefined, want, now);

  it('creates a CA and a certificate when there is nothing', () => {
    assert.equal(first.action, 'create');
    assert.equal(splitPem(first.material['ca.crt']).length, 1);
    assert.ok(issuedBy(first.material['tls.crt'], first.material['ca.crt']));
    assert.deepEqual(subjectAltNames(first.material['tls.crt']).dnsNames, [
      'canary-gate-webhook',
      'canary-gate-webhook.canary-gate-system',
      'canary-gate-webhook.canary-gate-system.svc',
      'canary-gate-webhook.canary-gate-system.svc.cluster.local',
    ]);
  });

  it('keeps valid material unchanged', () => {
    const plan = planCertificates(first.material, want, now);
    assert.equal(plan.action, 'keep');
    assert.deepEqual(plan.material, first.material);
  });

  it('keeps a certificate that covers more names than asked', () => {
    const plan = planCertificates(first.material, { ...want, dnsNames: want.dnsNames.slice(0, 2) }, now);
    assert.equal(plan.action, 'keep');
  });

  it('re-issues from the same CA when a name is missing', () => {
    const plan = planCertificates(first.material, { ...want, ipAddresses: ['127.0.0.1'] }, now);
    assert.equal(plan.action, 'issue');
    assert.equal(plan.material['ca.crt'], first.material['ca.crt']);
    assert.equal(plan.material['ca.key'], first.material['ca.key']);
    assert.ok(issuedBy(plan.material['tls.crt'], first.material['ca.crt']));
    assert.deepEqual(subjectAltNames(plan.material['tls.crt']).ipAddresses, ['127.0.0.1']);
  });

  it('re-issues from the same CA within renew-before of expiry', () => {
    const later = new Date(now.getTime() + 340 * DAY);
    const plan = planCertificates(first.material, want, later);
    assert.equal(plan.action, 'issue');
    assert.match(plan.reason, /expires in \d+ days/);
    assert.equal(plan.material['ca.crt'], first.material['ca.crt']);
    assert.ok(issuedBy(plan.material['tls.crt'], first.material['ca.crt']));
    assert.ok(certificateExpiry(plan.material['tls.crt']).getTime() > later.getTime() + 300 * DAY);
    assert.equal(planCertificates(plan.material, want, later).action, 'keep', 'and keeps the result');
  });

  it('re-issues when the key does not match or the certificate is foreign', () => {
    const other = generateCertificates({ dnsNames: want.dnsNames });
    assert.equal(planCertificates({ ...first.material, 'tls.key': other.key }, want, now).action, 'issue');
    const foreign = planCertificates({ ...first.material, 'tls.crt': other.cert, 'tls.key': other.key }, want, now);
    assert.equal(foreign.action, 'issue');
    assert.match(foreign.reason, /not issued by the CA/);
  });

  it('starts over when the CA key is lost, still trusting the old CA', () => {
    const plan = planCertificates({ ...first.material, 'ca.key': generateCertificateAuthority().caKey }, want, now);
    assert.equal(plan.action, 'create');
    const cas = splitPem(plan.material['ca.crt']);
    assert.equal(cas.length, 2);
    assert.equal(cas[1], first.material['ca.crt']);
  });

  it('rotates a CA near expiry, trusting old and new CA during the overlap', () => {
    // 3650-day CA; rotation once it has less than renew-before + validity (395 days) left.
    const late = new Date(now.getTime() + 3300 * DAY);
    const plan = planCertificates(first.material, want, late);
    assert.equal(plan.action, 'rotate-ca');
    const cas = splitPem(plan.material['ca.crt']);
    assert.equal(cas.length, 2);
    assert.equal(cas[1], first.material['ca.crt'], 'old CA second in the bundle');
    assert.ok(issuedBy(plan.material['tls.crt'], cas[0] as string), 'new certificate from the new CA');
    assert.notEqual(plan.material['ca.key'], first.material['ca.key']);
    assert.ok(certificateExpiry(plan.material['tls.crt']).getTime() >= late.getTime() + 364 * DAY, 'full validity');
    // Next run: keeps, old CA still in the bundle while valid...
    assert.equal(planCertificates(plan.material, want, new Date(late.getTime() + DAY)).action, 'keep');
    assert.equal(splitPem(planCertificates(plan.material, want, new Date(late.getTime() + DAY)).material['ca.crt']).length, 2);
    // ...and dropped once expired.
    const afterOldExpiry = new Date(now.getTime() + 3651 * DAY);
    const pruned = planCertificates(plan.material, want, afterOldExpiry);
    assert.deepEqual(splitPem(pruned.material['ca.crt']), [cas[0]]);
    assert.ok(issuedBy(pruned.material['tls.crt'], cas[0] as string));
  });
});

describe('certs command', function () {
  this.timeout(60_000);
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'canary-gate-certs-'));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  async function files(): Promise<Record<string, string>> {
    const out: Record<string, string> = {};
    for (const f of ['ca.crt', 'ca.key', 'tls.crt', 'tls.key']) out[f] = await readFile(join(dir, f), 'utf8');
    return out;
  }

  it('--out-dir twice is idempotent; keys are mode 0600', async () => {
    const argv = ['--out-dir', dir, '--san', '127.0.0.1', '--san', 'localhost'];
    assert.equal(await quietly(() => command.run(argv)), 0);
    const once = await files();
    const mtime = (await stat(join(dir, 'tls.crt'))).mtimeMs;
    assert.equal(await quietly(() => command.run(argv)), 0);
    assert.deepEqual(await files(), once);
    assert.equal((await stat(join(dir, 'tls.crt'))).mtimeMs, mtime, 'not rewritten');
    assert.equal((await stat(join(dir, 'tls.key'))).mode & 0o777, 0o600);
    assert.equal((await stat(join(dir, 'ca.key'))).mode & 0o777, 0o600);
    const sans = subjectAltNames(once['tls.crt'] as string);
    assert.deepEqual(sans.ipAddresses, ['127.0.0.1']);
    assert.ok(sans.dnsNames.includes('localhost'));
    assert.ok(sans.dnsNames.includes('canary-gate-webhook.canary-gate-system.svc'));
  });

  it('renews a near-expiry certificate from the same CA', async () => {
    const lines: string[] = [];
    await runCerts(parseCertsArgs(['--out-dir', dir, '--validity-days', '10', '--renew-before', '5']), (l) => lines.push(l));
    const short = await files();
    const plan = await runCerts(parseCertsArgs(['--out-dir', dir]), (l) => lines.push(l));
    assert.equal(plan.action, 'issue');
    const renewed = await files();
    assert.equal(renewed['ca.crt'], short['ca.crt']);
    assert.equal(renewed['ca.key'], short['ca.key']);
    assert.notEqual(renewed['tls.crt'], short['tls.crt']);
    assert.ok(issuedBy(renewed['tls.crt'] as string, short['ca.crt'] as string));
    assert.ok(certificateExpiry(renewed['tls.crt'] as string).getTime() > Date.now() + 300 * DAY);
    // No key material in the log.
    const text = lines.join('\n');
    assert.doesNotMatch(text, /PRIVATE KEY|BEGIN/);
    for (const v of Object.values(renewed)) assert.ok(!text.includes(v.split('\n')[1] as string));
  });

  it('refuses bad flags with exit code 2', async () => {
    const bad = [
      [],
      ['--out-dir', dir, '--nope'],
      ['--out-dir', dir, 'positional'],
      ['--out-dir', dir, '--renew-before', 'x'],
      ['--out-dir', dir, '--renew-before', '400'],
      ['--out-dir', dir, '--validity-days', '0'],
      ['--out-dir', dir, '--ca-validity-days', '100'],
      ['--out-dir', dir, '--san', 'not a name'],
      ['--out-dir', dir, '--service', 'Bad_Name'],
    ];
    for (const argv of bad) assert.equal(await quietly(() => command.run(argv)), 2, argv.join(' '));
  });
});
