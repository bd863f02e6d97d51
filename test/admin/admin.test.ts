import assert from "node:assert/strict";
import { test } from "node:test";
import { tokenMatches } from "../../plugins/admin.js";
import { maskConfig } from "../../src/admin/snapshot.js";
import { parseConfig } from "../../src/config/load.js";
import { backend, request } from "../helpers/index.js";
import { missing } from "../helpers/needs.js";
import { throwawayRedis, uniquePrefix } from "../store/redis-helpers.js";
import { runtime } from "./helpers.js";

const TOKEN = "admin-token-7f3a";

/** The parts of a masked config the tests read. */
interface Masked {
  admin: { token: string };
  store: { url: string };
  jwt: Record<string, { secret: string }>;
  routes: { name: string; transform: { request: { headers: { set: Record<string, string> } } } }[];
}

test("admin endpoints: token required except /healthz, /readyz and the page; SPEC §5 401 otherwise", async (t) => {
  const b = await backend("a");
  t.after(() => b.close());
  const g = await runtime(`
admin: { port: 0, host: 127.0.0.1, token: ${TOKEN} }
jwt: { internal: { secret: jwt-secret-value-1234, algorithms: [HS256] } }
services: { s: { targets: [${b.url}] } }
routes: [{ name: r, service: s }]
`);
  t.after(() => g.close());

  assert.deepEqual((await g.ask("/healthz")).json(), { status: "ok" });
  assert.deepEqual((await g.ask("/readyz")).json(), { ready: true, reasons: [] });
  const page = await g.ask("/");
  assert.equal(page.status, 200);
  assert.match(String(page.headers["content-type"]), /^text\/html/);

  for (const path of ["/metrics", "/admin/upstreams", "/admin/config", "/admin/stats"]) {
    for (const token of [undefined, "wrong", `${TOKEN}x`]) {
      const r = await g.ask(path, { token });
      assert.equal(r.status, 401, `${path} with ${token}`);
      assert.equal(r.json().code, "SY_UNAUTHORIZED");
      assert.match(String(r.headers["www-authenticate"]), /^Bearer/);
    }
    assert.equal((await g.ask(path, { token: TOKEN })).status, 200, path);
  }
  for (const path of ["/admin/reload", "/admin/cache/purge", "/admin/upstreams/s/0/drain"])
    assert.equal((await g.ask(path, { method: "POST" })).status, 401, path);
  // Never reachable through the data-plane listener.
  assert.equal((await request(g.url, { path: "/admin/upstreams" })).json().name, "a");

  const up = (await g.ask("/admin/upstreams", { token: TOKEN })).json<{ services: unknown[] }>();
  assert.deepEqual(up.services, [
    {
      name: "s",
      balancer: "round-robin",
      targets: [
        {
          url: b.url,
          weight: 1,
          healthy: true,
          ejected: false,
          draining: false,
          inFlight: 0,
          requests: 1,
          failures: 0,
        },
      ],
    },
  ]);
  const cfg = (await g.ask("/admin/config", { token: TOKEN })).json<Masked>();
  assert.equal(cfg.admin.token, "***");
  assert.equal(cfg.jwt.internal.secret, "***");
  assert.equal(cfg.routes[0].name, "r");
  assert.doesNotMatch(JSON.stringify(cfg), /jwt-secret-value|admin-token-7f3a/);
});

test("maskConfig: JWT secrets, admin token, TLS keys, Redis passwords and credential headers", () => {
  const c = parseConfig(
    `version: 1
listen: [{ port: 8080 }]
admin: { port: 9901, token: tok }
store: { type: redis, url: "redis://default:hunter2@127.0.0.1:6379/0" }
jwt: { j: { secret: sssssss, algorithms: [HS256] } }
services: { s: { targets: ["http://127.0.0.1:1"] } }
routes:
  - name: r
    service: s
    transform: { request: { headers: { set: { authorization: "Bearer upstream-key", x-trace: keep } } } }
`,
  );
  const m = maskConfig(c) as Masked;
  assert.equal(m.store.url, "redis://default:***@127.0.0.1:6379/0");
  assert.equal(m.admin.token, "***");
  assert.equal(m.jwt.j.secret, "***");
  assert.equal(m.routes[0].transform.request.headers.set.authorization, "***");
  assert.equal(m.routes[0].transform.request.headers.set["x-trace"], "keep");
  assert.doesNotMatch(JSON.stringify(m), /hunter2|sssssss|upstream-key/);
});

test("tokenMatches: exact bearer token only", () => {
  assert.equal(tokenMatches("Bearer abc", "abc"), true);
  assert.equal(tokenMatches("Bearer abcd", "abc"), false);
  assert.equal(tokenMatches("Bearer ab", "abc"), false);
  assert.equal(tokenMatches("abc", "abc"), false);
  assert.equal(tokenMatches("Basic abc", "abc"), false);
  assert.equal(tokenMatches(undefined, "abc"), false);
});

test("drain and undrain through the admin API; unknown target is 404 SY_NOT_FOUND", async (t) => {
  const [b1, b2] = [await backend("one"), await backend("two")];
  t.after(() => Promise.all([b1.close(), b2.close()]));
  const g = await runtime(
    `services: { s: { targets: [${b1.url}, ${b2.url}] } }\nroutes: [{ name: r, service: s }]\n`,
  );
  t.after(() => g.close());
  const d = await g.ask(`/admin/upstreams/s/${encodeURIComponent(b1.url)}/drain`, { method: "POST" });
  assert.equal(d.status, 200);
  assert.deepEqual(d.json(), { service: "s", target: b1.url, draining: true });
  const names = new Set<string>();
  for (let i = 0; i < 6; i++) names.add((await request(g.url, { path: "/x" })).json().name as string);
  assert.deepEqual([...names], ["two"]);
  const up = (await g.ask("/admin/upstreams")).json<{ services: { targets: { draining: boolean }[] }[] }>();
  assert.deepEqual(
    up.services[0].targets.map((x) => x.draining),
    [true, false],
  );
  assert.equal((await g.ask("/admin/upstreams/s/0/undrain", { method: "POST" })).status, 200);
  for (let i = 0; i < 4; i++) names.add((await request(g.url, { path: "/x" })).json().name as string);
  assert.deepEqual([...names].sort(), ["one", "two"]);
  const nf = await g.ask("/admin/upstreams/nope/0/drain", { method: "POST" });
  assert.equal(nf.status, 404);
  assert.equal(nf.json().code, "SY_NOT_FOUND");
  assert.equal((await g.ask("/admin/upstreams/s/9/drain", { method: "POST" })).status, 404);
});

test("cache purge by prefix and by tag through the admin API", async (t) => {
  const b = await backend("c", (req, res) => {
    res.setHeader("cache-control", "max-age=60");
    res.setHeader("surrogate-key", req.url?.startsWith("/c/a") ? "tag-a" : "tag-b");
    res.end(req.url);
  });
  t.after(() => b.close());
  const g = await runtime(
    `services: { s: { targets: [${b.url}] } }\nroutes: [{ name: r, service: s, cache: { ttl: 60s } }]\n`,
  );
  t.after(() => g.close());
  const xcache = async (path: string) => (await request(g.url, { path })).headers["x-cache"];
  for (const p of ["/c/a", "/c/b", "/d"]) assert.equal(await xcache(p), "MISS");
  for (const p of ["/c/a", "/c/b", "/d"]) assert.equal(await xcache(p), "HIT");
  const bad = await g.ask("/admin/cache/purge", { body: { prefix: 7 } });
  assert.equal(bad.status, 400);
  assert.equal(bad.json().code, "SY_BAD_REQUEST");
  assert.equal((await g.ask("/admin/cache/purge", { body: {} })).status, 400);
  assert.deepEqual((await g.ask("/admin/cache/purge", { body: { tags: ["tag-a"] } })).json(), { purged: 1 });
  assert.equal(await xcache("/c/a"), "MISS");
  assert.equal(await xcache("/c/b"), "HIT");
  assert.deepEqual((await g.ask("/admin/cache/purge", { body: { prefix: "/c" } })).json(), { purged: 2 });
  assert.equal(await xcache("/c/b"), "MISS");
  assert.equal(await xcache("/d"), "HIT");
});

test("/readyz is 503 with the reason while the Redis store is down, 200 again when it is back", {
  skip: await missing("redis-server"),
}, async (t) => {
  const redis = await throwawayRedis();
  t.after(() => redis.stop());
  const b = await backend("r");
  t.after(() => b.close());
  const g = await runtime(`
store: { type: redis, url: "${redis.url}", prefix: "${uniquePrefix()}" }
services: { s: { targets: [${b.url}] } }
routes: [{ name: r, service: s, rateLimit: { max: 100, window: 1m } }]
`);
  t.after(() => g.close());
  const readiness = async () => (await g.ask("/readyz")).status;
  const waitFor = async (status: number) => {
    const end = Date.now() + 8000;
    while ((await readiness()) !== status) {
      assert.ok(Date.now() < end, `readyz never became ${status}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  };
  await waitFor(200);
  await redis.stop();
  await waitFor(503);
  const r = await g.ask("/readyz");
  assert.equal(r.json().ready, false);
  assert.match(String(r.json().reasons), /redis/);
  assert.equal((await g.ask("/healthz")).status, 200, "the process is still alive");
  await redis.start();
  await waitFor(200);
});

test("admin POSTs from another origin are refused; the scheme of the token is case-insensitive", async (t) => {
  const b = await backend("o");
  t.after(() => b.close());
  const g = await runtime(`services: { s: { targets: [${b.url}] } }\nroutes: [{ name: r, service: s }]\n`);
  t.after(() => g.close());
  const drain = (headers: Record<string, string>) =>
    request(g.admin, { method: "POST", path: "/admin/upstreams/s/0/undrain", headers });
  const refused = await drain({ origin: "https://evil.example" });
  assert.equal(refused.status, 401);
  assert.equal(refused.json().code, "SY_UNAUTHORIZED");
  assert.equal((await drain({ origin: g.admin })).status, 200, "the dashboard's own origin");
  assert.equal((await drain({})).status, 200, "curl sends no Origin");
  assert.equal(tokenMatches("bearer abc", "abc"), true);
});

test("maskConfig also masks credentials in match headers, cookies and query", () => {
  const c = parseConfig(`version: 1
listen: [{ port: 8080 }]
services: { s: { targets: ["http://127.0.0.1:1"] } }
routes:
  - { name: r, service: s, match: { headers: { x-api-key: k-123 }, cookies: { session-token: c-456 }, query: { token: q-789 } } }
`);
  assert.doesNotMatch(JSON.stringify(maskConfig(c)), /k-123|c-456|q-789/);
});

test("a reload that moves the admin listener answers on the old one, then serves on the new one", async (t) => {
  const b = await backend("m");
  t.after(() => b.close());
  const routes = `services: { s: { targets: [${b.url}] } }\nroutes: [{ name: r, service: s }]\n`;
  const g = await runtime(routes);
  t.after(() => g.close());
  const { deadPort } = await import("../helpers/index.js");
  const port = await deadPort();
  g.write(`admin: { port: ${port}, host: 127.0.0.1 }\n${routes}`);
  const r = await g.ask("/admin/reload", { method: "POST" });
  assert.equal(r.status, 200, r.body);
  assert.equal(r.json().result, "success");
  assert.equal(g.rt.adminAddress?.port, port);
  assert.equal((await request(`http://127.0.0.1:${port}`, { path: "/healthz" })).status, 200);
});
