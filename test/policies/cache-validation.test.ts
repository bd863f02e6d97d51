/**
 * Validation by the letter (RFC 9111 §4.3.3–4.3.4, issue 12): when a stored
 * response is stale the gateway asks the origin conditionally; a 304 refreshes
 * the stored response only when its validators select it, and then updates
 * the stored header fields per §3.2. Real origin, through the gateway, on the
 * memory store and on the shared Redis.
 */
import assert from "node:assert/strict";
import type { IncomingMessage, ServerResponse } from "node:http";
import { test } from "node:test";
import { cacheSuites } from "./cache-harness.js";

type Handler = (req: IncomingMessage, res: ServerResponse, n: number) => void;
const handlers = new Map<string, Handler>();
const counts = new Map<string, number>();
const seen: IncomingMessage[] = [];
let n = 0;
const fresh = () => `/v/t${n++}`;

/**
 * An origin whose 200 carries `stored` (stale at once: max-age=0) and which answers a
 * conditional request with a 304 carrying `notModified`.
 */
function origin(path: string, stored: Record<string, string>, notModified: Record<string, string>) {
  handlers.set(path, (req, res, k) => {
    if (req.headers["if-none-match"] !== undefined || req.headers["if-modified-since"] !== undefined) {
      res.writeHead(304, notModified);
      res.end();
      return;
    }
    res.writeHead(200, { "content-type": "text/plain", "cache-control": "max-age=0", ...stored });
    res.end(`body #${k}`);
  });
}

cacheSuites(
  "cache validation",
  {
    origin: (req, res) => {
      const path = (req.url ?? "/").split("?")[0];
      const k = (counts.get(path) ?? 0) + 1;
      counts.set(path, k);
      seen.push(req);
      handlers.get(path)?.(req, res, k);
    },
    routes: [{ name: "api", path: "/v", cache: { ttl: "1m" } }],
  },
  ({ get }) => {
    test("a 304 whose ETag matches refreshes the entry: its fields added or replaced (§3.2), the body kept", async () => {
      const p = fresh();
      origin(
        p,
        { etag: '"v1"', "x-a": "1", "x-kept": "k" },
        { etag: '"v1"', "cache-control": "max-age=60", "x-a": "2", "x-new": "yes" },
      );
      const first = await get(p);
      const second = await get(p);
      assert.equal(seen.at(-1)?.headers["if-none-match"], '"v1"', "the gateway asked conditionally");
      assert.deepEqual([second.status, second.body, second.headers["x-cache"]], [200, first.body, "HIT"]);
      assert.equal(second.headers["x-a"], "2", "a field of the 304 replaces the stored one");
      assert.equal(second.headers["x-new"], "yes", "a field only the 304 has is added");
      assert.equal(second.headers["x-kept"], "k", "a field the 304 lacks is kept");
      assert.equal(
        second.headers["content-length"],
        String(first.body.length),
        "Content-Length is the body's",
      );
      const third = await get(p);
      assert.deepEqual([third.body, third.headers["x-cache"]], [first.body, "HIT"]);
      assert.equal(counts.get(p), 2, "the 304's max-age=60 now makes the entry fresh: not asked again");
    });

    test("a 304 with another strong ETag refreshes nothing: the next request asks again", async () => {
      const p = fresh();
      origin(p, { etag: '"v1"' }, { etag: '"v2"', "cache-control": "max-age=60", "x-new": "yes" });
      const first = await get(p);
      const second = await get(p);
      assert.deepEqual([second.status, second.body, second.headers["x-cache"]], [200, first.body, "STALE"]);
      assert.equal(second.headers["x-new"], undefined, "the mismatched 304's fields are not taken");
      const third = await get(p);
      assert.equal(counts.get(p), 3, "still stale: revalidated again");
      assert.equal(third.headers["x-cache"], "STALE");
      assert.equal(third.headers["x-new"], undefined);
    });

    test("weak ETags match by weak comparison; Last-Modified must be the stored one", async () => {
      const weak = fresh();
      origin(weak, { etag: 'W/"w1"' }, { etag: 'W/"w1"', "cache-control": "max-age=60" });
      await get(weak);
      assert.equal((await get(weak)).headers["x-cache"], "HIT");
      assert.equal((await get(weak)).headers["x-cache"], "HIT");
      assert.equal(counts.get(weak), 2, "refreshed by the weak match");

      const lm = new Date(Date.now() - 3_600_000).toUTCString();
      const same = fresh();
      origin(same, { "last-modified": lm }, { "last-modified": lm, "cache-control": "max-age=60" });
      await get(same);
      assert.equal(
        seen.at(-1)?.headers["if-modified-since"],
        undefined,
        "the first request is unconditional",
      );
      assert.equal((await get(same)).headers["x-cache"], "HIT");
      assert.equal(seen.at(-1)?.headers["if-modified-since"], lm, "asked with the stored Last-Modified");
      await get(same);
      assert.equal(counts.get(same), 2, "refreshed: the same Last-Modified");

      const other = fresh();
      const newer = new Date(Date.now() - 60_000).toUTCString();
      origin(other, { "last-modified": lm }, { "last-modified": newer, "cache-control": "max-age=60" });
      await get(other);
      assert.equal((await get(other)).headers["x-cache"], "STALE");
      await get(other);
      assert.equal(counts.get(other), 3, "another Last-Modified refreshes nothing");
    });
  },
);
