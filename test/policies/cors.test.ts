/**
 * CORS at the edge against a real backend: preflights answered with 204 and
 * never forwarded (not even to auth), actual responses get CORS headers only
 * for a listed origin, whatever the upstream said.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { SignJWT } from "jose";
import { type Backend, backend, gateway, type Running, request } from "../helpers/index.js";

const SECRET = "cors-test-secret-0123456789abcdefghij";
const APP = "https://app.example.com";

describe("cors", () => {
  let echo: Backend;
  let lax: Backend;
  let gw: Running;
  const preflight = (path: string, origin: string, extra: Record<string, string> = {}) =>
    request(gw.url, {
      method: "OPTIONS",
      path,
      headers: { origin, "access-control-request-method": "POST", ...extra },
    });
  const corsHeaders = (h: Record<string, unknown>) =>
    Object.keys(h).filter((k) => k.startsWith("access-control-"));

  before(async () => {
    echo = await backend("echo");
    // an upstream that allows everyone by itself: the route's policy must win
    lax = await backend("lax", (req, res) => {
      res.setHeader("access-control-allow-origin", "*");
      res.setHeader("access-control-allow-credentials", "true");
      res.setHeader("vary", "Accept-Encoding");
      res.end(JSON.stringify({ method: req.method }));
    });
    gw = await gateway(`
jwt:
  internal: { secret: "${SECRET}" }
services:
  echo: { targets: [${echo.url}] }
  lax: { targets: [${lax.url}] }
routes:
  - name: api
    match: { path: /api }
    service: lax
    auth: { jwt: internal }
    cors:
      origins: ["${APP}", "https://Admin.Example.com:443"]
      credentials: true
      methods: [GET, POST]
      headers: [content-type, authorization]
      maxAge: 10m
  - name: public
    match: { path: /public, methods: [GET, OPTIONS] }
    service: echo
    cors: { origins: ["*"] }
  - name: writes
    match: { path: /writes, methods: [POST] }
    service: echo
    cors: { origins: ["${APP}"] }
`);
  });
  after(async () => {
    await gw.close();
    await echo.close();
    await lax.close();
  });

  test("preflight from a listed origin: 204 at the edge, before auth, never forwarded", async () => {
    const hits = lax.hits;
    const r = await preflight("/api/orders", APP, { "access-control-request-headers": "content-type" });
    assert.equal(r.status, 204);
    assert.equal(r.body, "");
    assert.equal(r.headers["access-control-allow-origin"], APP);
    assert.equal(r.headers["access-control-allow-credentials"], "true");
    assert.equal(r.headers["access-control-allow-methods"], "GET,POST");
    assert.equal(r.headers["access-control-allow-headers"], "content-type,authorization");
    assert.equal(r.headers["access-control-max-age"], "600");
    assert.match(String(r.headers.vary), /\bOrigin\b/);
    assert.ok(r.headers["x-request-id"]);
    assert.equal(lax.hits, hits, "the preflight never reached the upstream");
  });

  test("origins compare in their canonical form (scheme and host case, default port)", async () => {
    const r = await preflight("/api", "https://admin.example.com");
    assert.equal(r.headers["access-control-allow-origin"], "https://admin.example.com");
  });

  test("preflight from another origin: 204 without any CORS header, never forwarded", async () => {
    const hits = lax.hits;
    for (const origin of ["https://evil.example", "https://app.example.com.evil.example", "null"]) {
      const r = await preflight("/api", origin);
      assert.equal(r.status, 204);
      assert.deepEqual(corsHeaders(r.headers), [], origin);
    }
    assert.equal(lax.hits, hits);
  });

  test("actual request: a listed origin gets the route's headers, replacing the upstream's", async () => {
    const t = await new SignJWT({ sub: "u" })
      .setProtectedHeader({ alg: "HS256" })
      .sign(new TextEncoder().encode(SECRET));
    const r = await request(gw.url, { path: "/api", headers: { origin: APP, authorization: `Bearer ${t}` } });
    assert.equal(r.status, 200);
    assert.equal(r.headers["access-control-allow-origin"], APP);
    assert.equal(r.headers["access-control-allow-credentials"], "true");
    assert.equal(r.headers.vary, "Accept-Encoding, Origin", "the upstream's Vary is kept and Origin added");
  });

  test("actual request from another origin: no CORS headers even though the upstream sent some", async () => {
    const t = await new SignJWT({ sub: "u" })
      .setProtectedHeader({ alg: "HS256" })
      .sign(new TextEncoder().encode(SECRET));
    const r = await request(gw.url, {
      path: "/api",
      headers: { origin: "https://evil.example", authorization: `Bearer ${t}` },
    });
    assert.equal(r.status, 200);
    assert.deepEqual(corsHeaders(r.headers), []);
  });

  test("the gateway's own errors carry CORS headers too (a browser can read the 401)", async () => {
    const r = await request(gw.url, { path: "/api", headers: { origin: APP } });
    assert.equal(r.status, 401);
    assert.equal(r.headers["access-control-allow-origin"], APP);
  });

  test("origins '*': any origin, no credentials; requested headers are reflected when none are listed", async () => {
    const r = await preflight("/public", "https://anyone.example", {
      "access-control-request-headers": "x-a, x-b",
    });
    assert.equal(r.status, 204);
    assert.equal(r.headers["access-control-allow-origin"], "*");
    assert.equal(r.headers["access-control-allow-credentials"], undefined);
    assert.equal(r.headers["access-control-allow-headers"], "x-a, x-b");
    assert.equal(r.headers["access-control-allow-methods"], "GET,OPTIONS", "the route's methods by default");
    const actual = await request(gw.url, { path: "/public", headers: { origin: "https://anyone.example" } });
    assert.equal(actual.headers["access-control-allow-origin"], "*");
  });

  test("a preflight reaches the route its announced method would take, though OPTIONS is not listed", async () => {
    const hits = echo.hits;
    const r = await preflight("/writes", APP);
    assert.equal(r.status, 204);
    assert.equal(r.headers["access-control-allow-origin"], APP);
    assert.equal(echo.hits, hits, "answered at the edge");
    const plain = await request(gw.url, { method: "OPTIONS", path: "/writes", headers: { origin: APP } });
    assert.equal(plain.status, 404, "a non-preflight OPTIONS still needs the route to list it");
  });

  test("an OPTIONS that is not a preflight goes to the upstream like any request", async () => {
    const hits = echo.hits;
    const r = await request(gw.url, { method: "OPTIONS", path: "/public", headers: { origin: APP } });
    assert.equal(r.status, 200);
    assert.equal(r.json().method, "OPTIONS");
    assert.equal(echo.hits, hits + 1);
    // Access-Control-Request-Method without an Origin is not a CORS preflight either
    const noOrigin = await request(gw.url, {
      method: "OPTIONS",
      path: "/public",
      headers: { "access-control-request-method": "GET" },
    });
    assert.equal(noOrigin.status, 200);
    assert.equal(echo.hits, hits + 2);
  });
});
