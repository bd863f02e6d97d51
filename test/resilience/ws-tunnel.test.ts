import assert from "node:assert/strict";
import net, { type Socket } from "node:net";
import { describe, test } from "node:test";
import { closeFrame, FrameCursor, Tunnel } from "../../src/upstreams/ws-tunnel.js";
import { encodeFrame, FrameReader, until } from "./helpers.js";

/** Two connected TCP sockets. */
async function pair(): Promise<[Socket, Socket]> {
  const server = net.createServer();
  await new Promise<void>((ok) => server.listen(0, "127.0.0.1", ok));
  const accepted = new Promise<Socket>((ok) => server.once("connection", ok));
  const a = net.connect((server.address() as net.AddressInfo).port, "127.0.0.1");
  const b = await accepted;
  server.close();
  await new Promise((ok) => a.once("connect", ok));
  return [a, b];
}

describe("frame boundaries", { timeout: 10_000 }, () => {
  test("FrameCursor follows frames split anywhere, including inside the header", () => {
    const frames = Buffer.concat([
      encodeFrame(0x1, "x".repeat(5), false),
      encodeFrame(0x2, Buffer.alloc(300), true), // 16-bit length, masked
      encodeFrame(0x2, Buffer.alloc(70_000), false), // 64-bit length
      encodeFrame(0x9, "", false),
    ]);
    const ends = new Set([7, 7 + 308, 7 + 308 + 70_010, frames.length]);
    for (const step of [1, 3, 13, 1000]) {
      const c = new FrameCursor();
      for (let i = 0; i < frames.length; i += step) {
        c.consume(frames.subarray(i, i + step));
        const at = Math.min(i + step, frames.length);
        assert.equal(c.atBoundary, ends.has(at), `step ${step} at ${at}`);
      }
    }
    const c = new FrameCursor();
    assert.equal(c.consume(frames.subarray(0, 3), true), 0, "already at a boundary: takes nothing");
    const d = new FrameCursor();
    d.consume(frames.subarray(0, 3));
    assert.equal(d.consume(frames.subarray(3, 400), true), 4, "stops where the first frame ends");
  });

  test("closing mid-frame finishes that frame, then sends 1012, and drops what follows", async () => {
    const [clientEnd, tunnelClient] = await pair();
    const [tunnelUpstream, upstreamEnd] = await pair();
    let ended = false;
    const tunnel = new Tunnel(tunnelClient, tunnelUpstream, () => {
      ended = true;
    });
    tunnel.start(Buffer.alloc(0), Buffer.alloc(0));
    const atClient = new FrameReader(clientEnd);
    const atUpstream = new FrameReader(upstreamEnd);
    upstreamEnd.on("error", () => {});
    clientEnd.on("error", () => {});

    const big = encodeFrame(0x2, Buffer.alloc(10_000, 7), false);
    upstreamEnd.write(big.subarray(0, 5000));
    await until(() => tunnelUpstream.bytesRead >= 5000, 2000, 2);
    const closed = tunnel.closeWith(1012, 2000);
    upstreamEnd.write(Buffer.concat([big.subarray(5000), encodeFrame(0x1, "late", false)]));

    const first = await atClient.next();
    assert.equal(first.opcode, 0x2);
    assert.equal(first.payload.length, 10_000, "the frame in progress arrived whole");
    const close = await atClient.next();
    assert.equal(close.opcode, 0x8);
    assert.equal(close.payload.readUInt16BE(0), 1012);
    const goingAway = await atUpstream.next();
    assert.equal(goingAway.payload.readUInt16BE(0), 1001, "the target is told 1001, masked as a client must");
    clientEnd.end(encodeFrame(0x8, Buffer.from([0x03, 0xf4]), true));
    upstreamEnd.end();
    await closed;
    assert.ok(ended);
    assert.equal(atClient.frames.length, 0, "nothing after our Close frame");
  });

  test("closeFrame bytes: opcode 0x8, code 1012 = 0x03F4", () => {
    assert.deepEqual([...closeFrame(1012, false)], [0x88, 0x02, 0x03, 0xf4]);
    const m = closeFrame(1001, true);
    assert.equal(m[1], 0x82);
    assert.equal(((m[6] ^ m[2]) << 8) | (m[7] ^ m[3]), 1001);
  });
});
