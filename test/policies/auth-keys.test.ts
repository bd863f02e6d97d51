/**
 * Every kind of key a verifier can hold, and what a JWKS endpoint may serve,
 * through the public surface only: config loading, a gateway, HTTP requests,
 * tokens signed by jose or node:crypto. Which curve gives which algorithm,
 * which JWKS entries are never signing keys, which documents never replace
 * the last good keys, and which configs are refused before anything listens.
 */
import assert from "node:assert/strict";
import {
  constants,
  createPrivateKey,
  sign as cryptoSign,
  generateKeyPairSync,
  type KeyObject,
} from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { SignJWT } from "jose";
import { read as readDer } from "../../src/auth/pss-key.js";
import { loadConfigFile } from "../../src/config/load.js";
import { Gateway } from "../../src/server.js";
import { type Backend, backend, capturingLogger, gateway, type Running, request } from "../helpers/index.js";

let serial = 0;
function sign(key: KeyObject, alg: string, header: Record<string, unknown> = {}): Promise<string> {
  return new SignJWT({ sub: "u-1", jti: `keys-${++serial}` })
    .setProtectedHeader({ alg, ...header })
    .setIssuedAt()
    .setExpirationTime("5m")
    .sign(key);
}

/** A JWT signed with node:crypto directly (Ed448 and RSA-PSS keys, which jose does not sign with). */
/**
 * The same RSA private key without its PSS parameters: PrivateKeyInfo's OCTET STRING (after the
 * version INTEGER and the AlgorithmIdentifier) is a PKCS#1 RSAPrivateKey. The DER walk is
 * pss-key.ts's own (it reads the public side the same way).
 */
function unrestricted(key: KeyObject): KeyObject {
  const der = key.export({ type: "pkcs8", format: "der" });
  const version = readDer(der, readDer(der, 0, 0x30).start, 0x02);
  const algorithm = readDer(der, version.end, 0x30);
  const octets = readDer(der, algorithm.end, 0x04);
  return createPrivateKey({ key: der.subarray(octets.start, octets.end), format: "der", type: "pkcs1" });
}

function signRaw(key: KeyObject, header: Record<string, unknown>): string {
  const b64 = (o: unknown) => Buffer.from(JSON.stringify(o)).toString("base64url");
  const now = Math.floor(Date.now() / 1000);
  const input = `${b64(header)}.${b64({ sub: "u-1", jti: `keys-${++serial}`, iat: now, exp: now + 300 })}`;
  const alg = String(header.alg);
  // RFC 7518 §3.5: PS* is RSASSA-PSS with the hash's own length as the salt length.
  const signature = alg.startsWith("PS")
    ? cryptoSign(`sha${alg.slice(2)}`, Buffer.from(input), {
        key,
        padding: constants.RSA_PKCS1_PSS_PADDING,
        saltLength: constants.RSA_PSS_SALTLEN_DIGEST,
      })
    : cryptoSign(null, Buffer.from(input), key);
  return `${input}.${signature.toString("base64url")}`;
}

const pem = (k: KeyObject) => JSON.stringify(k.export({ type: "spki", format: "pem" }).toString());
const jwk = (k: KeyObject, extra: Record<string, unknown> = {}) => ({
  ...k.export({ format: "jwk" }),
  ...extra,
});

interface Endpoint {
  url: string;
  hits: number;
  /** What the next fetch answers. */
  status: number;
  body: string;
  close(): Promise<void>;
}

async function endpoint(keys: unknown[]): Promise<Endpoint> {
  const e = { hits: 0, status: 200, body: JSON.stringify({ keys }) } as Endpoint;
  const server = http.createServer((_req, res) => {
    e.hits++;
    res.writeHead(e.status, { "content-type": "application/jwk-set+json" });
    res.end(e.body);
  });
  await new Promise<void>((ok) => server.listen(0, "127.0.0.1", ok));
  e.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/jwks.json`;
  e.close = () =>
    new Promise<void>((ok) => {
      server.closeAllConnections();
      server.close(() => ok());
    });
  return e;
}

describe("auth: every key type gives its own algorithms", () => {
  const p256 = generateKeyPairSync("ec", { namedCurve: "P-256" });
  const p384 = generateKeyPairSync("ec", { namedCurve: "P-384" });
  const p521 = generateKeyPairSync("ec", { namedCurve: "P-521" });
  const ed25519 = generateKeyPairSync("ed25519");
  const ed448 = generateKeyPairSync("ed448");
  const pss = generateKeyPairSync("rsa-pss", { modulusLength: 2048 });
  const pss384 = generateKeyPairSync("rsa-pss", {
    modulusLength: 2048,
    hashAlgorithm: "sha384",
    mgf1HashAlgorithm: "sha384",
  });
  const rsa = generateKeyPairSync("rsa", { modulusLength: 2048 });
  let echo: Backend;
  let gw: Running;
  let jwks: Endpoint;

  before(async () => {
    echo = await backend("echo");
    jwks = await endpoint([
      jwk(p384.publicKey, { kid: "p384" }),
      jwk(p521.publicKey, { kid: "p521" }),
      jwk(ed25519.publicKey, { kid: "ed25519" }),
      jwk(ed448.publicKey, { kid: "ed448" }),
    ]);
    const verifiers = { p256, p384, p521, ed25519, ed448 };
    gw = await gateway(`
jwt:
${Object.entries(verifiers)
  .map(([name, pair]) => `  ${name}: { publicKey: ${pem(pair.publicKey)} }`)
  .join("\n")}
  jwks: { jwksUri: "${jwks.url}" }
services:
  echo: { targets: [${echo.url}] }
routes:
${[...Object.keys(verifiers), "jwks"]
  .map((name) => `  - { name: ${name}, match: { path: /${name} }, service: echo, auth: { jwt: ${name} } }`)
  .join("\n")}
`);
  });
  after(async () => {
    await gw.close();
    await jwks.close();
    await echo.close();
  });

  async function status(path: string, token: string | Promise<string>): Promise<number> {
    return (await request(gw.url, { path, headers: { authorization: `Bearer ${await token}` } })).status;
  }

  test("EC keys: P-256 → ES256, P-384 → ES384, P-521 → ES512, and nothing else", async () => {
    assert.equal(await status("/p256", sign(p256.privateKey, "ES256")), 200);
    assert.equal(await status("/p384", sign(p384.privateKey, "ES384")), 200);
    assert.equal(await status("/p521", sign(p521.privateKey, "ES512")), 200);
    assert.equal(await status("/p384", sign(p256.privateKey, "ES256")), 401, "another curve's key");
    assert.equal(await status("/p521", sign(p384.privateKey, "ES384")), 401);
    assert.equal(await status("/jwks", sign(p384.privateKey, "ES384", { kid: "p384" })), 200);
    assert.equal(await status("/jwks", sign(p521.privateKey, "ES512", { kid: "p521" })), 200);
    assert.equal(await status("/jwks", sign(p256.privateKey, "ES256", { kid: "p384" })), 401);
  });

  test("Ed25519 and Ed448 keys → EdDSA", async () => {
    assert.equal(await status("/ed25519", sign(ed25519.privateKey, "EdDSA")), 200);
    assert.equal(await status("/ed448", signRaw(ed448.privateKey, { alg: "EdDSA" })), 200);
    assert.equal(await status("/jwks", sign(ed25519.privateKey, "EdDSA", { kid: "ed25519" })), 200);
    assert.equal(await status("/jwks", signRaw(ed448.privateKey, { alg: "EdDSA", kid: "ed448" })), 200);
    assert.equal(await status("/ed25519", signRaw(ed448.privateKey, { alg: "EdDSA" })), 401);
    assert.equal(await status("/ed448", sign(ed25519.privateKey, "EdDSA")), 401);
  });

  // fast-jwt takes only rsaEncryption keys: src/auth/pss-key.ts re-reads a PSS key as one.
  test("an RSA-PSS public key verifies PS* only, and only its own hash when its parameters name one", async () => {
    const g = await gateway(`
jwt:
  pss: { publicKey: ${pem(pss.publicKey)} }
  pss384: { publicKey: ${pem(pss384.publicKey)} }
services:
  echo: { targets: [${echo.url}] }
routes:
  - { name: pss, match: { path: /pss }, service: echo, auth: { jwt: pss } }
  - { name: pss384, match: { path: /pss384 }, service: echo, auth: { jwt: pss384 } }
`);
    try {
      const call = async (token: string | Promise<string>) =>
        (await request(g.url, { path: "/pss", headers: { authorization: `Bearer ${await token}` } })).status;
      assert.equal(await call(signRaw(pss.privateKey, { alg: "PS256" })), 200);
      assert.equal(await call(signRaw(pss.privateKey, { alg: "PS512" })), 200);
      // An RS256 token from an ordinary RSA key: a PSS key's verifier does not list RS*.
      assert.equal(await call(sign(rsa.privateKey, "RS256")), 401);
      assert.equal(
        await call(`${signRaw(pss.privateKey, { alg: "PS256" }).slice(0, -2)}AA`),
        401,
        "a bad signature",
      );
      const at384 = async (token: string | Promise<string>) =>
        (await request(g.url, { path: "/pss384", headers: { authorization: `Bearer ${await token}` } }))
          .status;
      assert.equal(await at384(signRaw(pss384.privateKey, { alg: "PS384" })), 200);
      // PS256 from the same RSA numbers (Node refuses to sign sha256 with the restricted key itself).
      assert.equal(
        await at384(signRaw(unrestricted(pss384.privateKey), { alg: "PS256" })),
        401,
        "PS384 only",
      );
    } finally {
      await g.close();
    }
  });
});

describe("auth: what a JWKS endpoint serves", () => {
  const a = generateKeyPairSync("rsa", { modulusLength: 2048 });
  const b = generateKeyPairSync("rsa", { modulusLength: 2048 });
  const open: { close(): Promise<void> }[] = [];
  let echo: Backend;
  before(async () => {
    echo = await backend("echo");
  });
  after(async () => {
    for (const x of open) await x.close();
    await echo.close();
  });

  /** A gateway with one JWKS verifier per endpoint, route /<i> for the i-th. */
  async function start(...endpoints: Endpoint[]): Promise<(i: number, token: string) => Promise<number>> {
    const g = await gateway(`
jwt:
${endpoints.map((e, i) => `  v${i}: { jwksUri: "${e.url}" }`).join("\n")}
services:
  echo: { targets: [${echo.url}] }
routes:
${endpoints.map((_, i) => `  - { name: r${i}, match: { path: /${i} }, service: echo, auth: { jwt: v${i} } }`).join("\n")}
`);
    open.push(g);
    return async (i, token) =>
      (await request(g.url, { path: `/${i}`, headers: { authorization: `Bearer ${token}` } })).status;
  }
  async function served(keys: unknown[]): Promise<Endpoint> {
    const e = await endpoint(keys);
    open.push(e);
    return e;
  }

  test("encryption keys and keys whose alg does not fit their type are never signing keys", async () => {
    const e = await served([
      jwk(a.publicKey, { kid: "enc", use: "enc" }),
      jwk(a.publicKey, { kid: "wrong-alg", alg: "ES256" }),
      jwk(a.publicKey, { kid: "sig", use: "sig", alg: "RS256" }),
    ]);
    const call = await start(e);
    assert.equal(await call(0, await sign(a.privateKey, "RS256", { kid: "sig" })), 200);
    assert.equal(await call(0, await sign(a.privateKey, "RS256", { kid: "enc" })), 401, "use: enc");
    assert.equal(
      await call(0, await sign(a.privateKey, "RS256", { kid: "wrong-alg" })),
      401,
      "alg ES256 on RSA",
    );
  });

  test("a kid names the first key published under it; entries that do not parse are skipped", async () => {
    const e = await served([
      null,
      "not a key",
      { kty: "RSA", kid: "broken", n: "AQAB" },
      jwk(a.publicKey, { kid: "dup" }),
      jwk(b.publicKey, { kid: "dup" }),
      jwk(b.publicKey, { kid: "b" }),
    ]);
    const call = await start(e);
    assert.equal(await call(0, await sign(a.privateKey, "RS256", { kid: "dup" })), 200, "the first 'dup'");
    assert.equal(await call(0, await sign(b.privateKey, "RS256", { kid: "dup" })), 401, "not the second");
    assert.equal(await call(0, await sign(b.privateKey, "RS256", { kid: "b" })), 200, "the rest is usable");
  });

  test("verifiers with different endpoints never use each other's keys", async () => {
    const ea = await served([jwk(a.publicKey, { kid: "k" })]);
    const eb = await served([jwk(b.publicKey, { kid: "k" })]);
    const call = await start(ea, eb);
    assert.equal(await call(0, await sign(a.privateKey, "RS256", { kid: "k" })), 200);
    assert.equal(await call(1, await sign(b.privateKey, "RS256", { kid: "k" })), 200);
    assert.equal(
      await call(0, await sign(b.privateKey, "RS256", { kid: "k" })),
      401,
      "b's key at a's verifier",
    );
    assert.equal(
      await call(1, await sign(a.privateKey, "RS256", { kid: "k" })),
      401,
      "a's key at b's verifier",
    );
  });

  test("a document that is too large, not a key set, empty, or not a 200 never replaces the last good keys", async () => {
    const e = await served([jwk(a.publicKey, { kid: "a" })]);
    const call = await start(e);
    assert.equal(await call(0, await sign(a.privateKey, "RS256", { kid: "a" })), 200);
    const withB = JSON.stringify({ keys: [jwk(b.publicKey, { kid: "b" })] });
    const bad: Array<[string, number, string]> = [
      // b's key is in it, but so are 2 MB of padding: larger than the 1 MB read at most
      [
        "over 1 MB",
        200,
        JSON.stringify({ keys: [jwk(b.publicKey, { kid: "b" })], pad: "x".repeat(2 << 20) }),
      ],
      ["no keys array", 200, JSON.stringify({ key: [] })],
      ["no usable key", 200, JSON.stringify({ keys: [{ kty: "oct", k: "c2VjcmV0", kid: "b" }] })],
      ["a 500 with a key set in it", 500, withB],
      ["not JSON", 200, "<html>"],
    ];
    for (const [what, status, body] of bad) {
      e.status = status;
      e.body = body;
      const hits = e.hits;
      // An unknown kid makes the verifier look again (once per cool-down: a fresh gateway each time).
      const fresh = await start(e);
      assert.equal(await fresh(0, await sign(b.privateKey, "RS256", { kid: "b" })), 401, what);
      assert.ok(e.hits > hits, `${what}: the endpoint was asked`);
    }
    // The first gateway still has a's key, whatever the endpoint said to the others.
    assert.equal(await call(0, await sign(a.privateKey, "RS256", { kid: "a" })), 200);
    e.status = 200;
    e.body = withB;
    assert.equal(await (await start(e))(0, await sign(b.privateKey, "RS256", { kid: "b" })), 200, "control");
  });

  test("a first fetch that fails leaves nothing to verify with: 401, the endpoint asked once", async () => {
    const e = await served([jwk(a.publicKey, { kid: "a" })]);
    e.status = 503;
    e.body = "down";
    const call = await start(e);
    assert.equal(await call(0, await sign(a.privateKey, "RS256", { kid: "a" })), 401, "nothing loaded yet");
    assert.equal(e.hits, 1);
  });
});

describe("auth: JWKS fetches as an operator sees them", () => {
  const a = generateKeyPairSync("rsa", { modulusLength: 2048 });
  const open: { close(): Promise<void> }[] = [];
  let echo: Backend;
  before(async () => {
    echo = await backend("echo");
  });
  after(async () => {
    for (const x of open) await x.close();
    await echo.close();
  });

  async function start(e: { url: string }, logger?: ReturnType<typeof capturingLogger>["logger"]) {
    const g = await gateway(
      `
jwt:
  v: { jwksUri: "${e.url}" }
services:
  echo: { targets: [${echo.url}] }
routes:
  - { name: r, service: echo, auth: { jwt: v } }
`,
      { logger },
    );
    open.push(g);
    return (token: string) => request(g.url, { path: "/x", headers: { authorization: `Bearer ${token}` } });
  }

  test("a kid's first usable key counts: an encryption key under the same kid does not shadow it", async () => {
    const e = await endpoint([
      jwk(a.publicKey, { kid: "k", use: "enc" }),
      jwk(a.publicKey, { kid: "k", use: "sig" }),
    ]);
    open.push(e);
    const call = await start(e);
    assert.equal((await call(await sign(a.privateKey, "RS256", { kid: "k" }))).status, 200);
  });

  test("a failed fetch is logged once as a warning with the endpoint, the reason and the keys kept", async () => {
    const e = await endpoint([jwk(a.publicKey, { kid: "a" })]);
    open.push(e);
    const { logger, lines } = capturingLogger();
    const call = await start(e, logger);
    assert.equal((await call(await sign(a.privateKey, "RS256", { kid: "a" }))).status, 200);
    e.status = 500;
    e.body = "down";
    // An unknown kid makes it fetch again; the endpoint fails; a's key stays.
    assert.equal((await call(await sign(a.privateKey, "RS256", { kid: "unknown" }))).status, 401);
    assert.equal((await call(await sign(a.privateKey, "RS256", { kid: "a" }))).status, 200);
    const warned = lines.filter((l) => l.msg === "JWKS fetch failed; keeping the last good keys");
    assert.equal(warned.length, 1, JSON.stringify(lines.filter((l) => (l.level as number) >= 40)));
    assert.equal(warned[0].level, 40);
    assert.equal(warned[0].jwksUri, e.url);
    assert.equal(warned[0].keptKeys, 1);
    assert.match(String(warned[0].err), /500/);
  });

  test("an endpoint that never answers costs a 401 after the fetch timeout (5 s), never a hung request", async () => {
    const sockets = new Set<import("node:net").Socket>();
    const silent = http.createServer(() => {}); // takes the request, never answers
    silent.on("connection", (s) => sockets.add(s));
    await new Promise<void>((ok) => silent.listen(0, "127.0.0.1", ok));
    open.push({
      close: () =>
        new Promise<void>((ok) => {
          for (const s of sockets) s.destroy();
          silent.close(() => ok());
        }),
    });
    const call = await start({ url: `http://127.0.0.1:${(silent.address() as AddressInfo).port}/jwks.json` });
    const t0 = performance.now();
    let timer: NodeJS.Timeout | undefined;
    const r = await Promise.race([
      call(await sign(a.privateKey, "RS256", { kid: "a" })),
      new Promise<undefined>((ok) => {
        timer = setTimeout(() => ok(undefined), 20_000);
      }),
    ]);
    clearTimeout(timer);
    assert.ok(r, "no answer within 20 s: the fetch has no timeout");
    assert.equal(r.status, 401);
    assert.ok(performance.now() - t0 >= 4_000, "answered when the fetch gave up, not before");
  });
});

describe("auth: scopes are the non-empty tokens of the list", () => {
  test("a route requiring the empty scope is never satisfied by stray spaces", async () => {
    const SECRET = "scopes-secret-0123456789abcdef-0123";
    const g = await gateway(`
jwt:
  v: { secret: "${SECRET}" }
routes:
  - { name: r, respond: { status: 204 }, auth: { jwt: v, scopes: [""] } }
`);
    try {
      for (const scope of ["a  b", " a", "a ", " "]) {
        const t = await new SignJWT({ sub: "u", scope })
          .setProtectedHeader({ alg: "HS256" })
          .setExpirationTime("5m")
          .sign(new TextEncoder().encode(SECRET));
        const r = await request(g.url, { path: "/x", headers: { authorization: `Bearer ${t}` } });
        assert.equal(r.status, 403, JSON.stringify(scope));
      }
    } finally {
      await g.close();
    }
  });
});

describe("auth: a verifier that cannot work is a config error, before anything listens", () => {
  const rsa = generateKeyPairSync("rsa", { modulusLength: 2048 });
  const x25519 = generateKeyPairSync("x25519");

  test("algorithms the key cannot verify, or a key that verifies nothing", async () => {
    await assert.rejects(
      gateway(`jwt:\n  v: { publicKey: ${pem(rsa.publicKey)}, algorithms: [RS256, ES256] }\n`),
      (err: Error) => /ES256/.test(err.message) && !/RS256,/.test(err.message.split("possible")[0] ?? ""),
    );
    await assert.rejects(
      gateway(`jwt:\n  v: { secret: "s3cr3t-s3cr3t-s3cr3t", algorithms: [RS256] }\n`),
      /RS256/,
    );
    await assert.rejects(
      gateway(`jwt:\n  v: { publicKey: ${pem(x25519.publicKey)} }\n`),
      /jwt\.v\.publicKey: unsupported key type/,
    );
  });

  test("a relative publicKey is read from the config file's directory", async () => {
    const dir = mkdtempSync(join(tmpdir(), "sy-keys-"));
    const echo = await backend("echo");
    let gw: Gateway | undefined;
    try {
      writeFileSync(join(dir, "issuer.pem"), rsa.publicKey.export({ type: "spki", format: "pem" }));
      const file = join(dir, "routes.yaml");
      writeFileSync(
        file,
        `version: 1
shutdownTimeout: 1s
listen: [{ port: 0, host: 127.0.0.1 }]
jwt:
  v: { publicKey: issuer.pem }
services:
  echo: { targets: [${echo.url}] }
routes:
  - { name: r, service: echo, auth: { jwt: v } }
`,
      );
      // The process runs elsewhere: the path must not be read relative to the working directory.
      assert.notEqual(process.cwd(), dir);
      gw = await Gateway.start(loadConfigFile(file), { baseDir: dir });
      const url = `http://127.0.0.1:${gw.addresses[0].port}`;
      const ok = await request(url, {
        path: "/x",
        headers: { authorization: `Bearer ${await sign(rsa.privateKey, "RS256")}` },
      });
      assert.equal(ok.status, 200, ok.body);
    } finally {
      await gw?.close(500);
      await echo.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("auth: starting a verifier raises no alarm", () => {
  // Our fast-jwt cache key is the token itself (or its SHA-256 past 1 KB), so fast-jwt's warning
  // about colliding custom cache keys does not apply; src/auth/verifier.ts drops that one warning.
  test("no FAST_JWT_CACHE_KEY_BUILDER_SECURITY_RISK at start or on the first token, other warnings kept", async () => {
    const seen: string[] = [];
    const onWarning = (w: Error & { code?: string }) => seen.push(w.code ?? w.name);
    process.on("warning", onWarning);
    const echo = await backend("echo");
    const secret = "warning-secret-0123456789abcdef-0123";
    const g = await gateway(`
jwt:
  v: { secret: "${secret}" }
services:
  echo: { targets: [${echo.url}] }
routes:
  - { name: x, match: { path: /x }, service: echo, auth: { jwt: v } }
`);
    try {
      const t = await new SignJWT({ sub: "u" })
        .setProtectedHeader({ alg: "HS256" })
        .setExpirationTime("1m")
        .sign(new TextEncoder().encode(secret));
      assert.equal(
        (await request(g.url, { path: "/x", headers: { authorization: `Bearer ${t}` } })).status,
        200,
      );
      process.emitWarning("still heard", { code: "SY_TEST_WARNING" });
      await new Promise((r) => setImmediate(r));
      assert.deepEqual(seen, ["SY_TEST_WARNING"]);
    } finally {
      process.off("warning", onWarning);
      await g.close();
      await echo.close();
    }
  });
});
