/**
 * HTTP/2 listeners (`listen[].http2: true`, issue 14). With `tls`, a Node
 * Http2SecureServer negotiates h2 by ALPN and still serves HTTP/1.1 on the
 * same port (allowHTTP1); without it, an Http2Server speaks h2c by prior
 * knowledge only (RFC 9113 §3.3). Both hand Node's compatibility request and
 * response (Http2ServerRequest/Response) to the same `request` listeners as
 * an http.Server, so Fastify and the forwarder serve them unchanged;
 * `:authority` stands for Host wherever the gateway reads one.
 *
 * What server.ts does to an http.Server it does to these too: the methods
 * an HTTP/2 server lacks (closeIdleConnections, closeAllConnections) are
 * given here in HTTP/2's terms — GOAWAY lets a session's open streams finish
 * and refuses new ones; destroying it cuts them — so drains and reloads
 * treat every listener alike.
 */

import type { Server } from "node:http";
import http2 from "node:http2";
import type { Socket } from "node:net";
import type tls from "node:tls";

export interface H2Options {
  /** Keep-alive: a session with no frames for this long is sent GOAWAY (as Fastify does for HTTP/2). */
  idle: number;
  headersTimeout: number;
  requestTimeout: number;
  /** Largest request header block (HTTP/1.1: maxHeaderSize; HTTP/2: SETTINGS_MAX_HEADER_LIST_SIZE). */
  maxHeaderSize: number;
}

export function createH2Server(
  o: H2Options,
  material: { cert: Buffer; key: Buffer } | undefined,
  sni: (name: string) => tls.SecureContext | undefined,
): Server {
  const settings = { maxHeaderListSize: o.maxHeaderSize };
  const server = material
    ? http2.createSecureServer({
        allowHTTP1: true,
        cert: material.cert,
        key: material.key,
        settings,
        maxHeaderSize: o.maxHeaderSize,
        SNICallback(name, cb) {
          cb(null, sni(name));
        },
      } as http2.SecureServerOptions)
    : http2.createServer({ settings });
  const s = server as unknown as Server;
  const sessions = new Set<http2.ServerHttp2Session>();
  server.on("session", (session: http2.ServerHttp2Session) => {
    sessions.add(session);
    session.once("close", () => sessions.delete(session));
    // Read per session, so a reload's new `idle` (server.ts reconfigure) applies to new sessions.
    session.setTimeout(s.keepAliveTimeout, () => session.close());
  });
  // HTTP/1.1 connections of an ALPN listener: Node tracks them for its timeouts, not for closing.
  const h1 = new Set<Socket>();
  server.on("secureConnection", (socket: tls.TLSSocket) => {
    if (socket.alpnProtocol === "h2") return;
    h1.add(socket);
    socket.once("close", () => h1.delete(socket));
  });
  // Read by Node's HTTP/1.1 side of allowHTTP1 (the http.Server properties of the same names).
  s.headersTimeout = o.headersTimeout;
  s.requestTimeout = o.requestTimeout;
  s.keepAliveTimeout = o.idle;
  const closeIdleH1 = (s.closeIdleConnections as (() => void) | undefined)?.bind(s);
  s.closeIdleConnections = () => {
    for (const session of sessions) session.close();
    closeIdleH1?.();
  };
  s.closeAllConnections = () => {
    for (const session of sessions) session.destroy();
    for (const socket of h1) socket.destroy();
  };
  return s;
}
