/**
 * The listening edge of L7: one Node server per `listen` entry, all serving
 * the current generation's Fastify instance through `app.routing`. Keeping the
 * servers apart from the Fastify instance is what lets a reload swap the
 * generation without closing a socket (ARCHITECTURE principle 7).
 */
import { randomUUID } from "node:crypto";
import { readFileSync } from "node:fs";
import http, { type IncomingMessage, type Server, type ServerResponse } from "node:http";
import https from "node:https";
import type { AddressInfo, Socket } from "node:net";
import { resolve } from "node:path";
import type { Duplex } from "node:stream";
import tls from "node:tls";
import type { FastifyInstance } from "fastify";
import type { Logger } from "pino";
import { closeWebSockets, handleUpgrade } from "../plugins/websocket.js";
import { build } from "./app.js";
import { ms } from "./config/duration.js";
import type { Config, ListenerConfig } from "./config/schema.js";
import { type ErrorCode, rawErrorResponse } from "./errors.js";
import { buildGeneration, type Generation } from "./generation.js";
import { listenError } from "./l4/listen-error.js";
import { compileSniRoute } from "./l4/sni-route.js";
import { L4Listeners } from "./l4-listeners.js";
import { kState } from "./request-state.js";
import { matchIncoming } from "./router/incoming.js";
import { startTiming } from "./server-timing.js";
import { carryOver } from "./upstreams/carry-over.js";

export interface GatewayOptions {
  logger?: Logger;
  /** Directory that relative certificate paths are read from. */
  baseDir?: string;
}

export interface BoundAddress {
  kind: "http" | "https";
  host: string;
  port: number;
}

export class Gateway {
  private servers: Server[] = [];
  private app!: FastifyInstance;
  private gen!: Generation;
  private readonly l4: L4Listeners;

  private constructor(
    private config: Config,
    private readonly opts: GatewayOptions,
  ) {
    this.l4 = new L4Listeners(opts.logger);
  }

  /** Build, bind every listener, and serve. Rejects (and unbinds) on any bind failure. */
  static async start(config: Config, opts: GatewayOptions = {}): Promise<Gateway> {
    const gw = new Gateway(config, opts);
    gw.gen = buildGeneration(config, opts.baseDir);
    gw.app = await build(config, { logger: opts.logger, generation: gw.gen, l4: false });
    await gw.app.ready();
    const handler = (req: IncomingMessage, res: ServerResponse) => {
      const gen = gw.gen;
      if (gen.lanes.size === 0 || !laneServed(gen, req, res)) gw.app.routing(req, res);
    };
    // A serverTiming listener's requests are timed, and never take a lane (their phases are Fastify hooks).
    const timed = (req: IncomingMessage, res: ServerResponse) => {
      startTiming(gw.gen.matcher, req);
      gw.app.routing(req, res);
    };
    // WebSocket upgrades leave Node's HTTP parser; plugins/websocket.ts routes them (current generation).
    const upgrade = (req: IncomingMessage, socket: Duplex, head: Buffer) =>
      handleUpgrade(gw.app, gw.gen, req, socket, head);
    try {
      await gw.l4.apply(gw.gen, 0);
      for (const l of config.listen) {
        const server = createServer(l, l.serverTiming ? timed : handler, opts.baseDir).on("upgrade", upgrade);
        gw.servers.push(await listen(server, l));
      }
    } catch (err) {
      await gw.close(0);
      throw err;
    }
    return gw;
  }

  get addresses(): BoundAddress[] {
    return this.servers.map((s) => {
      const a = s.address() as AddressInfo;
      return { kind: s instanceof https.Server ? "https" : "http", host: a.address, port: a.port };
    });
  }

  /** The running generation: services, targets, compiled routes. */
  get generation(): Generation {
    return this.gen;
  }

  /** The L4 TCP and UDP listeners (for stats and tests). */
  get listeners(): L4Listeners {
    return this.l4;
  }

  /** The Fastify instance of the current generation (for inject in tests). */
  get fastify(): FastifyInstance {
    return this.app;
  }

  /**
   * Swap in a new config: the next generation is built and made ready beside
   * the running one, then takes new requests; the old one closes once its
   * in-flight requests have finished. Target state carries over; L4 listeners
   * are updated in place; L7 listener changes need a restart for now.
   */
  async reload(config: Config): Promise<void> {
    const gen = buildGeneration(config, this.opts.baseDir);
    carryOver(this.gen, gen);
    const next = await build(config, { logger: this.opts.logger, generation: gen, l4: false });
    await next.ready();
    try {
      await this.l4.apply(gen, ms(config.shutdownTimeout));
    } catch (err) {
      await next.close();
      throw err;
    }
    const old = this.app;
    this.app = next;
    this.gen = gen;
    this.config = config;
    await old.close();
  }

  /** Stop accepting, let in-flight requests finish up to `graceMs`, then close everything. */
  async close(graceMs = ms(this.config.shutdownTimeout)): Promise<void> {
    const closed = this.servers.map(
      (s) =>
        new Promise<void>((done) => {
          if (!s.listening) return done();
          s.close(() => done());
          s.closeIdleConnections();
        }),
    );
    const timer = new Promise<void>((done) => setTimeout(done, graceMs).unref());
    const l4 = this.l4.close(graceMs);
    await Promise.race([Promise.all(closed), timer]);
    // Upgraded sockets keep a server open past the drain period: close them with 1012 (service restart).
    await closeWebSockets(this.gen);
    for (const s of this.servers) s.closeAllConnections();
    await Promise.all(closed);
    await l4;
    await this.app?.close();
  }
}

/**
 * The fast lanes (issue 6): a route that can answer a request by itself — a
 * fresh cache hit in process memory (plugins/cache.ts), a body-less request
 * on a route without policies (plugins/proxy-lane.ts) — does so here, without
 * Fastify's request, reply, child logger and hooks.
 * Anything else (and any request the lane declines) goes to Fastify, which
 * reads the match made here instead of matching again.
 */
function laneServed(gen: Generation, req: IncomingMessage, res: ServerResponse): boolean {
  const st = matchIncoming(gen.matcher, req);
  if (!st) return false;
  const lane = gen.lanes.get(st.route.id);
  return lane?.(req, res, st) ?? false;
}

function createServer(l: ListenerConfig, handler: http.RequestListener, baseDir = process.cwd()): Server {
  const t = l.timeouts;
  const options: http.ServerOptions = {
    maxHeaderSize: 16 * 1024,
    noDelay: true,
    headersTimeout: ms(t?.headers ?? "10s"),
    requestTimeout: ms(t?.request ?? "60s"),
    keepAliveTimeout: ms(t?.idle ?? "60s"),
    // Node checks the headers/request timeouts on this interval (default 30 s, too coarse for a 10 s limit).
    connectionsCheckingInterval: Math.max(100, Math.min(1000, Math.floor(ms(t?.headers ?? "10s") / 3))),
  };
  let server: Server;
  if (l.tls) {
    const read = (f: string) => readFileSync(resolve(baseDir, f));
    // Exact names first, then the longest wildcard: the same rule as TLS passthrough routing.
    const table: Record<string, tls.SecureContext> = {};
    for (const s of l.tls.sni ?? []) {
      const ctx = tls.createSecureContext({ cert: read(s.cert), key: read(s.key) });
      for (const h of s.hosts) table[h] ??= ctx;
    }
    const pick = compileSniRoute(table);
    server = https.createServer({
      ...options,
      cert: read(l.tls.cert),
      key: read(l.tls.key),
      SNICallback(name, cb) {
        cb(null, pick(name));
      },
    }) as unknown as Server;
  } else server = http.createServer(options);
  server.on("request", handler);
  server.on("clientError", onClientError);
  return server;
}

/** Malformed, oversized or too-slow requests get SPEC §5 JSON, then the connection closes. */
function onClientError(err: NodeJS.ErrnoException, socket: Socket): void {
  // A request already answering (head sent) can only be cut off; one still reading its body
  // (requestTimeout) gets its 408, as Node's own handler does, under the id it already has.
  const msg = (socket as Socket & { _httpMessage?: ServerResponse })._httpMessage;
  if (!socket.writable || msg?.headersSent) {
    socket.destroy();
    return;
  }
  let code: ErrorCode = "SY_BAD_REQUEST";
  if (err.code === "HPE_HEADER_OVERFLOW") code = "SY_HEADERS_TOO_LARGE";
  else if (err.code === "ERR_HTTP_REQUEST_TIMEOUT") code = "SY_REQUEST_TIMEOUT";
  else if (err.code === "ECONNRESET") {
    socket.destroy();
    return;
  }
  socket.end(rawErrorResponse(code, msg?.req[kState]?.request?.id ?? randomUUID()));
}

function listen(server: Server, l: ListenerConfig): Promise<Server> {
  return new Promise((ok, fail) => {
    server.once("error", (err: NodeJS.ErrnoException) => fail(listenError(l.host, l.port, err)));
    server.listen(l.port, l.host, () => ok(server));
  });
}
