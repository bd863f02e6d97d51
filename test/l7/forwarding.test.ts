import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import http from "node:http";
import { after, before, describe, test } from "node:test";
import type { Target } from "../../src/upstreams/target.js";
import {
  type Backend,
  backend,
  deadPort,
  gateway,
  type Running,
  rawExchange,
  request,
} from "../helpers/index.js";

const sha = (b: Buffer) => createHash("sha256").update(b).digest("hex");

describe("forwarding", () => {
  let echo: Backend;
  let slow: Backend;
  let big: Backend;
  let gw: Running;
  const payload = randomBytes(20 * 1024 * 1024);
  before(async () => {
    echo = await backend("echo");
    // echoes the body back as it streams, and reports its hash in a trailer-free way: the client hashes
    big = await backend("big", (req, res) => {
      if (req.method === "GET") {
        res.setHeader("content-type", "application/octet-stream");
        res.end(payload);
        return;
      }
      const h = createHash("sha256");
      let n = 0;
      req.on("data", (c: Buffer) => {
        h.update(c);
        n += c.length;
      });
      req.on("end", () => res.end(JSON.stringify({ n, sha: h.digest("hex") })));
    });
    slow = await backend("slow", (_req, res) => {
      setTimeout(() => res.end("late"), 1500).unref();
    });
    const dead = await deadPort();
    gw = await gateway(`
services:
  echo: { targets: [${echo.url}] }
  big: { targets: [${big.url}] }
  slow: { targets: [${slow.url}] }
  dead: { targets: [http://127.0.0.1:${dead}] }
  halfdead: { targets: [http://127.0.0.1:${dead}, ${echo.url}], balancer: round-robin }
routes:
  - { name: big, match: { path: /big }, service: big, bodyLimit: 64mb }
  - { name: small, match: { path: /small }, service: echo, bodyLimit: 1kb }
  - { name: slow, match: { path: /slow }, service: slow, timeout: 200ms }
  - { name: dead, match: { path: /dead }, service: dead }
  - { name: halfdead, match: { path: /halfdead }, service: halfdead }
  - { name: echo, match: { path: / }, service: echo }
`);
  });
  after(async () => {
    await gw.close();
    for (const x of [echo, slow, big]) await x.close();
  });

  test("hop-by-hop headers are dropped; X-Forwarded-* set; a client's X-Forwarded-For is not believed", async () => {
    const r = await request(gw.url, {
      path: "/x",
      headers: {
        connection: "keep-alive, x-secret",
        "x-secret": "1",
        "keep-alive": "timeout=5",
        te: "gzip",
        "x-forwarded-for": "6.6.6.6",
        host: "shop.test:8080",
      },
    });
    const h = r.json().headers as Record<string, string>;
    assert.equal(h["x-secret"], undefined);
    assert.equal(h["keep-alive"], undefined);
    assert.equal(h.te, undefined);
    assert.equal(h["x-forwarded-for"], "127.0.0.1");
    assert.equal(h["x-forwarded-proto"], "http");
    assert.equal(h["x-forwarded-host"], "shop.test:8080");
    assert.equal(h.host, "shop.test:8080", "the client's Host is kept by default");
  });

  test("the same hop-by-hop rules on a route that goes through reply-from (a response transform)", async () => {
    const g = await gateway(
      `services: { s: { targets: [${echo.url}] } }\nroutes: [{ name: r, service: s, transform: { response: { headers: { set: { x-r: "1" } } } } }]\n`,
    );
    try {
      const r = await request(g.url, {
        path: "/x",
        headers: {
          connection: "keep-alive, x-secret",
          "x-secret": "1",
          "keep-alive": "timeout=5",
          te: "gzip",
        },
      });
      assert.equal(r.headers["x-r"], "1", "went through the response-transform (reply-from) path");
      const h = r.json().headers as Record<string, string>;
      assert.equal(h["x-secret"], undefined);
      assert.equal(h["keep-alive"], undefined);
      assert.equal(h.te, undefined);
      assert.equal(h["x-forwarded-for"], "127.0.0.1");
      assert.match(h["x-request-id"], /^[0-9a-f-]{36}$/);
    } finally {
      await g.close();
    }
  });

  test("response headers named by the upstream's Connection header are dropped (RFC 9110 §7.6.1)", async () => {
    const up = await backend("conn", (_req, res) => {
      res.setHeader("connection", "x-hop");
      res.setHeader("x-hop", "secret");
      res.setHeader("x-kept", "1");
      res.end("ok");
    });
    const g = await gateway(`services: { s: { targets: [${up.url}] } }\nroutes: [{ name: r, service: s }]\n`);
    try {
      const r = await request(g.url, { path: "/" });
      assert.equal(r.body, "ok");
      assert.equal(r.headers["x-kept"], "1");
      assert.equal(r.headers["x-hop"], undefined);
    } finally {
      await g.close();
      await up.close();
    }
  });

  test("under trustProxy the client's X-Forwarded-For is appended to, not replaced", async () => {
    const g = await gateway(
      `trustProxy: true\nservices: { s: { targets: [${echo.url}] } }\nroutes: [{ name: r, service: s }]\n`,
    );
    try {
      const r = await request(g.url, { path: "/", headers: { "x-forwarded-for": "203.0.113.9" } });
      assert.equal((r.json().headers as Record<string, string>)["x-forwarded-for"], "203.0.113.9, 127.0.0.1");
    } finally {
      await g.close();
    }
  });

  test("X-Request-Id: a valid one is kept and echoed, an invalid one replaced", async () => {
    const ok = await request(gw.url, { path: "/x", headers: { "x-request-id": "abc-123.x:y_z" } });
    assert.equal(ok.headers["x-request-id"], "abc-123.x:y_z");
    assert.equal((ok.json().headers as Record<string, string>)["x-request-id"], "abc-123.x:y_z");
    const bad = await request(gw.url, { path: "/x", headers: { "x-request-id": "has space<script>" } });
    assert.match(String(bad.headers["x-request-id"]), /^[0-9a-f-]{36}$/);
    assert.equal((bad.json().headers as Record<string, string>)["x-request-id"], bad.headers["x-request-id"]);
    const none = await request(gw.url, { path: "/x" });
    assert.ok(none.headers["x-request-id"]);
  });

  test("X-Request-Id back to the client is the gateway's, once, even when the upstream answers with its own", async () => {
    const up = await backend("own-id", (_req, res) => {
      res.setHeader("x-request-id", "upstream-id");
      res.setHeader("set-cookie", "u=1");
      res.end("ok");
    });
    // A plain route (the lane) and one whose head carries fields of the route's own
    // (RateLimit-*, a response transform): both heads are built by the forwarder.
    const g = await gateway(`
services: { s: { targets: [${up.url}] } }
routes:
  - { name: plain, match: { path: /plain }, service: s }
  - name: policies
    match: { path: /policies }
    service: s
    rateLimit: { max: 100, window: 1m }
    transform: { response: { headers: { set: { x-frame-options: DENY } } } }
`);
    try {
      for (const path of ["/plain", "/policies"]) {
        const r = await request(g.url, { path, headers: { "x-request-id": "client-id" } });
        assert.equal(r.body, "ok", path);
        assert.equal(r.headers["x-request-id"], "client-id", `${path}: one field, the request's id`);
        assert.deepEqual(r.headers["set-cookie"], ["u=1"], path);
      }
      const p = await request(g.url, { path: "/policies" });
      assert.equal(p.headers["x-frame-options"], "DENY");
      assert.equal(p.headers["ratelimit-limit"], "100", "the route's own fields are kept");
    } finally {
      await g.close();
      await up.close();
    }
  });

  test("a 20 MB body streams upstream unchanged (chunked and with Content-Length)", async () => {
    const viaLength = await request(gw.url, {
      method: "POST",
      path: "/big",
      body: payload,
      headers: { "content-type": "application/x-anything" },
    });
    assert.deepEqual(viaLength.json(), { n: payload.length, sha: sha(payload) });
    const chunked = await new Promise<string>((ok, fail) => {
      const req = http.request(
        { host: "127.0.0.1", port: gw.port, method: "PUT", path: "/big", agent: false },
        (res) => {
          let s = "";
          res.on("data", (c) => {
            s += c;
          });
          res.on("end", () => ok(s));
        },
      );
      req.on("error", fail);
      for (let i = 0; i < payload.length; i += 1 << 20) req.write(payload.subarray(i, i + (1 << 20)));
      req.end();
    });
    assert.deepEqual(JSON.parse(chunked), { n: payload.length, sha: sha(payload) });
  });

  test("a 20 MB request body streams: the upstream has its first bytes before the client sends its last", async () => {
    // The client holds back its last megabyte until the upstream has received its first bytes:
    // a gateway that buffered the body before forwarding would never let that happen.
    let arrived: () => void = () => {};
    const up = await backend("stream", (req, res) => {
      const h = createHash("sha256");
      let n = 0;
      req.on("data", (c: Buffer) => {
        if (n === 0) arrived();
        n += c.length;
        h.update(c);
      });
      req.on("end", () => res.end(JSON.stringify({ n, sha: h.digest("hex") })));
    });
    const g = await gateway(
      `services: { s: { targets: [${up.url}] } }\nroutes: [{ name: r, service: s, bodyLimit: 64mb }]\n`,
    );
    const MB = 1 << 20;
    try {
      for (const headers of [{ "content-length": String(payload.length) }, {}]) {
        const what = headers["content-length"] ? "with Content-Length" : "chunked";
        const first = new Promise<void>((ok) => {
          arrived = ok;
        });
        const req = http.request({
          host: "127.0.0.1",
          port: g.port,
          method: "POST",
          path: "/up",
          agent: false,
          headers,
        });
        const answer = new Promise<string>((ok, fail) => {
          req.on("response", (res) => {
            let s = "";
            res.on("data", (c) => {
              s += c;
            });
            res.on("end", () => ok(s));
          });
          req.on("error", fail);
        });
        for (let i = 0; i < payload.length - MB; i += MB) req.write(payload.subarray(i, i + MB));
        let timer: NodeJS.Timeout | undefined;
        const late = new Promise<"late">((ok) => {
          timer = setTimeout(() => ok("late"), 15_000);
        });
        const got = await Promise.race([first.then(() => "first" as const), late]);
        clearTimeout(timer);
        assert.equal(got, "first", `${what}: the upstream saw nothing of 19 MB sent: the body was held back`);
        req.end(payload.subarray(payload.length - MB));
        assert.deepEqual(JSON.parse(await answer), { n: payload.length, sha: sha(payload) }, what);
      }
    } finally {
      await g.close();
      await up.close();
    }
  });

  test("a 20 MB response streams back unchanged", async () => {
    const body = await new Promise<Buffer>((ok, fail) => {
      http
        .get({ host: "127.0.0.1", port: gw.port, path: "/big", agent: false }, (res) => {
          const parts: Buffer[] = [];
          res.on("data", (c: Buffer) => parts.push(c));
          res.on("end", () => ok(Buffer.concat(parts)));
        })
        .on("error", fail);
    });
    assert.equal(body.length, payload.length);
    assert.equal(sha(body), sha(payload));
  });

  test("bodyLimit: 413 SY_BODY_TOO_LARGE by Content-Length and while streaming chunked", async () => {
    const r = await request(gw.url, { method: "POST", path: "/small", body: "x".repeat(2000) });
    assert.equal(r.status, 413);
    assert.equal(r.json().code, "SY_BODY_TOO_LARGE");
    const hits = echo.hits;
    const chunked = await new Promise<number>((ok, fail) => {
      const req = http.request(
        { host: "127.0.0.1", port: gw.port, method: "POST", path: "/small", agent: false },
        (res) => {
          res.resume();
          res.on("end", () => ok(res.statusCode ?? 0));
        },
      );
      req.on("error", fail);
      req.write("x".repeat(800));
      req.end("y".repeat(800));
    });
    assert.equal(chunked, 413);
    assert.ok(echo.hits - hits <= 1);
    const fits = await request(gw.url, { method: "POST", path: "/small", body: "x".repeat(1000) });
    assert.equal(fits.json().bodyBytes, 1000);
  });

  test("route timeout: 504 SY_UPSTREAM_TIMEOUT", async () => {
    const t0 = Date.now();
    const r = await request(gw.url, { path: "/slow" });
    assert.equal(r.status, 504);
    assert.equal(r.json().code, "SY_UPSTREAM_TIMEOUT");
    assert.ok(Date.now() - t0 < 1400, "answered at the route's timeout, not the backend's pace");
  });

  test("connect refused everywhere: 502 SY_UPSTREAM_CONNECT without the upstream address", async () => {
    const r = await request(gw.url, { path: "/dead" });
    assert.equal(r.status, 502);
    assert.equal(r.json().code, "SY_UPSTREAM_CONNECT");
    assert.doesNotMatch(r.body, /127\.0\.0\.1|ECONNREFUSED|at /);
  });

  test("a connect failure moves the request to the next target", async () => {
    for (let i = 0; i < 6; i++) {
      const r = await request(gw.url, { path: "/halfdead" });
      assert.equal(r.status, 200);
      assert.equal(r.json().name, "echo");
    }
  });

  test("no healthy target: 503 SY_NO_HEALTHY_TARGET", async () => {
    const target = findTarget(gw, "echo");
    target.healthy = false;
    try {
      const r = await request(gw.url, { path: "/x" });
      assert.equal(r.status, 503);
      assert.equal(r.json().code, "SY_NO_HEALTHY_TARGET");
    } finally {
      target.healthy = true;
    }
  });

  test("431 for oversized headers, 400 for a malformed request — JSON, connection closed", async () => {
    const big = await request(gw.url, { path: "/x", headers: { "x-big": "a".repeat(20_000) } });
    assert.equal(big.status, 431);
    assert.equal(big.json().code, "SY_HEADERS_TOO_LARGE");
    assert.equal(
      big.headers["x-request-id"],
      big.json().requestId,
      "X-Request-Id on a bare-socket answer too",
    );
    const raw = await rawExchange(
      gw.port,
      "POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    );
    assert.match(raw, /^HTTP\/1\.1 400/);
    assert.match(raw, /"code":"SY_BAD_REQUEST"/);
  });
});

describe("hop-by-hop fields and X-Request-Id on every forwarding path", () => {
  let up: Backend;
  let g: Running;
  before(async () => {
    // Says what it received, and answers with hop-by-hop fields of its own.
    up = await backend("hop", (req, res) => {
      req.resume();
      req.on("end", () => {
        res.setHeader("content-type", "application/json");
        res.setHeader("proxy-authenticate", 'Basic realm="upstream"');
        res.setHeader("proxy-connection", "keep-alive");
        // Connection names only x-hop: keep-alive, trailer and upgrade must go as hop-by-hop by name.
        res.setHeader("connection", "x-hop");
        res.setHeader("x-hop", "secret");
        res.setHeader("keep-alive", "timeout=5, max=77");
        res.setHeader("trailer", "x-checksum");
        res.setHeader("upgrade", "h2c");
        res.setHeader("x-kept", "1");
        // Chunked (no Content-Length), so the Trailer field is a legal one to send.
        res.write(JSON.stringify({ headers: req.headers }));
        res.end();
      });
    });
    g = await gateway(`
services: { s: { targets: [${up.url}] } }
routes:
  - { name: plain, match: { path: /plain }, service: s }
  - { name: xform, match: { path: /xform }, service: s, transform: { response: { headers: { set: { x-r: "1" } } } } }
  - { name: cors, match: { path: /cors }, service: s, cors: { origins: ["https://app.example"] } }
  - { name: cache, match: { path: /cache }, service: s, cache: { ttl: 1m } }
  - { name: limited, match: { path: /limited }, service: s, rateLimit: { max: 1000, window: 1m } }
`);
  });
  after(async () => {
    await g.close();
    await up.close();
  });

  // The forwarding paths: the fast lane (a plain GET), Fastify's direct stream (a body), reply-from
  // (a response transform, CORS, the cache), and a policy route through Fastify's hooks.
  const paths: Array<[string, { method?: string; body?: string; headers?: Record<string, string> }]> = [
    ["/plain", {}],
    ["/plain", { method: "POST", body: "x" }],
    ["/xform", {}],
    ["/cors", { headers: { origin: "https://app.example" } }],
    ["/cache", {}],
    ["/limited", {}],
  ];
  let n = 0;

  test("request: Proxy-Authorization and the other hop-by-hop fields never reach the upstream", async () => {
    for (const [path, o] of paths) {
      const r = await request(g.url, {
        method: o.method,
        body: o.body,
        path: `${path}/req-${n++}`,
        headers: {
          ...o.headers,
          "proxy-authorization": "Basic c2VjcmV0OnBhc3N3b3Jk",
          "proxy-connection": "keep-alive",
          connection: "keep-alive, x-secret",
          "x-secret": "1",
          "keep-alive": "timeout=5",
          te: "gzip",
          "x-end-to-end": "kept",
        },
      });
      const what = `${o.method ?? "GET"} ${path}`;
      assert.equal(r.status, 200, `${what}: ${r.body}`);
      const h = r.json<{ headers: Record<string, string> }>().headers;
      for (const name of ["proxy-authorization", "proxy-connection", "x-secret", "keep-alive", "te"])
        assert.equal(h[name], undefined, `${what}: ${name} reached the upstream`);
      assert.equal(h["x-end-to-end"], "kept", what);
    }
  });

  test("request: the fixed hop-by-hop fields go even when Connection does not name them", async () => {
    for (const [path, o] of paths) {
      const r = await request(g.url, {
        method: o.method,
        body: o.body,
        path: `${path}/fixed-${n++}`,
        headers: {
          ...o.headers,
          connection: "close",
          "keep-alive": "timeout=5",
          upgrade: "h2c",
          te: "trailers",
          "proxy-authorization": "Basic c2VjcmV0OnBhc3N3b3Jk",
          "proxy-connection": "keep-alive",
        },
      });
      const what = `${o.method ?? "GET"} ${path}`;
      assert.equal(r.status, 200, `${what}: ${r.body}`);
      const h = r.json<{ headers: Record<string, string> }>().headers;
      for (const name of ["keep-alive", "upgrade", "te", "proxy-authorization", "proxy-connection"])
        assert.equal(h[name], undefined, `${what}: ${name} reached the upstream`);
    }
    // Trailer, on a chunked body (the only kind that may carry one), direct and through reply-from.
    for (const path of ["/plain", "/xform"]) {
      const body = await new Promise<string>((ok, fail) => {
        const req = http.request(
          {
            host: "127.0.0.1",
            port: g.port,
            method: "POST",
            path: `${path}/trailer-${n++}`,
            agent: false,
            headers: { trailer: "x-checksum" },
          },
          (res) => {
            let s = "";
            res.on("data", (c) => {
              s += c;
            });
            res.on("end", () => ok(s));
          },
        );
        req.on("error", fail);
        req.write("part one;");
        req.addTrailers({ "x-checksum": "abc" });
        req.end("part two");
      });
      const h = (JSON.parse(body) as { headers: Record<string, string> }).headers;
      assert.equal(h.trailer, undefined, `${path}: Trailer reached the upstream`);
    }
  });

  test("request: Expect: 100-continue is answered by the gateway and not sent on (the body still arrives)", async () => {
    for (const path of ["/plain", "/xform", "/limited"]) {
      const reply = await new Promise<{ status: number; body: string }>((ok, fail) => {
        const req = http.request({
          host: "127.0.0.1",
          port: g.port,
          method: "POST",
          path: `${path}/expect-${n++}`,
          agent: false,
          headers: { expect: "100-continue", "content-length": "5" },
        });
        req.on("continue", () => req.end("hello"));
        req.on("response", (res) => {
          let s = "";
          res.on("data", (c) => {
            s += c;
          });
          res.on("end", () => ok({ status: res.statusCode ?? 0, body: s }));
        });
        req.on("error", fail);
        req.flushHeaders();
      });
      assert.equal(reply.status, 200, `${path}: ${reply.body}`);
      const h = (JSON.parse(reply.body) as { headers: Record<string, string> }).headers;
      assert.equal(h.expect, undefined, `${path}: Expect reached the upstream`);
      assert.equal(h["content-length"], "5", path);
    }
  });

  test("request: without a Host or a Connection (HTTP/1.0), no X-Forwarded-Host is made up, every field kept", async () => {
    for (const path of ["/plain", "/xform", "/limited"]) {
      // No Connection header either: every field is end-to-end, even one named "undefined".
      const raw = await rawExchange(g.port, `GET ${path}/nohost-${n++} HTTP/1.0\r\nUndefined: kept\r\n\r\n`);
      assert.match(raw, /^HTTP\/1\.[01] 200/, `${path}: ${raw.slice(0, 200)}`);
      const body = raw.slice(raw.indexOf("\r\n\r\n") + 4);
      const h = (
        JSON.parse(body.slice(body.indexOf("{"), body.lastIndexOf("}") + 1)) as {
          headers: Record<string, string>;
        }
      ).headers;
      assert.equal(h["x-forwarded-host"], undefined, `${path}: ${JSON.stringify(h)}`);
      assert.equal(h["x-forwarded-for"], "127.0.0.1", path);
      assert.equal(h.undefined, "kept", path);
    }
  });

  test("response: Proxy-Authenticate and the fields the upstream's Connection names never reach the client", async () => {
    for (const [path, o] of paths) {
      const p = `${path}/res-${n++}`;
      // The cache route answers twice: the miss (streamed from upstream) and the stored copy.
      for (const round of path === "/cache" ? ["miss", "hit"] : ["once"]) {
        const r = await request(g.url, { method: o.method, body: o.body, path: p, headers: o.headers });
        const what = `${o.method ?? "GET"} ${path} (${round})`;
        assert.equal(r.status, 200, `${what}: ${r.body}`);
        if (round === "hit") assert.equal(r.headers["x-cache"], "HIT", what);
        assert.equal(r.headers["proxy-authenticate"], undefined, `${what}: proxy-authenticate`);
        assert.equal(r.headers["proxy-connection"], undefined, `${what}: proxy-connection`);
        assert.equal(r.headers["x-hop"], undefined, `${what}: a field named by Connection`);
        assert.equal(r.headers.trailer, undefined, `${what}: the upstream's Trailer`);
        assert.equal(r.headers.upgrade, undefined, `${what}: the upstream's Upgrade`);
        assert.doesNotMatch(String(r.headers.connection), /x-hop/, `${what}: the upstream's Connection`);
        assert.doesNotMatch(
          String(r.headers["keep-alive"] ?? ""),
          /max=77/,
          `${what}: the upstream's Keep-Alive`,
        );
        assert.equal(r.headers["x-kept"], "1", what);
      }
    }
  });

  test("X-Request-Id: kept when 1–128 characters of A-Z a-z 0-9 . _ : -, else replaced, upstream and back", async () => {
    const longest = `${"a".repeat(64)}.Z_9:-${"b".repeat(58)}`;
    assert.equal(longest.length, 128);
    const uuid = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
    for (const [path, o] of paths) {
      if (path === "/cache") continue; // a stored answer's id is tested in the cache's own tests
      const what = `${o.method ?? "GET"} ${path}`;
      const send = (id: string | undefined) =>
        request(g.url, {
          method: o.method,
          body: o.body,
          path: `${path}/id-${n++}`,
          headers: id === undefined ? o.headers : { ...o.headers, "x-request-id": id },
        });
      for (const id of ["a", longest, "x-1.2_3:4"]) {
        const r = await send(id);
        assert.equal(r.headers["x-request-id"], id, `${what}: ${id.length} characters kept`);
        assert.equal(r.json<{ headers: Record<string, string> }>().headers["x-request-id"], id, what);
      }
      for (const id of [`${longest}c`, "z".repeat(10_240), "", "<abc", "abc>", "a b", "a/b", "a\u00e9"]) {
        const r = await send(id);
        const mine = String(r.headers["x-request-id"]);
        assert.match(mine, uuid, `${what}: ${JSON.stringify(id.slice(0, 20))} (${id.length}) replaced`);
        assert.equal(r.json<{ headers: Record<string, string> }>().headers["x-request-id"], mine, what);
      }
      const none = await send(undefined);
      assert.match(String(none.headers["x-request-id"]), uuid, `${what}: generated when absent`);
    }
  });
});

/** Reach into the running generation for a target (tests flip health by hand). */
function findTarget(r: Running, service: string): Target {
  const t = targetsOf(r).get(service);
  assert.ok(t, `service ${service}`);
  return t[0];
}

function targetsOf(r: Running): Map<string, Target[]> {
  return new Map([...r.gw.generation.services].map(([n, s]) => [n, [...s.targets]]));
}
