import assert from "node:assert/strict";
import type net from "node:net";
import { Writable } from "node:stream";
import { after, before, describe, test } from "node:test";
import Fastify from "fastify";
import pino from "pino";
import { build, genReqId, switchyard } from "../../src/app.js";
import { parseConfig } from "../../src/config/load.js";
import {
  type Backend,
  backend,
  capturingLogger,
  gateway,
  type Running,
  rawExchange,
  request,
} from "../helpers/index.js";

describe("edges: slow clients, resets, embedding, access log", () => {
  let echo: Backend;
  let reset: Backend;
  let gw: Running;
  before(async () => {
    echo = await backend("echo");
    reset = await backend("reset", (req) => req.socket.destroy());
    gw = await gateway(`
listen: [{ port: 0, host: 127.0.0.1, timeouts: { headers: 300ms, request: 600ms } }]
services:
  echo: { targets: [${echo.url}] }
  reset: { targets: [${reset.url}] }
routes:
  - { name: reset, match: { path: /reset }, service: reset }
  - { name: echo, service: echo }
`);
  });
  after(async () => {
    await gw.close();
    await echo.close();
    await reset.close();
  });

  test("headers that arrive too slowly: 408 SY_REQUEST_TIMEOUT, connection closed", async () => {
    const t0 = Date.now();
    const raw = await rawExchange(gw.port, "GET /x HTTP/1.1\r\nHost: a\r\n");
    assert.match(raw, /^HTTP\/1\.1 408 /);
    assert.match(raw, /"code":"SY_REQUEST_TIMEOUT"/);
    assert.ok(Date.now() - t0 < 4000);
  });

  test("a body that arrives too slowly: 408 SY_REQUEST_TIMEOUT under the request's own id", async () => {
    const t0 = Date.now();
    const raw = await rawExchange(gw.port, "POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nab");
    assert.match(raw, /^HTTP\/1\.1 408 /);
    const id = /\r\nX-Request-Id: ([^\r]+)\r\n/i.exec(raw)?.[1];
    assert.ok(id, "the 408 carries X-Request-Id");
    const body = JSON.parse(raw.slice(raw.indexOf("\r\n\r\n") + 4));
    assert.equal(body.code, "SY_REQUEST_TIMEOUT");
    assert.equal(body.requestId, id);
    assert.ok(Date.now() - t0 < 4000);
  });

  test("an upstream that resets the connection: 502 SY_UPSTREAM_RESET", async () => {
    const r = await request(gw.url, { path: "/reset" });
    assert.equal(r.status, 502);
    assert.equal(r.json().code, "SY_UPSTREAM_RESET");
  });

  test("embedding: app.register(switchyard, { config }) inside a team's own Fastify app", async () => {
    const app = Fastify({ genReqId });
    app.get("/own", async () => ({ mine: true }));
    const config = parseConfig(
      `version: 1\nlisten: [{ port: 0 }]\nservices: { e: { targets: [${echo.url}] } }\nroutes: [{ name: e, match: { path: /api }, service: e }]\n`,
    );
    await app.register(switchyard, { config });
    await app.listen({ port: 0, host: "127.0.0.1" });
    const url = `http://127.0.0.1:${(app.server.address() as net.AddressInfo).port}`;
    try {
      assert.deepEqual((await request(url, { path: "/own" })).json(), { mine: true });
      assert.equal((await request(url, { path: "/api/x" })).json().name, "echo");
      assert.equal((await request(url, { path: "/nope" })).json().code, "SY_NO_ROUTE");
    } finally {
      await app.close();
    }
  });

  test("one JSON access line per request with the SPEC's fields", async () => {
    const lines: Record<string, unknown>[] = [];
    const sink = new Writable({
      write(chunk, _enc, cb) {
        for (const l of String(chunk).split("\n").filter(Boolean)) lines.push(JSON.parse(l));
        cb();
      },
    });
    const config = parseConfig(
      `version: 1\nlisten: [{ port: 0 }]\nservices: { e: { targets: [${echo.url}] } }\nroutes: [{ name: api, service: e }]\n`,
    );
    const app = await build(config, { logger: pino(sink) });
    await app.listen({ port: 0, host: "127.0.0.1" });
    const url = `http://127.0.0.1:${(app.server.address() as net.AddressInfo).port}`;
    const r = await request(url, { path: "/hello?x=1" });
    await app.close();
    const access = lines.filter((l) => l.msg === "request");
    assert.equal(access.length, 1);
    const a = access[0];
    assert.equal(a.reqId, r.headers["x-request-id"]);
    assert.equal(a.method, "GET");
    assert.equal(a.path, "/hello");
    assert.equal(a.route, "api");
    assert.equal(a.service, "e");
    assert.equal(a.target, echo.url);
    assert.equal(a.statusCode, 200);
    assert.equal(a.remoteAddress, "127.0.0.1");
    assert.equal(typeof a.responseTime, "number");
    assert.equal(a.bytes, Number(r.headers["content-length"]));
  });

  test("a request no route takes is logged with the normalised path, never its query", async () => {
    const log = capturingLogger();
    const g = await gateway(
      `services: { e: { targets: [${echo.url}] } }\nroutes: [{ name: api, match: { path: /api }, service: e }]\n`,
      { logger: log.logger },
    );
    try {
      const r = await request(g.url, { path: "/nope/../zz?token=secret" });
      assert.equal(r.status, 404);
      await new Promise((ok) => setImmediate(ok));
      const line = log.lines.find((l) => l.msg === "request");
      assert.ok(line, "logged");
      assert.equal(line.path, "/zz");
      assert.equal(line.statusCode, 404);
      assert.equal(typeof line.responseTime, "number");
      assert.doesNotMatch(JSON.stringify(log.lines), /secret/);
    } finally {
      await g.close();
    }
  });
});
