/**
 * The edge policies a route may declare, in the order SPEC §3 runs them.
 * Each entry says from the route's config whether it applies (decided once, at
 * load) and is a fastify-plugin-wrapped plugin registered into that route's
 * own scope, so its hooks run for that route only and nothing is checked per
 * request. Registration order is hook order within a phase.
 */
import type { FastifyPluginAsync } from "fastify";
import { auth } from "../plugins/auth.js";
import { cachePolicy } from "../plugins/cache.js";
import { cacheControlPolicy } from "../plugins/cache-control.js";
import { cors } from "../plugins/cors.js";
import { limitsAfterAuth, rateLimitPolicy } from "../plugins/rate-limit.js";
import { stripClaimHeaders, transform } from "../plugins/transform.js";
import { userPlugins } from "../plugins/user-plugins.js";
import type { Config, RouteConfig } from "./config/schema.js";
import type { CompiledRoute, Generation } from "./generation.js";

export interface PolicyOptions {
  route: CompiledRoute;
  generation: Generation;
}

export interface Policy {
  name: string;
  applies(route: RouteConfig): boolean;
  plugin: FastifyPluginAsync<PolicyOptions>;
  /** Its Server-Timing metric, and the hook phase its own hooks run in (where the span markers go). */
  timing?: { metric: string; hook: "onRequest" | "preHandler" };
}

/**
 * Whether `route` may answer on a fast lane (server.ts): no policy but
 * `allowed` applies, no fixed answer, no upgrades, and no trusted proxies
 * (Fastify resolves the client address chain and scheme).
 */
export function laneable(route: CompiledRoute, config: Config, allowed: readonly string[] = []): boolean {
  return offLane(route, config, allowed) === undefined;
}

/** Why `route` takes Fastify's path rather than a lane (`switchyard explain` says it), or undefined. */
export function offLane(
  route: CompiledRoute,
  config: Config,
  allowed: readonly string[] = [],
): string | undefined {
  const r = route.config;
  if (config.trustProxy) return "trustProxy is set (Fastify resolves the client address chain)";
  if (r.respond !== undefined) return "a direct response";
  if (r.websocket) return "websocket upgrades";
  // A route's own plugins are Fastify plugins: their hooks need a real Request and Reply,
  // which a lane never builds, and no cache hit may skip them (issue 13). Never a lane.
  if (r.plugins !== undefined && r.plugins.length > 0) return "its own plugins run as Fastify hooks";
  const held = policies.find((p) => !allowed.includes(p.name) && p.applies(r));
  return held && `the ${held.name} policy does not run on this lane`;
}

/**
 * Policies whose hooks the forwarding lane runs itself (src/lane-plan.ts,
 * plugins/proxy-lane.ts). The cache is not among them: it needs the body
 * as a payload to store it, and answers its hits on a lane of its own.
 */
export const FORWARD_LANE: readonly string[] = [
  "cors",
  "strip-claim-headers",
  "rate-limit",
  "auth",
  "rate-limit-jwt",
  "transform",
];

export const policies: Policy[] = [
  { name: "cors", applies: (r) => r.cors !== undefined, plugin: cors },
  // A client's copies of fromClaims headers go before anything reads headers (SPEC §6).
  {
    name: "strip-claim-headers",
    applies: (r) => Object.keys(r.transform?.request?.fromClaims ?? {}).length > 0,
    plugin: stripClaimHeaders,
  },
  {
    name: "rate-limit",
    applies: (r) => r.rateLimit !== undefined && !limitsAfterAuth(r),
    plugin: rateLimitPolicy,
    timing: { metric: "ratelimit", hook: "onRequest" },
  },
  {
    name: "auth",
    applies: (r) => r.auth !== undefined && r.auth.jwt !== false,
    plugin: auth,
    timing: { metric: "auth", hook: "onRequest" },
  },
  {
    name: "rate-limit-jwt",
    applies: (r) => r.rateLimit !== undefined && limitsAfterAuth(r),
    plugin: rateLimitPolicy,
    timing: { metric: "ratelimit", hook: "preHandler" },
  },
  // After auth and rate limits, before the cache lookup (a hit never skips them) and the forwarder.
  { name: "plugins", applies: (r) => (r.plugins?.length ?? 0) > 0, plugin: userPlugins },
  {
    name: "cache",
    applies: (r) => r.cache !== undefined,
    plugin: cachePolicy,
    timing: { metric: "cache", hook: "preHandler" },
  },
  // After the cache's onSend (the cache stores what the upstream said), before the response transform.
  { name: "cache-control", applies: (r) => r.cacheControl !== undefined, plugin: cacheControlPolicy },
  { name: "transform", applies: (r) => r.transform !== undefined, plugin: transform },
];
