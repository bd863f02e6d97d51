/**
 * The one skip policy for tests that need something Node does not bring: the
 * shared Redis on 127.0.0.1:6379, a throwaway `redis-server`, `redis-cli`,
 * `redis-benchmark`, PostgreSQL (`psql` and a server on 127.0.0.1:5432), or a
 * curl with HTTP/2 (`curl-http2`).
 *
 * - In CI (the `CI` environment variable set, as CI services do and .ci/run
 *   should): a missing one is a failure — CI provides them, so a test that
 *   quietly skips there is a test that never runs.
 * - Elsewhere: the test or suite skips, with one line naming what is missing.
 *
 * Only absence is a skip. Something present but misbehaving (Redis answering
 * errors, psql refused by the server) is the test's to fail on.
 *
 *   describe("redis store", { skip: await missing("redis") }, () => { … });
 *   test("psql through the listener", { skip: await missing("postgres") }, async () => { … });
 */
import { execFileSync } from "node:child_process";
import { accessSync, constants } from "node:fs";
import net from "node:net";
import { delimiter, join } from "node:path";

export type Need = "redis" | "redis-server" | "redis-cli" | "redis-benchmark" | "postgres" | "curl-http2";

/** Whether this run is CI's: there, nothing is skipped for want of a service. */
export const inCI = ["1", "true", "yes"].includes((process.env.CI ?? "").toLowerCase());

const SHARED_REDIS = new URL(process.env.SY_TEST_REDIS_URL ?? "redis://127.0.0.1:6379");

/** Why `need` is not available here, or undefined when it is. Checked once per process. */
const checks = new Map<Need, Promise<string | undefined>>();
function check(need: Need): Promise<string | undefined> {
  let p = checks.get(need);
  if (p === undefined) {
    p = probe(need);
    checks.set(need, p);
  }
  return p;
}

async function probe(need: Need): Promise<string | undefined> {
  switch (need) {
    case "redis":
      return (await redisPing(SHARED_REDIS.hostname, Number(SHARED_REDIS.port || 6379)))
        ? undefined
        : `no Redis answering PING on ${SHARED_REDIS.host}`;
    case "redis-server":
    case "redis-cli":
    case "redis-benchmark":
      return onPath(need) ? undefined : `no ${need} on PATH`;
    case "curl-http2":
      // A curl built with nghttp2 lists HTTP2 among its features (curl --http2 / --http2-prior-knowledge).
      if (!onPath("curl")) return "no curl on PATH";
      return /^Features:.*\bHTTP2\b/m.test(execFileSync("curl", ["--version"], { encoding: "utf8" }))
        ? undefined
        : "curl is built without HTTP/2";
    case "postgres":
      if (!onPath("psql")) return "no psql on PATH";
      return (await listening("127.0.0.1", 5432)) ? undefined : "no PostgreSQL listening on 127.0.0.1:5432";
  }
}

/**
 * undefined when every need is met (run the test); otherwise, outside CI, the
 * one-line reason to pass as `skip`; in CI, an error (the file fails to load,
 * or the test fails) naming what CI did not provide.
 */
export async function missing(...needs: Need[]): Promise<string | undefined> {
  const reasons = (await Promise.all(needs.map(check))).filter((r) => r !== undefined);
  if (reasons.length === 0) return undefined;
  const line = `needs ${needs.join(", ")}: ${reasons.join("; ")}`;
  if (inCI) throw new Error(`CI must provide what this test needs — ${line}`);
  return line;
}

function onPath(file: string): boolean {
  for (const dir of (process.env.PATH ?? "").split(delimiter)) {
    if (dir === "") continue;
    try {
      accessSync(join(dir, file), constants.X_OK);
      return true;
    } catch {
      // not in this directory
    }
  }
  return false;
}

/** A TCP connect that succeeds within a second. */
function listening(host: string, port: number): Promise<boolean> {
  return new Promise((ok) => {
    const s = net.connect({ host, port });
    s.setTimeout(1000, () => s.destroy());
    s.once("connect", () => {
      s.destroy();
      ok(true);
    });
    s.once("close", () => ok(false));
    s.once("error", () => {});
  });
}

/** RESP inline PING: "+PONG" within a second. */
function redisPing(host: string, port: number): Promise<boolean> {
  return new Promise((ok) => {
    let got = "";
    const s = net.connect({ host, port }, () => s.write("PING\r\n"));
    s.setTimeout(1000, () => s.destroy());
    s.on("data", (d: Buffer) => {
      got += d.toString("latin1");
      if (got.includes("\r\n")) {
        s.destroy();
        ok(got.startsWith("+PONG"));
      }
    });
    s.once("close", () => ok(got.startsWith("+PONG")));
    s.once("error", () => {});
  });
}
