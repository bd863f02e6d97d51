/**
 * HTTP/2 downstream (issue 14, SPEC §2 listen[].http2): with tls, h2 by ALPN
 * and HTTP/1.1 still served on the same port; without tls, h2c by prior
 * knowledge. Policies, balancing, errors and access lines as on HTTP/1.1;
 * `:authority` is the host. Real clients: curl (--http2,
 * --http2-prior-knowledge) and node's http2 client, against real backends.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import http2 from "node:http2";
import https from "node:https";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import {
  type Backend,
  backend,
  capturingLogger,
  countLanes,
  deadPort,
  gateway,
  type Running,
} from "../helpers/index.js";
import { missing } from "../helpers/needs.js";

const certs = join(import.meta.dirname, "..", "fixtures", "tls");

interface CurlAnswer {
  status: number;
  version: string;
  headers: Record<string, string>;
  body: string;
}

/** One curl request; `-w` prints the status and HTTP version after the body on a line of its own. */
function curl(args: string[]): Promise<CurlAnswer> {
  return new Promise((ok, fail) => {
    execFile(
      "curl",
      ["-sS", "--max-time", "10", "-D", "-", "-w", "\n%{http_code} %{http_version}", ...args],
      { encoding: "utf8" },
      (err, stdout, stderr) => {
        if (err) return fail(new Error(`curl failed: ${stderr || err.message}`));
        const end = stdout.lastIndexOf("\n");
        const [status, version] = stdout.slice(end + 1).split(" ");
        const text = stdout.slice(0, end);
        const split = text.indexOf("\r\n\r\n");
        const headers: Record<string, string> = {};
        for (const line of text.slice(0, split).split("\r\n").slice(1)) {
          const i = line.indexOf(":");
          headers[line.slice(0, i).toLowerCase()] = line.slice(i + 1).trim();
        }
        ok({ status: Number(status), version, headers, body: text.slice(split + 4) });
      },
    );
  });
}

interface H2Answer {
  status: number;
  headers: http2.IncomingHttpHeaders;
  body: string;
}

/** One request on a node http2 session. */
function h2(
  session: http2.ClientHttp2Session,
  headers: http2.OutgoingHttpHeaders,
  body?: string | Buffer,
): Promise<H2Answer> {
  return new Promise((ok, fail) => {
    const req = session.request(headers);
    let head: http2.IncomingHttpHeaders = {};
    const chunks: Buffer[] = [];
    req.on("response", (h) => {
      head = h;
    });
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () =>
      ok({ status: Number(head[":status"]), headers: head, body: Buffer.concat(chunks).toString() }),
    );
    req.on("error", fail);
    req.end(body);
  });
}

const upstreamView = (body: string) =>
  JSON.parse(body) as {
    name: string;
    method: string;
    url: string;
    headers: Record<string, string>;
    bodyBytes: number;
  };

describe("HTTP/2 in clear (h2c by prior knowledge)", { skip: await missing("curl-http2") }, () => {
  let a: Backend;
  let b: Backend;
  let gw: Running;
  let lines: Record<string, unknown>[];
  let laned: Map<string, number>;

  before(async () => {
    a = await backend("a");
    b = await backend("b");
    const dead = await deadPort();
    const log = capturingLogger();
    lines = log.lines;
    gw = await gateway(
      `
listen: [{ port: 0, host: 127.0.0.1, http2: true }]
jwt: { hs: { secret: s3cret-s3cret-s3cret-s3cret-s3cret, algorithms: [HS256] } }
services:
  ab: { targets: [${a.url}, ${b.url}] }
  down: { targets: [http://127.0.0.1:${dead}], retries: { attempts: 0 } }
routes:
  - { name: hosted, match: { path: /hosted, hosts: [api.example.test] }, service: ab }
  - { name: limited, match: { path: /limited }, service: ab, rateLimit: { max: 1, window: 1m, by: route } }
  - { name: private, match: { path: /private }, service: ab, auth: { jwt: hs } }
  - { name: down, match: { path: /down }, service: down }
  - { name: api, match: { path: /api }, service: ab, rewrite: { stripPrefix: /api } }
`,
      { logger: log.logger },
    );
    laned = countLanes(gw.gw);
  });
  after(async () => {
    await gw.close();
    await a.close();
    await b.close();
  });

  test("curl --http2-prior-knowledge: proxied over HTTP/2, :authority forwarded as Host, request id back", async () => {
    const r = await curl(["--http2-prior-knowledge", `${gw.url}/api/users?x=1`]);
    assert.equal(r.version, "2");
    assert.equal(r.status, 200);
    const up = upstreamView(r.body);
    assert.equal(up.url, "/users?x=1");
    assert.equal(up.headers.host, `127.0.0.1:${gw.port}`);
    assert.equal(up.headers["x-forwarded-host"], `127.0.0.1:${gw.port}`);
    assert.equal(up.headers["x-forwarded-proto"], "http");
    assert.ok(!Object.keys(up.headers).some((k) => k.startsWith(":")), "no pseudo-header goes upstream");
    assert.equal(r.headers["x-request-id"], up.headers["x-request-id"]);
  });

  test("routes match on :authority like on Host (case-insensitive, port ignored)", async () => {
    const s = http2.connect(gw.url);
    try {
      const hit = await h2(s, { ":path": "/hosted", ":authority": "API.Example.test:8443" });
      assert.equal(hit.status, 200);
      assert.equal(upstreamView(hit.body).headers.host, "API.Example.test:8443");
      const miss = await h2(s, { ":path": "/hosted", ":authority": "other.test" });
      assert.equal(miss.status, 404);
      assert.equal(JSON.parse(miss.body).code, "SY_NO_ROUTE");
    } finally {
      s.close();
    }
  });

  test("request bodies pass byte for byte, with or without a content-length (HTTP/2 needs neither)", async () => {
    const s = http2.connect(gw.url);
    try {
      const payload = Buffer.alloc(200_000, 7);
      const streamed = await h2(s, { ":method": "POST", ":path": "/api/upload" }, payload);
      assert.equal(streamed.status, 200);
      assert.equal(upstreamView(streamed.body).bodyBytes, payload.length);
      assert.equal(upstreamView(streamed.body).method, "POST");
      const sized = await h2(
        s,
        { ":method": "PUT", ":path": "/api/upload", "content-length": "5", "content-type": "text/plain" },
        "hello",
      );
      assert.equal(upstreamView(sized.body).bodyBytes, 5);
    } finally {
      s.close();
    }
  });

  test("one HTTP/2 connection is balanced request by request; HTTP/2 requests never take a lane", async () => {
    const s = http2.connect(gw.url);
    const before = { a: a.hits, b: b.hits };
    try {
      const names = [];
      for (let i = 0; i < 4; i++) names.push(upstreamView((await h2(s, { ":path": "/api/rr" })).body).name);
      assert.deepEqual(names.sort(), ["a", "a", "b", "b"]);
      assert.equal(a.hits - before.a, 2);
      assert.equal(b.hits - before.b, 2);
      assert.equal(laned.get("api") ?? 0, 0);
    } finally {
      s.close();
    }
  });

  test("policies answer as on HTTP/1.1: 401 without a token, 429 over the limit, 502 for a dead target, 404", async () => {
    const s = http2.connect(gw.url);
    try {
      const noToken = await h2(s, { ":path": "/private" });
      assert.equal(noToken.status, 401);
      assert.equal(JSON.parse(noToken.body).code, "SY_AUTH_MISSING");
      assert.match(String(noToken.headers["www-authenticate"]), /^Bearer/);
      assert.equal((await h2(s, { ":path": "/limited" })).status, 200);
      const limited = await h2(s, { ":path": "/limited" });
      assert.equal(limited.status, 429);
      assert.equal(JSON.parse(limited.body).code, "SY_RATE_LIMITED");
      assert.ok(limited.headers["retry-after"] !== undefined);
      const down = await h2(s, { ":path": "/down" });
      assert.equal(down.status, 502);
      assert.deepEqual(Object.keys(JSON.parse(down.body)).sort(), [
        "code",
        "error",
        "message",
        "requestId",
        "statusCode",
      ]);
      assert.equal(JSON.parse(down.body).code, "SY_UPSTREAM_CONNECT");
      assert.equal(down.headers["x-request-id"], JSON.parse(down.body).requestId);
      const none = await h2(s, { ":path": "/nothing-here" });
      assert.equal(none.status, 404);
    } finally {
      s.close();
    }
  });

  test("access lines: one per HTTP/2 request, with route, service, target and status", async () => {
    const from = lines.length;
    const r = await curl(["--http2-prior-knowledge", "-H", "x-request-id: h2-line-1", `${gw.url}/api/line`]);
    assert.equal(r.status, 200);
    const deadline = Date.now() + 2000;
    let line: Record<string, unknown> | undefined;
    while (line === undefined && Date.now() < deadline) {
      line = lines.slice(from).find((l) => l.reqId === "h2-line-1" && l.msg === "request");
      if (line === undefined) await new Promise((ok) => setTimeout(ok, 20));
    }
    assert.ok(line, "an access line");
    assert.equal(line.route, "api");
    assert.equal(line.service, "ab");
    assert.equal(line.statusCode, 200);
    assert.equal(line.method, "GET");
    assert.equal(line.path, "/api/line");
    assert.match(String(line.target), /^http:\/\/127\.0\.0\.1:\d+$/);
  });

  test("serverTiming listener: HTTP/2 bodies still pass; bodyLimit still answers 413 as JSON", async () => {
    const g = await gateway(`
listen: [{ port: 0, host: 127.0.0.1, http2: true, serverTiming: true }]
services: { ab: { targets: [${a.url}] } }
routes: [{ name: small, service: ab, bodyLimit: 1kb }]
`);
    const s = http2.connect(g.url);
    try {
      const fits = await h2(s, { ":method": "POST", ":path": "/in" }, Buffer.alloc(1000, 1));
      assert.equal(fits.status, 200);
      assert.equal(upstreamView(fits.body).bodyBytes, 1000);
      assert.match(String(fits.headers["server-timing"]), /route;desc="small"/);
      const big = await h2(s, { ":method": "POST", ":path": "/in" }, Buffer.alloc(5000, 1));
      assert.equal(big.status, 413);
      assert.equal(JSON.parse(big.body).code, "SY_BODY_TOO_LARGE");
      assert.equal(big.headers.connection, undefined);
    } finally {
      s.close();
      await g.close();
    }
  });

  test("an HTTP/1.1 request on an h2c listener is refused (prior knowledge only, SPEC §2)", async () => {
    await assert.rejects(curl(["--http1.1", `${gw.url}/api/x`]));
  });
});

describe("HTTP/2 with TLS (ALPN)", { skip: await missing("curl-http2") }, () => {
  let up: Backend;
  let gw: Running;
  let laned: Map<string, number>;

  before(async () => {
    up = await backend("up");
    gw = await gateway(`
listen:
  - port: 0
    host: 127.0.0.1
    http2: true
    tls: { cert: ${join(certs, "default.crt")}, key: ${join(certs, "default.key")} }
services: { up: { targets: [${up.url}] } }
routes:
  - { name: all, service: up }
`);
    laned = countLanes(gw.gw);
  });
  after(async () => {
    await gw.close();
    await up.close();
  });

  const base = () => `https://127.0.0.1:${gw.port}`;

  test("curl --http2 negotiates h2; curl --http1.1 on the same port gets HTTP/1.1; same answer", async () => {
    const two = await curl(["-k", "--http2", `${base()}/x`]);
    assert.equal(two.version, "2");
    assert.equal(two.status, 200);
    assert.equal(upstreamView(two.body).headers["x-forwarded-proto"], "https");
    const one = await curl(["-k", "--http1.1", `${base()}/x`]);
    assert.equal(one.version, "1.1");
    assert.equal(one.status, 200);
    assert.equal(upstreamView(one.body).url, upstreamView(two.body).url);
    assert.equal(upstreamView(one.body).headers["x-forwarded-proto"], "https");
    assert.equal(gw.gw.addresses[0].kind, "https");
  });

  test("node's http2 client over TLS, and node's https (HTTP/1.1) client; only HTTP/1.1 takes the lane", async () => {
    const before = laned.get("all") ?? 0;
    const s = http2.connect(base(), { rejectUnauthorized: false });
    try {
      const r = await h2(s, { ":path": "/node" });
      assert.equal(r.status, 200);
      assert.equal(s.alpnProtocol, "h2");
    } finally {
      s.close();
    }
    assert.equal(laned.get("all") ?? 0, before);
    const status = await new Promise<number>((ok, fail) => {
      https
        .get(`${base()}/h1`, { rejectUnauthorized: false, agent: false }, (res) => {
          res.resume();
          res.on("end", () => ok(res.statusCode ?? 0));
        })
        .on("error", fail);
    });
    assert.equal(status, 200);
    assert.equal(laned.get("all") ?? 0, before + 1);
  });

  test("close() with an HTTP/2 session still open: the session is told to go away and close() finishes", async () => {
    const gw2 = await gateway(`
listen:
  - { port: 0, host: 127.0.0.1, http2: true, tls: { cert: ${join(certs, "default.crt")}, key: ${join(certs, "default.key")} } }
services: { up: { targets: [${up.url}] } }
routes: [{ name: all, service: up }]
`);
    const s = http2.connect(`https://127.0.0.1:${gw2.port}`, { rejectUnauthorized: false });
    s.on("error", () => {});
    assert.equal((await h2(s, { ":path": "/open" })).status, 200);
    const closed = new Promise<void>((ok) => s.once("close", () => ok()));
    const started = Date.now();
    await gw2.close();
    await closed;
    assert.ok(Date.now() - started < 3000, "bounded by the drain, not the idle timeout");
  });
});
