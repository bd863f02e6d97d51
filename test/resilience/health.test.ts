import assert from "node:assert/strict";
import net from "node:net";
import { after, before, describe, test } from "node:test";
import { Service } from "../../src/upstreams/service.js";
import { type Backend, backend, deadPort, gateway, type Running, request } from "../helpers/index.js";
import { until } from "./helpers.js";

interface Health {
  health: number;
  probes: number;
  /** Called as each probe arrives, before it is answered. */
  onProbe?: () => void;
}

/** A backend whose /health answers `state.health` and whose other paths say its name. */
async function flappy(name: string, state: Health): Promise<Backend> {
  return backend(name, (req, res) => {
    if (req.url === "/health") {
      state.probes++;
      state.onProbe?.();
      res.statusCode = state.health;
      res.end();
      return;
    }
    res.setHeader("content-type", "application/json");
    res.end(JSON.stringify({ name }));
  });
}

async function names(gw: Running, path: string, n: number): Promise<Record<string, number>> {
  const counts: Record<string, number> = {};
  for (let i = 0; i < n; i++) {
    const r = await request(gw.url, { path });
    const key = r.status === 200 ? (r.json().name as string) : `status ${r.status}`;
    counts[key] = (counts[key] ?? 0) + 1;
  }
  return counts;
}

describe("active health checks", { timeout: 30_000 }, () => {
  const a: Health = { health: 200, probes: 0 };
  const b: Health = { health: 200, probes: 0 };
  const c: Health = { health: 500, probes: 0 };
  // startsDown's "a" is a backend of its own: its probes never count among flap's.
  const a2: Health = { health: 200, probes: 0 };
  let ba: Backend;
  let bb: Backend;
  let bc: Backend;
  let ba2: Backend;
  let gw: Running;
  const interval = 100;
  const threshold = 2;

  before(async () => {
    ba = await flappy("a", a);
    bb = await flappy("b", b);
    bc = await flappy("c", c);
    ba2 = await flappy("a", a2);
    gw = await gateway(`
services:
  flap:
    targets: [${ba.url}, ${bb.url}]
    healthCheck: { path: /health, interval: ${interval}ms, timeout: 200ms, healthyThreshold: ${threshold}, unhealthyThreshold: ${threshold} }
  startsDown:
    targets: [${ba2.url}, ${bc.url}]
    healthCheck: { path: /health, interval: 10s, timeout: 200ms, expectStatus: "200" }
routes:
  - { name: flap, match: { path: /flap }, service: flap }
  - { name: down, match: { path: /down }, service: startsDown }
`);
  });
  after(async () => {
    await gw.close();
    for (const x of [ba, bb, bc, ba2]) await x.close();
  });

  test("a target failing its first probe gets no request from the very start", async () => {
    const counts = await names(gw, "/down", 20);
    assert.deepEqual(counts, { a: 20 });
    const t = gw.gw.generation.services.get("startsDown")!.targets[1];
    assert.equal(t.healthy, false);
  });

  test("/health turning 500 takes a target out within interval × threshold, and back after it recovers", async () => {
    const before = await names(gw, "/flap", 20);
    assert.ok(before.a > 0 && before.b > 0, JSON.stringify(before));
    const target = gw.gw.generation.services.get("flap")!.targets[0];

    // Counted in probes, not milliseconds: "within interval × threshold" is `threshold` probes,
    // however late a busy machine runs them. Probes of a target go one at a time (the next is
    // scheduled when the last has ended), so each one arrives with the state the last one left.
    const arrivals: boolean[] = [];
    a.onProbe = () => arrivals.push(target.healthy);
    try {
      a.health = 500;
      arrivals.length = 0;
      await until(() => !target.healthy, 10_000, 5);
      assert.equal(
        arrivals.filter((healthy) => healthy).length,
        threshold,
        `failing probes while still healthy: ${arrivals}`,
      );
      const during = await names(gw, "/flap", 30);
      assert.deepEqual(during, { b: 30 }, "no traffic to the unhealthy target");

      a.health = 200;
      arrivals.length = 0;
      await until(() => target.healthy, 10_000, 5);
      assert.equal(
        arrivals.filter((healthy) => !healthy).length,
        threshold,
        `passing probes while still unhealthy: ${arrivals}`,
      );
    } finally {
      a.onProbe = undefined;
    }
    const later = await names(gw, "/flap", 20);
    assert.ok(later.a > 0, `traffic returns: ${JSON.stringify(later)}`);
  });

  test("probes stop when the gateway closes (timers tied to the generation)", async () => {
    const d = { health: 200, probes: 0 };
    const bd = await flappy("d", d);
    const other = await gateway(`
services:
  s: { targets: [${bd.url}], healthCheck: { interval: 30ms, timeout: 100ms } }
routes:
  - { name: r, match: { path: / }, service: s }
`);
    await until(() => d.probes >= 3, 2000);
    await other.close();
    const atClose = d.probes;
    await new Promise((r) => setTimeout(r, 200));
    await bd.close();
    // At most the one probe that was already on the wire when close began (it would be ~6 otherwise).
    assert.ok(d.probes - atClose <= 1, `probes after close: ${d.probes - atClose}`);
  });
});

describe("TCP health checks", { timeout: 30_000 }, () => {
  test("a tcp:// service gets connect checks: a dead port is unhealthy, a listener healthy", async () => {
    const listener = net.createServer((s) => s.destroy());
    await new Promise<void>((ok) => listener.listen(0, "127.0.0.1", ok));
    const live = (listener.address() as net.AddressInfo).port;
    const dead = await deadPort();
    const svc = new Service("db", {
      balancer: "round-robin",
      targets: [`tcp://127.0.0.1:${live}`, `tcp://127.0.0.1:${dead}`],
      healthCheck: { interval: "50ms", timeout: "200ms", unhealthyThreshold: 1, healthyThreshold: 1 },
    } as never);
    await svc.startHealthChecks();
    try {
      assert.equal(svc.targets[0].healthy, true);
      assert.equal(svc.targets[1].healthy, false);
      // The listener goes away: the next probe fails (threshold 1).
      await new Promise<void>((ok) => listener.close(() => ok()));
      await until(() => !svc.targets[0].healthy, 1000);
    } finally {
      svc.stopHealthChecks();
    }
  });

  test("udp:// targets are not probed and stay healthy", async () => {
    const svc = new Service("dns", {
      balancer: "round-robin",
      targets: ["udp://127.0.0.1:9"],
      healthCheck: { interval: "50ms", timeout: "100ms", unhealthyThreshold: 1 },
    } as never);
    await svc.startHealthChecks();
    await new Promise((r) => setTimeout(r, 120));
    svc.stopHealthChecks();
    assert.equal(svc.targets[0].healthy, true);
  });
});
