/**
 * The Gateway's L4 listeners. They belong to the process, not to one config
 * generation: a reload hands them the next generation's services (new
 * connections only; open ones keep their target) instead of re-binding the
 * port, removed listeners stop accepting and drain, added ones bind.
 * A reload does not wait for that drain (it may take up to shutdownTimeout
 * while the new config already serves); close() does.
 * `build()` users get the same proxies through plugins/l4-tcp.ts and
 * l4-udp.ts, tied to their Fastify instance.
 */
import type { Logger } from "pino";
import type { TcpListenerConfig, UdpListenerConfig } from "./config/schema.js";
import type { Generation } from "./generation.js";
import { TcpProxy } from "./l4/tcp-proxy.js";
import { UdpProxy } from "./l4/udp-proxy.js";

type Proxy = TcpProxy | UdpProxy;
type ListenerConfig = TcpListenerConfig | UdpListenerConfig;

const keyOf = (kind: string, l: ListenerConfig) => `${kind}:${l.name}:${l.listen.host}:${l.listen.port}`;

export class L4Listeners {
  private readonly proxies = new Map<string, Proxy>();
  /** Removed by a reload, still draining: close() ends them within its own drain time. */
  private readonly draining = new Map<Proxy, Promise<void>>();

  constructor(private readonly log?: Logger) {}

  get tcp(): TcpProxy[] {
    return [...this.proxies.values()].filter((p): p is TcpProxy => p instanceof TcpProxy);
  }

  get udp(): UdpProxy[] {
    return [...this.proxies.values()].filter((p): p is UdpProxy => p instanceof UdpProxy);
  }

  /**
   * Make the running set match `gen`: update kept listeners, bind new ones
   * (all-or-nothing: a bind failure unbinds what this call bound and throws),
   * then stop removed ones accepting; they drain within `drainMs` after this resolves.
   */
  async apply(gen: Generation, drainMs: number): Promise<void> {
    const wanted = new Map<string, { kind: "tcp" | "udp"; cfg: ListenerConfig }>();
    for (const cfg of gen.config.tcp) wanted.set(keyOf("tcp", cfg), { kind: "tcp", cfg });
    for (const cfg of gen.config.udp) wanted.set(keyOf("udp", cfg), { kind: "udp", cfg });
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
    await Promise.all(all.map((p) => stop(p, drainMs)));
  }
}

async function stop(p: Proxy, drainMs: number): Promise<void> {
  if (p instanceof TcpProxy) await p.stop(drainMs);
  else p.stop();
}
