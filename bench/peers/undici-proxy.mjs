// Peer: bare node:http server + undici Pool, the floor of any Node L7 proxy. Streams bodies both
// ways and copies headers minus hop-by-hop ones; nothing else.
// usage: node bench/peers/undici-proxy.mjs http://127.0.0.1:PORT  -> prints {"port":N}
import http from "node:http";
import { Pool } from "undici";
import { announce, listenPort, upstreamFromArgs } from "../lib/child.mjs";

const { url } = upstreamFromArgs();
const pool = new Pool(url, { connections: 128, pipelining: 1 });

const HOP = new Set([
  "connection",
  "keep-alive",
  "proxy-connection",
  "proxy-authenticate",
  "proxy-authorization",
  "te",
  "trailer",
  "transfer-encoding",
  "upgrade",
  "expect",
]);

function copyHeaders(src) {
  const out = {};
  const conn = src.connection;
  const extra = conn ? String(conn).toLowerCase().split(",") : null;
  for (const name in src) {
    if (HOP.has(name)) continue;
    if (extra?.some((t) => t.trim() === name)) continue;
    out[name] = src[name];
  }
  return out;
}

const server = http.createServer({ keepAlive: true, noDelay: true }, (req, res) => {
  const h = req.headers;
  const hasBody = h["transfer-encoding"] !== undefined || (h["content-length"] ?? "0") !== "0";
  pool.stream(
    { path: req.url, method: req.method, headers: copyHeaders(h), body: hasBody ? req : null },
    ({ statusCode, headers }) => {
      res.writeHead(statusCode, copyHeaders(headers));
      return res;
    },
    (err) => {
      if (!err) return;
      if (!res.headersSent) {
        res.writeHead(502, { "content-type": "application/json" });
        res.end('{"error":"bad gateway"}');
      } else {
        res.destroy(err);
      }
    },
  );
});
server.keepAliveTimeout = 65_000;
server.listen(listenPort(), "127.0.0.1", () => announce(server.address().port));
