/**
 * PROXY protocol v1 (text) and v2 (binary), per HAProxy's specification
 * "The PROXY protocol, Versions 1 & 2" (haproxy.org/download/2.9/doc/proxy-protocol.txt).
 *
 * Written by hand rather than taken from proxy-protocol-js (4.0.6): that
 * parser needs the whole header up front (no "need more bytes" answer for a
 * stream), splits a v2 header at the address block instead of the declared
 * length (so TLVs leak into the payload) and does not check lengths against
 * the buffer. The format is small; this file is fully covered by tests.
 */
import { familyOf, ipv4Bytes, ipv4Text, ipv6Bytes, ipv6Text, unmapIPv4 } from "./ip.js";
import type { Step } from "./preface.js";

export interface Endpoint {
  address: string;
  port: number;
}

export interface ProxyHeader {
  version: 1 | 2;
  /** The original client; undefined for v1 UNKNOWN, v2 LOCAL or a family without addresses. */
  source?: Endpoint;
  /** The address the client connected to (the downstream balancer's listener). */
  destination?: Endpoint;
}

/** §2.2: the 12-byte v2 signature, chosen so it can never start a valid v1 or HTTP request. */
export const V2_SIGNATURE = Buffer.from([
  0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a,
]);
const V1_PREFIX = Buffer.from("PROXY ");
/** §2.1: "a receiver … must not try to read more than 107 bytes" for a v1 line. */
const V1_MAX = 107;
/** §2.2: address block sizes by family (AF_INET, AF_INET6, AF_UNIX). */
const V2_ADDRESS_LENGTH: Record<number, number> = { 0: 0, 1: 12, 2: 36, 3: 216 };
/** Our bound on a v2 header with its TLVs; the spec allows 16 + 65535, nobody sends that. */
export const V2_MAX = 16 * 1024;

/** Does `buf` (possibly partial) still look like the start of `prefix`? */
function startsLike(buf: Buffer, prefix: Buffer): boolean {
  const n = Math.min(buf.length, prefix.length);
  return buf.subarray(0, n).equals(prefix.subarray(0, n));
}

/** Parses a PROXY header at the start of `buf`: need more, the header (and its length), or a refusal. */
export function parseProxyHeader(buf: Buffer): Step<ProxyHeader> {
  if (startsLike(buf, V2_SIGNATURE)) return buf.length < 16 ? { need: true } : parseV2(buf);
  if (startsLike(buf, V1_PREFIX)) return parseV1(buf);
  return { error: "not a PROXY protocol header" };
}

const PORT = /^(0|[1-9][0-9]{0,4})$/;

function parseV1(buf: Buffer): Step<ProxyHeader> {
  const end = buf.subarray(0, V1_MAX).indexOf("\r\n");
  // Stryker disable next-line EqualityOperator: equivalent for <= 0, the line starts with "PROXY ", so CRLF is never at 0
  if (end < 0)
    return buf.length >= V1_MAX ? { error: "PROXY v1 line longer than 107 bytes" } : { need: true };
  const line = buf.subarray(0, end).toString("latin1");
  const consumed = end + 2;
  const parts = line.split(" ");
  // §2.1: with UNKNOWN the receiver ignores the rest of the line and uses the real addresses.
  if (parts[1] === "UNKNOWN") return { value: { version: 1 }, consumed };
  if (parts.length !== 6) return { error: "PROXY v1 line does not have six fields" };
  const [, proto, src, dst, sport, dport] = parts;
  const want = proto === "TCP4" ? 4 : proto === "TCP6" ? 6 : 0;
  if (want === 0) return { error: `PROXY v1 protocol "${proto}" is not TCP4, TCP6 or UNKNOWN` };
  if (familyOf(src) !== want || familyOf(dst) !== want)
    return { error: `PROXY v1 addresses are not ${proto}` };
  if (!PORT.test(sport) || !PORT.test(dport) || Number(sport) > 65535 || Number(dport) > 65535) {
    return { error: "PROXY v1 port out of range" };
  }
  return {
    value: {
      version: 1,
      source: { address: src, port: Number(sport) },
      destination: { address: dst, port: Number(dport) },
    },
    consumed,
  };
}

function parseV2(buf: Buffer): Step<ProxyHeader> {
  const verCmd = buf[12];
  const famProto = buf[13];
  const length = buf.readUInt16BE(14);
  if (verCmd >> 4 !== 2) return { error: "PROXY v2 version nibble is not 2" };
  const command = verCmd & 0x0f;
  // §2.2: 0 = LOCAL, 1 = PROXY; "other values are unassigned and must not be emitted … receivers must drop".
  if (command > 1) return { error: "PROXY v2 command is neither LOCAL nor PROXY" };
  const family = famProto >> 4;
  if (!(family in V2_ADDRESS_LENGTH) || (famProto & 0x0f) > 2)
    return { error: "PROXY v2 unknown address family" };
  if (16 + length > V2_MAX) return { error: `PROXY v2 header longer than ${V2_MAX} bytes` };
  if (buf.length < 16 + length) return { need: true };
  const consumed = 16 + length;
  // LOCAL (health checks from the balancer itself), UNSPEC and UNIX: keep the real connection's addresses.
  if (command === 0 || family === 0 || family === 3) return { value: { version: 2 }, consumed };
  if (length < V2_ADDRESS_LENGTH[family]) return { error: "PROXY v2 length shorter than its address block" };
  // What follows the address block up to `length` is TLVs (§2.2.7): skipped, we do not use them.
  const v4 = family === 1;
  const text = v4 ? ipv4Text : ipv6Text;
  const size = v4 ? 4 : 16;
  const portAt = 16 + 2 * size;
  return {
    value: {
      version: 2,
      source: { address: text(buf, 16), port: buf.readUInt16BE(portAt) },
      destination: { address: text(buf, 16 + size), port: buf.readUInt16BE(portAt + 2) },
    },
    consumed,
  };
}

/**
 * The header announcing `source` → `destination` to the target. Both are
 * written in one family (§2.1/§2.2 carry one family per header): IPv4 when both
 * are IPv4 (v4-mapped IPv6 counts as IPv4), else IPv6 with IPv4 mapped. Without
 * usable addresses it is v1 "UNKNOWN" or v2 LOCAL, which tell the target to
 * use the connection's own addresses.
 */
export function encodeProxyHeader(version: "v1" | "v2", source?: Endpoint, destination?: Endpoint): Buffer {
  const src = source && unmapIPv4(source.address);
  const dst = destination && unmapIPv4(destination.address);
  const fs = src === undefined ? 0 : familyOf(src);
  const fd = dst === undefined ? 0 : familyOf(dst);
  if (fs === 0 || fd === 0 || !source || !destination || src === undefined || dst === undefined) {
    return version === "v1"
      ? Buffer.from("PROXY UNKNOWN\r\n", "latin1")
      : Buffer.concat([V2_SIGNATURE, Buffer.from([0x20, 0x00, 0x00, 0x00])]);
  }
  const six = fs === 6 || fd === 6;
  const a = six && fs === 4 ? `::ffff:${src}` : src;
  const b = six && fd === 4 ? `::ffff:${dst}` : dst;
  if (version === "v1") {
    return Buffer.from(
      `PROXY ${six ? "TCP6" : "TCP4"} ${a} ${b} ${source.port} ${destination.port}\r\n`,
      "latin1",
    );
  }
  const addr = six
    ? Buffer.concat([ipv6Bytes(a), ipv6Bytes(b)])
    : Buffer.concat([ipv4Bytes(a), ipv4Bytes(b)]);
  const head = Buffer.alloc(4);
  head[0] = 0x21; // version 2, command PROXY
  head[1] = six ? 0x21 : 0x11; // AF_INET6 or AF_INET, STREAM
  head.writeUInt16BE(addr.length + 4, 2);
  const ports = Buffer.alloc(4);
  ports.writeUInt16BE(source.port, 0);
  ports.writeUInt16BE(destination.port, 2);
  return Buffer.concat([V2_SIGNATURE, head, addr, ports]);
}
