/**
 * Least connections: the eligible target with the fewest in-flight requests (L7) or
 * connections (L4) per unit of weight, so a slow target — whose work piles up — gets less.
 *
 * Ties (typical at low load, when everything is at 0) are broken by smooth weighted round
 * robin among the tied targets only, as NGINX's least_conn does: ties rotate instead of
 * always landing on the first target, and weights still count while the service is idle.
 *
 * Scores are compared by cross-multiplication (a.inFlight * wb vs b.inFlight * wa): exact for
 * integer counters and weights, no division. Two O(n) passes at most, no allocation.
 */
import type { Target } from "../upstreams/target.js";
import { grow, stateSize } from "./round-robin.js";
import { type Balancer, eligible } from "./types.js";

export function leastConnections(targets: readonly Target[]): Balancer {
  let current: Float64Array = new Float64Array(stateSize(targets));
  return {
    select(list, ctx) {
      const now = Date.now();
      // Pass 1: the lowest inFlight/weight and how many targets share it.
      let best: Target | undefined;
      let bestW = 0;
      let ties = 0;
      for (let i = 0; i < list.length; i++) {
        const t = list[i];
        const w = t.effectiveWeight;
        if (!(w > 0) || !eligible(t, ctx, now)) continue;
        const d = best === undefined ? -1 : t.inFlight * bestW - best.inFlight * w;
        if (d < 0) {
          best = t;
          bestW = w;
          ties = 1;
        } else if (d === 0) {
          ties++;
        }
      }
      if (best === undefined || ties === 1) return best;

      // Pass 2: smooth weighted round robin among the tied targets.
      const minIn = best.inFlight;
      let pick: Target | undefined;
      let pickCurrent = 0;
      let total = 0;
      for (let i = 0; i < list.length; i++) {
        const t = list[i];
        const w = t.effectiveWeight;
        if (!(w > 0) || t.inFlight * bestW !== minIn * w || !eligible(t, ctx, now)) continue;
        if (t.index >= current.length) current = grow(current, t.index);
        const c = current[t.index] + w;
        current[t.index] = c;
        total += w;
        if (pick === undefined || c > pickCurrent) {
          pick = t;
          pickCurrent = c;
        }
      }
      if (pick !== undefined) current[pick.index] -= total;
      return pick;
    },
  };
}
