/**
 * Active health checks (services.*.healthCheck): each target is probed every
 * `interval` — an HTTP GET of `path` for http(s) targets (healthy when the
 * status is within `expectStatus`), a TCP connect for tcp:// targets.
 * `unhealthyThreshold` failures in a row take a target out,
 * `healthyThreshold` successes in a row bring it back (with slow start).
 *
 * Start-up: every target begins healthy and the first probe runs during
 * `start()` — in the generation's onReady, before the gateway listens or a
 * reload swaps it in — and that first result alone decides (no threshold):
 * a target that is down at start-up never gets a request, and a healthy fleet
 * serves at once. This is Envoy's "no traffic until the first check" without
 * NGINX's wait, for the price of at most one probe `timeout` at start-up.
 *
 * udp:// targets are not probed: a datagram protocol has no generic "are you
 * there" (a connect() to a UDP port succeeds whether anything listens or not),
 * so they stay healthy and rely on passive signals (ICMP port unreachable on
 * their sessions).
 *
 * Probes use their own short-lived connections (never the proxy's pools), run
 * one at a time per target (the next is scheduled when the last ends), and
 * their timers are unref'd and cleared by stop().
 */
import http from "node:http";
import http2 from "node:http2";
import https from "node:https";
import { connect } from "node:net";
import type { ConnectionOptions } from "node:tls";
import type { Target } from "./target.js";
import type { Transport } from "./transport.js";

export interface HealthCheckSettings {
  path: string;
  interval: number;
  timeout: number;
  healthyThreshold: number;
  unhealthyThreshold: number;
  /** Inclusive status range that counts as healthy. */
  expect: readonly [number, number];
}

/** Resolves true when the target passed; never rejects. */
export type Probe = (target: Target, signal: AbortSignal) => Promise<boolean>;

export interface HealthEvents {
  /** A probe that started at `startedAt` passed (may end an outlier ejection early). */
  passed?(target: Target, startedAt: number): void;
  /** The verdict flipped. */
  changed?(target: Target, healthy: boolean): void;
}

/** "200-399" or "204" → [low, high]. */
export function statusRange(spec: string): [number, number] {
  const [lo, hi] = spec.split("-").map(Number);
  return [lo, hi ?? lo];
}

export function httpProbe(
  path: string,
  expect: readonly [number, number],
  timeout: number,
  tls?: ConnectionOptions,
): Probe {
  return (target, signal) =>
    new Promise((done) => {
      const mod = target.protocol === "https:" ? https : http;
      const req = mod.request({
        // The service's CA, client certificate and server name (services.*.tls), as the proxy uses.
        ...tls,
        host: target.host,
        port: target.port,
        method: "GET",
        path,
        agent: false,
        signal,
        timeout,
        headers: { host: target.origin.replace(/^https?:\/\//, ""), "user-agent": "switchyard-health-check" },
      });
      req.on("timeout", () => req.destroy());
      req.on("error", () => done(false));
      req.on("response", (res) => {
        res.resume();
        const s = res.statusCode ?? 0;
        done(s >= expect[0] && s <= expect[1]);
        req.destroy();
      });
      req.end();
    });
}

export function tcpProbe(timeout: number): Probe {
  return (target, signal) =>
    new Promise((done) => {
      const socket = connect({ host: target.host, port: target.port, signal, timeout });
      socket.on("connect", () => {
        done(true);
        socket.destroy();
      });
      socket.on("timeout", () => socket.destroy());
      socket.on("error", () => done(false));
      socket.on("close", () => done(false)); // no-op when already resolved
    });
}

/**
 * An HTTP/2 GET for h2 and h2c services (issue 14): a target that speaks
 * only HTTP/2 (a gRPC server) would fail an HTTP/1.1 probe. One session per
 * probe, closed after it, like the HTTP/1.1 probe's own connection.
 */
export function h2Probe(
  path: string,
  expect: readonly [number, number],
  timeout: number,
  tls?: ConnectionOptions,
): Probe {
  return (target, signal) =>
    new Promise((done) => {
      const session = http2.connect(target.origin, { ...tls });
      const finish = (ok: boolean) => {
        done(ok);
        session.destroy();
      };
      const onAbort = () => finish(false);
      signal.addEventListener("abort", onAbort, { once: true });
      session.once("close", () => signal.removeEventListener("abort", onAbort));
      session.on("error", () => finish(false));
      session.setTimeout(timeout, () => finish(false));
      const req = session.request({
        ":path": path,
        ":authority": target.origin.replace(/^https?:\/\//, ""),
        "user-agent": "switchyard-health-check",
      });
      req.on("error", () => finish(false));
      req.on("response", (h) => {
        const status = Number(h[":status"]);
        finish(status >= expect[0] && status <= expect[1]);
      });
      req.end();
    });
}

/** The probe for one target, by scheme; undefined for udp (see the header comment). */
export function probeFor(target: Target, s: HealthCheckSettings, transport?: Transport): Probe | undefined {
  if (transport?.h2) return h2Probe(s.path, s.expect, s.timeout, transport.tls);
  if (target.protocol === "http:" || target.protocol === "https:") {
    return httpProbe(s.path, s.expect, s.timeout, transport?.tls);
  }
  if (target.protocol === "tcp:") return tcpProbe(s.timeout);
  return undefined;
}

interface Streak {
  ok: number;
  bad: number;
  timer: NodeJS.Timeout | undefined;
}

export class ActiveHealthChecker {
  private running = false;
  private abort = new AbortController();
  private readonly streaks = new Map<Target, Streak>();

  constructor(
    private targets: readonly Target[],
    readonly settings: HealthCheckSettings,
    private readonly events: HealthEvents = {},
    private readonly probe: (t: Target) => Probe | undefined = (t) => probeFor(t, settings),
  ) {}

  /** First probe of every target (its result decides at once), then one every interval. */
  async start(): Promise<void> {
    if (this.running) return;
    this.running = true;
    this.abort = new AbortController();
    await Promise.all(this.targets.map((t) => this.first(t)));
  }

  /**
   * DNS discovery found new targets: once running, each gets its first probe
   * now (the result decides, as at start-up) and is probed on the interval
   * from then on; before start() nothing (start() probes the whole list).
   */
  async admit(joined: readonly Target[]): Promise<void> {
    if (!this.running) return;
    await Promise.all(joined.map((t) => this.first(t)));
  }

  /** A target's first probe (its result decides at once), then one every interval. */
  private async first(t: Target): Promise<void> {
    const probe = this.probe(t);
    if (probe === undefined) return;
    const streak: Streak = { ok: 0, bad: 0, timer: undefined };
    this.streaks.set(t, streak);
    const startedAt = Date.now();
    const ok = await this.run(probe, t);
    if (!this.running) return;
    if (ok) this.events.passed?.(t, startedAt);
    if (t.setHealthy(ok)) this.events.changed?.(t, ok);
    this.schedule(t, probe, streak);
  }

  /** Targets that left the service are no longer probed; `list` is the service's new list. */
  release(left: readonly Target[], list: readonly Target[]): void {
    this.targets = list;
    for (const t of left) {
      clearTimeout(this.streaks.get(t)?.timer);
      this.streaks.delete(t);
    }
  }

  stop(): void {
    this.running = false;
    this.abort.abort();
    for (const s of this.streaks.values()) clearTimeout(s.timer);
    this.streaks.clear();
  }

  private schedule(t: Target, probe: Probe, streak: Streak): void {
    if (!this.running) return;
    streak.timer = setTimeout(() => void this.tick(t, probe, streak), this.settings.interval);
    streak.timer.unref();
  }

  private async tick(t: Target, probe: Probe, streak: Streak): Promise<void> {
    const startedAt = Date.now();
    const ok = await this.run(probe, t);
    if (!this.running) return;
    this.record(t, ok, startedAt, streak);
    this.schedule(t, probe, streak);
  }

  private record(t: Target, ok: boolean, startedAt: number, streak: Streak): void {
    const s = this.settings;
    if (ok) {
      streak.ok++;
      streak.bad = 0;
      this.events.passed?.(t, startedAt);
      if (!t.healthy && streak.ok >= s.healthyThreshold && t.setHealthy(true)) this.events.changed?.(t, true);
    } else {
      streak.bad++;
      streak.ok = 0;
      if (t.healthy && streak.bad >= s.unhealthyThreshold && t.setHealthy(false))
        this.events.changed?.(t, false);
    }
  }

  /** One probe bounded by the timeout (belt and braces: the probes also time out themselves). */
  private run(probe: Probe, t: Target): Promise<boolean> {
    const signal = AbortSignal.any([this.abort.signal, AbortSignal.timeout(this.settings.timeout)]);
    return probe(t, signal).catch(() => false);
  }
}
