/**
 * Power of two random choices (Mitzenmacher; Envoy's least_request with choice_count 2):
 * draw two distinct eligible targets uniformly at random and keep the less loaded one.
 *
 * Why: nearly as good as a full least-connections scan at spreading load, but it does not
 * herd — many gateway workers each holding a slightly stale view do not all pile onto the
 * same "least loaded" target. Load is weight-adjusted as (inFlight + 1) / weight, so at zero
 * load the heavier target of the pair still wins. Equal loads keep the first draw (random).
 *
 * Two O(n) passes (count, then locate the two draws), no allocation. `random` is injectable
 * so tests are deterministic.
 */
import type { Target } from "../upstreams/target.js";
import { type Balancer, eligible } from "./types.js";

export function p2c(_targets: readonly Target[], random: () => number = Math.random): Balancer {
  return {
    select(list, ctx) {
      const now = Date.now();
      let m = 0;
      let only: Target | undefined;
      for (let i = 0; i < list.length; i++) {
        const t = list[i];
        if (t.effectiveWeight > 0 && eligible(t, ctx, now)) {
          m++;
          only = t;
        }
      }
      if (m <= 1) return only;

      // Two distinct ranks among the m eligible targets.
      const ra = Math.min(m - 1, Math.floor(random() * m));
      let rb = Math.min(m - 2, Math.floor(random() * (m - 1)));
      if (rb >= ra) rb++;
      let a: Target | undefined;
      let b: Target | undefined;
      for (let i = 0, k = 0; i < list.length && (a === undefined || b === undefined); i++) {
        const t = list[i];
        if (!(t.effectiveWeight > 0) || !eligible(t, ctx, now)) continue;
        if (k === ra) a = t;
        else if (k === rb) b = t;
        k++;
      }
      if (a === undefined || b === undefined) return a ?? b; // unreachable unless state changed mid-pick
      // (a.inFlight + 1) / wa <= (b.inFlight + 1) / wb, by cross-multiplication.
      return (a.inFlight + 1) * b.effectiveWeight <= (b.inFlight + 1) * a.effectiveWeight ? a : b;
    },
  };
}
