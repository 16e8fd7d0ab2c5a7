// One small interface per traffic router. A router owns the objects that
// split traffic between the primary (the user's live object) and the canary
// copy `<name>-canary`, and decides how big the copy must be for a weight.
// Adding Istio, SMI/Linkerd or NGINX means one more implementation of this.

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
}

export interface Router {
  readonly name: string;
  /**
   * Labels the canary copy's Pods get in place of the target Pods' labels.
   * `kubernetes` keeps the user's selector labels (the user's Service then
   * selects the canary Pods too); routers with their own Services rename
   * them so that only the router sends traffic to the copy.
   */
  canaryPodLabels(ctx: RouterContext, podLabels: Record<string, string>): Record<string, string>;
  /** Replicas the canary copy needs to carry `weight` percent of the traffic. */
  canaryReplicas(ctx: RouterContext, weight: number, primaryReplicas: number): number;
  /** Creates or updates the router's objects, all traffic to the primary if they are new. Idempotent. */
  reconcile(ctx: RouterContext): Promise<void>;
  /** Sends `weight` percent (0 = none) to the canary; `match` routes matching requests to the canary (A/B). */
  setWeight(ctx: RouterContext, weight: number, match?: HttpMatch[]): Promise<void>;
  /** The split in force now, as observed (the effective weight for the kubernetes router). */
  getWeights(ctx: RouterContext): Weights;
  /** Removes the router's objects; traffic must keep flowing to the primary throughout. */
  finalize(ctx: RouterContext): Promise<void>;
}
