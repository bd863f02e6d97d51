/**
 * CORS for one route (SPEC §2 `cors`; Fetch standard §3.2 "CORS protocol").
 * Preflights are answered here, at the edge, with 204 and never forwarded;
 * actual responses get Access-Control-Allow-Origin only for a listed origin.
 *
 * Hand-written rather than @fastify/cors because that plugin is built for one
 * app, not for one gateway route among many: it registers a global
 * `OPTIONS *` route and a request decorator (a second route with cors would
 * fail to register, and the wildcard would answer OPTIONS for every route,
 * bypassing the gateway's first-match routing); it treats every OPTIONS as a
 * preflight (an API's own OPTIONS could no longer reach it); and it sets its
 * headers in onRequest, where the upstream's copies would overwrite them.
 *
 * The gateway owns CORS on a route that declares it: the upstream's
 * Access-Control-Allow-Origin/-Credentials are dropped and replaced by the
 * route's decision, so a disallowed origin never gets CORS headers.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest, HookHandlerDoneFunction } from "fastify";
import fp from "fastify-plugin";
import { ms } from "../src/config/duration.js";
import { headEdit, policyHook } from "../src/lane-plan.js";
import type { PolicyOptions } from "../src/policies.js";

/** The upstream's CORS answer, replaced on every forwarded answer by the route's own. */
const OWN_HEADERS = ["access-control-allow-origin", "access-control-allow-credentials"];

/** @fastify/cors's default, for routes that list neither cors.methods nor match.methods. */
const DEFAULT_METHODS = "GET,HEAD,PUT,PATCH,POST,DELETE";

export function isPreflight(request: FastifyRequest): boolean {
  const h = request.headers;
  return (
    request.raw.method === "OPTIONS" &&
    h.origin !== undefined &&
    h["access-control-request-method"] !== undefined
  );
}

/** "https://App.Example.com:443" → "https://app.example.com": the form browsers send (RFC 6454 §6.1). */
function canonicalOrigin(o: string): string {
  try {
    const origin = new URL(o).origin;
    return origin === "null" ? o : origin;
  } catch {
    return o;
  }
}

export const cors = fp(
  async function cors(app: FastifyInstance, { route }: PolicyOptions) {
    const cfg = route.config.cors!;
    const any = cfg.origins.includes("*");
    const listed = new Set(cfg.origins.filter((o) => o !== "*").map((o) => canonicalOrigin(o).toLowerCase()));
    // Fetch §3.3.5: a credentialed request never accepts "*"; reflecting every origin with
    // credentials would let any site act as the user, so '*' keeps meaning "no credentials".
    const credentials = cfg.credentials === true && !any;
    if (cfg.credentials && any) {
      app.log.warn({ route: route.name }, "cors: credentials is ignored with origins '*'; list the origins");
    }
    const methods = (cfg.methods ?? route.config.match?.methods)?.join(",") ?? DEFAULT_METHODS;
    const allowHeaders = cfg.headers?.join(",");
    const maxAge = cfg.maxAge !== undefined ? String(Math.floor(ms(cfg.maxAge) / 1000)) : undefined;
    const preflightVary = allowHeaders === undefined ? "Origin, Access-Control-Request-Headers" : "Origin";

    /** The Access-Control-Allow-Origin value for this request's origin, or undefined when not allowed. */
    function allowOrigin(origin: string | undefined): string | undefined {
      if (origin === undefined) return undefined;
      if (any) return "*";
      return listed.has(origin.toLowerCase()) ? origin : undefined;
    }

    policyHook(app, route, "onRequest", function preflight(request, reply, done: HookHandlerDoneFunction) {
      if (!isPreflight(request)) {
        done();
        return;
      }
      const allowed = allowOrigin(request.headers.origin);
      if (!any) reply.header("vary", preflightVary);
      if (allowed !== undefined) {
        reply.header("access-control-allow-origin", allowed);
        if (credentials) reply.header("access-control-allow-credentials", "true");
        reply.header("access-control-allow-methods", methods);
        const requested = request.headers["access-control-request-headers"];
        const headers = allowHeaders ?? requested;
        if (headers) reply.header("access-control-allow-headers", headers);
        if (maxAge !== undefined) reply.header("access-control-max-age", maxAge);
      }
      // Answered here: done() is not called, so no later hook runs and nothing is forwarded.
      reply.code(204).header("x-request-id", request.id).send();
    });

    headEdit(
      app,
      route,
      function corsHeaders(request, reply: FastifyReply, payload, done) {
        if (isPreflight(request)) {
          done(null, payload);
          return;
        }
        // Two fixed names, no loop: this runs on every answer of the route.
        reply.removeHeader("access-control-allow-origin");
        reply.removeHeader("access-control-allow-credentials");
        const allowed = allowOrigin(request.headers.origin);
        if (!any) addVary(reply, "Origin");
        if (allowed !== undefined) {
          reply.header("access-control-allow-origin", allowed);
          if (credentials) reply.header("access-control-allow-credentials", "true");
        }
        done(null, payload);
      },
      OWN_HEADERS,
    );
  },
  { name: "switchyard-cors", fastify: "5.x" },
);

/** Append to Vary unless already there (the upstream's own Vary is kept). */
function addVary(reply: FastifyReply, field: string): void {
  const cur = reply.getHeader("vary");
  if (cur === undefined) {
    reply.header("vary", field);
    return;
  }
  const list = Array.isArray(cur) ? cur.join(",") : cur === undefined ? "" : String(cur);
  if (list.trim() === "*") return;
  const has = list.split(",").some((v) => v.trim().toLowerCase() === field.toLowerCase());
  if (!has) reply.header("vary", list.trim() === "" ? field : `${list}, ${field}`);
}
