/**
 * The lanes' stand-ins for Fastify's Reply name header fields as Fastify does:
 * lower-cased, so a hook's 'X-Foo' and the upstream's 'x-foo' are one field
 * on both paths, never two on the wire.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { HeadList } from "../../src/lane-exchange.js";

test("HeadList: header, getHeader and removeHeader take any case and keep one lower-case field", () => {
  const list: unknown[] = ["x-upstream", "a", "vary", "accept"];
  const reply = new HeadList(list);
  reply.header("X-Upstream", "b").header("Access-Control-Allow-Origin", "*");
  assert.deepEqual(list, ["x-upstream", "b", "vary", "accept", "access-control-allow-origin", "*"]);
  assert.equal(reply.getHeader("VARY"), "accept");
  assert.equal(reply.getHeader("x-absent"), undefined);
  reply.removeHeader("Vary").removeHeader("X-Absent");
  assert.deepEqual(list, ["x-upstream", "b", "access-control-allow-origin", "*"]);
  // A value is never taken for a name: the search steps over name slots only.
  const tricky = new HeadList(["x-a", "vary", "vary", "origin"]);
  assert.equal(tricky.getHeader("vary"), "origin");
  tricky.removeHeader("vary");
  assert.deepEqual(tricky.list, ["x-a", "vary"]);
});
