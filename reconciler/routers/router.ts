// One small interface per traffic router. A router owns the objects that
// split traffic between the primary (the user's live object) and the canary
// copy `<name>-canary`, and decides how big the copy must be for a weight.
// Adding a router means one file implementing this (routers/owned.ts has the
// shared store for the objects it writes) and one line in routers/index.ts;
// nothing outside routers/ asks a router's name.

import type * as k8s from '@kubernetes/client-node';
import type { Canary, HttpMatch } from '../../core/api/types.js';

/** What a router needs to know about one canary, read from informer caches. */
export interface RouterContext {
  canary: Canary;
  namespace: string;
  /** The user's Deployment (absent for a Service target). */
  target?: k8s.V1Deployment;
  /** The user's Service the traffic enters through (the apex). */
  service?: k8s.V1Service;
  /** Service target: the user's Service itself. */
  targetService?: k8s.V1Service;
  /** The canary copy `<name>-canary`, if it exists. */
  copy?: k8s.V1Deployment;
}

export interface Weights {
  primary: number;
  canary: number;
  /** Percent of the requests copied to the canary (mirroring), where the router mirrors. */
  mirror?: number;
}

/** A cookie a router sets on answers of one side and matches to keep a client there. */
export interface StickyCookie {
  name: string;
  /** Derived from the Canary and the revision: a new revision never inherits an old pin. */
  value: string;
  /** Seconds the browser keeps it. */
  maxAge: number;
}

/** The traffic a sync wants in force (the state machine's desired state, spelled for routers). */
export interface Split {
  /** Percent of the requests sent to the canary (0 = none). */
  weight: number;
  /** A/B: requests matching any of these go to the canary. */
  match?: HttpMatch[];
  /** Percent of the primary's requests copied to the canary, answers discarded (0 or absent = none). */
  mirror?: number;
  /**
   * Session affinity while the canary has weight: a client the router sent
   * to the canary gets `canary` and stays there; with `primary`, a client
   * that landed on the primary stays there too.
   */
  sticky?: { canary: StickyCookie; primary?: StickyCookie };
}

/** What the rest of the reconciler must know about a router, declared once by each router. */
export interface RouterTraits {
  /**
   * The copy's Pods join the user's Service and take its traffic as soon as
   * they are ready: the copy's size is what realises a weight, so a
   * traffic-shifting run starts at its first weight step (there is no weight
   * 0 with a ready copy), and setWeight has nothing to write.
   */
  readonly copySharesUserService: boolean;
  /**
   * Built-in metric queries read from the proxy's own metrics (templated
   * PromQL, `{{ namespace }}`, `{{ service }}`, `{{ target }}`,
   * `{{ interval }}`), replacing the Pod-level defaults of
   * analysis/metrics/builtins.ts for the names given.
   */
  readonly builtinMetrics?: Readonly<Record<string, string>>;
}

export interface Router {
  readonly name: string;
  readonly traits: RouterTraits;
  /**
   * Labels the canary copy's Pods get in place of the target Pods' labels.
   * `kubernetes` keeps the user's selector labels (the user's Service then
   * selects the canary Pods too); routers with their own Services rename
   * them so that only the router sends traffic to the copy.
   */
  canaryPodLabels(ctx: RouterContext, podLabels: Record<string, string>): Record<string, string>;
  /** Replicas the canary copy needs to carry `weight` percent of the traffic. */
  canaryReplicas(ctx: RouterContext, weight: number, primaryReplicas: number): number;
  /**
   * Objects under names the router needs that are not this Canary's (a
   * user's own Service, another Canary's route), from the caches: each a
   * message saying what to rename. The run holds while there are any; the
   * router never changes or deletes them.
   */
  conflicts(ctx: RouterContext): string[];
  /** Creates or updates the router's objects, all traffic to the primary if they are new. Idempotent. */
  reconcile(ctx: RouterContext): Promise<void>;
  /**
   * Puts `split` in force: its weight (0 = none) to the canary, A/B matches,
   * mirroring and sticky cookies. Called every sync with the desired split:
   * writes only when the split in force differs. A router that cannot
   * express part of it never sees it: core/providers.ts makes the API
   * server refuse such a Canary.
   */
  setWeight(ctx: RouterContext, split: Split): Promise<void>;
  /**
   * The split in force now, as observed from the caches (no API call): what
   * the router's objects say, or for a router whose weight is the copy's
   * share of ready Pods, that share. The state machine compares it with the
   * weight it wants (a leftover split after a crash is put back).
   */
  getWeights(ctx: RouterContext): Weights;
  /** Removes the router's objects; traffic must keep flowing to the primary throughout. */
  finalize(ctx: RouterContext): Promise<void>;
}
