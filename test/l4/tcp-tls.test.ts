/**
 * TLS passthrough by SNI: two real TLS backends with their own self-signed
 * certificates (made by openssl for each run); the gateway never holds a key,
 * so the certificate a client sees proves which backend it reached.
 */
import assert from "node:assert/strict";
import { once } from "node:events";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type TestContext, test } from "node:test";
import { connect as tlsConnect, createServer as tlsServer } from "node:tls";
import { closed, dial, run, services, tcpProxy, until } from "./helpers.js";

async function cert(dir: string, cn: string): Promise<{ key: Buffer; cert: Buffer }> {
  const key = join(dir, `${cn}.key`);
  const crt = join(dir, `${cn}.crt`);
  const r = await run("openssl", [
    "req",
    "-x509",
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:prime256v1",
    "-nodes",
    "-keyout",
    key,
    "-out",
    crt,
    "-days",
    "1",
    "-subj",
    `/CN=${cn}`,
  ]);
  assert.equal(r.code, 0, r.stderr);
  return { key: readFileSync(key), cert: readFileSync(crt) };
}

/** A TLS server that answers each connection with its own name, then echoes. */
async function tlsBackend(t: TestContext, creds: { key: Buffer; cert: Buffer }, name: string) {
  const backend = { accepted: 0, port: 0 };
  const server = tlsServer(creds, (s) => {
    s.on("error", () => {});
    s.write(`${name}\n`);
    s.pipe(s);
  });
  server.on("connection", () => backend.accepted++);
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  backend.port = (server.address() as AddressInfo).port;
  t.after(() => server.close());
  return backend;
}

/** Connects through the proxy with a server name; resolves with the peer certificate's CN and first line. */
function visit(port: number, servername?: string): Promise<{ cn: unknown; line: string }> {
  return new Promise((resolve, reject) => {
    const c = tlsConnect({ port, host: "127.0.0.1", servername, rejectUnauthorized: false });
    const timer = setTimeout(() => reject(new Error("no answer")), 5000);
    c.once("error", reject);
    c.once("close", () => reject(new Error("closed before an answer")));
    c.once("data", (d: Buffer) => {
      clearTimeout(timer);
      const cn = c.getPeerCertificate().subject?.CN;
      c.removeAllListeners("close");
      c.destroy();
      resolve({ cn, line: d.toString().trim() });
    });
  });
}

async function setup(t: TestContext) {
  const dir = mkdtempSync(join(tmpdir(), "sy-l4-tls-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const a = await tlsBackend(t, await cert(dir, "a.test"), "A");
  const b = await tlsBackend(t, await cert(dir, "b.test"), "B");
  const svc = services(
    `  sa: { targets: [tcp://127.0.0.1:${a.port}] }\n  sb: { targets: [tcp://127.0.0.1:${b.port}] }`,
  );
  return { a, b, svc };
}

test("TLS passthrough: the servername picks the backend, whose own certificate the client sees", async (t) => {
  const { a, b, svc } = await setup(t);
  const { port } = await tcpProxy(t, { sni: { "a.test": "sa", "*.b.test": "sb" } }, svc);
  assert.deepEqual(await visit(port, "a.test"), { cn: "a.test", line: "A" });
  assert.deepEqual(await visit(port, "x.b.test"), { cn: "b.test", line: "B" });
  assert.deepEqual(await visit(port, "deep.x.b.test"), { cn: "b.test", line: "B" });
  assert.deepEqual(await visit(port, "A.TEST"), { cn: "a.test", line: "A" });
  assert.deepEqual([a.accepted, b.accepted], [2, 2]);
  // The bare name of a wildcard, an unknown name and no SNI at all: no default, so closed.
  for (const name of ["b.test", "c.test", undefined]) {
    await assert.rejects(visit(port, name), `${name} should be refused`);
  }
  assert.deepEqual([a.accepted, b.accepted], [2, 2]);
});

test("TLS passthrough: default takes unknown names and clients without SNI", async (t) => {
  const { svc } = await setup(t);
  const { port } = await tcpProxy(t, { sni: { "b.test": "sb" }, default: "sa" }, svc);
  assert.deepEqual(await visit(port, "b.test"), { cn: "b.test", line: "B" });
  assert.deepEqual(await visit(port, "other.test"), { cn: "a.test", line: "A" });
  assert.deepEqual(await visit(port, undefined), { cn: "a.test", line: "A" });
});

test("TLS passthrough: non-TLS or malformed first bytes are closed cleanly, the listener lives on", async (t) => {
  const { a, b, svc } = await setup(t);
  const { proxy, port } = await tcpProxy(t, { sni: { "a.test": "sa" }, default: "sb" }, svc, 500);
  const probes = [
    "GET / HTTP/1.1\r\nHost: a.test\r\n\r\n",
    "SSH-2.0-OpenSSH_9.6\r\n",
    Buffer.from([22, 3, 1, 0, 5, 1, 0, 0, 1, 0]), // a ClientHello that claims one byte it lacks
    Buffer.from([22, 3, 1, 0xff, 0xff]),
  ];
  for (const probe of probes) {
    const c = await dial(port);
    c.write(probe);
    await closed(c);
  }
  // Silence after connect: the ClientHello wait times out (500 ms here).
  await closed(await dial(port), 3000);
  await until(() => proxy.stats.active === 0);
  assert.equal(proxy.stats.refused, probes.length + 1);
  assert.deepEqual([a.accepted, b.accepted], [0, 0]);
  assert.deepEqual(await visit(port, "a.test"), { cn: "a.test", line: "A" });
});

test("TLS passthrough behind another balancer: PROXY header first, then the ClientHello", async (t) => {
  const { svc } = await setup(t);
  const { port } = await tcpProxy(
    t,
    { sni: { "a.test": "sa", "b.test": "sb" }, acceptProxyProtocol: true },
    svc,
  );
  const raw = await dial(port);
  raw.write("PROXY TCP4 203.0.113.9 198.51.100.1 4000 443\r\n");
  const c = tlsConnect({ socket: raw, servername: "b.test", rejectUnauthorized: false });
  const [line] = (await once(c, "data", { signal: AbortSignal.timeout(5000) })) as [Buffer];
  assert.equal(line.toString().trim(), "B");
  assert.equal(c.getPeerCertificate().subject?.CN, "b.test");
  c.destroy();
});
