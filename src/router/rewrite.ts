/**
 * `routes[].rewrite` path part (SPEC §2): the upstream path computed from the
 * normalised request path and the match result. Compiled once per config
 * load into a function; per request it only slices or concatenates.
 * (`rewrite.host` is a header concern, not handled here.)
 */
import { normalizeConfigPath, normalizePath } from "./normalize.js";
import { compilePath, type PathType } from "./path-pattern.js";

export interface RewriteSpec {
  /** Remove this prefix, by whole segments. */
  stripPrefix?: string;
  /** Path template: `{rest}` and the route's template parameters / regex named groups. */
  path?: string;
}

/** Fields of a MatchResult (plus the normalised path) that a rewrite reads. */
export interface RewriteInput {
  path: string;
  rest: string;
  params?: Record<string, string>;
}

export type Rewrite = (m: RewriteInput) => string;

const SLASH = 0x2f;
const PLACEHOLDER = /\{([A-Za-z_][A-Za-z0-9_]*)\}/g;

const identity: Rewrite = (m) => m.path;

function canonical(path: string, key: string): string {
  const p = normalizeConfigPath(path);
  if (p === null) throw new Error(`rewrite.${key} "${path}" is not a valid absolute path`);
  return p;
}

/**
 * "/api/users" with stripPrefix "/api" → "/users"; "/api" → "/"; "/apix" and
 * any path not starting with the prefix at a segment boundary → unchanged
 * (possible on regex routes or prefixes shorter than stripPrefix).
 */
function compileStripPrefix(stripPrefix: string): Rewrite {
  const c = canonical(stripPrefix, "stripPrefix");
  const prefix = c.endsWith("/") ? c.slice(0, -1) : c;
  const n = prefix.length;
  if (n === 0) return identity;
  return (m) => {
    const path = m.path;
    if (!path.startsWith(prefix)) return path;
    if (path.length === n) return "/";
    return path.charCodeAt(n) === SLASH ? path.slice(n) : path;
  };
}

/** Can this route kind produce a non-empty `rest`? (prefix, or a template ending in "/*") */
function hasRest(matchPath: string | undefined, pathType: PathType): boolean {
  if (pathType === "prefix") return true;
  return pathType === "template" && compilePath(matchPath, pathType).wildcard;
}

/**
 * Split a path template into literals and variables once. `{name}` is the
 * route's parameter of that name; otherwise `{rest}` is MatchResult.rest.
 * `rest` is "" or starts with "/", so a "/" written right before `{rest}` is
 * absorbed by it: "/v2/users/{rest}" gives "/v2/users/7" for rest "/7",
 * "/v2/users/" for "/", and "/v2/users" for "" (the upstream sees the same
 * trailing-slash shape the client sent).
 */
function compilePathTemplate(template: string, matchPath: string | undefined, pathType: PathType): Rewrite {
  const source = canonical(template, "path");
  const params = new Set(compilePath(matchPath, pathType).paramNames);
  const literals: string[] = [];
  const vars: (string | null)[] = []; // null = rest
  let from = 0;
  for (const m of source.matchAll(PLACEHOLDER)) {
    const name = m[1];
    let literal = source.slice(from, m.index);
    if (params.has(name)) {
      vars.push(name);
    } else if (name === "rest") {
      if (!hasRest(matchPath, pathType)) {
        throw new Error(`rewrite.path uses {rest} but a ${pathType} route has no rest`);
      }
      if (literal.endsWith("/")) literal = literal.slice(0, -1);
      vars.push(null);
    } else {
      throw new Error(`rewrite.path uses {${name}}, which the route's path does not define`);
    }
    literals.push(literal);
    from = m.index + m[0].length;
  }
  literals.push(source.slice(from));
  if (vars.length === 0) return () => source;
  return (m) => {
    let out = literals[0];
    for (let i = 0; i < vars.length; i++) {
      const v = vars[i];
      out += (v === null ? m.rest : (m.params?.[v] ?? "")) + literals[i + 1];
    }
    // Regex groups are arbitrary substrings and may join into "//" or a dot
    // segment: normalise again so the upstream gets a normal path. null only
    // for "" ("/{rest}" with an empty rest), which is the root.
    return normalizePath(out) ?? "/";
  };
}

/**
 * Compile a route's rewrite. No spec (or neither key) → the normalised path
 * unchanged. `matchPath` and `pathType` are the route's match.path and
 * match.pathType (defaults "/" and "prefix"), used to check at load time that
 * every `{name}` exists. `pathType` is typed string because the config schema
 * yields one; an unknown value throws like every other invalid spec.
 */
export function compileRewrite(
  spec: RewriteSpec | undefined,
  matchPath?: string,
  pathType?: string,
): Rewrite {
  if (spec === undefined || (spec.stripPrefix === undefined && spec.path === undefined)) return identity;
  if (spec.stripPrefix !== undefined && spec.path !== undefined) {
    throw new Error("rewrite.stripPrefix and rewrite.path are mutually exclusive");
  }
  if (spec.stripPrefix !== undefined) return compileStripPrefix(spec.stripPrefix);
  return compilePathTemplate(spec.path!, matchPath, (pathType ?? "prefix") as PathType);
}
