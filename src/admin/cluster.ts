/**
 * --workers N (SPEC §8: "the admin listener is served once for the whole
 * process tree and /metrics sums every worker"). The primary serves the
 * admin listener and asks every worker over the cluster IPC channel; each
 * worker answers from its own Runtime. Metrics are summed with prom-client's
 * AggregatorRegistry (each metric's own aggregator: counters add up, a
 * target is healthy only if every worker finds it so).
 *
 * The primary owns reloads: it validates the file once (an invalid file is
 * refused once, with one reason), then has every worker reload, and counts
 * config_reloads_total itself, so N workers do not count one reload N times.
 */
import cluster, { type Worker } from "node:cluster";
import { randomUUID } from "node:crypto";
import type { Logger } from "pino";
import client, { AggregatorRegistry } from "prom-client";
import type { PurgeRequest, PurgeResult } from "../cache/purge.js";
import { parseConfigFile, readConfigFile } from "../config/load.js";
import type { Config } from "../config/schema.js";
import type { Runtime } from "../runtime.js";
import type { AdminOps, DrainResult, Readiness } from "./ops.js";
import {
  mergeUpstreams,
  type ReloadResult,
  type ServiceSnapshot,
  type Stats,
  statsFromMetrics,
} from "./snapshot.js";

/** A worker that has not answered in this long is left out of the answer (and readiness says so). */
const CALL_TIMEOUT_MS = 5000;

type Op = "ready" | "metrics" | "upstreams" | "purge" | "drain" | "reload";
interface Call {
  sy: "admin";
  id: string;
  op: Op;
  args: unknown[];
}
interface Reply {
  sy: "admin-reply";
  id: string;
  ok: boolean;
  value?: unknown;
  error?: string;
}

/** In a worker: answer the primary's admin calls from this worker's Runtime; tell it once we serve. */
export function serveWorker(rt: Runtime): void {
  const ops: Record<Op, (...args: never[]) => Promise<unknown>> = {
    ready: () => rt.ready(),
    metrics: async () => (rt.metricsOf ? rt.metricsOf.registry.getMetricsAsJSON() : []),
    upstreams: () => rt.upstreams(),
    purge: (req: PurgeRequest) => rt.purge(req),
    drain: (service: string, target: string, draining: boolean) => rt.drain(service, target, draining),
    reload: (text: string) => rt.reload(text),
  };
  process.on("message", (msg: Call) => {
    if (msg?.sy !== "admin") return;
    const reply = (r: Omit<Reply, "sy" | "id">) => process.send?.({ sy: "admin-reply", id: msg.id, ...r });
    ops[msg.op](...(msg.args as never[])).then(
      (value) => reply({ ok: true, value }),
      (err: Error) => reply({ ok: false, error: err.message }),
    );
  });
  process.send?.({ sy: "serving" });
}

export class ClusterOps implements AdminOps {
  private current: Config;
  /** The text of the running config: what a new or replacement worker starts from. */
  text: string;
  private generation = 1;
  private lastReload: ReloadResult | null = null;
  private readonly startedAt = Date.now();
  /** The primary's own registry: config_reloads_total and its process metrics, summed with the workers'. */
  private readonly own = new client.Registry();
  private readonly reloads: client.Counter<"result">;
  private readonly serving = new Set<number>();
  private reloading: Promise<ReloadResult> | undefined;

  constructor(
    private readonly file: string,
    config: Config,
    text: string,
    private readonly workers: number,
    private readonly log: Logger,
  ) {
    this.current = config;
    this.text = text;
    client.collectDefaultMetrics({ register: this.own });
    this.reloads = new client.Counter({
      name: "switchyard_config_reloads_total",
      help: "Config reloads by result (success|failure)",
      labelNames: ["result"],
      registers: [this.own],
    });
    this.reloads.inc({ result: "success" }, 0);
    this.reloads.inc({ result: "failure" }, 0);
    cluster.on("message", (w: Worker, msg: { sy?: string }) => {
      if (msg?.sy === "serving") this.serving.add(w.id);
    });
    cluster.on("exit", (w) => this.serving.delete(w.id));
  }

  private live(): Worker[] {
    return Object.values(cluster.workers ?? {}).filter(
      (w): w is Worker => w !== undefined && this.serving.has(w.id),
    );
  }

  /** Ask every serving worker; answers in worker order, workers that fail or time out left out. */
  private async call<T>(op: Op, ...args: unknown[]): Promise<T[]> {
    const asks = this.live().map(
      (w) =>
        new Promise<T | undefined>((done) => {
          const id = randomUUID();
          const timer = setTimeout(() => finish(undefined), CALL_TIMEOUT_MS).unref();
          const onMessage = (msg: Reply) => {
            if (msg?.sy !== "admin-reply" || msg.id !== id) return;
            if (!msg.ok)
              this.log.warn({ worker: w.process.pid, op, err: msg.error }, "worker admin call failed");
            finish(msg.ok ? (msg.value as T) : undefined);
          };
          const finish = (v: T | undefined) => {
            clearTimeout(timer);
            w.off("message", onMessage);
            done(v);
          };
          if (!w.isConnected()) return finish(undefined);
          w.on("message", onMessage);
          // A worker that disconnects meanwhile: the send fails here, not as an unhandled 'error'.
          w.send({ sy: "admin", id, op, args } satisfies Call, undefined, (err) => err && finish(undefined));
        }),
    );
    return (await Promise.all(asks)).filter((v): v is Awaited<T> => v !== undefined) as T[];
  }

  config(): Config {
    return this.current;
  }

  async ready(): Promise<Readiness> {
    const answers = await this.call<Readiness>("ready");
    const reasons = [...new Set(answers.flatMap((a) => a.reasons))];
    if (answers.length < this.workers)
      reasons.unshift(`${answers.length} of ${this.workers} workers serving`);
    return { ready: reasons.length === 0, reasons };
  }

  private async aggregated() {
    const all = await this.call<client.MetricObjectWithValues<client.MetricValue<string>>[]>("metrics");
    all.push(await this.own.getMetricsAsJSON());
    return AggregatorRegistry.aggregate(all);
  }

  async metrics(): Promise<{ text: string; contentType: string }> {
    const reg = await this.aggregated();
    return { text: await reg.metrics(), contentType: reg.contentType };
  }

  async upstreams(): Promise<ServiceSnapshot[]> {
    return mergeUpstreams(await this.call<ServiceSnapshot[]>("upstreams"));
  }

  async stats(): Promise<Stats> {
    const [reg, services] = await Promise.all([this.aggregated(), this.upstreams()]);
    return {
      generation: this.generation,
      workers: this.workers,
      uptimeSeconds: (Date.now() - this.startedAt) / 1000,
      time: Date.now(),
      lastReload: this.lastReload,
      services,
      ...statsFromMetrics(this.current, (await reg.getMetricsAsJSON()) as never),
    };
  }

  async purge(req: PurgeRequest): Promise<PurgeResult> {
    const each = await this.call<PurgeResult>("purge", req);
    return { purged: each.reduce((a, r) => a + r.purged, 0) };
  }

  async drain(service: string, target: string, draining: boolean): Promise<DrainResult> {
    return (await this.call<DrainResult>("drain", service, target, draining)).find((r) => r !== undefined);
  }

  /** Validate once here, then reload every worker; success only when every worker succeeded. */
  reload(): Promise<ReloadResult> {
    const run = async (): Promise<ReloadResult> => {
      let error: string | undefined;
      let next: Config | undefined;
      let text: string | undefined;
      try {
        text = readConfigFile(this.file);
        next = parseConfigFile(this.file, text);
      } catch (err) {
        error = (err as Error).message;
      }
      if (next !== undefined) {
        // Every worker gets the text validated here: a file edited meanwhile cannot split the fleet.
        const results = await this.call<ReloadResult>("reload", text);
        const failed = results.filter((r) => r.result === "failure");
        if (results.length < this.workers)
          error = `${results.length} of ${this.workers} workers answered the reload`;
        else if (failed.length > 0) error = failed[0].error ?? "a worker refused the reload";
        else {
          this.current = next;
          this.text = text!;
          this.generation++;
        }
      }
      const result = error === undefined ? "success" : "failure";
      this.reloads.inc({ result });
      this.lastReload = {
        result,
        at: new Date().toISOString(),
        ...(error === undefined ? {} : { error }),
        generation: this.generation,
      };
      if (error === undefined)
        this.log.info(`reloaded ${this.file} in ${this.workers} workers (generation ${this.generation})`);
      else this.log.error(`reload refused, the running config stays: ${error}`);
      return this.lastReload;
    };
    const next = (this.reloading ?? Promise.resolve()).then(run, run);
    this.reloading = next;
    return next;
  }
}
