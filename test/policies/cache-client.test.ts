/**
 * A client's Cache-Control request directives (RFC 9111 §5.2.1, issue 12):
 * ignored by default (SPEC §6: a client cannot force misses onto the
 * upstream), obeyed on a route with `cache.obeyClientCacheControl: true`.
 * Real origin, through the gateway, on the memory store (the hit lane must
 * leave such requests to Fastify) and on the shared Redis. The origin's
 * Cache-Control comes from the path (/s/… stale at once, /m/… must-revalidate).
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { cacheSuites } from "./cache-harness.js";

let n = 0;
const asked: { url: string; inm?: string }[] = [];
const count = (p: string) => asked.filter((a) => a.url === p).length;

cacheSuites(
  "client request directives",
  {
    origin: (req, res, up) => {
      const url = req.url ?? "/";
      const inm = req.headers["if-none-match"] as string | undefined;
      asked.push({ url, inm });
      const cc = url.includes("/s/")
        ? "max-age=0"
        : url.includes("/m/")
          ? "max-age=0, must-revalidate"
          : "max-age=60";
      const headers: Record<string, string> = { "content-type": "text/plain", "cache-control": cc };
      if (url.includes("/etag/")) headers.etag = '"e1"';
      if (inm === '"e1"') {
        res.writeHead(304, headers);
        res.end();
        return;
      }
      res.writeHead(200, headers);
      res.end(`${url} #${up.hits}`);
    },
    routes: [
      { name: "obey", path: "/obey", cache: { ttl: "1h", obeyClientCacheControl: true } },
      { name: "deaf", path: "/deaf", cache: { ttl: "1h" } },
    ],
  },
  ({ get }) => {
    const p = (base: string) => `${base}/t${n++}`;

    test("off by default: no-cache, max-age=0 and Pragma are ignored; only-if-cached goes upstream", async () => {
      const path = p("/deaf");
      await get(path);
      for (const h of [
        { "cache-control": "no-cache" },
        { "cache-control": "max-age=0" },
        { pragma: "no-cache" },
      ] as Record<string, string>[])
        assert.equal((await get(path, h)).headers["x-cache"], "HIT", JSON.stringify(h));
      assert.equal(count(path), 1);
      const other = p("/deaf");
      const r = await get(other, { "cache-control": "only-if-cached" });
      assert.deepEqual([r.status, r.headers["x-cache"]], [200, "MISS"]);
    });

    test("no-cache and Pragma: no-cache ask the upstream, conditionally when a validator is stored", async () => {
      const path = p("/obey/etag");
      await get(path);
      for (const h of [{ "cache-control": "no-cache" }, { pragma: "no-cache" }] as Record<string, string>[]) {
        const before = count(path);
        const r = await get(path, h);
        assert.equal(count(path), before + 1, `${JSON.stringify(h)} asked the upstream`);
        assert.equal(asked.at(-1)?.inm, '"e1"', "conditionally");
        assert.deepEqual([r.status, r.headers["x-cache"]], [200, "HIT"], "its 304 served the stored body");
      }
      const plain = p("/obey");
      await get(plain);
      const r = await get(plain, { "cache-control": "no-cache" });
      assert.deepEqual([r.headers["x-cache"], count(plain)], ["MISS", 2], "no validator: a full request");
      assert.equal((await get(plain)).headers["x-cache"], "HIT", "and its answer is stored");
    });

    test("max-age and min-fresh bound what is used; within them it is a HIT", async () => {
      const path = p("/obey");
      await get(path);
      assert.equal((await get(path, { "cache-control": "max-age=3600" })).headers["x-cache"], "HIT");
      assert.equal((await get(path, { "cache-control": "min-fresh=1" })).headers["x-cache"], "HIT");
      assert.equal(count(path), 1);
      assert.equal((await get(path, { "cache-control": "max-age=0" })).headers["x-cache"], "MISS");
      assert.equal((await get(path, { "cache-control": "min-fresh=3600" })).headers["x-cache"], "MISS");
      assert.equal(count(path), 3);
    });

    test("max-stale takes a stale answer unless the response forbade it (must-revalidate)", async () => {
      // Stale at once, kept for revalidation by its ETag.
      const stale = p("/obey/s/etag");
      await get(stale);
      const r = await get(stale, { "cache-control": "max-stale=60" });
      assert.deepEqual([r.headers["x-cache"], count(stale)], ["STALE", 1]);
      assert.equal((await get(stale, { "cache-control": "max-stale" })).headers["x-cache"], "STALE");
      assert.equal(count(stale), 1, "not asked");
      await get(stale);
      assert.equal(count(stale), 2, "without it, the stale entry is revalidated first");
      const strict = p("/obey/m/etag");
      await get(strict);
      await get(strict, { "cache-control": "max-stale=60" });
      assert.equal(count(strict), 2, "must-revalidate: asked all the same");
    });

    test("only-if-cached: 504 SY_NOT_CACHED without asking the upstream; a HIT when stored", async () => {
      const path = p("/obey");
      const r = await get(path, { "cache-control": "only-if-cached" });
      assert.equal(r.status, 504);
      assert.equal(r.json().code, "SY_NOT_CACHED");
      assert.equal(count(path), 0, "the upstream was never asked");
      await get(path);
      const hit = await get(path, { "cache-control": "only-if-cached" });
      assert.deepEqual([hit.status, hit.headers["x-cache"]], [200, "HIT"]);
    });
  },
);
