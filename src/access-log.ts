/**
 * The one access line per request (SPEC §8): reqId (from the request's
 * logger), method, path, route, service, target, statusCode, bytes,
 * responseTime (ms), remoteAddress, cache.
 */
import type { RequestState } from "./request-state.js";

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
      websocket: extra?.websocket,
    },
    "request",
  );
}
