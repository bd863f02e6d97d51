/**
 * A service: its targets, one balancer instance and the policy knobs the
 * forwarders need, built once per config generation: retry policy and budget,
 * passive outlier detection, active health checks, the circuit breaker cap
 * and slow start (both carried by each Target). `pick`, `reportSuccess` and
 * `reportFailure` are the calls on the hot path.
 */
import type { IncomingMessage } from "node:http";
import { createBalancer } from "../balancers/index.js";
import type { Balancer, PickContext } from "../balancers/types.js";
import { ms } from "../config/duration.js";
import type { ServiceConfig } from "../config/schema.js";
import { parseCookies } from "../router/request-view.js";
import { carryTarget } from "./carry-over.js";
import { DnsDiscovery, entryUrl, type Found, resolves } from "./discovery.js";
import { ActiveHealthChecker, probeFor, statusRange } from "./health-active.js";
import { OutlierDetector } from "./health-passive.js";
import { percent, RetryBudget } from "./retry-budget.js";
import { type RetryPolicy, retryPolicy } from "./retry-policy.js";
import { Sticky } from "./sticky.js";
import { Target } from "./target.js";
import { type Transport, transportOf } from "./transport.js";

/** Where health transitions are reported (a pino logger fits). */
export interface HealthLog {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
}

export interface ServiceTimeouts {
  connect: number;
  request: number;
  idle: number;
}

/** Extracts the consistent-hash key from an L7 request (decided at load time). */
/** The consistent-hash key of a request: `path` and `query` as the router split and normalised them. */
export type KeyFn = (req: IncomingMessage, path: string, ip: string, query: string) => string | undefined;

export class Service {
  /**
   * The targets new work may go to. Fixed for a service without discovery;
   * with `discovery: dns` the array is replaced (never mutated) when the
   * addresses change, together with the balancer built over it.
   */
  targets: readonly Target[];
  balancer: Balancer;
  readonly timeouts: ServiceTimeouts;
  readonly keyOf: KeyFn | undefined;
  readonly retry: RetryPolicy;
  readonly budget: RetryBudget;
  /** Passive outlier detection; undefined without `outlierDetection`. */
  readonly outlier: OutlierDetector | undefined;
  /** Active health checks; undefined without `healthCheck`. */
  readonly health: ActiveHealthChecker | undefined;
  /** Cookie affinity (L7); undefined without `sticky`. */
  readonly sticky: Sticky | undefined;
  /** DNS discovery; undefined without `discovery: dns` (or when no entry is a name). */
  readonly discovery: DnsDiscovery | undefined;
  /** Settings every Target of this service is made with (discovered ones too). */
  private readonly targetInit: { maxInFlight: number | undefined; slowStart: number };
  /** After a reload: the running generation's targets, whose state discovered ones of the same URL take. */
  private previous: readonly Target[] | undefined;
  /** A discovery result has been applied (the first one does not ramp: it is the start-up set). */
  private discovered = false;
  /** Set by startHealthChecks: where ejections and health transitions are logged. */
  private log: HealthLog | undefined;

  /** protocol and tls (issue 14); undefined: HTTP/1.1 with Node's defaults. */
  readonly transport: Transport | undefined;

  constructor(
    readonly name: string,
    readonly config: ServiceConfig,
    dnsServers?: readonly string[],
    baseDir: string = process.cwd(),
  ) {
    this.transport = transportOf(config, baseDir);
    const maxInFlight = config.maxConnectionsPerTarget;
    const slowStart = ms(config.slowStart) ?? 0;
    this.targetInit = { maxInFlight, slowStart };
    this.discovery =
      config.discovery === "dns" && resolves(config.targets)
        ? new DnsDiscovery(name, config.targets, ms(config.dnsRefresh ?? "30s"), dnsServers, (found) =>
            this.setTargets(found),
          )
        : undefined;
    // With discovery, only IP literals are targets until the first resolution (in onReady).
    this.targets = (this.discovery ? this.discovery.known : config.targets.map(foundOf)).map(
      (f, index) => new Target({ ...f, index, maxInFlight, slowStart }),
    );
    this.balancer = createBalancer(config.balancer, this.targets);
    this.timeouts = {
      connect: ms(config.timeouts?.connect ?? "2s"),
      request: ms(config.timeouts?.request ?? "30s"),
      idle: ms(config.timeouts?.idle ?? "60s"),
    };
    this.keyOf = config.balancer === "consistent-hash" ? keyFunction(config.hash) : undefined;
    this.retry = retryPolicy(config.retries);
    this.budget = new RetryBudget(percent(config.retries?.budget ?? "20%"));
    const od = config.outlierDetection;
    this.outlier = od
      ? new OutlierDetector(this.targets, {
          consecutiveFailures: od.consecutiveFailures ?? 5,
          ejectionTime: ms(od.ejectionTime ?? "30s"),
          maxEjectionPercent: od.maxEjectionPercent ?? 50,
        })
      : undefined;
    this.health = config.healthCheck ? this.activeChecker(config.healthCheck) : undefined;
    this.sticky = config.sticky ? new Sticky(name, config.sticky) : undefined;
  }

  /** Most attempts one request may make: the first plus retries, never more than the targets. */
  get maxAttempts(): number {
    return Math.min(this.targets.length, 1 + this.retry.attempts);
  }

  /** Choose a target for new work, or undefined when none is available. */
  pick(ctx: PickContext): Target | undefined {
    return this.balancer.select(this.targets, ctx);
  }

  /**
   * Why `pick` found nothing: some target would serve but is at its
   * maxConnectionsPerTarget cap (the circuit is open), or none is usable.
   */
  unavailable(now: number = Date.now()): "SY_CIRCUIT_OPEN" | "SY_NO_HEALTHY_TARGET" {
    for (const t of this.targets) if (t.usable(now) && t.inFlight >= t.maxInFlight) return "SY_CIRCUIT_OPEN";
    return "SY_NO_HEALTHY_TARGET";
  }

  /** A live request or connection to `t` went well (any answer below 500). */
  reportSuccess(t: Target): void {
    if (this.outlier !== undefined) this.outlier.success(t);
  }

  /** A live request or connection to `t` failed: connect error, reset, timeout or a 5xx answer. */
  reportFailure(t: Target, now: number = Date.now()): void {
    t.failures++;
    if (this.outlier?.failure(t, now))
      this.log?.warn({ service: this.name, target: t.url }, "target ejected");
  }

  /** The target with this URL as written, its origin, `host:port`, or its position in the list. */
  target(id: string): Target | undefined {
    return this.targets.find(
      (t) => t.url === id || t.origin === id || `${t.host}:${t.port}` === id || String(t.index) === id,
    );
  }

  /**
   * DNS discovery's first resolution, then the first probe of every target
   * (resolves once each has a verdict), then both on their intervals.
   */
  async startHealthChecks(log?: HealthLog): Promise<void> {
    this.log = log;
    await this.discovery?.start(log);
    await this.health?.start();
  }

  stopHealthChecks(): void {
    this.discovery?.stop();
    this.health?.stop();
  }

  /**
   * A reload: this service replaces `old`. Discovered targets of a URL the old
   * one had take its state (as carry-over.ts does for written targets), and
   * the old discovery's last good addresses serve if the first resolution fails.
   */
  inherit(old: Service): void {
    this.previous = old.targets;
    if (this.discovery && old.discovery) this.discovery.inherit(old.discovery);
  }

  /**
   * DNS discovery found this address set. Vanished targets leave the list at
   * once (no new work) and are marked draining: requests in flight to them
   * finish. New ones are probed first when the service has health checks
   * (the probe decides, as at start-up), then join with slow start; the list
   * and its balancer are swapped together, synchronously.
   */
  async setTargets(found: readonly Found[]): Promise<void> {
    const current = new Map(this.targets.map((t) => [t.url, t]));
    const { maxInFlight, slowStart } = this.targetInit;
    const joined: Target[] = [];
    const next = found.map((f) => {
      const kept = current.get(f.url);
      if (kept !== undefined) return kept;
      const t = new Target({ ...f, index: 0, maxInFlight, slowStart });
      joined.push(t);
      return t;
    });
    const stays = new Set(next);
    const left = this.targets.filter((t) => !stays.has(t));
    const first = !this.discovered;
    this.discovered = true;
    if (joined.length === 0 && left.length === 0) return;
    const now = Date.now();
    for (const t of joined) {
      const o = this.previous?.find((x) => x.url === t.url);
      if (o !== undefined) carryTarget(o, t);
      else if (!first || this.previous !== undefined) t.startRamp(now);
    }
    // Running health checks probe a newcomer before it gets work; before start() they probe it anyway.
    if (this.health !== undefined) await this.health.admit(joined);
    next.forEach((t, i) => {
      t.index = i;
    });
    this.targets = next;
    this.balancer = createBalancer(this.config.balancer, next);
    this.outlier?.setTargets(next);
    this.health?.release(left, next);
    for (const t of left) t.draining = true;
    const urls = (ts: Target[]) => ts.map((t) => t.url);
    this.log?.info(
      { service: this.name, joined: urls(joined), left: urls(left), targets: next.length },
      "DNS: targets changed",
    );
  }

  private activeChecker(hc: NonNullable<ServiceConfig["healthCheck"]>): ActiveHealthChecker {
    const settings = {
      path: hc.path ?? "/health",
      interval: ms(hc.interval ?? "5s"),
      timeout: ms(hc.timeout ?? "1s"),
      healthyThreshold: hc.healthyThreshold ?? 2,
      unhealthyThreshold: hc.unhealthyThreshold ?? 3,
      expect: statusRange(hc.expectStatus ?? "200-399"),
    };
    return new ActiveHealthChecker(
      this.targets,
      settings,
      {
        passed: (t, startedAt) => this.outlier?.probePassed(t, startedAt),
        changed: (t, healthy) => {
          const where = { service: this.name, target: t.url };
          if (healthy) this.log?.info(where, "target healthy");
          else this.log?.warn(where, "target unhealthy");
        },
      },
      (t) => probeFor(t, settings, this.transport),
    );
  }
}

/** A written target entry as the Target it makes (services without discovery). */
function foundOf(t: ServiceConfig["targets"][number]): Found {
  const url = entryUrl(t);
  // The config checks refuse an srv entry without discovery: dns.
  if (url === undefined) throw new Error("an srv target needs discovery: dns");
  return { url, weight: (typeof t === "string" ? undefined : t.weight) ?? 1 };
}

function keyFunction(hash: ServiceConfig["hash"]): KeyFn {
  const name = hash?.name?.toLowerCase() ?? "";
  switch (hash?.on ?? "ip") {
    case "header":
      return (req) => {
        const v = req.headers[name];
        return Array.isArray(v) ? v[0] : v;
      };
    case "cookie": {
      // Cookie names are case-sensitive (RFC 6265), unlike header names: parsed as the router does.
      const cookie = hash?.name ?? "";
      return (req) =>
        req.headers.cookie === undefined ? undefined : parseCookies(req.headers.cookie).get(cookie);
    }
    case "path":
      return (_req, path) => path;
    case "query": {
      // Decoded like the router's query match (URLSearchParams: first occurrence, + as space).
      const param = hash?.name ?? "";
      return (_req, _path, _ip, query) =>
        query === "" ? undefined : (new URLSearchParams(query).get(param) ?? undefined);
    }
    default:
      return (_req, _path, ip) => ip;
  }
}

/**
 * Every service of a config, by name. `dnsServers`: the resolvers for discovery (default: the
 * system's); `baseDir`: where relative certificate paths (services.*.tls) are read from.
 */
export function buildServices(
  services: Record<string, ServiceConfig>,
  dnsServers?: readonly string[],
  baseDir?: string,
): Map<string, Service> {
  return new Map(
    Object.entries(services).map(([name, cfg]) => [name, new Service(name, cfg, dnsServers, baseDir)]),
  );
}
