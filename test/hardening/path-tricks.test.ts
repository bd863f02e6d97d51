/**
 * Issue 15: path tricks against a JWT-protected /admin beside an open /public
 * and an open catch-all. Whatever the spelling — dot segments raw or encoded,
 * doubled slashes, encoded slashes, case, overlong UTF-8, `;` parameters — the
 * admin backend is never reached without a token, and every backend receives
 * exactly the normalised path its route was chosen (and authorised) for.
 * Both doors: a plain config (auth runs on the forwarding lane) and the same
 * with trustProxy (every route takes Fastify's path).
 */
import assert from "node:assert/strict";
import { createHmac } from "node:crypto";
import { after, before, describe, test } from "node:test";
import { countLanes, gateway, type Running } from "../helpers/index.js";
import { type RawResult, type Recorder, rawSend, recorder } from "./helpers.js";

const SECRET = "path-tricks-secret-0123456789";

function jwt(claims: object): string {
  const b64 = (v: object) => Buffer.from(JSON.stringify(v)).toString("base64url");
  const unsigned = `${b64({ alg: "HS256", typ: "JWT" })}.${b64({ exp: Math.floor(Date.now() / 1000) + 300, ...claims })}`;
  return `${unsigned}.${createHmac("sha256", SECRET).update(unsigned).digest("base64url")}`;
}

/** Raw targets, sent byte for byte (no client library normalises them first). */
const TRICKS = [
  "/admin",
  "/admin/",
  "/admin/x",
  "/public/../admin",
  "/public/../admin/x",
  "/public/./../admin",
  "/public/%2e%2e/admin",
  "/public/%2E%2E/admin",
  "/public/.%2e/admin",
  "/public/%2e./admin",
  "/public/..%2fadmin",
  "/public/..%2Fadmin",
  "/public%2f..%2fadmin",
  "/public/..%5cadmin",
  "/public\\..\\admin",
  "//admin",
  "///admin/x",
  "/./admin",
  "/admin/./x",
  "/admin/../admin/x",
  "/%61dmin",
  "/%61%64%6d%69%6e/x",
  "/ADMIN",
  "/Admin/x",
  "/aDmIn",
  "/public/%c0%ae%c0%ae/admin",
  "/public/%c0%af../admin",
  "/public/%e0%80%ae%e0%80%ae/admin",
  "/%c0%afadmin",
  "/public/%ff/admin",
  "/public/%2/admin",
  "/admin;x=1",
  "/admin;/x",
  "/public/..;/admin",
  "/public/.;/../admin",
  "/public;/../admin",
  "/public/%2e%2e;/admin",
  "/public/..%3b/admin",
  "/admin%00",
  "/admin%2500",
  "/public/%252e%252e/admin",
  "/public#/../admin",
  "/public/?/../admin",
  "/public/..?x=/admin",
];

/** Whole-segment prefix test, the gateway's own rule. */
const under = (path: string, prefix: string) => path === prefix || path.startsWith(`${prefix}/`);

for (const door of ["lane", "fastify"] as const) {
  describe(`path tricks (${door === "lane" ? "forwarding lane" : "Fastify path"})`, () => {
    let admin: Recorder;
    let pub: Recorder;
    let open: Recorder;
    let gw: Running;
    let laned: Map<string, number>;
    before(async () => {
      admin = await recorder();
      pub = await recorder();
      open = await recorder();
      gw = await gateway(`
${door === "fastify" ? "trustProxy: [10.255.255.254/32]\n" : ""}jwt: { main: { secret: ${SECRET}, algorithms: [HS256] } }
services:
  admin: { targets: [${admin.url}] }
  public: { targets: [${pub.url}] }
  open: { targets: [${open.url}] }
routes:
  - { name: admin, match: { path: /admin }, service: admin, auth: { jwt: main } }
  - { name: public, match: { path: /public }, service: public }
  - { name: open, match: { path: / }, service: open }
`);
      laned = countLanes(gw.gw);
    });
    after(async () => {
      await gw.close();
      for (const r of [admin, pub, open]) await r.close();
    });

    const send = (target: string, headers = ""): Promise<RawResult> =>
      rawSend(gw.port, `GET ${target} HTTP/1.1\r\nHost: h\r\n${headers}Connection: close\r\n\r\n`);

    test("without a token no spelling reaches the admin backend; every backend gets its route's normalised path", async () => {
      for (const t of TRICKS) {
        const r = await send(t);
        assert.equal(r.statuses.length, 1, `${t}: ${r.text.slice(0, 80)}`);
        assert.ok([200, 400, 401].includes(r.statuses[0]), `${t}: ${r.statuses[0]}`);
      }
      assert.deepEqual(admin.seen, [], "the admin backend was reached without a token");
      for (const line of pub.seen) assert.ok(under(line.slice(4).split("?")[0], "/public"), line);
      for (const line of open.seen) {
        const p = line.slice(4).split("?")[0];
        assert.ok(!under(p, "/admin") && !under(p, "/public"), line);
      }
      // Dot segments with `;` parameters (Tomcat reads "..;" as "..") are refused, never forwarded.
      assert.ok(!pub.seen.some((l) => /\/\.\.?;/.test(l)), pub.seen.join("\n"));
      assert.ok(!open.seen.some((l) => /\/\.\.?;/.test(l)), open.seen.join("\n"));
      if (door === "fastify") assert.equal(laned.size, 0);
      else assert.ok((laned.get("open") ?? 0) > 0);
    });

    test("the tricks resolve as the gateway says: 401 for /admin spellings, 400 for smuggled separators", async () => {
      const expect: [string, number][] = [
        ["/public/../admin", 401],
        ["/public/%2e%2e/admin", 401],
        ["/public/.%2e/admin", 401],
        ["//admin", 401],
        ["/admin/./x", 401],
        ["/%61dmin", 401],
        ["/public/..%2fadmin", 400],
        ["/public/..%5cadmin", 400],
        ["/public\\..\\admin", 400],
        ["/public/%c0%ae%c0%ae/admin", 400],
        ["/public/%c0%af../admin", 400],
        ["/public/%ff/admin", 400],
        ["/admin%00", 400],
        ["/public/..;/admin", 400],
        ["/public/.;/../admin", 400],
        ["/public/%2e%2e;/admin", 400],
      ];
      for (const [t, status] of expect) {
        const r = await send(t);
        assert.deepEqual(r.statuses, [status], `${t}: ${r.text.slice(0, 200)}`);
        assert.match(r.text, status === 401 ? /"code":"SY_AUTH_MISSING"/ : /"code":"SY_BAD_PATH"/, t);
      }
      // Case is significant (SPEC §3): /ADMIN is not /admin, and goes to the open route as /ADMIN.
      const before = open.seen.length;
      assert.deepEqual((await send("/ADMIN")).statuses, [200]);
      assert.deepEqual(open.seen.slice(before), ["GET /ADMIN"]);
    });

    test("with a token, the admin backend receives the authorised (normalised) path, not the spelling", async () => {
      const auth = `Authorization: Bearer ${jwt({ sub: "ada" })}\r\n`;
      const cases: [string, string][] = [
        ["/public/../admin/x", "GET /admin/x"],
        ["/public/%2e%2e/admin/%78", "GET /admin/x"],
        ["//admin//x", "GET /admin/x"],
        ["/admin/./x/../y", "GET /admin/y"],
        ["/%61dmin/x?q=%2e%2e", "GET /admin/x?q=%2e%2e"],
      ];
      for (const [t, want] of cases) {
        const r = await send(t, auth);
        assert.deepEqual(r.statuses, [200], `${t}: ${r.text.slice(0, 200)}`);
        assert.equal(admin.seen.at(-1), want, t);
      }
      const bad = await send("/admin/x", `Authorization: Bearer ${jwt({ sub: "ada" }).slice(0, -2)}xx\r\n`);
      assert.deepEqual(bad.statuses, [401]);
      assert.equal(admin.seen.length, cases.length);
    });
  });
}
