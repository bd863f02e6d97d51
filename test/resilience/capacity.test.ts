import assert from "node:assert/strict";
import type { ServerResponse } from "node:http";
import { after, before, describe, test } from "node:test";
import { drainTarget, undrainTarget } from "../../src/upstreams/drain.js";
import { Target } from "../../src/upstreams/target.js";
import { type Backend, backend, gateway, type Running, request } from "../helpers/index.js";
import { until } from "./helpers.js";

/** A backend that holds every request until release() (and says its name). */
async function holding(name: string) {
  const held: ServerResponse[] = [];
  const b = await backend(name, (req, res) => {
    req.resume();
    if (req.url?.startsWith("/hold")) held.push(res);
    else res.end(JSON.stringify({ name }));
  });
  return Object.assign(b, {
    held,
    release() {
      for (const r of held.splice(0)) r.end(JSON.stringify({ name }));
    },
  });
}

describe("circuit breaker: maxConnectionsPerTarget", { timeout: 30_000 }, () => {
  let a: Awaited<ReturnType<typeof holding>>;
  let b: Awaited<ReturnType<typeof holding>>;
  let gw: Running;
  before(async () => {
    a = await holding("a");
    b = await holding("b");
    gw = await gateway(`
services:
  one: { targets: [${a.url}], maxConnectionsPerTarget: 2 }
  two: { targets: [${a.url}, ${b.url}], maxConnectionsPerTarget: 1 }
routes:
  - { name: one, match: { path: /one }, service: one, rewrite: { path: "/hold" } }
  - { name: two, match: { path: /two }, service: two, rewrite: { path: "/hold" } }
`);
  });
  after(async () => {
    a.release();
    b.release();
    await gw.close();
    await a.close();
    await b.close();
  });

  test("at the cap: 503 SY_CIRCUIT_OPEN at once, no queueing; below it again: served", async () => {
    const first = [request(gw.url, { path: "/one" }), request(gw.url, { path: "/one" })];
    await until(() => a.held.length === 2, 2000);
    const t0 = Date.now();
    const r = await request(gw.url, { path: "/one" });
    const took = Date.now() - t0;
    assert.equal(r.status, 503);
    assert.equal(r.json().code, "SY_CIRCUIT_OPEN");
    assert.ok(took < 200, `answered in ${took}ms`);
    assert.equal(a.held.length, 2, "the refused request never reached the target");
    a.release();
    for (const p of await Promise.all(first)) assert.equal(p.status, 200);
    const again = request(gw.url, { path: "/one" });
    await until(() => a.held.length === 1, 2000);
    a.release();
    assert.equal((await again).status, 200);
  });

  test("a target at its cap is skipped while another has room", async () => {
    const p1 = request(gw.url, { path: "/two" });
    const p2 = request(gw.url, { path: "/two" });
    await until(() => a.held.length + b.held.length === 2, 2000);
    assert.equal(a.held.length, 1);
    assert.equal(b.held.length, 1);
    const r = await request(gw.url, { path: "/two" });
    assert.equal(r.json().code, "SY_CIRCUIT_OPEN");
    a.release();
    b.release();
    await Promise.all([p1, p2]);
  });
});

describe("slow start", { timeout: 30_000 }, () => {
  test("effectiveWeight ramps linearly from 10% to the full weight over slowStart", () => {
    const t = new Target({ url: "http://10.0.0.1", index: 0, weight: 4, slowStart: 1000 });
    assert.equal(t.effectiveWeight, 4, "not ramping at first");
    t.startRamp(Date.now());
    assert.ok(Math.abs(t.effectiveWeight - 0.4) < 0.05, `${t.effectiveWeight}`);
    t.startRamp(Date.now() - 500);
    assert.ok(Math.abs(t.effectiveWeight - 2) < 0.1, `${t.effectiveWeight}`);
    t.startRamp(Date.now() - 1000);
    assert.equal(t.effectiveWeight, 4);
    assert.equal(t.rampFrom, 0, "the ramp is over");
    const off = new Target({ url: "http://10.0.0.1", index: 0 });
    off.startRamp(Date.now());
    assert.equal(off.effectiveWeight, 1, "no slowStart, no ramp");
  });

  test("a target that recovers gets a small share first, then its full share", async () => {
    const state = { health: 500 };
    const a = await backend("a", (req, res) => {
      if (req.url === "/health") {
        res.statusCode = state.health;
        res.end();
      } else res.end(JSON.stringify({ name: "a" }));
    });
    const b = await backend("b");
    const gw = await gateway(`
services:
  s:
    targets: [${a.url}, ${b.url}]
    healthCheck: { interval: 20ms, timeout: 200ms, healthyThreshold: 1, unhealthyThreshold: 1 }
    slowStart: 3s
routes:
  - { name: r, match: { path: / }, service: s }
`);
    try {
      const target = gw.gw.generation.services.get("s")!.targets[0];
      assert.equal(target.healthy, false);
      // Counted, not timed: a busy machine answers fewer requests in a given time, and a share of
      // three requests says nothing (issue 17).
      const share = async (n: number) => {
        let mine = 0;
        for (let i = 0; i < n; i++) if ((await request(gw.url, { path: "/x" })).json().name === "a") mine++;
        return mine / n;
      };
      state.health = 200;
      await until(() => target.healthy, 2000, 2);
      const early = await share(40);
      // The weight grows from 0.1 to 1 over the 3 s: the share can be no more than the weight
      // reached by the end of the sample allows (w ÷ (1 + w)), however long the sample took.
      const ramped = target.rampFrom === 0 ? 3000 : Date.now() - target.rampFrom;
      const w = Math.max(0.1, Math.min(1, ramped / 3000));
      await until(() => target.rampFrom === 0 || Date.now() - target.rampFrom > 3000, 5000);
      const late = await share(40); // full weight: 50%
      assert.ok(early > 0, "the recovering target is tried at once");
      assert.ok(
        early <= w / (1 + w) + 0.05,
        `early share ${early} with the weight at ${w.toFixed(2)} by then`,
      );
      assert.ok(late > 0.4 && late < 0.6, `late share ${late}`);
    } finally {
      await gw.close();
      await a.close();
      await b.close();
    }
  });
});

describe("drain", { timeout: 30_000 }, () => {
  let a: Awaited<ReturnType<typeof holding>>;
  let b: Backend;
  let gw: Running;
  before(async () => {
    a = await holding("a");
    b = await backend("b");
    gw = await gateway(`
services:
  s: { targets: [${a.url}, ${b.url}] }
routes:
  - { name: hold, match: { path: /hold }, service: s }
  - { name: r, match: { path: / }, service: s }
`);
  });
  after(async () => {
    await gw.close();
    await a.close();
    await b.close();
  });

  test("a drained target takes no new work; its in-flight request finishes; undrain restores it", async () => {
    const inflight = request(gw.url, { path: "/hold" }); // round robin: the first goes to a
    await until(() => a.held.length === 1, 2000);
    const target = drainTarget(gw.gw.generation, "s", a.url);
    assert.ok(target, "found by its URL");
    assert.equal(drainTarget(gw.gw.generation, "s", "http://nope:1"), undefined);
    assert.equal(drainTarget(gw.gw.generation, "nope", a.url), undefined);
    b.hits = 0;
    for (let i = 0; i < 10; i++) assert.equal((await request(gw.url, { path: "/x" })).json().name, "b");
    assert.equal(target.inFlight, 1);
    let idle = false;
    const whenIdle = target.whenIdle(5).then(() => {
      idle = true;
    });
    await new Promise((r) => setTimeout(r, 30));
    assert.equal(idle, false, "still busy");
    a.release();
    const r = await inflight;
    assert.equal(r.status, 200);
    assert.equal(r.json().name, "a", "the in-flight request completed on the drained target");
    await whenIdle;
    undrainTarget(gw.gw.generation, "s", `127.0.0.1:${a.port}`);
    const names = new Set<string>();
    for (let i = 0; i < 4; i++) names.add((await request(gw.url, { path: "/x" })).json().name as string);
    assert.ok(names.has("a"));
  });
});
