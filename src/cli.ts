#!/usr/bin/env -S node --max-semi-space-size=4
/**
 * The process edge (SPEC §1): argv, loading the config, listening, signals,
 * reload and workers. Everything else lives in build()/Gateway so tests never
 * need a process.
 *
 * The shebang's --max-semi-space-size=4: V8's young generation at 4 MB a
 * half instead of 16 keeps a proxy's short-lived garbage in cache and peak
 * RSS about 20 MB lower, for the same or less CPU per request (issue 6,
 * README "Performance"). bench/run.mjs reads the flags from this line.
 */
import cluster from "node:cluster";
import { availableParallelism } from "node:os";
import { dirname, resolve } from "node:path";
import { parseArgs } from "node:util";
import pino, { type Logger } from "pino";
import { ConfigError, loadConfigFile } from "./config/load.js";
import type { Config } from "./config/schema.js";
import { editorSchema } from "./config/schema.js";
import { explain } from "./explain.js";
import { Gateway } from "./server.js";
import { shadowWarnings } from "./shadow.js";
import { VERSION } from "./version.js";

const USAGE = `usage: switchyard [--config routes.yaml] [--check] [--workers N|auto] [--log-level info]
       switchyard schema                      print the JSON Schema of routes.yaml
       switchyard explain [--config F] METHOD URL [-H 'name: value']...`;

function fail(message: string, code = 1): never {
  process.stderr.write(`${message}\n`);
  process.exit(code);
}

function load(file: string): Config {
  try {
    return loadConfigFile(file);
  } catch (err) {
    if (err instanceof ConfigError) fail(err.message);
    throw err;
  }
}

function summary(c: Config): string {
  const n = (x: number, w: string) => `${x} ${w}${x === 1 ? "" : "s"}`;
  return [
    n(c.routes.length, "route"),
    n(Object.keys(c.services).length, "service"),
    n(c.listen.length, "listener"),
    n(c.tcp.length, "tcp listener"),
    n(c.udp.length, "udp listener"),
  ].join(", ");
}

async function run(file: string, logLevel: string, workers: number): Promise<void> {
  const config = load(file);
  if (workers > 1 && cluster.isPrimary) return primary(file, workers, logLevel);
  const log = pino({ level: logLevel, base: { pid: process.pid } }, pino.destination({ sync: false }));
  log.info(`switchyard ${VERSION} loaded ${file}: ${summary(config)}`);
  let gw: Gateway;
  try {
    gw = await Gateway.start(config, { logger: log, baseDir: dirname(resolve(file)) });
  } catch (err) {
    log.flush();
    fail(`switchyard: ${(err as Error).message}`);
  }
  for (const a of gw.addresses)
    log.info(`L7 listening on ${a.kind}://${a.host.includes(":") ? `[${a.host}]` : a.host}:${a.port}`);
  if (config.listen.length > 0 && config.routes.length === 0)
    log.warn("no routes: every request will get 404 SY_NO_ROUTE");

  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    log.info(`${signal}: draining (up to ${config.shutdownTimeout})`);
    await gw.close();
    log.info("stopped");
    log.flush();
    process.exit(0);
  };
  process.on("SIGTERM", () => void stop("SIGTERM"));
  process.on("SIGINT", () => void stop("SIGINT"));
  process.on("SIGHUP", async () => {
    try {
      await gw.reload(loadConfigFile(file));
      log.info(`reloaded ${file}`);
    } catch (err) {
      log.error(`reload refused, the running config stays: ${(err as Error).message}`);
    }
  });
}

/** --workers: one process per worker sharing the listening sockets (node:cluster). */
function primary(file: string, workers: number, logLevel: string): void {
  const log = pino({ level: logLevel });
  log.info(`switchyard ${VERSION}: starting ${workers} workers for ${file}`);
  let stopping = false;
  for (let i = 0; i < workers; i++) cluster.fork();
  cluster.on("exit", (w, code) => {
    if (stopping) return;
    if (code === 1 && w.exitedAfterDisconnect === false) {
      log.error(`worker ${w.process.pid} failed to start; stopping`);
      process.exit(1);
    }
    log.warn(`worker ${w.process.pid} exited (${code}); starting another`);
    cluster.fork();
  });
  const forward = (sig: NodeJS.Signals) => () => {
    stopping = sig !== "SIGHUP";
    for (const w of Object.values(cluster.workers ?? {})) w?.process.kill(sig);
    if (stopping)
      cluster.on("exit", () => Object.keys(cluster.workers ?? {}).length === 0 && process.exit(0));
  };
  process.on("SIGTERM", forward("SIGTERM"));
  process.on("SIGINT", forward("SIGINT"));
  process.on("SIGHUP", forward("SIGHUP"));
}

async function main(argv: string[]): Promise<void> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      config: { type: "string", short: "c", default: "routes.yaml" },
      check: { type: "boolean", default: false },
      workers: { type: "string", default: "1" },
      "log-level": { type: "string", default: "info" },
      header: { type: "string", short: "H", multiple: true },
      help: { type: "boolean", short: "h", default: false },
      version: { type: "boolean", short: "v", default: false },
    },
  });
  if (values.help) return void process.stdout.write(`${USAGE}\n`);
  if (values.version) return void process.stdout.write(`${VERSION}\n`);
  const file = values.config;
  const [command, ...rest] = positionals;
  if (command === "schema") {
    process.stdout.write(`${JSON.stringify(editorSchema(), null, 2)}\n`);
    return;
  }
  if (command === "explain") {
    if (rest.length !== 2) fail(USAGE);
    process.stdout.write(explain(load(file), rest[0], rest[1], values.header ?? []));
    return;
  }
  if (command !== undefined) fail(`unknown command '${command}'\n${USAGE}`);
  if (values.check) {
    const config = load(file);
    for (const w of shadowWarnings(config)) process.stderr.write(`${file}: warning: ${w}\n`);
    process.stdout.write(`${file}: OK (${summary(config)})\n`);
    return;
  }
  const workers = values.workers === "auto" ? availableParallelism() : Number(values.workers);
  if (!Number.isInteger(workers) || workers < 1)
    fail(`--workers must be a positive number or auto, got '${values.workers}'`);
  const levels = ["fatal", "error", "warn", "info", "debug", "trace", "silent"];
  if (!levels.includes(values["log-level"])) fail(`--log-level must be one of ${levels.join(", ")}`);
  await run(file, values["log-level"], workers);
}

main(process.argv.slice(2)).catch((err: Error) => {
  fail(`switchyard: ${err.message}`);
});

export type { Logger };
