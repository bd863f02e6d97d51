/**
 * Server-Timing in one route's scope (SPEC §3 `listen[].serverTiming`).
 * app.ts's routeScope asks for this only when some listener has serverTiming;
 * otherwise none of it exists and no request runs any of it. When it does,
 * a request from a listener without serverTiming carries no Timing, and each
 * piece below reads that one property and steps aside.
 *
 * - Spans: a marker hook before and one after each measured policy
 *   (policies.ts `timing`), in the policy's own hook phase, so a span is just
 *   that policy's hooks. A policy that answers itself (401, 429, a cache hit)
 *   skips the hooks after it: its span stays open and ends when the header is made.
 * - Upstream: from the moment the forwarder takes the request to the moment
 *   the header is made, when the answer's head is in (connects, retries and
 *   backoff included).
 * - The header: in onSend, registered after every policy, for what Fastify
 *   writes (the gateway's errors, cache hits, the reply-from path, whose
 *   onSend runs as the upstream's head arrives); by headObserver into the head
 *   itself on the direct path, which bypasses onSend.
 */
import type { IncomingHttpHeaders } from "node:http";
import type { FastifyReply, FastifyRequest, HookHandlerDoneFunction } from "fastify";
import type { CompiledRoute } from "../src/generation.js";
import { kState, type RequestState } from "../src/request-state.js";
import { render, routeMetric, withUpstream } from "../src/server-timing.js";
import type { HeadObserver } from "./balance.js";

type Hook = (request: FastifyRequest, reply: FastifyReply, done: HookHandlerDoneFunction) => void;
type Handler = (request: FastifyRequest, reply: FastifyReply) => void;

export interface RouteTiming {
  /** The two marker hooks of one metric's span. */
  span(metric: string): { begin: Hook; end: Hook };
  /** onSend: the header on every answer Fastify writes for this route. */
  header(
    request: FastifyRequest,
    reply: FastifyReply,
    payload: unknown,
    done: (e: null, p: unknown) => void,
  ): void;
  /** The route handler, starting the upstream span. */
  forward(proxy: Handler): Handler;
  /** For proxyHandler's direct path: an answer head is about to be written (or discarded by a retry). */
  headObserver: HeadObserver;
}

/** Built once per route at load. */
export function routeTiming(route: CompiledRoute): RouteTiming {
  const entry = routeMetric(route);
  return {
    span(metric) {
      return {
        begin: function beginSpan(request, _reply, done) {
          request.raw[kState]!.timing?.begin(metric);
          done();
        },
        end: function endSpan(request, _reply, done) {
          request.raw[kState]!.timing?.end(metric);
          done();
        },
      };
    },
    header: function serverTimingHeader(request, reply, payload, done) {
      const st = request.raw[kState]!;
      const t = st.timing;
      // reply-from (or a cache entry) may already carry the upstream's own Server-Timing: kept, after ours.
      if (t !== undefined)
        reply.header("server-timing", withUpstream(render(entry, st, t), reply.getHeader("server-timing")));
      done(null, payload);
    },
    forward(proxy) {
      return function timedForward(request, reply) {
        const t = request.raw[kState]!.timing;
        if (t !== undefined) t.upstreamStart = performance.now();
        proxy(request, reply);
      };
    },
    headObserver(st: RequestState, headers: IncomingHttpHeaders) {
      const t = st.timing;
      // A retried attempt's head is discarded, and the header with it.
      if (t !== undefined)
        headers["server-timing"] = withUpstream(render(entry, st, t), headers["server-timing"]);
    },
  };
}
