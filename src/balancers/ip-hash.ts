/**
 * ip-hash: the same client address keeps landing on the same target.
 *
 * Done as rendezvous (highest-random-weight) hashing rather than NGINX's `hash % n` + walk:
 * every target gets a score from hash(ip) mixed with a per-target seed (hash of its URL), the
 * highest-scoring eligible target wins. That is deterministic per ip, and when a target goes
 * away only its own clients move — to their own second choice, so they spread over all the
 * others instead of piling onto the next target in the list as a linear walk would. Adding a
 * target on reload likewise moves only ~1/(n+1) of clients, where `% n` moves most of them.
 *
 * Weighted by the configured `weight` (stable; slow start must not reshuffle clients) with
 * the weighted-HRW score w / -ln(u) (Schindelhauer & Schomaker, "Weighted distributed hash
 * tables", 2005).
 *
 * No ctx.ip (e.g. a UDP listener that could not tell, or a unix socket): fall back to
 * smooth weighted round robin.
 *
 * O(n) per pick: one string hash, then an integer mix and a log per target; no allocation.
 */
import type { Target } from "../upstreams/target.js";
import { fmix32, hash32 } from "./consistent-hash.js";
import { roundRobin, stateSize } from "./round-robin.js";
import { type Balancer, eligible } from "./types.js";

export function ipHash(targets: readonly Target[]): Balancer {
  const seeds = new Uint32Array(stateSize(targets));
  for (const t of targets) seeds[t.index] = hash32(t.url);
  const fallback = roundRobin(targets);
  return {
    select(list, ctx) {
      const ip = ctx.ip;
      if (ip === undefined || ip === "") return fallback.select(list, ctx);
      const now = Date.now();
      const h = hash32(ip);
      let best: Target | undefined;
      let bestScore = -1;
      for (let i = 0; i < list.length; i++) {
        const t = list[i];
        const w = t.weight;
        if (!(w > 0) || !eligible(t, ctx, now)) continue;
        const seed = t.index < seeds.length ? seeds[t.index] : hash32(t.url);
        // u in (0, 1) from the per-(ip, target) hash; -ln(u) > 0.
        const u = (fmix32(h ^ seed) + 1) / 4294967297;
        const score = w / -Math.log(u);
        if (score > bestScore) {
          best = t;
          bestScore = score;
        }
      }
      return best;
    },
  };
}
