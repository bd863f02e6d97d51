import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, test } from "node:test";
import { ConfigError, parseConfig } from "../../src/config/load.js";

const cli = (args: string[], env: NodeJS.ProcessEnv = {}) =>
  spawnSync(process.execPath, ["--import", "tsx", "src/cli.ts", ...args], {
    encoding: "utf8",
    env: { ...process.env, ...env },
  });

const problems = (yaml: string, env: NodeJS.ProcessEnv = {}) => {
  try {
    parseConfig(yaml, { env });
  } catch (err) {
    assert.ok(err instanceof ConfigError);
    return err.message.split("\n");
  }
  assert.fail("expected the config to be refused");
};

describe("routes.yaml loading", () => {
  test("defaults are filled in and the result is frozen", () => {
    const c = parseConfig(
      "version: 1\nlisten: [{ port: 8080 }]\nservices: { s: { targets: [http://127.0.0.1:1] } }\nroutes: [{ name: r, service: s }]\n",
    );
    assert.equal(c.listen[0].host, "0.0.0.0");
    assert.equal(c.services.s.balancer, "round-robin");
    assert.equal(c.routes[0].bodyLimit, "1mb");
    assert.equal(c.shutdownTimeout, "30s");
    assert.ok(Object.isFrozen(c.routes[0]));
    assert.throws(() => {
      (c.routes as unknown as unknown[]).push({});
    });
  });

  test("${ENV} and ${ENV:-default}; a whole-value reference keeps its YAML type", () => {
    const c = parseConfig("version: 1\nlisten:\n  - port: ${PORT:-8081}\n    host: ${HOST}\n", {
      env: { HOST: "127.0.0.2" },
    });
    assert.equal(c.listen[0].port, 8081);
    assert.equal(c.listen[0].host, "127.0.0.2");
    const lines = problems("version: 1\nlisten:\n  - port: 80\n    host: ${MISSING_HOST}\n");
    assert.deepEqual(lines, [
      "routes.yaml:4:11 listen[0].host: environment variable MISSING_HOST is not set (use ${MISSING_HOST:-default} for a default)",
    ]);
  });

  test("every problem at once, with line:col, key path and a hint", () => {
    const lines = problems(`version: 1
listen:
  - port: 8080
    hots: 127.0.0.1
services:
  users:
    targets: [http://127.0.0.1:3001]
    balancer: round-robbin
    timeouts: { connect: 2x }
routes:
  - name: users
    match: { pathh: /api/users }
    service: usres
  - name: users
    match: { path: "/x(", pathType: regex }
    service: users
`);
    assert.deepEqual(lines, [
      "routes.yaml:4:5 listen[0].hots: unknown key 'hots' (did you mean 'host'?)",
      "routes.yaml:8:15 services.users.balancer: 'round-robbin' is not one of round-robin, least-connections, p2c, random, ip-hash, consistent-hash (did you mean 'round-robin'?)",
      "routes.yaml:9:26 services.users.timeouts.connect: '2x' is not a duration (use 250ms, 5s, 1m or 1h)",
      "routes.yaml:12:14 routes[0].match.pathh: unknown key 'pathh' (did you mean 'path'?)",
      "routes.yaml:13:14 routes[0].service: unknown service 'usres' (did you mean 'users'?)",
      "routes.yaml:14:11 routes[1].name: duplicate route name 'users' (also routes[0])",
      "routes.yaml:15:20 routes[1].match.path: regex does not compile: Invalid regular expression: //x(/: Unterminated group",
    ]);
  });

  test("SPEC's own retries example (unquoted 502) validates", () => {
    const c = parseConfig(
      "version: 1\nservices:\n  s:\n    targets: [http://127.0.0.1:1]\n    retries: { attempts: 2, on: [connect-failure, reset, 502, 503, 504] }\n",
    );
    assert.deepEqual(c.services.s.retries?.on, ["connect-failure", "reset", 502, 503, 504]);
  });

  test("YAML syntax errors carry their position", () => {
    const lines = problems("version: 1\nlisten: [\n");
    assert.match(lines[0], /^routes\.yaml:\d+:\d+ \(root\): /);
  });

  test("structural rules: one of service/split/respond, http targets for routes, listeners for routes", () => {
    const lines = problems(`version: 1
services:
  db: { targets: [tcp://127.0.0.1:5432] }
routes:
  - { name: a, service: db }
  - { name: b }
`);
    assert.ok(
      lines.some((l) => /routes\.yaml:1:1 listen: routes are declared but no L7 listener/.test(l)),
      lines.join("\n"),
    );
    assert.ok(
      lines.some((l) =>
        /services\.db\.targets\[0\]: target 'tcp:\/\/127\.0\.0\.1:5432' must be http:\/\/ or https:\/\//.test(
          l,
        ),
      ),
    );
    assert.ok(
      lines.some((l) => /routes\[1\]: a route needs exactly one of service, split or respond/.test(l)),
    );
  });
});

describe("switchyard CLI", () => {
  const dir = mkdtempSync(join(tmpdir(), "sy-cli-"));
  test("--check on a valid file: exit 0 and a one-line summary; shadowed routes warned", () => {
    const f = join(dir, "ok.yaml");
    writeFileSync(
      f,
      "version: 1\nlisten: [{ port: 8080 }]\nservices: { s: { targets: [http://127.0.0.1:1] } }\nroutes:\n  - { name: all, service: s }\n  - { name: never, match: { path: /api }, service: s }\n",
    );
    const r = cli(["--check", "--config", f]);
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stdout, `${f}: OK (2 routes, 1 service, 1 listener, 0 tcp listeners, 0 udp listeners)\n`);
    assert.match(r.stderr, /routes\[1\] 'never' can never match: routes\[0\] 'all'/);
  });

  test("--check on a broken file: exit 1, one problem a line, no stack trace", () => {
    const f = join(dir, "bad.yaml");
    writeFileSync(f, "version: 2\nlisten: [{ port: 99999 }]\n");
    const r = cli(["--check", "--config", f]);
    assert.equal(r.status, 1);
    assert.equal(r.stdout, "");
    const lines = r.stderr.trim().split("\n");
    assert.equal(lines.length, 2, r.stderr);
    assert.match(lines[0], new RegExp(`^${f}:1:10 version: must be 1$`));
    assert.match(lines[1], /:2:18 listen\[0\]\.port: /);
    assert.doesNotMatch(r.stderr, /\n\s+at /);
  });

  test("a missing file is one line and exit 1", () => {
    const r = cli(["--check", "--config", join(dir, "nope.yaml")]);
    assert.equal(r.status, 1);
    assert.match(r.stderr, /nope\.yaml:0:0 \(root\): cannot read .*file not found/);
  });

  test("schema prints the JSON Schema; explain shows the decision", () => {
    const s = cli(["schema"]);
    assert.equal(s.status, 0);
    const schema = JSON.parse(s.stdout);
    assert.equal(schema.properties.routes.items.properties.match.properties.pathType.default, "prefix");
    const f = join(dir, "ex.yaml");
    writeFileSync(
      f,
      "version: 1\nlisten: [{ port: 8080 }]\nservices: { users: { targets: [http://127.0.0.1:3001] } }\nroutes:\n  - { name: v1, match: { path: /api/users, headers: { x-version: '1' } }, service: users }\n  - { name: users, match: { path: /api/users }, service: users, rewrite: { stripPrefix: /api } }\n",
    );
    const e = cli([
      "explain",
      "--config",
      f,
      "GET",
      "http://api.example.com/api/users/7",
      "-H",
      "x-version: 2",
    ]);
    assert.equal(e.status, 0, e.stderr);
    assert.match(e.stdout, /routes\[0\] v1: no — .*x-version/);
    assert.match(e.stdout, /routes\[1\] users: MATCH/);
    assert.match(e.stdout, /upstream path: \/users\/7/);
    assert.match(e.stdout, /users: round-robin over http:\/\/127\.0\.0\.1:3001/);
  });

  test("a port in use: exit 1 with one line", async () => {
    const net = await import("node:net");
    const blocker = net.createServer();
    await new Promise<void>((ok) => blocker.listen(0, "127.0.0.1", ok));
    const port = (blocker.address() as { port: number }).port;
    const f = join(dir, "busy.yaml");
    writeFileSync(f, `version: 1\nlisten: [{ port: ${port}, host: 127.0.0.1 }]\n`);
    const r = cli(["--config", f, "--log-level", "silent"]);
    blocker.close();
    assert.equal(r.status, 1);
    assert.equal(r.stderr, `switchyard: cannot listen on 127.0.0.1:${port}: address already in use\n`);
  });
});

describe("YAML aliases", () => {
  test("an alias used before (or without) its anchor is a problem at its own line and column", () => {
    const lines = problems(
      "version: 1\nservices:\n  a: { targets: [http://127.0.0.1:1] }\nroutes:\n  - { name: r, service: *svc }\n",
    );
    assert.deepEqual(lines, [
      "routes.yaml:5:25 (root): unknown alias *svc (hint: define the anchor &svc before using it)",
    ]);
  });

  test("an anchor defined first is used as YAML says", () => {
    const c = parseConfig(
      "version: 1\nlisten: [{ port: 0 }]\nservices:\n  a: &t { targets: [http://127.0.0.1:1] }\n  b: *t\nroutes: [{ name: r, service: b }]\n",
    );
    assert.deepEqual(c.services.b.targets, c.services.a.targets);
  });

  test("a billion-laughs file is refused, not expanded", () => {
    const rows = ["version: 1", "a0: &a0 [x, x, x, x, x, x, x, x, x, x]"];
    for (let i = 1; i < 8; i++)
      rows.push(
        `a${i}: &a${i} [${Array(10)
          .fill(`*a${i - 1}`)
          .join(", ")}]`,
      );
    const lines = problems(`${rows.join("\n")}\n`);
    assert.equal(lines.length, 1);
    assert.match(lines[0], /^routes\.yaml:1:1 .*alias.*expanded at most 100 times/);
  });
});
