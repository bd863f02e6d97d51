/**
 * Range requests answered from a complete stored 200 (RFC 9110 §14, §13.1.5;
 * issue 12), and an upstream 206 never stored as if complete. Real origin,
 * through the gateway, on the memory store (where the hit lane must leave
 * Range requests to Fastify) and on the shared Redis.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { cacheSuites } from "./cache-harness.js";

const BODY = "0123456789";
const LM = new Date(Date.now() - 3_600_000).toUTCString();

let n = 0;
const fresh = (q = "") => `/r/t${n++}${q}`;
const asked: { url: string; range?: string }[] = [];

cacheSuites(
  "cache ranges",
  {
    origin: (req, res) => {
      const range = req.headers.range;
      asked.push({ url: req.url ?? "", range });
      const etag = req.url?.includes("weak") ? 'W/"w1"' : '"s1"';
      const base = { "content-type": "text/plain", etag, "last-modified": LM, "cache-control": "max-age=60" };
      const m = /^bytes=(\d+)-(\d+)$/.exec(range ?? "");
      if (m) {
        const [a, b] = [Number(m[1]), Number(m[2])];
        res.writeHead(206, { ...base, "content-range": `bytes ${a}-${b}/${BODY.length}` });
        res.end(BODY.slice(a, b + 1));
        return;
      }
      res.writeHead(200, base);
      res.end(BODY);
    },
    routes: [{ name: "api", path: "/r", cache: { ttl: "1m" } }],
  },
  ({ get }) => {
    const stored = async (p: string) => {
      await get(p);
      assert.equal((await get(p)).headers["x-cache"], "HIT", "stored before the range requests");
    };

    test("one byte range from a stored 200: 206 with Content-Range (first-last, open-ended, suffix)", async () => {
      const p = fresh();
      await stored(p);
      const before = asked.length;
      for (const [range, body, cr] of [
        ["bytes=2-5", "2345", "bytes 2-5/10"],
        ["bytes=7-", "789", "bytes 7-9/10"],
        ["bytes=-3", "789", "bytes 7-9/10"],
        ["bytes=8-100", "89", "bytes 8-9/10"],
        ["bytes=0-0", "0", "bytes 0-0/10"],
      ]) {
        const r = await get(p, { range });
        assert.deepEqual(
          [r.status, r.body, r.headers["content-range"], r.headers["content-length"], r.headers["x-cache"]],
          [206, body, cr, String(body.length), "HIT"],
          range,
        );
        assert.equal(r.headers.etag, '"s1"', "the stored fields come along");
      }
      assert.equal(asked.length, before, "all answered from the cache");
    });

    test("several ranges, a non-bytes unit or a bad Range get the full 200; none satisfiable is a 416", async () => {
      const p = fresh();
      await stored(p);
      for (const range of ["bytes=0-1,4-5", "items=0-1", "bytes=x-y", "bytes"]) {
        const r = await get(p, { range });
        assert.deepEqual([r.status, r.body, r.headers["content-range"]], [200, BODY, undefined], range);
      }
      for (const range of ["bytes=20-30", "bytes=10-"]) {
        const r = await get(p, { range });
        assert.deepEqual([r.status, r.body, r.headers["content-range"]], [416, "", "bytes */10"], range);
      }
      await get(p, {}, "HEAD"); // HEAD has its own entry
      const head = await get(p, { range: "bytes=2-5" }, "HEAD");
      assert.deepEqual(
        [head.status, head.headers["content-range"], head.headers["x-cache"]],
        [200, undefined, "HIT"],
        "HEAD ignores Range",
      );
    });

    test("If-Range: the stored strong ETag or exact Last-Modified lets the range through; else the full 200", async () => {
      const p = fresh();
      await stored(p);
      const ranged = (ifRange: string) => get(p, { range: "bytes=2-5", "if-range": ifRange });
      assert.equal((await ranged('"s1"')).status, 206, "same strong ETag");
      assert.equal((await ranged(LM)).status, 206, "same Last-Modified");
      for (const other of ['"s2"', 'W/"s1"', new Date(Date.now() - 60_000).toUTCString(), "garbage"]) {
        const r = await ranged(other);
        assert.deepEqual([r.status, r.body], [200, BODY], `If-Range: ${other}`);
      }
      const weak = fresh("?weak");
      await stored(weak);
      const r = await get(weak, { range: "bytes=2-5", "if-range": 'W/"w1"' });
      assert.deepEqual([r.status, r.body], [200, BODY], "a weak ETag never validates a range");
    });

    test("an upstream 206 passes through and is never stored as if complete", async () => {
      const p = fresh();
      const partial = await get(p, { range: "bytes=1-3" });
      assert.deepEqual(
        [partial.status, partial.body, partial.headers["content-range"]],
        [206, "123", "bytes 1-3/10"],
      );
      assert.equal(asked.at(-1)?.range, "bytes=1-3", "the miss asked the upstream with the Range");
      const full = await get(p);
      assert.deepEqual(
        [full.status, full.body, full.headers["x-cache"]],
        [200, BODY, "MISS"],
        "nothing was stored",
      );
      assert.equal((await get(p)).headers["x-cache"], "HIT");
    });
  },
);
