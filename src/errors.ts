/**
 * Every error the gateway itself produces (SPEC §5), in one table. Each is an
 * @fastify/error constructor with its status baked in; `errorBody` renders the
 * public JSON shape. Low-level causes travel in `cause` and are logged, never
 * sent: no stack traces and no upstream addresses reach a client.
 */

import { STATUS_CODES } from "node:http";
import createError, { type FastifyErrorConstructor } from "@fastify/error";

const table = {
  SY_BAD_PATH: [400, "The request path is not allowed"],
  SY_BAD_REQUEST: [400, "Malformed request"],
  SY_AUTH_MISSING: [401, "A bearer token is required"],
  SY_AUTH_INVALID: [401, "The bearer token is not valid"],
  SY_AUTH_FORBIDDEN: [403, "The token lacks a required scope or claim"],
  SY_UNAUTHORIZED: [401, "The admin token is missing or wrong"],
  SY_NO_ROUTE: [404, "No route matches this request"],
  SY_REQUEST_TIMEOUT: [408, "The request did not arrive in time"],
  SY_BODY_TOO_LARGE: [413, "The request body is larger than this route allows"],
  SY_RATE_LIMITED: [429, "Too many requests"],
  SY_HEADERS_TOO_LARGE: [431, "The request headers are too large"],
  SY_UPSTREAM_CONNECT: [502, "The upstream service could not be reached"],
  SY_UPSTREAM_RESET: [502, "The upstream service closed the connection"],
  SY_NO_HEALTHY_TARGET: [503, "No healthy target is available for this service"],
  SY_CIRCUIT_OPEN: [503, "The upstream service is at capacity"],
  SY_STORE_UNAVAILABLE: [503, "The shared store is unavailable"],
  SY_UPSTREAM_TIMEOUT: [504, "The upstream service did not answer in time"],
  // Not in SPEC §5's table (added, not renamed): a gateway bug, logged with its stack, never sent.
  SY_INTERNAL: [500, "The gateway failed to handle this request"],
  // Admin listener only (added): no such service or target to drain.
  SY_NOT_FOUND: [404, "No such service or target"],
  // Added (issue 12): a request with Cache-Control: only-if-cached that nothing stored answers (RFC 9111 §5.2.1.7).
  SY_NOT_CACHED: [504, "Nothing stored answers this only-if-cached request"],
} as const satisfies Record<string, readonly [number, string]>;

export type ErrorCode = keyof typeof table;

export const errors = Object.fromEntries(
  Object.entries(table).map(([code, [status, message]]) => [code, createError(code, message, status)]),
) as Record<ErrorCode, FastifyErrorConstructor<{ code: ErrorCode; statusCode: number }>>;

export function isGatewayError(err: unknown): err is Error & { code: ErrorCode; statusCode: number } {
  return typeof (err as { code?: unknown })?.code === "string" && (err as { code: string }).code in table;
}

/** The SPEC §5 code for any error a request ends with: ours as they are, a 413 or 4xx by status, else SY_INTERNAL. */
export function errorCodeOf(err: unknown): ErrorCode {
  if (isGatewayError(err)) return err.code;
  const status = (err as { statusCode?: number } | undefined)?.statusCode ?? 500;
  if (status === 413) return "SY_BODY_TOO_LARGE";
  if (status >= 400 && status < 500) return "SY_BAD_REQUEST";
  return "SY_INTERNAL";
}

/** Errors after which the connection is closed (the request's body may not have been read). */
export function closesConnection(code: ErrorCode): boolean {
  return code === "SY_BAD_REQUEST" || code === "SY_BODY_TOO_LARGE";
}

export interface ErrorBody {
  statusCode: number;
  error: string;
  code: string;
  message: string;
  requestId: string;
}

export function errorBody(code: ErrorCode, requestId: string, message?: string): ErrorBody {
  const [statusCode, text] = table[code];
  return {
    statusCode,
    error: STATUS_CODES[statusCode] ?? "Error",
    code,
    message: message ?? text,
    requestId,
  };
}

export function statusOf(code: ErrorCode): number {
  return table[code][0];
}

/**
 * The one rendering of a SPEC §5 error answer: status, headers and JSON text.
 * Fastify's error handler, the fast lanes and bare sockets all send this.
 */
export function errorResponse(
  code: ErrorCode,
  requestId: string,
  message?: string,
): { status: number; headers: Record<string, string>; body: string } {
  const body = JSON.stringify(errorBody(code, requestId, message));
  const headers: Record<string, string> = {
    "content-type": "application/json; charset=utf-8",
    "content-length": String(Buffer.byteLength(body)),
    // X-Request-Id goes back to the client on every answer (SPEC §3), errors included.
    "x-request-id": requestId,
  };
  if (closesConnection(code)) headers.connection = "close";
  return { status: statusOf(code), headers, body };
}

/** errorResponse() as raw HTTP/1.1 for places without a response object (clientError, a refused upgrade). */
export function rawErrorResponse(code: ErrorCode, requestId: string, message?: string): string {
  const { status, headers, body } = errorResponse(code, requestId, message);
  headers.connection = "close";
  let head = `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\n`;
  // Conventional capitalisation on the wire (Content-Type, X-Request-Id).
  for (const [k, v] of Object.entries(headers))
    head += `${k.replace(/(^|-)[a-z]/g, (c) => c.toUpperCase())}: ${v}\r\n`;
  return `${head}\r\n${body}`;
}

/**
 * SPEC §5: a request with `content-type: application/grpc…` gets the gateway's
 * error as a gRPC status instead of JSON — HTTP 200, `grpc-status`, and
 * `grpc-message` starting with the SY_* code. By the error's HTTP status, as
 * SPEC §5 words it (codes: grpc/doc/statuscodes.md); the statuses SPEC does
 * not name follow gRPC's own HTTP mapping where it has one.
 */
const GRPC_BY_STATUS: Readonly<Record<number, number>> = {
  400: 3, // INVALID_ARGUMENT: a path or request the gateway refuses
  401: 16, // UNAUTHENTICATED
  403: 7, // PERMISSION_DENIED
  404: 12, // UNIMPLEMENTED: no route, as gRPC says of an unknown method
  408: 4, // DEADLINE_EXCEEDED: the request did not arrive in time
  413: 8, // RESOURCE_EXHAUSTED: as gRPC answers a message over its size limit
  429: 8, // RESOURCE_EXHAUSTED
  431: 8, // RESOURCE_EXHAUSTED
  500: 13, // INTERNAL
  502: 14, // UNAVAILABLE
  503: 14, // UNAVAILABLE
  504: 4, // DEADLINE_EXCEEDED
};

/** The gRPC status for a gateway error (2 UNKNOWN for a status without a mapping). */
export function grpcStatusOf(code: ErrorCode): number {
  return GRPC_BY_STATUS[statusOf(code)] ?? 2;
}

/** A gRPC request: `application/grpc` and its `+proto`/`+json`/`;…` variants, not gRPC-Web (its status travels in the body). */
export function isGrpcRequest(headers: Record<string, string | string[] | undefined>): boolean {
  const ct = headers["content-type"];
  if (typeof ct !== "string" || ct.length < 16) return false;
  const c = ct.toLowerCase();
  return c.startsWith("application/grpc") && (c.length === 16 || c[16] === "+" || c[16] === ";");
}

/**
 * The error as a gRPC Trailers-Only answer: status 200 and the gRPC status
 * in the one header block (the caller ends the response without a body, so
 * over HTTP/2 that block carries END_STREAM, which is what gRPC clients read
 * a status from).
 */
export function grpcErrorResponse(
  code: ErrorCode,
  requestId: string,
  message?: string,
): { status: number; headers: Record<string, string>; body: string } {
  return {
    status: 200,
    headers: {
      "content-type": "application/grpc",
      "grpc-status": String(grpcStatusOf(code)),
      "grpc-message": grpcPercentEncode(`${code}: ${message ?? table[code][1]}`),
      "x-request-id": requestId,
    },
    body: "",
  };
}

/** gRPC's Percent-Encoded grpc-message: bytes outside 0x20–0x7E, and "%", as %XX of their UTF-8. */
function grpcPercentEncode(text: string): string {
  let out = "";
  for (const b of Buffer.from(text, "utf8")) {
    out +=
      b < 0x20 || b > 0x7e || b === 0x25
        ? `%${b.toString(16).toUpperCase().padStart(2, "0")}`
        : String.fromCharCode(b);
  }
  return out;
}
