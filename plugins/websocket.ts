/**
 * WebSocket proxying for routes with `websocket: true` (SPEC §3).
 *
 * Node hands an `Upgrade` request to the server's 'upgrade' event with the
 * raw socket, outside Fastify. `handleUpgrade` matches the route itself (same
 * matcher and normalisation as the router), refuses what cannot be upgraded,
 * and otherwise pushes the request through the generation's Fastify instance
 * with a ServerResponse bound to that socket — the same route scope, so the
 * route's own onRequest/preHandler hooks (auth, rate limit, CORS, request
 * transform) run for the upgrade exactly as for any request, and their
 * refusals (401, 429 …) reach the client as ordinary responses. No policy
 * needs to know about WebSockets.
 *
 * The route's handler (`websocketRoute`) then picks a balanced target (circuit
 * breaker, health, drain all apply; connect failures move to another target),
 * sends it the handshake with the client's headers — Sec-WebSocket-Key,
 * -Version, -Protocol, -Extensions, cookies … — plus X-Forwarded-* and
 * X-Request-Id, and on 101 relays the answer and splices the two sockets
 * (src/upstreams/ws-tunnel.ts): frames pass untouched, extensions and
 * subprotocols are negotiated end to end. A non-101 answer is relayed as a
 * plain response. A tunnel holds its target lease (inFlight) while open.
 *
 * On shutdown (Gateway.close, after the drain period) and on reload (the old
 * generation's onClose, after the drain period) open tunnels are closed with
 * 1012 "service restart".
 */
import http, { type IncomingHttpHeaders, type IncomingMessage, ServerResponse } from "node:http";
import https from "node:https";
import { isIP, type Socket } from "node:net";
import type { Duplex } from "node:stream";
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import fp from "fastify-plugin";
import { logAccess } from "../src/access-log.js";
import { ms } from "../src/config/duration.js";
import { type ErrorCode, errors, rawErrorResponse } from "../src/errors.js";
import type { CompiledRoute, Generation } from "../src/generation.js";
import { genReqId, kState, type RequestState } from "../src/request-state.js";
import { matchIncoming } from "../src/router/incoming.js";
import { Tunnel } from "../src/upstreams/ws-tunnel.js";
import {
  conditionOf,
  copyEndToEnd,
  lease,
  markTried,
  pickFor,
  proxyHandler,
  releaseLease,
  releaseTarget,
  rewriteRequestHeaders,
  upstreamError,
} from "./balance.js";

const kUpgrade = Symbol("switchyard.upgrade");

/** The raw side of an accepted upgrade, carried to the route handler on the IncomingMessage. */
interface PendingUpgrade {
  socket: Duplex;
  head: Buffer;
  tunnels: Set<Tunnel>;
}

declare module "node:http" {
  interface IncomingMessage {
    [kUpgrade]?: PendingUpgrade;
  }
}

/** Open tunnels per generation, for the 1012 at shutdown or reload. */
const openTunnels = new WeakMap<Generation, Set<Tunnel>>();

function tunnelsOf(generation: Generation): Set<Tunnel> {
  let set = openTunnels.get(generation);
  if (set === undefined) {
    set = new Set();
    openTunnels.set(generation, set);
  }
  return set;
}

/** The HTTP server's 'upgrade' listener: route, refuse, or hand to the route's Fastify scope. */
export function handleUpgrade(
  app: FastifyInstance,
  generation: Generation,
  req: IncomingMessage,
  socket: Duplex,
  head: Buffer,
): void {
  // Node removed its own handlers when it gave up the socket: a client reset must not crash us.
  socket.on("error", () => socket.destroy());
  const refusal = refuse(generation, req);
  if (refusal !== undefined) {
    reject(socket, req, refusal[0], refusal[1]);
    return;
  }
  // Another protocol (h2c …) is answered as plain HTTP/1.1, then the connection closes.
  if (isWebSocket(req)) req[kUpgrade] = { socket, head, tunnels: tunnelsOf(generation) };
  serve(app, req, socket);
}

/** Why this upgrade is refused before reaching a route's hooks, or undefined when it may proceed. */
function refuse(generation: Generation, req: IncomingMessage): [ErrorCode, string?] | undefined {
  if (!isWebSocket(req)) {
    // Node's parser let go at the headers: a body could not be read. GET h2c upgrades are the norm.
    const body = req.headers["content-length"] || req.headers["transfer-encoding"];
    return body ? ["SY_BAD_REQUEST", "An Upgrade request with a body is not supported"] : undefined;
  }
  // The same match the route's scope will see (find-my-way's constraint reads it back).
  const st = matchIncoming(generation.matcher, req);
  if (st === null) return ["SY_BAD_PATH"];
  if (st === undefined) return ["SY_NO_ROUTE"];
  if (!st.route.config.websocket || st.route.config.respond) {
    return ["SY_BAD_REQUEST", "This route does not accept WebSocket upgrades"];
  }
  if (req.method !== "GET") return ["SY_BAD_REQUEST", "A WebSocket upgrade must be a GET (RFC 6455 §4.1)"];
  return undefined;
}

/** The handler of a `websocket: true` route: upgrades are tunnelled, other requests proxied as usual. */
export function websocketRoute(route: CompiledRoute) {
  const proxy = proxyHandler(route);
  return function websocketOrProxy(request: FastifyRequest, reply: FastifyReply): void {
    const up = request.raw[kUpgrade];
    if (up === undefined) proxy(request, reply);
    else dial(route, request, reply, up);
  };
}

/** Close every open tunnel of `generation` with `code` (1012 = service restart); resolves when all are closed. */
export async function closeWebSockets(generation: Generation, code = 1012): Promise<void> {
  const set = openTunnels.get(generation);
  if (set === undefined || set.size === 0) return;
  await Promise.all([...set].map((t) => t.closeWith(code)));
}

/** On reload the old generation closes at once; its tunnels get the drain period, then 1012. */
export const websockets = fp<{ generation: Generation }>(
  async function websockets(app, { generation }) {
    app.addHook("onClose", function closeTunnelsAfterDrain(_app, done) {
      if ((openTunnels.get(generation)?.size ?? 0) > 0) {
        const drain = ms(generation.config.shutdownTimeout);
        setTimeout(() => void closeWebSockets(generation), drain).unref();
      }
      done();
    });
  },
  { name: "switchyard-websocket" },
);

function isWebSocket(req: IncomingMessage): boolean {
  return req.headers.upgrade?.toLowerCase() === "websocket";
}

/** Run the request through the generation's Fastify instance, answering on the raw socket. */
function serve(app: FastifyInstance, req: IncomingMessage, socket: Duplex): void {
  const res = new ServerResponse(req);
  res.shouldKeepAlive = false; // Node's parser has let go of this connection: one answer, then close
  res.assignSocket(socket as Socket);
  res.on("finish", () => socket.end());
  app.routing(req, res);
}

/** SPEC §5 JSON on a bare socket, then close. */
function reject(socket: Duplex, req: IncomingMessage, code: ErrorCode, message?: string): void {
  socket.end(rawErrorResponse(code, genReqId(req), message));
}

/** Send the handshake to a balanced target; a connect failure moves to the next one. */
function dial(route: CompiledRoute, request: FastifyRequest, reply: FastifyReply, up: PendingUpgrade): void {
  const st = request.raw[kState]!;
  const service = route.pickService!();
  st.service = service;
  let lastCode: string | undefined;
  const attempt = (): void => {
    const target = pickFor(request, st, service);
    if (target === undefined) {
      reply.send(lastCode ? upstreamError(lastCode) : new errors[service.unavailable()]());
      return;
    }
    lease(target);
    st.target = target;
    const tls = target.protocol === "https:";
    const sni = st.route.hostRewrite ?? target.host;
    const upReq = (tls ? https : http).request({
      host: target.host,
      port: target.port,
      method: "GET",
      path: route.rewrite(st) + (st.query ? `?${st.query}` : ""),
      headers: handshakeHeaders(request),
      agent: false,
      ...(tls && !isIP(sni) ? { servername: sni } : {}),
      // services.*.tls: the CA, client certificate and server name the proxy's pools use (issue 14).
      ...(tls ? service.transport?.tls : undefined),
    });
    let timer = deadline(upReq, service.timeouts.connect, "UND_ERR_CONNECT_TIMEOUT");
    upReq.once("socket", (s) =>
      s.once("connect", () => {
        clearTimeout(timer);
        timer = deadline(upReq, route.timeout ?? service.timeouts.request, "UND_ERR_HEADERS_TIMEOUT");
      }),
    );
    const clientGone = () => upReq.destroy();
    up.socket.once("close", clientGone);
    const settle = () => {
      clearTimeout(timer);
      up.socket.off("close", clientGone);
    };
    upReq.on("error", (err: NodeJS.ErrnoException) => {
      settle();
      releaseLease(st);
      if (up.socket.destroyed) return; // the client left; its response 'close' released the rest
      service.reportFailure(target);
      lastCode = err.code ?? "UNKNOWN";
      markTried(st, target);
      if (conditionOf(lastCode) === "connect-failure" && st.tried!.size < service.maxAttempts) {
        attempt();
        return;
      }
      request.log.warn(
        { target: target.url, code: lastCode, err: err.message },
        "websocket handshake failed",
      );
      reply.send(upstreamError(lastCode));
    });
    upReq.on("response", (res) => {
      // The upstream declined the upgrade: its answer is relayed as a plain response.
      settle();
      if ((res.statusCode ?? 502) >= 500) service.reportFailure(target);
      else service.reportSuccess(target);
      reply.code(res.statusCode ?? 502);
      for (const [k, v] of Object.entries(copyEndToEnd(res.headers, {} as IncomingHttpHeaders)))
        if (v !== undefined) reply.header(k, v);
      reply.header("x-request-id", request.id).send(res);
    });
    upReq.on("upgrade", (res, upSocket, upHead) => {
      settle();
      service.reportSuccess(target);
      if (up.socket.destroyed) {
        upSocket.destroy();
        releaseTarget(st);
        return;
      }
      splice(request, reply, st, up, res, upSocket, upHead);
    });
    upReq.end();
  };
  attempt();
}

function deadline(req: http.ClientRequest, after: number, code: string): NodeJS.Timeout {
  return setTimeout(() => req.destroy(Object.assign(new Error(`${code} after ${after}ms`), { code })), after);
}

/** The client's handshake headers for the target: hop-by-hop dropped except the upgrade itself. */
function handshakeHeaders(request: FastifyRequest): IncomingHttpHeaders {
  // End-to-end fields only (the forwarder's copy), then Host, X-Forwarded-*, X-Request-Id; the
  // upgrade itself is the one hop-by-hop exchange passed on.
  const h = rewriteRequestHeaders(request, copyEndToEnd(request.headers, {} as IncomingHttpHeaders));
  h.connection = "Upgrade";
  h.upgrade = request.headers.upgrade;
  return h;
}

/** 101 from the target: relay it, then splice the sockets. */
function splice(
  request: FastifyRequest,
  reply: FastifyReply,
  st: RequestState,
  up: PendingUpgrade,
  res: IncomingMessage,
  upSocket: Duplex,
  upHead: Buffer,
): void {
  reply.hijack();
  const client = up.socket as Socket;
  (reply.raw as ServerResponse).detachSocket(client);
  client.setTimeout(0);
  client.setNoDelay(true);
  client.setKeepAlive(true, 30_000); // a dead peer on a quiet tunnel is found by TCP, not by an idle timer
  (upSocket as Socket).setNoDelay(true);
  (upSocket as Socket).setKeepAlive(true, 30_000);
  client.write(responseHead(res, request.id));
  const target = st.target?.url;
  const tunnel = new Tunnel(client, upSocket, () => {
    up.tunnels.delete(tunnel);
    releaseTarget(st);
    logAccess(st, target, 101, { websocket: true });
  });
  up.tunnels.add(tunnel);
  tunnel.start(up.head, upHead);
}

/** The target's 101 as it sent it (subprotocol, extensions, cookies …), plus our X-Request-Id. */
function responseHead(res: IncomingMessage, requestId: string): string {
  let head = `HTTP/1.1 101 ${res.statusMessage || "Switching Protocols"}\r\n`;
  const raw = res.rawHeaders;
  for (let i = 0; i < raw.length; i += 2) head += `${raw[i]}: ${raw[i + 1]}\r\n`;
  if (res.headers["x-request-id"] === undefined) head += `X-Request-Id: ${requestId}\r\n`;
  return `${head}\r\n`;
}
