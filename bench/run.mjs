#!/usr/bin/env node
// Switchyard benchmark harness (issue 6). Starts a backend, Switchyard and its peers on 127.0.0.1,
// loads each in interleaved rounds and reports req/s, latency, proxy CPU per request and RSS.
//
//   node bench/run.mjs                 full run (3 rounds × 10 s after 2 s warm-up), writes bench/RESULTS.md
//   node bench/run.mjs --quick         1 round × 3 s, prints (add --write to update bench/RESULTS.md)
//   node bench/run.mjs --only l7-plain,l4-redis
//   node bench/run.mjs --only l7-plain --rounds 8 --duration 4 --compare .ab/A/src/cli.js
//                                      every Switchyard peer twice, this build and that one, interleaved
import { execFileSync } from "node:child_process";
import crypto from "node:crypto";
import fs from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import YAML from "yaml";
import { runAutocannon, runPaced, runRedisBenchmark, runWrk, runWrkPaced } from "./lib/load.mjs";
import { detectNative, startHaproxy, startNginx, versionLine } from "./lib/native.mjs";
import {
  Child,
  clockTicks,
  cpuTicks,
  freePort,
  hasCmd,
  httpGet,
  installCleanup,
  processTree,
  rssKb,
  SkipError,
  setServerPin,
  stopAll,
  waitForPort,
} from "./lib/procs.mjs";
import {
  checkTargets,
  resultsMarkdown,
  resultsSvg,
  scenarioMarkdown,
  summarize,
  targetsMarkdown,
} from "./lib/report.mjs";

const BENCH = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.dirname(BENCH);
const TMP = path.join(BENCH, ".tmp");
const CLI = process.env.BENCH_SWITCHYARD_CLI
  ? path.resolve(process.env.BENCH_SWITCHYARD_CLI)
  : path.join(ROOT, "dist", "src", "cli.js");
const REDIS_PORT = 6379;

// ------------------------------------------------------------------ options

const HELP = `usage: node bench/run.mjs [options]
  --quick              one round of 3 s (1 s warm-up); prints, does not write bench/RESULTS.md
  --write              with --quick: write bench/RESULTS.md and bench/results.svg anyway
  --only a,b           run only these scenarios
  --rounds N           rounds (default 3, --quick 1)
  --duration S         seconds per measured run (default 10, --quick 3)
  --warmup S           warm-up seconds before each run (default 2, --quick 1)
  --connections N      concurrent connections (default 50)
  --tool wrk|autocannon  load generator (default wrk when installed)
  --no-pin             do not pin with taskset
  --max-minutes M      stop starting new runs after M minutes (default 60)
  --render             rewrite bench/RESULTS.md and results.svg from bench/RESULTS.json (no run)
  --compare CLI        each Switchyard peer also runs from this cli.js (another build, e.g. compiled with
                       tsc --outDir .ab/A at an older commit), interleaved in the same rounds; its
                       per-round lines and medians are the A/B; never writes bench/RESULTS.md
env: BENCH_SWITCHYARD_LOG_LEVEL  --log-level for Switchyard (default warn: access log off, like
                                  every peer; "" = pass no flag)
     BENCH_SWITCHYARD_CLI        the gateway's cli.js (default dist/src/cli.js)`;

function parseArgs(argv) {
  const o = {
    quick: false,
    write: false,
    only: null,
    rounds: null,
    duration: null,
    warmup: null,
    connections: 50,
    tool: null,
    pin: true,
    maxMinutes: 60,
    render: false,
    compare: null,
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const val = () => {
      const v = argv[++i];
      if (v === undefined) fail(`${a} needs a value`);
      return v;
    };
    const num = () => {
      const v = Number(val());
      if (!Number.isFinite(v) || v <= 0) fail(`${a} needs a positive number`);
      return v;
    };
    if (a === "--quick") o.quick = true;
    else if (a === "--write") o.write = true;
    else if (a === "--only") o.only = val().split(",").filter(Boolean);
    else if (a.startsWith("--only=")) o.only = a.slice(7).split(",").filter(Boolean);
    else if (a === "--rounds") o.rounds = Math.min(20, Math.floor(num()));
    else if (a === "--duration") o.duration = Math.min(600, num());
    else if (a === "--warmup") o.warmup = Math.min(60, num());
    else if (a === "--connections") o.connections = Math.min(10_000, Math.floor(num()));
    else if (a === "--tool") o.tool = val();
    else if (a === "--no-pin") o.pin = false;
    else if (a === "--max-minutes") o.maxMinutes = num();
    else if (a === "--render") o.render = true;
    else if (a === "--compare") o.compare = path.resolve(val());
    else if (a === "--help" || a === "-h") {
      console.log(HELP);
      process.exit(0);
    } else fail(`unknown option ${a}\n${HELP}`);
  }
  o.rounds ??= o.quick ? 1 : 3;
  o.duration ??= o.quick ? 3 : 10;
  o.warmup ??= o.quick ? 1 : 2;
  if (o.tool && !["wrk", "autocannon"].includes(o.tool)) fail("--tool is wrk or autocannon");
  return o;
}

function fail(msg) {
  console.error(`bench: ${msg}`);
  process.exit(2);
}

const opts = parseArgs(process.argv.slice(2));

/** RESULTS.md and results.svg from one run's figures (also kept as JSON, so the report can be re-rendered). */
function writeReport(meta, results, mdPath, svgPath) {
  const targets = checkTargets(results);
  let md = resultsMarkdown(meta, results, targets);
  if (path.basename(svgPath) !== "results.svg")
    md = md.replace("](results.svg)", `](${path.basename(svgPath)})`);
  // The soak's section (bench/soak.mjs) is written by that script; a benchmark run keeps it.
  const soak =
    fs.existsSync(mdPath) &&
    /<!-- soak:start -->[\s\S]*?<!-- soak:end -->\n?/.exec(fs.readFileSync(mdPath, "utf8"));
  if (soak) md = `${md.trimEnd()}\n\n${soak[0]}`;
  fs.writeFileSync(mdPath, md);
  fs.writeFileSync(svgPath, resultsSvg(meta, results));
  fs.writeFileSync(mdPath.replace(/\.md$/, ".json"), `${JSON.stringify({ meta, results }, null, 1)}\n`);
  return targets;
}

if (opts.render) {
  const { meta, results } = JSON.parse(fs.readFileSync(path.join(BENCH, "RESULTS.json"), "utf8"));
  writeReport(meta, results, path.join(BENCH, "RESULTS.md"), path.join(BENCH, "results.svg"));
  console.log("rewrote bench/RESULTS.md and bench/results.svg from bench/RESULTS.json");
  process.exit(0);
}
installCleanup();

// ------------------------------------------------------------------ environment

const nproc = os.availableParallelism?.() ?? os.cpus().length;
const cpuModel = (() => {
  try {
    const m = /model name\s*:\s*(.+)/.exec(fs.readFileSync("/proc/cpuinfo", "utf8"));
    return m ? m[1].trim() : os.cpus()[0]?.model || "unknown CPU";
  } catch {
    return os.cpus()[0]?.model || "unknown CPU";
  }
})();
const clk = clockTicks();
const native = detectNative();
const wrkOk = hasCmd("wrk");
const tool = opts.tool ?? (wrkOk ? "wrk" : "autocannon");
if (tool === "wrk" && !wrkOk) fail("--tool wrk but wrk is not installed");
const redisBenchOk = hasCmd("redis-benchmark");
const built = fs.existsSync(CLI);
if (opts.compare && !fs.existsSync(opts.compare)) fail(`--compare: no ${opts.compare}`);
const syLogLevel = process.env.BENCH_SWITCHYARD_LOG_LEVEL ?? "warn";
// The gateway runs as its bin does: with the node flags on its shebang line (src/cli.ts says why).
const nodeFlagsOf = (cli) =>
  fs.existsSync(cli)
    ? (
        fs
          .readFileSync(cli, "utf8")
          .split("\n", 1)[0]
          .match(/^#!.*\bnode\b(.*)$/)?.[1] ?? ""
      )
        .trim()
        .split(/\s+/)
        .filter(Boolean)
    : [];
const syNodeFlags = nodeFlagsOf(CLI);

let pinning = "none (taskset not available)";
let loadPrefix = null;
let loadCpuCount = Math.max(1, Math.min(4, nproc >> 1));
if (!opts.pin) pinning = "off (--no-pin)";
else if (nproc < 2) pinning = "none (1 CPU)";
else if (hasCmd("taskset")) {
  const loadCpus = nproc === 2 ? "1" : `1-${nproc - 1}`;
  try {
    // The harness itself (autocannon and the paced client run in it) goes to the load CPU(s).
    execFileSync("taskset", ["-a", "-p", "-c", loadCpus, String(process.pid)], { stdio: "ignore" });
    setServerPin(["taskset", "-c", "0"]);
    loadPrefix = ["taskset", "-c", loadCpus];
    loadCpuCount = nproc - 1;
    pinning = `servers (backend and proxies) on CPU 0, load generator on CPU ${loadCpus} (taskset)`;
  } catch (err) {
    pinning = `none (taskset failed: ${err.message.split("\n")[0]})`;
  }
}
const wrkThreads = Math.max(1, Math.min(4, loadCpuCount, opts.connections));

const wrkVersion = wrkOk
  ? (versionLine("wrk", ["--version"]) ?? "").replace(/^wrk\s+/, "").split(" ")[0]
  : null;
const redisBenchVersion = redisBenchOk
  ? (versionLine("redis-benchmark", ["--version"]) ?? "").replace(/^redis-benchmark\s+/, "")
  : null;

fs.mkdirSync(TMP, { recursive: true });

// ------------------------------------------------------------------ JWT for the policies scenario

const JWT_SECRET = crypto.randomBytes(32).toString("hex");
function hs256(secret, payload) {
  const b64 = (o) => Buffer.from(JSON.stringify(o)).toString("base64url");
  const data = `${b64({ alg: "HS256", typ: "JWT" })}.${b64(payload)}`;
  return `${data}.${crypto.createHmac("sha256", secret).update(data).digest("base64url")}`;
}
const now = Math.floor(Date.now() / 1000);
const TOKEN = hs256(JWT_SECRET, { sub: "bench-user", scope: "bench", iat: now, exp: now + 12 * 3600 });
// The same claims signed ES256 (a public-key verifier: what an identity provider issues).
const ES_KEYS = crypto.generateKeyPairSync("ec", { namedCurve: "P-256" });
function es256(payload) {
  const b64 = (o) => Buffer.from(JSON.stringify(o)).toString("base64url");
  const data = `${b64({ alg: "ES256", typ: "JWT" })}.${b64(payload)}`;
  const sig = crypto.sign("sha256", Buffer.from(data), {
    key: ES_KEYS.privateKey,
    dsaEncoding: "ieee-p1363",
  });
  return `${data}.${sig.toString("base64url")}`;
}
const ES_TOKEN = es256({ sub: "bench-user", scope: "bench", iat: now, exp: now + 12 * 3600 });
const ES_PUBLIC = ES_KEYS.publicKey.export({ type: "spki", format: "pem" });

/**
 * What users configure on a public API route (issue 11): JWT with a scope, a
 * rate limit (memory store, never reached), request header, query and claim
 * transforms, response header transforms and CORS; requests carry an Origin.
 */
const FULL_MIX = {
  auth: { jwt: "bench", scopes: ["bench"] },
  rateLimit: { max: 1_000_000_000, window: "1m", by: "ip" },
  transform: {
    request: {
      headers: { set: { "x-gateway": "switchyard" }, remove: ["cookie"] },
      query: { set: { src: "gw" }, remove: ["debug"] },
      fromClaims: { "x-user-id": "sub" },
    },
    response: { headers: { set: { "x-frame-options": "DENY" }, remove: ["x-powered-by"] } },
  },
  cors: { origins: ["https://app.example.com"] },
};
const MIX_HEADERS = { authorization: `Bearer ${TOKEN}`, origin: "https://app.example.com" };

// ------------------------------------------------------------------ peers

const http = (ports) => ports.map((p) => `http://127.0.0.1:${p}`);

async function startNodePeer(id, script, upstream) {
  const child = new Child(id, process.execPath, [path.join(BENCH, "peers", script), upstream], { cwd: ROOT });
  try {
    return { port: await child.waitForPortLine(10_000), child };
  } catch (err) {
    await child.stop(1000);
    throw err;
  }
}

async function startSwitchyard(id, makeConfig, { http: isHttp }, cli = CLI) {
  if (!built) throw new SkipError("switchyard not built (npm run build)");
  const port = await freePort();
  const file = path.join(TMP, `${id}.yaml`);
  fs.writeFileSync(file, `# generated by bench/run.mjs\n${YAML.stringify(makeConfig(port))}`);
  const args = [...nodeFlagsOf(cli), cli, "--config", file];
  if (syLogLevel) args.push("--log-level", syLogLevel);
  const child = new Child(id, process.execPath, args, { cwd: ROOT });
  try {
    await waitForPort(port, child, { timeoutMs: 10_000, http: isHttp });
  } catch (err) {
    const exited = !child.alive;
    await child.stop(1000);
    if (exited)
      throw new SkipError(
        child.lastLine().replaceAll(ROOT + path.sep, "") || `exited with code ${child.exitCode}`,
      );
    throw new SkipError(`${err.message} (config ${path.relative(ROOT, file)})`);
  }
  return { port, child };
}

const l7Config =
  (targets, route = {}, service = {}, top = {}) =>
  (port) => ({
    version: 1,
    listen: [{ port, host: "127.0.0.1" }],
    ...top,
    services: { backend: { targets, ...service } },
    routes: [{ name: "bench", match: { path: "/" }, service: "backend", ...route }],
  });

const tcpConfig = (name, service, target) => (port) => ({
  version: 1,
  services: { [service]: { targets: [target] } },
  tcp: [{ name, listen: { port, host: "127.0.0.1" }, service }],
});

// Issue 16: the same listener in the kernel (nftables DNAT in the output hook on loopback); Node only
// writes the table. shutdownTimeout 1s: the harness stops peers within 3 s, and the table goes at exit.
const natConfig = (name, service, target) => (port) => ({
  version: 1,
  shutdownTimeout: "1s",
  services: { [service]: { targets: [target] } },
  tcp: [{ name, listen: { port, host: "127.0.0.1" }, service, mode: "nat" }],
});
const NAT_NOTE =
  "switchyard nat: mode: nat, the kernel's DNAT (nftables, output hook on loopback); its CPU column is the gateway process alone, the kernel's NAT work is counted in the client's and the server's own time.";

const peer = {
  direct: (label = "backend direct") => ({
    id: "direct",
    label,
    start: async (ctx) => ctx.direct,
    owned: false,
  }),
  fastify: (label = "@fastify/http-proxy") => ({
    id: "fastify-http-proxy",
    label,
    start: (ctx) => startNodePeer("fastify-http-proxy", "fastify-http-proxy.mjs", ctx.targets[0]),
  }),
  undici: (label = "undici floor") => ({
    id: "undici-proxy",
    label,
    start: (ctx) => startNodePeer("undici-proxy", "undici-proxy.mjs", ctx.targets[0]),
  }),
  tcpPipe: () => ({
    id: "tcp-pipe",
    label: "node net pipe",
    start: (ctx) => startNodePeer("tcp-pipe", "tcp-pipe.mjs", ctx.targets[0]),
  }),
  nginx: (mode, balancer) => ({
    id: mode === "stream" ? "nginx-stream" : mode === "cache" ? "nginx-cache" : "nginx",
    label: mode === "stream" ? "nginx stream" : mode === "cache" ? "nginx proxy_cache" : "nginx",
    needs: "nginx",
    start: (ctx) =>
      startNginx(native.nginx, {
        tmpRoot: TMP,
        name: `${ctx.scenario}-nginx`,
        mode,
        balancer,
        targets: ctx.targets.map((t) => t.replace(/^\w+:\/\//, "")),
      }),
  }),
  haproxy: (mode, balancer) => ({
    id: mode === "tcp" ? "haproxy-tcp" : "haproxy",
    label: mode === "tcp" ? "haproxy mode tcp" : "haproxy mode http",
    needs: "haproxy",
    start: (ctx) =>
      startHaproxy(native.haproxy, {
        tmpRoot: TMP,
        name: `${ctx.scenario}-haproxy`,
        mode,
        balancer,
        targets: ctx.targets.map((t) => t.replace(/^\w+:\/\//, "")),
      }),
  }),
  switchyard: (id, label, makeConfig, extra = {}, cli = CLI) => ({
    id,
    label,
    start: (ctx) =>
      startSwitchyard(`${ctx.scenario}-${id}`, makeConfig(ctx), { http: !id.endsWith("-tcp") }, cli),
    ...extra,
    // --compare: the same peer from the other build.
    twin: () => peer.switchyard(`${id}-compare`, `${label} (compare)`, makeConfig, extra, opts.compare),
  }),
};

// ------------------------------------------------------------------ scenarios

const SCENARIOS = [
  {
    id: "l7-plain",
    title: "L7 plain route",
    kind: "http",
    backends: 1,
    halfLoad: true,
    refs: ["direct", "fastify-http-proxy", "undici-proxy"],
    floor: "undici-proxy",
    peers: () => [
      peer.direct(),
      peer.switchyard("switchyard", "switchyard", (ctx) => l7Config(ctx.targets)),
      // Issue 10: metrics are on when `admin:` is set; the plain route may lose at most 3% for them.
      peer.switchyard("switchyard-metrics", "switchyard + metrics", (ctx) =>
        l7Config(ctx.targets, {}, {}, { admin: { port: 0, host: "127.0.0.1" } }),
      ),
      peer.fastify(),
      peer.undici(),
      peer.nginx("http"),
      peer.haproxy("http"),
    ],
  },
  {
    id: "l7-policies",
    title: "L7 with JWT + rate limit + request and response transforms + CORS",
    kind: "http",
    backends: 1,
    refs: ["direct", "switchyard", "fastify-http-proxy", "undici-proxy"],
    floor: "undici-proxy",
    note: "switchyard full mix: auth.jwt with a scope (the same token each time: a verified-token cache hit), rateLimit 1e9/1m by ip on the memory store (never reached), transform.request headers set/remove + query set/remove + fromClaims, transform.response headers set/remove, cors with an Origin on every request; ES256: the same with a public-key verifier. The other peers proxy plainly (reference).",
    peers: () => [
      peer.direct(),
      peer.switchyard("switchyard", "switchyard plain", (ctx) => l7Config(ctx.targets)),
      peer.switchyard(
        "switchyard-policies",
        "switchyard full mix (HS256)",
        (ctx) =>
          l7Config(
            ctx.targets,
            FULL_MIX,
            {},
            { jwt: { bench: { secret: JWT_SECRET, algorithms: ["HS256"] } } },
          ),
        { headers: MIX_HEADERS, expectUnauthorized: true },
      ),
      peer.switchyard(
        "switchyard-policies-es",
        "switchyard full mix (ES256)",
        (ctx) => l7Config(ctx.targets, FULL_MIX, {}, { jwt: { bench: { publicKey: ES_PUBLIC } } }),
        { headers: { ...MIX_HEADERS, authorization: `Bearer ${ES_TOKEN}` }, expectUnauthorized: true },
      ),
      peer.fastify(),
      peer.undici(),
    ],
  },
  {
    id: "l7-ratelimit-redis",
    title: "L7 rate limit on the Redis store",
    kind: "http",
    backends: 1,
    refs: ["direct", "switchyard", "fastify-http-proxy", "undici-proxy"],
    floor: "undici-proxy",
    note: "switchyard rate limit: rateLimit 1e9/1m by ip, store redis at 127.0.0.1:6379 (the machine's own Redis, not pinned), one shared counter for every request.",
    peers: () => [
      peer.direct(),
      peer.switchyard("switchyard", "switchyard plain", (ctx) => l7Config(ctx.targets)),
      peer.switchyard("switchyard-rl-redis", "switchyard rate limit (redis)", (ctx) =>
        l7Config(
          ctx.targets,
          { rateLimit: { max: 1_000_000_000, window: "1m", by: "ip" } },
          {},
          {
            store: {
              type: "redis",
              url: `redis://127.0.0.1:${REDIS_PORT}`,
              prefix: `sy-bench-${process.pid}:`,
            },
          },
        ),
      ),
      peer.fastify(),
      peer.undici(),
    ],
  },
  {
    id: "l7-cache",
    title: "L7 cache hit",
    kind: "http",
    backends: 1,
    refs: ["direct", "fastify-http-proxy", "undici-proxy"],
    floor: "undici-proxy",
    note: "switchyard-cache: route.cache ttl 60s (every request after the first is a hit); nginx with proxy_cache; the Node peers do not cache.",
    peers: () => [
      peer.direct(),
      peer.switchyard(
        "switchyard-cache",
        "switchyard cache",
        (ctx) => l7Config(ctx.targets, { cache: { ttl: "60s" } }),
        {
          expectHit: true,
        },
      ),
      { ...peer.nginx("cache"), expectHit: true },
      peer.fastify(),
      peer.undici(),
    ],
  },
  {
    id: "l7-cache-redis",
    title: "L7 cache hit on the Redis store",
    kind: "http",
    backends: 1,
    refs: ["direct", "fastify-http-proxy", "undici-proxy"],
    floor: "undici-proxy",
    note: "switchyard-cache-redis: route.cache ttl 60s, store redis at 127.0.0.1:6379 (the machine's own Redis, not pinned; a key prefix of this run's own), every request after the first a hit read from Redis; the Node peers do not cache.",
    peers: () => [
      peer.direct(),
      peer.switchyard(
        "switchyard-cache-redis",
        "switchyard cache (redis)",
        (ctx) =>
          l7Config(
            ctx.targets,
            { cache: { ttl: "60s" } },
            {},
            {
              store: {
                type: "redis",
                url: `redis://127.0.0.1:${REDIS_PORT}`,
                prefix: `sy-bench-cache-${process.pid}-${Date.now()}:`,
                // Without Redis the check's GET is a 503 and the peer is skipped, not measured on the local fallback.
                onError: "deny",
              },
            },
          ),
        { expectHit: true },
      ),
      peer.fastify(),
      peer.undici(),
    ],
  },
  {
    id: "l7-lc3",
    title: "L7 with 3 targets, least-connections",
    kind: "http",
    backends: 3,
    refs: ["direct", "fastify-http-proxy", "undici-proxy"],
    floor: "undici-proxy",
    note: "3 backends on the server CPU; @fastify/http-proxy and the undici floor proxy to the first backend only (they do not balance).",
    peers: () => [
      peer.direct("backend direct (1 of 3)"),
      peer.switchyard("switchyard-lc", "switchyard least-conn", (ctx) =>
        l7Config(ctx.targets, {}, { balancer: "least-connections" }),
      ),
      peer.nginx("http", "least-connections"),
      peer.haproxy("http", "least-connections"),
      peer.fastify("@fastify/http-proxy (1 target)"),
      peer.undici("undici floor (1 target)"),
    ],
  },
  {
    id: "l4-tcp",
    title: "L4 TCP passthrough (HTTP load through it)",
    kind: "http",
    backends: 1,
    refs: ["direct", "tcp-pipe", "haproxy-tcp"],
    floor: "tcp-pipe",
    note: NAT_NOTE,
    peers: () => [
      peer.direct(),
      peer.switchyard("switchyard-tcp", "switchyard tcp", (ctx) =>
        tcpConfig("bench", "backend", `tcp://${ctx.targets[0].replace(/^\w+:\/\//, "")}`),
      ),
      peer.switchyard("switchyard-nat-tcp", "switchyard nat (kernel)", (ctx) =>
        natConfig("bench", "backend", `tcp://${ctx.targets[0].replace(/^\w+:\/\//, "")}`),
      ),
      peer.tcpPipe(),
      peer.haproxy("tcp"),
      peer.nginx("stream"),
    ],
  },
  {
    id: "l4-redis",
    title: "L4 TCP to Redis (redis-benchmark -t get,set)",
    kind: "redis",
    backends: 0,
    refs: ["direct", "tcp-pipe", "haproxy-tcp"],
    floor: "tcp-pipe",
    note: `Redis at 127.0.0.1:6379 is the machine's own (not pinned, not started by the harness): no CPU figure for it. ${NAT_NOTE}`,
    peers: () => [
      peer.direct("redis direct"),
      peer.switchyard("switchyard-tcp", "switchyard tcp", () =>
        tcpConfig("redis", "redis", `tcp://127.0.0.1:${REDIS_PORT}`),
      ),
      peer.switchyard("switchyard-nat-tcp", "switchyard nat (kernel)", () =>
        natConfig("redis", "redis", `tcp://127.0.0.1:${REDIS_PORT}`),
      ),
      peer.tcpPipe(),
      peer.haproxy("tcp"),
      peer.nginx("stream"),
    ],
  },
];

if (opts.only) {
  const unknown = opts.only.filter((id) => !SCENARIOS.some((s) => s.id === id));
  if (unknown.length)
    fail(`unknown scenario ${unknown.join(", ")}; known: ${SCENARIOS.map((s) => s.id).join(", ")}`);
}
const selected = SCENARIOS.filter((s) => !opts.only || opts.only.includes(s.id));

// ------------------------------------------------------------------ checks and measurement

function redisPing(port) {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host: "127.0.0.1", port });
    let buf = "";
    const t = setTimeout(() => {
      s.destroy();
      reject(new Error("no PONG within 3 s"));
    }, 3000);
    s.on("connect", () => s.write("*1\r\n$4\r\nPING\r\n"));
    s.on("data", (d) => {
      buf += d;
      if (buf.includes("\r\n")) {
        clearTimeout(t);
        s.destroy();
        if (buf.startsWith("+PONG")) resolve();
        else reject(new Error(`unexpected answer ${JSON.stringify(buf.trim())}`));
      }
    });
    s.on("error", (err) => {
      clearTimeout(t);
      reject(err);
    });
  });
}

/** Sanity checks before loading a peer; throws SkipError when it does not serve, returns warnings. */
async function checkPeer(sc, p, port) {
  const warnings = [];
  if (sc.kind === "redis") {
    await redisPing(port).catch((err) => {
      throw new SkipError(`check failed: ${err.message}`);
    });
    return warnings;
  }
  let r;
  try {
    r = await httpGet(port, { headers: p.headers });
  } catch (err) {
    throw new SkipError(`check failed: GET / ${err.message}`);
  }
  if (r.status !== 200) {
    throw new SkipError(`check failed: GET / answered ${r.status} ${r.body.toString().slice(0, 120)}`);
  }
  if (r.body.length !== 100) warnings.push(`body is ${r.body.length} bytes, expected 100`);
  if (p.expectUnauthorized) {
    const u = await httpGet(port).catch((err) => ({ status: err.message }));
    if (u.status !== 401)
      warnings.push(`GET / without a token answered ${u.status}, expected 401 (auth not enforced?)`);
  }
  if (p.expectHit) {
    const h = await httpGet(port, { headers: p.headers }).catch(() => null);
    const xc = h?.headers["x-cache"];
    if (!/HIT/i.test(String(xc))) warnings.push(`second GET has X-Cache ${xc ?? "absent"}, expected HIT`);
  }
  return warnings;
}

async function load(sc, p, port, seconds) {
  if (sc.kind === "redis") {
    return runRedisBenchmark({ port, n: seconds, clients: opts.connections, loadPrefix });
  }
  const a = {
    port,
    headers: p.headers,
    seconds,
    connections: opts.connections,
    threads: wrkThreads,
    loadPrefix,
  };
  return tool === "wrk" ? runWrk(a) : runAutocannon(a);
}

/** Runs fn while sampling the CPU time and RSS of the process tree rooted at child. */
async function measure(child, fn) {
  const pids = child?.alive ? processTree(child.pid) : null;
  let peak = 0;
  const sample = () => {
    if (pids) peak = Math.max(peak, rssKb(pids));
  };
  sample();
  const timer = setInterval(sample, 250);
  const t0 = pids ? cpuTicks(pids) : 0;
  let r;
  try {
    r = await fn();
  } finally {
    clearInterval(timer);
  }
  const t1 = pids ? cpuTicks(pids) : 0;
  sample();
  r.cpuUsPerReq = pids && r.requests ? (((t1 - t0) / clk) * 1e6) / r.requests : Number.NaN;
  r.rssMb = pids ? peak / 1024 : Number.NaN;
  return r;
}

const redisOps = () => (opts.quick ? 50_000 : 200_000);
const startedAt = Date.now();
const outOfTime = () => Date.now() - startedAt > opts.maxMinutes * 60_000;
const f1 = (x) => (Number.isFinite(x) ? x.toFixed(1) : "—");
const f2 = (x) => (Number.isFinite(x) ? x.toFixed(2) : "—");

async function runScenario(sc) {
  const result = { ...sc, rows: [] };
  console.log(`\n## ${sc.title} (${sc.id})`);
  const started = [];
  try {
    // Upstreams
    let targets;
    let direct;
    if (sc.kind === "redis") {
      if (!redisBenchOk) throw new SkipError("redis-benchmark not installed");
      await redisPing(REDIS_PORT).catch((err) => {
        throw new SkipError(`no Redis on 127.0.0.1:${REDIS_PORT} (${err.message})`);
      });
      targets = [`tcp://127.0.0.1:${REDIS_PORT}`];
      direct = { port: REDIS_PORT, child: null };
    } else {
      const backends = [];
      for (let i = 0; i < sc.backends; i++) {
        const child = new Child(`backend-${i + 1}`, process.execPath, [path.join(BENCH, "backend.mjs")], {
          cwd: ROOT,
        });
        started.push(child);
        backends.push({ port: await child.waitForPortLine(10_000), child });
      }
      targets = http(backends.map((b) => b.port));
      direct = backends[0];
    }
    const ctx = { scenario: sc.id, targets, direct };

    // Peers
    const running = [];
    for (const p of sc.peers().flatMap((p) => (opts.compare && p.twin ? [p, p.twin()] : [p]))) {
      const row = { id: p.id, label: p.label, runs: [], warnings: [], notes: [], sum: null, reason: "" };
      result.rows.push(row);
      if (p.needs && !native[p.needs]) {
        row.reason = `${p.needs} not installed`;
        console.log(`  ${p.label}: skipped: ${row.reason}`);
        continue;
      }
      let h = null;
      try {
        h = await p.start(ctx);
        if (h.child && p.owned !== false) started.push(h.child);
        row.warnings = await checkPeer(sc, p, h.port);
        running.push({ p, row, h });
        console.log(
          `  ${p.label}: ready on 127.0.0.1:${h.port}${row.warnings.map((w) => ` (⚠ ${w})`).join("")}`,
        );
      } catch (err) {
        if (!(err instanceof SkipError)) throw err;
        if (h?.child && p.owned !== false) await h.child.stop(2000);
        row.reason = err.message;
        console.log(`  ${p.label}: skipped: ${row.reason}`);
      }
    }

    // Interleaved rounds: A B C A B C
    const warm = sc.kind === "redis" ? (opts.quick ? 5_000 : 20_000) : opts.warmup;
    const amount = sc.kind === "redis" ? redisOps() : opts.duration;
    for (let round = 1; round <= opts.rounds; round++) {
      for (const { p, row, h } of running) {
        if (row.failed) continue;
        if (outOfTime()) {
          row.failed = true;
          row.reason = `--max-minutes ${opts.maxMinutes} reached`;
          continue;
        }
        if (h.child && !h.child.alive) {
          row.failed = true;
          row.reason = `process exited (${h.child.exitCode}): ${h.child.lastLine()}`;
          console.log(`  ${p.label}: ${row.reason}`);
          continue;
        }
        try {
          await load(sc, p, h.port, warm);
          const r = await measure(h.child, () => load(sc, p, h.port, amount));
          row.runs.push(r);
          const bad = r.errors || r.non2xx ? `  ⚠ ${r.errors} errors, ${r.non2xx} non-2xx` : "";
          console.log(
            `  [${round}/${opts.rounds}] ${p.label.padEnd(30)} ${Math.round(r.rps).toString().padStart(7)} ${sc.kind === "redis" ? "ops" : "req"}/s  p50 ${f2(r.p50)} ms  p99 ${f2(r.p99)} ms  cpu ${f1(r.cpuUsPerReq)} µs/req  rss ${f1(r.rssMb)} MB${bad}`,
          );
        } catch (err) {
          row.failed = true;
          row.reason = err.message.split("\n")[0];
          console.log(`  ${p.label}: run failed: ${row.reason}`);
        }
      }
    }

    // Latency at half of each peer's own maximum (open loop)
    if (sc.halfLoad) {
      for (const { p, row, h } of running) {
        if (!row.runs.length || (h.child && !h.child.alive) || outOfTime()) continue;
        const rate = Math.max(1, Math.round(0.5 * summarize(row).rps));
        try {
          const paced = { port: h.port, headers: p.headers, rate, connections: opts.connections, loadPrefix };
          // wrk paces in C on the load CPU; the Node client is the fallback where wrk is absent.
          const runHalf = tool === "wrk" ? runWrkPaced : runPaced;
          await runHalf({ ...paced, seconds: opts.warmup });
          const r = await runHalf({ ...paced, seconds: opts.duration });
          row.half = { rate, p99: r.p99, p50: r.p50, clientLimited: r.clientLimited };
          if (r.clientLimited) {
            row.notes.push(
              r.paced === "wrk"
                ? `p99 @50% load: wrk reached ${Math.round(r.rps)} of ${rate} req/s (under 90%)`
                : `p99 @50% load is client-limited: the paced client sent p99 ${f2(r.clientLagP99)} ms late at ${rate} req/s`,
            );
          }
          console.log(
            `  [50% load] ${p.label.padEnd(28)} ${rate} req/s paced: p50 ${f2(r.p50)} ms  p99 ${f2(r.p99)} ms${r.clientLimited ? `  ⚠ client-limited (sent p99 ${f2(r.clientLagP99)} ms late)` : ""}${r.errors || r.non2xx ? `  ⚠ ${r.errors} errors, ${r.non2xx} non-2xx` : ""}`,
          );
        } catch (err) {
          console.log(`  [50% load] ${p.label}: failed: ${err.message}`);
        }
      }
    }
  } catch (err) {
    if (!(err instanceof SkipError)) throw err;
    result.skipped = err.message;
    console.log(`  skipped: ${err.message}`);
  } finally {
    await Promise.all(started.map((c) => c.stop(3000)));
  }
  for (const row of result.rows) {
    row.sum = summarize(row);
    if (!row.sum && !row.reason) row.reason = "no run completed";
  }
  const { table, notes } = scenarioMarkdown(result);
  console.log(`\n${table}${notes ? `\n\n${notes}` : ""}`);
  return result;
}

// ------------------------------------------------------------------ main

const command = `node bench/run.mjs ${process.argv.slice(2).join(" ")}`.trim();
const loadDesc =
  tool === "wrk"
    ? `wrk ${wrkVersion} (${wrkThreads} thread${wrkThreads > 1 ? "s" : ""})`
    : "autocannon (in the harness process; wrk not installed)";
console.log(
  `Switchyard bench${opts.quick ? " — quick" : ""}: ${opts.rounds} round(s) × ${opts.duration} s after ${opts.warmup} s warm-up, ${opts.connections} keep-alive connections`,
);
console.log(`node ${process.version} · ${cpuModel} · ${nproc} CPUs · CLK_TCK ${clk}`);
console.log(`pinning: ${pinning}`);
console.log(
  `load: ${loadDesc}${redisBenchOk ? ` · redis-benchmark ${redisBenchVersion}` : " · redis-benchmark not installed"}`,
);
console.log(
  native.nginx
    ? `nginx ${native.nginx.version}${native.nginx.stream === null ? " (no stream module: nginx stream skipped)" : ""}`
    : "nginx not installed — skipped",
);
console.log(native.haproxy ? `haproxy ${native.haproxy.version}` : "haproxy not installed — skipped");
if (!built) console.log("switchyard not built (npm run build) — skipped");
else
  console.log(
    `switchyard: node ${[...syNodeFlags, ""].join(" ")}${path.relative(ROOT, CLI)}${syLogLevel ? ` --log-level ${syLogLevel}` : ""}${opts.compare ? `; compared with ${path.relative(ROOT, opts.compare)}` : ""}`,
  );

const results = [];
try {
  for (const sc of selected) {
    if (outOfTime()) {
      console.log(`\n## ${sc.title}: skipped: --max-minutes ${opts.maxMinutes} reached`);
      continue;
    }
    results.push(await runScenario(sc));
  }
} finally {
  await stopAll();
}

const meta = {
  date: new Date().toISOString(),
  command,
  node: process.version,
  cpu: cpuModel,
  nproc,
  os: `${os.type()} ${os.release()}`,
  load: `${loadDesc}, ${opts.connections} keep-alive connections, ${opts.rounds} interleaved round(s) × ${opts.duration} s after ${opts.warmup} s warm-up; redis: redis-benchmark -t get,set -n ${redisOps()} -c ${opts.connections}; "p99 @50% load": ${tool === "wrk" ? "wrk paced (each connection waits connections ÷ rate before each request)" : "open-loop paced Node client"} at half the peer's median req/s for ${opts.duration} s`,
  loadShort: tool === "wrk" ? `wrk, ${opts.connections} conns` : `autocannon, ${opts.connections} conns`,
  unitNote: "req/s (ops/s for Redis), longer is better",
  pinning,
  peers: [
    native.nginx
      ? `nginx ${native.nginx.version}${native.nginx.stream === null ? " (no stream module)" : ""}`
      : "nginx not installed",
    native.haproxy ? `HAProxy ${native.haproxy.version}` : "HAProxy not installed",
    redisBenchOk ? `redis-benchmark ${redisBenchVersion}` : "redis-benchmark not installed",
    "one worker/thread each",
  ].join("; "),
  switchyard: built
    ? `node ${[...syNodeFlags, ""].join(" ")}dist/src/cli.js, 1 worker${syLogLevel ? `, --log-level ${syLogLevel}` : ""}`
    : "not built (npm run build) — skipped",
};

const writeFinal = (!opts.quick || opts.write) && !opts.compare;
const mdPath = writeFinal ? path.join(BENCH, "RESULTS.md") : path.join(TMP, "RESULTS.quick.md");
const svgPath = writeFinal ? path.join(BENCH, "results.svg") : path.join(TMP, "results.svg");
const targets = writeReport(meta, results, mdPath, svgPath);
console.log(`\n## Targets (issue 6)\n\n${targetsMarkdown(targets)}`);
console.log(
  `\nwrote ${path.relative(ROOT, mdPath)} and ${path.relative(ROOT, svgPath)}${writeFinal ? "" : opts.compare ? " (--compare: bench/RESULTS.md untouched)" : " (--quick: bench/RESULTS.md untouched; add --write to update it)"}`,
);
