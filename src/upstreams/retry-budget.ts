/**
 * The retry budget (services.*.retries.budget), after Envoy's retry_budget:
 * retries in flight may be at most `ratio` of the service's requests in
 * flight, and never fewer than `min` (3) so a quiet service can still retry.
 * A retry that does not fit is not queued: the request answers with what it
 * has (the upstream's 5xx, or 502/504).
 *
 * "Retries in flight" counts every retry made by a request that is still in
 * flight — a slot is held until the request ends, not only while its retry
 * attempt runs. That is stricter than Envoy and is what keeps a burst during
 * a full outage near (1 + ratio) × requests upstream attempts instead of
 * (1 + attempts) × requests: when the burst drains, the few requests left
 * already hold their slots and cannot spend the floor of 3 over and over.
 *
 * It bounds concurrency, not a count over time: a trickle of sequential
 * requests (one in flight) is always within the minimum and always retried.
 * Connect failures are not charged (plugins/balance.ts): nothing reached the
 * target, so retrying them adds no load.
 */
export class RetryBudget {
  /** Requests to the service in flight at the gateway (first attempts, retries and backoffs alike). */
  requests = 0;
  /** Retries in flight: granted to requests that have not ended yet. */
  retries = 0;

  constructor(
    readonly ratio: number,
    readonly min = 3,
  ) {}

  /** Take one retry slot if the budget allows. */
  tryAcquire(): boolean {
    if (this.retries + 1 > Math.max(this.min, this.ratio * this.requests)) return false;
    this.retries++;
    return true;
  }

  /** Give back `n` slots (a request ended). */
  release(n = 1): void {
    this.retries = Math.max(0, this.retries - n);
  }
}

/** "20%" → 0.2 */
export function percent(spec: string): number {
  return Number(spec.replace("%", "")) / 100;
}
