/**
 * Invalidation after unsafe requests (RFC 9111 §4.4): a non-error response
 * (2xx, 3xx) to a request whose method is not known to be safe invalidates
 * the stored responses of its target URI and of the URIs in its Location and
 * Content-Location headers when those share the request's origin (another
 * origin's entries are never dropped for what this one says). "Every stored
 * response" means every method, route `vary` value and upstream variant: they
 * all carry the URI's tag (key.ts uriTag), so one tag purge reaches them, in
 * the memory store and in Redis alike (every worker and instance sharing it).
 */
import type { IncomingHttpHeaders } from "node:http";
import { normalizePath } from "../router/normalize.js";
import { normalizeHost } from "../router/request-view.js";
import type { Headers } from "./entry.js";
import { uriTag } from "./key.js";

/** Safe methods (RFC 9110 §9.2.1 and the IANA method registry's "safe" column); all others invalidate. */
const SAFE = new Set(["GET", "HEAD", "OPTIONS", "TRACE", "PROPFIND", "REPORT", "SEARCH", "QUERY", "PRI"]);

export function isUnsafe(method: string): boolean {
  return !SAFE.has(method);
}

export interface Target {
  scheme: string;
  /** hostOf() of the request: lower-case, without port. */
  host: string;
  path: string;
  query: string;
}

function first(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v[0] : v;
}

/**
 * The tag of `ref` (a Location or Content-Location value, absolute or
 * relative) resolved against the request's target, or undefined when it names
 * another origin or cannot be read. The origin is scheme and host, the port
 * ignored as the cache keys ignore it (SPEC §6).
 */
function tagOfReference(ref: string, target: Target, rawHost: string | undefined): string | undefined {
  let url: URL;
  try {
    url = new URL(ref, `${target.scheme}://${rawHost ?? target.host}${target.path}`);
  } catch {
    return undefined;
  }
  if (url.protocol !== `${target.scheme}:` || normalizeHost(url.host) !== target.host) return undefined;
  const path = normalizePath(url.pathname);
  if (path === null) return undefined;
  return uriTag(target.scheme, target.host, path, url.search.slice(1));
}

/** The tags to purge after a non-error answer to an unsafe request. */
export function invalidationTags(target: Target, req: IncomingHttpHeaders, res: Headers): string[] {
  const tags = [uriTag(target.scheme, target.host, target.path, target.query)];
  for (const name of ["location", "content-location"]) {
    const ref = first(res[name]);
    if (ref === undefined || ref === "") continue;
    const tag = tagOfReference(ref, target, req.host);
    if (tag !== undefined && !tags.includes(tag)) tags.push(tag);
  }
  return tags;
}
