/**
 * An HTTP/2 listener keeps the connection limit every listener has (issue 15):
 * `maxConnections` bounds how many connections are held at once.
 */
import assert from "node:assert/strict";
import { once } from "node:events";
import net from "node:net";
import { test } from "node:test";
import { backend, gateway } from "../helpers/index.js";

test("http2 (h2c): maxConnections bounds the connections held; the ones within it still serve", async () => {
  const up = await backend("up");
  const g = await gateway(`
listen: [{ port: 0, host: 127.0.0.1, http2: true, maxConnections: 2 }]
services: { up: { targets: [${up.url}] } }
routes: [{ name: r, service: up }]
`);
  const sockets: net.Socket[] = [];
  try {
    const open = async () => {
      const s = net.connect(g.port, "127.0.0.1");
      sockets.push(s);
      s.on("error", () => {});
      await once(s, "connect");
      return s;
    };
    const [a, b] = [await open(), await open()];
    const third = await open();
    // Beyond maxConnections the server closes the socket on accept.
    await Promise.race([
      once(third, "close"),
      new Promise((_, fail) => setTimeout(() => fail(new Error("third connection kept")), 5000)),
    ]);
    assert.ok(!a.destroyed && !b.destroyed, "the two within the limit are kept");
  } finally {
    for (const s of sockets) s.destroy();
    await g.close();
    await up.close();
  }
});
