/**
 * W3C Trace Context on every L7 request (issue 14, SPEC §2 tracing, §8 traceId).
 *
 * Always, tracing configured or not: a valid `traceparent` from the client is
 * forwarded as it came (with its `tracestate`); an absent or invalid one is
 * replaced by a new one (a new trace id and parent id, flags 00: nothing was
 * recorded here), and the client's `tracestate` is dropped with it (W3C Trace
 * Context §3.3.1: a tracestate without a valid traceparent is meaningless).
 * Every attempt of one request carries the same created value, and the access
 * line's `traceId` is its trace id.
 *
 * With `tracing.otlp` the route's `tracer` (src/tracing-otel.ts, loaded only
 * then) records a server span per request and a client span per upstream
 * attempt, and the forwarded traceparent names the attempt's span instead.
 * Without it nothing of the SDK is loaded and the per-request work is the
 * header check below: the route's `tracer` is absent (decided at load).
 */
import { randomFillSync } from "node:crypto";
import type { IncomingHttpHeaders } from "node:http";
import type { RequestState } from "./request-state.js";

/** What a route with span export does per request (src/tracing-otel.ts). */
export interface RouteTracer {
  /** Start this attempt's client span; set `headers.traceparent` (and tracestate) to name it. */
  attempt(st: RequestState, headers: IncomingHttpHeaders): void;
  /** The current attempt ended with an upstream status or an error code (a retry, if any, is the next attempt). */
  attemptDone(st: RequestState, status: number | undefined, error?: string): void;
  /** The response closed with `status`: end the server span. */
  end(st: RequestState, status: number): void;
}

/** Per-request trace state, hung off the RequestState. */
export interface TraceState {
  /** 32 lower-case hex digits: the access line's traceId. */
  traceId: string;
  /** The traceparent made here when the client sent none (or an invalid one), sent on every attempt. */
  created?: string;
  /** Spans of the OTel tracer (opaque here). */
  span?: unknown;
  attempt?: unknown;
}

declare module "./request-state.js" {
  interface RequestState {
    trace?: TraceState;
  }
}

// version-traceid-parentid-flags; version ff, an all-zero trace id or parent id are invalid;
// version 00 is exactly 55 characters, a later version may append fields after a '-'.
const TRACEPARENT = /^(?!ff)[0-9a-f]{2}-(?!0{32})[0-9a-f]{32}-(?!0{16})[0-9a-f]{16}-[0-9a-f]{2}(?:-|$)/;

/** Whether `v` is a traceparent to forward (W3C Trace Context §3.2). */
export function validTraceparent(v: string | string[] | undefined): v is string {
  if (typeof v !== "string" || v.length < 55 || !TRACEPARENT.test(v)) return false;
  return v.length === 55 || v.charCodeAt(0) !== 0x30 || v.charCodeAt(1) !== 0x30;
}

/**
 * Random ids from a pool filled 4 KB at a time: one getrandom() per ~170
 * requests instead of one per request (ids must be random, not secret).
 */
const pool = Buffer.alloc(4096);
let at = pool.length;
function randomHex(bytes: number): string {
  if (at + bytes > pool.length) {
    randomFillSync(pool);
    at = 0;
  }
  const s = pool.toString("hex", at, at + bytes);
  at += bytes;
  return s;
}

const ZEROS = /^0+$/;

/** A new version-00 traceparent, flags 00 (not sampled: nothing is recorded here). */
export function newTraceparent(): string {
  // One read of the pool for both ids; an all-zero id is invalid (1 in 2^64 at worst): draw again.
  const hex = randomHex(24);
  const traceId = hex.slice(0, 32);
  const spanId = hex.slice(32);
  if (hex.charCodeAt(0) === 0x30 && ZEROS.test(traceId)) return newTraceparent();
  if (hex.charCodeAt(32) === 0x30 && ZEROS.test(spanId)) return newTraceparent();
  return `00-${traceId}-${spanId}-00`;
}

/**
 * The request's trace state on the path without span export: the client's
 * valid traceparent, or one made here (kept for every attempt).
 */
function plainTrace(st: RequestState, incoming: string | string[] | undefined): TraceState {
  let t = st.trace;
  if (t === undefined) {
    const created = validTraceparent(incoming) ? undefined : newTraceparent();
    t = { traceId: (created ?? (incoming as string)).slice(3, 35), created };
    st.trace = t;
  }
  return t;
}

/**
 * traceparent/tracestate for one forwarded attempt on `headers` (already the
 * end-to-end copy of the client's): the client's when valid, else a created
 * one without tracestate; a route with span export then names its attempt span.
 */
export function forwardTrace(
  st: RequestState,
  incoming: IncomingHttpHeaders,
  headers: IncomingHttpHeaders,
  tracer: RouteTracer | undefined,
): void {
  if (tracer !== undefined) {
    tracer.attempt(st, headers);
    return;
  }
  const t = plainTrace(st, incoming.traceparent);
  if (t.created !== undefined) {
    headers.traceparent = t.created;
    if (headers.tracestate !== undefined) delete headers.tracestate;
  }
}

/** The trace id of a client's valid traceparent (the access line of a request no route took). */
export function clientTraceId(v: string | string[] | undefined): string | undefined {
  return validTraceparent(v) ? v.slice(3, 35) : undefined;
}

/** The access line's traceId: the request's trace (made now if nothing made one: not forwarded). */
export function traceIdOf(st: RequestState): string {
  return (st.trace ?? plainTrace(st, st.request?.headers.traceparent)).traceId;
}
