/**
 * The setup the cache suites share (cache-range, -validation, -freshness,
 * -targeted, -client): one real origin for the file, and for each store — the
 * memory store, then the shared Redis under a key prefix of its own (skipped
 * per needs.ts where there is none) — a describe with a gateway in front of
 * that origin. Afterwards the gateway closes and exactly the prefix's keys are
 * deleted; the Redis server is never flushed.
 *
 *   cacheSuites("cache ranges", { origin, routes: [{ name: "api", path: "/r", cache: { ttl: "1m" } }] }, (gw) => {
 *     test("…", async () => { const r = await gw.get("/r/t0"); … });
 *   });
 */
import { after, before, describe } from "node:test";
import {
  type Backend,
  backend,
  gateway,
  type Handler,
  type Reply,
  type Running,
  request,
} from "../helpers/index.js";
import { missing } from "../helpers/needs.js";
import { deleteKeys, SHARED_REDIS, uniquePrefix, within } from "../store/redis-helpers.js";

const noRedis = await missing("redis");

/** A route to the origin (service `up`): `match: { path }` and its `cache:` block. */
export interface CacheRoute {
  name: string;
  path: string;
  cache: Record<string, unknown>;
}

export interface CacheSuite {
  kind: "memory" | "redis";
  /** The origin (once the file's before() has run). */
  readonly up: Backend;
  /** The gateway's base URL (once the suite's before() has run). */
  readonly url: string;
  /** One request through the gateway, failing after 3 s instead of hanging. */
  get(path: string, headers?: Record<string, string>, method?: string): Promise<Reply>;
}

export function cacheSuites(
  title: string,
  setup: { origin: Handler; routes: CacheRoute[] },
  tests: (gw: CacheSuite) => void,
): void {
  let up: Backend;
  before(async () => {
    up = await backend("up", setup.origin);
  });
  after(async () => {
    await up.close();
  });
  // JSON is YAML: the routes go into the config as one flow sequence.
  const routes = JSON.stringify(
    setup.routes.map(({ name, path, cache }) => ({ name, match: { path }, service: "up", cache })),
  );

  for (const kind of ["memory", "redis"] as const) {
    describe(`${title} (${kind} store)`, { skip: kind === "redis" ? noRedis : undefined }, () => {
      let gw: Running;
      const prefix = uniquePrefix();
      before(async () => {
        // The cache's rules are under test, not Redis's latency: a Redis starved by a loaded
        // machine is waited for (store.timeout 2s) instead of counted as down (a MISS).
        const store =
          kind === "redis"
            ? `store: { type: redis, url: "${SHARED_REDIS}", prefix: "${prefix}", timeout: 2s }\n`
            : "";
        gw = await gateway(`${store}services:\n  up: { targets: [${up.url}] }\nroutes: ${routes}\n`);
      });
      after(async () => {
        await gw.close();
        if (kind === "redis") await deleteKeys(prefix);
      });
      tests({
        kind,
        get up() {
          return up;
        },
        get url() {
          return gw.url;
        },
        get: (path, headers = {}, method = "GET") => within(3000, request(gw.url, { path, headers, method })),
      });
    });
  }
}
