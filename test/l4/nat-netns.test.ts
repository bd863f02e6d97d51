/**
 * `mode: nat` end to end across network namespaces (issue 16): the test
 * builds a client namespace, the gateway's, and two backend namespaces joined
 * by veth pairs, runs the real `switchyard` process in the gateway's (its
 * table is the real `inet switchyard` there), and drives a client in the
 * client's. It shows balancing (prerouting DNAT, forwarded), snat and
 * snat: false as the backends see them, stickiness per connection, drain
 * with an open connection kept, failover when a target's health check fails,
 * the table removed at SIGTERM, and a crashed run's table replaced at start.
 * Every namespace (with its links and tables) is deleted when the test ends.
 *
 *   client 10.77.1.2 ── 10.77.1.1 gateway 10.77.2.1 ── 10.77.2.2 backend b1
 *                                          10.77.3.1 ── 10.77.3.2 backend b2
 */
import assert from "node:assert/strict";
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { once } from "node:events";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { after, before, describe, test } from "node:test";
import { promisify } from "node:util";
import { natSkip } from "./nat-helpers.js";

const exec = promisify(execFile);
const ROOT = new URL("../../", import.meta.url).pathname;
// A guard, not a pace: each wait ends at the awaited line. A switchyard process compiling its sources
// through tsx took over 10 s to start on a machine with both cores busy (issue 17).
const WAIT = 60_000;

const id = `sy${process.pid % 100000}`;
const NS = { client: `${id}c`, gw: `${id}g`, b1: `${id}b1`, b2: `${id}b2` };
const GW = "10.77.1.1";

const hasIpNetns = await exec("ip", ["netns", "list"]).then(
  () => true,
  () => false,
);
const skip = natSkip || (!hasIpNetns && "needs `ip netns` (iproute2) and root");

const ip = (...args: string[]) => exec("ip", args);
const inNs = (ns: string, cmd: string, ...args: string[]) => exec("ip", ["netns", "exec", ns, cmd, ...args]);

async function buildNetwork(): Promise<void> {
  for (const ns of Object.values(NS)) {
    await ip("netns", "add", ns);
    await ip("-n", ns, "link", "set", "lo", "up");
  }
  const links: [string, string, number][] = [
    ["to-client", NS.client, 1],
    ["to-b1", NS.b1, 2],
    ["to-b2", NS.b2, 3],
  ];
  for (const [name, peer, net] of links) {
    await ip("-n", NS.gw, "link", "add", name, "type", "veth", "peer", "name", "eth0", "netns", peer);
    await ip("-n", NS.gw, "addr", "add", `10.77.${net}.1/24`, "dev", name);
    await ip("-n", peer, "addr", "add", `10.77.${net}.2/24`, "dev", "eth0");
    await ip("-n", NS.gw, "link", "set", name, "up");
    await ip("-n", peer, "link", "set", "eth0", "up");
    // Every host's way back is the gateway (what snat: false needs of its backends).
    await ip("-n", peer, "route", "add", "default", "via", `10.77.${net}.1`);
  }
  await inNs(NS.gw, "sysctl", "-qw", "net.ipv4.ip_forward=1");
}

async function removeNetwork(): Promise<void> {
  for (const ns of Object.values(NS)) await ip("netns", "del", ns).catch(() => {});
}

/** A process in a namespace, killed at the end if still running; `lines` yields its stdout lines. */
function startIn(ns: string, args: string[]): ChildProcess & { lines: AsyncIterableIterator<string> } {
  const child = spawn("ip", ["netns", "exec", ns, ...args], { cwd: ROOT, stdio: ["pipe", "pipe", "pipe"] });
  children.add(child);
  child.on("exit", () => children.delete(child));
  let stderr = "";
  child.stderr?.on("data", (d) => {
    stderr += d;
  });
  child.on("exit", (code) => {
    if (code && stderr) process.stderr.write(`[${ns}] ${stderr}`);
  });
  const lines = createInterface({ input: child.stdout! })[Symbol.asyncIterator]();
  return Object.assign(child, { lines });
}
const children = new Set<ChildProcess>();

/** Reads lines until one matches; bounded. */
async function lineMatching(lines: AsyncIterableIterator<string>, re: RegExp): Promise<string> {
  const timer = AbortSignal.timeout(WAIT);
  for (;;) {
    const next = await Promise.race([
      lines.next(),
      once(timer, "abort").then(() => {
        throw new Error(`no line matching ${re} within ${WAIT} ms`);
      }),
    ]);
    if (next.done) throw new Error(`output ended before a line matching ${re}`);
    if (re.test(next.value)) return next.value;
  }
}

/** A backend answering each line with `name peer-address line`. */
const BACKEND = `const [name] = process.argv.slice(-1);
require("net").createServer((s) => {
  let buf = "";
  s.on("error", () => {});
  s.on("data", (d) => {
    buf += d;
    for (let i = buf.indexOf("\\n"); i >= 0; i = buf.indexOf("\\n")) {
      s.write(name + " " + s.remoteAddress + " " + buf.slice(0, i) + "\\n");
      buf = buf.slice(i + 1);
    }
  });
}).listen(7000, "0.0.0.0", () => console.log("ready"));`;

/** The client: JSON commands in, JSON answers out (one line each). */
const CLIENT = `const net = require("net");
const conns = new Map();
function ask(c, line) {
  return new Promise((ok, fail) => {
    let buf = "";
    const t = setTimeout(() => fail(new Error("no answer")), 5000);
    const on = (d) => { buf += d; const i = buf.indexOf("\\n"); if (i < 0) return;
      c.off("data", on); clearTimeout(t); ok(buf.slice(0, i)); };
    c.on("data", on); c.write(line + "\\n");
  });
}
function open(port) {
  return new Promise((ok, fail) => {
    const c = net.connect(port, "${GW}", () => ok(c));
    c.once("error", fail);
    c.setTimeout(5000, () => c.destroy(new Error("ETIMEDOUT")));
  });
}
async function run(m) {
  if (m.op === "open") { conns.set(m.conn, await open(m.port)); return {}; }
  if (m.op === "ask") return { reply: await ask(conns.get(m.conn), m.line) };
  if (m.op === "close") { conns.get(m.conn).destroy(); conns.delete(m.conn); return {}; }
  if (m.op === "once") { const c = await open(m.port); try { return { reply: await ask(c, m.line) }; } finally { c.destroy(); } }
  if (m.op === "http") { const r = await fetch(m.url, { method: m.method }); return { status: r.status, body: await r.text() }; }
}
require("readline").createInterface({ input: process.stdin }).on("line", async (l) => {
  const m = JSON.parse(l);
  try { console.log(JSON.stringify({ id: m.id, ...(await run(m)) })); }
  catch (e) { console.log(JSON.stringify({ id: m.id, error: e.code || e.message })); }
});
console.log(JSON.stringify({ id: 0 }));`;

/**
 * Resolves true once three new connections in a row reach `name`, false after
 * 3 s. The kernel's table has no event to await: new connections are the probe.
 */
async function until3(next: () => Promise<{ name: string }>, name: string): Promise<boolean> {
  const end = Date.now() + 3000;
  while (Date.now() < end) {
    let run = 0;
    while (run < 3 && (await next()).name === name) run++;
    if (run === 3) return true;
  }
  return false;
}

interface Answer {
  id: number;
  reply?: string;
  status?: number;
  body?: string;
  error?: string;
}

describe("nat mode across network namespaces (real switchyard process)", { skip }, () => {
  let client: ReturnType<typeof startIn>;
  let gateway: ReturnType<typeof startIn> | undefined;
  const backends = new Map<string, ReturnType<typeof startIn>>();
  const pending = new Map<number, (a: Answer) => void>();
  let seq = 0;
  const dir = mkdtempSync(join(tmpdir(), "sy-nat-netns-"));
  const file = join(dir, "routes.yaml");

  const send = (m: Record<string, unknown>): Promise<Answer> => {
    const mid = ++seq;
    const answer = new Promise<Answer>((ok, fail) => {
      const timer = setTimeout(() => fail(new Error(`client: no answer to ${JSON.stringify(m)}`)), WAIT);
      pending.set(mid, (a) => {
        clearTimeout(timer);
        ok(a);
      });
    });
    client.stdin?.write(`${JSON.stringify({ id: mid, ...m })}\n`);
    return answer;
  };
  /** One connection, one line: which backend answered and the address it saw. */
  const once_ = async (port: number) => {
    const a = await send({ op: "once", port, line: "hi" });
    if (a.error) throw new Error(`connection to :${port} failed: ${a.error}`);
    const [name, peer] = (a.reply ?? "").split(" ");
    return { name, peer };
  };

  async function startGateway(): Promise<void> {
    gateway = startIn(NS.gw, [process.execPath, "--import", "tsx", "src/cli.ts", "--config", file]);
    await lineMatching(gateway.lines, /L4 tcp 'direct' \(nat\) on 10\.77\.1\.1:8001/);
  }
  async function stopGateway(signal: NodeJS.Signals): Promise<number | null> {
    const g = gateway;
    if (!g || g.exitCode !== null) return g?.exitCode ?? null;
    const exited = once(g, "exit");
    g.kill(signal);
    const [code] = (await exited) as [number | null];
    gateway = undefined;
    return code;
  }
  const table = () =>
    inNs(NS.gw, "nft", "list", "table", "inet", "switchyard").then(
      (r) => r.stdout,
      () => undefined,
    );

  before(async () => {
    await removeNetwork();
    await buildNetwork();
    for (const b of ["b1", "b2"] as const) {
      const p = startIn(NS[b], [process.execPath, "-e", BACKEND, b]);
      backends.set(b, p);
      await lineMatching(p.lines, /^ready$/);
    }
    client = startIn(NS.client, [process.execPath, "-e", CLIENT]);
    (async () => {
      for await (const l of client.lines) {
        const a = JSON.parse(l) as Answer;
        pending.get(a.id)?.(a);
        pending.delete(a.id);
      }
    })();
    writeFileSync(
      file,
      `version: 1
shutdownTimeout: 2s
admin: { port: 9901, host: ${GW} }
services:
  app:
    targets: [tcp://10.77.2.2:7000, tcp://10.77.3.2:7000]
    healthCheck: { interval: 100ms, timeout: 200ms, unhealthyThreshold: 1, healthyThreshold: 1 }
tcp:
  - { name: app, listen: { port: 8000, host: ${GW} }, service: app, mode: nat }
  - { name: direct, listen: { port: 8001, host: ${GW} }, service: app, mode: nat, snat: false }
`,
    );
    await startGateway();
  });

  after(async () => {
    for (const c of children) c.kill("SIGKILL");
    await Promise.all([...children].map((c) => (c.exitCode === null ? once(c, "exit") : undefined)));
    await removeNetwork();
  });

  test("the table is the real inet switchyard, DNAT in prerouting for the client's packets", async () => {
    const text = (await table()) ?? "";
    assert.match(text, /type nat hook prerouting priority dstnat;/);
    assert.match(
      text,
      /ip daddr 10\.77\.1\.1 tcp dport 8000 numgen inc mod 2 vmap \{ 0 : jump tcp_app_0, 1 : jump tcp_app_1 \}/,
    );
    assert.match(text, /dnat ip to 10\.77\.3\.2:7000/);
  });

  test("balancing: new connections alternate; with snat the backends see the gateway", async () => {
    const seen = [await once_(8000), await once_(8000), await once_(8000), await once_(8000)];
    const names = seen.map((s) => s.name);
    assert.ok(
      JSON.stringify(names) === '["b1","b2","b1","b2"]' || JSON.stringify(names) === '["b2","b1","b2","b1"]',
      names.join(),
    );
    for (const s of seen) assert.equal(s.peer, s.name === "b1" ? "10.77.2.1" : "10.77.3.1");
  });

  test("snat: false: the backends see the client's own address (their route back is the gateway)", async () => {
    const s = await once_(8001);
    assert.equal(s.peer, "10.77.1.2");
  });

  test("stickiness: every line of a connection reaches the same backend", async () => {
    await send({ op: "open", conn: "s", port: 8000 });
    const replies = [];
    for (let i = 0; i < 5; i++) replies.push((await send({ op: "ask", conn: "s", line: `l${i}` })).reply);
    await send({ op: "close", conn: "s" });
    const names = new Set(replies.map((r) => r?.split(" ")[0]));
    assert.equal(names.size, 1, replies.join(" | "));
  });

  test("drain: new connections leave the drained backend, an open connection keeps it", async () => {
    // Open connections until one is on b1 (round robin: two at most).
    let conn = "";
    for (let i = 0; i < 3 && conn === ""; i++) {
      await send({ op: "open", conn: `d${i}`, port: 8000 });
      const who = (await send({ op: "ask", conn: `d${i}`, line: "x" })).reply?.split(" ")[0];
      if (who === "b1") conn = `d${i}`;
      else await send({ op: "close", conn: `d${i}` });
    }
    assert.notEqual(conn, "", "a connection on b1");
    const admin = (verb: string) =>
      send({
        op: "http",
        method: "POST",
        url: `http://${GW}:9901/admin/upstreams/app/10.77.2.2:7000/${verb}`,
      });
    const drained = await admin("drain");
    assert.equal(drained.status, 200, drained.body);
    // The table follows within a poll: look until three new connections in a row land on b2.
    assert.equal(await until3(() => once_(8000), "b2"), true, "new connections on b2 only");
    const still = await send({ op: "ask", conn, line: "after-drain" });
    assert.match(still.reply ?? "", /^b1 /, "the open connection stays on b1");
    await send({ op: "close", conn });
    assert.equal((await admin("undrain")).status, 200);
  });

  test("failover: a backend that stops answering its health check gets no new connections", async () => {
    const b2 = backends.get("b2")!;
    const exited = once(b2, "exit");
    b2.kill("SIGKILL");
    await exited;
    const next = () => once_(8000).catch(() => ({ name: "-" }));
    assert.equal(await until3(next, "b1"), true, "every new connection on the healthy backend");
    assert.doesNotMatch(
      (await table()) ?? "",
      /tcp dport 8000 [^\n]*jump tcp_app_1/,
      "b2 is out of the listener's map",
    );
  });

  test("SIGTERM: the process exits 0 and the table is gone", async () => {
    assert.ok(await table(), "present while running");
    assert.equal(await stopGateway("SIGTERM"), 0);
    assert.equal(await table(), undefined);
    const { stdout } = await inNs(NS.gw, "nft", "list", "tables");
    assert.doesNotMatch(stdout, /switchyard/);
  });

  test("a table left by a crashed run is replaced at start", async () => {
    await startGateway();
    assert.equal(await stopGateway("SIGKILL"), null, "killed");
    assert.ok(await table(), "the crashed run's table is still there");
    await inNs(NS.gw, "nft", "add", "chain", "inet", "switchyard", "leftover");
    await startGateway();
    const text = (await table()) ?? "";
    assert.doesNotMatch(text, /leftover/);
    assert.match(text, /tcp dport 8000/);
    assert.equal((await once_(8000)).name, "b1");
    assert.equal(await stopGateway("SIGTERM"), 0);
    assert.equal(await table(), undefined);
  });
});
