/**
 * The one place an incoming request is matched to a route: split the target,
 * normalise the path (RFC 3986, before any matching: SPEC §6), run the
 * first-match matcher, and let a CORS preflight reach the route of the method
 * it announces. The result is hung off the request (kState), so whoever asks
 * later — the fast lane, the WebSocket upgrade check, find-my-way's
 * constraint — reads it instead of matching again.
 */
import type { IncomingMessage } from "node:http";
import type { CompiledRoute } from "../generation.js";
import { kState, type RequestState } from "../request-state.js";
import type { Matcher } from "./match.js";
import { normalizePath, splitTarget } from "./normalize.js";

/** The request's route state; null when the path cannot be normalised (400), undefined when no route matches (404). */
export function matchIncoming(
  matcher: Matcher<CompiledRoute>,
  req: IncomingMessage,
): RequestState | null | undefined {
  const known = req[kState];
  if (known !== undefined) return known;
  const { path: raw, query } = splitTarget(req.url ?? "/");
  const path = normalizePath(raw);
  if (path === null) return null;
  const headers = req.headers;
  const host = headers.host ?? (headers[":authority"] as string | undefined);
  let m = matcher.match({ method: req.method ?? "GET", host, path, query, headers });
  // A CORS preflight asks about the method to come: it belongs to the route that method would
  // take (when that route has cors), even if the route does not list OPTIONS.
  const acrm = headers["access-control-request-method"];
  if (req.method === "OPTIONS" && typeof acrm === "string" && headers.origin !== undefined) {
    const pre = matcher.match({ method: acrm.toUpperCase(), host, path, query, headers });
    if (pre?.value.config.cors) m = pre;
  }
  if (m === undefined) return undefined;
  const st: RequestState = { route: m.value, path, query, params: m.params, rest: m.rest };
  req[kState] = st;
  return st;
}
