/**
 * Request-path normalisation (SPEC §3): the normalised path is both what routes
 * match against and what the upstream receives, so what was authorised is what
 * is forwarded. Hand-written because no maintained package does exactly
 * "RFC 3986 §6.2.2 syntax-based normalisation + the gateway's reject rules"
 * (URL parsers decode too much or too little and never reject %2F).
 */

const SLASH = 0x2f;
const BACKSLASH = 0x5c;
const PERCENT = 0x25;
const DOT = 0x2e;
const NUL = 0;
const HEX = "0123456789ABCDEF";

/** Value of one hex digit, or -1 (also for NaN, i.e. past the end of the string). */
function hexValue(c: number): number {
  // Stryker disable next-line ConditionalExpression: equivalent for `c >= 0x30` → true: below "0" the result is negative, which every caller reads as "not a hex digit", as it does -1
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  const lower = c | 0x20;
  return lower >= 0x61 && lower <= 0x66 ? lower - 0x57 : -1;
}

/** RFC 3986 §2.3 unreserved = ALPHA / DIGIT / "-" / "." / "_" / "~". */
function isUnreserved(c: number): boolean {
  return (
    (c >= 0x61 && c <= 0x7a) ||
    (c >= 0x41 && c <= 0x5a) ||
    (c >= 0x30 && c <= 0x39) ||
    c === 0x2d ||
    c === DOT ||
    c === 0x5f ||
    c === 0x7e
  );
}

/**
 * Anything that needs work: an escape, a "\", a NUL, a dot or empty segment.
 * Absent in the common case, so one native regex scan (faster than a
 * charCodeAt loop in V8) returns the path untouched, without allocating.
 */
// Stryker disable next-line Regex: equivalent, a fast path only: normalising a path that needs no work returns it unchanged
const NEEDS_WORK = /[%\\\0]|\/[./]/;

/**
 * Decode escapes of unreserved characters (RFC 3986 §6.2.2.2), upper-case the
 * hex of all others (§6.2.2.1). null for a malformed escape, an encoded "/" or
 * "\" (it would change the segment structure the upstream sees, the classic
 * routing-bypass vector) and a raw "\" or NUL raw or encoded.
 */
function decodeUnreserved(path: string): string | null {
  // Stryker disable next-line StringLiteral: equivalent, the path starts with "/", so anything before it is segment 0, which removeDotSegments drops
  let out = "";
  let from = 0;
  // Stryker disable next-line EqualityOperator: equivalent for <=, the extra step reads NaN (past the end), which is no special character
  for (let i = 0; i < path.length; i++) {
    const c = path.charCodeAt(i);
    if (c === BACKSLASH || c === NUL) return null;
    if (c !== PERCENT) continue;
    const hi = hexValue(path.charCodeAt(i + 1));
    const lo = hexValue(path.charCodeAt(i + 2));
    // Mutation testing: `hi < 0` → false survives, and is equivalent: a byte made with hi < 0 is
    // negative, is written "%undefined…", and validUtf8 refuses it. Kept: a refusal should not
    // rest on that. (Not disabled: the line's other ConditionalExpression mutants are killed.)
    if (hi < 0 || lo < 0) return null;
    const byte = hi * 16 + lo;
    if (byte === SLASH || byte === BACKSLASH || byte === NUL) return null;
    out += path.slice(from, i);
    out += isUnreserved(byte) ? String.fromCharCode(byte) : `%${HEX[hi]}${HEX[lo]}`;
    i += 2;
    from = i + 1;
  }
  // Stryker disable next-line ConditionalExpression: equivalent, with nothing decoded out is "" and out + path.slice(0) is path
  return from === 0 ? path : out + path.slice(from);
}

/**
 * A dot segment with `;` parameters ("..;", ".;x"). RFC 3986 makes it an
 * ordinary segment, so it survives normalisation, but servlet containers
 * (Tomcat, Jetty) strip the parameters and then read "..": "/public/..;/admin"
 * would be authorised as /public and served as /admin (issue 15). Refused.
 */
const DOT_PARAMS = /^\.\.?;/;

/**
 * RFC 3986 §5.2.4 remove_dot_segments, plus merging of empty segments ("//")
 * as NGINX's merge_slashes does. ".." above the root stays at the root. A path
 * ending in "/", "/." or "/.." keeps a trailing slash, as §5.2.4 prescribes
 * ("/a/b/.." → "/a/").
 */
function removeDotSegments(path: string): string | null {
  const segments = path.split("/");
  const out: string[] = [];
  const last = segments.length - 1;
  let trailingSlash = false;
  // segments[0] is "" (the path starts with "/").
  for (let i = 1; i <= last; i++) {
    const s = segments[i];
    if (s === "" || s === ".") {
      trailingSlash = i === last;
    } else if (s === "..") {
      out.pop();
      trailingSlash = i === last;
    } else if (s.charCodeAt(0) === DOT && DOT_PARAMS.test(s)) {
      return null;
    } else {
      out.push(s);
    }
  }
  if (out.length === 0) return "/";
  const joined = `/${out.join("/")}`;
  return trailingSlash ? `${joined}/` : joined;
}

/**
 * Normalise the path part of a request target (no query). Returns the path to
 * match and forward, or null when the request must be rejected with 400
 * SY_BAD_PATH: a path not starting with "/" (also absolute-form and "*"
 * targets — the caller must reduce those first), an encoded "/" or "\", a raw
 * "\", a NUL, invalid percent-encoding, encoded bytes that are not UTF-8, or
 * a dot segment carrying `;` parameters.
 * Returns its argument unchanged when it is already normal (no allocation).
 */
export function normalizePath(rawPath: string): string | null {
  if (rawPath.charCodeAt(0) !== SLASH) return null;
  // Stryker disable next-line ConditionalExpression: equivalent, a fast path only (see NEEDS_WORK)
  if (!NEEDS_WORK.test(rawPath)) return rawPath;
  const decoded = decodeUnreserved(rawPath);
  if (decoded === null || !validUtf8(decoded)) return null;
  return removeDotSegments(decoded);
}

/**
 * Percent-encoded bytes must spell valid UTF-8 (RFC 3986 §2.5, and what
 * Fastify's router requires): an overlong "/" (%C0%AF), a lone %FF or a cut
 * sequence is an attempt to smuggle a path past matching, refused like %2F.
 * decodeURIComponent rejects exactly those (overlong forms included).
 */
function validUtf8(path: string): boolean {
  // Stryker disable next-line ConditionalExpression,StringLiteral: equivalent, a fast path: decodeURIComponent never throws on a string without "%"
  if (!path.includes("%")) return true;
  try {
    decodeURIComponent(path);
    return true;
  } catch {
    return false;
  }
}

/**
 * Canonical form of a path written in routes.yaml, so that it compares equal
 * to normalised request paths: characters a request target cannot carry raw
 * (non-ASCII, space, controls) are UTF-8 percent-encoded first (RFC 3986
 * §2.5), then normalisePath applies. null when invalid.
 */
export function normalizeConfigPath(path: string): string | null {
  let encoded: string;
  try {
    encoded = path.replace(/[^\x21-\x7e]+/g, encodeURIComponent);
  } catch {
    return null; // lone surrogate
  }
  return normalizePath(encoded);
}

/**
 * Split a request target (origin-form, RFC 9112 §3.2.1) into its path and its
 * query (without "?", "" when absent). The path is returned raw: pass it to
 * normalizePath. No fragment handling: a request target never carries one.
 */
export function splitTarget(url: string): { path: string; query: string } {
  const q = url.indexOf("?");
  return q === -1 ? { path: url, query: "" } : { path: url.slice(0, q), query: url.slice(q + 1) };
}
