/**
 * Passive outlier detection (services.*.outlierDetection): live traffic is the
 * probe. `consecutiveFailures` failures in a row — connect errors, resets,
 * timeouts and 5xx answers, what Envoy's consecutive_5xx counts with local
 * origin errors folded in — eject the target for `ejectionTime` × the number of
 * times it was ejected (capped at MAX_MULTIPLIER), like Envoy's outlier
 * detection. The multiplier decays by one for every `ejectionTime` the target
 * then spends back in service without being ejected again.
 *
 * Never more than `maxEjectionPercent` of the service's targets are ejected at
 * once (rounded down, so 50% of one target is none): when that many are out,
 * failures keep counting and the next failure after one returns ejects. An
 * ejected target comes back when its time is up, or earlier when an active
 * probe that started after the ejection succeeds (Envoy's
 * successful_active_health_check_uneject_host).
 *
 * Writes target state only; it never calls a balancer (ARCHITECTURE principle 4).
 */
import type { Target } from "./target.js";

/** Longest ejection, as a multiple of `ejectionTime` (Envoy's default max_ejection_time is 10 × 30 s). */
export const MAX_MULTIPLIER = 10;

export interface OutlierSettings {
  consecutiveFailures: number;
  /** Base ejection time, ms. */
  ejectionTime: number;
  maxEjectionPercent: number;
}

export class OutlierDetector {
  private maxEjected = 0;

  constructor(
    private targets: readonly Target[],
    readonly settings: OutlierSettings,
  ) {
    this.setTargets(targets);
  }

  /** The service's target list changed (DNS discovery): the ejection cap follows its size. */
  setTargets(targets: readonly Target[]): void {
    this.targets = targets;
    this.maxEjected = Math.floor((targets.length * this.settings.maxEjectionPercent) / 100);
  }

  /** A good answer from the target: the failure streak is over. */
  success(t: Target): void {
    t.consecutiveFailures = 0;
  }

  /** A failure from live traffic. Returns true when it ejected the target. */
  failure(t: Target, now: number = Date.now()): boolean {
    t.consecutiveFailures++;
    if (t.consecutiveFailures < this.settings.consecutiveFailures) return false;
    // Late failures of requests sent before the ejection do not extend it.
    if (t.ejectedUntil > now || !this.mayEject(now)) return false;
    const base = this.settings.ejectionTime;
    // Decay: one step of the multiplier per ejectionTime spent back in service.
    const calm = t.ejectedUntil === 0 ? Number.POSITIVE_INFINITY : now - t.ejectedUntil;
    const earlier = Math.max(0, t.ejections - Math.floor(calm / base));
    t.ejections = Math.min(MAX_MULTIPLIER, earlier + 1);
    t.eject(now, now + base * t.ejections);
    return true;
  }

  /** An active probe that started at `probeStart` passed: end an ejection that began before it. */
  probePassed(t: Target, probeStart: number, now: number = Date.now()): void {
    if (t.ejectedUntil > now && probeStart >= t.ejectedAt) t.uneject(now);
  }

  /** Would one more ejection stay within maxEjectionPercent? */
  private mayEject(now: number): boolean {
    let ejected = 0;
    for (const t of this.targets) if (t.ejectedUntil > now) ejected++;
    return ejected < this.maxEjected;
  }
}
