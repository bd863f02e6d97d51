/**
 * Upstream TLS and mTLS (issue 14, SPEC §2 services.*.tls): https:// and h2
 * targets are verified against the service's CA bundle, the gateway shows
 * its client certificate to targets that ask for one, and a target the CA
 * does not vouch for is a 502 SY_UPSTREAM_CONNECT — never a silent
 * downgrade. Certificates are made with openssl at test time (helpers/pki.ts).
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { writeFileSync } from "node:fs";
import http2 from "node:http2";
import https from "node:https";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import type { TLSSocket } from "node:tls";
import { ConfigError, parseConfig } from "../../src/config/load.js";
import { gateway, type Running, request } from "../helpers/index.js";
import { makePki, type Pki } from "../helpers/pki.js";
import { acceptKey, wsConnect } from "../resilience/helpers.js";

let pki: Pki;

interface TlsBackend {
  url: string;
  hits: number;
  /** Client certificate CN of each request that got through, "" when none was shown. */
  clients: string[];
  close(): Promise<void>;
}

/** An HTTPS backend with the PKI's server certificate; `mtls`: it requires a client certificate from the CA. */
async function tlsBackend(opts: { mtls?: boolean; h2?: boolean } = {}): Promise<TlsBackend> {
  const b: TlsBackend = { url: "", hits: 0, clients: [], close: async () => {} };
  const options = {
    cert: pki.read(pki.serverCert),
    key: pki.read(pki.serverKey),
    ca: pki.read(pki.ca),
    requestCert: opts.mtls === true,
    rejectUnauthorized: opts.mtls === true,
  };
  const handler = (
    req: { httpVersion: string; socket: unknown; url?: string },
    res: { setHeader(k: string, v: string): void; end(s: string): void },
  ) => {
    b.hits++;
    const cn = (req.socket as TLSSocket).getPeerCertificate?.()?.subject?.CN ?? "";
    b.clients.push(String(cn));
    res.setHeader("content-type", "application/json");
    res.end(JSON.stringify({ version: req.httpVersion, url: req.url, client: cn }));
  };
  const server = opts.h2
    ? http2.createSecureServer(options, handler as never)
    : https.createServer(options, handler as never);
  await new Promise<void>((ok) => server.listen(0, "127.0.0.1", ok));
  b.url = `https://127.0.0.1:${(server.address() as AddressInfo).port}`;
  b.close = () =>
    new Promise<void>((ok) => {
      (server as https.Server).closeAllConnections?.();
      server.close(() => ok());
      // http2 sessions do not close by themselves: the test's own clients are gone by now.
      setTimeout(ok, 200).unref();
    });
  return b;
}

before(() => {
  pki = makePki();
});
after(() => pki.cleanup());

/** A gateway with one route `/` to one service written as `service` YAML (flow style). */
async function via(service: string, extraRoute = ""): Promise<Running> {
  return gateway(`
services: { s: ${service} }
routes:
  ${extraRoute}
  - { name: r, service: s }
`);
}

describe("upstream TLS", () => {
  test("an https target with a certificate from the service's CA is verified and reached (both forwarding paths)", async () => {
    const up = await tlsBackend();
    const gw = await via(
      `{ targets: [${up.url}], tls: { ca: ${pki.ca} } }`,
      "- { name: cached, match: { path: /cached }, service: s, cache: { ttl: 1m } }",
    );
    try {
      const direct = await request(`${gw.url}/x`);
      assert.equal(direct.status, 200, direct.body);
      assert.equal(direct.json().url, "/x");
      const cached = await request(`${gw.url}/cached`);
      assert.equal(cached.status, 200, cached.body);
      assert.equal(up.hits, 2);
    } finally {
      await gw.close();
      await up.close();
    }
  });

  test("the same target without the CA (Node's default roots) is a 502 SY_UPSTREAM_CONNECT: verification is on by default", async () => {
    const up = await tlsBackend();
    const gw = await via(`{ targets: [${up.url}] }`);
    try {
      const r = await request(`${gw.url}/x`);
      assert.equal(r.status, 502);
      assert.equal(r.json().code, "SY_UPSTREAM_CONNECT");
      assert.equal(up.hits, 0);
    } finally {
      await gw.close();
      await up.close();
    }
  });

  test("a wrong CA is a 502 SY_UPSTREAM_CONNECT and the target never sees the request (retried elsewhere first)", async () => {
    const up = await tlsBackend();
    const up2 = await tlsBackend();
    const gw = await via(
      `{ targets: [${up.url}, ${up2.url}], tls: { ca: ${pki.otherCa} }, retries: { attempts: 1 } }`,
    );
    try {
      const r = await request(`${gw.url}/x`, { method: "POST", body: "not idempotent" });
      assert.equal(r.status, 502, r.body);
      assert.equal(r.json().code, "SY_UPSTREAM_CONNECT");
      assert.doesNotMatch(r.body, /127\.0\.0\.1/, "no upstream address to the public");
      assert.equal(up.hits + up2.hits, 0);
    } finally {
      await gw.close();
      await up.close();
      await up2.close();
    }
  });

  test("a servername the certificate does not carry fails; one it carries passes", async () => {
    const up = await tlsBackend();
    const bad = await via(`{ targets: [${up.url}], tls: { ca: ${pki.ca}, servername: other.test } }`);
    const good = await via(`{ targets: [${up.url}], tls: { ca: ${pki.ca}, servername: svc.test } }`);
    try {
      const r = await request(`${bad.url}/x`);
      assert.equal(r.status, 502);
      assert.equal(r.json().code, "SY_UPSTREAM_CONNECT");
      assert.equal((await request(`${good.url}/x`)).status, 200);
      assert.equal(up.hits, 1);
    } finally {
      await bad.close();
      await good.close();
      await up.close();
    }
  });

  test("mTLS: the gateway's client certificate is shown to a target that requires one", async () => {
    const up = await tlsBackend({ mtls: true });
    const gw = await via(
      `{ targets: [${up.url}], tls: { ca: ${pki.ca}, cert: ${pki.clientCert}, key: ${pki.clientKey} } }`,
    );
    try {
      const r = await request(`${gw.url}/x`);
      assert.equal(r.status, 200, r.body);
      assert.equal(r.json().client, "switchyard");
      assert.deepEqual(up.clients, ["switchyard"]);
    } finally {
      await gw.close();
      await up.close();
    }
  });

  test("mTLS: without a client certificate the target refuses the handshake: a 502, the request unseen", async () => {
    const up = await tlsBackend({ mtls: true });
    const gw = await via(`{ targets: [${up.url}], tls: { ca: ${pki.ca} } }`);
    try {
      const r = await request(`${gw.url}/x`);
      assert.equal(r.status, 502, r.body);
      // TLS 1.3 checks the client's certificate after the client's side of the handshake is done:
      // the refusal arrives as an alert (a connect failure) or, when the socket closes first, as
      // a close after the request was written (SY_UPSTREAM_RESET, as for any such close).
      assert.ok(["SY_UPSTREAM_CONNECT", "SY_UPSTREAM_RESET"].includes(r.json().code as string), r.body);
      assert.equal(up.hits, 0);
    } finally {
      await gw.close();
      await up.close();
    }
  });

  test("insecureSkipVerify reaches a target no CA vouches for", async () => {
    const up = await tlsBackend();
    const gw = await via(`{ targets: [${up.url}], tls: { ca: ${pki.otherCa}, insecureSkipVerify: true } }`);
    try {
      assert.equal((await request(`${gw.url}/x`)).status, 200);
    } finally {
      await gw.close();
      await up.close();
    }
  });

  test("health checks use the service's tls: a verified target is healthy, one the CA does not vouch for is not", async () => {
    const up = await tlsBackend();
    const hc = "healthCheck: { path: /health, interval: 1h }";
    const good = await via(`{ targets: [${up.url}], tls: { ca: ${pki.ca} }, ${hc} }`);
    const bad = await via(`{ targets: [${up.url}], tls: { ca: ${pki.otherCa} }, ${hc} }`);
    try {
      assert.equal(good.gw.generation.services.get("s")!.targets[0].healthy, true);
      assert.equal(bad.gw.generation.services.get("s")!.targets[0].healthy, false);
      const r = await request(`${bad.url}/x`);
      assert.equal(r.status, 503);
      assert.equal(r.json().code, "SY_NO_HEALTHY_TARGET");
      assert.equal((await request(`${good.url}/x`)).status, 200);
    } finally {
      await good.close();
      await bad.close();
      await up.close();
    }
  });

  test("protocol h2: HTTP/2 over verified TLS to the target", async () => {
    const up = await tlsBackend({ h2: true, mtls: true });
    const gw = await via(
      `{ targets: [${up.url}], protocol: h2, tls: { ca: ${pki.ca}, cert: ${pki.clientCert}, key: ${pki.clientKey} }, healthCheck: { interval: 1h } }`,
    );
    try {
      assert.equal(gw.gw.generation.services.get("s")!.targets[0].healthy, true, "h2 health probe");
      const r = await request(`${gw.url}/x?q=1`);
      assert.equal(r.status, 200, r.body);
      assert.equal(r.json().version, "2.0");
      assert.equal(r.json().url, "/x?q=1");
      assert.equal(r.json().client, "switchyard");
    } finally {
      await gw.close();
      await up.close();
    }
  });

  test("protocol h2 to a target that only speaks HTTP/1.1 is a 502 SY_UPSTREAM_CONNECT, not a switch to HTTP/1.1", async () => {
    const up = await tlsBackend();
    const gw = await via(`{ targets: [${up.url}], protocol: h2, tls: { ca: ${pki.ca} } }`);
    try {
      const r = await request(`${gw.url}/x`);
      assert.equal(r.status, 502, r.body);
      assert.equal(r.json().code, "SY_UPSTREAM_CONNECT");
      assert.equal(up.hits, 0);
    } finally {
      await gw.close();
      await up.close();
    }
  });
});

describe("upstream TLS for WebSockets", () => {
  test("a WebSocket to an https target is verified with the service's CA and shows its client certificate", async () => {
    let upgrades = 0;
    const server = https.createServer({
      cert: pki.read(pki.serverCert),
      key: pki.read(pki.serverKey),
      ca: pki.read(pki.ca),
      requestCert: true,
      rejectUnauthorized: true,
    });
    server.on("upgrade", (req, socket) => {
      upgrades++;
      const cn = (socket as TLSSocket).getPeerCertificate().subject?.CN;
      socket.end(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
          `Sec-WebSocket-Accept: ${acceptKey(String(req.headers["sec-websocket-key"]))}\r\nX-Client: ${cn}\r\n\r\n`,
      );
    });
    await new Promise<void>((ok) => server.listen(0, "127.0.0.1", ok));
    const url = `https://127.0.0.1:${(server.address() as AddressInfo).port}`;
    const good = await gateway(`
services: { s: { targets: [${url}], tls: { ca: ${pki.ca}, cert: ${pki.clientCert}, key: ${pki.clientKey} } } }
routes: [{ name: ws, service: s, websocket: true }]
`);
    const bad = await gateway(`
services: { s: { targets: [${url}], tls: { ca: ${pki.otherCa}, cert: ${pki.clientCert}, key: ${pki.clientKey} } } }
routes: [{ name: ws, service: s, websocket: true }]
`);
    try {
      const ok = await wsConnect(good.url, "/chat");
      assert.ok(ok.upgraded, "upgraded through the verified, mutually authenticated connection");
      assert.equal(ok.res.headers["x-client"], "switchyard");
      ok.socket.destroy();
      const refused = await wsConnect(bad.url, "/chat");
      assert.ok(!refused.upgraded);
      assert.equal(refused.status, 502);
      assert.equal(JSON.parse(refused.body).code, "SY_UPSTREAM_CONNECT");
      assert.equal(upgrades, 1);
    } finally {
      await good.close();
      await bad.close();
      server.closeAllConnections();
      await new Promise<void>((ok) => server.close(() => ok()));
    }
  });
});

describe("upstream TLS configuration", () => {
  const problems = (services: string): string[] => {
    try {
      parseConfig(
        `version: 1\nlisten: [{ port: 1 }]\nservices:\n${services}\nroutes: [{ name: r, service: a }]\n`,
      );
    } catch (err) {
      assert.ok(err instanceof ConfigError);
      return err.message.split("\n");
    }
    assert.fail("expected the config to be refused");
  };

  test("protocol and tls must fit the targets' schemes; a client certificate needs its key; files must be readable", () => {
    const lines = problems(`  a: { targets: [https://127.0.0.1:1], protocol: h2c }
  b: { targets: [http://127.0.0.1:2], protocol: h2 }
  c: { targets: [http://127.0.0.1:3], tls: { ca: ${pki.ca} } }
  d: { targets: [https://127.0.0.1:4], tls: { cert: ${pki.clientCert} } }
  e: { targets: [https://127.0.0.1:5], tls: { ca: /nonexistent/ca.pem } }`);
    const has = (re: RegExp) =>
      assert.ok(
        lines.some((l) => re.test(l)),
        `${re}\n${lines.join("\n")}`,
      );
    has(/^routes\.yaml:4:\d+ services\.a\.targets\[0\]: protocol h2c is HTTP\/2 in clear/);
    has(/^routes\.yaml:5:\d+ services\.b\.targets\[0\]: protocol h2 is HTTP\/2 over TLS/);
    has(/^routes\.yaml:6:\d+ services\.c\.targets\[0\]: tls applies to https:\/\/ targets only/);
    has(/^routes\.yaml:7:\d+ services\.d\.tls: a client certificate needs both cert and key/);
    has(/^routes\.yaml:8:\d+ services\.e\.tls\.ca: cannot read '\/nonexistent\/ca\.pem'/);
  });

  test("two services may share an origin only if they reach it the same way (one pool per origin)", () => {
    const lines = problems(`  a: { targets: [https://127.0.0.1:1] }
  b: { targets: [https://127.0.0.1:1], tls: { insecureSkipVerify: true } }`);
    assert.ok(
      lines.some((l) =>
        /services\.b\.targets\[0\]: 'https:\/\/127\.0\.0\.1:1' is also a target of service 'a' with another protocol or tls/.test(
          l,
        ),
      ),
      lines.join("\n"),
    );
    // The same way twice is fine.
    parseConfig(
      "version: 1\nservices:\n  a: { targets: [https://127.0.0.1:1], protocol: h2 }\n  b: { targets: [https://127.0.0.1:1], protocol: h2 }\n",
    );
  });

  test("insecureSkipVerify passes --check with a warning naming the service", () => {
    const f = join(pki.dir, "routes.yaml");
    writeFileSync(
      f,
      "version: 1\nlisten: [{ port: 8080 }]\nservices:\n  legacy: { targets: [https://127.0.0.1:1], tls: { insecureSkipVerify: true } }\n  fine: { targets: [https://127.0.0.1:2], tls: { insecureSkipVerify: false } }\nroutes: [{ name: r, service: legacy }]\n",
    );
    const r = spawnSync(process.execPath, ["--import", "tsx", "src/cli.ts", "--check", "--config", f], {
      encoding: "utf8",
    });
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /OK/);
    assert.match(
      r.stderr,
      /warning: services\.legacy\.tls\.insecureSkipVerify: the targets' certificates are not verified/,
    );
    assert.doesNotMatch(r.stderr, /services\.fine/);
  });

  test("explain says how a service reaches its targets", () => {
    const f = join(pki.dir, "explain.yaml");
    writeFileSync(
      f,
      `version: 1\nlisten: [{ port: 8080 }]\nservices:\n  grpc: { targets: [https://127.0.0.1:1], protocol: h2, tls: { ca: ${pki.ca}, cert: ${pki.clientCert}, key: ${pki.clientKey} } }\nroutes: [{ name: r, service: grpc }]\n`,
    );
    const r = spawnSync(
      process.execPath,
      ["--import", "tsx", "src/cli.ts", "explain", "--config", f, "POST", "http://x/svc.A/B"],
      { encoding: "utf8" },
    );
    assert.equal(r.status, 0, r.stderr);
    assert.match(
      r.stdout,
      /to the targets: HTTP\/2 over TLS \(h2\); certificates verified against .*test-ca\.crt; client certificate .*switchyard\.crt \(mTLS\)/,
    );
  });
});
