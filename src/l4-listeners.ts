/**
 * The Gateway's L4 listeners. They belong to the process, not to one config
 * generation: a reload hands them the next generation's services (new
 * connections only; open ones keep their target) instead of re-binding the
 * port, removed listeners stop accepting and drain, added ones bind.
 * A reload does not wait for that drain (it may take up to shutdownTimeout
 * while the new config already serves); close() does.
 * `build()` users get the same proxies through plugins/l4-tcp.ts and
 * l4-udp.ts, tied to their Fastify instance.
 *
 * `mode: nat` listeners (issue 16) are the NatPlane's: the kernel moves their
 * packets, the plane writes its table. A reload applies both in one step: the
 * new table is written (atomically) before anything else changes, and a
 * failure leaves the running proxies, the running table and its listeners
 * as they were. A listener cannot change mode in place (same name, host and
 * port): the reload is refused, a restart or a new name does it.
 */
import type { Logger } from "pino";
import type { TcpListenerConfig, UdpListenerConfig } from "./config/schema.js";
import type { Generation } from "./generation.js";
import type { NatListener } from "./l4/nat-listener.js";
import { NatPlane, type NatStats, type NatWanted } from "./l4/nat-plane.js";
import { TcpProxy } from "./l4/tcp-proxy.js";
import { UdpProxy } from "./l4/udp-proxy.js";

type Proxy = TcpProxy | UdpProxy;
type ListenerConfig = TcpListenerConfig | UdpListenerConfig;

const keyOf = (kind: string, l: ListenerConfig) => `${kind}:${l.name}:${l.listen.host}:${l.listen.port}`;

export class L4Listeners {
  private readonly proxies = new Map<string, Proxy>();
  /** Removed by a reload, still draining: close() ends them within its own drain time. */
  private readonly draining = new Map<Proxy, Promise<void>>();
  private readonly natPlane: NatPlane;

  /** `natTable`: the nftables table's name (default `switchyard`; tests use their own). */
  constructor(
    private readonly log?: Logger,
    opts: { natTable?: string } = {},
  ) {
    this.natPlane = new NatPlane(log, opts.natTable);
  }

  get tcp(): TcpProxy[] {
    return [...this.proxies.values()].filter((p): p is TcpProxy => p instanceof TcpProxy);
  }

  get udp(): UdpProxy[] {
    return [...this.proxies.values()].filter((p): p is UdpProxy => p instanceof UdpProxy);
  }

  /** The `mode: nat` listeners, TCP and UDP. */
  get nat(): NatListener[] {
    return this.natPlane.all;
  }

  /** The nat listeners' counters, read from the kernel (for the metrics). */
  natStats(): Promise<NatStats[]> {
    return this.natPlane.stats();
  }

  /**
   * Make the running set match `gen`: update kept listeners, bind new ones
   * (all-or-nothing: a bind failure unbinds what this call bound and throws),
   * then stop removed ones accepting; they drain within `drainMs` after this resolves.
   */
  async apply(gen: Generation, drainMs: number): Promise<void> {
    const wanted = new Map<string, { kind: "tcp" | "udp"; cfg: ListenerConfig }>();
    const nat: NatWanted[] = [];
    for (const [kind, list] of [
      ["tcp", gen.config.tcp],
      ["udp", gen.config.udp],
    ] as const)
      for (const cfg of list) {
        const key = keyOf(kind, cfg);
        if (cfg.mode === "nat") nat.push({ kind, key, cfg });
        else wanted.set(key, { kind, cfg });
      }
    for (const { kind, key, cfg } of nat)
      if (this.proxies.has(key)) throw modeChange(kind, cfg.name, "proxy", "nat");
    for (const [key, { kind, cfg }] of wanted)
      if (this.natPlane.has(key)) throw modeChange(kind, cfg.name, "nat", "proxy");
    const added: [string, Proxy][] = [];
    // Bind what is new first: a failure leaves the running listeners on their current services.
    for (const [key, { kind, cfg }] of wanted) {
      if (this.proxies.has(key)) continue;
      const opts = { services: gen.services, log: this.log };
      const p =
        kind === "tcp"
          ? new TcpProxy({ listener: cfg as TcpListenerConfig, ...opts })
          : new UdpProxy({ listener: cfg as UdpListenerConfig, ...opts });
      try {
        await p.start();
      } catch (err) {
        for (const [, q] of added) await stop(q, 0);
        throw err;
      }
      added.push([key, p]);
    }
    try {
      await this.natPlane.apply(nat, gen.services);
    } catch (err) {
      for (const [, q] of added) await stop(q, 0);
      throw err;
    }
    for (const [key, { cfg }] of wanted) {
      const running = this.proxies.get(key);
      if (running instanceof TcpProxy) running.update(cfg as TcpListenerConfig, gen.services);
      else if (running instanceof UdpProxy) running.update(cfg as UdpListenerConfig, gen.services);
    }
    for (const [key, p] of added) {
      this.proxies.set(key, p);
      const a = p.address();
      this.log?.info(
        `L4 ${p instanceof TcpProxy ? "tcp" : "udp"} '${p.name}' listening on ${a.address}:${a.port}`,
      );
    }
    for (const [key, p] of [...this.proxies]) {
      if (wanted.has(key)) continue;
      this.proxies.delete(key);
      p.stopAccepting();
      const drained = stop(p, drainMs)
        .catch((err: Error) => this.log?.error({ err }, `L4 '${p.name}' did not stop cleanly`))
        .finally(() => this.draining.delete(p));
      this.draining.set(p, drained);
    }
  }

  /** Stop accepting everywhere, let connections drain up to `drainMs`, then close. */
  async close(drainMs: number): Promise<void> {
    const all = [...this.proxies.values(), ...this.draining.keys()];
    this.proxies.clear();
    this.draining.clear();
    for (const p of all) p.stopAccepting();
    await Promise.all([...all.map((p) => stop(p, drainMs)), this.natPlane.close(drainMs)]);
  }
}

function modeChange(kind: string, name: string, from: string, to: string): Error {
  return new Error(
    `${kind} listener '${name}' cannot change mode from ${from} to ${to} in a reload: restart, or give it another name`,
  );
}

async function stop(p: Proxy, drainMs: number): Promise<void> {
  if (p instanceof TcpProxy) await p.stop(drainMs);
  else p.stop();
}
