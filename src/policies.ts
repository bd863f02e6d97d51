/**
 * The edge policies a route may declare, in the order SPEC §3 runs them.
 * Each entry says from the route's config whether it applies (decided once, at
 * load) and is a fastify-plugin-wrapped plugin registered into that route's
 * own scope, so its hooks run for that route only and nothing is checked per
 * request. Registration order is hook order within a phase.
 */
import type { FastifyPluginAsync } from "fastify";
import type { RouteConfig } from "./config/schema.js";
import type { CompiledRoute, Generation } from "./generation.js";

export interface PolicyOptions {
  route: CompiledRoute;
  generation: Generation;
}

export interface Policy {
  name: string;
  applies(route: RouteConfig): boolean;
  plugin: FastifyPluginAsync<PolicyOptions>;
}

export const policies: Policy[] = [
  // slot: cors (answers preflight first)
  // slot: rate limit by ip | header | route
  // slot: auth
  // slot: rate limit by jwt:<claim>
  // slot: cache lookup
  // slot: request/response transform
];
