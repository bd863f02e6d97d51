/**
 * A stored response and the RFC 9111 decisions about it. Whether a response
 * may be stored, its freshness lifetime and its age come from
 * http-cache-semantics in shared-cache mode; on top of it the gateway's own
 * rules (SPEC §6): never a Set-Cookie response, never `Vary: *`, the route's
 * `ttl` is the lifetime when the upstream gives none and the upper bound when
 * it does, and stale serving (staleWhileRevalidate / staleIfError) is off for
 * responses that forbid it (no-cache, must-revalidate, proxy-revalidate,
 * s-maxage: RFC 9111 §4.2.4, §5.2.2).
 *
 * Serialised as [u32 length of the JSON head][JSON head][body] so Redis and
 * memory hold one opaque buffer.
 */
import type { IncomingHttpHeaders, OutgoingHttpHeaders } from "node:http";
import CachePolicy from "http-cache-semantics";
import { type CacheControl, parseCacheControl, settleFreshness } from "./freshness-fields.js";
import { governing, type TargetedField, type Targeting, targetedOf } from "./targeted.js";

export type Headers = Record<string, string | string[]>;

export interface Entry {
  status: number;
  /** The upstream's headers as the client gets them (no Age, X-Cache, X-Request-Id, tags). */
  headers: Headers;
  body: Buffer;
  /** When stored (ms since epoch) and the age it had then (s: the upstream's Age). */
  storedAt: number;
  age0: number;
  /** Freshness lifetime (ms, from the response's origin time). */
  lifetime: number;
  /** Whether the response allows being served stale at all. */
  staleOk: boolean;
  /**
   * The upstream's own stale-while-revalidate / stale-if-error (RFC 5861), in ms, when its
   * Cache-Control has them: they replace the route's windows for this response.
   */
  swr?: number;
  sie?: number;
  /** The upstream's Vary names (lower-case) and this request's values for them. */
  vary: string[];
  varyHash: string;
  tags: string[];
  /**
   * http-cache-semantics' own record of the exchange (CachePolicy.toObject()), so that a 304
   * is judged by its revalidatedPolicy (validation by the letter, RFC 9111 §4.3.4). Built from
   * a request reduced to what the policy reads (method, URL, Host, Cache-Control and the Vary
   * names): a shared store never keeps a client's Cookie. Absent in entries of older versions.
   */
  policy?: CachePolicy.CachePolicyObject;
  /**
   * The targeted field that governed this entry, kept here when it is not passed on to clients
   * (so not among `headers`): a 304 without one is judged by it again.
   */
  targeted?: [TargetedField, string];
}

/** What the primary key holds when the upstream's response has a Vary. */
export interface VaryMarker {
  marker: true;
  vary: string[];
}

export interface Windows {
  /** Route ttl (ms): default lifetime and its upper bound. */
  ttl: number;
  swr: number;
  sie: number;
  /** Targeted cache control (targeted.ts); absent = none obeyed. */
  targeting?: Targeting;
}

/**
 * Cache-Control with its directive names in lower case. RFC 9111 §5.2 compares
 * them case-insensitively; http-cache-semantics (4.x) does not, so without this
 * "Private" or "NO-STORE" passed as storable (a private answer in the shared
 * cache, SPEC §6) and "MAX-AGE=60" as no lifetime at all. Values are kept.
 */
function lowerDirectives(cc: string): string {
  return cc
    .split(",")
    .map((part) => {
      const eq = part.indexOf("=");
      return eq < 0 ? part.toLowerCase() : part.slice(0, eq).toLowerCase() + part.slice(eq);
    })
    .join(",");
}

function flat(headers: Headers): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(headers)) out[k] = Array.isArray(v) ? v.join(", ") : v;
  return out;
}

export function tagsOf(headers: Headers): string[] {
  const f = flat(headers);
  const tags = [...(f["surrogate-key"] ?? "").split(/\s+/), ...(f["cache-tag"] ?? "").split(",")].map((t) =>
    t.trim(),
  );
  return [...new Set(tags.filter((t) => t !== ""))];
}

export function varyNames(headers: Headers): string[] {
  const v = flat(headers).vary;
  if (!v) return [];
  // Stryker disable next-line MethodExpression,ConditionalExpression,StringLiteral: equivalent for the filter and the Set, an empty or repeated name is hashed the same way when storing and on every lookup (entry.vary is what lookups use)
  return [...new Set(v.split(",").map((s) => s.trim().toLowerCase()))].filter((s) => s !== "");
}

export interface Request {
  method: string;
  url: string;
  headers: IncomingHttpHeaders;
}

/**
 * The entry to store for this response, or why not. `headers` are the
 * upstream's; the request's Authorization is the caller's decision (the
 * policy is asked as if there were none).
 */
export function buildEntry(
  req: Request,
  status: number,
  headers: Headers,
  body: Buffer,
  w: Windows,
  varyHashOf: (names: string[]) => string,
  now = Date.now(),
): { entry: Entry; retention: number } | { reason: string } {
  // The reasons are for a reader of the code: callers only ask whether there is one.
  // Stryker disable next-line StringLiteral: equivalent, see above
  if (headers["set-cookie"] !== undefined) return { reason: "set-cookie" };
  const vary = varyNames(headers);
  // Stryker disable next-line StringLiteral: equivalent, the reason is never read
  if (vary.includes("*")) return { reason: "vary-star" };
  const targeted = w.targeting && targetedOf(headers, w.targeting);
  const { res, cc: parsed } = policyResponse(status, headers, targeted?.[1]);
  const policy = new CachePolicy(policyRequest(req, vary), res, POLICY_OPTIONS);
  // Stryker disable next-line StringLiteral: equivalent, the reason is never read
  if (!policy.storable()) return { reason: "not-storable" };
  const cc = parsed.names;
  const swr = secondsToMs(parsed.delta.get("stale-while-revalidate"));
  const sie = secondsToMs(parsed.delta.get("stale-if-error"));
  const explicit = cc.has("max-age") || cc.has("s-maxage") || res.headers.expires !== undefined;
  const lifetime = cc.has("no-cache") ? 0 : explicit ? Math.min(policy.maxAge() * 1000, w.ttl) : w.ttl;
  const staleOk = !["no-cache", "must-revalidate", "proxy-revalidate", "s-maxage"].some((d) => cc.has(d));
  const age0 = policy.age();
  // Retention only bounds how long the store keeps the entry; freshness() decides what is served
  // from it. So a longer retention (validators → true, fresh computed larger) serves nothing more.
  // Stryker disable next-line ConditionalExpression: equivalent for `etag !== undefined` → true, see above (the Last-Modified-only case is killed)
  const validators = res.headers.etag !== undefined || res.headers["last-modified"] !== undefined;
  // Stryker disable next-line ArithmeticOperator: equivalent, see above
  const fresh = lifetime - age0 * 1000;
  const stale = staleOk ? Math.max(swr ?? w.swr, sie ?? w.sie) : 0;
  const retention = Math.max(0, fresh + stale) + (validators ? w.ttl : 0);
  // Stryker disable next-line ConditionalExpression,EqualityOperator,StringLiteral: equivalent, an entry stored for 0 ms (or less) is expired when read
  if (retention <= 0) return { reason: "no-lifetime" };
  const stored: Headers = {};
  const strip = w.targeting?.pass === false ? w.targeting.fields : [];
  for (const [k, v] of Object.entries(headers))
    if (!UNSTORED.has(k) && !strip.includes(k as TargetedField)) stored[k] = v;
  return {
    entry: {
      status,
      headers: stored,
      body,
      storedAt: now,
      age0,
      lifetime,
      staleOk,
      swr,
      sie,
      vary,
      // Stryker disable next-line ConditionalExpression,EqualityOperator,StringLiteral: equivalent, varyHash is compared only when vary is not empty
      varyHash: vary.length > 0 ? varyHashOf(vary) : "",
      tags: tagsOf(headers),
      policy: policy.toObject(),
      targeted: targeted !== undefined && strip.includes(targeted[0]) ? targeted : undefined,
    },
    retention,
  };
}

const POLICY_OPTIONS = { shared: true, cacheHeuristic: 0, immutableMinTimeToLive: 0 };

/**
 * The request as the policy needs it: method, URL, Host, Cache-Control (directive names in lower
 * case) and the headers the response varies on. Authorization is the caller's decision (the
 * policy is asked as if there were none); nothing else is kept in the stored policy.
 */
function policyRequest(req: Request, vary: readonly string[]): CachePolicy.Request {
  const h = req.headers;
  const headers: Record<string, string> = {};
  if (h.host !== undefined) headers.host = h.host;
  const cc = h["cache-control"];
  if (typeof cc === "string") headers["cache-control"] = lowerDirectives(cc);
  for (const name of vary) {
    const v = h[name];
    if (v !== undefined) headers[name] = Array.isArray(v) ? v.join(", ") : v;
  }
  return { method: req.method, url: req.url, headers };
}

/** The response as the policy reads it: freshness fields settled by the letter (freshness-fields.ts). */
function policyResponse(
  status: number,
  headers: Headers,
  targeted?: string,
): { res: { status: number; headers: Record<string, string> }; cc: CacheControl } {
  const res = { status, headers: flat(headers) };
  if (targeted !== undefined) {
    // RFC 9213 §2.2: the targeted field instead of Cache-Control and Expires (targeted.ts).
    res.headers["cache-control"] = governing(res.headers["cache-control"], targeted)!;
    delete res.headers.expires;
  }
  const cc = parseCacheControl(res.headers["cache-control"]);
  settleFreshness(res.headers, cc);
  return { res, cc };
}

function secondsToMs(s: number | undefined): number | undefined {
  return s === undefined ? undefined : s * 1000;
}

/** Per-response or cache-internal headers that a stored copy must not replay. */
const UNSTORED = new Set([
  "age",
  "x-cache",
  "x-request-id",
  // Stryker disable StringLiteral: equivalent, hop-by-hop fields are gone before the cache sees the answer (plugins/balance.ts)
  "connection",
  "keep-alive",
  "transfer-encoding",
  // Stryker restore StringLiteral
  "surrogate-key",
  "cache-tag",
  "date",
]);

/**
 * The entry after a 304 to the gateway's own conditional request (RFC 9111
 * §4.3.4), or `mismatch` when the 304 does not select it: its validators are
 * not the stored ones (a strong ETag that differs, a weak one that does not
 * match, another Last-Modified), judged by http-cache-semantics'
 * revalidatedPolicy against the stored policy. A mismatched 304 updates
 * nothing. When it matches, the stored header fields are updated per §3.2:
 * every field of the 304 is added or replaces the stored one, except those
 * that describe the stored body (Content-Length and the codings). The library
 * only replaces fields the stored response already had, so the merge is ours.
 */
export function revalidated(
  old: Entry,
  req: Request,
  notModified: Headers,
  w: Windows,
  varyHashOf: (names: string[]) => string,
  now = Date.now(),
): ReturnType<typeof buildEntry> | { mismatch: true } {
  const preq = policyRequest(req, old.vary);
  const before =
    old.policy !== undefined
      ? CachePolicy.fromObject(old.policy)
      : new CachePolicy(preq, policyResponse(old.status, old.headers).res, POLICY_OPTIONS);
  if (!before.revalidatedPolicy(preq, policyResponse(304, notModified).res).matches)
    return { mismatch: true };
  const headers: Headers = { ...old.headers };
  if (old.targeted !== undefined) headers[old.targeted[0]] = old.targeted[1];
  for (const [k, v] of Object.entries(notModified)) {
    if (!BODY_HEADERS.has(k)) headers[k] = v;
  }
  return buildEntry(req, old.status, headers, old.body, w, varyHashOf, now);
}

const BODY_HEADERS = new Set(["content-length", "content-encoding", "transfer-encoding", "content-range"]);

/** Current age in seconds (RFC 9111 §4.2.3: the age it came with plus time resident here). */
export function ageOf(e: Entry, now = Date.now()): number {
  return e.age0 + Math.max(0, now - e.storedAt) / 1000;
}

export type Freshness = "fresh" | "stale-while-revalidate" | "stale-if-error" | "expired";

export function freshness(e: Entry, w: Windows, now = Date.now()): Freshness {
  const age = ageOf(e, now) * 1000;
  if (age < e.lifetime) return "fresh";
  if (e.staleOk && age < e.lifetime + (e.swr ?? w.swr)) return "stale-while-revalidate";
  if (e.staleOk && age < e.lifetime + (e.sie ?? w.sie)) return "stale-if-error";
  return "expired";
}

export function hasValidators(e: Entry): boolean {
  return e.headers.etag !== undefined || e.headers["last-modified"] !== undefined;
}

export function encode(value: Entry | VaryMarker): Buffer {
  const body = "body" in value ? value.body : Buffer.alloc(0);
  const head = Buffer.from(JSON.stringify({ ...value, body: undefined }));
  const len = Buffer.allocUnsafe(4);
  len.writeUInt32BE(head.length);
  return Buffer.concat([len, head, body]);
}

/**
 * Decoded values by stored buffer: the memory store hands back the same
 * Buffer on every hit, so each entry is parsed once, not per request (a hit's
 * largest cost before this). Decoded values are frozen: every reader shares them.
 */
const decoded = new WeakMap<Buffer, Entry | VaryMarker>();

/**
 * Redis replies are new buffers on every read. Given the store key, the value
 * decoded last for that key is reused when the bytes are the same (a compare
 * of a few hundred bytes instead of a JSON parse of ~5 µs). Bounded like the
 * key digests' memo: small values only, emptied when full (≤ 16 MB).
 */
const byKey = new Map<string, { buf: Buffer; value: Entry | VaryMarker }>();
const BY_KEY_MAX = 1000;
const BY_KEY_LARGEST = 16 * 1024;

export function decode(buf: Buffer, key?: string): Entry | VaryMarker | undefined {
  const known = decoded.get(buf);
  if (known !== undefined) return known;
  const last = key === undefined ? undefined : byKey.get(key);
  if (last?.buf.equals(buf)) return last.value;
  try {
    const n = buf.readUInt32BE(0);
    const head = JSON.parse(buf.subarray(4, 4 + n).toString());
    Object.freeze(head.headers);
    const v = Object.freeze(head.marker === true ? head : { ...head, body: buf.subarray(4 + n) });
    decoded.set(buf, v);
    if (key !== undefined && buf.length <= BY_KEY_LARGEST) {
      if (byKey.size >= BY_KEY_MAX) byKey.clear();
      byKey.set(key, { buf, value: v });
    }
    return v;
  } catch {
    return undefined; // a foreign or truncated value is a miss, not an error
  }
}

/** Reply headers (numbers and arrays included) as stored header values. */
export function toHeaders(h: OutgoingHttpHeaders): Headers {
  const out: Headers = {};
  for (const [k, v] of Object.entries(h)) {
    if (v === undefined) continue;
    out[k] = Array.isArray(v) ? v.map(String) : String(v);
  }
  return out;
}
