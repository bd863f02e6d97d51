/**
 * Request and response transforms against a real backend: header and query
 * edits, headers from verified claims (a client can never forge them, with a
 * token or without), response header edits on the upstream's own headers.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import Fastify from "fastify";
import { SignJWT } from "jose";
import { claimValue, compileQuery, stripClaimHeaders } from "../../plugins/transform.js";
import type { CompiledRoute, Generation } from "../../src/generation.js";
import { policies } from "../../src/policies.js";
import { type Backend, backend, gateway, type Running, request } from "../helpers/index.js";

const SECRET = "transform-test-secret-0123456789abcdef";

const token = (claims: Record<string, unknown>) =>
  new SignJWT(claims).setProtectedHeader({ alg: "HS256" }).sign(new TextEncoder().encode(SECRET));

describe("transform", () => {
  let echo: Backend;
  let noisy: Backend;
  let gw: Running;
  const seen = (r: { json(): Record<string, unknown> }) =>
    r.json().headers as Record<string, string | undefined>;

  before(async () => {
    echo = await backend("echo");
    // an upstream that talks too much about itself
    noisy = await backend("noisy", (req, res) => {
      res.setHeader("server", "Apache/2.4.1 (Unix)");
      res.setHeader("x-powered-by", "PHP/5.6");
      res.setHeader("x-frame-options", "ALLOWALL");
      res.setHeader("content-type", "application/json");
      res.end(JSON.stringify({ url: req.url, headers: req.headers }));
    });
    gw = await gateway(`
jwt:
  internal: { secret: "${SECRET}" }
services:
  echo: { targets: [${echo.url}] }
  noisy: { targets: [${noisy.url}] }
routes:
  - name: edits
    match: { path: /edits }
    service: noisy
    transform:
      request:
        headers: { set: { x-gateway: switchyard }, remove: [cookie, X-Debug] }
        query: { set: { source: gw, "a b": "c&d" }, remove: [debug] }
      response:
        headers: { set: { x-frame-options: DENY }, remove: [server, x-powered-by] }
  - name: claims
    match: { path: /claims }
    service: echo
    auth: { jwt: internal }
    transform:
      request:
        # a static value never stands in for a claim the token lacks
        headers: { set: { x-user-role: guest } }
        fromClaims: { x-user-id: sub, x-user-role: role, x-groups: groups }
  - name: anon
    match: { path: /anon }
    service: echo
    transform: { request: { fromClaims: { x-user-id: sub } } }
`);
  });
  after(async () => {
    await gw.close();
    await echo.close();
    await noisy.close();
  });

  test("request headers: set replaces the client's value, remove drops (case-insensitively)", async () => {
    const r = await request(gw.url, {
      path: "/edits",
      headers: { cookie: "session=s3cr3t", "x-gateway": "spoofed", "x-debug": "1", "x-kept": "yes" },
    });
    const h = seen(r);
    assert.equal(h["x-gateway"], "switchyard");
    assert.equal(h.cookie, undefined);
    assert.equal(h["x-debug"], undefined);
    assert.equal(h["x-kept"], "yes");
  });

  test("query: set and remove, other parameters keep their exact bytes and order", async () => {
    const r = await request(gw.url, { path: "/edits?z=%7E1&debug=1&source=evil&a=x+y&debug&k=%2F" });
    assert.equal(r.json().url, "/edits?z=%7E1&a=x+y&k=%2F&source=gw&a%20b=c%26d");
    const none = await request(gw.url, { path: "/edits" });
    assert.equal(none.json().url, "/edits?source=gw&a%20b=c%26d");
  });

  test("response headers: the upstream's are removed or replaced before the client sees them", async () => {
    const r = await request(gw.url, { path: "/edits" });
    assert.equal(r.status, 200);
    assert.equal(r.headers.server, undefined);
    assert.equal(r.headers["x-powered-by"], undefined);
    assert.equal(r.headers["x-frame-options"], "DENY");
    assert.equal(r.headers["content-type"], "application/json", "other upstream headers pass");
  });

  test("fromClaims: headers come from the verified token, the client's copies are replaced", async () => {
    const t = await token({ sub: "user-42", role: "admin", groups: ["a", "b"] });
    const r = await request(gw.url, {
      path: "/claims",
      headers: { authorization: `Bearer ${t}`, "x-user-id": "victim", "X-User-Role": "root" },
    });
    assert.equal(r.status, 200);
    const h = seen(r);
    assert.equal(h["x-user-id"], "user-42");
    assert.equal(h["x-user-role"], "admin");
    assert.equal(h["x-groups"], "a,b");
  });

  test("fromClaims: a claim the token lacks leaves no header, whatever the client sent", async () => {
    const t = await token({ sub: "user-7" });
    const r = await request(gw.url, {
      path: "/claims",
      headers: { authorization: `Bearer ${t}`, "x-user-role": "admin", "x-groups": "admins" },
    });
    const h = seen(r);
    assert.equal(h["x-user-id"], "user-7");
    assert.equal(h["x-user-role"], undefined);
    assert.equal(h["x-groups"], undefined);
  });

  test("fromClaims on a route without auth: a forged x-user-id never reaches the upstream", async () => {
    const hits = echo.hits;
    const r = await request(gw.url, {
      path: "/anon",
      headers: { "x-user-id": "admin", "X-USER-ID": "admin" },
    });
    assert.equal(r.status, 200);
    assert.equal(echo.hits, hits + 1);
    assert.equal(seen(r)["x-user-id"], undefined);
    // and a token, even a valid one, sets nothing where no verifier checked it
    const t = await token({ sub: "user-1" });
    const withToken = await request(gw.url, { path: "/anon", headers: { authorization: `Bearer ${t}` } });
    assert.equal(seen(withToken)["x-user-id"], undefined);
  });
});

describe("transform: the client's fromClaims headers go first", () => {
  test("removed in onRequest, before any hook registered after it (rate limit, auth, cache) reads headers", async () => {
    const app = Fastify();
    const route = {
      name: "r",
      config: { transform: { request: { fromClaims: { "X-User-Id": "sub" } } } },
    } as unknown as CompiledRoute;
    let seen: unknown = "not run";
    await app.register(async (scope) => {
      await scope.register(stripClaimHeaders, { route, generation: {} as Generation });
      scope.addHook("onRequest", async (request) => {
        seen = request.headers["x-user-id"];
      });
      scope.get("/", async () => "ok");
    });
    const r = await app.inject({ url: "/", headers: { "x-user-id": "victim" } });
    assert.equal(r.statusCode, 200);
    assert.equal(seen, undefined);
    await app.close();
  });

  test("policy order: the strip runs right after CORS, before auth; transforms after auth", () => {
    const names = policies.map((p) => p.name);
    assert.deepEqual(names.slice(0, 2), ["cors", "strip-claim-headers"]);
    assert.ok(names.indexOf("auth") < names.indexOf("transform"));
  });
});

describe("transform helpers", () => {
  test("claimValue: printable scalars and lists only", () => {
    assert.equal(claimValue("x"), "x");
    assert.equal(claimValue(7), "7");
    assert.equal(claimValue(false), "false");
    assert.equal(claimValue(["a", 1]), "a,1");
    assert.equal(claimValue({ a: 1 }), undefined);
    assert.equal(claimValue("evil\r\nx-admin: 1"), undefined, "no header injection through a claim");
    assert.equal(claimValue(undefined), undefined);
  });

  test("compileQuery: names compared decoded; empty query stays empty", () => {
    const q = compileQuery({ remove: ["a b", "x"] });
    assert.equal(q("a%20b=1&a+b=2&c=3&x"), "c=3");
    assert.equal(q(""), "");
  });
});
