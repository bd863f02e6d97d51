/**
 * The embedded store: rate-limit counters in a bounded map, cached responses
 * in an LRU bounded by bytes. Per process — with `--workers` each worker counts
 * on its own (use `store.type: redis` to share). Also the `onError: local`
 * fallback of the Redis store. Expiry is lazy (checked on read, swept when a
 * bound is hit), so there is no timer to stop.
 */
import type { Count, StoreBackend } from "./types.js";

export interface MemoryLimits {
  /** Total bytes of stored values (LRU eviction past it). */
  maxBytes: number;
  /** Number of rate-limit counters kept (oldest dropped past it). */
  maxCounters: number;
}

export const DEFAULT_MEMORY_LIMITS: MemoryLimits = { maxBytes: 64 * 1024 * 1024, maxCounters: 100_000 };

interface Counter {
  count: number;
  resetAt: number;
}

interface Blob {
  value: Buffer;
  expiresAt: number;
  tags: readonly string[];
}

export class MemoryStore implements StoreBackend {
  readonly kind = "memory";
  private readonly counters = new Map<string, Counter>();
  /** Map order is recency order: a read moves the key to the end. */
  private readonly blobs = new Map<string, Blob>();
  /** The key last set or read: already last in recency order, so reading it again moves nothing. */
  private newest: string | undefined;
  private readonly tags = new Map<string, Set<string>>();
  private bytes = 0;

  constructor(private readonly limits: MemoryLimits = DEFAULT_MEMORY_LIMITS) {}

  async incr(key: string, windowMs: number): Promise<Count> {
    return this.incrSync(key, windowMs);
  }

  incrSync(key: string, windowMs: number, now = Date.now()): Count {
    let c = this.counters.get(key);
    if (c === undefined || c.resetAt <= now) {
      if (c !== undefined) this.counters.delete(key);
      c = { count: 0, resetAt: now + windowMs };
      this.counters.set(key, c);
      if (this.counters.size > this.limits.maxCounters) this.sweepCounters(now);
    }
    c.count++;
    return { count: c.count, ttl: c.resetAt - now };
  }

  private sweepCounters(now: number): void {
    for (const [k, c] of this.counters) if (c.resetAt <= now) this.counters.delete(k);
    // Still full of live counters: drop the oldest windows (lenient, never stricter).
    for (const k of this.counters.keys()) {
      if (this.counters.size <= this.limits.maxCounters) break;
      this.counters.delete(k);
    }
  }

  async get(key: string): Promise<Buffer | undefined> {
    return this.getSync(key);
  }

  getSync(key: string): Buffer | undefined {
    const b = this.blobs.get(key);
    if (b === undefined) return undefined;
    if (b.expiresAt <= Date.now()) {
      this.remove(key);
      return undefined;
    }
    // A hot key read over and over is already the newest: the delete and re-insert (most of a
    // read's cost, and Map holes to compact) are skipped, the order is the same.
    if (key !== this.newest) {
      this.blobs.delete(key);
      this.blobs.set(key, b);
      this.newest = key;
    }
    return b.value;
  }

  async set(key: string, value: Buffer, ttlMs: number, tags: readonly string[] = []): Promise<void> {
    if (value.length > this.limits.maxBytes || ttlMs <= 0) return;
    this.remove(key);
    this.blobs.set(key, { value, expiresAt: Date.now() + ttlMs, tags });
    this.newest = key;
    this.bytes += value.length;
    for (const t of tags) {
      const set = this.tags.get(t);
      if (set === undefined) this.tags.set(t, new Set([key]));
      else set.add(key);
    }
    for (const k of this.blobs.keys()) {
      if (this.bytes <= this.limits.maxBytes) break;
      this.remove(k);
    }
  }

  private remove(key: string): boolean {
    const b = this.blobs.get(key);
    if (b === undefined) return false;
    this.blobs.delete(key);
    this.bytes -= b.value.length;
    for (const t of b.tags) {
      const set = this.tags.get(t);
      set?.delete(key);
      if (set?.size === 0) this.tags.delete(t);
    }
    return true;
  }

  async purgePrefix(keyPrefix: string, filter: (key: string) => boolean): Promise<number> {
    let n = 0;
    for (const k of [...this.blobs.keys()]) if (k.startsWith(keyPrefix) && filter(k) && this.remove(k)) n++;
    return n;
  }

  async purgeTags(tags: readonly string[]): Promise<number> {
    let n = 0;
    for (const t of tags) for (const k of [...(this.tags.get(t) ?? [])]) if (this.remove(k)) n++;
    return n;
  }

  /** Bytes held by stored values (for tests and the dashboard). */
  get size(): { entries: number; bytes: number } {
    return { entries: this.blobs.size, bytes: this.bytes };
  }

  async close(): Promise<void> {
    this.counters.clear();
    this.blobs.clear();
    this.tags.clear();
    this.bytes = 0;
  }
}
