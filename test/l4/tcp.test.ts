import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { once } from "node:events";
import type { Socket } from "node:net";
import { test } from "node:test";
import { Lease } from "../../src/l4/dial.js";
import {
  ask,
  blackHole,
  closed,
  deadPort,
  dial,
  echoServer,
  lineServer,
  listen,
  readAll,
  services,
  tcpListener,
  tcpProxy,
  until,
} from "./helpers.js";

const opts = { timeout: 15_000 };

test("a 1 MB random payload round-trips unchanged, and the bytes are counted", opts, async (t) => {
  const echo = await echoServer(t);
  const { proxy, port } = await tcpProxy(
    t,
    { service: "s" },
    services(`  s: { targets: [tcp://127.0.0.1:${echo.port}] }`),
  );
  const payload = randomBytes(1024 * 1024);
  const c = await dial(port);
  const got = readAll(c);
  c.end(payload);
  const all = await got;
  assert.equal(all.length, payload.length + 3);
  assert.ok(all.subarray(0, payload.length).equals(payload), "payload changed on the way");
  assert.equal(all.subarray(payload.length).toString(), "bye");
  await until(() => proxy.stats.active === 0);
  const s = proxy.stats;
  assert.deepEqual([s.total, s.bytesIn, s.bytesOut], [1, payload.length, payload.length + 3]);
});

test(
  "half-close: the client's FIN reaches the target, whose reply still reaches the client",
  opts,
  async (t) => {
    const echo = await echoServer(t);
    const { port } = await tcpProxy(
      t,
      { service: "s" },
      services(`  s: { targets: [tcp://127.0.0.1:${echo.port}] }`),
    );
    const c = await dial(port);
    const got = readAll(c);
    c.end("ping");
    // "bye" is written by the target only after it saw our FIN.
    assert.equal((await got).toString(), "pingbye");
  },
);

test("half-close the other way: after the target's FIN the client can still send", opts, async (t) => {
  let received!: Promise<string>;
  const peer = await listen(t, (s) => {
    received = readAll(s).then((b) => b.toString());
    s.end("hello");
  });
  const { port } = await tcpProxy(
    t,
    { service: "s" },
    services(`  s: { targets: [tcp://127.0.0.1:${peer.port}] }`),
  );
  const c = await dial(port);
  let hello = "";
  c.on("data", (d) => {
    hello += d;
  });
  await once(c, "end", { signal: AbortSignal.timeout(5000) });
  assert.equal(hello, "hello");
  c.end("late");
  assert.equal(await received, "late");
});

test("a connection stays on one target for its life; new connections rotate", opts, async (t) => {
  const a = await lineServer(t, "A");
  const b = await lineServer(t, "B");
  const svc = services(`  s: { targets: [tcp://127.0.0.1:${a.port}, tcp://127.0.0.1:${b.port}] }`);
  const { proxy, port } = await tcpProxy(t, { service: "s" }, svc);
  const tag = (reply: string) => reply.split(":")[0];
  const c1 = await dial(port);
  const first = tag(await ask(c1, "1"));
  const others: string[] = [];
  const open: Socket[] = [c1];
  for (let i = 0; i < 3; i++) {
    const c = await dial(port);
    open.push(c);
    others.push(tag(await ask(c, "x")));
    assert.equal(await ask(c1, `again${i}`), `${first}:again${i}`, "c1 moved to another target");
  }
  const other = first === "A" ? "B" : "A";
  assert.deepEqual([first, ...others], [first, other, first, other]);
  const targets = svc.get("s")!.targets;
  assert.equal(targets[0].inFlight + targets[1].inFlight, 4);
  for (const c of open) c.destroy();
  await until(() => proxy.stats.active === 0 && targets[0].inFlight === 0 && targets[1].inFlight === 0);
  assert.deepEqual([targets[0].requests, targets[1].requests], [2, 2]);
});

test("a dead first target still gives a working connection", opts, async (t) => {
  const dead = await deadPort();
  const echo = await echoServer(t);
  const svc = services(`  s: { targets: [tcp://127.0.0.1:${dead}, tcp://127.0.0.1:${echo.port}] }`);
  const { port } = await tcpProxy(t, { service: "s" }, svc);
  for (let i = 0; i < 2; i++) {
    const c = await dial(port);
    const got = readAll(c);
    c.end("x");
    assert.equal((await got).toString(), "xbye");
  }
  const [d, e] = svc.get("s")!.targets;
  assert.equal(d.failures, 1, "the dead target was tried once, then excluded");
  assert.equal(d.inFlight, 0);
  assert.equal(e.requests, 2);
});

test("no live target: the client is closed and the refusal counted", opts, async (t) => {
  const svc = services(
    `  s: { targets: [tcp://127.0.0.1:${await deadPort()}, tcp://127.0.0.1:${await deadPort()}] }`,
  );
  const { proxy, port } = await tcpProxy(t, { service: "s" }, svc);
  const c = await dial(port);
  await closed(c);
  assert.equal(proxy.stats.refused, 1);
  assert.deepEqual(
    svc.get("s")!.targets.map((x) => [x.failures, x.inFlight]),
    [
      [1, 0],
      [1, 0],
    ],
  );
});

test("connect timeout moves on to the next target", opts, async (t) => {
  const hole = await blackHole(t);
  const echo = await echoServer(t);
  const svc = services(`  s: { targets: [tcp://127.0.0.1:${hole}, tcp://127.0.0.1:${echo.port}] }`);
  const { port } = await tcpProxy(t, { service: "s", connectTimeout: "200ms" }, svc);
  const started = Date.now();
  const c = await dial(port);
  const got = readAll(c);
  c.end("x");
  assert.equal((await got).toString(), "xbye");
  assert.equal(svc.get("s")!.targets[0].failures, 1);
  assert.ok(Date.now() - started >= 180, "the first target failed before the connect timeout");
});

test("maxConnections: the connection beyond it is closed at once", opts, async (t) => {
  const echo = await echoServer(t);
  const { proxy, port } = await tcpProxy(
    t,
    { service: "s", maxConnections: 1 },
    services(`  s: { targets: [tcp://127.0.0.1:${echo.port}] }`),
  );
  const c1 = await dial(port);
  c1.write("1");
  await once(c1, "data");
  const c2 = await dial(port);
  let answered = false;
  c2.on("data", () => {
    answered = true;
  });
  c2.write("2");
  await closed(c2);
  assert.equal(answered, false);
  assert.equal(proxy.stats.overLimit, 1);
  assert.equal(echo.accepted, 1);
  c1.destroy();
  await until(() => proxy.stats.active === 0);
  const c3 = await dial(port);
  const got = readAll(c3);
  c3.end("3");
  assert.equal((await got).toString(), "3bye");
});

test("idleTimeout closes a silent connection", opts, async (t) => {
  const echo = await echoServer(t);
  const { port } = await tcpProxy(
    t,
    { service: "s", idleTimeout: "200ms" },
    services(`  s: { targets: [tcp://127.0.0.1:${echo.port}] }`),
  );
  const c = await dial(port);
  c.write("x");
  await once(c, "data");
  const started = Date.now();
  await closed(c, 3000);
  assert.ok(Date.now() - started >= 150, "closed before the idle timeout");
});

test("a lease counts in inFlight from creation and is released exactly once", () => {
  const [target] = services("  s: { targets: [tcp://127.0.0.1:1] }").get("s")!.targets;
  const lease = new Lease(target);
  assert.deepEqual([target.inFlight, target.requests], [1, 1]);
  lease.release();
  lease.release();
  assert.equal(target.inFlight, 0);
});

test("update(): new connections use the new service, open ones stay where they are", opts, async (t) => {
  const a = await lineServer(t, "A");
  const b = await lineServer(t, "B");
  const svc = services(
    `  sa: { targets: [tcp://127.0.0.1:${a.port}] }\n  sb: { targets: [tcp://127.0.0.1:${b.port}] }`,
  );
  const { proxy, port } = await tcpProxy(t, { service: "sa" }, svc);
  const old = await dial(port);
  assert.equal(await ask(old, "1"), "A:1");
  proxy.update(tcpListener({ service: "sb" }), svc);
  const fresh = await dial(port);
  assert.equal(await ask(fresh, "2"), "B:2");
  assert.equal(await ask(old, "3"), "A:3");
  old.destroy();
  fresh.destroy();
});
