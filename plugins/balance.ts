/**
 * The forwarder: asks the route's service for a target and streams the request
 * there with @fastify/reply-from (undici pools per target, bodies never
 * buffered). Registered without `base` so the origin is chosen per request
 * through `getUpstream` (ARCHITECTURE notes). reply-from's own retry resends to
 * the same URL, so it is switched off and failures are retried here on another
 * target, per the service's retry policy and budget (src/upstreams/retry-*.ts).
 */
import type { IncomingHttpHeaders, ServerResponse } from "node:http";
import { Readable, Transform, type TransformCallback, Writable } from "node:stream";
import { buffer } from "node:stream/consumers";
import replyFrom from "@fastify/reply-from";
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import fp from "fastify-plugin";
import { Agent, type Dispatcher, Pool, errors as UndiciErrors } from "undici";
import { errors } from "../src/errors.js";
import type { CompiledRoute, Generation } from "../src/generation.js";
import { HeadList, ownHeaders } from "../src/lane-exchange.js";
import { applyHeadEdits, planOf } from "../src/lane-plan.js";
import { kState, type RequestState } from "../src/request-state.js";
import { forwardTrace } from "../src/tracing.js";
import {
  backoffDelay,
  type RetryCondition,
  replayableMethod,
  retriesAfterSend,
} from "../src/upstreams/retry-policy.js";
import type { Service } from "../src/upstreams/service.js";
import type { Target } from "../src/upstreams/target.js";
import { h2PoolOptions, isConnectFailure, type Transport } from "../src/upstreams/transport.js";

/** What reply-from hands to onResponse. */
interface RawResponse {
  statusCode: number;
  headers: IncomingHttpHeaders;
  stream: Readable;
}

/** RFC 9110 §7.6.1 connection-specific fields, plus the legacy ones proxies drop. */
export const HOP_BY_HOP: ReadonlySet<string> = new Set([
  "connection",
  "keep-alive",
  "proxy-connection",
  "te",
  "trailer",
  "transfer-encoding",
  "upgrade",
  "proxy-authorization",
  "proxy-authenticate",
]);

/** The field names a Connection header lists (RFC 9110 §7.6.1: hop-by-hop too), lower-case. */
function connectionNames(conn: string | string[] | undefined): string[] | undefined {
  // The usual values name only fields that are hop-by-hop anyway: nothing to add (no allocation).
  if (conn === undefined || conn === "keep-alive" || conn === "close") return undefined;
  return String(conn)
    .toLowerCase()
    .split(",")
    .map((n) => n.trim());
}

/**
 * Whether `name` crosses this hop: not hop-by-hop, not one the message's Connection
 * header `named`, and not an HTTP/2 pseudo-header (:method, :path, :authority,
 * :scheme describe this hop's request only).
 */
function isEndToEnd(name: string, named: readonly string[] | undefined): boolean {
  return !HOP_BY_HOP.has(name) && !named?.includes(name) && name.charCodeAt(0) !== 58; /* ":" */
}

/**
 * Copy `src`'s end-to-end fields into `out` in one pass, `skip` left behind too.
 * Copying what is kept (instead of deleting what is not) keeps V8's fast object
 * shapes on the hot path.
 */
export function copyEndToEnd<T extends Record<string, unknown>>(
  src: IncomingHttpHeaders,
  out: T,
  skip?: string,
): T {
  const named = connectionNames(src.connection);
  for (const name in src)
    if (name !== skip && isEndToEnd(name, named)) (out as Record<string, unknown>)[name] = src[name];
  return out;
}

/**
 * Append `src`'s end-to-end fields, except those in `drop`, to the flat head `list`, whose
 * first `own` slots are the fields the route's hooks set: the upstream's value replaces a hook's
 * field of the same name in place — except Set-Cookie, which both may set and which adds up.
 */
export function appendEndToEnd(
  src: IncomingHttpHeaders,
  list: unknown[],
  own: number,
  drop: ReadonlySet<string> | undefined,
): void {
  const named = connectionNames(src.connection);
  for (const name in src) {
    if (!isEndToEnd(name, named) || drop?.has(name)) continue;
    const value = src[name];
    let i = 0;
    while (i < own && list[i] !== name) i += 2;
    if (i >= own) list.push(name, value);
    else list[i + 1] = name === "set-cookie" ? [list[i + 1], value].flat().map(String) : value;
  }
}

/** Failures where nothing reached the target: always safe to try another one. */
const CONNECT_FAILURES = new Set([
  "ECONNREFUSED",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "ENOTFOUND",
  "EAI_AGAIN",
  "UND_ERR_CONNECT_TIMEOUT",
]);
/** Nothing reached the target: refused, unreachable, or a TLS handshake that failed (transport.ts). */
function isConnectFailed(code: string): boolean {
  return CONNECT_FAILURES.has(code) || isConnectFailure(code);
}
const TIMEOUTS = new Set(["UND_ERR_HEADERS_TIMEOUT", "UND_ERR_BODY_TIMEOUT", "UND_ERR_CONNECT_TIMEOUT"]);
/**
 * undici refused to build the request (a field or method it does not
 * accept): nothing was sent, and no target is to blame. Not a failure of the
 * target (outlier detection), not retried elsewhere, answered 400.
 */
const REQUEST_REFUSED = new Set([
  "UND_ERR_INVALID_ARG",
  "UND_ERR_NOT_SUPPORTED",
  "ERR_INVALID_ARG_TYPE",
  "ERR_INVALID_ARG_VALUE",
  "ERR_INVALID_CHAR",
  "ERR_HTTP_INVALID_HEADER_VALUE",
]);

/**
 * The client left before its answer was complete: the upstream request is
 * cancelled (SPEC §3) the way undici cancels on an abort signal — the
 * stream handler's `abort` once connected, else its `reason`, which undici
 * checks when it connects. Why not a signal: passing any `signal` to
 * undici's stream() (an AbortController, or the smallest EventEmitter- or
 * EventTarget-shaped object) cost 25–30% more CPU per proxied request here
 * (A/B runs of the plain route, issue 11), and an AbortController alone ~4 µs.
 * The handler is caught as stream() hands it to `dispatch` (`via` below).
 */
interface StreamHandlerLike {
  abort: ((err: Error) => void) | null;
  reason: Error | null;
  /** The client's response once the head is written (onHead's Writable). */
  res?: { addTrailers?: (t: Record<string, string>) => void } | null;
  onComplete?: (trailers: unknown) => void;
}

/**
 * undici's stream() ends the client's response in its onComplete and only
 * then reports the trailers (to the callback): too late to send them. For an
 * attempt that forwards trailers (HTTP/2 services: gRPC's grpc-status and
 * grpc-message) onComplete is this one, which hands them to the response
 * first (Node sends them after the body: HTTP/2 as a trailing HEADERS frame,
 * HTTP/1.1 in the last chunk), then lets undici end it as always.
 */
function completeWithTrailers(this: StreamHandlerLike, trailers: unknown): void {
  const res = this.res;
  if (res && typeof res.addTrailers === "function") {
    const fields = trailerFields(trailers);
    if (fields !== undefined) {
      try {
        res.addTrailers(fields);
      } catch {
        // A field Node refuses: the body still ends; the client sees no trailers rather than a hang.
      }
    }
  }
  (Object.getPrototypeOf(this) as StreamHandlerLike).onComplete!.call(this, trailers);
}

/**
 * A gRPC Trailers-Only answer (grpc-status in the head: the target ended the
 * stream with its header block) must reach the client the same way, or the
 * client finds no status. So its head is set but not written: Node writes it
 * with the end of the (empty) body, as one block that ends the stream.
 */
function holdHead(res: ServerResponse, statusCode: number, list: readonly unknown[]): void {
  res.statusCode = statusCode;
  for (let i = 0; i < list.length; i += 2)
    if (list[i + 1] !== undefined) res.setHeader(list[i] as string, list[i + 1] as string | string[]);
}

/** undici's trailers — HTTP/2: a headers object; HTTP/1.1: raw [name, value, …] buffers — as fields. */
function trailerFields(trailers: unknown): Record<string, string> | undefined {
  if (trailers === null || typeof trailers !== "object") return undefined;
  let out: Record<string, string> | undefined;
  if (Array.isArray(trailers)) {
    for (let i = 0; i + 1 < trailers.length; i += 2) {
      out ??= {};
      out[String(trailers[i]).toLowerCase()] = String(trailers[i + 1]);
    }
    return out;
  }
  for (const [k, v] of Object.entries(trailers as Record<string, unknown>)) {
    if (k.charCodeAt(0) === 58 /* ":" */ || v === undefined) continue;
    out ??= {};
    out[k] = Array.isArray(v) ? v.join(", ") : String(v);
  }
  return out;
}

function cancel(h: StreamHandlerLike | undefined): void {
  if (h === undefined) return;
  const err = new UndiciErrors.RequestAbortedError();
  if (h.abort) h.abort(err);
  else h.reason = err;
}

/** undici's stream(), called with another `this` (its callback form). */
const streamVia = Agent.prototype.stream as unknown as (
  this: Dispatcher,
  opts: Dispatcher.RequestOptions<Attempt>,
  factory: Dispatcher.StreamFactory<Attempt>,
  callback: (err: Error | null, data?: { opaque: unknown }) => void,
) => void;

/** undici's stream() calls `this.dispatch(opts, handler)`: this one keeps the handler on the attempt. */
const vias = new WeakMap<Agent, Dispatcher>();
function via(agent: Agent): Dispatcher {
  let v = vias.get(agent);
  if (v === undefined) {
    v = {
      dispatch(opts: Dispatcher.DispatchOptions, handler: Dispatcher.DispatchHandler) {
        const attempt = (opts as unknown as { opaque: Attempt }).opaque;
        attempt.handler = handler as unknown as StreamHandlerLike;
        if (attempt.trailers) (handler as unknown as StreamHandlerLike).onComplete = completeWithTrailers;
        return agent.dispatch(opts, handler);
      },
    } as unknown as Dispatcher;
    vias.set(agent, v);
  }
  return v;
}

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
    app.decorate("syAgent", agent);
    app.addHook("onClose", async () => {
      await agent.close();
    });
  },
  { name: "switchyard-forwarder" },
);

declare module "fastify" {
  interface FastifyInstance {
    /** The generation's undici Agent (per-target pools). */
    syAgent: Agent;
  }
}

export function createAgent(generation: Generation): Agent {
  const byOrigin = new Map<string, { connect: number; idle: number; transport?: Transport }>();
  for (const svc of generation.services.values()) {
    // One transport per origin (checked at load), read (CA and key files) with the generation.
    const transport = svc.transport;
    for (const t of svc.targets)
      if (!byOrigin.has(t.origin)) byOrigin.set(t.origin, { ...svc.timeouts, transport });
  }
  return new Agent({
    factory(origin: string | URL, opts: object): Dispatcher {
      const key = typeof origin === "string" ? origin : origin.origin;
      // A DNS-discovered target joined after the map was made: its service's, found once per pool.
      const t = byOrigin.get(key) ?? discoveredTimeouts(generation, key) ?? { connect: 2000, idle: 60_000 };
      const connect = { timeout: t.connect, noDelay: true, ...t.transport?.tls };
      return new Pool(origin, {
        ...opts,
        pipelining: 1,
        connect,
        keepAliveTimeout: t.idle,
        keepAliveMaxTimeout: Math.max(t.idle, 60_000),
        ...(t.transport?.h2 ? h2PoolOptions(t.transport, connect) : undefined),
      });
    },
  });
}

/** The timeouts and transport of the service that has a target at `origin` now (discovery: dns). */
function discoveredTimeouts(
  generation: Generation,
  origin: string,
): { connect: number; idle: number; transport?: Transport } | undefined {
  for (const svc of generation.services.values())
    if (svc.discovery !== undefined && svc.targets.some((t) => t.origin === origin))
      return { ...svc.timeouts, transport: svc.transport };
  return undefined;
}

/** One try of one request on the direct (reply-from-less) path. */
interface Attempt {
  request: FastifyRequest;
  /** Its answer was a 5xx being retried: the body is drained, its end is nobody's business. */
  sunk: boolean;
  /** undici's handler for it, to cancel it when the client leaves. */
  handler: StreamHandlerLike | undefined;
  /** Forward the answer's trailers (an HTTP/2 service: gRPC status). */
  trailers: boolean;
}

/**
 * Where a discarded answer's body goes: read up to REPLAY_MAX so a short body
 * leaves the connection reusable, then give up (the connection closes) rather
 * than download a large one nobody will see — as discard() does on the reply-from path.
 */
function drain(): Writable {
  let seen = 0;
  return new Writable({
    write(chunk: Buffer, _enc, cb) {
      seen += chunk.length;
      cb(seen > REPLAY_MAX ? new Error("discarded body too large") : null);
    },
  });
}

/** Request bodies up to this size are kept in memory when the request may be re-sent (see passthroughParser). */
export const REPLAY_MAX = 64 * 1024;

/** Per-request forwarding state (attempts, budget slots, kept body), hung off the RequestState. */
interface Forwarding {
  /** Retries made so far. */
  attempt: number;
  /** Slots of the service's retry budget this request holds: one per budgeted retry, until it ends. */
  slots: number;
  /** Counted in the service's budget.requests. */
  counted: boolean;
  /** The request is over: releaseTarget ran; a pending backoff must not send. */
  done: boolean;
  /** The body, when small enough to replay (REPLAY_MAX). */
  body?: Buffer;
  /** The attempt in flight on the direct path (cancelled when the client leaves). */
  current?: Attempt;
}

declare module "../src/request-state.js" {
  interface RequestState {
    fwd?: Forwarding;
    /** services.*.sticky: the target this request's affinity cookie names and need not be re-issued for. */
    pinned?: Target;
  }
}

/**
 * Shown each upstream answer's head on the direct path before onHead writes it
 * (or a retry discards it), so fields can be added (plugins/server-timing.ts):
 * that path skips Fastify's onSend. reply-from's answers do go through onSend.
 */
export type HeadObserver = (st: RequestState, headers: IncomingHttpHeaders) => void;

/**
 * The route handler and reply-from options for one proxied route, built once at load.
 *
 * Every attempt asks the service for a target, excluding those this request
 * already tried. A failure is retried on another target when the service's
 * retry policy lists the condition, the method may be re-sent (connect
 * failures: any method, nothing was sent), the body can be sent again (none,
 * or kept in memory by passthroughParser), attempts remain, the retry budget
 * has room (connect failures are not charged) and a target is left;
 * otherwise the failure is the answer. A 502/503/504 answer that will be
 * retried is held in onResponse and discarded, never streamed to the client.
 */
export function proxyHandler(route: CompiledRoute, observeHead?: HeadObserver) {
  // The route's response header rules (CORS, response transform), complete once its policies registered.
  const { headEdits: edits, headRemoves } = planOf(route);
  const drops = headRemoves.size > 0 ? headRemoves : undefined;
  // Span export for this route (src/tracing-otel.ts), decided at load: absent, no span work at all.
  const tracer = route.tracer;
  const fromOptions = {
    getUpstream: (req: FastifyRequest) => req.raw[kState]!.target!.origin,
    queryString: (_search: string, _url: string, req: FastifyRequest) => req.raw[kState]!.query,
    // reply-from's copy still has the fixed hop-by-hop fields (it drops only Connection's names).
    rewriteRequestHeaders: (request: FastifyRequest, headers: IncomingHttpHeaders) =>
      rewriteRequestHeaders(request, copyEndToEnd(headers, {} as IncomingHttpHeaders)),
    rewriteHeaders,
    onError,
    onResponse,
    timeout: route.timeout,
    // reply-from retries GETs on 503 to the same target by default: never do that.
    retryDelay: () => null,
  };

  /** Send this attempt to `target` (already leased). */
  function dispatch(request: FastifyRequest, reply: FastifyReply, st: RequestState, target: Target): void {
    st.target = target;
    const f = st.fwd!;
    if (f.attempt > 0 && f.body !== undefined) request.body = replay(f.body);
    const timeout = route.timeout ?? st.service!.timeouts.request;
    if (direct) {
      streamAttempt(request, st, target, timeout);
      return;
    }
    fromOptions.timeout = timeout;
    reply.from(route.rewrite(st), fromOptions as never);
  }

  /**
   * Routes without a cache go around reply-from: undici's `stream()` writes
   * the upstream body straight into the client's response, with no Readable
   * in between and no Fastify send path (bench/RESULTS.md: reply-from plus
   * reply.send(stream) cost more than the rest of the gateway). Their
   * response header rules (CORS, response transform) run on the head in
   * onHead, the very onSend hooks Fastify runs for its own answers
   * (src/lane-plan.ts). The cache needs the body as a payload: reply-from.
   * Same retry, error and header rules on both paths; decided per route at load.
   * A route's own plugins may add any onSend hook, which must see the upstream's
   * answer (issue 13): reply-from's path, like the cache. So does @fastify/caching's onSend for
   * a route's `cacheControl` (issue 12, plugins/cache-control.ts).
   */
  const direct = !route.config.cache && !route.config.plugins?.length && !route.config.cacheControl;
  /**
   * Some service of this route speaks HTTP/2 to its targets (issue 14): its
   * answers' trailers are forwarded and the client's TE: trailers sent along,
   * on the direct path (reply-from's answers carry no trailers). Decided here.
   */
  const h2Route = route.services.some((s) => s.transport?.h2 === true);

  function streamAttempt(request: FastifyRequest, st: RequestState, target: Target, timeout: number): void {
    const body = request.body;
    const trailers = h2Route && st.service!.transport?.h2 === true;
    const attempt: Attempt = { request, sunk: false, handler: undefined, trailers };
    const path = route.rewrite(st);
    const f = st.fwd!;
    f.current = attempt;
    // Expect: undici sends its own; 100-continue is hop-by-hop in practice.
    const headers = rewriteRequestHeaders(
      request,
      copyEndToEnd(request.raw.headers, {} as IncomingHttpHeaders, "expect"),
    );
    // TE is hop-by-hop, but "trailers" is the one value HTTP/2 carries, and gRPC servers ask for it.
    if (trailers && /\btrailers\b/i.test(String(request.raw.headers.te ?? ""))) headers.te = "trailers";
    streamVia.call(
      via(request.server.syAgent),
      {
        origin: target.origin,
        path: st.query === "" ? path : `${path}?${st.query}`,
        method: request.method as Dispatcher.HttpMethod,
        headers,
        body: body === undefined || body === null ? null : (body as Readable),
        headersTimeout: timeout,
        bodyTimeout: timeout,
        opaque: attempt,
      },
      head,
      onDone,
    );
  }

  // With an observer (some listener has serverTiming), each head goes past it first; without
  // one, undici calls the bare onHead: nothing more runs per request.
  const head = observeHead === undefined ? onHead : observedHead;

  function observedHead(data: Dispatcher.StreamFactoryData<Attempt>): Writable {
    observeHead!(data.opaque.request.raw[kState]!, data.headers as IncomingHttpHeaders);
    return onHead(data);
  }

  function onHead({ statusCode, headers, opaque }: Dispatcher.StreamFactoryData<Attempt>): Writable {
    const attempt = opaque;
    const request = attempt.request;
    const st = request.raw[kState]!;
    const reply = st.reply!;
    const target = st.target;
    if (target !== undefined) {
      if (statusCode >= 500) st.service!.reportFailure(target);
      else st.service!.reportSuccess(target);
    }
    tracer?.attemptDone(st, statusCode);
    if (
      statusCode >= 502 &&
      statusCode <= 504 &&
      retry(request, reply, st, String(statusCode) as RetryCondition)
    ) {
      attempt.sunk = true;
      return drain();
    }
    // Fields hooks set on the reply (RateLimit-*, …) go first; the upstream's win, as with
    // reply-from — except Set-Cookie, which adds up (appendEndToEnd).
    const list: unknown[] = [];
    const own = ownHeaders(reply);
    if (own !== undefined) for (const name in own) if (own[name] !== undefined) list.push(name, own[name]);
    appendEndToEnd(headers as IncomingHttpHeaders, list, list.length, drops);
    const h = new HeadList(list);
    const affinity = stickyCookie(request, st);
    if (affinity !== undefined) {
      const had = h.getHeader("set-cookie");
      h.header("set-cookie", had === undefined ? affinity : [had, affinity].flat().map(String));
    }
    h.header("x-request-id", request.id);
    if (edits.length > 0) applyHeadEdits(edits, request, h);
    reply.hijack();
    const res = reply.raw;
    st.contentLength = h.getHeader("content-length") as string | undefined;
    try {
      if (attempt.trailers && h.indexOf("grpc-status") >= 0) holdHead(res, statusCode, list);
      else res.writeHead(statusCode, list as string[]);
    } catch (err) {
      // A header Node refuses: nothing can be said to the client any more (hijacked); close it.
      request.log.warn({ err: (err as Error).message }, "upstream response head refused");
      res.destroy();
      return drain();
    }
    return res as unknown as Writable;
  }

  function onDone(err: Error | null, data?: { opaque: unknown }): void {
    if (err === null) return;
    const attempt = (data?.opaque ?? (err as { opaque?: unknown }).opaque) as Attempt | undefined;
    if (attempt === undefined || attempt.sunk) return;
    const st = attempt.request.raw[kState]!;
    // Cancelled because the client left: its answer is nobody's, the target is not to blame.
    if (st.fwd?.done) return;
    const reply = st.reply!;
    // Once hijacked (head written, or refused), only the socket is left to end.
    if (reply.sent || reply.raw.headersSent) {
      reply.raw.destroy(err);
      return;
    }
    onError(reply, { error: err });
  }

  function onResponse(request: FastifyRequest, reply: FastifyReply, res: RawResponse): void {
    const st = request.raw[kState]!;
    const target = st.target;
    const service = st.service!;
    const status = res.statusCode;
    if (target !== undefined) {
      if (status >= 500) service.reportFailure(target);
      else service.reportSuccess(target);
    }
    tracer?.attemptDone(st, status);
    if (status >= 502 && status <= 504 && retry(request, reply, st, String(status) as RetryCondition)) {
      discard(res);
      // reply-from already copied this answer's headers onto the reply; the next attempt sets its own.
      for (const h of Object.keys(res.headers)) reply.removeHeader(h);
      return;
    }
    const affinity = stickyCookie(request, st);
    if (affinity !== undefined) reply.header("set-cookie", affinity); // Fastify appends Set-Cookie
    reply.send(res.stream);
  }

  function onError(reply: FastifyReply, { error }: { error: Error & { cause?: unknown } }): void {
    const request = reply.request;
    const st = request.raw[kState]!;
    const failed = st.target;
    const code = upstreamCode(error);
    tracer?.attemptDone(st, undefined, code);
    if (st.tooLarge || code === "SY_BODY_TOO_LARGE") {
      releaseLease(st);
      // HTTP/2 has no Connection header: the stream ends with the answer (RFC 9113 §8.2.2).
      if (request.raw.httpVersionMajor !== 2) reply.header("connection", "close");
      reply.send(new errors.SY_BODY_TOO_LARGE());
      return;
    }
    if (REQUEST_REFUSED.has(code)) {
      releaseLease(st);
      request.log.warn(
        { target: failed?.url, code, err: error.message },
        "request refused by the HTTP client",
      );
      reply.send(new errors.SY_BAD_REQUEST());
      return;
    }
    if (failed) st.service!.reportFailure(failed);
    const condition = conditionOf(code);
    if (retry(request, reply, st, condition)) {
      request.log.info({ target: failed?.url, code, attempt: st.fwd!.attempt }, "retrying on another target");
      return;
    }
    request.log.warn({ target: failed?.url, code, err: error.message }, "upstream request failed");
    reply.send(upstreamError(code));
  }

  /**
   * The attempt on st.target failed with `condition`: end it and, if allowed,
   * lease the next target now and send after the backoff. False = answer with this failure.
   */
  function retry(request: FastifyRequest, reply: FastifyReply, st: RequestState, condition: RetryCondition) {
    const service = st.service!;
    const p = service.retry;
    const f = st.fwd!;
    const failed = st.target;
    releaseLease(st);
    if (failed) markTried(st, failed);
    if (!p.on.has(condition) || f.attempt >= p.attempts || reply.sent || f.done) return false;
    // Nothing reached the target on a connect failure: any method may go elsewhere, at once, and it
    // is not an extra request for the upstreams, so the budget (against amplification) is not charged.
    const sent = condition !== "connect-failure";
    if (sent && !replayableMethod(p, request.method, request.headers)) return false;
    if (!bodyReplayable(request, f)) return false;
    if (sent && !service.budget.tryAcquire()) {
      request.log.debug({ service: service.name }, "retry budget exhausted");
      return false;
    }
    const next = pickFor(request, st, service);
    if (next === undefined) {
      if (sent) service.budget.release();
      return false;
    }
    if (sent) f.slots++;
    f.attempt++;
    lease(next);
    st.target = next; // held through the backoff, released by releaseTarget if the client leaves
    const delay = sent ? backoffDelay(p, f.attempt) : 0;
    if (delay === 0) dispatch(request, reply, st, next);
    else
      setTimeout(() => {
        if (!f.done) dispatch(request, reply, st, next);
      }, delay);
    return true;
  }

  return function proxy(request: FastifyRequest, reply: FastifyReply): void {
    const st = request.raw[kState]!;
    // The client left while a hook waited (a JWKS fetch, Redis): nothing to forward, no lease to take.
    if (st.ended) return;
    // A route plugin may have read request.switchyard.service first: it goes where that said.
    const service = st.service ?? route.pickService!();
    st.service = service;
    if (st.fwd === undefined) st.fwd = { attempt: 0, slots: 0, counted: false, done: false };
    const f = st.fwd;
    f.counted = true;
    service.budget.requests++;
    const target = pickFor(request, st, service);
    if (target === undefined) {
      reply.send(new errors[service.unavailable()]());
      return;
    }
    lease(target);
    dispatch(request, reply, st, target);
  };
}

/**
 * The target for this request's next attempt: on the first one, the target
 * its sticky cookie names while that is available; otherwise the balancer's
 * choice, excluding targets the request already tried.
 */
export function pickFor(request: FastifyRequest, st: RequestState, service: Service): Target | undefined {
  const sticky = service.sticky;
  if (sticky !== undefined && st.tried === undefined) {
    const now = Date.now();
    const pin = sticky.pinned(request.raw, service, now);
    if (pin?.target.available(now)) {
      if (pin.fresh) st.pinned = pin.target;
      return pin.target;
    }
  }
  const ip = request.ip;
  return service.pick({ ip, key: service.keyOf?.(request.raw, st.path, ip, st.query), exclude: st.tried });
}

/**
 * The Set-Cookie pinning the target that answered, unless the request's
 * cookie already names it and is fresh; undefined for services without `sticky`.
 */
export function stickyCookie(request: FastifyRequest, st: RequestState): string | undefined {
  const sticky = st.service?.sticky;
  const target = st.target;
  if (sticky === undefined || target === undefined || target === st.pinned) return undefined;
  return sticky.setCookie(target, request.protocol === "https", Date.now());
}

/** Never pick `target` again for this request. */
export function markTried(st: RequestState, target: Target): void {
  if (st.tried === undefined) st.tried = new Set();
  st.tried.add(target);
}

/** Count one request or connection on `target` (released by releaseLease). */
export function lease(target: Target): void {
  target.inFlight++;
  target.requests++;
}

/** End the current attempt's lease on its target: exactly once per lease. */
export function releaseLease(st: RequestState): void {
  const t = st.target;
  if (t !== undefined) {
    t.inFlight--;
    st.target = undefined;
  }
}

/**
 * The request is over (its response closed, finished or aborted): release the
 * target lease, the retry budget slot and the service's in-flight count, once.
 */
export function releaseTarget(st: RequestState, clientGone = false): void {
  releaseLease(st);
  const f = st.fwd;
  if (f === undefined || f.done) return;
  f.done = true;
  if (clientGone) cancel(f.current?.handler);
  const budget = st.service?.budget;
  if (budget === undefined) return;
  budget.release(f.slots);
  if (f.counted) budget.requests--;
}

/**
 * Can this request's body be sent again? Only when there is none or it was
 * kept in memory: a streamed body is gone once an attempt failed (undici
 * destroys it on error, even on a connect failure before reading a byte).
 */
function bodyReplayable(request: FastifyRequest, f: Forwarding): boolean {
  const body = request.body;
  return body === undefined || body === null || f.body !== undefined;
}

function replay(body: Buffer): Readable {
  return Readable.from([body], { objectMode: false });
}

/** A held 5xx answer that will not be sent: read and drop a little of it so the connection is reused. */
function discard(res: RawResponse): void {
  const s = res.stream as Readable & { dump?: (o: { limit: number }) => Promise<void> };
  if (typeof s.dump === "function") s.dump({ limit: REPLAY_MAX }).catch(() => {});
  else {
    s.on("error", () => {});
    s.resume();
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

/** Which retry condition an upstream error code is. */
export function conditionOf(code: string): RetryCondition {
  if (isConnectFailed(code)) return "connect-failure";
  if (TIMEOUTS.has(code)) return "timeout";
  return "reset";
}

/** The gateway error for a final upstream failure. */
export function upstreamError(code: string) {
  return TIMEOUTS.has(code)
    ? new errors.SY_UPSTREAM_TIMEOUT()
    : isConnectFailed(code)
      ? new errors.SY_UPSTREAM_CONNECT()
      : new errors.SY_UPSTREAM_RESET();
}

/**
 * Host, X-Forwarded-For/Proto/Host and X-Request-Id on `headers`, which every
 * caller has already reduced to end-to-end fields with copyEndToEnd.
 */
export function rewriteRequestHeaders(
  request: FastifyRequest,
  headers: IncomingHttpHeaders,
): IncomingHttpHeaders {
  const st = request.raw[kState]!;
  const clientHost = request.raw.headers.host ?? (request.raw.headers[":authority"] as string | undefined);
  headers.host = st.route.hostRewrite ?? clientHost;
  // Untrusted clients cannot plant an address chain: the list starts with what we saw.
  const prior = request.headers["x-forwarded-for"];
  const socketIp = request.socket.remoteAddress ?? "";
  headers["x-forwarded-for"] = trusted(request) && prior ? `${prior}, ${socketIp}` : socketIp;
  headers["x-forwarded-proto"] = request.protocol;
  if (clientHost !== undefined) headers["x-forwarded-host"] = clientHost;
  headers["x-request-id"] = request.id;
  // W3C traceparent: the client's when valid, else one made here; with span export, the attempt's span.
  forwardTrace(st, request.raw.headers, headers, st.route.tracer);
  return headers;
}

function trusted(request: FastifyRequest): boolean {
  // Fastify resolved trustProxy: request.ip differs from the socket only when it trusted the hop.
  return request.ips !== undefined && request.ips.length > 1;
}

function rewriteHeaders(headers: IncomingHttpHeaders, request: FastifyRequest): IncomingHttpHeaders {
  const out = copyEndToEnd(headers, {} as IncomingHttpHeaders);
  out["x-request-id"] = request.id;
  return out;
}

/**
 * Request bodies pass through unparsed. Content-Length over the limit is
 * refused before reading; a chunked body is counted as it streams and cut at
 * the limit (the forwarder then answers 413).
 *
 * Replay: a body streamed to a target that failed cannot be sent again, so
 * when the route's service may retry this request on another target — a
 * connect failure (any method) or, for retryable methods, a reset, timeout or
 * 5xx — a body that declares a Content-Length of at most REPLAY_MAX (64 KB)
 * is kept in memory and sent from there, as often as needed. Larger or
 * chunked bodies stream as always, and a request carrying one is never
 * retried: it is answered with its first failure.
 */
export function passthroughParser(limit: number) {
  return function passthrough(
    req: FastifyRequest,
    payload: NodeJS.ReadableStream,
    done: (err: Error | null, body?: unknown) => void,
  ): void {
    const cl = req.headers["content-length"];
    if (cl !== undefined) {
      const n = Number(cl);
      if (n > limit) {
        done(new errors.SY_BODY_TOO_LARGE());
        return;
      }
      const st = req.raw[kState]!;
      if (n <= REPLAY_MAX && mayResend(st, req)) {
        buffer(payload).then((body) => {
          st.fwd = { attempt: 0, slots: 0, counted: false, done: false, body };
          done(null, replay(body));
        }, done);
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

/** Could some service of this route send this request again, to another target? */
function mayResend(st: RequestState, req: FastifyRequest): boolean {
  for (const s of st.route.services) {
    const p = s.retry;
    if (p.attempts === 0 || s.targets.length < 2) continue;
    if (p.on.has("connect-failure")) return true;
    if (retriesAfterSend(p) && replayableMethod(p, req.method, req.headers)) return true;
  }
  return false;
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
