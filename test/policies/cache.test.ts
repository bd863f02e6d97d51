import assert from "node:assert/strict";
import { EventEmitter, once } from "node:events";
import http, { type IncomingMessage, type ServerResponse } from "node:http";
import { after, before, describe, mock, test } from "node:test";
import { SignJWT } from "jose";
import { purgeCache } from "../../src/cache/purge.js";
import { storeOf } from "../../src/store/index.js";
import { type Backend, backend, gateway, type Running, request } from "../helpers/index.js";
import { within } from "../store/redis-helpers.js";

const SECRET = "cache-test-secret-0123456789abcdefghij";
const token = (sub: string | undefined, claims: Record<string, unknown> = {}) =>
  new SignJWT({ sub, ...claims })
    .setProtectedHeader({ alg: "HS256" })
    .setExpirationTime("5m")
    .sign(new TextEncoder().encode(SECRET));

type Handler = (req: IncomingMessage, res: ServerResponse, n: number) => void;

/**
 * One upstream whose behaviour per path is set by each test; it counts the
 * requests per path and announces each one (so tests await events, not time).
 */
class Upstream extends EventEmitter {
  b!: Backend;
  handlers = new Map<string, Handler>();
  hits = new Map<string, number>();
  seen: IncomingMessage[] = [];
  async start() {
    this.b = await backend("up", (req, res) => {
      const path = (req.url ?? "/").split("?")[0];
      const n = (this.hits.get(path) ?? 0) + 1;
      this.hits.set(path, n);
      this.seen.push(req);
      const h = this.handlers.get(path) ?? ((_q, s, k) => s.end(`body ${path} #${k}`));
      h(req, res, n);
      this.emit("hit", path, n);
    });
  }
  on200(path: string, headers: Record<string, string | string[]> = {}, body?: (n: number) => string) {
    this.handlers.set(path, (_req, res, n) => {
      res.writeHead(200, { "content-type": "text/plain", ...headers });
      res.end(body ? body(n) : `${path} v${n}`);
    });
  }
  count(path: string) {
    return this.hits.get(path) ?? 0;
  }
}

/** A promise the test resolves itself: upstream handlers wait on it to hold their answers. */
function gated(): { gate: Promise<void>; release: () => void } {
  let release!: () => void;
  const gate = new Promise<void>((r) => {
    release = r;
  });
  return { gate, release };
}

/**
 * Resolves once the cache has looked up `path` `n` times and each lookup is answered: those
 * requests are past their lookup — the first leads the miss, the others wait on it. The memory
 * store answers without I/O, so by the next macrotask each one has reached its await.
 */
function lookups(path: string, n: number): Promise<void> {
  const store = storeOf(gw.gw.generation);
  assert.ok(store, "the gateway's store");
  const get = store.get;
  let seen = 0;
  return new Promise((ok) => {
    store.get = async function countedGet(this: typeof store, key: string) {
      const v = await get.call(this, key);
      if (key.includes(`${path} `) && ++seen === n) {
        store.get = get;
        setImmediate(ok);
      }
      return v;
    };
  });
}

/** Run `fn` with Date frozen at now; `tick` moves it on (the cache and memory store read Date.now()). */
async function withClock(fn: (tick: (ms: number) => void) => Promise<void>): Promise<void> {
  mock.timers.enable({ apis: ["Date"], now: Date.now() });
  try {
    await fn((ms) => mock.timers.tick(ms));
  } finally {
    mock.timers.reset();
  }
}

let up: Upstream;
let gw: Running;
let n = 0;
/** A fresh path per test, so tests never see each other's entries. */
const fresh = (p = "") => `/c/t${n++}${p}`;

const routes = () => `
services:
  up: { targets: [${up.b.url}] }
jwt:
  internal: { secret: ${SECRET}, algorithms: [HS256] }
routes:
  - name: short
    match: { path: /short }
    service: up
    cache: { ttl: 300ms }
  - name: swr
    match: { path: /swr }
    service: up
    cache: { ttl: 200ms, staleWhileRevalidate: 1m }
  - name: sie
    match: { path: /sie }
    service: up
    cache: { ttl: 200ms, staleIfError: 1m }
  - name: small
    match: { path: /small }
    service: up
    cache: { ttl: 1m, maxEntrySize: 2kb }
  - name: per-user
    match: { path: /me }
    service: up
    auth: { jwt: internal }
    cache: { ttl: 1m, vary: ["jwt:sub"] }
  - name: authed
    match: { path: /authed }
    service: up
    auth: { jwt: internal }
    cache: { ttl: 1m }
  - name: lang
    match: { path: /lang }
    service: up
    cache: { ttl: 1m, vary: [accept-language] }
  - name: nocoalesce
    match: { path: /nc }
    service: up
    cache: { ttl: 1m, coalesce: false }
  - name: cors
    match: { path: /cors }
    service: up
    cors: { origins: ["https://a.example", "https://b.example"] }
    cache: { ttl: 1m }
  - name: cached
    match: { path: /c }
    service: up
    cache: { ttl: 1m }
`;

before(async () => {
  up = new Upstream();
  await up.start();
  gw = await gateway(routes());
});
after(async () => {
  await gw.close();
  await up.b.close();
});

const get = (path: string, headers: Record<string, string> = {}, method = "GET") =>
  within(3000, request(gw.url, { path, headers, method }));

describe("cache: hit, miss, bypass", () => {
  test("MISS then HIT with the same body, an Age, and one upstream request", async () => {
    const p = fresh();
    up.on200(p, { etag: '"a"', "x-custom": "1" });
    const a = await get(p);
    const b = await get(p);
    assert.equal(a.headers["x-cache"], "MISS");
    assert.equal(b.headers["x-cache"], "HIT");
    assert.equal(b.body, a.body);
    assert.equal(b.headers["x-custom"], "1");
    assert.equal(b.headers["content-type"], "text/plain");
    assert.match(String(b.headers.age), /^\d+$/);
    assert.notEqual(b.headers["x-request-id"], a.headers["x-request-id"], "each hit has its own request id");
    assert.equal(up.count(p), 1);
  });

  test("the key: query and host (case-insensitive, port ignored) separate entries; method too", async () => {
    const p = fresh();
    up.on200(p);
    await get(`${p}?a=1`, { host: "Shop.Example:8080" });
    const again = await get(`${p}?a=1`, { host: "shop.example" });
    assert.equal(again.headers["x-cache"], "HIT");
    assert.equal((await get(`${p}?a=2`, { host: "shop.example" })).headers["x-cache"], "MISS");
    assert.equal((await get(`${p}?a=1`, { host: "other.example" })).headers["x-cache"], "MISS");
    const head = await get(`${p}?a=1`, { host: "shop.example" }, "HEAD");
    assert.equal(head.headers["x-cache"], "MISS", "HEAD has its own entry");
    assert.equal(up.count(p), 4);
  });

  test("the normalised path is the key: /c/x/../x and //c/x hit /c/x", async () => {
    const p = fresh();
    up.on200(p);
    await get(p);
    const seg = p.split("/").pop();
    assert.equal((await get(`${p}/../${seg}`)).headers["x-cache"], "HIT");
    assert.equal((await get(`/${p}`)).headers["x-cache"], "HIT");
    assert.equal(up.count(p), 1);
  });

  test("HEAD: MISS then HIT, headers only, Content-Length kept", async () => {
    const p = fresh();
    up.on200(p, { "content-length": "10" }, () => "0123456789");
    const a = await get(p, {}, "HEAD");
    const b = await get(p, {}, "HEAD");
    assert.deepEqual([a.headers["x-cache"], b.headers["x-cache"]], ["MISS", "HIT"]);
    assert.equal(b.body, "");
    assert.equal(b.headers["content-length"], "10");
    assert.equal(up.count(p), 1);
  });

  test("methods not cached, and requests with Authorization, are BYPASS and never stored", async () => {
    const p = fresh();
    up.on200(p);
    const post = await within(3000, request(gw.url, { path: p, method: "POST", body: "x" }));
    assert.equal(post.headers["x-cache"], "BYPASS");
    const authed = await get(p, { authorization: "Bearer whatever" });
    assert.equal(authed.headers["x-cache"], "BYPASS");
    assert.equal((await get(p)).headers["x-cache"], "MISS", "neither was stored");
    assert.equal(up.count(p), 3);
  });

  for (const [name, headers] of [
    ["Cache-Control: private", { "cache-control": "private, max-age=60" }],
    ["Cache-Control: no-store", { "cache-control": "no-store" }],
    ["Set-Cookie", { "set-cookie": "session=abc", "cache-control": "public, max-age=60" }],
    ["Vary: *", { vary: "*" }],
  ] as const) {
    test(`a response with ${name} is never stored`, async () => {
      const p = fresh();
      up.on200(p, headers);
      const a = await get(p);
      const b = await get(p);
      assert.deepEqual([a.headers["x-cache"], b.headers["x-cache"]], ["MISS", "MISS"]);
      assert.equal(up.count(p), 2);
    });
  }

  test("non-cacheable statuses pass through unstored; a 404 is cached by default (RFC 9111)", async () => {
    const p = fresh();
    up.handlers.set(p, (_q, res, k) => {
      res.writeHead(k === 1 ? 500 : 404);
      res.end(`s${k}`);
    });
    assert.equal((await get(p)).status, 500);
    assert.equal((await get(p)).status, 404);
    const third = await get(p);
    assert.deepEqual([third.status, third.headers["x-cache"], third.body], [404, "HIT", "s2"]);
  });

  test("upstream responses that vary: different requests, different entries", async () => {
    const p = fresh();
    up.handlers.set(p, (req, res) => {
      res.writeHead(200, { vary: "X-Variant", "content-type": "text/plain" });
      res.end(`variant ${req.headers["x-variant"] ?? "none"}`);
    });
    assert.equal((await get(p, { "x-variant": "a" })).body, "variant a");
    assert.equal((await get(p, { "x-variant": "b" })).body, "variant b");
    const a = await get(p, { "x-variant": "a" });
    const b = await get(p, { "x-variant": "b" });
    assert.deepEqual([a.body, a.headers["x-cache"]], ["variant a", "HIT"]);
    assert.deepEqual([b.body, b.headers["x-cache"]], ["variant b", "HIT"]);
    assert.equal(up.count(p), 2);
  });

  test("the route's vary headers are in the key", async () => {
    const p = `/lang${fresh()}`;
    up.handlers.set(p, (req, res) => res.end(`lang ${req.headers["accept-language"]}`));
    assert.equal((await get(p, { "accept-language": "en" })).body, "lang en");
    const fr = await get(p, { "accept-language": "fr" });
    assert.deepEqual([fr.body, fr.headers["x-cache"]], ["lang fr", "MISS"]);
    const en = await get(p, { "accept-language": "en" });
    assert.deepEqual([en.body, en.headers["x-cache"]], ["lang en", "HIT"]);
  });

  test("Authorization is stored per JWT subject when the route varies on jwt:sub", async () => {
    const p = `/me${fresh()}`;
    up.handlers.set(p, (req, res) => res.end(`hello ${req.headers.authorization?.slice(-8)}`));
    const alice = await token("alice");
    const bob = await token("bob");
    const a1 = await get(p, { authorization: `Bearer ${alice}` });
    const a2 = await get(p, { authorization: `Bearer ${alice}` });
    const b1 = await get(p, { authorization: `Bearer ${bob}` });
    assert.deepEqual(
      [a1.headers["x-cache"], a2.headers["x-cache"], b1.headers["x-cache"]],
      ["MISS", "HIT", "MISS"],
    );
    assert.equal(a2.body, a1.body);
    assert.notEqual(b1.body, a1.body, "bob never gets alice's response");
    assert.equal((await get(p)).status, 401, "and without a token, auth refuses before the cache");
  });
});

describe("cache: with other policies", () => {
  test("cors: a stored response never carries another origin's grant", async () => {
    const p = `/cors${fresh()}`;
    up.on200(p);
    const a = await get(p, { origin: "https://a.example" });
    assert.equal(a.headers["access-control-allow-origin"], "https://a.example");
    const b = await get(p, { origin: "https://b.example" });
    assert.equal(b.headers["access-control-allow-origin"], "https://b.example");
    const evil = await get(p, { origin: "https://evil.example" });
    assert.equal(evil.headers["access-control-allow-origin"], undefined);
    const none = await get(p);
    assert.equal(none.headers["access-control-allow-origin"], undefined);
    const again = await get(p, { origin: "https://a.example" });
    assert.deepEqual(
      [again.headers["x-cache"], again.headers["access-control-allow-origin"]],
      ["HIT", "https://a.example"],
    );
  });

  test("a client that aborts the first of coalesced misses does not strand the others", async () => {
    const p = fresh();
    const held: ServerResponse[] = [];
    up.handlers.set(p, (_q, res, k) => {
      if (k === 1)
        held.push(res); // never answered while the first client waits
      else res.end(`second ${k}`);
    });
    const first = once(up, "hit");
    const looked = lookups(p, 2);
    const aborter = new AbortController();
    const leader = fetch(`${gw.url}${p}`, { signal: aborter.signal }).catch((e: Error) => e);
    await first;
    const follower = get(p);
    // Once the follower has looked up the key it is waiting on the leader; the leader's client goes away.
    await looked;
    aborter.abort();
    await leader;
    const r = await follower;
    assert.equal(r.body, "second 2");
    for (const res of held) res.destroy();
  });
});

describe("cache: freshness", () => {
  test("the route ttl is the default lifetime", async () => {
    const p = `/short${fresh()}`;
    up.on200(p);
    // The clock stands still between the first two requests, however slow the machine is.
    await withClock(async (tick) => {
      await get(p);
      assert.equal((await get(p)).headers["x-cache"], "HIT");
      tick(299);
      assert.equal((await get(p)).headers["x-cache"], "HIT", "fresh until the ttl (300ms)");
      tick(2);
      assert.equal((await get(p)).headers["x-cache"], "MISS");
    });
  });

  test("the route ttl is the upper bound of the upstream's max-age", async () => {
    const p = `/short${fresh()}`;
    up.on200(p, { "cache-control": "max-age=3600" });
    await get(p);
    await new Promise((r) => setTimeout(r, 350));
    assert.equal((await get(p)).headers["x-cache"], "MISS");
  });

  test("the upstream's max-age, s-maxage and Age shorten the lifetime", async () => {
    const maxAge0 = fresh();
    up.on200(maxAge0, { "cache-control": "max-age=0" });
    await get(maxAge0);
    assert.equal((await get(maxAge0)).headers["x-cache"], "MISS");
    const sMaxAge = fresh();
    up.on200(sMaxAge, { "cache-control": "max-age=600, s-maxage=0" });
    await get(sMaxAge);
    assert.equal((await get(sMaxAge)).headers["x-cache"], "MISS", "s-maxage wins in a shared cache");
    const aged = fresh();
    up.on200(aged, { "cache-control": "max-age=100", age: "40" });
    await get(aged);
    const hit = await get(aged);
    assert.equal(hit.headers["x-cache"], "HIT");
    assert.ok(Number(hit.headers.age) >= 40, `Age ${hit.headers.age} counts the upstream's Age`);
    const old = fresh();
    up.on200(old, { "cache-control": "max-age=100", age: "100" });
    await get(old);
    assert.equal((await get(old)).headers["x-cache"], "MISS", "already at max-age when it arrived");
  });

  test("conditional requests are answered 304 from the cache (ETag and Last-Modified)", async () => {
    const p = fresh();
    const lm = new Date(Date.now() - 3_600_000).toUTCString();
    up.on200(p, { etag: 'W/"v1"', "last-modified": lm, "cache-control": "max-age=60" });
    await get(p);
    const inm = await get(p, { "if-none-match": '"other", "v1"' });
    assert.deepEqual([inm.status, inm.body, inm.headers["x-cache"]], [304, "", "HIT"]);
    assert.equal(inm.headers.etag, 'W/"v1"');
    assert.equal(inm.headers["content-type"], undefined, "a 304 carries no representation headers");
    const ims = await get(p, { "if-modified-since": new Date().toUTCString() });
    assert.equal(ims.status, 304);
    const older = await get(p, { "if-modified-since": new Date(Date.now() - 7_200_000).toUTCString() });
    assert.equal(older.status, 200);
    const mismatch = await get(p, { "if-none-match": '"v2"' });
    assert.equal(mismatch.status, 200);
    assert.equal(up.count(p), 1);
  });

  test("no-cache: stored, but revalidated every time; a 304 from the upstream serves the stored body", async () => {
    const p = fresh();
    up.handlers.set(p, (req, res, k) => {
      if (req.headers["if-none-match"] === '"n1"') {
        res.writeHead(304, { etag: '"n1"', "cache-control": "no-cache", "x-revalidated": String(k) });
        res.end();
        return;
      }
      res.writeHead(200, { etag: '"n1"', "cache-control": "no-cache", "content-type": "text/plain" });
      res.end("the body");
    });
    const first = await get(p);
    const second = await get(p);
    assert.equal(first.headers["x-cache"], "MISS");
    assert.deepEqual([second.status, second.body, second.headers["x-cache"]], [200, "the body", "HIT"]);
    assert.equal(second.headers["x-revalidated"], "2", "the 304's headers update the stored ones");
    assert.equal(up.seen.at(-1)?.headers["if-none-match"], '"n1"', "the gateway asked conditionally");
    assert.equal(up.count(p), 2);
  });
});

describe("cache: stale, coalescing, size", () => {
  test("staleWhileRevalidate: STALE at once, one background refresh, then the new body", async () => {
    const p = `/swr${fresh()}`;
    const { gate, release } = gated();
    up.handlers.set(p, (_q, res, k) => {
      const send = () => {
        res.writeHead(200, { "content-type": "text/plain" });
        res.end(`${p} v${k}`);
      };
      if (k === 1) send();
      else void gate.then(send); // the refresh is held upstream until the test releases it
    });
    assert.equal((await get(p)).body, `${p} v1`);
    await new Promise((r) => setTimeout(r, 250));
    const refreshing = once(up, "hit");
    const first = await get(p);
    assert.deepEqual([first.headers["x-cache"], first.body], ["STALE", `${p} v1`]);
    assert.ok(Number(first.headers.age) >= 0);
    await refreshing;
    const more = await Promise.all(Array.from({ length: 4 }, () => get(p)));
    for (const r of more) assert.deepEqual([r.headers["x-cache"], r.body], ["STALE", `${p} v1`]);
    assert.equal(up.count(p), 2, "five stale answers, one refresh");
    const refresh = up.seen.at(-1)!;
    assert.equal(refresh.headers["x-switchyard-cache-refresh"], undefined, "the refresh marker stays inside");
    release();
    // The refresh stores its answer when its response ends; ask until it is there (bounded).
    let next = await get(p);
    for (let i = 0; i < 100 && next.body !== `${p} v2`; i++) next = await get(p);
    assert.deepEqual([next.headers["x-cache"], next.body], ["HIT", `${p} v2`]);
    assert.equal(up.count(p), 2);
  });

  test("staleIfError: STALE when the upstream answers 5xx or cannot be reached", async () => {
    const p = `/sie${fresh()}`;
    up.handlers.set(p, (_q, res, k) => {
      if (k === 1) {
        res.writeHead(200, { "content-type": "text/plain", "x-v": "1" });
        res.end("good");
        return;
      }
      res.writeHead(503, { "content-type": "text/plain" });
      res.end("down");
    });
    assert.equal((await get(p)).body, "good");
    await new Promise((r) => setTimeout(r, 250));
    const r = await get(p);
    assert.deepEqual([r.status, r.body, r.headers["x-cache"], r.headers["x-v"]], [200, "good", "STALE", "1"]);
    assert.equal(up.count(p), 2, "the upstream was asked first");
    // Without staleIfError the same failure goes to the client.
    const q = `/short${fresh()}`;
    up.handlers.set(q, up.handlers.get(p)!);
    up.hits.set(q, 0);
    await get(q);
    await new Promise((r) => setTimeout(r, 350));
    assert.equal((await get(q)).status, 503);
  });

  test("staleIfError covers an unreachable upstream (gateway 502)", async () => {
    const dead = new Upstream();
    await dead.start();
    const g = await gateway(`
services:
  d: { targets: [${dead.b.url}] }
routes:
  - { name: sie, match: { path: / }, service: d, cache: { ttl: 200ms, staleIfError: 1m } }
`);
    try {
      dead.on200("/x");
      assert.equal((await within(3000, request(g.url, { path: "/x" }))).status, 200);
      await dead.b.close();
      await new Promise((r) => setTimeout(r, 250));
      const r = await within(3000, request(g.url, { path: "/x" }));
      assert.deepEqual([r.status, r.body, r.headers["x-cache"]], [200, "/x v1", "STALE"]);
      assert.equal(r.headers["content-type"], "text/plain", "the error's JSON headers are gone");
    } finally {
      await g.close();
    }
  });

  test("coalescing: 10 concurrent misses make one upstream request and all get its response", async () => {
    const p = fresh();
    const { gate, release } = gated();
    up.handlers.set(p, (_q, res, k) => {
      void gate.then(() => {
        res.writeHead(200, { "content-type": "text/plain" });
        res.end(`only ${k}`);
      });
    });
    const looked = lookups(p, 10);
    const all = Promise.all(Array.from({ length: 10 }, () => get(p)));
    // All ten have looked up the key while the first is held upstream: nine wait on it.
    await looked;
    assert.equal(up.count(p), 1, "one request upstream while ten are in flight");
    release();
    const replies = await all;
    assert.equal(up.count(p), 1);
    for (const r of replies) assert.equal(r.body, "only 1");
    const labels = replies.map((r) => r.headers["x-cache"]);
    assert.equal(labels.filter((l) => l === "MISS").length, 1);
    assert.equal(labels.filter((l) => l === "HIT").length, 9);
  });

  test("without coalesce, concurrent misses each go upstream", async () => {
    const p = `/nc${fresh()}`;
    const { gate, release } = gated();
    up.handlers.set(p, (_q, res, k) => void gate.then(() => res.end(`n ${k}`)));
    const hits: Promise<unknown>[] = [];
    let seen = 0;
    const allArrived = new Promise<void>((ok) =>
      up.on("hit", function onHit(path: string) {
        if (path === p && ++seen === 3) {
          up.off("hit", onHit);
          ok();
        }
      }),
    );
    for (let i = 0; i < 3; i++) hits.push(get(p));
    await allArrived;
    release();
    await Promise.all(hits);
    assert.equal(up.count(p), 3);
  });

  test("coalesced waiters go upstream themselves when the first answer is not storable", async () => {
    const p = fresh();
    const { gate, release } = gated();
    up.handlers.set(p, (_q, res, k) => {
      void gate.then(() => {
        res.writeHead(200, { "cache-control": "private" });
        res.end(`private ${k}`);
      });
    });
    const looked = lookups(p, 4);
    const all = Promise.all(Array.from({ length: 4 }, () => get(p)));
    await looked;
    assert.equal(up.count(p), 1, "three wait on the first");
    release();
    const replies = await all;
    assert.equal(up.count(p), 4);
    assert.equal(new Set(replies.map((r) => r.body)).size, 4, "nobody got someone else's private answer");
  });

  test("a miss streams: the client has the first bytes before the upstream has sent the rest", async () => {
    const p = fresh();
    const { gate, release } = gated();
    up.handlers.set(p, (_q, res) => {
      res.writeHead(200, { "content-type": "text/plain" });
      res.write("first;");
      void gate.then(() => res.end("rest"));
    });
    const body = await within(
      3000,
      new Promise<string>((ok, fail) => {
        http
          .get(`${gw.url}${p}`, (res) => {
            let s = "";
            res.on("data", (c: Buffer) => {
              s += c;
              if (s === "first;") release(); // only now does the upstream finish
            });
            res.on("end", () => ok(s));
          })
          .on("error", fail);
      }),
    );
    assert.equal(body, "first;rest");
    const hit = await get(p);
    assert.deepEqual([hit.headers["x-cache"], hit.body], ["HIT", "first;rest"], "and the copy was stored");
  });

  test("maxEntrySize: a bigger body streams whole but is not stored; a smaller one is", async () => {
    const big = `/small${fresh()}`;
    up.on200(big, {}, () => "x".repeat(4096));
    const a = await get(big);
    const b = await get(big);
    assert.equal(a.body.length, 4096);
    assert.equal(b.body.length, 4096);
    assert.deepEqual([a.headers["x-cache"], b.headers["x-cache"]], ["MISS", "MISS"]);
    const chunked = `/small${fresh()}`;
    up.handlers.set(chunked, (_q, res) => {
      // No Content-Length: the size is only known while streaming.
      res.write("y".repeat(1500));
      res.end("y".repeat(1500));
    });
    await get(chunked);
    const c = await get(chunked);
    assert.deepEqual([c.headers["x-cache"], c.body.length], ["MISS", 3000]);
    const small = `/small${fresh()}`;
    up.on200(small, {}, () => "s".repeat(2000));
    await get(small);
    assert.equal((await get(small)).headers["x-cache"], "HIT");
  });
});

describe("cache: what may be stored, and what a stored copy replays (SPEC §6)", () => {
  test("a request with Authorization is never stored unless the route keys on the subject", async () => {
    const p = `/authed${fresh()}`;
    up.handlers.set(p, (req, res) => res.end(`for ${req.headers.authorization?.slice(-12)}`));
    const alice = await token("alice");
    const bob = await token("bob");
    const a = await get(p, { authorization: `Bearer ${alice}` });
    const b = await get(p, { authorization: `Bearer ${bob}` });
    assert.deepEqual([a.status, a.headers["x-cache"], b.headers["x-cache"]], [200, "BYPASS", "BYPASS"]);
    assert.notEqual(b.body, a.body, "bob never gets alice's answer");
    assert.equal(up.count(p), 2);
    // Keyed on jwt:sub, a token without a subject has nothing to key on: not stored either.
    const q = `/me${fresh()}`;
    up.handlers.set(q, (req, res) => res.end(`for ${req.headers.authorization?.slice(-12)}`));
    const anon1 = await get(q, { authorization: `Bearer ${await token(undefined, { role: "one" })}` });
    const anon2 = await get(q, { authorization: `Bearer ${await token(undefined, { role: "two" })}` });
    assert.deepEqual([anon1.headers["x-cache"], anon2.headers["x-cache"]], ["BYPASS", "BYPASS"]);
    assert.notEqual(anon2.body, anon1.body);
  });

  test("Vary: * among other names is never stored", async () => {
    const p = fresh();
    up.on200(p, { vary: "Accept-Encoding, *" });
    const a = await get(p);
    const b = await get(p);
    assert.deepEqual([a.headers["x-cache"], b.headers["x-cache"]], ["MISS", "MISS"]);
    assert.equal(up.count(p), 2);
  });

  test("explicit freshness, however written, bounds the lifetime: max-age, s-maxage, Expires", async () => {
    await withClock(async (tick) => {
      const cases: Array<[string, () => Record<string, string>]> = [
        ["public, max-age=1", () => ({ "cache-control": "public, max-age=1" })],
        ["s-maxage=1", () => ({ "cache-control": "s-maxage=1" })],
        [
          "Expires in 1 s",
          () => ({
            date: new Date(Date.now()).toUTCString(),
            expires: new Date(Date.now() + 1000).toUTCString(),
          }),
        ],
      ];
      const paths = cases.map(([what, headers]) => {
        const p = fresh();
        up.handlers.set(p, (_q, res, k) => {
          res.writeHead(200, { "content-type": "text/plain", ...headers() });
          res.end(`${what} #${k}`);
        });
        return p;
      });
      for (const [i, p] of paths.entries()) {
        await get(p);
        assert.equal((await get(p)).headers["x-cache"], "HIT", cases[i][0]);
      }
      tick(2_000);
      for (const [i, p] of paths.entries())
        assert.equal((await get(p)).headers["x-cache"], "MISS", `${cases[i][0]}: not the route's 1m`);
    });
  });

  test("Cache-Control directives are case-insensitive (RFC 9111 §5.2): Private and NO-STORE are never stored", async () => {
    for (const cc of ["Private, max-age=60", "PRIVATE", "No-Store", "public, NO-STORE"]) {
      const p = fresh();
      up.on200(p, { "cache-control": cc });
      const a = await get(p);
      const b = await get(p);
      assert.deepEqual([a.headers["x-cache"], b.headers["x-cache"]], ["MISS", "MISS"], cc);
      assert.equal(up.count(p), 2, `${cc}: both went upstream`);
    }
    // A request's own no-store (RFC 9111 §5.2.1.5), in any case, keeps its answer out too.
    for (const cc of ["no-store", "NO-STORE"]) {
      const p = fresh();
      up.on200(p);
      assert.equal((await get(p, { "cache-control": cc })).headers["x-cache"], "MISS", cc);
      assert.equal((await get(p)).headers["x-cache"], "MISS", `${cc}: the first answer was not stored`);
      assert.equal((await get(p)).headers["x-cache"], "HIT", `${cc}: the second was`);
    }
    // ... and MAX-AGE is a lifetime like max-age.
    await withClock(async (tick) => {
      const p = fresh();
      up.on200(p, { "cache-control": "Public, MAX-AGE=1" });
      await get(p);
      assert.equal((await get(p)).headers["x-cache"], "HIT", "MAX-AGE=1: fresh for a second");
      tick(2_000);
      assert.equal((await get(p)).headers["x-cache"], "MISS", "MAX-AGE=1: not the route's 1m");
    });
  });

  test("immutable does not stretch an explicit zero lifetime (max-age=0, or Expires now)", async () => {
    const p = fresh();
    up.on200(p, { "cache-control": "public, max-age=0, immutable" });
    await get(p);
    assert.equal((await get(p)).headers["x-cache"], "MISS");
    const q = fresh();
    up.handlers.set(q, (_req, res, k) => {
      const now = new Date().toUTCString();
      res.writeHead(200, { "cache-control": "public, immutable", date: now, expires: now });
      res.end(`#${k}`);
    });
    await get(q);
    assert.equal((await get(q)).headers["x-cache"], "MISS", "no 24 h minimum for immutable");
  });

  for (const directive of ["must-revalidate", "proxy-revalidate", "s-maxage=1", "no-cache"]) {
    test(`staleIfError never serves a response with ${directive} stale`, async () => {
      const p = `/sie${fresh()}`;
      const cc =
        directive === "s-maxage=1" || directive === "no-cache" ? directive : `max-age=1, ${directive}`;
      up.handlers.set(p, (_q, res, k) => {
        res.writeHead(k === 1 ? 200 : 503, { "content-type": "text/plain", "cache-control": cc });
        res.end(k === 1 ? "good" : "down");
      });
      await withClock(async (tick) => {
        assert.equal((await get(p)).body, "good");
        tick(2_000);
        const r = await get(p);
        assert.deepEqual([r.status, r.body], [503, "down"], `${directive}: the failure, not the stored copy`);
      });
    });
  }

  test("control: without those directives the same failure is answered from the stored copy", async () => {
    const p = `/sie${fresh()}`;
    up.handlers.set(p, (_q, res, k) => {
      res.writeHead(k === 1 ? 200 : 503, { "content-type": "text/plain", "cache-control": "max-age=1" });
      res.end(k === 1 ? "good" : "down");
    });
    await withClock(async (tick) => {
      await get(p);
      tick(2_000);
      const r = await get(p);
      assert.deepEqual([r.status, r.body, r.headers["x-cache"]], [200, "good", "STALE"]);
    });
  });

  test("a response with only Last-Modified is kept past its lifetime and revalidated", async () => {
    const p = fresh();
    const lm = new Date(Date.now() - 3_600_000).toUTCString();
    up.handlers.set(p, (req, res, k) => {
      if (req.headers["if-modified-since"] === lm) {
        res.writeHead(304, { "last-modified": lm, "cache-control": "max-age=1" });
        res.end();
        return;
      }
      res.writeHead(200, { "content-type": "text/plain", "last-modified": lm, "cache-control": "max-age=1" });
      res.end(`body #${k}`);
    });
    await withClock(async (tick) => {
      assert.equal((await get(p)).body, "body #1");
      tick(2_000);
      const r = await get(p);
      assert.equal(up.seen.at(-1)?.headers["if-modified-since"], lm, "asked conditionally");
      assert.deepEqual([r.status, r.body], [200, "body #1"], "the 304 served the stored body");
    });
  });

  test("a stored copy's Age grows with its time here; its X-Cache, Date and tags are not replayed", async () => {
    const p = fresh();
    const old = new Date(Date.now() - 3_600_000).toUTCString();
    up.on200(p, {
      "cache-control": "max-age=100",
      age: "40",
      "x-cache": "MISS from upstream-cdn",
      date: old,
      "cache-tag": "products",
      "surrogate-key": "catalogue",
    });
    await withClock(async (tick) => {
      const miss = await get(p);
      assert.equal(miss.headers["x-cache"], "MISS");
      tick(10_000);
      // A plain GET is answered by the cache's lane; a conditional one that does not match, by Fastify.
      for (const [method, headers] of [
        ["lane", {}],
        ["Fastify", { "if-none-match": '"other"' }],
      ] as const) {
        const hit = await get(p, headers);
        assert.equal(hit.headers["x-cache"], "HIT", method);
        assert.ok(Number(hit.headers.age) >= 50, `${method}: Age ${hit.headers.age}, stored at 40, 10 s ago`);
        assert.notEqual(hit.headers.date, old, `${method}: the upstream's Date, an hour old`);
        assert.equal(hit.headers["cache-tag"], undefined, method);
        assert.equal(hit.headers["surrogate-key"], undefined, method);
      }
    });
  });
});

describe("cache: purge", () => {
  test("by path prefix (whole segments) and by Surrogate-Key / Cache-Tag", async () => {
    const base = fresh();
    const paths = [`${base}/users`, `${base}/users/7`, `${base}/usersx`, `${base}/orders`];
    for (const p of paths)
      up.on200(p, p.endsWith("orders") ? { "cache-tag": "orders, all" } : { "surrogate-key": "users all" });
    for (const p of paths) await get(p);
    const tagged = await get(paths[0]);
    assert.equal(tagged.headers["surrogate-key"], undefined, "tags stay inside the cache");
    const res = await purgeCache(gw.gw.generation, { prefix: `${base}/users` });
    assert.equal(res.purged, 2);
    const after1 = await Promise.all(paths.map((p) => get(p)));
    assert.deepEqual(
      after1.map((r) => r.headers["x-cache"]),
      ["MISS", "MISS", "HIT", "HIT"],
    );
    assert.equal((await purgeCache(gw.gw.generation, { tags: ["orders"] })).purged, 1);
    assert.equal((await get(paths[3])).headers["x-cache"], "MISS");
    await purgeCache(gw.gw.generation, { tags: ["all"] });
    const after2 = await Promise.all(paths.map((p) => get(p)));
    assert.deepEqual(
      after2.map((r) => r.headers["x-cache"]),
      ["MISS", "MISS", "MISS", "MISS"],
    );
  });
});
