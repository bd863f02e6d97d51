// @ts-check
/**
 * Mutation testing of the security-critical modules (issue 17), one Stryker
 * run per module group: each group mutates its module (or the few functions
 * of a larger file that carry the promise) and runs only the test files that
 * exercise it, so a mutant costs seconds, not a full suite.
 *
 *   npm run mutate                  every group in turn, then the score table
 *   npm run mutate -- headers auth  only these groups
 *   SY_MUTATE=sni npx stryker run   one group by hand
 *
 * Tests run as the suite runs them — node:test through tsx — with Stryker's
 * TAP runner (its coverage is per test file: a mutant runs the files that
 * reached it). The TypeScript checker drops mutants that would not compile.
 * Reports: reports/mutation/<group>.{html,json}; incremental results in
 * reports/mutation/<group>.incremental.json (a rerun retests only what changed).
 * Not in CI (too slow); the last score table is in docs/mutation.md.
 */
import { readFileSync } from "node:fs";

/**
 * "file:L1-L2" for the lines from the first line matching `from` to the first
 * line from there on matching `to` (inclusive, possibly the same line):
 * functions found by their declaration, so the config keeps up with edits
 * that move them.
 */
function span(file, from, to) {
  const lines = readFileSync(file, "utf8").split("\n");
  const start = lines.findIndex((l) => from.test(l));
  if (start < 0) throw new Error(`stryker.config.mjs: ${from} not found in ${file}`);
  const end = lines.findIndex((l, i) => i >= start && to.test(l));
  if (end < 0) throw new Error(`stryker.config.mjs: ${to} not found after ${from} in ${file}`);
  return `${file}:${start + 1}-${end + 1}`;
}

/** A function from its declaration to its closing brace at column 0. */
const fn = (file, name) => span(file, new RegExp(`^(export )?(async )?function ${name}\\b`), /^}/);

/** @type {Record<string, { mutate: () => string[], tests: string[] }>} */
export const groups = {
  // JWT verification: algorithm pinning, JWKS schedule, scopes and claims (SPEC §6).
  auth: {
    mutate: () => ["src/auth/**/*.ts"],
    tests: [
      "test/policies/auth.test.ts",
      "test/policies/auth-jwks.test.ts",
      "test/policies/auth-algorithms.test.ts",
      "test/policies/auth-keys.test.ts",
    ],
  },
  // Path normalisation: what was authorised is what is forwarded (SPEC §3).
  normalize: {
    mutate: () => ["src/router/normalize.ts"],
    tests: ["test/router/normalize.test.ts", "test/router/matcher.test.ts"],
  },
  // Hop-by-hop removal, X-Forwarded-*, X-Request-Id (SPEC §3), and whose X-Forwarded-For is believed.
  headers: {
    mutate: () => [
      span("plugins/balance.ts", /^export const HOP_BY_HOP\b/, /^\]\);/),
      fn("plugins/balance.ts", "connectionNames"),
      fn("plugins/balance.ts", "copyEndToEnd"),
      fn("plugins/balance.ts", "rewriteRequestHeaders"),
      fn("plugins/balance.ts", "trusted"),
      fn("plugins/balance.ts", "rewriteHeaders"),
      "src/request-state.ts",
    ],
    tests: ["test/l7/forwarding.test.ts", "test/l7/trust-proxy.test.ts"],
  },
  // PROXY protocol v1/v2 parsing and encoding (L4).
  "proxy-protocol": {
    mutate: () => ["src/l4/proxy-protocol.ts"],
    tests: ["test/l4/proxy-protocol.test.ts", "test/l4/tcp-proxy-protocol.test.ts"],
  },
  // The TLS ClientHello's SNI, for passthrough routing (L4).
  sni: {
    mutate: () => ["src/l4/sni.ts"],
    tests: ["test/l4/sni.test.ts"],
  },
  // The rate-limit key (by ip | header | jwt | route) and trustProxy's resolution in the app.
  "rate-limit-key": {
    mutate: () => [
      fn("plugins/rate-limit.ts", "byIp"),
      fn("plugins/rate-limit.ts", "bounded"),
      fn("plugins/rate-limit.ts", "keyGenerator"),
      span("src/app.ts", /^\s+trustProxy: config\.trustProxy/, /trustProxy/),
    ],
    tests: ["test/policies/rate-limit.test.ts", "test/l7/trust-proxy.test.ts"],
  },
  // What the cache may store (SPEC §6): never Set-Cookie, private, no-store, Vary: *, Authorization.
  "cache-storable": {
    mutate: () => [
      fn("src/cache/entry.ts", "lowerDirectives"),
      fn("src/cache/freshness-fields.ts", "parseCacheControl"),
      fn("src/cache/entry.ts", "varyNames"),
      fn("src/cache/entry.ts", "buildEntry"),
      span("src/cache/entry.ts", /^const UNSTORED\b/, /^\]\);/),
      span("plugins/cache.ts", /raw\.headers\.authorization !== undefined/, /BYPASS/),
      span("plugins/cache.ts", /h\.authorization !== undefined \|\|/, /h\.authorization/),
    ],
    tests: [
      "test/policies/cache.test.ts",
      "test/policies/cache-lane.test.ts",
      "test/policies/cache-freshness.test.ts",
      "test/policies/cache-targeted.test.ts",
      "test/cache/storable.test.ts",
    ],
  },
};

const name = process.env.SY_MUTATE ?? "";
const group = groups[name];
if (group === undefined && process.argv.some((a) => a === "run")) {
  throw new Error(`SY_MUTATE must name one group (${Object.keys(groups).join(", ")}); or use npm run mutate`);
}

/** @type {import('@stryker-mutator/api/core').PartialStrykerOptions} */
const config = {
  testRunner: "tap",
  tap: {
    testFiles: group?.tests ?? [],
    nodeArgs: ["--import", "tsx", "--test-reporter=tap", "-r", "{{hookFile}}", "{{testFile}}"],
  },
  checkers: ["typescript"],
  tsconfigFile: "tsconfig.json",
  mutate: group?.mutate() ?? [],
  coverageAnalysis: "perTest",
  // Two shared cores: one test process at a time, so the tests' own timing assumptions hold.
  concurrency: 1,
  // A mutant that hangs a request is a timeout (killed); give busy machines room before calling one.
  timeoutMS: 15_000,
  timeoutFactor: 2,
  dryRunTimeoutMinutes: 10,
  incremental: true,
  incrementalFile: `reports/mutation/${name}.incremental.json`,
  reporters: ["clear-text", "progress", "html", "json"],
  htmlReporter: { fileName: `reports/mutation/${name}.html` },
  jsonReporter: { fileName: `reports/mutation/${name}.json` },
  clearTextReporter: { allowColor: false, reportScoreTable: true, reportMutants: true },
  tempDirName: ".stryker-tmp",
  // Only what the tests need is copied into the sandbox.
  ignorePatterns: ["bench", "docs", "dist", "reports", "test/artifacts", ".stryker-tmp"],
  // plugins/ is TypeScript too: mutants there must not be type-checked by tsx (it does not anyway).
  disableTypeChecks: "{src,plugins,test}/**/*.ts",
  thresholds: { high: 90, low: 85, break: null },
};

export default config;
