/**
 * How a balancer becomes an nftables map (issue 16). The kernel picks a map
 * key per new connection — `numgen inc mod N` (round-robin), `numgen random
 * mod N` (random), `jhash <source address> mod N` (ip-hash, consistent-hash on
 * ip) — and the map sends each key to one target. Everything a balancer
 * decides is therefore in which keys each target owns; these functions compute
 * that from the targets' weights, pure and deterministic, so a test can pin
 * the sequences and the table only changes when a target's state does.
 *
 * least-connections and p2c need live per-target counts the kernel's NAT has
 * no place for: they are refused for nat listeners (checks), not approximated.
 */
import { fmix32, hash32 } from "../balancers/consistent-hash.js";

/** A target as the slot functions see it: a stable identity and its configured weight. */
export interface SlotTarget {
  /** Stable across reloads (its URL): hash buckets are placed by it. */
  readonly id: string;
  readonly weight: number;
}

/** At most this many round-robin/random slots: weights are scaled down past it (every target keeps ≥ 1). */
export const MAX_SLOTS = 1000;

/**
 * Hash buckets per listener. A fixed count (not the number of targets) is what
 * makes the hash consistent: a target going away only gives up its own buckets.
 * 1024 buckets keep each of 10 equal targets within a few percent of 1/10.
 */
export const HASH_BUCKETS = 1024;

/**
 * round-robin and random: slot i → index into `targets`. Each target gets
 * slots in proportion to its weight (reduced by their common divisor), ordered
 * by smooth weighted round robin (NGINX's, as src/balancers/round-robin.ts):
 * weights 5,1,1 give a a b a c a a — never five in a row — so `numgen inc`
 * walks the same smooth sequence as the proxy mode.
 */
export function roundRobinSlots(targets: readonly SlotTarget[]): number[] {
  if (targets.length === 0) return [];
  const weights = scaled(targets.map((t) => t.weight));
  const total = weights.reduce((a, b) => a + b, 0);
  const current = new Array<number>(weights.length).fill(0);
  const out: number[] = [];
  for (let n = 0; n < total; n++) {
    let best = 0;
    for (let i = 0; i < weights.length; i++) {
      current[i] += weights[i];
      if (current[i] > current[best]) best = i;
    }
    current[best] -= total;
    out.push(best);
  }
  return out;
}

/**
 * ip-hash and consistent-hash: bucket b → index into `targets`, by weighted
 * rendezvous hashing (the score the proxy mode's ip-hash uses, w / -ln(u)):
 * each bucket goes to its highest-scoring target. Taking a target out moves
 * only the buckets it held, each to its own second choice, so they spread
 * over the others; every other client keeps its target.
 */
export function hashBuckets(targets: readonly SlotTarget[], buckets = HASH_BUCKETS): number[] {
  if (targets.length === 0) return [];
  const seeds = targets.map((t) => hash32(t.id));
  const out: number[] = [];
  for (let b = 0; b < buckets; b++) {
    const h = fmix32(Math.imul(b + 1, 0x9e3779b1));
    let best = 0;
    let bestScore = -1;
    for (let i = 0; i < targets.length; i++) {
      const u = (fmix32(h ^ seeds[i]) + 1) / 4294967297;
      const score = targets[i].weight / -Math.log(u);
      if (score > bestScore) {
        best = i;
        bestScore = score;
      }
    }
    out.push(best);
  }
  return out;
}

/** Weights divided by their greatest common divisor, then scaled to at most MAX_SLOTS in total. */
function scaled(weights: number[]): number[] {
  const g = weights.reduce(gcd);
  let w = weights.map((x) => x / g);
  const total = w.reduce((a, b) => a + b, 0);
  if (total > MAX_SLOTS) w = w.map((x) => Math.max(1, Math.round((x * MAX_SLOTS) / total)));
  return w;
}

function gcd(a: number, b: number): number {
  while (b !== 0) [a, b] = [b, a % b];
  return a;
}

/**
 * A slot list as nft map elements: runs of the same target become ranges
 * (`0-255 : jump t1`), which keeps the table short when buckets cluster.
 */
export function slotRanges(slots: readonly number[]): { from: number; to: number; target: number }[] {
  const out: { from: number; to: number; target: number }[] = [];
  for (let i = 0; i < slots.length; i++) {
    const last = out[out.length - 1];
    if (last !== undefined && last.target === slots[i] && last.to === i - 1) last.to = i;
    else out.push({ from: i, to: i, target: slots[i] });
  }
  return out;
}
