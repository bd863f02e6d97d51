/**
 * The cache's fast lane (server.ts, plugins/cache.ts): fresh memory hits on
 * cache-only routes are answered before Fastify. These tests count the lane's
 * answers (a wrapper around the registered lane) and compare them with the
 * same entry served through Fastify (a non-matching If-None-Match declines the
 * lane, and serve() answers 200 HIT), so a lane that drifted from serve() fails.
 */
import assert from "node:assert/strict";
import type http from "node:http";
import { after, before, describe, test } from "node:test";
import type { Gateway } from "../../src/server.js";
import {
  type Backend,
  backend,
  capturingLogger,
  countLanes,
  gateway,
  type Running,
  request,
} from "../helpers/index.js";

let up: Backend;
let running: Running;
let gw: Gateway;
let url: string;
let lines: Record<string, unknown>[] = [];
let laned = new Map<string, number>();

before(async () => {
  up = await backend("up", (req, res) => {
    if (req.url?.startsWith("/bare")) {
      // No Content-Type, no Content-Length (chunked): Fastify's defaults must be the lane's.
      res.write("bare ");
      res.end("body");
      return;
    }
    res.writeHead(200, { "content-type": "text/plain", etag: '"e1"', "x-up": "1" });
    res.end(`hello ${req.url}`);
  });
  const yaml = `
services: { up: { targets: [${up.url}] } }
jwt: { internal: { secret: lane-test-secret-0123456789abcdef, algorithms: [HS256] } }
routes:
  - name: limited
    match: { path: /limited }
    service: up
    rateLimit: { max: 1, window: 1m }
    cache: { ttl: 1m }
  - name: authed
    match: { path: /authed }
    service: up
    auth: { jwt: internal }
    cache: { ttl: 1m }
  - name: cached
    service: up
    cache: { ttl: 1m }
`;
  const log = capturingLogger();
  lines = log.lines;
  running = await gateway(yaml, { logger: log.logger });
  gw = running.gw;
  url = running.url;
  laned = countLanes(gw);
});
after(async () => {
  await running.close();
  await up.close();
});

const get = (path: string, headers: http.OutgoingHttpHeaders = {}, method = "GET") =>
  request(url, { path, headers, method });

/** Headers that legitimately differ between two answers of the same entry. */
const PER_RESPONSE = new Set(["date", "x-request-id", "age"]);
const stable = (h: http.IncomingHttpHeaders) =>
  Object.fromEntries(Object.entries(h).filter(([k]) => !PER_RESPONSE.has(k)));

describe("cache fast lane", () => {
  test("only cache-only routes get a lane", () => {
    const names = [...gw.generation.lanes.keys()].map(
      (id) => gw.generation.routes.find((r) => r.id === id)?.config.name,
    );
    assert.deepEqual(names, ["cached"]);
  });

  for (const path of ["/same", "/bare"]) {
    test(`a lane hit equals serve()'s hit: status, headers, body (${path})`, async () => {
      const before = laned.get("cached") ?? 0;
      const miss = await get(path);
      assert.equal(miss.headers["x-cache"], "MISS");
      const lane = await get(path);
      assert.equal(laned.get("cached"), before + 1, "the second request was answered by the lane");
      const slow = await get(path, { "if-none-match": '"other"' });
      assert.equal(laned.get("cached"), before + 1, "a conditional request is declined");
      assert.equal(lane.status, 200);
      assert.equal(slow.status, 200);
      assert.equal(lane.headers["x-cache"], "HIT");
      assert.equal(lane.body, miss.body);
      assert.equal(slow.body, miss.body);
      assert.deepEqual(stable(lane.headers), stable(slow.headers));
      assert.match(String(lane.headers.age), /^\d+$/);
      assert.match(String(lane.headers["x-request-id"]), /^[0-9a-f-]{36}$/);
      assert.notEqual(lane.headers["x-request-id"], slow.headers["x-request-id"]);
    });
  }

  test("keeps a valid client X-Request-Id, as Fastify's genReqId does", async () => {
    await get("/rid");
    const r = await get("/rid", { "x-request-id": "abc.123" });
    assert.equal(r.headers["x-cache"], "HIT");
    assert.equal(r.headers["x-request-id"], "abc.123");
  });

  test("declines HEAD and Authorization: Fastify answers them", async () => {
    await get("/decline");
    await get("/decline", {}, "HEAD");
    const before = laned.get("cached") ?? 0;
    const head = await get("/decline", {}, "HEAD");
    assert.equal(head.headers["x-cache"], "HIT");
    assert.equal(head.body, "");
    const authz = await get("/decline", { authorization: "Bearer x" });
    assert.equal(authz.headers["x-cache"], "BYPASS");
    assert.equal(laned.get("cached") ?? 0, before);
  });

  test("a rate-limited cached route is never laned: the limit still answers", async () => {
    assert.equal((await get("/limited")).headers["x-cache"], "MISS");
    const second = await get("/limited");
    assert.equal(second.status, 429);
  });

  test("an authenticated cached route is never laned: no token is still 401", async () => {
    assert.equal((await get("/authed")).status, 401);
    assert.equal((await get("/authed")).status, 401);
    assert.equal(laned.get("authed"), undefined);
  });

  test("the lane's access line has the same fields as Fastify's", async () => {
    await get("/logged");
    const lane = await get("/logged");
    const slow = await get("/logged", { "if-none-match": '"other"' });
    await new Promise((r) => setImmediate(r));
    const line = (id: unknown) => lines.find((l) => l.msg === "request" && l.reqId === id);
    const a = line(lane.headers["x-request-id"]);
    const b = line(slow.headers["x-request-id"]);
    assert.ok(a && b, "both requests logged");
    assert.deepEqual(Object.keys(a).sort(), Object.keys(b).sort());
    for (const k of ["method", "path", "route", "statusCode", "bytes", "remoteAddress", "cache", "level"])
      assert.deepEqual(a[k], b[k], k);
    assert.equal(a.cache, "hit");
    assert.equal(a.bytes, Buffer.byteLength(lane.body));
    assert.equal(typeof a.responseTime, "number");
  });
});
