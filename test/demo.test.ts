/**
 * `npm run demo` for real: examples/demo.mjs as a child process (sample
 * services + the gateway on the shipped routes.yaml), every port moved to a
 * free one through the environment. Checks what the demo promises — balancing,
 * a JWT-protected route with the token it prints, a rate limit, a cache — and
 * that Ctrl-C (SIGINT) stops everything and frees every port.
 *
 * Needs dist/ (npm run build); the demo builds it itself when missing.
 */
import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { existsSync } from "node:fs";
import http, { type IncomingHttpHeaders } from "node:http";
import net, { type AddressInfo } from "node:net";
import { dirname, join } from "node:path";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { missing } from "./helpers/needs.js";

const noRedis = await missing("redis");

const root = join(dirname(fileURLToPath(import.meta.url)), "..");

/** n distinct free ports: all bound to 0 at once (so none repeats), read, then released. */
async function freePorts(n: number): Promise<number[]> {
  const servers = await Promise.all(
    Array.from(
      { length: n },
      () =>
        new Promise<net.Server>((ok, fail) => {
          const s = net.createServer();
          s.once("error", fail);
          s.listen(0, "127.0.0.1", () => ok(s));
        }),
    ),
  );
  const ports = servers.map((s) => (s.address() as AddressInfo).port);
  await Promise.all(servers.map((s) => new Promise((ok) => s.close(ok))));
  return ports;
}

interface Reply {
  status: number;
  headers: IncomingHttpHeaders;
  body: string;
}

/** One request on its own connection (no keep-alive left behind), bounded in time. */
function get(port: number, path: string, headers: Record<string, string> = {}): Promise<Reply> {
  return new Promise((ok, fail) => {
    const req = http.get({ host: "127.0.0.1", port, path, headers, agent: false, timeout: 5000 }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (c: string) => {
        body += c;
      });
      res.on("end", () => ok({ status: res.statusCode ?? 0, headers: res.headers, body }));
      res.on("error", fail);
    });
    req.on("timeout", () => req.destroy(new Error(`GET ${path}: no answer within 5 s`)));
    req.on("error", fail);
  });
}

/** Resolves to the error code of a TCP connect (e.g. ECONNREFUSED), or "connected". */
function connectResult(port: number): Promise<string> {
  return new Promise((ok) => {
    const s = net.connect(port, "127.0.0.1");
    s.setTimeout(2000, () => {
      s.destroy();
      ok("timeout");
    });
    s.on("connect", () => {
      s.destroy();
      ok("connected");
    });
    s.on("error", (err: NodeJS.ErrnoException) => ok(err.code ?? err.message));
  });
}

/** Sends `PING` through a TCP port and resolves to the first reply line, or undefined. */
function redisPing(port: number): Promise<string | undefined> {
  return new Promise((ok) => {
    let data = "";
    const s = net.connect(port, "127.0.0.1", () => s.write("PING\r\n"));
    s.setTimeout(2000, () => s.destroy());
    s.on("data", (c: Buffer) => {
      data += c.toString();
      if (data.includes("\r\n")) s.end();
    });
    s.on("close", () => ok(data ? data.split("\r\n")[0] : undefined));
    s.on("error", () => {});
  });
}

const exited = (child: ChildProcess, ms: number) =>
  new Promise<{ code: number | null; signal: NodeJS.Signals | null } | "timeout">((ok) => {
    if (child.exitCode !== null || child.signalCode !== null)
      return ok({ code: child.exitCode, signal: child.signalCode });
    const t = setTimeout(() => ok("timeout"), ms);
    child.once("exit", (code, signal) => {
      clearTimeout(t);
      ok({ code, signal });
    });
  });

describe("npm run demo (examples/demo.mjs)", { timeout: 180_000 }, () => {
  let child: ChildProcess | undefined;
  let output = "";
  let token = "";
  const env: Record<string, string> = {};
  let port = 0;
  let redisProxyPort = 0;
  let allPorts: number[] = [];

  before(async () => {
    allPorts = await freePorts(7);
    [port, redisProxyPort] = allPorts;
    const names = ["USERS1_PORT", "USERS2_PORT", "ORDERS1_PORT", "ORDERS2_PORT", "CATALOG_PORT"];
    names.forEach((n, i) => {
      env[n] = String(allPorts[i + 2]);
    });
    const childEnv: NodeJS.ProcessEnv = {
      ...process.env,
      ...env,
      PORT: String(port),
      HOST: "127.0.0.1",
      REDIS_PROXY_PORT: String(redisProxyPort),
      REDIS_TARGET_PORT: "6379",
    };
    delete childEnv.JWT_SECRET; // the shipped default, as `npm run demo` has it
    // detached: the demo leads its own process group, so `after` can kill it
    // and the gateway it started together, whatever state they are in.
    const built = existsSync(join(root, "dist/src/cli.js"));
    child = spawn(process.execPath, [join(root, "examples/demo.mjs")], {
      cwd: root,
      env: childEnv,
      stdio: ["ignore", "pipe", "pipe"],
      detached: true,
    });
    child.stdout?.setEncoding("utf8").on("data", (c: string) => {
      output += c;
    });
    child.stderr?.setEncoding("utf8").on("data", (c: string) => {
      output += c;
    });
    const up = await new Promise<boolean>((ok) => {
      // Without dist/ the demo runs `npm run build` first: tsc alone took over 15 s on a loaded 2-core machine.
      const t = setTimeout(() => ok(false), built ? 15_000 : 120_000);
      const check = () => {
        if (output.includes("Ctrl-C stops the gateway")) {
          clearTimeout(t);
          ok(true);
        }
      };
      child?.stdout?.on("data", check);
      child?.once("exit", () => {
        clearTimeout(t);
        ok(false);
      });
      check();
    });
    assert.ok(
      up,
      `the demo did not print "Switchyard is up" within ${built ? 15 : 120} s:\n${output.slice(-4000)}`,
    );
    assert.match(output, new RegExp(`Switchyard is up on http://127\\.0\\.0\\.1:${port}`));
    token = /TOKEN=([\w-]+\.[\w-]+\.[\w-]+)/.exec(output)?.[1] ?? "";
    assert.ok(token, "the demo prints a TOKEN=… line");
  });

  after(async () => {
    if (child?.pid === undefined) return;
    if (child.exitCode === null && child.signalCode === null) {
      try {
        process.kill(-child.pid, "SIGKILL");
      } catch {}
      await exited(child, 5000);
    }
  });

  it("prints the curl commands for each feature", () => {
    for (const needle of [
      "/api/users/7",
      "/api/me",
      "/api/search",
      "/api/catalog",
      "/api/reports",
      "redis-cli -p",
    ]) {
      assert.ok(output.includes(needle), `missing ${needle} in the demo's output`);
    }
  });

  it("balances /api/users across users-1 and users-2 (weights 1:3)", async () => {
    const seen: string[] = [];
    for (let i = 0; i < 8; i++) {
      const r = await get(port, "/api/users/7");
      assert.equal(r.status, 200);
      const body = JSON.parse(r.body);
      assert.equal(body.path, "/users/7", "stripPrefix /api");
      seen.push(body.instance);
    }
    assert.equal(seen.filter((s) => s === "users-1").length, 2, seen.join(" "));
    assert.equal(seen.filter((s) => s === "users-2").length, 6, seen.join(" "));
  });

  it("/api/me: 401 without the token, 200 with the printed one, x-user-id from its sub", async () => {
    const no = await get(port, "/api/me");
    assert.equal(no.status, 401);
    assert.equal(JSON.parse(no.body).code, "SY_AUTH_MISSING");
    assert.match(String(no.headers["www-authenticate"]), /^Bearer/);

    const [head, , sig] = token.split(".");
    const forged = Buffer.from(JSON.stringify({ sub: "mallory", exp: 4102444800 })).toString("base64url");
    const bad = await get(port, "/api/me", { authorization: `Bearer ${head}.${forged}.${sig}` });
    assert.equal(bad.status, 401);
    assert.equal(JSON.parse(bad.body).code, "SY_AUTH_INVALID");

    const yes = await get(port, "/api/me", { authorization: `Bearer ${token}`, "x-user-id": "mallory" });
    assert.equal(yes.status, 200, yes.body);
    const body = JSON.parse(yes.body);
    assert.equal(body.user, "alice", "the service sees the token's sub, never the client's x-user-id");
    assert.equal(body.path, "/users/me");
  });

  it("/api/search: 5 requests pass, the 6th is 429 with Retry-After", async () => {
    const statuses: number[] = [];
    let last: Reply | undefined;
    for (let i = 0; i < 6; i++) {
      last = await get(port, "/api/search?q=x");
      statuses.push(last.status);
    }
    assert.deepEqual(statuses, [200, 200, 200, 200, 200, 429]);
    assert.equal(JSON.parse(last?.body ?? "{}").code, "SY_RATE_LIMITED");
    assert.ok(Number(last?.headers["retry-after"]) > 0);
    assert.equal(last?.headers["ratelimit-limit"], "5");
  });

  it("/api/catalog: X-Cache MISS, then HIT with the same body", async () => {
    const first = await get(port, "/api/catalog");
    const second = await get(port, "/api/catalog");
    assert.equal(first.status, 200);
    assert.equal(first.headers["x-cache"], "MISS");
    assert.equal(second.status, 200);
    assert.equal(second.headers["x-cache"], "HIT");
    assert.equal(second.body, first.body, "served from the cache: the upstream's first answer");
    assert.notEqual(second.headers["x-request-id"], first.headers["x-request-id"]);
  });

  it("/api/reports: the API-key plugin refuses without the key (SPEC error shape), passes with it", async () => {
    const no = await get(port, "/api/reports");
    assert.equal(no.status, 401);
    assert.equal(JSON.parse(no.body).requestId, no.headers["x-request-id"]);
    const wrong = await get(port, "/api/reports", { "x-api-key": "demo-kez" });
    assert.equal(wrong.status, 401);
    const yes = await get(port, "/api/reports", { "x-api-key": "demo-key" });
    assert.equal(yes.status, 200, yes.body);
    assert.equal(JSON.parse(yes.body).path, "/api/reports");
  });

  it("the tcp listener passes bytes to the machine's Redis", { skip: noRedis }, async () => {
    assert.equal(await redisPing(redisProxyPort), "+PONG");
  });

  it("SIGINT stops the demo within 10 s, exit code 0, every port released", async () => {
    assert.ok(child?.pid);
    child.kill("SIGINT");
    const result = await exited(child, 10_000);
    assert.notEqual(result, "timeout", `the demo did not exit within 10 s:\n${output.slice(-2000)}`);
    assert.deepEqual(result, { code: 0, signal: null });
    for (const p of allPorts) {
      assert.equal(await connectResult(p), "ECONNREFUSED", `port ${p} still accepts connections`);
    }
  });
});
