/**
 * The nftables table of the nat listeners (issue 16), as text for `nft -f`:
 * a pure function of what should run, so a test can read it and the table is
 * always written whole (no incremental rule edits to get out of step).
 *
 *   table inet switchyard {
 *     counter tcp_db_0_conns / _in / _out       per listener and target
 *     chain tcp_db_0 { ct mark … counter … dnat ip to 10.0.0.1:5432 }
 *     chain services { ip daddr … tcp dport 15432 numgen inc mod 4 vmap { 0 : jump tcp_db_0, … } }
 *     chain nat_prerouting / nat_output  (type nat: jump services)
 *     chain nat_postrouting              (masquerade the snat listeners' connections)
 *     chain account + account_*          (byte and packet counters, both directions)
 *   }
 *
 * How it works, in the kernel's terms:
 * - A new connection's first packet passes the nat hooks: from another host
 *   at prerouting, from this host at output (loopback clients). Its listener
 *   rule picks a map key (see nat-slots.ts) and jumps to the target's chain,
 *   which marks the conntrack entry, counts the connection and DNATs it.
 *   Every later packet of that connection (or UDP flow) follows conntrack,
 *   never the rules: a connection stays on its target whatever the table
 *   becomes (a drained or removed target keeps what it has).
 * - The conntrack mark says which listener and target a flow belongs to: its
 *   upper 16 bits only (the lower 16 are left to whoever else marks), so the
 *   accounting chains can find the counters of every packet with one lookup.
 *   Packets are counted once each: forwarded ones in forward, this host's
 *   own in output, and those delivered here from another host in input.
 * - snat: the first packet of a listener's connection is masqueraded at
 *   postrouting (the target sees the gateway's address and replies to it),
 *   unless it stays on this host (leaves by lo).
 */
import { hashBuckets, roundRobinSlots, type SlotTarget, slotRanges } from "./nat-slots.js";

export type NatBalancer = "round-robin" | "random" | "ip-hash" | "consistent-hash";

export interface NatTargetPlan extends SlotTarget {
  /** 1..65535: the conntrack mark (upper 16 bits) of this listener's connections to this target. */
  readonly mark: number;
  /** Position in the service's target list: the chain and counter names use it. */
  readonly index: number;
  readonly address: string;
  readonly port: number;
  /** Healthy, not ejected, not drained: gets new connections. */
  readonly usable: boolean;
}

export interface NatListenerPlan {
  readonly kind: "tcp" | "udp";
  readonly name: string;
  readonly family: 4 | 6;
  /** An address, or 0.0.0.0 / :: for every local address of the family. */
  readonly host: string;
  /** The bound port (the reserved socket's: `port: 0` has been resolved). */
  readonly port: number;
  /** False once the listener stops accepting (removed, shutting down): no new connections. */
  readonly accepting: boolean;
  readonly snat: boolean;
  readonly balancer: NatBalancer;
  /** jhash seed: fixed per listener so a restart or reload keeps clients on their targets. */
  readonly seed: number;
  /** UDP: seconds a flow keeps its target without datagrams (a ct timeout object). */
  readonly sessionTimeout?: number;
  readonly targets: readonly NatTargetPlan[];
}

export interface Ruleset {
  /** The `table inet NAME { … }` declaration. */
  readonly text: string;
  /** Every named object declared, as `chain X`, `counter X`, `ct timeout X` (to delete the stale ones next time). */
  readonly objects: readonly string[];
}

export const MARK_MASK = "0xffff0000";

/** Chain, counter and timeout names of a listener's objects (letters first, as nft identifiers need). */
export const stem = (l: { kind: string; name: string }) => `${l.kind}_${l.name}`;
export const targetStem = (l: { kind: string; name: string }, t: { index: number }) =>
  `${stem(l)}_${t.index}`;
const markHex = (mark: number) => `0x${((mark << 16) >>> 0).toString(16).padStart(8, "0")}`;

export function renderRuleset(table: string, listeners: readonly NatListenerPlan[]): Ruleset {
  const objects: string[] = [];
  const body: string[] = [];
  const services: string[] = [];
  const masquerade: string[] = [];
  const countIn: string[] = [];
  const countOut: string[] = [];
  for (const l of listeners) {
    const timeout = l.kind === "udp" && l.sessionTimeout ? `${stem(l)}_${l.sessionTimeout}s` : undefined;
    if (timeout) {
      objects.push(`ct timeout ${timeout}`);
      body.push(
        `  ct timeout ${timeout} {`,
        `    protocol udp; l3proto ${l.family === 4 ? "ip" : "ip6"};`,
        `    policy = { unreplied : ${l.sessionTimeout}, replied : ${l.sessionTimeout} }`,
        "  }",
      );
    }
    for (const t of l.targets) {
      const name = targetStem(l, t);
      for (const c of ["conns", "in", "out"]) {
        objects.push(`counter ${name}_${c}`);
        body.push(`  counter ${name}_${c} {`, "  }");
      }
      objects.push(`chain ${name}`);
      body.push(`  chain ${name} {`, `    ${targetRule(l, t, name, timeout)}`, "  }");
      countIn.push(`${markHex(t.mark)} : "${name}_in"`);
      countOut.push(`${markHex(t.mark)} : "${name}_out"`);
      if (l.snat) masquerade.push(markHex(t.mark));
    }
    const rule = listenerRule(l);
    if (rule !== undefined) services.push(`    ${rule}`);
  }
  body.push("  chain services {", ...services, "  }");
  body.push(
    "  chain nat_prerouting {",
    "    type nat hook prerouting priority dstnat; policy accept;",
    "    jump services",
    "  }",
    "  chain nat_output {",
    "    type nat hook output priority -100; policy accept;",
    "    jump services",
    "  }",
    "  chain nat_postrouting {",
    "    type nat hook postrouting priority srcnat; policy accept;",
    // Not towards lo: a local client reaching a local target keeps 127.0.0.1 (masquerade would pick
    // an outside address, and a backend may trust only loopback, as Redis's protected mode does).
    ...(masquerade.length
      ? [`    oifname != "lo" ct mark & ${MARK_MASK} { ${masquerade.join(", ")} } masquerade`]
      : []),
    "  }",
    "  chain account {",
    ...(countIn.length
      ? [
          `    ct direction original counter name ct mark & ${MARK_MASK} map { ${countIn.join(", ")} }`,
          `    ct direction reply counter name ct mark & ${MARK_MASK} map { ${countOut.join(", ")} }`,
        ]
      : []),
    "  }",
  );
  for (const [hook, only] of [
    ["forward", ""],
    ["input", 'iifname != "lo" '],
    ["output", ""],
  ]) {
    body.push(
      `  chain account_${hook} {`,
      `    type filter hook ${hook} priority filter; policy accept;`,
      `    ${only}ct mark & ${MARK_MASK} != 0 jump account`,
      "  }",
    );
  }
  objects.push("chain services", "chain account");
  return { text: `table inet ${table} {\n${body.join("\n")}\n}\n`, objects };
}

/** Mark the flow, count it, translate its destination (UDP: with the listener's session timeout). */
function targetRule(l: NatListenerPlan, t: NatTargetPlan, name: string, timeout: string | undefined): string {
  const to = l.family === 4 ? `ip to ${t.address}:${t.port}` : `ip6 to [${t.address}]:${t.port}`;
  return [
    `ct mark set ct mark & 0x0000ffff | ${markHex(t.mark)}`,
    ...(timeout ? [`ct timeout set "${timeout}"`] : []),
    `counter name "${name}_conns"`,
    `meta l4proto ${l.kind} dnat ${to}`,
  ].join(" ");
}

/** The listener's match and map, or undefined when it takes no new connections (none usable, not accepting). */
function listenerRule(l: NatListenerPlan): string | undefined {
  const usable = l.targets.filter((t) => t.usable);
  if (!l.accepting || usable.length === 0) return undefined;
  const ip = l.family === 4 ? "ip" : "ip6";
  const local = l.host === "0.0.0.0" || l.host === "::";
  const match = local
    ? `meta nfproto ${l.family === 4 ? "ipv4" : "ipv6"} fib daddr type local`
    : `${ip} daddr ${l.host}`;
  const hashed = l.balancer === "ip-hash" || l.balancer === "consistent-hash";
  const slots = hashed ? hashBuckets(usable) : roundRobinSlots(usable);
  const key = hashed
    ? `jhash ${ip} saddr mod ${slots.length} seed 0x${l.seed.toString(16).padStart(8, "0")}`
    : `numgen ${l.balancer === "random" ? "random" : "inc"} mod ${slots.length}`;
  const map = slotRanges(slots)
    .map((r) => `${r.from === r.to ? r.from : `${r.from}-${r.to}`} : jump ${targetStem(l, usable[r.target])}`)
    .join(", ");
  return `${match} ${l.kind} dport ${l.port} ${key} vmap { ${map} }`;
}
