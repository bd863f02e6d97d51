/**
 * The one access line per request (SPEC §8): reqId (from the request's
 * logger), method, path, route, service, target, statusCode, bytes,
 * responseTime (ms), remoteAddress, cache, traceId (src/tracing.ts).
 */
import type { ServerResponse } from "node:http";
import type { FastifyBaseLogger } from "fastify";
import { releaseTarget } from "../plugins/balance.js";
import { kState, type RequestState } from "./request-state.js";
import { traceIdOf } from "./tracing.js";

export function logAccess(
  st: RequestState,
  target: string | undefined,
  statusCode: number,
  extra?: { bytes?: number; websocket?: boolean },
): void {
  const { request, reply } = st;
  if (!request || !reply) return;
  request.log.info(
    {
      method: request.method,
      path: st.path,
      route: st.route.name,
      service: st.service?.name,
      target,
      statusCode,
      bytes: extra?.bytes,
      responseTime: Math.round(reply.elapsedTime * 1000) / 1000,
      remoteAddress: request.ip,
      cache: st.cache,
      traceId: traceIdOf(st),
      websocket: extra?.websocket,
    },
    "request",
  );
}

/**
 * 'close' fires on every ending, finished or aborted (Fastify's onResponse
 * misses aborts), so the target lease is released here, once, and the access
 * line written and the request counted. `this` is the ServerResponse: no closure per request.
 */
export function onResponseClose(this: ServerResponse): void {
  const st = this.req[kState];
  if (st === undefined) return;
  const target = st.target?.url;
  const status = this.writableFinished ? this.statusCode : 499;
  st.ended = true;
  // With span export (decided at load): the request's server span ends here.
  st.route.tracer?.end(st, status);
  // Counted where this listener was attached (app.ts attach, the lanes); a retired generation waits for 0.
  if (st.request !== undefined) {
    const live = st.route.live;
    if (--live.n === 0) live.idle?.();
  }
  // An answer cut short: the client left, so its upstream request (if still running) is cancelled.
  releaseTarget(st as RequestState, status === 499);
  // Metrics (with `admin`): numbers added to cells bound at load, nothing allocated.
  st.route.metrics?.observe(st, status, st.reply?.elapsedTime ?? 0);
  // At warn and above (and in benchmarks) the line is not built at all.
  if (st.request === undefined || !logsInfo(st.request.server.log)) return;
  logAccess(st, target, status, {
    // HEAD and 304 carry a Content-Length but no body.
    bytes:
      st.request?.method === "HEAD" || this.statusCode === 304
        ? 0
        : // Fastify writes its head with writeHead(obj): the length is in the reply, not in getHeader().
          Number(st.reply?.getHeader("content-length") ?? st.contentLength ?? 0) || undefined,
  });
}

/** Whether `log` writes info lines (Fastify's placeholder logger, without pino's API, does not). */
export function logsInfo(log: FastifyBaseLogger): boolean {
  const l = log as FastifyBaseLogger & { isLevelEnabled?: (level: string) => boolean };
  return typeof l.isLevelEnabled === "function" && l.isLevelEnabled("info");
}
