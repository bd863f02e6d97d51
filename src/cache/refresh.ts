/**
 * The background refresh of staleWhileRevalidate re-enters the route with
 * Fastify's inject (so auth, request transforms and the forwarder apply exactly
 * as for a client). It is marked with a header whose value is a secret made at
 * start-up and never sent anywhere: the cache removes it before the request is
 * forwarded, and the rate limit lets a refresh through uncounted. A client
 * sending the header without the secret gets nothing special.
 */
import { randomBytes } from "node:crypto";
import type { FastifyRequest } from "fastify";

export const REFRESH_HEADER = "x-switchyard-cache-refresh";
export const REFRESH_TOKEN = randomBytes(18).toString("base64url");

export function isRefresh(request: FastifyRequest): boolean {
  return request.raw.headers[REFRESH_HEADER] === REFRESH_TOKEN;
}
