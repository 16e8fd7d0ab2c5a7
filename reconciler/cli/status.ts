// `canary-gate status`: the Canaries of a namespace (or all) as a table, or
// as the objects in JSON or YAML.

import * as k8s from '@kubernetes/client-node';
import type { Command } from '../../core/cli.js';
import type { Canary } from '../../core/api/types.js';
import { changeRows, renderTable, sharedWaitLines, statusRows } from './format.js';
import { CONNECTION_HELP, CONNECTION_OPTIONS, UsageError, connect, getCanary, listCanaries, parseCommandArgs, runCommand } from './kube.js';

const help = `Usage: canary-gate status [-n NS | -A] [NAME] [-o table|json|yaml] [flags]

Shows the Canaries of a namespace (or one of them) with their rollout state:

  NAME      the Canary
  TARGET    the Deployment or Service it rolls out (Kind/name)
  PHASE     Initialized, Progressing, WaitingPromotion, Succeeded, Failed...
            ("(suspended)" when paused with \`canary-gate pause\`)
  WEIGHT    canary traffic weight / maxWeight (e.g. 20/50); for blue/green
            and A/B analysis, iterations passed / iterations (e.g. 2/3)
  CHECKS    failed checks / threshold (rolled back when they meet)
  PENDING   the revision being analysed, or -
  AGE       time since the last phase change (kubectl style: 5s, 3m20s, 2h)

Below the table, each Canary that passed and waits for the other consumers
of a shared ConfigMap or Secret says whom it waits for.

With --revision ID, shows instead where one change stands in every stage
that has seen it (ID is a revision, or an identity as the Canaries' Change
column shows it: images:..., revision:..., label:key=value): waiting for an
upstream stage (and for what), progressing, promoted or rolled back.

Flags:
  -A, --all-namespaces     list the Canaries of every namespace (adds a NAMESPACE column)
      --revision ID        one change across the stages (with -A: every namespace)
  -o, --output FORMAT      table (default), json or yaml: json and yaml print the
                           objects (one object for NAME, else a v1 List)

${CONNECTION_HELP}

Examples:
  canary-gate status -n shop
  canary-gate status -A
  canary-gate status -n shop web -o yaml
  canary-gate status -A --revision images:3f2a9c01b7de`;

const OUTPUTS = ['table', 'json', 'yaml'] as const;

/** The object as kubectl prints it: without managedFields. */
function printable(c: Canary): Canary {
  const { managedFields: _drop, ...metadata } = c.metadata;
  return { ...c, metadata };
}

export const command: Command = {
  summary: 'show the rollout state of Canaries (table, json or yaml)',
  help,
  run: (argv) =>
    runCommand('status', async () => {
      const { values, positionals } = parseCommandArgs(
        argv,
        {
          ...CONNECTION_OPTIONS,
          'all-namespaces': { type: 'boolean', short: 'A' },
          output: { type: 'string', short: 'o' },
          revision: { type: 'string' },
        },
        { min: 0, max: 1, names: 'NAME' },
      );
      const output = (values.output as string | undefined) ?? 'table';
      if (!(OUTPUTS as readonly string[]).includes(output)) throw new UsageError(`--output must be one of ${OUTPUTS.join(', ')}, got "${output}"`);
      const all = values['all-namespaces'] === true;
      const name = positionals[0];
      if (all && values.namespace !== undefined) throw new UsageError('--all-namespaces and --namespace cannot be used together');
      if (all && name) throw new UsageError('a NAME cannot be given with --all-namespaces');

      const conn = connect(values as { kubeconfig?: string; context?: string; namespace?: string });
      const canaries = name ? [await getCanary(conn, name)] : await listCanaries(conn, all ? undefined : conn.namespace);

      if (output === 'json' || output === 'yaml') {
        const items = canaries.map(printable);
        const doc = name ? items[0] : { apiVersion: 'v1', kind: 'List', metadata: { resourceVersion: '' }, items };
        process.stdout.write(output === 'json' ? `${JSON.stringify(doc, null, 4)}\n` : k8s.dumpYaml(doc));
        return 0;
      }
      if (canaries.length === 0) {
        console.error(all ? 'No Canaries found.' : `No Canaries found in namespace "${conn.namespace}".`);
        return 0;
      }
      const revision = values.revision as string | undefined;
      if (revision !== undefined) {
        const rows = changeRows(canaries, revision, Date.now());
        if (rows.length === 1) console.error(`No Canary has seen ${revision}.`);
        else console.log(renderTable(rows));
        return 0;
      }
      console.log(renderTable(statusRows(canaries, { allNamespaces: all, now: Date.now() })));
      const waits = sharedWaitLines(canaries);
      if (waits.length > 0) console.log(`\n${waits.join('\n')}`);
      return 0;
    }),
};
