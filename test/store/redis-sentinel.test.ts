/**
 * The shared store through Redis Sentinel (issue 14): a primary, its replica
 * and one sentinel started for this file (redis-topology.ts). The primary is
 * killed; the sentinel promotes the replica and the gateway follows it.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { type Backend, backend, gateway, type Running, request } from "../helpers/index.js";
import { missing } from "../helpers/needs.js";
import { uniquePrefix, within } from "./redis-helpers.js";
import { cli, type RedisSentinel, startSentinel, until } from "./redis-topology.js";

const skip = await missing("redis-server", "redis-cli");

describe("store through Redis Sentinel", { skip, timeout: 60_000 }, () => {
  let sentinel: RedisSentinel;
  let up: Backend;
  const running: Running[] = [];
  before(async () => {
    sentinel = await startSentinel();
    up = await backend("up");
  });
  after(async () => {
    for (const g of running.splice(0)) await g.close();
    await up?.close();
    await sentinel?.close();
  });

  const config = (prefix: string, onError: string) => `
store: { type: redis, sentinels: [${sentinel.url}], name: ${sentinel.name}, prefix: "${prefix}", onError: ${onError} }
services:
  up: { targets: [${up.url}] }
routes:
  - { name: limited, match: { path: /limited }, service: up, rateLimit: { max: 3, window: 1m, by: route } }
  - { name: roomy, match: { path: /roomy }, service: up, rateLimit: { max: 1000, window: 1m, by: route } }
`;

  test("two instances share a limit on the primary; a failover is served per onError and followed by itself", async () => {
    const prefix = uniquePrefix();
    const deny = await gateway(config(prefix, "deny"));
    const local = await gateway(config(prefix, "local"));
    running.push(deny, local);
    const statuses: number[] = [];
    for (let i = 0; i < 5; i++)
      statuses.push((await within(2000, request((i % 2 ? local : deny).url, { path: "/limited" }))).status);
    assert.deepEqual(statuses, [200, 200, 200, 429, 429], "3/min for both instances together");
    assert.equal(await cli(sentinel.primary, "GET", `${prefix}rl:{limited}:route`), "5\n");

    // Replication is asynchronous: let the replica have the counts before the crash.
    assert.equal(await cli(sentinel.primary, "WAIT", "1", "2000"), "1\n");
    await sentinel.killPrimary();
    // Before the sentinel has promoted anyone: no primary at all.
    const t = Date.now();
    const d = await within(2000, request(deny.url, { path: "/roomy" }));
    assert.equal(d.status, 503);
    assert.equal(d.json().code, "SY_STORE_UNAVAILABLE");
    assert.equal((await within(2000, request(local.url, { path: "/roomy" }))).status, 200);
    assert.ok(Date.now() - t < 1000, "no request waits for the failover");

    await sentinel.promoted();
    // onError local answers 200 either way: what shows it is back is its count landing on the new primary.
    const roomy = `${prefix}rl:{roomy}:route`;
    for (const g of [deny, local])
      await until("the instance counts on the promoted replica", 15_000, async () => {
        const before = Number(await cli(sentinel.replica, "GET", roomy));
        const r = await request(g.url, { path: "/roomy" });
        return r.status === 200 && Number(await cli(sentinel.replica, "GET", roomy)) === before + 1;
      });
    // The replica had the counts replicated: the shared limit still holds after the failover.
    assert.equal((await request(deny.url, { path: "/limited" })).status, 429);
    assert.equal((await request(local.url, { path: "/limited" })).status, 429);
    assert.equal(await cli(sentinel.replica, "GET", `${prefix}rl:{limited}:route`), "7\n");
  });
});
