import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { type Backend, backend, gateway, type Running, request } from "../helpers/index.js";

describe("L7 routing through a real gateway", () => {
  const b: Record<string, Backend> = {};
  let gw: Running;
  before(async () => {
    for (const n of ["a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k"]) b[n] = await backend(n);
    const svc = Object.entries(b)
      .map(([n, x]) => `  ${n}: { targets: [${x.url}] }`)
      .join("\n");
    gw = await gateway(`
services:
${svc}
routes:
  - { name: exact, match: { path: /exact, pathType: exact }, service: a }
  - { name: tmpl, match: { path: "/users/:id/orders/:order", pathType: template }, service: b, rewrite: { path: "/v2/u/{id}/o/{order}" } }
  - { name: regex, match: { path: "^/re/(?<n>[0-9]+)$", pathType: regex }, service: c }
  - { name: host, match: { path: /h, hosts: ["*.example.com"] }, service: d }
  - { name: methods, match: { path: /m, methods: [POST, PUT] }, service: e }
  - { name: hdr-exact, match: { path: /hd, headers: { x-version: "2" } }, service: f }
  - { name: hdr-regex, match: { path: /hd, headers: { x-version: { regex: "^3\\\\." } } }, service: g }
  - { name: hdr-present, match: { path: /hd, headers: { x-beta: { present: true } } }, service: h }
  - { name: query, match: { path: /q, query: { beta: "1" } }, service: i }
  - { name: cookie, match: { path: /q, cookies: { canary: "1" } }, service: j }
  - { name: strip, match: { path: /api/users }, service: k, rewrite: { stripPrefix: /api, host: users.internal } }
  - { name: first, match: { path: /first }, service: a }
  - { name: second, match: { path: /first/more }, service: b }
  - { name: moved, match: { path: /docs/v1 }, respond: { status: 301, headers: { location: /docs/v2 } } }
  - { name: rest, match: { path: /svc }, service: c, rewrite: { path: "/inner/{rest}" } }
`);
  });
  after(async () => {
    await gw.close();
    for (const x of Object.values(b)) await x.close();
  });
  const get = (path: string, opts: Parameters<typeof request>[1] = {}) => request(gw.url, { path, ...opts });
  const who = async (path: string, opts: Parameters<typeof request>[1] = {}) => {
    const r = await get(path, opts);
    return r.status === 200 ? (r.json().name as string) : r.status;
  };

  test("prefix matches by whole segments; exact matches only itself", async () => {
    assert.equal(await who("/exact"), "a");
    assert.equal(await who("/exact/x"), 404);
    assert.equal(await who("/api/users"), "k");
    assert.equal(await who("/api/users/7"), "k");
    assert.equal(await who("/api/usersx"), 404);
  });

  test("template params and regex", async () => {
    const r = await get("/users/42/orders/9");
    assert.equal(r.json().name, "b");
    assert.equal(r.json().url, "/v2/u/42/o/9");
    assert.equal(await who("/users/42/orders"), 404);
    assert.equal(await who("/re/123"), "c");
    assert.equal(await who("/re/12x"), 404);
  });

  test("hosts: wildcard, case, port; never the bare domain", async () => {
    assert.equal(await who("/h", { headers: { host: "API.Example.com:8080" } }), "d");
    assert.equal(await who("/h", { headers: { host: "a.b.example.com" } }), "d");
    assert.equal(await who("/h", { headers: { host: "example.com" } }), 404);
  });

  test("methods", async () => {
    assert.equal(await who("/m", { method: "POST", body: "x" }), "e");
    assert.equal(await who("/m"), 404);
  });

  test("headers exact, regex, present", async () => {
    assert.equal(await who("/hd", { headers: { "x-version": "2" } }), "f");
    assert.equal(await who("/hd", { headers: { "x-version": "3.1" } }), "g");
    assert.equal(await who("/hd", { headers: { "x-beta": "" } }), "h");
    assert.equal(await who("/hd", { headers: { "x-version": "4" } }), 404);
  });

  test("query and cookies", async () => {
    assert.equal(await who("/q?beta=1"), "i");
    assert.equal(await who("/q?beta=2", { headers: { cookie: "a=b; canary=1" } }), "j");
    assert.equal(await who("/q?beta=2"), 404);
  });

  test("first match wins in file order", async () => {
    assert.equal(await who("/first/more"), "a");
  });

  test("rewrite: stripPrefix, host, {rest}; query passes through", async () => {
    const r = await get("/api/users/7?x=1&y=%zz");
    assert.equal(r.json().url, "/users/7?x=1&y=%zz");
    assert.equal((r.json().headers as Record<string, string>).host, "users.internal");
    assert.equal((await get("/api/users")).json().url, "/users");
    assert.equal((await get("/svc/a/b")).json().url, "/inner/a/b");
  });

  test("direct response", async () => {
    const r = await get("/docs/v1/x");
    assert.equal(r.status, 301);
    assert.equal(r.headers.location, "/docs/v2");
    assert.ok(r.headers["x-request-id"]);
  });

  test("normalisation happens before matching, and is what the upstream receives", async () => {
    const r = await get("/exact/../api/./users//7");
    assert.equal(r.json().name, "k");
    assert.equal(r.json().url, "/users/7");
    assert.equal(await who("/%61pi/users"), "k");
    // an escaped ".." cannot climb out of a prefix the client was matched on
    assert.equal((await get("/api/users/%2e%2e/%2e%2e/exact")).json().name, "a");
  });

  for (const bad of ["/api/users%2F..%2Fadmin", "/api%5cusers", "/api\\users", "/api/%00", "/api/%zz"]) {
    test(`rejects ${bad} with 400 SY_BAD_PATH`, async () => {
      const r = await get(bad);
      assert.equal(r.status, 400);
      assert.equal(r.json().code, "SY_BAD_PATH");
      assert.equal(r.json().requestId, r.headers["x-request-id"]);
    });
  }

  test("no route: 404 SY_NO_ROUTE in the SPEC's JSON shape", async () => {
    const r = await get("/nothing-here");
    assert.equal(r.status, 404);
    assert.deepEqual(Object.keys(r.json()).sort(), ["code", "error", "message", "requestId", "statusCode"]);
    assert.equal(r.json().code, "SY_NO_ROUTE");
    assert.equal(r.json().error, "Not Found");
  });
});
