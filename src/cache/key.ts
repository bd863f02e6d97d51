/**
 * Cache keys (SPEC §6): method, scheme, host (lower-case, without port),
 * normalised path, raw query and the route's `vary` request headers; the upstream's own
 * Vary adds a second level (see entry.ts). Keys start with the path in clear
 * so purge-by-prefix can scan for them: `c:<path> <sha256 of the rest>`.
 * A `vary` item `jwt:<claim>` keys on a claim of the verified token.
 */

import { createHash } from "node:crypto";
import type { IncomingHttpHeaders } from "node:http";
import { normalizeHost } from "../router/request-view.js";

export const KEY_NAMESPACE = "c:";

/** Host as a cache (and a user) sees it: case-insensitive, port ignored. */
export function hostOf(headers: IncomingHttpHeaders): string {
  // The router's own host reading, so a cache key and a route match agree (trailing dot too).
  return normalizeHost(headers.host ?? (headers[":authority"] as string | undefined)) ?? "";
}

function headerValue(headers: IncomingHttpHeaders, name: string): string {
  const v = headers[name];
  return v === undefined ? "" : Array.isArray(v) ? v.join(", ") : v;
}

/** The values of `names` in this request (claims for `jwt:<claim>`), one per line. */
export function varyValues(
  names: readonly string[],
  headers: IncomingHttpHeaders,
  claims: Record<string, unknown> | undefined,
): string {
  let out = "";
  for (const n of names) {
    if (n.startsWith("jwt:")) {
      const v = claims?.[n.slice(4)];
      out += `${n}=${v === undefined ? "" : typeof v === "string" ? v : JSON.stringify(v)}\n`;
    } else out += `${n}=${headerValue(headers, n)}\n`;
  }
  return out;
}

/**
 * Recent digests: a hot key is hashed once, not per request. Bounded in
 * count (emptied when full) and in size (inputs up to RECENT_LONGEST chars):
 * keys carry client-chosen values, so at most ~5 MB.
 */
const recent = new Map<string, string>();
const RECENT_MAX = 10_000;

/** Longer inputs (long queries, big vary values) are hashed each time: the memo stays small. */
const RECENT_LONGEST = 256;

function digest(s: string): string {
  if (s.length > RECENT_LONGEST) return createHash("sha256").update(s).digest("base64url");
  let d = recent.get(s);
  if (d === undefined) {
    d = createHash("sha256").update(s).digest("base64url");
    if (recent.size >= RECENT_MAX) recent.clear();
    recent.set(s, d);
  }
  return d;
}

export interface KeyParts {
  method: string;
  /** http or https: a listener with TLS and one without may answer differently (redirects). */
  scheme: string;
  host: string;
  path: string;
  query: string;
  /** varyValues() of the route's `vary`. */
  vary: string;
}

export function primaryKey(k: KeyParts): string {
  return `${KEY_NAMESPACE}${k.path} ${digest(`${k.method}\n${k.scheme}\n${k.host}\n${k.query}\n${k.vary}`)}`;
}

/** The key of one variant under the upstream's Vary names. */
export function variantKey(primary: string, varyHash: string): string {
  return `${primary}.${varyHash}`;
}

export function varyHash(names: readonly string[], headers: IncomingHttpHeaders): string {
  return digest(varyValues(names, headers, undefined));
}

/** The path a key was made for. */
export function pathOfKey(key: string): string {
  return key.slice(KEY_NAMESPACE.length, key.lastIndexOf(" "));
}

/** Whole-segment prefix, as routes match: /api/users covers /api/users/7, never /api/usersx. */
export function underPrefix(path: string, prefix: string): boolean {
  if (prefix === "" || prefix.endsWith("/")) return path.startsWith(prefix);
  return path === prefix || path.startsWith(`${prefix}/`);
}

/**
 * The tag every stored response of one target URI carries (each method, route
 * `vary` value and upstream variant), so that an unsafe request can invalidate
 * them all with one tag purge (RFC 9111 §4.4; invalidate.ts). It starts with
 * a control character, which no Surrogate-Key or Cache-Tag value can carry
 * (header values cannot), so it never collides with an upstream's tags.
 */
export function uriTag(scheme: string, host: string, path: string, query: string): string {
  return `\u0001u ${digest(`${scheme}\n${host}\n${path}\n${query}`)}`;
}
