import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { compileMatcher, type MatchRequest } from "../../src/router/match.js";

function req(path: string, extra: Partial<MatchRequest> = {}): MatchRequest {
  return { method: "GET", host: "api.example.com", path, query: "", headers: {}, ...extra };
}

const matcher = compileMatcher([
  { spec: { path: "/health", pathType: "exact" }, value: "health" },
  {
    spec: { path: "/api/users", methods: ["GET", "POST"], headers: { "x-version": "2" } },
    value: "users-v2",
  },
  { spec: { path: "/api/users/:id", pathType: "template" }, value: "user" },
  { spec: { path: "/api/users" }, value: "users" },
  { spec: { path: "/api", hosts: ["*.example.com"] }, value: "api" },
  { spec: { path: "/" }, value: "fallback" },
]);

describe("first match wins, in file order", () => {
  const cases: [string, Partial<MatchRequest>, string, number][] = [
    ["/health", {}, "health", 0],
    ["/health/x", {}, "fallback", 5],
    ["/api/users/7", { headers: { "x-version": "2" } }, "users-v2", 1],
    ["/api/users/7", { headers: { "x-version": "2" }, method: "DELETE" }, "user", 2],
    ["/api/users/7", {}, "user", 2],
    ["/api/users/7/orders", {}, "users", 3],
    ["/api/users", {}, "users", 3],
    ["/api/usersx", {}, "api", 4],
    ["/api/usersx", { host: "example.com" }, "fallback", 5],
    ["/other", {}, "fallback", 5],
  ];
  for (const [path, extra, value, index] of cases) {
    test(`${extra.method ?? "GET"} ${path} ${JSON.stringify(extra.headers ?? {})} → ${value}`, () => {
      const r = matcher.match(req(path, extra));
      assert.equal(r?.value, value);
      assert.equal(r?.index, index);
    });
  }

  test("the full result carries params and rest", () => {
    assert.deepEqual(matcher.match(req("/api/users/7")), {
      value: "user",
      index: 2,
      params: { id: "7" },
      rest: "",
    });
    assert.deepEqual(matcher.match(req("/api/users/7/orders")), {
      value: "users",
      index: 3,
      params: undefined,
      rest: "/7/orders",
    });
  });

  test("params of a template that failed later do not leak into a prefix match", () => {
    const m = compileMatcher([
      { spec: { path: "/u/:id", pathType: "template", methods: ["POST"] }, value: "a" },
      { spec: { path: "/u/:id", pathType: "template", headers: { x: "1" } }, value: "b" },
      { spec: { path: "/u" }, value: "c" },
    ]);
    assert.deepEqual(m.match(req("/u/1")), { value: "c", index: 2, params: undefined, rest: "/1" });
  });

  test("no route matches → undefined", () => {
    const m = compileMatcher([{ spec: { path: "/only" }, value: 1 }]);
    assert.equal(m.match(req("/else")), undefined);
    assert.equal(compileMatcher([]).match(req("/")), undefined);
  });

  test("size and compile errors name the route index", () => {
    assert.equal(matcher.size, 6);
    assert.throws(
      () =>
        compileMatcher([
          { spec: {}, value: 0 },
          { spec: { path: "(", pathType: "regex" }, value: 1 },
        ]),
      /^Error: routes\[1\]\.match: regex "\(" does not compile/,
    );
  });
});

describe("explain", () => {
  test("every route: matched, or the first reason it did not", () => {
    const m = compileMatcher([
      { spec: { path: "/api", methods: ["GET", "POST"] }, value: 0 },
      { spec: { path: "/x" }, value: 1 },
      { spec: { path: "/api/users/:id", pathType: "template" }, value: 2 },
      { spec: { hosts: ["api.example.com", "*.example.com"] }, value: 3 },
      { spec: { headers: { "x-version": "2" } }, value: 4 },
      { spec: { headers: { "x-version": { regex: "^3" } } }, value: 5 },
      { spec: { headers: { "x-debug": { present: false } } }, value: 6 },
      { spec: { query: { beta: "1" } }, value: 7 },
      { spec: { cookies: { canary: "1" } }, value: 8 },
      { spec: { path: "/api", methods: ["DELETE"], hosts: ["other.org"] }, value: 9 },
      { spec: { path: "/api", pathType: "exact" }, value: 10 },
      { spec: { path: "^/api/u", pathType: "regex" }, value: 11 },
    ]);
    const lines = m.explain(
      req("/api/users", {
        method: "DELETE",
        host: "Example.com:8080",
        headers: { "x-version": "2", "x-debug": "on", cookie: "canary=0" },
        query: "beta=2",
      }),
    );
    assert.deepEqual(lines, [
      { index: 0, matched: false, reason: "method DELETE not in [GET, POST]" },
      { index: 1, matched: false, reason: "path /api/users does not match prefix /x" },
      { index: 2, matched: false, reason: "path /api/users does not match template /api/users/:id" },
      { index: 3, matched: false, reason: "host example.com not in [api.example.com, *.example.com]" },
      { index: 4, matched: true },
      { index: 5, matched: false, reason: 'header x-version: expected /^3/, got "2"' },
      { index: 6, matched: false, reason: 'header x-debug: expected absent, got "on"' },
      { index: 7, matched: false, reason: 'query beta: expected "1", got "2"' },
      { index: 8, matched: false, reason: 'cookie canary: expected "1", got "0"' },
      { index: 9, matched: false, reason: "host example.com not in [other.org]" },
      { index: 10, matched: false, reason: "path /api/users does not match exact /api" },
      { index: 11, matched: true },
    ]);
  });

  test("missing values read as none", () => {
    const m = compileMatcher([
      { spec: { headers: { "x-version": "2" } }, value: 0 },
      { spec: { headers: { "x-tok": { present: true } } }, value: 1 },
      { spec: { query: { beta: "1" } }, value: 2 },
      { spec: { cookies: { canary: "1" } }, value: 3 },
      { spec: { hosts: ["a.com"] }, value: 4 },
    ]);
    assert.deepEqual(
      m.explain(req("/", { host: undefined })).map((l) => (l.matched ? "matched" : l.reason)),
      [
        'header x-version: expected "2", got none',
        "header x-tok: expected present, got none",
        'query beta: expected "1", got none',
        'cookie canary: expected "1", got none',
        "host (none) not in [a.com]",
      ],
    );
  });

  test("agrees with match on which route wins", () => {
    const request = req("/api/users/7", { method: "DELETE", headers: { "x-version": "2" } });
    const first = matcher.explain(request).find((l) => l.matched);
    assert.equal(first?.index, matcher.match(request)?.index);
    assert.equal(first?.index, 2);
  });
});
