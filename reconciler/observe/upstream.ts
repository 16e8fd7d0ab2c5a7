// Reads the upstream Canaries a Canary's `spec.promotion.after` names: from
// the informer cache when they are in this cluster, through the kubeconfig
// in a Secret of the Canary's namespace when they are in another. A remote
// read has a short timeout and is reused for a few seconds (every waiting
// Canary is synced often); a read that fails is reported as such, and the
// stage waits (decide/stages.ts).

import * as k8s from '@kubernetes/client-node';
import { GROUP, VERSION } from '../../core/contract.js';
import type { Canary, PromotionDependency } from '../../core/api/types.js';
import { errorMessage, prepareKubeConfig } from '../../core/api/client.js';
import type { UpstreamView } from '../decide/stages.js';
import type { ObjectCache } from './caches.js';

export interface UpstreamReaderOptions {
  canaries: ObjectCache<Canary>;
  /** False for a namespace the informers do not watch (a reconciler run with --namespace): read it with readCanary. */
  watches?: (namespace: string) => boolean;
  /** Reads one Canary of this cluster with a GET. */
  readCanary?: (namespace: string, name: string) => Promise<Canary>;
  /** Reads one Secret (the kubeconfig of another cluster). */
  readSecret(namespace: string, name: string): Promise<k8s.V1Secret>;
  /** Timeout of one remote read; default 5 s. */
  timeoutMs?: number;
  /** How long a remote answer is reused; default 5 s. */
  ttlMs?: number;
  now?: () => number;
}

interface Remote {
  /** The Secret's resourceVersion the client was made from: a rotated kubeconfig makes a new one. */
  version: string;
  api: k8s.CustomObjectsApi;
}

export class UpstreamReader {
  private readonly remotes = new Map<string, Remote>();
  private readonly answers = new Map<string, { at: number; view: Promise<UpstreamView> }>();

  constructor(private readonly opts: UpstreamReaderOptions) {}

  /** The upstream stages of `canary`, in the order it lists them. */
  async views(canary: Canary): Promise<UpstreamView[]> {
    const after = canary.spec.promotion?.after ?? [];
    return Promise.all(after.map((d) => this.view(canary, d)));
  }

  private view(canary: Canary, d: PromotionDependency): Promise<UpstreamView> {
    const ns = canary.metadata.namespace ?? '';
    const upstreamNs = d.namespace || ns;
    const ref = d.kubeconfigSecretRef;
    if (!ref) {
      const where = `${upstreamNs}/${d.name}`;
      if (this.opts.watches?.(upstreamNs) !== false || !this.opts.readCanary) {
        const found = this.opts.canaries.get(upstreamNs, d.name);
        return Promise.resolve(found ? { dependency: d, where, canary: found } : { dependency: d, where, error: 'no such Canary' });
      }
      const read = this.opts.readCanary;
      return this.reused(`local/${upstreamNs}/${d.name}`, () =>
        read(upstreamNs, d.name).then(
          (c): UpstreamView => ({ dependency: d, where, canary: c }),
          (err: unknown): UpstreamView => ({ dependency: d, where, error: errorMessage(err) }),
        ),
      );
    }
    const where = `${upstreamNs}/${d.name} (cluster of Secret ${ns}/${ref.name})`;
    return this.reused(`${ns}/${ref.name}/${ref.key}/${upstreamNs}/${d.name}`, () =>
      this.readRemote(ns, ref, upstreamNs, d.name).then(
        (c): UpstreamView => ({ dependency: d, where, canary: c }),
        (err: unknown): UpstreamView => ({ dependency: d, where, error: errorMessage(err) }),
      ),
    );
  }

  /** One read per key every ttl: a waiting Canary is synced often. */
  private reused(key: string, read: () => Promise<UpstreamView>): Promise<UpstreamView> {
    const now = (this.opts.now ?? Date.now)();
    const hit = this.answers.get(key);
    if (hit && now - hit.at < (this.opts.ttlMs ?? 5000)) return hit.view;
    const view = read();
    this.answers.set(key, { at: now, view });
    if (this.answers.size > 10_000) this.answers.clear();
    return view;
  }

  private async readRemote(ns: string, ref: { name: string; key: string }, upstreamNs: string, name: string): Promise<Canary> {
    const secret = await this.opts.readSecret(ns, ref.name);
    const data = secret.data?.[ref.key];
    if (!data) throw new Error(`Secret ${ns}/${ref.name} has no key ${ref.key}`);
    const id = `${ns}/${ref.name}/${ref.key}`;
    let remote = this.remotes.get(id);
    const version = secret.metadata?.resourceVersion ?? '';
    if (!remote || remote.version !== version) {
      const kc = new k8s.KubeConfig();
      try {
        kc.loadFromString(Buffer.from(data, 'base64').toString('utf8'));
      } catch (err) {
        // The kubeconfig's text is a credential: only say that it is unreadable.
        throw new Error(`the kubeconfig in Secret ${ns}/${ref.name} key ${ref.key} cannot be read (${(err as Error).name})`);
      }
      await prepareKubeConfig(kc, { timeoutMs: this.opts.timeoutMs ?? 5000, maxSockets: 2 });
      remote = { version, api: kc.makeApiClient(k8s.CustomObjectsApi) };
      this.remotes.set(id, remote);
    }
    return (await remote.api.getNamespacedCustomObject({ group: GROUP, version: VERSION, namespace: upstreamNs, plural: 'canaries', name })) as Canary;
  }
}
