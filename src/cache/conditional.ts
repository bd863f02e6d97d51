/**
 * Conditional requests answered from the cache (RFC 9110 §13.1): If-None-Match
 * with weak comparison (and "*"), else If-Modified-Since against the stored
 * Last-Modified. Only a stored 200 is ever answered 304.
 */
import type { IncomingHttpHeaders } from "node:http";
import type { Entry, Headers } from "./entry.js";

function one(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v.join(", ") : v;
}

const opaque = (tag: string) => tag.trim().replace(/^W\//, "");

export function notModified(req: IncomingHttpHeaders, entry: Entry): boolean {
  if (entry.status !== 200) return false;
  const inm = one(req["if-none-match"]);
  if (inm !== undefined) {
    const etag = one(entry.headers.etag);
    if (inm.trim() === "*") return true;
    if (etag === undefined) return false;
    return inm.split(",").some((t) => opaque(t) === opaque(etag));
  }
  const ims = one(req["if-modified-since"]);
  const lm = one(entry.headers["last-modified"]);
  if (ims === undefined || lm === undefined) return false;
  const since = Date.parse(ims);
  const modified = Date.parse(lm);
  return Number.isFinite(since) && Number.isFinite(modified) && modified <= since;
}

export function isConditional(req: IncomingHttpHeaders): boolean {
  return (
    req["if-none-match"] !== undefined ||
    req["if-modified-since"] !== undefined ||
    req["if-match"] !== undefined ||
    req["if-unmodified-since"] !== undefined ||
    req["if-range"] !== undefined
  );
}

/** The headers a 304 carries (RFC 9110 §15.4.5). */
const NOT_MODIFIED_HEADERS = [
  "cache-control",
  "content-location",
  "etag",
  "expires",
  "vary",
  "last-modified",
];

export function notModifiedHeaders(entry: Entry): Headers {
  const out: Headers = {};
  for (const k of NOT_MODIFIED_HEADERS) if (entry.headers[k] !== undefined) out[k] = entry.headers[k];
  return out;
}
