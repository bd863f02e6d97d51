// Helpers for the small servers the harness starts as child processes.

/**
 * The upstream of a peer: argv[2] or $UPSTREAM, as "http://host:port", "tcp://host:port" or "host:port".
 * Returns { url, host, port } (url always http://host:port).
 */
export function upstreamFromArgs() {
  const raw = process.argv[2] ?? process.env.UPSTREAM;
  if (!raw) {
    process.stderr.write("usage: node <peer>.mjs <upstream http://host:port> (or UPSTREAM=...)\n");
    process.exit(2);
  }
  const u = new URL(/^[a-z]+:\/\//.test(raw) ? raw : `tcp://${raw}`);
  const host = u.hostname || "127.0.0.1";
  const port = Number(u.port);
  if (!port) {
    process.stderr.write(`bad upstream ${raw}: no port\n`);
    process.exit(2);
  }
  return { url: `http://${host}:${port}`, host, port };
}

/** The port to listen on: argv[3] or $PORT, default 0 (any free port). */
export function listenPort() {
  return Number(process.argv[3] ?? process.env.PORT ?? 0);
}

/** Prints {"port":N} for the harness and exits when the harness goes away (its stdin pipe closes). */
export function announce(port) {
  process.stdout.write(`${JSON.stringify({ port })}\n`);
  if (process.env.BENCH_CHILD) {
    process.stdin.on("end", () => process.exit(0));
    process.stdin.on("error", () => process.exit(0));
    process.stdin.resume();
  }
  for (const sig of ["SIGTERM", "SIGINT"]) process.on(sig, () => process.exit(0));
}
