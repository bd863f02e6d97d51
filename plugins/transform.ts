/**
 * Request and response transforms (SPEC §2 `transform`) for one route, each
 * edit compiled at load into a flat list; the hooks only apply the lists.
 *
 * Three hooks, at three places on the request path (SPEC §3):
 * - `stripClaimHeaders` (onRequest, registered right after CORS, before rate
 *   limit, auth and cache): the headers a route sets from claims are removed
 *   from the client's request first, token or not (SPEC §6), so nothing on
 *   the path (a `header:` rate limit, the cache's vary, the upstream) ever
 *   sees a client's forged x-user-id;
 * - request edits (preHandler: after auth and the cache lookup, before the
 *   forwarder, which copies request.raw.headers and the state's query);
 * - response header edits (onSend: reply-from has copied the upstream's
 *   headers onto the reply by then; they apply to the gateway's own answers
 *   on this route too).
 */
import type { FastifyInstance, FastifyReply, FastifyRequest, HookHandlerDoneFunction } from "fastify";
import fp from "fastify-plugin";
import type { RouteConfig } from "../src/config/schema.js";
import { headEdit, policyHook } from "../src/lane-plan.js";
import type { PolicyOptions } from "../src/policies.js";
import { kState } from "../src/request-state.js";

/** RFC 9110 §5.1 field-name (token). */
const FIELD_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
/** RFC 9110 §5.5 field-value: visible characters, SP and HTAB, obs-text; no CR, LF or NUL. */
const FIELD_VALUE = /^[\t\x20-\x7e\x80-\xff]*$/;

type Transform = NonNullable<RouteConfig["transform"]>;

function headerName(where: string, name: string): string {
  if (!FIELD_NAME.test(name)) throw new Error(`${where}: '${name}' is not a valid header name`);
  return name.toLowerCase();
}

function headerSets(where: string, set: Record<string, string> | undefined): [string, string][] {
  return Object.entries(set ?? {}).map(([k, v]) => {
    if (!FIELD_VALUE.test(v))
      throw new Error(`${where}.${k}: the value has characters a header cannot carry`);
    return [headerName(where, k), v];
  });
}

/** Early removal of the client's copies of the headers a route sets from claims. */
export const stripClaimHeaders = fp(
  async function stripClaimHeaders(app: FastifyInstance, { route }: PolicyOptions) {
    const names = Object.keys(route.config.transform!.request!.fromClaims!).map((n) =>
      headerName(`routes.${route.name}.transform.request.fromClaims`, n),
    );
    policyHook(app, route, "onRequest", function stripForged(request, _reply, done) {
      const h = request.raw.headers;
      for (let i = 0; i < names.length; i++) if (h[names[i]] !== undefined) delete h[names[i]];
      done();
    });
  },
  { name: "switchyard-strip-claim-headers", fastify: "5.x" },
);

export const transform = fp(
  async function transform(app: FastifyInstance, { route }: PolicyOptions) {
    const t = route.config.transform!;
    const where = `routes.${route.name}.transform`;
    const req = compileRequest(where, t);
    if (req !== undefined) policyHook(app, route, "preHandler", req);
    const resHeaders = t.response?.headers;
    if (resHeaders !== undefined) {
      const remove = (resHeaders.remove ?? []).map((n) => headerName(`${where}.response.headers.remove`, n));
      const [setNames, setValues] = unzip(headerSets(`${where}.response.headers.set`, resHeaders.set));
      headEdit(
        app,
        route,
        function responseHeaders(_request, reply, payload, done) {
          for (let i = 0; i < remove.length; i++) reply.removeHeader(remove[i]);
          for (let i = 0; i < setNames.length; i++) reply.header(setNames[i], setValues[i]);
          done(null, payload);
        },
        remove,
      );
    }
  },
  { name: "switchyard-transform", fastify: "5.x" },
);

function compileRequest(where: string, t: Transform) {
  const r = t.request;
  if (r === undefined) return undefined;
  const remove = (r.headers?.remove ?? []).map((n) => headerName(`${where}.request.headers.remove`, n));
  const set = headerSets(`${where}.request.headers.set`, r.headers?.set);
  const fromClaims = Object.entries(r.fromClaims ?? {}).map(
    ([h, claim]) => [headerName(`${where}.request.fromClaims`, h), claim] as [string, string],
  );
  const [setNames, setValues] = unzip(set);
  const [claimHeaders, claimNames] = unzip(fromClaims);
  const query = r.query ? compileQuery(r.query) : undefined;
  if (remove.length + set.length + fromClaims.length === 0 && query === undefined) return undefined;

  return function requestTransform(
    request: FastifyRequest,
    _reply: FastifyReply,
    done: HookHandlerDoneFunction,
  ) {
    const h = request.raw.headers;
    const st = request.raw[kState]!;
    for (let i = 0; i < remove.length; i++) if (h[remove[i]] !== undefined) delete h[remove[i]];
    for (let i = 0; i < setNames.length; i++) h[setNames[i]] = setValues[i];
    // The client's copies went in onRequest (stripForged); a claim the token lacks, or no
    // token at all, leaves the header out even when a `set` above named it.
    const claims = st.claims;
    for (let i = 0; i < claimHeaders.length; i++) {
      const k = claimHeaders[i];
      const v = claims === undefined ? undefined : claimValue(claims[claimNames[i]]);
      if (v !== undefined) h[k] = v;
      else if (h[k] !== undefined) delete h[k];
    }
    if (query !== undefined) st.query = query(st.query);
    done();
  };
}

/**
 * Pairs as two parallel arrays: the hooks run on every request of the route and
 * walk them with an index (destructuring a pair in for-of allocates an iterator
 * per pair until V8 optimises the hook; the allocation profile showed them).
 */
function unzip<A, B>(pairs: readonly (readonly [A, B])[]): [A[], B[]] {
  return [pairs.map((p) => p[0]), pairs.map((p) => p[1])];
}

/** A claim as a header value: strings as they are, numbers and booleans printed, arrays comma-joined. */
export function claimValue(v: unknown): string | undefined {
  let s: string | undefined;
  if (typeof v === "string") s = v;
  else if (typeof v === "number" || typeof v === "boolean") s = String(v);
  else if (Array.isArray(v) && v.every((x) => typeof x === "string" || typeof x === "number"))
    s = v.join(",");
  // Anything that cannot be a header value (objects, CR/LF) is left out rather than sent mangled.
  return s !== undefined && FIELD_VALUE.test(s) ? s : undefined;
}

/**
 * Query edits on the raw query string: parameters named in `remove` or `set`
 * are dropped (compared decoded), the `set` ones appended encoded. Every other
 * parameter keeps its exact bytes and order (URLSearchParams would re-encode them).
 */
export function compileQuery(q: { set?: Record<string, string>; remove?: string[] }) {
  const set = Object.entries(q.set ?? {});
  const drop = new Set([...(q.remove ?? []), ...set.map(([k]) => k)]);
  const appended = set.map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(v)}`).join("&");
  return function editQuery(raw: string): string {
    // The common request carries no query: the appended parameters are one string made at load.
    if (raw === "") return appended;
    const kept = raw.split("&").filter((part) => part !== "" && !drop.has(paramName(part)));
    if (kept.length === 0) return appended;
    return appended === "" ? kept.join("&") : `${kept.join("&")}&${appended}`;
  };
}

function paramName(part: string): string {
  const eq = part.indexOf("=");
  const raw = (eq === -1 ? part : part.slice(0, eq)).replace(/\+/g, " ");
  try {
    return decodeURIComponent(raw);
  } catch {
    return raw;
  }
}
