/**
 * Real peers for tests: HTTP backends on 127.0.0.1:0 that say who they are,
 * and a gateway started from YAML text on an ephemeral port.
 */
import http, { type IncomingMessage, type ServerResponse } from "node:http";
import net, { type AddressInfo } from "node:net";
import { Writable } from "node:stream";
import pino from "pino";
import { parseConfig } from "../../src/config/load.js";
import { Gateway } from "../../src/server.js";

export interface Backend {
  name: string;
  port: number;
  url: string;
  hits: number;
  server: http.Server;
  close(): Promise<void>;
}

export type Handler = (req: IncomingMessage, res: ServerResponse, b: Backend) => void;

/** Answers JSON { name, method, url, headers, bodyBytes } unless given its own handler. */
export async function backend(name: string, handler?: Handler): Promise<Backend> {
  const b = { name, hits: 0 } as Backend;
  const server = http.createServer((req, res) => {
    b.hits++;
    if (handler) return handler(req, res, b);
    let n = 0;
    req.on("data", (c: Buffer) => {
      n += c.length;
    });
    req.on("end", () => {
      res.setHeader("content-type", "application/json");
      res.end(JSON.stringify({ name, method: req.method, url: req.url, headers: req.headers, bodyBytes: n }));
    });
  });
  await new Promise<void>((ok) => server.listen(0, "127.0.0.1", ok));
  b.server = server;
  b.port = (server.address() as AddressInfo).port;
  b.url = `http://127.0.0.1:${b.port}`;
  b.close = () =>
    new Promise<void>((ok) => {
      server.closeAllConnections();
      server.close(() => ok());
    });
  return b;
}

/** A port with nothing listening on it (bound, read, released). */
export async function deadPort(): Promise<number> {
  const s = http.createServer();
  await new Promise<void>((ok) => s.listen(0, "127.0.0.1", ok));
  const port = (s.address() as AddressInfo).port;
  await new Promise<void>((ok) => s.close(() => ok()));
  return port;
}

export interface Running {
  gw: Gateway;
  url: string;
  port: number;
  close(): Promise<void>;
}

/** Start a gateway from YAML; `listen` is forced to 127.0.0.1:0 when the text has none. */
export async function gateway(yaml: string, opts: { logger?: pino.Logger } = {}): Promise<Running> {
  const text = /^listen:/m.test(yaml) ? yaml : `listen: [{ port: 0, host: 127.0.0.1 }]\n${yaml}`;
  const config = parseConfig(`version: 1\nshutdownTimeout: 1s\n${text}`);
  const gw = await Gateway.start(config, opts);
  const { port } = gw.addresses[0];
  return { gw, port, url: `http://127.0.0.1:${port}`, close: () => gw.close(500) };
}

export interface Reply {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
  json<T = Record<string, unknown>>(): T;
}

/** One HTTP/1.1 request with a raw path (fetch would normalise it first). */
export function request(
  url: string,
  opts: {
    method?: string;
    path?: string;
    headers?: http.OutgoingHttpHeaders;
    body?: string | Buffer;
    agent?: http.Agent;
    /** The client's own address: another loopback address (127.0.0.2 …) is another client. */
    localAddress?: string;
  } = {},
): Promise<Reply> {
  const u = new URL(url);
  return new Promise((ok, fail) => {
    const req = http.request(
      {
        host: u.hostname,
        port: u.port,
        method: opts.method ?? "GET",
        path: opts.path ?? u.pathname + u.search,
        headers: opts.headers,
        agent: opts.agent ?? false,
        localAddress: opts.localAddress,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () => {
          const body = Buffer.concat(chunks).toString();
          ok({ status: res.statusCode ?? 0, headers: res.headers, body, json: () => JSON.parse(body) });
        });
      },
    );
    req.on("error", fail);
    req.end(opts.body);
  });
}

/** A pino logger whose JSON lines land in `lines` (access-line assertions). */
export function capturingLogger(): { logger: pino.Logger; lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  const sink = new Writable({
    write(chunk, _enc, cb) {
      for (const l of String(chunk).split("\n").filter(Boolean)) lines.push(JSON.parse(l));
      cb();
    },
  });
  return { logger: pino(sink), lines };
}

/**
 * Wrap every fast lane of the gateway's generation to count, per route name,
 * the requests it answered: tests prove which path served a request.
 */
export function countLanes(gw: Gateway): Map<string, number> {
  const laned = new Map<string, number>();
  // `resume` passes through: a lane that answers later (the Redis cache hit) hands misses back with it.
  for (const [id, lane] of gw.generation.lanes)
    gw.generation.lanes.set(id, (req, res, st, resume) => {
      const served = lane(req, res, st, resume);
      if (served) laned.set(st.route.name, (laned.get(st.route.name) ?? 0) + 1);
      return served;
    });
  return laned;
}

/** Write `text` on a fresh socket and collect everything until the gateway closes it (5 s at most). */
export function rawExchange(port: number, text: string): Promise<string> {
  return new Promise((ok) => {
    const s = net.connect(port, "127.0.0.1", () => s.write(text));
    let out = "";
    s.on("data", (c) => {
      out += c;
    });
    s.on("close", () => ok(out));
    setTimeout(() => s.destroy(), 5000).unref();
  });
}
