/**
 * SPEC §3: "A client that goes away aborts its upstream request at once (the
 * target sees the connection close)". The backend holds every request until
 * its client connection closes; the test's client sends a request, waits
 * until the backend has it, and leaves. On the lane (plain and policy routes)
 * and through Fastify, the backend must see its request closed, the target's
 * lease must be released, and the abort must not count against the target.
 */
import assert from "node:assert/strict";
import { once } from "node:events";
import type { IncomingMessage } from "node:http";
import net from "node:net";
import { test } from "node:test";
import { backend, gateway, request } from "../helpers/index.js";

test("a client that leaves cancels its upstream request, on the lane and through Fastify", async (t) => {
  const arrived: IncomingMessage[] = [];
  const waiting: (() => void)[] = [];
  const held = await backend("held", (req, res) => {
    if (req.url?.startsWith("/ok")) return res.end("ok");
    arrived.push(req);
    for (const w of waiting.splice(0)) w();
    // Never answered: only the gateway closing the connection ends it.
    res.on("close", () => {});
  });
  t.after(() => held.close());
  const g = await gateway(`
jwt: { hs: { secret: abort-test-secret-0123456789, algorithms: [HS256] } }
services: { s: { targets: [${held.url}], retries: { attempts: 0 } } }
routes:
  - { name: policy, match: { path: /p }, service: s, rateLimit: { max: 100, window: 1m }, transform: { request: { headers: { set: { x-a: "1" } } } } }
  - { name: plain, service: s }
`);
  t.after(() => g.close());
  const target = g.gw.generation.services.get("s")!.targets[0];

  for (const [what, path, extra] of [
    ["plain route, lane", "/hold", ""],
    ["policy route, lane", "/p/hold", ""],
    ["through Fastify", "/hold", "Content-Length: 0\r\n"],
  ] as const) {
    const n = arrived.length;
    const got = new Promise<void>((ok) => waiting.push(ok));
    const c = net.connect(g.port, "127.0.0.1");
    c.write(`GET ${path} HTTP/1.1\r\nHost: x\r\n${extra}\r\n`);
    await got;
    assert.equal(arrived.length, n + 1, what);
    assert.equal(target.inFlight, 1, `${what}: leased`);
    const upstream = arrived[n];
    const closed = once(upstream.socket, "close", { signal: AbortSignal.timeout(3000) });
    c.destroy();
    await closed; // rejects after 3 s if the gateway kept the upstream request open
    await new Promise((r) => setImmediate(r));
    assert.equal(target.inFlight, 0, `${what}: lease released`);
  }
  assert.equal(target.failures, 0, "a client leaving is not the target's failure");
  assert.equal((await request(g.url, { path: "/ok" })).status, 200, "and the gateway still serves");
});
