// Benchmark backend: a node:http server answering every request with a fixed 100-byte JSON body,
// keep-alive on. Run as a child process it listens on 127.0.0.1 (port 0 unless given as argv[2]
// or PORT) and prints {"port":N} on stdout once listening.
import http from "node:http";
import { pathToFileURL } from "node:url";

const PREFIX = '{"ok":true,"from":"switchyard-bench-backend","pad":"';
const SUFFIX = '"}';
/** Exactly 100 bytes of JSON. */
export const BODY = Buffer.from(PREFIX + "x".repeat(100 - PREFIX.length - SUFFIX.length) + SUFFIX);
if (BODY.length !== 100) throw new Error(`backend body is ${BODY.length} bytes, expected 100`);

const HEADERS = { "content-type": "application/json", "content-length": String(BODY.length) };

function onRequest(req, res) {
  // Drain any request body, then answer; GETs without a body answer at once.
  if (req.headers["content-length"] || req.headers["transfer-encoding"]) {
    req.on("end", () => {
      res.writeHead(200, HEADERS);
      res.end(BODY);
    });
    req.resume();
    return;
  }
  res.writeHead(200, HEADERS);
  res.end(BODY);
}

/** Starts the backend in this process; resolves to the http.Server once listening. */
export function startBackend(port = 0, host = "127.0.0.1") {
  const server = http.createServer({ keepAlive: true, noDelay: true }, onRequest);
  server.keepAliveTimeout = 65_000;
  server.headersTimeout = 66_000;
  server.maxRequestsPerSocket = 0;
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => resolve(server));
  });
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const server = await startBackend(Number(process.argv[2] ?? process.env.PORT ?? 0));
  process.stdout.write(`${JSON.stringify({ port: server.address().port })}\n`);
  // Started by the harness with a piped stdin: exit when the harness goes away.
  if (process.env.BENCH_CHILD) {
    process.stdin.on("end", () => process.exit(0));
    process.stdin.on("error", () => process.exit(0));
    process.stdin.resume();
  }
  for (const sig of ["SIGTERM", "SIGINT"]) process.on(sig, () => process.exit(0));
}
