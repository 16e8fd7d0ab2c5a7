#!/usr/bin/env node
// canary-gate <command> [flags]: one binary for every process and tool.
// Commands are loaded on demand so that starting one never pays for the others.

export interface Command {
  /** One line shown in the command list. */
  summary: string;
  /** Full help text for `canary-gate <command> --help`. */
  help: string;
  /** Runs the command; resolves to the process exit code. */
  run(argv: string[]): Promise<number>;
}

const commands: Record<string, () => Promise<{ command: Command }>> = {
  webhook: () => import('../webhook/command.js'),
  reconciler: () => import('../reconciler/command.js'),
  certs: () => import('../certs/command.js'),
  manifests: () => import('../deploy/command.js'),
  status: () => import('../reconciler/cli/status.js'),
  watch: () => import('../reconciler/cli/watch.js'),
  promote: () => import('../reconciler/cli/promote.js'),
  abort: () => import('../reconciler/cli/abort.js'),
  retry: () => import('../reconciler/cli/retry.js'),
  pause: () => import('../reconciler/cli/pause.js'),
  resume: () => import('../reconciler/cli/resume.js'),
  loadtester: () => import('../reconciler/analysis/loadtester/command.js'),
};

async function usage(): Promise<string> {
  const lines = ['Usage: canary-gate <command> [flags]', '', 'Commands:'];
  for (const [name, load] of Object.entries(commands)) {
    const { command } = await load();
    lines.push(`  ${name.padEnd(12)} ${command.summary}`);
  }
  lines.push('', 'Run `canary-gate <command> --help` for the flags of one command.');
  return lines.join('\n');
}

export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || name === '--help' || name === '-h' || name === 'help') {
    console.log(await usage());
    return name ? 0 : 2;
  }
  const load = commands[name];
  if (!load) {
    console.error(`canary-gate: unknown command "${name}"\n\n${await usage()}`);
    return 2;
  }
  const { command } = await load();
  if (rest.includes('--help') || rest.includes('-h')) {
    console.log(command.help);
    return 0;
  }
  return command.run(rest);
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    console.error(`canary-gate: ${err instanceof Error ? err.message : String(err)}`);
    process.exitCode = 1;
  },
);
