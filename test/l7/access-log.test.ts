/**
 * The access line's `cache` field (SPEC §8) on a cached route: miss, hit (on
 * the cache lane and through Fastify), bypass for a method the cache does not
 * take; absent on a route without a cache.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { backend, capturingLogger, gateway, request } from "../helpers/index.js";

test("access line: cache is miss, hit, bypass on a cached route and absent elsewhere", async (t) => {
  const b = await backend("c", (_req, res) => {
    res.setHeader("cache-control", "max-age=60");
    res.end("x");
  });
  t.after(() => b.close());
  const log = capturingLogger();
  const g = await gateway(
    `services: { s: { targets: [${b.url}] } }
routes:
  - { name: cached, match: { path: /c }, service: s, cache: { ttl: 60s } }
  - { name: plain, service: s }
`,
    { logger: log.logger },
  );
  t.after(() => g.close());
  const send = async (path: string, o: { method?: string; headers?: Record<string, string> } = {}) => {
    const before = log.lines.length;
    await request(g.url, { path, ...o });
    // The line is written on the response's close, just after the client has the answer.
    for (let i = 0; log.lines.slice(before).every((l) => l.msg !== "request"); i++) {
      assert.ok(i < 200, "no access line");
      await new Promise((r) => setTimeout(r, 5));
    }
    return log.lines.slice(before).find((l) => l.msg === "request")!;
  };
  assert.equal((await send("/c/1")).cache, "miss");
  assert.equal((await send("/c/1")).cache, "hit", "cache lane");
  assert.equal(
    (await send("/c/1", { headers: { "if-none-match": '"nope"' } })).cache,
    "hit",
    "through Fastify",
  );
  assert.equal((await send("/c/1", { method: "POST" })).cache, "bypass");
  assert.equal((await send("/x")).cache, undefined);
});
