/**
 * Peers that fail on purpose, and the small WebSocket codec the tests speak
 * (RFC 6455 §5.2; no library: the gateway must not need one either).
 */
import { createHash, randomBytes } from "node:crypto";
import http, { type IncomingHttpHeaders, type IncomingMessage } from "node:http";
import net, { type AddressInfo, type Socket } from "node:net";
import { request } from "../helpers/index.js";

/** Fire `n` GETs (or `method`) with at most `concurrency` in flight; statuses in order of completion. */
export async function hammer(
  url: string,
  n: number,
  concurrency: number,
  opts: { path?: string; method?: string; headers?: http.OutgoingHttpHeaders; body?: string } = {},
): Promise<{ status: number; body: string }[]> {
  const out: { status: number; body: string }[] = [];
  let next = 0;
  const worker = async () => {
    while (next < n) {
      next++;
      const r = await request(url, opts);
      out.push({ status: r.status, body: r.body });
    }
  };
  await Promise.all(Array.from({ length: Math.min(n, concurrency) }, worker));
  return out;
}

/**
 * A TCP server that resets every connection once the request arrives (after
 * `delay` ms), counting connections (an attempt = a connection).
 */
export async function resettingServer(
  delay = 0,
): Promise<{ url: string; count: () => number; close(): Promise<void> }> {
  let n = 0;
  const server = net.createServer((s) => {
    n++;
    s.on("error", () => {});
    s.once("data", () => setTimeout(() => s.resetAndDestroy(), delay));
  });
  await new Promise<void>((ok) => server.listen(0, "127.0.0.1", ok));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}`,
    count: () => n,
    close: () => new Promise<void>((ok) => server.close(() => ok())),
  };
}

/** Resolves when `cond()` holds, polling every `every` ms; rejects after `within` ms. */
export async function until(cond: () => boolean, within: number, every = 10): Promise<number> {
  const t0 = Date.now();
  while (!cond()) {
    if (Date.now() - t0 > within) throw new Error(`condition not met within ${within}ms`);
    await new Promise((r) => setTimeout(r, every));
  }
  return Date.now() - t0;
}

// ---- WebSocket ----

export interface Frame {
  fin: boolean;
  opcode: number;
  payload: Buffer;
}

/** One frame; clients must mask (§5.3), servers must not. */
export function encodeFrame(opcode: number, payload: Buffer | string, masked: boolean): Buffer {
  const data = Buffer.isBuffer(payload) ? payload : Buffer.from(payload);
  const len = data.length;
  const ext = len < 126 ? 0 : len < 65536 ? 2 : 8;
  const head = Buffer.alloc(2 + ext + (masked ? 4 : 0));
  head[0] = 0x80 | opcode;
  head[1] = (masked ? 0x80 : 0) | (ext === 0 ? len : ext === 2 ? 126 : 127);
  if (ext === 2) head.writeUInt16BE(len, 2);
  if (ext === 8) head.writeBigUInt64BE(BigInt(len), 2);
  if (!masked) return Buffer.concat([head, data]);
  const mask = randomBytes(4);
  mask.copy(head, 2 + ext);
  const body = Buffer.alloc(len);
  for (let i = 0; i < len; i++) body[i] = data[i] ^ mask[i & 3];
  return Buffer.concat([head, body]);
}

/** Splits a byte stream into frames. */
export class FrameReader {
  private buf = Buffer.alloc(0);
  readonly frames: Frame[] = [];
  private waiters: (() => void)[] = [];

  constructor(socket: Socket | NodeJS.ReadableStream) {
    socket.on("data", (chunk: Buffer) => this.push(chunk));
  }

  push(chunk: Buffer): void {
    this.buf = Buffer.concat([this.buf, chunk]);
    for (;;) {
      if (this.buf.length < 2) break;
      const len7 = this.buf[1] & 0x7f;
      const masked = (this.buf[1] & 0x80) !== 0;
      const ext = len7 === 126 ? 2 : len7 === 127 ? 8 : 0;
      const hl = 2 + ext + (masked ? 4 : 0);
      if (this.buf.length < hl) break;
      const len =
        ext === 0 ? len7 : ext === 2 ? this.buf.readUInt16BE(2) : Number(this.buf.readBigUInt64BE(2));
      if (this.buf.length < hl + len) break;
      const payload = Buffer.from(this.buf.subarray(hl, hl + len));
      if (masked) {
        const m = this.buf.subarray(2 + ext, hl);
        for (let i = 0; i < len; i++) payload[i] ^= m[i & 3];
      }
      this.frames.push({ fin: (this.buf[0] & 0x80) !== 0, opcode: this.buf[0] & 0x0f, payload });
      this.buf = this.buf.subarray(hl + len);
    }
    for (const w of this.waiters.splice(0)) w();
  }

  /** The next frame not yet taken. */
  async next(within = 2000): Promise<Frame> {
    const t0 = Date.now();
    while (this.frames.length === 0) {
      if (Date.now() - t0 > within) throw new Error("no frame in time");
      await new Promise<void>((ok) => {
        this.waiters.push(ok);
        setTimeout(ok, 50).unref();
      });
    }
    return this.frames.shift()!;
  }
}

export function acceptKey(key: string): string {
  return createHash("sha1").update(`${key}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`).digest("base64");
}

export interface WsBackend {
  url: string;
  upgrades: number;
  /** Request headers of the last handshake. */
  lastHeaders: IncomingHttpHeaders;
  lastUrl: string;
  /** Close codes the backend received from its peer (the gateway). */
  closes: number[];
  close(): Promise<void>;
}

/**
 * A WebSocket echo server: text/binary frames come back unmasked and prefixed
 * with `name:`; picks the first offered subprotocol; answers a Close with a Close.
 */
export async function wsEchoBackend(name: string): Promise<WsBackend> {
  const b = { upgrades: 0, closes: [] as number[], lastHeaders: {}, lastUrl: "" } as unknown as WsBackend;
  const sockets = new Set<Socket>();
  const server = http.createServer((_req, res) => res.end(`${name} plain`));
  server.on("upgrade", (req: IncomingMessage, socket: Socket) => {
    b.upgrades++;
    b.lastHeaders = req.headers;
    b.lastUrl = req.url ?? "";
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
    socket.on("error", () => {});
    if (req.url?.startsWith("/refuse")) {
      socket.end("HTTP/1.1 403 Forbidden\r\nContent-Length: 7\r\nConnection: close\r\n\r\nrefused");
      return;
    }
    const proto = req.headers["sec-websocket-protocol"]?.split(",")[0]?.trim();
    socket.write(
      "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
        `Sec-WebSocket-Accept: ${acceptKey(String(req.headers["sec-websocket-key"]))}\r\n` +
        (proto ? `Sec-WebSocket-Protocol: ${proto}\r\n` : "") +
        `X-Backend: ${name}\r\n\r\n`,
    );
    const reader = new FrameReader(socket);
    const loop = async () => {
      for (;;) {
        const f = await reader.next(60_000).catch(() => undefined);
        if (f === undefined) return;
        if (f.opcode === 0x8) {
          b.closes.push(f.payload.length >= 2 ? f.payload.readUInt16BE(0) : 1005);
          socket.end(encodeFrame(0x8, f.payload, false));
          return;
        }
        if (f.opcode === 0x9) socket.write(encodeFrame(0xa, f.payload, false));
        else if (f.opcode === 0x1 || f.opcode === 0x2) {
          socket.write(encodeFrame(f.opcode, Buffer.concat([Buffer.from(`${name}:`), f.payload]), false));
        }
      }
    };
    void loop();
  });
  await new Promise<void>((ok) => server.listen(0, "127.0.0.1", ok));
  b.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  b.close = () =>
    new Promise<void>((ok) => {
      for (const s of sockets) s.destroy();
      server.closeAllConnections();
      server.close(() => ok());
    });
  return b;
}

export type WsOpen =
  | { upgraded: true; socket: Socket; res: IncomingMessage; reader: FrameReader }
  | { upgraded: false; status: number; headers: IncomingHttpHeaders; body: string };

/** A client handshake with node:http; resolves with the tunnel or with the refusal. */
export function wsConnect(
  url: string,
  path: string,
  headers: http.OutgoingHttpHeaders = {},
): Promise<WsOpen> {
  const u = new URL(url);
  return new Promise((ok, fail) => {
    const req = http.request({
      host: u.hostname,
      port: u.port,
      path,
      agent: false,
      headers: {
        connection: "Upgrade",
        upgrade: "websocket",
        "sec-websocket-version": "13",
        "sec-websocket-key": randomBytes(16).toString("base64"),
        ...headers,
      },
    });
    req.on("upgrade", (res, socket, head) => {
      const reader = new FrameReader(socket);
      if (head.length > 0) reader.push(head);
      ok({ upgraded: true, socket, res, reader });
    });
    req.on("response", (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () =>
        ok({
          upgraded: false,
          status: res.statusCode ?? 0,
          headers: res.headers,
          body: Buffer.concat(chunks).toString(),
        }),
      );
    });
    req.on("error", fail);
    req.end();
  });
}
