/**
 * One `mode: nat` listener (issue 16). The kernel moves its packets; what
 * Node keeps is the listener's settings, its services (a reload swaps them)
 * and a socket bound on its address, as kube-proxy holds its node ports:
 *
 * - the port is the listener's like in proxy mode: a port in use fails start
 *   with the same line, `port: 0` gets a free one, no other program can take it;
 * - what the kernel did not translate reaches it (no usable target, or the
 *   listener no longer accepting): TCP connections are reset at once, UDP
 *   datagrams are dropped — "L4 closes the connection" (SPEC §4).
 *
 * plan() turns the current state of its targets into what nat-ruleset.ts writes.
 */
import { createSocket, type Socket as UdpSocket } from "node:dgram";
import { type AddressInfo, createServer, type Server } from "node:net";
import { hash32 } from "../balancers/consistent-hash.js";
import { ms } from "../config/duration.js";
import type { TcpListenerConfig, UdpListenerConfig } from "../config/schema.js";
import type { Service } from "../upstreams/service.js";
import { familyOf } from "./ip.js";
import { listenError } from "./listen-error.js";
import type { NatBalancer, NatListenerPlan } from "./nat-ruleset.js";

export type NatListenerConfig = TcpListenerConfig | UdpListenerConfig;

/** The mark of a listener's target, allocated by the plane (stable while the process runs). */
export type MarkOf = (key: string) => number;

export class NatListener {
  private cfg: NatListenerConfig;
  private services: ReadonlyMap<string, Service>;
  private readonly tcp: Server | undefined;
  private readonly udp: UdpSocket | undefined;
  private bound = false;
  accepting = true;

  constructor(
    readonly kind: "tcp" | "udp",
    cfg: NatListenerConfig,
    services: ReadonlyMap<string, Service>,
  ) {
    this.cfg = cfg;
    this.services = services;
    if (kind === "tcp") {
      // Only what the kernel did not translate gets here: refuse it as a closed port would.
      this.tcp = createServer({ pauseOnConnect: true }, (s) => s.resetAndDestroy());
    } else {
      this.udp = createSocket(familyOf(cfg.listen.host) === 6 ? "udp6" : "udp4");
      this.udp.on("message", () => {}); // untranslated datagrams: dropped
    }
  }

  get name(): string {
    return this.cfg.name;
  }

  /** `port: 0`: the port is only known once bound, so it is bound before the table names it. */
  get needsBindFirst(): boolean {
    return this.cfg.listen.port === 0;
  }

  /** Reserve the address; rejects with the same one line as a proxy listener (`cannot listen on …`). */
  start(): Promise<AddressInfo> {
    const { host, port } = this.cfg.listen;
    return new Promise((resolve, reject) => {
      const onError = (err: NodeJS.ErrnoException) =>
        reject(listenError(host, port, err, this.kind === "udp" ? "udp " : ""));
      const ready = () => {
        this.bound = true;
        resolve(this.address());
      };
      if (this.tcp) {
        this.tcp.once("error", onError);
        this.tcp.listen({ host, port }, () => {
          this.tcp?.off("error", onError).on("error", () => {});
          ready();
        });
      } else if (this.udp) {
        this.udp.once("error", onError);
        this.udp.bind(port, host, () => {
          this.udp?.off("error", onError).on("error", () => {});
          ready();
        });
      }
    });
  }

  address(): AddressInfo {
    return (this.tcp ? this.tcp.address() : this.udp?.address()) as AddressInfo;
  }

  /** Bound and taking new connections (for readiness). */
  get listening(): boolean {
    return this.bound && this.accepting;
  }

  /** A reload's settings and services, for connections from the next table on. */
  update(cfg: NatListenerConfig, services: ReadonlyMap<string, Service>): void {
    this.cfg = cfg;
    this.services = services;
  }

  /** Release the address (the listener's rule is gone from the table by then). */
  close(): void {
    this.accepting = false;
    this.bound = false;
    if (this.tcp?.listening) this.tcp.close();
    try {
      this.udp?.close();
    } catch {
      // never bound, or closed already
    }
  }

  /** What the table should say for this listener now, given `cfg`/`services` (defaults: its own). */
  plan(markOf: MarkOf, now = Date.now(), cfg = this.cfg, services = this.services): NatListenerPlan {
    const port = this.bound ? this.address().port : cfg.listen.port;
    return natPlan(this.kind, cfg, services, { markOf, now, port, accepting: this.accepting });
  }
}

/** A listener's part of the table from its settings and the current state of its targets (pure; explain uses it too). */
export function natPlan(
  kind: "tcp" | "udp",
  cfg: NatListenerConfig,
  services: ReadonlyMap<string, Service>,
  at: { markOf: MarkOf; now: number; port: number; accepting: boolean },
): NatListenerPlan {
  const service = services.get(cfg.service ?? "");
  if (service === undefined) throw new Error(`nat listener '${cfg.name}': unknown service '${cfg.service}'`);
  const host = cfg.listen.host;
  const targets = service.targets.map((t) => ({
    id: t.url,
    index: t.index,
    mark: at.markOf(`${kind}/${cfg.name}/${t.index}`),
    address: t.host,
    port: t.port,
    weight: t.weight,
    usable: t.usable(at.now),
  }));
  // A wildcard host takes its targets' family (checks made them all one); an address is its own.
  const family =
    host === "::" ? (familyOf(targets[0]?.address ?? "") === 4 ? 4 : 6) : familyOf(host) === 6 ? 6 : 4;
  return {
    kind,
    name: cfg.name,
    family,
    host: host === "::" && family === 4 ? "0.0.0.0" : host,
    port: at.port,
    accepting: at.accepting,
    snat: cfg.snat ?? true,
    balancer: service.config.balancer as NatBalancer,
    seed: hash32(`${kind}/${cfg.name}`),
    sessionTimeout:
      "sessionTimeout" in cfg ? Math.max(1, Math.round(ms(cfg.sessionTimeout) / 1000)) : undefined,
    targets,
  };
}
