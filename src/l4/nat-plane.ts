/**
 * The control plane of the `mode: nat` listeners (issue 16): Node decides,
 * the kernel forwards. It keeps the listeners (across reloads, like the
 * proxies in l4-listeners.ts), writes the table whenever what it should say
 * changes, reads its counters for the metrics, and removes it at shutdown.
 *
 * How target state reaches the kernel: a 100 ms poll, tied to this object's
 * life (started with the first nat listener, stopped by close(), unref'd).
 * Each tick recomputes the plan from the targets (`usable()`: healthy, not
 * ejected, not draining) and writes only when it differs from the last one
 * written. A poll rather than events because the state has several writers
 * with no event between them and us — active health checks, outlier
 * ejections that end by the clock (`ejectedUntil`), drain from the admin API
 * setting `target.draining` — and a comparison of a few booleans every
 * 100 ms costs nothing next to the `nft` call it saves. A change is in the
 * kernel within ~100 ms plus one `nft` run (a few ms). Every RESYNC_MS the
 * table is written even unchanged, so one deleted by hand comes back.
 *
 * Shutdown (close): the table is written without any listener rule (new
 * connections are refused, open ones keep their translation: the nat hooks
 * stay registered), open TCP connections are given up to the drain time
 * (counted in conntrack when the kernel shows it, else the whole drain time),
 * then the table is deleted.
 */
import cluster from "node:cluster";
import { readFileSync } from "node:fs";
import type { Service } from "../upstreams/service.js";
import { NatListener, type NatListenerConfig } from "./nat-listener.js";
import { type NatListenerPlan, renderRuleset, stem } from "./nat-ruleset.js";
import { type CounterValue, NatTable, openConnections } from "./nat-table.js";

export const POLL_MS = 100;
/**
 * Rewrite the table this often even when nothing changed, so that a table
 * deleted or edited by hand comes back (kube-proxy resyncs periodically too).
 */
export const RESYNC_MS = 30_000;

/** Counters of one nat listener, summed over its targets (nft named counters; bytes are whole IP packets). */
export interface NatTotals {
  /** New connections (TCP) or flows (UDP) translated. */
  connections: number;
  /** From clients. */
  packetsIn: number;
  /** To clients. */
  packetsOut: number;
  bytesIn: number;
  bytesOut: number;
}

export interface NatStats extends NatTotals {
  kind: "tcp" | "udp";
  listener: string;
}

export interface NatLog {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
}

export interface NatWanted {
  kind: "tcp" | "udp";
  key: string;
  cfg: NatListenerConfig;
}

export class NatPlane {
  private readonly listeners = new Map<string, NatListener>();
  private readonly table: NatTable;
  private readonly marks = new Map<string, number>();
  private nextMark = 1;
  /** What counters a write deleted had counted (a target gone from a listener), by listener stem. */
  private readonly retired = new Map<string, NatTotals>();
  private written: { signature: string; objects: readonly string[]; at: number } | undefined;
  private timer: NodeJS.Timeout | undefined;
  private queue: Promise<unknown> = Promise.resolve();
  private lastTry = 0;
  private lastError = "";
  private statsRead: { at: number; result: Promise<NatStats[]> } | undefined;
  private closed = false;

  constructor(
    private readonly log?: NatLog,
    table?: string,
  ) {
    this.table = new NatTable(table);
  }

  /** The table's name (`inet <name>`). */
  get tableName(): string {
    return this.table.name;
  }

  get all(): NatListener[] {
    return [...this.listeners.values()];
  }

  /** Is a listener with this key running (in nat mode)? */
  has(key: string): boolean {
    return this.listeners.has(key);
  }

  /**
   * Make the nat listeners match `wanted`: bind the new ones, write the table
   * for the whole set (one transaction), then commit. On any failure nothing
   * changed: the new sockets are released and the running table stays.
   */
  async apply(wanted: readonly NatWanted[], services: ReadonlyMap<string, Service>): Promise<void> {
    if (wanted.length === 0 && this.listeners.size === 0) return;
    this.closed = false;
    await this.own();
    const added = new Map<string, NatListener>();
    for (const w of wanted)
      if (!this.listeners.has(w.key)) added.set(w.key, new NatListener(w.kind, w.cfg, services));
    try {
      // `port: 0` must be bound to be named in the table. A fixed port is bound after the table is
      // written, so no client ever meets it bound but not yet translated (it would be reset).
      for (const l of added.values()) if (l.needsBindFirst) await l.start();
      await this.serial(async () => {
        const plans = wanted.map((w) =>
          (this.listeners.get(w.key) ?? added.get(w.key)!).plan(this.markOf, Date.now(), w.cfg, services),
        );
        if (this.table.owner) await this.write(plans);
        try {
          for (const l of added.values()) if (!l.needsBindFirst) await l.start();
        } catch (err) {
          // Port in use: the running listeners' table goes back (they are unchanged until commit).
          if (this.table.owner) await this.write(this.all.map((l) => l.plan(this.markOf))).catch(() => {});
          throw err;
        }
        this.commit(wanted, services, added);
      });
    } catch (err) {
      for (const l of added.values()) l.close();
      throw err;
    }
    for (const l of added.values()) {
      const a = l.address();
      this.log?.info(
        {},
        `L4 ${l.kind} '${l.name}' (nat) on ${a.address}:${a.port}: nftables table inet ${this.table.name}${this.table.owner ? "" : " (standby)"}`,
      );
    }
    if ([...added.values()].some((l) => !isLoopback(l.address().address))) warnIfNotForwarding(this.log);
    if (this.timer === undefined && this.listeners.size > 0) {
      this.timer = setInterval(() => void this.tick(), POLL_MS);
      this.timer.unref();
    }
  }

  /**
   * Counters per listener, read from the kernel (empty when another process
   * owns the table). Calls within POLL_MS share one read: a scrape asks once
   * per metric.
   */
  stats(): Promise<NatStats[]> {
    const now = Date.now();
    if (this.statsRead === undefined || now - this.statsRead.at > POLL_MS)
      this.statsRead = { at: now, result: this.readStats() };
    return this.statsRead.result;
  }

  private async readStats(): Promise<NatStats[]> {
    if (!this.table.owner || this.listeners.size === 0) return [];
    const counters = await this.table.counters();
    return this.all.map((l) => {
      const s: NatStats = { kind: l.kind, listener: l.name, ...(this.retired.get(stem(l)) ?? zero()) };
      const own = new RegExp(`^${reEscape(stem(l))}_\\d+_(conns|in|out)$`);
      for (const [name, v] of counters) {
        const m = own.exec(name);
        if (m) add(s, m[1], v);
      }
      return s;
    });
  }

  /** Stop taking connections, let open TCP connections finish for up to `drainMs`, delete the table. */
  async close(drainMs: number): Promise<void> {
    this.closed = true;
    clearInterval(this.timer);
    this.timer = undefined;
    const listeners = this.all;
    this.listeners.clear();
    for (const l of listeners) l.accepting = false;
    await this.serial(async () => {
      if (!this.table.owner) return;
      try {
        await this.write(listeners.map((l) => l.plan(this.markOf)));
      } catch (err) {
        this.log?.warn({ err: (err as Error).message }, "nat: could not stop new connections");
      }
    });
    for (const l of listeners) l.close();
    if (this.table.owner && drainMs > 0) await this.drain(drainMs);
    await this.serial(() => this.table.remove()).catch((err: Error) =>
      this.log?.warn({ err: err.message }, `nat: could not delete table inet ${this.table.name}`),
    );
  }

  /** The mark of a listener's target: allocated once, never reused while the process runs. */
  private readonly markOf = (key: string): number => {
    let m = this.marks.get(key);
    if (m === undefined) {
      const used = new Set(this.marks.values());
      m = this.nextMark;
      while (used.has(m)) m = (m % 0xffff) + 1;
      this.nextMark = (m % 0xffff) + 1;
      this.marks.set(key, m);
    }
    return m;
  };

  /** Take the table, or refuse: another process owns it (a --workers worker stands by instead). */
  private async own(): Promise<void> {
    if (this.table.owner || (await this.table.acquire())) return;
    if (cluster.isWorker) {
      this.log?.info({ table: this.table.name }, "nat: another worker owns the nftables table; standing by");
      return;
    }
    throw new Error(
      `nftables table inet ${this.table.name} is managed by another switchyard process in this network namespace`,
    );
  }

  private async tick(): Promise<void> {
    await this.serial(async () => {
      if (this.closed) return;
      if (!this.table.owner) {
        if (Date.now() - this.lastTry < 1000) return;
        this.lastTry = Date.now();
        if (!(await this.table.acquire())) return;
        this.written = undefined;
        this.log?.info({ table: this.table.name }, "nat: took over the nftables table");
      }
      const plans = this.all.map((l) => l.plan(this.markOf));
      const w = this.written;
      if (w && JSON.stringify(plans) === w.signature && Date.now() - w.at < RESYNC_MS) return;
      try {
        await this.write(plans);
        this.lastError = "";
      } catch (err) {
        // Said once per distinct failure; the next tick tries again.
        const message = (err as Error).message;
        if (message !== this.lastError) this.log?.warn({ err: message }, "nat: could not update the table");
        this.lastError = message;
      }
    });
  }

  /** Write the table for `plans`; counters about to be deleted are read first and kept (metrics stay monotonic). */
  private async write(plans: NatListenerPlan[]): Promise<void> {
    const ruleset = renderRuleset(this.table.name, plans);
    const now = new Set(ruleset.objects);
    const gone = (this.written?.objects ?? []).filter((o) => o.startsWith("counter ") && !now.has(o));
    const values = gone.length
      ? await this.table.counters().catch(() => new Map<string, CounterValue>())
      : new Map<string, CounterValue>();
    await this.table.write(ruleset);
    this.written = { signature: JSON.stringify(plans), objects: ruleset.objects, at: Date.now() };
    this.statsRead = undefined; // counters may have gone: read afresh
    // Only once they are really gone (a failed write keeps them, to be counted again).
    for (const o of gone) {
      const name = o.slice("counter ".length);
      const m = /^(.*)_\d+_(conns|in|out)$/.exec(name);
      const v = values.get(name);
      if (!m || !v) continue;
      const totals = this.retired.get(m[1]) ?? zero();
      add(totals, m[2], v);
      this.retired.set(m[1], totals);
    }
  }

  private commit(
    wanted: readonly NatWanted[],
    services: ReadonlyMap<string, Service>,
    added: Map<string, NatListener>,
  ) {
    const keys = new Set(wanted.map((w) => w.key));
    for (const w of wanted) this.listeners.get(w.key)?.update(w.cfg, services);
    for (const [key, l] of added) this.listeners.set(key, l);
    for (const [key, l] of [...this.listeners]) {
      if (keys.has(key)) continue;
      // Its rule is gone from the table just written; its open connections go on (conntrack).
      this.listeners.delete(key);
      l.close();
    }
  }

  /** Until no open TCP connection carries one of our marks, or `drainMs`. */
  private async drain(drainMs: number): Promise<void> {
    const marks = new Set(this.marks.values());
    const deadline = Date.now() + drainMs;
    while (Date.now() < deadline) {
      const open = await openConnections(marks);
      if (open === 0) return;
      const wait = open === undefined ? deadline - Date.now() : Math.min(POLL_MS, deadline - Date.now());
      // Not unref'd: the process must stay up to delete the table after the drain.
      await new Promise((ok) => setTimeout(ok, Math.max(0, wait)));
    }
  }

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.queue.then(fn, fn);
    this.queue = run.catch(() => {});
    return run;
  }
}

/** Clients on other hosts need the gateway to forward their translated packets: say so once if it does not. */
let forwardingChecked = false;
function warnIfNotForwarding(log: NatLog | undefined): void {
  if (forwardingChecked) return;
  forwardingChecked = true;
  try {
    if (readFileSync("/proc/sys/net/ipv4/ip_forward", "utf8").trim() === "0")
      log?.warn(
        {},
        "nat: net.ipv4.ip_forward is 0, so only this host's own clients reach the targets (sysctl -w net.ipv4.ip_forward=1 for the others)",
      );
  } catch {
    // not Linux procfs: the platform check has said what it needed to
  }
}

function isLoopback(address: string): boolean {
  return address.startsWith("127.") || address === "::1";
}

function zero(): NatTotals {
  return { connections: 0, packetsIn: 0, packetsOut: 0, bytesIn: 0, bytesOut: 0 };
}

function add(s: NatTotals, kind: string, v: CounterValue): void {
  if (kind === "conns") s.connections += v.packets;
  else if (kind === "in") {
    s.packetsIn += v.packets;
    s.bytesIn += v.bytes;
  } else {
    s.packetsOut += v.packets;
    s.bytesOut += v.bytes;
  }
}

function reEscape(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}
