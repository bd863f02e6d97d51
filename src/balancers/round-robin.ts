/**
 * Smooth weighted round robin — NGINX's algorithm (ngx_http_upstream_get_peer, see
 * https://github.com/phusion/nginx/commit/27e94984486058d73157038f7950a0a36ecc6e35).
 *
 * Why this one: plain weighted round robin hands a weight-3 target three requests in a
 * row (bursts); the smooth variant interleaves them (weights 1:3 give b a b b) while still
 * giving every target exactly `weight` picks per cycle. Each pick, every eligible target's
 * running `current` grows by its weight, the largest wins and pays back the total. A target
 * that is skipped (unhealthy, ejected, draining, excluded) keeps its `current` untouched and
 * rejoins where it left off. Weight 0 means "no new work" (as in HAProxy).
 *
 * O(n) per pick, no allocation: state is one Float64Array keyed on `Target.index`.
 */
import type { Target } from "../upstreams/target.js";
import { type Balancer, eligible } from "./types.js";

export function roundRobin(targets: readonly Target[]): Balancer {
  let current: Float64Array = new Float64Array(stateSize(targets));
  return {
    select(list, ctx) {
      const now = Date.now();
      let best: Target | undefined;
      let bestCurrent = 0;
      let total = 0;
      for (let i = 0; i < list.length; i++) {
        const t = list[i];
        const w = t.effectiveWeight;
        if (!(w > 0) || !eligible(t, ctx, now)) continue;
        if (t.index >= current.length) current = grow(current, t.index);
        const c = current[t.index] + w;
        current[t.index] = c;
        total += w;
        // Strict ">" keeps the first of equal maxima, which makes sequences exact and testable.
        if (best === undefined || c > bestCurrent) {
          best = t;
          bestCurrent = c;
        }
      }
      if (best !== undefined) current[best.index] -= total;
      return best;
    },
  };
}

/** One slot per `Target.index` of the factory's list. */
export function stateSize(targets: readonly Target[]): number {
  let n = targets.length;
  for (const t of targets) if (t.index >= n) n = t.index + 1;
  return n;
}

/** Only reached if select() is handed a target the factory never saw (contract breach, kept safe). */
export function grow(state: Float64Array, index: number): Float64Array {
  const next = new Float64Array(index + 1);
  next.set(state);
  return next;
}
