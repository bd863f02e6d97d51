/**
 * The gateway's own route table: `routes[].match` compiled once per config
 * generation, walked in file order per request, first match wins (SPEC §2).
 * find-my-way orders static > parametric > wildcard, which is not file order,
 * so this decides and Fastify only acts on the decision (ARCHITECTURE notes).
 *
 * Per request, conditions are tested cheapest and most selective first:
 * method (a bitmask AND), path, host, headers, query, cookies. Host, query and
 * cookies are derived lazily, once, by RequestView.
 */
import {
  compileHeaders,
  compileHosts,
  compilePairs,
  type HeaderCondition,
  type HeaderTest,
  type HostSet,
  type Pairs,
  testCookies,
  testHeaders,
  testHost,
  testQuery,
  whyCookies,
  whyHeaders,
  whyHost,
  whyQuery,
} from "./conditions.js";
import { ANY_METHOD, MethodBits, methodAllowed } from "./methods.js";
import { compilePath, matchPath, type PathPattern, type PathType } from "./path-pattern.js";
import { type MatchRequest, RequestView } from "./request-view.js";

export type { PathType } from "./path-pattern.js";
export type { MatchRequest } from "./request-view.js";

export interface RouteMatchSpec {
  /** Default "/". */
  path?: string;
  /** Default "prefix". */
  pathType?: PathType;
  /** Upper-case; absent or empty = any. Compared exactly (RFC 9110 §9.1: methods are case-sensitive; GET does not imply HEAD). */
  methods?: string[];
  /** Exact or "*.example.com"; case-insensitive; port ignored; absent or empty = any. */
  hosts?: string[];
  /** Header names case-insensitive. */
  headers?: Record<string, HeaderCondition>;
  /** Exact value of the first occurrence, after percent-decoding. */
  query?: Record<string, string>;
  /** Exact value. */
  cookies?: Record<string, string>;
}

export interface MatchResult<R> {
  value: R;
  /** Position of the route in the list given to compileMatcher. */
  index: number;
  /** Template parameters or regex named groups (raw, still percent-encoded where the path is). */
  params: Record<string, string> | undefined;
  /**
   * What followed the matched prefix: "" or starting with "/". prefix: the
   * remainder after the prefix ("/" for prefix "/": the whole path); template
   * ending in "/*": the remainder after the last fixed segment; exact, regex
   * and other templates: "".
   */
  rest: string;
}

export type RouteExplanation =
  | { index: number; matched: true }
  | { index: number; matched: false; reason: string };

export interface Matcher<R> {
  readonly size: number;
  match(req: MatchRequest): MatchResult<R> | undefined;
  /** Every route in order: matched, or the first reason it did not. Not for the hot path. */
  explain(req: MatchRequest): RouteExplanation[];
}

interface CompiledRoute<R> {
  readonly value: R;
  readonly index: number;
  readonly methodMask: number;
  /** The route's methods, for explain and for methods sharing the OTHER bit. */
  readonly methods: ReadonlySet<string> | undefined;
  readonly path: PathPattern;
  readonly hosts: HostSet | undefined;
  readonly headers: readonly HeaderTest[] | undefined;
  readonly query: Pairs | undefined;
  readonly cookies: Pairs | undefined;
}

function nonEmpty<T extends object>(v: T | undefined, size: (v: T) => number): v is T {
  return v !== undefined && size(v) > 0;
}

function compileRoute<R>(spec: RouteMatchSpec, value: R, index: number, bits: MethodBits): CompiledRoute<R> {
  try {
    const { hosts, headers, query, cookies } = spec;
    const methods = nonEmpty(spec.methods, (m) => m.length)
      ? new Set(spec.methods.map((m) => m.toUpperCase()))
      : undefined;
    return {
      value,
      index,
      methodMask: methods === undefined ? ANY_METHOD : bits.maskOf(methods),
      methods,
      path: compilePath(spec.path, spec.pathType),
      hosts: nonEmpty(hosts, (h) => h.length) ? compileHosts(hosts) : undefined,
      headers: nonEmpty(headers, (h) => Object.keys(h).length) ? compileHeaders(headers) : undefined,
      query: nonEmpty(query, (q) => Object.keys(q).length) ? compilePairs(query) : undefined,
      cookies: nonEmpty(cookies, (c) => Object.keys(c).length) ? compilePairs(cookies) : undefined,
    };
  } catch (err) {
    throw new Error(`routes[${index}].match: ${(err as Error).message}`, { cause: err });
  }
}

function matches<R>(r: CompiledRoute<R>, view: RequestView, req: MatchRequest, bit: number): boolean {
  return (
    methodAllowed(r.methodMask, r.methods, bit, req.method) &&
    matchPath(r.path, req.path, view) &&
    (r.hosts === undefined || testHost(r.hosts, view.host())) &&
    (r.headers === undefined || testHeaders(r.headers, req.headers)) &&
    (r.query === undefined || testQuery(r.query, view)) &&
    (r.cookies === undefined || testCookies(r.cookies, view))
  );
}

/** The first failing condition of a route, in the order `matches` tests them. */
function whyNot<R>(
  r: CompiledRoute<R>,
  view: RequestView,
  req: MatchRequest,
  bit: number,
): string | undefined {
  if (!methodAllowed(r.methodMask, r.methods, bit, req.method)) {
    return `method ${req.method} not in [${[...(r.methods ?? [])].join(", ")}]`;
  }
  if (!matchPath(r.path, req.path, view)) {
    return `path ${req.path} does not match ${r.path.kind} ${r.path.source}`;
  }
  return (
    (r.hosts && whyHost(r.hosts, view)) ||
    (r.headers && whyHeaders(r.headers, req.headers)) ||
    (r.query && whyQuery(r.query, view)) ||
    (r.cookies && whyCookies(r.cookies, view)) ||
    undefined
  );
}

class RouteMatcher<R> implements Matcher<R> {
  constructor(
    private readonly routes: readonly CompiledRoute<R>[],
    private readonly bits: MethodBits,
  ) {}

  get size(): number {
    return this.routes.length;
  }

  match(req: MatchRequest): MatchResult<R> | undefined {
    const view = new RequestView(req);
    const bit = this.bits.bitOf(req.method);
    const routes = this.routes;
    for (let i = 0; i < routes.length; i++) {
      const r = routes[i];
      if (!matches(r, view, req, bit)) continue;
      const path = req.path;
      const rest = view.restFrom >= path.length ? "" : path.slice(view.restFrom);
      return { value: r.value, index: r.index, params: view.params, rest };
    }
    return undefined;
  }

  explain(req: MatchRequest): RouteExplanation[] {
    const view = new RequestView(req);
    const bit = this.bits.bitOf(req.method);
    return this.routes.map((r): RouteExplanation => {
      const reason = whyNot(r, view, req, bit);
      return reason === undefined
        ? { index: r.index, matched: true }
        : { index: r.index, matched: false, reason };
    });
  }
}

/**
 * Compile routes once per config load. Throws an Error whose message starts
 * with `routes[i].match:` for the first invalid spec (bad regex, bad template,
 * host with a port …); use validateMatchSpec to report every problem at once.
 */
export function compileMatcher<R>(routes: readonly { spec: RouteMatchSpec; value: R }[]): Matcher<R> {
  const bits = new MethodBits();
  return new RouteMatcher(
    routes.map((r, i) => compileRoute(r.spec, r.value, i, bits)),
    bits,
  );
}

/** The reason a spec would not compile, or undefined when it is valid (for config load). */
export function validateMatchSpec(spec: RouteMatchSpec): string | undefined {
  try {
    compileRoute(spec, undefined, 0, new MethodBits());
    return undefined;
  } catch (err) {
    return ((err as Error).cause as Error).message;
  }
}
