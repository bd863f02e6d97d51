/**
 * `switchyard explain tcp 127.0.0.1:15432` (or `udp :5353`): which L4
 * listener takes a connection to that address and how — the proxy's settings,
 * or for `mode: nat` the nftables rule and target chains the gateway would
 * write (every target as if healthy), without starting anything (issue 16).
 */
import { sourceOf } from "../config/load.js";
import type { Config, TcpListenerConfig, UdpListenerConfig } from "../config/schema.js";
import { describeEntries } from "../upstreams/discovery.js";
import { buildServices } from "../upstreams/service.js";
import { natPlan } from "./nat-listener.js";
import { renderRuleset, targetStem } from "./nat-ruleset.js";

type Listener = TcpListenerConfig | UdpListenerConfig;

/** What nat mode leaves out, per kind (README "L4 in the kernel"). */
const NOT_IN_NAT = {
  tcp: "PROXY protocol, TLS SNI routing, idle and connect timeouts, maxConnections, retry on another target",
  udp: "maxSessions, passive failure detection",
};

export function explainL4(config: Config, kind: "tcp" | "udp", where: string): string {
  const { host, port } = parseWhere(where);
  const lines = [`${kind.toUpperCase()} ${host}:${port}`];
  const list: readonly Listener[] = kind === "tcp" ? config.tcp : config.udp;
  const i = list.findIndex(
    (l) =>
      l.listen.port === port && (l.listen.host === host || isWildcard(l.listen.host) || isWildcard(host)),
  );
  if (i < 0) return `${lines[0]}\n  → no ${kind} listener on that address\n`;
  const l = list[i];
  const mode = l.mode ?? "proxy";
  lines.push(`  ${kind}[${i}] ${l.name}: MATCH (listens on ${l.listen.host}:${l.listen.port}, mode ${mode})`);
  const services = buildServices(config.services, config.dnsServers, sourceOf(config)?.baseDir);
  if ("sni" in l && l.sni !== undefined) {
    lines.push(
      `  TLS passthrough by SNI: ${Object.entries(l.sni)
        .map(([h, s]) => `${h} → ${s}`)
        .join(", ")}`,
    );
    if (l.default) lines.push(`  no SNI or no match → ${l.default}`);
    return `${lines.join("\n")}\n`;
  }
  const svc = services.get(l.service ?? "");
  if (svc === undefined) return `${lines.join("\n")}\n`;
  lines.push(
    `  service ${svc.name}: ${svc.config.balancer} over ${svc.discovery ? describeEntries(svc.config.targets) : svc.targets.map((t) => `${t.url}${t.weight !== 1 ? ` (w${t.weight})` : ""}`).join(", ")}`,
  );
  if (mode === "proxy") {
    lines.push(`  proxy: ${proxySettings(l)}`);
    return `${lines.join("\n")}\n`;
  }
  let mark = 0;
  const plan = natPlan(kind, l, services, { markOf: () => ++mark, now: 0, port, accepting: true });
  const rules = renderRuleset("switchyard", [plan]).text.split("\n");
  const at = rules.findIndex((r) => r.trim() === "chain services {");
  lines.push("  in the kernel, nftables table inet switchyard (every target as if healthy):");
  lines.push(`    ${rules[at + 1].trim()}`);
  for (const t of plan.targets) {
    const to = plan.family === 6 ? `[${t.address}]:${t.port}` : `${t.address}:${t.port}`;
    lines.push(`    chain ${targetStem(plan, t)}: dnat to ${to}`);
  }
  lines.push(
    plan.snat
      ? "  snat: masquerade (targets see the gateway's address and reply to it)"
      : "  snat: off (targets see the client's address: their route back must pass through the gateway)",
  );
  lines.push(`  not in nat mode: ${NOT_IN_NAT[kind]}`);
  return `${lines.join("\n")}\n`;
}

function proxySettings(l: Listener): string {
  if ("connectTimeout" in l) {
    const pp = l.proxyProtocol ? `, proxyProtocol ${l.proxyProtocol}` : "";
    return `connectTimeout ${l.connectTimeout}, idleTimeout ${l.idleTimeout}, maxConnections ${l.maxConnections}${pp}`;
  }
  return `sessionTimeout ${l.sessionTimeout}, maxSessions ${l.maxSessions}`;
}

/** "127.0.0.1:15432", ":5353", "15432", "tcp://[::1]:80" → host and port. */
function parseWhere(where: string): { host: string; port: number } {
  const s = where.replace(/^\w+:\/\//, "");
  const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d+)$/.exec(s) ?? /^()()(\d+)$/.exec(s);
  if (!m) throw new Error(`'${where}' is not host:port`);
  return { host: m[1] || m[2] || "0.0.0.0", port: Number(m[3]) };
}

function isWildcard(host: string): boolean {
  return host === "0.0.0.0" || host === "::";
}
