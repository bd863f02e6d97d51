/**
 * The lanes' stand-ins for Fastify's Reply name header fields as Fastify does:
 * lower-cased, so a hook's 'X-Foo' and the upstream's 'x-foo' are one field
 * on both paths, never two on the wire.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { HeadReply } from "../../src/lane-exchange.js";

test("HeadReply: header, getHeader and removeHeader take any case and keep one lower-case field", () => {
  const head: Record<string, unknown> = { "x-upstream": "a", vary: "accept" };
  const reply = new HeadReply(head);
  reply.header("X-Upstream", "b").header("Access-Control-Allow-Origin", "*");
  assert.deepEqual(head, { "x-upstream": "b", vary: "accept", "access-control-allow-origin": "*" });
  assert.equal(reply.getHeader("VARY"), "accept");
  reply.removeHeader("Vary").removeHeader("X-Absent");
  assert.deepEqual(head, { "x-upstream": "b", "access-control-allow-origin": "*" });
});
