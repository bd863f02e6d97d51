import type { Target } from "../upstreams/target.js";

/**
 * What a balancer may know about the request or connection being placed.
 * Built by the caller (L7 forwarder, TCP or UDP listener); every field optional.
 */
export interface PickContext {
  /** Client address (after trustProxy), used by ip-hash and as a hash fallback. */
  ip?: string;
  /** Key for consistent-hash, already extracted per the service's `hash.on`. */
  key?: string;
  /** Targets already tried for this request (retries): never picked again. */
  exclude?: ReadonlySet<Target>;
}

/**
 * A load-balancing algorithm. Pure and synchronous: no I/O, timers or logging.
 * It reads `target.available()`, `effectiveWeight` and `inFlight` only, and may
 * keep its own state (a cursor, a hash ring) between calls. One instance serves
 * one service's fixed target list (a reload builds new instances).
 */
export interface Balancer {
  select(targets: readonly Target[], ctx: PickContext): Target | undefined;
}

export type BalancerFactory = (targets: readonly Target[]) => Balancer;

/** A target may be picked: available now and not excluded by the context. */
export function eligible(t: Target, ctx: PickContext, now: number): boolean {
  return t.available(now) && (ctx.exclude === undefined || !ctx.exclude.has(t));
}
