/**
 * SPEC §7: "The memory store survives a reload: rate-limit counters and
 * cached responses of routes that still exist (by name) are kept." The
 * reloads here change only an unrelated route, as an operator's would.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { parseConfig } from "../../src/config/load.js";
import { storeOf } from "../../src/store/index.js";
import { type Backend, backend, gateway, type Running, request } from "../helpers/index.js";

let up: Backend;
let gw: Running;

/** The same limited and cached routes; `other` is what each reload changes. */
const text = (other: string) => `listen: [{ port: 0, host: 127.0.0.1 }]
services: { up: { targets: [${up.url}] } }
routes:
  - { name: limited, match: { path: /limited }, service: up, rateLimit: { max: 3, window: 1m, by: ip } }
  - { name: cached, match: { path: /cached }, service: up, cache: { ttl: 1m } }
  - { name: other, match: { path: /other }, ${other} }
`;
const reload = (other: string) =>
  gw.gw.reload(parseConfig(`version: 1\nshutdownTimeout: 1s\n${text(other)}`));

before(async () => {
  up = await backend("up");
  gw = await gateway(text("service: up"));
});
after(async () => {
  await gw.close();
  await up.close();
});

describe("the memory store across a reload", () => {
  test("a rate limit of 3 counts on: 2 requests, reload, the 4th is 429", async () => {
    const get = async () => (await request(gw.url, { path: "/limited" })).status;
    assert.deepEqual([await get(), await get()], [200, 200]);
    const store = storeOf(gw.gw.generation);
    await reload("respond: { status: 204 }");
    assert.equal((await request(gw.url, { path: "/other" })).status, 204, "the new config serves");
    assert.deepEqual([await get(), await get()], [200, 429]);
    assert.equal(storeOf(gw.gw.generation), store, "the same store, handed to the new generation");
  });

  test("a cached response is still a HIT after a reload", async () => {
    const get = () => request(gw.url, { path: "/cached/a" });
    assert.equal((await get()).headers["x-cache"], "MISS");
    assert.equal((await get()).headers["x-cache"], "HIT");
    const hits = up.hits;
    await reload("respond: { status: 202 }");
    assert.equal((await request(gw.url, { path: "/other" })).status, 202, "the new config serves");
    const again = await get();
    assert.equal(again.headers["x-cache"], "HIT");
    assert.equal(up.hits, hits, "answered from the store, not the upstream");
  });

  test("a changed store: section makes a new store; the same redis settings keep their connection", async () => {
    const first = storeOf(gw.gw.generation)!;
    await first.set("probe", Buffer.from("x"), 60_000);
    const redis = `store: { type: redis, url: redis://127.0.0.1:6379, prefix: "sy-test-store-reload-${process.pid}:" }\n`;
    const withRedis = (other: string) =>
      parseConfig(`version: 1\nshutdownTimeout: 1s\n${redis}${text(other)}`);
    await gw.gw.reload(withRedis("service: up"));
    const shared = storeOf(gw.gw.generation)!;
    assert.equal(shared.kind, "redis");
    await gw.gw.reload(withRedis("respond: { status: 204 }"));
    assert.equal(
      storeOf(gw.gw.generation),
      shared,
      "unchanged redis settings: the same store and connection",
    );
    await reload("service: up");
    const fresh = storeOf(gw.gw.generation)!;
    assert.equal(fresh.kind, "memory");
    assert.notEqual(fresh, first, "back to memory: a new store, the first was given up");
    assert.equal(await fresh.get("probe"), undefined);
  });
});
