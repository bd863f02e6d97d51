/**
 * The listening edge of L7: one Node server per `listen` entry, all serving
 * the current generation's Fastify instance through `app.routing`. Keeping the
 * servers apart from the Fastify instance is what lets a reload swap the
 * generation without closing a socket (ARCHITECTURE principle 7).
 *
 * A reload also applies `listen` (issue 10): an unchanged entry keeps its
 * server; new timeouts, certificates (files or their contents) or Server-Timing
 * are applied to the running server in place; an added entry binds
 * (all-or-nothing, before anything serving changes); a removed one stops
 * accepting and lets its in-flight requests finish while the rest serve on.
 */
import { createHash, randomUUID } from "node:crypto";
import { readFileSync } from "node:fs";
import http, { type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { Http2ServerRequest } from "node:http2";
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
import { type ErrorCode, errorResponse, rawErrorResponse } from "./errors.js";
import { buildGeneration, type Generation } from "./generation.js";
import { createH2Server } from "./h2-listener.js";
import { listenError } from "./l4/listen-error.js";
import { compileSniRoute } from "./l4/sni-route.js";
import { L4Listeners } from "./l4-listeners.js";
import { kState } from "./request-state.js";
import { matchIncoming } from "./router/incoming.js";
import { startTiming } from "./server-timing.js";
import { StoreHolder } from "./store/index.js";
import { carryOver } from "./upstreams/carry-over.js";

export interface GatewayOptions {
  logger?: Logger;
  /** Directory that relative certificate paths are read from. */
  baseDir?: string;
  /**
   * Called with every new generation right after it is built (start and each
   * reload), before its Fastify instance is: per-route metrics bind here.
   * Throwing fails the start or the reload.
   */
  prepare?: (gen: Generation) => void;
}

export interface BoundAddress {
  kind: "http" | "https";
  host: string;
  port: number;
}

/** One L7 listener: the `listen` entry it serves, the certificates read for it, its server. */
interface Edge {
  config: ListenerConfig;
  tls: TlsMaterial | undefined;
  onRequest: http.RequestListener;
  server: Server;
}

/** A reload's listener changes: bound and read, not yet serving. */
interface Staged {
  /** Make them the running set (cannot fail); replaced servers drain within `graceMs`. */
  commit(graceMs: number): void;
  /** Unbind what staging bound; the running set is as before. */
  undo(): Promise<void>;
  /** The servers staging bound (for the log). */
  readonly added: readonly Server[];
}

/** A server that no longer accepts, finishing its requests. */
interface Draining {
  readonly done: Promise<void>;
  /** End the grace period now. */
  cut(): void;
}

export class Gateway {
  private edges: Edge[] = [];
  private readonly draining = new Set<Draining>();
  /** Previous generations' Fastify instances, closing once their in-flight requests are done. */
  private readonly retiring = new Set<Promise<void>>();
  private app!: FastifyInstance;
  private gen!: Generation;
  private count = 0;
  private readonly l4: L4Listeners;
  /** Rate-limit counters and cached responses outlive a reload (SPEC §7). */
  private readonly stores = new StoreHolder();
  /** Reloads run one at a time (SIGHUP, watch and the admin API may ask together). */
  private queue: Promise<unknown> = Promise.resolve();
  private closing = false;

  private constructor(
    private config: Config,
    private readonly opts: GatewayOptions,
  ) {
    this.l4 = new L4Listeners(opts.logger);
  }

  /** Build, bind every listener, and serve. Rejects (and unbinds) on any bind failure. */
  static async start(config: Config, opts: GatewayOptions = {}): Promise<Gateway> {
    const gw = new Gateway(config, opts);
    try {
      gw.gen = gw.generationFor(config);
      gw.app = await build(config, { logger: opts.logger, generation: gw.gen, l4: false });
      await gw.app.ready();
      const staged = await gw.stage(config.listen);
      staged.commit(0);
      await gw.l4.apply(gw.gen, 0);
    } catch (err) {
      await gw.close(0);
      throw err;
    }
    gw.count = 1;
    await gw.stores.commit(gw.gen);
    return gw;
  }

  /** Where the L7 listeners are bound, in `listen` order (after a reload: the new set). */
  get addresses(): BoundAddress[] {
    return this.edges.map(({ server }) => {
      const a = server.address() as AddressInfo;
      return { kind: server instanceof tls.Server ? "https" : "http", host: a.address, port: a.port };
    });
  }

  /** The running generation: services, targets, compiled routes. */
  get generation(): Generation {
    return this.gen;
  }

  /** 1 for the generation started with, one more for each successful reload. */
  get generationNumber(): number {
    return this.count;
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
   * the running one, listener changes are staged (binds first), then it takes
   * new requests. Resolves once it serves; the old generation and removed
   * listeners finish their in-flight requests in the background (up to
   * shutdownTimeout). On any failure the running config stays and this rejects.
   */
  reload(config: Config): Promise<void> {
    const run = this.queue.then(() => this.swap(config));
    this.queue = run.catch(() => {});
    return run;
  }

  private async swap(config: Config): Promise<void> {
    if (this.closing) throw new Error("the gateway is closing");
    const grace = ms(config.shutdownTimeout);
    const gen = this.generationFor(config);
    carryOver(this.gen, gen);
    let next: FastifyInstance | undefined;
    try {
      next = await build(config, { logger: this.opts.logger, generation: gen, l4: false });
      await next.ready();
      const staged = await this.stage(config.listen);
      try {
        await this.l4.apply(gen, grace);
      } catch (err) {
        await staged.undo();
        throw err;
      }
      // Nothing below fails: from here the new generation takes new requests.
      staged.commit(grace);
      for (const s of staged.added) this.opts.logger?.info(`L7 listening on ${describe(s)}`);
    } catch (err) {
      await next?.close().catch(() => {});
      await this.stores.release(gen);
      throw err;
    }
    const old = this.app;
    const previous = this.gen;
    this.app = next;
    this.gen = gen;
    this.config = config;
    this.count++;
    this.retire(old, previous, grace);
    await this.stores.commit(gen);
  }

  /** Stop accepting, let in-flight requests finish up to `graceMs`, then close everything. */
  async close(graceMs = ms(this.config.shutdownTimeout)): Promise<void> {
    this.closing = true;
    await this.queue;
    for (const e of this.edges) this.drain(e.server, stopAccepting(e.server), graceMs);
    this.edges = [];
    const l4 = this.l4.close(graceMs);
    const draining = [...this.draining];
    await Promise.race([Promise.all(draining.map((d) => d.done)), delay(graceMs)]);
    // Upgraded sockets keep a server open past the drain period: close them with 1012 (service restart).
    if (this.gen) await closeWebSockets(this.gen);
    for (const d of draining) d.cut();
    await Promise.all(draining.map((d) => d.done));
    await l4;
    await Promise.all(this.retiring);
    await this.app?.close();
    await this.stores.close();
  }

  /** The next generation: built, handed to `prepare`, lent the Gateway's store. */
  private generationFor(config: Config): Generation {
    const gen = buildGeneration(config, this.opts.baseDir);
    this.opts.prepare?.(gen);
    this.stores.lend(gen);
    return gen;
  }

  /** A replaced generation closes once its in-flight requests are done (undici's close waits for them). */
  /**
   * Close a replaced generation once the requests it was answering are done
   * (a request in an async hook — a JWKS fetch, a Redis count — or a retry
   * backoff still needs its undici Agent), or after `graceMs`.
   */
  private retire(old: FastifyInstance, gen: Generation, graceMs: number): void {
    const drained = new Promise<void>((done) => {
      if (gen.live.n <= 0) return done();
      gen.live.idle = done;
      setTimeout(done, graceMs).unref();
    });
    const closing: Promise<void> = drained
      .then(() => old.close())
      .catch((err: Error) => this.opts.logger?.error({ err }, "closing the previous generation failed"))
      .finally(() => this.retiring.delete(closing));
    this.retiring.add(closing);
  }

  /**
   * Match `wanted` against the running listeners by host and port (in order,
   * so several `port: 0` entries pair up one to one), read every certificate,
   * and bind what is new. Nothing that serves changes until commit().
   */
  private async stage(wanted: readonly ListenerConfig[]): Promise<Staged> {
    const unmatched = [...this.edges];
    const next: Edge[] = [];
    const bound: Edge[] = [];
    const released: { edge: Edge; port: number; closed: Promise<void> }[] = [];
    const updates: (() => void)[] = [];
    const undo = async () => {
      await Promise.all(bound.map((e) => stopNow(e.server)));
      for (const r of released) await this.relisten(r.edge, r.port);
    };
    try {
      for (const l of wanted) {
        const material = l.tls && readTls(l.tls, this.opts.baseDir ?? process.cwd());
        const i = unmatched.findIndex((e) => e.config.host === l.host && e.config.port === l.port);
        const old = i < 0 ? undefined : unmatched.splice(i, 1)[0];
        if (old !== undefined && sameKind(old.config, l)) {
          updates.push(() => this.reconfigure(old, l, material));
          next.push(old);
          continue;
        }
        let port = l.port;
        if (old !== undefined) {
          // TLS turned on or off, or HTTP/2, at the same address: a new server, and Node 20 cannot
          // bind a port twice (reusePort came in 22.12), so the old one lets go of it first; its
          // open connections go on. A failure below binds it again (undo).
          port = (old.server.address() as AddressInfo).port;
          released.push({ edge: old, port, closed: stopAccepting(old.server) });
        }
        const edge = this.open(l, material);
        bound.push(edge);
        await listen(edge.server, l.host, port);
        next.push(edge);
      }
    } catch (err) {
      await undo();
      throw err;
    }
    return {
      undo,
      added: bound.map((e) => e.server),
      commit: (graceMs) => {
        for (const u of updates) u();
        for (const e of unmatched) this.drain(e.server, stopAccepting(e.server), graceMs);
        for (const r of released) this.drain(r.edge.server, r.closed, graceMs);
        this.edges = next;
      },
    };
  }

  /** Requests: a route's fast lane when it has one that takes this one, else Fastify. */
  private readonly handler = (req: IncomingMessage, res: ServerResponse): void => {
    if (tooManyHeaders(req, res)) return;
    const gen = this.gen;
    if (gen.lanes.size === 0 || !laneServed(gen, req, res, this.resume)) this.app.routing(req, res);
  };

  /**
   * Where a lane that took a request to look something up (the Redis cache
   * lane) gives it back when it cannot answer after all: Fastify, reading the
   * match already made. Should a reload have replaced the request's generation
   * meanwhile (its Fastify, closing, would answer 503), the request starts
   * over on the current one.
   */
  private readonly resume = (req: IncomingMessage, res: ServerResponse): void => {
    const st = req[kState];
    if (st === undefined || this.gen.routes.includes(st.route)) this.app.routing(req, res);
    else {
      req[kState] = undefined;
      this.handler(req, res);
    }
  };

  // A serverTiming listener's requests are timed, and never take a lane (their phases are Fastify hooks).
  private readonly timed = (req: IncomingMessage, res: ServerResponse): void => {
    if (tooManyHeaders(req, res)) return;
    startTiming(this.gen.matcher, req);
    this.app.routing(req, res);
  };

  // WebSocket upgrades leave Node's HTTP parser; plugins/websocket.ts routes them (current generation).
  private readonly upgrade = (req: IncomingMessage, socket: Duplex, head: Buffer): void => {
    if (req.rawHeaders.length > 2 * headerLimit(socket)) {
      socket.end(rawErrorResponse("SY_HEADERS_TOO_LARGE", randomUUID(), TOO_MANY));
      return;
    }
    handleUpgrade(this.app, this.gen, req, socket, head);
  };

  /**
   * HTTP/2 listeners. HTTP/2 frames a body itself (no END_STREAM on the
   * request's HEADERS), so a body need not declare a Content-Length; where it
   * does not, the request is marked as HTTP/1.1 marks a body of unknown
   * length (Transfer-Encoding: chunked, hop-by-hop, never forwarded), and
   * Fastify, the route's body limit and the forwarder then stream it as they
   * would a chunked one. HTTP/2 requests never take a lane (decided here, per
   * listener); HTTP/1.1 on the same ALPN port does.
   */
  private readonly h2 = (req: IncomingMessage, res: ServerResponse): void => {
    if (req.httpVersionMajor !== 2) {
      this.handler(req, res);
      return;
    }
    markH2Body(req);
    this.app.routing(req, res);
  };

  private readonly h2Timed = (req: IncomingMessage, res: ServerResponse): void => {
    if (req.httpVersionMajor === 2) markH2Body(req);
    this.timed(req, res);
  };

  private handlerFor(l: ListenerConfig): http.RequestListener {
    if (l.http2) return l.serverTiming ? this.h2Timed : this.h2;
    return l.serverTiming ? this.timed : this.handler;
  }

  private open(l: ListenerConfig, material: TlsMaterial | undefined): Edge {
    const onRequest = this.handlerFor(l);
    const edge: Edge = { config: l, tls: material, onRequest, server: undefined as unknown as Server };
    // The SNI table is read per handshake from the edge, so a reload can replace it.
    edge.server = createServer(l, onRequest, material, (name) => edge.tls?.pick(name)).on(
      "upgrade",
      this.upgrade,
    );
    return edge;
  }

  /** A kept listener takes its new entry in place: timeouts, certificates, Server-Timing. */
  private reconfigure(edge: Edge, l: ListenerConfig, material: TlsMaterial | undefined): void {
    const s = edge.server;
    // Node reads these per connection or request; its check interval (set at creation) stays.
    const t = timeoutsOf(l);
    s.headersTimeout = t.headersTimeout;
    s.requestTimeout = t.requestTimeout;
    s.keepAliveTimeout = t.keepAliveTimeout;
    applyLimits(s, l);
    // Same port, new certificate: new handshakes get it, open connections keep theirs.
    if (material !== undefined && material.digest !== edge.tls?.digest)
      (s as unknown as https.Server).setSecureContext({ cert: material.cert, key: material.key });
    const onRequest = this.handlerFor(l);
    if (onRequest !== edge.onRequest) s.removeListener("request", edge.onRequest).on("request", onRequest);
    Object.assign(edge, { config: l, tls: material, onRequest });
  }

  /** Undo of a staged replacement: the old server takes its port back. */
  private async relisten(edge: Edge, port: number): Promise<void> {
    try {
      await listen(edge.server, edge.config.host, port);
    } catch (err) {
      this.opts.logger?.error({ err }, `L7 listener ${edge.config.host}:${port} lost while undoing a reload`);
    }
  }

  /** Track a server's drain; close() ends it early. */
  private drain(server: Server, closed: Promise<void>, graceMs: number): void {
    const d = drain(server, closed, graceMs);
    this.draining.add(d);
    void d.done.then(() => this.draining.delete(d));
  }
}

/**
 * The fast lanes (issue 6): a route that can answer a request by itself — a
 * fresh cache hit (plugins/cache.ts), a body-less request
 * on a route without policies (plugins/proxy-lane.ts) — does so here, without
 * Fastify's request, reply, child logger and hooks.
 * Anything else (and any request the lane declines) goes to Fastify, which
 * reads the match made here instead of matching again. A lane that has to
 * wait to know (a cache hit in Redis) takes the request and, if it cannot
 * answer, hands it to `resume` untouched.
 */
function laneServed(
  gen: Generation,
  req: IncomingMessage,
  res: ServerResponse,
  resume: (req: IncomingMessage, res: ServerResponse) => void,
): boolean {
  const st = matchIncoming(gen.matcher, req);
  if (!st) return false;
  const lane = gen.lanes.get(st.route.id);
  return lane?.(req, res, st, resume) ?? false;
}

/** An HTTP/2 request body without a Content-Length, told as HTTP/1.1 tells one (see Gateway.h2). */
function markH2Body(req: IncomingMessage): void {
  const h = req.headers;
  if (h["content-length"] === undefined && !(req as unknown as Http2ServerRequest).stream.endAfterHeaders)
    h["transfer-encoding"] = "chunked";
}

/** A TLS listener's certificates as read from its files; `digest` tells a reload whether they changed. */
interface TlsMaterial {
  cert: Buffer;
  key: Buffer;
  /** The SNI entries' certificate for a server name; undefined: the listener's own. */
  pick: (name: string) => tls.SecureContext | undefined;
  digest: string;
}

/** Read (and check, so a reload fails here rather than later) every certificate of a listener. */
function readTls(t: NonNullable<ListenerConfig["tls"]>, baseDir: string): TlsMaterial {
  const hash = createHash("sha256").update(JSON.stringify(t));
  const read = (f: string) => {
    const b = readFileSync(resolve(baseDir, f));
    hash.update(b);
    return b;
  };
  const cert = read(t.cert);
  const key = read(t.key);
  tls.createSecureContext({ cert, key });
  // Exact names first, then the longest wildcard: the same rule as TLS passthrough routing.
  const table: Record<string, tls.SecureContext> = {};
  for (const s of t.sni ?? []) {
    const ctx = tls.createSecureContext({ cert: read(s.cert), key: read(s.key) });
    for (const h of s.hosts) table[h] ??= ctx;
  }
  return { cert, key, pick: compileSniRoute(table), digest: hash.digest("hex") };
}

/** Whether a running server can take entry `b` in place (else it needs a new server). */
function sameKind(a: ListenerConfig, b: ListenerConfig): boolean {
  return (a.tls === undefined) === (b.tls === undefined) && a.http2 === b.http2;
}

function timeoutsOf(l: ListenerConfig) {
  const t = l.timeouts;
  return {
    headersTimeout: ms(t?.headers ?? "10s"),
    requestTimeout: ms(t?.request ?? "60s"),
    keepAliveTimeout: ms(t?.idle ?? "60s"),
  };
}

function createServer(
  l: ListenerConfig,
  handler: http.RequestListener,
  material: TlsMaterial | undefined,
  sni: (name: string) => tls.SecureContext | undefined,
): Server {
  const t = timeoutsOf(l);
  if (l.http2) {
    const h2 = createH2Server({ ...t, idle: t.keepAliveTimeout, maxHeaderSize: 16 * 1024 }, material, sni);
    // The same connection limit as every listener (issue 15). Not the silence cut: the HTTP/2
    // session owns the socket, and destroying either before the client's preface was seen not
    // to close the connection (left open, noted in the session's closing note).
    applyLimits(h2, l);
    h2.on("request", handler);
    h2.on("clientError", onClientError);
    return h2;
  }
  const options: http.ServerOptions = {
    maxHeaderSize: 16 * 1024,
    noDelay: true,
    ...t,
    // Node checks the headers/request timeouts on this interval (default 30 s, too coarse for a 10 s limit).
    connectionsCheckingInterval: Math.max(100, Math.min(1000, Math.floor(t.headersTimeout / 3))),
  };
  const server = material
    ? (https.createServer({
        ...options,
        cert: material.cert,
        key: material.key,
        // A client that connects and never finishes the handshake is held no longer than one that sends no headers.
        handshakeTimeout: t.headersTimeout,
        SNICallback(name, cb) {
          cb(null, sni(name));
        },
      }) as unknown as Server)
    : http.createServer(options);
  applyLimits(server, l);
  server.on(material ? "secureConnection" : "connection", silenceTimer);
  server.on("request", handler);
  server.on("clientError", onClientError);
  return server;
}

/**
 * Connection and header-count limits (issue 15). Node drops header fields past
 * `maxHeadersCount` without a word, so the server keeps one more than the limit
 * and a request that reaches it is refused (tooManyHeaders): a field a client
 * sent is never silently missing from what is authorised and forwarded.
 */
function applyLimits(server: Server, l: ListenerConfig): void {
  server.maxConnections = l.maxConnections ?? 10000;
  server.maxHeadersCount = (l.maxHeaders ?? 100) + 1;
}

const TOO_MANY = "Too many request header fields";

/** The listener's header-count limit, read from the server that accepted the socket. */
function headerLimit(socket: Duplex): number {
  const server = (socket as Socket & { server?: Server }).server;
  return (server?.maxHeadersCount ?? 101) - 1;
}

/**
 * Node's headers timeout starts at a request's first byte: a connection that
 * never sends one was held forever (issue 15: a silent slowloris pins a
 * connection slot each). One unref()ed timer per connection, at the headers
 * timeout: if not a byte has arrived by then, the connection is closed. Once
 * one has, Node's headers timeout (408) and keep-alive timeout own it.
 */
function silenceTimer(this: Server, socket: Socket): void {
  const start = socket.bytesRead;
  const timer = setTimeout(() => {
    if (!socket.destroyed && socket.bytesRead === start) socket.destroy();
  }, this.headersTimeout).unref();
  // A short-lived connection clears its timer on close, so the timer does not keep the closed socket alive.
  socket.once("close", () => clearTimeout(timer));
}

/** 431 for a request with more header fields than the listener allows; true when it answered. */
function tooManyHeaders(req: IncomingMessage, res: ServerResponse): boolean {
  const socket = req.socket;
  // One comparison per request; the limit is per listener, read from the socket's server.
  if (req.rawHeaders.length <= 2 * headerLimit(socket)) return false;
  const { status, headers, body } = errorResponse("SY_HEADERS_TOO_LARGE", randomUUID(), TOO_MANY);
  res.shouldKeepAlive = false;
  res.writeHead(status, { ...headers, connection: "close" });
  res.end(body);
  return true;
}

const TLS_ERROR = /^ERR_(TLS|SSL)_/;

/** Malformed, oversized or too-slow requests get SPEC §5 JSON, then the connection closes. */
function onClientError(err: NodeJS.ErrnoException, socket: Socket): void {
  // A request already answering (head sent) can only be cut off; one still reading its body
  // (requestTimeout) gets its 408, as Node's own handler does, under the id it already has.
  const msg = (socket as Socket & { _httpMessage?: ServerResponse })._httpMessage;
  if (!socket.writable || msg?.headersSent) {
    socket.destroy();
    return;
  }
  // A TLS-layer failure (handshake timeout, not TLS at all) has no HTTP to answer in: an
  // HTTP error written (and end()ed) on a socket that never finished its handshake was
  // never sent and kept the connection open for good (issue 15). Cut it.
  if (TLS_ERROR.test(err.code ?? "")) {
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

function listen(server: Server, host: string, port: number): Promise<void> {
  return new Promise((ok, fail) => {
    const onError = (err: NodeJS.ErrnoException) => fail(listenError(host, port, err));
    server.once("error", onError);
    server.listen(port, host, () => {
      server.off("error", onError);
      ok();
    });
  });
}

function describe(server: Server): string {
  const a = server.address() as AddressInfo;
  const host = a.address.includes(":") ? `[${a.address}]` : a.address;
  return `${server instanceof tls.Server ? "https" : "http"}://${host}:${a.port}`;
}

/** Close the listening socket (open connections go on); resolves when the last connection has closed. */
function stopAccepting(server: Server): Promise<void> {
  return new Promise((done) => server.close(() => done()));
}

/** Close a server that never served (an undone bind). */
function stopNow(server: Server): Promise<void> {
  const closed = stopAccepting(server);
  server.closeAllConnections();
  return closed;
}

/**
 * Let a server that stopped accepting finish its requests: one arriving on a
 * keep-alive connection is the last on it (Connection: close), a connection
 * left idle closes, and at `graceMs` (or cut()) whatever is open is closed.
 */
function drain(server: Server, closed: Promise<void>, graceMs: number): Draining {
  server.prependListener("request", lastOnConnection);
  // Read when a response finishes: its connection then closes when idle (Node adds 1 s) instead of in 60 s.
  server.keepAliveTimeout = 1;
  server.closeIdleConnections();
  let cut!: () => void;
  const deadline = new Promise<void>((ok) => {
    cut = ok;
  });
  const timer = setTimeout(cut, graceMs);
  timer.unref();
  const done = Promise.race([closed, deadline]).then(() => {
    clearTimeout(timer);
    server.closeAllConnections();
  });
  return { done, cut };
}

function lastOnConnection(_req: IncomingMessage, res: ServerResponse): void {
  res.shouldKeepAlive = false;
}

function delay(msecs: number): Promise<void> {
  return new Promise((ok) => setTimeout(ok, msecs).unref());
}
