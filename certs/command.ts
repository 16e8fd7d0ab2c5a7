// canary-gate certs: creates, keeps or renews the webhook's TLS material.
//
// Idempotent: run it at install (Job) and daily (CronJob). Each run reads the
// current material (the Secret if --secret is given, else --out-dir), decides
// with planCertificates() and then, in this order:
//   1. puts the CA bundle into the caBundle of every webhook of --webhook-config,
//   2. writes the Secret,
//   3. writes the files in --out-dir.
// The bundle goes first so that the API server already trusts a new CA when
// the webhook starts serving a certificate signed by it. During a CA rotation
// the bundle holds the new and the old CA; the old one stays until it expires.
// Key material is never logged.

import { statusCode } from '../core/api/client.js';
import { X509Certificate } from 'node:crypto';
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { isIP } from 'node:net';
import { join } from 'node:path';
import { parseArgs } from 'node:util';

import type { Command } from '../core/cli.js';
import {
  DEFAULT_CA_VALIDITY_DAYS,
  DEFAULT_VALIDITY_DAYS,
  coversNames,
  generateCertificateAuthority,
  issueServingCertificate,
  issuedBy,
  keyMatchesCertificate,
  needsRenewal,
} from './generate.js';

const DAY_MS = 24 * 60 * 60 * 1000;

/** The TLS material as stored: ca.crt is the trust bundle, its first certificate is the signing CA (the one ca.key belongs to). */
export interface TlsMaterial {
  'ca.crt': string;
  'ca.key': string;
  'tls.crt': string;
  'tls.key': string;
}
export const MATERIAL_KEYS: readonly (keyof TlsMaterial)[] = ['ca.crt', 'ca.key', 'tls.crt', 'tls.key'];

export interface CertRequest {
  dnsNames: string[];
  ipAddresses: string[];
  validityDays: number;
  caValidityDays: number;
  renewBeforeDays: number;
}

export type PlanAction = 'keep' | 'issue' | 'rotate-ca' | 'create';

export interface CertPlan {
  action: PlanAction;
  /** Why, in words (no key material). */
  reason: string;
  material: TlsMaterial;
}

/** Splits a PEM bundle into its certificates (PEM blocks), in order. */
export function splitPem(bundle: string): string[] {
  return bundle.replace(/\r\n/g, '\n').match(/-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g)?.map((b) => b + '\n') ?? [];
}

function parse(pem: string): X509Certificate | undefined {
  try {
    return new X509Certificate(pem);
  } catch {
    return undefined;
  }
}

function validAt(cert: X509Certificate, now: Date): boolean {
  return new Date(cert.validTo).getTime() > now.getTime();
}

function days(ms: number): string {
  return `${Math.floor(ms / DAY_MS)} days`;
}

/**
 * Decides what to do with the current material (pure: no I/O).
 * - create: no usable CA (missing, unreadable, key does not match): new CA and serving certificate.
 * - rotate-ca: the CA expires within renewBefore + validity days (a new serving
 *   certificate would be cut short): new CA, new serving certificate, bundle = new + old CA.
 * - issue: the serving certificate is missing, invalid, not from the CA, expires
 *   within renewBefore days, or does not cover the names: new one from the same CA.
 * - keep: everything is fine (expired CAs are still dropped from the bundle).
 */
export function planCertificates(current: Partial<TlsMaterial> | undefined, want: CertRequest, now: Date = new Date()): CertPlan {
  const bundle = splitPem(current?.['ca.crt'] ?? '');
  const caKey = current?.['ca.key'];
  const signingPem = bundle[0];
  const signing = signingPem ? parse(signingPem) : undefined;
  const signingUsable = !!signing && signing.ca && !!caKey && keyMatchesCertificate(signingPem as string, caKey) && validAt(signing, now);
  // Older CAs stay trusted while they are valid: a pod may still serve a certificate they signed.
  const previous = bundle.slice(signingUsable ? 1 : 0).filter((pem) => {
    const c = parse(pem);
    return !!c && c.ca && validAt(c, now);
  });
  const issueOpts = { dnsNames: want.dnsNames, ipAddresses: want.ipAddresses, validityDays: want.validityDays, now };

  const fresh = (action: PlanAction, reason: string): CertPlan => {
    const ca = generateCertificateAuthority({ validityDays: want.caValidityDays, now });
    const serving = issueServingCertificate(ca, issueOpts);
    return {
      action,
      reason,
      material: { 'ca.crt': [ca.caCert, ...previous].join(''), 'ca.key': ca.caKey, 'tls.crt': serving.cert, 'tls.key': serving.key },
    };
  };

  if (!signingUsable) {
    const why = !signingPem ? 'no CA yet' : !signing ? 'the CA certificate is unreadable' : !signing.ca ? 'ca.crt is not a CA' : !caKey ? 'the CA key is missing' : !validAt(signing, now) ? 'the CA has expired' : 'the CA key does not match the CA certificate';
    return fresh('create', why);
  }
  const signingCa = signing as X509Certificate;
  const caLeft = new Date(signingCa.validTo).getTime() - now.getTime();
  if (caLeft <= (want.renewBeforeDays + want.validityDays) * DAY_MS) {
    previous.unshift(signingPem as string);
    return fresh('rotate-ca', `the CA expires in ${days(caLeft)}, within renew-before + validity (${want.renewBeforeDays + want.validityDays} days)`);
  }

  const caBundle = [signingPem as string, ...previous].join('');
  const cert = current?.['tls.crt'];
  const key = current?.['tls.key'];
  let why: string | undefined;
  if (!cert || !parse(cert)) why = 'no serving certificate yet';
  else if (!key || !keyMatchesCertificate(cert, key)) why = 'the serving key does not match the certificate';
  else if (!issuedBy(cert, signingPem as string)) why = 'the serving certificate was not issued by the CA';
  else if (needsRenewal(cert, want.renewBeforeDays, now)) {
    why = `the serving certificate expires in ${days(new Date((parse(cert) as X509Certificate).validTo).getTime() - now.getTime())}, within ${want.renewBeforeDays} days`;
  } else if (!coversNames(cert, want.dnsNames, want.ipAddresses)) why = 'the serving certificate does not cover every requested name';
  if (why) {
    const serving = issueServingCertificate({ caCert: signingPem as string, caKey: caKey as string }, issueOpts);
    return { action: 'issue', reason: why, material: { 'ca.crt': caBundle, 'ca.key': caKey as string, 'tls.crt': serving.cert, 'tls.key': serving.key } };
  }
  const left = new Date((parse(cert as string) as X509Certificate).validTo).getTime() - now.getTime();
  return {
    action: 'keep',
    reason: `valid for ${days(left)} more, covers every requested name`,
    material: { 'ca.crt': caBundle, 'ca.key': caKey as string, 'tls.crt': cert as string, 'tls.key': key as string },
  };
}

/** DNS names of a Service: svc, svc.ns, svc.ns.svc, svc.ns.svc.cluster.local. */
export function serviceDnsNames(service: string, namespace: string, clusterDomain = 'cluster.local'): string[] {
  return [service, `${service}.${namespace}`, `${service}.${namespace}.svc`, `${service}.${namespace}.svc.${clusterDomain}`];
}

function sameMaterial(a: Partial<TlsMaterial> | undefined, b: TlsMaterial): boolean {
  return !!a && MATERIAL_KEYS.every((k) => a[k] === b[k]);
}

// ---------------------------------------------------------------- storage: files

async function readOptional(path: string): Promise<string | undefined> {
  try {
    return await readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

export async function readDir(dir: string): Promise<Partial<TlsMaterial> | undefined> {
  const out: Partial<TlsMaterial> = {};
  let any = false;
  for (const k of MATERIAL_KEYS) {
    const v = await readOptional(join(dir, k));
    if (v !== undefined) {
      out[k] = v;
      any = true;
    }
  }
  return any ? out : undefined;
}

/** Writes each changed file atomically (temp file + rename); keys with mode 0600. */
export async function writeDir(dir: string, material: TlsMaterial): Promise<string[]> {
  await mkdir(dir, { recursive: true });
  const written: string[] = [];
  // Key before certificate: a reader that sees the new certificate finds its key.
  for (const k of ['ca.key', 'ca.crt', 'tls.key', 'tls.crt'] as const) {
    const path = join(dir, k);
    if ((await readOptional(path)) === material[k]) continue;
    const tmp = `${path}.${process.pid}.tmp`;
    await writeFile(tmp, material[k], { mode: k.endsWith('.key') ? 0o600 : 0o644 });
    await rename(tmp, path);
    written.push(k);
  }
  return written;
}

// ---------------------------------------------------------------- storage: cluster

type ClientModule = typeof import('@kubernetes/client-node');

interface Cluster {
  k8s: ClientModule;
  core: import('@kubernetes/client-node').CoreV1Api;
  admission: import('@kubernetes/client-node').AdmissionregistrationV1Api;
}

async function connect(kubeconfig: string | undefined, context: string | undefined): Promise<Cluster> {
  const k8s = await import('@kubernetes/client-node');
  const kc = new k8s.KubeConfig();
  if (kubeconfig) kc.loadFromFile(kubeconfig);
  else kc.loadFromDefault();
  if (context) kc.setCurrentContext(context);
  return { k8s, core: kc.makeApiClient(k8s.CoreV1Api), admission: kc.makeApiClient(k8s.AdmissionregistrationV1Api) };
}

/** A short description of an API error: HTTP code and the Status message, never the request body. */
function apiError(err: unknown): string {
  const code = statusCode(err);
  const body = (err as { body?: unknown })?.body;
  let message: string | undefined;
  if (typeof body === 'string') {
    try {
      message = (JSON.parse(body) as { message?: string }).message;
    } catch {
      message = undefined;
    }
  } else if (body && typeof body === 'object') message = (body as { message?: string }).message;
  if (code !== undefined) return `HTTP ${code}${message ? `: ${message}` : ''}`;
  return err instanceof Error ? err.message.split('\n')[0] ?? 'error' : String(err);
}

const TLS_SECRET_TYPE = 'kubernetes.io/tls';

interface SecretState {
  material?: Partial<TlsMaterial>;
  resourceVersion?: string;
  exists: boolean;
}

async function readSecret(cluster: Cluster, name: string, namespace: string): Promise<SecretState> {
  let secret;
  try {
    secret = await cluster.core.readNamespacedSecret({ name, namespace });
  } catch (err) {
    if (statusCode(err) === 404) return { exists: false };
    throw new Error(`reading Secret ${namespace}/${name}: ${apiError(err)}`);
  }
  if (secret.type && secret.type !== TLS_SECRET_TYPE) {
    throw new Error(`Secret ${namespace}/${name} has type ${secret.type}, not ${TLS_SECRET_TYPE}; delete it or choose another --secret`);
  }
  const material: Partial<TlsMaterial> = {};
  for (const k of MATERIAL_KEYS) {
    const v = secret.data?.[k];
    if (v !== undefined) material[k] = Buffer.from(v, 'base64').toString('utf8');
  }
  const state: SecretState = { material, exists: true };
  if (secret.metadata?.resourceVersion) state.resourceVersion = secret.metadata.resourceVersion;
  return state;
}

async function writeSecret(cluster: Cluster, name: string, namespace: string, state: SecretState, material: TlsMaterial): Promise<void> {
  const data: Record<string, string> = {};
  for (const k of MATERIAL_KEYS) data[k] = Buffer.from(material[k]).toString('base64');
  const metadata = {
    name,
    namespace,
    labels: { 'app.kubernetes.io/part-of': 'canary-gate', 'app.kubernetes.io/managed-by': 'canary-gate-certs' },
    ...(state.resourceVersion ? { resourceVersion: state.resourceVersion } : {}),
  };
  const body = { apiVersion: 'v1', kind: 'Secret', type: TLS_SECRET_TYPE, metadata, data };
  try {
    if (state.exists) await cluster.core.replaceNamespacedSecret({ name, namespace, body });
    else await cluster.core.createNamespacedSecret({ namespace, body });
  } catch (err) {
    const code = statusCode(err);
    const hint = code === 409 ? ' (changed by someone else meanwhile; run again)' : '';
    throw new Error(`${state.exists ? 'updating' : 'creating'} Secret ${namespace}/${name}: ${apiError(err)}${hint}`);
  }
}

/** Sets caBundle on every webhook of the configuration; returns whether it changed. Waits for the configuration to exist. */
async function ensureCaBundle(cluster: Cluster, name: string, bundle: string, waitSeconds: number, log: (s: string) => void): Promise<boolean> {
  const want = Buffer.from(bundle).toString('base64');
  const deadline = Date.now() + waitSeconds * 1000;
  let said = false;
  for (;;) {
    let config;
    try {
      config = await cluster.admission.readMutatingWebhookConfiguration({ name });
    } catch (err) {
      if (statusCode(err) === 404 && Date.now() < deadline) {
        if (!said) log(`waiting up to ${waitSeconds}s for MutatingWebhookConfiguration ${name} to exist`);
        said = true;
        await new Promise((r) => setTimeout(r, 2000));
        continue;
      }
      throw new Error(`reading MutatingWebhookConfiguration ${name}: ${apiError(err)}`);
    }
    const webhooks = config.webhooks ?? [];
    if (webhooks.length === 0) throw new Error(`MutatingWebhookConfiguration ${name} has no webhooks`);
    const ops: { op: 'test' | 'add'; path: string; value: unknown }[] = [
      { op: 'test', path: '/metadata/resourceVersion', value: config.metadata?.resourceVersion },
    ];
    webhooks.forEach((w, i) => {
      if (w.clientConfig?.caBundle === want) return;
      ops.push({ op: 'test', path: `/webhooks/${i}/name`, value: w.name });
      ops.push({ op: 'add', path: `/webhooks/${i}/clientConfig/caBundle`, value: want });
    });
    if (ops.length === 1) return false;
    try {
      // JSON patch (the client's default content type), guarded by the tests above.
      await cluster.admission.patchMutatingWebhookConfiguration({ name, body: ops });
      return true;
    } catch (err) {
      const code = statusCode(err);
      // 409/422: changed meanwhile (a failed test op); read again and retry until the deadline.
      if ((code === 409 || code === 422) && Date.now() < deadline) continue;
      throw new Error(`patching caBundle of MutatingWebhookConfiguration ${name}: ${apiError(err)}`);
    }
  }
}

// ---------------------------------------------------------------- command

const help = `Usage: canary-gate certs [flags]

Creates a CA and a serving certificate for the webhook, keeps them while they
are valid, and renews them before they expire. Safe to run again and again
(install Job, daily CronJob).

Names:
  --service NAME         webhook Service (default canary-gate-webhook); its DNS names
                         NAME, NAME.NS, NAME.NS.svc, NAME.NS.svc.<cluster-domain> go into the certificate
  --namespace NS         namespace of the Service and the Secret (default canary-gate-system)
  --cluster-domain D     default cluster.local
  --san NAME|IP          extra DNS name or IP address (repeatable), e.g. --san 127.0.0.1 --san localhost

Where (at least one of --out-dir, --secret):
  --out-dir DIR          read and write ca.crt, ca.key, tls.crt, tls.key in DIR (keys mode 0600)
  --secret NAME          read and write a Secret of type kubernetes.io/tls (keys tls.crt, tls.key, ca.crt, ca.key);
                         with --secret the Secret is the source of truth, --out-dir only gets a copy
  --webhook-config NAME  put the CA bundle into caBundle of every webhook of this
                         MutatingWebhookConfiguration (before the new certificate is stored)
  --wait SECONDS         how long to wait for the webhook configuration to exist (default 120)
  --kubeconfig PATH      default: $KUBECONFIG, ~/.kube/config, or the in-cluster service account
  --context NAME         kubeconfig context

Lifetimes:
  --validity-days N      serving certificate validity (default ${DEFAULT_VALIDITY_DAYS})
  --ca-validity-days N   CA validity (default ${DEFAULT_CA_VALIDITY_DAYS}); must exceed validity + renew-before
  --renew-before N       renew the serving certificate when it expires within N days (default 30);
                         the CA is replaced when it expires within N + validity days, and the old
                         CA stays in the bundle until it expires

Exit codes: 0 done (or nothing to do), 1 failed, 2 bad flags.`;

function positiveInt(flag: string, value: string | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  if (!/^[0-9]+$/.test(value) || Number(value) < 1) throw new UsageError(`--${flag} must be a positive whole number of days, got "${value}"`);
  return Number(value);
}

class UsageError extends Error {}

const DNS_NAME = /^(\*\.)?[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*$/;

export interface CertsOptions {
  request: CertRequest;
  outDir?: string;
  secret?: string;
  namespace: string;
  webhookConfig?: string;
  waitSeconds: number;
  kubeconfig?: string;
  context?: string;
}

export function parseCertsArgs(argv: string[]): CertsOptions {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      strict: true,
      allowPositionals: false,
      options: {
        service: { type: 'string', default: 'canary-gate-webhook' },
        namespace: { type: 'string', default: 'canary-gate-system' },
        'cluster-domain': { type: 'string', default: 'cluster.local' },
        san: { type: 'string', multiple: true, default: [] },
        'out-dir': { type: 'string' },
        secret: { type: 'string' },
        'webhook-config': { type: 'string' },
        wait: { type: 'string' },
        kubeconfig: { type: 'string' },
        context: { type: 'string' },
        'validity-days': { type: 'string' },
        'ca-validity-days': { type: 'string' },
        'renew-before': { type: 'string' },
      },
    }));
  } catch (err) {
    throw new UsageError(err instanceof Error ? err.message : String(err));
  }
  const service = values.service ?? '';
  const namespace = values.namespace ?? '';
  if (!DNS_NAME.test(service)) throw new UsageError(`--service must be a Service name, got "${service}"`);
  if (!DNS_NAME.test(namespace)) throw new UsageError(`--namespace must be a namespace name, got "${namespace}"`);
  if (!DNS_NAME.test(values['cluster-domain'] ?? '')) throw new UsageError(`--cluster-domain must be a DNS name`);
  const dnsNames = serviceDnsNames(service, namespace, values['cluster-domain']);
  const ipAddresses: string[] = [];
  for (const san of values.san ?? []) {
    if (isIP(san)) ipAddresses.push(san);
    else if (DNS_NAME.test(san)) dnsNames.push(san);
    else throw new UsageError(`--san must be a DNS name or an IP address, got "${san}"`);
  }
  const validityDays = positiveInt('validity-days', values['validity-days'], DEFAULT_VALIDITY_DAYS);
  const caValidityDays = positiveInt('ca-validity-days', values['ca-validity-days'], DEFAULT_CA_VALIDITY_DAYS);
  const renewBeforeDays = positiveInt('renew-before', values['renew-before'], 30);
  if (renewBeforeDays >= validityDays) {
    throw new UsageError(`--renew-before (${renewBeforeDays}) must be less than --validity-days (${validityDays}), or every run would renew`);
  }
  if (caValidityDays <= validityDays + renewBeforeDays) {
    throw new UsageError(`--ca-validity-days (${caValidityDays}) must exceed --validity-days + --renew-before (${validityDays + renewBeforeDays})`);
  }
  if (!values['out-dir'] && !values.secret) throw new UsageError('nothing to write: give --out-dir DIR and/or --secret NAME');
  if (values.secret !== undefined && !DNS_NAME.test(values.secret)) throw new UsageError(`--secret must be a Secret name, got "${values.secret}"`);
  let waitSeconds = 120;
  if (values.wait !== undefined) {
    if (!/^[0-9]+$/.test(values.wait)) throw new UsageError(`--wait must be a whole number of seconds, got "${values.wait}"`);
    waitSeconds = Number(values.wait);
  }
  const opts: CertsOptions = {
    request: { dnsNames: [...new Set(dnsNames)], ipAddresses: [...new Set(ipAddresses)], validityDays, caValidityDays, renewBeforeDays },
    namespace,
    waitSeconds,
  };
  if (values['out-dir']) opts.outDir = values['out-dir'];
  if (values.secret) opts.secret = values.secret;
  if (values['webhook-config']) opts.webhookConfig = values['webhook-config'];
  if (values.kubeconfig) opts.kubeconfig = values.kubeconfig;
  if (values.context) opts.context = values.context;
  return opts;
}

export async function runCerts(opts: CertsOptions, log: (line: string) => void = (l) => console.log(l), now: Date = new Date()): Promise<CertPlan> {
  const needCluster = opts.secret !== undefined || opts.webhookConfig !== undefined;
  const cluster = needCluster ? await connect(opts.kubeconfig, opts.context) : undefined;

  let secretState: SecretState | undefined;
  let current: Partial<TlsMaterial> | undefined;
  let source: string;
  if (opts.secret && cluster) {
    secretState = await readSecret(cluster, opts.secret, opts.namespace);
    current = secretState.material;
    source = `Secret ${opts.namespace}/${opts.secret}`;
  } else {
    current = await readDir(opts.outDir as string);
    source = opts.outDir as string;
  }

  const plan = planCertificates(current, opts.request, now);
  const serving = new X509Certificate(plan.material['tls.crt']);
  const caCount = splitPem(plan.material['ca.crt']).length;
  log(`certs: ${plan.action} (${source}): ${plan.reason}`);
  if (plan.action !== 'keep') {
    log(`certs: serving certificate serial ${serving.serialNumber}, valid until ${new Date(serving.validTo).toISOString()}, names ${serving.subjectAltName ?? ''}`);
  }

  if (opts.webhookConfig && cluster) {
    const changed = await ensureCaBundle(cluster, opts.webhookConfig, plan.material['ca.crt'], opts.waitSeconds, log);
    log(`certs: MutatingWebhookConfiguration ${opts.webhookConfig} caBundle ${changed ? `set (${caCount} CA certificate${caCount > 1 ? 's' : ''})` : 'already up to date'}`);
  }
  if (opts.secret && cluster && secretState) {
    if (sameMaterial(secretState.material, plan.material)) log(`certs: Secret ${opts.namespace}/${opts.secret} unchanged`);
    else {
      await writeSecret(cluster, opts.secret, opts.namespace, secretState, plan.material);
      log(`certs: Secret ${opts.namespace}/${opts.secret} ${secretState.exists ? 'updated' : 'created'}`);
    }
  }
  if (opts.outDir) {
    const written = await writeDir(opts.outDir, plan.material);
    log(`certs: ${opts.outDir}: ${written.length ? `wrote ${written.join(', ')}` : 'unchanged'}`);
  }
  return plan;
}

export const command: Command = {
  summary: 'create, keep or renew the webhook TLS certificates (Secret, files, caBundle)',
  help,
  async run(argv: string[]): Promise<number> {
    let opts: CertsOptions;
    try {
      opts = parseCertsArgs(argv);
    } catch (err) {
      if (err instanceof UsageError) {
        console.error(`canary-gate certs: ${err.message}\nRun \`canary-gate certs --help\` for the flags.`);
        return 2;
      }
      throw err;
    }
    try {
      await runCerts(opts);
      return 0;
    } catch (err) {
      console.error(`canary-gate certs: ${err instanceof Error ? err.message : String(err)}`);
      return 1;
    }
  },
};
