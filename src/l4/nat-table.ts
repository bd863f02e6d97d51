/**
 * The one nftables table Switchyard owns (`inet switchyard`, issue 16), and
 * the only code that runs `nft`. Every change is one `nft -f -` transaction
 * that declares the whole table, so the kernel swaps it atomically: no packet
 * ever meets half a change.
 *
 * - The first write of a process deletes whatever table of that name exists
 *   (a crashed run's) and declares ours, in one transaction.
 * - Later writes keep the table and its named counters (their values must
 *   survive a health flip or a reload): `flush table` empties every chain,
 *   objects no longer declared are deleted, and the declaration adds the rest.
 * - One process per network namespace owns the table: an abstract Unix socket
 *   named after it is the lock (the kernel frees it when the process dies, and
 *   it is per namespace, like the table). A second process is refused; a
 *   --workers worker waits as a standby and takes over if the owner dies.
 *
 * No maintained Node library speaks nf_tables netlink; the `nft` command is
 * nftables' own front end and its script format is its documented interface.
 */
import { spawn } from "node:child_process";
import { readFile } from "node:fs/promises";
import { createServer, type Server } from "node:net";
import { firstError } from "./nat-platform.js";
import type { Ruleset } from "./nat-ruleset.js";

export interface CounterValue {
  packets: number;
  bytes: number;
}

/** conntrack TCP states of a connection still open (not TIME_WAIT, CLOSE, or gone). */
const OPEN_STATES = new Set(["SYN_SENT", "SYN_RECV", "ESTABLISHED", "FIN_WAIT", "CLOSE_WAIT", "LAST_ACK"]);

export class NatTable {
  private lock: Server | undefined;
  /** Objects the last write declared; undefined until the first write (which replaces any leftover). */
  private declared: Set<string> | undefined;
  private queue: Promise<unknown> = Promise.resolve();

  constructor(readonly name = "switchyard") {}

  /** Does this process own the table? */
  get owner(): boolean {
    return this.lock !== undefined;
  }

  /** Take the table's lock; false when another process holds it. */
  async acquire(): Promise<boolean> {
    if (this.lock) return true;
    const server = createServer();
    const ok = await new Promise<boolean>((done) => {
      server.once("error", () => done(false));
      // exclusive: a --workers worker binds it itself instead of sharing the primary's handle.
      server.listen({ path: `\0switchyard-nft-${this.name}`, exclusive: true }, () => done(true));
    });
    if (!ok) return false;
    // A lock, not a service: whoever connects is let go; nothing it does can take the process down.
    server.on("connection", (s) => s.destroy()).on("error", () => {});
    server.unref();
    this.lock = server;
    return true;
  }

  /** Declare the whole table: one atomic transaction. Rejects with nft's one-line reason. */
  write(ruleset: Ruleset): Promise<void> {
    return this.serial(async () => {
      const t = `inet ${this.name}`;
      const head = [`table ${t}`];
      if (this.declared === undefined) head.push(`delete table ${t}`);
      else {
        head.push(`flush table ${t}`);
        const now = new Set(ruleset.objects);
        // Rules go first (flush), then chains (they may be jumped to), then what rules referred to.
        const stale = [...this.declared].filter((o) => !now.has(o));
        for (const kind of ["chain", "counter", "ct timeout"])
          for (const o of stale)
            if (o.startsWith(`${kind} `)) head.push(`delete ${kind} ${t} ${o.slice(kind.length + 1)}`);
      }
      try {
        await nft(["-f", "-"], `${head.join("\n")}\n${ruleset.text}`);
      } catch (err) {
        // The table is not what we last wrote (deleted or edited by hand): replace it whole next time.
        this.declared = undefined;
        throw err;
      }
      this.declared = new Set(ruleset.objects);
    });
  }

  /** Every named counter of the table, by name (empty when there is no table). */
  counters(): Promise<Map<string, CounterValue>> {
    return this.serial(async () => {
      const out = new Map<string, CounterValue>();
      if (this.declared === undefined) return out;
      const json = JSON.parse(await nft(["-j", "list", "counters", "table", "inet", this.name])) as {
        nftables: { counter?: { name: string; packets: number; bytes: number } }[];
      };
      for (const item of json.nftables)
        if (item.counter)
          out.set(item.counter.name, { packets: item.counter.packets, bytes: item.counter.bytes });
      return out;
    });
  }

  /** Delete the table (shutdown); the lock is released. */
  remove(): Promise<void> {
    return this.serial(async () => {
      if (this.declared !== undefined) {
        await nft(["-f", "-"], `table inet ${this.name}\ndelete table inet ${this.name}\n`);
        this.declared = undefined;
      }
      this.lock?.close();
      this.lock = undefined;
    });
  }

  /** Run nft calls one at a time, in order. */
  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.queue.then(fn, fn);
    this.queue = run.catch(() => {});
    return run;
  }
}

/**
 * TCP connections with one of these marks (upper 16 bits) that are still open,
 * from the kernel's conntrack table; undefined when this kernel does not show
 * it (/proc/net/nf_conntrack needs CONFIG_NF_CONNTRACK_PROCFS).
 */
export async function openConnections(marks: ReadonlySet<number>): Promise<number | undefined> {
  let text: string;
  try {
    text = await readFile("/proc/net/nf_conntrack", "utf8");
  } catch {
    return undefined;
  }
  let n = 0;
  for (const line of text.split("\n")) {
    const f = line.split(/\s+/);
    if (f[2] !== "tcp" || !OPEN_STATES.has(f[5])) continue;
    const m = /\bmark=(\d+)/.exec(line);
    if (m && marks.has(Number(m[1]) >>> 16)) n++;
  }
  return n;
}

/** Run nft; resolve with its stdout, reject with its first error line. */
function nft(args: string[], input?: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn("nft", args, { stdio: ["pipe", "pipe", "pipe"] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on("data", (c: Buffer) => out.push(c));
    child.stderr.on("data", (c: Buffer) => err.push(c));
    child.on("error", (e) => reject(new Error(`nftables: cannot run nft: ${e.message}`)));
    child.on("close", (code) => {
      if (code === 0) resolve(Buffer.concat(out).toString());
      else reject(new Error(`nftables: ${firstError({ stderr: Buffer.concat(err) })}`));
    });
    child.stdin.on("error", () => {}); // nft may exit before reading everything; its exit code tells
    child.stdin.end(input ?? "");
  });
}
