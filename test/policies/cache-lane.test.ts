/**
 * The cache's fast lanes (server.ts, plugins/cache.ts): fresh memory hits on
 * cache-only routes are answered before Fastify. These tests count the lane's
 * answers (a wrapper around the registered lane) and compare them with the
 * same entry served through Fastify (a non-matching If-None-Match declines the
 * lane, and serve() answers 200 HIT), so a lane that drifted from serve() fails.
 */
import assert from "node:assert/strict";
import http from "node:http";
import { after, before, describe, test } from "node:test";
import { parseConfig } from "../../src/config/load.js";
import type { Generation } from "../../src/generation.js";
import type { Gateway } from "../../src/server.js";
import { storeOf } from "../../src/store/index.js";
import {
  type Backend,
  backend,
  capturingLogger,
  countLanes,
  gateway,
  type Running,
  request,
} from "../helpers/index.js";
import { missing } from "../helpers/needs.js";
import { deleteKeys, SHARED_REDIS, uniquePrefix, within } from "../store/redis-helpers.js";

const noRedis = await missing("redis");

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

/**
 * The Redis lane waits for Redis before it knows whether it answers: it takes
 * the request, reads, and answers a fresh 200 itself or hands the request to
 * Fastify (server.ts's resume) with what it read. These tests count both
 * (a wrapper passing resume through) and the store's reads, and compare the
 * lane's answers and access lines with Fastify's for the same entry. The lane,
 * not Redis's latency, is under test: a Redis starved by a loaded machine is
 * waited for (store.timeout 2s) rather than counted as down.
 */
describe("cache fast lane on the Redis store", { skip: noRedis }, () => {
  let upR: Backend;
  let runningR: Running;
  let gwR: Gateway;
  let urlR: string;
  let linesR: Record<string, unknown>[] = [];
  let prefix: string;
  let yamlR: string;
  const taken = new Map<string, number>();
  const resumed = new Map<string, number>();
  let reads = 0;
  /** While set, every store read waits for it (a request caught mid-read). */
  let gate: Promise<void> | undefined;
  /** Resolves when the next store read starts. */
  let onRead: (() => void) | undefined;

  const bump = (m: Map<string, number>, k: string) => m.set(k, (m.get(k) ?? 0) + 1);

  /** Count what each lane took and what it gave back; every read of the generation's store. */
  function watch(gen: Generation) {
    for (const [id, lane] of gen.lanes)
      gen.lanes.set(id, (req, res, st, resume) => {
        const name = st.route.name;
        const back =
          resume &&
          ((rq: http.IncomingMessage, rs: http.ServerResponse) => {
            bump(resumed, name);
            resume(rq, rs);
          });
        const took = lane(req, res, st, back);
        if (took) bump(taken, name);
        return took;
      });
    const store = storeOf(gen)!;
    const get = store.get.bind(store);
    store.get = async (key: string) => {
      reads++;
      onRead?.();
      if (gate !== undefined) await gate;
      return get(key);
    };
  }

  before(async () => {
    upR = await backend("up", (req, res) => {
      if (req.url?.startsWith("/bare")) {
        res.write("bare ");
        res.end("body");
        return;
      }
      if (req.url?.startsWith("/missing")) {
        res.writeHead(404, { "content-type": "text/plain", "cache-control": "max-age=60" });
        res.end("no such thing");
        return;
      }
      res.writeHead(200, { "content-type": "text/plain", etag: '"e1"', "x-up": "1" });
      res.end(`hello ${req.url}`);
    });
    prefix = uniquePrefix();
    yamlR = `
store: { type: redis, url: "${SHARED_REDIS}", prefix: "${prefix}", onError: deny, timeout: 2s }
services: { up: { targets: [${upR.url}] } }
routes:
  - name: limited
    match: { path: /limited }
    service: up
    rateLimit: { max: 100, window: 1m }
    cache: { ttl: 1m, coalesce: true }
  - name: cached
    service: up
    cache: { ttl: 1m }
`;
    const log = capturingLogger();
    linesR = log.lines;
    runningR = await gateway(yamlR, { logger: log.logger });
    gwR = runningR.gw;
    urlR = runningR.url;
    watch(gwR.generation);
  });
  after(async () => {
    await runningR.close();
    await upR.close();
    await deleteKeys(prefix);
  });

  const getR = (path: string, headers: http.OutgoingHttpHeaders = {}, method = "GET") =>
    request(urlR, { path, headers, method });
  const count = (m: Map<string, number>) => m.get("cached") ?? 0;

  test("only cache-only routes get a lane, on Redis too", () => {
    const names = [...gwR.generation.lanes.keys()].map(
      (id) => gwR.generation.routes.find((r) => r.id === id)?.config.name,
    );
    assert.deepEqual(names, ["cached"]);
  });

  for (const path of ["/same", "/bare"]) {
    test(`a Redis lane hit equals serve()'s hit: status, headers, body (${path})`, async () => {
      const miss = await getR(path);
      assert.equal(miss.headers["x-cache"], "MISS");
      const [t0, r0, n0] = [count(taken), count(resumed), reads];
      const lane = await getR(path);
      assert.deepEqual([count(taken) - t0, count(resumed) - r0], [1, 0], "answered by the lane itself");
      assert.equal(reads - n0, 1, "one read");
      const slow = await getR(path, { "if-none-match": '"other"' });
      assert.equal(count(taken) - t0, 1, "a conditional request is declined at once");
      assert.equal(lane.status, 200);
      assert.equal(slow.status, 200);
      assert.equal(lane.headers["x-cache"], "HIT");
      assert.equal(slow.headers["x-cache"], "HIT");
      assert.equal(lane.body, miss.body);
      assert.equal(slow.body, miss.body);
      assert.deepEqual(stable(lane.headers), stable(slow.headers));
      assert.match(String(lane.headers.age), /^\d+$/);
      assert.match(String(lane.headers["x-request-id"]), /^[0-9a-f-]{36}$/);
    });
  }

  test("a miss goes to Fastify with what the lane read: Redis is asked once, the answer is a MISS", async () => {
    const [t0, r0, n0, hits] = [count(taken), count(resumed), reads, upR.hits];
    const r = await getR("/fresh-miss");
    assert.deepEqual([r.status, r.headers["x-cache"]], [200, "MISS"]);
    assert.deepEqual([count(taken) - t0, count(resumed) - r0], [1, 1]);
    assert.equal(reads - n0, 1, "cacheLookup took the lane's read instead of reading again");
    assert.equal(upR.hits - hits, 1);
    await new Promise((ok) => setImmediate(ok));
    const lines = linesR.filter((l) => l.msg === "request" && l.reqId === r.headers["x-request-id"]);
    assert.deepEqual(
      lines.map((l) => [l.statusCode, l.cache]),
      [[200, "miss"]],
      "one access line, Fastify's",
    );
    assert.equal((await getR("/fresh-miss")).headers["x-cache"], "HIT", "and the answer was stored");
  });

  test("a stored entry the lane does not answer (a 404) is served by serve() from the lane's read", async () => {
    assert.deepEqual((await getR("/missing")).headers["x-cache"], "MISS");
    const [t0, r0, n0, hits] = [count(taken), count(resumed), reads, upR.hits];
    const r = await getR("/missing");
    assert.deepEqual([r.status, r.headers["x-cache"], r.body], [404, "HIT", "no such thing"]);
    assert.deepEqual([count(taken) - t0, count(resumed) - r0, reads - n0], [1, 1, 1]);
    assert.equal(upR.hits, hits);
  });

  test("keeps a valid client X-Request-Id; declines HEAD and Authorization at once", async () => {
    await getR("/rid");
    const r = await getR("/rid", { "x-request-id": "abc.123" });
    assert.deepEqual([r.headers["x-cache"], r.headers["x-request-id"]], ["HIT", "abc.123"]);
    await getR("/rid", {}, "HEAD"); // HEAD has its own key (the method is in it)
    const t0 = count(taken);
    const head = await getR("/rid", {}, "HEAD");
    assert.deepEqual([head.headers["x-cache"], head.body], ["HIT", ""]);
    assert.equal((await getR("/rid", { authorization: "Bearer x" })).headers["x-cache"], "BYPASS");
    assert.equal(count(taken), t0);
  });

  test("the Redis lane's access line has the same fields as Fastify's", async () => {
    await getR("/logged");
    const lane = await getR("/logged");
    const slow = await getR("/logged", { "if-none-match": '"other"' });
    await new Promise((r) => setImmediate(r));
    const line = (id: unknown) => linesR.find((l) => l.msg === "request" && l.reqId === id);
    const a = line(lane.headers["x-request-id"]);
    const b = line(slow.headers["x-request-id"]);
    assert.ok(a && b, "both requests logged");
    assert.deepEqual(Object.keys(a).sort(), Object.keys(b).sort());
    for (const k of ["method", "path", "route", "statusCode", "bytes", "remoteAddress", "cache", "level"])
      assert.deepEqual(a[k], b[k], k);
    assert.equal(a.cache, "hit");
    assert.equal(a.bytes, Buffer.byteLength(lane.body));
  });

  test("a client that leaves during the read: one 499 line, nothing handed on", async () => {
    const [r0, hits] = [count(resumed), upR.hits];
    let open!: () => void;
    gate = new Promise((ok) => {
      open = ok;
    });
    const reading = new Promise<void>((ok) => {
      onRead = ok;
    });
    const req = http.get(`${urlR}/gone`);
    req.on("error", () => {});
    await reading;
    req.destroy();
    const logged = () => linesR.filter((l) => l.msg === "request" && l.path === "/gone");
    const before = logged().length;
    while (logged().length === before) await new Promise((r) => setImmediate(r));
    gate = undefined;
    onRead = undefined;
    open();
    // The read completes (a miss); the lane finds the response closed and leaves it.
    await getR("/gone");
    const lines = logged().slice(before);
    assert.deepEqual(
      lines.map((l) => [l.statusCode, l.cache]),
      [
        [499, undefined],
        [200, "miss"],
      ],
    );
    assert.equal(count(resumed) - r0, 1, "only the second request was handed to Fastify");
    assert.equal(upR.hits - hits, 1, "the upstream saw only the second one");
  });

  test("Fastify's lookup (no lane): a client that leaves during the read leads no coalesced miss", async () => {
    let open!: () => void;
    gate = new Promise((ok) => {
      open = ok;
    });
    const reading = new Promise<void>((ok) => {
      onRead = ok;
    });
    const req = http.get(`${urlR}/limited/left`);
    req.on("error", () => {});
    await reading;
    req.destroy();
    const logged = () => linesR.filter((l) => l.msg === "request" && l.path === "/limited/left");
    while (logged().length === 0) await new Promise((r) => setImmediate(r));
    gate = undefined;
    onRead = undefined;
    open();
    // Had the gone request led a flight, this miss would wait for an answer that never comes.
    const r = await within(3000, getR("/limited/left"));
    assert.deepEqual([r.status, r.headers["x-cache"]], [200, "MISS"]);
  });

  test("a reload during the read: a request handed on after it is matched again, in the new generation", async () => {
    let open!: () => void;
    gate = new Promise((ok) => {
      open = ok;
    });
    const reading = new Promise<void>((ok) => {
      onRead = ok;
    });
    const pending = getR("/during-reload");
    await reading;
    gate = undefined;
    onRead = undefined;
    // A route inserted before `cached`: the old match's route id now names another route.
    const next = yamlR.replace(
      "  - name: cached",
      "  - { name: teapot, match: { path: /teapot }, respond: { status: 418 } }\n  - name: cached",
    );
    await gwR.reload(
      parseConfig(`version: 1\nshutdownTimeout: 1s\nlisten: [{ port: 0, host: 127.0.0.1 }]\n${next}`),
    );
    open();
    const r = await pending;
    assert.deepEqual([r.status, r.headers["x-cache"], r.body], [200, "MISS", "hello /during-reload"]);
    watch(gwR.generation);
  });
});
