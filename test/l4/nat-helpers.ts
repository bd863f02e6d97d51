/**
 * Plumbing for the nat mode's tests with a real kernel (issue 16): why they
 * skip (the platform check the gateway itself uses), a gateway's L4 side on
 * its own nftables table (so test files running at once never share one),
 * reading a table, and removing it whatever happens.
 */
import { execFile } from "node:child_process";
import type { TestContext } from "node:test";
import { promisify } from "node:util";
import { parseConfig } from "../../src/config/load.js";
import { buildGeneration, type Generation } from "../../src/generation.js";
import { natUnsupported } from "../../src/l4/nat-platform.js";
import { L4Listeners } from "../../src/l4-listeners.js";
import { carryOver } from "../../src/upstreams/carry-over.js";

const exec = promisify(execFile);

/** Why these tests cannot run here (not Linux, no nft, no CAP_NET_ADMIN, no nat in the kernel), or false. */
export const natSkip: string | false = natUnsupported(["tcp", "udp"]) ?? false;

let count = 0;
/** A table name of this process's own. */
export const tableName = () => `sy_test_${process.pid}_${++count}`;

/** `nft list table inet NAME`, or undefined when there is none. */
export async function listTable(name: string): Promise<string | undefined> {
  try {
    return (await exec("nft", ["list", "table", "inet", name])).stdout;
  } catch {
    return undefined;
  }
}

/** The listeners' rules (chain services), one per line. */
export async function serviceRules(name: string): Promise<string[]> {
  const lines = ((await listTable(name)) ?? "").split("\n").map((l) => l.trim());
  const from = lines.indexOf("chain services {");
  if (from < 0) return [];
  return lines.slice(from + 1, lines.indexOf("}", from)).filter(Boolean);
}

/** Resolves once the table's listener rules satisfy `cond` (each check is one `nft list`). */
export async function untilRules(name: string, cond: (rules: string[]) => boolean, ms = 5000): Promise<void> {
  let rules: string[] = [];
  const end = Date.now() + ms;
  for (;;) {
    rules = await serviceRules(name);
    if (cond(rules)) return;
    if (Date.now() > end) throw new Error(`rules not as expected in time:\n${rules.join("\n")}`);
    // The table has no event to wait for: look again shortly (as helpers' until() does).
    await new Promise((r) => setTimeout(r, 20));
  }
}

export interface NatGateway {
  l4: L4Listeners;
  gen: Generation;
  table: string;
  /** The bound port of nat listener `name`. */
  port(name: string): number;
  /** Apply another routes.yaml as Gateway.reload does for L4 (health carried over, old checks stopped). */
  reload(yaml: string): Promise<Generation>;
}

/**
 * The L4 side of a gateway as Gateway runs it (L4Listeners over a generation
 * whose services run their health checks), on its own table; closed, its
 * health checks stopped and its table deleted when the test ends.
 */
export async function natGateway(t: TestContext, yaml: string): Promise<NatGateway> {
  const table = tableName();
  const l4 = new L4Listeners(undefined, { natTable: table });
  const gens: Generation[] = [];
  const start = async (text: string) => {
    const gen = buildGeneration(parseConfig(text));
    const prev = gens.at(-1);
    if (prev) carryOver(prev, gen);
    gens.push(gen);
    await Promise.all([...gen.services.values()].map((s) => s.startHealthChecks()));
    await l4.apply(gen, 0);
    for (const s of prev?.services.values() ?? []) s.stopHealthChecks();
    return gen;
  };
  t.after(async () => {
    await l4.close(0);
    for (const g of gens) for (const s of g.services.values()) s.stopHealthChecks();
    await exec("nft", ["delete", "table", "inet", table]).catch(() => {});
  });
  const gw: NatGateway = {
    l4,
    gen: await start(yaml),
    table,
    port: (name) => {
      const l = l4.nat.find((x) => x.name === name);
      if (!l) throw new Error(`no nat listener ${name}`);
      return l.address().port;
    },
    reload: async (text) => {
      gw.gen = await start(text);
      return gw.gen;
    },
  };
  return gw;
}
