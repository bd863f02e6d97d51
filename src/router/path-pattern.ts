/**
 * `routes[].match.path` compiled once per config load into one object shape
 * (monomorphic for V8) and tested per request without allocating unless it
 * matches. Paths are compared case-sensitively (RFC 3986 §6.2.2.1: only scheme
 * and host are case-insensitive) against the already normalised request path.
 */
import { normalizeConfigPath } from "./normalize.js";
import { compileRegex } from "./safe-regex.js";

export type PathType = "prefix" | "exact" | "regex" | "template";

const SLASH = 0x2f;
const PARAM_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

export interface PathPattern {
  readonly kind: PathType;
  /** As written in the config (for explain and error messages). */
  readonly source: string;
  /** prefix: canonical prefix without trailing "/" ("" for "/"); exact: the canonical path. */
  readonly path: string;
  readonly re: RegExp | undefined;
  /** Template literal segments; "" where names[i] is a parameter. */
  readonly literals: readonly string[];
  readonly names: readonly (string | undefined)[];
  /** Template ends in "/*": matches like a prefix, the remainder is `rest`. */
  readonly wildcard: boolean;
  /** Template parameters or regex named groups (for rewrite validation). */
  readonly paramNames: readonly string[];
}

/** Where a successful test leaves its by-products; reused across routes of one request. */
export interface PathCapture {
  params: Record<string, string> | undefined;
  /** Index in the path where `rest` starts (path.length for none). */
  restFrom: number;
}

function canonical(source: string, what: string): string {
  const p = normalizeConfigPath(source);
  if (p === null) throw new Error(`${what} path "${source}" is not a valid absolute path`);
  return p;
}

/** Named groups of a regex: matching "" against `re|` yields `groups` with every name. */
function groupNames(source: string): string[] {
  const groups = new RegExp(`${source}|`).exec("")?.groups;
  return groups === undefined ? [] : Object.keys(groups);
}

function compileTemplate(
  source: string,
): Pick<PathPattern, "literals" | "names" | "wildcard" | "paramNames"> {
  const segments = canonical(source, "template").slice(1).split("/");
  const wildcard = segments[segments.length - 1] === "*";
  if (wildcard) segments.pop();
  const literals: string[] = [];
  const names: (string | undefined)[] = [];
  for (const s of segments) {
    if (s.charCodeAt(0) === 0x3a /* ":" */) {
      const name = s.slice(1);
      if (!PARAM_NAME.test(name)) throw new Error(`template "${source}": bad parameter name "${s}"`);
      if (names.includes(name)) throw new Error(`template "${source}": duplicate parameter "${s}"`);
      literals.push("");
      names.push(name);
    } else {
      if (s.includes("*")) throw new Error(`template "${source}": "*" is only allowed as the last segment`);
      literals.push(s);
      names.push(undefined);
    }
  }
  const paramNames = names.filter((n): n is string => n !== undefined);
  return { literals, names, wildcard, paramNames };
}

/** Compile a `match.path`; throws an Error naming the problem when it is invalid. */
export function compilePath(source = "/", kind: PathType = "prefix"): PathPattern {
  const base = {
    kind,
    source,
    path: "",
    re: undefined,
    literals: [],
    names: [],
    wildcard: false,
    paramNames: [],
  };
  switch (kind) {
    case "prefix": {
      // "/api/" behaves like "/api": matching is by whole segments anyway.
      const p = canonical(source, "prefix");
      return { ...base, path: p.endsWith("/") ? p.slice(0, -1) : p };
    }
    case "exact":
      return { ...base, path: canonical(source, "exact") };
    case "regex": {
      let re: RegExp;
      try {
        // Not implicitly anchored (unlike Envoy's full-match safe_regex): write ^…$ to anchor.
        re = new RegExp(source);
      } catch (err) {
        throw new Error(`regex "${source}" does not compile: ${(err as Error).message}`);
      }
      // Catastrophic-backtracking patterns run on the linear-time engine, or are refused (issue 15).
      re = compileRegex(source).re;
      return { ...base, re, paramNames: groupNames(source) };
    }
    case "template":
      return { ...base, ...compileTemplate(source) };
    default:
      throw new Error(`unknown pathType "${String(kind)}"`);
  }
}

/**
 * Walk a template over the path. Returns the index after the last consumed
 * segment, or -1. Fills `params` when given (second pass, after a match, so a
 * failing route never allocates).
 */
function walkTemplate(p: PathPattern, path: string, params: Record<string, string> | undefined): number {
  let pos = 0; // always at a "/" or at the end
  for (let i = 0; i < p.literals.length; i++) {
    if (pos >= path.length) return -1;
    let end = path.indexOf("/", pos + 1);
    if (end === -1) end = path.length;
    const name = p.names[i];
    if (name === undefined) {
      const lit = p.literals[i];
      if (end - pos - 1 !== lit.length || !path.startsWith(lit, pos + 1)) return -1;
    } else if (end === pos + 1) {
      return -1; // a parameter matches one non-empty segment
    } else if (params !== undefined) {
      params[name] = path.slice(pos + 1, end);
    }
    pos = end;
  }
  return p.wildcard || pos === path.length ? pos : -1;
}

function regexParams(
  groups: Record<string, string | undefined> | undefined,
): Record<string, string> | undefined {
  if (groups === undefined) return undefined;
  const params: Record<string, string> = {};
  for (const k in groups) {
    const v = groups[k];
    if (v !== undefined && k !== "__proto__") params[k] = v;
  }
  return params;
}

/** Test a normalised path; on success fill `out` and return true. */
export function matchPath(p: PathPattern, path: string, out: PathCapture): boolean {
  switch (p.kind) {
    case "prefix": {
      // By whole segments: "/api" matches "/api", "/api/", "/api/x", never "/apix".
      const n = p.path.length;
      // Cheap reject on the prefix's last character before the full compare.
      if (n > 0 && (path.length < n || path.charCodeAt(n - 1) !== p.path.charCodeAt(n - 1))) return false;
      if (!path.startsWith(p.path) || (path.length !== n && path.charCodeAt(n) !== SLASH)) return false;
      out.params = undefined;
      out.restFrom = n;
      return true;
    }
    case "exact":
      if (path !== p.path) return false;
      out.params = undefined;
      out.restFrom = path.length;
      return true;
    case "regex": {
      const re = p.re!;
      if (p.paramNames.length === 0) {
        if (!re.test(path)) return false;
        out.params = undefined;
      } else {
        const m = re.exec(path);
        if (m === null) return false;
        out.params = regexParams(m.groups);
      }
      out.restFrom = path.length;
      return true;
    }
    default: {
      if (walkTemplate(p, path, undefined) === -1) return false;
      const params = p.paramNames.length === 0 ? undefined : {};
      out.restFrom = walkTemplate(p, path, params);
      out.params = params;
      return true;
    }
  }
}
