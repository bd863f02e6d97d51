/**
 * Stand-ins for Fastify's Request and Reply on the fast lanes (server.ts):
 * only the members the lanes' handlers, onResponseClose and the access line
 * read, over Node's own objects. The lanes set them as the RequestState's
 * request and reply, so everything after the answer — lease release, the
 * access line — is the same code as on the Fastify path.
 */
import type { IncomingMessage, OutgoingHttpHeaders, ServerResponse } from "node:http";
import type { TLSSocket } from "node:tls";
import type { FastifyBaseLogger } from "fastify";
import type { Agent } from "undici";
import { errorCodeOf, errorResponse } from "./errors.js";
import { kState } from "./request-state.js";

/** What a lane request shares with its route's scope. */
export interface LaneServer {
  syAgent: Agent;
  log: FastifyBaseLogger;
}

/** The members of FastifyRequest that proxyHandler and the access line read. */
export class LaneRequest {
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
export class LaneReply {
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
    const { status, headers, body } = errorResponse(code, this.request.id);
    const st = this.raw.req[kState];
    if (st !== undefined) st.contentLength = headers["content-length"]; // writeHead(obj) is not getHeader()'s
    this.raw.writeHead(status, { ...this.pending, ...headers });
    this.raw.end(body);
    return this;
  }
}
