import assert from "node:assert/strict";
import { test } from "node:test";
import { errorBody, errors, rawErrorResponse } from "../src/errors.js";

test("the SY_* table is pinned to SPEC §5", () => {
  const table = Object.fromEntries(Object.entries(errors).map(([code, E]) => [code, new E().statusCode]));
  assert.deepEqual(table, {
    SY_BAD_PATH: 400,
    SY_BAD_REQUEST: 400,
    SY_AUTH_MISSING: 401,
    SY_AUTH_INVALID: 401,
    SY_AUTH_FORBIDDEN: 403,
    SY_UNAUTHORIZED: 401,
    SY_NO_ROUTE: 404,
    SY_REQUEST_TIMEOUT: 408,
    SY_BODY_TOO_LARGE: 413,
    SY_RATE_LIMITED: 429,
    SY_HEADERS_TOO_LARGE: 431,
    SY_UPSTREAM_CONNECT: 502,
    SY_UPSTREAM_RESET: 502,
    SY_NO_HEALTHY_TARGET: 503,
    SY_CIRCUIT_OPEN: 503,
    SY_STORE_UNAVAILABLE: 503,
    SY_UPSTREAM_TIMEOUT: 504,
    SY_INTERNAL: 500,
    SY_NOT_FOUND: 404,
    SY_NOT_CACHED: 504,
  });
  for (const [code, E] of Object.entries(errors)) assert.equal(new E().code, code);
});

test("the public JSON shape, and a raw response for bare sockets", () => {
  assert.deepEqual(errorBody("SY_UPSTREAM_CONNECT", "r1"), {
    statusCode: 502,
    error: "Bad Gateway",
    code: "SY_UPSTREAM_CONNECT",
    message: "The upstream service could not be reached",
    requestId: "r1",
  });
  const raw = rawErrorResponse("SY_HEADERS_TOO_LARGE", "r2");
  assert.match(raw, /^HTTP\/1\.1 431 Request Header Fields Too Large\r\n/);
  assert.match(raw, /\r\nConnection: close\r\n/);
  const body = raw.slice(raw.indexOf("\r\n\r\n") + 4);
  assert.equal(JSON.parse(body).code, "SY_HEADERS_TOO_LARGE");
  assert.match(raw, new RegExp(`Content-Length: ${Buffer.byteLength(body)}\\r\\n`));
});
