import assert from "node:assert/strict";
import { createSocket } from "node:dgram";
import { test } from "node:test";
import { services, udpClient, udpEcho, udpProxy, until } from "./helpers.js";

const opts = { timeout: 15_000 };

async function twoTargets(t: Parameters<typeof udpEcho>[0]) {
  const a = await udpEcho(t, "A");
  const b = await udpEcho(t, "B");
  return services(`  s: { targets: [udp://127.0.0.1:${a.port}, udp://127.0.0.1:${b.port}] }`);
}

test("two UDP clients: each gets its own replies and keeps its target", opts, async (t) => {
  const svc = await twoTargets(t);
  const { proxy, port } = await udpProxy(t, {}, svc);
  const c1 = await udpClient(t, port);
  const c2 = await udpClient(t, port);
  const r1 = await c1.ask("one-1");
  const r2 = await c2.ask("two-1");
  const tag1 = r1.split(":")[0];
  const tag2 = r2.split(":")[0];
  assert.deepEqual(
    new Set([tag1, tag2]),
    new Set(["A", "B"]),
    "round robin should give the clients different targets",
  );
  assert.equal(r1, `${tag1}:one-1`);
  assert.equal(r2, `${tag2}:two-1`);
  for (let i = 2; i <= 4; i++) {
    assert.equal(await c2.ask(`two-${i}`), `${tag2}:two-${i}`);
    assert.equal(await c1.ask(`one-${i}`), `${tag1}:one-${i}`);
  }
  const s = proxy.stats;
  assert.deepEqual([s.sessions, s.sessionsTotal, s.datagramsIn, s.datagramsOut, s.dropped], [2, 2, 8, 8, 0]);
  assert.deepEqual(
    svc.get("s")!.targets.map((x) => x.inFlight),
    [1, 1],
  );
});

test("an idle session expires after sessionTimeout and releases its target", opts, async (t) => {
  const svc = await twoTargets(t);
  const { proxy, port } = await udpProxy(t, { sessionTimeout: "200ms" }, svc);
  const c = await udpClient(t, port);
  const first = (await c.ask("x")).split(":")[0];
  await until(() => proxy.stats.sessions === 0, 3000);
  assert.deepEqual(
    svc.get("s")!.targets.map((x) => x.inFlight),
    [0, 0],
  );
  // A new session for the same client picks again: round robin moves it on.
  const second = (await c.ask("y")).split(":")[0];
  assert.notEqual(second, first);
  assert.equal(proxy.stats.sessionsTotal, 2);
});

test("maxSessions: datagrams from a new client are dropped while the table is full", opts, async (t) => {
  const svc = await twoTargets(t);
  const { proxy, port } = await udpProxy(t, { maxSessions: 1 }, svc);
  const c1 = await udpClient(t, port);
  const c2 = await udpClient(t, port);
  let c2Answered = false;
  c2.socket.on("message", () => {
    c2Answered = true;
  });
  const tag = (await c1.ask("a")).split(":")[0];
  await c2.send("ignored");
  // Loopback delivery is in order: once c1's next reply is back, c2's datagram was handled.
  assert.equal(await c1.ask("b"), `${tag}:b`);
  assert.equal(proxy.stats.dropped, 1);
  assert.equal(c2Answered, false);
  assert.equal(proxy.stats.sessions, 1);
});

test(
  "a target that refuses (ICMP port unreachable) ends the session; the next datagram goes elsewhere",
  opts,
  async (t) => {
    const live = await udpEcho(t, "L");
    // A bound-then-closed UDP port: the kernel answers with ICMP port unreachable.
    const tmp = createSocket("udp4");
    await new Promise<void>((r) => tmp.bind(0, "127.0.0.1", r));
    const deadPort = tmp.address().port;
    await new Promise<void>((r) => tmp.close(r));
    const svc = services(`  s: { targets: [udp://127.0.0.1:${deadPort}, udp://127.0.0.1:${live.port}] }`);
    const { port } = await udpProxy(t, {}, svc);
    const c = await udpClient(t, port);
    await c.send("lost");
    const dead = svc.get("s")!.targets[0];
    await until(() => dead.failures === 1 && dead.inFlight === 0, 3000);
    assert.equal(await c.ask("again"), "L:again");
  },
);

test("traffic keeps a session alive past sessionTimeout", opts, async (t) => {
  const svc = await twoTargets(t);
  const timeout = 1000;
  const { proxy, port } = await udpProxy(t, { sessionTimeout: `${timeout}ms` }, svc);
  const c = await udpClient(t, port);
  const t0 = performance.now();
  const tag = (await c.ask("0")).split(":")[0];
  // Pacing is the point here: exchanges a quarter of the timeout apart until the session has
  // lived twice the timeout. The margin (750 ms between a reply and the next datagram) is for a
  // busy machine; no pause comes near the timeout unless the machine stalls for most of a second.
  let i = 0;
  while (performance.now() - t0 < 2 * timeout && i < 50) {
    await new Promise((r) => setTimeout(r, timeout / 4));
    i++;
    assert.equal(await c.ask(String(i)), `${tag}:${i}`);
  }
  assert.ok(performance.now() - t0 >= 2 * timeout, "the session outlived its timeout twice over");
  assert.equal(proxy.stats.sessionsTotal, 1);
});
