/**
 * The gateway's store, shared by every route's rate limit and cache.
 *
 * Who owns it: a Gateway keeps its store across reloads (SPEC §7: counters
 * and cached responses of routes that still exist are kept) through a
 * StoreHolder, which lends the same store to every generation while `store:`
 * is unchanged. Without a holder (build() on its own) each generation makes
 * its own and closes it with its Fastify instance.
 *
 * With `store.type: redis` it applies `store.onError` when Redis fails or is
 * slow: `local` answers from this instance's own memory store (logged once per
 * outage), `allow` lets the request through uncounted and uncached, `deny`
 * answers 503 SY_STORE_UNAVAILABLE. Nothing here waits on a sick Redis (see
 * redis.ts), and the next command after Redis returns goes to Redis again, so
 * shared counting resumes by itself.
 */
import type { FastifyBaseLogger, FastifyInstance } from "fastify";
import { ms } from "../config/duration.js";
import { errors } from "../errors.js";
import type { Generation } from "../generation.js";
import { Leases } from "./lease.js";
import { MemoryStore } from "./memory.js";
import { RedisStore } from "./redis.js";
import type { Count, StoreBackend } from "./types.js";

export type OnError = "local" | "allow" | "deny";

/** How long start-up waits for Redis before serving anyway (requests then follow onError). */
const READY_WAIT_MS = 2000;

export class GatewayStore {
  /** Set while the shared store is failing (so the outage is logged once, and its end once). */
  private degraded = false;
  readonly local: MemoryStore;
  /** Rate-limit counts reserved from Redis in batches. */
  private readonly leases = new Leases();

  constructor(
    readonly shared: StoreBackend,
    readonly onError: OnError,
    private readonly log: FastifyBaseLogger,
  ) {
    this.local = shared instanceof MemoryStore ? shared : new MemoryStore();
  }

  get kind(): "memory" | "redis" {
    return this.shared.kind;
  }

  /** False while a Redis store is failing. */
  get healthy(): boolean {
    return !this.degraded && (!(this.shared instanceof RedisStore) || this.shared.ready);
  }

  /**
   * Count one hit now, without waiting, when that needs no round trip: the
   * store is this process's memory, or `batch` > 1 and this process still
   * holds reserved counts for `key` (lease.ts). Else undefined: ask incr().
   */
  incrLocal(key: string, windowMs: number, batch = 1): Count | undefined {
    if (this.shared === this.local) return this.local.incrSync(key, windowMs);
    return batch > 1 ? this.leases.take(key) : undefined;
  }

  /**
   * Count one hit; `undefined` means "not counted" (Redis down and onError:
   * allow). With `batch` > 1 on Redis, counts are reserved `batch` at a time
   * and handed out from this process's lease (lease.ts: never over the limit,
   * at most `batch` stricter per process).
   */
  async incr(key: string, windowMs: number, batch = 1): Promise<Count | undefined> {
    if (this.shared === this.local) return this.local.incrSync(key, windowMs);
    try {
      for (let i = 0; batch > 1 && i < 3; i++) {
        const leased = this.leases.take(key);
        if (leased !== undefined) return leased;
        await this.leases.refill(key, batch, () => this.shared.incr(key, windowMs, batch));
        this.recovered();
      }
      const c = await this.shared.incr(key, windowMs);
      this.recovered();
      return c;
    } catch (err) {
      this.failed(err as Error);
      if (this.onError === "local") return this.local.incrSync(key, windowMs);
      if (this.onError === "allow") return undefined;
      throw new errors.SY_STORE_UNAVAILABLE({ cause: err });
    }
  }

  /** Read a value without waiting, when the store is this process's memory (else undefined: ask get()). */
  peek(key: string): Buffer | undefined {
    return this.shared === this.local ? this.local.getSync(key) : undefined;
  }

  /** Read a value; under onError deny a failing Redis throws SY_STORE_UNAVAILABLE. */
  async get(key: string): Promise<Buffer | undefined> {
    if (this.shared === this.local) return this.local.get(key);
    try {
      const v = await this.shared.get(key);
      this.recovered();
      return v;
    } catch (err) {
      this.failed(err as Error);
      if (this.onError === "local") return this.local.get(key);
      if (this.onError === "allow") return undefined;
      throw new errors.SY_STORE_UNAVAILABLE({ cause: err });
    }
  }

  /** Write a value; never throws (a response already on its way is not failed for it). */
  async set(key: string, value: Buffer, ttlMs: number, tags?: readonly string[]): Promise<void> {
    if (this.shared === this.local) return this.local.set(key, value, ttlMs, tags);
    try {
      await this.shared.set(key, value, ttlMs, tags);
      this.recovered();
    } catch (err) {
      this.failed(err as Error);
      if (this.onError === "local") await this.local.set(key, value, ttlMs, tags);
    }
  }

  /** Purges both the shared store and the local fallback (which may hold entries from an outage). */
  async purgePrefix(keyPrefix: string, filter: (key: string) => boolean): Promise<number> {
    let n = await this.local.purgePrefix(keyPrefix, filter);
    if (this.shared !== this.local) n += await this.shared.purgePrefix(keyPrefix, filter);
    return n;
  }

  async purgeTags(tags: readonly string[]): Promise<number> {
    let n = await this.local.purgeTags(tags);
    if (this.shared !== this.local) n += await this.shared.purgeTags(tags);
    return n;
  }

  /**
   * Drop every entry under `tags` on the request path (cache invalidation, RFC 9111 §4.4):
   * the local copy always, the shared store too; never throws (a failing Redis is logged as
   * any other failure: its entries expire by themselves, and the response is not failed for it).
   */
  async invalidate(tags: readonly string[]): Promise<void> {
    await this.local.purgeTags(tags);
    if (this.shared === this.local) return;
    try {
      await this.shared.purgeTags(tags, true);
      this.recovered();
    } catch (err) {
      this.failed(err as Error);
    }
  }

  /** Resolves true once Redis is connected (memory: at once), false after `timeoutMs`. */
  whenReady(timeoutMs = READY_WAIT_MS): Promise<boolean> {
    return this.shared instanceof RedisStore ? this.shared.whenReady(timeoutMs) : Promise.resolve(true);
  }

  failed(err: Error): void {
    if (this.degraded) return;
    this.degraded = true;
    this.log.warn(
      { err: { message: err.message, code: (err as NodeJS.ErrnoException).code }, onError: this.onError },
      this.onError === "local"
        ? "store unavailable: using this instance's own counters and cache until it returns"
        : `store unavailable: requests that need it are ${this.onError === "allow" ? "allowed" : "denied"}`,
    );
  }

  recovered(): void {
    if (!this.degraded) return;
    this.degraded = false;
    this.log.info("store reachable again: shared counters and cache resume");
  }

  async close(): Promise<void> {
    await this.shared.close();
    if (this.local !== this.shared) await this.local.close();
  }
}

type StoreConfig = Generation["config"]["store"];

/** Build a store from `store:` (memory when absent). */
export function createStore(cfg: StoreConfig, log: FastifyBaseLogger): GatewayStore {
  if (cfg?.type !== "redis") return new GatewayStore(new MemoryStore(), "local", log);
  let store: GatewayStore | undefined;
  const redis = new RedisStore({
    url: cfg.url ?? "redis://127.0.0.1:6379",
    cluster: cfg.cluster,
    sentinels: cfg.sentinels,
    name: cfg.name,
    prefix: cfg.prefix,
    commandTimeoutMs: ms(cfg.timeout),
    onConnectionError: (err) => store?.failed(err),
    onReady: () => store?.recovered(),
  });
  store = new GatewayStore(redis, cfg.onError, log);
  return store;
}

/** Two `store:` sections with the same key make the same store (memory: onError plays no part). */
function settingsKey(cfg: StoreConfig): string {
  if (cfg?.type !== "redis") return "memory";
  const where = cfg.cluster ?? cfg.sentinels ?? cfg.url ?? "redis://127.0.0.1:6379";
  return JSON.stringify(["redis", where, cfg.name, cfg.prefix, cfg.onError, cfg.timeout]);
}

interface Held {
  readonly store: GatewayStore;
  /** Generations whose routes use it; it is closed when none does and it is not the current one. */
  readonly users: Set<Generation>;
}

/**
 * The Gateway's stores across reloads. A generation borrows the store made
 * for its `store:` settings (made on its first use, as without a holder); the
 * settings of the generation that serves (`commit`) are current, and their
 * store stays even while no route uses it. A store of other settings — the
 * previous one after `store:` changed, or one made by a reload that failed —
 * is closed once the last generation using it has closed.
 *
 * Rate-limit counters of removed routes are not dropped: a counter lives only
 * until its window ends (memory: lazily, and the map is bounded, oldest
 * dropped past it; Redis: by PEXPIRE), and a route added back under the same
 * name finds its counters as SPEC §7 keeps them "by name".
 */
export class StoreHolder {
  private readonly held = new Map<string, Held>();
  private current: string | undefined;

  /** Let `generation`'s routes borrow this holder's store (call before build()). */
  lend(generation: Generation): void {
    holders.set(generation, this);
  }

  /** `generation` now serves: its settings' store is the one to keep. */
  commit(generation: Generation): Promise<void> {
    this.current = settingsKey(generation.config.store);
    return this.sweep();
  }

  /** The store `generation` borrows; made when its settings have none yet. */
  acquire(generation: Generation, log: FastifyBaseLogger): GatewayStore {
    const key = settingsKey(generation.config.store);
    let h = this.held.get(key);
    if (h === undefined) {
      h = { store: createStore(generation.config.store, log), users: new Set() };
      this.held.set(key, h);
    }
    h.users.add(generation);
    return h.store;
  }

  /** The store of `generation`'s settings if one exists (purge, readiness). */
  peek(generation: Generation): GatewayStore | undefined {
    return this.held.get(settingsKey(generation.config.store))?.store;
  }

  /** `generation` has closed: it no longer uses its store. */
  release(generation: Generation): Promise<void> {
    this.held.get(settingsKey(generation.config.store))?.users.delete(generation);
    return this.sweep();
  }

  /** Close every store (the Gateway is closing, after its generations). */
  async close(): Promise<void> {
    const all = [...this.held.values()];
    this.held.clear();
    await Promise.all(all.map((h) => h.store.close()));
  }

  private async sweep(): Promise<void> {
    const idle = [...this.held].filter(([key, h]) => key !== this.current && h.users.size === 0);
    for (const [key] of idle) this.held.delete(key);
    await Promise.all(idle.map(([, h]) => h.store.close()));
  }
}

/** Each generation's store, once one of its routes asked for it. */
const stores = new WeakMap<Generation, GatewayStore>();
/** The holder lending to a generation (Gateway); absent for build() on its own. */
const holders = new WeakMap<Generation, StoreHolder>();

/**
 * The generation's store, on first use by any route's policy: borrowed from
 * the holder when the generation has one, else made for this generation.
 * Start-up waits (bounded) for Redis in onReady; onClose gives the store back
 * to the holder, or closes it when it was the generation's own. Every route
 * scope belongs to the one Fastify instance of the generation, so they open
 * and close together.
 */
export function useStore(scope: FastifyInstance, generation: Generation): GatewayStore {
  const known = stores.get(generation);
  if (known !== undefined) return known;
  const holder = holders.get(generation);
  const store = holder
    ? holder.acquire(generation, scope.log)
    : createStore(generation.config.store, scope.log);
  stores.set(generation, store);
  scope.addHook("onReady", async function storeReady() {
    if (!(await store.whenReady()))
      scope.log.warn({ onError: store.onError }, "store not reachable at start-up");
  });
  scope.addHook("onClose", async function storeClose() {
    stores.delete(generation);
    await (holder ? holder.release(generation) : store.close());
  });
  return store;
}

/**
 * The generation's store if a route made one, or the one its holder keeps for
 * its settings (entries written under an earlier generation are purged too).
 * Purge and readiness use it; they never create one.
 */
export function storeOf(generation: Generation): GatewayStore | undefined {
  return stores.get(generation) ?? holders.get(generation)?.peek(generation);
}

export type { Count, StoreBackend } from "./types.js";
