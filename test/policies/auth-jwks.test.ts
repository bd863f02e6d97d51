/**
 * JWKS verifiers against a real JWKS endpoint on 127.0.0.1:0 (node:http), the
 * keys and tokens made by jose: key rotation without restart, single-flight
 * refetch on an unknown kid at most once per cool-down, last good keys while
 * the endpoint is down, and no symmetric or mismatched key ever accepted.
 */
import assert from "node:assert/strict";
import { generateKeyPairSync } from "node:crypto";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { after, before, describe, test } from "node:test";
import { exportJWK, generateKeyPair, type JWK, SignJWT } from "jose";
import { JwksStore, parseJwks } from "../../src/auth/jwks.js";
import { buildVerifier, verifierFor } from "../../src/auth/verifier.js";
import { type Backend, backend, gateway, type Running, request } from "../helpers/index.js";

const ISS = "https://issuer.test/";
const AUD = "orders-api";

interface JwksServer {
  url: string;
  hits: number;
  keys: JWK[];
  status: number;
  /** The last fetch's method and Accept header. */
  method?: string;
  accept?: string;
  close(): Promise<void>;
}

async function jwksServer(keys: JWK[]): Promise<JwksServer> {
  const s = { hits: 0, keys, status: 200 } as JwksServer;
  const server = http.createServer((req, res) => {
    s.hits++;
    s.method = req.method;
    s.accept = req.headers.accept;
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

  test("verifiers on one (issuer, jwksUri) share one key store; another issuer on the URI has its own", async () => {
    const jwks = await server([k1.jwk]);
    const gw = await gateway(`
jwt:
  a: { jwksUri: "${jwks.url}", issuer: "${ISS}", audience: ${AUD} }
  b: { jwksUri: "${jwks.url}", issuer: "${ISS}", audience: other-api }
  c: { jwksUri: "${jwks.url}", issuer: "https://other-issuer.test/", audience: ${AUD} }
services:
  echo: { targets: [${echo.url}] }
routes:
  - { name: a, match: { path: /a }, service: echo, auth: { jwt: a } }
  - { name: b, match: { path: /b }, service: echo, auth: { jwt: b } }
`);
    open.push(gw);
    const store = (name: string) => verifierFor(gw.gw.generation, name).jwks;
    assert.equal(store("a"), store("b"));
    assert.notEqual(store("a"), store("c"));
    const at = async (path: string, token: string) =>
      (await request(gw.url, { path, headers: { authorization: `Bearer ${token}` } })).status;
    assert.equal(await at("/a", await k1.sign()), 200);
    assert.equal(await at("/b", await k1.sign({ aud: "other-api" })), 200);
    assert.equal(jwks.hits, 1, "b used the keys a's token fetched");
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

describe("JwksStore and parseJwks, directly (injected clock)", () => {
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
    // Not 0: an age computed as now + loadedAt would look right when the keys are loaded at 0.
    let t = 5_000;
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

  /** A JwksStore on an injected clock whose warnings are kept. */
  function store(opts: ConstructorParameters<typeof JwksStore>[1] = {}) {
    const warned: Array<Record<string, unknown>> = [];
    let t = 1_000;
    const s = new JwksStore(jwks.url, {
      now: () => t,
      log: { warn: (obj, msg) => warned.push({ ...obj, msg }) },
      ...opts,
    });
    return { s, warned, tick: (ms: number) => (t += ms) };
  }

  test("the endpoint is asked with GET for a JWK Set (RFC 7517 §8.5 media type first)", async () => {
    jwks.keys = [k1.jwk];
    jwks.status = 200;
    await store().s.resolve("k1", "RS256");
    assert.equal(jwks.method, "GET");
    assert.equal(jwks.accept, "application/jwk-set+json, application/json");
  });

  test("no key for a token: the error names its kid (or that it has none) and its alg", async () => {
    jwks.keys = [k1.jwk];
    jwks.status = 200;
    const { s } = store();
    await assert.rejects(s.resolve("k9", "RS256"), { message: "no JWKS key for kid k9 and alg RS256" });
    await assert.rejects(s.resolve(undefined, "ES512"), {
      message: "no JWKS key for kid (none) and alg ES512",
    });
  });

  test("a set with no usable key after a good one: the good key stays, the failure is logged", async () => {
    jwks.keys = [k1.jwk];
    jwks.status = 200;
    const { s, warned, tick } = store();
    assert.equal((await s.resolve("k1", "RS256")).kid, "k1");
    jwks.keys = [{ kty: "oct", k: "c2VjcmV0", kid: "k1" }];
    tick(30_000);
    await s.refresh();
    assert.equal(s.fetches, 2, "the endpoint was asked again");
    assert.equal((await s.resolve("k1", "RS256")).kid, "k1", "the last good key is still there");
    assert.deepEqual(warned, [
      {
        jwksUri: jwks.url,
        err: "the JWKS has no usable signing key",
        keptKeys: 1,
        msg: "JWKS fetch failed; keeping the last good keys",
      },
    ]);
    jwks.keys = [k1.jwk];
  });

  test("maxBytes: a document of exactly maxBytes is read, one byte more is refused", async () => {
    jwks.keys = [k1.jwk];
    jwks.status = 200;
    const size = Buffer.byteLength(JSON.stringify({ keys: [k1.jwk] }));
    const exact = store({ maxBytes: size });
    assert.equal((await exact.s.resolve("k1", "RS256")).kid, "k1");
    assert.deepEqual(exact.warned, []);
    const under = store({ maxBytes: size - 1 });
    await assert.rejects(under.s.resolve("k1", "RS256"));
    assert.equal(under.warned.length, 1);
    assert.equal(under.warned[0].err, `JWKS larger than ${size - 1} bytes`);
  });

  test("a token whose alg the verifier does not pin is refused before any fetch", async () => {
    jwks.keys = [k1.jwk];
    jwks.status = 200;
    const hits = jwks.hits;
    const v = await buildVerifier("pinned", { jwksUri: jwks.url, algorithms: ["RS256"] } as never);
    const es = await signingKey("k1", "ES256");
    const err = await Promise.resolve(v.verify(await es.sign())).then(
      () => assert.fail("an ES256 token passed an RS256-only verifier"),
      (e: Error & { originalError?: Error }) => e,
    );
    assert.equal(err.originalError?.message, "algorithm ES256 is not accepted by verifier pinned");
    assert.equal(jwks.hits, hits, "the JWKS endpoint was not asked");
  });

  test("not a JWK Set: no keys array (or none at all) is an error, not an empty set", () => {
    for (const doc of [null, undefined, "keys", {}, { keys: "abc" }, { keys: { a: 1 } }])
      assert.throws(() => parseJwks(doc), { message: "not a JWK Set (no keys array)" }, JSON.stringify(doc));
  });

  test("entries that are no signing key are skipped, the rest kept", () => {
    const k256 = generateKeyPairSync("ec", { namedCurve: "secp256k1" }).publicKey.export({ format: "jwk" });
    const keys = parseJwks({
      keys: [
        null,
        k256, // a curve JOSE names no algorithm for here (ES256K)
        { ...k1.jwk, kid: "rsa-as-ec", alg: "ES256" }, // an RSA key claiming an EC algorithm
        k1.jwk,
      ],
    });
    assert.deepEqual(
      keys.map((k) => [k.kid, k.algorithms]),
      [["k1", ["RS256"]]],
    );
  });
});
