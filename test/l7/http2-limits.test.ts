/**
 * An HTTP/2 listener keeps the connection limit every listener has (issue 15):
 * `maxConnections` bounds how many connections are held at once.
 */
import assert from "node:assert/strict";
import { once } from "node:events";
import http2 from "node:http2";
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

// SPEC §6: header size is limited (431) on every listener, HTTP/2 ones included.
test("http2 (h2c): a header block over 16 KB is refused and never reaches the upstream", async () => {
  const up = await backend("up");
  const g = await gateway(`
listen: [{ port: 0, host: 127.0.0.1, http2: true }]
services: { up: { targets: [${up.url}] } }
routes: [{ name: r, service: up }]
`);
  const client = http2.connect(`http://127.0.0.1:${g.port}`);
  client.on("error", () => {});
  try {
    const ask = (headers: Record<string, string>) =>
      new Promise<number | string>((done) => {
        const req = client.request({ ":path": "/x", ...headers });
        req.on("response", (h) => done(Number(h[":status"])));
        req.on("error", (e: NodeJS.ErrnoException) => done(e.code ?? "error"));
        req.on("close", () => done("closed"));
        req.resume();
        req.end();
      });
    assert.equal(await ask({ "x-small": "a" }), 200);
    const hits = up.hits;
    const big = await ask({ "x-big": "a".repeat(20 * 1024) });
    assert.ok(big === 431 || typeof big === "string", `refused (431 or a reset stream), got ${big}`);
    assert.equal(up.hits, hits, "the upstream never saw it");
  } finally {
    client.close();
    await g.close();
    await up.close();
  }
});
