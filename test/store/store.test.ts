import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import type { Redis } from "ioredis";
import pino from "pino";
import { parseConfig } from "../../src/config/load.js";
import { createStore, GatewayStore } from "../../src/store/index.js";
import { MemoryStore } from "../../src/store/memory.js";
import { RedisStore } from "../../src/store/redis.js";
import { missing } from "../helpers/needs.js";
import {
  client,
  deleteKeys,
  SHARED_REDIS,
  type Throwaway,
  throwawayRedis,
  uniquePrefix,
  within,
} from "./redis-helpers.js";

const silent = pino({ level: "silent" });

describe("memory store", () => {
  test("fixed windows: counts up, then a new window starts at 1", () => {
    const m = new MemoryStore();
    const t0 = 1_000_000;
    assert.deepEqual(m.incrSync("k", 1000, t0), { count: 1, ttl: 1000 });
    assert.deepEqual(m.incrSync("k", 1000, t0 + 400), { count: 2, ttl: 600 });
    assert.deepEqual(m.incrSync("other", 1000, t0 + 400), { count: 1, ttl: 1000 });
    assert.deepEqual(m.incrSync("k", 1000, t0 + 1000), { count: 1, ttl: 1000 });
  });

  test("counters are bounded: past the bound the oldest windows go", () => {
    const m = new MemoryStore({ maxBytes: 1024, maxCounters: 3 });
    for (const k of ["a", "b", "c", "d"]) m.incrSync(k, 60_000);
    assert.equal(m.incrSync("a", 60_000).count, 1, "a was evicted, so it starts again");
    assert.equal(m.incrSync("d", 60_000).count, 2);
  });

  test("values: LRU bounded by bytes, a read keeps an entry young", async () => {
    const m = new MemoryStore({ maxBytes: 300, maxCounters: 10 });
    await m.set("a", Buffer.alloc(100), 60_000);
    await m.set("b", Buffer.alloc(100), 60_000);
    await m.set("c", Buffer.alloc(100), 60_000);
    assert.ok(await m.get("a")); // a is now the most recent
    await m.set("d", Buffer.alloc(100), 60_000);
    assert.equal(await m.get("b"), undefined, "b was least recently used");
    assert.ok(await m.get("a"));
    assert.ok(await m.get("c"));
    assert.ok(await m.get("d"));
    assert.deepEqual(m.size, { entries: 3, bytes: 300 });
    await m.set("huge", Buffer.alloc(301), 60_000);
    assert.equal(await m.get("huge"), undefined, "a value over the whole bound is not stored");
  });

  test("values expire", async () => {
    const m = new MemoryStore();
    await m.set("a", Buffer.from("x"), 30);
    assert.ok(await m.get("a"));
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(await m.get("a"), undefined);
    assert.deepEqual(m.size, { entries: 0, bytes: 0 });
  });

  test("purge by prefix (with a filter) and by tag", async () => {
    const m = new MemoryStore();
    await m.set("c:/a/1", Buffer.from("1"), 60_000, ["t1"]);
    await m.set("c:/a/2", Buffer.from("2"), 60_000, ["t2"]);
    await m.set("c:/ab", Buffer.from("3"), 60_000, ["t1", "t2"]);
    assert.equal(await m.purgePrefix("c:/a", (k) => k.startsWith("c:/a/")), 2);
    assert.ok(await m.get("c:/ab"));
    assert.equal(await m.purgeTags(["t2"]), 1);
    assert.equal(await m.get("c:/ab"), undefined);
    assert.equal(await m.purgeTags(["t1", "nope"]), 0);
  });
});

describe("redis store (shared Redis)", { skip: await missing("redis") }, () => {
  let prefix: string;
  let store: RedisStore;
  before(async () => {
    prefix = uniquePrefix();
    store = new RedisStore({ url: SHARED_REDIS, prefix });
    assert.ok(await store.whenReady(2000), "the shared Redis at 127.0.0.1:6379 must be running");
  });
  after(async () => {
    await store.close();
    await deleteKeys(prefix);
  });

  test("incr is atomic across clients: 100 concurrent hits from two clients count 1..100", async () => {
    const other = new RedisStore({ url: SHARED_REDIS, prefix });
    await other.whenReady(2000);
    try {
      const all = await Promise.all(
        Array.from({ length: 100 }, (_, i) => (i % 2 ? store : other).incr("rl:x", 60_000)),
      );
      assert.deepEqual(
        all.map((c) => c.count).sort((a, b) => a - b),
        Array.from({ length: 100 }, (_, i) => i + 1),
      );
      for (const c of all) assert.ok(c.ttl > 0 && c.ttl <= 60_000);
      const r = await client();
      const pttl = await r.pttl(`${prefix}rl:x`);
      r.disconnect();
      assert.ok(pttl > 0 && pttl <= 60_000, "the window has an expiry");
    } finally {
      await other.close();
    }
  });

  test("values round-trip as bytes, expire, and are tagged", async () => {
    const bin = Buffer.from([0, 255, 1, 254, 10, 13]);
    await store.set("c:/bin k", bin, 60_000, ["tag-a"]);
    assert.deepEqual(await store.get("c:/bin k"), bin);
    await store.set("c:/short k", Buffer.from("x"), 40);
    await new Promise((r) => setTimeout(r, 80));
    assert.equal(await store.get("c:/short k"), undefined);
    const r = await client();
    assert.deepEqual(await r.smembers(`${prefix}t:tag-a`), [`${prefix}c:/bin k`]);
    assert.ok((await r.pttl(`${prefix}t:tag-a`)) > 0, "tag sets expire too");
    r.disconnect();
  });

  test("purge by prefix escapes glob characters and applies the filter", async () => {
    await store.set("c:/p[1]/a k", Buffer.from("1"), 60_000);
    await store.set("c:/p1/a k", Buffer.from("2"), 60_000);
    await store.set("c:/p[1]x k", Buffer.from("3"), 60_000);
    const n = await store.purgePrefix("c:/p[1]", (k) => k.startsWith("c:/p[1]/"));
    assert.equal(n, 1);
    assert.equal(await store.get("c:/p[1]/a k"), undefined);
    assert.ok(await store.get("c:/p1/a k"), "[1] was not a glob class");
    assert.ok(await store.get("c:/p[1]x k"), "the filter kept a non-segment match");
  });

  test("purge by tag deletes every tagged value and the tag set", async () => {
    await store.set("c:/t1 k", Buffer.from("1"), 60_000, ["users", "all"]);
    await store.set("c:/t2 k", Buffer.from("2"), 60_000, ["all"]);
    await store.set("c:/t3 k", Buffer.from("3"), 60_000, ["orders"]);
    assert.equal(await store.purgeTags(["all"]), 2);
    assert.equal(await store.get("c:/t1 k"), undefined);
    assert.equal(await store.get("c:/t2 k"), undefined);
    assert.ok(await store.get("c:/t3 k"));
    const r = await client();
    assert.equal(await r.exists(`${prefix}t:all`), 0);
    r.disconnect();
  });
});

describe("store.onError while Redis is down or slow (throwaway redis-server)", {
  skip: await missing("redis-server"),
}, () => {
  let redis: Throwaway;
  before(async () => {
    redis = await throwawayRedis();
  });
  after(async () => {
    await redis.stop();
  });

  function make(onError: "local" | "allow" | "deny") {
    const backend = new RedisStore({ url: redis.url, prefix: "sy:" });
    const warnings: string[] = [];
    const log = Object.assign(Object.create(silent), {
      warn: (_o: unknown, msg: string) => warnings.push(msg),
      info: () => {},
    });
    const store = new GatewayStore(backend, onError, log);
    return { store, backend, warnings };
  }

  test("local / allow / deny, never waiting, logged once; shared counting resumes when Redis returns", async () => {
    const local = make("local");
    const allow = make("allow");
    const deny = make("deny");
    try {
      for (const s of [local, allow, deny]) assert.ok(await s.backend.whenReady(2000));
      assert.equal((await local.store.incr("rl:k", 60_000))?.count, 1);
      await redis.stop();
      for (let i = 2; i <= 4; i++) {
        const c = await within(200, local.store.incr("rl:k", 60_000), "incr while down");
        // Falls back to this instance's own window, which starts at 1.
        assert.equal(c?.count, i - 1);
      }
      assert.equal(await within(200, allow.store.incr("rl:k", 60_000)), undefined, "allow: not counted");
      await assert.rejects(within(200, deny.store.incr("rl:k", 60_000)), { code: "SY_STORE_UNAVAILABLE" });
      await assert.rejects(within(200, deny.store.get("c:/x k")), { code: "SY_STORE_UNAVAILABLE" });
      assert.equal(await within(200, allow.store.get("c:/x k")), undefined);
      await within(200, local.store.set("c:/x k", Buffer.from("v"), 60_000));
      assert.deepEqual(
        await within(200, local.store.get("c:/x k")),
        Buffer.from("v"),
        "local cache meanwhile",
      );
      assert.equal(local.warnings.length, 1, `one warning per outage, got ${local.warnings}`);
      assert.equal(local.store.healthy, false);

      await redis.start();
      // Each client reconnects on its own schedule: wait for both that are asked next.
      assert.ok(await local.backend.whenReady(5000), "reconnects by itself");
      assert.ok(await deny.backend.whenReady(5000), "the second instance reconnects too");
      // The counter in Redis survived nothing (no persistence): shared counting starts over, in Redis.
      assert.equal((await local.store.incr("rl:k", 60_000))?.count, 1);
      assert.equal((await deny.store.incr("rl:k", 60_000))?.count, 2, "a second instance shares it again");
      assert.equal(local.store.healthy, true);
    } finally {
      for (const s of [local, allow, deny]) await s.store.close();
    }
  });

  test("a slow Redis (>50ms) counts as unavailable: the request does not wait for it", async () => {
    const local = make("local");
    const deny = make("deny");
    const pauser = make("local");
    try {
      for (const s of [local, deny, pauser]) assert.ok(await s.backend.whenReady(2000));
      // CLIENT PAUSE holds every other client's commands for 2 s; its OK means the pause is on
      // (an event to await, where a sleep would only hope the server was already blocked).
      assert.equal(await pauser.backend.client.call("CLIENT", "PAUSE", "2000", "ALL"), "OK");
      const t0 = performance.now();
      assert.equal((await local.store.incr("rl:slow", 60_000))?.count, 1, "counted locally");
      await assert.rejects(deny.store.incr("rl:slow", 60_000), { code: "SY_STORE_UNAVAILABLE" });
      const took = performance.now() - t0;
      // Waiting for Redis would take the whole 2 s; the 50 ms limit leaves a busy machine ample room.
      assert.ok(took < 1500, `answered in ${Math.round(took)}ms, while Redis is paused for 2000ms`);
      assert.equal(local.store.healthy, false);
    } finally {
      for (const s of [local, deny, pauser]) await s.store.close();
    }
  });

  test("without store.timeout, the schema's 50 ms reaches the Redis client", async () => {
    const config = parseConfig(`version: 1\nstore: { type: redis, url: "${redis.url}", prefix: "sy:" }\n`);
    assert.equal(config.store?.type === "redis" && config.store.timeout, "50ms", "the schema default");
    const store = createStore(config.store, silent);
    try {
      const backend = store.shared as RedisStore;
      assert.ok(backend instanceof RedisStore);
      assert.equal((backend.client as unknown as Redis).options.commandTimeout, 50);
    } finally {
      await store.close();
    }
  });

  test("store.timeout sets the limit: with 3s a paused Redis is waited for, and counts", async () => {
    const patient = createStore(
      { type: "redis", url: redis.url, prefix: "sy:", onError: "deny", timeout: "3s" },
      silent,
    );
    const pauser = make("local");
    try {
      assert.ok(await pauser.backend.whenReady(2000));
      assert.ok(await patient.whenReady(2000));
      assert.equal((await patient.incr("rl:patient", 60_000))?.count, 1, "ready and counting");
      assert.equal(await pauser.backend.client.call("CLIENT", "PAUSE", "400", "ALL"), "OK");
      const t0 = performance.now();
      // With the default 50 ms this is SY_STORE_UNAVAILABLE (the test above); here it waits out the pause.
      assert.equal((await patient.incr("rl:patient", 60_000))?.count, 2);
      const took = performance.now() - t0;
      assert.ok(took >= 300, `answered after ${Math.round(took)}ms: the pause was waited for`);
      assert.equal(patient.healthy, true);
    } finally {
      await patient.close();
      await pauser.store.close();
    }
  });
});
