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
import type { IncomingMessage, OutgoingHttpHeaders, ServerResponse } from "node:http";
import type { TLSSocket } from "node:tls";
import type { FastifyBaseLogger, FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import type { Agent } from "undici";
import { onResponseClose } from "../src/access-log.js";
import type { Config } from "../src/config/schema.js";
import { closesConnection, errorBody, errorCodeOf } from "../src/errors.js";
import type { CompiledRoute, Lane } from "../src/generation.js";
import { policies } from "../src/policies.js";
import { genReqId, kState } from "../src/request-state.js";

/** What a lane request shares with its route's scope. */
interface LaneServer {
  syAgent: Agent;
  log: FastifyBaseLogger;
}

/** The members of FastifyRequest that proxyHandler and the access line read. */
class LaneRequest {
  body: unknown = null;
  private child?: FastifyBaseLogger;
  constructor(
    readonly raw: IncomingMessage,
    readonly id: string,
    readonly server: LaneServer,
  ) {}
  get method(): string {
    return this.raw.method ?? "GET";
  }
  get headers() {
    return this.raw.headers;
  }
  get socket() {
    return this.raw.socket;
  }
  get ip(): string | undefined {
    return this.raw.socket.remoteAddress;
  }
  get ips(): undefined {
    return undefined;
  }
  get protocol(): "http" | "https" {
    return (this.raw.socket as TLSSocket).encrypted ? "https" : "http";
  }
  /** Made on first use: most requests log nothing of their own. */
  get log(): FastifyBaseLogger {
    this.child ??= this.server.log.child({ reqId: this.id });
    return this.child;
  }
}

/** The members of FastifyReply that proxyHandler and the access line use. */
class LaneReply {
  private pending?: OutgoingHttpHeaders;
  private readonly start = performance.now();
  constructor(
    readonly raw: ServerResponse,
    readonly request: LaneRequest,
  ) {}
  get sent(): boolean {
    return this.raw.headersSent || this.raw.writableEnded;
  }
  get elapsedTime(): number {
    return performance.now() - this.start;
  }
  hijack(): this {
    return this;
  }
  getHeaders(): OutgoingHttpHeaders {
    return this.pending === undefined ? {} : { ...this.pending };
  }
  getHeader(name: string) {
    return this.pending?.[name];
  }
  header(name: string, value: string): this {
    this.pending ??= {};
    this.pending[name] = value;
    return this;
  }
  /** Only errors are sent this way (answers stream from onHead): app.ts's errorHandler and sendError, raw. */
  send(err: unknown): this {
    const code = errorCodeOf(err);
    if (code === "SY_INTERNAL") this.request.log.error({ err }, "unexpected error");
    if (this.sent) {
      this.raw.destroy();
      return this;
    }
    const body = errorBody(code, this.request.id);
    const text = JSON.stringify(body);
    const length = String(Buffer.byteLength(text));
    const headers: OutgoingHttpHeaders = {
      ...this.pending,
      "x-request-id": this.request.id,
      "content-type": "application/json; charset=utf-8",
      "content-length": length,
    };
    if (closesConnection(code)) headers.connection = "close";
    const st = this.raw.req[kState];
    if (st !== undefined) st.contentLength = length; // writeHead(obj) is not getHeader()'s
    this.raw.writeHead(body.statusCode, headers);
    this.raw.end(text);
    return this;
  }
}

/** Whether `route` may take the lane: no policy, no fixed answer, no upgrades, no trusted proxies. */
export function laneable(route: CompiledRoute, config: Config): boolean {
  const r = route.config;
  return (
    !config.trustProxy && r.respond === undefined && !r.websocket && policies.every((p) => !p.applies(r))
  );
}

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
