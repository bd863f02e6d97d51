/**
 * The Fastify plugin forms: bound in onReady (a port in use rejects
 * app.ready() with one line), stop accepting on close, drain, then destroy.
 */
import assert from "node:assert/strict";
import { createSocket } from "node:dgram";
import { once } from "node:events";
import { type AddressInfo, connect, createServer } from "node:net";
import { type TestContext, test } from "node:test";
import Fastify from "fastify";
import l4Tcp from "../../plugins/l4-tcp.js";
import l4Udp from "../../plugins/l4-udp.js";
import { parseConfig } from "../../src/config/load.js";
import type { TcpListenerConfig, UdpListenerConfig } from "../../src/config/schema.js";
import { buildGeneration } from "../../src/generation.js";
import {
  closed,
  dial,
  echoServer,
  readAll,
  tcpListener,
  udpClient,
  udpEcho,
  udpListener,
  until,
} from "./helpers.js";

const opts = { timeout: 15_000 };

function generation(servicesYaml: string, tcp: TcpListenerConfig[], udp: UdpListenerConfig[] = []) {
  const config = parseConfig(`version: 1\nshutdownTimeout: 5s\nservices:\n${servicesYaml}`);
  return buildGeneration({ ...config, tcp, udp });
}

async function app(t: TestContext, gen: ReturnType<typeof generation>, drainMs?: number) {
  const a = Fastify({ logger: false });
  await a.register(l4Tcp, { generation: gen, drainMs });
  await a.register(l4Udp, { generation: gen });
  t.after(() => a.close());
  return a;
}

test("a TCP port in use makes app.ready() reject with one line", opts, async (t) => {
  const taken = createServer().listen(0, "127.0.0.1");
  await once(taken, "listening");
  t.after(() => taken.close());
  const port = (taken.address() as AddressInfo).port;
  const gen = generation("  s: { targets: [tcp://127.0.0.1:1] }", [
    tcpListener({ name: "ok", service: "s" }),
    tcpListener({ name: "clash", service: "s", listen: { host: "127.0.0.1", port } }),
  ]);
  const a = await app(t, gen);
  await assert.rejects(async () => a.ready(), {
    message: `cannot listen on 127.0.0.1:${port}: address already in use`,
  });
  // The listener that did bind was released, not left holding its port.
  assert.equal(a.l4Tcp[0].listening, false);
});

test("a UDP port in use makes app.ready() reject with one line", opts, async (t) => {
  const taken = createSocket("udp4");
  taken.bind(0, "127.0.0.1");
  await once(taken, "listening");
  t.after(() => taken.close());
  const port = taken.address().port;
  const gen = generation(
    "  u: { targets: [udp://127.0.0.1:1] }",
    [],
    [udpListener({ service: "u", listen: { host: "127.0.0.1", port } })],
  );
  const a = await app(t, gen);
  await assert.rejects(async () => a.ready(), {
    message: `cannot listen on udp 127.0.0.1:${port}: address already in use`,
  });
});

test(
  "ready binds TCP and UDP; close stops accepting, lets a connection finish, then ends",
  opts,
  async (t) => {
    const echo = await echoServer(t);
    const uecho = await udpEcho(t, "U");
    const gen = generation(
      `  s: { targets: [tcp://127.0.0.1:${echo.port}] }\n  u: { targets: [udp://127.0.0.1:${uecho.port}] }`,
      [tcpListener({ service: "s" })],
      [udpListener({ service: "u" })],
    );
    const a = await app(t, gen, 5000);
    await a.ready();
    const [tcp] = a.l4Tcp;
    const port = tcp.address().port;
    const u = await udpClient(t, a.l4Udp[0].address().port);
    assert.equal(await u.ask("hi"), "U:hi");

    const c = await dial(port);
    c.write("a");
    await once(c, "data");
    const started = Date.now();
    const closing = a.close();
    await until(() => !tcp.listening);
    const refused = connect({ port, host: "127.0.0.1" });
    const [err] = (await once(refused, "error")) as [NodeJS.ErrnoException];
    assert.equal(err.code, "ECONNREFUSED");
    // The open connection still works during the drain and ends on its own terms.
    const rest = readAll(c);
    c.end("b");
    assert.equal((await rest).toString(), "bbye");
    await closing;
    assert.ok(Date.now() - started < 4000, "close waited for the whole drain time although nothing was open");
  },
);

test("close destroys connections still open after drainMs", opts, async (t) => {
  const echo = await echoServer(t);
  const gen = generation(`  s: { targets: [tcp://127.0.0.1:${echo.port}] }`, [tcpListener({ service: "s" })]);
  const a = await app(t, gen, 200);
  await a.ready();
  const c = await dial(a.l4Tcp[0].address().port);
  c.write("a");
  await once(c, "data");
  const ended = closed(c);
  const started = Date.now();
  await a.close();
  await ended;
  assert.ok(Date.now() - started >= 150, "destroyed before the drain time");
  assert.equal(a.l4Tcp[0].stats.active, 0);
});
