/**
 * The nat mode's table as text (issue 16), without a kernel: how each
 * balancer becomes a map (exact sequences, shares, what moves when a target
 * goes), and what the rules say for snat, UDP session timeouts, a drained
 * target and a listener that stopped accepting.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { type NatListenerPlan, type NatTargetPlan, renderRuleset } from "../../src/l4/nat-ruleset.js";
import { HASH_BUCKETS, hashBuckets, MAX_SLOTS, roundRobinSlots, slotRanges } from "../../src/l4/nat-slots.js";

const T = (id: string, weight = 1) => ({ id, weight });

describe("slots: balancers as maps", () => {
  test("round-robin walks the targets in turn; weights spread smoothly (5,1,1 → a a b a c a a)", () => {
    assert.deepEqual(roundRobinSlots([T("a"), T("b"), T("c")]), [0, 1, 2]);
    assert.deepEqual(roundRobinSlots([T("a", 5), T("b"), T("c")]), [0, 0, 1, 0, 2, 0, 0]);
  });

  test("weights are reduced by their common divisor and capped at MAX_SLOTS, every target keeping one", () => {
    assert.deepEqual(roundRobinSlots([T("a", 200), T("b", 400)]), [1, 0, 1]);
    const slots = roundRobinSlots([T("a", 1000), T("b", 999), T("c", 1)]);
    assert.ok(slots.length <= MAX_SLOTS + 2, `${slots.length} slots`);
    assert.ok(slots.includes(2), "the lightest target keeps a slot");
  });

  test("hash buckets: shares follow the weights; a target going away moves only its own buckets", () => {
    const four = [
      T("tcp://10.0.0.1:1"),
      T("tcp://10.0.0.2:1"),
      T("tcp://10.0.0.3:1"),
      T("tcp://10.0.0.4:1", 2),
    ];
    const b = hashBuckets(four);
    assert.equal(b.length, HASH_BUCKETS);
    const share = (i: number) => b.filter((x) => x === i).length / HASH_BUCKETS;
    for (const i of [0, 1, 2]) assert.ok(Math.abs(share(i) - 0.2) < 0.05, `target ${i}: ${share(i)}`);
    assert.ok(Math.abs(share(3) - 0.4) < 0.05, `weight 2: ${share(3)}`);
    // Without target 1 (unhealthy): the indexes of the others shift by one in the smaller list.
    const without = hashBuckets([four[0], four[2], four[3]]).map((i) => [0, 2, 3][i]);
    let moved = 0;
    for (let k = 0; k < HASH_BUCKETS; k++) {
      if (b[k] === 1) assert.notEqual(without[k], 1);
      else if (without[k] !== b[k]) moved++;
    }
    assert.equal(moved, 0, "no bucket of another target moved");
  });

  test("hash buckets are placed by target identity: a reordered list keeps every client", () => {
    const a = hashBuckets([T("x"), T("y"), T("z")]);
    const b = hashBuckets([T("z"), T("x"), T("y")]).map((i) => [2, 0, 1][i]);
    assert.deepEqual(b, a);
  });

  test("slot runs become ranges", () => {
    assert.deepEqual(slotRanges([0, 0, 1, 0, 0, 0]), [
      { from: 0, to: 1, target: 0 },
      { from: 2, to: 2, target: 1 },
      { from: 3, to: 5, target: 0 },
    ]);
  });
});

const target = (over: Partial<NatTargetPlan> & { index: number }): NatTargetPlan => ({
  id: `tcp://10.0.0.${over.index + 1}:5432`,
  weight: 1,
  mark: over.index + 1,
  address: `10.0.0.${over.index + 1}`,
  port: 5432,
  usable: true,
  ...over,
});

const listener = (over: Partial<NatListenerPlan> = {}): NatListenerPlan => ({
  kind: "tcp",
  name: "db",
  family: 4,
  host: "0.0.0.0",
  port: 15432,
  accepting: true,
  snat: true,
  balancer: "round-robin",
  seed: 0x1234,
  targets: [target({ index: 0 }), target({ index: 1 })],
  ...over,
});

const ruleOf = (text: string) => text.split("\n")[text.split("\n").indexOf("  chain services {") + 1].trim();

describe("renderRuleset", () => {
  test("a round-robin listener: local addresses at its port, numgen over the targets' chains", () => {
    const { text, objects } = renderRuleset("switchyard", [listener()]);
    assert.ok(text.startsWith("table inet switchyard {\n"));
    assert.equal(
      ruleOf(text),
      "meta nfproto ipv4 fib daddr type local tcp dport 15432 numgen inc mod 2 vmap { 0 : jump tcp_db_0, 1 : jump tcp_db_1 }",
    );
    assert.match(
      text,
      /chain tcp_db_1 \{\n {4}ct mark set ct mark & 0x0000ffff \| 0x00020000 counter name "tcp_db_1_conns" meta l4proto tcp dnat ip to 10\.0\.0\.2:5432\n/,
    );
    assert.match(text, /type nat hook prerouting priority dstnat;[^}]*jump services/);
    assert.match(text, /type nat hook output priority -100;[^}]*jump services/);
    assert.match(text, /oifname != "lo" ct mark & 0xffff0000 \{ 0x00010000, 0x00020000 \} masquerade/);
    for (const o of [
      "chain tcp_db_0",
      "counter tcp_db_0_conns",
      "counter tcp_db_1_in",
      "counter tcp_db_1_out",
    ])
      assert.ok(objects.includes(o), o);
  });

  test("random uses numgen random; ip-hash and consistent-hash jhash the source address with the seed", () => {
    assert.match(
      ruleOf(renderRuleset("t", [listener({ balancer: "random" })]).text),
      /numgen random mod 2 vmap/,
    );
    const hashed = ruleOf(renderRuleset("t", [listener({ balancer: "ip-hash", host: "10.1.1.1" })]).text);
    assert.match(
      hashed,
      /^ip daddr 10\.1\.1\.1 tcp dport 15432 jhash ip saddr mod 1024 seed 0x00001234 vmap \{ /,
    );
  });

  test("a drained or unhealthy target leaves the map and keeps its chain and counters (open flows count on)", () => {
    const { text, objects } = renderRuleset("t", [
      listener({ targets: [target({ index: 0, usable: false }), target({ index: 1 })] }),
    ]);
    assert.match(ruleOf(text), /numgen inc mod 1 vmap \{ 0 : jump tcp_db_1 \}$/);
    assert.ok(objects.includes("chain tcp_db_0") && objects.includes("counter tcp_db_0_in"));
    assert.match(text, /0x00010000 : "tcp_db_0_in"/);
  });

  test("no usable target, or not accepting: no rule (the reserved socket resets what arrives)", () => {
    const none = listener({ targets: [target({ index: 0, usable: false })] });
    assert.doesNotMatch(renderRuleset("t", [none]).text, /dport 15432/);
    assert.doesNotMatch(renderRuleset("t", [listener({ accepting: false })]).text, /dport 15432/);
  });

  test("snat: false does not masquerade; UDP sets its session timeout on the flow", () => {
    const udp = listener({ kind: "udp", name: "dns", snat: false, sessionTimeout: 30 });
    const { text, objects } = renderRuleset("t", [udp]);
    assert.doesNotMatch(text, /masquerade/);
    assert.match(
      text,
      /ct timeout udp_dns_30s \{\n {4}protocol udp; l3proto ip;\n {4}policy = \{ unreplied : 30, replied : 30 \}/,
    );
    assert.match(
      text,
      /ct timeout set "udp_dns_30s" counter name "udp_dns_0_conns" meta l4proto udp dnat ip to/,
    );
    assert.ok(objects.includes("ct timeout udp_dns_30s"));
  });

  test("IPv6: ip6 match, hash and dnat with a bracketed address", () => {
    const v6 = listener({
      family: 6,
      host: "fd00::1",
      balancer: "consistent-hash",
      targets: [target({ index: 0, address: "fd00::10" })],
    });
    const { text } = renderRuleset("t", [v6]);
    assert.match(ruleOf(text), /^ip6 daddr fd00::1 tcp dport 15432 jhash ip6 saddr mod 1024/);
    assert.match(text, /dnat ip6 to \[fd00::10\]:5432/);
  });
});
