/**
 * SPEC §7: a reload drops no in-flight request. A request still inside an
 * async policy hook when the reload swaps generations (here: auth waiting for
 * its JWKS) must still be forwarded and answered by its own generation, whose
 * Fastify instance (and undici Agent) is closed only once it is done.
 */
import assert from "node:assert/strict";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { test } from "node:test";
import { exportJWK, generateKeyPair, SignJWT } from "jose";
import { parseConfig } from "../../src/config/load.js";
import { backend, gateway, request } from "../helpers/index.js";

test("a request waiting in an async hook during a reload is still answered", async (t) => {
  const { publicKey, privateKey } = await generateKeyPair("RS256", { extractable: true });
  const jwk = { ...(await exportJWK(publicKey)), kid: "k1", alg: "RS256", use: "sig" };
  let release!: () => void;
  const gate = new Promise<void>((ok) => {
    release = ok;
  });
  let asked!: () => void;
  const askedP = new Promise<void>((ok) => {
    asked = ok;
  });
  const jwks = http.createServer(async (_req, res) => {
    asked();
    await gate;
    res.setHeader("content-type", "application/json");
    res.end(JSON.stringify({ keys: [jwk] }));
  });
  await new Promise<void>((ok) => jwks.listen(0, "127.0.0.1", ok));
  t.after(() => jwks.close());
  const b = await backend("b");
  t.after(() => b.close());
  const yaml = (extra: string) => `
jwt: { idp: { jwksUri: "http://127.0.0.1:${(jwks.address() as AddressInfo).port}/jwks" } }
services: { s: { targets: [${b.url}] } }
routes:${extra}
  - { name: r, service: s, auth: { jwt: idp } }
`;
  const g = await gateway(yaml(""));
  t.after(() => g.close());
  const token = await new SignJWT({ sub: "u" })
    .setProtectedHeader({ alg: "RS256", kid: "k1" })
    .setExpirationTime("1h")
    .sign(privateKey);
  const pending = request(g.url, { path: "/x", headers: { authorization: `Bearer ${token}` } });
  await askedP; // the request is inside the auth hook, waiting for the keys
  await g.gw.reload(
    parseConfig(
      `version: 1\nshutdownTimeout: 5s\nlisten: [{ port: 0, host: 127.0.0.1 }]\n${yaml("\n  - { name: other, match: { path: /o }, service: s }")}`,
    ),
  );
  release();
  const r = await pending;
  assert.equal(r.status, 200, r.body);
  assert.equal(r.json().name, "b");
});
