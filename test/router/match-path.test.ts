import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { compileMatcher, type MatchRequest, type RouteMatchSpec } from "../../src/router/match.js";

function req(path: string, extra: Partial<MatchRequest> = {}): MatchRequest {
  return { method: "GET", host: "example.com", path, query: "", headers: {}, ...extra };
}

/** Match one path against one route: undefined, or the result's params and rest. */
function one(spec: RouteMatchSpec, path: string) {
  const r = compileMatcher([{ spec, value: "r" }]).match(req(path));
  return r && { params: r.params, rest: r.rest };
}

type Case = [spec: RouteMatchSpec, path: string, expected: ReturnType<typeof one>];

function table(name: string, cases: Case[]): void {
  describe(name, () => {
    for (const [spec, path, expected] of cases) {
      test(`${spec.pathType ?? "prefix"} ${spec.path ?? "(default)"} ~ ${path}`, () => {
        assert.deepEqual(one(spec, path), expected);
      });
    }
  });
}

const none = undefined;
const rest = (r: string, params?: Record<string, string>) => ({ params, rest: r });

table("prefix (by whole segments)", [
  [{ path: "/api/users" }, "/api/users", rest("")],
  [{ path: "/api/users" }, "/api/users/", rest("/")],
  [{ path: "/api/users" }, "/api/users/7", rest("/7")],
  [{ path: "/api/users" }, "/api/users/7/orders", rest("/7/orders")],
  [{ path: "/api/users" }, "/api/usersx", none],
  [{ path: "/api/users" }, "/api/user", none],
  [{ path: "/api/users" }, "/api", none],
  [{ path: "/api/users" }, "/API/users", none],
  [{ path: "/api/" }, "/api", rest("")],
  [{ path: "/api/" }, "/api/x", rest("/x")],
  [{ path: "/api/" }, "/apix", none],
  [{ path: "/" }, "/", rest("/")],
  [{ path: "/" }, "/anything/at/all", rest("/anything/at/all")],
  [{}, "/x", rest("/x")],
  [{ path: "/caf%c3%a9" }, "/caf%C3%A9/x", rest("/x")],
  [{ path: "/café" }, "/caf%C3%A9", rest("")],
]);

table("exact", [
  [{ path: "/health", pathType: "exact" }, "/health", rest("")],
  [{ path: "/health", pathType: "exact" }, "/health/", none],
  [{ path: "/health", pathType: "exact" }, "/health/x", none],
  [{ path: "/health", pathType: "exact" }, "/Health", none],
  [{ path: "/health/", pathType: "exact" }, "/health/", rest("")],
  [{ path: "/health/", pathType: "exact" }, "/health", none],
  [{ path: "/", pathType: "exact" }, "/", rest("")],
  [{ path: "/", pathType: "exact" }, "/a", none],
]);

table("regex (anchored as written, named groups → params)", [
  [{ path: "^/v[0-9]+/", pathType: "regex" }, "/v2/users", rest("")],
  [{ path: "^/v[0-9]+/", pathType: "regex" }, "/x/v2/users", none],
  [{ path: "/v[0-9]+/", pathType: "regex" }, "/x/v2/users", rest("")],
  [{ path: "^/users/(?<id>\\d+)$", pathType: "regex" }, "/users/42", rest("", { id: "42" })],
  [{ path: "^/users/(?<id>\\d+)$", pathType: "regex" }, "/users/42/x", none],
  [
    { path: "^/(?<a>x)?(?<b>y)$", pathType: "regex" },
    "/y",
    rest("", { b: "y" }), // a group that did not participate is left out
  ],
]);

table("template", [
  [{ path: "/api/users/:id", pathType: "template" }, "/api/users/7", rest("", { id: "7" })],
  [{ path: "/api/users/:id", pathType: "template" }, "/api/users/7/", none],
  [{ path: "/api/users/:id", pathType: "template" }, "/api/users/", none],
  [{ path: "/api/users/:id", pathType: "template" }, "/api/users", none],
  [{ path: "/api/users/:id", pathType: "template" }, "/api/users/7/orders", none],
  [{ path: "/api/users/:id", pathType: "template" }, "/api/userz/7", none],
  [{ path: "/api/users/:id", pathType: "template" }, "/api/usersx/7", none],
  [{ path: "/u/:user/o/:order", pathType: "template" }, "/u/ann/o/9", rest("", { user: "ann", order: "9" })],
  [{ path: "/u/:user/o/:order", pathType: "template" }, "/u/ann/x/9", none],
  [{ path: "/u/:id/", pathType: "template" }, "/u/1/", rest("", { id: "1" })],
  [{ path: "/u/:id/", pathType: "template" }, "/u/1", none],
  [{ path: "/static", pathType: "template" }, "/static", rest("")],
  [{ path: "/", pathType: "template" }, "/", rest("")],
  [{ path: "/", pathType: "template" }, "/a", none],
  [{ path: "/files/:id/*", pathType: "template" }, "/files/3", rest("", { id: "3" })],
  [{ path: "/files/:id/*", pathType: "template" }, "/files/3/", rest("/", { id: "3" })],
  [{ path: "/files/:id/*", pathType: "template" }, "/files/3/a/b", rest("/a/b", { id: "3" })],
  [{ path: "/files/:id/*", pathType: "template" }, "/files", none],
  [{ path: "/*", pathType: "template" }, "/a/b", rest("/a/b")],
  [{ path: "/u/:id", pathType: "template" }, "/u/caf%C3%A9", rest("", { id: "caf%C3%A9" })],
]);

describe("invalid match paths are rejected at compile time", () => {
  const bad: [RouteMatchSpec, RegExp][] = [
    [{ path: "^/(unclosed", pathType: "regex" }, /routes\[0\]\.match: regex .* does not compile/],
    [{ path: "/u/:", pathType: "template" }, /bad parameter name/],
    [{ path: "/u/:a-b", pathType: "template" }, /bad parameter name/],
    [{ path: "/u/:id/:id", pathType: "template" }, /duplicate parameter/],
    [{ path: "/u/*/x", pathType: "template" }, /only allowed as the last segment/],
    [{ path: "/a%2Fb" }, /not a valid absolute path/],
    [{ path: "api" }, /not a valid absolute path/],
    [{ path: "/a", pathType: "glob" as "prefix" }, /unknown pathType/],
  ];
  for (const [spec, message] of bad) {
    test(JSON.stringify(spec), () => {
      assert.throws(() => compileMatcher([{ spec, value: 1 }]), message);
    });
  }
});
