/**
 * JWT auth at the edge (SPEC §2 `auth`, §5, §6) for one route. Everything is
 * decided here at load (which verifier, which scopes and claims, whether the
 * token travels on); the onRequest hook only reads the bearer token, verifies
 * it (the verifier's cache makes a repeated token a hash lookup), checks the
 * route's rule and leaves the payload in the request state for the policies
 * after it (rate limit by jwt:<claim>, fromClaims headers).
 *
 * Registered after CORS and the ip/header rate limit (src/policies.ts order),
 * so preflights are answered and floods refused before any crypto runs.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import fp from "fastify-plugin";
import { compileAccess } from "../src/auth/access.js";
import { verifierFor } from "../src/auth/verifier.js";
import { errors } from "../src/errors.js";
import { policyHook } from "../src/lane-plan.js";
import type { PolicyOptions } from "../src/policies.js";
import { kState } from "../src/request-state.js";

/** RFC 6750 §2.1: "Bearer" 1*SP b64token (the scheme is case-insensitive, RFC 9110 §11.1). */
const BEARER = /^Bearer +([A-Za-z0-9\-._~+/]+=*) *$/i;
/** RFC 6749 §3.3 scope-token characters: safe inside the quoted scope="…" parameter. */
const SCOPE_TOKEN = /^[\x21\x23-\x5b\x5d-\x7e]+$/;

// RFC 6750 §3: no error code when the request carried no credentials at all.
const CHALLENGE_MISSING = 'Bearer realm="switchyard"';
const CHALLENGE_INVALID = 'Bearer realm="switchyard", error="invalid_token"';

export function bearerToken(header: string | undefined): string | undefined {
  if (header === undefined) return undefined;
  return BEARER.exec(header)?.[1];
}

export const auth = fp(
  async function auth(app: FastifyInstance, { route, generation }: PolicyOptions) {
    const cfg = route.config.auth!;
    const verifier = verifierFor(generation, cfg.jwt as string, {
      baseDir: generation.baseDir,
      jwks: { log: app.log },
    });
    const allowed = compileAccess(cfg);
    const scopes = (cfg.scopes ?? []).filter((s) => SCOPE_TOKEN.test(s));
    const challengeForbidden =
      'Bearer realm="switchyard", error="insufficient_scope"' +
      (scopes.length > 0 ? `, scope="${scopes.join(" ")}"` : "");
    const forwardToken = cfg.forwardToken !== false;

    policyHook(
      app,
      route,
      "onRequest",
      async function authenticate(request: FastifyRequest, reply: FastifyReply) {
        const token = bearerToken(request.headers.authorization);
        if (token === undefined) {
          reply.header("www-authenticate", CHALLENGE_MISSING);
          throw new errors.SY_AUTH_MISSING();
        }
        let claims: Record<string, unknown>;
        try {
          claims = await verifier.verify(token);
        } catch (err) {
          // The reason is logged (debug: the access line already has the 401), never sent.
          request.log.debug(
            { verifier: verifier.name, reason: (err as { code?: string }).code, err: (err as Error).message },
            "token refused",
          );
          reply.header("www-authenticate", CHALLENGE_INVALID);
          throw new errors.SY_AUTH_INVALID();
        }
        if (allowed !== undefined && !allowed(claims)) {
          reply.header("www-authenticate", challengeForbidden);
          throw new errors.SY_AUTH_FORBIDDEN();
        }
        request.raw[kState]!.claims = claims;
        // The forwarder copies request.raw.headers: what is deleted here never leaves the gateway.
        if (!forwardToken) delete request.raw.headers.authorization;
      },
    );
  },
  { name: "switchyard-auth", fastify: "5.x" },
);
