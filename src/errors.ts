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
