import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { after, afterEach, before, describe, mock, test } from "node:test";
import type { FastifyRequest } from "fastify";
import { SignJWT } from "jose";
import { keyGenerator } from "../../plugins/rate-limit.js";
import { storeOf } from "../../src/store/index.js";
import { type Backend, backend, gateway, type Reply, type Running, request } from "../helpers/index.js";
import { missing } from "../helpers/needs.js";
import {
  client,
  deleteKeys,
  type Throwaway,
  throwawayRedis,
  uniquePrefix,
  within,
} from "../store/redis-helpers.js";

const SECRET = "rate-limit-test-secret-0123456789abcdef";
const token = (claims: Record<string, unknown>) =>
  new SignJWT(claims)
    .setProtectedHeader({ alg: "HS256" })
    .setIssuedAt()
    .setExpirationTime("5m")
    .sign(new TextEncoder().encode(SECRET));

/** n sequential requests; the statuses in order. */
async function statuses(url: string, n: number, opts: Parameters<typeof request>[1] = {}): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < n; i++) out.push((await within(2000, request(url, opts))).status);
  return out;
}

const ok = (n: number) => Array<number>(n).fill(200);

describe("rate limit (memory store)", () => {
  let echo: Backend;
  let gw: Running;
  let trusting: Running;
  before(async () => {
    echo = await backend("echo");
    const routes = `
services:
  echo: { targets: [${echo.url}] }
jwt:
  internal: { secret: ${SECRET}, algorithms: [HS256] }
routes:
  - { name: by-ip, match: { path: /ip }, service: echo, rateLimit: { max: 3, window: 1m, by: ip } }
  - { name: by-header, match: { path: /header }, service: echo, rateLimit: { max: 2, window: 1m, by: "header:x-api-key" } }
  - { name: by-route, match: { path: /route }, service: echo, rateLimit: { max: 2, window: 1m, by: route } }
  - name: by-sub
    match: { path: /sub }
    service: echo
    auth: { jwt: internal }
    rateLimit: { max: 2, window: 1m, by: "jwt:sub" }
  - name: ip-then-auth
    match: { path: /ipauth }
    service: echo
    auth: { jwt: internal }
    rateLimit: { max: 2, window: 1m, by: ip }
  - { name: short, match: { path: /short }, service: echo, rateLimit: { max: 1, window: 300ms } }
`;
    gw = await gateway(routes);
    trusting = await gateway(`trustProxy: true\n${routes}`);
  });
  after(async () => {
    await gw.close();
    await trusting.close();
    await echo.close();
  });

  test("max per window, IETF draft headers, then 429 SY_RATE_LIMITED with Retry-After", async () => {
    const before = echo.hits;
    const replies: Reply[] = [];
    for (let i = 0; i < 4; i++) replies.push(await request(gw.url, { path: "/ip" }));
    assert.deepEqual(
      replies.map((r) => r.status),
      [200, 200, 200, 429],
    );
    assert.deepEqual(
      replies.map((r) => r.headers["ratelimit-remaining"]),
      ["2", "1", "0", "0"],
    );
    for (const r of replies) {
      assert.equal(r.headers["ratelimit-limit"], "3");
      const reset = Number(r.headers["ratelimit-reset"]);
      assert.ok(reset > 0 && reset <= 60, `RateLimit-Reset ${reset}`);
    }
    const limited = replies[3];
    assert.equal(limited.headers["retry-after"], limited.headers["ratelimit-reset"]);
    assert.equal(replies[0].headers["retry-after"], undefined, "Retry-After only on 429");
    const body = limited.json();
    assert.equal(body.code, "SY_RATE_LIMITED");
    assert.equal(body.statusCode, 429);
    assert.equal(body.requestId, limited.headers["x-request-id"]);
    assert.match(String(limited.headers["content-type"]), /^application\/json/);
    assert.equal(echo.hits - before, 3, "the limited request never reached the upstream");
  });

  test("a client's X-Forwarded-For does not dodge an ip limit when trustProxy is false", async () => {
    const fresh = await gateway(`
services:
  echo: { targets: [${echo.url}] }
routes:
  - { name: by-ip, match: { path: /ip }, service: echo, rateLimit: { max: 2, window: 1m } }
`);
    try {
      const st: number[] = [];
      for (let i = 0; i < 4; i++) {
        st.push(
          (await request(fresh.url, { path: "/ip", headers: { "x-forwarded-for": `10.9.9.${i}` } })).status,
        );
      }
      assert.deepEqual(st, [200, 200, 429, 429], "trustProxy false: one client, whatever XFF says");
    } finally {
      await fresh.close();
    }
    // The same requests through a gateway with trustProxy: true are distinct clients (so the key is request.ip).
    const spoofed: number[] = [];
    for (let i = 0; i < 4; i++) {
      spoofed.push(
        (await request(trusting.url, { path: "/ip", headers: { "x-forwarded-for": `10.0.0.${i}` } })).status,
      );
    }
    assert.deepEqual(spoofed, ok(4));
  });

  test("by header: one bucket per value; without the header, the client's ip", async () => {
    assert.deepEqual(
      await statuses(gw.url, 3, { path: "/header", headers: { "x-api-key": "a" } }),
      [200, 200, 429],
    );
    assert.deepEqual(
      await statuses(gw.url, 2, { path: "/header", headers: { "x-api-key": "b" } }),
      [200, 200],
    );
    assert.deepEqual(await statuses(gw.url, 3, { path: "/header" }), [200, 200, 429], "no header: by ip");
  });

  test("by header: a request without the header counts against its own address, not one shared bucket", async () => {
    const g = await gateway(`
services:
  echo: { targets: [${echo.url}] }
routes:
  - { name: keyed, match: { path: /keyed }, service: echo, rateLimit: { max: 1, window: 1m, by: "header:x-api-key" } }
`);
    try {
      const from = (localAddress: string, headers: Record<string, string> = {}) =>
        within(2000, request(g.url, { path: "/keyed", localAddress, headers })).then((r) => r.status);
      assert.deepEqual([await from("127.0.0.1"), await from("127.0.0.1")], [200, 429], "127.0.0.1's bucket");
      assert.equal(await from("127.0.0.2"), 200, "another client without the header has its own bucket");
      assert.equal(await from("127.0.0.3"), 200, "and a third one too");
      assert.equal(await from("127.0.0.2"), 429);
      // With the header, the value is the bucket, wherever it comes from; never an address's bucket.
      assert.equal(await from("127.0.0.1", { "x-api-key": "k1" }), 200);
      assert.equal(
        await from("127.0.0.2", { "x-api-key": "k1" }),
        429,
        "one bucket per value, across addresses",
      );
      assert.equal(await from("127.0.0.1", { "x-api-key": "127.0.0.4" }), 200, "a value is not an address");
      assert.equal(await from("127.0.0.4"), 200);
    } finally {
      await g.close();
    }
  });

  test("by route: one bucket for every client", async () => {
    const st: number[] = [];
    for (let i = 0; i < 3; i++) {
      st.push(
        (await request(trusting.url, { path: "/route", headers: { "x-forwarded-for": `10.1.1.${i}` } }))
          .status,
      );
    }
    assert.deepEqual(st, [200, 200, 429]);
  });

  test("by jwt:sub: counted after auth, per subject; unauthenticated requests are refused without counting", async () => {
    const alice = await token({ sub: "alice" });
    const bob = await token({ sub: "bob" });
    assert.deepEqual(await statuses(gw.url, 4, { path: "/sub" }), [401, 401, 401, 401]);
    const a = await statuses(gw.url, 3, { path: "/sub", headers: { authorization: `Bearer ${alice}` } });
    assert.deepEqual(a, [200, 200, 429], "the 401s before did not use alice's (or anyone's) allowance");
    const b = await statuses(gw.url, 2, { path: "/sub", headers: { authorization: `Bearer ${bob}` } });
    assert.deepEqual(b, [200, 200], "bob has his own bucket");
  });

  test("by ip runs before auth: unauthenticated floods are limited too", async () => {
    assert.deepEqual(await statuses(gw.url, 3, { path: "/ipauth" }), [401, 401, 429]);
    const alice = await token({ sub: "alice" });
    const r = await request(gw.url, { path: "/ipauth", headers: { authorization: `Bearer ${alice}` } });
    assert.equal(r.status, 429, "the same address is over its limit, token or not");
  });

  test("a new window starts after `window`", async () => {
    // The memory store's windows run on Date.now(): frozen, two requests are always in one window.
    mock.timers.enable({ apis: ["Date"], now: Date.now() });
    try {
      assert.deepEqual(await statuses(trusting.url, 2, { path: "/short" }), [200, 429]);
      mock.timers.tick(299);
      assert.deepEqual(await statuses(trusting.url, 1, { path: "/short" }), [429], "still the first window");
      mock.timers.tick(1);
      assert.deepEqual(await statuses(trusting.url, 2, { path: "/short" }), [200, 429]);
    } finally {
      mock.timers.reset();
    }
  });
});

describe("rate limit keys: one bucket per client, never shared, never colliding", () => {
  let echo: Backend;
  let g: Running;
  before(async () => {
    echo = await backend("echo");
    g = await gateway(`
services:
  echo: { targets: [${echo.url}] }
jwt:
  internal: { secret: ${SECRET}, algorithms: [HS256] }
routes:
  - { name: keyed, match: { path: /keyed }, service: echo, rateLimit: { max: 1, window: 1m, by: "header:X-Api-Key" } }
  - name: by-claim
    match: { path: /claim }
    service: echo
    auth: { jwt: internal }
    rateLimit: { max: 1, window: 1m, by: "jwt:sub" }
`);
  });
  after(async () => {
    await g.close();
    await echo.close();
  });

  /** Status of one request from `localAddress`. */
  const from = (path: string, localAddress: string, headers: Record<string, string> = {}) =>
    within(2000, request(g.url, { path, localAddress, headers })).then((r) => r.status);

  test("by header: long values (hashed) keep one bucket each", async () => {
    const a = `a${"x".repeat(300)}`;
    const b = `b${"x".repeat(300)}`;
    assert.equal(await from("/keyed", "127.0.1.1", { "x-api-key": a }), 200);
    assert.equal(
      await from("/keyed", "127.0.1.2", { "x-api-key": a }),
      429,
      "the same long value, one bucket",
    );
    assert.equal(await from("/keyed", "127.0.1.1", { "x-api-key": b }), 200, "another long value, another");
    assert.equal(
      await from("/keyed", "127.0.1.1", { "x-api-key": `${a.slice(0, 128)}` }),
      200,
      "its prefix too",
    );
  });

  test("by header: a value that looks like an address's key is not that address's bucket", async () => {
    assert.equal(await from("/keyed", "127.0.1.3", { "x-api-key": "ip:127.0.1.4" }), 200);
    assert.equal(await from("/keyed", "127.0.1.4"), 200, "127.0.1.4 without the header: its own bucket");
    assert.equal(await from("/keyed", "127.0.1.4"), 429);
  });

  test("by jwt: a token without the claim, or with it null or empty, counts against its address", async () => {
    const claims: Array<[string, Record<string, unknown>]> = [
      ["absent", {}],
      ["null", { sub: null }],
      ["empty", { sub: "" }],
    ];
    let host = 10;
    for (const [what, c] of claims) {
      const bearer = { authorization: `Bearer ${await token(c)}` };
      const x = `127.0.1.${host++}`;
      const y = `127.0.1.${host++}`;
      assert.equal(await from("/claim", x, bearer), 200, `${what}: first from ${x}`);
      assert.equal(
        await from("/claim", y, bearer),
        200,
        `${what}: ${y} is another client, not one shared bucket`,
      );
      assert.equal(await from("/claim", x, bearer), 429, `${what}: ${x} again`);
    }
    // Numbers and strings are claims like any other: a bucket per value.
    assert.equal(
      await from("/claim", "127.0.1.20", { authorization: `Bearer ${await token({ sub: 42 })}` }),
      200,
    );
    assert.equal(
      await from("/claim", "127.0.1.21", { authorization: `Bearer ${await token({ sub: 42 })}` }),
      429,
    );
    // A claim that looks like an address's key is not that address's bucket.
    const lookalike = { authorization: `Bearer ${await token({ sub: "ip:127.0.1.22" })}` };
    assert.equal(await from("/claim", "127.0.1.23", lookalike), 200);
    assert.equal(await from("/claim", "127.0.1.22", { authorization: `Bearer ${await token({})}` }), 200);
  });
});

describe("rate limit keys, from the key generator itself", () => {
  const req = (headers: Record<string, string | string[]>, ip = "127.0.0.9") =>
    ({ headers, ip, raw: {} }) as unknown as FastifyRequest;

  test("by header: values up to 128 characters are their own key, longer ones their SHA-256 (keys stay small)", () => {
    const key = keyGenerator("header:X-Api-Key");
    const at128 = "k".repeat(128);
    const at129 = "k".repeat(129);
    assert.equal(key(req({ "x-api-key": "abc" })), "h:abc");
    assert.equal(key(req({ "x-api-key": at128 })), `h:${at128}`);
    assert.equal(key(req({ "x-api-key": at129 })), `h:#${createHash("sha256").update(at129).digest("hex")}`);
    assert.equal(key(req({ "x-api-key": "x".repeat(16_000) })).length, 2 + 1 + 64);
  });

  test("by header: a field sent as several lines is keyed as its comma-joined value (RFC 9110 §5.3)", () => {
    const key = keyGenerator("header:X-Api-Key");
    assert.equal(key(req({ "x-api-key": ["a", "b"] })), key(req({ "x-api-key": "a, b" })));
    assert.notEqual(key(req({ "x-api-key": ["a", "b"] })), key(req({ "x-api-key": "ab" })));
  });
});

const noRedis = await missing("redis");
const noRedisServer = await missing("redis-server");

describe("rate limit (redis store)", () => {
  let echo: Backend;
  let prefix: string;
  const running: Running[] = [];
  before(async () => {
    echo = await backend("echo");
  });
  afterEach(async () => {
    for (const g of running.splice(0)) await g.close();
  });
  after(async () => {
    await echo.close();
  });

  const config = (url: string, pfx: string, onError: string, max = 10) => `
store: { type: redis, url: "${url}", prefix: "${pfx}", onError: ${onError} }
services:
  echo: { targets: [${echo.url}] }
routes:
  - { name: api, match: { path: / }, service: echo, rateLimit: { max: ${max}, window: 1m, by: ip } }
`;

  test("two gateway instances share one limit exactly: 10 across both, the 11th is 429", {
    skip: noRedis,
  }, async () => {
    prefix = uniquePrefix();
    try {
      const a = await gateway(config("redis://127.0.0.1:6379", prefix, "deny"));
      const b = await gateway(config("redis://127.0.0.1:6379", prefix, "deny"));
      running.push(a, b);
      // Concurrent, interleaved across both instances.
      const replies = await within(
        3000,
        Promise.all(Array.from({ length: 10 }, (_, i) => request((i % 2 ? a : b).url, { path: "/x" }))),
      );
      assert.deepEqual(
        replies.map((r) => r.status),
        ok(10),
      );
      assert.deepEqual(
        replies.map((r) => Number(r.headers["ratelimit-remaining"])).sort((x, y) => x - y),
        [0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
        "every hit saw a distinct shared count",
      );
      assert.equal((await request(a.url, { path: "/x" })).status, 429);
      assert.equal((await request(b.url, { path: "/x" })).status, 429);
      const r = await client();
      const keys = await r.keys(`${prefix}rl:{api}:*`);
      assert.equal(keys.length, 1);
      assert.equal(await r.get(keys[0]), "12");
      r.disconnect();
    } finally {
      await deleteKeys(prefix);
    }
  });

  describe("while Redis is down (throwaway redis-server)", { skip: noRedisServer }, () => {
    let redis: Throwaway;
    before(async () => {
      redis = await throwawayRedis();
    });
    after(async () => {
      await redis.stop();
    });

    test("onError local: per-instance counting, never hanging; shared counting resumes when Redis returns", async () => {
      const a = await gateway(config(redis.url, "sy:", "local", 3));
      const b = await gateway(config(redis.url, "sy:", "local", 3));
      running.push(a, b);
      assert.deepEqual(await statuses(a.url, 2, { path: "/x" }), [200, 200]);
      assert.deepEqual(await statuses(b.url, 2, { path: "/x" }), [200, 429], "shared: 4th hit overall");
      await redis.stop();
      // Each instance now counts on its own, from zero.
      assert.deepEqual(await statuses(a.url, 4, { path: "/x" }), [200, 200, 200, 429]);
      assert.deepEqual(await statuses(b.url, 4, { path: "/x" }), [200, 200, 200, 429]);
      await redis.start();
      for (const g of [a, b]) assert.ok(await storeOf(g.gw.generation)!.whenReady(5000));
      assert.deepEqual(await statuses(a.url, 2, { path: "/x" }), [200, 200]);
      assert.deepEqual(await statuses(b.url, 2, { path: "/x" }), [200, 429], "shared again");
      const r = await client(redis.url);
      const keys = await r.keys("sy:rl:{api}:*");
      assert.equal(await r.get(keys[0]), "4");
      r.disconnect();
    });

    test("onError allow lets requests through; deny answers 503 SY_STORE_UNAVAILABLE; neither hangs", async () => {
      const allow = await gateway(config(redis.url, "sy2:", "allow", 1));
      const deny = await gateway(config(redis.url, "sy2:", "deny", 1));
      running.push(allow, deny);
      await redis.stop();
      assert.deepEqual(await statuses(allow.url, 3, { path: "/x" }), ok(3));
      const r = await within(2000, request(deny.url, { path: "/x" }));
      assert.equal(r.status, 503);
      assert.equal(r.json().code, "SY_STORE_UNAVAILABLE");
      await redis.start();
      assert.ok(await storeOf(deny.gw.generation)!.whenReady(5000));
      assert.deepEqual(await statuses(deny.url, 2, { path: "/x" }), [200, 429], "deny counts in Redis again");
    });
  });
});
