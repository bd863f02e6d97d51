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
}

export class Target {
  readonly url: string;
  /** "http:" | "https:" | "tcp:" | "udp:" */
  readonly protocol: string;
  readonly host: string;
  readonly port: number;
  /** scheme://host:port, the key of the connection pool (L7). */
  readonly origin: string;
  readonly index: number;
  /** Configured weight; `effectiveWeight` may ramp it (slow start). */
  readonly weight: number;
  /** Requests (L7) or connections (L4) currently open to this target. */
  inFlight = 0;
  /** Written by active health checks; a target starts healthy. */
  healthy = true;
  /** Passive outlier detection: ejected until this epoch-ms time. */
  ejectedUntil = 0;
  /** Drained by an operator: no new work, in-flight work finishes. */
  draining = false;
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
  }

  /** May this target be given new work now? */
  available(now: number = Date.now()): boolean {
    return this.healthy && !this.draining && (this.ejectedUntil === 0 || this.ejectedUntil <= now);
  }

  /** Weight used by weighted balancers (slow start may lower it for a while). */
  get effectiveWeight(): number {
    return this.weight;
  }
}
