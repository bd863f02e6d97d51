/**
 * Balancers as pure tables: exact sequences, ratios, skipping ineligible targets.
 * Randomised algorithms get a seeded PRNG so every run sees the same draws.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { consistentHash } from "../../src/balancers/consistent-hash.js";
import { balancerNames, balancers, createBalancer } from "../../src/balancers/index.js";
import { ipHash } from "../../src/balancers/ip-hash.js";
import { leastConnections } from "../../src/balancers/least-connections.js";
import { p2c } from "../../src/balancers/p2c.js";
import { random } from "../../src/balancers/random.js";
import { roundRobin } from "../../src/balancers/round-robin.js";
import type { Balancer, PickContext } from "../../src/balancers/types.js";
import { Target } from "../../src/upstreams/target.js";

const NAMES = "abcdefgh";

/** Targets a, b, c… with the given weights. */
function mk(...weights: number[]): Target[] {
  return weights.map(
    (weight, index) => new Target({ url: `http://10.0.0.${index + 1}:8080`, index, weight }),
  );
}

const name = (t: Target | undefined): string => (t === undefined ? "-" : NAMES[t.index]);

function seq(b: Balancer, targets: Target[], n: number, ctx: PickContext = {}): string {
  let s = "";
  for (let i = 0; i < n; i++) s += name(b.select(targets, ctx));
  return s;
}

function tally(s: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const c of s) out[c] = (out[c] ?? 0) + 1;
  return out;
}

/** mulberry32: small, seedable, good enough for tests. */
function seeded(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Share of each target within ±pp percentage points of weight/total. */
function assertShares(s: string, weights: number[], pp: number): void {
  const total = weights.reduce((x, y) => x + y, 0);
  const counts = tally(s);
  weights.forEach((w, i) => {
    const share = (counts[NAMES[i]] ?? 0) / s.length;
    const want = w / total;
    assert.ok(
      Math.abs(share - want) <= pp,
      `${NAMES[i]}: share ${share.toFixed(3)}, want ${want.toFixed(3)}±${pp}`,
    );
  });
}

/** Every algorithm, with a context that varies per call so hash balancers touch every target. */
const ALL: Array<[string, (ts: Target[]) => Balancer, (i: number) => PickContext]> = [
  ["round-robin", roundRobin, () => ({})],
  ["least-connections", leastConnections, () => ({})],
  ["p2c", (ts) => p2c(ts, seeded(1)), () => ({})],
  ["random", (ts) => random(ts, seeded(2)), () => ({})],
  ["ip-hash", ipHash, (i) => ({ ip: `192.168.${i >> 8}.${i & 255}` })],
  ["consistent-hash", consistentHash, (i) => ({ key: `user-${i}` })],
];

function picks(
  b: Balancer,
  ts: Target[],
  ctxOf: (i: number) => PickContext,
  n = 300,
  extra: PickContext = {},
) {
  const s = new Set<string>();
  for (let i = 0; i < n; i++) s.add(name(b.select(ts, { ...ctxOf(i), ...extra })));
  return [...s].sort().join("");
}

describe("every balancer", () => {
  const conditions: Array<[string, (t: Target) => void]> = [
    ["unhealthy", (t) => (t.healthy = false)],
    ["ejected (ejectedUntil in the future)", (t) => (t.ejectedUntil = Date.now() + 60_000)],
    ["draining", (t) => (t.draining = true)],
    // Configured weight 0: hash balancers read `weight` (stable), the others `effectiveWeight`.
    ["weight 0", (t) => Object.defineProperty(t, "weight", { value: 0 })],
  ];
  for (const [algo, factory, ctxOf] of ALL) {
    test(`${algo}: uses every target when all are eligible`, () => {
      const ts = mk(1, 1, 1);
      assert.equal(picks(factory(ts), ts, ctxOf), "abc");
    });
    for (const [cond, apply] of conditions) {
      test(`${algo}: skips a target that is ${cond}`, () => {
        const ts = mk(1, 1, 1);
        apply(ts[1]);
        assert.equal(picks(factory(ts), ts, ctxOf), "ac");
      });
    }
    test(`${algo}: an ejection that has expired no longer skips`, () => {
      const ts = mk(1, 1, 1);
      ts[1].ejectedUntil = Date.now() - 1;
      assert.equal(picks(factory(ts), ts, ctxOf), "abc");
    });
    test(`${algo}: never picks a target in ctx.exclude`, () => {
      const ts = mk(1, 1, 1);
      assert.equal(picks(factory(ts), ts, ctxOf, 300, { exclude: new Set([ts[0], ts[2]]) }), "b");
    });
    test(`${algo}: returns undefined when no target is eligible`, () => {
      const ts = mk(1, 1, 1);
      ts[0].healthy = false;
      ts[1].draining = true;
      const b = factory(ts);
      assert.equal(picks(b, ts, ctxOf, 50, { exclude: new Set([ts[2]]) }), "-");
      assert.equal(b.select([], ctxOf(0)), undefined);
      assert.equal(b.select([ts[0]], ctxOf(0)), undefined);
    });
  }
});

describe("round-robin", () => {
  test("equal weights: exact rotation, never the same target twice in a row", () => {
    const ts = mk(1, 1, 1);
    assert.equal(seq(roundRobin(ts), ts, 9), "abcabcabc");
  });

  test("weights 1:3: one a and three b in every cycle of 4, interleaved (b a b b)", () => {
    const ts = mk(1, 3);
    const s = seq(roundRobin(ts), ts, 16);
    assert.equal(s, "babbbabbbabbbabb");
    for (let i = 0; i < s.length; i += 4) assert.deepEqual(tally(s.slice(i, i + 4)), { a: 1, b: 3 });
  });

  test("weights 5:1:1 are smooth: the heavy target is interleaved, not burst (NGINX's example)", () => {
    const ts = mk(5, 1, 1);
    assert.equal(seq(roundRobin(ts), ts, 7), "aabacaa");
  });

  test("weights 1:2:3: exact counts per cycle and shares within ±5% over 400 picks", () => {
    const ts = mk(1, 2, 3);
    const s = seq(roundRobin(ts), ts, 400);
    for (let i = 0; i + 6 <= s.length; i += 6)
      assert.deepEqual(tally(s.slice(i, i + 6)), { a: 1, b: 2, c: 3 });
    assertShares(s, [1, 2, 3], 0.05);
  });

  test("a skipped target rejoins the rotation when it comes back", () => {
    const ts = mk(1, 1, 1);
    const b = roundRobin(ts);
    ts[1].healthy = false;
    assert.equal(seq(b, ts, 4), "acac");
    ts[1].healthy = true;
    assert.deepEqual(tally(seq(b, ts, 6)), { a: 2, b: 2, c: 2 });
  });
});

describe("least-connections", () => {
  test("picks the target with the fewest in-flight requests", () => {
    const ts = mk(1, 1, 1);
    ts[0].inFlight = 3;
    ts[1].inFlight = 1;
    ts[2].inFlight = 2;
    assert.equal(seq(leastConnections(ts), ts, 5), "bbbbb");
  });

  test("in-flight is weight-adjusted", () => {
    const ts = mk(3, 1);
    ts[0].inFlight = 2; // 2/3
    ts[1].inFlight = 1; // 1/1
    assert.equal(seq(leastConnections(ts), ts, 3), "aaa");
  });

  test("ties rotate instead of always going to the first", () => {
    const ts = mk(1, 1, 1);
    const b = leastConnections(ts);
    assert.equal(seq(b, ts, 6), "abcabc");
    ts[0].inFlight = 1;
    assert.equal(seq(b, ts, 4), "bcbc");
  });

  test("ties among idle targets respect weights (1:3)", () => {
    const ts = mk(1, 3);
    assert.deepEqual(tally(seq(leastConnections(ts), ts, 40)), { a: 10, b: 30 });
  });

  test("avoids a slow target whose requests pile up", () => {
    // a and c answer before the next request arrives; b holds every request for 50 ticks.
    const ts = mk(1, 1, 1);
    const lc = leastConnections(ts);
    const slowDone: number[] = [];
    const count = { a: 0, b: 0, c: 0 } as Record<string, number>;
    for (let tick = 0; tick < 600; tick++) {
      while (slowDone.length > 0 && slowDone[0] <= tick) {
        slowDone.shift();
        ts[1].inFlight--;
      }
      const t = lc.select(ts, {})!;
      count[name(t)]++;
      if (t === ts[1]) {
        t.inFlight++;
        slowDone.push(tick + 50);
      }
    }
    assert.ok(count.b <= 600 * 0.05, `slow target got ${count.b} of 600`);
    assert.ok(count.a > 250 && count.c > 250, JSON.stringify(count));
    // Round robin, blind to load, would have given it a third.
    assert.equal(tally(seq(roundRobin(ts), ts, 600)).b, 200);
  });
});

describe("p2c", () => {
  test("with two targets always takes the less loaded one", () => {
    const ts = mk(1, 1);
    ts[0].inFlight = 10;
    assert.equal(seq(p2c(ts, seeded(7)), ts, 50), "b".repeat(50));
  });

  test("prefers lower in-flight: the busiest of three is never chosen", () => {
    const ts = mk(1, 1, 1);
    ts[0].inFlight = 0;
    ts[1].inFlight = 5;
    ts[2].inFlight = 10;
    const s = seq(p2c(ts, seeded(11)), ts, 3000);
    const c = tally(s);
    assert.equal(c.c, undefined);
    // a wins whenever it is drawn (2 pairs of 3), b only against c (1 pair of 3).
    assert.ok(Math.abs(c.a / 3000 - 2 / 3) <= 0.05, JSON.stringify(c));
    assert.ok(Math.abs(c.b / 3000 - 1 / 3) <= 0.05, JSON.stringify(c));
  });

  test("load is weight-adjusted", () => {
    const ts = mk(3, 1);
    ts[0].inFlight = 2; // (2+1)/3 = 1
    ts[1].inFlight = 1; // (1+1)/1 = 2
    assert.equal(seq(p2c(ts, seeded(3)), ts, 20), "a".repeat(20));
  });

  test("equal loads: the two draws are random, so picks spread evenly", () => {
    const ts = mk(1, 1, 1, 1);
    assertShares(seq(p2c(ts, seeded(5)), ts, 3000), [1, 1, 1, 1], 0.05);
  });

  test("with one eligible target returns it without drawing", () => {
    const ts = mk(1, 1, 1);
    ts[0].healthy = false;
    ts[2].healthy = false;
    let draws = 0;
    const b = p2c(ts, () => {
      draws++;
      return 0.5;
    });
    assert.equal(seq(b, ts, 5), "bbbbb");
    assert.equal(draws, 0);
  });

  test("a random() that returns 1 does not break it", () => {
    const ts = mk(1, 1, 1);
    assert.ok(p2c(ts, () => 0.9999999999999999).select(ts, {}));
    assert.ok(p2c(ts, () => 1).select(ts, {}));
  });
});

describe("random", () => {
  test("weights 1:2:3: shares within ±5% over 3000 seeded picks", () => {
    const ts = mk(1, 2, 3);
    assertShares(seq(random(ts, seeded(42)), ts, 3000), [1, 2, 3], 0.05);
  });

  test("deterministic for a given seed, different for another", () => {
    const ts = mk(1, 1, 1);
    const one = seq(random(ts, seeded(9)), ts, 50);
    assert.equal(seq(random(ts, seeded(9)), ts, 50), one);
    assert.notEqual(seq(random(ts, seeded(10)), ts, 50), one);
  });

  test("the draw maps onto cumulative weights", () => {
    const ts = mk(1, 2, 3);
    const at = (r: number) => name(random(ts, () => r).select(ts, {}));
    assert.deepEqual([0, 0.16, 0.17, 0.49, 0.51, 0.99].map(at), ["a", "a", "b", "b", "c", "c"]);
  });
});

describe("ip-hash", () => {
  const ips = Array.from({ length: 1000 }, (_, i) => `10.${(i * 7) & 255}.${i >> 4}.${(i * 13) & 255}`);

  test("the same ip always gets the same target, across instances too", () => {
    const ts = mk(1, 1, 1, 1);
    const b = ipHash(ts);
    for (const ip of ips.slice(0, 50)) {
      const first = b.select(ts, { ip });
      for (let i = 0; i < 20; i++) assert.equal(b.select(ts, { ip }), first);
      assert.equal(ipHash(mk(1, 1, 1, 1)).select(ts, { ip })?.index, first?.index);
    }
  });

  test("1000 ips spread roughly evenly over 4 targets", () => {
    const ts = mk(1, 1, 1, 1);
    const b = ipHash(ts);
    const s = ips.map((ip) => name(b.select(ts, { ip }))).join("");
    assertShares(s, [1, 1, 1, 1], 0.05);
  });

  test("weights 1:3 shift the share", () => {
    const ts = mk(1, 3);
    const b = ipHash(ts);
    assertShares(ips.map((ip) => name(b.select(ts, { ip }))).join(""), [1, 3], 0.05);
  });

  test("a down target moves only its own clients, and they spread over the rest", () => {
    const ts = mk(1, 1, 1, 1);
    const b = ipHash(ts);
    const before = ips.map((ip) => b.select(ts, { ip })!);
    ts[2].healthy = false;
    const after = ips.map((ip) => b.select(ts, { ip })!);
    const landed = new Set<Target>();
    ips.forEach((_, i) => {
      if (before[i] === ts[2]) landed.add(after[i]);
      else assert.equal(after[i], before[i], `${ips[i]} moved although its target is up`);
    });
    assert.equal(landed.size, 3, "clients of the down target should spread over all three others");
    ts[2].healthy = true;
    assert.deepEqual(
      ips.map((ip) => b.select(ts, { ip })),
      before,
    );
  });

  test("no ip: falls back to round robin", () => {
    const ts = mk(1, 1, 1);
    assert.equal(seq(ipHash(ts), ts, 6), "abcabc");
  });
});

describe("consistent-hash", () => {
  const keys = Array.from({ length: 10_000 }, (_, i) => `session-${i}`);
  const map = (b: Balancer, ts: Target[], ctx: (k: string) => PickContext = (key) => ({ key })) =>
    keys.map((k) => b.select(ts, ctx(k))!);

  for (const [how, remove] of [
    ["unhealthy", (t: Target) => (t.healthy = false)],
    ["excluded", () => {}],
  ] as const) {
    test(`10000 keys over 5 targets, one ${how}: ~1/5 move, none of the others`, () => {
      const ts = mk(1, 1, 1, 1, 1);
      const b = consistentHash(ts);
      const before = map(b, ts);
      const gone = ts[3];
      remove(gone);
      const exclude = how === "excluded" ? new Set([gone]) : undefined;
      const after = map(b, ts, (key) => ({ key, exclude }));
      let moved = 0;
      for (let i = 0; i < keys.length; i++) {
        assert.notEqual(after[i], gone);
        if (after[i] !== before[i]) {
          moved++;
          assert.equal(before[i], gone, `${keys[i]} moved off a target that is still up`);
        }
      }
      const frac = moved / keys.length;
      assert.ok(frac >= 0.15 && frac <= 0.25, `moved ${frac}`);
    });
  }

  test("keys spread evenly over equal targets", () => {
    const ts = mk(1, 1, 1, 1, 1);
    assertShares(map(consistentHash(ts), ts).map(name).join(""), [1, 1, 1, 1, 1], 0.05);
  });

  test("adding weight changes the share", () => {
    const even = mk(1, 1);
    assertShares(map(consistentHash(even), even).map(name).join(""), [1, 1], 0.05);
    const heavy = mk(1, 3);
    assertShares(map(consistentHash(heavy), heavy).map(name).join(""), [1, 3], 0.05);
  });

  test("the ring follows target URLs, not list order", () => {
    const ts = mk(1, 1, 1);
    const reversed = [...ts].reverse().map((t, index) => new Target({ url: t.url, index }));
    const a = map(consistentHash(ts), ts).map((t) => t.url);
    const b = map(consistentHash(reversed), reversed).map((t) => t.url);
    assert.deepEqual(b, a);
  });

  test("ctx.key wins over ctx.ip; ctx.ip is used when there is no key", () => {
    const ts = mk(1, 1, 1, 1, 1);
    const b = consistentHash(ts);
    let differ = 0;
    for (const k of keys.slice(0, 200)) {
      const byKey = b.select(ts, { key: k });
      assert.equal(b.select(ts, { key: k, ip: `ip-${k}` }), byKey);
      const byIp = b.select(ts, { ip: `ip-${k}` });
      assert.equal(b.select(ts, { key: `ip-${k}` }), byIp);
      if (byIp !== byKey) differ++;
    }
    assert.ok(differ > 100, "key and ip should hash independently");
  });

  test("no key and no ip: falls back to round robin", () => {
    const ts = mk(1, 1, 1);
    assert.equal(seq(consistentHash(ts), ts, 6), "abcabc");
  });
});

describe("registry", () => {
  test("has exactly the six names of the spec", () => {
    assert.deepEqual([...balancerNames].sort(), [
      "consistent-hash",
      "ip-hash",
      "least-connections",
      "p2c",
      "random",
      "round-robin",
    ]);
    assert.deepEqual(Object.keys(balancers).sort(), [...balancerNames].sort());
  });

  test("createBalancer builds a working balancer for every name", () => {
    const ts = mk(1, 1);
    for (const n of balancerNames) {
      const t = createBalancer(n, ts).select(ts, { ip: "1.2.3.4", key: "k" });
      assert.ok(t === ts[0] || t === ts[1], n);
    }
    assert.equal(seq(createBalancer("round-robin", ts), ts, 4), "abab");
  });

  test("createBalancer throws on an unknown name, including inherited keys", () => {
    for (const bad of ["least-conn", "", "toString", "__proto__"]) {
      assert.throws(() => createBalancer(bad, mk(1)), /unknown balancer/, bad);
    }
  });
});
