/**
 * Named JWT verifiers (routes.yaml `jwt:`), one @fastify/jwt registration per
 * name (its `namespace`) on each config generation's Fastify instance, shared
 * by every route that names it, so its verified-token cache and JWKS keys are
 * shared too. The routes' auth hooks, on Fastify's path and on the lane,
 * call the instance-level `fastify.jwt.<name>.verify(token)`, which needs no
 * request. A reload builds a new generation and with it new verifiers.
 *
 * What @fastify/jwt's verify options carry (fast-jwt underneath):
 * - `algorithms` pinned per verifier (see algorithms.ts): `none` and HS/RS
 *   confusion cannot pass; a JWKS verifier also checks the token's alg
 *   against the resolved key in its key function;
 * - exp / nbf with clockTolerance, iss / aud required when configured
 *   (fast-jwt skips a claim that is absent unless it is listed as required);
 * - the verified-token cache: a repeated token costs a map lookup and no
 *   signature check; entries expire with the token (exp, nbf-aware) and at
 *   most after 10 minutes, bounded to 10 000 tokens (LRU). Keyed by the token
 *   itself (up to 1 KB; longer ones by their SHA-256) rather than fast-jwt's
 *   default SHA-256 of every token: the hash measured ~3 µs of a cached
 *   verification (profile, issue 11); the keys take ~10 MB at most.
 * A secret or public key is a static key: a cached token verifies
 * synchronously. A JWKS key is a key function: every verification resolves
 * a promise.
 */
import { createHash, createPublicKey } from "node:crypto";
import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import fastifyJwt from "@fastify/jwt";
import Fastify, { type FastifyInstance } from "fastify";
import fp from "fastify-plugin";
import { ms } from "../config/duration.js";
import type { VerifierConfig } from "../config/schema.js";
import type { Generation } from "../generation.js";
import { ASYMMETRIC, algorithmsOfKey, HMAC, pinAlgorithms } from "./algorithms.js";
import { type JwksOptions, JwksStore } from "./jwks.js";
import { verifiableKey } from "./pss-key.js";

export type Claims = Record<string, unknown>;

export interface Verifier {
  readonly name: string;
  readonly algorithms: readonly string[];
  /** The verified payload (a promise for a JWKS verifier); throws or rejects for an invalid token. */
  verify(token: string): Claims | Promise<Claims>;
  /** Tokens that went past the cache to a key lookup and signature check. */
  readonly stats: { readonly checks: number };
  /** The JWKS store behind a jwksUri verifier. */
  readonly jwks: JwksStore | undefined;
}

interface TokenHeader {
  alg?: unknown;
  kid?: unknown;
}

export interface BuildContext {
  /** Relative publicKey paths are read from here (the config file's directory). */
  baseDir?: string;
  jwks?: JwksOptions;
}

const CACHE_SIZE = 10_000;
const CACHE_TTL = 600_000;

const byGeneration = new WeakMap<Generation, Map<string, Verifier>>();

/** The named verifier of this generation (registered by `verifiers`). */
export function verifierFor(generation: Generation, name: string): Verifier {
  const v = byGeneration.get(generation)?.get(name);
  if (v === undefined) throw new Error(`unknown JWT verifier '${name}'`);
  return v;
}

/** Register every named verifier of the generation on `app` (its gateway scope). */
export const verifiers = fp<{ generation: Generation }>(
  async function verifiers(app, { generation }) {
    const stores = new Map<string, JwksStore>();
    const made = new Map<string, Verifier>();
    for (const [name, cfg] of Object.entries(generation.config.jwt))
      made.set(
        name,
        await registerVerifier(app, name, cfg, stores, {
          baseDir: generation.baseDir,
          jwks: { log: app.log },
        }),
      );
    byGeneration.set(generation, made);
  },
  // Stryker disable next-line ObjectLiteral,StringLiteral: the plugin's name only labels it in Fastify's plugin tree; nothing depends on it by name
  { name: "switchyard-verifiers" },
);

/**
 * One verifier on `app`: its key and pinned algorithms from the config (a
 * mismatch is a config error, thrown here), then @fastify/jwt under its name.
 * `stores` shares one JWKS store per (issuer, jwksUri).
 */
export async function registerVerifier(
  app: FastifyInstance,
  name: string,
  cfg: VerifierConfig,
  stores: Map<string, JwksStore> = new Map(),
  ctx: BuildContext = {},
): Promise<Verifier> {
  // fast-jwt builds a token's cache key once to look it up and once more to store what its
  // verification found: keys built beyond the lookups are the real checks.
  const count = { lookups: 0, keys: 0 };
  const stats = {
    get checks() {
      return count.keys - count.lookups;
    },
  };
  let algorithms: string[];
  let secret: string | Buffer | { public: Buffer } | ((decoded: { header: TokenHeader }) => Promise<Buffer>);
  let jwks: JwksStore | undefined;

  if (cfg.secret !== undefined) {
    algorithms = pinAlgorithms(name, cfg.algorithms ?? ["HS256"], HMAC);
    secret = Buffer.from(cfg.secret, "utf8");
  } else if (cfg.publicKey !== undefined) {
    const key = createPublicKey(readPem(cfg.publicKey, ctx.baseDir));
    algorithms = pinAlgorithms(name, cfg.algorithms, algorithmsOfKey(key));
    if (algorithms.length === 0) throw new Error(`jwt.${name}.publicKey: unsupported key type`);
    const usable = verifiableKey(key);
    secret = { public: Buffer.from(usable.export({ type: "spki", format: "pem" }) as string) };
  } else if (cfg.jwksUri !== undefined) {
    algorithms = pinAlgorithms(name, cfg.algorithms, ASYMMETRIC);
    const storeKey = `${cfg.issuer ?? ""}\n${cfg.jwksUri}`;
    jwks = stores.get(storeKey);
    if (jwks === undefined) {
      jwks = new JwksStore(cfg.jwksUri, ctx.jwks);
      stores.set(storeKey, jwks);
    }
    const store = jwks;
    const pinned = algorithms;
    // Called only after a cache miss; the token's alg must be pinned and fit the key found for its kid.
    secret = async ({ header }) => {
      const alg = header.alg;
      if (typeof alg !== "string" || !pinned.includes(alg))
        throw new Error(`algorithm ${String(alg)} is not accepted by verifier ${name}`);
      return (await store.resolve(typeof header.kid === "string" ? header.kid : undefined, alg)).pem;
    };
  } else {
    throw new Error(`jwt.${name}: needs one of secret, publicKey or jwksUri`);
  }

  const tolerance = ms(cfg.clockTolerance ?? "0s");
  const required = [
    ...(cfg.issuer !== undefined ? ["iss"] : []),
    ...(cfg.audience !== undefined ? ["aud"] : []),
  ];
  // fast-jwt warns (FAST_JWT_CACHE_KEY_BUILDER_SECURITY_RISK, GHSA-rp9m-7r4c-75qg) whenever a
  // custom cacheKeyBuilder is given: the advisory is about builders that collide. Ours cannot: the
  // key is the token itself, or its SHA-256 when longer than 1 KB. That one warning is dropped
  // while the verifier registers, so operators do not read a security alarm at every start.
  const emitWarning = process.emitWarning;
  process.emitWarning = ((warning: string | Error, ...rest: unknown[]) => {
    if ((rest[0] as { code?: string } | undefined)?.code === "FAST_JWT_CACHE_KEY_BUILDER_SECURITY_RISK")
      return;
    (emitWarning as (...a: unknown[]) => void).call(process, warning, ...rest);
  }) as typeof process.emitWarning;
  try {
    await app.register(fastifyJwt, {
      namespace: name,
      secret: secret as never,
      // Sign mode is not ours: a verifier only verifies (and a key function serves both otherwise).
      sign: undefined,
      verify: {
        algorithms: algorithms as never,
        allowedIss: cfg.issuer,
        allowedAud: cfg.audience,
        requiredClaims: required.length > 0 ? required : undefined,
        clockTolerance: tolerance,
        cache: CACHE_SIZE,
        cacheTTL: CACHE_TTL,
        cacheKeyBuilder: (token: string) => {
          count.keys++;
          // Failed tokens are cached too (and expire at once): a forged 16 KB token stays 32 bytes.
          return token.length <= 1024 ? token : createHash("sha256").update(token).digest("base64");
        },
        // Failures are not cached: a token refused for an unknown kid or a not-yet-valid
        // nbf may be good a moment later (fast-jwt keeps an error for ttl + clockTolerance).
        errorCacheTTL: (() => -tolerance - 1) as never,
      } as never,
    });
  } finally {
    process.emitWarning = emitWarning;
  }
  const jwt = (app as unknown as { jwt: Record<string, { verify(t: string): Claims | Promise<Claims> }> })
    .jwt[name];
  return {
    name,
    algorithms,
    verify(token: string) {
      count.lookups++;
      return jwt.verify(token);
    },
    stats,
    jwks,
  };
}

/** A verifier on a Fastify instance of its own (tests, and tools that check tokens outside a gateway). */
export async function buildVerifier(
  name: string,
  cfg: VerifierConfig,
  ctx: BuildContext = {},
): Promise<Verifier> {
  const app = Fastify({ logger: false }) as unknown as FastifyInstance;
  const v = await registerVerifier(app, name, cfg, new Map(), ctx);
  await app.ready();
  return v;
}

function readPem(value: string, baseDir = process.cwd()): string {
  return value.includes("-----BEGIN") ? value : readFileSync(resolve(baseDir, value), "utf8");
}
