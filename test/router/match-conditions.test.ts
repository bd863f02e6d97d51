import assert from "node:assert/strict";
import { describe, test } from "node:test";
import {
  compileMatcher,
  type MatchRequest,
  type RouteMatchSpec,
  validateMatchSpec,
} from "../../src/router/match.js";
import { normalizeHost, parseCookies } from "../../src/router/request-view.js";

function req(extra: Partial<MatchRequest> = {}): MatchRequest {
  return { method: "GET", host: "example.com", path: "/", query: "", headers: {}, ...extra };
}

function matches(spec: RouteMatchSpec, r: Partial<MatchRequest>): boolean {
  return compileMatcher([{ spec, value: 0 }]).match(req(r)) !== undefined;
}

type Case = [name: string, spec: RouteMatchSpec, request: Partial<MatchRequest>, expected: boolean];

function table(name: string, cases: Case[]): void {
  describe(name, () => {
    for (const [title, spec, request, expected] of cases) {
      test(`${title} → ${expected ? "match" : "no match"}`, () => {
        assert.equal(matches(spec, request), expected);
      });
    }
  });
}

const hosts = { hosts: ["api.example.com", "*.example.com", "[::1]"] };

table("methods", [
  ["GET in [GET, POST]", { methods: ["GET", "POST"] }, { method: "GET" }, true],
  ["POST in [GET, POST]", { methods: ["GET", "POST"] }, { method: "POST" }, true],
  ["DELETE not in [GET, POST]", { methods: ["GET", "POST"] }, { method: "DELETE" }, false],
  ["HEAD is not GET", { methods: ["GET"] }, { method: "HEAD" }, false],
  ["config lower-case is upper-cased", { methods: ["get"] }, { method: "GET" }, true],
  ["absent = any", {}, { method: "PURGE" }, true],
  ["empty = any", { methods: [] }, { method: "PURGE" }, true],
]);

table("hosts", [
  ["exact", { hosts: ["api.example.com"] }, { host: "api.example.com" }, true],
  ["case-insensitive", hosts, { host: "API.Example.COM" }, true],
  ["port ignored", hosts, { host: "api.example.com:8443" }, true],
  ["trailing dot (FQDN)", hosts, { host: "api.example.com." }, true],
  ["wildcard, one label", hosts, { host: "a.example.com" }, true],
  ["wildcard, two labels", hosts, { host: "a.b.example.com" }, true],
  ["wildcard, with port", hosts, { host: "A.B.example.com:80" }, true],
  ["wildcard never the apex", { hosts: ["*.example.com"] }, { host: "example.com" }, false],
  ["wildcard needs a dot boundary", { hosts: ["*.example.com"] }, { host: "badexample.com" }, false],
  ["wildcard, empty label", { hosts: ["*.example.com"] }, { host: ".example.com" }, false],
  ["other domain", hosts, { host: "example.org" }, false],
  ["suffix is not a match", { hosts: ["api.example.com"] }, { host: "xapi.example.com" }, false],
  ["IPv6 with port", hosts, { host: "[::1]:8080" }, true],
  ["IPv6 without port", hosts, { host: "[::1]" }, true],
  ["no Host", hosts, { host: undefined }, false],
  ["config host case-insensitive", { hosts: ["API.example.com"] }, { host: "api.example.com" }, true],
  ["absent = any", {}, { host: undefined }, true],
]);

table("headers", [
  ["exact", { headers: { "x-version": "2" } }, { headers: { "x-version": "2" } }, true],
  ["exact, other value", { headers: { "x-version": "2" } }, { headers: { "x-version": "3" } }, false],
  ["exact, missing", { headers: { "x-version": "2" } }, {}, false],
  ["exact, case-sensitive value", { headers: { "x-env": "prod" } }, { headers: { "x-env": "PROD" } }, false],
  [
    "config name case-insensitive",
    { headers: { "X-Version": "2" } },
    { headers: { "x-version": "2" } },
    true,
  ],
  ["array: any element", { headers: { "x-a": "2" } }, { headers: { "x-a": ["1", "2"] } }, true],
  ["array: none", { headers: { "x-a": "3" } }, { headers: { "x-a": ["1", "2"] } }, false],
  ["regex", { headers: { "x-version": { regex: "^2\\." } } }, { headers: { "x-version": "2.1" } }, true],
  [
    "regex, no",
    { headers: { "x-version": { regex: "^2\\." } } },
    { headers: { "x-version": "12.1" } },
    false,
  ],
  ["regex, missing", { headers: { "x-version": { regex: ".*" } } }, {}, false],
  ["regex on array", { headers: { "x-a": { regex: "^b" } } }, { headers: { "x-a": ["a", "b"] } }, true],
  ["present: true", { headers: { "x-debug": { present: true } } }, { headers: { "x-debug": "" } }, true],
  ["present: true, missing", { headers: { "x-debug": { present: true } } }, {}, false],
  ["present: false, missing", { headers: { "x-debug": { present: false } } }, {}, true],
  [
    "present: false, there",
    { headers: { "x-debug": { present: false } } },
    { headers: { "x-debug": "1" } },
    false,
  ],
  ["all must hold", { headers: { a: "1", b: "2" } }, { headers: { a: "1", b: "3" } }, false],
]);

table("query", [
  ["exact", { query: { beta: "1" } }, { query: "beta=1" }, true],
  ["among others", { query: { beta: "1" } }, { query: "a=2&beta=1&c" }, true],
  ["other value", { query: { beta: "1" } }, { query: "beta=2" }, false],
  ["missing", { query: { beta: "1" } }, { query: "" }, false],
  ["first occurrence wins", { query: { beta: "1" } }, { query: "beta=2&beta=1" }, false],
  ["first occurrence wins (2)", { query: { beta: "1" } }, { query: "beta=1&beta=2" }, true],
  ["percent-decoded", { query: { q: "a b/é" } }, { query: "q=a%20b%2F%C3%A9" }, true],
  ["plus is space", { query: { q: "a b" } }, { query: "q=a+b" }, true],
  ["decoded name", { query: { "a b": "1" } }, { query: "a%20b=1" }, true],
  ["empty value", { query: { flag: "" } }, { query: "flag" }, true],
  ["name is case-sensitive", { query: { beta: "1" } }, { query: "Beta=1" }, false],
  ["bad escape kept raw", { query: { q: "%zz" } }, { query: "q=%zz" }, true],
]);

table("cookies", [
  ["exact", { cookies: { canary: "1" } }, { headers: { cookie: "canary=1" } }, true],
  ["among others", { cookies: { canary: "1" } }, { headers: { cookie: "a=2; canary=1; b=3" } }, true],
  ["no space after ;", { cookies: { canary: "1" } }, { headers: { cookie: "a=2;canary=1" } }, true],
  ["other value", { cookies: { canary: "1" } }, { headers: { cookie: "canary=0" } }, false],
  ["no cookie header", { cookies: { canary: "1" } }, {}, false],
  [
    "first occurrence wins",
    { cookies: { canary: "1" } },
    { headers: { cookie: "canary=0; canary=1" } },
    false,
  ],
  ["quoted value", { cookies: { canary: "1" } }, { headers: { cookie: 'canary="1"' } }, true],
  ["name is case-sensitive", { cookies: { canary: "1" } }, { headers: { cookie: "Canary=1" } }, false],
  ["not a substring", { cookies: { canary: "1" } }, { headers: { cookie: "xcanary=1" } }, false],
]);

table("all conditions together", [
  [
    "everything holds",
    {
      path: "/api",
      methods: ["GET"],
      hosts: ["*.example.com"],
      headers: { v: "2" },
      query: { b: "1" },
      cookies: { c: "1" },
    },
    { path: "/api/x", host: "a.example.com", headers: { v: "2", cookie: "c=1" }, query: "b=1" },
    true,
  ],
  [
    "cookie fails last",
    {
      path: "/api",
      methods: ["GET"],
      hosts: ["*.example.com"],
      headers: { v: "2" },
      query: { b: "1" },
      cookies: { c: "1" },
    },
    { path: "/api/x", host: "a.example.com", headers: { v: "2", cookie: "c=2" }, query: "b=1" },
    false,
  ],
]);

describe("method bitmask", () => {
  // 35 distinct methods: the last five share the OTHER bit with unknown methods.
  const names = Array.from({ length: 35 }, (_, i) => `M${i}`);
  const matcher = compileMatcher([
    ...names.map((m) => ({ spec: { path: `/${m}`, methods: [m] }, value: m })),
    { spec: { path: "/any" }, value: "any" },
  ]);
  for (const i of [0, 29, 30, 34]) {
    const m = names[i];
    test(`method #${i} matches its own route only`, () => {
      assert.equal(matcher.match(req({ method: m, path: `/${m}` }))?.value, m);
      const other = names[(i + 31) % 35]; // another method, overflowing or not
      assert.equal(matcher.match(req({ method: other, path: `/${m}` })), undefined);
    });
  }
  test("a method no route names passes routes without methods only", () => {
    assert.equal(matcher.match(req({ method: "PURGE", path: "/M34" })), undefined);
    assert.equal(matcher.match(req({ method: "PURGE", path: "/any" }))?.value, "any");
  });
});

describe("helpers", () => {
  const hostCases: [string | undefined, string | undefined][] = [
    ["Example.COM", "example.com"],
    ["example.com:8080", "example.com"],
    ["example.com.", "example.com"],
    ["[::1]:8080", "[::1]"],
    ["[2001:DB8::1]", "[2001:db8::1]"],
    ["::1", "::1"],
    ["", undefined],
    [undefined, undefined],
  ];
  for (const [input, expected] of hostCases) {
    test(`normalizeHost(${JSON.stringify(input)})`, () => assert.equal(normalizeHost(input), expected));
  }

  test("parseCookies follows RFC 6265 pairs", () => {
    assert.deepEqual(
      [...parseCookies(' a=1;b = 2 ; junk; c="q"; a=9; =x; d=x=y').entries()],
      [
        ["a", "1"],
        ["b", "2"],
        ["c", "q"],
        ["d", "x=y"],
      ],
    );
  });

  test("query and cookies are parsed lazily, once per request", () => {
    const matcher = compileMatcher([
      { spec: { path: "/a" }, value: "path-only" },
      { spec: { query: { x: "1" } }, value: "q1" },
      { spec: { query: { x: "2" }, cookies: { c: "1" } }, value: "q2" },
      { spec: { cookies: { c: "2" } }, value: "c2" },
    ]);
    let cookieReads = 0;
    const headers = {
      get cookie() {
        cookieReads++;
        return "c=2";
      },
    };
    assert.equal(matcher.match(req({ path: "/a", headers }))?.value, "path-only");
    assert.equal(cookieReads, 0);
    assert.equal(matcher.match(req({ path: "/b", query: "x=2", headers }))?.value, "c2");
    assert.equal(cookieReads, 1);
  });

  test("validateMatchSpec reports without throwing", () => {
    assert.equal(validateMatchSpec({ path: "/api" }), undefined);
    assert.match(validateMatchSpec({ hosts: ["a.com:80"] }) ?? "", /host "a\.com:80": .*without port/);
    assert.match(validateMatchSpec({ hosts: ["*"] }) ?? "", /host "\*"/);
    assert.match(validateMatchSpec({ hosts: ["a.*.com"] }) ?? "", /host "a\.\*\.com"/);
    assert.match(
      validateMatchSpec({ headers: { x: { regex: "(" } } }) ?? "",
      /header x: regex does not compile/,
    );
    assert.match(
      validateMatchSpec({ headers: { x: { nope: 1 } as unknown as { present: boolean } } }) ?? "",
      /expected a string, \{ regex \} or \{ present \}/,
    );
  });
});
