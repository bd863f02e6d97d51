/**
 * JWKS verifiers against a real JWKS endpoint on 127.0.0.1:0 (node:http), the
 * keys and tokens made by jose: key rotation without restart, single-flight
 * refetch on an unknown kid at most once per cool-down, last good keys while
 * the endpoint is down, and no symmetric or mismatched key ever accepted.
 */
import assert from "node:assert/strict";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { after, before, describe, test } from "node:test";
import { exportJWK, generateKeyPair, type JWK, SignJWT } from "jose";
import { JwksStore } from "../../src/auth/jwks.js";
import { verifierFor } from "../../src/auth/verifier.js";
import { type Backend, backend, gateway, type Running, request } from "../helpers/index.js";

const ISS = "https://issuer.test/";
const AUD = "orders-api";

interface JwksServer {
  url: string;
  hits: number;
  keys: JWK[];
  status: number;
  close(): Promise<void>;
}

async function jwksServer(keys: JWK[]): Promise<JwksServer> {
  const s = { hits: 0, keys, status: 200 } as JwksServer;
  const server = http.createServer((_req, res) => {
    s.hits++;
    if (s.status !== 200) {
      res.writeHead(s.status).end("down");
      return;
    }
    res.setHeader("content-type", "application/jwk-set+json");
    res.end(JSON.stringify({ keys: s.keys }));
  });
  await new Promise<void>((ok) => server.listen(0, "127.0.0.1", ok));
  s.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/.well-known/jwks.json`;
  s.close = () =>
    new Promise<void>((ok) => {
      server.closeAllConnections();
      server.close(() => ok());
    });
  return s;
}

interface SigningKey {
  kid: string;
  alg: string;
  jwk: JWK;
  sign(claims?: Record<string, unknown>, header?: Record<string, unknown>): Promise<string>;
}

let serial = 0;
async function signingKey(kid: string, alg: "RS256" | "ES256" | "PS256"): Promise<SigningKey> {
  const { publicKey, privateKey } = await generateKeyPair(alg, { extractable: true });
  const jwk = { ...(await exportJWK(publicKey)), kid, alg, use: "sig" };
  return {
    kid,
    alg,
    jwk,
    // every token differs (jti), so the verified-token cache never hides a key lookup
    sign: (claims = {}, header = {}) =>
      new SignJWT({ iss: ISS, aud: AUD, sub: "u-1", jti: String(++serial), ...claims })
        .setProtectedHeader({ alg, kid, ...header })
        .setIssuedAt()
        .setExpirationTime("5m")
        .sign(privateKey),
  };
}

describe("auth: JWKS verifiers", () => {
  let echo: Backend;
  let k1: SigningKey;
  let k2: SigningKey;
  const open: { close(): Promise<void> }[] = [];

  async function start(jwks: JwksServer): Promise<Running> {
    const gw = await gateway(`
jwt:
  public: { jwksUri: "${jwks.url}", issuer: "${ISS}", audience: ${AUD} }
services:
  echo: { targets: [${echo.url}] }
routes:
  - { name: api, match: { path: /api }, service: echo, auth: { jwt: public } }
`);
    open.push(gw);
    return gw;
  }
  async function server(keys: JWK[]): Promise<JwksServer> {
    const s = await jwksServer(keys);
    open.push(s);
    return s;
  }
  const call = (gw: Running, token: string) =>
    request(gw.url, { path: "/api", headers: { authorization: `Bearer ${token}` } });

  before(async () => {
    echo = await backend("echo");
    k1 = await signingKey("k1", "RS256");
    k2 = await signingKey("k2", "ES256");
  });
  after(async () => {
    for (const x of open) await x.close();
    await echo.close();
  });

  test("keys are fetched once and reused; rotation to a new kid works without restart", async () => {
    const jwks = await server([k1.jwk]);
    const gw = await start(jwks);
    assert.equal(jwks.hits, 0, "fetched lazily, on the first token");
    for (let i = 0; i < 5; i++) assert.equal((await call(gw, await k1.sign())).status, 200);
    assert.equal(jwks.hits, 1, "five different tokens, one JWKS fetch");

    // The issuer rotates: k2 published, k1 withdrawn.
    jwks.keys = [k2.jwk];
    const r = await call(gw, await k2.sign());
    assert.equal(r.status, 200, r.body);
    assert.equal(jwks.hits, 2, "the unknown kid triggered exactly one refetch");
    const old = await call(gw, await k1.sign());
    assert.equal(old.status, 401, "a withdrawn key is no longer accepted");
    assert.equal(old.json().code, "SY_AUTH_INVALID");
  });

  test("an unknown kid: 20 concurrent requests make one refetch, then none during the cool-down", async () => {
    const jwks = await server([k1.jwk]);
    const gw = await start(jwks);
    const first = await Promise.all(Array.from({ length: 20 }, async () => call(gw, await k1.sign())));
    assert.deepEqual(new Set(first.map((r) => r.status)), new Set([200]));
    assert.equal(jwks.hits, 1, "the first load is single-flight too");

    const ghost = await signingKey("ghost", "RS256"); // signed by a key the issuer never published
    const tokens = await Promise.all(Array.from({ length: 20 }, () => ghost.sign()));
    const rs = await Promise.all(tokens.map((t) => call(gw, t)));
    assert.deepEqual(new Set(rs.map((r) => r.status)), new Set([401]));
    assert.equal(jwks.hits, 2, "20 requests with an unknown kid, one refetch");

    const ghost2 = await signingKey("ghost-2", "RS256");
    await Promise.all(Array.from({ length: 20 }, async () => call(gw, await ghost2.sign())));
    assert.equal(jwks.hits, 2, "another unknown kid within 30 s: no refetch");
    assert.equal((await call(gw, await k1.sign())).status, 200, "known keys keep working");
  });

  test("the JWKS endpoint down: the last good keys stay in use", async () => {
    const jwks = await server([k1.jwk]);
    const gw = await start(jwks);
    assert.equal((await call(gw, await k1.sign())).status, 200);
    await jwks.close();
    for (let i = 0; i < 3; i++) assert.equal((await call(gw, await k1.sign())).status, 200);
    const ghost = await signingKey("new-kid", "RS256");
    const r = await call(gw, await ghost.sign());
    assert.equal(r.status, 401, "an unknown kid while the endpoint is down is refused, not an error");
    assert.equal((await call(gw, await k1.sign())).status, 200);
  });

  test("never a symmetric key, never a key of another type than the token's alg", async () => {
    const secret = new TextEncoder().encode("shared-secret-shared-secret-1234");
    const oct = { kty: "oct", k: Buffer.from(secret).toString("base64url"), kid: "sym", alg: "HS256" };
    const jwks = await server([k1.jwk, k2.jwk, oct]);
    const gw = await start(jwks);
    const hsToken = await new SignJWT({ iss: ISS, aud: AUD, sub: "u-1" })
      .setProtectedHeader({ alg: "HS256", kid: "sym" })
      .sign(secret);
    assert.equal((await call(gw, hsToken)).status, 401, "an oct key in the JWKS is never used");
    // An HS256 token naming the RSA key, signed with that key's public JWK text as the secret.
    const confused = await new SignJWT({ iss: ISS, aud: AUD, sub: "u-1" })
      .setProtectedHeader({ alg: "HS256", kid: "k1" })
      .sign(new TextEncoder().encode(JSON.stringify(k1.jwk)));
    assert.equal((await call(gw, confused)).status, 401);
    // A real ES256 signature whose header claims the RSA key's kid.
    assert.equal((await call(gw, await k2.sign({}, { kid: "k1" }))).status, 401);
    assert.equal((await call(gw, await k2.sign())).status, 200, "control: k2 as published");
    assert.equal(
      (await call(gw, await k1.sign({ iss: "https://evil.test/" }))).status,
      401,
      "iss still checked",
    );
  });

  test("a token without kid: the one published key able to verify its alg, never a guess", async () => {
    const jwks = await server([k1.jwk, k2.jwk]);
    const gw = await start(jwks);
    assert.equal(
      (await call(gw, await k1.sign({}, { kid: undefined }))).status,
      200,
      "one RSA key: that one",
    );
    const k3 = await signingKey("k3", "RS256");
    const two = await server([k1.jwk, k3.jwk]);
    const gw2 = await start(two);
    assert.equal(
      (await call(gw2, await k1.sign({}, { kid: undefined }))).status,
      401,
      "two RSA keys: ambiguous",
    );
  });

  test("a repeated token is verified once (the JWKS verifier's cache)", async () => {
    const jwks = await server([k1.jwk]);
    const gw = await start(jwks);
    const v = verifierFor(gw.gw.generation, "public");
    const t = await k1.sign();
    for (let i = 0; i < 10; i++) assert.equal((await call(gw, t)).status, 200);
    assert.equal(v.stats.checks, 1);
    assert.equal(v.jwks?.fetches, 1);
  });
});

describe("JwksStore schedule (injected clock)", () => {
  let jwks: JwksServer;
  let k1: SigningKey;
  before(async () => {
    k1 = await signingKey("k1", "RS256");
    jwks = await jwksServer([k1.jwk]);
  });
  after(() => jwks.close());

  test("an unknown kid refetches again once the 30 s cool-down has passed", async () => {
    jwks.hits = 0;
    let t = 1_000;
    const store = new JwksStore(jwks.url, { now: () => t });
    assert.deepEqual((await store.resolve("k1", "RS256")).algorithms.includes("RS256"), true);
    await assert.rejects(store.resolve("k9", "RS256"), /no JWKS key/);
    await assert.rejects(store.resolve("k9", "RS256"), /no JWKS key/);
    assert.equal(jwks.hits, 2, "load + one refetch");
    t += 29_000;
    await assert.rejects(store.resolve("k9", "RS256"));
    assert.equal(jwks.hits, 2);
    t += 2_000;
    await assert.rejects(store.resolve("k9", "RS256"));
    assert.equal(jwks.hits, 3, "after 30 s, one more");
  });

  test("old keys are refreshed in the background; a failed refresh keeps them", async () => {
    jwks.hits = 0;
    jwks.status = 200;
    let t = 0;
    const store = new JwksStore(jwks.url, { now: () => t, maxAgeMs: 60_000 });
    await store.resolve("k1", "RS256");
    jwks.status = 503;
    t += 60_000;
    await store.resolve("k1", "RS256");
    assert.equal(store.fetches, 1, "exactly maxAge old: not stale yet");
    t += 1_000;
    await store.resolve("k1", "RS256"); // served from memory, refresh started behind it
    assert.equal(store.fetches, 2, "the refresh started behind the answer");
    await store.refresh(); // joins the refresh in flight
    assert.equal(jwks.hits, 2, "the stale set was refetched");
    assert.equal((await store.resolve("k1", "RS256")).kid, "k1", "the failed refresh kept the key");
    jwks.status = 200;
  });

  test("a failed first load waits for the cool-down too (the issuer is not hammered)", async () => {
    jwks.hits = 0;
    jwks.status = 503;
    let t = 0;
    const store = new JwksStore(jwks.url, { now: () => t });
    await assert.rejects(store.resolve("k1", "RS256"));
    await assert.rejects(store.resolve("k1", "RS256"));
    assert.equal(jwks.hits, 1);
    jwks.status = 200;
    t += 30_000;
    assert.equal((await store.resolve("k1", "RS256")).kid, "k1");
    assert.equal(jwks.hits, 2);
  });
});
