/**
 * The retry policy of a service (services.*.retries), decided once at load.
 *
 * Without a `retries` block a service still retries connect failures (nothing
 * reached the target, so any method is safe; ARCHITECTURE principle 8) up to
 * 2 more times on other targets, at once. With the block, every listed
 * condition is retried, with jittered exponential backoff:
 *  - connect-failure: any method (nothing was sent);
 *  - reset, timeout, 502/503/504: only `methods`, or any method carrying an
 *    Idempotency-Key header when `idempotencyKey` is true (the default).
 * Each retry goes to a target this request has not tried yet, within the
 * service's retry budget (retry-budget.ts).
 */
import { ms } from "../config/duration.js";
import type { ServiceConfig } from "../config/schema.js";

export type RetryCondition = "connect-failure" | "reset" | "timeout" | "502" | "503" | "504";

export interface RetryPolicy {
  /** Retries after the first try. */
  attempts: number;
  on: ReadonlySet<string>;
  methods: ReadonlySet<string>;
  idempotencyKey: boolean;
  /** Backoff before retry n: uniform in [0, min(max, base × 2^(n-1))] ("full jitter"); base 0 = none. */
  backoffBase: number;
  backoffMax: number;
}

const DEFAULT_ON = ["connect-failure", "reset", "502", "503", "504"];
const DEFAULT_METHODS = ["GET", "HEAD", "OPTIONS", "PUT", "DELETE"];

export function retryPolicy(cfg: ServiceConfig["retries"]): RetryPolicy {
  if (cfg === undefined) {
    return {
      attempts: 2,
      on: new Set(["connect-failure"]),
      methods: new Set(),
      idempotencyKey: false,
      backoffBase: 0,
      backoffMax: 0,
    };
  }
  return {
    attempts: cfg.attempts ?? 2,
    // String(): YAML reads an unquoted 503 as a number.
    on: new Set((cfg.on ?? DEFAULT_ON).map(String)),
    methods: new Set(cfg.methods ?? DEFAULT_METHODS),
    idempotencyKey: cfg.idempotencyKey ?? true,
    backoffBase: ms(cfg.backoff?.base ?? "25ms"),
    backoffMax: ms(cfg.backoff?.max ?? "250ms"),
  };
}

/** May a request with this method and these headers be re-sent after something reached the target? */
export function replayableMethod(
  p: RetryPolicy,
  method: string,
  headers: Record<string, string | string[] | undefined>,
): boolean {
  return p.methods.has(method) || (p.idempotencyKey && headers["idempotency-key"] !== undefined);
}

/** Does the policy retry anything beyond connect failures (so a body may need replaying)? */
export function retriesAfterSend(p: RetryPolicy): boolean {
  if (p.attempts === 0) return false;
  for (const c of p.on) if (c !== "connect-failure") return true;
  return false;
}

/** Delay before retry number `n` (1-based). */
export function backoffDelay(p: RetryPolicy, n: number, random: () => number = Math.random): number {
  if (p.backoffBase === 0) return 0;
  const cap = Math.min(p.backoffMax, p.backoffBase * 2 ** (n - 1));
  return Math.floor(random() * cap);
}
