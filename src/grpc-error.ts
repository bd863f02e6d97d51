/**
 * A gateway error on a gRPC request, sent on the Fastify path (SPEC §5,
 * issue 14). gRPC clients read a status from trailers, or from a
 * Trailers-Only answer: one header block that ends the stream. Fastify's
 * send writes its head first and the (empty) body after, which over HTTP/2
 * is a HEADERS frame without END_STREAM and then an empty DATA frame: no
 * status a gRPC client would see. So the reply is taken over and its head
 * set without writing it; ending the response then sends head and end of
 * stream together (Node's HTTP/2 compatibility layer does so when nothing
 * was written yet). Headers already set on the reply (RateLimit-*,
 * Retry-After, WWW-Authenticate) go along, as they do with the JSON error.
 */
import type { FastifyReply } from "fastify";
import { type ErrorCode, grpcErrorResponse } from "./errors.js";

export function sendGrpcError(
  reply: FastifyReply,
  code: ErrorCode,
  requestId: string,
  message?: string,
): void {
  const { status, headers } = grpcErrorResponse(code, requestId, message);
  const res = reply.raw;
  reply.hijack();
  if (res.headersSent) {
    res.destroy();
    return;
  }
  res.statusCode = status;
  const own = reply.getHeaders();
  for (const name in own) {
    const v = own[name];
    if (v !== undefined && name !== "content-length" && name !== "connection") res.setHeader(name, v);
  }
  for (const name in headers) res.setHeader(name, headers[name]);
  res.end();
}
