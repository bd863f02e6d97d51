/**
 * A WebSocket tunnel after the 101: bytes pass both ways untouched, with
 * backpressure. The only thing read is each frame's header (RFC 6455 §5.2),
 * to know where frames end, so that a gateway shutting down can close the
 * connection cleanly: it finishes the frame in progress in each direction,
 * then sends its own Close frame — 1012 "service restart" to the client
 * (unmasked, server role), 1001 "going away" to the upstream (masked, client
 * role, §5.3) — instead of cutting a frame in half. Control frames may be
 * injected between the fragments of a message (§5.4), so a frame boundary is
 * always a safe place.
 */
import { randomBytes } from "node:crypto";
import type { Duplex } from "node:stream";

/** Close frame with a status code: FIN + opcode 0x8, 2-byte payload. Masked when sent as a client. */
export function closeFrame(code: number, masked: boolean): Buffer {
  if (!masked) return Buffer.from([0x88, 0x02, code >> 8, code & 0xff]);
  const m = randomBytes(4);
  return Buffer.from([0x88, 0x82, m[0], m[1], m[2], m[3], (code >> 8) ^ m[0], (code & 0xff) ^ m[1]]);
}

/** Follows frame boundaries in a byte stream by reading headers only. */
export class FrameCursor {
  /** Payload bytes of the current frame still to come. */
  private payload = 0;
  private readonly hdr = Buffer.alloc(14);
  private hdrLen = 0;

  /** The bytes seen so far end exactly where a frame ends. */
  get atBoundary(): boolean {
    return this.payload === 0 && this.hdrLen === 0;
  }

  /**
   * Account for `chunk`; returns how many of its bytes were taken. With
   * `stopAtBoundary`, stops at the first frame boundary (0 when already at one).
   */
  consume(chunk: Buffer, stopAtBoundary = false): number {
    let i = 0;
    const n = chunk.length;
    while (i < n) {
      if (stopAtBoundary && this.atBoundary) return i;
      if (this.payload > 0) {
        const k = Math.min(this.payload, n - i);
        this.payload -= k;
        i += k;
        continue;
      }
      this.hdr[this.hdrLen++] = chunk[i++];
      if (this.hdrLen >= 2 && this.hdrLen === headerLength(this.hdr)) {
        this.payload = payloadLength(this.hdr);
        this.hdrLen = 0;
      }
    }
    return i;
  }
}

function headerLength(h: Buffer): number {
  const len7 = h[1] & 0x7f;
  return 2 + (len7 === 126 ? 2 : len7 === 127 ? 8 : 0) + (h[1] & 0x80 ? 4 : 0);
}

function payloadLength(h: Buffer): number {
  const len7 = h[1] & 0x7f;
  if (len7 === 126) return h.readUInt16BE(2);
  if (len7 === 127) return Number(h.readBigUInt64BE(2));
  return len7;
}

/** One direction of the tunnel, and what to send at its end when closing. */
interface Direction {
  from: Duplex;
  to: Duplex;
  cursor: FrameCursor;
  /** Our Close frame went out on `to`; further bytes from `from` are dropped. */
  sealed: boolean;
}

/** After one side has closed, how long the other may take to flush and close before it is destroyed. */
const LINGER_MS = 5000;

export class Tunnel {
  private closing = false;
  private ended = false;
  private code = 1012;
  private readonly down: Direction;
  private readonly up: Direction;
  private readonly closed: Promise<void>;
  private resolveClosed!: () => void;

  constructor(
    readonly client: Duplex,
    readonly upstream: Duplex,
    private readonly onEnd: () => void,
  ) {
    this.closed = new Promise((done) => {
      this.resolveClosed = done;
    });
    this.down = { from: upstream, to: client, cursor: new FrameCursor(), sealed: false };
    this.up = { from: client, to: upstream, cursor: new FrameCursor(), sealed: false };
  }

  /** Start piping; `clientHead` / `upstreamHead` are bytes that arrived with the handshakes. */
  start(clientHead: Buffer, upstreamHead: Buffer): void {
    for (const [s, other] of [
      [this.client, this.upstream],
      [this.upstream, this.client],
    ] as const) {
      s.on("error", () => this.destroy());
      // One side gone: let the other flush what it was given, then close; both closed = the end.
      s.on("close", () => {
        if (other.destroyed) return this.destroy();
        other.end(); // its own "close" then ends the tunnel
        setTimeout(() => this.destroy(), LINGER_MS).unref();
      });
    }
    this.pump(this.down);
    this.pump(this.up);
    if (upstreamHead.length > 0) this.forward(this.down, upstreamHead);
    if (clientHead.length > 0) this.forward(this.up, clientHead);
  }

  /**
   * Close both sides cleanly: `code` to the client, 1001 to the upstream, each
   * at the next frame boundary; whatever is still open after `graceMs` is destroyed.
   */
  closeWith(code = 1012, graceMs = 1000): Promise<void> {
    if (this.ended) return this.closed;
    if (!this.closing) {
      this.closing = true;
      this.code = code;
      for (const d of [this.down, this.up]) if (d.cursor.atBoundary) this.seal(d);
      setTimeout(() => this.destroy(), graceMs).unref();
    }
    return this.closed;
  }

  private pump(d: Direction): void {
    d.from.on("data", (chunk: Buffer) => this.forward(d, chunk));
    d.from.on("end", () => {
      if (!d.sealed) d.to.end();
    });
    d.to.on("drain", () => d.from.resume());
  }

  private forward(d: Direction, chunk: Buffer): void {
    if (d.sealed) return; // after our Close frame: the peer's remaining bytes are dropped
    if (!this.closing) {
      d.cursor.consume(chunk);
      if (!d.to.write(chunk)) d.from.pause();
      return;
    }
    const n = d.cursor.consume(chunk, true);
    if (n > 0) d.to.write(n === chunk.length ? chunk : chunk.subarray(0, n));
    if (d.cursor.atBoundary) this.seal(d);
  }

  /** Send our Close frame on `d.to` and half-close it; the peer's answer ends the socket. */
  private seal(d: Direction): void {
    if (d.sealed) return;
    d.sealed = true;
    d.from.resume(); // keep reading (and dropping) so the peer's Close and FIN arrive
    const frame = d === this.down ? closeFrame(this.code, false) : closeFrame(1001, true);
    if (d.to.writable) d.to.end(frame);
  }

  private destroy(): void {
    if (this.ended) return;
    this.ended = true;
    this.client.destroy();
    this.upstream.destroy();
    this.onEnd();
    this.resolveClosed();
  }
}
