/**
 * A client's Cache-Control request directives (RFC 9111 §5.2.1), obeyed only
 * on a route with `cache.obeyClientCacheControl: true` (off by default, as in
 * NGINX and Varnish: a client cannot force misses onto the upstream).
 *
 * - no-cache (or `Pragma: no-cache` without Cache-Control, §5.4): no stored
 *   answer without asking the upstream (a stored validator makes it a
 *   conditional request);
 * - max-age=N: no stored answer older than N s;
 * - min-fresh=N: only one that stays fresh N s more;
 * - max-stale[=N]: a stale answer too (N s past its lifetime at most, any
 *   without N), unless the response forbade stale serving;
 * - only-if-cached: never the upstream; 504 SY_NOT_CACHED when nothing stored will do.
 */
import type { IncomingHttpHeaders } from "node:http";
import { ageOf, type Entry, type Freshness } from "./entry.js";

export interface ClientDirectives {
  noCache: boolean;
  maxAge?: number;
  minFresh?: number;
  maxStale?: number;
  onlyIfCached: boolean;
}

function one(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v.join(", ") : v;
}

function seconds(v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  const s = v.trim().replace(/^"(.*)"$/, "$1");
  return /^[0-9]+$/.test(s) ? Number(s) : undefined;
}

/** The request's directives, or undefined when it carries none that matter. */
export function clientDirectives(h: IncomingHttpHeaders): ClientDirectives | undefined {
  const cc = one(h["cache-control"]);
  const d: ClientDirectives = { noCache: false, onlyIfCached: false };
  let any = false;
  if (cc === undefined) {
    if (!/(^|,)\s*no-cache\s*(,|$)/i.test(one(h.pragma) ?? "")) return undefined;
    d.noCache = true;
    return d;
  }
  for (const part of cc.split(",")) {
    const eq = part.indexOf("=");
    const name = (eq < 0 ? part : part.slice(0, eq)).trim().toLowerCase();
    const value = eq < 0 ? undefined : part.slice(eq + 1);
    if (name === "no-cache") d.noCache = any = true;
    else if (name === "only-if-cached") d.onlyIfCached = any = true;
    else if (name === "max-age") {
      // An invalid max-age asks for nothing older than nothing: revalidate (the cautious reading).
      d.maxAge = seconds(value) ?? 0;
      any = true;
    } else if (name === "min-fresh") {
      d.minFresh = seconds(value) ?? 0;
      any = true;
    } else if (name === "max-stale") {
      d.maxStale = value === undefined ? Number.POSITIVE_INFINITY : (seconds(value) ?? 0);
      any = true;
    }
  }
  return any ? d : undefined;
}

/**
 * What the client lets the cache do with `entry` whose freshness is `f`: `use` it (fresh, or stale
 * within max-stale), `validate` (ask the upstream, conditionally when it can), or `default` (the
 * route's own rules: stale-while-revalidate and the rest).
 */
export function clientVerdict(
  d: ClientDirectives,
  entry: Entry,
  f: Freshness,
  now = Date.now(),
): "use" | "validate" | "default" {
  const age = ageOf(entry, now);
  const lifetime = entry.lifetime / 1000;
  if (d.noCache) return "validate";
  if (d.maxAge !== undefined && age > d.maxAge) return "validate";
  if (f === "fresh") return d.minFresh !== undefined && age + d.minFresh >= lifetime ? "validate" : "use";
  if (d.maxStale !== undefined && entry.staleOk && age - lifetime <= d.maxStale) return "use";
  return "default";
}
