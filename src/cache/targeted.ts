/**
 * Targeted cache control (RFC 9213, issue 12): `CDN-Cache-Control` (and,
 * opt-in per route, `Surrogate-Control`) governs the gateway's cache in
 * preference to Cache-Control. The route's `cache.targeted` lists the fields
 * it obeys, in precedence order; the first present with a non-empty value is
 * used instead of Cache-Control and Expires (RFC 9213 §2.2). Surrogate-Control
 * (Edge Architecture 1.0) is read for `max-age` and `no-store` only, the
 * directives every CDN that reads it agrees on.
 *
 * What SPEC §6 promises still holds: a Cache-Control `private` or `no-store`
 * keeps a response out of the cache whatever a targeted field says (the
 * targeted field speaks for shared caches; these are the origin saying the
 * answer is one client's, or must not be kept, and the gateway errs safe).
 */
import type { Headers } from "./entry.js";

export type TargetedField = "cdn-cache-control" | "surrogate-control";

export interface Targeting {
  /** The fields obeyed, first present wins (route `cache.targeted`). */
  fields: readonly TargetedField[];
  /** Whether they go on to the client (route `cache.passTargeted`); removed by default. */
  pass: boolean;
}

function one(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v.join(", ") : v;
}

/** The chosen targeted field and its value (as Cache-Control syntax), or undefined. */
export function targetedOf(headers: Headers, t: Targeting): [TargetedField, string] | undefined {
  for (const name of t.fields) {
    const v = one(headers[name])?.trim();
    if (v === undefined || v === "") continue;
    if (name === "surrogate-control") {
      const kept = v
        .split(",")
        .map((d) => d.trim())
        .filter((d) => /^(max-age=|no-store$)/i.test(d));
      if (kept.length === 0) continue;
      return [name, kept.join(", ")];
    }
    return [name, v];
  }
  return undefined;
}

/**
 * Cache-Control as the cache should read it: the targeted value, plus `private` / `no-store`
 * of the real Cache-Control (SPEC §6), or the real one when no targeted field is present.
 */
export function governing(
  cacheControl: string | undefined,
  targeted: string | undefined,
): string | undefined {
  if (targeted === undefined) return cacheControl;
  const safe = (cacheControl ?? "")
    .split(",")
    .map((d) => d.trim().split("=", 1)[0].toLowerCase())
    .filter((d) => d === "private" || d === "no-store");
  return [targeted, ...safe].join(", ");
}
