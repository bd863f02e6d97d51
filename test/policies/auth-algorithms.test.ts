/**
 * Algorithm pinning (SPEC §6), through the public surface only: a gateway
 * started from YAML, tokens signed by jose with node:crypto keys, answers read
 * over HTTP. For each verifier kind — secret, public key, JWKS — a token whose
 * algorithm the *key* could verify but the verifier does not list is a 401.
 * That is the case no library default saves: with the configured list ignored
 * (or the gateway's own check and the list handed to the JWT library both
 * removed), key-type detection alone would accept it.
 */
import assert from "node:assert/strict";
import { generateKeyPairSync, type KeyObject } from "node:crypto";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { after, before, describe, test } from "node:test";
import { SignJWT } from "jose";
import { type Backend, backend, gateway, type Running, request } from "../helpers/index.js";

const SECRET = "auth-algorithms-secret-0123456789abcdef";
const hmac = new TextEncoder().encode(SECRET);

let serial = 0;
/** A fresh token (unique jti: the verified-token cache never answers for another test). */
function sign(
  key: KeyObject | Uint8Array,
  alg: string,
  header: Record<string, unknown> = {},
): Promise<string> {
  return new SignJWT({ sub: "u-1", jti: `alg-${++serial}` })
    .setProtectedHeader({ alg, ...header })
    .setIssuedAt()
    .setExpirationTime("5m")
    .sign(key);
}

/** A JWKS endpoint on 127.0.0.1:0 publishing `keys`. */
async function jwksEndpoint(keys: object[]): Promise<{ url: string; close(): Promise<void> }> {
  const server = http.createServer((_req, res) => {
    res.setHeader("content-type", "application/jwk-set+json");
    res.end(JSON.stringify({ keys }));
  });
  await new Promise<void>((ok) => server.listen(0, "127.0.0.1", ok));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/jwks.json`,
    close: () =>
      new Promise<void>((ok) => {
        server.closeAllConnections();
        server.close(() => ok());
      }),
  };
}

describe("auth: a verifier accepts only the algorithms it lists", () => {
  const rsa = generateKeyPairSync("rsa", { modulusLength: 2048 });
  const ec = generateKeyPairSync("ec", { namedCurve: "P-256" });
  const rsaPem = rsa.publicKey.export({ type: "spki", format: "pem" }).toString();
  const ecPem = ec.publicKey.export({ type: "spki", format: "pem" }).toString();
  const jwk = (k: KeyObject, extra: Record<string, string>) => ({ ...k.export({ format: "jwk" }), ...extra });
  let echo: Backend;
  let gw: Running;
  let jwks: Awaited<ReturnType<typeof jwksEndpoint>>;

  before(async () => {
    echo = await backend("echo");
    jwks = await jwksEndpoint([
      jwk(rsa.publicKey, { kid: "any", use: "sig" }), // no alg: the key type's algorithms
      jwk(rsa.publicKey, { kid: "rs256-only", alg: "RS256", use: "sig" }),
      jwk(ec.publicKey, { kid: "ec", use: "sig" }),
    ]);
    const pem = (s: string) => JSON.stringify(s);
    gw = await gateway(`
jwt:
  hs-default: { secret: "${SECRET}" }
  hs256: { secret: "${SECRET}", algorithms: [HS256] }
  hs512: { secret: "${SECRET}", algorithms: [HS512] }
  rsa-any: { publicKey: ${pem(rsaPem)} }
  rsa-rs256: { publicKey: ${pem(rsaPem)}, algorithms: [RS256] }
  rsa-ps384: { publicKey: ${pem(rsaPem)}, algorithms: [PS384] }
  ec-any: { publicKey: ${pem(ecPem)} }
  jwks-any: { jwksUri: "${jwks.url}" }
  jwks-rs256: { jwksUri: "${jwks.url}", algorithms: [RS256] }
  jwks-es256: { jwksUri: "${jwks.url}", algorithms: [ES256] }
services:
  echo: { targets: [${echo.url}] }
routes:
  - { name: hs-default, match: { path: /hs-default }, service: echo, auth: { jwt: hs-default } }
  - { name: hs256, match: { path: /hs256 }, service: echo, auth: { jwt: hs256 } }
  - { name: hs512, match: { path: /hs512 }, service: echo, auth: { jwt: hs512 } }
  - { name: rsa-any, match: { path: /rsa-any }, service: echo, auth: { jwt: rsa-any } }
  - { name: rsa-rs256, match: { path: /rsa-rs256 }, service: echo, auth: { jwt: rsa-rs256 } }
  - { name: rsa-ps384, match: { path: /rsa-ps384 }, service: echo, auth: { jwt: rsa-ps384 } }
  - { name: ec-any, match: { path: /ec-any }, service: echo, auth: { jwt: ec-any } }
  - { name: jwks-any, match: { path: /jwks-any }, service: echo, auth: { jwt: jwks-any } }
  - { name: jwks-rs256, match: { path: /jwks-rs256 }, service: echo, auth: { jwt: jwks-rs256 } }
  - { name: jwks-es256, match: { path: /jwks-es256 }, service: echo, auth: { jwt: jwks-es256 } }
`);
  });
  after(async () => {
    await gw.close();
    await jwks.close();
    await echo.close();
  });

  /** Each [path, token] answered as `status`; a refusal is 401 SY_AUTH_INVALID and never forwarded. */
  async function expect(status: 200 | 401, cases: Array<[string, Promise<string>]>) {
    for (const [path, pending] of cases) {
      const token = await pending;
      const alg = JSON.parse(Buffer.from(token.split(".")[0], "base64url").toString()).alg;
      const hits = echo.hits;
      const r = await request(gw.url, { path, headers: { authorization: `Bearer ${token}` } });
      assert.equal(r.status, status, `${path} with ${alg}: ${r.body}`);
      if (status === 401) {
        assert.equal(r.json().code, "SY_AUTH_INVALID", `${path} with ${alg}`);
        assert.match(String(r.headers["www-authenticate"]), /error="invalid_token"/);
        assert.equal(echo.hits, hits, `${path} with ${alg}: a refused request is never forwarded`);
      }
    }
  }

  test("secret: HS256 only by default; a listed algorithm only, the others of the same secret refused", async () => {
    await expect(200, [
      ["/hs-default", sign(hmac, "HS256")],
      ["/hs256", sign(hmac, "HS256")],
      ["/hs512", sign(hmac, "HS512")],
    ]);
    await expect(401, [
      ["/hs-default", sign(hmac, "HS384")],
      ["/hs-default", sign(hmac, "HS512")],
      ["/hs256", sign(hmac, "HS384")],
      ["/hs256", sign(hmac, "HS512")],
      ["/hs512", sign(hmac, "HS256")],
      ["/hs512", sign(hmac, "HS384")],
    ]);
  });

  test("public key: the listed algorithm only, though the RSA key could verify RS512 or PS256", async () => {
    await expect(200, [
      ["/rsa-any", sign(rsa.privateKey, "RS256")],
      ["/rsa-any", sign(rsa.privateKey, "RS512")],
      ["/rsa-any", sign(rsa.privateKey, "PS256")],
      ["/rsa-rs256", sign(rsa.privateKey, "RS256")],
      ["/rsa-ps384", sign(rsa.privateKey, "PS384")],
      ["/ec-any", sign(ec.privateKey, "ES256")],
    ]);
    await expect(401, [
      ["/rsa-rs256", sign(rsa.privateKey, "RS384")],
      ["/rsa-rs256", sign(rsa.privateKey, "RS512")],
      ["/rsa-rs256", sign(rsa.privateKey, "PS256")],
      ["/rsa-ps384", sign(rsa.privateKey, "PS256")],
      ["/rsa-ps384", sign(rsa.privateKey, "RS384")],
      // a key's own type bounds a verifier without a list: never another type, never HMAC
      ["/rsa-any", sign(ec.privateKey, "ES256")],
      ["/ec-any", sign(rsa.privateKey, "RS256")],
      ["/ec-any", sign(new TextEncoder().encode(ecPem), "HS256")],
    ]);
  });

  test("JWKS: the verifier's list and each key's alg both bound what is accepted", async () => {
    await expect(200, [
      ["/jwks-any", sign(rsa.privateKey, "RS512", { kid: "any" })],
      ["/jwks-any", sign(rsa.privateKey, "PS256", { kid: "any" })],
      ["/jwks-any", sign(rsa.privateKey, "RS256", { kid: "rs256-only" })],
      ["/jwks-any", sign(ec.privateKey, "ES256", { kid: "ec" })],
      ["/jwks-rs256", sign(rsa.privateKey, "RS256", { kid: "any" })],
      ["/jwks-es256", sign(ec.privateKey, "ES256", { kid: "ec" })],
    ]);
    await expect(401, [
      // the verifier lists RS256: a key that could verify RS512 or PS256 does not make them acceptable
      ["/jwks-rs256", sign(rsa.privateKey, "RS512", { kid: "any" })],
      ["/jwks-rs256", sign(rsa.privateKey, "PS256", { kid: "any" })],
      ["/jwks-rs256", sign(ec.privateKey, "ES256", { kid: "ec" })],
      ["/jwks-es256", sign(rsa.privateKey, "RS256", { kid: "any" })],
      // the key says alg RS256 (RFC 7517 §4.4): the same RSA key's other algorithms are refused
      ["/jwks-any", sign(rsa.privateKey, "RS512", { kid: "rs256-only" })],
      ["/jwks-any", sign(rsa.privateKey, "PS256", { kid: "rs256-only" })],
      // a kid names one key: an EC signature under the RSA key's kid is refused
      ["/jwks-any", sign(ec.privateKey, "ES256", { kid: "any" })],
    ]);
  });
});
