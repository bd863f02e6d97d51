/**
 * Throwaway Redis topologies for tests (issue 14): a 3-primary Redis Cluster
 * and a primary + replica watched by one Sentinel, all redis-server children
 * on free 127.0.0.1 ports with their files in a temp dir. Nodes are killed
 * (SIGKILL, as a crash) and restarted by pid; close() kills every child it
 * started and removes the dir. Never the shared Redis on 6379.
 */
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { once } from "node:events";
import { existsSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { delimiter, join } from "node:path";
import { promisify } from "node:util";
import { deadPort } from "../helpers/index.js";

const run = promisify(execFile);

/** redis-cli against 127.0.0.1:`port`; its stdout. */
export async function cli(port: number, ...args: string[]): Promise<string> {
  const { stdout } = await run("redis-cli", ["-h", "127.0.0.1", "-p", String(port), ...args], {
    timeout: 10_000,
  });
  return stdout;
}

/** Poll `ok` every 50 ms until it holds (bounded: fails after `ms`). */
export async function until(what: string, ms: number, ok: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + ms;
  for (let i = 0; Date.now() < deadline && i < 10_000; i++) {
    if (await ok().catch(() => false)) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`${what}: not within ${ms}ms`);
}

/** Where this redis-server lacks sentinel mode, .ci/run installs the redis-sentinel binary. */
function onPath(bin: string): boolean {
  return (process.env.PATH ?? "").split(delimiter).some((d) => d !== "" && existsSync(join(d, bin)));
}

class Proc {
  private child: ChildProcess | undefined;
  constructor(
    readonly port: number,
    private readonly args: string[],
    private readonly bin = "redis-server",
  ) {}

  /** Start (again); resolves when it accepts connections. */
  async start(): Promise<void> {
    const c = spawn(this.bin, this.args, { stdio: ["ignore", "pipe", "inherit"] });
    this.child = c;
    let out = "";
    await new Promise<void>((ok, fail) => {
      const timer = setTimeout(() => fail(new Error(`redis-server :${this.port} not ready: ${out}`)), 10_000);
      c.stdout!.on("data", (d: Buffer) => {
        out += d;
        if (/Ready to accept connections|Sentinel ID is/.test(out)) {
          clearTimeout(timer);
          ok();
        }
      });
      c.once("exit", (code) => {
        clearTimeout(timer);
        fail(new Error(`redis-server :${this.port} exited (${code}): ${out}`));
      });
    });
    c.stdout!.resume();
    c.removeAllListeners("exit");
  }

  /** SIGKILL: gone at once, as a crashed server is. */
  async kill(): Promise<void> {
    const c = this.child;
    this.child = undefined;
    if (c === undefined || c.exitCode !== null || c.signalCode !== null) return;
    const exited = once(c, "exit");
    c.kill("SIGKILL");
    await exited;
  }
}

const common = ["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"];

export interface RedisCluster {
  ports: number[];
  urls: string[];
  kill(i: number): Promise<void>;
  restart(i: number): Promise<void>;
  /** The index of the primary serving `key`'s slot. */
  ownerOf(key: string): Promise<number>;
  close(): Promise<void>;
}

/** Three primaries, no replicas, a 1 s node timeout; resolves when cluster_state is ok on every node. */
export async function startCluster(): Promise<RedisCluster> {
  const dir = await mkdtemp(join(tmpdir(), "sy-cluster-"));
  const nodes: Proc[] = [];
  try {
    for (let i = 0; i < 3; i++) {
      const port = await deadPort();
      // The bus port is given explicitly: port + 10000 (the default) may not exist for an ephemeral port.
      const bus = await deadPort();
      const p = new Proc(port, [
        "--port",
        String(port),
        "--cluster-enabled",
        "yes",
        "--cluster-port",
        String(bus),
        "--cluster-config-file",
        join(dir, `nodes-${port}.conf`),
        "--cluster-node-timeout",
        "1000",
        "--dir",
        dir,
        ...common,
      ]);
      nodes.push(p);
      await p.start();
    }
    const addrs = nodes.map((n) => `127.0.0.1:${n.port}`);
    await run("redis-cli", ["--cluster", "create", ...addrs, "--cluster-replicas", "0", "--cluster-yes"], {
      timeout: 20_000,
    });
    await clusterOk(nodes.map((n) => n.port));
  } catch (err) {
    await Promise.all(nodes.map((n) => n.kill()));
    await rm(dir, { recursive: true, force: true });
    throw err;
  }
  const ports = nodes.map((n) => n.port);
  return {
    ports,
    urls: ports.map((p) => `redis://127.0.0.1:${p}`),
    kill: (i) => nodes[i].kill(),
    async restart(i) {
      await nodes[i].start();
      await clusterOk(ports);
    },
    async ownerOf(key) {
      const slot = Number((await cli(ports[0], "CLUSTER", "KEYSLOT", key)).trim());
      for (let i = 0; i < ports.length; i++) if (await owns(ports[i], slot)) return i;
      throw new Error(`no node owns slot ${slot}`);
    },
    async close() {
      await Promise.all(nodes.map((n) => n.kill()));
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** Whether the node on `port` serves `slot` (its own line in CLUSTER NODES lists it). */
async function owns(port: number, slot: number): Promise<boolean> {
  const me = (await cli(port, "CLUSTER", "NODES")).split("\n").find((l) => l.includes("myself"));
  return (me ?? "")
    .split(" ")
    .slice(8)
    .some((r) => {
      const [a, b] = r.split("-").map(Number);
      return slot >= a && slot <= (b ?? a);
    });
}

function clusterOk(ports: number[]): Promise<void> {
  return until("cluster_state:ok on every node", 20_000, async () => {
    for (const p of ports) if (!(await cli(p, "CLUSTER", "INFO")).includes("cluster_state:ok")) return false;
    return true;
  });
}

export interface RedisSentinel {
  /** The sentinel's URL (for store.sentinels) and the master name. */
  url: string;
  name: string;
  primary: number;
  replica: number;
  /** Kill the primary (SIGKILL). */
  killPrimary(): Promise<void>;
  /** Wait until the sentinel names the replica as primary. */
  promoted(): Promise<void>;
  close(): Promise<void>;
}

/** A primary, its replica and one sentinel (quorum 1, 500 ms down-after); resolves when the sentinel knows the replica. */
export async function startSentinel(): Promise<RedisSentinel> {
  const dir = await mkdtemp(join(tmpdir(), "sy-sentinel-"));
  const name = "symaster";
  const started: Proc[] = [];
  const boot = async (p: Proc) => {
    started.push(p);
    await p.start();
  };
  try {
    const pPort = await deadPort();
    const rPort = await deadPort();
    const sPort = await deadPort();
    const primary = new Proc(pPort, ["--port", String(pPort), "--dir", dir, ...common]);
    await boot(primary);
    await boot(
      new Proc(rPort, [
        "--port",
        String(rPort),
        "--dir",
        dir,
        "--replicaof",
        "127.0.0.1",
        String(pPort),
        ...common,
      ]),
    );
    await until("replica in sync", 10_000, async () =>
      (await cli(rPort, "INFO", "replication")).includes("master_link_status:up"),
    );
    const conf = join(dir, "sentinel.conf");
    await writeFile(
      conf,
      [
        `port ${sPort}`,
        "bind 127.0.0.1",
        `dir ${dir}`,
        `sentinel monitor ${name} 127.0.0.1 ${pPort} 1`,
        `sentinel down-after-milliseconds ${name} 500`,
        `sentinel failover-timeout ${name} 3000`,
        "",
      ].join("\n"),
    );
    await boot(
      onPath("redis-sentinel")
        ? new Proc(sPort, [conf], "redis-sentinel")
        : new Proc(sPort, [conf, "--sentinel"]),
    );
    await until("the sentinel knows the replica", 15_000, async () =>
      (await cli(sPort, "SENTINEL", "REPLICAS", name)).includes(String(rPort)),
    );
    return {
      url: `redis://127.0.0.1:${sPort}`,
      name,
      primary: pPort,
      replica: rPort,
      killPrimary: () => primary.kill(),
      async promoted() {
        await until("the sentinel promotes the replica", 20_000, async () =>
          (await cli(sPort, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", name)).includes(String(rPort)),
        );
      },
      async close() {
        await Promise.all(started.map((p) => p.kill()));
        await rm(dir, { recursive: true, force: true });
      },
    };
  } catch (err) {
    await Promise.all(started.map((p) => p.kill()));
    await rm(dir, { recursive: true, force: true });
    throw err;
  }
}
