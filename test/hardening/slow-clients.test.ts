/**
 * Issue 15: slow and abusive clients. Slowloris (headers a byte at a time) and
 * slow bodies are cut off by the listener's `timeouts`; a connection that says
 * nothing, or idles between requests, is closed; `maxConnections` bounds what a
 * flood of idle sockets can hold; and floods of garbage on the L7 port and on
 * L4 ports (plain, PROXY-protocol, SNI) leave the gateway serving.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { once } from "node:events";
import net, { type AddressInfo } from "node:net";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import tls from "node:tls";
import { gateway, type Running, request } from "../helpers/index.js";
import { codeOf, type Recorder, rawSend, recorder } from "./helpers.js";

/**
 * Connect and resolve once connected (or failed): the socket, a promise of its close
 * (ms after connecting), and what it has read so far. It reads from the start: a socket
 * nobody reads may never see the gateway's FIN as 'end', nor then 'close'.
 */
function open(port: number): Promise<{ s: net.Socket; closed: Promise<number>; read: () => string }> {
  return new Promise((ok) => {
    const s = net.connect(port, "127.0.0.1");
    const t0 = Date.now();
    let text = "";
    s.on("data", (c: Buffer) => {
      text += c.toString("latin1");
    });
    const read = () => text;
    const closed = new Promise<number>((c) => s.once("close", () => c(Date.now() - t0)));
    s.on("error", () => {});
    s.once("connect", () => ok({ s, closed, read }));
    s.once("close", () => ok({ s, closed, read }));
  });
}

/** Write `text` a byte every `everyMs` until the gateway closes the socket (or `text` runs out). */
function trickle(s: net.Socket, text: string, everyMs: number): Promise<void> {
  return new Promise((done) => {
    let i = 0;
    const timer = setInterval(() => {
      if (s.destroyed || i >= text.length) {
        clearInterval(timer);
        return done();
      }
      s.write(text[i++]);
    }, everyMs);
  });
}

const within = async <T>(p: Promise<T>, ms: number, what: string): Promise<T> => {
  let timer: NodeJS.Timeout | undefined;
  const limit = new Promise<never>((_, fail) => {
    timer = setTimeout(() => fail(new Error(`${what}: not within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([p, limit]);
  } finally {
    clearTimeout(timer);
  }
};

/** A gateway with one listener on 127.0.0.1:0 set as `listen` says (YAML flow style), every request to `rec`. */
const fronting = (rec: Recorder, listen: string): Promise<Running> =>
  gateway(`
listen: [{ port: 0, host: 127.0.0.1, ${listen} }]
services: { rec: { targets: [${rec.url}] } }
routes: [{ name: all, service: rec }]
`);

describe("slow clients are cut off by the listener's timeouts", () => {
  let rec: Recorder;
  let gw: Running;
  before(async () => {
    rec = await recorder();
    gw = await fronting(rec, "timeouts: { headers: 400ms, request: 900ms, idle: 300ms }");
  });
  after(async () => {
    await gw.close();
    await rec.close();
  });

  test("slowloris: headers a byte every 20 ms get 408 at the headers timeout, however long they keep coming", async () => {
    const { s, closed, read } = await open(gw.port);
    const head = `GET /slow HTTP/1.1\r\nHost: h\r\n${"X-Pad: aaaaaaaaaaaaaaaaaaaa\r\n".repeat(40)}\r\n`;
    void trickle(s, head, 20); // 40 × 28 bytes × 20 ms ≈ 22 s if nothing cut it
    const took = await within(closed, 8000, "slowloris connection close");
    assert.ok(took >= 350, `closed too early (${took} ms)`);
    assert.match(read(), /^HTTP\/1\.1 408 /);
    assert.equal(codeOf(read()), "SY_REQUEST_TIMEOUT");
    assert.ok(!rec.seen.includes("GET /slow"));
  });

  test("a slow body: 408 at the request timeout, the connection closed", async () => {
    const { s, closed, read } = await open(gw.port);
    s.write("POST /slow-body HTTP/1.1\r\nHost: h\r\nContent-Length: 1000\r\n\r\n");
    void trickle(s, "b".repeat(1000), 20);
    const took = await within(closed, 8000, "slow body connection close");
    assert.ok(took >= 800, `closed too early (${took} ms)`);
    assert.match(read(), /^HTTP\/1\.1 408 /);
  });

  test("a connection that never sends a byte is closed by the headers timeout", async () => {
    const { closed } = await open(gw.port);
    const took = await within(closed, 8000, "silent connection close");
    assert.ok(took >= 350, `closed too early (${took} ms)`);
  });

  test("a keep-alive connection idle after its request is closed at the idle timeout", async () => {
    const { s, closed, read } = await open(gw.port);
    s.write("GET /idle HTTP/1.1\r\nHost: h\r\n\r\n");
    const took = await within(closed, 8000, "idle keep-alive close");
    assert.match(read(), /^HTTP\/1\.1 200 /);
    assert.ok(took >= 250, `closed too early (${took} ms)`);
  });

  test("the gateway still serves", async () => {
    assert.equal((await request(`${gw.url}/after`)).status, 200);
  });
});

test("TLS: a connection silent after its handshake, or that never handshakes, is closed at the headers timeout", async () => {
  const rec = await recorder();
  const fx = join(import.meta.dirname, "..", "fixtures", "tls");
  const gw = await fronting(
    rec,
    `tls: { cert: ${join(fx, "default.crt")}, key: ${join(fx, "default.key")} }, timeouts: { headers: 400ms }`,
  );
  try {
    const s = tls.connect({ port: gw.port, host: "127.0.0.1", rejectUnauthorized: false });
    s.on("error", () => {});
    s.resume(); // read, so the gateway's close arrives as 'end' and 'close'
    await once(s, "secureConnect");
    const t0 = Date.now();
    await within(once(s, "close"), 8000, "silent TLS connection close");
    assert.ok(Date.now() - t0 >= 300);
    const { closed } = await open(gw.port);
    await within(closed, 8000, "a TCP connection that never starts TLS");
  } finally {
    await gw.close();
    await rec.close();
  }
});

describe("maxConnections bounds a flood of idle sockets", () => {
  let rec: Recorder;
  let gw: Running;
  before(async () => {
    rec = await recorder();
    gw = await fronting(rec, "maxConnections: 100, timeouts: { headers: 20s, request: 30s, idle: 20s }");
  });
  after(async () => {
    await gw.close();
    await rec.close();
  });

  test("2000 idle connections: at most maxConnections stay open; the rest are closed at once; service resumes", async () => {
    // In waves below the listen backlog: past it the kernel drops handshakes and a client can
    // believe itself connected to a server that never accepted it (nothing the gateway holds).
    let gone = 0;
    const socks: Awaited<ReturnType<typeof open>>[] = [];
    try {
      for (let wave = 0; wave < 8; wave++) {
        const got = await Promise.all(Array.from({ length: 250 }, () => open(gw.port)));
        for (const o of got) {
          socks.push(o);
          void o.closed.then(() => gone++);
        }
        for (let i = 0; i < 60 && gone < socks.length - 100; i++) await delay(50);
      }
      await delay(300); // any straggler over the limit would have been closed by now too
      const alive = socks.length - gone;
      assert.ok(alive <= 100, `${alive} connections held open (limit 100)`);
      assert.ok(alive >= 90, `only ${alive} connections accepted (limit 100)`);
      // The server is full: a new client is closed without an answer.
      const r = await rawSend(gw.port, "GET /full HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n");
      assert.deepEqual(r.statuses, []);
      assert.ok(r.closed);
    } finally {
      for (const { s } of socks) s.destroy();
    }
    // Slots come back as the idle sockets go.
    let status = 0;
    for (let i = 0; i < 50 && status !== 200; i++) {
      status = await request(`${gw.url}/again`).then(
        (r) => r.status,
        () => 0,
      );
      if (status !== 200) await delay(50);
    }
    assert.equal(status, 200);
  });
});

describe("garbage floods on L7 and L4 ports leave the gateway serving", () => {
  let rec: Recorder;
  let echo: net.Server;
  let gw: Running;
  before(async () => {
    rec = await recorder();
    echo = net.createServer((s) => s.pipe(s));
    await new Promise<void>((ok) => echo.listen(0, "127.0.0.1", ok));
    const echoPort = (echo.address() as AddressInfo).port;
    gw = await gateway(`
services:
  rec: { targets: [${rec.url}] }
  echo: { targets: [tcp://127.0.0.1:${echoPort}] }
routes: [{ name: all, service: rec }]
tcp:
  - { name: plain, listen: { port: 0, host: 127.0.0.1 }, service: echo, idleTimeout: 2s }
  - { name: proxied, listen: { port: 0, host: 127.0.0.1 }, service: echo, acceptProxyProtocol: true }
  - { name: sni, listen: { port: 0, host: 127.0.0.1 }, sni: { "a.example": echo } }
`);
  });
  after(async () => {
    await gw.close();
    await rec.close();
    await new Promise<void>((ok) => echo.close(() => ok()));
  });

  /** `n` connections each writing `bytes` random bytes then ending, 50 at a time; resolves when all closed. */
  async function flood(port: number, n: number, bytes: number): Promise<void> {
    for (let i = 0; i < n; i += 50) {
      await Promise.all(
        Array.from({ length: Math.min(50, n - i) }, async () => {
          const { s, closed } = await open(port);
          s.end(randomBytes(bytes));
          await Promise.race([closed, delay(3000).then(() => s.destroy())]);
        }),
      );
    }
  }

  const echoes = (port: number, preface: Buffer | string = "") =>
    new Promise<string>((ok, fail) => {
      const s = net.connect(port, "127.0.0.1", () =>
        s.write(Buffer.concat([Buffer.from(preface), Buffer.from("ping")])),
      );
      let got = "";
      s.on("data", (c) => {
        got += c;
        if (got.includes("ping")) {
          s.destroy();
          ok(got);
        }
      });
      s.on("error", fail);
      setTimeout(() => {
        s.destroy();
        fail(new Error(`no echo on ${port}`));
      }, 3000).unref();
    });

  test("L7: 300 connections of random bytes, then real requests are answered", async () => {
    await within(flood(gw.port, 300, 4096), 30_000, "L7 flood");
    for (let i = 0; i < 5; i++) assert.equal((await request(`${gw.url}/real-${i}`)).status, 200);
    assert.ok(!rec.seen.some((l) => !l.startsWith("GET /real-")), rec.seen.join("\n"));
  });

  test("L4: random bytes on plain, PROXY-protocol and SNI listeners; each still proxies afterwards", async () => {
    const [plain, proxied, sni] = gw.gw.listeners.tcp.map((l) => l.address().port);
    await within(
      Promise.all([flood(plain, 100, 2048), flood(proxied, 100, 2048), flood(sni, 100, 2048)]),
      40_000,
      "L4 flood",
    );
    assert.match(await echoes(plain), /ping/);
    assert.match(await echoes(proxied, "PROXY TCP4 10.0.0.1 10.0.0.2 1111 2222\r\n"), /ping/);
    assert.equal((await request(`${gw.url}/real-after-l4`)).status, 200);
  });
});

function delay(ms: number): Promise<void> {
  return new Promise((ok) => setTimeout(ok, ms));
}
