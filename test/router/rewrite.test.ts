import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { compileMatcher, type RouteMatchSpec } from "../../src/router/match.js";
import { compileRewrite, type RewriteSpec } from "../../src/router/rewrite.js";

/** Match `path` against one route and rewrite it, as the gateway will. */
function upstreamPath(match: RouteMatchSpec, rewrite: RewriteSpec | undefined, path: string): string {
  const m = compileMatcher([{ spec: match, value: 0 }]).match({
    method: "GET",
    host: undefined,
    path,
    query: "",
    headers: {},
  });
  assert.ok(m, `route ${JSON.stringify(match)} should match ${path}`);
  const fn = compileRewrite(rewrite, match.path, match.pathType);
  return fn({ path, rest: m.rest, params: m.params });
}

type Case = [match: RouteMatchSpec, rewrite: RewriteSpec | undefined, path: string, expected: string];

const cases: Case[] = [
  // identity
  [{ path: "/api" }, undefined, "/api/users", "/api/users"],
  [{ path: "/api" }, {}, "/api/users/", "/api/users/"],
  // stripPrefix, by whole segment
  [{ path: "/api" }, { stripPrefix: "/api" }, "/api/users", "/users"],
  [{ path: "/api" }, { stripPrefix: "/api" }, "/api", "/"],
  [{ path: "/api" }, { stripPrefix: "/api" }, "/api/", "/"],
  [{ path: "/api" }, { stripPrefix: "/api/" }, "/api/users/7", "/users/7"],
  [{ path: "/" }, { stripPrefix: "/api" }, "/apix/users", "/apix/users"],
  [{ path: "/" }, { stripPrefix: "/api" }, "/other", "/other"],
  [{ path: "/" }, { stripPrefix: "/" }, "/a", "/a"],
  [{ path: "/api/users" }, { stripPrefix: "/api/users" }, "/api/users/7/x", "/7/x"],
  // path template with {rest}
  [{ path: "/api/users" }, { path: "/v2/users/{rest}" }, "/api/users/7", "/v2/users/7"],
  [{ path: "/api/users" }, { path: "/v2/users/{rest}" }, "/api/users", "/v2/users"],
  [{ path: "/api/users" }, { path: "/v2/users/{rest}" }, "/api/users/", "/v2/users/"],
  [{ path: "/api/users" }, { path: "/v2/users/{rest}" }, "/api/users/7/a/b", "/v2/users/7/a/b"],
  [{ path: "/api" }, { path: "/{rest}" }, "/api", "/"],
  [{ path: "/api" }, { path: "/{rest}" }, "/api/x", "/x"],
  [{ path: "/api" }, { path: "/v2{rest}" }, "/api/x", "/v2/x"],
  [{ path: "/api" }, { path: "/{rest}/tail" }, "/api", "/tail"],
  [{ path: "/api" }, { path: "/static" }, "/api/anything", "/static"],
  // template params
  [{ path: "/api/users/:id", pathType: "template" }, { path: "/v2/u/{id}" }, "/api/users/7", "/v2/u/7"],
  [
    { path: "/u/:user/o/:order", pathType: "template" },
    { path: "/orders/{order}/by/{user}.json" },
    "/u/ann/o/9",
    "/orders/9/by/ann.json",
  ],
  [{ path: "/f/:id/*", pathType: "template" }, { path: "/files/{id}/{rest}" }, "/f/3/a/b", "/files/3/a/b"],
  [{ path: "/f/:id/*", pathType: "template" }, { path: "/files/{id}/{rest}" }, "/f/3", "/files/3"],
  // regex named groups; the result is normalised again
  [
    { path: "^/api/(?<v>v\\d)/(?<tail>.*)$", pathType: "regex" },
    { path: "/{v}/{tail}" },
    "/api/v1/a/b",
    "/v1/a/b",
  ],
  [{ path: "^/api/(?<v>v\\d)/(?<tail>.*)$", pathType: "regex" }, { path: "/{v}/{tail}" }, "/api/v1/", "/v1/"],
  [{ path: "^/x(?<rest>/.*)?$", pathType: "regex" }, { path: "/y{rest}" }, "/x/1", "/y/1"],
  [{ path: "^/x(?<rest>/.*)?$", pathType: "regex" }, { path: "/y/{rest}" }, "/x", "/y/"],
  [{ path: "^/d(?<a>[^/]*)$", pathType: "regex" }, { path: "/p/.{a}/q" }, "/d.", "/q"],
  [{ path: "^/(?<a>[a-z]*)", pathType: "regex" }, { path: "/k/{a}/z" }, "/9", "/k/z"],
];

describe("compileRewrite", () => {
  for (const [match, rewrite, path, expected] of cases) {
    test(`${match.pathType ?? "prefix"} ${match.path} ${JSON.stringify(rewrite)}: ${path} → ${expected}`, () => {
      assert.equal(upstreamPath(match, rewrite, path), expected);
    });
  }

  test("a template with no variables is one constant", () => {
    const fn = compileRewrite({ path: "/caf\u00e9/./x" }, "/", "prefix");
    assert.equal(fn({ path: "/a", rest: "/a" }), "/caf%C3%A9/x");
  });

  const invalid: [RewriteSpec, RouteMatchSpec, RegExp][] = [
    [{ stripPrefix: "/a", path: "/b" }, {}, /mutually exclusive/],
    [{ path: "/v2/{id}" }, { path: "/api" }, /\{id\}, which the route's path does not define/],
    [{ path: "/v2/{rest}" }, { path: "/api", pathType: "exact" }, /\{rest\} but a exact route has no rest/],
    [{ path: "/v2/{rest}" }, { path: "/u/:id", pathType: "template" }, /has no rest/],
    [{ path: "/v2/{rest}" }, { path: "^/u", pathType: "regex" }, /has no rest/],
    [{ path: "v2/{rest}" }, {}, /rewrite\.path "v2\/\{rest\}" is not a valid absolute path/],
    [{ path: "/a%2Fb" }, {}, /not a valid absolute path/],
    [{ stripPrefix: "api" }, {}, /rewrite\.stripPrefix "api" is not a valid absolute path/],
  ];
  for (const [rewrite, match, message] of invalid) {
    test(`rejects ${JSON.stringify(rewrite)} on ${JSON.stringify(match)}`, () => {
      assert.throws(() => compileRewrite(rewrite, match.path, match.pathType), message);
    });
  }
});
