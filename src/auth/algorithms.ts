/**
 * Which JWS algorithms (RFC 7518 §3.1) a key may verify. A verifier's list is
 * pinned at load from its key material, so a token cannot choose how it is
 * checked: an HMAC verifier never accepts RS/ES/PS/EdDSA and a public-key
 * verifier never accepts HS* (the "key confusion" attack, where a public key
 * is used as an HMAC secret). `none` appears nowhere.
 */
import type { JsonWebKey, KeyObject } from "node:crypto";

export const HMAC = ["HS256", "HS384", "HS512"] as const;
export const RSA = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512"] as const;
const RSA_PSS = ["PS256", "PS384", "PS512"] as const;
const EC_BY_CURVE: Record<string, string> = {
  // Stryker disable next-line StringLiteral: Node names this curve prime256v1 in asymmetricKeyDetails (even for a JWK with crv P-256): this spelling is never looked up
  "P-256": "ES256",
  prime256v1: "ES256",
  // Stryker disable next-line StringLiteral: Node names this curve secp384r1 in asymmetricKeyDetails (even for a JWK with crv P-384): this spelling is never looked up
  "P-384": "ES384",
  secp384r1: "ES384",
  // Stryker disable next-line StringLiteral: Node names this curve secp521r1 in asymmetricKeyDetails (even for a JWK with crv P-521): this spelling is never looked up
  "P-521": "ES512",
  secp521r1: "ES512",
};
/** Every asymmetric algorithm: the default for a JWKS verifier (each key then narrows it). */
export const ASYMMETRIC: readonly string[] = [...RSA, "ES256", "ES384", "ES512", "EdDSA"];

/** Algorithms a public key can verify, from its type (and curve). */
export function algorithmsOfKey(key: KeyObject): string[] {
  switch (key.asymmetricKeyType) {
    case "rsa":
      return [...RSA];
    case "rsa-pss": {
      // A PSS key whose parameters name a hash verifies only the PS algorithm of that hash.
      const hash = key.asymmetricKeyDetails?.hashAlgorithm;
      return hash === undefined ? [...RSA_PSS] : RSA_PSS.filter((a) => `sha${a.slice(2)}` === hash);
    }
    case "ec": {
      // Stryker disable next-line StringLiteral: an EC key always has a namedCurve; the fallback only has to name no curve
      const alg = EC_BY_CURVE[key.asymmetricKeyDetails?.namedCurve ?? ""];
      return alg ? [alg] : [];
    }
    case "ed25519":
    case "ed448":
      return ["EdDSA"];
    default:
      return [];
  }
}

/**
 * Algorithms one JWK may verify: its key type's, narrowed to its `alg` when
 * it names one (RFC 7517 §4.4). Symmetric (`oct`) and encryption keys are
 * never signing keys for us: an empty list.
 */
export function algorithmsOfJwk(jwk: JsonWebKey & { alg?: string; use?: string }, key: KeyObject): string[] {
  if (jwk.use !== undefined && jwk.use !== "sig") return [];
  const byType = algorithmsOfKey(key);
  if (typeof jwk.alg === "string") return byType.includes(jwk.alg) ? [jwk.alg] : [];
  return byType;
}

/**
 * The verifier's pinned list: the configured one, checked against what the
 * key can do (a list naming an algorithm the key cannot verify is a config
 * error, reported at load rather than as 401s later), or the key's own.
 */
export function pinAlgorithms(
  name: string,
  configured: readonly string[] | undefined,
  possible: readonly string[],
) {
  if (configured === undefined) return [...possible];
  const wrong = configured.filter((a) => !possible.includes(a));
  if (wrong.length > 0) {
    throw new Error(
      `jwt.${name}.algorithms: ${wrong.join(", ")} cannot be verified with this key (possible: ${possible.join(", ")})`,
    );
  }
  return [...configured];
}
