/**
 * Freshness read by the letter (RFC 9111 §4.2, §5.2, §5.3; RFC 9110 §5.6.7;
 * RFC 5861; issue 12): Expires in the three HTTP-date formats, invalid
 * Expires or Date as already expired, invalid or conflicting max-age as stale,
 * and the upstream's own stale-if-error / stale-while-revalidate. Real origin,
 * through the gateway, on the memory store and on the shared Redis. A response
 * without validators that is stored fresh is a HIT on the next request; one
 * that is stale is asked again (MISS).
 */
import assert from "node:assert/strict";
import { once } from "node:events";
import type { IncomingMessage, ServerResponse } from "node:http";
import { after, before, test } from "node:test";
import { within } from "../store/redis-helpers.js";
import { cacheSuites } from "./cache-harness.js";

type Handler = (req: IncomingMessage, res: ServerResponse, n: number) => void;
const handlers = new Map<string, Handler>();
const counts = new Map<string, number>();
let n = 0;
const fresh = () => `/f/t${n++}`;

// Dates parsed as local time would be hours off here (UTC+5): the gateway must read them as UTC.
const tzBefore = process.env.TZ;
before(() => {
  process.env.TZ = "Etc/GMT-5";
});
after(() => {
  process.env.TZ = tzBefore;
});

function answer(path: string, headers: Record<string, string>) {
  handlers.set(path, (_req, res, k) => {
    res.writeHead(200, { "content-type": "text/plain", ...headers });
    res.end(`body #${k}`);
  });
}

const DAY = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"];
const MON = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
const pad = (x: number) => String(x).padStart(2, "0");
const clock = (d: Date) => `${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}:${pad(d.getUTCSeconds())}`;
const rfc850 = (d: Date, yy = pad(d.getUTCFullYear() % 100)) =>
  `${DAY[d.getUTCDay()]}, ${pad(d.getUTCDate())}-${MON[d.getUTCMonth()]}-${yy} ${clock(d)} GMT`;
const asctime = (d: Date) =>
  `${DAY[d.getUTCDay()].slice(0, 3)} ${MON[d.getUTCMonth()]} ${String(d.getUTCDate()).padStart(2, " ")} ${clock(d)} ${d.getUTCFullYear()}`;

cacheSuites(
  "cache freshness fields",
  {
    origin: (req, res, up) => {
      const path = (req.url ?? "/").split("?")[0];
      const k = (counts.get(path) ?? 0) + 1;
      counts.set(path, k);
      handlers.get(path)?.(req, res, k);
      up.server.emit("answered", path, k);
    },
    routes: [{ name: "api", path: "/f", cache: { ttl: "1h" } }],
  },
  (gw) => {
    const { get } = gw;
    /** X-Cache of the second request for a response carrying `headers`. */
    const second = async (headers: Record<string, string>) => {
      const p = fresh();
      answer(p, headers);
      await get(p);
      return (await get(p)).headers["x-cache"];
    };

    test("Expires in IMF-fixdate, RFC 850 and asctime, all UTC: future is fresh, past is stale", async () => {
      const ahead = new Date(Date.now() + 2 * 3600_000);
      const behind = new Date(Date.now() - 2 * 3600_000);
      for (const [name, f] of [
        ["IMF-fixdate", (d: Date) => d.toUTCString()],
        ["RFC 850", (d: Date) => rfc850(d)],
        ["asctime", asctime],
      ] as const) {
        assert.equal(await second({ expires: f(ahead) }), "HIT", `${name} ${f(ahead)} is ahead`);
        assert.equal(await second({ expires: f(behind) }), "MISS", `${name} ${f(behind)} is past`);
      }
    });

    test("RFC 850 two-digit years: more than 50 years ahead means the past century", async () => {
      const d = new Date();
      const yy = (d.getUTCFullYear() + 49) % 100;
      assert.equal(await second({ expires: rfc850(d, pad(yy)) }), "HIT", "49 years ahead is ahead");
      assert.equal(
        await second({ expires: rfc850(d, pad((yy + 2) % 100)) }),
        "MISS",
        "51 years ahead is past",
      );
    });

    test("an invalid Expires, or an invalid Date beside a valid Expires, is already expired", async () => {
      const ahead = new Date(Date.now() + 2 * 3600_000).toUTCString();
      for (const expires of ["0", "-1", "tomorrow", "Mon, 32 Dec 2099 00:00:00 GMT", `${ahead}, ${ahead}`])
        assert.equal(await second({ expires }), "MISS", `Expires: ${expires}`);
      assert.equal(await second({ expires: ahead, date: "yesterday-ish" }), "MISS", "invalid Date");
      assert.equal(
        await second({ expires: ahead, date: new Date().toUTCString() }),
        "HIT",
        "control: valid Date",
      );
    });

    test("max-age: an invalid value, spaces around '=', or two different values are stale", async () => {
      for (const cc of [
        "max-age=abc",
        "max-age=1.5",
        "max-age = 60",
        "max-age =60",
        "max-age",
        "max-age=60, max-age=30",
        "s-maxage=x, max-age=60",
      ])
        assert.equal(await second({ "cache-control": cc }), "MISS", `Cache-Control: ${cc}`);
      for (const cc of [
        "max-age=60",
        'max-age="60"',
        "MAX-AGE=60",
        "max-age=60, max-age=60",
        "max-age=99999999999",
      ])
        assert.equal(await second({ "cache-control": cc }), "HIT", `Cache-Control: ${cc}`);
      // No freshness information at all: the route's ttl applies (SPEC §2).
      assert.equal(await second({}), "HIT", "no freshness: the route ttl");
    });

    test("the upstream's stale-if-error serves STALE on 5xx and on a reset, though the route sets none", async () => {
      for (const failure of ["500", "503", "reset"]) {
        const p = fresh();
        handlers.set(p, (_req, res, k) => {
          if (k === 1) {
            res.writeHead(200, {
              "content-type": "text/plain",
              "cache-control": "max-age=0, stale-if-error=60",
            });
            res.end("good");
          } else if (failure === "reset") res.socket?.destroy();
          else {
            res.writeHead(Number(failure));
            res.end("bad");
          }
        });
        await get(p);
        const r = await get(p);
        assert.deepEqual([r.status, r.body, r.headers["x-cache"]], [200, "good", "STALE"], failure);
      }
      // Control: without the directive the failure reaches the client.
      const p = fresh();
      handlers.set(p, (_req, res, k) => {
        res.writeHead(k === 1 ? 200 : 500, { "cache-control": "max-age=0" });
        res.end(k === 1 ? "good" : "bad");
      });
      await get(p);
      assert.equal((await get(p)).status, 500);
    });

    test("the upstream's stale-while-revalidate serves STALE at once and refreshes in the background", async () => {
      const p = fresh();
      answer(p, { "cache-control": "max-age=0, stale-while-revalidate=60" });
      assert.equal((await get(p)).body, "body #1");
      const refreshed = once(gw.up.server, "answered");
      const r = await get(p);
      assert.deepEqual([r.body, r.headers["x-cache"]], ["body #1", "STALE"]);
      assert.deepEqual(await within(3000, refreshed, "the background refresh"), [p, 2]);
      // The refresh's answer is stored once its body has been read: bounded wait for it.
      let body = "";
      for (let i = 0; i < 50 && body !== "body #2"; i++) {
        body = (await get(p)).body;
        if (body !== "body #2") await new Promise((ok) => setTimeout(ok, 20));
      }
      assert.equal(body, "body #2");
    });
  },
);
