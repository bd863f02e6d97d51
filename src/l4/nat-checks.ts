/**
 * What `mode: nat` needs from routes.yaml (issue 16), checked at load so that
 * `--check`, start-up and a reload all refuse the same things with a line and
 * column. In nat mode the kernel moves the packets, so only what the kernel
 * can do is accepted; a key it cannot honour is an error, never silently
 * ignored.
 */

import type { CheckContext } from "../config/checks.js";
import type { Segment } from "../config/load.js";
import type { Config, ServiceConfig, TcpListenerConfig, UdpListenerConfig } from "../config/schema.js";
import { entryUrl } from "../upstreams/discovery.js";
import { type Family, familyOf } from "./ip.js";
import { natUnsupported } from "./nat-platform.js";

/** Balancers the kernel can run from an nftables map (see nat-slots.ts). */
export const NAT_BALANCERS = ["round-robin", "random", "ip-hash", "consistent-hash"] as const;

/** Written listener keys that need Node in the path, with what to do instead. */
const TCP_PROXY_ONLY: Record<string, string> = {
  sni: "SNI routing reads the TLS ClientHello, which only the proxy mode sees",
  default: "SNI routing reads the TLS ClientHello, which only the proxy mode sees",
  proxyProtocol: "a PROXY header is written by the proxy, and nat keeps the client address with snat: false",
  acceptProxyProtocol: "a PROXY header is read by the proxy; the kernel does not parse payloads",
  connectTimeout: "the client's own SYN reaches the target: its connect timeout applies",
  idleTimeout: "the kernel's conntrack keeps idle connections, for nf_conntrack_tcp_timeout_established",
  maxConnections: "the kernel does not cap connections per listener",
};
const UDP_PROXY_ONLY: Record<string, string> = {
  maxSessions: "conntrack's own table bounds the flows, nf_conntrack_max",
};
/** Service keys that need Node to see the traffic or count connections. */
const SERVICE_PROXY_ONLY: Record<string, string> = {
  maxConnectionsPerTarget: "the kernel keeps no per-target connection count",
  slowStart: "a recovered target gets its whole share of new connections at once",
  outlierDetection: "passive checks read live traffic, which does not pass through Node: use healthCheck",
  discovery: "the kernel's rules are written from fixed addresses, not re-resolved ones",
};

export function checkNatListeners(cfg: Config, ctx: CheckContext): void {
  const kinds = new Set<"tcp" | "udp">();
  const all: ["tcp" | "udp", TcpListenerConfig | UdpListenerConfig, number][] = [
    ...cfg.tcp.map((l, i) => ["tcp", l, i] as ["tcp", TcpListenerConfig, number]),
    ...cfg.udp.map((l, i) => ["udp", l, i] as ["udp", UdpListenerConfig, number]),
  ];
  let first: Segment[] | undefined;
  for (const [kind, l, i] of all) {
    const at: Segment[] = [kind, i];
    if (l.mode !== "nat") {
      if (ctx.present([...at, "snat"])) ctx.report(at, "snat applies to mode: nat only", "snat");
      continue;
    }
    kinds.add(kind);
    first ??= at;
    const unavailable = kind === "tcp" ? TCP_PROXY_ONLY : UDP_PROXY_ONLY;
    for (const [key, why] of Object.entries(unavailable)) {
      const v = (l as Record<string, unknown>)[key];
      if (ctx.present([...at, key]) && v !== false)
        ctx.report(at, `not available in nat mode: ${why}; remove it or use mode: proxy`, key);
    }
    const hostFamily = familyOf(l.listen.host);
    if (hostFamily === 0)
      ctx.report(
        [...at, "listen", "host"],
        `mode: nat listens on an IP address (the kernel matches packets by address), not '${l.listen.host}'`,
      );
    const svc = l.service === undefined ? undefined : cfg.services[l.service];
    if (svc !== undefined && l.service !== undefined) checkService(l.service, svc, at, hostFamily, l, ctx);
  }
  if (first === undefined) return;
  const why = natUnsupported([...kinds]);
  if (why !== undefined) ctx.report(first, why, "mode");
}

function checkService(
  name: string,
  svc: ServiceConfig,
  at: Segment[],
  hostFamily: Family | 0,
  l: TcpListenerConfig | UdpListenerConfig,
  ctx: CheckContext,
): void {
  const svcAt: Segment[] = ["services", name];
  if (!(NAT_BALANCERS as readonly string[]).includes(svc.balancer))
    ctx.report(
      at,
      `service '${name}' balances with ${svc.balancer}, which needs live per-target connection counts the kernel's NAT does not keep: use ${NAT_BALANCERS.join(", ")} (or mode: proxy)`,
      "mode",
    );
  if (svc.balancer === "consistent-hash" && (svc.hash?.on ?? "ip") !== "ip")
    ctx.report(
      [...svcAt, "hash", "on"],
      `the kernel hashes the client address only: hash.on must be ip for nat listener '${l.name}'`,
    );
  for (const [key, why] of Object.entries(SERVICE_PROXY_ONLY)) {
    if (ctx.present([...svcAt, key]))
      ctx.report(
        svcAt,
        `not available for nat listener '${l.name}': ${why}; remove it or use mode: proxy`,
        key,
      );
  }
  // Wildcard hosts take the targets' family; an address fixes it.
  const wild = l.listen.host === "0.0.0.0" ? 4 : l.listen.host === "::" ? 0 : hostFamily;
  let family: Family | 0 = wild;
  svc.targets.forEach((t, j) => {
    const url = entryUrl(t);
    if (url === undefined) return; // an srv entry: refused above (discovery)
    let host: string;
    try {
      host = new URL(url).hostname.replace(/^\[|\]$/g, "");
    } catch {
      return; // checkTargets says it is not a URL
    }
    const f = familyOf(host);
    if (f === 0) {
      ctx.report(
        [...svcAt, "targets", j],
        `nat listener '${l.name}' needs IP address targets (the kernel rewrites to an address), not '${host}'`,
      );
      return;
    }
    if (family === 0) family = f;
    else if (f !== family)
      ctx.report(
        [...svcAt, "targets", j],
        `nat listener '${l.name}' cannot translate between IPv${family} and IPv${f}: '${url}'`,
      );
  });
}
