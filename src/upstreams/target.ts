/**
 * One upstream endpoint of a service. Balancers only read it; health checking,
 * outlier detection and the forwarders write its counters and state.
 */
export interface TargetInit {
  /** The target as written in routes.yaml, e.g. "http://127.0.0.1:3001" or "tcp://db:5432". */
  url: string;
  /** Relative share of traffic (default 1). */
  weight?: number;
  /** Position in the service's target list; balancers key their per-target state on it. */
  index: number;
  /** Circuit breaker: most requests/connections in flight at once (default: no cap). */
  maxInFlight?: number;
  /** Slow start: ms over which the share ramps up after a recovery (0 = off). */
  slowStart?: number;
}

/**
 * A recovering target starts at this share of its weight: never 0, or a
 * weighted balancer would not pick it at all and the ramp would never be tried.
 */
const MIN_RAMP = 0.1;

export class Target {
  readonly url: string;
  /** "http:" | "https:" | "tcp:" | "udp:" */
  readonly protocol: string;
  readonly host: string;
  readonly port: number;
  /** scheme://host:port, the key of the connection pool (L7). */
  readonly origin: string;
  /** Position in the service's current list (DNS discovery renumbers when the list changes). */
  index: number;
  /** Configured weight; `effectiveWeight` may ramp it (slow start). */
  readonly weight: number;
  /** Circuit breaker cap on `inFlight` (maxConnectionsPerTarget); Infinity = none. */
  readonly maxInFlight: number;
  /** Slow start duration in ms (0 = off). */
  readonly slowStart: number;
  /** Requests (L7) or connections (L4) currently open to this target. */
  inFlight = 0;
  /**
   * Written by active health checks. A target starts healthy; when the service
   * has a healthCheck, the first probe runs before the gateway listens and its
   * result alone decides (see health-active.ts).
   */
  healthy = true;
  /** Passive outlier detection: ejected until this epoch-ms time (0 = never ejected). */
  ejectedUntil = 0;
  /** When the current ejection started (epoch ms). */
  ejectedAt = 0;
  /** Ejections so far, decaying while the target behaves: the next ejection lasts this × ejectionTime. */
  ejections = 0;
  /** Failures in a row from live traffic (connect errors, resets, timeouts, 5xx). */
  consecutiveFailures = 0;
  /** Drained by an operator: no new work, in-flight work finishes. */
  draining = false;
  /** Slow start: epoch ms the current ramp began (0 = not ramping). */
  rampFrom = 0;
  /** Totals for /admin/upstreams. */
  requests = 0;
  failures = 0;

  constructor(init: TargetInit) {
    const u = new URL(init.url);
    this.url = init.url;
    this.protocol = u.protocol;
    this.host = u.hostname.startsWith("[") ? u.hostname.slice(1, -1) : u.hostname;
    const defaultPort = u.protocol === "https:" ? 443 : 80;
    this.port = u.port === "" ? defaultPort : Number(u.port);
    this.origin = `${u.protocol}//${u.host}`;
    this.index = init.index;
    this.weight = init.weight ?? 1;
    this.maxInFlight = init.maxInFlight ?? Number.POSITIVE_INFINITY;
    this.slowStart = init.slowStart ?? 0;
  }

  /** May this target be given new work now? Healthy, not ejected or drained, and under its cap. */
  available(now: number = Date.now()): boolean {
    return this.inFlight < this.maxInFlight && this.usable(now);
  }

  /** Healthy, not ejected, not drained: what it would take to get work, capacity aside. */
  usable(now: number = Date.now()): boolean {
    return this.healthy && !this.draining && (this.ejectedUntil === 0 || this.ejectedUntil <= now);
  }

  /** Ejected by outlier detection right now? */
  ejected(now: number = Date.now()): boolean {
    return this.ejectedUntil > now;
  }

  /**
   * Weight used by weighted balancers. During slow start it grows linearly
   * from MIN_RAMP × weight to weight over `slowStart` ms (Envoy's slow_start_window
   * with aggression 1, NGINX's slow_start). Once the ramp is over the getter
   * clears `rampFrom`, so the steady state costs one comparison.
   */
  get effectiveWeight(): number {
    if (this.rampFrom === 0) return this.weight;
    const elapsed = Date.now() - this.rampFrom;
    if (elapsed >= this.slowStart) {
      this.rampFrom = 0;
      return this.weight;
    }
    return this.weight * Math.max(MIN_RAMP, elapsed / this.slowStart);
  }

  /** Start a slow-start ramp at `from` (a recovery); no-op when slow start is off. */
  startRamp(from: number): void {
    if (this.slowStart > 0) this.rampFrom = Math.max(1, from);
  }

  /** Active health check verdict. Returns true when the state changed. */
  setHealthy(ok: boolean, now: number = Date.now()): boolean {
    if (ok === this.healthy) return false;
    this.healthy = ok;
    if (ok) this.startRamp(now);
    return true;
  }

  /** Passive outlier ejection until `until`; its slow-start ramp begins when the ejection ends. */
  eject(now: number, until: number): void {
    this.ejectedAt = now;
    this.ejectedUntil = until;
    this.consecutiveFailures = 0;
    this.startRamp(until);
  }

  /** End an ejection early (a successful active probe); the ramp starts now. */
  uneject(now: number): void {
    if (this.ejectedUntil <= now) return;
    this.ejectedUntil = now;
    this.startRamp(now);
  }

  /** Resolves once nothing is in flight any more (after a drain). Polls: inFlight is a plain counter. */
  whenIdle(pollMs = 50): Promise<void> {
    return new Promise((done) => {
      const check = () => {
        if (this.inFlight <= 0) done();
        else setTimeout(check, pollMs).unref();
      };
      check();
    });
  }
}
