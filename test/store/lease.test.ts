/**
 * Rate-limit counts reserved from Redis in batches (src/store/lease.ts): every
 * count handed out is a unique count of the shared window, so a limit is
 * never exceeded, and at most `batch` per process go unused.
 */
import assert from "node:assert/strict";
import { after, describe, test } from "node:test";
import pino from "pino";
import { GatewayStore } from "../../src/store/index.js";
import { batchFor, Leases } from "../../src/store/lease.js";
import { RedisStore } from "../../src/store/redis.js";
import { missing } from "../helpers/needs.js";
import { deleteKeys, SHARED_REDIS, uniquePrefix } from "./redis-helpers.js";

describe("leases", () => {
  test("a batch of counts is handed out in order; concurrent refills share one reservation", async () => {
    const l = new Leases();
    let total = 0;
    let reservations = 0;
    const reserve = async () => {
      reservations++;
      await new Promise((r) => setImmediate(r));
      total += 10;
      return { count: total, ttl: 60_000 };
    };
    assert.equal(l.take("k"), undefined);
    await Promise.all(Array.from({ length: 20 }, () => l.refill("k", 10, reserve)));
    assert.equal(reservations, 1);
    const counts = Array.from({ length: 10 }, () => l.take("k")?.count);
    assert.deepEqual(counts, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    assert.equal(l.take("k"), undefined, "used up");
    await l.refill("k", 10, reserve);
    assert.equal(l.take("k")?.count, 11);
  });

  test("a lease ends with its window", async () => {
    const l = new Leases();
    await l.refill("k", 5, async () => ({ count: 5, ttl: 50 }));
    assert.equal(l.take("k", Date.now())?.count, 1);
    assert.equal(l.take("k", Date.now() + 60), undefined);
  });

  test("batch sizes: exact below 2000 a window, then max/1000, at most 100", () => {
    assert.deepEqual([1, 100, 1999, 2000, 5000, 99_999, 1e9].map(batchFor), [1, 1, 1, 2, 5, 99, 100]);
  });
});

describe("leases on a shared Redis", { skip: await missing("redis") }, () => {
  const prefix = uniquePrefix();
  const silent = pino({ level: "silent" });
  const stores = [0, 1].map(
    // Leases, not timeouts, are under test: a Redis starved by a loaded machine is waited for.
    () =>
      new GatewayStore(new RedisStore({ url: SHARED_REDIS, prefix, commandTimeoutMs: 2000 }), "deny", silent),
  );
  after(async () => {
    await deleteKeys(prefix);
    await Promise.all(stores.map((s) => s.close()));
  });

  test("two processes counting one window in batches never pass the limit, and lose at most a batch each", async () => {
    await Promise.all(stores.map((s) => s.whenReady(2000)));
    const max = 5000;
    const batch = batchFor(max);
    assert.equal(batch, 5);
    const counts: number[] = [];
    // 6000 hits, interleaved between the two "workers", 50 at a time.
    for (let round = 0; round < 120; round++) {
      const got = await Promise.all(
        Array.from({ length: 50 }, (_, i) => stores[i % 2].incr("rl:r:ip:1", 60_000, batch)),
      );
      for (const c of got) counts.push(c!.count);
    }
    assert.equal(new Set(counts).size, counts.length, "every count is handed out once");
    const allowed = counts.filter((c) => c <= max).length;
    assert.ok(allowed <= max, `allowed ${allowed} > ${max}`);
    assert.ok(allowed >= max - 2 * batch, `allowed ${allowed}: more than 2 × batch lost`);
  });
});
