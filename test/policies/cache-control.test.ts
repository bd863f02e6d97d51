/**
 * routes.*.cacheControl through @fastify/caching (issue 12): a Cache-Control
 * for clients and downstream CDNs on answers that come without one (2xx only,
 * no-store on errors), ETag / Expires / 304 on the gateway's own answers
 * (`respond:` routes and the admin dashboard), nothing on routes without the
 * option. Real origin, real sockets.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { runtime } from "../admin/helpers.js";
import { type Backend, backend, gateway, type Running, request } from "../helpers/index.js";
import { within } from "../store/redis-helpers.js";

let up: Backend;
let gw: Running;

before(async () => {
  up = await backend("up", (req, res) => {
    const u = new URL(req.url ?? "/", "http://x");
    const headers: Record<string, string> = { "content-type": "text/plain" };
    const cc = u.searchParams.get("cc");
    if (cc !== null) headers["cache-control"] = cc;
    res.writeHead(Number(u.searchParams.get("status") ?? 200), headers);
    res.end(`${u.pathname} #${up.hits}`);
  });
  gw = await gateway(`
services:
  up: { targets: [${up.url}] }
routes:
  - name: public
    match: { path: /pub }
    service: up
    cacheControl: { privacy: public, expiresIn: 60, serverExpiresIn: 300 }
  - name: private
    match: { path: /priv }
    service: up
    cacheControl: { privacy: private, expiresIn: 30 }
  - name: nocache
    match: { path: /nc }
    service: up
    cacheControl: { privacy: no-cache, expiresIn: 30 }
  - name: cached
    match: { path: /cached }
    service: up
    cache: { ttl: 1m }
    cacheControl: { privacy: public, expiresIn: 5 }
  - name: fixed
    match: { path: /fixed }
    respond: { status: 200, headers: { content-type: text/plain }, body: "the fixed answer" }
    cacheControl: { privacy: public, expiresIn: 120 }
  - name: moved
    match: { path: /moved }
    respond: { status: 301, headers: { location: /fixed } }
    cacheControl: { privacy: public, expiresIn: 120 }
  - name: plain
    match: { path: /plain }
    service: up
`);
});
after(async () => {
  await gw.close();
  await up.close();
});

const get = (path: string, headers: Record<string, string> = {}) =>
  within(3000, request(gw.url, { path, headers }));

describe("cacheControl on proxied routes", () => {
  test("a 2xx without Cache-Control gets the route's; the upstream's own is kept", async () => {
    assert.equal((await get("/pub/a")).headers["cache-control"], "public, max-age=60, s-maxage=300");
    assert.equal(
      (await get("/pub/a?status=204")).headers["cache-control"],
      "public, max-age=60, s-maxage=300",
    );
    assert.equal((await get("/priv/a")).headers["cache-control"], "private, max-age=30");
    assert.equal((await get("/nc/a")).headers["cache-control"], "no-cache");
    assert.equal((await get("/pub/a?cc=max-age%3D5")).headers["cache-control"], "max-age=5");
  });

  test("errors and other non-2xx answers get no-store (a browser must not keep them)", async () => {
    for (const status of [301, 404, 500, 503]) {
      const r = await get(`/pub/e?status=${status}`);
      assert.deepEqual([r.status, r.headers["cache-control"]], [status, "no-store"]);
    }
  });

  test("with the response cache: stored as the upstream said (route ttl), misses and hits get the same Cache-Control", async () => {
    const miss = await get("/cached/x");
    const hit = await get("/cached/x");
    assert.deepEqual(
      [miss.headers["x-cache"], hit.headers["x-cache"]],
      ["MISS", "HIT"],
      "stored with the route ttl, not the 5s the client is told",
    );
    assert.equal(hit.body, miss.body);
    assert.equal(miss.headers["cache-control"], "public, max-age=5");
    assert.equal(hit.headers["cache-control"], "public, max-age=5");
  });

  test("a route without the option gets nothing, and keeps its fast lane; one with it has none", async () => {
    const r = await get("/plain/a");
    assert.equal(r.headers["cache-control"], undefined);
    assert.equal(r.headers.etag, undefined);
    const g = gw.gw.generation;
    const id = (name: string) => g.routes.find((x) => x.config.name === name)!.id;
    assert.equal(g.lanes.has(id("plain")), true, "the plain route answers on its lane");
    assert.equal(g.lanes.has(id("public")), false, "the option's hooks need Fastify's path");
  });
});

describe("cacheControl on the gateway's own answers", () => {
  test("a respond: 200 gets an ETag, Expires and Cache-Control; If-None-Match with it is a 304", async () => {
    const first = await get("/fixed");
    assert.equal(first.status, 200);
    assert.equal(first.body, "the fixed answer");
    assert.equal(first.headers["cache-control"], "public, max-age=120");
    const etag = String(first.headers.etag);
    assert.match(etag, /^"[A-Za-z0-9_-]+"$/, "a strong ETag");
    const expires = Date.parse(String(first.headers.expires));
    assert.ok(Math.abs(expires - (Date.now() + 120_000)) < 5_000, "Expires is expiresIn ahead");
    const again = await get("/fixed");
    assert.equal(again.headers.etag, etag, "the same answer, the same ETag");
    const nm = await get("/fixed", { "if-none-match": etag });
    assert.deepEqual([nm.status, nm.body], [304, ""]);
    assert.equal(nm.headers["cache-control"], "public, max-age=120", "a 304 stands for the 200");
    assert.ok(nm.headers["x-request-id"], "a 304 carries the request id too");
    const other = await get("/fixed", { "if-none-match": '"something-else"' });
    assert.deepEqual([other.status, other.body], [200, "the fixed answer"]);
  });

  test("a respond: answer that is not 200 gets no ETag (a 304 only ever stands for a 200)", async () => {
    const r = await get("/moved");
    assert.equal(r.status, 301);
    assert.equal(r.headers.etag, undefined);
    assert.equal(r.headers["cache-control"], "no-store");
  });

  test("the admin dashboard page: no-cache with an ETag, 304 while unchanged", async (t) => {
    const g = await runtime(`services: { s: { targets: [${up.url}] } }\nroutes: [{ name: r, service: s }]\n`);
    t.after(() => g.close());
    const page = await g.ask("/");
    assert.equal(page.status, 200);
    assert.equal(page.headers["cache-control"], "no-cache");
    const etag = String(page.headers.etag);
    assert.match(etag, /^"[A-Za-z0-9_-]+"$/);
    const nm = await within(3000, request(g.admin, { path: "/", headers: { "if-none-match": etag } }));
    assert.deepEqual([nm.status, nm.body, nm.headers["cache-control"]], [304, "", "no-cache"]);
    const metrics = await g.ask("/healthz");
    assert.equal(metrics.headers.etag, undefined, "the API's answers are not touched");
  });
});
