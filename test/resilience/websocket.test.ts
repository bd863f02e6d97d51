import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { after, before, describe, test } from "node:test";
import { SignJWT } from "jose";
import { parseConfig } from "../../src/config/load.js";
import { type Backend, backend, gateway, type Running, request } from "../helpers/index.js";
import { encodeFrame, until, type WsBackend, type WsOpen, wsConnect, wsEchoBackend } from "./helpers.js";

const SECRET = "a-test-secret-that-is-long-enough-for-hs256";

function upgraded(o: WsOpen): Extract<WsOpen, { upgraded: true }> {
  if (!o.upgraded) assert.fail(`not upgraded: ${o.status} ${o.body}`);
  return o;
}

const yaml = (echo: WsBackend, plain: Backend) => `
jwt:
  internal: { secret: ${SECRET}, algorithms: [HS256] }
services:
  echo: { targets: [${echo.url}] }
  plain: { targets: [${plain.url}] }
routes:
  - { name: ws, match: { path: /ws }, service: echo, websocket: true, rewrite: { stripPrefix: /ws } }
  - { name: secure, match: { path: /secure }, service: echo, websocket: true, auth: { jwt: internal } }
  - { name: plain, match: { path: /plain }, service: plain }
`;

describe("WebSocket through the gateway", { timeout: 30_000 }, () => {
  let echo: WsBackend;
  let plain: Backend;
  let gw: Running;
  before(async () => {
    echo = await wsEchoBackend("b");
    plain = await backend("plain");
    gw = await gateway(yaml(echo, plain));
  });
  after(async () => {
    await gw.close();
    await echo.close();
    await plain.close();
  });

  test("echo: frames pass both ways untouched; subprotocol and headers forwarded", async () => {
    const ws = upgraded(
      await wsConnect(gw.url, "/ws/chat?room=1", {
        "sec-websocket-protocol": "chat, superchat",
        "sec-websocket-extensions": "x-test; p=1",
        "x-custom": "kept",
      }),
    );
    assert.equal(ws.res.statusCode, 101);
    assert.equal(ws.res.headers["sec-websocket-protocol"], "chat", "the target's choice reaches the client");
    assert.equal(ws.res.headers["x-backend"], "b");
    assert.ok(ws.res.headers["x-request-id"]);
    const h = echo.lastHeaders;
    assert.equal(echo.lastUrl, "/chat?room=1", "rewrite and query apply to the handshake");
    assert.equal(h["sec-websocket-protocol"], "chat, superchat");
    assert.equal(h["sec-websocket-extensions"], "x-test; p=1");
    assert.equal(h["x-custom"], "kept");
    assert.equal(h.upgrade, "websocket");
    assert.equal(h["x-forwarded-for"], "127.0.0.1");
    assert.equal(h["x-forwarded-proto"], "http");
    assert.equal(h["x-request-id"], ws.res.headers["x-request-id"]);

    ws.socket.write(encodeFrame(0x1, "hello", true));
    const f = await ws.reader.next();
    assert.equal(f.opcode, 0x1);
    assert.equal(f.payload.toString(), "b:hello");

    // A 300 kB binary message crosses in many TCP chunks and comes back byte for byte.
    const big = randomBytes(300_000);
    ws.socket.write(encodeFrame(0x2, big, true));
    const g = await ws.reader.next(5000);
    assert.equal(g.opcode, 0x2);
    assert.ok(g.payload.subarray(2).equals(big));

    const target = gw.gw.generation.services.get("echo")!.targets[0];
    assert.equal(target.inFlight, 1, "an open tunnel holds its target lease");
    ws.socket.write(encodeFrame(0x8, Buffer.from([0x03, 0xe8]), true));
    const c = await ws.reader.next();
    assert.equal(c.opcode, 0x8, "the target's Close comes back");
    await until(() => target.inFlight === 0, 2000);
  });

  test("a plain request on a websocket route is proxied as usual", async () => {
    const r = await request(gw.url, { path: "/ws/x" });
    assert.equal(r.status, 200);
    assert.equal(r.body, "b plain");
  });

  test("refusals on the socket: non-websocket route 400, no route 404, target's refusal relayed", async () => {
    const wrong = await wsConnect(gw.url, "/plain");
    assert.equal(wrong.upgraded, false);
    if (wrong.upgraded) return;
    assert.equal(wrong.status, 400);
    assert.equal(JSON.parse(wrong.body).code, "SY_BAD_REQUEST");
    assert.match(JSON.parse(wrong.body).message, /WebSocket/);
    assert.equal(plain.hits, 0, "the non-websocket route's target was never contacted");

    const none = await wsConnect(gw.url, "/nothing-here");
    assert.ok(!none.upgraded && none.status === 404 && JSON.parse(none.body).code === "SY_NO_ROUTE");

    const refused = await wsConnect(gw.url, "/ws/refuse");
    assert.ok(!refused.upgraded && refused.status === 403 && refused.body === "refused");
  });

  test("another Upgrade (h2c) is answered as plain HTTP/1.1", async () => {
    const r = await request(gw.url, { path: "/plain", headers: { connection: "Upgrade", upgrade: "h2c" } });
    assert.equal(r.status, 200);
    assert.equal(r.json().name, "plain");
    assert.equal(r.headers.connection, "close");
  });

  test("JWT required at upgrade: no token → 401 before any target is dialled; a valid one → 101", async () => {
    const before = echo.upgrades;
    const denied = await wsConnect(gw.url, "/secure");
    assert.ok(!denied.upgraded);
    if (denied.upgraded) return;
    assert.equal(denied.status, 401);
    assert.equal(JSON.parse(denied.body).code, "SY_AUTH_MISSING");
    assert.match(String(denied.headers["www-authenticate"]), /^Bearer/);
    const bad = await wsConnect(gw.url, "/secure", { authorization: "Bearer not.a.token" });
    assert.ok(!bad.upgraded && bad.status === 401);
    assert.equal(echo.upgrades, before, "refused upgrades never reach the target");

    const token = await new SignJWT({ sub: "u1" })
      .setProtectedHeader({ alg: "HS256" })
      .setExpirationTime("5m")
      .sign(new TextEncoder().encode(SECRET));
    const ws = upgraded(await wsConnect(gw.url, "/secure", { authorization: `Bearer ${token}` }));
    ws.socket.write(encodeFrame(0x1, "authed", true));
    assert.equal((await ws.reader.next()).payload.toString(), "b:authed");
    ws.socket.destroy();
  });
});

describe("WebSocket shutdown and reload", { timeout: 30_000 }, () => {
  test("on shutdown, after the drain period: 1012 to the client, 1001 to the target", async () => {
    const echo = await wsEchoBackend("b");
    const plain = await backend("plain");
    const gw = await gateway(yaml(echo, plain));
    try {
      const ws = upgraded(await wsConnect(gw.url, "/ws"));
      ws.socket.write(encodeFrame(0x1, "before", true));
      assert.equal((await ws.reader.next()).payload.toString(), "b:before");
      const t0 = Date.now();
      const closing = gw.gw.close(300);
      const f = await ws.reader.next(3000);
      const took = Date.now() - t0;
      assert.equal(f.opcode, 0x8);
      assert.equal(f.payload.readUInt16BE(0), 1012);
      assert.ok(took >= 280, `not before the drain period: ${took}ms`);
      await closing;
      await until(() => echo.closes.length === 1, 2000);
      assert.deepEqual(echo.closes, [1001]);
    } finally {
      await echo.close();
      await plain.close();
    }
  });

  test("on reload, the old generation's tunnels keep working through the drain period, then get 1012", async () => {
    const echo = await wsEchoBackend("b");
    const plain = await backend("plain");
    const gw = await gateway(yaml(echo, plain));
    try {
      const ws = upgraded(await wsConnect(gw.url, "/ws"));
      const text = `listen: [{ port: 0, host: 127.0.0.1 }]\n${yaml(echo, plain)}`;
      await gw.gw.reload(parseConfig(`version: 1\nshutdownTimeout: 400ms\n${text}`));
      ws.socket.write(encodeFrame(0x1, "after reload", true));
      assert.equal((await ws.reader.next()).payload.toString(), "b:after reload");
      const f = await ws.reader.next(3000);
      assert.equal(f.opcode, 0x8);
      assert.equal(f.payload.readUInt16BE(0), 1012);
      // New upgrades go to the new generation.
      const fresh = upgraded(await wsConnect(gw.url, "/ws"));
      fresh.socket.destroy();
    } finally {
      await gw.close();
      await echo.close();
      await plain.close();
    }
  });
});
