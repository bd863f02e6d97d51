import assert from "node:assert/strict";
import net from "node:net";
import { after, before, describe, test } from "node:test";
import { parseConfig } from "../../src/config/load.js";
import { Gateway } from "../../src/server.js";

/** A TCP server that answers every chunk with its own name and the bytes. */
async function tagged(name: string): Promise<net.Server & { port: number }> {
  const s = net.createServer((c) => c.on("data", (d) => c.write(`${name}:${d}`)));
  await new Promise<void>((ok) => s.listen(0, "127.0.0.1", ok));
  return Object.assign(s, { port: (s.address() as net.AddressInfo).port });
}

function connect(port: number): Promise<net.Socket> {
  return new Promise((ok, fail) => {
    const c = net.connect(port, "127.0.0.1", () => ok(c));
    c.on("error", fail);
  });
}

function ask(c: net.Socket, what: string): Promise<string> {
  return new Promise((ok) => {
    c.once("data", (d) => ok(String(d)));
    c.write(what);
  });
}

describe("Gateway owns the L4 listeners (routes.yaml tcp)", () => {
  let a: net.Server & { port: number };
  let b: net.Server & { port: number };
  let gw: Gateway;
  const cfg = (target: number) =>
    parseConfig(`version: 1
shutdownTimeout: 1s
services:
  echo: { targets: [tcp://127.0.0.1:${target}] }
tcp:
  - { name: echo, listen: { port: 0, host: 127.0.0.1 }, service: echo }
`);
  before(async () => {
    a = await tagged("a");
    b = await tagged("b");
    gw = await Gateway.start(cfg(a.port));
  });
  after(async () => {
    await gw.close(200);
    a.close();
    b.close();
  });

  test("a tcp listener from routes.yaml passes bytes to its service", async () => {
    const port = gw.listeners.tcp[0].address().port;
    const c = await connect(port);
    assert.equal(await ask(c, "hi"), "a:hi");
    c.destroy();
  });

  test("reload keeps the port, sends new connections to the new targets, keeps open ones", async () => {
    const port = gw.listeners.tcp[0].address().port;
    const open = await connect(port);
    assert.equal(await ask(open, "1"), "a:1");
    await gw.reload(cfg(b.port));
    assert.equal(gw.listeners.tcp[0].address().port, port, "same bound port, no re-bind");
    const fresh = await connect(port);
    assert.equal(await ask(fresh, "2"), "b:2");
    assert.equal(await ask(open, "3"), "a:3", "an open connection stays on its target");
    open.destroy();
    fresh.destroy();
  });

  test("a port in use fails start-up with one line", async () => {
    const busy = gw.listeners.tcp[0].address().port;
    const bad = parseConfig(`version: 1
services:
  echo: { targets: [tcp://127.0.0.1:${a.port}] }
tcp:
  - { name: ok, listen: { port: 0, host: 127.0.0.1 }, service: echo }
  - { name: busy, listen: { port: ${busy}, host: 127.0.0.1 }, service: echo }
`);
    await assert.rejects(
      Gateway.start(bad),
      new RegExp(`^Error: cannot listen on 127\\.0\\.0\\.1:${busy}: address already in use$`),
    );
  });
});
