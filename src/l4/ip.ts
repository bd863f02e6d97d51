/**
 * IP address text ⇄ bytes, for the binary PROXY v2 header (which carries raw
 * 4- or 16-byte addresses). Node has no public API for this; `net.isIP`
 * validates, these convert. IPv6 text output follows RFC 5952 (lower case,
 * longest run of zero groups compressed) and writes IPv4-mapped addresses as
 * `::ffff:a.b.c.d`, as Node itself reports `socket.remoteAddress`.
 */
import { isIPv4, isIPv6 } from "node:net";

/** "::ffff:10.0.0.1" → "10.0.0.1"; anything else unchanged. */
export function unmapIPv4(address: string): string {
  return /^::ffff:\d+\.\d+\.\d+\.\d+$/i.test(address) ? address.slice(7) : address;
}

/** 4 bytes for an IPv4 address. The caller has checked it with isIPv4. */
export function ipv4Bytes(address: string): Buffer {
  return Buffer.from(address.split(".").map(Number));
}

/** 16 bytes for an IPv6 address (zone id dropped, embedded IPv4 tail allowed). */
export function ipv6Bytes(address: string): Buffer {
  let text = address.split("%")[0];
  const out = Buffer.alloc(16);
  const tail = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  if (tail) {
    // An embedded IPv4 tail stands for the last two 16-bit groups (RFC 4291 §2.2).
    const v4 = ipv4Bytes(tail[1]);
    text = `${text.slice(0, -tail[1].length)}${v4.readUInt16BE(0).toString(16)}:${v4.readUInt16BE(2).toString(16)}`;
  }
  const [left, right] = text.includes("::") ? text.split("::") : [text, undefined];
  const head = left === "" ? [] : left.split(":");
  const rest = right === undefined || right === "" ? [] : right.split(":");
  const groups = [...head, ...new Array(8 - head.length - rest.length).fill("0"), ...rest];
  groups.forEach((g, i) => {
    out.writeUInt16BE(Number.parseInt(g, 16), i * 2);
  });
  return out;
}

export function ipv4Text(b: Buffer, offset: number): string {
  return `${b[offset]}.${b[offset + 1]}.${b[offset + 2]}.${b[offset + 3]}`;
}

/** RFC 5952 §4 text for 16 address bytes. */
export function ipv6Text(b: Buffer, offset: number): string {
  const groups: number[] = [];
  for (let i = 0; i < 8; i++) groups.push(b.readUInt16BE(offset + i * 2));
  if (groups.slice(0, 5).every((g) => g === 0) && groups[5] === 0xffff) {
    return `::ffff:${ipv4Text(b, offset + 12)}`;
  }
  // Longest run of two or more zero groups, the first one on a tie (§4.2.3).
  let best = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen) {
      best = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (best < 0) return hex.join(":");
  return `${hex.slice(0, best).join(":")}::${hex.slice(best + bestLen).join(":")}`;
}

export type Family = 4 | 6;

/** 4, 6, or 0 when the text is not an IP address. */
export function familyOf(address: string): Family | 0 {
  if (isIPv4(address)) return 4;
  if (isIPv6(address)) return 6;
  return 0;
}
