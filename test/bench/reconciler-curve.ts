// The reconciler benchmark at growing sizes, one run per size on the same
// local control plane, and the curve of its figures: whether each cost grows
// no faster than linearly with the number of managed canaries.
//
//   npm run bench:curve                        # 1000, 2000, 5000, 10000 managed; a tenth progressing
//   BENCH_CURVE=1000,2000 npm run bench:curve   # other sizes
//
// Each size runs `npm run bench:reconciler` with BENCH_MANAGED=N and
// BENCH_PROGRESSING=N/10 (its full output is passed through), then this
// prints the figures side by side. A size the local control plane cannot
// hold ends the curve there, with the benchmark's own reason.

import { spawn } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

interface Result {
  managed: number;
  progressing: number;
  idleReadsPerTick: number | null;
  writesPerStep: number | null;
  ownLagP50: number | string | null;
  ownLagP99: number | string | null;
  lagP99: number | null;
  lagMax: number | null;
  rssMb: number;
  cpuSecondsPerProgressing: number | null;
  progressingWallSeconds: number;
}

const here = path.dirname(fileURLToPath(import.meta.url));
const sizes = (process.env.BENCH_CURVE ?? '1000,2000,5000,10000').split(',').map((s) => Number(s.trim()));
if (sizes.some((n) => !Number.isInteger(n) || n < 10)) {
  console.error(`BENCH_CURVE must list whole numbers >= 10, got "${process.env.BENCH_CURVE}"`);
  process.exit(2);
}

function runOnce(managed: number): Promise<{ result?: Result; tail: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [path.join(here, 'reconciler.bench.js')], {
      env: {
        ...process.env,
        BENCH_MANAGED: String(managed),
        BENCH_PROGRESSING: String(Math.max(1, Math.round(managed / 10))),
        BENCH_NAMESPACES: String(Math.max(10, Math.round(managed / 100))),
        // Creating and cleaning up 10,000 objects takes longer than the single run's 10 minutes.
        BENCH_BUDGET_SECONDS: String(Math.max(570, Math.round(managed * 0.25))),
      },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let out = '';
    child.stdout.on('data', (d: Buffer) => {
      process.stdout.write(d);
      out += d.toString();
    });
    child.on('exit', () => {
      const line = out.split('\n').find((l) => l.startsWith('BENCH_RESULT '));
      resolve({ result: line ? (JSON.parse(line.slice('BENCH_RESULT '.length)) as Result) : undefined, tail: out.split('\n').slice(-6).join('\n') });
    });
  });
}

const fmt = (v: number | string | null | undefined, digits = 2) => (v === null || v === undefined ? 'n/a' : typeof v === 'string' ? v : v.toFixed(digits));
const results: Result[] = [];
for (const n of sizes) {
  console.log(`\n===== curve: N=${n} managed, ${Math.round(n / 10)} progressing =====`);
  const { result, tail } = await runOnce(n);
  if (!result) {
    console.log(`\nN=${n}: the benchmark gave no figures; the curve ends at ${results.at(-1)?.managed ?? 'no size'}. Its last lines:\n${tail}`);
    break;
  }
  results.push(result);
}

console.log('\n== canary-gate reconciler: the curve ==');
const rows: string[][] = [
  ['N managed / M progressing', ...results.map((r) => `${r.managed} / ${r.progressing}`)],
  ['API reads per idle canary per tick (goal 0)', ...results.map((r) => fmt(r.idleReadsPerTick, 4))],
  ['writes per step (goal <= 4)', ...results.map((r) => fmt(r.writesPerStep))],
  ['reconciler step lag p50 / p99, s (goal p99 < 1)', ...results.map((r) => `${fmt(r.ownLagP50, 3)} / ${fmt(r.ownLagP99, 3)}`)],
  ['step lag incl. readiness waits p99 / max, s', ...results.map((r) => `${fmt(r.lagP99, 1)} / ${fmt(r.lagMax, 1)}`)],
  ['RSS max, MB (goal < 500 at 10k)', ...results.map((r) => fmt(r.rssMb, 0))],
  ['CPU s per progressing canary', ...results.map((r) => fmt(r.cpuSecondsPerProgressing, 3))],
];
const width = rows.map((r) => r.map((c) => c.length)).reduce((a, b) => a.map((w, i) => Math.max(w, b[i] ?? 0)));
for (const r of rows) console.log(r.map((c, i) => c.padEnd(width[i]!)).join('  '));
// Growth between the smallest and the largest size, per canary: above 1.5x the per-canary cost is not flat.
if (results.length >= 2) {
  const a = results[0]!;
  const b = results.at(-1)!;
  const scale = b.managed / a.managed;
  const perCanary = (r: Result) => [r.rssMb / r.managed, r.cpuSecondsPerProgressing ?? NaN, r.writesPerStep ?? NaN] as const;
  const [ra, ca, wa] = perCanary(a);
  const [rb, cb, wb] = perCanary(b);
  console.log(`\nfrom N=${a.managed} to N=${b.managed} (x${scale}): RSS x${fmt(b.rssMb / a.rssMb)} (per canary x${fmt(rb / ra)}), CPU per progressing canary x${fmt(cb / ca)}, writes per step x${fmt(wb / wa)}`);
  for (const [what, ratio] of [['CPU per progressing canary', cb / ca], ['writes per step', wb / wa]] as const) {
    if (ratio > 1.5) console.log(`  ${what} grows faster than linearly (x${fmt(ratio)} per unit): see the runs above for where`);
  }
}
