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
import { errorCodeOf, errorResponse, grpcErrorResponse, isGrpcRequest } from "./errors.js";
import { applyHeadEdits, type HeadEdit } from "./lane-plan.js";
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
  get routeOptions(): typeof ROUTE_OPTIONS {
    return ROUTE_OPTIONS;
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

/** Fastify's request.routeOptions as @fastify/rate-limit reads it (no per-route rate-limit config). */
const ROUTE_OPTIONS = Object.freeze({ config: Object.freeze({}) });

/**
 * The members of FastifyReply that proxyHandler, the policies' hooks and the
 * access line use. `send` renders an answer the way app.ts does on the
 * Fastify path: an error as SPEC §5 JSON (errorHandler + sendError), anything
 * else as a plain body (a preflight's 204); the route's head edits (response
 * transform, CORS) apply to it, as Fastify's onSend hooks do there.
 */
export class LaneReply {
  private pending?: OutgoingHttpHeaders;
  private status = 200;
  private readonly start = performance.now();
  constructor(
    readonly raw: ServerResponse,
    readonly request: LaneRequest,
    private readonly edits: readonly HeadEdit[] = NO_EDITS,
  ) {}
  get sent(): boolean {
    return this.raw.headersSent || this.raw.writableEnded;
  }
  get elapsedTime(): number {
    return performance.now() - this.start;
  }
  get statusCode(): number {
    return this.status;
  }
  code(status: number): this {
    this.status = status;
    return this;
  }
  hijack(): this {
    return this;
  }
  /** The fields set so far, not a copy (ownHeaders). */
  get fields(): OutgoingHttpHeaders | undefined {
    return this.pending;
  }
  getHeaders(): OutgoingHttpHeaders {
    return this.pending === undefined ? {} : { ...this.pending };
  }
  // Names are lower-cased as Fastify's reply does, so a hook's 'X-Foo' and the upstream's 'x-foo'
  // are one field on both paths (toLowerCase returns an already lower-case name without copying).
  getHeader(name: string) {
    return this.pending?.[name.toLowerCase()];
  }
  header(name: string, value: string | number | string[]): this {
    this.pending ??= {};
    this.pending[name.toLowerCase()] = value;
    return this;
  }
  removeHeader(name: string): this {
    const key = name.toLowerCase();
    if (this.pending?.[key] !== undefined) delete this.pending[key];
    return this;
  }
  send(payload?: unknown): this {
    const request = this.request;
    if (this.sent) {
      if (payload instanceof Error) this.raw.destroy();
      return this;
    }
    let body: string | Buffer = "";
    if (
      payload instanceof Error ||
      (payload !== undefined && typeof payload === "object" && !Buffer.isBuffer(payload))
    ) {
      const code = errorCodeOf(payload);
      if (code === "SY_INTERNAL") request.log.error({ err: payload }, "unexpected error");
      // A gRPC client reads a gRPC status, not JSON (SPEC §5); lanes serve HTTP/1.1 only, where a head is a head.
      const r = isGrpcRequest(request.headers)
        ? grpcErrorResponse(code, request.id)
        : errorResponse(code, request.id);
      this.status = r.status;
      for (const k in r.headers) this.header(k, r.headers[k]);
      body = r.body;
    } else if (payload !== undefined) body = payload as string | Buffer;
    this.pending ??= {};
    this.pending["x-request-id"] ??= request.id;
    if (this.edits.length > 0) applyHeadEdits(this.edits, request, this);
    // A body-less status carries no length; writeHead(obj) is not getHeader()'s, so the access line is told.
    if (this.status !== 204 && this.status !== 304)
      this.pending["content-length"] ??= String(Buffer.byteLength(body));
    const st = this.raw.req[kState];
    if (st !== undefined) st.contentLength = this.pending["content-length"] as string | undefined;
    this.raw.writeHead(this.status, this.pending);
    this.raw.end(body);
    return this;
  }
}

const NO_EDITS: readonly HeadEdit[] = [];

/**
 * The fields a reply's hooks set, for the forwarder to copy once into the
 * head it writes: a lane reply's own map as it is, Fastify's getHeaders()
 * (a copy already) otherwise. Undefined when none were set.
 */
export function ownHeaders(reply: object): Readonly<Record<string, unknown>> | undefined {
  return reply instanceof LaneReply
    ? reply.fields
    : (reply as { getHeaders(): OutgoingHttpHeaders }).getHeaders();
}

/**
 * The head of an upstream answer being written by the forwarder itself
 * (plugins/balance.ts onHead): the flat `[name, value, …]` list writeHead
 * takes, behind the reply API the head edits use. Node's header writer walks
 * a list with a counted loop; an object it walks with for…in and a
 * hasOwnProperty per field, and a head that hooks and edits add fields to
 * must first be a dictionary-mode object to stay cheap to build. Measured
 * (issue 11): a bare node:http server writing 12 fields (wrk 5 s, 5
 * interleaved runs) used 26.3–29.8 µs of CPU per request with a
 * null-prototype object, 22.4–28.1 with a list; in the gateway, the full
 * mix's header work under `node --cpu-prof` went from 9.1–11.7 to 7.6–8.1
 * µs per request (3 pairs), the plain route's stayed at ~4.3. Names are
 * lower-case and each appears once; a head holds about a dozen, so a linear
 * search finds one in fewer steps than a hash would take to build.
 */
export class HeadList {
  constructor(readonly list: unknown[]) {}
  /** The index of `name`'s name slot (lower-case), or -1. */
  indexOf(name: string): number {
    const list = this.list;
    for (let i = 0; i < list.length; i += 2) if (list[i] === name) return i;
    return -1;
  }
  header(name: string, value: unknown): this {
    const key = name.toLowerCase();
    const i = this.indexOf(key);
    if (i < 0) this.list.push(key, value);
    else this.list[i + 1] = value;
    return this;
  }
  getHeader(name: string): unknown {
    const i = this.indexOf(name.toLowerCase());
    return i < 0 ? undefined : this.list[i + 1];
  }
  removeHeader(name: string): this {
    const i = this.indexOf(name.toLowerCase());
    if (i >= 0) this.list.splice(i, 2);
    return this;
  }
}
