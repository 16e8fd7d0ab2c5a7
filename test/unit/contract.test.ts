import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { CONTRACT } from '../../core/contract.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');

/** The rows of README's contract table: [name, kind] with the backticks of the name removed. */
async function readmeContract(): Promise<Array<[string, string]>> {
  const readme = await readFile(path.join(root, 'README.md'), 'utf8');
  const start = readme.indexOf('| name | kind | meaning |');
  assert.ok(start >= 0, 'README has a contract table');
  const rows: Array<[string, string]> = [];
  for (const line of readme.slice(start).split('\n').slice(2)) {
    if (!line.startsWith('|')) break;
    const cells = line.split('|').slice(1, -1).map((c) => c.trim());
    rows.push([(cells[0] ?? '').replace(/^`|`$/g, ''), cells[1] ?? '']);
  }
  return rows;
}

describe('the public contract', () => {
  it("README's contract table lists exactly the names of core/contract.ts, with the same kinds", async () => {
    const rows = await readmeContract();
    assert.deepEqual(
      rows,
      CONTRACT.map((e) => [e.name, e.kind]),
    );
  });

  it('every name is under canarygate.dev/ or a standard Kubernetes label', () => {
    for (const e of CONTRACT) {
      const key = e.name.split(':')[0] ?? '';
      assert.ok(key.startsWith('canarygate.dev/') || key.startsWith('app.kubernetes.io/') || key.startsWith('<'), e.name);
    }
  });
});
