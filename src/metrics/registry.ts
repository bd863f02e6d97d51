/**
 * Prometheus metrics (SPEC §8) on prom-client: one Registry per process,
 * living across reloads. Every name has the `switchyard_` prefix; Node's
 * default process metrics are added beside them.
 *
 * Three kinds of source, each read at scrape time, never per request:
 * - per-request counters and the latency histogram: the cells of cells.ts,
 *   bound to each route when a generation is built (`bind`);
 * - state: upstream health and in-flight counts of the running generation's
 *   targets, and the L4 listeners' own counters (prom-client collect());
 * - config_reloads_total: a plain prom-client Counter (rare events).
 *
 * `mode: nat` listeners (issue 16) have no Node-side counts: their
 * tcp_connections_total, tcp_bytes_total and udp_datagrams_total come from
 * the nftables table's named counters (one `nft` read per scrape), as series
 * with `mode="nat"`; the proxy mode's series keep exactly their labels.
 *
 * Reloads keep the counters of routes that still exist (cells are found by
 * route name) and drop the series of routes that are gone.
 */
import client, { type Registry } from "prom-client";
import type { Generation } from "../generation.js";
import type { NatStats } from "../l4/nat-plane.js";
import type { L4Listeners } from "../l4-listeners.js";
import { BUCKETS, RouteCells, RouteMetrics } from "./cells.js";

const P = "switchyard_";

/** What the collectors read on each scrape: the generation and L4 listeners running now. */
export interface MetricsSource {
  generation(): Generation | undefined;
  l4(): L4Listeners | undefined;
}

/** One sample as prom-client's formatter and aggregator read it (`metricName` for _bucket/_sum/_count). */
interface Sample {
  labels: Record<string, string | number>;
  value: number;
  metricName?: string;
}
type Values = Sample[];

interface CellMetric {
  name: string;
  help: string;
  type: string;
  aggregator: "sum";
  get(): { name: string; help: string; type: string; aggregator: "sum"; values: Values };
}

/**
 * A metric prom-client formats and aggregates like its own, whose values come
 * from our cells (prom-client has no way to set a histogram's buckets).
 */
function cellMetric(
  name: string,
  help: string,
  type: "counter" | "histogram",
  values: () => Values | Promise<Values>,
): CellMetric {
  const of = (v: Values) => ({ name, help, type, aggregator: "sum" as const, values: v });
  return {
    name,
    help,
    type,
    aggregator: "sum",
    // Synchronous unless the values are (the nat listeners' come from the kernel); prom-client awaits either.
    get: () => {
      const v = values();
      return (v instanceof Promise ? v.then(of) : of(v)) as ReturnType<CellMetric["get"]>;
    },
  };
}

export class Metrics {
  readonly registry: Registry = new client.Registry();
  readonly reloads: client.Counter<"result">;
  private readonly routes = new Map<string, RouteCells>();
  /** Requests no route took (404 SY_NO_ROUTE, 400 SY_BAD_PATH): route="" and service="". */
  readonly unrouted: RouteMetrics;

  constructor(private readonly source: MetricsSource) {
    const r = this.registry;
    client.collectDefaultMetrics({ register: r });
    this.unrouted = new RouteMetrics(this.cellsOf(""), []);
    r.registerMetric(
      cellMetric(
        `${P}http_requests_total`,
        "HTTP requests answered, by route, service and status",
        "counter",
        () => this.requestValues(),
      ) as never,
    );
    r.registerMetric(
      cellMetric(
        `${P}http_request_duration_seconds`,
        "Time from a request's arrival to the end of its answer",
        "histogram",
        () => this.durationValues(),
      ) as never,
    );
    r.registerMetric(
      cellMetric(`${P}rate_limited_total`, "Requests answered 429 by a route's rate limit", "counter", () =>
        [...this.routes.values()]
          .filter((c) => c.limited || c.rateLimited > 0)
          .map((c) => ({ labels: { route: c.route }, value: c.rateLimited })),
      ) as never,
    );
    r.registerMetric(
      cellMetric(`${P}cache_requests_total`, "Cache lookups by route and result", "counter", () =>
        [...this.routes.values()]
          .filter((c) => c.cached)
          .flatMap((c) =>
            Object.entries(c.cache).map(([result, value]) => ({ labels: { route: c.route, result }, value })),
          ),
      ) as never,
    );
    this.reloads = new client.Counter({
      name: `${P}config_reloads_total`,
      help: "Config reloads by result (success|failure)",
      labelNames: ["result"],
      registers: [r],
    });
    this.reloads.inc({ result: "success" }, 0);
    this.reloads.inc({ result: "failure" }, 0);
    this.stateCollectors();
  }

  /** Bind every route of `gen` to its cells (call before the generation serves). */
  bind(gen: Generation): void {
    for (const route of gen.routes) {
      const cells = this.cellsOf(route.name);
      cells.limited = route.config.rateLimit !== undefined;
      cells.cached = route.config.cache !== undefined;
      route.metrics = new RouteMetrics(cells, route.services);
    }
    gen.unroutedMetrics = this.unrouted;
  }

  /** After a reload: forget the series of routes `gen` no longer has. */
  retain(gen: Generation): void {
    const names = new Set(gen.routes.map((r) => r.name));
    names.add("");
    for (const name of this.routes.keys()) if (!names.has(name)) this.routes.delete(name);
  }

  /** The Prometheus text of this process. */
  text(): Promise<string> {
    return this.registry.metrics();
  }

  private cellsOf(route: string): RouteCells {
    let c = this.routes.get(route);
    if (c === undefined) {
      c = new RouteCells(route);
      this.routes.set(route, c);
    }
    return c;
  }

  private requestValues(): Values {
    const out: Values = [];
    for (const c of this.routes.values())
      for (const [service, cells] of c.services)
        for (const [status, value] of cells.byStatus)
          out.push({ labels: { route: c.route, service, status }, value });
    return out;
  }

  private durationValues(): Values {
    const out: Values = [];
    const name = `${P}http_request_duration_seconds`;
    for (const c of this.routes.values())
      for (const [service, cells] of c.services) {
        if (cells.count === 0) continue;
        const labels = { route: c.route, service };
        let cumulative = 0;
        for (let i = 0; i <= BUCKETS.length; i++) {
          cumulative += cells.buckets[i];
          const le = i < BUCKETS.length ? BUCKETS[i] : "+Inf";
          out.push({ metricName: `${name}_bucket`, labels: { ...labels, le }, value: cumulative });
        }
        out.push({ metricName: `${name}_sum`, labels, value: cells.sum });
        out.push({ metricName: `${name}_count`, labels, value: cells.count });
      }
    return out;
  }

  /** Gauges and L4 counters read from the running objects on each scrape. */
  private stateCollectors(): void {
    const { source } = this;
    const r = this.registry;
    const targets = () =>
      [...(source.generation()?.services.values() ?? [])].flatMap((s) => s.targets.map((t) => ({ s, t })));
    new client.Gauge({
      name: `${P}upstream_healthy`,
      help: "1 when the target may get new work (healthy, not ejected, not draining), else 0",
      labelNames: ["service", "target"],
      registers: [r],
      // With --workers, a target counts as healthy only when every worker finds it so.
      aggregator: "min",
      collect() {
        this.reset();
        const now = Date.now();
        for (const { s, t } of targets()) this.set({ service: s.name, target: t.url }, t.usable(now) ? 1 : 0);
      },
    });
    new client.Gauge({
      name: `${P}upstream_in_flight`,
      help: "Requests or connections open to the target now",
      labelNames: ["service", "target"],
      registers: [r],
      collect() {
        this.reset();
        for (const { s, t } of targets()) this.set({ service: s.name, target: t.url }, t.inFlight);
      },
    });
    const tcp = () => (source.l4()?.tcp ?? []).map((p) => p.stats);
    const udp = () => (source.l4()?.udp ?? []).map((p) => p.stats);
    // A failed read (the table deleted by hand) leaves the nat series out of this scrape, never fails it.
    const nat = async (kind: "tcp" | "udp"): Promise<NatStats[]> =>
      (
        (await source
          .l4()
          ?.natStats()
          .catch(() => [])) ?? []
      ).filter((s) => s.kind === kind);
    new client.Gauge({
      name: `${P}tcp_connections_active`,
      help: "Open client connections per TCP listener",
      labelNames: ["listener"],
      registers: [r],
      collect() {
        this.reset();
        for (const s of tcp()) this.set({ listener: s.listener }, s.active);
      },
    });
    r.registerMetric(
      cellMetric(
        `${P}tcp_connections_total`,
        "Client connections accepted per TCP listener (mode=nat: translated by the kernel)",
        "counter",
        async () => [
          ...tcp().map((s) => ({ labels: { listener: s.listener }, value: s.total })),
          ...(await nat("tcp")).map((s) => ({
            labels: { listener: s.listener, mode: "nat" },
            value: s.connections,
          })),
        ],
      ) as never,
    );
    r.registerMetric(
      cellMetric(
        `${P}tcp_bytes_total`,
        "Bytes per TCP listener: in from clients, out to clients (mode=nat: whole IP packets)",
        "counter",
        async () => [
          ...tcp().flatMap((s) => [
            { labels: { listener: s.listener, direction: "in" }, value: s.bytesIn },
            { labels: { listener: s.listener, direction: "out" }, value: s.bytesOut },
          ]),
          ...(await nat("tcp")).flatMap((s) => [
            { labels: { listener: s.listener, direction: "in", mode: "nat" }, value: s.bytesIn },
            { labels: { listener: s.listener, direction: "out", mode: "nat" }, value: s.bytesOut },
          ]),
        ],
      ) as never,
    );
    r.registerMetric(
      cellMetric(
        `${P}udp_datagrams_total`,
        "Datagrams per UDP listener: in from clients, out to clients",
        "counter",
        async () => [
          ...udp().flatMap((s) => [
            { labels: { listener: s.listener, direction: "in" }, value: s.datagramsIn },
            { labels: { listener: s.listener, direction: "out" }, value: s.datagramsOut },
          ]),
          ...(await nat("udp")).flatMap((s) => [
            { labels: { listener: s.listener, direction: "in", mode: "nat" }, value: s.packetsIn },
            { labels: { listener: s.listener, direction: "out", mode: "nat" }, value: s.packetsOut },
          ]),
        ],
      ) as never,
    );
    new client.Gauge({
      name: `${P}udp_sessions_active`,
      help: "Client sessions open per UDP listener",
      labelNames: ["listener"],
      registers: [r],
      collect() {
        this.reset();
        for (const s of udp()) this.set({ listener: s.listener }, s.sessions);
      },
    });
  }
}
