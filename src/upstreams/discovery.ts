/**
 * DNS service discovery (services.*.discovery: dns, issue 14): a target
 * written with a host name stands for every A and AAAA address the name has,
 * and `{ srv: _http._tcp.users… }` for every host and port of an SRV record
 * (RFC 2782; only the lowest priority is used, record weights are not). Each
 * address becomes a Target of its own, with its own health, ejection and
 * in-flight count — what Envoy calls a STRICT_DNS cluster, and what a
 * Kubernetes headless Service gives (one A record per ready pod).
 *
 * - Names are resolved again when the shortest TTL of their answers is up,
 *   but at least every `dnsRefresh` (default 30 s) and at most every second;
 *   SRV answers carry no TTL through node:dns, so they are re-read every
 *   `dnsRefresh`.
 * - A name that fails to resolve (timeout, SERVFAIL, NXDOMAIN, no address at
 *   all) keeps its last good addresses; the failure is logged once, and the
 *   recovery once. A name that has an A record and no AAAA is normal.
 * - What the service does with a new address set (drain the vanished, probe
 *   and ramp the new) is Service.setTargets; this file only resolves.
 *
 * node:dns's Resolver (c-ares) is the client: it takes explicit servers
 * (`dnsServers:`), TTLs and SRV, so no DNS package is needed at runtime.
 */

import { Resolver } from "node:dns/promises";
import { isIP } from "node:net";
import type { ServiceConfig } from "../config/schema.js";

export type TargetEntry = ServiceConfig["targets"][number];

/** One address the service should have as a target. */
export interface Found {
  url: string;
  weight: number;
}

/** A target entry as discovery reads it. */
type Spec =
  | { kind: "static"; found: Found }
  | { kind: "host"; scheme: string; host: string; port: string; weight: number }
  | { kind: "srv"; name: string; scheme: string; weight: number };

/** Where failures and changes are logged (a pino logger fits). */
export interface DiscoveryLog {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
}

/** The URL a config entry names; undefined for an `srv` entry. */
export function entryUrl(t: TargetEntry): string | undefined {
  return typeof t === "string" ? t : "url" in t ? t.url : undefined;
}

/** The scheme of an `srv` entry's targets: as written, else from the SRV name's labels. */
export function srvScheme(e: { srv: string; scheme?: string }): string {
  if (e.scheme !== undefined) return e.scheme;
  const [service, proto] = e.srv.toLowerCase().split(".");
  if (service === "_https") return "https";
  if (service === "_http") return "http";
  return proto === "_udp" ? "udp" : "tcp";
}

/** The scheme ("http", "tcp" …) of any entry, for config checks; undefined when the URL does not parse. */
export function entryScheme(t: TargetEntry): string | undefined {
  const url = entryUrl(t);
  if (url === undefined) return srvScheme(t as { srv: string; scheme?: string });
  return /^([a-z][a-z0-9+.-]*):/i.exec(url)?.[1]?.toLowerCase();
}

/** Does this service resolve anything (a host name or an SRV name)? */
function specOf(t: TargetEntry): Spec {
  const weight = (typeof t === "string" ? undefined : t.weight) ?? 1;
  const url = entryUrl(t);
  if (url === undefined) {
    const e = t as { srv: string; scheme?: string };
    return { kind: "srv", name: e.srv, scheme: srvScheme(e), weight };
  }
  const u = new URL(url);
  const host = u.hostname.startsWith("[") ? u.hostname.slice(1, -1) : u.hostname;
  if (isIP(host) !== 0) return { kind: "static", found: { url, weight } };
  return { kind: "host", scheme: u.protocol.slice(0, -1), host, port: u.port, weight };
}

const NO_ADDRESS = new Set(["ENODATA", "ENOTFOUND"]);
/** Below this, a TTL is not followed (a TTL of 0 must not turn into a busy loop). */
const MIN_REFRESH = 1000;
/** Until a name has resolved once, try again this often at most. */
const FIRST_RETRY = 5000;

export class DnsDiscovery {
  private readonly specs: Spec[];
  private readonly resolver: Resolver;
  /** Last good answer per spec (by position). */
  private last = new Map<number, Found[]>();
  /** Specs whose failure has been logged and not yet recovered. */
  private readonly failing = new Set<number>();
  private timer: NodeJS.Timeout | undefined;
  private running = false;
  /** Resolutions completed (tests and the admin view wait on it). */
  rounds = 0;

  constructor(
    private readonly service: string,
    entries: readonly TargetEntry[],
    /** Longest time between resolutions, ms. */
    private readonly maxRefresh: number,
    servers: readonly string[] | undefined,
    /** Hands each resolved set to the service (which drains, probes and ramps). */
    private readonly apply: (found: Found[]) => Promise<void>,
  ) {
    this.specs = entries.map(specOf);
    // Two tries of 2 s: a resolver that is down costs a refresh 4 s, never a request.
    this.resolver = new Resolver({ timeout: 2000, tries: 2 });
    if (servers !== undefined && servers.length > 0) this.resolver.setServers([...servers]);
  }

  /** Every entry's addresses as last known (static ones as written). */
  get known(): Found[] {
    const out: Found[] = [];
    const seen = new Set<string>();
    this.specs.forEach((s, i) => {
      const list = s.kind === "static" ? [s.found] : (this.last.get(i) ?? []);
      for (const f of list) {
        if (seen.has(f.url)) continue;
        seen.add(f.url);
        out.push(f);
      }
    });
    return out;
  }

  /**
   * A reload's discovery starts from what the running one knew (same entries):
   * if its first resolution fails, the last good addresses still serve.
   */
  inherit(prev: DnsDiscovery): void {
    if (JSON.stringify(prev.specs) === JSON.stringify(this.specs)) this.last = new Map(prev.last);
  }

  /** First resolution (before the gateway is ready), then one per TTL. */
  async start(log?: DiscoveryLog): Promise<void> {
    this.log = log;
    this.running = true;
    await this.refresh();
  }

  stop(): void {
    this.running = false;
    clearTimeout(this.timer);
    this.resolver.cancel();
  }

  private log: DiscoveryLog | undefined;

  private async refresh(): Promise<void> {
    let next = this.maxRefresh;
    const answers = await Promise.all(this.specs.map((s) => this.resolve(s)));
    if (!this.running) return;
    answers.forEach((a, i) => {
      if (a === undefined) return; // static
      const name = describe(this.specs[i]);
      if ("error" in a) {
        if (!this.last.has(i)) next = Math.min(next, FIRST_RETRY);
        if (this.failing.has(i)) return;
        this.failing.add(i);
        const kept = this.last.get(i)?.length ?? 0;
        this.log?.warn(
          { service: this.service, name, code: a.error, kept },
          `DNS: ${name} did not resolve (${a.error}); keeping its last ${kept} address(es)`,
        );
        return;
      }
      if (this.failing.delete(i))
        this.log?.info({ service: this.service, name }, `DNS: ${name} resolves again`);
      this.last.set(i, a.found);
      if (a.ttl !== undefined) next = Math.min(next, a.ttl);
    });
    try {
      await this.apply(this.known);
    } catch (err) {
      this.log?.warn(
        { service: this.service, err: (err as Error).message },
        "DNS: applying addresses failed",
      );
    }
    this.rounds++;
    if (!this.running) return;
    this.timer = setTimeout(
      () => void this.refresh(),
      Math.max(Math.min(MIN_REFRESH, this.maxRefresh), next),
    );
    this.timer.unref();
  }

  /** One entry's addresses and the TTL (ms) to follow; { error } when it did not resolve. */
  private async resolve(s: Spec): Promise<{ found: Found[]; ttl?: number } | { error: string } | undefined> {
    if (s.kind === "static") return undefined;
    try {
      if (s.kind === "host") {
        const { addresses, ttl } = await this.addresses(s.host);
        return { found: addresses.map((a) => ({ url: urlOf(s.scheme, a, s.port), weight: s.weight })), ttl };
      }
      const records = await this.resolver.resolveSrv(s.name);
      if (records.length === 0) return { error: "ENODATA" };
      // RFC 2782: the lowest priority is the one to use while it has targets.
      const top = Math.min(...records.map((r) => r.priority));
      const found: Found[] = [];
      let ttl: number | undefined;
      for (const r of records.filter((x) => x.priority === top)) {
        const host = r.name.replace(/\.$/, "");
        // "." as the target means "no such service here" (RFC 2782).
        if (host === "") continue;
        const resolved =
          isIP(host) !== 0 ? { addresses: [host], ttl: undefined } : await this.addresses(host);
        if (resolved.ttl !== undefined) ttl = Math.min(ttl ?? resolved.ttl, resolved.ttl);
        for (const a of resolved.addresses)
          found.push({ url: urlOf(s.scheme, a, String(r.port)), weight: s.weight });
      }
      if (found.length === 0) return { error: "ENODATA" };
      return { found, ttl };
    } catch (err) {
      return { error: (err as { code?: string }).code ?? (err as Error).message };
    }
  }

  /** A and AAAA of `host`, with the shortest TTL (ms). Throws when neither gives an address. */
  private async addresses(host: string): Promise<{ addresses: string[]; ttl: number | undefined }> {
    const [v4, v6] = await Promise.allSettled([
      this.resolver.resolve4(host, { ttl: true }),
      this.resolver.resolve6(host, { ttl: true }),
    ]);
    const addresses: string[] = [];
    let ttl: number | undefined;
    for (const r of [v4, v6]) {
      if (r.status === "rejected") {
        // No record of this family is normal (an A-only name); anything else is a failure.
        const code = (r.reason as { code?: string }).code ?? "";
        if (!NO_ADDRESS.has(code)) throw r.reason;
        continue;
      }
      for (const a of r.value) {
        addresses.push(a.address);
        ttl = Math.min(ttl ?? a.ttl * 1000, a.ttl * 1000);
      }
    }
    if (addresses.length === 0) {
      const reason = v4.status === "rejected" ? v4.reason : v6.status === "rejected" ? v6.reason : undefined;
      throw reason ?? Object.assign(new Error("no address"), { code: "ENODATA" });
    }
    return { addresses, ttl };
  }
}

function urlOf(scheme: string, address: string, port: string): string {
  const host = isIP(address) === 6 ? `[${address}]` : address;
  return `${scheme}://${host}${port === "" ? "" : `:${port}`}`;
}

function describe(s: Spec): string {
  return s.kind === "srv" ? `SRV ${s.name}` : s.kind === "host" ? s.host : s.found.url;
}

/** Does any entry need resolving? (A discovery service of IP literals only has nothing to do.) */
export function resolves(entries: readonly TargetEntry[]): boolean {
  return entries.some((t) => specOf(t).kind !== "static");
}

/** For `explain`: what a discovery service's targets are, before anything is resolved. */
export function describeEntries(entries: readonly TargetEntry[]): string {
  const list = entries.map((t) => entryUrl(t) ?? `srv ${(t as { srv: string }).srv}`).join(", ");
  return `every address of ${list} (discovery: dns)`;
}
