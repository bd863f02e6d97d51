/**
 * The cache's reading of Cache-Control, unit by unit (issue 17's mutation group
 * cache-storable): parseCacheControl's settled text, names and delta-seconds,
 * and the request directives buildEntry hands the policy (names in lower case,
 * values as sent).
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { buildEntry, revalidated, type Windows } from "../../src/cache/entry.js";
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

describe("revalidated: a targeted field that is not passed on still governs", () => {
  // passTargeted: false strips CDN-Cache-Control from the stored headers; the entry keeps it
  // aside (entry.targeted) so that a 304 without it does not hand the lifetime to Cache-Control.
  const w: Windows = {
    ttl: 3_600_000,
    swr: 0,
    sie: 0,
    targeting: { fields: ["cdn-cache-control"], pass: false },
  };
  const req = { method: "GET", url: "/x", headers: { host: "h" } };
  const headers = { etag: '"v1"', "cache-control": "max-age=5", "cdn-cache-control": "max-age=600" };

  test("the stored entry keeps the field aside, not in its headers", () => {
    const r = buildEntry(req, 200, headers, Buffer.from("x"), w, () => "", 0);
    assert.ok("entry" in r);
    assert.equal(r.entry.headers["cdn-cache-control"], undefined, "stripped from what clients see");
    assert.deepEqual(r.entry.targeted, ["cdn-cache-control", "max-age=600"]);
    assert.equal(r.entry.lifetime, 600_000);
  });

  test("after a 304 that does not repeat it, the lifetime is still the targeted one", () => {
    const first = buildEntry(req, 200, headers, Buffer.from("x"), w, () => "", 0);
    assert.ok("entry" in first);
    const r = revalidated(first.entry, req, { etag: '"v1"' }, w, () => "", 700_000);
    assert.ok("entry" in r, "the 304 selects the entry");
    assert.equal(r.entry.lifetime, 600_000, "CDN-Cache-Control max-age=600, not Cache-Control max-age=5");
    assert.deepEqual(r.entry.targeted, ["cdn-cache-control", "max-age=600"]);
    assert.equal(r.entry.headers["cdn-cache-control"], undefined);
  });
});
