/**
 * Issue 13: a route's own Fastify plugins from routes.yaml. Real gateways on
 * 127.0.0.1:0, plugin files written to a temporary directory beside the
 * routes.yaml that names them.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { createHmac } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import type { ServerResponse } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import pino from "pino";
import { build } from "../../src/app.js";
import { parseConfig } from "../../src/config/load.js";
import { loadPlugins } from "../../src/config/plugins.js";
import { explain } from "../../src/explain.js";
import { Runtime } from "../../src/runtime.js";
import { Gateway } from "../../src/server.js";
import { type Backend, backend, capturingLogger, countLanes, request } from "../helpers/index.js";

const root = join(import.meta.dirname, "..", "..");
const examples = join(root, "examples", "plugins");
let dir: string;
let up: Backend;
const held: ServerResponse[] = [];
let onHeld: (() => void) | undefined;

/** A plugin that adds an upstream request header and a response header, and shows request.switchyard. */
const TAGGER = `
export const schema = {
  type: "object", additionalProperties: false, required: ["header"],
  properties: { header: { type: "string" }, value: { type: "string", default: "on" } },
};
export default async function tagger(app, opts) {
  app.addHook("onRequest", async (request) => {
    request.headers[opts.header] = opts.value;
    const sy = request.switchyard;
    request.headers["x-sy"] = [sy.route, sy.service, sy.claims?.sub ?? "-"].join(",");
  });
  app.addHook("onSend", async (_request, reply, payload) => {
    reply.header("x-tagged", \`\${opts.value} \${reply.getHeader("x-upstream") ?? "?"}\`);
    return payload;
  });
}
`;

before(async () => {
  dir = mkdtempSync(join(tmpdir(), "sy-plugins-"));
  writeFileSync(join(dir, "tagger.mjs"), TAGGER);
  writeFileSync(
    join(dir, "thrower.mjs"),
    `export default async (app) => { app.addHook("preHandler", async () => { throw Object.assign(new Error("db password is hunter2"), { statusCode: 401 }); }); };`,
  );
  writeFileSync(
    join(dir, "hang.mjs"),
    `export default (app, _o, done) => { app.addHook("onRequest", (_req, _reply, _next) => {}); done(); };`,
  );
  writeFileSync(join(dir, "not-a-plugin.mjs"), `export default { hello: "world" };`);
  up = await backend("up", (req, res) => {
    res.setHeader("x-upstream", "yes");
    if (req.url === "/held") {
      held.push(res);
      onHeld?.();
      return;
    }
    res.setHeader("content-type", "application/json");
    res.end(JSON.stringify({ url: req.url, headers: req.headers }));
  });
});
after(async () => {
  await up.close();
  rmSync(dir, { recursive: true, force: true });
});

function yaml(routes: string, extra = ""): string {
  return `version: 1
shutdownTimeout: 1s
listen: [{ port: 0, host: 127.0.0.1 }]
${extra}services: { up: { targets: [${up.url}] } }
routes:
${routes}`;
}

async function start(routes: string, logger?: pino.Logger, extra = "") {
  const config = parseConfig(yaml(routes, extra), { baseDir: dir });
  const gw = await Gateway.start(config, { logger, baseDir: dir });
  return { gw, url: `http://127.0.0.1:${gw.addresses[0].port}` };
}

describe("a route's own plugins", () => {
  test("add an upstream request header and a response header, on their route only; that route takes no lane", async () => {
    const { gw, url } = await start(`  - name: tagged
    match: { path: /tagged }
    service: up
    plugins: [{ use: ./tagger.mjs, options: { header: x-tag, value: hello } }]
  - name: plain
    service: up
`);
    try {
      const laned = countLanes(gw);
      const r = await request(`${url}/tagged/a`);
      assert.equal(r.status, 200);
      const seen = r.json<{ headers: Record<string, string> }>().headers;
      assert.equal(seen["x-tag"], "hello");
      assert.equal(seen["x-sy"], "tagged,up,-");
      // The plugin's onSend ran on the upstream's answer (its header was there to read).
      assert.equal(r.headers["x-tagged"], "hello yes");
      const other = await request(`${url}/other`);
      assert.equal(other.status, 200);
      assert.equal(other.json<{ headers: Record<string, string> }>().headers["x-tag"], undefined);
      assert.equal(other.headers["x-tagged"], undefined);
      assert.equal(laned.get("tagged"), undefined);
      assert.equal(laned.get("plain"), 1);
    } finally {
      await gw.close(0);
    }
  });

  test("request.switchyard carries verified claims; the API-key example refuses with the SPEC error shape", async () => {
    const secret = "plugin-test-secret";
    const b64 = (v: object) => Buffer.from(JSON.stringify(v)).toString("base64url");
    const unsigned = `${b64({ alg: "HS256", typ: "JWT" })}.${b64({ sub: "ada", exp: Math.floor(Date.now() / 1000) + 60 })}`;
    const token = `${unsigned}.${createHmac("sha256", secret).update(unsigned).digest("base64url")}`;
    const { gw, url } = await start(
      `  - name: keyed
    service: up
    auth: { jwt: main }
    plugins:
      - use: ${join(examples, "api-key.mjs")}
        options: { keys: [k-one, k-two] }
      - use: ./tagger.mjs
        options: { header: x-tag }
`,
      undefined,
      `jwt: { main: { secret: ${secret} } }\n`,
    );
    up.hits = 0;
    try {
      const auth = { authorization: `Bearer ${token}` };
      const refused = await request(`${url}/x`, { headers: { ...auth, "x-api-key": "k-onE" } });
      assert.equal(refused.status, 401);
      const body = refused.json();
      assert.deepEqual(Object.keys(body).sort(), ["code", "error", "message", "requestId", "statusCode"]);
      assert.equal(body.statusCode, 401);
      assert.equal(body.requestId, refused.headers["x-request-id"]);
      assert.equal(up.hits, 0, "a refused request never reaches the upstream");
      const none = await request(`${url}/x`, { headers: auth });
      assert.equal(none.status, 401);
      const ok = await request(`${url}/x`, { headers: { ...auth, "x-api-key": "k-two" } });
      assert.equal(ok.status, 200);
      assert.equal(ok.json<{ headers: Record<string, string> }>().headers["x-sy"], "keyed,up,ada");
    } finally {
      up.hits = 0;
      await gw.close(0);
    }
  });

  test("the HMAC example signs what the upstream can verify", async () => {
    const { signature } = await import(join(examples, "hmac-sign.mjs"));
    const { gw, url } = await start(`  - name: signed
    service: up
    plugins: [{ use: ${join(examples, "hmac-sign.mjs")}, options: { secret: 0123456789abcdef } }]
`);
    try {
      const r = await request(`${url}/orders?id=7`, { headers: { "x-signature": "forged" } });
      const h = r.json<{ headers: Record<string, string> }>().headers;
      const m = /^t=(\d+),v1=([0-9a-f]{64})$/.exec(h["x-signature"]);
      assert.ok(m, h["x-signature"]);
      assert.equal(
        m[2],
        signature("0123456789abcdef", Number(m[1]), "GET", "/orders?id=7", h["x-request-id"]),
      );
    } finally {
      await gw.close(0);
    }
  });

  test("a throwing plugin: 500 SY_INTERNAL without its text, logged with route and plugin, the gateway keeps serving", async () => {
    const { logger, lines } = capturingLogger();
    const { gw, url } = await start(
      `  - name: broken
    match: { path: /broken }
    service: up
    plugins: [{ use: ./thrower.mjs }]
  - name: fine
    service: up
`,
      logger,
    );
    try {
      for (let i = 0; i < 2; i++) {
        const r = await request(`${url}/broken`);
        assert.equal(r.status, 500);
        assert.equal(r.json().code, "SY_INTERNAL");
        assert.doesNotMatch(r.body, /hunter2/);
      }
      assert.equal((await request(`${url}/fine`)).status, 200);
      const logged = lines.find((l) => l.msg === "route plugin failed");
      assert.ok(logged);
      assert.equal(logged.route, "broken");
      assert.equal(logged.plugin, "./thrower.mjs");
    } finally {
      await gw.close(0);
    }
  });

  test("a hook that never calls back is cut by the route's timeout: 504", { timeout: 5000 }, async () => {
    const { logger, lines } = capturingLogger();
    const { gw, url } = await start(
      `  - name: stuck
    service: up
    timeout: 150ms
    plugins: [{ use: ./hang.mjs }]
`,
      logger,
    );
    try {
      const r = await request(`${url}/x`);
      assert.equal(r.status, 504);
      assert.equal(r.json().code, "SY_UPSTREAM_TIMEOUT");
      assert.equal(lines.find((l) => l.plugin === "./hang.mjs")?.route, "stuck");
    } finally {
      await gw.close(0);
    }
  });

  test("explain says which path a route takes and why", () => {
    const config = parseConfig(
      yaml(`  - name: tagged
    match: { path: /tagged }
    service: up
    plugins: [{ use: ./tagger.mjs, options: { header: x-tag } }]
  - name: plain
    service: up
`),
      { baseDir: dir },
    );
    const withPlugins = explain(config, "GET", "/tagged", []);
    assert.match(withPlugins, /policies: plugins\n {4}plugin \.\/tagger\.mjs\n/);
    assert.match(withPlugins, /path: Fastify hooks — its own plugins run as Fastify hooks/);
    assert.match(explain(config, "GET", "/plain", []), /path: fast lane/);
  });
});

test("README's way to test a plugin: build() and inject, no listener, no upstream", async () => {
  const config = parseConfig(
    `
version: 1
listen: [{ port: 0 }]
services: { api: { targets: ["http://127.0.0.1:9"] } }
routes:
  - name: api
    service: api
    plugins: [{ use: ./api-key.mjs, options: { keys: [k1] } }]
`,
    { baseDir: examples },
  );
  const app = await build(config);
  try {
    const res = await app.inject({ url: "/x", headers: { "x-api-key": "nope" } });
    assert.equal(res.statusCode, 401);
    assert.equal(res.json().requestId, res.headers["x-request-id"]);
  } finally {
    await app.close();
  }
});

describe("plugins are checked at load", () => {
  test("--check: a bad option, a misspelt one, a missing module and a non-function export, each at line:col", () => {
    const file = join(dir, "routes.yaml");
    writeFileSync(
      file,
      yaml(`  - name: a
    service: up
    plugins:
      - use: ./tagger.mjs
        options: { header: 7, valeu: x }
  - name: b
    service: up
    plugins:
      - use: ./nowhere.mjs
      - use: ./not-a-plugin.mjs
`),
    );
    const r = spawnSync(
      process.execPath,
      ["--import", "tsx", join(root, "src/cli.ts"), "--check", "--config", file],
      {
        cwd: root,
        encoding: "utf8",
      },
    );
    assert.equal(r.status, 1, r.stderr);
    const lines = r.stderr.trim().split("\n");
    assert.deepEqual(lines, [
      `${file}:10:28 routes[0].plugins[0].options.header: must be a string, got 7`,
      `${file}:10:31 routes[0].plugins[0].options.valeu: unknown key 'valeu' (did you mean 'value'?)`,
      `${file}:14:14 routes[1].plugins[0].use: cannot find module './nowhere.mjs'`,
      `${file}:15:14 routes[1].plugins[1].use: './not-a-plugin.mjs' has a default export of type object; it must export a Fastify plugin (async (app, opts) => …)`,
    ]);
  });

  test("a missing module fails the start before anything listens", async () => {
    const config = parseConfig(yaml(`  - { name: a, service: up, plugins: [{ use: ./gone.mjs }] }\n`), {
      baseDir: dir,
      displayName: "routes.yaml",
    });
    await assert.rejects(
      Gateway.start(config, { baseDir: dir }),
      /^ConfigError: routes\.yaml:6:46 routes\[0\]\.plugins\[0\]\.use: cannot find module '\.\/gone\.mjs'$/,
    );
    await assert.rejects(loadPlugins(config), /cannot find module/);
  });
});

describe("reload", () => {
  test("imports an edited plugin file anew; a request in flight finishes on the old code", async () => {
    const file = join(dir, "reload.yaml");
    const plugin = join(dir, "versioned.mjs");
    const version = (v: string) =>
      writeFileSync(
        plugin,
        `export default async (app) => { app.addHook("onSend", async (_q, reply, p) => { reply.header("x-version", "${v}"); return p; }); };`,
      );
    version("1");
    writeFileSync(file, yaml(`  - { name: v, service: up, plugins: [{ use: ./versioned.mjs }] }\n`));
    const rt = await Runtime.start({ file, logger: pino({ level: "silent" }) });
    try {
      const url = `http://127.0.0.1:${rt.gateway.addresses[0].port}`;
      assert.equal((await request(`${url}/x`)).headers["x-version"], "1");
      const arrived = new Promise<void>((ok) => {
        onHeld = ok;
      });
      const inFlight = request(`${url}/held`);
      await arrived;
      version("2");
      const result = await rt.reload();
      assert.equal(result.result, "success", result.error);
      assert.equal((await request(`${url}/x`)).headers["x-version"], "2");
      held.shift()!.end("done");
      assert.equal((await inFlight).headers["x-version"], "1");
    } finally {
      await rt.close(0);
    }
  });
});
