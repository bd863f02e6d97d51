/**
 * One gateway process as an operator runs it: the Gateway (data plane) plus
 * what makes it operable (SPEC §7, §8): metrics, the admin listener, reload
 * from the config file (one path for SIGHUP, /admin/reload and `watch`) and
 * readiness. cli.ts adds only signals and workers; tests start a Runtime
 * in-process from a file.
 *
 * It is also the admin API's view of a single process (AdminOps). Under
 * --workers the primary serves the admin listener and asks each worker's
 * Runtime the same questions over IPC (admin/cluster.ts).
 */
import { dirname, resolve } from "node:path";
import type { Logger } from "pino";
import { type AdminServer, startAdmin } from "../plugins/admin.js";
import type { AdminOps, DrainResult, Readiness } from "./admin/ops.js";
import { type ReloadResult, type Stats, statsFromMetrics, upstreams } from "./admin/snapshot.js";
import { type PurgeRequest, type PurgeResult, purgeCache } from "./cache/purge.js";
import { loadConfigFile, parseConfigFile } from "./config/load.js";
import type { Config } from "./config/schema.js";
import type { Generation } from "./generation.js";
import { Metrics } from "./metrics/registry.js";
import { Gateway } from "./server.js";
import { storeOf } from "./store/index.js";
import { drainTarget, undrainTarget } from "./upstreams/drain.js";
import { watchConfig } from "./watch.js";

export interface RuntimeOptions {
  /** The routes.yaml path: reloads read it again. */
  file: string;
  /** The file's config when the caller has loaded it already (else it is read here). */
  config?: Config;
  logger: Logger;
  /**
   * A --workers worker: the primary serves `admin:`, follows `watch:` and
   * counts reloads (admin/cluster.ts); this process answers its calls.
   */
  worker?: boolean;
}

export class Runtime implements AdminOps {
  private gw!: Gateway;
  private adminServer: AdminServer | undefined;
  /** The `admin:` host and port the admin listener was started with. */
  private adminAt: { host: string; port: number } | undefined;
  private watcher: { close(): void } | undefined;
  private metricsRegistry: Metrics | undefined;
  private reloading: Promise<ReloadResult> | undefined;
  private stopping = false;
  private readonly startedAt = Date.now();
  lastReload: ReloadResult | null = null;

  private constructor(private readonly opts: RuntimeOptions) {}

  /** Load, bind every listener, then admin and watch. Throws ConfigError or a one-line listen error. */
  static async start(opts: RuntimeOptions): Promise<Runtime> {
    const rt = new Runtime(opts);
    const config = opts.config ?? loadConfigFile(opts.file);
    rt.gw = await Gateway.start(config, {
      logger: opts.logger,
      baseDir: dirname(resolve(opts.file)),
      prepare: (gen) => rt.prepare(gen),
    });
    try {
      await rt.follow(config);
    } catch (err) {
      await rt.close(0);
      throw err;
    }
    return rt;
  }

  get gateway(): Gateway {
    return this.gw;
  }

  /** The admin listener's address, when this process serves one. */
  get adminAddress(): { host: string; port: number } | undefined {
    return this.adminServer?.address;
  }

  /** The process's metrics; made when a config first has `admin:` (no admin, no per-request cost). */
  get metricsOf(): Metrics | undefined {
    return this.metricsRegistry;
  }

  /** Every new generation is bound to the metrics before it serves a request. */
  private prepare(gen: Generation): void {
    if (gen.config.admin === undefined) return;
    this.metricsRegistry ??= new Metrics({
      generation: () => this.gw?.generation,
      l4: () => this.gw?.listeners,
    });
    this.metricsRegistry.bind(gen);
  }

  /** Start, move or stop the admin listener and the file watch to match `config`. */
  private async follow(config: Config): Promise<void> {
    const want = this.opts.worker ? undefined : config.admin;
    const have = this.adminServer;
    // The token is read per request; only a new host or port needs a new listener.
    const moved =
      have !== undefined && (want?.host !== this.adminAt?.host || want?.port !== this.adminAt?.port);
    if (want && (moved || !have)) {
      // The new one first: if it cannot bind, the old one keeps serving.
      this.adminServer = await startAdmin(this, this.opts.logger);
      this.adminAt = { host: want.host, port: want.port };
    } else if (moved) {
      this.adminServer = undefined;
      this.adminAt = undefined;
    }
    // In the background: the old listener may be carrying this very POST /admin/reload.
    if (moved) void have.close().catch(() => {});
    const watch = !this.opts.worker && config.watch;
    if (watch && !this.watcher) {
      this.watcher = watchConfig(this.opts.file, () => void this.reload());
      this.opts.logger.info(`watching ${this.opts.file} for changes`);
    } else if (!watch && this.watcher) {
      this.watcher.close();
      this.watcher = undefined;
    }
  }

  /**
   * Reload from the file (or, in a --workers worker, from the text the
   * primary validated): validated first (an invalid file leaves everything
   * as it runs), then swapped in. One at a time: a reload asked for while one
   * runs waits for it, then reads the file again.
   */
  reload(text?: string): Promise<ReloadResult> {
    const run = async (): Promise<ReloadResult> => {
      const log = this.opts.logger;
      let config: Config;
      try {
        config = text === undefined ? loadConfigFile(this.opts.file) : parseConfigFile(this.opts.file, text);
        await this.gw.reload(config);
      } catch (err) {
        const message = (err as Error).message;
        this.count("failure", message);
        log.error(`reload refused, the running config stays: ${message}`);
        return this.lastReload!;
      }
      // From here the new config serves: the reload succeeded whatever follows.
      this.metricsRegistry?.retain(this.gw.generation);
      this.count("success");
      log.info(`reloaded ${this.opts.file} (generation ${this.gw.generationNumber})`);
      try {
        await this.follow(config);
      } catch (err) {
        log.error(
          `reloaded, but the admin listener could not follow the new config: ${(err as Error).message}`,
        );
      }
      return this.lastReload!;
    };
    const next = (this.reloading ?? Promise.resolve()).then(run, run);
    this.reloading = next;
    return next;
  }

  private count(result: "success" | "failure", error?: string): void {
    if (!this.opts.worker) this.metricsRegistry?.reloads.inc({ result });
    this.lastReload = {
      result,
      at: new Date().toISOString(),
      ...(error === undefined ? {} : { error }),
      generation: this.gw.generationNumber,
    };
  }

  // --- AdminOps: the admin API's questions, answered for this process ---

  config(): Config {
    return this.gw.generation.config;
  }

  async ready(): Promise<Readiness> {
    const reasons: string[] = [];
    if (this.stopping) reasons.push("shutting down");
    const store = storeOf(this.gw.generation);
    if (store !== undefined && store.kind === "redis" && !store.healthy)
      reasons.push("store: redis is not reachable");
    return { ready: reasons.length === 0, reasons };
  }

  async metrics(): Promise<{ text: string; contentType: string }> {
    const m = this.metricsRegistry;
    if (m === undefined) return { text: "", contentType: "text/plain; version=0.0.4; charset=utf-8" };
    return { text: await m.text(), contentType: m.registry.contentType };
  }

  async upstreams() {
    return upstreams(this.gw.generation);
  }

  async stats(): Promise<Stats> {
    const config = this.config();
    const json = this.metricsRegistry ? await this.metricsRegistry.registry.getMetricsAsJSON() : [];
    return {
      generation: this.gw.generationNumber,
      workers: 1,
      uptimeSeconds: (Date.now() - this.startedAt) / 1000,
      time: Date.now(),
      lastReload: this.lastReload,
      services: upstreams(this.gw.generation),
      ...statsFromMetrics(config, json as never),
    };
  }

  purge(req: PurgeRequest): Promise<PurgeResult> {
    return purgeCache(this.gw.generation, req);
  }

  async drain(service: string, target: string, draining: boolean): Promise<DrainResult> {
    const gen = this.gw.generation;
    const t = draining ? drainTarget(gen, service, target) : undrainTarget(gen, service, target);
    if (t === undefined) return undefined;
    this.opts.logger.info({ service, target: t.url }, draining ? "target draining" : "target undrained");
    return { service, target: t.url, draining };
  }

  /** Not ready from now on (orchestrators stop sending), then drain and close everything. */
  async close(graceMs?: number): Promise<void> {
    this.stopping = true;
    this.watcher?.close();
    this.watcher = undefined;
    await this.gw?.close(graceMs);
    await this.adminServer?.close();
    this.adminServer = undefined;
  }
}
