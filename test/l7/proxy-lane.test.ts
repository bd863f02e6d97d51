/**
 * The forwarding fast lane (plugins/proxy-lane.ts): body-less requests on
 * routes without a cache are forwarded before Fastify (test/l7/policy-lane.test.ts
 * compares every policy on it). Each test counts the lane's
 * answers (a wrapper around the registered lane) and compares them with the
 * same request taken by Fastify (`Content-Length: 0` declines the lane), so a
 * lane that drifted from the Fastify path fails here.
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
  deadPort,
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
  up = await backend("up");
  const dead = await deadPort();
  const yaml = `
services:
  up: { targets: [${up.url}] }
  down: { targets: ["http://127.0.0.1:${dead}"], retries: { attempts: 0 } }
  half: { targets: ["http://127.0.0.1:${dead}", "${up.url}"], balancer: round-robin }
routes:
  - name: transformed
    match: { path: /t }
    service: up
    transform: { request: { headers: { set: { x-t: "1" } } } }
  - name: fixed
    match: { path: /fixed }
    respond: { status: 204 }
  - name: down
    match: { path: /down }
    service: down
  - name: half
    match: { path: /half }
    service: half
  - name: plain
    service: up
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

const get = (path: string, headers: http.OutgoingHttpHeaders = {}) => request(url, { path, headers });
/** The same request, declined by the lane (an empty body): Fastify's answer. */
const viaFastify = (path: string, headers: http.OutgoingHttpHeaders = {}) =>
  request(url, { path, headers: { ...headers, "content-length": "0" } });
const count = (name: string) => laned.get(name) ?? 0;

const PER_RESPONSE = new Set(["date", "x-request-id", "content-length"]);
const stable = (h: http.IncomingHttpHeaders) =>
  Object.fromEntries(Object.entries(h).filter(([k]) => !PER_RESPONSE.has(k)));

describe("forwarding fast lane", () => {
  test("every route but respond, websocket and cache ones gets a lane (policies run on it)", () => {
    const names = [...gw.generation.lanes.keys()].map(
      (id) => gw.generation.routes.find((r) => r.id === id)?.config.name,
    );
    assert.deepEqual(names.sort(), ["down", "half", "plain", "transformed"]);
  });

  test("a laned answer equals Fastify's, and the upstream sees the same forwarded headers", async () => {
    const before = count("plain");
    const a = await get("/x?q=1", {
      "x-request-id": "lane-1",
      connection: "keep-alive, x-drop",
      "x-drop": "1",
    });
    assert.equal(count("plain"), before + 1, "answered by the lane");
    const b = await viaFastify("/x?q=1", {
      "x-request-id": "fast-1",
      connection: "keep-alive, x-drop",
      "x-drop": "1",
    });
    assert.equal(count("plain"), before + 1, "declined with a body");
    assert.equal(a.status, 200);
    assert.deepEqual(stable(a.headers), stable(b.headers));
    assert.equal(a.headers["x-request-id"], "lane-1");
    const sa = a.json<{ url: string; headers: Record<string, string> }>();
    const sb = b.json<{ url: string; headers: Record<string, string> }>();
    assert.equal(sa.url, "/x?q=1");
    assert.equal(sa.headers["x-request-id"], "lane-1");
    assert.equal(sa.headers["x-drop"], undefined, "a field Connection names stays behind");
    assert.equal(sa.headers["x-forwarded-for"], "127.0.0.1");
    const { "x-request-id": _a, "content-length": _ca, traceparent: ta, ...ha } = sa.headers;
    const { "x-request-id": _b, "content-length": _cb, traceparent: tb, ...hb } = sb.headers;
    assert.deepEqual(ha, hb);
    // Each made its own traceparent (no client one): new per request, same form (issue 14).
    for (const t of [ta, tb]) assert.match(t, /^00-[0-9a-f]{32}-[0-9a-f]{16}-00$/);
  });

  test("a path whose encoded bytes are not UTF-8 is 400 SY_BAD_PATH on both paths, never forwarded", async () => {
    const hits = up.hits;
    for (const path of ["/x%C0%AF", "/%FF", "/a%E2%82"]) {
      const a = await get(path);
      const b = await viaFastify(path);
      assert.equal(a.status, 400, path);
      assert.equal(a.json().code, "SY_BAD_PATH", path);
      assert.equal(b.status, 400, path);
    }
    assert.equal(up.hits, hits, "nothing reached the upstream");
  });

  test("a policy route is laned and its transform applies there", async () => {
    const before = count("transformed");
    const r = await get("/t");
    assert.equal(r.json<{ headers: Record<string, string> }>().headers["x-t"], "1");
    assert.equal(count("transformed"), before + 1);
  });

  test("an upstream failure is the same SPEC JSON error as through Fastify", async () => {
    const before = count("down");
    const a = await get("/down");
    assert.equal(count("down"), before + 1);
    const b = await viaFastify("/down");
    assert.equal(a.status, 502);
    assert.equal(b.status, 502);
    assert.deepEqual(stable(a.headers), stable(b.headers));
    const ja = a.json();
    const jb = b.json();
    assert.equal(ja.requestId, a.headers["x-request-id"]);
    assert.deepEqual({ ...ja, requestId: 0 }, { ...jb, requestId: 0 });
    assert.equal(ja.code, "SY_UPSTREAM_CONNECT");
  });

  test("a connect failure is retried on the next target inside the lane", async () => {
    const before = count("half");
    const answers = await Promise.all([get("/half"), get("/half"), get("/half"), get("/half")]);
    assert.equal(count("half"), before + 4);
    for (const r of answers) assert.equal(r.status, 200);
  });

  test("the lane's access line has the same fields as Fastify's", async () => {
    const a = await get("/logged");
    const b = await viaFastify("/logged");
    await new Promise((r) => setImmediate(r));
    const line = (id: unknown) => lines.find((l) => l.msg === "request" && l.reqId === id);
    const la = line(a.headers["x-request-id"]);
    const lb = line(b.headers["x-request-id"]);
    assert.ok(la && lb, "both requests logged");
    assert.deepEqual(Object.keys(la).sort(), Object.keys(lb).sort());
    for (const k of ["method", "path", "route", "service", "target", "statusCode", "bytes", "remoteAddress"])
      assert.deepEqual(la[k], lb[k], k);
  });

  test("an upstream failure's access line is the same on both paths: 502 and the error body's bytes", async () => {
    const a = await get("/down");
    const b = await viaFastify("/down");
    await new Promise((r) => setImmediate(r));
    const line = (id: unknown) => lines.find((l) => l.msg === "request" && l.reqId === id);
    const la = line(a.headers["x-request-id"]);
    const lb = line(b.headers["x-request-id"]);
    assert.ok(la && lb, "both requests logged");
    assert.equal(la.statusCode, 502);
    assert.equal(la.bytes, Buffer.byteLength(a.body));
    for (const k of ["statusCode", "bytes", "route", "service"]) assert.deepEqual(la[k], lb[k], k);
  });

  test("an unexpected error is 500 SY_INTERNAL on both paths, with nothing of the error in the body", async () => {
    const svc = gw.generation.services.get("up")!;
    const pick = svc.pick;
    svc.pick = () => {
      throw new Error("boom /secret/path");
    };
    try {
      const before = count("plain");
      const a = await get("/boom");
      assert.equal(count("plain"), before + 1, "the lane answered");
      const b = await viaFastify("/boom");
      for (const r of [a, b]) {
        assert.equal(r.status, 500);
        assert.equal(r.json().code, "SY_INTERNAL");
        assert.doesNotMatch(r.body, /boom|secret|at /);
      }
    } finally {
      svc.pick = pick;
    }
    assert.equal((await get("/after")).status, 200, "the gateway still serves");
  });
});
