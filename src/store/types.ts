/**
 * The one small interface behind rate limiting and the response cache
 * (ARCHITECTURE: src/store). Keys are logical ("rl:…", "c:…", tags by name);
 * a backend adds its own namespace (the Redis `prefix`). Two backends:
 * memory (embedded, per process) and redis (shared by every worker and instance).
 */

/** One fixed-window count: how many hits so far, and ms until the window resets. */
export interface Count {
  count: number;
  ttl: number;
}

export interface StoreBackend {
  readonly kind: "memory" | "redis";
  /**
   * Count one hit (or `by` hits at once) on `key` in a fixed window of
   * `windowMs`; atomic across everyone sharing the store. `count` is the total after.
   */
  incr(key: string, windowMs: number, by?: number): Promise<Count>;
  get(key: string): Promise<Buffer | undefined>;
  /** Store `value` for `ttlMs` and index it under each tag (for purge by tag). */
  set(key: string, value: Buffer, ttlMs: number, tags?: readonly string[]): Promise<void>;
  /** Delete every key that starts with `keyPrefix` and passes `filter`; returns how many. */
  purgePrefix(keyPrefix: string, filter: (key: string) => boolean): Promise<number>;
  /** Delete every key indexed under one of `tags`; returns how many. `hot`: on a request's path. */
  purgeTags(tags: readonly string[], hot?: boolean): Promise<number>;
  close(): Promise<void>;
}
