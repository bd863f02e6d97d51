/**
 * The upstream's freshness fields read by the letter, before http-cache-semantics
 * sees them (issue 12). The library is lenient where RFC 9111 asks for caution:
 * it takes `max-age = 60` and `max-age=1.5` as lifetimes, the last of two
 * different max-age values, and Expires through Date.parse (which reads an
 * asctime date as local time). Here:
 *
 * - Directive names are case-insensitive (§5.2); values may be quoted (§5.2:
 *   recipients accept both forms).
 * - A delta-seconds directive (max-age, s-maxage, stale-while-revalidate,
 *   stale-if-error) with an invalid value (not 1*DIGIT, spaces around "=", no
 *   value) or repeated with different values makes the response stale
 *   (§4.2.1, §1.2.2): it becomes `=0`. Values past 2^31 are 2^31 (§1.2.2).
 * - Expires and Date are HTTP-dates in any of the three formats of RFC 9110
 *   §5.6.7 (IMF-fixdate, RFC 850 with a two-digit year, asctime), all UTC. An
 *   invalid Expires means already expired (§5.3); so does an invalid Date when
 *   Expires is what gives the lifetime (the lifetime is Expires minus Date).
 *   Valid ones are rewritten as IMF-fixdate, the one form the library parses right.
 *
 * No maintained npm package parses the three HTTP-date forms with RFC 9110's
 * two-digit-year rule, so this is written by hand.
 */
import type { Headers } from "./entry.js";

const DELTA = new Set(["max-age", "s-maxage", "stale-while-revalidate", "stale-if-error"]);
const MAX_DELTA = 2 ** 31;
const EPOCH = new Date(0).toUTCString();

export interface CacheControl {
  /** The field with names in lower case and delta-seconds values settled (invalid → 0). */
  text: string;
  /** Directive names present. */
  names: Set<string>;
  /** Settled delta-seconds values (seconds). */
  delta: Map<string, number>;
}

/** Read one Cache-Control field (undefined when absent). */
export function parseCacheControl(field: string | undefined): CacheControl {
  const names = new Set<string>();
  const delta = new Map<string, number>();
  const parts: string[] = [];
  if (field === undefined) return { text: "", names, delta };
  const seen = new Map<string, number | null>();
  for (const raw of field.split(",")) {
    const part = raw.trim();
    if (part === "") continue;
    const eq = part.indexOf("=");
    const name = (eq < 0 ? part : part.slice(0, eq)).trimEnd().toLowerCase();
    names.add(name);
    if (!DELTA.has(name)) {
      parts.push(eq < 0 ? name : `${name}${part.slice(eq)}`);
      continue;
    }
    const value = eq < 0 ? null : deltaSeconds(part, eq);
    const before = seen.get(name);
    // A second, different value is as invalid as a bad one (§4.2.1: "consider ... stale").
    seen.set(name, before === undefined || before === value ? value : null);
  }
  for (const [name, value] of seen) {
    const v = value ?? 0;
    delta.set(name, v);
    parts.push(`${name}=${v}`);
  }
  return { text: parts.join(", "), names, delta };
}

/** delta-seconds after "=" at `eq`, or null when invalid (spaces around "=", not 1*DIGIT). */
function deltaSeconds(part: string, eq: number): number | null {
  if (part[eq - 1] === " " || part[eq - 1] === "\t") return null;
  let v = part.slice(eq + 1);
  if (v.length >= 2 && v.startsWith('"') && v.endsWith('"')) v = v.slice(1, -1);
  if (!/^[0-9]+$/.test(v)) return null;
  return Math.min(Number(v), MAX_DELTA);
}

const MONTHS = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"];
const IMF = /^[A-Za-z]{3}, (\d{2}) ([A-Za-z]{3}) (\d{4}) (\d{2}):(\d{2}):(\d{2}) GMT$/;
const RFC850 = /^[A-Za-z]{6,9}, (\d{2})-([A-Za-z]{3})-(\d{2}) (\d{2}):(\d{2}):(\d{2}) GMT$/;
const ASCTIME = /^[A-Za-z]{3} ([A-Za-z]{3}) ([ \d]\d) (\d{2}):(\d{2}):(\d{2}) (\d{4})$/;

/** An HTTP-date (RFC 9110 §5.6.7) in ms since the epoch, or NaN. */
export function parseHttpDate(s: string, now = Date.now()): number {
  const t = s.trim();
  let m = IMF.exec(t);
  if (m) return utc(Number(m[3]), m[2], m[1], m[4], m[5], m[6]);
  m = RFC850.exec(t);
  if (m) {
    // Two-digit years: the most recent past year with those digits, unless more than 50 years ahead.
    const year = new Date(now).getUTCFullYear();
    let y = Math.floor(year / 100) * 100 + Number(m[3]);
    if (y > year + 50) y -= 100;
    return utc(y, m[2], m[1], m[4], m[5], m[6]);
  }
  m = ASCTIME.exec(t);
  if (m) return utc(Number(m[6]), m[1], m[2].trim(), m[3], m[4], m[5]);
  return Number.NaN;
}

function utc(year: number, mon: string, day: string, h: string, mi: string, s: string): number {
  const month = MONTHS.indexOf(mon.toLowerCase());
  const d = Number(day);
  if (month < 0 || d < 1 || d > 31 || Number(h) > 23 || Number(mi) > 59 || Number(s) > 60) return Number.NaN;
  const ms = Date.UTC(year, month, d, Number(h), Number(mi), Number(s));
  // 31 Feb and the like roll over into the next month: not a date.
  return new Date(ms).getUTCDate() === d ? ms : Number.NaN;
}

function one(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v.join(", ") : v;
}

/**
 * The response's headers as the policy should read them: Cache-Control settled, Expires and
 * Date as IMF-fixdate (an invalid Expires, or an invalid Date under Expires, as the epoch).
 */
export function settleFreshness(headers: Record<string, string>, cc: CacheControl): void {
  if (headers["cache-control"] !== undefined) headers["cache-control"] = cc.text;
  const expires = one(headers.expires);
  if (expires === undefined) return;
  const e = parseHttpDate(expires);
  const dateField = one(headers.date);
  const d = dateField === undefined ? Date.now() : parseHttpDate(dateField);
  if (dateField !== undefined && Number.isFinite(d)) headers.date = new Date(d).toUTCString();
  headers.expires = Number.isFinite(e) && Number.isFinite(d) ? new Date(e).toUTCString() : EPOCH;
}

export type { Headers };
