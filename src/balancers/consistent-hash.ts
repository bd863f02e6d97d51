/**
 * Ring hash (Ketama, as in libketama, Envoy's ring_hash and NGINX's `hash ... consistent`):
 * each target owns many points on a 32-bit circle, a key is served by the first point at or
 * after its own hash. Removing one of N targets (unhealthy, ejected, draining, excluded on a
 * retry) only moves the keys that target owned — about 1/N — and they spread over the others;
 * every other key stays where it was.
 *
 * - Points per target: 160 per unit of configured weight (Ketama's 160 per server), scaled
 *   down if the ring would pass MAX_POINTS. Points are hashed from the target's URL, not its
 *   position, so a reload that reorders or adds targets keeps the rest of the ring in place.
 * - The configured `weight` is used, not `effectiveWeight`: the ring is built once in the
 *   factory and stickiness matters more than slow-start ramping here.
 * - Key = ctx.key ?? ctx.ip. With neither, fall back to smooth weighted round robin.
 * - The ring is built from the factory's target list. select() only returns a target that
 *   sits at its own `index` in the list it is handed (an O(1) membership check, always true
 *   for the service's own list), so it never answers with a target the caller did not offer.
 *
 * select() is one hash, one binary search and a short clockwise walk past ineligible points;
 * no allocation. The hash is written by hand (FNV-1a + murmur3's fmix32 finalizer): tiny,
 * stable across processes, and no maintained package offers a sync 32-bit string hash that
 * is worth a dependency.
 */
import type { Target } from "../upstreams/target.js";
import { roundRobin } from "./round-robin.js";
import { type Balancer, eligible } from "./types.js";

const POINTS_PER_WEIGHT = 160;
const MAX_POINTS = 160 * 1024;

export function consistentHash(targets: readonly Target[]): Balancer {
  const { points, owners } = buildRing(targets);
  const fallback = roundRobin(targets);
  return {
    select(list, ctx) {
      const key = ctx.key ?? ctx.ip;
      if (key === undefined) return fallback.select(list, ctx);
      const now = Date.now();
      // Cheap O(n) guard so an all-down service does not walk the whole ring.
      let any = false;
      for (let i = 0; i < list.length && !any; i++) {
        any = list[i].weight > 0 && eligible(list[i], ctx, now);
      }
      if (!any) return undefined;

      const h = hash32(key);
      let lo = 0;
      let hi = points.length;
      while (lo < hi) {
        const mid = (lo + hi) >>> 1;
        if (points[mid] < h) lo = mid + 1;
        else hi = mid;
      }
      for (let n = 0, i = lo; n < points.length; n++, i++) {
        if (i === points.length) i = 0;
        const t = targets[owners[i]];
        if (list[t.index] === t && eligible(t, ctx, now)) return t;
      }
      return undefined;
    },
  };
}

/** Sorted ring: points[i] is a position on the circle, owners[i] the target (list position). */
function buildRing(targets: readonly Target[]): { points: Uint32Array; owners: Int32Array } {
  let totalWeight = 0;
  for (const t of targets) if (t.weight > 0) totalWeight += t.weight;
  const scale = totalWeight > 0 ? Math.min(POINTS_PER_WEIGHT, MAX_POINTS / totalWeight) : 0;
  const pts: number[] = [];
  const own: number[] = [];
  targets.forEach((t, pos) => {
    if (!(t.weight > 0)) return;
    const n = Math.max(1, Math.round(t.weight * scale));
    for (let v = 0; v < n; v++) {
      pts.push(hash32(`${t.url}#${v}`));
      own.push(pos);
    }
  });
  // Ties (astronomically rare) are ordered by list position so every process builds the same ring.
  const order = pts.map((_, i) => i).sort((x, y) => pts[x] - pts[y] || own[x] - own[y]);
  return {
    points: Uint32Array.from(order, (i) => pts[i]),
    owners: Int32Array.from(order, (i) => own[i]),
  };
}

/** 32-bit FNV-1a over UTF-16 code units, then murmur3's fmix32 for avalanche. Unsigned. */
export function hash32(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return fmix32(h);
}

/** murmur3 finalizer: spreads every input bit over the whole word. Unsigned result. */
export function fmix32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}
