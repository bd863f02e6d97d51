/**
 * The signing keys of one JWKS endpoint (RFC 7517), for one (issuer, jwksUri).
 *
 * Written here rather than taken from get-jwks because the SPEC §6 promises
 * are about *when* the endpoint is fetched, which get-jwks does not offer:
 * its LRU drops a key when its TTL ends (so the last good keys stop working
 * while the endpoint is down) and every unknown kid is a fresh fetch (no
 * cool-down). Fetching, parsing and JWK → key conversion are undici and
 * node:crypto; what is ours is the schedule:
 *
 * - lazily loaded on the first token; concurrent callers share one fetch
 *   (single-flight);
 * - an unknown kid triggers a refetch at most once per `cooldownMs` (30 s):
 *   a flood of made-up kids costs the issuer one request per 30 s;
 * - keys older than `maxAgeMs` are refreshed in the background, so a key
 *   removed from the set stops being accepted without a restart;
 * - a failed fetch (down, timeout, 5xx, bad JSON, no usable key) changes
 *   nothing: the last good keys stay in use.
 */
import { createPublicKey, type JsonWebKey } from "node:crypto";
import { performance } from "node:perf_hooks";
import { request } from "undici";
import { algorithmsOfJwk } from "./algorithms.js";

export interface SigningKey {
  kid: string | undefined;
  /** Algorithms this key may verify (its type, narrowed by its `alg`). */
  algorithms: readonly string[];
  /** SPKI PEM: fast-jwt's key resolver wants a string or Buffer (one Buffer per key, reused). */
  pem: Buffer;
}

export interface JwksOptions {
  /** Least time between two fetches (after the first good load). Default 30 s (SPEC §6). */
  cooldownMs?: number;
  /** Refresh in the background when the keys are older than this. Default 10 min. */
  maxAgeMs?: number;
  /** Whole fetch (headers and body). Default 5 s. */
  timeoutMs?: number;
  /** Largest JWKS document read. Default 1 MB. */
  maxBytes?: number;
  /** Monotonic clock in ms (injectable for tests). */
  now?: () => number;
  log?: { warn(obj: object, msg: string): void };
}

export class JwksStore {
  /** Fetches started (for tests and the admin view). */
  fetches = 0;
  private byKid = new Map<string, SigningKey>();
  private keys: SigningKey[] = [];
  private loadedAt: number | undefined;
  private nextFetchAt = Number.NEGATIVE_INFINITY;
  private pending: Promise<void> | undefined;
  private readonly cooldownMs: number;
  private readonly maxAgeMs: number;
  private readonly timeoutMs: number;
  private readonly maxBytes: number;
  private readonly now: () => number;

  constructor(
    readonly uri: string,
    private readonly opts: JwksOptions = {},
  ) {
    this.cooldownMs = opts.cooldownMs ?? 30_000;
    this.maxAgeMs = opts.maxAgeMs ?? 600_000;
    this.timeoutMs = opts.timeoutMs ?? 5_000;
    this.maxBytes = opts.maxBytes ?? 1024 * 1024;
    this.now = opts.now ?? (() => performance.now());
  }

  /** The key for a token's (kid, alg); refetches once (bounded) when it is not known. */
  async resolve(kid: string | undefined, alg: string): Promise<SigningKey> {
    let key = this.find(kid, alg);
    if (key !== undefined) {
      if (this.loadedAt !== undefined && this.now() - this.loadedAt > this.maxAgeMs) void this.refresh();
      return key;
    }
    await this.refresh();
    key = this.find(kid, alg);
    if (key === undefined) throw new Error(`no JWKS key for kid ${kid ?? "(none)"} and alg ${alg}`);
    return key;
  }

  /** Start a fetch unless one is in flight (join it) or the cool-down forbids it. Never rejects. */
  refresh(): Promise<void> {
    if (this.pending !== undefined) return this.pending;
    const now = this.now();
    if (now < this.nextFetchAt) return Promise.resolve();
    this.nextFetchAt = now + this.cooldownMs;
    this.fetches++;
    this.pending = this.load().finally(() => {
      this.pending = undefined;
    });
    return this.pending;
  }

  /** A kid names one key; without a kid, the one key able to verify `alg`, if there is exactly one. */
  private find(kid: string | undefined, alg: string): SigningKey | undefined {
    if (kid !== undefined) {
      const k = this.byKid.get(kid);
      return k?.algorithms.includes(alg) ? k : undefined;
    }
    const fit = this.keys.filter((k) => k.algorithms.includes(alg));
    return fit.length === 1 ? fit[0] : undefined;
  }

  private async load(): Promise<void> {
    const first = this.loadedAt === undefined;
    try {
      const keys = parseJwks(await this.fetchJson());
      if (keys.length === 0) throw new Error("the JWKS has no usable signing key");
      this.keys = keys;
      this.byKid = new Map();
      for (const k of keys) if (k.kid !== undefined && !this.byKid.has(k.kid)) this.byKid.set(k.kid, k);
      this.loadedAt = this.now();
      // The first good load is not a refetch: a kid unknown right after it may still trigger one.
      if (first) this.nextFetchAt = Number.NEGATIVE_INFINITY;
    } catch (err) {
      this.opts.log?.warn(
        { jwksUri: this.uri, err: (err as Error).message, keptKeys: this.keys.length },
        "JWKS fetch failed; keeping the last good keys",
      );
    }
  }

  private async fetchJson(): Promise<unknown> {
    const res = await request(this.uri, {
      method: "GET",
      headers: { accept: "application/jwk-set+json, application/json" },
      signal: AbortSignal.timeout(this.timeoutMs),
    });
    if (res.statusCode !== 200) {
      await res.body.dump();
      throw new Error(`JWKS endpoint answered ${res.statusCode}`);
    }
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const chunk of res.body) {
      size += (chunk as Buffer).length;
      if (size > this.maxBytes) {
        res.body.destroy();
        throw new Error(`JWKS larger than ${this.maxBytes} bytes`);
      }
      chunks.push(chunk as Buffer);
    }
    return JSON.parse(Buffer.concat(chunks).toString("utf8"));
  }
}

/** Usable signing keys of a JWK Set; keys that do not parse or cannot sign are skipped. */
export function parseJwks(doc: unknown): SigningKey[] {
  const list = (doc as { keys?: unknown })?.keys;
  if (!Array.isArray(list)) throw new Error("not a JWK Set (no keys array)");
  const out: SigningKey[] = [];
  for (const jwk of list as (JsonWebKey & { kid?: unknown; alg?: string; use?: string })[]) {
    if (jwk === null || typeof jwk !== "object" || jwk.kty === "oct") continue;
    try {
      const key = createPublicKey({ key: jwk, format: "jwk" });
      const algorithms = algorithmsOfJwk(jwk, key);
      if (algorithms.length === 0) continue;
      const kid = typeof jwk.kid === "string" ? jwk.kid : undefined;
      out.push({ kid, algorithms, pem: Buffer.from(key.export({ type: "spki", format: "pem" }) as string) });
    } catch {
      // A malformed or unsupported key is skipped; the rest of the set stays usable.
    }
  }
  return out;
}
