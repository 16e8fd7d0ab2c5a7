// What every operator command shares: kubectl-like connection flags, strict
// argument parsing, reading a Canary with clear errors, and recording an
// Event on it so the action shows in `kubectl describe canary`.

import { requestTimeout, statusCode } from '../../core/api/client.js';
import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import * as k8s from '@kubernetes/client-node';
import { CLI_COMPONENT, GROUP, VERSION } from '../../core/contract.js';
import type { Canary } from '../../core/api/types.js';

export const PLURAL = 'canaries';
/** Shown as the source of the Events the CLI records. */
/** Every request the CLI makes gives up after this long (a watch excepted). */
export const REQUEST_TIMEOUT_MS = 20_000;

/** Bad flags or arguments: exit 2 with a pointer to --help. */
export class UsageError extends Error {}

/** A failure with a message meant for the user and an exit code (default 1). */
export class CliError extends Error {
  constructor(
    message: string,
    readonly code = 1,
  ) {
    super(message);
  }
}

export const CONNECTION_OPTIONS = {
  kubeconfig: { type: 'string' },
  context: { type: 'string' },
  namespace: { type: 'string', short: 'n' },
} as const satisfies NonNullable<ParseArgsConfig['options']>;

export const CONNECTION_HELP = `Connection flags (as kubectl):
  --kubeconfig FILE        kubeconfig file (default: $KUBECONFIG, then ~/.kube/config)
  --context NAME           kubeconfig context (default: the current context)
  -n, --namespace NS       namespace of the Canary (default: the context's namespace, else "default")
  -h, --help               this text`;

export interface ConnectionFlags {
  kubeconfig?: string | undefined;
  context?: string | undefined;
  namespace?: string | undefined;
}

export interface Connection {
  kc: k8s.KubeConfig;
  /** The namespace from -n, the context, or "default". */
  namespace: string;
  contextName: string;
  /** The kubeconfig user of the context, if it has one. */
  user: string | undefined;
  server: string;
  custom: k8s.CustomObjectsApi;
  core: k8s.CoreV1Api;
  apps: k8s.AppsV1Api;
}

/** Loads the kubeconfig the way kubectl does and picks the context and namespace. */
export function connect(flags: ConnectionFlags): Connection {
  const kc = new k8s.KubeConfig();
  try {
    if (flags.kubeconfig) kc.loadFromFile(flags.kubeconfig);
    else kc.loadFromDefault();
  } catch (err) {
    throw new CliError(`cannot load the kubeconfig${flags.kubeconfig ? ` ${flags.kubeconfig}` : ''}: ${(err as Error).message}`);
  }
  if (flags.context !== undefined) {
    if (!kc.getContextObject(flags.context)) {
      const known = kc.getContexts().map((c) => c.name);
      throw new UsageError(`context "${flags.context}" not found in the kubeconfig${known.length ? ` (contexts: ${known.join(', ')})` : ''}`);
    }
    kc.setCurrentContext(flags.context);
  }
  const contextName = kc.getCurrentContext();
  const context = kc.getContextObject(contextName);
  const cluster = kc.getCurrentCluster();
  if (!cluster) throw new CliError(`the kubeconfig has no cluster for context "${contextName}"; set one with --kubeconfig or --context`);
  const namespace = flags.namespace || context?.namespace || 'default';
  return {
    kc,
    namespace,
    contextName,
    user: context?.user || kc.getCurrentUser()?.name || undefined,
    server: cluster.server,
    custom: kc.makeApiClient(k8s.CustomObjectsApi),
    core: kc.makeApiClient(k8s.CoreV1Api),
    apps: kc.makeApiClient(k8s.AppsV1Api),
  };
}

type Options = NonNullable<ParseArgsConfig['options']>;

/**
 * Strict parsing: unknown flags, missing values and a wrong number of
 * positionals are usage errors.
 */
export function parseCommandArgs(
  argv: string[],
  options: Options,
  positionals: { min: number; max: number; names: string },
): { values: Record<string, string | boolean | undefined>; positionals: string[] } {
  let parsed;
  try {
    parsed = parseArgs({ args: argv, options, strict: true, allowPositionals: true });
  } catch (err) {
    // node:util's messages are good ("Unknown option '--x'..."); drop its hint about '--' when it is noise.
    throw new UsageError((err as Error).message.replace(/\. To specify a positional argument starting with a '-'.*$/s, ''));
  }
  const pos = parsed.positionals;
  if (pos.length < positionals.min) throw new UsageError(`missing ${positionals.names}`);
  if (pos.length > positionals.max) throw new UsageError(`unexpected argument${pos.length - positionals.max > 1 ? 's' : ''}: ${pos.slice(positionals.max).join(' ')}`);
  return { values: parsed.values as Record<string, string | boolean | undefined>, positionals: pos };
}

/**
 * Runs a command body with the CLI's error conventions: usage errors exit 2
 * with a pointer to --help, CliErrors with their code, API errors 1.
 */
export async function runCommand(name: string, body: () => Promise<number>): Promise<number> {
  try {
    return await body();
  } catch (err) {
    if (err instanceof UsageError) {
      console.error(`canary-gate ${name}: ${err.message}\nRun 'canary-gate ${name} --help' for usage.`);
      return 2;
    }
    if (err instanceof CliError) {
      console.error(`canary-gate ${name}: ${err.message}`);
      return err.code;
    }
    console.error(`canary-gate ${name}: ${describeApiError(err)}`);
    return 1;
  }
}

interface StatusBody {
  message?: string;
  reason?: string;
  details?: { name?: string; kind?: string };
}

function statusBodyOf(err: unknown): StatusBody | undefined {
  if (!(err instanceof k8s.ApiException)) return undefined;
  const body: unknown = err.body;
  if (body && typeof body === 'object') return body as StatusBody;
  if (typeof body === 'string') {
    try {
      return JSON.parse(body) as StatusBody;
    } catch {
      return { message: body.slice(0, 300) };
    }
  }
  return undefined;
}

/** One line about a failed API call: the API server's own message when there is one. */
export function describeApiError(err: unknown): string {
  const code = statusCode(err);
  const body = statusBodyOf(err);
  if (code !== undefined && body?.message) return `${body.message} (HTTP ${code})`;
  if (code !== undefined) return `the API server answered HTTP ${code}`;
  const e = err as { message?: string; code?: unknown; cause?: { code?: unknown; message?: string } } | null;
  const sys = typeof e?.code === 'string' ? e.code : typeof e?.cause?.code === 'string' ? e.cause.code : undefined;
  if (sys) return `cannot reach the API server: ${e?.cause?.message ?? e?.message ?? sys}`;
  if (e?.message === 'This operation was aborted' || (err as Error)?.name === 'AbortError') return `the API server did not answer within ${REQUEST_TIMEOUT_MS / 1000}s`;
  return e?.message ?? String(err);
}

export function canaryPath(namespace?: string): string {
  return namespace ? `/apis/${GROUP}/${VERSION}/namespaces/${namespace}/${PLURAL}` : `/apis/${GROUP}/${VERSION}/${PLURAL}`;
}

/** Reads one Canary; a missing one is a CliError naming it and its namespace. */
export async function getCanary(conn: Connection, name: string, namespace = conn.namespace): Promise<Canary> {
  try {
    return (await conn.custom.getNamespacedCustomObject(
      { group: GROUP, version: VERSION, namespace, plural: PLURAL, name },
      requestTimeout(REQUEST_TIMEOUT_MS),
    )) as Canary;
  } catch (err) {
    throw notFoundOr(err, name, namespace);
  }
}

/** A 404 for a missing object names it; one for a missing resource says the CRDs are not installed. */
export function notFoundOr(err: unknown, name: string, namespace: string): Error {
  if (statusCode(err) !== 404) return err as Error;
  const body = statusBodyOf(err);
  if (body?.details?.name || /not found/.test(body?.message ?? '')) return new CliError(`canary "${name}" not found in namespace "${namespace}"`);
  return new CliError(`the API server does not serve ${PLURAL}.${GROUP}/${VERSION}: are the canary-gate CRDs installed?`);
}

/** Lists Canaries of one namespace, or of all namespaces when namespace is undefined. */
export async function listCanaries(conn: Connection, namespace: string | undefined): Promise<Canary[]> {
  const items: Canary[] = [];
  let token: string | undefined;
  try {
    do {
      // Pages of 500, as kubectl: a big cluster is not one huge response.
      const page = { group: GROUP, version: VERSION, plural: PLURAL, limit: 500, ...(token ? { _continue: token } : {}) };
      const list = (namespace === undefined
        ? await conn.custom.listClusterCustomObject(page, requestTimeout(REQUEST_TIMEOUT_MS))
        : await conn.custom.listNamespacedCustomObject({ ...page, namespace }, requestTimeout(REQUEST_TIMEOUT_MS))) as { items?: Canary[]; metadata?: { continue?: string } };
      items.push(...(list.items ?? []));
      token = list.metadata?.continue || undefined;
    } while (token);
    return items;
  } catch (err) {
    if (statusCode(err) === 404) throw new CliError(`the API server does not serve ${PLURAL}.${GROUP}/${VERSION}: are the canary-gate CRDs installed?`);
    throw err;
  }
}

const mergePatch = k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.MergePatch);

/** One merge patch of a Canary (metadata or spec; status is a subresource and is not touched). */
export async function patchCanary(conn: Connection, name: string, body: object, namespace = conn.namespace): Promise<Canary> {
  try {
    return (await conn.custom.patchNamespacedCustomObject(
      { group: GROUP, version: VERSION, namespace, plural: PLURAL, name, body, fieldManager: 'canary-gate-cli' },
      requestTimeout(REQUEST_TIMEOUT_MS, mergePatch),
    )) as Canary;
  } catch (err) {
    throw notFoundOr(err, name, namespace);
  }
}

/** Who is acting, for Event messages: the kubeconfig user of the context. */
export function actorOf(conn: Connection): string {
  return conn.user ? `user "${conn.user}" (context "${conn.contextName}")` : `context "${conn.contextName}"`;
}

/**
 * Records a core/v1 Event about the Canary (what kubectl describe lists).
 * Returns false, after a warning on stderr, when it could not be written:
 * the action itself has happened by then and is not undone.
 */
export async function recordEvent(conn: Connection, canary: Canary, type: 'Normal' | 'Warning', reason: string, message: string): Promise<boolean> {
  const namespace = canary.metadata.namespace ?? conn.namespace;
  const name = canary.metadata.name ?? '';
  const now = new Date();
  const suffix = now.getTime().toString(16) + randomBytes(3).toString('hex');
  try {
    await conn.core.createNamespacedEvent(
      {
        namespace,
        body: {
          metadata: { name: `${name.slice(0, 253 - suffix.length - 1)}.${suffix}`, namespace },
          involvedObject: {
            apiVersion: canary.apiVersion,
            kind: 'Canary',
            name,
            namespace,
            uid: canary.metadata.uid,
            resourceVersion: canary.metadata.resourceVersion,
          },
          type,
          reason,
          message: message.length > 1024 ? `${message.slice(0, 1021)}...` : message,
          count: 1,
          firstTimestamp: now,
          lastTimestamp: now,
          source: { component: CLI_COMPONENT, host: hostname() },
          reportingComponent: CLI_COMPONENT,
          reportingInstance: hostname().slice(0, 128),
        },
      },
      requestTimeout(REQUEST_TIMEOUT_MS),
    );
    return true;
  } catch (err) {
    console.error(`warning: the ${reason} Event could not be recorded: ${describeApiError(err)}`);
    return false;
  }
}
