/**
 * PROXY protocol through a real listener. The test backend parses headers
 * with its own code (a regex for v1, fixed offsets for v2), not the gateway's
 * parser, and answers with what it saw as JSON.
 */
import assert from "node:assert/strict";
import type { Socket } from "node:net";
import { test } from "node:test";
import { closed, dial, listen, type Peer, readAll, services, tcpProxy, until } from "./helpers.js";

interface Seen {
  version: string;
  src: string;
  sport: number;
  dst: string;
  dport: number;
  payload: string;
}

const SIG = Buffer.from("0d0a0d0a000d0a515549540a", "hex");

function v6(b: Buffer, at: number): string {
  const g: string[] = [];
  for (let i = 0; i < 16; i += 2) g.push(b.readUInt16BE(at + i).toString(16));
  return g.join(":");
}

/** Reads one PROXY header and the payload up to the client's FIN, then answers JSON. */
function proxyAwareBackend(t: Parameters<typeof listen>[0]): Promise<Peer> {
  return listen(t, async (s: Socket) => {
    const all = await readAll(s).catch(() => Buffer.alloc(0));
    let seen: Seen;
    if (all.subarray(0, 12).equals(SIG)) {
      const len = all.readUInt16BE(14);
      const fam = all[13] >> 4;
      const a = 16;
      seen =
        fam === 1
          ? {
              version: "v2",
              src: [...all.subarray(a, a + 4)].join("."),
              dst: [...all.subarray(a + 4, a + 8)].join("."),
              sport: all.readUInt16BE(a + 8),
              dport: all.readUInt16BE(a + 10),
              payload: all.subarray(16 + len).toString(),
            }
          : {
              version: "v2",
              src: v6(all, a),
              dst: v6(all, a + 16),
              sport: all.readUInt16BE(a + 32),
              dport: all.readUInt16BE(a + 34),
              payload: all.subarray(16 + len).toString(),
            };
    } else {
      const m = /^PROXY (TCP4|TCP6) (\S+) (\S+) (\d+) (\d+)\r\n([\s\S]*)$/.exec(all.toString("latin1"));
      if (!m) return s.end(JSON.stringify({ error: all.toString("latin1").slice(0, 60) }));
      seen = { version: "v1", src: m[2], dst: m[3], sport: Number(m[4]), dport: Number(m[5]), payload: m[6] };
    }
    s.end(JSON.stringify(seen));
  });
}

async function exchange(port: number, bytes: Buffer | string): Promise<{ seen: Seen; client: Socket }> {
  const c = await dial(port);
  const got = readAll(c);
  c.end(bytes);
  return { seen: JSON.parse((await got).toString()), client: c };
}

for (const version of ["v1", "v2"] as const) {
  test(`proxyProtocol ${version}: the target learns the real client address and port`, async (t) => {
    const backend = await proxyAwareBackend(t);
    const svc = services(`  s: { targets: [tcp://127.0.0.1:${backend.port}] }`);
    const { port } = await tcpProxy(t, { service: "s", proxyProtocol: version }, svc);
    const c = await dial(port);
    const sport = c.localPort;
    const got = readAll(c);
    c.end("hello");
    const seen = JSON.parse((await got).toString());
    assert.deepEqual(seen, {
      version,
      src: "127.0.0.1",
      sport,
      dst: "127.0.0.1",
      dport: port,
      payload: "hello",
    });
  });
}

test("acceptProxyProtocol v1 from a downstream balancer: its client is the one announced onward (v2)", async (t) => {
  const backend = await proxyAwareBackend(t);
  const svc = services(`  s: { targets: [tcp://127.0.0.1:${backend.port}] }`);
  const { port } = await tcpProxy(t, { service: "s", acceptProxyProtocol: true, proxyProtocol: "v2" }, svc);
  const { seen } = await exchange(
    port,
    "PROXY TCP4 203.0.113.7 198.51.100.2 5555 443\r\nGET / HTTP/1.0\r\n\r\n",
  );
  assert.deepEqual(seen, {
    version: "v2",
    src: "203.0.113.7",
    sport: 5555,
    dst: "198.51.100.2",
    dport: 443,
    payload: "GET / HTTP/1.0\r\n\r\n",
  });
});

test("acceptProxyProtocol v2 (IPv6) in, v1 out", async (t) => {
  const backend = await proxyAwareBackend(t);
  const svc = services(`  s: { targets: [tcp://127.0.0.1:${backend.port}] }`);
  const { port } = await tcpProxy(t, { service: "s", acceptProxyProtocol: true, proxyProtocol: "v1" }, svc);
  const addr = Buffer.alloc(36);
  addr.write("20010db8000000000000000000000007", 0, "hex");
  addr.write("20010db8000000000000000000000001", 16, "hex");
  addr.writeUInt16BE(40000, 32);
  addr.writeUInt16BE(8443, 34);
  const header = Buffer.concat([SIG, Buffer.from([0x21, 0x21, 0, 36]), addr]);
  const { seen } = await exchange(port, Buffer.concat([header, Buffer.from("data")]));
  assert.deepEqual(seen, {
    version: "v1",
    src: "2001:db8::7",
    sport: 40000,
    dst: "2001:db8::1",
    dport: 8443,
    payload: "data",
  });
});

test("acceptProxyProtocol: the announced address drives ip-hash", async (t) => {
  const a = await listen(t, (s) => s.end("A"));
  const b = await listen(t, (s) => s.end("B"));
  const svc = services(
    `  s: { targets: [tcp://127.0.0.1:${a.port}, tcp://127.0.0.1:${b.port}], balancer: ip-hash }`,
  );
  const { port } = await tcpProxy(t, { service: "s", acceptProxyProtocol: true }, svc);
  const targetOf = async (ip: string) => {
    const c = await dial(port);
    const got = readAll(c);
    c.write(`PROXY TCP4 ${ip} 10.0.0.1 1000 80\r\n`);
    return (await got).toString();
  };
  const first: string[] = [];
  for (let i = 1; i <= 12; i++) first.push(await targetOf(`198.51.100.${i}`));
  const again: string[] = [];
  for (let i = 1; i <= 12; i++) again.push(await targetOf(`198.51.100.${i}`));
  assert.deepEqual(again, first, "the same announced client went to another target");
  assert.deepEqual(
    new Set(first),
    new Set(["A", "B"]),
    "all clients hashed alike: the socket address was used",
  );
});

test("acceptProxyProtocol: a missing or malformed header is refused before any target is dialled", async (t) => {
  const backend = await proxyAwareBackend(t);
  const svc = services(`  s: { targets: [tcp://127.0.0.1:${backend.port}] }`);
  const { proxy, port } = await tcpProxy(t, { service: "s", acceptProxyProtocol: true }, svc);
  for (const bad of [
    "GET / HTTP/1.1\r\n\r\n",
    "PROXY TCP4 1.2.3.4 5.6.7.8 99999 1\r\n",
    `PROXY ${"x".repeat(200)}`,
  ]) {
    const c = await dial(port);
    c.write(bad);
    await closed(c);
  }
  assert.equal(backend.accepted, 0);
  assert.equal(proxy.stats.refused, 3);
});

test("acceptProxyProtocol: a header that never completes times out", async (t) => {
  const backend = await proxyAwareBackend(t);
  const svc = services(`  s: { targets: [tcp://127.0.0.1:${backend.port}] }`);
  const { proxy, port } = await tcpProxy(t, { service: "s", acceptProxyProtocol: true }, svc, 200);
  const c = await dial(port);
  c.write("PROXY TCP4 1.2.3.4");
  const started = Date.now();
  await closed(c, 3000);
  assert.ok(Date.now() - started >= 150);
  assert.equal(backend.accepted, 0);
  await until(() => proxy.stats.active === 0);
  assert.equal(proxy.stats.refused, 1);
});
