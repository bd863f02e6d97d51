/**
 * W3C trace context and span export (issue 14, src/tracing.ts, src/tracing-otel.ts).
 * Every test sends the same request on the forwarding fast lane and through
 * Fastify (`Content-Length: 0` declines the lane, as in proxy-lane.test.ts)
 * and expects the same behaviour from both. Spans go to a local OTLP/HTTP
 * receiver: a node http server on 127.0.0.1:0 that keeps what it is sent.
 */
import assert from "node:assert/strict";
import http, { type IncomingHttpHeaders } from "node:http";
import type { AddressInfo } from "node:net";
import { after, before, describe, test } from "node:test";
import { newTraceparent, validTraceparent } from "../../src/tracing.js";
import { backend, capturingLogger, countLanes, gateway, type Running, request } from "../helpers/index.js";

const CLIENT_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736";
const CLIENT_SPAN = "00f067aa0ba902b7";
const CLIENT_TP = `00-${CLIENT_TRACE}-${CLIENT_SPAN}-01`;
const TP = /^00-([0-9a-f]{32})-([0-9a-f]{16})-(0[01])$/;

/** An upstream that records the trace headers of every request; `fail` answers 503 (a retry on another target). */
async function recorder(name: string, fail = false) {
  const seen: IncomingHttpHeaders[] = [];
  const b = await backend(name, (req, res) => {
    seen.push(req.headers);
    res.writeHead(fail ? 503 : 200, { "content-type": "text/plain" });
    res.end(name);
  });
  return Object.assign(b, { seen });
}

interface OtlpSpan {
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  name: string;
  kind: number;
  attributes: { key: string; value: Record<string, unknown> }[];
  status?: { code?: number };
}

/** A local OTLP/HTTP receiver: POST /v1/traces bodies (JSON, as the HTTP exporter sends), kept as spans. */
async function otlpReceiver() {
  const spans: OtlpSpan[] = [];
  const types = new Set<string>();
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      types.add(`${req.method} ${req.url} ${req.headers["content-type"]}`);
      const body = JSON.parse(Buffer.concat(chunks).toString()) as {
        resourceSpans: { scopeSpans: { spans: OtlpSpan[] }[] }[];
      };
      for (const rs of body.resourceSpans) for (const ss of rs.scopeSpans) spans.push(...ss.spans);
      res.writeHead(200, { "content-type": "application/json" });
      res.end("{}");
    });
  });
  await new Promise<void>((ok) => server.listen(0, "127.0.0.1", ok));
  return {
    spans,
    types,
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: () => new Promise<void>((ok) => server.close(() => ok())),
  };
}

const attr = (s: OtlpSpan, key: string): unknown => {
  const v = s.attributes.find((a) => a.key === key)?.value;
  if (v === undefined) return undefined;
  const x = v.stringValue ?? v.intValue ?? v.boolValue;
  return typeof x === "string" && "intValue" in v ? Number(x) : x;
};

describe("validTraceparent (W3C Trace Context §3.2)", () => {
  test("accepts version 00 and later versions, refuses the malformed", () => {
    for (const ok of [
      CLIENT_TP,
      `00-${CLIENT_TRACE}-${CLIENT_SPAN}-00`,
      `cc-${CLIENT_TRACE}-${CLIENT_SPAN}-01-what-follows`,
    ])
      assert.equal(validTraceparent(ok), true, ok);
    for (const bad of [
      undefined,
      "",
      `ff-${CLIENT_TRACE}-${CLIENT_SPAN}-01`,
      `00-${"0".repeat(32)}-${CLIENT_SPAN}-01`,
      `00-${CLIENT_TRACE}-${"0".repeat(16)}-01`,
      `00-${CLIENT_TRACE.toUpperCase()}-${CLIENT_SPAN}-01`,
      `00-${CLIENT_TRACE}-${CLIENT_SPAN}-01-extra`,
      `cc-${CLIENT_TRACE}-${CLIENT_SPAN}-01x`,
      `00-${CLIENT_TRACE}-${CLIENT_SPAN}`,
      [CLIENT_TP, CLIENT_TP],
    ])
      assert.equal(validTraceparent(bad), false, String(bad));
  });

  test("made traceparents are valid, unsampled and all different (across pool refills)", () => {
    const made = new Set<string>();
    for (let i = 0; i < 1000; i++) {
      const tp = newTraceparent();
      assert.ok(validTraceparent(tp) && tp.length === 55 && tp.endsWith("-00"), tp);
      made.add(tp.slice(3, 35));
    }
    assert.equal(made.size, 1000);
  });
});

describe("trace context without span export", () => {
  let flaky: Awaited<ReturnType<typeof recorder>>;
  let up: Awaited<ReturnType<typeof recorder>>;
  let gw: Running;
  let lines: Record<string, unknown>[];
  let laned: Map<string, number>;
  before(async () => {
    flaky = await recorder("flaky", true);
    up = await recorder("up");
    const log = capturingLogger();
    lines = log.lines;
    gw = await gateway(
      `
services:
  up: { targets: [${up.url}] }
  pair: { targets: [${flaky.url}, ${up.url}], balancer: round-robin, retries: { attempts: 1 } }
routes:
  - { name: retried, match: { path: /retried }, service: pair }
  - { name: plain, service: up }
`,
      { logger: log.logger },
    );
    laned = countLanes(gw.gw);
  });
  after(async () => {
    await gw.close();
    await flaky.close();
    await up.close();
  });

  /** The request on the lane, then through Fastify; what `up` saw for each and their access lines. */
  async function both(path: string, headers: http.OutgoingHttpHeaders) {
    const out = [];
    for (const viaFastify of [false, true]) {
      const lanesBefore = [...laned.values()].reduce((a, b) => a + b, 0);
      const n = up.seen.length;
      const r = await request(gw.url, {
        path,
        headers: viaFastify ? { ...headers, "content-length": "0" } : headers,
      });
      assert.equal(r.status, 200);
      const lanesAfter = [...laned.values()].reduce((a, b) => a + b, 0);
      assert.equal(
        lanesAfter - lanesBefore,
        viaFastify ? 0 : 1,
        viaFastify ? "Fastify served it" : "the lane served it",
      );
      const line = [...lines]
        .reverse()
        .find((l) => l.msg === "request" && l.reqId === r.headers["x-request-id"]);
      out.push({ sent: up.seen.slice(n), line: line! });
    }
    return out;
  }

  test("a valid traceparent and its tracestate are forwarded as they came; traceId is its trace id", async () => {
    for (const { sent, line } of await both("/x", { traceparent: CLIENT_TP, tracestate: "vendor=abc" })) {
      assert.equal(sent[0].traceparent, CLIENT_TP);
      assert.equal(sent[0].tracestate, "vendor=abc");
      assert.equal(line.traceId, CLIENT_TRACE);
    }
  });

  test("absent or invalid: a new traceparent (flags 00), the orphan tracestate dropped, the access line names it", async () => {
    const seen = new Set<string>();
    for (const headers of [
      {},
      { traceparent: `00-${"0".repeat(32)}-${CLIENT_SPAN}-01`, tracestate: "vendor=abc" },
    ])
      for (const { sent, line } of await both("/x", headers)) {
        const m = TP.exec(String(sent[0].traceparent));
        assert.ok(m, `a well-formed traceparent: ${sent[0].traceparent}`);
        assert.equal(m[3], "00", "nothing recorded here: not sampled");
        assert.equal(sent[0].tracestate, undefined);
        assert.equal(line.traceId, m[1]);
        seen.add(m[1]);
      }
    assert.equal(seen.size, 4, "a new trace per request");
  });

  test("every attempt of a retried request carries the same traceparent", async () => {
    for (const viaFastify of [false, true]) {
      const f = flaky.seen.length;
      const u = up.seen.length;
      // Round robin: two requests so that one of them starts on the failing target.
      for (let i = 0; i < 2; i++)
        assert.equal(
          (await request(gw.url, { path: "/retried", headers: viaFastify ? { "content-length": "0" } : {} }))
            .status,
          200,
        );
      const failed = flaky.seen.slice(f);
      assert.equal(failed.length, 1);
      const retriedTo = up.seen.slice(u).map((h) => h.traceparent);
      assert.ok(retriedTo.includes(failed[0].traceparent), "the retry sent the first attempt's traceparent");
    }
  });
});

test("a request no route takes: its access line names the client's trace", async () => {
  const up = await recorder("up");
  const log = capturingLogger();
  const gw = await gateway(
    `services:\n  up: { targets: [${up.url}] }\nroutes:\n  - { name: only, match: { path: /only }, service: up }\n`,
    { logger: log.logger },
  );
  try {
    const r = await request(gw.url, { path: "/nope", headers: { traceparent: CLIENT_TP } });
    assert.equal(r.status, 404);
    const line = log.lines.find((l) => l.msg === "request" && l.reqId === r.headers["x-request-id"]);
    assert.equal(line?.traceId, CLIENT_TRACE);
  } finally {
    await gw.close();
    await up.close();
  }
});

describe("span export to an OTLP/HTTP collector", () => {
  let flaky: Awaited<ReturnType<typeof recorder>>;
  let up: Awaited<ReturnType<typeof recorder>>;
  let otlp: Awaited<ReturnType<typeof otlpReceiver>>;
  let lines: Record<string, unknown>[];
  let run: (yaml?: string) => Promise<Running>;
  before(async () => {
    flaky = await recorder("flaky", true);
    up = await recorder("up");
    otlp = await otlpReceiver();
    const log = capturingLogger();
    lines = log.lines;
    run = () =>
      gateway(
        `
tracing: { otlp: "${otlp.url}/", serviceName: sy-test }
services:
  pair: { targets: [${flaky.url}, ${up.url}], balancer: round-robin, retries: { attempts: 1 } }
  up: { targets: [${up.url}] }
routes:
  - { name: retried, match: { path: /retried }, service: pair }
  - { name: limited, match: { path: /limited }, service: up, rateLimit: { max: 1, window: 1m } }
  - { name: plain, service: up }
`,
        { logger: log.logger },
      );
  });
  after(async () => {
    await flaky.close();
    await up.close();
    await otlp.close();
  });

  test("a server span per request, a client span per attempt (target, retry, outcome); upstreams get the attempt's context", async () => {
    const gw = await run();
    const laned = countLanes(gw.gw);
    const ids: string[] = [];
    const sentUp: string[] = [];
    try {
      for (const viaFastify of [false, true]) {
        const r = await request(gw.url, {
          path: "/retried",
          headers: {
            traceparent: CLIENT_TP,
            tracestate: "vendor=abc",
            ...(viaFastify ? { "content-length": "0" } : {}),
          },
        });
        assert.equal(r.status, 200);
        ids.push(String(r.headers["x-request-id"]));
        sentUp.push(String(up.seen.at(-1)!.traceparent));
        assert.equal(up.seen.at(-1)!.tracestate, "vendor=abc");
      }
      assert.equal(laned.get("retried"), 1, "one of the two took the lane");
      const noParent = await request(gw.url, { path: "/other" });
      ids.push(String(noParent.headers["x-request-id"]));
      assert.equal((await request(gw.url, { path: "/limited" })).status, 200);
      const limited = await request(gw.url, { path: "/limited" });
      assert.equal(limited.status, 429);
      ids.push(String(limited.headers["x-request-id"]));
    } finally {
      await gw.close(); // flushes the batch
    }
    assert.ok(
      [...otlp.types].every((t) => t === "POST /v1/traces application/json"),
      [...otlp.types].join(),
    );
    const servers = otlp.spans.filter((s) => s.kind === 2);
    const clients = otlp.spans.filter((s) => s.kind === 3);

    // The two retried requests, lane and Fastify alike: one trace (the client's), a server span each.
    const retried = servers.filter((s) => attr(s, "switchyard.route") === "retried");
    assert.equal(retried.length, 2);
    for (const [i, s] of retried.entries()) {
      assert.equal(s.traceId, CLIENT_TRACE);
      assert.equal(s.parentSpanId, CLIENT_SPAN);
      assert.equal(attr(s, "http.response.status_code"), 200);
      const attempts = clients.filter((c) => c.parentSpanId === s.spanId);
      const byRetry = attempts.sort(
        (a, b) => Number(attr(a, "switchyard.retry")) - Number(attr(b, "switchyard.retry")),
      );
      const shape = byRetry.map((c) => [
        attr(c, "switchyard.retry"),
        attr(c, "switchyard.target"),
        attr(c, "switchyard.outcome"),
      ]);
      // Each request has its own round-robin start; whichever it was, a 503 is followed by a retry on up.
      const last = shape.at(-1)!;
      assert.deepEqual(last.slice(1), [up.url, "ok"], JSON.stringify(shape));
      if (shape.length === 2) assert.deepEqual(shape[0], [0, flaky.url, "http-error"]);
      // What the upstream received names the attempt that reached it.
      assert.equal(sentUp[i], `00-${CLIENT_TRACE}-${byRetry.at(-1)!.spanId}-01`);
      const line = lines.find((l) => l.msg === "request" && l.reqId === ids[i]);
      assert.equal(line?.traceId, CLIENT_TRACE);
    }
    assert.equal(
      clients.filter((c) => attr(c, "switchyard.outcome") === "http-error").length,
      1,
      "exactly one of the two started on the failing target",
    );

    // No traceparent: a new trace, the server span is its root; the access line names it.
    const other = servers.find((s) => attr(s, "url.path") === "/other")!;
    assert.ok(other.parentSpanId === undefined || other.parentSpanId === "");
    assert.notEqual(other.traceId, CLIENT_TRACE);
    assert.equal(lines.find((l) => l.reqId === ids[2] && l.msg === "request")?.traceId, other.traceId);

    // Answered by the gateway itself (429): a server span, no attempt.
    const refused = servers.find((s) => attr(s, "http.response.status_code") === 429)!;
    assert.equal(attr(refused, "switchyard.route"), "limited");
    assert.equal(clients.filter((c) => c.parentSpanId === refused.spanId).length, 0);
    assert.equal(lines.find((l) => l.reqId === ids[3] && l.msg === "request")?.traceId, refused.traceId);
  });
});
