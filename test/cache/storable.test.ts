/**
 * The cache's reading of Cache-Control, unit by unit (issue 17's mutation group
 * cache-storable): parseCacheControl's settled text, names and delta-seconds,
 * and the request directives buildEntry hands the policy (names in lower case,
 * values as sent).
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { buildEntry, type Windows } from "../../src/cache/entry.js";
import { parseCacheControl } from "../../src/cache/freshness-fields.js";

describe("parseCacheControl", () => {
  test("names in lower case, values kept, empty parts skipped, delta-seconds settled last", () => {
    const cc = parseCacheControl('Public, , MAX-AGE=60,No-Cache="Set-Cookie" ,Private,');
    assert.deepEqual([...cc.names], ["public", "max-age", "no-cache", "private"]);
    assert.deepEqual([...cc.delta], [["max-age", 60]]);
    assert.equal(cc.text, 'public, no-cache="Set-Cookie", private, max-age=60');
  });

  test("absent: nothing; a name with spaces before '=' is trimmed", () => {
    assert.deepEqual(parseCacheControl(undefined), { text: "", names: new Set(), delta: new Map() });
    const cc = parseCacheControl("community =UCI");
    assert.deepEqual([...cc.names], ["community"]);
    assert.equal(cc.text, "community=UCI");
  });

  test("invalid delta-seconds count as 0: spaced, not digits, missing, or two different values", () => {
    const settled = (f: string) => [...parseCacheControl(f).delta];
    assert.deepEqual(settled("max-age =60"), [["max-age", 0]]);
    assert.deepEqual(settled("max-age=6o"), [["max-age", 0]]);
    assert.deepEqual(settled("max-age"), [["max-age", 0]]);
    assert.deepEqual(settled("max-age=60, max-age=70"), [["max-age", 0]]);
    assert.deepEqual(
      settled("max-age=60, MAX-AGE=60"),
      [["max-age", 60]],
      "the same value twice is one value",
    );
    assert.deepEqual(settled('s-maxage="30"'), [["s-maxage", 30]], "a quoted value is read (RFC 9111 §5.2)");
    assert.equal(parseCacheControl("max-age =60, public").text, "public, max-age=0");
  });
});

describe("buildEntry: the request's Cache-Control as the policy reads it", () => {
  const w: Windows = { ttl: 60_000, swr: 0, sie: 0 };
  const build = (cc: string) =>
    buildEntry(
      { method: "GET", url: "/x", headers: { host: "h", "cache-control": cc } },
      200,
      { "content-type": "text/plain", "cache-control": "max-age=30" },
      Buffer.from("x"),
      w,
      () => "",
    );

  test("NO-STORE from the client is no-store (names compared in lower case)", () => {
    assert.ok("reason" in build("NO-STORE"), "not stored");
    assert.ok("entry" in build("no-transform"), "stored otherwise");
  });

  test("directive names go lower case, their values as sent", () => {
    const r = build('Max-Age=100, No-Cache="X-Thing"');
    assert.ok("entry" in r);
    const reqcc = (r.entry.policy as { reqcc: Record<string, string> }).reqcc;
    assert.deepEqual(reqcc, { "max-age": "100", "no-cache": "X-Thing" });
  });
});
