/**
 * The per-request side of matching: one small object per `match()` call that
 * derives the host, query and cookies lazily — only when a route being tested
 * needs them, and at most once per request.
 */
import type { PathCapture } from "./path-pattern.js";

/** What the matcher needs from a request. */
export interface MatchRequest {
  method: string;
  /** Host header (or HTTP/2 :authority) as received, port and all. */
  host: string | undefined;
  /** Already normalised (normalizePath). */
  path: string;
  /** Raw query string without "?" ("" when none). */
  query: string;
  /** Node's IncomingHttpHeaders: lower-case names. */
  headers: Record<string, string | string[] | undefined>;
}

/**
 * Host for comparison: lower-cased (RFC 3986 §3.2.2, hosts are
 * case-insensitive), port removed (also after a bracketed IPv6 literal,
 * "[::1]:8080" → "[::1]"), one trailing dot of an absolute FQDN removed.
 * undefined for an absent or empty host.
 */
export function normalizeHost(raw: string | undefined): string | undefined {
  if (raw === undefined || raw === "") return undefined;
  let end = raw.length;
  if (raw.charCodeAt(0) === 0x5b /* "[" */) {
    const close = raw.indexOf("]");
    if (close !== -1) end = close + 1;
  } else {
    const colon = raw.indexOf(":");
    // More than one colon is a bare IPv6 address (invalid in Host): left as is.
    if (colon !== -1 && raw.indexOf(":", colon + 1) === -1) end = colon;
  }
  if (end > 1 && raw.charCodeAt(end - 1) === 0x2e /* "." */) end--;
  return (end === raw.length ? raw : raw.slice(0, end)).toLowerCase();
}

/**
 * Parse a Cookie header (RFC 6265 §4.2.1: `name=value; name2=value2`) into a
 * map keeping the first occurrence of each name (§5.4: the user agent lists
 * the most specific cookie first). Whitespace around names and values is
 * dropped, one pair of surrounding DQUOTEs is removed (the cookie-value
 * grammar allows them), values are not percent-decoded (RFC 6265 defines no
 * encoding), pairs without "=" are ignored. Hand-written: a few lines, lazy,
 * and no cookie library is a dependency.
 */
export function parseCookies(header: string): Map<string, string> {
  const cookies = new Map<string, string>();
  for (const pair of header.split(";")) {
    const eq = pair.indexOf("=");
    if (eq === -1) continue;
    const name = pair.slice(0, eq).trim();
    if (name === "" || cookies.has(name)) continue;
    let value = pair.slice(eq + 1).trim();
    if (value.length >= 2 && value.charCodeAt(0) === 0x22 && value.charCodeAt(value.length - 1) === 0x22) {
      value = value.slice(1, -1);
    }
    cookies.set(name, value);
  }
  return cookies;
}

const NOT_YET = null;

export class RequestView implements PathCapture {
  params: Record<string, string> | undefined = undefined;
  restFrom = 0;
  private normalizedHost: string | undefined | typeof NOT_YET = NOT_YET;
  private searchParams: URLSearchParams | undefined = undefined;
  private cookieMap: Map<string, string> | undefined = undefined;

  constructor(readonly req: MatchRequest) {}

  host(): string | undefined {
    if (this.normalizedHost === NOT_YET) this.normalizedHost = normalizeHost(this.req.host);
    return this.normalizedHost;
  }

  /**
   * First value of a query parameter, percent-decoded with "+" as space
   * (WHATWG application/x-www-form-urlencoded, what every web form sends);
   * null when absent.
   */
  queryParam(name: string): string | null {
    this.searchParams ??= new URLSearchParams(this.req.query);
    return this.searchParams.get(name);
  }

  cookie(name: string): string | undefined {
    if (this.cookieMap === undefined) {
      // Node joins repeated Cookie headers with "; " already; an array is defensive.
      const h = this.req.headers.cookie;
      this.cookieMap = parseCookies(h === undefined ? "" : Array.isArray(h) ? h.join("; ") : h);
    }
    return this.cookieMap.get(name);
  }
}
