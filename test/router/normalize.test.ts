import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { normalizeConfigPath, normalizePath, splitTarget } from "../../src/router/normalize.js";

describe("normalizePath", () => {
  const cases: [string, string | null][] = [
    // already normal: returned as is
    ["/", "/"],
    ["/api/users/7", "/api/users/7"],
    ["/a.b/c-d_e~f", "/a.b/c-d_e~f"],
    ["/a/b/", "/a/b/"],
    ["/a/b..", "/a/b.."],
    ["/a:b@c!$&'()*+,;=", "/a:b@c!$&'()*+,;="],
    // dot segments (RFC 3986 §5.2.4)
    ["/a/./b/../c", "/a/c"],
    ["/a/b/..", "/a/"],
    ["/a/b/.", "/a/b/"],
    ["/..", "/"],
    ["/.", "/"],
    ["/../../a", "/a"],
    ["/a/../../b/", "/b/"],
    ["/.well-known/x", "/.well-known/x"],
    ["/a/...", "/a/..."],
    // merging "//"
    ["//a///b", "/a/b"],
    ["//", "/"],
    ["/a//", "/a/"],
    ["/a//./..//b", "/b"],
    // unreserved decoded, other escapes upper-cased (RFC 3986 §6.2.2)
    ["/%61%62c", "/abc"],
    ["/%41%5a%30%2D%2e%5F%7e", "/AZ0-._~"],
    ["/caf%c3%a9", "/caf%C3%A9"],
    ["/a%2ab", "/a%2Ab"],
    ["/a%20b", "/a%20b"],
    ["/%25", "/%25"],
    ["/%252F", "/%252F"],
    // encoded dot segments
    ["/%2e%2e/etc/passwd", "/etc/passwd"],
    ["/a/%2E/b", "/a/b"],
    ["/a/b/.%2e/c", "/a/c"],
    ["/a/%2e%2E", "/"],
    // rejected
    ["/a%2fb", null],
    ["/a%2Fb", null],
    ["/a%5Cb", null],
    ["/a%5cb", null],
    ["/a\\b", null],
    ["/a%00", null],
    ["/a\u0000b", null],
    ["/%zz", null],
    ["/%", null],
    // Encoded bytes must be UTF-8: an overlong "/" (%C0%AF), a lone byte, a cut sequence.
    ["/x%C0%AF", null],
    ["/x%c0%af/../admin", null],
    ["/%FF", null],
    ["/a%E2%82", null],
    ["/caf%C3%A9", "/caf%C3%A9"],
    ["/%E2%82%AC/./x", "/%E2%82%AC/x"],
    ["/a%4", null],
    ["/a%4g", null],
    // Every hex digit's bounds: 0-9, a-f, A-F decode; the characters just outside them do not.
    ["/%30%39%41%46%61%66", "/09AFaf"],
    ["/%7a%7A%5a", "/zzZ"],
    ["/a%0Ab%0a", "/a%0Ab%0A"],
    ["/%4@", null],
    ["/%4`", null],
    ["/%4/", null],
    ["/%4:", null],
    ["/%G1", null],
    ["/%g1", null],
    // An invalid low digit never makes up a byte with the high one ("%5z" is not "O", "%6z" not "_").
    ["/%5z", null],
    ["/%6z", null],
    ["/%7z", null],
    ["", null],
    ["a/b", null],
    ["*", null],
    ["http://example.com/a", null],
  ];
  for (const [input, expected] of cases) {
    test(`${JSON.stringify(input)} → ${JSON.stringify(expected)}`, () => {
      assert.equal(normalizePath(input), expected);
    });
  }

  test("is idempotent on every accepted case", () => {
    for (const [input] of cases) {
      const once = normalizePath(input);
      if (once !== null) assert.equal(normalizePath(once), once, input);
    }
  });
});

describe("normalizeConfigPath", () => {
  const cases: [string, string | null][] = [
    ["/api/users/", "/api/users/"],
    ["/café", "/caf%C3%A9"],
    ["/a b", "/a%20b"],
    ["/a/../b", "/b"],
    ["/a%2Fb", null],
    ["/\ud800", null],
    ["/\u{1F600}/x y", "/%F0%9F%98%80/x%20y"],
    ["/\u00e9\u00e8", "/%C3%A9%C3%A8"],
    ["api", null],
  ];
  for (const [input, expected] of cases) {
    test(`${JSON.stringify(input)} → ${JSON.stringify(expected)}`, () => {
      assert.equal(normalizeConfigPath(input), expected);
    });
  }
});

describe("splitTarget", () => {
  const cases: [string, { path: string; query: string }][] = [
    ["/a/b", { path: "/a/b", query: "" }],
    ["/a/b?x=1&y=2", { path: "/a/b", query: "x=1&y=2" }],
    ["/a?", { path: "/a", query: "" }],
    ["/a?b?c", { path: "/a", query: "b?c" }],
    ["/?x", { path: "/", query: "x" }],
  ];
  for (const [input, expected] of cases) {
    test(JSON.stringify(input), () => {
      assert.deepEqual(splitTarget(input), expected);
    });
  }
});
