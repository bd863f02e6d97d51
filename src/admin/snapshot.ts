/**
 * What the admin API shows, as plain JSON built from the running objects:
 * upstream state (/admin/upstreams), the dashboard's stats (/admin/stats,
 * derived from the metrics so that one worker and many read the same way) and
 * the config with its secrets masked (/admin/config).
 */
import type { MetricObjectWithValues, MetricValue } from "prom-client";
import type { Config } from "../config/schema.js";
import type { Generation } from "../generation.js";

export interface TargetSnapshot {
  url: string;
  weight: number;
  healthy: boolean;
  ejected: boolean;
  draining: boolean;
  inFlight: number;
  /** Requests (L7) or connections (L4) sent to it, and those that failed, since start (reloads carry them). */
  requests: number;
  failures: number;
}

export interface ServiceSnapshot {
  name: string;
  balancer: string;
  targets: TargetSnapshot[];
}

export function upstreams(gen: Generation, now = Date.now()): ServiceSnapshot[] {
  return [...gen.services.values()].map((s) => ({
    name: s.name,
    balancer: s.config.balancer,
    targets: s.targets.map((t) => ({
      url: t.url,
      weight: t.weight,
      healthy: t.healthy,
      ejected: t.ejected(now),
      draining: t.draining,
      inFlight: t.inFlight,
      requests: t.requests,
      failures: t.failures,
    })),
  }));
}

/**
 * Several workers' views of the same services, as one: counts add up; a
 * target is healthy only if every worker finds it so, ejected or draining if
 * any does.
 */
export function mergeUpstreams(views: ServiceSnapshot[][]): ServiceSnapshot[] {
  const [first, ...rest] = views;
  if (first === undefined) return [];
  const out = structuredClone(first);
  for (const view of rest)
    for (const s of view) {
      const into = out.find((o) => o.name === s.name);
      for (const t of s.targets) {
        const u = into?.targets.find((x) => x.url === t.url);
        if (u === undefined) continue;
        u.healthy &&= t.healthy;
        u.ejected ||= t.ejected;
        u.draining ||= t.draining;
        u.inFlight += t.inFlight;
        u.requests += t.requests;
        u.failures += t.failures;
      }
    }
  return out;
}

export interface ReloadResult {
  result: "success" | "failure";
  at: string;
  error?: string;
  generation: number;
}

export interface RouteStats {
  name: string;
  requests: number;
  /** Answers with status ≥ 500. */
  errors: number;
  rateLimited: number;
  cache: { hit: number; miss: number; stale: number; bypass: number };
  latency: { buckets: number[]; counts: number[]; count: number; sum: number };
}

export type L4Stats =
  | { kind: "tcp"; name: string; active: number; total: number; bytesIn: number; bytesOut: number }
  | { kind: "udp"; name: string; sessions: number; datagramsIn: number; datagramsOut: number };

export interface Stats {
  generation: number;
  workers: number;
  uptimeSeconds: number;
  time: number;
  lastReload: ReloadResult | null;
  services: ServiceSnapshot[];
  routes: RouteStats[];
  l4: L4Stats[];
}

type Metric = MetricObjectWithValues<MetricValue<string>>;

/** The dashboard's per-route and L4 figures, read off the metrics (one process's, or every worker's summed). */
export function statsFromMetrics(config: Config, metrics: Metric[]): Pick<Stats, "routes" | "l4"> {
  const by = new Map(metrics.map((m) => [m.name, m.values]));
  const values = (name: string) => by.get(`switchyard_${name}`) ?? [];
  const routes = new Map<string, RouteStats>();
  for (const r of config.routes)
    routes.set(r.name, {
      name: r.name,
      requests: 0,
      errors: 0,
      rateLimited: 0,
      cache: { hit: 0, miss: 0, stale: 0, bypass: 0 },
      latency: { buckets: [], counts: [], count: 0, sum: 0 },
    });
  for (const v of values("http_requests_total")) {
    const r = routes.get(String(v.labels.route));
    if (r === undefined) continue;
    r.requests += v.value;
    if (Number(v.labels.status) >= 500) r.errors += v.value;
  }
  for (const v of values("rate_limited_total")) {
    const r = routes.get(String(v.labels.route));
    if (r) r.rateLimited += v.value;
  }
  for (const v of values("cache_requests_total")) {
    const r = routes.get(String(v.labels.route));
    const result = v.labels.result as keyof RouteStats["cache"];
    if (r && result in r.cache) r.cache[result] += v.value;
  }
  for (const v of values("http_request_duration_seconds")) {
    const r = routes.get(String(v.labels.route));
    if (r === undefined) continue;
    const l = r.latency;
    const name = (v as { metricName?: string }).metricName ?? "";
    if (name.endsWith("_sum")) l.sum += v.value;
    else if (name.endsWith("_count")) l.count += v.value;
    else if (v.labels.le !== "+Inf") {
      const le = Number(v.labels.le);
      let i = l.buckets.indexOf(le);
      if (i < 0) {
        l.buckets.push(le);
        l.counts.push(0);
        i = l.buckets.length - 1;
      }
      l.counts[i] += v.value;
    }
  }
  const l4: L4Stats[] = [];
  const sum = (name: string, listener: string, extra?: Record<string, string>) =>
    values(name)
      .filter(
        (v) =>
          v.labels.listener === listener && Object.entries(extra ?? {}).every(([k, x]) => v.labels[k] === x),
      )
      .reduce((a, v) => a + v.value, 0);
  for (const t of config.tcp)
    l4.push({
      kind: "tcp",
      name: t.name,
      active: sum("tcp_connections_active", t.name),
      total: sum("tcp_connections_total", t.name),
      bytesIn: sum("tcp_bytes_total", t.name, { direction: "in" }),
      bytesOut: sum("tcp_bytes_total", t.name, { direction: "out" }),
    });
  for (const u of config.udp)
    l4.push({
      kind: "udp",
      name: u.name,
      sessions: sum("udp_sessions_active", u.name),
      datagramsIn: sum("udp_datagrams_total", u.name, { direction: "in" }),
      datagramsOut: sum("udp_datagrams_total", u.name, { direction: "out" }),
    });
  return { routes: [...routes.values()], l4 };
}

const MASK = "***";
/** Keys whose values are secrets wherever they appear: JWT secrets, the admin token, TLS private keys. */
const SECRET_KEYS = new Set(["secret", "token", "key", "password"]);
/** Maps of name → value (a transform's `set`, match headers, cookies, query, respond headers). */
const NAMED_VALUES = new Set(["set", "headers", "cookies", "query"]);
/** Names whose values are credentials, in those maps. */
const SECRET_HEADER = /authorization|cookie|api[-_]?key|token|secret|password/i;

/** The loaded config with every secret replaced by "***" (and passwords inside URLs). */
export function maskConfig(config: Config): unknown {
  const walk = (v: unknown, key: string, parent: string): unknown => {
    if (Array.isArray(v)) return v.map((x) => walk(x, "", key));
    if (v !== null && typeof v === "object") {
      const out: Record<string, unknown> = {};
      for (const [k, x] of Object.entries(v)) out[k] = walk(x, k, key);
      return out;
    }
    if (typeof v !== "string") return v;
    if (SECRET_KEYS.has(key) || (NAMED_VALUES.has(parent) && SECRET_HEADER.test(key)))
      return v === "" ? v : MASK;
    return maskUrl(v);
  };
  return walk(config, "", "");
}

/** redis://user:pass@host → redis://user:***@host; anything that is not such a URL stays. */
function maskUrl(s: string): string {
  return s.replace(/^([a-z][a-z0-9+.-]*:\/\/[^/@:\s]*:)[^/@\s]+@/i, `$1${MASK}@`);
}
