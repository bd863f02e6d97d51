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
import { ActiveHealthChecker, probeFor, statusRange } from "./health-active.js";
import { OutlierDetector } from "./health-passive.js";
import { percent, RetryBudget } from "./retry-budget.js";
import { type RetryPolicy, retryPolicy } from "./retry-policy.js";
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
  readonly targets: readonly Target[];
  readonly balancer: Balancer;
  readonly timeouts: ServiceTimeouts;
  readonly keyOf: KeyFn | undefined;
  readonly retry: RetryPolicy;
  readonly budget: RetryBudget;
  /** Most attempts one request may make: the first plus retries, never more than the targets. */
  readonly maxAttempts: number;
  /** Passive outlier detection; undefined without `outlierDetection`. */
  readonly outlier: OutlierDetector | undefined;
  /** Active health checks; undefined without `healthCheck`. */
  readonly health: ActiveHealthChecker | undefined;
  /** Set by startHealthChecks: where ejections and health transitions are logged. */
  private log: HealthLog | undefined;

  /** protocol and tls (issue 14); undefined: HTTP/1.1 with Node's defaults. */
  readonly transport: Transport | undefined;

  constructor(
    readonly name: string,
    readonly config: ServiceConfig,
    baseDir: string = process.cwd(),
  ) {
    this.transport = transportOf(config, baseDir);
    const maxInFlight = config.maxConnectionsPerTarget;
    const slowStart = ms(config.slowStart) ?? 0;
    this.targets = config.targets.map(
      (t, index) =>
        new Target({
          ...(typeof t === "string" ? { url: t } : { url: t.url, weight: t.weight }),
          index,
          maxInFlight,
          slowStart,
        }),
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
    this.maxAttempts = Math.min(this.targets.length, 1 + this.retry.attempts);
    const od = config.outlierDetection;
    this.outlier = od
      ? new OutlierDetector(this.targets, {
          consecutiveFailures: od.consecutiveFailures ?? 5,
          ejectionTime: ms(od.ejectionTime ?? "30s"),
          maxEjectionPercent: od.maxEjectionPercent ?? 50,
        })
      : undefined;
    this.health = config.healthCheck ? this.activeChecker(config.healthCheck) : undefined;
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

  /** First probe of every target (resolves once each has a verdict), then probes on the interval. */
  async startHealthChecks(log?: HealthLog): Promise<void> {
    this.log = log;
    await this.health?.start();
  }

  stopHealthChecks(): void {
    this.health?.stop();
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

/** Every service of a config, by name. */
export function buildServices(
  services: Record<string, ServiceConfig>,
  baseDir?: string,
): Map<string, Service> {
  return new Map(Object.entries(services).map(([name, cfg]) => [name, new Service(name, cfg, baseDir)]));
}
