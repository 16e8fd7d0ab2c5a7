// `canary-gate loadtester`: HTTP load and acceptance checks driven by a
// Canary's gate webhooks (Flagger's loadtester role, without its shell).

import { parseArgs } from 'node:util';
import type { Command } from '../../../core/cli.js';
import { createLogger } from '../../../core/log.js';
import { parseDuration } from '../../decide/analysis-config.js';
import { LoadTester } from './server.js';

const help = `Usage: canary-gate loadtester --allow-host HOST [flags]

Serves a Canary's gate webhooks (POST / with the gate payload). What to do is
in the gate's metadata:

  type: load (default)   starts HTTP load in the background and answers 200
                         at once; while a run for the same canary, revision and
                         URL is going, further calls only report it. Use it as a
                         "rollout" gate: it keeps load on during the analysis.
      url                target, e.g. http://web-canary.shop/ (required)
      rate               requests per second (default 10)
      concurrency        requests in flight (default 2)
      duration           how long, e.g. 30s or 1m (default 10s)
      method, body       default GET (POST when a body is given)
      headers            a JSON object, e.g. {"x-canary":"insider"}
      timeout            per request (default 5s)
      keepAlive          "true" reuses connections (default: a new connection
                         per request, so kube-proxy balances every request)
  type: acceptance       one request now; answers 200 only if the status is
                         expectStatus (default 200) and the body contains
                         expectBody (if given), else 500 with the reason. As a
                         "pre-rollout" gate it blocks the rollout until it passes.

Shell commands ("cmd") are never run: the answer is 400.

Routes: POST / (or /gate), GET /runs (running and the last 50 finished runs
with their results), GET /healthz.

Flags:
  --allow-host HOST      a host name requests may go to, or *.suffix (e.g.
                         *.svc.cluster.local); repeatable, at least one required
  --port N               listen port (default 8080)
  --bind-address ADDR    listen address (default 0.0.0.0)
  --max-rate N           highest rate a gate may ask for (default 200)
  --max-concurrency N    highest concurrency (default 16)
  --max-duration D       longest run (default 10m)
  --max-runs N           runs at once (default 20)
  --log-level LEVEL      fatal, error, warn, info, debug (default info)
  -h, --help             this text

Logs are JSON lines: each run's start, progress every 5 s and result
(requests, answers by status, failures, p50/p99 latency); acceptance results
with their reason. SIGTERM stops every run and exits 0.`;

export const command: Command = {
  summary: 'HTTP load and acceptance checks for gate webhooks (no shell)',
  help,
  async run(argv: string[]): Promise<number> {
    let values: Record<string, string | string[] | boolean | undefined>;
    try {
      ({ values } = parseArgs({
        args: argv,
        options: {
          'allow-host': { type: 'string', multiple: true },
          port: { type: 'string' },
          'bind-address': { type: 'string' },
          'max-rate': { type: 'string' },
          'max-concurrency': { type: 'string' },
          'max-duration': { type: 'string' },
          'max-runs': { type: 'string' },
          'log-level': { type: 'string' },
        },
        strict: true,
        allowPositionals: false,
      }));
    } catch (err) {
      console.error(`canary-gate loadtester: ${(err as Error).message}\n\n${help}`);
      return 2;
    }
    const num = (flag: string, fallback: number, min: number, max: number): number => {
      const raw = values[flag] as string | undefined;
      if (raw === undefined) return fallback;
      const n = Number(raw);
      if (!Number.isFinite(n) || n < min || n > max) throw new Error(`--${flag} must be a number from ${min} to ${max}, got "${raw}"`);
      return n;
    };
    const allowHosts = (values['allow-host'] as string[] | undefined) ?? [];
    if (allowHosts.length === 0) {
      console.error('canary-gate loadtester: at least one --allow-host is required (the hosts gates may send load to)');
      return 2;
    }
    let tester: LoadTester;
    let port: number;
    let host: string;
    try {
      port = num('port', 8080, 0, 65535);
      host = (values['bind-address'] as string | undefined) ?? '0.0.0.0';
      const log = createLogger('loadtester', (values['log-level'] as string | undefined) ?? 'info');
      tester = new LoadTester({
        limits: {
          allowHosts,
          maxRate: num('max-rate', 200, 0.1, 100_000),
          maxConcurrency: num('max-concurrency', 16, 1, 1000),
          maxDurationMs: parseDuration((values['max-duration'] as string | undefined) ?? '10m'),
        },
        maxRuns: num('max-runs', 20, 1, 1000),
        log,
      });
      const bound = await tester.listen(port, host);
      log.info({ port: bound, host, allowHosts }, 'load tester listening');
      console.error(`loadtester listening on ${host}:${bound}`);
    } catch (err) {
      console.error(`canary-gate loadtester: ${(err as Error).message}`);
      return 2;
    }
    await new Promise<void>((resolve) => {
      const stop = () => void tester.close().then(resolve);
      process.once('SIGTERM', stop);
      process.once('SIGINT', stop);
    });
    return 0;
  },
};
