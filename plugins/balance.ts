/**
 * The forwarder: asks the route's service for a target and streams the request
 * there with @fastify/reply-from (undici pools per target, bodies never
 * buffered). Registered without `base` so the origin is chosen per request
 * through `getUpstream` (ARCHITECTURE notes). reply-from's own retry resends to
 * the same URL, so it is switched off and connect failures are retried here on
 * another target.
 */
import type { IncomingHttpHeaders } from "node:http";
import { Transform, type TransformCallback } from "node:stream";
import replyFrom from "@fastify/reply-from";
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import fp from "fastify-plugin";
import { Agent, type Dispatcher, Pool } from "undici";
import { errors } from "../src/errors.js";
import type { CompiledRoute, Generation } from "../src/generation.js";
import { kState, type RequestState } from "../src/request-state.js";

/** RFC 9110 §7.6.1 connection-specific fields, plus the legacy ones proxies drop. */
const HOP_BY_HOP = [
  "connection",
  "keep-alive",
  "proxy-connection",
  "te",
  "trailer",
  "transfer-encoding",
  "upgrade",
  "proxy-authorization",
  "proxy-authenticate",
];

/** Failures where nothing reached the target: always safe to try another one. */
const CONNECT_FAILURES = new Set([
  "ECONNREFUSED",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "ENOTFOUND",
  "EAI_AGAIN",
  "UND_ERR_CONNECT_TIMEOUT",
]);
const TIMEOUTS = new Set(["UND_ERR_HEADERS_TIMEOUT", "UND_ERR_BODY_TIMEOUT", "UND_ERR_CONNECT_TIMEOUT"]);

export interface ForwarderOptions {
  generation: Generation;
}

/**
 * Registers reply-from once for the gateway scope, with our own undici Agent:
 * its factory gives each target origin a Pool with the owning service's
 * connect and idle timeouts (reply-from's built-in Agent has one setting for all).
 */
export const forwarder = fp<ForwarderOptions>(
  async function forwarder(app, { generation }) {
    const agent = createAgent(generation);
    await app.register(replyFrom, {
      undici: agent as unknown as Pool,
      disableRequestLogging: true,
      // The URL cache keys on JSON.stringify([origin, path]) per request; building the URL is cheaper.
      disableCache: true,
    });
    app.addHook("onClose", async () => {
      await agent.close();
    });
  },
  { name: "switchyard-forwarder" },
);

export function createAgent(generation: Generation): Agent {
  const byOrigin = new Map<string, { connect: number; idle: number }>();
  for (const svc of generation.services.values()) {
    for (const t of svc.targets) if (!byOrigin.has(t.origin)) byOrigin.set(t.origin, svc.timeouts);
  }
  return new Agent({
    factory(origin: string | URL, opts: object): Dispatcher {
      const key = typeof origin === "string" ? origin : origin.origin;
      const t = byOrigin.get(key) ?? { connect: 2000, idle: 60_000 };
      return new Pool(origin, {
        ...opts,
        pipelining: 1,
        connect: { timeout: t.connect, noDelay: true },
        keepAliveTimeout: t.idle,
        keepAliveMaxTimeout: Math.max(t.idle, 60_000),
      });
    },
  });
}

/** The route handler and reply-from options for one proxied route, built once at load. */
export function proxyHandler(route: CompiledRoute, maxAttempts: number) {
  const fromOptions = {
    getUpstream: (req: FastifyRequest) => req.raw[kState]!.target!.origin,
    queryString: (_search: string, _url: string, req: FastifyRequest) => req.raw[kState]!.query,
    rewriteRequestHeaders,
    rewriteHeaders,
    onError,
    timeout: route.timeout,
    // reply-from retries GETs on 503 to the same target by default: never do that.
    retryDelay: () => null,
  };

  function send(request: FastifyRequest, reply: FastifyReply, st: RequestState): void {
    const service = route.pickService!();
    st.service = service;
    const ip = request.ip;
    const target = service.pick({ ip, key: service.keyOf?.(request.raw, st.path, ip), exclude: st.tried });
    if (target === undefined) {
      reply.send(new errors.SY_NO_HEALTHY_TARGET());
      return;
    }
    target.inFlight++;
    target.requests++;
    st.target = target;
    fromOptions.timeout = route.timeout ?? service.timeouts.request;
    reply.from(route.rewrite(st), fromOptions as never);
  }

  function onError(reply: FastifyReply, { error }: { error: Error & { cause?: unknown } }): void {
    const request = reply.request;
    const st = request.raw[kState]!;
    const failed = st.target;
    releaseTarget(st);
    const code = upstreamCode(error);
    if (st.tooLarge || code === "SY_BODY_TOO_LARGE") {
      reply.header("connection", "close").send(new errors.SY_BODY_TOO_LARGE());
      return;
    }
    if (failed) failed.failures++;
    const retryable = CONNECT_FAILURES.has(code) && request.body === undefined;
    st.tried ??= new Set();
    if (failed) st.tried.add(failed);
    if (retryable && st.tried.size < maxAttempts && !reply.sent) {
      request.log.warn({ target: failed?.url, code }, "connect failed, trying another target");
      send(request, reply, st);
      return;
    }
    request.log.warn({ target: failed?.url, code, err: error.message }, "upstream request failed");
    reply.send(
      TIMEOUTS.has(code)
        ? new errors.SY_UPSTREAM_TIMEOUT()
        : CONNECT_FAILURES.has(code)
          ? new errors.SY_UPSTREAM_CONNECT()
          : new errors.SY_UPSTREAM_RESET(),
    );
  }

  return function proxy(request: FastifyRequest, reply: FastifyReply): void {
    const st = request.raw[kState]!;
    send(request, reply, st);
  };
}

/** Undo the lease on a target: exactly once per pick. */
export function releaseTarget(st: RequestState): void {
  const t = st.target;
  if (t !== undefined) {
    t.inFlight--;
    st.target = undefined;
  }
}

function upstreamCode(error: { code?: string; cause?: unknown }): string {
  let e: unknown = error;
  // reply-from wraps undici's error; the root cause names what happened.
  for (let i = 0; i < 4 && e; i++) {
    const c = (e as { code?: string }).code;
    if (c && !c.startsWith("FST_REPLY_FROM")) {
      if (c !== "UND_ERR_SOCKET" || !(e as { cause?: unknown }).cause) return c;
    }
    e = (e as { cause?: unknown }).cause;
  }
  return error.code ?? "UNKNOWN";
}

function rewriteRequestHeaders(request: FastifyRequest, headers: IncomingHttpHeaders): IncomingHttpHeaders {
  const st = request.raw[kState]!;
  const clientHost = request.raw.headers.host ?? (request.raw.headers[":authority"] as string | undefined);
  for (const h of HOP_BY_HOP) if (headers[h] !== undefined) delete headers[h];
  headers.host = st.route.hostRewrite ?? clientHost;
  // Untrusted clients cannot plant an address chain: the list starts with what we saw.
  const prior = request.headers["x-forwarded-for"];
  const socketIp = request.socket.remoteAddress ?? "";
  headers["x-forwarded-for"] = trusted(request) && prior ? `${prior}, ${socketIp}` : socketIp;
  headers["x-forwarded-proto"] = request.protocol;
  if (clientHost !== undefined) headers["x-forwarded-host"] = clientHost;
  headers["x-request-id"] = request.id;
  return headers;
}

function trusted(request: FastifyRequest): boolean {
  // Fastify resolved trustProxy: request.ip differs from the socket only when it trusted the hop.
  return request.ips !== undefined && request.ips.length > 1;
}

function rewriteHeaders(headers: IncomingHttpHeaders, request: FastifyRequest): IncomingHttpHeaders {
  for (const h of HOP_BY_HOP) if (headers[h] !== undefined) delete headers[h];
  headers["x-request-id"] = request.id;
  return headers;
}

/**
 * Request bodies pass through unparsed. Content-Length over the limit is
 * refused before reading; a chunked body is counted as it streams and cut at
 * the limit (the forwarder then answers 413).
 */
export function passthroughParser(limit: number) {
  return function passthrough(
    req: FastifyRequest,
    payload: NodeJS.ReadableStream,
    done: (err: Error | null, body?: unknown) => void,
  ): void {
    const cl = req.headers["content-length"];
    if (cl !== undefined) {
      if (Number(cl) > limit) {
        done(new errors.SY_BODY_TOO_LARGE());
        return;
      }
      done(null, payload); // Node's parser already holds the body to exactly Content-Length.
      return;
    }
    done(
      null,
      (payload as NodeJS.ReadableStream & { pipe: Function }).pipe(new Limit(limit, req.raw[kState]!)),
    );
  };
}

class Limit extends Transform {
  private seen = 0;
  constructor(
    private readonly limit: number,
    private readonly st: RequestState,
  ) {
    super();
  }
  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.seen += chunk.length;
    if (this.seen > this.limit) {
      this.st.tooLarge = true;
      cb(new errors.SY_BODY_TOO_LARGE());
      return;
    }
    cb(null, chunk);
  }
}

export type { FastifyInstance };
