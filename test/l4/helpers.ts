/**
 * Peers and plumbing for the L4 tests: TCP echo and line servers that say who
 * they are, UDP echo servers, listener configs with the loader's defaults,
 * and small awaitables (read until end, first line, a condition) that are
 * always bounded in time.
 */
import { execFile, spawn } from "node:child_process";
import { createSocket, type Socket as UdpSocket } from "node:dgram";
import { once } from "node:events";
import { type AddressInfo, connect, createServer, type Server, type Socket } from "node:net";
import type { TestContext } from "node:test";
import { parseConfig } from "../../src/config/load.js";
import type { TcpListenerConfig, UdpListenerConfig } from "../../src/config/schema.js";
import { TcpProxy } from "../../src/l4/tcp-proxy.js";
import { UdpProxy } from "../../src/l4/udp-proxy.js";
import { buildServices, type Service } from "../../src/upstreams/service.js";

export const WAIT = 5000;

/** Services from a YAML `services:` block body, built as the gateway builds them. */
export function services(yaml: string): Map<string, Service> {
  return buildServices(parseConfig(`version: 1\nservices:\n${yaml}`).services);
}

export function tcpListener(over: Partial<TcpListenerConfig>): TcpListenerConfig {
  return {
    name: "t",
    listen: { port: 0, host: "127.0.0.1" },
    connectTimeout: "2s",
    idleTimeout: "1h",
    maxConnections: 10000,
    acceptProxyProtocol: false,
    ...over,
  };
}

export function udpListener(over: Partial<UdpListenerConfig>): UdpListenerConfig {
  return {
    name: "u",
    listen: { port: 0, host: "127.0.0.1" },
    service: "s",
    sessionTimeout: "30s",
    maxSessions: 10000,
    ...over,
  };
}

/** A started TcpProxy, stopped when the test ends; returns it and its port. */
export async function tcpProxy(
  t: TestContext,
  listener: Partial<TcpListenerConfig>,
  svc: Map<string, Service>,
  prefaceTimeout?: number,
): Promise<{ proxy: TcpProxy; port: number }> {
  const proxy = new TcpProxy({ listener: tcpListener(listener), services: svc, prefaceTimeout });
  const { port } = await proxy.start();
  t.after(() => proxy.stop(0));
  return { proxy, port };
}

export async function udpProxy(
  t: TestContext,
  listener: Partial<UdpListenerConfig>,
  svc: Map<string, Service>,
) {
  const proxy = new UdpProxy({ listener: udpListener(listener), services: svc });
  const { port } = await proxy.start();
  t.after(() => proxy.stop());
  return { proxy, port };
}

export interface Peer {
  server: Server;
  port: number;
  /** Connections accepted so far. */
  accepted: number;
}

/** Listens on 127.0.0.1:0 and is closed (with its connections) when the test ends. */
export async function listen(
  t: TestContext,
  onConn: (s: Socket) => void,
  allowHalfOpen = true,
): Promise<Peer> {
  const sockets = new Set<Socket>();
  const peer = { accepted: 0 } as Peer;
  peer.server = createServer({ allowHalfOpen }, (s) => {
    peer.accepted++;
    sockets.add(s);
    s.on("close", () => sockets.delete(s));
    s.on("error", () => {});
    onConn(s);
  });
  peer.server.listen(0, "127.0.0.1");
  await once(peer.server, "listening");
  peer.port = (peer.server.address() as AddressInfo).port;
  t.after(() => {
    for (const s of sockets) s.destroy();
    peer.server.close();
  });
  return peer;
}

/** Echoes every byte; when the client half-closes, answers `bye` and closes its side. */
export function echoServer(t: TestContext): Promise<Peer> {
  return listen(t, (s) => {
    s.on("data", (d) => s.write(d));
    s.on("end", () => s.end("bye"));
  });
}

/** Answers each line with `tag:line`, so the client can tell which target it reached. */
export function lineServer(t: TestContext, tag: string): Promise<Peer> {
  return listen(t, (s) => {
    let buf = "";
    s.setEncoding("utf8");
    s.on("data", (d: string) => {
      buf += d;
      for (let i = buf.indexOf("\n"); i >= 0; i = buf.indexOf("\n")) {
        s.write(`${tag}:${buf.slice(0, i)}\n`);
        buf = buf.slice(i + 1);
      }
    });
    s.on("end", () => s.end());
  });
}

/** A port nothing listens on (bound, read, released). */
export async function deadPort(): Promise<number> {
  const s = createServer().listen(0, "127.0.0.1");
  await once(s, "listening");
  const { port } = s.address() as AddressInfo;
  s.close();
  await once(s, "close");
  return port;
}

/**
 * A port whose SYNs go unanswered, for connect timeouts: a child process listens
 * with backlog 1 and then blocks its event loop, so nothing is ever accepted; two
 * connections fill the accept queue and the kernel drops later SYNs.
 */
export async function blackHole(t: TestContext): Promise<number> {
  // The child blocks in the same tick as it prints its port (writes to a pipe are synchronous
  // on Linux): once the port is read, its event loop will never accept, however busy the machine.
  const script = `const s=require("net").createServer().listen({port:0,host:"127.0.0.1",backlog:1},()=>{
    console.log(s.address().port);Atomics.wait(new Int32Array(new SharedArrayBuffer(4)),0,0,60000)})`;
  const child = spawn(process.execPath, ["-e", script], { stdio: ["ignore", "pipe", "inherit"] });
  t.after(() => child.kill());
  const [line] = (await once(child.stdout, "data", { signal: AbortSignal.timeout(WAIT) })) as [Buffer];
  const port = Number(line.toString().trim());
  // Fill its queue (those two complete: the kernel accepts for it).
  for (let i = 0; i < 2; i++) {
    const s = await dial(port);
    t.after(() => s.destroy());
  }
  return port;
}

export async function dial(port: number): Promise<Socket> {
  const c = connect({ port, host: "127.0.0.1", allowHalfOpen: true });
  await once(c, "connect", { signal: AbortSignal.timeout(WAIT) });
  return c;
}

/** Everything the socket receives until the peer's FIN (or close). */
export function readAll(s: Socket): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    const timer = setTimeout(() => reject(new Error("readAll timed out")), WAIT);
    const done = () => {
      clearTimeout(timer);
      resolve(Buffer.concat(chunks));
    };
    s.on("data", (c: Buffer) => chunks.push(c));
    s.once("error", reject);
    s.once("end", done);
    s.once("close", done);
  });
}

/**
 * Resolves when the peer closed its side (FIN, or a reset); rejects if that has
 * not happened within `ms`. Test clients are half-open, so a FIN is an 'end'.
 */
export function closed(s: Socket, ms = WAIT): Promise<void> {
  if (s.destroyed || s.readableEnded) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("socket still open")), ms);
    const done = () => {
      clearTimeout(timer);
      resolve();
    };
    s.on("error", () => {});
    s.resume();
    s.once("end", done);
    s.once("close", done);
  });
}

/** Writes one line and waits for the next line back. */
export function ask(s: Socket, line: string): Promise<string> {
  return new Promise((resolve, reject) => {
    let buf = "";
    const timer = setTimeout(() => reject(new Error(`no reply to ${line}`)), WAIT);
    const onData = (d: Buffer) => {
      buf += d.toString("utf8");
      const i = buf.indexOf("\n");
      if (i < 0) return;
      s.off("data", onData);
      clearTimeout(timer);
      resolve(buf.slice(0, i));
    };
    s.on("data", onData);
    s.write(`${line}\n`);
  });
}

/** Polls a condition that has no event of its own, up to `ms`. */
export async function until(cond: () => boolean, ms = WAIT): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error("condition not met in time");
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** Runs a program; resolves with its output whatever the exit code. */
export function run(
  file: string,
  args: string[],
  timeout = 60_000,
): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(
      file,
      args,
      { timeout, env: { ...process.env, PGCONNECT_TIMEOUT: "5" } },
      (err, stdout, stderr) => {
        const code = err ? (typeof err.code === "number" ? err.code : 1) : 0;
        resolve({ code, stdout, stderr });
      },
    );
  });
}

/** A UDP server answering each datagram with `tag:datagram`. */
export async function udpEcho(t: TestContext, tag: string): Promise<{ port: number; socket: UdpSocket }> {
  const socket = createSocket("udp4");
  socket.on("message", (msg, r) =>
    socket.send(Buffer.concat([Buffer.from(`${tag}:`), msg]), r.port, r.address),
  );
  socket.bind(0, "127.0.0.1");
  await once(socket, "listening");
  t.after(() => socket.close());
  return { port: socket.address().port, socket };
}

/** A UDP client bound to its own port; `ask` sends one datagram and waits for one back. */
export async function udpClient(t: TestContext, port: number) {
  const socket = createSocket("udp4");
  socket.bind(0, "127.0.0.1");
  await once(socket, "listening");
  t.after(() => socket.close());
  return {
    socket,
    send: (msg: string) =>
      new Promise<void>((resolve, reject) =>
        socket.send(msg, port, "127.0.0.1", (e) => (e ? reject(e) : resolve())),
      ),
    async ask(msg: string): Promise<string> {
      const reply = once(socket, "message", { signal: AbortSignal.timeout(WAIT) });
      socket.send(msg, port, "127.0.0.1");
      const [buf] = (await reply) as [Buffer];
      return buf.toString("utf8");
    },
  };
}
