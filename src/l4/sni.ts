/**
 * Reads the server_name from a TLS ClientHello without terminating TLS, for
 * SNI passthrough routing. Every length is checked against its enclosing
 * structure; any inconsistency is a refusal, never an exception or an
 * out-of-bounds read.
 *
 * Structures (RFC 8446 §5.1 records, §4.1.2 ClientHello; RFC 6066 §3
 * server_name; the same shape in TLS 1.0–1.2, RFC 5246 §7.4.1.2):
 *   record:      type(1)=22 handshake, legacy_version(2)=0x03xx, length(2) ≤ 2^14, fragment
 *   handshake:   msg_type(1)=1 client_hello, length(3), body
 *   ClientHello: version(2) random(32) session_id<0..32> cipher_suites<2..2^16-2>
 *                compression_methods<1..2^8-1> extensions<0..2^16-1> (absent in old clients)
 *   server_name: ServerNameList<1..2^16-1> of { name_type(1)=0 host_name, HostName<1..2^16-1> }
 *
 * A ClientHello may be split over several handshake records (§5.1: "handshake
 * messages MAY be coalesced … or fragmented across several records"), so the
 * fragments are joined, up to `maxHello` bytes.
 */
import type { Step } from "./preface.js";

const RECORD_HANDSHAKE = 22;
const HANDSHAKE_CLIENT_HELLO = 1;
const EXT_SERVER_NAME = 0;
const NAME_TYPE_HOST = 0;
/** RFC 8446 §5.1: TLSPlaintext.length MUST NOT exceed 2^14. */
const MAX_RECORD = 16384;
/** Our bound on a ClientHello (post-quantum key shares make ~2 KB ones; 16 KB is ample). */
export const MAX_HELLO = 16384;

export interface ClientHello {
  /** Lower-cased host name, or undefined when the client sent no SNI. */
  serverName: string | undefined;
}

/** Host names as RFC 6066 §3 allows them: ASCII DNS labels, no IP literals checked here. */
const HOST =
  /^(?=.{1,253}$)[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?(?:\.[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?)*$/;

/** Parses the ClientHello at the start of `buf`. Consumes nothing: the bytes are replayed to the target. */
export function parseClientHello(buf: Buffer, maxHello = MAX_HELLO): Step<ClientHello> {
  const fragments: Buffer[] = [];
  let have = 0;
  let need = -1; // handshake message size including its 4-byte header, once known
  for (let at = 0; ; ) {
    if (buf.length < at + 5) return { need: true };
    if (buf[at] !== RECORD_HANDSHAKE) return { error: "not a TLS handshake record" };
    if (buf[at + 1] !== 3) return { error: "not a TLS record version" };
    const len = buf.readUInt16BE(at + 3);
    if (len === 0 || len > MAX_RECORD) return { error: "bad TLS record length" };
    if (buf.length < at + 5 + len) {
      // Fail early on an oversized hello instead of buffering it.
      // Stryker disable next-line ConditionalExpression,EqualityOperator: equivalent on `need < 0` (true, <= 0): need is −1 or a size ≥ 4 that already passed helloSize, so re-checking the same 4 bytes answers the same; the other mutants of the line are killed
      if (need < 0 && have + (buf.length - at - 5) >= 4) {
        const head = Buffer.concat([...fragments, buf.subarray(at + 5, at + 9)]);
        const check = helloSize(head, maxHello);
        if (typeof check === "string") return { error: check };
      }
      return { need: true };
    }
    fragments.push(buf.subarray(at + 5, at + 5 + len));
    have += len;
    at += 5 + len;
    // Stryker disable next-line ConditionalExpression,EqualityOperator: equivalent on `need < 0` (true, <= 0): once known, need is ≥ 4 and recomputing it from the same first 4 bytes gives the same size; the other mutants of the line are killed
    if (need < 0 && have >= 4) {
      const size = helloSize(Buffer.concat(fragments), maxHello);
      if (typeof size === "string") return { error: size };
      need = size;
    }
    // Stryker disable next-line EqualityOperator: equivalent for `need > 0`: need is −1 or ≥ 4, never 0; the other mutants of the line are killed
    if (need >= 0 && have >= need) {
      return readHello(Buffer.concat(fragments).subarray(4, need));
    }
  }
}

function helloSize(head: Buffer, maxHello: number): number | string {
  if (head[0] !== HANDSHAKE_CLIENT_HELLO) return "first handshake message is not a ClientHello";
  const size = 4 + head.readUIntBE(1, 3);
  return size > maxHello ? `ClientHello larger than ${maxHello} bytes` : size;
}

/**
 * A bounds-checked cursor over one structure.
 *
 * The messages of its RangeErrors are never seen: readHello catches them all as
 * "truncated ClientHello". u8, u16 and skip check bounds that Buffer and the
 * readers after them check again (an over-read leaves `left` negative, and the
 * next read throws), so without their checks the answer is the same; sub and
 * bytes are the ones whose checks decide (they would read into the next field).
 */
// Stryker disable StringLiteral: equivalent, the messages are caught by readHello and never surface
class Reader {
  constructor(
    private readonly b: Buffer,
    public at = 0,
    private readonly end = b.length,
  ) {}
  get left(): number {
    return this.end - this.at;
  }
  u8(): number {
    // Stryker disable next-line ConditionalExpression: equivalent, see above (b[at] past the end is undefined, NaN then fails the next read)
    if (this.left < 1) throw new RangeError("truncated");
    return this.b[this.at++];
  }
  u16(): number {
    // Stryker disable next-line ConditionalExpression: equivalent, see above (readUInt16BE itself throws past the buffer, and every reader's consumer checks left)
    if (this.left < 2) throw new RangeError("truncated");
    const v = this.b.readUInt16BE(this.at);
    this.at += 2;
    return v;
  }
  skip(n: number): void {
    // Stryker disable next-line ConditionalExpression: equivalent, see above (a negative left fails the next read or the left === 0 test)
    if (this.left < n) throw new RangeError("truncated");
    this.at += n;
  }
  /** A sub-reader over the next n bytes, which this reader then skips. */
  sub(n: number): Reader {
    if (this.left < n) throw new RangeError("truncated");
    const r = new Reader(this.b, this.at, this.at + n);
    this.at += n;
    return r;
  }
  bytes(n: number): Buffer {
    if (this.left < n) throw new RangeError("truncated");
    this.at += n;
    return this.b.subarray(this.at - n, this.at);
  }
}
// Stryker restore StringLiteral

function readHello(body: Buffer): Step<ClientHello> {
  try {
    const r = new Reader(body);
    r.skip(2 + 32); // legacy_version, random
    const sid = r.u8();
    if (sid > 32) return { error: "session id longer than 32 bytes" };
    r.skip(sid);
    const suites = r.u16();
    if (suites < 2 || suites % 2 !== 0) return { error: "bad cipher_suites length" };
    r.skip(suites);
    const comp = r.u8();
    if (comp < 1) return { error: "empty compression_methods" };
    r.skip(comp);
    // RFC 5246 §7.4.1.2: a hello may end here (no extensions at all).
    if (r.left === 0) return { value: { serverName: undefined }, consumed: 0 };
    const exts = r.sub(r.u16());
    if (r.left !== 0) return { error: "bytes after the extensions" };
    const serverName = findServerName(exts);
    return typeof serverName === "object" ? serverName : { value: { serverName }, consumed: 0 };
  } catch {
    return { error: "truncated ClientHello" };
  }
}

function findServerName(exts: Reader): string | undefined | { error: string } {
  let found: string | undefined;
  const seen = new Set<number>();
  while (exts.left > 0) {
    const type = exts.u16();
    const data = exts.sub(exts.u16());
    // RFC 8446 §4.2: "There MUST NOT be more than one extension of the same type".
    if (seen.has(type)) return { error: "duplicate extension" };
    seen.add(type);
    if (type !== EXT_SERVER_NAME) continue;
    const list = data.sub(data.u16());
    if (data.left !== 0 || list.left === 0) return { error: "bad server_name extension" };
    while (list.left > 0) {
      const nameType = list.u8();
      const name = list.bytes(list.u16());
      if (nameType !== NAME_TYPE_HOST) continue;
      // RFC 6066 §3: at most one name of a type.
      if (found !== undefined) return { error: "two host names in server_name" };
      const host = name.toString("latin1").toLowerCase();
      if (!HOST.test(host)) return { error: "server_name is not a host name" };
      found = host;
    }
  }
  return found;
}
