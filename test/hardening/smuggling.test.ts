/**
 * Issue 15: HTTP parsing and request smuggling, over raw sockets. Every
 * ambiguous framing (CL+TE, duplicate or conflicting Content-Length,
 * obfuscated Transfer-Encoding, invalid chunk sizes, bare LF/CR, header
 * injection, oversize heads) gets 400/413/431 or a closed connection, and the
 * backend — which records every byte — never sees the request hidden behind
 * it. Each case runs on both doors: a route without policies (the forwarding
 * lane) and a route with its own plugin (always Fastify's path).
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { countLanes, gateway, type Running } from "../helpers/index.js";
import { codeOf, type RawResult, type Recorder, rawSend, recorder } from "./helpers.js";

let rec: Recorder;
let gw: Running;
let dir: string;
let laned: Map<string, number>;

before(async () => {
  dir = mkdtempSync(join(tmpdir(), "sy-smuggle-"));
  writeFileSync(join(dir, "noop.mjs"), "export default async () => {};");
  rec = await recorder();
  gw = await gateway(`
services: { rec: { targets: [${rec.url}], retries: { attempts: 0 } } }
routes:
  - { name: lane, match: { path: /lane }, service: rec }
  - { name: fastify, match: { path: /fastify }, service: rec, plugins: [{ use: ${join(dir, "noop.mjs")} }] }
`);
  laned = countLanes(gw.gw);
});
after(async () => {
  await gw?.close();
  await rec?.close();
  rmSync(dir, { recursive: true, force: true });
});

const SMUGGLED = "GET /smuggled HTTP/1.1\r\nHost: h\r\n\r\n";
const REFUSED = new Set([400, 413, 431]);

/** A refusal: the first answer is 400/413/431 (or none at all), and the connection is closed. */
function assertRefused(r: RawResult, what: string): void {
  assert.ok(r.closed, `${what}: connection left open (${JSON.stringify(r.text.slice(0, 120))})`);
  if (r.statuses.length > 0) {
    assert.ok(REFUSED.has(r.statuses[0]), `${what}: answered ${r.statuses[0]}`);
    assert.equal(r.statuses.length, 1, `${what}: more than one response`);
    assert.match(codeOf(r.text) ?? "", /^SY_(BAD_REQUEST|HEADERS_TOO_LARGE|BODY_TOO_LARGE)$/, what);
  }
}

/** Cases: [name, request text with P for the route prefix]. Each is followed by a smuggled GET. */
const FRAMING: [string, string][] = [
  [
    "CL then TE",
    "POST P/a HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
  ],
  [
    "TE then CL",
    "POST P/a HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nContent-Length: 40\r\n\r\n0\r\n\r\n",
  ],
  [
    "duplicate CL, equal",
    "POST P/a HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc",
  ],
  [
    "duplicate CL, conflicting",
    "POST P/a HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nContent-Length: 40\r\n\r\nabc",
  ],
  ["CL list", "POST P/a HTTP/1.1\r\nHost: h\r\nContent-Length: 3, 40\r\n\r\nabc"],
  ["CL with a sign", "POST P/a HTTP/1.1\r\nHost: h\r\nContent-Length: +3\r\n\r\nabc"],
  ["CL in hex", "POST P/a HTTP/1.1\r\nHost: h\r\nContent-Length: 0x3\r\n\r\nabc"],
  ["CL negative", "POST P/a HTTP/1.1\r\nHost: h\r\nContent-Length: -1\r\n\r\n"],
  ["CL overflow", "POST P/a HTTP/1.1\r\nHost: h\r\nContent-Length: 99999999999999999999999\r\n\r\n"],
  ["TE xchunked", "POST P/a HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n"],
  ["TE space before colon", "POST P/a HTTP/1.1\r\nHost: h\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n"],
  ["TE vertical tab", "POST P/a HTTP/1.1\r\nHost: h\r\nTransfer-Encoding:\x0bchunked\r\n\r\n0\r\n\r\n"],
  [
    "TE chunked, identity",
    "POST P/a HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n",
  ],
  ["TE identity", "POST P/a HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: identity\r\n\r\n0\r\n\r\n"],
  [
    "TE twice",
    "POST P/a HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n0\r\n\r\n",
  ],
  ["TE obs-fold", "POST P/a HTTP/1.1\r\nHost: h\r\nTransfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n"],
  [
    "chunk size not hex",
    "POST P/a HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n",
  ],
  [
    "chunk size negative",
    "POST P/a HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n-1\r\nabc\r\n0\r\n\r\n",
  ],
  [
    "chunk size 0x",
    "POST P/a HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n0x3\r\nabc\r\n0\r\n\r\n",
  ],
  [
    "chunk size overflow",
    "POST P/a HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffff3\r\nabc\r\n0\r\n\r\n",
  ],
  [
    "chunk data longer than size",
    "POST P/a HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcdef\r\n0\r\n\r\n",
  ],
  ["chunk bare LF", "POST P/a HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\nabc\n0\n\n"],
  ["header bare LF", "GET P/a HTTP/1.1\nHost: h\nX-A: 1\n\n"],
  ["header bare CR", "GET P/a HTTP/1.1\r\nHost: h\rX-A: 1\r\n\r\n"],
  ["header value with NUL", "GET P/a HTTP/1.1\r\nHost: h\r\nX-A: a\x00b\r\n\r\n"],
  ["obs-fold continuation", "GET P/a HTTP/1.1\r\nHost: h\r\nX-A: a\r\n\tX-B: b\r\n\r\n"],
  ["header name with space", "GET P/a HTTP/1.1\r\nHost: h\r\nX A: 1\r\n\r\n"],
  ["header without colon", "GET P/a HTTP/1.1\r\nHost: h\r\nX-A\r\n\r\n"],
  ["space in the target", "GET P/a b HTTP/1.1\r\nHost: h\r\n\r\n"],
  ["unknown version", "GET P/a HTTP/9.9\r\nHost: h\r\n\r\n"],
  ["lower-case version", "GET P/a http/1.1\r\nHost: h\r\n\r\n"],
  ["NUL in the method", "G\x00ET P/a HTTP/1.1\r\nHost: h\r\n\r\n"],
  ["no Host in HTTP/1.1", "GET P/a HTTP/1.1\r\nX-A: 1\r\n\r\n"],
  ["two Hosts", "GET P/a HTTP/1.1\r\nHost: h\r\nHost: evil\r\n\r\n"],
];

for (const door of ["lane", "fastify"] as const) {
  const P = `/${door}`;
  describe(`smuggling on the ${door === "lane" ? "forwarding lane" : "Fastify path"}`, () => {
    test("a well-formed request reaches the backend on this door (the doors are what they claim)", async () => {
      const before = laned.get(door) ?? 0;
      const r = await rawSend(gw.port, `GET ${P}/ok HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n`);
      assert.deepEqual(r.statuses, [200]);
      assert.ok(rec.seen.includes(`GET ${P}/ok`));
      assert.equal((laned.get(door) ?? 0) - before, door === "lane" ? 1 : 0);
    });

    for (const [name, text] of FRAMING) {
      test(`${name}: refused, connection closed, nothing smuggled`, async () => {
        const tag = `/smuggled-${door}-${name.replace(/\W+/g, "-")}`;
        const r = await rawSend(gw.port, text.replaceAll("P/", `${P}/`) + SMUGGLED.replace("/smuggled", tag));
        assertRefused(r, name);
        assert.equal(rec.saw(tag), false, `${name}: the backend saw the smuggled request`);
      });
    }

    test("a GET whose Content-Length body holds a request: forwarded as a body, never as a request", async () => {
      const hidden = `GET /smuggled-${door}-cl HTTP/1.1\r\nHost: h\r\n\r\n`;
      const r = await rawSend(
        gw.port,
        `GET ${P}/body HTTP/1.1\r\nHost: h\r\nConnection: close\r\nContent-Length: ${hidden.length}\r\n\r\n${hidden}`,
      );
      assert.deepEqual(r.statuses, [200]);
      assert.ok(!rec.seen.some((l) => l.includes(`smuggled-${door}-cl`)), rec.seen.join("\n"));
    });

    test("a chunked GET whose body holds a request: forwarded as a body, never as a request", async () => {
      const hidden = `GET /smuggled-${door}-te HTTP/1.1\r\nHost: h\r\n\r\n`;
      const r = await rawSend(
        gw.port,
        `GET ${P}/body HTTP/1.1\r\nHost: h\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n${hidden.length.toString(16)}\r\n${hidden}\r\n0\r\n\r\n`,
      );
      assert.deepEqual(r.statuses, [200]);
      assert.ok(!rec.seen.some((l) => l.includes(`smuggled-${door}-te`)), rec.seen.join("\n"));
    });

    // Well framed, so the connection may stay open: the next request on it is the client's own.
    test("absolute-form target: 400 SY_BAD_PATH, never forwarded to the host it names", async () => {
      const r = await rawSend(
        gw.port,
        `GET http://127.0.0.1:${rec.port}${P}/smuggled-${door}-abs HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n`,
      );
      assert.deepEqual(r.statuses, [400]);
      assert.equal(codeOf(r.text), "SY_BAD_PATH");
      assert.equal(rec.saw(`smuggled-${door}-abs`), false);
    });

    test("asterisk-form OPTIONS *: 400 SY_BAD_PATH", async () => {
      const r = await rawSend(gw.port, "OPTIONS * HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n");
      assert.deepEqual(r.statuses, [400]);
      assert.equal(codeOf(r.text), "SY_BAD_PATH");
    });

    test("CONNECT: the connection is closed, no tunnel is opened", async () => {
      const r = await rawSend(
        gw.port,
        `CONNECT 127.0.0.1:${rec.port} HTTP/1.1\r\nHost: 127.0.0.1:${rec.port}\r\n\r\n`,
      );
      assertRefused(r, "CONNECT");
      assert.ok(!r.statuses.includes(200));
      const r2 = await rawSend(gw.port, `CONNECT ${P}/a HTTP/1.1\r\nHost: h\r\n\r\n${SMUGGLED}`);
      assertRefused(r2, "CONNECT to a route path");
    });

    test("a request line over 16 KB: 431 SY_HEADERS_TOO_LARGE", async () => {
      const r = await rawSend(
        gw.port,
        `GET ${P}/${"a".repeat(17 * 1024)} HTTP/1.1\r\nHost: h\r\n\r\n${SMUGGLED}`,
      );
      assert.deepEqual(r.statuses, [431]);
      assert.equal(codeOf(r.text), "SY_HEADERS_TOO_LARGE");
      assert.ok(r.closed);
    });

    test("one header over 16 KB: 431", async () => {
      const r = await rawSend(
        gw.port,
        `GET ${P}/a HTTP/1.1\r\nHost: h\r\nX-Big: ${"b".repeat(17 * 1024)}\r\n\r\n`,
      );
      assert.deepEqual(r.statuses, [431]);
      assert.ok(r.closed);
    });

    test("many headers adding up to over 16 KB: 431", async () => {
      const many = Array.from({ length: 400 }, (_, i) => `X-H${i}: ${"v".repeat(40)}\r\n`).join("");
      const r = await rawSend(gw.port, `GET ${P}/a HTTP/1.1\r\nHost: h\r\n${many}\r\n`);
      assert.deepEqual(r.statuses, [431]);
      assert.ok(r.closed);
    });

    test("too many headers, each tiny (under 16 KB in all): 431, not silently dropped", async () => {
      const before = rec.seen.length;
      const many = Array.from({ length: 2500 }, (_, i) => `x${i}:\r\n`).join("");
      const r = await rawSend(gw.port, `GET ${P}/many HTTP/1.1\r\nHost: h\r\n${many}\r\n`);
      assert.deepEqual(r.statuses, [431], r.text.slice(0, 200));
      assert.equal(codeOf(r.text), "SY_HEADERS_TOO_LARGE");
      assert.ok(r.closed);
      assert.equal(rec.seen.length, before);
    });
  });
}

test("a WebSocket upgrade with too many header fields: 431, closed, never dialled", async () => {
  const before = rec.seen.length;
  const many = Array.from({ length: 150 }, (_, i) => `x${i}: v\r\n`).join("");
  const r = await rawSend(
    gw.port,
    `GET /lane/ws HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n${many}\r\n`,
  );
  assert.deepEqual(r.statuses, [431]);
  assert.equal(codeOf(r.text), "SY_HEADERS_TOO_LARGE");
  assert.ok(r.closed);
  assert.equal(rec.seen.length, before);
});

test("maxHeaders is the listener's: 100 fields pass by default, a reload to 120 lets 110 through", async () => {
  const fields = (n: number) => Array.from({ length: n }, (_, i) => `x${i}: v\r\n`).join("");
  // Host is a field too: 99 more make 100.
  const at = await rawSend(
    gw.port,
    `GET /lane/a HTTP/1.1\r\nHost: h\r\nConnection: close\r\n${fields(98)}\r\n`,
  );
  assert.deepEqual(at.statuses, [200]);
  const over = await rawSend(
    gw.port,
    `GET /lane/a HTTP/1.1\r\nHost: h\r\nConnection: close\r\n${fields(110)}\r\n`,
  );
  assert.deepEqual(over.statuses, [431]);
  const next = gw.gw.generation.config;
  await gw.gw.reload({ ...next, listen: next.listen.map((l) => ({ ...l, maxHeaders: 120 })) });
  const now = await rawSend(
    gw.port,
    `GET /lane/a HTTP/1.1\r\nHost: h\r\nConnection: close\r\n${fields(110)}\r\n`,
  );
  assert.deepEqual(now.statuses, [200]);
});

test("after all that abuse the gateway still serves", async () => {
  const r = await rawSend(gw.port, "GET /lane/after HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n");
  assert.deepEqual(r.statuses, [200]);
  assert.ok(
    !rec.seen.some((l) => l.includes("smuggled")),
    rec.seen.filter((l) => l.includes("smuggled")).join(),
  );
});
