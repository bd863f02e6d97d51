/**
 * Issue 15: regexes from routes.yaml run on attacker input. `--check` warns
 * about patterns with catastrophic backtracking (safe-regex2); such a pattern
 * runs on V8's linear-time engine, so a pathological path or header value is
 * answered within a bound and the event loop keeps turning; a flagged pattern
 * that engine cannot run is refused at load with file:line:col.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { monitorEventLoopDelay } from "node:perf_hooks";
import { after, before, describe, test } from "node:test";
import { ConfigError, parseConfig } from "../../src/config/load.js";
import { gateway, type Running, request } from "../helpers/index.js";
import { type Recorder, recorder } from "./helpers.js";

const EVIL_PATH = "^/re/(a+)+$";
const EVIL_HEADER = "^(\\\\w+\\\\s?)*$"; // YAML double-quoted: ^(\w+\s?)*$

const cli = (args: string[]) =>
  spawnSync(process.execPath, ["--import", "tsx", "src/cli.ts", ...args], {
    encoding: "utf8",
    timeout: 60_000,
  });

describe("regexes on attacker input", () => {
  let rec: Recorder;
  let gw: Running;
  let dir: string;
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), "sy-regex-"));
    rec = await recorder();
    gw = await gateway(`
services: { rec: { targets: [${rec.url}] } }
routes:
  - { name: evil-path, match: { path: "${EVIL_PATH}", pathType: regex }, service: rec }
  - { name: evil-header, match: { path: /h, headers: { x-v: { regex: "${EVIL_HEADER}" } } }, service: rec }
  - { name: fine, match: { path: "^/ok/[0-9]+$", pathType: regex }, service: rec }
  - { name: groups, match: { path: "^/g/(?<id>(x+)+)$", pathType: regex }, service: rec, rewrite: { path: "/out/{id}" } }
`);
  });
  after(async () => {
    await gw?.close();
    await rec?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  test("--check warns about each catastrophic pattern (and not about a safe one), and still exits 0", () => {
    const f = join(dir, "routes.yaml");
    writeFileSync(
      f,
      `version: 1
listen: [{ port: 0 }]
services: { s: { targets: [http://127.0.0.1:9] } }
routes:
  - { name: evil-path, match: { path: "${EVIL_PATH}", pathType: regex }, service: s }
  - { name: evil-header, match: { path: /h, headers: { x-v: { regex: "${EVIL_HEADER}" } } }, service: s }
  - { name: fine, match: { path: "^/ok/[0-9]+$", pathType: regex }, service: s }
`,
    );
    const r = cli(["--check", "--config", f]);
    assert.equal(r.status, 0, r.stderr);
    const warnings = r.stderr.split("\n").filter((l) => l.includes("warning:"));
    assert.equal(warnings.length, 2, r.stderr);
    assert.match(
      warnings[0],
      /routes\[0\] 'evil-path' match\.path: regex "\^\/re\/\(a\+\)\+\$" can backtrack catastrophically/,
    );
    assert.match(warnings[1], /routes\[1\] 'evil-header' match\.headers\.x-v: regex/);
    assert.match(r.stdout, /OK/);
  });

  test("a pathological path against the warned pattern: answered within a bound, the event loop never stalls", async () => {
    const h = monitorEventLoopDelay({ resolution: 10 });
    h.enable();
    const t0 = Date.now();
    // Shortest first, each bounded: were the pattern on the backtracking engine, 27 a's alone
    // take several seconds (the assertion fails there, before a longer one could hang the run).
    for (const n of [27, 500, 8000]) {
      const t = Date.now();
      const r = await request(gw.url, { path: `/re/${"a".repeat(n)}!` });
      assert.equal(r.status, 404);
      assert.ok(Date.now() - t < 3000, `${n} a's took ${Date.now() - t} ms`);
    }
    const ok = await request(gw.url, { path: `/re/${"a".repeat(8000)}` });
    assert.equal(ok.status, 200, "the pattern still matches what it should");
    h.disable();
    assert.ok(Date.now() - t0 < 5000, `took ${Date.now() - t0} ms`);
    assert.ok(h.max / 1e6 < 1000, `event loop stalled ${Math.round(h.max / 1e6)} ms`);
  });

  test("a pathological header value against the warned header pattern: answered within a bound", async () => {
    const t0 = Date.now();
    const r = await request(gw.url, { path: "/h", headers: { "x-v": `${"ab ".repeat(2000)}!` } });
    assert.equal(r.status, 404);
    const ok = await request(gw.url, { path: "/h", headers: { "x-v": "ab cd ef" } });
    assert.equal(ok.status, 200);
    assert.ok(Date.now() - t0 < 5000, `took ${Date.now() - t0} ms`);
  });

  test("a safe pattern is untouched; a warned one matches as before, named groups included", async () => {
    assert.equal((await request(gw.url, { path: "/ok/12" })).status, 200);
    assert.equal((await request(gw.url, { path: "/ok/12x" })).status, 404);
    assert.equal((await request(gw.url, { path: "/g/xxx" })).status, 200);
    assert.equal(rec.seen.at(-1), "GET /out/xxx");
    assert.equal((await request(gw.url, { path: `/g/${"x".repeat(5000)}y` })).status, 404);
  });

  test("a catastrophic pattern with a backreference (no linear engine for it) is refused at load with line:col", () => {
    assert.throws(
      () =>
        parseConfig(`version: 1
listen: [{ port: 0 }]
services: { s: { targets: [http://127.0.0.1:9] } }
routes:
  - name: evil
    match: { path: "^/x/(a+)+\\\\1$", pathType: regex }
    service: s
`),
      (err: unknown) => {
        assert.ok(err instanceof ConfigError);
        assert.match(
          err.message,
          /:6:\d+ routes\[0\]\.match\.path: regex .*backtrack catastrophically.*backreference/,
        );
        return true;
      },
    );
  });
});
