/**
 * JWT auth at the edge against a real backend, with tokens signed by jose (an
 * independent library): every attack of SPEC §6, the 401/403 shapes of §5,
 * scopes, claims, forwardToken and the verified-token cache.
 */
import assert from "node:assert/strict";
import { generateKeyPairSync } from "node:crypto";
import { rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, mock, test } from "node:test";
import { exportSPKI, generateKeyPair, type JWTPayload, SignJWT } from "jose";
import { compileAccess } from "../../src/auth/access.js";
import { read as readDer } from "../../src/auth/pss-key.js";
import { buildVerifier, verifierFor } from "../../src/auth/verifier.js";
import { type Backend, backend, gateway, type Running, request } from "../helpers/index.js";

const SECRET = "a-test-secret-of-at-least-32-bytes!!";
const ISS = "https://issuer.test/";
const AUD = "orders-api";
const now = () => Math.floor(Date.now() / 1000);
const b64u = (o: unknown) => Buffer.from(JSON.stringify(o)).toString("base64url");

async function hs(payload: JWTPayload, opts: { key?: Uint8Array; alg?: string } = {}): Promise<string> {
  return new SignJWT({ iss: ISS, aud: AUD, sub: "u-1", ...payload })
    .setProtectedHeader({ alg: opts.alg ?? "HS256", typ: "JWT" })
    .setIssuedAt()
    .sign(opts.key ?? new TextEncoder().encode(SECRET));
}

describe("auth: JWT at the edge", () => {
  let echo: Backend;
  let gw: Running;
  let rsaPem: string;
  let rsaPrivate: CryptoKey;
  const pemFile = join(tmpdir(), `sy-auth-${process.pid}.pem`);
  const get = (path: string, token?: string, headers: Record<string, string> = {}) =>
    request(gw.url, {
      path,
      headers: token === undefined ? headers : { ...headers, authorization: `Bearer ${token}` },
    });

  before(async () => {
    echo = await backend("echo");
    const pair = await generateKeyPair("RS256", { extractable: true });
    rsaPrivate = pair.privateKey;
    rsaPem = await exportSPKI(pair.publicKey);
    writeFileSync(pemFile, rsaPem);
    gw = await gateway(`
jwt:
  internal: { secret: "${SECRET}", issuer: "${ISS}", audience: ${AUD}, clockTolerance: 5s }
  rsa: { publicKey: ${pemFile} }
services:
  echo: { targets: [${echo.url}] }
routes:
  - { name: hs, match: { path: /hs }, service: echo, auth: { jwt: internal } }
  - { name: rs, match: { path: /rs }, service: echo, auth: { jwt: rsa } }
  - name: scoped
    match: { path: /scoped }
    service: echo
    auth: { jwt: internal, scopes: ["orders:read", "orders:write"] }
  - { name: admin, match: { path: /admin }, service: echo, auth: { jwt: internal, claims: { role: admin, level: 3 } } }
  - { name: hidden, match: { path: /hidden }, service: echo, auth: { jwt: internal, forwardToken: false } }
  - { name: off, match: { path: /off }, service: echo, auth: { jwt: false } }
`);
  });
  after(async () => {
    await gw.close();
    await echo.close();
    rmSync(pemFile, { force: true });
  });

  /** A refused request: status, code, challenge, and the backend never saw it. */
  async function refused(path: string, token: string | undefined, status: number, code: string, extra = {}) {
    const hits = echo.hits;
    const r = await get(path, token, extra);
    assert.equal(r.status, status, r.body);
    assert.equal(r.json().code, code);
    assert.equal(echo.hits, hits, "a refused request is never forwarded");
    return r;
  }

  test("a valid HS256 token passes and the token is forwarded by default", async () => {
    const t = await hs({});
    const r = await get("/hs", t);
    assert.equal(r.status, 200);
    assert.equal((r.json().headers as Record<string, string>).authorization, `Bearer ${t}`);
  });

  test("no token: 401 SY_AUTH_MISSING with a plain Bearer challenge (RFC 6750 §3)", async () => {
    for (const headers of [{}, { authorization: "Basic dXNlcjpwYXNz" }, { authorization: "Bearer " }]) {
      const r = await refused("/hs", undefined, 401, "SY_AUTH_MISSING", headers);
      assert.match(String(r.headers["www-authenticate"]), /^Bearer\b/);
      assert.doesNotMatch(String(r.headers["www-authenticate"]), /error=/);
      assert.ok(r.headers["x-request-id"]);
    }
  });

  test("alg none is refused, signed or not", async () => {
    const claims = { iss: ISS, aud: AUD, sub: "u-1", iat: now() };
    for (const alg of ["none", "None", "NONE"]) {
      const unsigned = `${b64u({ alg, typ: "JWT" })}.${b64u(claims)}.`;
      const r = await refused("/hs", unsigned, 401, "SY_AUTH_INVALID");
      assert.equal(r.headers["www-authenticate"], 'Bearer realm="switchyard", error="invalid_token"');
    }
    // none with a (valid HS256) signature copied on does not pass either
    const good = (await hs({})).split(".");
    await refused("/hs", `${b64u({ alg: "none" })}.${good[1]}.${good[2]}`, 401, "SY_AUTH_INVALID");
  });

  test("HS/RS key confusion is impossible, both ways", async () => {
    // The attack: sign HS256 with the verifier's RSA public key (public knowledge) as the HMAC secret.
    for (const alg of ["HS256", "HS384", "HS512"]) {
      const forged = await hs({}, { key: new TextEncoder().encode(rsaPem), alg });
      await refused("/rs", forged, 401, "SY_AUTH_INVALID");
    }
    // And an RS256 token (really signed) against the HMAC verifier.
    const rs = await new SignJWT({ iss: ISS, aud: AUD, sub: "u-1" })
      .setProtectedHeader({ alg: "RS256" })
      .sign(rsaPrivate);
    await refused("/hs", rs, 401, "SY_AUTH_INVALID");
    // Control: the same RS256 token is good where it belongs.
    assert.equal((await get("/rs", rs)).status, 200);
  });

  test("a tampered payload or signature is refused", async () => {
    const [h, , s] = (await hs({ role: "user" })).split(".");
    const forgedPayload = b64u({ iss: ISS, aud: AUD, sub: "admin", role: "admin", iat: now() });
    await refused("/hs", `${h}.${forgedPayload}.${s}`, 401, "SY_AUTH_INVALID");
    const t = await hs({});
    const flipped = t.slice(0, -2) + (t.at(-2) === "A" ? "B" : "A") + t.at(-1);
    await refused("/hs", flipped, 401, "SY_AUTH_INVALID");
    await refused("/hs", "not.a.jwt", 401, "SY_AUTH_INVALID");
  });

  test("exp and nbf are checked, within clockTolerance (5s)", async () => {
    await refused("/hs", await hs({ exp: now() - 60 }), 401, "SY_AUTH_INVALID");
    await refused("/hs", await hs({ nbf: now() + 60 }), 401, "SY_AUTH_INVALID");
    assert.equal((await get("/hs", await hs({ exp: now() - 2 }))).status, 200, "2s late is within tolerance");
    assert.equal(
      (await get("/hs", await hs({ nbf: now() + 2 }))).status,
      200,
      "2s early is within tolerance",
    );
  });

  test("iss and aud must match, and must be present when configured", async () => {
    await refused("/hs", await hs({ iss: "https://evil.test/" }), 401, "SY_AUTH_INVALID");
    await refused("/hs", await hs({ aud: "other-api" }), 401, "SY_AUTH_INVALID");
    await refused("/hs", await hs({ iss: undefined }), 401, "SY_AUTH_INVALID");
    await refused("/hs", await hs({ aud: undefined }), 401, "SY_AUTH_INVALID");
    assert.equal((await get("/hs", await hs({ aud: ["x", AUD] }))).status, 200, "aud may be a list");
  });

  test("scopes: all required, from scope (string) or scp (array) → else 403 SY_AUTH_FORBIDDEN", async () => {
    const r = await refused("/scoped", await hs({ scope: "orders:read" }), 403, "SY_AUTH_FORBIDDEN");
    assert.equal(
      r.headers["www-authenticate"],
      'Bearer realm="switchyard", error="insufficient_scope", scope="orders:read orders:write"',
    );
    await refused("/scoped", await hs({}), 403, "SY_AUTH_FORBIDDEN");
    await refused("/scoped", await hs({ scope: "orders:read orders:writer" }), 403, "SY_AUTH_FORBIDDEN");
    assert.equal((await get("/scoped", await hs({ scope: "profile orders:write orders:read" }))).status, 200);
    assert.equal((await get("/scoped", await hs({ scp: ["orders:read", "orders:write"] }))).status, 200);
    assert.equal((await get("/scoped", await hs({ scp: "orders:write orders:read" }))).status, 200);
  });

  test("claims: exact values (type included) → else 403", async () => {
    await refused("/admin", await hs({ role: "user", level: 3 }), 403, "SY_AUTH_FORBIDDEN");
    await refused("/admin", await hs({ role: "admin", level: "3" }), 403, "SY_AUTH_FORBIDDEN");
    await refused("/admin", await hs({ level: 3 }), 403, "SY_AUTH_FORBIDDEN");
    assert.equal((await get("/admin", await hs({ role: "admin", level: 3 }))).status, 200);
  });

  test("forwardToken: false strips Authorization before forwarding", async () => {
    const r = await get("/hidden", await hs({}));
    assert.equal(r.status, 200);
    assert.equal((r.json().headers as Record<string, string>).authorization, undefined);
  });

  test("auth.jwt: false is no auth at all", async () => {
    assert.equal((await get("/off")).status, 200);
  });

  test("a route naming a verifier the generation does not have is an error naming it", () => {
    assert.throws(() => verifierFor(gw.gw.generation, "nope"), { message: "unknown JWT verifier 'nope'" });
    assert.equal(verifierFor(gw.gw.generation, "rsa").name, "rsa");
  });

  test("verified-token cache: a repeated token is not verified again; a new one is", async () => {
    const v = verifierFor(gw.gw.generation, "internal");
    const t = await hs({ jti: "cache-1" });
    const before = v.stats.checks;
    for (let i = 0; i < 5; i++) assert.equal((await get("/hs", t)).status, 200);
    assert.equal(v.stats.checks - before, 1, "one signature check for five requests");
    // the cache is the verifier's, shared by every route naming it (per-route checks still run)
    await refused("/scoped", t, 403, "SY_AUTH_FORBIDDEN");
    assert.equal(v.stats.checks - before, 1);
    assert.equal((await get("/hs", await hs({ jti: "cache-2" }))).status, 200);
    assert.equal(v.stats.checks - before, 2);
  });
});

describe("auth: the verified-token cache expires with the token", () => {
  test("a cached token is refused once its exp has passed", async () => {
    const v = await buildVerifier("t", { secret: SECRET, clockTolerance: "0s" });
    const t = await hs({ exp: now() + 2 });
    mock.timers.enable({ apis: ["Date"], now: Date.now() });
    try {
      assert.equal((await v.verify(t)).sub, "u-1");
      assert.equal((await v.verify(t)).sub, "u-1");
      assert.equal(v.stats.checks, 1, "the second call was a cache hit");
      mock.timers.tick(3_000);
      await assert.rejects(async () => v.verify(t), /expired/);
    } finally {
      mock.timers.reset();
    }
  });

  test("a failure is not cached: a not-yet-valid token passes once its nbf is reached", async () => {
    // fast-jwt would keep the failure for clockTolerance (10 s): past the moment the token turns good.
    const v = await buildVerifier("t", { secret: SECRET, clockTolerance: "10s" });
    const t = await hs({ nbf: now() + 13 });
    mock.timers.enable({ apis: ["Date"], now: Date.now() });
    try {
      await assert.rejects(async () => v.verify(t), /active/);
      mock.timers.tick(5_000);
      assert.equal((await v.verify(t)).sub, "u-1");
    } finally {
      mock.timers.reset();
    }
  });

  test("a verifier's algorithms must fit its key (config error at load, not 401s later)", async () => {
    await assert.rejects(
      buildVerifier("x", { secret: SECRET, algorithms: ["RS256"], clockTolerance: "0s" }),
      /RS256/,
    );
  });
});

describe("auth: building a verifier outside a gateway (buildVerifier), and what it is made of", () => {
  test("config errors name the verifier and say what is wrong, in full", async () => {
    await assert.rejects(buildVerifier("z", {} as never), {
      message: "jwt.z: needs one of secret, publicKey or jwksUri",
    });
    const rsa = generateKeyPairSync("rsa", { modulusLength: 2048 });
    await assert.rejects(
      buildVerifier("v", {
        publicKey: rsa.publicKey.export({ type: "spki", format: "pem" }).toString(),
        algorithms: ["RS256", "ES256", "EdDSA"],
      } as never),
      {
        message:
          "jwt.v.algorithms: ES256, EdDSA cannot be verified with this key (possible: RS256, RS384, RS512, PS256, PS384, PS512)",
      },
    );
    // An EC key on a curve JOSE has no algorithm for here (secp256k1, ES256K) verifies nothing.
    const k1 = generateKeyPairSync("ec", { namedCurve: "secp256k1" });
    await assert.rejects(
      buildVerifier("k", {
        publicKey: k1.publicKey.export({ type: "spki", format: "pem" }).toString(),
      } as never),
      { message: "jwt.k.publicKey: unsupported key type" },
    );
  });

  test("without clockTolerance: no leeway, and the token verifies", async () => {
    // The config loader fills in clockTolerance; a tool calling buildVerifier may leave it out.
    const v = await buildVerifier("t", { secret: SECRET } as Parameters<typeof buildVerifier>[1]);
    assert.equal((await v.verify(await hs({ exp: now() + 60 }))).sub, "u-1");
    await assert.rejects(async () => v.verify(await hs({ exp: now() - 1 })), /expired/);
  });

  test("process.emitWarning is the process's own again once a verifier is built", async () => {
    const own = process.emitWarning;
    await buildVerifier("w", { secret: SECRET, clockTolerance: "0s" });
    assert.equal(process.emitWarning, own);
  });

  test("a route without scopes or claims needs no access check at all", () => {
    assert.equal(compileAccess({}), undefined);
    assert.equal(compileAccess({ scopes: [], claims: {} }), undefined);
    const check = compileAccess({ scopes: ["a"] });
    assert.equal(check?.({ scope: "a" }), true);
    assert.equal(check?.({ scope: "b" }), false);
  });

  test("the DER reader behind RSA-PSS keys: short and long lengths, a wrong tag refused", () => {
    assert.deepEqual(readDer(Buffer.from([0x30, 0x03, 1, 2, 3]), 0, 0x30), { start: 2, end: 5 });
    // Long form: 0x82 says two length bytes follow (0x01 0x00 = 256).
    assert.deepEqual(readDer(Buffer.from([0x00, 0x04, 0x82, 0x01, 0x00, 0xff]), 1, 0x04), {
      start: 5,
      end: 261,
    });
    assert.deepEqual(readDer(Buffer.from([0x03, 0x81, 0x80, 0x00]), 0, 0x03), { start: 3, end: 131 });
    assert.throws(() => readDer(Buffer.from([0x02, 0x01, 0x00]), 0, 0x30), {
      message: "unexpected DER tag 2 at 0",
    });
  });
});
