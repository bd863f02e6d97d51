/**
 * Rate-limit counts taken from Redis in batches (issue 11), as Envoy pairs
 * its local and global limits: one INCRBY reserves `batch` consecutive counts
 * of the shared window for this process, and the next `batch` requests take
 * them here without a round trip. Every count a request gets is still a
 * unique count of the shared window, so a limit is never exceeded; counts
 * reserved and not used before the window ends only make it stricter, by at
 * most `batch` per process (workers × batch for a fleet). A batch of 1 is the
 * exact, one-round-trip-per-request counter.
 *
 * Concurrent requests that find the lease used up share one refill.
 */
import type { Count } from "./types.js";

interface Lease {
  /** Next count to hand out, and the last one reserved. */
  next: number;
  last: number;
  /** Epoch ms the window ends (the key's PTTL when reserved). */
  resetAt: number;
}

/** Leases kept at once (one per rate-limit key: client addresses …); the oldest go first. */
const MAX_LEASES = 10_000;

export class Leases {
  private readonly leases = new Map<string, Lease>();
  private readonly refills = new Map<string, Promise<void>>();

  /** A count from this process's lease for `key`, or undefined when it has none left. */
  take(key: string, now = Date.now()): Count | undefined {
    const l = this.leases.get(key);
    if (l === undefined || l.next > l.last || l.resetAt <= now) return undefined;
    return { count: l.next++, ttl: l.resetAt - now };
  }

  /**
   * Reserve `batch` counts with `reserve` (INCRBY batch → the total after and
   * the window's ttl) unless a reservation for `key` is already on its way; resolves when done.
   */
  refill(key: string, batch: number, reserve: () => Promise<Count>): Promise<void> {
    let p = this.refills.get(key);
    if (p === undefined) {
      p = reserve()
        .then((c) => {
          this.leases.delete(key);
          this.leases.set(key, { next: c.count - batch + 1, last: c.count, resetAt: Date.now() + c.ttl });
          if (this.leases.size > MAX_LEASES) this.leases.delete(this.leases.keys().next().value as string);
        })
        .finally(() => this.refills.delete(key));
      this.refills.set(key, p);
    }
    return p;
  }
}

/** The batch for a limit of `max` a window: exact below 2000, then 1/1000 of the limit, at most 100. */
export function batchFor(max: number): number {
  return Math.max(1, Math.min(100, Math.floor(max / 1000)));
}
