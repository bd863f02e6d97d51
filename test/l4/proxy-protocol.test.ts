import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { test } from "node:test";
import { ipv6Bytes, ipv6Text } from "../../src/l4/ip.js";
import { encodeProxyHeader, parseProxyHeader, V2_MAX, V2_SIGNATURE } from "../../src/l4/proxy-protocol.js";

const src = { address: "192.0.2.10", port: 56324 };
const dst = { address: "198.51.100.1", port: 443 };

function parsed(buf: Buffer) {
  const r = parseProxyHeader(buf);
  assert.ok("value" in r, `expected a header, got ${JSON.stringify(r)}`);
  return r;
}

test("v1 TCP4 is the spec's line and parses back", () => {
  const h = encodeProxyHeader("v1", src, dst);
  assert.equal(h.toString(), "PROXY TCP4 192.0.2.10 198.51.100.1 56324 443\r\n");
  const r = parsed(Buffer.concat([h, Buffer.from("GET /")]));
  assert.deepEqual(r.value, { version: 1, source: src, destination: dst });
  assert.equal(r.consumed, h.length);
});

test("mixed families are sent as TCP6 with the IPv4 side mapped; v4-mapped sources count as IPv4", () => {
  assert.equal(
    encodeProxyHeader("v1", { address: "2001:db8::5", port: 1 }, { address: "10.0.0.1", port: 2 }).toString(),
    "PROXY TCP6 2001:db8::5 ::ffff:10.0.0.1 1 2\r\n",
  );
  assert.equal(
    encodeProxyHeader(
      "v1",
      { address: "::ffff:10.0.0.9", port: 1 },
      { address: "10.0.0.1", port: 2 },
    ).toString(),
    "PROXY TCP4 10.0.0.9 10.0.0.1 1 2\r\n",
  );
});

test("v2 TCP4 has the exact layout of spec §2.2 and parses back", () => {
  const h = encodeProxyHeader("v2", src, dst);
  const want = Buffer.concat([
    V2_SIGNATURE,
    Buffer.from([0x21, 0x11, 0x00, 0x0c, 192, 0, 2, 10, 198, 51, 100, 1, 0xdc, 0x04, 0x01, 0xbb]),
  ]);
  assert.deepEqual(h, want);
  assert.deepEqual(parsed(h).value, { version: 2, source: src, destination: dst });
});

test("v2 TCP6 round-trips with RFC 5952 text", () => {
  const s6 = { address: "2001:db8::1", port: 1234 };
  const d6 = { address: "2001:db8:0:0:1::2", port: 80 };
  const h = encodeProxyHeader("v2", s6, d6);
  assert.equal(h.length, 16 + 36);
  assert.deepEqual(parsed(h).value, {
    version: 2,
    source: s6,
    destination: { address: "2001:db8::1:0:0:2", port: 80 },
  });
});

test("every strict prefix of a header asks for more bytes; the payload after it is left alone", () => {
  for (const h of [encodeProxyHeader("v1", src, dst), encodeProxyHeader("v2", src, dst)]) {
    for (let n = 1; n < h.length; n++)
      assert.deepEqual(parseProxyHeader(h.subarray(0, n)), { need: true }, `${n}`);
    assert.equal(parsed(Buffer.concat([h, Buffer.from("payload")])).consumed, h.length);
  }
});

test("v2 TLVs after the addresses are skipped by the declared length", () => {
  const h = encodeProxyHeader("v2", src, dst);
  const tlv = Buffer.from([0x04, 0x00, 0x03, 0x61, 0x62, 0x63]); // PP2_TYPE_NOOP, 3 bytes
  const withTlv = Buffer.concat([h, tlv]);
  withTlv.writeUInt16BE(12 + tlv.length, 14);
  const r = parsed(Buffer.concat([withTlv, Buffer.from("X")]));
  assert.equal(r.consumed, withTlv.length);
  assert.deepEqual(r.value.source, src);
});

test("LOCAL, UNKNOWN and UNSPEC carry no address (the real connection's is used)", () => {
  assert.deepEqual(parsed(encodeProxyHeader("v2")).value, { version: 2 });
  assert.deepEqual(parsed(encodeProxyHeader("v1")).value, { version: 1 });
  assert.deepEqual(parsed(Buffer.from("PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n")).value, { version: 1 });
  const unspec = Buffer.concat([V2_SIGNATURE, Buffer.from([0x21, 0x00, 0x00, 0x00])]);
  assert.deepEqual(parsed(unspec).value, { version: 2 });
});

test("malformed headers are refused with their reason, whatever bytes follow them", () => {
  const v2 = (verCmd: number, fam: number, len: number) =>
    Buffer.concat([
      V2_SIGNATURE,
      Buffer.from([verCmd, fam, len >> 8, len & 0xff]),
      Buffer.alloc(Math.min(len, 64)),
    ]);
  const bad: Array<[string, Buffer, RegExp]> = [
    ["http", Buffer.from("GET / HTTP/1.1\r\n"), /not a PROXY protocol header/],
    ["v1 no CRLF in 107 bytes", Buffer.from(`PROXY TCP4 ${"1".repeat(120)}`), /longer than 107 bytes/],
    ["v1 protocol", Buffer.from("PROXY UDP4 1.2.3.4 1.2.3.5 1 2\r\n"), /"UDP4" is not TCP4, TCP6 or UNKNOWN/],
    ["v1 family", Buffer.from("PROXY TCP4 ::1 ::1 1 2\r\n"), /addresses are not TCP4/],
    ["v1 family (destination)", Buffer.from("PROXY TCP4 1.2.3.4 ::1 1 2\r\n"), /addresses are not TCP4/],
    ["v1 family (TCP6)", Buffer.from("PROXY TCP6 ::1 1.2.3.4 1 2\r\n"), /addresses are not TCP6/],
    ["v1 port", Buffer.from("PROXY TCP4 1.2.3.4 1.2.3.5 70000 2\r\n"), /port out of range/],
    ["v1 port (destination)", Buffer.from("PROXY TCP4 1.2.3.4 1.2.3.5 1 65536\r\n"), /port out of range/],
    ["v1 port (sign)", Buffer.from("PROXY TCP4 1.2.3.4 1.2.3.5 -1 2\r\n"), /port out of range/],
    ["v1 port (six digits)", Buffer.from("PROXY TCP4 1.2.3.4 1.2.3.5 1 100000\r\n"), /port out of range/],
    ["v1 leading zero", Buffer.from("PROXY TCP4 1.2.3.4 1.2.3.5 01 2\r\n"), /port out of range/],
    ["v1 fields", Buffer.from("PROXY TCP4 1.2.3.4 1.2.3.5 1\r\n"), /does not have six fields/],
    ["v1 fields (seven)", Buffer.from("PROXY TCP4 1.2.3.4 1.2.3.5 1 2 3\r\n"), /does not have six fields/],
    ["v2 version", v2(0x11, 0x11, 12), /version nibble is not 2/],
    ["v2 command", v2(0x22, 0x11, 12), /command is neither LOCAL nor PROXY/],
    ["v2 family", v2(0x21, 0x41, 12), /unknown address family/],
    ["v2 transport", v2(0x21, 0x13, 12), /unknown address family/],
    ["v2 short (IPv4)", v2(0x21, 0x11, 8), /length shorter than its address block/],
    ["v2 short (IPv4, one byte)", v2(0x21, 0x11, 11), /length shorter than its address block/],
    ["v2 short (IPv6)", v2(0x21, 0x21, 35), /length shorter than its address block/],
    ["v2 too long", v2(0x21, 0x11, V2_MAX), /longer than 16384 bytes/],
  ];
  // What a client sends after its header: with it, a parser that reads past the declared
  // length would find bytes to take for ports or addresses instead of running out of buffer.
  const payload = Buffer.from("GET / HTTP/1.1\r\nHost: x\r\n\r\n".repeat(4));
  for (const [name, buf, reason] of bad) {
    for (const [which, bytes] of [
      ["alone", buf],
      ["with payload", Buffer.concat([buf, payload])],
    ] as const) {
      const r = parseProxyHeader(bytes);
      assert.ok("error" in r, `${name} (${which}): ${JSON.stringify(r)}`);
      assert.match(r.error, reason, `${name} (${which})`);
    }
  }
});

test("the limits themselves are accepted: port 0 and 65535, a v2 header of exactly 16 KB", () => {
  const v1 = parsed(Buffer.from("PROXY TCP4 1.2.3.4 1.2.3.5 0 65535\r\n"));
  assert.deepEqual(v1.value.source, { address: "1.2.3.4", port: 0 });
  assert.deepEqual(v1.value.destination, { address: "1.2.3.5", port: 65535 });
  // A v1 line of exactly 107 bytes (CRLF included) is the longest allowed.
  const line = "PROXY UNKNOWN ";
  const longest = Buffer.from(`${line}${"x".repeat(107 - line.length - 2)}\r\n`);
  assert.equal(longest.length, 107);
  assert.equal(parsed(longest).consumed, 107);
  const h = encodeProxyHeader("v2", src, dst);
  const big = Buffer.concat([h, Buffer.alloc(V2_MAX - h.length)]);
  big.writeUInt16BE(V2_MAX - 16, 14);
  const r = parsed(Buffer.concat([big, Buffer.from("X")]));
  assert.equal(r.consumed, V2_MAX);
  assert.deepEqual(r.value.source, src);
  // An exact address block (no TLV) is enough; one byte short is not (above).
  assert.deepEqual(parsed(encodeProxyHeader("v2", src, dst)).value.destination, dst);
});

test("random bytes after the v2 signature never throw", () => {
  for (let i = 0; i < 2000; i++) {
    const buf = Buffer.concat([V2_SIGNATURE, randomBytes(i % 80)]);
    const r = parseProxyHeader(buf);
    assert.ok("need" in r || "error" in r || "value" in r);
  }
});

test("IPv6 text ⇄ bytes", () => {
  for (const [text, canon] of [
    ["::", "::"],
    ["::1", "::1"],
    ["2001:DB8:0:0:0:0:0:1", "2001:db8::1"],
    ["2001:db8:0:1:0:0:0:0", "2001:db8:0:1::"],
    ["1:0:0:2:0:0:0:3", "1:0:0:2::3"],
    ["1:2:3:4:5:6:7:8", "1:2:3:4:5:6:7:8"],
    ["::ffff:192.0.2.1", "::ffff:192.0.2.1"],
    ["fe80::1%eth0", "fe80::1"],
  ]) {
    assert.equal(ipv6Text(ipv6Bytes(text), 0), canon, text);
  }
});

test("v1: a 107-byte line without CRLF is refused; a source in the wrong family alone is refused", () => {
  const long = Buffer.from(`PROXY TCP4 ${"1".repeat(107 - 11)}`);
  assert.equal(long.length, 107);
  const r = parseProxyHeader(long);
  assert.ok("error" in r && /longer than 107 bytes/.test(r.error), JSON.stringify(r));
  assert.deepEqual(parseProxyHeader(long.subarray(0, 106)), { need: true });
  for (const line of ["PROXY TCP4 ::1 1.2.3.5 1 2\r\n", "PROXY TCP6 1.2.3.4 ::1 1 2\r\n"]) {
    const bad = parseProxyHeader(Buffer.from(line));
    assert.ok("error" in bad && /addresses are not TCP/.test(bad.error), line);
  }
  assert.deepEqual(parsed(Buffer.from("PROXY TCP4 1.2.3.4 1.2.3.5 65535 1\r\n")).value.source, {
    address: "1.2.3.4",
    port: 65535,
  });
});

test("v2: LOCAL and UNIX carry no address even with an address block; DGRAM is a known transport", () => {
  const inet = encodeProxyHeader("v2", src, dst);
  // The same header with command LOCAL (0x20): the balancer's own connection, addresses ignored.
  const local = Buffer.from(inet);
  local[12] = 0x20;
  assert.deepEqual(parsed(Buffer.concat([local, Buffer.from("X")])).value, { version: 2 });
  assert.equal(parsed(local).consumed, inet.length);
  // AF_UNIX (0x31): 216 bytes of paths, nothing we can use as an address.
  const unix = Buffer.concat([V2_SIGNATURE, Buffer.from([0x21, 0x31, 0x00, 216]), Buffer.alloc(216, 0x2f)]);
  const u = parsed(Buffer.concat([unix, Buffer.from("payload")]));
  assert.deepEqual(u.value, { version: 2 });
  assert.equal(u.consumed, 16 + 216);
  // INET over DGRAM (0x12): addresses as for STREAM.
  const dgram = Buffer.from(inet);
  dgram[13] = 0x12;
  assert.deepEqual(parsed(dgram).value, { version: 2, source: src, destination: dst });
});

test("encoding: an address that is not IP, on either side, gives UNKNOWN (v1) or LOCAL (v2)", () => {
  const notIp = { address: "not-an-ip", port: 1 };
  for (const [s, d] of [
    [notIp, dst],
    [src, notIp],
    [notIp, notIp],
  ]) {
    assert.equal(encodeProxyHeader("v1", s, d).toString(), "PROXY UNKNOWN\r\n");
    assert.deepEqual(parsed(encodeProxyHeader("v2", s, d)).value, { version: 2 });
    assert.equal(encodeProxyHeader("v2", s, d).length, 16);
  }
  assert.equal(encodeProxyHeader("v1", src).toString(), "PROXY UNKNOWN\r\n", "no destination");
});

test("encoding: an IPv6 destination with an IPv4 source maps the source", () => {
  const h = encodeProxyHeader("v1", { address: "10.0.0.1", port: 1 }, { address: "2001:db8::1", port: 2 });
  assert.equal(h.toString(), "PROXY TCP6 ::ffff:10.0.0.1 2001:db8::1 1 2\r\n");
  const v2 = encodeProxyHeader("v2", { address: "10.0.0.1", port: 1 }, { address: "2001:db8::1", port: 2 });
  assert.deepEqual(parsed(v2).value, {
    version: 2,
    source: { address: "::ffff:10.0.0.1", port: 1 },
    destination: { address: "2001:db8::1", port: 2 },
  });
});
