/**
 * Issue 15: property-based fuzzing (fast-check) of everything that parses
 * untrusted or hand-written input. routes.yaml (random configs, valid and
 * not, and the shipped file mutated) loads cleanly or fails with a
 * ConfigError whose every line is `routes.yaml:LINE:COL path: message` —
 * never another throw, and a config that loads builds its generation.
 * Request paths and headers go through the normaliser and the router without
 * a throw, and no spelling of a path reaches /admin's route unless its
 * normalised form is under /admin. PROXY protocol headers and TLS ClientHello
 * bytes, random or mutated from real ones, get need/error/value, never a
 * throw. numRuns are bounded so the suite stays fast (a few seconds).
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import type { IncomingMessage } from "node:http";
import net, { type AddressInfo } from "node:net";
import { join } from "node:path";
import { before, describe, test } from "node:test";
import tls from "node:tls";
import fc from "fast-check";
import { stringify } from "yaml";
import { ConfigError, parseConfig } from "../../src/config/load.js";
import { BalancerNames } from "../../src/config/schema.js";
import { buildGeneration } from "../../src/generation.js";
import { encodeProxyHeader, parseProxyHeader } from "../../src/l4/proxy-protocol.js";
import { parseClientHello } from "../../src/l4/sni.js";
import { matchIncoming } from "../../src/router/incoming.js";
import { normalizePath } from "../../src/router/normalize.js";

const root = join(import.meta.dirname, "..", "..");
/** SY_FUZZ_SCALE=20 for a deep run; the default keeps the suite fast. */
const SCALE = Number(process.env.SY_FUZZ_SCALE ?? 1);
/**
 * The suite's runs are reproducible: one fixed seed, so a red CI is a change's fault, never the
 * dice's. SY_FUZZ_SEED=random explores new inputs (fast-check prints the seed of any failure:
 * rerun with SY_FUZZ_SEED=<it>); what such a run finds becomes a named test, as below.
 */
const SEED = process.env.SY_FUZZ_SEED === "random" ? undefined : Number(process.env.SY_FUZZ_SEED ?? 20261203);
const runs = (n: number) => ({ numRuns: Math.max(1, Math.round(n * SCALE)), seed: SEED });
const RUNS = runs(300);

// ---------- routes.yaml ----------

const junk = fc.oneof(
  fc.string({ maxLength: 8 }),
  fc.integer({ min: -2, max: 70000 }),
  fc.boolean(),
  fc.constant(null),
  fc.constant([]),
  fc.constant({}),
);
// Mostly well-typed values, now and then junk: enough configs load to test the valid side too.
const maybe = <T>(a: fc.Arbitrary<T>) =>
  fc.option(fc.oneof({ weight: 40, arbitrary: a }, { weight: 1, arbitrary: junk }), {
    nil: undefined,
    freq: 3,
  });
const duration = fc.constantFrom("250ms", "1s", "5m", "1h", "0s", "1.5s", "10", "fast", "-1s");
const name = fc.constantFrom("users", "orders", "a", "b-1", "x.y", "", "Bad Name", "users");
const path = fc.constantFrom(
  "/",
  "/api",
  "/api/users/",
  "/a/:id",
  "/a/:id/*",
  "^/re/(?<n>[0-9]+)$",
  "^/(a+)+$",
  "(",
  "api",
  "/a/../b",
  "/%2f",
  "/..;/x",
  "/ä",
  "{rest}",
);
const target = fc.oneof(
  fc.constantFrom(
    "http://127.0.0.1:3001",
    "https://127.0.0.1:3002",
    "tcp://127.0.0.1:5432",
    "udp://127.0.0.1:53",
    "http://[::1]:80",
    "ftp://x",
    "http://",
    "127.0.0.1:80",
  ),
  fc.record({
    url: fc.constantFrom("http://127.0.0.1:3001", "nope"),
    weight: maybe(fc.integer({ min: -1, max: 5 })),
  }),
);
const service = fc.record(
  {
    targets: maybe(fc.array(target, { maxLength: 3 })),
    // The schema's own names, and one it does not know.
    balancer: maybe(fc.constantFrom(...BalancerNames, "rr")),
    hash: maybe(
      fc.record({
        on: fc.constantFrom("ip", "header", "cookie", "path", "query", "moon"),
        name: maybe(name),
      }),
    ),
    retries: maybe(
      fc.record({
        attempts: maybe(fc.integer({ min: -1, max: 5 })),
        budget: maybe(fc.constantFrom("20%", "200%", "x")),
      }),
    ),
    timeouts: maybe(fc.record({ connect: maybe(duration), request: maybe(duration) })),
    healthCheck: maybe(
      fc.record({
        path: maybe(path),
        interval: maybe(duration),
        expectStatus: maybe(fc.constantFrom("200-399", "200", "x")),
      }),
    ),
    maxConnectionsPerTarget: maybe(fc.integer({ min: -1, max: 10 })),
  },
  { requiredKeys: [] },
);
const match = fc.record(
  {
    path: maybe(path),
    pathType: maybe(fc.constantFrom("prefix", "exact", "regex", "template", "glob")),
    methods: maybe(fc.array(fc.constantFrom("GET", "POST", "get", "BREW"), { maxLength: 3 })),
    hosts: maybe(
      fc.array(fc.constantFrom("a.example", "*.example.com", "*", "EXAMPLE.com:80"), { maxLength: 2 }),
    ),
    headers: maybe(
      fc.dictionary(
        fc.constantFrom("x-v", "X-Beta", "bad header"),
        fc.oneof(
          fc.string({ maxLength: 4 }),
          fc.record({ regex: path }),
          fc.record({ present: fc.boolean() }),
        ),
        { maxKeys: 2 },
      ),
    ),
    query: maybe(fc.dictionary(fc.constantFrom("beta", "q"), fc.string({ maxLength: 3 }), { maxKeys: 2 })),
    cookies: maybe(fc.dictionary(fc.constantFrom("canary"), fc.string({ maxLength: 3 }), { maxKeys: 1 })),
  },
  { requiredKeys: [] },
);
const route = fc.record(
  {
    name: maybe(name),
    match: maybe(match),
    service: maybe(name),
    split: maybe(
      fc.array(fc.record({ service: name, weight: fc.integer({ min: -1, max: 100 }) }), { maxLength: 2 }),
    ),
    rewrite: maybe(
      fc.record({
        stripPrefix: maybe(path),
        path: maybe(fc.constantFrom("/v2/{rest}", "/u/{id}", "/{nope}", "x")),
      }),
    ),
    auth: maybe(
      fc.record({
        jwt: maybe(fc.constantFrom("main", "nope", false)),
        scopes: maybe(fc.array(fc.string({ maxLength: 3 }))),
      }),
    ),
    rateLimit: maybe(
      fc.record({
        max: maybe(fc.integer({ min: -1, max: 10 })),
        window: maybe(duration),
        by: maybe(fc.constantFrom("ip", "route", "jwt:sub", "header:x-k", "moon")),
      }),
    ),
    cache: maybe(
      fc.record({ ttl: maybe(duration), maxEntrySize: maybe(fc.constantFrom("1mb", "1 mb", "10kb")) }),
    ),
    transform: maybe(
      fc.record({
        request: maybe(
          fc.record({
            headers: maybe(
              fc.record({
                set: maybe(
                  fc.dictionary(fc.string({ maxLength: 4 }), fc.string({ maxLength: 4 }), { maxKeys: 2 }),
                ),
              }),
            ),
          }),
        ),
      }),
    ),
    respond: maybe(fc.record({ status: maybe(fc.integer({ min: 0, max: 700 })) })),
    timeout: maybe(duration),
    bodyLimit: maybe(fc.constantFrom("1mb", "0b", "lots")),
    websocket: maybe(fc.boolean()),
  },
  { requiredKeys: [] },
);
const config = fc.record(
  {
    version: maybe(fc.constantFrom(1, 2)),
    listen: maybe(
      fc.array(
        fc.record(
          {
            port: maybe(fc.integer({ min: -1, max: 70000 })),
            host: maybe(fc.constantFrom("127.0.0.1", "::1", "")),
            timeouts: maybe(fc.record({ headers: maybe(duration), idle: maybe(duration) })),
            maxHeaders: maybe(fc.integer({ min: 0, max: 3000 })),
            maxConnections: maybe(fc.integer({ min: 0, max: 10 })),
          },
          { requiredKeys: [] },
        ),
        { maxLength: 2 },
      ),
    ),
    jwt: maybe(
      fc.record({
        main: fc.record({
          secret: fc.constantFrom("s3cret", ""),
          algorithms: fc.constantFrom(["HS256"], ["none"], ["RS256"]),
        }),
      }),
    ),
    services: maybe(fc.dictionary(name, service, { maxKeys: 3 })),
    routes: maybe(fc.array(route, { maxLength: 4 })),
    tcp: maybe(
      fc.array(
        fc.record(
          {
            name: maybe(name),
            listen: maybe(fc.record({ port: fc.integer({ min: -1, max: 70000 }) })),
            service: maybe(name),
            maxConnections: maybe(fc.integer({ min: 0, max: 5 })),
          },
          { requiredKeys: [] },
        ),
        { maxLength: 2 },
      ),
    ),
    store: maybe(
      fc.record({
        type: fc.constantFrom("memory", "redis", "etcd"),
        onError: maybe(fc.constantFrom("local", "allow", "deny", "panic")),
      }),
    ),
    trustProxy: maybe(
      fc.oneof(fc.boolean(), fc.array(fc.constantFrom("10.0.0.0/8", "::1/128", "nope"), { maxLength: 2 })),
    ),
    bogus: maybe(fc.string({ maxLength: 4 })),
  },
  { requiredKeys: [] },
);

/** Configs valid by construction (names resolve, enums hold), each with one optional mutation. */
const validConfig = fc
  .record({
    services: fc.uniqueArray(fc.constantFrom("a", "b", "c"), { minLength: 1, maxLength: 3 }),
    balancer: fc.constantFrom("round-robin", "least-connections", "p2c", "random", "ip-hash"),
    routes: fc.array(
      fc.record({
        m: fc.constantFrom(
          { path: "/", pathType: "prefix" },
          { path: "/api", pathType: "prefix" },
          { path: "/x", pathType: "exact" },
          { path: "/a/:id/*", pathType: "template" },
          { path: "^/re/(?<n>[0-9]+)$", pathType: "regex" },
          { path: "^/(a+)+$", pathType: "regex" },
        ),
        methods: fc.option(fc.constantFrom(["GET"], ["GET", "POST"]), { nil: undefined }),
        timeout: fc.option(fc.constantFrom("1s", "250ms"), { nil: undefined }),
        rateLimit: fc.option(
          fc.record({ max: fc.integer({ min: 1, max: 100 }), window: fc.constantFrom("1s", "1m") }),
          {
            nil: undefined,
          },
        ),
      }),
      { maxLength: 4 },
    ),
    mutation: fc.option(fc.tuple(fc.constantFrom("services", "routes", "listen", "version"), junk), {
      nil: undefined,
    }),
  })
  .map(({ services, balancer, routes, mutation }) => {
    const c: Record<string, unknown> = {
      version: 1,
      listen: [{ port: 0, host: "127.0.0.1" }],
      services: Object.fromEntries(
        services.map((n, i) => [n, { targets: [`http://127.0.0.1:${3000 + i}`], balancer }]),
      ),
      routes: routes.map((r, i) => ({
        name: `r${i}`,
        match: { ...r.m, ...(r.methods && { methods: r.methods }) },
        service: services[i % services.length],
        ...(r.timeout && { timeout: r.timeout }),
        ...(r.rateLimit && { rateLimit: r.rateLimit }),
      })),
    };
    if (mutation) c[mutation[0]] = mutation[1];
    return c;
  });

/** Load `text`: a Config that builds, or a ConfigError in the SPEC's shape. Anything else fails. */
function loadsCleanly(text: string): void {
  let cfg: ReturnType<typeof parseConfig>;
  try {
    cfg = parseConfig(text, { env: {} });
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    for (const line of err.message.split("\n").filter(Boolean))
      assert.match(line, /^routes\.yaml:\d+:\d+ /, `not in the SPEC's shape: ${line}`);
    return;
  }
  buildGeneration(cfg);
}

describe("fuzz: routes.yaml", () => {
  test("random configs (valid and not): a clean load or a clean ConfigError, never a throw", () => {
    fc.assert(
      fc.property(config, (c) => loadsCleanly(stringify(c))),
      runs(200),
    );
  });

  test("configs valid by construction, some mutated: a clean load or a clean ConfigError", () => {
    fc.assert(
      fc.property(validConfig, (c) => loadsCleanly(stringify(c))),
      RUNS,
    );
  });

  test("the generators reach the valid side too (the properties above test loads, not only refusals)", () => {
    const loaded = fc.sample(validConfig, { numRuns: 200, seed: 42 }).filter((c) => {
      try {
        parseConfig(stringify(c), { env: {} });
        return true;
      } catch {
        return false;
      }
    });
    assert.ok(loaded.length > 0, "no generated config was valid: the property above only tests refusals");
  });

  test("the shipped routes.yaml, mutated (bytes cut, inserted, swapped): never a throw", () => {
    const shipped = readFileSync(join(root, "routes.yaml"), "utf8");
    loadsCleanly(shipped);
    const edit = fc.record({
      at: fc.nat({ max: shipped.length }),
      cut: fc.nat({ max: 40 }),
      insert: fc.oneof(
        fc.string({ maxLength: 12 }),
        fc.constantFrom(
          ":",
          "- ",
          "\n  ",
          "{",
          "[",
          "${X}",
          "${",
          "&a",
          "*a",
          "!!binary ",
          "\t",
          "? ",
          "#",
          "'",
          '"',
          "\u0000",
        ),
      ),
    });
    fc.assert(
      fc.property(fc.array(edit, { minLength: 1, maxLength: 3 }), (edits) => {
        let t = shipped;
        for (const e of edits) t = t.slice(0, e.at) + e.insert + t.slice(e.at + e.cut);
        loadsCleanly(t);
      }),
      RUNS,
    );
  });

  test("found by fuzzing: a complex (? ) key or a key with a line break is still one problem per line", () => {
    const shipped = readFileSync(join(root, "routes.yaml"), "utf8");
    const i = shipped.indexOf("services:");
    for (const t of [
      `${shipped.slice(0, i)}? ${shipped.slice(i)}`,
      shipped.replace("services:", '"ser\\nvices":'),
      "version: 1\n? [a, b]\n: 1\n",
    ]) {
      assert.throws(
        () => parseConfig(t, { env: {} }),
        (err: unknown) => {
          assert.ok(err instanceof ConfigError);
          for (const line of err.message.split("\n")) assert.match(line, /^routes\.yaml:\d+:\d+ /, line);
          return true;
        },
      );
    }
    assert.throws(
      () => parseConfig("version: 1\n? [a, b]\n: 1\n"),
      /2:\d+ \(root\): a key must be a plain string/,
    );
  });

  test("arbitrary text: never a throw", () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 200, unit: "binary" }), (t) => loadsCleanly(t)),
      RUNS,
    );
  });
});

// ---------- paths and headers ----------

const segment = fc.oneof(
  { weight: 3, arbitrary: fc.constantFrom("admin", "public", "Admin", "a", "x y", "€") },
  {
    weight: 5,
    arbitrary: fc.constantFrom(
      "",
      ".",
      "..",
      "%2e",
      "%2E%2e",
      ".%2e",
      "%2f",
      "%2F",
      "%5c",
      "\\",
      "%00",
      "%",
      "%g1",
      "%41dmin",
      "%61dmin",
      ";",
      "..;",
      ".;x",
      "admin;x=1",
      "%c0%ae",
      "%c0%af",
      "%e0%80%ae",
      "%ff",
      "%e2%82%ac",
      "%25",
      "%252e",
      "?",
      "#",
    ),
  },
  { weight: 1, arbitrary: fc.string({ maxLength: 6 }) },
);
const rawPath = fc.oneof(
  fc.array(segment, { maxLength: 8 }).map((s) => `/${s.join("/")}`),
  fc.string({ maxLength: 40 }),
  fc.string({ maxLength: 40, unit: "binary" }),
);

describe("fuzz: request paths and headers", () => {
  const gen = buildGeneration(
    parseConfig(`version: 1
listen: [{ port: 0 }]
jwt: { main: { secret: s3cret, algorithms: [HS256] } }
services: { s: { targets: [http://127.0.0.1:9] } }
routes:
  - { name: admin, match: { path: /admin }, service: s, auth: { jwt: main } }
  - { name: public, match: { path: /public }, service: s }
  - { name: tmpl, match: { path: "/t/:id/*", pathType: template }, service: s }
  - { name: re, match: { path: "^/re/(?<n>[0-9]+)$", pathType: regex }, service: s }
  - { name: hdr, match: { path: /h, headers: { x-v: { regex: "^(a|b)+$" }, x-p: { present: true } }, hosts: ["*.example.com"], query: { q: "1" }, cookies: { c: "1" } }, service: s }
  - { name: open, match: { path: / }, service: s }
`),
  );
  const under = (p: string, prefix: string) => p === prefix || p.startsWith(`${prefix}/`);

  test("normalizePath: null or a normal path (rooted, no dot or empty segments, no encoded separators), idempotent", () => {
    fc.assert(
      fc.property(rawPath, (raw) => {
        const n = normalizePath(raw);
        if (n === null) return;
        assert.equal(n[0], "/");
        assert.ok(!/\/\.\.?(\/|$)/.test(n), `dot segment left in ${n}`);
        assert.ok(!n.includes("//"), `empty segment left in ${n}`);
        assert.ok(!/%(2f|5c|00)/i.test(n) && !n.includes("\\") && !n.includes("\0"), n);
        assert.ok(!/\/\.\.?;/.test(n), `dot segment with parameters left in ${n}`);
        assert.equal(normalizePath(n), n, "normalising twice changes nothing");
        decodeURIComponent(n); // valid UTF-8 escapes only
      }),
      runs(2000),
    );
  });

  test("the router: no throw, and /admin's route is chosen exactly when the normalised path is under /admin", () => {
    fc.assert(
      fc.property(rawPath, fc.constantFrom("GET", "POST", "OPTIONS", "BREW"), (raw, method) => {
        const req = { url: raw, method, headers: { host: "h" } } as unknown as IncomingMessage;
        const st = matchIncoming(gen.matcher, req);
        const n = normalizePath(raw.split("?")[0]);
        if (n === null) return assert.equal(st, null);
        assert.ok(st, "the catch-all takes every normal path");
        assert.equal(st.path, n);
        assert.equal(st.route.name === "admin", under(n, "/admin"), `${raw} → ${n} → ${st.route.name}`);
      }),
      runs(2000),
    );
  });

  // As Node hands them over: strings (duplicates joined with ", "); arrays only for set-cookie.
  const headerValue = fc.oneof(
    fc.string({ maxLength: 30 }),
    fc.constantFrom("a".repeat(5000), `${"ab".repeat(3000)}!`, "c=1; c=2", "%", "q=1&q=2"),
  );
  test("headers, hosts, query and cookies of any shape: the matcher never throws", () => {
    fc.assert(
      fc.property(
        fc.dictionary(
          fc.constantFrom(
            "host",
            "x-v",
            "x-p",
            "cookie",
            "access-control-request-method",
            "origin",
            "x-other",
          ),
          headerValue,
          { maxKeys: 6 },
        ),
        fc.constantFrom("/h", "/h?q=1", "/h?q=%ff", "/h?q", "/h?&&q=1&", "/t/1/x", "/re/12"),
        fc.constantFrom("GET", "OPTIONS"),
        (headers, url, method) => {
          const req = { url, method, headers } as unknown as IncomingMessage;
          const st = matchIncoming(gen.matcher, req);
          assert.ok(st !== null);
          if (st?.route.name === "hdr") {
            assert.match(String(headers["x-v"] ?? ""), /^(a|b)+$|,/);
            assert.ok(headers["x-p"] !== undefined);
          }
        },
      ),
      RUNS,
    );
  });
});

// ---------- PROXY protocol and ClientHello ----------

const endpoint4 = fc.record({ address: fc.ipV4(), port: fc.integer({ min: 0, max: 65535 }) });
const endpoint6 = fc.record({ address: fc.ipV6(), port: fc.integer({ min: 0, max: 65535 }) });

/** A parser's answer is one of its three shapes, and never claims more bytes than it was given. */
function wellFormed(
  step: ReturnType<typeof parseProxyHeader> | ReturnType<typeof parseClientHello>,
  len: number,
) {
  if ("need" in step) return assert.equal(step.need, true);
  if ("error" in step) return assert.equal(typeof step.error, "string");
  assert.ok(step.consumed >= 0 && step.consumed <= len, `consumed ${step.consumed} of ${len}`);
}

/** Mutations of a real byte string: flips, truncation, insertion. */
const mutate = (bytes: Buffer) =>
  fc
    .record({
      flips: fc.array(
        fc.record({ at: fc.nat({ max: bytes.length - 1 }), to: fc.integer({ min: 0, max: 255 }) }),
        {
          maxLength: 4,
        },
      ),
      cut: fc.nat({ max: bytes.length }),
      extra: fc.uint8Array({ maxLength: 16 }),
    })
    .map(({ flips, cut, extra }) => {
      const b = Buffer.from(bytes);
      for (const f of flips) b[f.at] = f.to;
      return Buffer.concat([b.subarray(0, cut), Buffer.from(extra)]);
    });

describe("fuzz: PROXY protocol headers", () => {
  test("random bytes: need, error or a header — never a throw", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), (a) =>
        wellFormed(parseProxyHeader(Buffer.from(a)), a.length),
      ),
      runs(2000),
    );
  });

  test("v1 and v2 headers round-trip; every prefix of one is 'need'; mutations never throw", () => {
    fc.assert(
      fc.property(
        fc.constantFrom("v1" as const, "v2" as const),
        fc.oneof(fc.tuple(endpoint4, endpoint4), fc.tuple(endpoint6, endpoint6)),
        fc.uint8Array({ maxLength: 8 }),
        (v, [src, dst], tail) => {
          const h = encodeProxyHeader(v, src, dst);
          const step = parseProxyHeader(Buffer.concat([h, Buffer.from(tail)]));
          assert.ok("value" in step, JSON.stringify(step));
          assert.equal(step.consumed, h.length);
          assert.equal(step.value.source?.port, src.port);
          assert.equal(step.value.destination?.port, dst.port);
          assert.equal(net.isIP(step.value.source?.address ?? ""), net.isIP(src.address));
          for (let n = 0; n < h.length; n++) {
            const partial = parseProxyHeader(h.subarray(0, n));
            assert.ok("need" in partial || "error" in partial, `prefix ${n}: ${JSON.stringify(partial)}`);
            if (v === "v2") assert.ok("need" in partial, `v2 prefix ${n} refused`);
          }
          fc.assert(
            fc.property(mutate(h), (m) => wellFormed(parseProxyHeader(m), m.length)),
            runs(20),
          );
        },
      ),
      runs(100),
    );
  });
});

describe("fuzz: TLS ClientHello", () => {
  let hello: Buffer;
  before(async () => {
    // A real ClientHello, as Node's TLS client sends it, captured by a plain TCP server.
    const server = net.createServer();
    await new Promise<void>((ok) => server.listen(0, "127.0.0.1", ok));
    const got = new Promise<Buffer>((ok) =>
      server.once("connection", (s) => {
        let b = Buffer.alloc(0);
        s.on("data", (c: Buffer) => {
          b = Buffer.concat([b, c]);
          if (b.length >= 5 && b.length >= 5 + b.readUInt16BE(3)) {
            s.destroy();
            ok(b);
          }
        });
      }),
    );
    const c = tls.connect({
      port: (server.address() as AddressInfo).port,
      host: "127.0.0.1",
      servername: "api.example.com",
    });
    c.on("error", () => {});
    hello = await got;
    c.destroy();
    server.close();
  });

  test("the real hello parses to its server name; each of its prefixes is 'need'", () => {
    const step = parseClientHello(hello);
    assert.ok("value" in step, JSON.stringify(step));
    assert.equal(step.value.serverName, "api.example.com");
    for (let n = 0; n < hello.length; n += 7)
      assert.ok("need" in parseClientHello(hello.subarray(0, n)), `prefix ${n}`);
  });

  test("mutated hellos and random bytes: need, error or a hello — never a throw", () => {
    fc.assert(
      fc.property(mutate(hello), (m) => wellFormed(parseClientHello(m), m.length)),
      runs(2000),
    );
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 600 }), (a) => {
        // Random bytes behind a plausible record header reach the deeper parsing.
        const b = Buffer.concat([
          Buffer.from([0x16, 0x03, 0x01, a.length >> 8, a.length & 0xff, 0x01]),
          Buffer.from(a),
        ]);
        wellFormed(parseClientHello(b), b.length);
        wellFormed(parseClientHello(Buffer.from(a)), a.length);
      }),
      runs(2000),
    );
  });
});
