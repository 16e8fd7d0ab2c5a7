// Waiting for conditions with clear timeouts, and a dump of what a person
// would look at when one does not arrive.

import { kubectl } from './cluster.js';

export class WaitTimeout extends Error {}

/**
 * Polls `probe` until it returns a value other than undefined/false.
 * On timeout, throws with the description, the last probe error and, when a
 * namespace is given, the objects and events in it.
 */
export async function waitFor<T>(
  description: string,
  probe: () => Promise<T | undefined | false> | T | undefined | false,
  opts: { timeoutMs?: number; intervalMs?: number; namespace?: string } = {},
): Promise<T> {
  const timeoutMs = opts.timeoutMs ?? 60_000;
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  for (;;) {
    try {
      const value = await probe();
      if (value !== undefined && value !== false) return value as T;
    } catch (err) {
      lastError = err;
    }
    if (Date.now() > deadline) {
      const dump = opts.namespace ? await dumpNamespace(opts.namespace) : '';
      const why = lastError instanceof Error ? `\nlast error: ${lastError.message}` : '';
      throw new WaitTimeout(`timed out after ${timeoutMs} ms waiting for ${description}${why}${dump}`);
    }
    await sleep(opts.intervalMs ?? 250);
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Objects and events of a namespace, as text for a failure message. */
export async function dumpNamespace(namespace: string): Promise<string> {
  const parts: string[] = [`\n--- namespace ${namespace} ---`];
  const objects = await kubectl(['-n', namespace, 'get', 'deployments,replicasets,pods,services,canaries.canarygate.dev', '-o', 'wide', '--show-labels'], { timeoutMs: 10_000 }).catch(() => undefined);
  if (objects) parts.push(objects.stdout || objects.stderr);
  const annotations = await kubectl(
    ['-n', namespace, 'get', 'deployments,services', '-o', 'custom-columns=KIND:.kind,NAME:.metadata.name,ANNOTATIONS:.metadata.annotations'],
    { timeoutMs: 10_000 },
  ).catch(() => undefined);
  if (annotations) parts.push(annotations.stdout);
  const events = await kubectl(['-n', namespace, 'get', 'events', '--sort-by=.lastTimestamp'], { timeoutMs: 10_000 }).catch(() => undefined);
  if (events) parts.push(events.stdout);
  return parts.join('\n');
}
