/**
 * Targeted cache control (RFC 9213, issue 12): CDN-Cache-Control (and, opted
 * into, Surrogate-Control) governs the gateway's cache instead of
 * Cache-Control and Expires, stops at the gateway unless the route passes it
 * on, and never overrides SPEC §6 (private, no-store). Real origin, through
 * the gateway, on the memory store and on the shared Redis. The origin's
 * answer headers come from the request's query (h=name:value, repeatable).
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { cacheSuites } from "./cache-harness.js";

let n = 0;

/** A fresh path whose answer carries `headers`. */
const path = (base: string, headers: Record<string, string>) =>
  `${base}/t${n++}?${Object.entries(headers)
    .map(([k, v]) => `h=${encodeURIComponent(`${k}:${v}`)}`)
    .join("&")}`;

cacheSuites(
  "cache targeted fields",
  {
    origin: (req, res, up) => {
      const u = new URL(req.url ?? "/", "http://x");
      const headers: Record<string, string> = { "content-type": "text/plain" };
      for (const h of u.searchParams.getAll("h")) {
        const i = h.indexOf(":");
        headers[h.slice(0, i)] = h.slice(i + 1);
      }
      res.writeHead(200, headers);
      res.end(`#${up.hits}`);
    },
    routes: [
      {
        name: "surrogate",
        path: "/sur",
        cache: { ttl: "1h", targeted: ["surrogate-control", "cdn-cache-control"] },
      },
      { name: "passing", path: "/pass", cache: { ttl: "1h", passTargeted: true } },
      { name: "api", path: "/cdn", cache: { ttl: "1h" } },
    ],
  },
  ({ get }) => {
    const twice = async (p: string) => {
      const first = await get(p);
      const second = await get(p);
      return [first, second];
    };

    test("CDN-Cache-Control governs instead of Cache-Control and Expires; clients see neither it nor a change", async () => {
      const [miss, hit] = await twice(
        path("/cdn", { "cache-control": "max-age=0", "cdn-cache-control": "max-age=60" }),
      );
      assert.deepEqual([miss.headers["x-cache"], hit.headers["x-cache"]], ["MISS", "HIT"]);
      for (const r of [miss, hit]) {
        assert.equal(r.headers["cdn-cache-control"], undefined, "it stops at the gateway");
        assert.equal(r.headers["cache-control"], "max-age=0", "the client's Cache-Control is the origin's");
      }
      const [, past] = await twice(
        path("/cdn", {
          expires: new Date(Date.now() - 60_000).toUTCString(),
          "cdn-cache-control": "max-age=60",
        }),
      );
      assert.equal(past.headers["x-cache"], "HIT", "Expires is ignored under a targeted field");
      const [, none] = await twice(
        path("/cdn", { "cache-control": "max-age=60", "cdn-cache-control": "no-store" }),
      );
      assert.equal(none.headers["x-cache"], "MISS", "CDN-Cache-Control: no-store keeps it out");
    });

    test("Cache-Control private or no-store still keep a response out (SPEC §6)", async () => {
      for (const cc of ["private", "no-store"]) {
        const [, second] = await twice(
          path("/cdn", { "cache-control": cc, "cdn-cache-control": "max-age=60" }),
        );
        assert.equal(second.headers["x-cache"], "MISS", cc);
      }
    });

    test("Surrogate-Control only where the route opts in: max-age and no-store", async () => {
      const [, opted] = await twice(
        path("/sur", { "cache-control": "no-cache", "surrogate-control": "max-age=60, content=ESI/1.0" }),
      );
      assert.equal(opted.headers["x-cache"], "HIT");
      assert.equal(opted.headers["surrogate-control"], undefined, "stopped at the gateway");
      const [, first] = await twice(
        path("/sur", { "surrogate-control": "max-age=60", "cdn-cache-control": "no-store" }),
      );
      assert.equal(first.headers["x-cache"], "HIT", "the first field of the route's list wins");
      const [, noStore] = await twice(
        path("/sur", { "cache-control": "max-age=60", "surrogate-control": "no-store" }),
      );
      assert.equal(noStore.headers["x-cache"], "MISS");
      const [, ignored] = await twice(
        path("/cdn", { "cache-control": "max-age=0", "surrogate-control": "max-age=60" }),
      );
      assert.equal(ignored.headers["x-cache"], "MISS", "a route that does not list it ignores it");
      assert.equal(ignored.headers["surrogate-control"], "max-age=60", "and passes it on untouched");
    });

    test("passTargeted: the field reaches clients, on misses and hits", async () => {
      const [miss, hit] = await twice(
        path("/pass", { "cache-control": "max-age=0", "cdn-cache-control": "max-age=60" }),
      );
      assert.deepEqual([miss.headers["x-cache"], hit.headers["x-cache"]], ["MISS", "HIT"]);
      assert.deepEqual(
        [miss.headers["cdn-cache-control"], hit.headers["cdn-cache-control"]],
        ["max-age=60", "max-age=60"],
      );
    });
  },
);
