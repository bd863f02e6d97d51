/**
 * DNS service discovery (services.*.discovery: dns, issue 14), against a
 * DNS server the test runs on 127.0.0.1 (test/helpers/dns.ts) passed through
 * `dnsServers:`. Backends listen on loopback addresses of their own
 * (127.0.0.2, 127.0.0.3, ::1 — all loopback, nothing leaves the machine) on
 * one port, so each A/AAAA address is a different backend, as pods behind a
 * headless Service are. SRV records give ports as well (127.0.0.1 only).
 */
import assert from "node:assert/strict";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { after, before, describe, test } from "node:test";
import { parseConfig } from "../../src/config/load.js";
import { explain } from "../../src/explain.js";
import type { Service } from "../../src/upstreams/service.js";
import { type DnsServer, dnsServer } from "../helpers/dns.js";
import { capturingLogger, gateway, request } from "../helpers/index.js";

interface At {
  name: string;
  host: string;
  hits: number;
  /** When set, requests wait for it before being answered (an in-flight request). */
  hold?: Promise<void>;
  healthy: boolean;
  server: http.Server;
}

/** A backend on `host:port` answering its name; /health follows `healthy`. */
async function backendAt(name: string, host: string, port: number): Promise<At> {
  const b: At = { name, host, hits: 0, healthy: true } as At;
  b.server = http.createServer(async (req, res) => {
    if (req.url === "/health") {
      res.statusCode = b.healthy ? 200 : 500;
      res.end();
      return;
    }
    b.hits++;
    if (b.hold) await b.hold;
    res.setHeader("content-type", "application/json");
    res.end(JSON.stringify({ name }));
  });
  await new Promise<void>((ok, fail) => b.server.once("error", fail).listen(port, host, () => ok()));
  return b;
}

/** One free port on every loopback address in `hosts` (bounded tries). */
async function pool(names: string[], hosts: string[]): Promise<{ port: number; at: At[] }> {
  for (let i = 0; i < 10; i++) {
    const first = await backendAt(names[0], hosts[0], 0);
    const port = (first.server.address() as AddressInfo).port;
    const at = [first];
    try {
      for (let j = 1; j < hosts.length; j++) at.push(await backendAt(names[j], hosts[j], port));
      return { port, at };
    } catch {
      for (const b of at) b.server.close();
    }
  }
  throw new Error("no port free on every loopback address");
}
const closeAll = (list: At[]) =>
  Promise.all(list.map((b) => new Promise<void>((ok) => b.server.close(() => ok()))));

const nameOf = async (url: string, path = "/") =>
  (await request(url, { path })).json<{ name: string }>().name;
/** Wait (bounded) until `cond` holds, re-checking after every discovery round. */
async function until(svc: Service, cond: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 5000;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    const r = svc.discovery!.rounds;
    while (svc.discovery!.rounds === r && Date.now() < deadline)
      await new Promise((ok) => setTimeout(ok, 20));
  }
}
const urls = (svc: Service) => svc.targets.map((t) => t.url).sort();

let dns: DnsServer;
before(async () => {
  dns = await dnsServer();
});
after(async () => {
  await dns.close();
});

describe("discovery: dns", () => {
  test("a name is every A and AAAA address, each a target with its own health", async () => {
    const { port, at } = await pool(["v4a", "v4b", "v6"], ["127.0.0.2", "127.0.0.3", "::1"]);
    dns.a.set("users.test", [
      { address: "127.0.0.2", ttl: 60 },
      { address: "127.0.0.3", ttl: 60 },
    ]);
    dns.aaaa.set("users.test", [{ address: "::1", ttl: 60 }]);
    const g = await gateway(`
dnsServers: ["${dns.address}"]
services:
  users:
    targets: ["http://users.test:${port}"]
    discovery: dns
    healthCheck: { path: /health, interval: 1h }
routes: [{ name: users, service: users }]
`);
    try {
      const svc = g.gw.generation.services.get("users")!;
      // Resolved before the gateway was ready: the first request already has every address.
      assert.deepEqual(urls(svc), [
        `http://127.0.0.2:${port}`,
        `http://127.0.0.3:${port}`,
        `http://[::1]:${port}`,
      ]);
      const seen = new Set<string>();
      for (let i = 0; i < 6; i++) seen.add(await nameOf(g.url));
      assert.deepEqual([...seen].sort(), ["v4a", "v4b", "v6"]);
      // Health is per address: one failing /health takes that one out, not the name.
      at[1].healthy = false;
      // Restarted, the checks probe every address again; the first probe decides (health-active.ts).
      svc.stopHealthChecks();
      at[1].hits = 0;
      await svc.startHealthChecks();
      assert.equal(svc.targets.find((t) => t.host === "127.0.0.3")!.healthy, false);
      for (let i = 0; i < 6; i++) assert.notEqual(await nameOf(g.url), "v4b");
      assert.equal(at[1].hits, 0);
    } finally {
      await g.close();
      await closeAll(at);
    }
  });

  test("re-resolved on the TTL: a vanished address drains (its request in flight finishes), a new one joins with slow start", async () => {
    const { port, at } = await pool(["one", "two", "three"], ["127.0.0.2", "127.0.0.3", "127.0.0.4"]);
    dns.a.set("churn.test", [
      { address: "127.0.0.2", ttl: 1 },
      { address: "127.0.0.3", ttl: 1 },
    ]);
    const g = await gateway(`
dnsServers: ["${dns.address}"]
services:
  churn: { targets: ["http://churn.test:${port}"], discovery: dns, dnsRefresh: 30s, slowStart: 30s }
routes: [{ name: churn, service: churn }]
`);
    try {
      const svc = g.gw.generation.services.get("churn")!;
      const leaving = svc.targets.find((t) => t.host === "127.0.0.3")!;
      // A request held by 127.0.0.3 while its address disappears.
      let release!: () => void;
      at[1].hold = new Promise((ok) => {
        release = ok;
      });
      let inFlight: Promise<{ status: number; body: string }> | undefined;
      for (let i = 0; i < 4 && inFlight === undefined; i++) {
        const r = request(g.url, { path: "/" });
        await new Promise((ok) => setTimeout(ok, 30));
        if (at[1].hits > 0) inFlight = r;
        else await r;
      }
      assert.ok(inFlight, "a request is in flight to 127.0.0.3");
      assert.equal(leaving.inFlight, 1);
      dns.a.set("churn.test", [
        { address: "127.0.0.2", ttl: 1 },
        { address: "127.0.0.4", ttl: 1 },
      ]);
      const started = Date.now();
      await until(svc, () => urls(svc).includes(`http://127.0.0.4:${port}`), "the new address");
      // TTL 1 s, not dnsRefresh (30 s): re-resolved within a couple of seconds.
      assert.ok(Date.now() - started < 3000, `took ${Date.now() - started} ms`);
      assert.deepEqual(urls(svc), [`http://127.0.0.2:${port}`, `http://127.0.0.4:${port}`]);
      assert.equal(leaving.draining, true);
      const joined = svc.targets.find((t) => t.host === "127.0.0.4")!;
      assert.ok(joined.rampFrom > 0 && joined.effectiveWeight < 1, "slow start");
      // The drained address gets no new request; its request in flight completes.
      for (let i = 0; i < 4; i++) assert.notEqual(await nameOf(g.url), "two");
      release();
      const done = await inFlight!;
      assert.equal(done.status, 200);
      assert.deepEqual(JSON.parse(done.body), { name: "two" });
      await leaving.whenIdle(10);
      assert.equal(leaving.inFlight, 0);
      const seen = new Set<string>();
      for (let i = 0; i < 4; i++) seen.add(await nameOf(g.url));
      assert.deepEqual([...seen].sort(), ["one", "three"]);
    } finally {
      await g.close();
      await closeAll(at);
    }
  });

  test("dnsRefresh bounds a long TTL", async () => {
    dns.a.set("long.test", [{ address: "127.0.0.1", ttl: 3600 }]);
    const before = dns.queries.filter((q) => q === "A long.test").length;
    const g = await gateway(`
dnsServers: ["${dns.address}"]
services: { long: { targets: ["http://long.test:1"], discovery: dns, dnsRefresh: 300ms } }
routes: [{ name: long, service: long }]
`);
    try {
      const started = Date.now();
      await dns.waitFor("A long.test", before + 3);
      const took = Date.now() - started;
      assert.ok(took >= 500 && took < 2500, `two refreshes of 300 ms took ${took} ms`);
    } finally {
      await g.close();
    }
  });

  test("a failing resolver keeps the last good addresses, logged once (and the recovery once)", async () => {
    const { port, at } = await pool(["x", "y"], ["127.0.0.2", "127.0.0.3"]);
    dns.a.set("flaky.test", [
      { address: "127.0.0.2", ttl: 1 },
      { address: "127.0.0.3", ttl: 1 },
    ]);
    const log = capturingLogger();
    const g = await gateway(
      `
dnsServers: ["${dns.address}"]
services: { flaky: { targets: ["http://flaky.test:${port}"], discovery: dns, dnsRefresh: 200ms } }
routes: [{ name: flaky, service: flaky }]
`,
      { logger: log.logger },
    );
    const failures = () => log.lines.filter((l) => /DNS: flaky\.test did not resolve/.test(String(l.msg)));
    try {
      const svc = g.gw.generation.services.get("flaky")!;
      const good = urls(svc);
      for (const breakIt of [
        () => dns.failing.add("flaky.test"), // SERVFAIL
        () => dns.a.delete("flaky.test"), // NXDOMAIN: the name is gone
      ]) {
        breakIt();
        const from = svc.discovery!.rounds;
        await until(svc, () => svc.discovery!.rounds >= from + 4, "four failed rounds");
        assert.deepEqual(urls(svc), good, "the last good set still serves");
        const seen = new Set<string>();
        for (let i = 0; i < 4; i++) seen.add(await nameOf(g.url));
        assert.deepEqual([...seen].sort(), ["x", "y"]);
        assert.equal(failures().length, 1, "logged once, not per round or request");
        dns.failing.delete("flaky.test");
        dns.a.set("flaky.test", [{ address: "127.0.0.2", ttl: 1 }]);
        await until(svc, () => urls(svc).length === 1, "recovery");
        assert.equal(
          log.lines.filter((l) => /flaky\.test resolves again/.test(String(l.msg))).length >= 1,
          true,
        );
        dns.a.set("flaky.test", [
          { address: "127.0.0.2", ttl: 1 },
          { address: "127.0.0.3", ttl: 1 },
        ]);
        await until(svc, () => urls(svc).length === 2, "both again");
        log.lines.length = 0;
      }
    } finally {
      await g.close();
      await closeAll(at);
    }
  });

  test("SRV: each record's host and port is a target (lowest priority only)", async () => {
    const {
      at: [a],
    } = await pool(["srv-a"], ["127.0.0.1"]);
    const {
      at: [b],
    } = await pool(["srv-b"], ["127.0.0.1"]);
    const {
      at: [spare],
    } = await pool(["spare"], ["127.0.0.1"]);
    const portOf = (x: At) => (x.server.address() as AddressInfo).port;
    dns.srv.set("_http._tcp.api.test", [
      { priority: 10, weight: 5, port: portOf(a), target: "node-a.test" },
      { priority: 10, weight: 5, port: portOf(b), target: "node-b.test" },
      { priority: 20, weight: 5, port: portOf(spare), target: "node-a.test" },
    ]);
    dns.a.set("node-a.test", [{ address: "127.0.0.1", ttl: 60 }]);
    dns.a.set("node-b.test", [{ address: "127.0.0.1", ttl: 60 }]);
    const g = await gateway(`
dnsServers: ["${dns.address}"]
services: { api: { targets: [{ srv: _http._tcp.api.test }], discovery: dns } }
routes: [{ name: api, service: api }]
`);
    try {
      const svc = g.gw.generation.services.get("api")!;
      assert.deepEqual(urls(svc), [`http://127.0.0.1:${portOf(a)}`, `http://127.0.0.1:${portOf(b)}`].sort());
      const seen = new Set<string>();
      for (let i = 0; i < 4; i++) seen.add(await nameOf(g.url));
      assert.deepEqual([...seen].sort(), ["srv-a", "srv-b"]);
      assert.equal(spare.hits, 0);
    } finally {
      await g.close();
      await closeAll([a, b, spare]);
    }
  });

  test("a reload whose first resolution fails still serves the last good addresses", async () => {
    const { port, at } = await pool(["r1", "r2"], ["127.0.0.2", "127.0.0.3"]);
    dns.a.set("reload.test", [
      { address: "127.0.0.2", ttl: 60 },
      { address: "127.0.0.3", ttl: 60 },
    ]);
    const yaml = (timeout: string) => `
dnsServers: ["${dns.address}"]
services: { r: { targets: ["http://reload.test:${port}"], discovery: dns, timeouts: { request: ${timeout} } } }
routes: [{ name: r, service: r }]
`;
    const g = await gateway(yaml("10s"));
    try {
      const targetBefore = g.gw.generation.services.get("r")!.targets[0];
      targetBefore.requests = 41;
      dns.failing.add("reload.test");
      await g.gw.reload(
        parseConfig(
          `version: 1\nshutdownTimeout: 1s\nlisten: [{ port: 0, host: 127.0.0.1 }]\n${yaml("11s")}`,
        ),
      );
      const svc = g.gw.generation.services.get("r")!;
      assert.equal(svc.timeouts.request, 11_000, "the new generation serves");
      assert.deepEqual(urls(svc), [`http://127.0.0.2:${port}`, `http://127.0.0.3:${port}`]);
      // Same URL, same state: the discovered target carried its totals over.
      assert.equal(svc.targets.find((t) => t.url === targetBefore.url)!.requests, 41);
      const seen = new Set<string>();
      for (let i = 0; i < 4; i++) seen.add(await nameOf(g.url));
      assert.deepEqual([...seen].sort(), ["r1", "r2"]);
    } finally {
      dns.failing.delete("reload.test");
      await g.close();
      await closeAll(at);
    }
  });
});

describe("discovery configuration", () => {
  test("explain names the entries a discovery service resolves", () => {
    const config = parseConfig(`version: 1
listen: [{ port: 0 }]
services: { u: { targets: ["http://users.test:3000", { srv: _http._tcp.u.test }], discovery: dns } }
routes: [{ name: u, service: u }]
`);
    assert.match(
      explain(config, "GET", "http://x/", []),
      /u: round-robin over every address of http:\/\/users\.test:3000, srv _http\._tcp\.u\.test \(discovery: dns\)/,
    );
  });

  const problems = (yaml: string): string => {
    try {
      parseConfig(`version: 1\n${yaml}`);
      return "";
    } catch (err) {
      return (err as Error).message;
    }
  };
  test("srv needs discovery: dns; nat listeners cannot re-resolve; dnsServers are addresses", () => {
    assert.match(
      problems(`services: { s: { targets: [{ srv: _http._tcp.s.test }] } }`),
      /services\.s\.targets\[0\]: an srv target needs `discovery: dns`/,
    );
    assert.match(
      problems(`
tcp: [{ name: db, listen: { port: 15432, host: 127.0.0.1 }, service: db, mode: nat }]
services: { db: { targets: ["tcp://127.0.0.1:5432"], discovery: dns } }`),
      /discovery.*not available for nat listener 'db'/,
    );
    assert.match(problems(`dnsServers: ["dns.example.com"]\n`), /dnsServers\[0\]/);
    // An _http SRV name gives http targets: fine for a route; a tcp listener wants tcp.
    assert.match(
      problems(`
tcp: [{ name: t, listen: { port: 1 }, service: s }]
services: { s: { targets: [{ srv: _http._tcp.s.test }], discovery: dns } }`),
      /target 'srv _http\._tcp\.s\.test \(http\)' must be tcp:\/\//,
    );
    assert.equal(
      problems(`
dnsServers: ["127.0.0.1:53", "[::1]:5353", "10.0.0.10"]
tcp: [{ name: t, listen: { port: 1 }, service: s }]
services: { s: { targets: [{ srv: _postgres._tcp.db.test }, "tcp://db.test:5432"], discovery: dns, dnsRefresh: 10s } }`),
      "",
    );
  });
});
