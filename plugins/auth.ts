/**
 * JWT auth at the edge (SPEC §2 `auth`, §5, §6) for one route. Everything is
 * decided here at load (which verifier, which scopes and claims, whether the
 * token travels on); the onRequest hook only reads the bearer token, verifies
 * it with the named @fastify/jwt verifier (src/auth/verifier.ts; its cache
 * makes a repeated token a map lookup), checks the
 * route's rule and leaves the payload in the request state for the policies
 * after it (rate limit by jwt:<claim>, fromClaims headers).
 *
 * Registered after CORS and the ip/header rate limit (src/policies.ts order),
 * so preflights are answered and floods refused before any crypto runs.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest, HookHandlerDoneFunction } from "fastify";
import fp from "fastify-plugin";
import { compileAccess } from "../src/auth/access.js";
import { type Claims, verifierFor } from "../src/auth/verifier.js";
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
    const verifier = verifierFor(generation, cfg.jwt as string);
    const allowed = compileAccess(cfg);
    const scopes = (cfg.scopes ?? []).filter((s) => SCOPE_TOKEN.test(s));
    const challengeForbidden =
      'Bearer realm="switchyard", error="insufficient_scope"' +
      (scopes.length > 0 ? `, scope="${scopes.join(" ")}"` : "");
    const forwardToken = cfg.forwardToken !== false;

    function refuse(
      request: FastifyRequest,
      reply: FastifyReply,
      err: unknown,
      done: HookHandlerDoneFunction,
    ) {
      // The reason is logged (debug: the access line already has the 401), never sent.
      request.log.debug(
        { verifier: verifier.name, reason: (err as { code?: string }).code, err: (err as Error).message },
        "token refused",
      );
      reply.header("www-authenticate", CHALLENGE_INVALID);
      done(new errors.SY_AUTH_INVALID());
    }

    function admit(
      request: FastifyRequest,
      reply: FastifyReply,
      claims: Claims,
      done: HookHandlerDoneFunction,
    ) {
      if (allowed !== undefined && !allowed(claims)) {
        reply.header("www-authenticate", challengeForbidden);
        done(new errors.SY_AUTH_FORBIDDEN());
        return;
      }
      request.raw[kState]!.claims = claims;
      // The forwarder copies request.raw.headers: what is deleted here never leaves the gateway.
      if (!forwardToken) delete request.raw.headers.authorization;
      done();
    }

    // Callback style: a cached token on a secret or public-key verifier is answered synchronously
    // (no promise, no microtask); a JWKS verifier's answer is a promise.
    policyHook(app, route, "onRequest", function authenticate(request, reply, done) {
      const token = bearerToken(request.headers.authorization);
      if (token === undefined) {
        reply.header("www-authenticate", CHALLENGE_MISSING);
        done(new errors.SY_AUTH_MISSING());
        return;
      }
      let claims: Claims | Promise<Claims>;
      try {
        claims = verifier.verify(token);
      } catch (err) {
        refuse(request, reply, err, done);
        return;
      }
      if (claims instanceof Promise)
        claims.then(
          (c) => admit(request, reply, c, done),
          (err: unknown) => refuse(request, reply, err, done),
        );
      else admit(request, reply, claims, done);
    });
  },
  { name: "switchyard-auth", fastify: "5.x" },
);
