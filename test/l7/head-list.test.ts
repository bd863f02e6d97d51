/**
 * The head the forwarder writes itself (plugins/balance.ts onHead) is a flat
 * [name, value, …] list: the route's own fields first, then the upstream's
 * end-to-end ones. These are the merge rules reply-from's path has too.
 */
import assert from "node:assert/strict";
import type { IncomingHttpHeaders } from "node:http";
import { test } from "node:test";
import { appendEndToEnd } from "../../plugins/balance.js";

test("appendEndToEnd: the upstream's field replaces the route's own in place; Set-Cookie adds up", () => {
  const list: unknown[] = ["x-ratelimit-limit", "10", "set-cookie", "own=1"];
  const upstream: IncomingHttpHeaders = {
    "content-type": "text/plain",
    "x-ratelimit-limit": "99",
    "set-cookie": ["a=1", "b=2"],
  };
  appendEndToEnd(upstream, list, list.length, undefined);
  assert.deepEqual(list, [
    "x-ratelimit-limit",
    "99",
    "set-cookie",
    ["own=1", "a=1", "b=2"],
    "content-type",
    "text/plain",
  ]);
});

test("appendEndToEnd: hop-by-hop fields, those Connection names, pseudo-headers and dropped names stay behind", () => {
  const list: unknown[] = [];
  const upstream = {
    connection: "x-hop, keep-alive",
    "keep-alive": "timeout=5",
    "transfer-encoding": "chunked",
    "x-hop": "1",
    ":status": "200",
    "access-control-allow-origin": "*",
    etag: '"v1"',
  } as IncomingHttpHeaders;
  appendEndToEnd(upstream, list, 0, new Set(["access-control-allow-origin"]));
  assert.deepEqual(list, ["etag", '"v1"']);
});

test("appendEndToEnd: with no own fields, an upstream name is never matched against earlier upstream slots", () => {
  // own = 0: the search for a hook's field of the same name must not look at what was appended.
  const list: unknown[] = [];
  appendEndToEnd({ vary: "origin", "x-a": "vary" }, list, 0, undefined);
  assert.deepEqual(list, ["vary", "origin", "x-a", "vary"]);
});
