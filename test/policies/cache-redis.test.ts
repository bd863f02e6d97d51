import assert from "node:assert/strict";
import { after, afterEach, before, describe, test } from "node:test";
import { purgeCache } from "../../src/cache/purge.js";
import { type Backend, backend, gateway, type Running, request } from "../helpers/index.js";
import { missing } from "../helpers/needs.js";
import {
  client,
  deleteKeys,
  type Throwaway,
  throwawayRedis,
  uniquePrefix,
  within,
} from "../store/redis-helpers.js";

const noRedis = await missing("redis");
const noRedisServer = await missing("redis-server");

describe("cache on the shared Redis store", () => {
  let up: Backend;
  let prefix: string;
  const running: Running[] = [];
  before(async () => {
    up = await backend("up", (req, res) => {
      res.writeHead(200, { "content-type": "text/plain", "surrogate-key": "everything" });
      res.end(`${req.url} #${up.hits}`);
    });
  });
  afterEach(async () => {
    for (const g of running.splice(0)) await g.close();
  });
  after(async () => {
    await up.close();
  });

  const config = (url: string, pfx: string, onError: string) => `
store: { type: redis, url: "${url}", prefix: "${pfx}", onError: ${onError} }
services:
  up: { targets: [${up.url}] }
routes:
  - { name: api, match: { path: / }, service: up, cache: { ttl: 1m } }
`;

  test("two instances share entries: a miss on one is a hit on the other; a purge on one purges both", {
    skip: noRedis,
  }, async () => {
    prefix = uniquePrefix();
    try {
      const a = await gateway(config("redis://127.0.0.1:6379", prefix, "deny"));
      const b = await gateway(config("redis://127.0.0.1:6379", prefix, "deny"));
      running.push(a, b);
      const before = up.hits;
      const first = await within(3000, request(a.url, { path: "/shared?x=1" }));
      const second = await within(3000, request(b.url, { path: "/shared?x=1" }));
      assert.deepEqual([first.headers["x-cache"], second.headers["x-cache"]], ["MISS", "HIT"]);
      assert.equal(second.body, first.body);
      assert.equal(up.hits - before, 1);
      const r = await client();
      const keys = await r.keys(`${prefix}c:/shared *`);
      assert.equal(keys.length, 1, "the entry is in Redis under the store prefix");
      assert.deepEqual(await r.smembers(`${prefix}t:everything`), keys);
      r.disconnect();
      assert.equal((await purgeCache(a.gw.generation, { tags: ["everything"] })).purged, 1);
      assert.equal((await within(3000, request(b.url, { path: "/shared?x=1" }))).headers["x-cache"], "MISS");
      assert.equal((await purgeCache(b.gw.generation, { prefix: "/shared" })).purged, 1);
      assert.equal((await within(3000, request(a.url, { path: "/shared?x=1" }))).headers["x-cache"], "MISS");
    } finally {
      await deleteKeys(prefix);
    }
  });

  describe("while Redis is down (throwaway redis-server)", { skip: noRedisServer }, () => {
    let redis: Throwaway;
    before(async () => {
      redis = await throwawayRedis();
    });
    after(async () => {
      await redis.stop();
    });

    test("onError local caches in the instance; deny answers 503; allow goes upstream uncached; none hangs", async () => {
      const local = await gateway(config(redis.url, "c1:", "local"));
      const deny = await gateway(config(redis.url, "c2:", "deny"));
      const allow = await gateway(config(redis.url, "c3:", "allow"));
      running.push(local, deny, allow);
      await redis.stop();
      const get = (g: Running) => within(2000, request(g.url, { path: "/down" }));
      assert.deepEqual(
        [(await get(local)).headers["x-cache"], (await get(local)).headers["x-cache"]],
        ["MISS", "HIT"],
      );
      const denied = await get(deny);
      assert.deepEqual([denied.status, denied.json().code], [503, "SY_STORE_UNAVAILABLE"]);
      const before = up.hits;
      const allowed = [await get(allow), await get(allow)];
      assert.deepEqual(
        allowed.map((r) => [r.status, r.headers["x-cache"]]),
        [
          [200, "MISS"],
          [200, "MISS"],
        ],
      );
      assert.equal(up.hits - before, 2);
    });
  });
});
