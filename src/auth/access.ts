/**
 * A route's authorisation after a valid token: every listed scope must be
 * granted, every listed claim must equal its value exactly. Compiled once per
 * route at load.
 *
 * Scopes come from `scope` (RFC 8693 §4.2 / RFC 9068: one space-separated
 * string) and `scp` (Azure AD, Okta: an array, sometimes a string); a token
 * may carry either, their union is what it grants.
 */
import type { Claims } from "./verifier.js";

export interface AccessRule {
  scopes?: string[];
  claims?: Record<string, string | number | boolean>;
}

export type AccessCheck = (claims: Claims) => boolean;

/** The check for one route, or undefined when any valid token is enough. */
export function compileAccess(rule: AccessRule): AccessCheck | undefined {
  const scopes = rule.scopes ?? [];
  const exact = Object.entries(rule.claims ?? {});
  if (scopes.length === 0 && exact.length === 0) return undefined;
  // A cached token's claims are the same object on every request: decided once per token.
  const decided = new WeakMap<Claims, boolean>();
  return function allowedOnce(claims: Claims): boolean {
    let ok = decided.get(claims);
    if (ok === undefined) {
      ok = allowed(claims);
      decided.set(claims, ok);
    }
    return ok;
  };
  function allowed(claims: Claims): boolean {
    for (const [k, v] of exact) if (claims[k] !== v) return false;
    if (scopes.length === 0) return true;
    const granted = grantedScopes(claims);
    for (const s of scopes) if (!granted.has(s)) return false;
    return true;
  }
}

export function grantedScopes(claims: Claims): Set<string> {
  const out = new Set<string>();
  for (const v of [claims.scope, claims.scp]) {
    if (typeof v === "string") for (const s of v.split(" ")) if (s !== "") out.add(s);
    if (Array.isArray(v)) for (const s of v) if (typeof s === "string") out.add(s);
  }
  return out;
}
