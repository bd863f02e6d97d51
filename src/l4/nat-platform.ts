/**
 * Can this process run `mode: nat` listeners (issue 16)? They need Linux, the
 * `nft` command (Debian's `nftables` package) on PATH, CAP_NET_ADMIN, and a
 * kernel that accepts an nftables nat chain (nf_tables and nft_nat). The
 * answer is one line for `--check` and start-up to print, never a stack
 * trace; undefined means yes.
 *
 * The kernel is asked, not guessed: `nft --check` sends a probe table through
 * netlink and has the kernel validate it without committing anything. The
 * answer is cached for the process (none of it changes while it runs).
 */
import { execFileSync } from "node:child_process";
import { accessSync, constants, readFileSync } from "node:fs";
import { delimiter, join } from "node:path";

/** CAP_NET_ADMIN's bit in the capability sets (linux/capability.h). */
const CAP_NET_ADMIN = 12;

/** What a nat listener of each kind needs the kernel to accept: UDP also uses a ct timeout object (sessionTimeout). */
const PROBES = {
  tcp: "table inet switchyard_probe {\n  chain c {\n    type nat hook output priority -100; policy accept;\n  }\n}\n",
  udp:
    "table inet switchyard_probe {\n  ct timeout t {\n    protocol udp; l3proto ip;\n    policy = { unreplied : 30, replied : 30 }\n  }\n" +
    "  chain c {\n    type nat hook output priority -100; policy accept;\n  }\n}\n",
};

const cache = new Map<string, string | undefined>();

/** Why nat listeners of these kinds cannot run here, or undefined when they can. */
export function natUnsupported(kinds: readonly ("tcp" | "udp")[] = ["tcp"]): string | undefined {
  const key = kinds.includes("udp") ? "udp" : "tcp";
  if (!cache.has(key)) cache.set(key, probe(key));
  return cache.get(key);
}

function probe(kind: "tcp" | "udp"): string | undefined {
  if (process.platform !== "linux")
    return `nat mode needs Linux (nftables); this is ${process.platform}: use mode: proxy`;
  if (findOnPath("nft") === undefined)
    return "nat mode needs the nft command (nftables), not found on PATH: install the nftables package";
  if (!hasCapability(CAP_NET_ADMIN))
    return "nat mode needs CAP_NET_ADMIN: run as root or grant it (Kubernetes: securityContext.capabilities.add: [NET_ADMIN])";
  try {
    execFileSync("nft", ["--check", "-f", "-"], { input: PROBES[kind], stdio: "pipe", timeout: 5000 });
  } catch (err) {
    return `nat mode: the kernel refused an nftables nat table (${firstError(err)})`;
  }
  return undefined;
}

/** The first line nft printed about the problem, or the error's own message. */
export function firstError(err: unknown): string {
  const e = err as { stderr?: Buffer | string; message?: string };
  const text = String(e.stderr ?? "").trim();
  const line =
    text.split("\n").find((l) => /Error|error|denied|not supported/.test(l)) ?? text.split("\n")[0];
  return (line || e.message || String(err)).trim();
}

function findOnPath(cmd: string): string | undefined {
  for (const dir of (process.env.PATH ?? "").split(delimiter)) {
    if (dir === "") continue;
    const file = join(dir, cmd);
    try {
      accessSync(file, constants.X_OK);
      return file;
    } catch {
      // not in this directory
    }
  }
  return undefined;
}

/** Is capability `bit` in this process's effective set (/proc/self/status CapEff)? */
function hasCapability(bit: number): boolean {
  try {
    const m = /^CapEff:\s*([0-9a-f]+)$/m.exec(readFileSync("/proc/self/status", "utf8"));
    return m !== null && (BigInt(`0x${m[1]}`) & (1n << BigInt(bit))) !== 0n;
  } catch {
    return false;
  }
}
