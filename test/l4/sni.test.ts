import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { once } from "node:events";
import { type AddressInfo, createServer } from "node:net";
import { test } from "node:test";
import { connect as tlsConnect } from "node:tls";
import { parseClientHello } from "../../src/l4/sni.js";
import { compileSniRoute } from "../../src/l4/sni-route.js";

/** What Node's own TLS client sends first, captured off a plain TCP server. */
async function realHello(servername?: string): Promise<Buffer> {
  const server = createServer();
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const got = new Promise<Buffer>((resolve) => {
    server.once("connection", (s) => {
      let buf = Buffer.alloc(0);
      s.on("data", (d: Buffer) => {
        buf = Buffer.concat([buf, d]);
        if (buf.length >= 5 && buf.length >= 5 + buf.readUInt16BE(3)) {
          s.destroy();
          resolve(buf);
        }
      });
    });
  });
  const c = tlsConnect({ port: (server.address() as AddressInfo).port, host: "127.0.0.1", servername });
  c.on("error", () => {});
  const hello = await got;
  c.destroy();
  server.close();
  return hello;
}

function u16(n: number) {
  return Buffer.from([n >> 8, n & 0xff]);
}
function vec16(b: Buffer) {
  return Buffer.concat([u16(b.length), b]);
}
function sniExt(...names: string[]) {
  const list = Buffer.concat(names.map((n) => Buffer.concat([Buffer.from([0]), vec16(Buffer.from(n))])));
  return Buffer.concat([u16(0), vec16(vec16(list))]);
}
/** A hand-built ClientHello record around the given extensions block (undefined = none at all). */
function hello(exts: Buffer | undefined): Buffer {
  const body = Buffer.concat([
    Buffer.from([3, 3]),
    Buffer.alloc(32, 7),
    Buffer.from([0]), // session id
    vec16(Buffer.from([0x13, 0x01])),
    Buffer.from([1, 0]), // compression: null
    exts === undefined ? Buffer.alloc(0) : vec16(exts),
  ]);
  const hs = Buffer.concat([Buffer.from([1, 0, body.length >> 8, body.length & 0xff]), body]);
  return Buffer.concat([Buffer.from([22, 3, 1]), u16(hs.length), hs]);
}

/** The same hello with one more byte inside the ClientHello body (both lengths bumped). */
function trailingJunk(h: Buffer): Buffer {
  const b = Buffer.concat([h, Buffer.from([0])]);
  b.writeUInt16BE(b.readUInt16BE(3) + 1, 3);
  b.writeUIntBE(b.readUIntBE(6, 3) + 1, 6, 3);
  return b;
}

function name(buf: Buffer) {
  const r = parseClientHello(buf);
  assert.ok("value" in r, JSON.stringify(r));
  assert.equal(r.consumed, 0, "nothing is consumed: the hello is replayed to the target");
  return r.value.serverName;
}

test("reads server_name from a real Node TLS ClientHello", async () => {
  assert.equal(name(await realHello("Api.Example.COM")), "api.example.com");
  assert.equal(name(await realHello(undefined)), undefined);
});

test("every strict prefix asks for more bytes", async () => {
  const h = await realHello("a.test");
  for (let n = 0; n < h.length; n++)
    assert.deepEqual(parseClientHello(h.subarray(0, n)), { need: true }, `${n}`);
});

test("a ClientHello fragmented over two records is joined", async () => {
  const h = await realHello("frag.test");
  const hs = h.subarray(5);
  const cut = 40;
  const rec = (b: Buffer) => Buffer.concat([Buffer.from([22, 3, 1]), u16(b.length), b]);
  const two = Buffer.concat([rec(hs.subarray(0, cut)), rec(hs.subarray(cut))]);
  assert.equal(name(two), "frag.test");
  assert.deepEqual(parseClientHello(two.subarray(0, two.length - 1)), { need: true });
});

test("hand-built hellos: no extensions, other extensions only, sni among others", () => {
  assert.equal(name(hello(undefined)), undefined);
  assert.equal(name(hello(Buffer.concat([u16(10), vec16(Buffer.from([0, 2, 0, 29]))]))), undefined);
  assert.equal(
    name(hello(Buffer.concat([u16(10), vec16(Buffer.from([0, 2, 0, 29])), sniExt("x.test")]))),
    "x.test",
  );
});

test("malformed or non-TLS input is refused, never thrown", () => {
  const ok = hello(sniExt("x.test"));
  const corrupt = (at: number, v: number) => {
    const b = Buffer.from(ok);
    b[at] = v;
    return b;
  };
  const bad: Array<[string, Buffer]> = [
    ["http", Buffer.from("GET / HTTP/1.1\r\nHost: x\r\n\r\n")],
    ["ssh", Buffer.from("SSH-2.0-OpenSSH_9.6\r\n")],
    ["not a hello", corrupt(5, 2)],
    ["record version", corrupt(1, 2)],
    ["record too long", Buffer.concat([Buffer.from([22, 3, 1, 0x40, 0x01]), Buffer.alloc(10)])],
    ["zero record", Buffer.from([22, 3, 1, 0, 0])],
    ["two names", hello(sniExt("a.test", "b.test"))],
    ["duplicate extension", hello(Buffer.concat([sniExt("a.test"), sniExt("b.test")]))],
    ["bad host", hello(sniExt("a b.test"))],
    ["bytes after the extensions", trailingJunk(ok)],
    ["oversized hello", Buffer.concat([Buffer.from([22, 3, 1, 0, 4, 1, 0x01, 0x00, 0x00])])],
  ];
  for (const [what, buf] of bad) {
    const r = parseClientHello(buf);
    assert.ok("error" in r, `${what}: ${JSON.stringify(r)}`);
  }
});

test("random corruption of a real hello never throws", async () => {
  const h = await realHello("fuzz.test");
  for (let i = 0; i < 3000; i++) {
    const b = Buffer.from(h);
    for (let k = 0; k < 1 + (i % 4); k++) b[5 + ((Math.random() * (b.length - 5)) | 0)] = randomBytes(1)[0];
    const r = parseClientHello(b);
    assert.ok("need" in r || "error" in r || "value" in r);
  }
});

test("routing: exact first, then the longest *. wildcard (one or more labels, never the bare name), then default", () => {
  const route = compileSniRoute(
    { "api.example.com": "api", "*.example.com": "wild", "*.in.example.com": "inner", "Mixed.Case": "mc" },
    "fallback",
  );
  assert.equal(route("api.example.com"), "api");
  assert.equal(route("a.example.com"), "wild");
  assert.equal(route("a.b.example.com"), "wild");
  assert.equal(route("x.in.example.com"), "inner");
  assert.equal(route("example.com"), "fallback");
  assert.equal(route("mixed.case"), "mc");
  assert.equal(route("evil-example.com"), "fallback");
  assert.equal(route(undefined), "fallback");
  assert.equal(compileSniRoute({ "*.example.com": 1 })("example.com"), undefined);
});
