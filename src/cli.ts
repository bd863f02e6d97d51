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
// First, before any other module runs (see the file).
import "./tick-shape.js";
import cluster from "node:cluster";
import { availableParallelism } from "node:os";
import { parseArgs } from "node:util";
import pino, { type Logger } from "pino";
import { type AdminServer, startAdmin } from "../plugins/admin.js";
import { ClusterOps, serveWorker } from "./admin/cluster.js";
import { ConfigError, loadConfigFile, parseConfigFile, readConfigFile } from "./config/load.js";
import { loadPlugins } from "./config/plugins.js";
import type { Config } from "./config/schema.js";
import { editorSchema } from "./config/schema.js";
import { explain } from "./explain.js";
import { regexWarnings } from "./router/safe-regex.js";
import { Runtime } from "./runtime.js";
import { shadowWarnings } from "./shadow.js";
import { PROCESS_KEY, STICKY_KEY_ENV } from "./upstreams/sticky.js";
import { transportWarnings } from "./upstreams/transport.js";
import { VERSION } from "./version.js";
import { watchConfig } from "./watch.js";

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

/** Where a --workers worker finds the config text the primary validated. */
const CONFIG_TEXT = "SWITCHYARD_CONFIG_TEXT";

/**
 * The file (or `text` as if it were the file), then the routes' own plugins
 * imported and checked (issue 13): still before anything listens.
 */
async function loadAll(file: string, text?: string): Promise<{ config: Config; text: string }> {
  try {
    const t = text ?? readConfigFile(file);
    const config = parseConfigFile(file, t);
    await loadPlugins(config);
    return { config, text: t };
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
  const { config, text } = await loadAll(file, cluster.isWorker ? process.env[CONFIG_TEXT] : undefined);
  if (workers > 1 && cluster.isPrimary) return primary(file, config, text, workers, logLevel);
  const log = pino({ level: logLevel, base: { pid: process.pid } }, pino.destination({ sync: false }));
  log.info(`switchyard ${VERSION} loaded ${file}: ${summary(config)}`);
  let rt: Runtime;
  try {
    rt = await Runtime.start({
      file,
      config,
      logger: log,
      worker: cluster.isWorker,
    });
  } catch (err) {
    log.flush();
    fail(`switchyard: ${(err as Error).message}`);
  }
  for (const a of rt.gateway.addresses)
    log.info(`L7 listening on ${a.kind}://${a.host.includes(":") ? `[${a.host}]` : a.host}:${a.port}`);
  if (config.listen.length > 0 && config.routes.length === 0)
    log.warn("no routes: every request will get 404 SY_NO_ROUTE");
  for (const w of transportWarnings(config)) log.warn(w);
  if (cluster.isWorker) serveWorker(rt);

  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    log.info(`${signal}: draining (up to ${rt.config().shutdownTimeout})`);
    await rt.close();
    log.info("stopped");
    log.flush();
    process.exit(0);
  };
  process.on("SIGTERM", () => void stop("SIGTERM"));
  process.on("SIGINT", () => void stop("SIGINT"));
  process.on("SIGHUP", () => void rt.reload());
}

/**
 * --workers: one process per worker sharing the listening sockets
 * (node:cluster). The primary serves the admin listener for the whole tree,
 * follows `watch:` and runs reloads (admin/cluster.ts).
 */
async function primary(
  file: string,
  config: Config,
  text: string,
  workers: number,
  logLevel: string,
): Promise<void> {
  const log = pino({ level: logLevel, base: { pid: process.pid } });
  log.info(`switchyard ${VERSION}: starting ${workers} workers for ${file}`);
  const ops = new ClusterOps(file, config, text, workers, log);
  let admin: AdminServer | undefined;
  try {
    if (config.admin) admin = await startAdmin(ops, log);
  } catch (err) {
    fail(`switchyard: ${(err as Error).message}`);
  }
  const watcher = config.watch ? watchConfig(file, () => void ops.reload()) : undefined;
  let stopping = false;
  // Workers start from the text validated here, as a replacement worker later starts from the
  // running config's (never from a file that may have turned invalid since).
  // The primary's fallback sticky key too, so a cookie one worker set is good on every other.
  const fork = () => cluster.fork({ [CONFIG_TEXT]: ops.text, [STICKY_KEY_ENV]: PROCESS_KEY.toString("hex") });
  for (let i = 0; i < workers; i++) fork();
  cluster.on("exit", (w, code) => {
    if (stopping) return;
    if (code === 1 && w.exitedAfterDisconnect === false) {
      log.error(`worker ${w.process.pid} failed to start; stopping`);
      process.exit(1);
    }
    log.warn(`worker ${w.process.pid} exited (${code}); starting another`);
    fork();
  });
  const stop = (sig: NodeJS.Signals) => () => {
    if (stopping) return;
    stopping = true;
    watcher?.close();
    for (const w of Object.values(cluster.workers ?? {})) w?.process.kill(sig);
    cluster.on("exit", async () => {
      if (Object.keys(cluster.workers ?? {}).length > 0) return;
      await admin?.close();
      process.exit(0);
    });
  };
  process.on("SIGTERM", stop("SIGTERM"));
  process.on("SIGINT", stop("SIGINT"));
  process.on("SIGHUP", () => void ops.reload());
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
    const { config } = await loadAll(file);
    for (const w of [...shadowWarnings(config), ...regexWarnings(config), ...transportWarnings(config)])
      process.stderr.write(`${file}: warning: ${w}\n`);
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
