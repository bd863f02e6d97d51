/**
 * The non-path conditions of `routes[].match` (hosts, headers, query,
 * cookies): compiled once, each with a hot-path test returning a boolean and a
 * cold-path `why…` returning the first reason it fails (for `switchyard
 * explain`), so both read the same compiled data.
 */
import type { RequestView } from "./request-view.js";
import { compileRegex } from "./safe-regex.js";

export type HeaderCondition = string | { regex: string } | { present: boolean };

export interface HostSet {
  readonly exact: ReadonlySet<string>;
  /** "*.example.com" stored as ".example.com". */
  readonly suffixes: readonly string[];
  readonly source: readonly string[];
}

/** One shape for every header test (monomorphic); `kind` says which fields count. */
export interface HeaderTest {
  readonly name: string;
  readonly kind: "exact" | "regex" | "present" | "absent";
  readonly value: string;
  readonly re: RegExp | undefined;
}

export type Pairs = readonly (readonly [name: string, value: string])[];

function quote(v: string | string[] | null | undefined): string {
  return v === undefined || v === null ? "none" : JSON.stringify(Array.isArray(v) ? v.join(", ") : v);
}

export function compileHosts(hosts: readonly string[]): HostSet {
  const exact = new Set<string>();
  const suffixes: string[] = [];
  for (const raw of hosts) {
    let h = raw.toLowerCase();
    if (h.endsWith(".")) h = h.slice(0, -1);
    const wild = h.startsWith("*.");
    const name = wild ? h.slice(1) : h;
    const bracketed = name.startsWith("[") && name.endsWith("]");
    if (name === "" || name === "." || name.includes("*") || (!bracketed && name.includes(":"))) {
      throw new Error(`host "${raw}": expected a name, "[IPv6]" or "*.domain", without port`);
    }
    if (wild) suffixes.push(name);
    else exact.add(name);
  }
  return { exact, suffixes, source: hosts };
}

/** "*.example.com" matches one or more labels in front of example.com, never example.com itself. */
export function testHost(set: HostSet, host: string | undefined): boolean {
  if (host === undefined) return false;
  if (set.exact.has(host)) return true;
  for (const s of set.suffixes) {
    if (host.length > s.length && host.endsWith(s)) return true;
  }
  return false;
}

export function whyHost(set: HostSet, view: RequestView): string | undefined {
  const host = view.host();
  return testHost(set, host) ? undefined : `host ${host ?? "(none)"} not in [${set.source.join(", ")}]`;
}

export function compileHeaders(spec: Record<string, HeaderCondition>): HeaderTest[] {
  return Object.entries(spec).map(([rawName, cond]): HeaderTest => {
    const name = rawName.toLowerCase(); // RFC 9110 §5.1: field names are case-insensitive
    if (typeof cond === "string") return { name, kind: "exact", value: cond, re: undefined };
    if (cond !== null && typeof cond === "object" && "regex" in cond && typeof cond.regex === "string") {
      let re: RegExp;
      try {
        re = new RegExp(cond.regex);
      } catch (err) {
        throw new Error(`header ${rawName}: regex does not compile: ${(err as Error).message}`);
      }
      // Catastrophic-backtracking patterns run on the linear-time engine, or are refused (issue 15).
      try {
        re = compileRegex(cond.regex).re;
      } catch (err) {
        throw new Error(`header ${rawName}: regex ${(err as Error).message}`);
      }
      return { name, kind: "regex", value: cond.regex, re };
    }
    if (cond !== null && typeof cond === "object" && "present" in cond && typeof cond.present === "boolean") {
      return { name, kind: cond.present ? "present" : "absent", value: "", re: undefined };
    }
    throw new Error(`header ${rawName}: expected a string, { regex } or { present }`);
  });
}

/**
 * Node joins most repeated headers with ", "; the few it keeps as arrays match
 * when any element does.
 */
function testHeader(t: HeaderTest, v: string | string[] | undefined): boolean {
  switch (t.kind) {
    case "present":
      return v !== undefined;
    case "absent":
      return v === undefined;
    case "exact":
      return typeof v === "string" ? v === t.value : v?.includes(t.value) === true;
    default:
      if (v === undefined) return false;
      return typeof v === "string" ? t.re!.test(v) : v.some((x) => t.re!.test(x));
  }
}

export function testHeaders(tests: readonly HeaderTest[], headers: MatchHeaders): boolean {
  for (const t of tests) if (!testHeader(t, headers[t.name])) return false;
  return true;
}

type MatchHeaders = Record<string, string | string[] | undefined>;

export function whyHeaders(tests: readonly HeaderTest[], headers: MatchHeaders): string | undefined {
  for (const t of tests) {
    const v = headers[t.name];
    if (testHeader(t, v)) continue;
    const expected =
      t.kind === "exact"
        ? JSON.stringify(t.value)
        : t.kind === "regex"
          ? `/${t.value}/`
          : t.kind === "present"
            ? "present"
            : "absent";
    return `header ${t.name}: expected ${expected}, got ${quote(v)}`;
  }
  return undefined;
}

export function compilePairs(spec: Record<string, string>): Pairs {
  return Object.entries(spec).map(([k, v]) => [k, String(v)] as const);
}

export function testQuery(pairs: Pairs, view: RequestView): boolean {
  for (const [name, value] of pairs) if (view.queryParam(name) !== value) return false;
  return true;
}

export function whyQuery(pairs: Pairs, view: RequestView): string | undefined {
  for (const [name, value] of pairs) {
    const got = view.queryParam(name);
    if (got !== value) return `query ${name}: expected ${JSON.stringify(value)}, got ${quote(got)}`;
  }
  return undefined;
}

export function testCookies(pairs: Pairs, view: RequestView): boolean {
  for (const [name, value] of pairs) if (view.cookie(name) !== value) return false;
  return true;
}

export function whyCookies(pairs: Pairs, view: RequestView): string | undefined {
  for (const [name, value] of pairs) {
    const got = view.cookie(name);
    if (got !== value) return `cookie ${name}: expected ${JSON.stringify(value)}, got ${quote(got)}`;
  }
  return undefined;
}
