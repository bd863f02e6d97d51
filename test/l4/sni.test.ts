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

// ---- Every refusal for its own reason, and the limits themselves ----

interface HelloParts {
  sid?: Buffer;
  /** The cipher_suites vector's contents (its length is what is checked). */
  suites?: Buffer;
  comp?: Buffer;
  /** The extensions block's contents; undefined = no extensions at all. */
  exts?: Buffer;
  /** Override the extensions block's declared length. */
  extsLength?: number;
}

/** A ClientHello handshake message (type and 3-byte length included). */
function handshake(p: HelloParts = {}): Buffer {
  const sid = p.sid ?? Buffer.alloc(0);
  const suites = p.suites ?? Buffer.from([0x13, 0x01]);
  const comp = p.comp ?? Buffer.from([0]);
  const exts =
    p.exts === undefined ? Buffer.alloc(0) : Buffer.concat([u16(p.extsLength ?? p.exts.length), p.exts]);
  const body = Buffer.concat([
    Buffer.from([3, 3]),
    Buffer.alloc(32, 7),
    Buffer.from([sid.length]),
    sid,
    vec16(suites),
    Buffer.from([comp.length]),
    comp,
    exts,
  ]);
  return Buffer.concat([Buffer.from([1, 0, body.length >> 8, body.length & 0xff]), body]);
}
/** One handshake record around `hs`. */
function record(hs: Buffer): Buffer {
  return Buffer.concat([Buffer.from([22, 3, 1]), u16(hs.length), hs]);
}
/** An extension: type, then its data as a vector. */
function ext(type: number, data: Buffer): Buffer {
  return Buffer.concat([u16(type), vec16(data)]);
}
/** A server_name extension from raw (name_type, name) entries. */
function serverNames(...entries: Array<[number, Buffer]>): Buffer {
  return ext(0, vec16(Buffer.concat(entries.map(([t, n]) => Buffer.concat([Buffer.from([t]), vec16(n)])))));
}
function refused(buf: Buffer, reason: string | RegExp, maxHello?: number) {
  const r = parseClientHello(buf, maxHello);
  assert.ok("error" in r, `expected a refusal (${reason}), got ${JSON.stringify(r)}`);
  if (typeof reason === "string") assert.equal(r.error, reason);
  else assert.match(r.error, reason);
}

test("records: type, version and length are each refused for their own reason", () => {
  refused(Buffer.from("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), "not a TLS handshake record");
  refused(Buffer.from([23, 3, 3, 0, 1, 0]), "not a TLS handshake record"); // application data
  refused(Buffer.from([22, 2, 0, 0, 1, 0]), "not a TLS record version");
  refused(Buffer.from([22, 3, 1, 0, 0]), "bad TLS record length");
  refused(Buffer.from([22, 3, 1, 0x40, 0x01]), "bad TLS record length");
  // 2^14 itself is allowed (RFC 8446 §5.1): more bytes are awaited, nothing is refused.
  assert.deepEqual(parseClientHello(Buffer.from([22, 3, 1, 0x40, 0x00, 1])), { need: true });
  // A second record is checked like the first.
  const hs = handshake({ exts: serverNames([0, Buffer.from("a.test")]) });
  const first = record(hs.subarray(0, 10));
  refused(Buffer.concat([first, Buffer.from([21, 3, 1, 0, 2, 2, 40])]), "not a TLS handshake record");
  refused(Buffer.concat([first, Buffer.from([22, 9, 1, 0, 2, 2, 40])]), "not a TLS record version");
  refused(Buffer.concat([first, Buffer.from([22, 3, 1, 0, 0])]), "bad TLS record length");
});

test("the handshake: a ClientHello first, of at most maxHello bytes, refused as soon as its size is known", () => {
  refused(record(Buffer.from([2, 0, 0, 4, 3, 3, 0, 0])), "first handshake message is not a ClientHello");
  const hs = handshake({ exts: serverNames([0, Buffer.from("size.test")]) });
  // Exactly maxHello is accepted; one byte less is not.
  const r = parseClientHello(record(hs), hs.length);
  assert.ok("value" in r, JSON.stringify(r));
  assert.equal(r.value.serverName, "size.test");
  refused(record(hs), `ClientHello larger than ${hs.length - 1} bytes`, hs.length - 1);
  // A record that is still arriving: refused once its first 4 bytes are in, not buffered to the end.
  const big = Buffer.concat([Buffer.from([22, 3, 1, 0x40, 0x00]), Buffer.from([1, 0, 0x50, 0x00])]);
  refused(big, "ClientHello larger than 16384 bytes");
  assert.deepEqual(parseClientHello(big.subarray(0, 8)), { need: true }, "3 bytes of it: not yet known");
  // ... also when those 4 bytes span two records (the second still arriving).
  const split = Buffer.concat([record(Buffer.from([1, 0])), Buffer.from([22, 3, 1, 0x40, 0x00, 0x50, 0x00])]);
  refused(split, "ClientHello larger than 16384 bytes");
  assert.deepEqual(parseClientHello(split.subarray(0, split.length - 1)), { need: true });
  // ... and not refused when the size is fine: the rest is awaited.
  const partial = record(hs).subarray(0, 20);
  assert.deepEqual(parseClientHello(partial), { need: true });
  const splitOk = Buffer.concat([
    record(hs.subarray(0, 2)),
    Buffer.from([22, 3, 1]),
    u16(hs.length - 2),
    hs.subarray(2, 5),
  ]);
  assert.deepEqual(parseClientHello(splitOk), { need: true });
});

test("a handshake header split across records is joined before it is read", () => {
  const hs = handshake({ exts: serverNames([0, Buffer.from("split.test")]) });
  for (const cut of [1, 2, 3, 4, 5]) {
    const two = Buffer.concat([record(hs.subarray(0, cut)), record(hs.subarray(cut))]);
    assert.equal(name(two), "split.test", `cut at ${cut}`);
    for (let n = 1; n < two.length; n++)
      assert.deepEqual(parseClientHello(two.subarray(0, n)), { need: true }, `cut at ${cut}, ${n} bytes`);
  }
  // Three records, and bytes after the hello (the rest of the flight) are not read.
  const three = Buffer.concat([
    record(hs.subarray(0, 3)),
    record(hs.subarray(3, 50)),
    record(hs.subarray(50)),
    Buffer.from([20, 3, 3, 0, 1, 1]),
  ]);
  assert.equal(name(three), "split.test");
});

test("the ClientHello body: each field's bound refused for its own reason", () => {
  assert.equal(name(record(handshake({ sid: Buffer.alloc(32, 1) }))), undefined, "a 32-byte session id");
  refused(record(handshake({ sid: Buffer.alloc(33, 1) })), "session id longer than 32 bytes");
  refused(record(handshake({ suites: Buffer.alloc(0) })), "bad cipher_suites length");
  refused(record(handshake({ suites: Buffer.from([0x13, 0x01, 0x13]) })), "bad cipher_suites length");
  refused(record(handshake({ suites: Buffer.from([0x13]) })), "bad cipher_suites length");
  assert.equal(name(record(handshake({ suites: Buffer.from([0x13, 0x01, 0x13, 0x02]) }))), undefined);
  refused(record(handshake({ comp: Buffer.alloc(0) })), "empty compression_methods");
  assert.equal(name(record(handshake({ comp: Buffer.from([1, 0]) }))), undefined, "two methods");
  const sni = serverNames([0, Buffer.from("x.test")]);
  refused(record(handshake({ exts: sni, extsLength: sni.length - 1 })), "bytes after the extensions");
  refused(record(handshake({ exts: sni, extsLength: sni.length + 1 })), "truncated ClientHello");
  // A body shorter than its fixed fields, or ending right after them.
  refused(record(Buffer.from([1, 0, 0, 10, 3, 3, 1, 2, 3, 4, 5, 6, 7, 8])), "truncated ClientHello");
  refused(
    record(Buffer.concat([Buffer.from([1, 0, 0, 34, 3, 3]), Buffer.alloc(32, 7)])),
    "truncated ClientHello",
  );
  const cut = handshake({ sid: Buffer.alloc(8) }).subarray(0, 4 + 2 + 32 + 1 + 4);
  cut.writeUIntBE(cut.length - 4, 1, 3);
  refused(record(cut), "truncated ClientHello", undefined);
});

test("extensions: duplicates, a malformed server_name, names of other types", () => {
  const named = (...entries: Array<[number, Buffer]>) => record(handshake({ exts: serverNames(...entries) }));
  refused(
    record(
      handshake({ exts: Buffer.concat([ext(10, Buffer.from([0, 2, 0, 29])), ext(10, Buffer.from([0, 0]))]) }),
    ),
    "duplicate extension",
  );
  refused(
    record(
      handshake({
        exts: Buffer.concat([
          serverNames([0, Buffer.from("a.test")]),
          serverNames([0, Buffer.from("a.test")]),
        ]),
      }),
    ),
    "duplicate extension",
  );
  refused(record(handshake({ exts: ext(0, vec16(Buffer.alloc(0))) })), "bad server_name extension");
  refused(
    record(
      handshake({ exts: ext(0, Buffer.concat([vec16(Buffer.from([0, 0, 1, 0x61])), Buffer.from([0])])) }),
    ),
    "bad server_name extension",
  );
  // A list longer than its extension: truncated, never read into the next extension.
  const overList = ext(0, Buffer.concat([u16(9), Buffer.from([0, 0, 1, 0x61])]));
  refused(
    record(handshake({ exts: Buffer.concat([overList, ext(10, Buffer.from("x.test"))]) })),
    "truncated ClientHello",
  );
  // A name longer than its list: the same.
  const overName = ext(0, vec16(Buffer.from([0, 0, 9, 0x61, 0x62])));
  refused(
    record(handshake({ exts: Buffer.concat([overName, ext(10, Buffer.from("c.test"))]) })),
    "truncated ClientHello",
  );
  refused(named([0, Buffer.from("a.test")], [0, Buffer.from("b.test")]), "two host names in server_name");
  // Only host_name (0) is a host name; another type is skipped, whatever it holds.
  assert.equal(name(named([1, Buffer.from("opaque")], [0, Buffer.from("real.test")])), "real.test");
  assert.equal(name(named([0, Buffer.from("real.test")], [7, Buffer.from("a b")])), "real.test");
  assert.equal(name(named([2, Buffer.from("only.other")])), undefined);
});

test("server_name must be a host name: labels of 1-63, 253 in all, no IP-literal tricks", () => {
  const named = (host: string) => record(handshake({ exts: serverNames([0, Buffer.from(host, "latin1")]) }));
  const label63 = "a".repeat(63);
  const of253 = [label63, label63, label63, "b".repeat(61)].join(".");
  assert.equal(of253.length, 253);
  for (const ok of [
    "x",
    "x.y.z",
    "a-b.c_d.e9",
    "_dmarc.example",
    label63,
    `${label63}.test`,
    of253,
    "1.2.3.4",
  ])
    assert.equal(name(named(ok)), ok, ok);
  for (const bad of [
    `${of253}b`,
    `${"a".repeat(64)}.test`,
    "-a.test",
    "a-.test",
    "a..test",
    ".a.test",
    "a.test.",
    "a b.test",
    "a/b",
    "é.test",
    "",
  ])
    refused(named(bad), bad === "" ? /server_name/ : "server_name is not a host name");
  assert.equal(name(named("MiXeD.TeSt")), "mixed.test", "lower-cased");
});
