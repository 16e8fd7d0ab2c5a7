// `canary-gate webhook`: runs the mutating admission webhook.

import { parseArgs } from 'node:util';
import { createLogger } from '../core/log.js';
import type { Command } from '../core/cli.js';
import { DEFAULT_MAX_PENDING_SPEC_BYTES } from './decide.js';
import {
  DEFAULT_MAX_BODY_BYTES,
  DEFAULT_METRICS_PORT,
  DEFAULT_PORT,
  createWebhookServer,
} from './server.js';

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

const help = `Usage: canary-gate webhook --tls-cert FILE --tls-key FILE [flags]

Runs the mutating admission webhook. Every update of a managed Deployment's
pod template (or a managed Service's spec) is held back: the live object keeps
its stable spec and the change is stored as a pending revision for the
reconciler to canary. Serves HTTPS only on --port; /metrics is served over
plain HTTP on --metrics-port.

Routes (webhook port, HTTPS):
  POST /mutate      AdmissionReview (admission.k8s.io/v1)
  GET  /healthz     liveness
  GET  /readyz      readiness (503 while shutting down)
Routes (metrics port, HTTP):
  GET  /metrics     Prometheus text format

Flags:
  --tls-cert FILE          serving certificate (PEM), required; re-read when the file changes
  --tls-key FILE           private key of the certificate (PEM), required; re-read when it changes
  --port N                 HTTPS port of the webhook (default ${DEFAULT_PORT})
  --bind-address ADDR      address to listen on, both ports (default 0.0.0.0)
  --metrics-port N         plain-HTTP port for /metrics, 0 = any free port (default ${DEFAULT_METRICS_PORT})
  --reconciler-user NAME   username whose updates pass untouched (the reconciler's
                           identity, e.g. system:serviceaccount:canary-gate:reconciler);
                           repeatable
  --max-body-bytes N       largest AdmissionReview accepted; larger gets 413 (default ${DEFAULT_MAX_BODY_BYTES})
  --max-pending-spec-bytes N
                           largest pending spec stored in an annotation; a larger
                           change is refused (default ${DEFAULT_MAX_PENDING_SPEC_BYTES})
  --log-level LEVEL        ${LOG_LEVELS.join(', ')} (default info)
  -h, --help               this text

Logs are JSON lines on stdout: request uid, namespace, name, decision, revision
and latency; never object contents. SIGTERM stops accepting connections,
finishes the requests in flight, then exits 0.`;

class UsageError extends Error {}

function portOf(flag: string, value: string | undefined, fallback: number, allowZero: boolean): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!/^\d+$/.test(value) || n > 65535 || (!allowZero && n === 0)) throw new UsageError(`--${flag} must be a port number, got "${value}"`);
  return n;
}

function positiveInt(flag: string, value: string | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  if (!/^\d+$/.test(value) || Number(value) <= 0 || !Number.isSafeInteger(Number(value))) {
    throw new UsageError(`--${flag} must be a positive integer, got "${value}"`);
  }
  return Number(value);
}

function parse(argv: string[]) {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      strict: true,
      allowPositionals: false,
      options: {
        port: { type: 'string' },
        'tls-cert': { type: 'string' },
        'tls-key': { type: 'string' },
        'reconciler-user': { type: 'string', multiple: true },
        'metrics-port': { type: 'string' },
        'log-level': { type: 'string' },
        'bind-address': { type: 'string' },
        'max-body-bytes': { type: 'string' },
        'max-pending-spec-bytes': { type: 'string' },
      },
    }));
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  const certFile = values['tls-cert'];
  const keyFile = values['tls-key'];
  if (!certFile || !keyFile) throw new UsageError('--tls-cert and --tls-key are required');
  const logLevel = values['log-level'] ?? 'info';
  if (!LOG_LEVELS.includes(logLevel)) throw new UsageError(`--log-level must be one of ${LOG_LEVELS.join(', ')}, got "${logLevel}"`);
  const users = values['reconciler-user'] ?? [];
  if (users.some((u) => u.trim() === '')) throw new UsageError('--reconciler-user must not be empty');
  return {
    certFile,
    keyFile,
    logLevel,
    users,
    port: portOf('port', values.port, DEFAULT_PORT, true),
    metricsPort: portOf('metrics-port', values['metrics-port'], DEFAULT_METRICS_PORT, true),
    bindAddress: values['bind-address'] ?? '0.0.0.0',
    maxBodyBytes: positiveInt('max-body-bytes', values['max-body-bytes'], DEFAULT_MAX_BODY_BYTES),
    maxPendingSpecBytes: positiveInt('max-pending-spec-bytes', values['max-pending-spec-bytes'], DEFAULT_MAX_PENDING_SPEC_BYTES),
  };
}

async function run(argv: string[]): Promise<number> {
  let flags: ReturnType<typeof parse>;
  try {
    flags = parse(argv);
  } catch (err) {
    if (err instanceof UsageError) {
      console.error(`canary-gate webhook: ${err.message}\nRun \`canary-gate webhook --help\` for the flags.`);
      return 2;
    }
    throw err;
  }

  const log = createLogger('webhook', flags.logLevel);
  if (flags.users.length === 0) {
    log.warn('no --reconciler-user given: the reconciler cannot promote changes through this webhook');
  }
  const server = createWebhookServer({
    tlsCertFile: flags.certFile,
    tlsKeyFile: flags.keyFile,
    port: flags.port,
    bindAddress: flags.bindAddress,
    metricsPort: flags.metricsPort,
    reconcilerUsers: flags.users,
    maxBodyBytes: flags.maxBodyBytes,
    maxPendingSpecBytes: flags.maxPendingSpecBytes,
    logger: log,
  });
  try {
    await server.start();
  } catch (err) {
    log.fatal({ error: (err as Error).message }, 'cannot start the webhook');
    return 1;
  }

  return new Promise<number>((resolve) => {
    let stopping = false;
    const stop = (signal: NodeJS.Signals) => {
      if (stopping) {
        log.warn({ signal }, 'second signal: exiting now');
        resolve(1);
        process.exit(1);
      }
      stopping = true;
      log.info({ signal, inFlight: server.inFlight() }, 'shutting down: draining in-flight requests');
      server.close().then(
        () => resolve(0),
        (err: unknown) => {
          log.error({ err }, 'error while shutting down');
          resolve(1);
        },
      );
    };
    process.on('SIGTERM', stop);
    process.on('SIGINT', stop);
  });
}

export const command: Command = {
  summary: 'run the mutating admission webhook (HTTPS)',
  help,
  run,
};
