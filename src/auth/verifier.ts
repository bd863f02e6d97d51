/**
 * Named JWT verifiers (routes.yaml `jwt:`), built once per config generation
 * and shared by every route that names them, so their verified-token caches
 * and JWKS keys are shared too. A reload builds a new generation and with it
 * new verifiers; the old ones are collected with it (WeakMap).
 *
 * Verification is fast-jwt's (what @fastify/jwt runs underneath; the plugin
 * itself only adds request.jwtVerify() and one verifier per registration,
 * which does not fit one verifier per name per generation):
 * - algorithms pinned per verifier (see algorithms.ts), and checked again
 *   against the resolved key, so `none` and HS/RS confusion cannot pass;
 * - exp / nbf with clockTolerance, iss / aud required when configured (fast-jwt
 *   skips a claim that is absent unless it is listed as required);
 * - a verified-token cache: a repeated token costs a hash lookup, no signature
 *   check; entries expire with the token (exp, nbf-aware) and at most after
 *   10 minutes, bounded to 10 000 tokens (LRU).
 */
import { createPublicKey } from "node:crypto";
import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import { createVerifier } from "fast-jwt";
import { ms } from "../config/duration.js";
import type { VerifierConfig } from "../config/schema.js";
import type { Generation } from "../generation.js";
import { ASYMMETRIC, algorithmsOfKey, HMAC, pinAlgorithms } from "./algorithms.js";
import { type JwksOptions, JwksStore } from "./jwks.js";

export type Claims = Record<string, unknown>;

export interface Verifier {
  readonly name: string;
  readonly algorithms: readonly string[];
  /** Resolves to the verified payload; rejects (any error) for an invalid token. */
  verify(token: string): Promise<Claims>;
  /** Tokens that went past the cache to a key lookup and signature check. */
  readonly stats: { checks: number };
  /** The JWKS store behind a jwksUri verifier. */
  readonly jwks: JwksStore | undefined;
}

interface TokenHeader {
  alg?: unknown;
  kid?: unknown;
}

type KeyResolver = (decoded: { header: TokenHeader }) => Promise<Buffer>;

export interface BuildContext {
  /** Relative publicKey paths are read from here (the config file's directory). */
  baseDir?: string;
  jwks?: JwksOptions;
}

const CACHE_SIZE = 10_000;
const CACHE_TTL = 600_000;

interface GenerationAuth {
  verifiers: Map<string, Verifier>;
  /** One key store per (issuer, jwksUri), shared by verifiers that name the same pair. */
  stores: Map<string, JwksStore>;
}

const byGeneration = new WeakMap<Generation, GenerationAuth>();

/** The named verifier of this generation, built on first use and then shared. */
export function verifierFor(generation: Generation, name: string, ctx: BuildContext = {}): Verifier {
  let g = byGeneration.get(generation);
  if (g === undefined) {
    g = { verifiers: new Map(), stores: new Map() };
    byGeneration.set(generation, g);
  }
  let v = g.verifiers.get(name);
  if (v === undefined) {
    const cfg = generation.config.jwt[name];
    if (cfg === undefined) throw new Error(`unknown JWT verifier '${name}'`);
    v = buildVerifier(name, cfg, g.stores, ctx);
    g.verifiers.set(name, v);
  }
  return v;
}

export function buildVerifier(
  name: string,
  cfg: VerifierConfig,
  stores: Map<string, JwksStore> = new Map(),
  ctx: BuildContext = {},
): Verifier {
  const stats = { checks: 0 };
  let algorithms: string[];
  let lookup: (header: TokenHeader, alg: string) => Buffer | Promise<Buffer>;
  let jwks: JwksStore | undefined;

  if (cfg.secret !== undefined) {
    algorithms = pinAlgorithms(name, cfg.algorithms ?? ["HS256"], HMAC);
    const secret = Buffer.from(cfg.secret, "utf8");
    lookup = () => secret;
  } else if (cfg.publicKey !== undefined) {
    const key = createPublicKey(readPem(cfg.publicKey, ctx.baseDir));
    algorithms = pinAlgorithms(name, cfg.algorithms, algorithmsOfKey(key));
    if (algorithms.length === 0) throw new Error(`jwt.${name}.publicKey: unsupported key type`);
    const pem = Buffer.from(key.export({ type: "spki", format: "pem" }) as string);
    lookup = () => pem;
  } else if (cfg.jwksUri !== undefined) {
    algorithms = pinAlgorithms(name, cfg.algorithms, ASYMMETRIC);
    const storeKey = `${cfg.issuer ?? ""}\n${cfg.jwksUri}`;
    jwks = stores.get(storeKey);
    if (jwks === undefined) {
      jwks = new JwksStore(cfg.jwksUri, ctx.jwks);
      stores.set(storeKey, jwks);
    }
    const store = jwks;
    lookup = async (header, alg) =>
      (await store.resolve(typeof header.kid === "string" ? header.kid : undefined, alg)).pem;
  } else {
    throw new Error(`jwt.${name}: needs one of secret, publicKey or jwksUri`);
  }

  // fast-jwt calls the resolver only after a cache miss: that is the count of real checks.
  const resolver: KeyResolver = async ({ header }) => {
    stats.checks++;
    const alg = header.alg;
    if (typeof alg !== "string" || !algorithms.includes(alg)) {
      throw new Error(`algorithm ${String(alg)} is not accepted by verifier ${name}`);
    }
    return lookup(header, alg);
  };

  const tolerance = ms(cfg.clockTolerance ?? "0s");
  const required = [
    ...(cfg.issuer !== undefined ? ["iss"] : []),
    ...(cfg.audience !== undefined ? ["aud"] : []),
  ];
  const verify = createVerifier({
    key: resolver as never,
    algorithms: algorithms as never,
    allowedIss: cfg.issuer,
    allowedAud: cfg.audience,
    requiredClaims: required.length > 0 ? required : undefined,
    clockTolerance: tolerance,
    cache: CACHE_SIZE,
    cacheTTL: CACHE_TTL,
    // Failures are not cached: a token refused for an unknown kid or a not-yet-valid
    // nbf may be good a moment later (fast-jwt keeps an error for ttl + clockTolerance).
    errorCacheTTL: (() => -tolerance - 1) as never,
  }) as unknown as (token: string) => Promise<Claims>;

  return { name, algorithms, verify, stats, jwks };
}

function readPem(value: string, baseDir = process.cwd()): string {
  return value.includes("-----BEGIN") ? value : readFileSync(resolve(baseDir, value), "utf8");
}
