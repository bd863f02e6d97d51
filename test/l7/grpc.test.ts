/**
 * gRPC through the gateway (issue 14): an HTTP/2 listener, services with
 * `protocol: h2c` (and `h2` over verified TLS), a real @grpc/grpc-js server
 * and client on 127.0.0.1. Unary and server-streaming calls pass end to end
 * with their trailers intact (grpc-status, grpc-message, trailing metadata);
 * a gateway error on a gRPC request is a gRPC status (SPEC §5), not JSON.
 */
import assert from "node:assert/strict";
import http2 from "node:http2";
import { after, before, describe, test } from "node:test";
import * as grpc from "@grpc/grpc-js";
import { grpcStatusOf } from "../../src/errors.js";
import { capturingLogger, deadPort, gateway, type Running, request } from "../helpers/index.js";
import { makePki, type Pki } from "../helpers/pki.js";

type Msg = Record<string, unknown>;
const json = {
  serialize: (m: Msg) => Buffer.from(JSON.stringify(m)),
  deserialize: (b: Buffer) => JSON.parse(b.toString()) as Msg,
};
const method = (path: string, responseStream: boolean) => ({
  path,
  requestStream: false,
  responseStream,
  requestSerialize: json.serialize,
  requestDeserialize: json.deserialize,
  responseSerialize: json.serialize,
  responseDeserialize: json.deserialize,
});
const definition = {
  unary: method("/test.Echo/Unary", false),
  stream: method("/test.Echo/Stream", true),
} as grpc.ServiceDefinition;
const EchoClient = grpc.makeGenericClientConstructor(definition, "Echo");

interface Echo {
  unary(
    req: Msg,
    md: grpc.Metadata,
    cb: (err: grpc.ServiceError | null, res?: Msg) => void,
  ): grpc.ClientUnaryCall;
  stream(req: Msg, md?: grpc.Metadata): grpc.ClientReadableStream<Msg>;
  close(): void;
}

/** A gRPC server named `name`: Unary echoes (or fails with the status asked for), Stream sends `n` messages. */
async function grpcServer(name: string, creds = grpc.ServerCredentials.createInsecure()) {
  const server = new grpc.Server();
  server.addService(definition, {
    unary(call: grpc.ServerUnaryCall<Msg, Msg>, cb: grpc.sendUnaryData<Msg>) {
      const trailer = new grpc.Metadata();
      trailer.set("x-served-by", name);
      const fail = call.request.fail as number | undefined;
      if (fail !== undefined) {
        cb({ code: fail, details: `failed as asked: ${name}`, metadata: trailer } as grpc.ServiceError);
        return;
      }
      cb(null, { from: name, echo: call.request.text }, trailer);
    },
    stream(call: grpc.ServerWritableStream<Msg, Msg>) {
      const n = Number(call.request.n ?? 3);
      for (let i = 0; i < n; i++) call.write({ i, from: name });
      const trailer = new grpc.Metadata();
      trailer.set("x-count", String(n));
      call.end(trailer);
    },
  } as grpc.UntypedServiceImplementation);
  const port = await new Promise<number>((ok, fail) =>
    server.bindAsync("127.0.0.1:0", creds, (err, p) => (err ? fail(err) : ok(p))),
  );
  return { port, close: () => new Promise<void>((ok) => server.tryShutdown(() => ok())) };
}

function unary(c: Echo, req: Msg, md = new grpc.Metadata()) {
  return new Promise<{ err: grpc.ServiceError | null; res?: Msg; status: grpc.StatusObject }>((ok) => {
    let out: { err: grpc.ServiceError | null; res?: Msg } | undefined;
    let status: grpc.StatusObject | undefined;
    const done = () => out && status && ok({ ...out, status });
    const call = c.unary(req, md, (err, res) => {
      out = { err, res };
      done();
    });
    call.on("status", (s: grpc.StatusObject) => {
      status = s;
      done();
    });
  });
}

let pki: Pki;
let plain: Awaited<ReturnType<typeof grpcServer>>;
let secure: Awaited<ReturnType<typeof grpcServer>>;
let gw: Running;
let client: Echo;
let lines: Record<string, unknown>[];

before(async () => {
  pki = makePki();
  plain = await grpcServer("plain");
  secure = await grpcServer(
    "secure",
    grpc.ServerCredentials.createSsl(null, [
      { cert_chain: pki.read(pki.serverCert), private_key: pki.read(pki.serverKey) },
    ]),
  );
  const dead = await deadPort();
  const log = capturingLogger();
  lines = log.lines;
  gw = await gateway(
    `
listen: [{ port: 0, host: 127.0.0.1, http2: true }]
jwt: { hs: { secret: s3cret-s3cret-s3cret-s3cret-s3cret, algorithms: [HS256] } }
services:
  echo: { targets: [http://127.0.0.1:${plain.port}], protocol: h2c, healthCheck: { path: /, interval: 1h, expectStatus: 200-599 } }
  tls-echo: { targets: [https://127.0.0.1:${secure.port}], protocol: h2, tls: { ca: ${pki.ca} } }
  gone: { targets: [http://127.0.0.1:${dead}], protocol: h2c, healthCheck: { interval: 1h } }
routes:
  - { name: tls, match: { path: /test.Echo, headers: { x-via: tls } }, service: tls-echo }
  - { name: gone, match: { path: /test.Echo, headers: { x-via: gone } }, service: gone }
  - { name: locked, match: { path: /test.Echo, headers: { x-via: locked } }, service: echo, auth: { jwt: hs } }
  - { name: limited, match: { path: /test.Echo, headers: { x-via: limited } }, service: echo, rateLimit: { max: 1, window: 1m, by: route } }
  - { name: echo, match: { path: /test.Echo }, service: echo }
`,
    { logger: log.logger },
  );
  client = new EchoClient(`127.0.0.1:${gw.port}`, grpc.credentials.createInsecure()) as unknown as Echo;
});
after(async () => {
  client.close();
  await gw.close();
  await plain.close();
  await secure.close();
  pki.cleanup();
});

const via = (name: string) => {
  const md = new grpc.Metadata();
  md.set("x-via", name);
  return md;
};

describe("gRPC through the gateway", () => {
  test("unary: the answer and its trailing metadata pass", async () => {
    const r = await unary(client, { text: "hi" });
    assert.equal(r.err, null);
    assert.deepEqual(r.res, { from: "plain", echo: "hi" });
    assert.equal(r.status.code, grpc.status.OK);
    assert.deepEqual(r.status.metadata.get("x-served-by"), ["plain"]);
  });

  test("unary: the server's own error status and message arrive intact (grpc-status/grpc-message trailers)", async () => {
    const r = await unary(client, { fail: grpc.status.NOT_FOUND });
    assert.equal(r.err?.code, grpc.status.NOT_FOUND);
    assert.equal(r.err?.details, "failed as asked: plain");
    assert.deepEqual(r.status.metadata.get("x-served-by"), ["plain"]);
  });

  test("server-streaming: every message in order, then the status with trailing metadata", async () => {
    const call = client.stream({ n: 5 });
    const got: Msg[] = [];
    call.on("data", (m: Msg) => got.push(m));
    const status = await new Promise<grpc.StatusObject>((ok) => call.on("status", ok));
    assert.equal(status.code, grpc.status.OK);
    assert.deepEqual(
      got.map((m) => m.i),
      [0, 1, 2, 3, 4],
    );
    assert.deepEqual(status.metadata.get("x-count"), ["5"]);
  });

  test("protocol h2: over TLS verified against the service's CA", async () => {
    const r = await unary(client, { text: "secure" }, via("tls"));
    assert.equal(r.err, null, r.err?.message);
    assert.deepEqual(r.res, { from: "secure", echo: "secure" });
    const call = client.stream({ n: 2 }, via("tls"));
    const got: Msg[] = [];
    call.on("data", (m: Msg) => got.push(m));
    const status = await new Promise<grpc.StatusObject>((ok) => call.on("status", ok));
    assert.equal(status.code, grpc.status.OK);
    assert.equal(got.length, 2);
  });

  test("no healthy target: 14 UNAVAILABLE, grpc-message starting with the SY_* code", async () => {
    const r = await unary(client, { text: "x" }, via("gone"));
    assert.equal(r.err?.code, grpc.status.UNAVAILABLE);
    assert.match(String(r.err?.details), /^SY_NO_HEALTHY_TARGET: /);
    assert.equal(r.status.metadata.get("x-request-id").length, 1, "the request id comes back too");
  });

  test("auth and rate limit answer gRPC clients in gRPC: 16 UNAUTHENTICATED, 8 RESOURCE_EXHAUSTED", async () => {
    const locked = await unary(client, { text: "x" }, via("locked"));
    assert.equal(locked.err?.code, grpc.status.UNAUTHENTICATED);
    assert.match(String(locked.err?.details), /^SY_AUTH_MISSING: /);
    assert.equal((await unary(client, { text: "x" }, via("limited"))).err, null);
    const limited = await unary(client, { text: "x" }, via("limited"));
    assert.equal(limited.err?.code, grpc.status.RESOURCE_EXHAUSTED);
    assert.match(String(limited.err?.details), /^SY_RATE_LIMITED: /);
  });

  test("no route: 12 UNIMPLEMENTED", async () => {
    const Other = grpc.makeGenericClientConstructor(
      { x: { ...method("/other.Svc/X", false) } } as grpc.ServiceDefinition,
      "Other",
    );
    const c = new Other(`127.0.0.1:${gw.port}`, grpc.credentials.createInsecure()) as unknown as {
      x(r: Msg, cb: (e: grpc.ServiceError | null) => void): void;
      close(): void;
    };
    try {
      const err = await new Promise<grpc.ServiceError | null>((ok) => c.x({}, ok));
      assert.equal(err?.code, grpc.status.UNIMPLEMENTED);
      assert.match(String(err?.details), /^SY_NO_ROUTE: /);
    } finally {
      c.close();
    }
  });

  test("the error is a Trailers-Only answer (one HEADERS frame that ends the stream), and only for gRPC requests", async () => {
    const s = http2.connect(gw.url);
    try {
      const ask = (headers: http2.OutgoingHttpHeaders) =>
        new Promise<{ h: http2.IncomingHttpHeaders; ended: boolean; body: string }>((ok, fail) => {
          const req = s.request({
            ":method": "POST",
            ":path": "/test.Echo/Unary",
            "x-via": "gone",
            ...headers,
          });
          let body = "";
          req.on("response", (h, flags) =>
            req.on("end", () =>
              ok({ h, ended: (flags & http2.constants.NGHTTP2_FLAG_END_STREAM) !== 0, body }),
            ),
          );
          req.on("data", (c) => {
            body += c;
          });
          req.on("error", fail);
          req.end();
        });
      const g = await ask({ "content-type": "application/grpc+proto", te: "trailers" });
      assert.equal(g.h[":status"], 200);
      assert.equal(g.h["grpc-status"], "14");
      assert.equal(g.h["content-type"], "application/grpc");
      assert.equal(g.ended, true, "END_STREAM on the header block");
      assert.equal(g.body, "");
      const j = await ask({ "content-type": "application/json" });
      assert.equal(j.h[":status"], 503);
      assert.equal(JSON.parse(j.body).code, "SY_NO_HEALTHY_TARGET");
      // gRPC-Web carries its status in the body: it gets the JSON error, not a gRPC head.
      const web = await ask({ "content-type": "application/grpc-web+proto" });
      assert.equal(web.h[":status"], 503);
    } finally {
      s.close();
    }
  });

  test("access line of a gRPC call: its route, service, target and HTTP status", async () => {
    const from = lines.length;
    await unary(client, { text: "logged" });
    const deadline = Date.now() + 2000;
    let line: Record<string, unknown> | undefined;
    while (line === undefined && Date.now() < deadline) {
      line = lines.slice(from).find((l) => l.msg === "request" && l.route === "echo");
      if (line === undefined) await new Promise((ok) => setTimeout(ok, 20));
    }
    assert.ok(line);
    assert.equal(line.method, "POST");
    assert.equal(line.path, "/test.Echo/Unary");
    assert.equal(line.service, "echo");
    assert.equal(line.statusCode, 200);
    assert.equal(line.target, `http://127.0.0.1:${plain.port}`);
  });
});

describe("gRPC status mapping (SPEC §5)", () => {
  test("each SPEC status maps to its gRPC code", () => {
    assert.equal(grpcStatusOf("SY_UPSTREAM_CONNECT"), 14);
    assert.equal(grpcStatusOf("SY_UPSTREAM_RESET"), 14);
    assert.equal(grpcStatusOf("SY_NO_HEALTHY_TARGET"), 14);
    assert.equal(grpcStatusOf("SY_CIRCUIT_OPEN"), 14);
    assert.equal(grpcStatusOf("SY_STORE_UNAVAILABLE"), 14);
    assert.equal(grpcStatusOf("SY_UPSTREAM_TIMEOUT"), 4);
    assert.equal(grpcStatusOf("SY_AUTH_MISSING"), 16);
    assert.equal(grpcStatusOf("SY_AUTH_INVALID"), 16);
    assert.equal(grpcStatusOf("SY_AUTH_FORBIDDEN"), 7);
    assert.equal(grpcStatusOf("SY_RATE_LIMITED"), 8);
    assert.equal(grpcStatusOf("SY_NO_ROUTE"), 12);
    assert.equal(grpcStatusOf("SY_BAD_PATH"), 3);
    assert.equal(grpcStatusOf("SY_REQUEST_TIMEOUT"), 4);
    assert.equal(grpcStatusOf("SY_BODY_TOO_LARGE"), 8);
    assert.equal(grpcStatusOf("SY_INTERNAL"), 13);
  });
});

describe("HTTP/2 services: TE and trailers on the wire", () => {
  test("the client's TE: trailers reaches an h2c target; its trailers reach HTTP/2 and HTTP/1.1 clients", async () => {
    const seen: http2.IncomingHttpHeaders[] = [];
    const up = http2.createServer();
    up.on("stream", (stream, headers) => {
      seen.push(headers);
      stream.respond({ ":status": 200, "content-type": "text/plain" }, { waitForTrailers: true });
      stream.on("wantTrailers", () => stream.sendTrailers({ "x-checksum": "abc123", "grpc-status": "0" }));
      stream.end("body");
    });
    await new Promise<void>((ok) => up.listen(0, "127.0.0.1", ok));
    const port = (up.address() as { port: number }).port;
    const g = await gateway(`
listen: [{ port: 0, host: 127.0.0.1, http2: true }, { port: 0, host: 127.0.0.1 }]
services: { up: { targets: [http://127.0.0.1:${port}], protocol: h2c } }
routes: [{ name: all, service: up }]
`);
    const s = http2.connect(g.url);
    try {
      const got = await new Promise<{ body: string; trailers: http2.IncomingHttpHeaders }>((ok, fail) => {
        const req = s.request({ ":path": "/t", te: "trailers" });
        let body = "";
        let trailers: http2.IncomingHttpHeaders = {};
        req.on("data", (c) => {
          body += c;
        });
        req.on("trailers", (t) => {
          trailers = t;
        });
        req.on("end", () => ok({ body, trailers }));
        req.on("error", fail);
        req.end();
      });
      assert.equal(got.body, "body");
      assert.equal(got.trailers["x-checksum"], "abc123");
      assert.equal(seen[0].te, "trailers");
      // HTTP/1.1 on the second listener: the trailers come in the last chunk.
      const h1 = g.gw.addresses[1];
      const r = await new Promise<{ trailers: Record<string, string | undefined>; body: string }>(
        (ok, fail) => {
          import("node:http").then(({ default: http }) =>
            http
              .get({ host: "127.0.0.1", port: h1.port, path: "/t1", agent: false }, (res) => {
                let body = "";
                res.on("data", (c) => {
                  body += c;
                });
                res.on("end", () => ok({ trailers: res.trailers, body }));
              })
              .on("error", fail),
          );
        },
      );
      assert.equal(r.body, "body");
      assert.equal(r.trailers["x-checksum"], "abc123");
      assert.equal(seen[1].te, undefined, "TE is hop-by-hop: only a client's 'trailers' goes on");
      assert.equal(
        (await request(`http://127.0.0.1:${h1.port}/t2`, { headers: { te: "gzip" } })).status,
        200,
      );
      assert.equal(seen[2].te, undefined);
    } finally {
      s.close();
      await g.close();
      await new Promise<void>((ok) => up.close(() => ok()));
    }
  });
});
