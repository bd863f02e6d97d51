import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { MAX_MULTIPLIER, OutlierDetector } from "../../src/upstreams/health-passive.js";
import { Service } from "../../src/upstreams/service.js";
import { Target } from "../../src/upstreams/target.js";
import { type Backend, backend, gateway, type Running, request } from "../helpers/index.js";

const targets = (n: number) =>
  Array.from({ length: n }, (_, i) => new Target({ url: `http://10.0.0.${i}:80`, index: i }));

describe("passive outlier detection (unit, injected clock)", { timeout: 30_000 }, () => {
  const settings = { consecutiveFailures: 3, ejectionTime: 1000, maxEjectionPercent: 50 };

  test("consecutive failures eject; a success in between resets the streak", () => {
    const [t, u] = targets(2);
    const od = new OutlierDetector([t, u], settings);
    od.failure(t, 0);
    od.failure(t, 0);
    od.success(t);
    od.failure(t, 0);
    od.failure(t, 0);
    assert.equal(t.ejected(0), false, "4 failures but never 3 in a row");
    assert.equal(od.failure(t, 0), true);
    assert.equal(t.ejected(999), true);
    assert.equal(t.ejected(1000), false, "back after ejectionTime");
    assert.equal(t.available(1000), true);
  });

  test("each ejection lasts ejectionTime × ejections so far, capped; calm time decays the multiplier", () => {
    const [t, u] = targets(2);
    const od = new OutlierDetector([t, u], settings);
    const ejectAt = (now: number) => {
      for (let i = 0; i < 3; i++) od.failure(t, now);
      return t.ejectedUntil - now;
    };
    assert.equal(ejectAt(0), 1000);
    assert.equal(ejectAt(1000), 2000, "second ejection right after the first: ×2");
    assert.equal(ejectAt(3000), 3000, "×3");
    let now = 6000;
    for (let i = 0; i < 20; i++) now += ejectAt(now);
    assert.equal(t.ejections, MAX_MULTIPLIER);
    assert.equal(ejectAt(now), MAX_MULTIPLIER * 1000, "capped");
    // Calm for 4 × ejectionTime: the multiplier drops by 4 before this ejection counts.
    const later = t.ejectedUntil + 4000;
    assert.equal(ejectAt(later), (MAX_MULTIPLIER - 4 + 1) * 1000);
  });

  test("never more than maxEjectionPercent of the targets at once (rounded down)", () => {
    const ts = targets(5);
    const od = new OutlierDetector(ts, settings); // 50% of 5 → 2
    for (const t of ts) for (let i = 0; i < 3; i++) od.failure(t, 0);
    assert.equal(ts.filter((t) => t.ejected(0)).length, 2);
    // Once one returns, the next failure of a still-failing target ejects it.
    const out = ts.find((t) => !t.ejected(0))!;
    assert.equal(od.failure(out, 500), false, "still two out");
    assert.equal(od.failure(out, 1000), true, "one slot free at t=1000");
    const single = targets(1);
    const od1 = new OutlierDetector(single, settings);
    for (let i = 0; i < 10; i++) od1.failure(single[0], 0);
    assert.equal(single[0].ejected(0), false, "50% of one target is none");
  });

  test("an active probe that started after the ejection ends it early; an older probe does not", () => {
    const [t, u] = targets(2);
    const od = new OutlierDetector([t, u], settings);
    for (let i = 0; i < 3; i++) od.failure(t, 100);
    od.probePassed(t, 50, 200);
    assert.equal(t.ejected(200), true, "probe started before the ejection");
    od.probePassed(t, 150, 200);
    assert.equal(t.ejected(200), false);
  });

  test("Service.reportFailure counts totals and ejects only with outlierDetection", () => {
    const plain = new Service("p", { balancer: "round-robin", targets: ["http://10.0.0.1"] } as never);
    for (let i = 0; i < 10; i++) plain.reportFailure(plain.targets[0]);
    assert.equal(plain.targets[0].failures, 10);
    assert.equal(plain.targets[0].ejected(), false);
  });
});

describe("outlier detection through the gateway", { timeout: 30_000 }, () => {
  const bad: Backend[] = [];
  let good: Backend;
  let gw: Running;
  before(async () => {
    for (const n of ["bad0", "bad1", "bad2"]) {
      bad.push(
        await backend(n, (_req, res) => {
          res.statusCode = 500;
          res.end(JSON.stringify({ name: n }));
        }),
      );
    }
    good = await backend("good");
    gw = await gateway(`
services:
  s:
    targets: [${bad.map((b) => b.url).join(", ")}, ${good.url}]
    retries: { attempts: 0 }
    outlierDetection: { consecutiveFailures: 2, ejectionTime: 30s, maxEjectionPercent: 50 }
routes:
  - { name: r, match: { path: / }, service: s }
`);
  });
  after(async () => {
    await gw.close();
    for (const b of [...bad, good]) await b.close();
  });

  test("5xx streaks eject, but at most 50% of 4 targets: the third bad target keeps its share", async () => {
    for (let i = 0; i < 40; i++) await request(gw.url, { path: "/x" });
    const ts = gw.gw.generation.services.get("s")!.targets;
    const ejected = ts.filter((t) => t.ejected());
    assert.equal(ejected.length, 2, "two ejected");
    assert.ok(
      ejected.every((t) => t.url !== good.url),
      "the good target is never ejected",
    );
    for (const b of bad) b.hits = 0;
    good.hits = 0;
    for (let i = 0; i < 20; i++) await request(gw.url, { path: "/x" });
    const live = bad.filter((b) => b.hits > 0);
    assert.equal(live.length, 1, "exactly one bad target still gets traffic");
    assert.ok(
      Math.abs(live[0].hits - 10) <= 1 && Math.abs(good.hits - 10) <= 1,
      `${live[0].hits}/${good.hits}`,
    );
  });
});

describe("reload carry-over", { timeout: 10_000 }, () => {
  test("health, ejection, drain carry over by service and URL; a new target ramps up", async () => {
    const { carryOver } = await import("../../src/upstreams/carry-over.js");
    const cfg = (targets: string[]) => ({ balancer: "round-robin", targets, slowStart: "10s" }) as never;
    const prev = new Map([["s", new Service("s", cfg(["http://10.0.0.1", "http://10.0.0.2"]))]]);
    const [a, b] = prev.get("s")!.targets;
    a.healthy = false;
    b.eject(0, 5000);
    b.ejections = 3;
    b.draining = true;
    b.requests = 40;
    b.failures = 2;
    const next = new Map([["s", new Service("s", cfg(["http://10.0.0.2", "http://10.0.0.3"]))]]);
    carryOver({ services: prev }, { services: next }, 1000);
    const [b2, c2] = next.get("s")!.targets;
    assert.equal(b2.ejectedUntil, 5000);
    assert.equal(b2.ejections, 3);
    assert.equal(b2.draining, true);
    assert.equal(b2.healthy, true);
    assert.deepEqual([b2.requests, b2.failures], [40, 2], "totals are the process's, not the generation's");
    assert.deepEqual([c2.requests, c2.failures], [0, 0]);
    assert.equal(c2.rampFrom, 1000, "a target new to the service starts slow");
  });
});
