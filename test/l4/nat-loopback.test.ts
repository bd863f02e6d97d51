/**
 * `mode: nat` with the real kernel on loopback (issue 16): clients on this
 * host are translated in the nat output hook. Redis and node backends behind
 * nat listeners; balancing, weights and stickiness; drain and health
 * failover reaching the table; UDP flows and their session timeout; reload,
 * removal, shutdown with drain, a crashed run's table, a second owner; the
 * metrics from the table's counters. Each test has its own nftables table,
 * deleted when it ends (also on failure).
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { once } from "node:events";
import { readFileSync } from "node:fs";
import { connect, type Socket } from "node:net";
import { describe, test } from "node:test";
import { promisify } from "node:util";
import { L4Listeners } from "../../src/l4-listeners.js";
import { Metrics } from "../../src/metrics/registry.js";
import { drainTarget } from "../../src/upstreams/drain.js";
import { ask, closed, lineServer, run, udpClient, udpEcho, until, WAIT } from "./helpers.js";
import { listTable, natGateway, natSkip, serviceRules, tableName, untilRules } from "./nat-helpers.js";

const exec = promisify(execFile);

/** A connection through the listener, answered by which backend (lineServer tags). */
async function open(port: number): Promise<Socket> {
  const c = connect({ port, host: "127.0.0.1" });
  c.on("error", () => {});
  await once(c, "connect", { signal: AbortSignal.timeout(WAIT) });
  return c;
}
const tagOf = async (c: Socket, line = "hi") => (await ask(c, line)).split(":")[0];
async function oneShot(port: number): Promise<string> {
  const c = await open(port);
  try {
    return await tagOf(c);
  } finally {
    c.destroy();
  }
}

const redisUp = await new Promise<boolean>((done) => {
  const s = connect(6379, "127.0.0.1", () => {
    s.destroy();
    done(true);
  });
  s.on("error", () => done(false));
});

describe("nat mode on loopback", { skip: natSkip }, () => {
  test("redis-cli through a nat listener: PING, SET, GET; the table shows the rule and counts", {
    skip: !redisUp && "no Redis on 127.0.0.1:6379",
  }, async (t) => {
    const gw = await natGateway(
      t,
      `version: 1
services:
  redis: { targets: [tcp://127.0.0.1:6379] }
tcp:
  - { name: redis, listen: { port: 0, host: 127.0.0.1 }, service: redis, mode: nat }
`,
    );
    const port = String(gw.port("redis"));
    assert.equal((await run("redis-cli", ["-p", port, "ping"])).stdout.trim(), "PONG");
    assert.equal((await run("redis-cli", ["-p", port, "set", "sy:nat", "kernel"])).stdout.trim(), "OK");
    assert.equal((await run("redis-cli", ["-p", port, "get", "sy:nat"])).stdout.trim(), "kernel");
    const rules = await serviceRules(gw.table);
    assert.deepEqual(rules, [
      `ip daddr 127.0.0.1 tcp dport ${port} numgen inc mod 1 vmap { 0 : jump tcp_redis_0 }`,
    ]);
    assert.match((await listTable(gw.table)) ?? "", /dnat ip to 127\.0\.0\.1:6379/);
    const [s] = await gw.l4.natStats();
    assert.equal(s.connections, 3, "one per redis-cli run");
    assert.ok(s.bytesIn > 0 && s.bytesOut > 0 && s.packetsIn > 0, JSON.stringify(s));
  });

  test("balancing by weight, in turn; every byte of a connection stays on its target", async (t) => {
    const a = await lineServer(t, "a");
    const b = await lineServer(t, "b");
    const gw = await natGateway(
      t,
      `version: 1
services:
  s: { targets: [tcp://127.0.0.1:${a.port}, { url: "tcp://127.0.0.1:${b.port}", weight: 2 }] }
tcp:
  - { name: t, listen: { port: 0, host: 127.0.0.1 }, service: s, mode: nat }
`,
    );
    const port = gw.port("t");
    const seen: string[] = [];
    for (let i = 0; i < 6; i++) {
      const c = await open(port);
      const tags = [await tagOf(c, "1"), await tagOf(c, "2"), await tagOf(c, "3")];
      c.destroy();
      assert.ok(
        tags.every((x) => x === tags[0]),
        `connection ${i} stayed on one target: ${tags}`,
      );
      seen.push(tags[0]);
    }
    // Smooth weighted round robin of 1:2, as the proxy mode's balancer does it.
    assert.deepEqual(seen, ["b", "a", "b", "b", "a", "b"]);
    assert.equal(a.accepted + b.accepted, 6, "one target connection per client connection (no proxy hop)");
  });

  test("drain reaches the table: new connections go elsewhere, an open one keeps its target", async (t) => {
    const a = await lineServer(t, "a");
    const b = await lineServer(t, "b");
    const gw = await natGateway(
      t,
      `version: 1
services:
  s: { targets: [tcp://127.0.0.1:${a.port}, tcp://127.0.0.1:${b.port}] }
tcp:
  - { name: t, listen: { port: 0, host: 127.0.0.1 }, service: s, mode: nat }
`,
    );
    const port = gw.port("t");
    const kept = await open(port);
    assert.equal(await tagOf(kept), "a");
    const started = Date.now();
    drainTarget(gw.gen, "s", `tcp://127.0.0.1:${a.port}`);
    await untilRules(gw.table, (r) => r.length === 1 && !r[0].includes("tcp_t_0"));
    const took = Date.now() - started;
    assert.ok(took < 1000, `in the kernel ${took} ms after the drain`);
    for (let i = 0; i < 4; i++) assert.equal(await oneShot(port), "b");
    assert.equal(await tagOf(kept, "still"), "a", "the open connection stays on the drained target");
    kept.destroy();
  });

  test("a failed health check takes the target out of the kernel's map; no usable target resets at once", async (t) => {
    const a = await lineServer(t, "a");
    const b = await lineServer(t, "b");
    const gw = await natGateway(
      t,
      `version: 1
services:
  s:
    targets: [tcp://127.0.0.1:${a.port}, tcp://127.0.0.1:${b.port}]
    healthCheck: { interval: 100ms, timeout: 200ms, unhealthyThreshold: 1, healthyThreshold: 1 }
tcp:
  - { name: t, listen: { port: 0, host: 127.0.0.1 }, service: s, mode: nat }
`,
    );
    const port = gw.port("t");
    assert.deepEqual([await oneShot(port), await oneShot(port)], ["a", "b"]);
    a.server.close();
    const ta = gw.gen.services.get("s")!.targets[0];
    await until(() => !ta.healthy);
    await untilRules(gw.table, (r) => r.length === 1 && !r[0].includes("tcp_t_0"));
    for (let i = 0; i < 4; i++) assert.equal(await oneShot(port), "b");
    // None usable: no rule, and the listener's own socket resets what reaches it.
    drainTarget(gw.gen, "s", "1");
    await untilRules(gw.table, (r) => r.length === 0);
    const c = connect({ port, host: "127.0.0.1" });
    const [err] = (await once(c, "error", { signal: AbortSignal.timeout(WAIT) })) as [NodeJS.ErrnoException];
    assert.equal(err.code, "ECONNRESET");
  });

  test("UDP: a flow keeps its target; flows are balanced; sessionTimeout ends a flow", async (t) => {
    const a = await udpEcho(t, "a");
    const b = await udpEcho(t, "b");
    const c = await udpEcho(t, "c");
    const gw = await natGateway(
      t,
      `version: 1
services:
  d: { targets: [udp://127.0.0.1:${a.port}, udp://127.0.0.1:${b.port}, udp://127.0.0.1:${c.port}] }
udp:
  - { name: d, listen: { port: 0, host: 127.0.0.1 }, service: d, mode: nat, sessionTimeout: 1s }
`,
    );
    const port = gw.port("d");
    const c1 = await udpClient(t, port);
    assert.deepEqual([await c1.ask("1"), await c1.ask("2"), await c1.ask("3")], ["a:1", "a:2", "a:3"]);
    const c2 = await udpClient(t, port);
    assert.equal(await c2.ask("x"), "b:x", "the next flow goes to the next target");
    // c1's flow ends 1 s after its last datagram. Conntrack has no event for that: watch its table
    // where procfs shows it, else let the timeout pass.
    const c1port = c1.socket.address().port;
    if (canSeeConntrack()) await until(() => !conntrackHas(c1port), 5000);
    else await new Promise((r) => setTimeout(r, 2000));
    assert.equal(await c1.ask("4"), "c:4", "a new flow, balanced afresh (its old one would answer a)");
    const c3 = await udpClient(t, port);
    assert.equal(await c3.ask("y"), "a:y");
    const [s] = await gw.l4.natStats();
    assert.equal(s.kind, "udp");
    assert.equal(s.connections, 4, "four flows");
    assert.equal(s.packetsIn, 6);
    assert.equal(s.packetsOut, 6);
  });

  test("reload swaps the table in one step: new targets for new connections, open ones kept; mode changes refused", async (t) => {
    const a = await lineServer(t, "a");
    const b = await lineServer(t, "b");
    const yaml = (target: number, mode = "nat") => `version: 1
services:
  s: { targets: [tcp://127.0.0.1:${target}] }
  q: { targets: [tcp://127.0.0.1:${target}] }
tcp:
  - { name: t, listen: { port: 0, host: 127.0.0.1 }, service: s, mode: ${mode} }
  - { name: gone, listen: { port: 0, host: 127.0.0.1 }, service: q, mode: nat }
`;
    const gw = await natGateway(t, yaml(a.port));
    const port = gw.port("t");
    const gonePort = gw.port("gone");
    const kept = await open(port);
    const keptGone = await open(gonePort);
    assert.equal(await tagOf(kept), "a");
    await gw.reload(yaml(b.port).split("\n").slice(0, -2).join("\n"));
    assert.equal(gw.port("t"), port, "same reserved port");
    assert.deepEqual(await serviceRules(gw.table), [
      `ip daddr 127.0.0.1 tcp dport ${port} numgen inc mod 1 vmap { 0 : jump tcp_t_0 }`,
    ]);
    assert.match((await listTable(gw.table)) ?? "", new RegExp(`dnat ip to 127\\.0\\.0\\.1:${b.port}\\n`));
    assert.equal(await oneShot(port), "b");
    assert.equal(await tagOf(kept, "again"), "a", "the open connection keeps its target");
    assert.equal(await tagOf(keptGone, "too"), "a", "so does one of the removed listener");
    const refused = connect({ port: gonePort, host: "127.0.0.1" });
    const [err] = (await once(refused, "error", { signal: AbortSignal.timeout(WAIT) })) as [
      NodeJS.ErrnoException,
    ];
    assert.equal(err.code, "ECONNREFUSED", "the removed listener's port is released and untranslated");
    const before = await listTable(gw.table);
    await assert.rejects(
      gw.reload(yaml(b.port, "proxy").split("\n").slice(0, -2).join("\n")),
      /tcp listener 't' cannot change mode from nat to proxy in a reload/,
    );
    assert.equal(await listTable(gw.table), before, "the running table is left as it was");
    kept.destroy();
    keptGone.destroy();
  });

  test("shutdown: new connections refused at once, an open one kept through the drain, then the table deleted", async (t) => {
    const a = await lineServer(t, "a");
    const gw = await natGateway(
      t,
      `version: 1
services:
  s: { targets: [tcp://127.0.0.1:${a.port}] }
tcp:
  - { name: t, listen: { port: 0, host: 127.0.0.1 }, service: s, mode: nat }
`,
    );
    const port = gw.port("t");
    const kept = await open(port);
    assert.equal(await tagOf(kept), "a");
    const closing = gw.l4.close(10_000);
    await untilRules(gw.table, (r) => r.length === 0);
    const c = connect({ port, host: "127.0.0.1" });
    const [err] = (await once(c, "error", { signal: AbortSignal.timeout(WAIT) })) as [NodeJS.ErrnoException];
    assert.ok(["ECONNREFUSED", "ECONNRESET"].includes(err.code ?? ""), err.code);
    assert.equal(await tagOf(kept, "draining"), "a", "the open connection works during the drain");
    assert.ok(await listTable(gw.table), "the table stays while a connection is open");
    const ended = Date.now();
    kept.end();
    await closed(kept);
    await closing;
    if (canSeeConntrack())
      assert.ok(
        Date.now() - ended < 3000,
        "the drain ends when the last connection does, not at its deadline",
      );
    assert.equal(await listTable(gw.table), undefined, "table deleted");
  });

  test("counters stay monotonic when a reload removes a target (its counts are kept)", async (t) => {
    const a = await lineServer(t, "a");
    const b = await lineServer(t, "b");
    const yaml = (targets: number[]) => `version: 1
services:
  s: { targets: [${targets.map((p) => `tcp://127.0.0.1:${p}`).join(", ")}] }
tcp:
  - { name: t, listen: { port: 0, host: 127.0.0.1 }, service: s, mode: nat }
`;
    const gw = await natGateway(t, yaml([a.port, b.port]));
    assert.deepEqual([await oneShot(gw.port("t")), await oneShot(gw.port("t"))], ["a", "b"]);
    const before = (await gw.l4.natStats())[0];
    assert.equal(before.connections, 2);
    await gw.reload(yaml([a.port]));
    assert.doesNotMatch(
      (await listTable(gw.table)) ?? "",
      /tcp_t_1/,
      "the removed target's objects are gone",
    );
    assert.equal(await oneShot(gw.port("t")), "a");
    const after = (await gw.l4.natStats())[0];
    assert.equal(after.connections, 3);
    assert.ok(after.bytesIn > before.bytesIn && after.packetsOut > before.packetsOut);
  });

  test("a port in use fails with one line and leaves the running table as it was", async (t) => {
    const a = await lineServer(t, "a");
    const busy = await lineServer(t, "busy");
    const yaml = (extra: string) => `version: 1
services:
  s: { targets: [tcp://127.0.0.1:${a.port}] }
tcp:
  - { name: t, listen: { port: 0, host: 127.0.0.1 }, service: s, mode: nat }
${extra}`;
    const gw = await natGateway(t, yaml(""));
    const before = await listTable(gw.table);
    await assert.rejects(
      gw.reload(
        yaml(`  - { name: u, listen: { port: ${busy.port}, host: 127.0.0.1 }, service: s, mode: nat }\n`),
      ),
      new RegExp(`^Error: cannot listen on 127\\.0\\.0\\.1:${busy.port}: address already in use$`),
    );
    assert.equal(await listTable(gw.table), before, "no rule for the busy port");
    assert.equal(await oneShot(busy.port), "busy", "its owner still gets its connections");
    assert.equal(await oneShot(gw.port("t")), "a");
  });

  test("a table deleted by hand is written whole again at the next change", async (t) => {
    const a = await lineServer(t, "a");
    const b = await lineServer(t, "b");
    const gw = await natGateway(
      t,
      `version: 1
services:
  s: { targets: [tcp://127.0.0.1:${a.port}, tcp://127.0.0.1:${b.port}] }
tcp:
  - { name: t, listen: { port: 0, host: 127.0.0.1 }, service: s, mode: nat }
`,
    );
    await exec("nft", ["delete", "table", "inet", gw.table]);
    drainTarget(gw.gen, "s", "0");
    await untilRules(gw.table, (r) => r.length === 1 && r[0].endsWith("{ 0 : jump tcp_t_1 }"));
    assert.equal(await oneShot(gw.port("t")), "b");
  });

  test("a table left by a crashed run is replaced at start", async (t) => {
    const a = await lineServer(t, "a");
    const table = tableName();
    t.after(() => exec("nft", ["delete", "table", "inet", table]).catch(() => {}));
    await exec("nft", ["add", "table", "inet", table]);
    await exec("nft", ["add", "chain", "inet", table, "leftover"]);
    const l4 = new L4Listeners(undefined, { natTable: table });
    t.after(() => l4.close(0));
    const { buildGeneration } = await import("../../src/generation.js");
    const { parseConfig } = await import("../../src/config/load.js");
    await l4.apply(
      buildGeneration(
        parseConfig(`version: 1
services: { s: { targets: [tcp://127.0.0.1:${a.port}] } }
tcp: [{ name: t, listen: { port: 0, host: 127.0.0.1 }, service: s, mode: nat }]
`),
      ),
      0,
    );
    const text = (await listTable(table)) ?? "";
    assert.doesNotMatch(text, /leftover/);
    assert.match(text, /chain tcp_t_0/);
    assert.equal(await oneShot(l4.nat[0].address().port), "a");

    // Meanwhile a second process (here: a second owner in this one) is refused the table.
    const other = new L4Listeners(undefined, { natTable: table });
    await assert.rejects(
      other.apply(
        buildGeneration(
          parseConfig(`version: 1
services: { s: { targets: [tcp://127.0.0.1:${a.port}] } }
tcp: [{ name: t2, listen: { port: 0, host: 127.0.0.1 }, service: s, mode: nat }]
`),
        ),
        0,
      ),
      new RegExp(`^Error: nftables table inet ${table} is managed by another switchyard process`),
    );
    await other.close(0);
    assert.match((await listTable(table)) ?? "", /chain tcp_t_0/, "the owner's table is untouched");
  });

  test("metrics: nat listeners' series carry mode=\"nat\" from the kernel's counters; proxy series keep their labels", async (t) => {
    const a = await lineServer(t, "a");
    const gw = await natGateway(
      t,
      `version: 1
services:
  s: { targets: [tcp://127.0.0.1:${a.port}] }
tcp:
  - { name: k, listen: { port: 0, host: 127.0.0.1 }, service: s, mode: nat }
  - { name: p, listen: { port: 0, host: 127.0.0.1 }, service: s }
`,
    );
    const metrics = new Metrics({ generation: () => gw.gen, l4: () => gw.l4 });
    for (let i = 0; i < 2; i++) assert.equal(await oneShot(gw.port("k")), "a");
    assert.equal(await oneShot(gw.l4.tcp[0].address().port), "a");
    await until(() => gw.l4.tcp[0].stats.active === 0);
    const text = await metrics.text();
    const value = (series: string) => {
      const line = text.split("\n").find((l) => l.startsWith(`${series} `));
      assert.ok(
        line,
        `${series} in\n${text
          .split("\n")
          .filter((l) => l.includes("tcp_"))
          .join("\n")}`,
      );
      return Number(line.split(" ")[1]);
    };
    assert.equal(value('switchyard_tcp_connections_total{listener="k",mode="nat"}'), 2);
    assert.ok(value('switchyard_tcp_bytes_total{listener="k",direction="in",mode="nat"}') > 0);
    assert.ok(value('switchyard_tcp_bytes_total{listener="k",direction="out",mode="nat"}') > 0);
    assert.equal(value('switchyard_tcp_connections_total{listener="p"}'), 1);
    assert.equal(value('switchyard_tcp_bytes_total{listener="p",direction="in"}'), 3);
  });
});

/** Does the kernel's conntrack table (as procfs shows it) hold a UDP flow from this client port? */
function conntrackHas(clientPort: number): boolean {
  if (!canSeeConntrack()) return false;
  return readFileSync("/proc/net/nf_conntrack", "utf8")
    .split("\n")
    .some((l) => l.includes(" udp ") && l.includes(`sport=${clientPort} `));
}

function canSeeConntrack(): boolean {
  try {
    readFileSync("/proc/net/nf_conntrack", "utf8");
    return true;
  } catch {
    return false;
  }
}
