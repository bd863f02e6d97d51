/**
 * Weighted random: each eligible target is picked with probability weight / total weight.
 *
 * Why keep it next to round robin: it needs no shared state at all, so several gateway
 * processes (cluster mode) never fall into lock-step on the same target, and it is the
 * baseline the other algorithms are measured against in the benchmarks.
 *
 * Two O(n) passes (sum, then walk to the drawn point), no allocation. `random` is injectable
 * so tests are deterministic.
 */
import type { Target } from "../upstreams/target.js";
import { type Balancer, eligible } from "./types.js";

export function random(_targets: readonly Target[], rand: () => number = Math.random): Balancer {
  return {
    select(list, ctx) {
      const now = Date.now();
      let total = 0;
      for (let i = 0; i < list.length; i++) {
        const t = list[i];
        const w = t.effectiveWeight;
        if (w > 0 && eligible(t, ctx, now)) total += w;
      }
      if (total === 0) return undefined;
      let r = rand() * total;
      let last: Target | undefined;
      for (let i = 0; i < list.length; i++) {
        const t = list[i];
        const w = t.effectiveWeight;
        if (!(w > 0) || !eligible(t, ctx, now)) continue;
        r -= w;
        if (r < 0) return t;
        last = t;
      }
      return last; // floating-point rounding left r at ~0: the last eligible target owns that edge
    },
  };
}
