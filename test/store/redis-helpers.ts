/**
 * Redis for tests. The machine's shared Redis (127.0.0.1:6379) is used with a
 * key prefix unique to each test, and only those keys are deleted afterwards
 * (never a flush). "Redis going away" is played on a throwaway redis-server
 * child on a free port, killed and restarted by its pid — never the shared one.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import { Redis } from "ioredis";
import { deadPort } from "../helpers/index.js";

export const SHARED_REDIS = process.env.SY_TEST_REDIS_URL ?? "redis://127.0.0.1:6379";

let n = 0;
export function uniquePrefix(): string {
  return `sy-test-${process.pid}-${Date.now()}-${n++}:`;
}

/** Delete exactly the keys under `prefix` on the shared Redis. */
export async function deleteKeys(prefix: string, url = SHARED_REDIS): Promise<number> {
  const r = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 1 });
  await r.connect();
  let deleted = 0;
  try {
    let cursor = "0";
    do {
      const [next, keys] = await r.scan(
        cursor,
        "MATCH",
        `${prefix.replace(/[*?[\]\\]/g, "\\$&")}*`,
        "COUNT",
        1000,
      );
      cursor = next;
      if (keys.length > 0) deleted += await r.del(...keys);
    } while (cursor !== "0");
  } finally {
    r.disconnect();
  }
  return deleted;
}

/** A plain client on the shared Redis for assertions (caller disconnects). */
export async function client(url = SHARED_REDIS): Promise<Redis> {
  const r = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 1 });
  await r.connect();
  return r;
}

export interface Throwaway {
  port: number;
  url: string;
  /** Start (again) on the same port; resolves when it accepts connections. */
  start(): Promise<void>;
  /** Kill it (SIGKILL: gone at once, as a crashed server is). */
  stop(): Promise<void>;
}

/** A private redis-server with no persistence; DEBUG enabled so a test can make it slow. */
export async function throwawayRedis(): Promise<Throwaway> {
  const port = await deadPort();
  let child: ChildProcess | undefined;
  const t: Throwaway = {
    port,
    url: `redis://127.0.0.1:${port}`,
    async start() {
      const c = spawn(
        "redis-server",
        [
          "--port",
          String(port),
          "--bind",
          "127.0.0.1",
          "--save",
          "",
          "--appendonly",
          "no",
          "--enable-debug-command",
          "yes",
        ],
        { stdio: ["ignore", "pipe", "inherit"] },
      );
      child = c;
      let out = "";
      await new Promise<void>((ok, fail) => {
        c.stdout!.on("data", (d: Buffer) => {
          out += d;
          if (out.includes("Ready to accept connections")) ok();
        });
        c.once("exit", (code) => fail(new Error(`redis-server exited (${code}): ${out}`)));
      });
      c.stdout!.resume();
    },
    async stop() {
      const c = child;
      child = undefined;
      if (c === undefined || c.exitCode !== null) return;
      const exited = once(c, "exit");
      c.kill("SIGKILL");
      await exited;
    },
  };
  await t.start();
  return t;
}

/** Fail instead of hanging: the promise must settle within `ms`. */
export async function within<T>(ms: number, p: Promise<T>, what = "request"): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const limit = new Promise<never>((_, fail) => {
    timer = setTimeout(() => fail(new Error(`${what} did not finish within ${ms}ms`)), ms);
  });
  try {
    return await Promise.race([p, limit]);
  } finally {
    clearTimeout(timer);
  }
}
