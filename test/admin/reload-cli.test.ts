/**
 * Reload through the real CLI, as operators trigger it: SIGHUP and
 * POST /admin/reload, with `--workers 1` and `--workers 2`, under a steady
 * stream of requests that must all be answered.
 */
import assert from "node:assert/strict";
import { type ChildProcessWithoutNullStreams, spawn } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import http from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { backend, request } from "../helpers/index.js";
import { samples } from "./helpers.js";

interface Cli {
  child: ChildProcessWithoutNullStreams;
  dataPort: number;
  adminPort: number;
  /** Resolves with the next log line matching `re`. */
  line(re: RegExp): Promise<string>;
}

async function startCli(file: string, workers: number): Promise<Cli> {
  const child = spawn(
    process.execPath,
    ["--import", "tsx", "src/cli.ts", "--config", file, "--workers", String(workers)],
    {
      stdio: ["pipe", "pipe", "pipe"],
    },
  );
  const waiting: { re: RegExp; ok: (l: string) => void }[] = [];
  const seen: string[] = [];
  let buf = "";
  child.stdout.on("data", (c) => {
    buf += c;
    const lines = buf.split("\n");
    buf = lines.pop() ?? "";
    for (const l of lines) {
      seen.push(l);
      for (const w of [...waiting]) if (w.re.test(l)) waiting.splice(waiting.indexOf(w), 1) && w.ok(l);
    }
  });
  child.stderr.resume();
  const line = (re: RegExp) =>
    new Promise<string>((ok, fail) => {
      const old = seen.find((l) => re.test(l));
      if (old) return ok(old);
      waiting.push({ re, ok });
      child.once("exit", (code) => fail(new Error(`switchyard exited (${code}) before ${re}`)));
    });
  const admin = await line(/admin listening on http:\/\/127\.0\.0\.1:(\d+)/);
  const data = await line(/L7 listening on http:\/\/127\.0\.0\.1:(\d+)/);
  return {
    child,
    line,
    adminPort: Number(/127\.0\.0\.1:(\d+)/.exec(admin)![1]),
    dataPort: Number(/127\.0\.0\.1:(\d+)/.exec(data)![1]),
  };
}

/** Requests on keep-alive connections, `concurrency` at a time, until stop() — bounded at 20 s. */
function stream(port: number, concurrency = 4) {
  const agent = new http.Agent({ keepAlive: true, maxSockets: concurrency });
  const results = { ok: 0, failed: [] as string[], names: new Set<string>() };
  let running = true;
  const end = Date.now() + 20_000;
  const loops = Array.from({ length: concurrency }, async () => {
    while (running && Date.now() < end) {
      try {
        const r = await request(`http://127.0.0.1:${port}`, { path: "/s", agent });
        if (r.status === 200) {
          results.ok++;
          results.names.add(r.json().name as string);
        } else results.failed.push(`${r.status} ${r.body}`);
      } catch (err) {
        results.failed.push((err as Error).message);
      }
    }
  });
  return {
    results,
    async stop() {
      running = false;
      await Promise.all(loops);
      agent.destroy();
    },
  };
}

async function reloadsUnderLoad(workers: number) {
  const [a, b, c] = [await backend("a"), await backend("b"), await backend("c")];
  const dir = mkdtempSync(join(tmpdir(), "sy-reload-cli-"));
  const file = join(dir, "routes.yaml");
  const config = (target: string) => `version: 1
shutdownTimeout: 2s
admin: { port: 0, host: 127.0.0.1 }
listen: [{ port: 0, host: 127.0.0.1 }]
services: { s: { targets: [${target}] } }
routes: [{ name: s, service: s }]
`;
  writeFileSync(file, config(a.url));
  const cli = await startCli(file, workers);
  // A guard against a hung tree, not a pace: three tsx-compiled processes took over 60 s on a busy machine.
  const kill = setTimeout(() => cli.child.kill("SIGKILL"), 150_000);
  const admin = `http://127.0.0.1:${cli.adminPort}`;
  const load = stream(cli.dataPort);
  try {
    // Each worker's own admin call tells when it serves (cluster: the primary's readiness counts workers).
    for (let i = 0; (await request(admin, { path: "/readyz" })).status !== 200; i++) {
      assert.ok(i < 200, "never ready");
      await new Promise((r) => setTimeout(r, 50));
    }
    const before = load.results.ok;
    await new Promise((r) => setTimeout(r, 300));
    writeFileSync(file, config(b.url));
    cli.child.kill("SIGHUP");
    await cli.line(/reloaded .*generation 2/);
    await new Promise((r) => setTimeout(r, 300));
    writeFileSync(file, config(c.url));
    const r = await request(admin, { method: "POST", path: "/admin/reload" });
    assert.equal(r.status, 200, r.body);
    assert.equal(r.json().result, "success");
    assert.equal(r.json().generation, 3);
    await new Promise((r) => setTimeout(r, 300));
    await load.stop();
    assert.deepEqual(load.results.failed, [], "no request lost across two reloads");
    assert.ok(load.results.ok > before + 20, `requests flowed during the reloads (${load.results.ok})`);
    assert.deepEqual([...load.results.names].sort(), ["a", "b", "c"]);
    const after = (await request(`http://127.0.0.1:${cli.dataPort}`, { path: "/s" })).json().name;
    assert.equal(after, "c");

    const m = samples((await request(admin, { path: "/metrics" })).body);
    assert.equal(
      m.get('switchyard_config_reloads_total{result="success"}'),
      2,
      "counted once per reload, not per worker",
    );
    assert.equal(
      m.get('switchyard_http_requests_total{route="s",service="s",status="200"}'),
      load.results.ok + 1,
      "every worker's requests are summed",
    );
    const stats = (await request(admin, { path: "/admin/stats" })).json<{
      workers: number;
      generation: number;
    }>();
    assert.equal(stats.workers, workers);
    assert.equal(stats.generation, 3);
    const exited = new Promise<number | null>((ok) => cli.child.on("exit", (code) => ok(code)));
    cli.child.kill("SIGTERM");
    assert.equal(await exited, 0);
  } finally {
    await load.stop();
    clearTimeout(kill);
    cli.child.kill("SIGKILL");
    await Promise.all([a.close(), b.close(), c.close()]);
  }
}

test("--workers 1: SIGHUP and /admin/reload under steady load lose no request", () => reloadsUnderLoad(1));
test("--workers 2: the primary reloads every worker; /metrics sums them; no request lost", () =>
  reloadsUnderLoad(2));

test("--workers 2: after a refused reload, a worker that dies is replaced from the running config, not the broken file", async () => {
  const b = await backend("w");
  const dir = mkdtempSync(join(tmpdir(), "sy-reload-cli-"));
  const file = join(dir, "routes.yaml");
  const good = `version: 1
shutdownTimeout: 1s
admin: { port: 0, host: 127.0.0.1 }
listen: [{ port: 0, host: 127.0.0.1 }]
services: { s: { targets: [${b.url}] } }
routes: [{ name: s, service: s }]
`;
  writeFileSync(file, good);
  const cli = await startCli(file, 2);
  // A guard against a hung tree, not a pace: three tsx-compiled processes took over 60 s on a busy machine.
  const kill = setTimeout(() => cli.child.kill("SIGKILL"), 150_000);
  const admin = `http://127.0.0.1:${cli.adminPort}`;
  try {
    const ready = async () => {
      for (let i = 0; (await request(admin, { path: "/readyz" })).status !== 200; i++) {
        assert.ok(i < 300, "never ready");
        await new Promise((r) => setTimeout(r, 50));
      }
    };
    await ready();
    writeFileSync(file, `${good}routes: [{ name: s, service: nope }]\n`);
    const refused = await request(admin, { method: "POST", path: "/admin/reload" });
    assert.equal(refused.status, 422);
    const worker = /"pid":(\d+)/.exec(await cli.line(/L7 listening/))![1];
    process.kill(Number(worker), "SIGKILL");
    await cli.line(/exited .*starting another/);
    await ready();
    assert.equal(cli.child.exitCode, null, "the primary is still running");
    assert.equal((await request(`http://127.0.0.1:${cli.dataPort}`, { path: "/x" })).json().name, "w");
  } finally {
    clearTimeout(kill);
    cli.child.kill("SIGKILL");
    await b.close();
  }
});
