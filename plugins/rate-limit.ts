/**
 * Rate limiting (SPEC §2 routes.*.rateLimit) with @fastify/rate-limit,
 * registered into the route's own scope. Fixed windows of `window`, `max`
 * requests per key, keys by `by`:
 *   ip            request.ip: the socket's address, or X-Forwarded-For only
 *                 when `trustProxy` trusts the hop (Fastify resolves it), so a
 *                 client cannot pick its own bucket; IPv6 grouped by /64
 *   header:<name> the header's value
 *   jwt:<claim>   the verified token's claim (set by the auth policy)
 *   route         one bucket for the whole route
 * A request without the header or claim is counted by its ip (as Kong does):
 * leaving the header off never means "unlimited".
 *
 * Counters live in the generation's store (memory, or Redis shared by every
 * instance, with store.onError). On Redis a limit of 2000 or more a window
 * takes its counts in batches of max/1000 (at most 100: src/store/lease.ts):
 * never more than `max`, at most workers × batch fewer. The plugin's hook
 * is added with addHook, not
 * the plugin's per-route `config.rateLimit`: that one is a route-level hook,
 * which Fastify runs after every scope hook, so it would run after auth.
 * `by: ip | header | route` runs in onRequest, before auth (SPEC §3);
 * `by: jwt:` runs in preHandler, after auth has verified the token.
 *
 * Answers: RateLimit-Limit / -Remaining / -Reset (IETF draft) on every
 * response, and 429 SY_RATE_LIMITED with Retry-After when over.
 */
import { createHash } from "node:crypto";
import fastifyRateLimit, { normalizeIP } from "@fastify/rate-limit";
import type { FastifyInstance, FastifyRequest } from "fastify";
import fp from "fastify-plugin";
import { isRefresh } from "../src/cache/refresh.js";
import { ms } from "../src/config/duration.js";
import type { RouteConfig } from "../src/config/schema.js";
import { errors } from "../src/errors.js";
import { policyHook } from "../src/lane-plan.js";
import type { PolicyOptions } from "../src/policies.js";
import { kState } from "../src/request-state.js";
import { type GatewayStore, useStore } from "../src/store/index.js";
import { batchFor } from "../src/store/lease.js";

declare module "../src/request-state.js" {
  interface RequestState {
    /** Set when this request was answered 429 by a rate limit (metrics: rate_limited_total). */
    rateLimited?: boolean;
  }
}

type KeyOf = (request: FastifyRequest) => string;

/** Whether the route's limit keys on something auth provides (so it must run after auth). */
export function limitsAfterAuth(route: RouteConfig): boolean {
  return route.rateLimit?.by.startsWith("jwt:") === true;
}

function byIp(request: FastifyRequest): string {
  const ip = request.ip;
  // An IPv4 address (no ':') is its own key: normalizeIP's IPv6 regex costs ~0.6 µs a request (profile, issue 11).
  return `ip:${ip.includes(":") ? normalizeIP(ip) : ip}`;
}

/** Long values (a header can be 16 KB) are hashed so keys stay small. */
function bounded(prefix: string, value: string): string {
  return value.length <= 128
    ? prefix + value
    : `${prefix}#${createHash("sha256").update(value).digest("hex")}`;
}

export function keyGenerator(by: string): KeyOf {
  if (by === "route") return () => "route";
  if (by === "ip") return byIp;
  if (by.startsWith("header:")) {
    const name = by.slice(7).toLowerCase();
    return function byHeader(request) {
      const v = request.headers[name];
      const s = Array.isArray(v) ? v.join(", ") : v;
      return s ? bounded("h:", s) : byIp(request);
    };
  }
  const claim = by.slice(4);
  return function byClaim(request) {
    const v = request.raw[kState]?.claims?.[claim];
    if (v === undefined || v === null || v === "") return byIp(request);
    return bounded("j:", typeof v === "string" ? v : JSON.stringify(v));
  };
}

/**
 * The @fastify/rate-limit store contract over the generation's store. `undefined`
 * from the store (Redis down, onError allow) counts as nothing; a thrown
 * SY_STORE_UNAVAILABLE (onError deny) becomes the 503 answer.
 */
function storeAdapter(store: GatewayStore, namespace: string, batch: number) {
  return class SwitchyardLimitStore {
    incr(
      key: string,
      cb: (err: Error | null, res?: { current: number; ttl: number }) => void,
      timeWindow: number,
    ): void {
      // The memory store counts synchronously: answered at once, without a promise.
      const local = store.incrLocal(namespace + key, timeWindow, batch);
      if (local !== undefined) {
        cb(null, { current: local.count, ttl: local.ttl });
        return;
      }
      store.incr(namespace + key, timeWindow, batch).then(
        (c) => cb(null, c === undefined ? { current: 0, ttl: timeWindow } : { current: c.count, ttl: c.ttl }),
        (err: Error) => cb(err),
      );
    }
    child() {
      return this;
    }
  };
}

export const rateLimitPolicy = fp(
  async function rateLimit(scope: FastifyInstance, { route, generation }: PolicyOptions) {
    const cfg = route.config.rateLimit!;
    const store = useStore(scope, generation);
    await scope.register(fastifyRateLimit, {
      global: false,
      enableDraftSpec: true,
      // The route name (letters, digits, _ . -) is a Redis Cluster hash tag: one route's counters, one slot (issue 14).
      store: storeAdapter(store, `rl:{${route.name}}:`, batchFor(cfg.max)),
    });
    const limiter = scope.rateLimit({
      max: cfg.max,
      timeWindow: ms(cfg.window),
      keyGenerator: keyGenerator(cfg.by),
      // The cache's background refresh re-enters the route: it is not a client request.
      allowList: isRefresh,
      errorResponseBuilder: () => new errors.SY_RATE_LIMITED(),
      onExceeded(request) {
        const st = request.raw[kState];
        if (st) st.rateLimited = true;
      },
    });
    policyHook(scope, route, limitsAfterAuth(route.config) ? "preHandler" : "onRequest", limiter);
  },
  { name: "switchyard-rate-limit", fastify: "5.x" },
);
