/**
 * The gateway's store: one per config generation, shared by every route's
 * rate limit and cache, closed with the generation's Fastify instance.
 *
 * With `store.type: redis` it applies `store.onError` when Redis fails or is
 * slow: `local` answers from this instance's own memory store (logged once per
 * outage), `allow` lets the request through uncounted and uncached, `deny`
 * answers 503 SY_STORE_UNAVAILABLE. Nothing here waits on a sick Redis (see
 * redis.ts), and the next command after Redis returns goes to Redis again, so
 * shared counting resumes by itself.
 */
import type { FastifyBaseLogger, FastifyInstance } from "fastify";
import { errors } from "../errors.js";
import type { Generation } from "../generation.js";
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

  /** Count one hit; `undefined` means "not counted" (Redis down and onError: allow). */
  async incr(key: string, windowMs: number): Promise<Count | undefined> {
    if (this.shared === this.local) return this.local.incrSync(key, windowMs);
    try {
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

const stores = new WeakMap<Generation, GatewayStore>();

/** Build the generation's store from `store:` (memory when absent). */
export function createStore(generation: Generation, log: FastifyBaseLogger): GatewayStore {
  const cfg = generation.config.store;
  if (cfg?.type !== "redis") return new GatewayStore(new MemoryStore(), "local", log);
  let store: GatewayStore | undefined;
  const redis = new RedisStore({
    url: cfg.url ?? "redis://127.0.0.1:6379",
    prefix: cfg.prefix,
    onConnectionError: (err) => store?.failed(err),
    onReady: () => store?.recovered(),
  });
  store = new GatewayStore(redis, cfg.onError, log);
  return store;
}

/**
 * The generation's store, made on first use by any route's policy. It is tied
 * to the lifecycle of the instance that made it first: start-up waits (bounded)
 * for Redis in onReady, and onClose closes it. Every route scope belongs to the
 * one Fastify instance of the generation, so they open and close together.
 */
export function useStore(scope: FastifyInstance, generation: Generation): GatewayStore {
  let store = stores.get(generation);
  if (store !== undefined) return store;
  store = createStore(generation, scope.log);
  stores.set(generation, store);
  const s = store;
  scope.addHook("onReady", async function storeReady() {
    if (!(await s.whenReady())) scope.log.warn({ onError: s.onError }, "store not reachable at start-up");
  });
  scope.addHook("onClose", async function storeClose() {
    stores.delete(generation);
    await s.close();
  });
  return store;
}

/** The generation's store if a route made one (purge and readiness use it; they never create one). */
export function storeOf(generation: Generation): GatewayStore | undefined {
  return stores.get(generation);
}

export type { Count, StoreBackend } from "./types.js";
