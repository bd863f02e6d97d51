/**
 * Sticky sessions (services.*.sticky, issue 14): the first answer sets an
 * opaque, signed cookie naming its target; requests carrying it go back
 * there, ahead of every balancer, until that target is drained, ejected,
 * unhealthy or down — then they move with a new cookie. A client cannot
 * choose a target (tampered, foreign-key and expired cookies are ignored).
 * The forwarding lane and the Fastify path (Content-Length: 0 declines the
 * lane) and the reply-from path (a cached route) set the very same cookie.
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import type http from "node:http";
import https from "node:https";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { parseConfig } from "../../src/config/load.js";
import type { Gateway } from "../../src/server.js";
import { drainTarget, undrainTarget } from "../../src/upstreams/drain.js";
import { Sticky } from "../../src/upstreams/sticky.js";
import { startWorkers } from "../helpers/cli.js";
import {
  type Backend,
  backend,
  countLanes,
  deadPort,
  gateway,
  type Reply,
  type Running,
  request,
} from "../helpers/index.js";

const SECRET = "a-shared-secret-for-every-replica";
const BALANCERS = ["round-robin", "least-connections", "p2c", "random", "ip-hash", "consistent-hash"];

let a: Backend;
let b: Backend;
let running: Running;
let gw: Gateway;
let laned: Map<string, number>;

const services = () => `
services:
  s: { targets: [${a.url}, ${b.url}], sticky: { cookie: sy_s, ttl: 1h, secret: ${SECRET} } }
${BALANCERS.map(
  (bal) =>
    `  ${bal}: { targets: [${a.url}, ${b.url}], balancer: ${bal}, hash: { on: path }, sticky: { cookie: sy_${bal.replace("-", "_")}, secret: ${SECRET} } }`,
).join("\n")}
  plain: { targets: [${a.url}, ${b.url}] }
  cookies: { targets: [${a.url}, ${b.url}], sticky: { cookie: sy_c, secret: ${SECRET} } }
  cached: { targets: [${a.url}, ${b.url}], sticky: { cookie: sy_cached, secret: ${SECRET} } }
`;
const routes = () => `
routes:
${BALANCERS.map((bal) => `  - { name: ${bal}, match: { path: /${bal} }, service: ${bal} }`).join("\n")}
  - { name: plain, match: { path: /plain }, service: plain }
  - { name: cookies, match: { path: /cookies }, service: cookies }
  - { name: cached, match: { path: /cached }, service: cached, cache: { ttl: 1m } }
  - { name: s, service: s }
`;

/** A backend that also sets its own cookie on /cookies (both must reach the client). */
const handler =
  (name: string) =>
  (req: http.IncomingMessage, res: http.ServerResponse): void => {
    if (req.url?.startsWith("/cookies")) res.setHeader("set-cookie", "app=1; Path=/");
    res.setHeader("content-type", "application/json");
    res.end(JSON.stringify({ name }));
  };

before(async () => {
  a = await backend("a", handler("a"));
  b = await backend("b", handler("b"));
  running = await gateway(services() + routes());
  gw = running.gw;
  laned = countLanes(gw);
});
after(async () => {
  await running.close();
  await a.close();
  await b.close();
});

const get = (path: string, cookie?: string, extra: http.OutgoingHttpHeaders = {}) =>
  request(running.url, { path, headers: { ...extra, ...(cookie ? { cookie } : {}) } });
const nameOf = (r: Reply) => r.json<{ name: string }>().name;
/** This service's affinity cookie in an answer, as a request Cookie header ("name=value"), or undefined. */
function affinity(r: Reply, name = "sy_s"): string | undefined {
  const all = [r.headers["set-cookie"] ?? []].flat();
  const mine = all.find((c) => c.startsWith(`${name}=`));
  return mine?.split(";")[0];
}
const target = (service: string, url: string) => gw.generation.services.get(service)!.target(url)!;

describe("sticky sessions", () => {
  test("the first answer sets an opaque HttpOnly, SameSite=Lax cookie; later requests stay on its target", async () => {
    const first = await get("/x");
    const set = [first.headers["set-cookie"]].flat()[0]!;
    assert.match(
      set,
      /^sy_s=[A-Za-z0-9_-]{16}\.[0-9a-z]{7}\.[A-Za-z0-9_-]{22}; Path=\/; Max-Age=3600; HttpOnly; SameSite=Lax$/,
    );
    // Opaque: nothing of the target's address or port is readable in it.
    for (const leak of [String(a.port), String(b.port), "127.0.0.1"]) assert.ok(!set.includes(leak), set);
    const pinned = nameOf(first);
    const cookie = affinity(first)!;
    for (let i = 0; i < 6; i++) {
      const r = await get("/x", cookie);
      assert.equal(nameOf(r), pinned, "round-robin would alternate; the cookie keeps the target");
      assert.equal(
        r.headers["set-cookie"],
        undefined,
        "a fresh cookie for the target that answered is not re-sent",
      );
    }
    // Without the cookie the service balances as always (round-robin alternates).
    const seen = new Set<string>();
    for (let i = 0; i < 4; i++) seen.add(nameOf(await get("/x")));
    assert.deepEqual([...seen].sort(), ["a", "b"]);
  });

  test("the lane and the Fastify path pin and set the cookie alike", async () => {
    const before = laned.get("s") ?? 0;
    const viaLane = await get("/x");
    assert.equal(laned.get("s"), before + 1, "served by the lane");
    const viaFastify = await get("/x", undefined, { "content-length": "0" });
    assert.equal(laned.get("s"), before + 1, "an empty body declines the lane");
    const attrs = (r: Reply) => [r.headers["set-cookie"]].flat()[0]!.replace(/^sy_s=[^;]*/, "");
    assert.equal(attrs(viaLane), attrs(viaFastify));
    // A cookie made on one door is honoured on the other.
    for (const [made, other] of [
      [viaLane, { "content-length": "0" }],
      [viaFastify, {}],
    ] as const) {
      const r = await get("/x", affinity(made), other);
      assert.equal(nameOf(r), nameOf(made));
      assert.equal(r.headers["set-cookie"], undefined);
    }
  });

  test("every balancer takes the cookie as the first choice", async () => {
    for (const bal of BALANCERS) {
      const svc = bal;
      const cookieName = `sy_${bal.replace("-", "_")}`;
      // What the balancer would choose for this request (ip-hash and consistent-hash: always the same).
      const natural = nameOf(await get(`/${bal}/k`));
      const other = natural === "a" ? b : a;
      const prefer = natural === "a" ? a : b;
      // Get a cookie for the other target: drain the natural one for one request.
      drainTarget(gw.generation, svc, prefer.url);
      const moved = await get(`/${bal}/k`);
      undrainTarget(gw.generation, svc, prefer.url);
      assert.equal(nameOf(moved), other.name, bal);
      const cookie = affinity(moved, cookieName);
      assert.ok(cookie, `${bal}: the answer pins its target`);
      for (let i = 0; i < 5; i++) assert.equal(nameOf(await get(`/${bal}/k`, cookie)), other.name, bal);
    }
  });

  test("a drained target loses its sessions: they move with a new cookie, then stick to the new target", async () => {
    const first = await get("/x");
    const from = nameOf(first) === "a" ? a : b;
    const to = from === a ? b : a;
    drainTarget(gw.generation, "s", from.url);
    try {
      const moved = await get("/x", affinity(first));
      assert.equal(nameOf(moved), to.name);
      const cookie = affinity(moved);
      assert.ok(cookie && cookie !== affinity(first), "a new cookie names the new target");
      undrainTarget(gw.generation, "s", from.url);
      // Undrained, the old target is back in rotation, but this session now belongs to the new one.
      for (let i = 0; i < 4; i++) assert.equal(nameOf(await get("/x", cookie)), to.name);
    } finally {
      undrainTarget(gw.generation, "s", from.url);
    }
  });

  test("an ejected or unhealthy target loses its sessions too", async () => {
    const first = await get("/x");
    const from = target("s", nameOf(first) === "a" ? a.url : b.url);
    const now = Date.now();
    from.eject(now, now + 60_000);
    try {
      const r = await get("/x", affinity(first));
      assert.notEqual(nameOf(r), nameOf(first));
      assert.ok(affinity(r));
    } finally {
      from.ejectedUntil = 0;
      from.rampFrom = 0;
    }
    from.healthy = false;
    try {
      const r = await get("/x", affinity(first));
      assert.notEqual(nameOf(r), nameOf(first));
    } finally {
      from.healthy = true;
    }
  });

  test("a client cannot choose: tampered, foreign-key, other-service and expired cookies are ignored", async () => {
    const first = await get("/x");
    const good = affinity(first)!;
    const [name, value] = good.split("=");
    const flip = (s: string, i: number) => s.slice(0, i) + (s[i] === "A" ? "B" : "A") + s.slice(i + 1);
    const forged = [
      `${name}=${flip(value, 0)}`, // another target id
      `${name}=${flip(value, 20)}`, // another expiry
      `${name}=${flip(value, value.length - 1)}`, // another signature
      `${name}=${value}x`,
      `${name}=`,
      `${name}=${new Sticky("s", { cookie: "sy_s", ttl: "1h", secret: "some-other-secret-key" }).setCookie(target("s", a.url), false, Date.now()).split(";")[0].split("=")[1]}`,
      // Signed with the right key, for the right target, but for another service.
      `${name}=${new Sticky("plain", { cookie: "sy_s", ttl: "1h", secret: SECRET }).setCookie(target("s", a.url), false, Date.now()).split(";")[0].split("=")[1]}`,
      // Right key, right service, expired two hours ago.
      new Sticky("s", { cookie: "sy_s", ttl: "1h", secret: SECRET })
        .setCookie(target("s", a.url), false, Date.now() - 7_200_000)
        .split(";")[0],
    ];
    for (const cookie of forged) {
      // Ignored: round-robin alternates as if there were no cookie (a pin would repeat one target),
      // and each answer carries a new cookie.
      const seen = new Set<string>();
      for (let i = 0; i < 2; i++) {
        const r = await get("/x", cookie);
        seen.add(nameOf(r));
        const issued = affinity(r);
        assert.ok(issued, `ignored, so re-issued: ${cookie}`);
        assert.notEqual(issued, cookie);
      }
      assert.deepEqual([...seen].sort(), ["a", "b"], `not honoured: ${cookie}`);
    }
    // The control: a cookie the gateway signed for a, with the shared secret, is honoured.
    const made = new Sticky("s", { cookie: "sy_s", ttl: "1h", secret: SECRET })
      .setCookie(target("s", a.url), false, Date.now())
      .split(";")[0];
    for (let i = 0; i < 3; i++) assert.equal(nameOf(await get("/x", made)), "a");
  });

  test("a cookie past half its lifetime is honoured and renewed for the same target", async () => {
    const old = new Sticky("s", { cookie: "sy_s", ttl: "1h", secret: SECRET })
      .setCookie(target("s", b.url), false, Date.now() - 40 * 60_000)
      .split(";")[0];
    const r = await get("/x", old);
    assert.equal(nameOf(r), "b");
    const renewed = affinity(r);
    assert.ok(renewed && renewed !== old);
    assert.equal(nameOf(await get("/x", renewed)), "b");
  });

  test("a pinned target that refuses connections: the retry's target answers and is pinned", async () => {
    const dead = await deadPort();
    const g = await gateway(`
services:
  s: { targets: ["http://127.0.0.1:${dead}", ${a.url}], sticky: { cookie: sy_s, secret: ${SECRET} } }
routes: [{ name: s, service: s }]
`);
    try {
      const down = g.gw.generation.services.get("s")!.targets[0];
      const cookie = new Sticky("s", { cookie: "sy_s", ttl: "1h", secret: SECRET })
        .setCookie(down, false, Date.now())
        .split(";")[0];
      const r = await request(g.url, { path: "/", headers: { cookie } });
      assert.equal(r.status, 200);
      assert.equal(nameOf(r), "a");
      const again = await request(g.url, { path: "/", headers: { cookie: affinity(r)! } });
      assert.equal(nameOf(again), "a");
      assert.equal(again.headers["set-cookie"], undefined);
    } finally {
      await g.close();
    }
  });

  test("the upstream's own Set-Cookie and the affinity cookie both reach the client (lane and Fastify)", async () => {
    for (const extra of [{}, { "content-length": "0" }]) {
      const r = await get("/cookies", undefined, extra);
      const all = [r.headers["set-cookie"]].flat();
      assert.ok(all.includes("app=1; Path=/"), JSON.stringify(all));
      assert.ok(affinity(r, "sy_c"), JSON.stringify(all));
    }
  });

  test("a cached route (reply-from path) pins too, and an answer carrying the cookie is not stored", async () => {
    const first = await get("/cached");
    assert.ok(affinity(first, "sy_cached"));
    assert.equal(first.headers["x-cache"], "MISS");
    // Not stored: a cookie-less client gets its own answer (and its own cookie), never the first one's.
    const other = await get("/cached");
    assert.equal(other.headers["x-cache"], "MISS");
    assert.ok(affinity(other, "sy_cached"));
    const second = await get("/cached", affinity(first, "sy_cached"));
    assert.equal(nameOf(second), nameOf(first));
  });

  test("services without sticky set no cookie", async () => {
    const r = await get("/plain");
    assert.equal(r.headers["set-cookie"], undefined);
  });

  test("replicas sharing the secret honour each other's cookies; another secret does not", async () => {
    const yaml = (secret: string) => `
services:
  s: { targets: [${a.url}, ${b.url}], sticky: { cookie: sy_s, secret: ${secret} } }
routes: [{ name: s, service: s }]
`;
    const twin = await gateway(yaml(SECRET));
    const stranger = await gateway(yaml("not-the-same-secret-at-all"));
    try {
      // A cookie from this gateway for the target round-robin would not pick first on the others.
      drainTarget(gw.generation, "s", a.url);
      const r = await get("/x");
      undrainTarget(gw.generation, "s", a.url);
      assert.equal(nameOf(r), "b");
      const cookie = affinity(r)!;
      for (let i = 0; i < 4; i++) {
        const t = await request(twin.url, { path: "/", headers: { cookie } });
        assert.equal(nameOf(t), "b");
        assert.equal(t.headers["set-cookie"], undefined);
      }
      const seen = new Set<string>();
      for (let i = 0; i < 4; i++) {
        const s = await request(stranger.url, { path: "/", headers: { cookie } });
        seen.add(nameOf(s));
        assert.ok(affinity(s), "not honoured: re-issued");
      }
      assert.deepEqual([...seen].sort(), ["a", "b"], "the stranger balances as if there were no cookie");
    } finally {
      undrainTarget(gw.generation, "s", a.url);
      await twin.close();
      await stranger.close();
    }
  });
});

describe("sticky sessions on a TLS listener", () => {
  const dir = join(import.meta.dirname, "..", "fixtures", "tls");
  test("the cookie is Secure", async () => {
    const g = await gateway(`
listen:
  - { port: 0, host: 127.0.0.1, tls: { cert: ${join(dir, "default.crt")}, key: ${join(dir, "default.key")} } }
services:
  s: { targets: [${a.url}], sticky: { cookie: sy_s, secret: ${SECRET} } }
routes: [{ name: s, service: s }]
`);
    try {
      for (const extra of [{}, { "content-length": "0" }]) {
        const set = await new Promise<string[]>((ok, fail) => {
          https
            .get(
              { host: "127.0.0.1", port: g.port, path: "/", rejectUnauthorized: false, headers: extra },
              (res) => {
                res.resume();
                ok([res.headers["set-cookie"] ?? []].flat());
              },
            )
            .on("error", fail);
        });
        assert.match(set[0], /; HttpOnly; SameSite=Lax; Secure$/);
      }
    } finally {
      await g.close();
    }
  });
});

describe("sticky sessions under --workers", () => {
  test("without a secret, every worker signs with the primary's key: a cookie holds whichever worker answers", async () => {
    const dir = mkdtempSync(join(tmpdir(), "sy-sticky-workers-"));
    const file = join(dir, "routes.yaml");
    writeFileSync(
      file,
      `version: 1\nshutdownTimeout: 1s\nlisten: [{ port: 0, host: 127.0.0.1 }]\nservices: { s: { targets: [${a.url}, ${b.url}], sticky: { cookie: sy_w } } }\nroutes: [{ name: r, service: s }]\n`,
    );
    const env = { ...process.env };
    delete env.SWITCHYARD_STICKY_KEY;
    const cli = startWorkers(file, { workers: 2, guardMs: 30_000, env });
    const { lines } = cli;
    try {
      const ports = await cli.listening(2);
      const url = `http://127.0.0.1:${[...ports.values()][0]}`;
      const first = await request(url, { path: "/" });
      const cookie = affinity(first, "sy_w")!;
      assert.ok(cookie);
      for (let i = 0; i < 8; i++) {
        const r = await request(url, { path: "/", headers: { cookie } });
        assert.equal(nameOf(r), nameOf(first));
        assert.equal(r.headers["set-cookie"], undefined, "honoured, not re-issued");
      }
      // Fresh connections were spread over both workers (node:cluster's round robin): both honoured it.
      const deadline = Date.now() + 5000;
      const answered = () => new Set(lines.filter((l) => l.statusCode === 200).map((l) => l.pid));
      while (answered().size < 2 && Date.now() < deadline) await new Promise((ok) => setTimeout(ok, 20));
      assert.equal(answered().size, 2, "both workers answered");
      const exited = cli.stop();
      assert.equal(await exited, 0);
    } finally {
      cli.kill();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("sticky configuration", () => {
  test("is accepted (no longer 'not implemented'); a shared cookie name or an L4 service is refused", () => {
    assert.doesNotThrow(() =>
      parseConfig(`version: 1
listen: [{ port: 0 }]
services: { s: { targets: ["http://127.0.0.1:1"], sticky: { cookie: sy } } }
routes: [{ name: r, service: s }]
`),
    );
    assert.throws(
      () =>
        parseConfig(`version: 1
services:
  s: { targets: ["http://127.0.0.1:1"], sticky: { cookie: sy } }
  t: { targets: ["http://127.0.0.1:2"], sticky: { cookie: sy } }
  db: { targets: ["tcp://127.0.0.1:5432"], sticky: { cookie: db } }
`),
      (err: Error) =>
        /services\.t\.sticky\.cookie: cookie 'sy' is already service 's's/.test(err.message) &&
        /services\.db\.sticky: sticky is cookie affinity for http\(s\) targets/.test(err.message),
    );
    assert.throws(
      () =>
        parseConfig(`version: 1
services: { s: { targets: ["http://127.0.0.1:1"], sticky: { cookie: "a b", secret: short } } }
`),
      (err: Error) => /sticky\.cookie/.test(err.message) && /sticky\.secret/.test(err.message),
    );
  });
});
