/**
 * The forwarding fast lane (issues 6 and 11), twin of the cache's: a
 * body-less request is forwarded before Fastify sees it (server.ts), by the
 * very handler the route's scope uses (proxyHandler), after the very hooks
 * its policies registered (src/lane-plan.ts: CORS, claim-header stripping,
 * rate limit, auth, request transform, in Fastify's order), all given Node's
 * request and response behind the few members of Fastify's Request and Reply
 * they read (src/lane-exchange.ts). What Fastify adds per request —
 * Request and Reply objects, a child logger, routing, its hook runner, its
 * finished() listener — is work such a route does not need.
 *
 * Declined, so Fastify serves them as always: requests with a body or an
 * Expect (the route's parser owns limits and replay), routes with a cache
 * (its own lane answers hits), `respond` or `websocket`, and configs with
 * trustProxy (Fastify resolves the client address chain). Errors leave as
 * the same SPEC §5 JSON as app.ts's errorHandler, with the route's response
 * header rules applied as its onSend hooks apply them there.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import { onResponseClose } from "../src/access-log.js";
import { errors } from "../src/errors.js";
import type { Lane } from "../src/generation.js";
import { LaneReply, LaneRequest, type LaneServer } from "../src/lane-exchange.js";
import { type LanePlan, type RequestHook, runHooks } from "../src/lane-plan.js";
import { genReqId } from "../src/request-state.js";

/** The lane for one route: `handler` is the route's own proxyHandler, `scope` its Fastify scope. */
export function proxyLane(
  handler: (request: FastifyRequest, reply: FastifyReply) => void,
  scope: FastifyInstance,
  plan: LanePlan,
): Lane {
  const server: LaneServer = { syAgent: scope.syAgent, log: scope.log };
  // Fastify runs every onRequest hook, then (after parsing) every preHandler hook.
  const hooks: RequestHook[] = [...plan.onRequest, ...plan.preHandler];
  const edits = plan.headEdits;
  return function forwardLane(req, res, st) {
    const h = req.headers;
    if (h["content-length"] !== undefined || h["transfer-encoding"] !== undefined || h.expect !== undefined)
      return false;
    const request = new LaneRequest(req, genReqId(req), server);
    const reply = new LaneReply(res, request, edits);
    const freq = request as unknown as FastifyRequest;
    const frep = reply as unknown as FastifyReply;
    st.request = freq;
    st.reply = frep;
    st.route.live.n++;
    res.once("close", onResponseClose);
    const forward = () => {
      if (reply.sent) return;
      try {
        handler(freq, frep);
      } catch (err) {
        // Fastify would have caught this and answered 500: so does the lane, never the process.
        reply.send(err);
      }
    };
    if (hooks.length === 0) {
      forward();
      return true;
    }
    let pending: Promise<void> | undefined;
    try {
      pending = runHooks(hooks, freq, frep as FastifyReply & { sent: boolean });
    } catch (err) {
      reply.send(err);
      return true;
    }
    if (pending === undefined) forward();
    // A hook rejecting with nothing is still a failure (Fastify answers 500 for it too).
    else pending.then(forward, (err: unknown) => reply.send(err ?? new errors.SY_INTERNAL()));
    return true;
  };
}
