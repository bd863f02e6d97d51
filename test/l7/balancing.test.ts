import assert from "node:assert/strict";
import http from "node:http";
import { after, before, describe, test } from "node:test";
import { type Backend, backend, gateway, type Running, request } from "../helpers/index.js";

/** Count which backend answered each of n requests (sequential, one keep-alive connection). */
async function tally(
  gw: Running,
  path: string,
  n: number,
  headers: (i: number) => http.OutgoingHttpHeaders = () => ({}),
) {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  const counts: Record<string, number> = {};
  const sockets = new Set<unknown>();
  agent.on("free", (s) => sockets.add(s));
  for (let i = 0; i < n; i++) {
    const r = await request(gw.url, { path, headers: headers(i), agent });
    const name = r.json().name as string;
    counts[name] = (counts[name] ?? 0) + 1;
  }
  agent.destroy();
  return { counts, sockets: sockets.size };
}

describe("balancing through the gateway", () => {
  const b: Backend[] = [];
  let slow: Backend;
  let gw: Running;
  before(async () => {
    for (const n of ["t0", "t1", "t2", "t3"]) b.push(await backend(n));
    slow = await backend("slow", (req, res) => {
      setTimeout(() => res.end(JSON.stringify({ name: "slow" })), 150).unref();
      req.resume();
    });
    const [t0, t1, t2, t3] = b.map((x) => x.url);
    gw = await gateway(`
services:
  rr: { targets: [${t0}, ${t1}, ${t2}] }
  weighted: { targets: [${t0}, { url: ${t1}, weight: 3 }] }
  lc: { targets: [${slow.url}, ${t0}], balancer: least-connections }
  iph: { targets: [${t0}, ${t1}, ${t2}, ${t3}], balancer: ip-hash }
  ch: { targets: [${t0}, ${t1}, ${t2}, ${t3}], balancer: consistent-hash, hash: { on: header, name: x-user } }
  chc: { targets: [${t0}, ${t1}, ${t2}, ${t3}], balancer: consistent-hash, hash: { on: cookie, name: SessionID } }
  v1: { targets: [${t0}] }
  v2: { targets: [${t1}] }
routes:
  - { name: rr, match: { path: /rr }, service: rr }
  - { name: weighted, match: { path: /w }, service: weighted }
  - { name: lc, match: { path: /lc }, service: lc }
  - { name: iph, match: { path: /iph }, service: iph }
  - { name: ch, match: { path: /ch }, service: ch }
  - { name: chc, match: { path: /chc }, service: chc }
  - { name: canary, match: { path: /canary }, split: [{ service: v1, weight: 90 }, { service: v2, weight: 10 }] }
`);
  });
  after(async () => {
    await gw.close();
    for (const x of [...b, slow]) await x.close();
  });

  test("round-robin: equal thirds over 300 requests on ONE keep-alive connection", async () => {
    const { counts, sockets } = await tally(gw, "/rr", 300);
    assert.equal(sockets, 1, "all requests rode one client connection");
    for (const n of ["t0", "t1", "t2"]) assert.ok(Math.abs(counts[n] - 100) <= 15, `${n}: ${counts[n]}`);
  });

  test("weighted 1:3 within ±5% over 400 requests", async () => {
    const { counts } = await tally(gw, "/w", 400);
    assert.ok(Math.abs(counts.t1 / 400 - 0.75) <= 0.05, JSON.stringify(counts));
  });

  test("split 90/10 across services", async () => {
    const { counts } = await tally(gw, "/canary", 300);
    assert.ok(Math.abs(counts.t0 / 300 - 0.9) <= 0.05, JSON.stringify(counts));
    assert.ok(counts.t1 > 0);
  });

  test("least-connections avoids a slow target under concurrency", async () => {
    const counts: Record<string, number> = {};
    const deadline = Date.now() + 3000;
    const worker = async () => {
      for (let i = 0; i < 40 && Date.now() < deadline; i++) {
        const r = await request(gw.url, { path: "/lc" });
        const n = r.json().name as string;
        counts[n] = (counts[n] ?? 0) + 1;
      }
    };
    await Promise.all([worker(), worker(), worker(), worker()]);
    const total = (counts.slow ?? 0) + (counts.t0 ?? 0);
    assert.ok(total >= 40);
    assert.ok((counts.slow ?? 0) / total < 0.2, JSON.stringify(counts));
  });

  test("ip-hash: one client address always lands on the same target", async () => {
    const { counts } = await tally(gw, "/iph", 50);
    assert.equal(Object.keys(counts).length, 1, JSON.stringify(counts));
  });

  test("consistent-hash on a header: stable per key; losing 1 of 4 targets remaps about 1/4 of keys", async () => {
    const keys = Array.from({ length: 400 }, (_, i) => `user-${i}`);
    const place = async () => {
      const out = new Map<string, string>();
      for (const k of keys)
        out.set(k, (await request(gw.url, { path: "/ch", headers: { "x-user": k } })).json().name as string);
      return out;
    };
    const first = await place();
    const again = await place();
    assert.deepEqual([...again], [...first], "stable");
    const svc = gw.gw.generation.services.get("ch")!;
    svc.targets[2].healthy = false;
    try {
      const later = await place();
      const moved = keys.filter((k) => later.get(k) !== first.get(k));
      assert.ok(
        moved.every((k) => first.get(k) === "t2"),
        "only keys of the lost target moved",
      );
      const share = moved.length / keys.length;
      assert.ok(share > 0.12 && share < 0.38, `moved ${share}`);
    } finally {
      svc.targets[2].healthy = true;
    }
  });

  test("consistent-hash on a cookie: the name is case-sensitive, keys spread and stick", async () => {
    const seen = new Map<string, string>();
    for (let i = 0; i < 40; i++) {
      const headers = { cookie: `other=1; SessionID=s-${i}` };
      const a = (await request(gw.url, { path: "/chc", headers })).json().name as string;
      const b = (await request(gw.url, { path: "/chc", headers })).json().name as string;
      assert.equal(a, b, "the same session sticks");
      seen.set(`s-${i}`, a);
    }
    assert.ok(
      new Set(seen.values()).size > 1,
      "different sessions spread (the cookie, not the client address, is the key)",
    );
  });

  test("in-flight counters return to zero after the traffic", async () => {
    for (const svc of gw.gw.generation.services.values())
      for (const t of svc.targets) assert.equal(t.inFlight, 0, t.url);
  });
});
