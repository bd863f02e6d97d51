/**
 * One L4 TCP listener: accepts, enforces maxConnections, hands each connection
 * to serveConnection and keeps the listener's counters. Plain class, no
 * Fastify, so tests drive it directly; plugins/l4-tcp.ts ties it to the app
 * lifecycle.
 */
import { type AddressInfo, createServer, type Server, type Socket } from "node:net";
import type { TcpListenerConfig } from "../config/schema.js";
import type { Service } from "../upstreams/service.js";
import { listenError } from "./listen-error.js";
import { type ConnectionEvents, serveConnection } from "./tcp-connection.js";
import { compileTcpSettings, type TcpSettings } from "./tcp-settings.js";

/** Counters for the metrics plugin (SPEC §8 `tcp_*{listener}`). */
export interface TcpStats {
  listener: string;
  /** tcp_connections_active */
  active: number;
  /** tcp_connections_total: accepted connections (refused-at-limit ones are not). */
  total: number;
  /** Closed at once because maxConnections were already open. */
  overLimit: number;
  /** Accepted but closed before reaching a target (bad header, no route, every dial failed). */
  refused: number;
  /** tcp_bytes_total{direction="in"}: bytes from clients. */
  bytesIn: number;
  /** tcp_bytes_total{direction="out"}: bytes to clients. */
  bytesOut: number;
}

/** The few pino methods used, so any logger (or none) fits. */
export interface L4Logger {
  debug(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
}

export interface TcpProxyOptions {
  listener: TcpListenerConfig;
  services: ReadonlyMap<string, Service>;
  log?: L4Logger;
  /** Time allowed for a PROXY header and/or ClientHello (default 5 s). */
  prefaceTimeout?: number;
}

export class TcpProxy {
  private settings: TcpSettings;
  private readonly server: Server;
  private readonly sockets = new Set<Socket>();
  private readonly counters: TcpStats;
  private readonly log: L4Logger | undefined;
  private readonly prefaceTimeout: number | undefined;
  private readonly events: ConnectionEvents;

  constructor(opts: TcpProxyOptions) {
    this.prefaceTimeout = opts.prefaceTimeout;
    this.settings = compileTcpSettings(opts.listener, opts.services, opts.prefaceTimeout);
    this.log = opts.log;
    const c = {
      listener: opts.listener.name,
      active: 0,
      total: 0,
      overLimit: 0,
      refused: 0,
      bytesIn: 0,
      bytesOut: 0,
    };
    this.counters = c;
    this.events = {
      refused: (reason, client) => {
        c.refused++;
        this.log?.debug({ listener: c.listener, client, reason }, "tcp connection refused");
      },
      dialFailed: (target, err) => {
        this.log?.warn({ listener: c.listener, target: target.url, err: err.message }, "tcp connect failed");
      },
    };
    // pauseOnConnect: no byte is read before we know where it goes (or that it is a PROXY header).
    // allowHalfOpen: a client's FIN is passed on, not answered by closing (RFC 9293 §3.6).
    this.server = createServer({ pauseOnConnect: true, allowHalfOpen: true, noDelay: true }, (socket) =>
      this.accept(socket),
    );
  }

  get name(): string {
    return this.counters.listener;
  }

  /** A snapshot of the counters: closed connections' bytes plus what the open ones moved so far. */
  get stats(): TcpStats {
    const s = { ...this.counters };
    for (const socket of this.sockets) {
      s.bytesIn += socket.bytesRead;
      s.bytesOut += socket.bytesWritten;
    }
    return s;
  }

  /** New settings and services for connections accepted from now on (reload); the bind address stays. */
  update(listener: TcpListenerConfig, services: ReadonlyMap<string, Service>): void {
    this.settings = compileTcpSettings(listener, services, this.prefaceTimeout);
  }

  /** Binds; rejects with a one-line `cannot listen on HOST:PORT: reason`. */
  start(): Promise<AddressInfo> {
    const { host, port } = this.settings;
    return new Promise((resolve, reject) => {
      const onError = (err: NodeJS.ErrnoException) => reject(listenError(host, port, err));
      this.server.once("error", onError);
      this.server.listen({ host, port }, () => {
        this.server.off("error", onError);
        this.server.on("error", (err) =>
          this.log?.warn({ listener: this.name, err: err.message }, "tcp listener error"),
        );
        resolve(this.address());
      });
    });
  }

  address(): AddressInfo {
    return this.server.address() as AddressInfo;
  }

  /** Bound and accepting (for readiness checks). */
  get listening(): boolean {
    return this.server.listening;
  }

  /** Stops accepting; open connections go on. */
  stopAccepting(): void {
    if (this.server.listening) this.server.close();
  }

  /**
   * Waits up to `ms` for open connections to finish, then destroys the rest;
   * resolves once every client socket has closed (counters final; each target socket is
   * destroyed on the same turn and its lease released as it closes).
   */
  async drain(ms: number): Promise<void> {
    this.stopAccepting();
    if (ms > 0) await this.idle(ms);
    for (const s of this.sockets) s.destroy();
    // 'close' follows destroy() on the next turn; wait for it, bounded in case it never comes.
    await this.idle(1000);
  }

  private idle(ms: number): Promise<void> {
    if (this.sockets.size === 0) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.idleWaiters.delete(done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      timer.unref();
      this.idleWaiters.add(done);
    });
  }

  /** Stop accepting and close everything after at most `drainMs`. */
  stop(drainMs = 0): Promise<void> {
    return this.drain(drainMs);
  }

  /** Called when the last open connection closes (drain). */
  private readonly idleWaiters = new Set<() => void>();

  private accept(socket: Socket): void {
    const c = this.counters;
    // Errors are handled where the socket is used; this one only keeps an early reset
    // (before any other listener exists) from becoming an uncaught exception.
    socket.on("error", noop);
    if (c.active >= this.settings.maxConnections) {
      c.overLimit++;
      socket.destroy();
      return;
    }
    c.active++;
    c.total++;
    this.sockets.add(socket);
    socket.once("close", () => {
      // The socket's own counts: nothing is counted per chunk on the hot path.
      c.bytesIn += socket.bytesRead;
      c.bytesOut += socket.bytesWritten;
      c.active--;
      this.sockets.delete(socket);
      if (this.sockets.size === 0) for (const w of [...this.idleWaiters]) w();
    });
    serveConnection(socket, this.settings, this.events).catch((err: Error) => {
      // serveConnection handles its own failures; this is the last line against a bug taking the process down.
      socket.destroy();
      this.log?.warn({ listener: c.listener, err: err.message }, "tcp connection failed");
    });
  }
}

function noop(): void {}
