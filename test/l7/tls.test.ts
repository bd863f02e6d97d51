/**
 * A TLS listener (SPEC §2 listen.*.tls): the certificate chosen by SNI (exact
 * names before wildcards, whatever their order), and the scheme the gateway
 * reports upstream (X-Forwarded-Proto: https) on both fast lanes and on the
 * Fastify path. Self-signed fixtures in test/fixtures/tls (valid to 2126).
 */
import assert from "node:assert/strict";
import https from "node:https";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import type { TLSSocket } from "node:tls";
import { type Backend, backend, countLanes, gateway, type Running } from "../helpers/index.js";

const dir = join(import.meta.dirname, "..", "fixtures", "tls");
const pem = (name: string) => join(dir, name);

let up: Backend;
let gw: Running;
let laned: Map<string, number>;

before(async () => {
  up = await backend("up");
  gw = await gateway(`
listen:
  - port: 0
    host: 127.0.0.1
    tls:
      cert: ${pem("default.crt")}
      key: ${pem("default.key")}
      sni:
        - { hosts: ["*.example.test"], cert: ${pem("wild.crt")}, key: ${pem("wild.key")} }
        - { hosts: [api.example.test], cert: ${pem("api.crt")}, key: ${pem("api.key")} }
services: { up: { targets: [${up.url}] } }
routes:
  - { name: cached, match: { path: /c }, service: up, cache: { ttl: 1m } }
  - { name: plain, service: up }
`);
  laned = countLanes(gw.gw);
});
after(async () => {
  await gw.close();
  await up.close();
});

interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
  cn: string;
}

function get(path: string, servername = "localhost", headers: Record<string, string> = {}): Promise<Answer> {
  return new Promise((ok, fail) => {
    const req = https.request(
      {
        host: "127.0.0.1",
        port: gw.port,
        path,
        servername,
        headers,
        rejectUnauthorized: false,
        agent: false,
      },
      (res) => {
        const cn = String((res.socket as TLSSocket).getPeerCertificate().subject?.CN);
        let body = "";
        res.on("data", (c) => {
          body += c;
        });
        res.on("end", () => ok({ status: res.statusCode ?? 0, headers: res.headers, body, cn }));
      },
    );
    req.on("error", fail);
    req.end();
  });
}

const upstreamHeaders = (a: Answer) => (JSON.parse(a.body) as { headers: Record<string, string> }).headers;

describe("TLS listener", () => {
  test("SNI picks the exact name before a wildcard listed earlier, the wildcard for others, else the default", async () => {
    assert.equal((await get("/x", "api.example.test")).cn, "api.example.test");
    assert.equal((await get("/x", "shop.example.test")).cn, "*.example.test");
    assert.equal((await get("/x", "other.test")).cn, "localhost");
  });

  test("X-Forwarded-Proto is https on the forwarding lane and on the Fastify path", async () => {
    const before = laned.get("plain") ?? 0;
    const lane = await get("/x");
    assert.equal(laned.get("plain"), before + 1, "answered by the lane");
    const slow = await get("/x", "localhost", { "content-length": "0" });
    assert.equal(laned.get("plain"), before + 1, "declined with a body");
    assert.equal(upstreamHeaders(lane)["x-forwarded-proto"], "https");
    assert.equal(upstreamHeaders(slow)["x-forwarded-proto"], "https");
  });

  test("a cache hit over https is answered by the cache lane", async () => {
    assert.equal((await get("/c")).headers["x-cache"], "MISS");
    const hit = await get("/c");
    assert.equal(hit.headers["x-cache"], "HIT");
    assert.equal(laned.get("cached"), 1);
  });
});
