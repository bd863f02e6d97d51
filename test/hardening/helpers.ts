/**
 * Hostile-client helpers for the hardening suite (issue 15): a backend that
 * records what reaches it, both as parsed requests and as raw bytes, and a raw
 * socket client that writes exactly the bytes given (no client library to
 * tidy them up) and reads whatever comes back until the gateway closes the
 * connection or goes quiet.
 */
import http from "node:http";
import net, { type AddressInfo } from "node:net";

export interface Recorder {
  url: string;
  port: number;
  /** Every request line the backend's (strict) parser accepted: "METHOD /path". */
  seen: string[];
  /** Every byte that reached it, all connections concatenated (latin1). */
  raw(): string;
  /** Requests whose path contains `word`, parsed or raw: what smuggling would leave. */
  saw(word: string): boolean;
  server: http.Server;
  close(): Promise<void>;
}

/** An HTTP backend that answers 200 "ok" (draining any body first) and records everything. */
export async function recorder(handler?: http.RequestListener): Promise<Recorder> {
  const chunks: Buffer[] = [];
  const seen: string[] = [];
  const server = http.createServer((req, res) => {
    seen.push(`${req.method} ${req.url}`);
    if (handler) return handler(req, res);
    req.resume();
    req.on("end", () => res.end("ok"));
  });
  server.on("connection", (s: net.Socket) => s.on("data", (c: Buffer) => chunks.push(c)));
  await new Promise<void>((ok) => server.listen(0, "127.0.0.1", ok));
  const port = (server.address() as AddressInfo).port;
  const raw = () => Buffer.concat(chunks).toString("latin1");
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    seen,
    raw,
    saw: (word) => seen.some((l) => l.includes(word)) || raw().includes(word),
    server,
    close: () =>
      new Promise<void>((ok) => {
        server.closeAllConnections();
        server.close(() => ok());
      }),
  };
}

export interface RawResult {
  /** Everything the gateway wrote back (latin1). */
  text: string;
  /** Whether the gateway closed the connection (rather than the client giving up). */
  closed: boolean;
  /** Status codes of every response found in `text`, in order. */
  statuses: number[];
}

/**
 * Write `bytes` on a fresh connection and read until the gateway closes it,
 * or until nothing has arrived for `quietMs` after the last byte (a kept-alive
 * connection), or `maxMs` in all. Bounded in time whatever the gateway does.
 */
export function rawSend(
  port: number,
  bytes: string | Buffer | (string | Buffer)[],
  opts: { quietMs?: number; maxMs?: number } = {},
): Promise<RawResult> {
  const quietMs = opts.quietMs ?? 400;
  const parts = Array.isArray(bytes) ? bytes : [bytes];
  return new Promise((ok) => {
    let text = "";
    let closed = false;
    let done = false;
    const s = net.connect(port, "127.0.0.1", () => {
      for (const p of parts) s.write(typeof p === "string" ? Buffer.from(p, "latin1") : p);
    });
    const finish = () => {
      if (done) return;
      done = true;
      clearTimeout(quiet);
      clearTimeout(cap);
      s.destroy();
      const statuses = [...text.matchAll(/HTTP\/1\.[01] (\d{3})/g)].map((m) => Number(m[1]));
      ok({ text, closed, statuses });
    };
    let quiet = setTimeout(finish, Math.max(quietMs, 1500));
    const cap = setTimeout(finish, opts.maxMs ?? 5000);
    s.on("data", (c: Buffer) => {
      text += c.toString("latin1");
      clearTimeout(quiet);
      quiet = setTimeout(finish, quietMs);
    });
    s.on("error", () => {});
    s.on("end", () => {
      closed = true;
      finish();
    });
    s.on("close", () => {
      closed = true;
      finish();
    });
  });
}

/** The JSON body's `code` of a raw response, if it carries one. */
export function codeOf(text: string): string | undefined {
  return /"code":"(SY_[A-Z_]+)"/.exec(text)?.[1];
}
