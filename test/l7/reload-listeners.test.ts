/**
 * Issue 10: a reload applies `listen` without a restart. Added listeners bind
 * and answer; removed ones refuse new connections while their in-flight
 * requests finish; a new certificate at the same port is served from the next
 * handshake; a bind that fails fails the whole reload and leaves every
 * listener serving as before.
 */
import assert from "node:assert/strict";
import { once } from "node:events";
import { copyFileSync, mkdtempSync, rmSync } from "node:fs";
import http, { type ServerResponse } from "node:http";
import https from "node:https";
import net, { type AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import type { TLSSocket } from "node:tls";
import { parseConfig } from "../../src/config/load.js";
import { Gateway } from "../../src/server.js";
import { type Backend, backend, request } from "../helpers/index.js";

const fixtures = join(import.meta.dirname, "..", "fixtures", "tls");

/** An upstream that holds /slow until release() and says when it has one. */
let up: Backend;
let held: ServerResponse[] = [];
const arrived = new EventTarget();

before(async () => {
  up = await backend("up", (req, res) => {
    if (req.url === "/slow") {
      held.push(res);
      arrived.dispatchEvent(new Event("slow"));
      return;
    }
    res.end(`up ${req.url}`);
  });
});
after(() => up.close());

function config(listen: string, more = "", baseDir?: string): ReturnType<typeof parseConfig> {
  return parseConfig(
    `version: 1
shutdownTimeout: 5s
listen: ${listen}
services: { up: { targets: [${up.url}] } }
routes:
${more}  - { name: all, service: up }
`,
    { baseDir },
  );
}

const PLAIN = "{ port: 0, host: 127.0.0.1 }";
const urlOf = (port: number, scheme = "http") => `${scheme}://127.0.0.1:${port}`;

/** Resolves with the connect error's code (ECONNREFUSED), or "connected". */
function tryConnect(port: number): Promise<string> {
  return new Promise((ok) => {
    const s = net.connect(port, "127.0.0.1");
    s.on("connect", () => {
      s.destroy();
      ok("connected");
    });
    s.on("error", (err: NodeJS.ErrnoException) => ok(err.code ?? err.message));
  });
}

/** GET / over TLS: the status and the served certificate's CN. */
function tlsGet(port: number): Promise<{ status: number; cn: string }> {
  return new Promise((ok, fail) => {
    https
      .get(
        {
          host: "127.0.0.1",
          port,
          path: "/",
          servername: "localhost",
          rejectUnauthorized: false,
          agent: false,
        },
        (res) => {
          const cn = String((res.socket as TLSSocket).getPeerCertificate().subject?.CN);
          res.resume();
          res.on("end", () => ok({ status: res.statusCode ?? 0, cn }));
        },
      )
      .on("error", fail);
  });
}

describe("reload applies listen", () => {
  test("an added listener binds and answers; the kept one keeps its port", async (t) => {
    const gw = await Gateway.start(config(`[${PLAIN}]`));
    t.after(() => gw.close(200));
    const [first] = gw.addresses;
    assert.equal(gw.generationNumber, 1);
    await gw.reload(config(`[${PLAIN}, ${PLAIN}]`));
    assert.equal(gw.generationNumber, 2);
    assert.equal(gw.addresses.length, 2);
    assert.deepEqual(gw.addresses[0], first, "the unchanged entry keeps its server");
    const added = gw.addresses[1].port;
    assert.notEqual(added, first.port);
    const r = await request(urlOf(added), { path: "/x" });
    assert.equal(r.status, 200);
    assert.equal(r.body, "up /x");
  });

  test("a removed listener refuses new connections; its in-flight request completes", async (t) => {
    const gw = await Gateway.start(config(`[${PLAIN}, ${PLAIN}]`));
    t.after(() => gw.close(200));
    const [kept, removed] = gw.addresses.map((a) => a.port);
    held = [];
    const slow = request(urlOf(removed), { path: "/slow" });
    await once(arrived, "slow");
    await gw.reload(config(`[${PLAIN}]`));
    assert.deepEqual(
      gw.addresses.map((a) => a.port),
      [kept],
    );
    assert.equal(await tryConnect(removed), "ECONNREFUSED");
    assert.equal((await request(urlOf(kept), { path: "/y" })).body, "up /y", "the kept listener serves on");
    held[0].end("slow done");
    const r = await slow;
    assert.equal(r.status, 200);
    assert.equal(r.body, "slow done");
  });

  test("a new certificate at the same port is served without a rebind", async (t) => {
    const dir = mkdtempSync(join(tmpdir(), "sy-reload-tls-"));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const use = (name: string) => {
      copyFileSync(join(fixtures, `${name}.crt`), join(dir, "gw.crt"));
      copyFileSync(join(fixtures, `${name}.key`), join(dir, "gw.key"));
    };
    use("default");
    const tls = `[{ port: 0, host: 127.0.0.1, tls: { cert: gw.crt, key: gw.key } }]`;
    const gw = await Gateway.start(config(tls, "", dir), { baseDir: dir });
    t.after(() => gw.close(200));
    const { port } = gw.addresses[0];
    assert.deepEqual(await tlsGet(port), { status: 200, cn: "localhost" });
    // Same paths, new contents (a renewed certificate): the files are read again on reload.
    use("api");
    await gw.reload(config(tls, "", dir));
    assert.equal(gw.addresses[0].port, port, "same port");
    assert.deepEqual(await tlsGet(port), { status: 200, cn: "api.example.test" });
  });

  test("serverTiming turned on for a kept listener: same port, its answers now carry Server-Timing", async (t) => {
    const gw = await Gateway.start(config(`[${PLAIN}]`));
    t.after(() => gw.close(200));
    const { port } = gw.addresses[0];
    assert.equal((await request(urlOf(port), { path: "/t" })).headers["server-timing"], undefined);
    await gw.reload(config("[{ port: 0, host: 127.0.0.1, serverTiming: true }]"));
    assert.equal(gw.addresses[0].port, port);
    assert.match(
      String((await request(urlOf(port), { path: "/t" })).headers["server-timing"]),
      /upstream;dur=/,
    );
  });

  test("TLS turned on at the same entry: the port then speaks https; in-flight plain requests finish", async (t) => {
    const gw = await Gateway.start(config(`[${PLAIN}]`), { baseDir: fixtures });
    t.after(() => gw.close(200));
    const { port } = gw.addresses[0];
    const tls = "[{ port: 0, host: 127.0.0.1, tls: { cert: default.crt, key: default.key } }]";
    // Undone first: the plain server gave up its port for the https one, then a later bind failed.
    const taken = http.createServer();
    await new Promise<void>((ok) => taken.listen(0, "127.0.0.1", ok));
    t.after(() => new Promise<void>((ok) => taken.close(() => ok())));
    const busy = `{ port: ${(taken.address() as AddressInfo).port}, host: 127.0.0.1 }`;
    await assert.rejects(
      gw.reload(config(`${tls.slice(0, -1)}, ${busy}]`, "", fixtures)),
      /address already in use/,
    );
    assert.deepEqual(gw.addresses, [{ kind: "http", host: "127.0.0.1", port }]);
    assert.equal((await request(urlOf(port), { path: "/p" })).body, "up /p", "plain again, same port");

    held = [];
    const slow = request(urlOf(port), { path: "/slow" });
    await once(arrived, "slow");
    await gw.reload(config(tls, "", fixtures));
    assert.deepEqual(gw.addresses, [{ kind: "https", host: "127.0.0.1", port }]);
    assert.deepEqual(await tlsGet(port), { status: 200, cn: "localhost" });
    held[0].end("slow done");
    assert.equal((await slow).body, "slow done");
  });

  test("a reload whose new port is taken fails and leaves the old listeners and config serving", async (t) => {
    const gw = await Gateway.start(config(`[${PLAIN}]`));
    t.after(() => gw.close(200));
    const taken = http.createServer();
    await new Promise<void>((ok) => taken.listen(0, "127.0.0.1", ok));
    t.after(() => new Promise<void>((ok) => taken.close(() => ok())));
    const busy = (taken.address() as AddressInfo).port;
    const before = gw.addresses;
    const next = config(
      `[${PLAIN}, ${PLAIN}, { port: ${busy}, host: 127.0.0.1 }]`,
      "  - { name: new, match: { path: /new }, respond: { status: 204 } }\n",
    );
    await assert.rejects(
      gw.reload(next),
      new RegExp(`cannot listen on 127\\.0\\.0\\.1:${busy}: address already in use`),
    );
    assert.equal(gw.generationNumber, 1);
    assert.deepEqual(gw.addresses, before);
    const r = await request(urlOf(before[0].port), { path: "/new" });
    assert.equal(r.body, "up /new", "the old routes still serve");
    // The same reload without the taken port goes through, so nothing was left bound by the failed one.
    await gw.reload(
      config(`[${PLAIN}, ${PLAIN}]`, "  - { name: new, match: { path: /new }, respond: { status: 204 } }\n"),
    );
    assert.equal((await request(urlOf(gw.addresses[1].port), { path: "/new" })).status, 204);
  });
});
