/**
 * The shared store over ioredis: every worker and every gateway instance
 * pointed at one Redis counts the same windows and sees the same cache.
 *
 * A request must never wait on a sick Redis (SPEC §2 store.onError: "unreachable
 * or slow (>50ms)"), so the hot-path client is set up to fail fast:
 * - commandTimeout 50ms (`store.timeout`): a slow answer is an error, not a wait;
 * - enableOfflineQueue false: while disconnected a command fails at once
 *   instead of queueing until reconnect (the queue is what hangs requests);
 * - maxRetriesPerRequest 0: a command is never replayed on a new connection;
 * - reconnect forever, backing off to 1s, so shared counting resumes by itself;
 * - auto-pipelining: commands of one tick share a write (each stays its own
 *   atomic script, so counts stay exact).
 * connectTimeout is 1s rather than 50ms: while a connection is being made
 * commands already fail at once (no offline queue), so the connect timeout
 * never delays a request; it only has to be long enough for a real handshake
 * (TLS, another zone) to complete.
 *
 * Purges are admin work that may touch many keys: they use a second, lazily
 * made connection with a 5s command timeout so the hot path keeps its 50ms.
 *
 * Redis Cluster (issue 14): every hot-path command touches one key, so it
 * goes to the key's node as is (rate-limit keys carry the route name as a hash
 * tag, so one route's counters live in one slot: plugins/rate-limit.ts). The
 * two multi-key operations are split there: a tagged set writes each tag set
 * on its own (before the value, so a purge by tag never misses a stored value),
 * and purges scan every primary and delete key by key. On one server or a
 * Sentinel primary they stay single atomic scripts.
 */
import type { Cluster, Redis, RedisOptions } from "ioredis";
import { type RedisTarget, redisClient } from "./redis-client.js";
import type { Count, StoreBackend } from "./types.js";

export const COMMAND_TIMEOUT_MS = 50;

// INCRBY (1, or a batch of counts for a lease: lease.ts) then start the window on the
// first hit; a key found without expiry (a crash between the two calls elsewhere) gets
// one, so no count lives forever.
const INCR = `
local c = redis.call('INCRBY', KEYS[1], ARGV[2] or 1)
local t = redis.call('PTTL', KEYS[1])
if c == tonumber(ARGV[2] or 1) or t < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
  t = tonumber(ARGV[1])
end
return {c, t}`;

// The value, then each tag set (KEYS[2..]) gains the key and lives at least as long.
const SET_TAGGED = `
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
for i = 2, #KEYS do
  redis.call('SADD', KEYS[i], KEYS[1])
  redis.call('PEXPIRE', KEYS[i], ARGV[2], 'GT')
  if redis.call('PTTL', KEYS[i]) < 0 then redis.call('PEXPIRE', KEYS[i], ARGV[2]) end
end
return 1`;

// Cluster: one tag set (KEYS[1]) gains the value's key (ARGV[1]) and lives at least ARGV[2] ms.
const TAG = `
redis.call('SADD', KEYS[1], ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2], 'GT')
if redis.call('PTTL', KEYS[1]) < 0 then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 1`;

const PURGE_TAGS = `
local n = 0
for i = 1, #KEYS do
  for _, k in ipairs(redis.call('SMEMBERS', KEYS[i])) do n = n + redis.call('UNLINK', k) end
  redis.call('UNLINK', KEYS[i])
end
return n`;

interface Scripted {
  syIncr(key: string, windowMs: number, by: number): Promise<[number, number]>;
  sySetTagged(...args: (string | Buffer | number)[]): Promise<number>;
  syTag(tagKey: string, key: string, ttlMs: number): Promise<number>;
  syPurgeTags(...args: (string | number)[]): Promise<number>;
}

/** A single server's or Sentinel primary's client, or a Cluster's: the same commands. */
type Client = (Redis | Cluster) & Scripted;

export interface RedisStoreOptions extends RedisTarget {
  /** Namespace for every key (the `store.prefix` setting). */
  prefix: string;
  /** Told about connection errors (the caller decides how loudly to log). */
  onConnectionError?: (err: Error) => void;
  /** Told when a connection is (re)established. */
  onReady?: () => void;
  /** `store.timeout` in ms (default COMMAND_TIMEOUT_MS, SPEC's 50 ms). */
  commandTimeoutMs?: number;
}

function define(client: Redis | Cluster): Client {
  client.defineCommand("syIncr", { numberOfKeys: 1, lua: INCR });
  client.defineCommand("sySetTagged", { lua: SET_TAGGED });
  client.defineCommand("syTag", { numberOfKeys: 1, lua: TAG });
  client.defineCommand("syPurgeTags", { lua: PURGE_TAGS });
  return client as Client;
}

function isCluster(c: Redis | Cluster): c is Cluster {
  return (c as Cluster).isCluster === true;
}

/** Redis glob metacharacters, escaped so a path prefix matches only itself. */
function globEscape(s: string): string {
  return s.replace(/[*?[\]\\]/g, "\\$&");
}

export class RedisStore implements StoreBackend {
  readonly kind = "redis";
  readonly client: Client;
  private admin: Client | undefined;

  constructor(private readonly opts: RedisStoreOptions) {
    const options: RedisOptions = {
      connectTimeout: 1000,
      commandTimeout: opts.commandTimeoutMs ?? COMMAND_TIMEOUT_MS,
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      autoResendUnfulfilledCommands: false,
      retryStrategy: (times) => Math.min(times * 100, 1000),
      // Commands issued in the same tick (rate-limit counts and cache reads of concurrent
      // requests) leave in one write: one syscall for many requests instead of one each.
      enableAutoPipelining: true,
    };
    this.client = define(redisClient(opts, options));
    // ioredis prints unhandled 'error' events to the console; they are reported once, upstream of here.
    this.client.on("error", (err: Error) => opts.onConnectionError?.(err));
    // A Cluster reports a lost node as 'node error' (the cluster as a whole may still be up).
    this.client.on("node error", (err: Error) => opts.onConnectionError?.(err));
    this.client.on("ready", () => opts.onReady?.());
  }

  /** Resolves once connected, or after `timeoutMs` (never rejects: a down Redis is handled per request). */
  whenReady(timeoutMs: number): Promise<boolean> {
    return connected(this.client, timeoutMs);
  }

  get ready(): boolean {
    return this.client.status === "ready";
  }

  private k(key: string): string {
    return this.opts.prefix + key;
  }

  async incr(key: string, windowMs: number, by = 1): Promise<Count> {
    const [count, ttl] = await this.client.syIncr(this.k(key), windowMs, by);
    return { count, ttl };
  }

  async get(key: string): Promise<Buffer | undefined> {
    return (await this.client.getBuffer(this.k(key))) ?? undefined;
  }

  async set(key: string, value: Buffer, ttlMs: number, tags: readonly string[] = []): Promise<void> {
    if (ttlMs <= 0) return;
    const ttl = Math.ceil(ttlMs);
    const c = this.client;
    if (isCluster(c)) {
      // Tag sets live in other slots than the value: index first, then store (see above).
      const k = this.k(key);
      await Promise.all(tags.map((t) => c.syTag(this.k(`t:${t}`), k, ttl)));
      await c.set(k, value, "PX", ttl);
      return;
    }
    const keys = [this.k(key), ...tags.map((t) => this.k(`t:${t}`))];
    await c.sySetTagged(keys.length, ...keys, value, ttl);
  }

  private async adminClient(): Promise<Client> {
    if (this.admin === undefined) {
      const c = this.client;
      this.admin = define(
        isCluster(c)
          ? c.duplicate(undefined, { redisOptions: { ...c.options.redisOptions, commandTimeout: 5000 } })
          : c.duplicate({ commandTimeout: 5000 }),
      );
      this.admin.on("error", () => {});
      this.admin.on("node error", () => {});
    }
    await connected(this.admin, 1000);
    return this.admin;
  }

  async purgePrefix(keyPrefix: string, filter: (key: string) => boolean): Promise<number> {
    const admin = await this.adminClient();
    // A Cluster's keys are spread over its primaries: each is scanned (SCAN is per node).
    const cluster = isCluster(admin);
    const nodes = cluster ? admin.nodes("master") : [admin];
    const counts = await Promise.all(nodes.map((node) => this.purgeNode(node, cluster, keyPrefix, filter)));
    return counts.reduce((a, b) => a + b, 0);
  }

  private async purgeNode(
    node: Redis,
    oneByOne: boolean,
    keyPrefix: string,
    filter: (key: string) => boolean,
  ): Promise<number> {
    const strip = this.opts.prefix.length;
    let n = 0;
    let cursor = "0";
    do {
      const [next, keys] = await node.scan(
        cursor,
        "MATCH",
        `${globEscape(this.k(keyPrefix))}*`,
        "COUNT",
        1000,
      );
      cursor = next;
      const doomed = keys.filter((k) => filter(k.slice(strip)));
      if (doomed.length > 0) n += await unlink(node, doomed, oneByOne);
    } while (cursor !== "0");
    return n;
  }

  /**
   * `hot`: on the request path (cache invalidation, a few small tag sets): the main client and
   * its 50ms timeout, not the admin connection (made lazily, 5s timeout).
   */
  async purgeTags(tags: readonly string[], hot = false): Promise<number> {
    if (tags.length === 0) return 0;
    const client = hot ? this.client : await this.adminClient();
    const keys = tags.map((t) => this.k(`t:${t}`));
    if (!isCluster(client)) return client.syPurgeTags(keys.length, ...keys);
    // Cluster: a tag set's members live in other slots; read it, then delete key by key.
    let n = 0;
    for (const tagKey of keys) {
      const members = await client.smembers(tagKey);
      for (const deleted of await Promise.all(members.map((k) => client.unlink(k)))) n += deleted;
      await client.unlink(tagKey);
    }
    return n;
  }

  async close(): Promise<void> {
    for (const c of [this.client, this.admin]) {
      if (c === undefined) continue;
      // quit() waits for a reply that a dead server never sends; disconnect() does not wait.
      if (c.status === "ready") await c.quit().catch(() => c.disconnect());
      else c.disconnect();
    }
  }
}

/**
 * UNLINK `keys` found on `node`. On a Cluster node they may sit in different
 * slots (CROSSSLOT for one multi-key UNLINK), so each is its own command, in one pipeline.
 */
async function unlink(node: Redis, keys: string[], oneByOne: boolean): Promise<number> {
  if (!oneByOne) return node.unlink(...keys);
  const p = node.pipeline();
  for (const k of keys) p.unlink(k);
  let n = 0;
  for (const [err, v] of (await p.exec()) ?? []) {
    if (err) throw err;
    n += v as number;
  }
  return n;
}

function connected(client: Redis | Cluster, timeoutMs: number): Promise<boolean> {
  if (client.status === "ready") return Promise.resolve(true);
  return new Promise((resolve) => {
    const done = (ok: boolean) => {
      clearTimeout(timer);
      client.off("ready", onReady);
      resolve(ok);
    };
    const onReady = () => done(true);
    const timer = setTimeout(() => done(false), timeoutMs);
    timer.unref();
    client.once("ready", onReady);
  });
}
