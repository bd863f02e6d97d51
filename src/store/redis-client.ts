/**
 * Which Redis the shared store talks to (issue 14): one server (`url`), a
 * Redis Cluster (`cluster: [urls]`, any reachable nodes; ioredis learns the
 * rest and follows MOVED/ASK) or a primary found through Sentinel
 * (`sentinels: [urls]` with the master `name`; ioredis asks the sentinels for
 * the current primary on every reconnect, so a failover is followed by itself).
 *
 * Every kind gets the same fail-fast options (redis.ts says why): a command
 * never waits for a connection, never queues while disconnected, and times out
 * after `commandTimeout`. The Cluster client takes them as `redisOptions` for
 * each node connection plus its own offline-queue switch.
 */
import { createRequire } from "node:module";
import type { Cluster, ClusterNode, Redis, RedisOptions } from "ioredis";

export interface RedisTarget {
  url?: string;
  cluster?: readonly string[];
  sentinels?: readonly string[];
  /** The Sentinel master name. */
  name?: string;
}

/**
 * ioredis (and its dependencies) cost ~20 MB of RSS; a gateway on the memory
 * store never loads it. It is CommonJS, so a synchronous require keeps the
 * store's constructor synchronous.
 */
let lib: typeof import("ioredis") | undefined;
function ioredis(): typeof import("ioredis") {
  lib ??= createRequire(import.meta.url)("ioredis") as typeof import("ioredis");
  return lib;
}

/** host and port of a redis:// URL (the port defaulting to `port`). */
function node(url: string, port: number): ClusterNode & { host: string; port: number } {
  const u = new URL(url);
  return { host: u.hostname.replace(/^\[|\]$/g, ""), port: Number(u.port || port) };
}

/** Credentials (and TLS for rediss://) carried by the first URL of a list. */
function auth(url: string | undefined): Pick<RedisOptions, "username" | "password" | "tls"> {
  if (url === undefined) return {};
  const u = new URL(url);
  return {
    ...(u.username ? { username: decodeURIComponent(u.username) } : {}),
    ...(u.password ? { password: decodeURIComponent(u.password) } : {}),
    ...(u.protocol === "rediss:" ? { tls: {} } : {}),
  };
}

/** A client for `target` with the store's fail-fast `options`. */
export function redisClient(target: RedisTarget, options: RedisOptions): Redis | Cluster {
  const { Redis: RedisClass, Cluster: ClusterClass } = ioredis();
  if (target.cluster !== undefined && target.cluster.length > 0) {
    const { enableOfflineQueue, enableAutoPipelining, retryStrategy, ...perNode } = options;
    return new ClusterClass(
      target.cluster.map((u) => node(u, 6379)),
      {
        redisOptions: { ...perNode, ...auth(target.cluster[0]) },
        enableOfflineQueue,
        enableAutoPipelining,
        clusterRetryStrategy: retryStrategy,
        // A node that is gone (killed, failing over) makes commands to its slots fail at once
        // rather than being retried for seconds: the store's onError then answers.
        retryDelayOnClusterDown: 0,
        retryDelayOnFailover: 0,
        retryDelayOnTryAgain: 0,
        maxRedirections: 3,
        slotsRefreshTimeout: 1000,
        // Learn a new slot map (a replica promoted, a node back) without waiting for an error.
        slotsRefreshInterval: 2000,
      },
    );
  }
  if (target.sentinels !== undefined && target.sentinels.length > 0) {
    // Credentials in the first sentinel URL are used for the sentinels and for the primary.
    const { username, password, tls } = auth(target.sentinels[0]);
    return new RedisClass({
      ...options,
      ...auth(target.sentinels[0]),
      sentinels: target.sentinels.map((u) => node(u, 26379)),
      name: target.name,
      sentinelUsername: username,
      sentinelPassword: password,
      ...(tls ? { enableTLSForSentinelMode: true } : {}),
      // Sentinel's answer is asked on every reconnect; a silent sentinel must not hold it up long.
      sentinelCommandTimeout: 1000,
      sentinelRetryStrategy: (times) => Math.min(times * 100, 1000),
      // A crashed primary drops the connection, and the reconnect asks the sentinels anew. After a
      // graceful failover the old primary answers writes with READONLY: reconnect then too.
      // (ioredis' failoverDetector would also do, but its sentinel subscribers outlive quit().)
      reconnectOnError: (err) => err.message.startsWith("READONLY"),
    });
  }
  return new RedisClass(target.url ?? "redis://127.0.0.1:6379", options);
}
