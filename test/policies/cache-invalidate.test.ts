/**
 * Invalidation after unsafe requests (RFC 9111 §4.4, issue 12), with a real
 * origin, through the gateway, on the memory store and on the shared Redis.
 * The origin answers GETs storably; a write's status and Location /
 * Content-Location come from the test's request headers (x-status,
 * x-location, x-content-location), so each test says what the origin answers.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { type Backend, backend, gateway, type Running, request } from "../helpers/index.js";
import { missing } from "../helpers/needs.js";
import { deleteKeys, uniquePrefix, within } from "../store/redis-helpers.js";

const noRedis = await missing("redis");

let up: Backend;
let n = 0;
/** A fresh path per test, so tests never see each other's entries. */
const fresh = () => `/i/t${n++}`;

before(async () => {
  up = await backend("up", (req, res) => {
    const h = req.headers;
    if (
      req.method === "GET" ||
      req.method === "HEAD" ||
      req.method === "OPTIONS" ||
      req.method === "PROPFIND"
    ) {
      const headers: Record<string, string> = { "content-type": "text/plain", "cache-control": "max-age=60" };
      if (req.url?.includes("/vary")) headers.vary = "accept-language";
      res.writeHead(200, headers);
      res.end(`${req.url} ${h["accept-language"] ?? ""} ${h["x-tenant"] ?? ""} #${up.hits}`);
      return;
    }
    const headers: Record<string, string> = {};
    if (typeof h["x-location"] === "string") headers.location = h["x-location"];
    if (typeof h["x-content-location"] === "string") headers["content-location"] = h["x-content-location"];
    req.resume();
    req.on("end", () => {
      res.writeHead(Number(h["x-status"] ?? 200), headers);
      res.end(`${req.method} done`);
    });
  });
});
after(async () => {
  await up.close();
});

const routes = () => `
services:
  up: { targets: [${up.url}] }
routes:
  - name: writes
    match: { path: /i/writes-only, methods: [POST] }
    service: up
    cache: { methods: [] }
  - name: keyed
    match: { path: /i/keyed }
    service: up
    cache: { ttl: 1m, vary: [x-tenant] }
  - name: api
    match: { path: /i }
    service: up
    cache: { ttl: 1m }
`;

for (const kind of ["memory", "redis"] as const) {
  describe(`cache invalidation (${kind} store)`, { skip: kind === "redis" ? noRedis : undefined }, () => {
    let gw: Running;
    let other: Running | undefined;
    const prefix = uniquePrefix();
    const storeYaml =
      // Invalidation is under test, not Redis's latency (store.timeout 2s: see cache-harness.ts).
      kind === "redis"
        ? `store: { type: redis, url: "redis://127.0.0.1:6379", prefix: "${prefix}", timeout: 2s }\n`
        : "";
    before(async () => {
      gw = await gateway(storeYaml + routes());
      if (kind === "redis") other = await gateway(storeYaml + routes());
    });
    after(async () => {
      await gw.close();
      await other?.close();
      if (kind === "redis") await deleteKeys(prefix);
    });

    const get = (path: string, headers: Record<string, string> = {}, method = "GET", via = gw) =>
      within(3000, request(via.url, { path, headers, method }));
    const write = (method: string, path: string, headers: Record<string, string> = {}, via = gw) =>
      // Node frames no body for DELETE unless told its length: none is sent.
      within(3000, request(via.url, { method, path, headers, body: method === "DELETE" ? undefined : "x" }));
    const cached = async (path: string, headers: Record<string, string> = {}, method = "GET") => {
      await get(path, headers, method);
      const r = await get(path, headers, method);
      assert.equal(r.headers["x-cache"], "HIT", `${method} ${path} is stored before the write`);
    };

    test("a 2xx or 3xx to POST, PUT, DELETE, PATCH drops the target URI's GET and HEAD entries; other URIs keep theirs", async () => {
      for (const [method, status] of [
        ["POST", 201],
        ["PUT", 204],
        ["DELETE", 200],
        ["PATCH", 303],
      ] as const) {
        const p = fresh();
        await cached(p);
        await cached(p, {}, "HEAD");
        await cached(`${p}?page=2`);
        await cached(`${p}/child`);
        const w = await write(method, p, { "x-status": String(status) });
        assert.equal(w.status, status);
        assert.equal(w.headers["x-cache"], "BYPASS");
        assert.equal((await get(p)).headers["x-cache"], "MISS", `${method} ${status}: GET dropped`);
        assert.equal((await get(p, {}, "HEAD")).headers["x-cache"], "MISS", `${method}: HEAD dropped`);
        assert.equal((await get(`${p}?page=2`)).headers["x-cache"], "HIT", "another query is another URI");
        assert.equal((await get(`${p}/child`)).headers["x-cache"], "HIT", "another path is another URI");
      }
    });

    test("the URI is the normalised one the cache keys on: a write to /x/../p drops /p", async () => {
      const p = fresh();
      await cached(p);
      await write("POST", `/i/x/..${p.slice(2)}`);
      assert.equal((await get(p)).headers["x-cache"], "MISS");
    });

    test("error answers (4xx, 5xx) and 1xx-free failures invalidate nothing", async () => {
      const p = fresh();
      await cached(p);
      for (const status of [400, 404, 409, 500, 503]) {
        const w = await write("POST", p, { "x-status": String(status) });
        assert.equal(w.status, status);
        assert.equal((await get(p)).headers["x-cache"], "HIT", `${status} leaves the entry`);
      }
    });

    test("every variant: the upstream's Vary and the route's vary values all go", async () => {
      const p = `${fresh()}/vary`;
      for (const lang of ["en", "fr"]) await cached(p, { "accept-language": lang });
      const k = `/i/keyed/${n++}`;
      for (const tenant of ["a", "b"]) await cached(k, { "x-tenant": tenant });
      await write("PUT", p);
      await write("DELETE", k, { "x-tenant": "a" });
      for (const lang of ["en", "fr"])
        assert.equal((await get(p, { "accept-language": lang })).headers["x-cache"], "MISS", lang);
      for (const tenant of ["a", "b"])
        assert.equal((await get(k, { "x-tenant": tenant })).headers["x-cache"], "MISS", `tenant ${tenant}`);
    });

    test("Location and Content-Location on the same origin are dropped; another origin's are not", async () => {
      const [target, loc, cloc, abs, foreign, foreignScheme] = [
        fresh(),
        fresh(),
        fresh(),
        fresh(),
        fresh(),
        fresh(),
      ];
      for (const p of [target, loc, cloc, abs, foreign, foreignScheme]) await cached(p);
      await write("POST", target, {
        "x-status": "201",
        "x-location": loc,
        "x-content-location": `x/..${cloc.slice(2)}?`,
      });
      // An absolute URL on the request's host (another port is the same host, as the cache keys it).
      await write("POST", target, { "x-location": `http://127.0.0.1:1${abs}` });
      await write("POST", target, { "x-location": `http://other.example${foreign}` });
      await write("POST", target, { "x-location": `https://127.0.0.1${foreignScheme}` });
      assert.equal((await get(loc)).headers["x-cache"], "MISS", "relative Location");
      assert.equal(
        (await get(cloc)).headers["x-cache"],
        "MISS",
        "relative Content-Location (dot segments resolved)",
      );
      assert.equal((await get(abs)).headers["x-cache"], "MISS", "absolute Location on the same host");
      assert.equal((await get(foreign)).headers["x-cache"], "HIT", "another host's entry is kept");
      assert.equal((await get(foreignScheme)).headers["x-cache"], "HIT", "another scheme's entry is kept");
    });

    test("methods not known to be safe invalidate (LOCK, MKCOL); safe ones (OPTIONS, PROPFIND) do not", async () => {
      const p = fresh();
      await cached(p);
      for (const m of ["OPTIONS", "PROPFIND"]) {
        await write(m, p);
        assert.equal((await get(p)).headers["x-cache"], "HIT", `${m} is safe`);
      }
      for (const m of ["LOCK", "MKCOL"]) {
        await cached(p);
        await write(m, p);
        assert.equal((await get(p)).headers["x-cache"], "MISS", `${m} is not known to be safe`);
      }
    });

    test("extension methods are routed and forwarded (PURGE, M-SEARCH, LINK) and, not known to be safe, invalidate", async () => {
      for (const m of ["PURGE", "M-SEARCH", "LINK"]) {
        const p = fresh();
        await cached(p);
        const w = await write(m, p);
        assert.deepEqual([w.status, w.body], [200, `${m} done`], `${m} reached the upstream`);
        assert.equal((await get(p)).headers["x-cache"], "MISS", `${m} invalidated`);
      }
    });

    test("a write-only route (cache: { methods: [] }) drops what another route stored", async () => {
      const p = "/i/writes-only";
      await cached(p);
      const w = await write("POST", p);
      assert.equal(w.headers["x-cache"], "BYPASS");
      assert.equal((await get(p)).headers["x-cache"], "MISS");
    });

    if (kind === "redis")
      test("a write through one instance drops what the other stored (Redis shared)", async () => {
        const p = fresh();
        await get(p, {}, "GET", other);
        assert.equal((await get(p, {}, "GET", other)).headers["x-cache"], "HIT");
        assert.equal((await get(p)).headers["x-cache"], "HIT", "the other instance's entry is shared");
        await write("DELETE", p);
        assert.equal((await get(p, {}, "GET", other)).headers["x-cache"], "MISS");
      });
  });
}
