/**
 * A route's client-facing Cache-Control (routes.*.cacheControl, issue 12),
 * done by @fastify/caching registered in the route's own scope, so a route
 * without the option has none of its hooks (and keeps its fast lane: the
 * policy is not one a lane runs, src/policies.ts).
 *
 * - Every answer of the route that comes without a Cache-Control gets one:
 *   `privacy[, max-age=expiresIn][, s-maxage=serverExpiresIn]` on 2xx,
 *   `no-store` on anything else (the library's rule: a browser must not keep
 *   an error for max-age). An upstream's own Cache-Control is left alone.
 * - It runs after the response cache's onSend (policy order), so the
 *   gateway's cache stores what the upstream said, and its hits get the same
 *   Cache-Control as misses.
 * - A `respond:` route answering 200 (the gateway's own answer) also gets a
 *   strong ETag made from its status, headers and body, Expires when
 *   expiresIn is set, and 304 on an If-None-Match with that ETag (the
 *   library's onRequest check, after the route's auth and rate limit hooks).
 *
 * The library gives a 304 `no-store` (not 2xx); a 304 stands for the 200, so
 * it gets the 200's Cache-Control first (RFC 9110 §15.4.5), and the request id
 * every gateway answer carries.
 */
import { createHash } from "node:crypto";
import fastifyCaching from "@fastify/caching";
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import fp from "fastify-plugin";
import type { PolicyOptions } from "../src/policies.js";

type Options = NonNullable<PolicyOptions["route"]["config"]["cacheControl"]>;

/** What @fastify/caching writes on a 2xx (its own rule, repeated only for 304s). */
export function cacheControlValue(o: Options): string {
  let v: string = o.privacy;
  if (o.privacy !== "no-cache" && o.expiresIn) v += `, max-age=${o.expiresIn}`;
  if (o.privacy === "public" && o.serverExpiresIn) v += `, s-maxage=${o.serverExpiresIn}`;
  return v;
}

/** A strong ETag for a fixed answer: the same on every worker and after a reload of the same config. */
export function fixedEtag(parts: unknown): string {
  return `"${createHash("sha256").update(JSON.stringify(parts)).digest("base64url").slice(0, 27)}"`;
}

/**
 * @fastify/caching on `scope` with the given options, a 304 given the 200's Cache-Control, and
 * `etag` (with `expiresIn` seconds of Expires when set) on every answer of the scope.
 */
export async function useCaching(
  scope: FastifyInstance,
  opts: Options,
  etag?: { tag: string; expiresIn?: number },
): Promise<void> {
  const value = cacheControlValue(opts);
  scope.addHook("onSend", function notModifiedCacheControl(request, reply, payload, done) {
    if (reply.statusCode === 304 && !reply.hasHeader("cache-control")) {
      reply.header("cache-control", value);
      if (!reply.hasHeader("x-request-id")) reply.header("x-request-id", request.id);
    }
    done(null, payload);
  });
  await scope.register(fastifyCaching, {
    privacy: opts.privacy,
    expiresIn: opts.expiresIn,
    serverExpiresIn: opts.serverExpiresIn,
  });
  if (etag === undefined) return;
  // Kept by the library for as long as the answer may be reused (at least a day: it never changes).
  const life = Math.max(etag.expiresIn ?? 0, 86_400) * 1000;
  scope.addHook("preHandler", function fixedAnswerEtag(_request: FastifyRequest, reply: FastifyReply, done) {
    reply.etag(etag.tag, life);
    if (etag.expiresIn) reply.expires(new Date(Date.now() + etag.expiresIn * 1000));
    done();
  });
}

export const cacheControlPolicy = fp(
  async function cacheControl(scope: FastifyInstance, { route }: PolicyOptions) {
    const opts = route.config.cacheControl!;
    const respond = route.config.respond;
    const etag =
      respond !== undefined && respond.status === 200
        ? {
            tag: fixedEtag([respond.status, respond.headers ?? {}, respond.body ?? ""]),
            expiresIn: opts.expiresIn,
          }
        : undefined;
    await useCaching(scope, opts, etag);
  },
  { name: "switchyard-cache-control", fastify: "5.x" },
);
