/**
 * Reload keeps what the gateway has learnt about its targets (ARCHITECTURE
 * principle 7): for every target of the next generation that the running one
 * also had — same service name, same URL — health, ejection (with its
 * multiplier), failure streak, drain, slow-start ramp and the request and
 * failure totals carry over. A target
 * new to an existing service starts a slow-start ramp, like a host added to an
 * Envoy cluster. In-flight counts do not carry: they belong to the requests of
 * the old generation and are released there.
 *
 * The next generation's first active probe still runs at its onReady and
 * decides the carried `healthy` afresh.
 */
import type { HasServices } from "./drain.js";
import type { Target } from "./target.js";

export function carryOver(prev: HasServices, next: HasServices, now: number = Date.now()): void {
  for (const [name, svc] of next.services) {
    const old = prev.services.get(name);
    if (old === undefined) continue;
    // DNS-discovered targets are made after this (in onReady): the service carries them itself.
    svc.inherit(old);
    for (const t of svc.targets) {
      const o = old.targets.find((x) => x.url === t.url);
      if (o === undefined) {
        t.startRamp(now);
        continue;
      }
      carryTarget(o, t);
    }
  }
}

/** What target `t` of the next generation takes from `o`, the running one's target of the same URL. */
export function carryTarget(o: Target, t: Target): void {
  t.healthy = o.healthy;
  t.ejectedUntil = o.ejectedUntil;
  t.ejectedAt = o.ejectedAt;
  t.ejections = o.ejections;
  t.consecutiveFailures = o.consecutiveFailures;
  t.draining = o.draining;
  // Totals stay process totals (admin API, dashboard rates), not per generation.
  t.requests = o.requests;
  t.failures = o.failures;
  if (o.rampFrom !== 0) t.startRamp(o.rampFrom);
}
