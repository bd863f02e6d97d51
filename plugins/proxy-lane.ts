/**
 * The forwarding fast lane (issue 6), twin of the cache's: a body-less request
 * to a route with no policy at all is forwarded before Fastify sees it
 * (server.ts), by the very handler the route's scope uses (proxyHandler),
 * given Node's request and response behind the few members of Fastify's
 * Request and Reply that handler reads. What Fastify adds per request on such
 * a route — Request and Reply objects, a child logger, routing, hooks, its
 * finished() listener — is work this route does not need.
 *
 * Declined, so Fastify serves them as always: requests with a body or an
 * Expect (the route's parser owns limits and replay), routes with a policy,
 * `respond` or `websocket`, and configs with trustProxy (Fastify resolves the
 * client address chain). Errors leave as the same SPEC §5 JSON as
 * app.ts's sendError.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import { onResponseClose } from "../src/access-log.js";
import type { Lane } from "../src/generation.js";
import { LaneReply, LaneRequest, type LaneServer } from "../src/lane-exchange.js";
import { genReqId } from "../src/request-state.js";

/** The lane for one route: `handler` is the route's own proxyHandler, `scope` its Fastify scope. */
export function proxyLane(
  handler: (request: FastifyRequest, reply: FastifyReply) => void,
  scope: FastifyInstance,
): Lane {
  const server: LaneServer = { syAgent: scope.syAgent, log: scope.log };
  return function forwardLane(req, res, st) {
    const h = req.headers;
    if (h["content-length"] !== undefined || h["transfer-encoding"] !== undefined || h.expect !== undefined)
      return false;
    const request = new LaneRequest(req, genReqId(req), server);
    const reply = new LaneReply(res, request);
    st.request = request as unknown as FastifyRequest;
    st.reply = reply as unknown as FastifyReply;
    res.once("close", onResponseClose);
    try {
      handler(st.request, st.reply);
    } catch (err) {
      // Fastify would have caught this and answered 500: so does the lane, never the process.
      reply.send(err);
    }
    return true;
  };
}
