/**
 * `mode: nat` in routes.yaml (issue 16): the keys and their defaults, what a
 * nat listener refuses (with line and column), the one-line refusal of
 * `--check` and start-up where the platform cannot do it, and `explain`.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, test } from "node:test";
import { ConfigError, parseConfig } from "../../src/config/load.js";
import { explain } from "../../src/explain.js";

const services = `services:
  pg: { targets: [tcp://10.0.0.1:5432, { url: tcp://10.0.0.2:5432, weight: 3 }] }
  dns: { targets: [udp://10.0.0.53:53] }
`;

/** Every problem line of a config that must fail. */
function problems(yaml: string): string[] {
  try {
    parseConfig(yaml);
  } catch (err) {
    if (err instanceof ConfigError) return err.message.split("\n");
    throw err;
  }
  assert.fail("the config loaded");
}

describe("the mode and snat keys", () => {
  test("default to proxy and true; nat is accepted with its keys", () => {
    const c = parseConfig(`version: 1
${services}tcp:
  - { name: a, listen: { port: 1 }, service: pg }
  - { name: b, listen: { port: 2 }, service: pg, mode: nat, snat: false }
udp:
  - { name: d, listen: { port: 3 }, service: dns, mode: nat, sessionTimeout: 5s }
`);
    assert.equal(c.tcp[0].mode, "proxy");
    assert.equal(c.tcp[0].snat, true);
    assert.equal(c.tcp[1].mode, "nat");
    assert.equal(c.tcp[1].snat, false);
    assert.equal(c.udp[0].mode, "nat");
  });

  test("mode is proxy or nat", () => {
    const p = problems(
      `version: 1\n${services}tcp:\n  - { name: a, listen: { port: 1 }, service: pg, mode: ipvs }\n`,
    );
    assert.ok(
      p.some((l) => /^routes\.yaml:\d+:\d+ tcp\[0\]\.mode: /.test(l)),
      p.join("\n"),
    );
  });
});

describe("what a nat listener refuses, each with its position", () => {
  const cases: [string, string, RegExp][] = [
    [
      "least-connections",
      `version: 1
services:
  pg: { targets: [tcp://10.0.0.1:5432], balancer: least-connections }
tcp:
  - { name: a, listen: { port: 1 }, service: pg, mode: nat }
`,
      /^routes\.yaml:5:\d+ tcp\[0\]\.mode: service 'pg' balances with least-connections, which needs live per-target connection counts/,
    ],
    [
      "p2c",
      `version: 1
services:
  pg: { targets: [tcp://10.0.0.1:5432], balancer: p2c }
tcp:
  - { name: a, listen: { port: 1 }, service: pg, mode: nat }
`,
      /tcp\[0\]\.mode: service 'pg' balances with p2c/,
    ],
    [
      "a consistent-hash key other than the address",
      `version: 1
services:
  pg: { targets: [tcp://10.0.0.1:5432], balancer: consistent-hash, hash: { on: header, name: x } }
tcp:
  - { name: a, listen: { port: 1 }, service: pg, mode: nat }
`,
      /^routes\.yaml:3:\d+ services\.pg\.hash\.on: the kernel hashes the client address only/,
    ],
    [
      "a target by name",
      `version: 1
services:
  pg: { targets: [tcp://db.internal:5432] }
tcp:
  - { name: a, listen: { port: 1 }, service: pg, mode: nat }
`,
      /^routes\.yaml:3:\d+ services\.pg\.targets\[0\]: nat listener 'a' needs IP address targets/,
    ],
    [
      "IPv4 to IPv6",
      `version: 1
services:
  pg: { targets: ["tcp://[fd00::1]:5432"] }
tcp:
  - { name: a, listen: { port: 1, host: 0.0.0.0 }, service: pg, mode: nat }
`,
      /services\.pg\.targets\[0\]: nat listener 'a' cannot translate between IPv4 and IPv6/,
    ],
    [
      "a host name to listen on",
      `version: 1
${services}tcp:
  - { name: a, listen: { port: 1, host: localhost }, service: pg, mode: nat }
`,
      /tcp\[0\]\.listen\.host: mode: nat listens on an IP address/,
    ],
    [
      "SNI routing",
      `version: 1
${services}tcp:
  - { name: a, listen: { port: 1 }, sni: { x.example: pg }, mode: nat }
`,
      /tcp\[0\]\.sni: not available in nat mode: SNI routing reads the TLS ClientHello/,
    ],
    [
      "the PROXY protocol",
      `version: 1
${services}tcp:
  - { name: a, listen: { port: 1 }, service: pg, mode: nat, proxyProtocol: v2 }
`,
      /tcp\[0\]\.proxyProtocol: not available in nat mode/,
    ],
    [
      "idleTimeout written",
      `version: 1
${services}tcp:
  - { name: a, listen: { port: 1 }, service: pg, mode: nat, idleTimeout: 5m }
`,
      /^routes\.yaml:\d+:\d+ tcp\[0\]\.idleTimeout: not available in nat mode: the kernel's conntrack keeps idle connections/,
    ],
    [
      "maxSessions written",
      `version: 1
${services}udp:
  - { name: d, listen: { port: 1 }, service: dns, mode: nat, maxSessions: 5 }
`,
      /udp\[0\]\.maxSessions: not available in nat mode/,
    ],
    [
      "a service's slowStart",
      `version: 1
services:
  pg: { targets: [tcp://10.0.0.1:5432], slowStart: 30s }
tcp:
  - { name: a, listen: { port: 1 }, service: pg, mode: nat }
`,
      /^routes\.yaml:3:\d+ services\.pg\.slowStart: not available for nat listener 'a'/,
    ],
    [
      "snat in proxy mode",
      `version: 1
${services}tcp:
  - { name: a, listen: { port: 1 }, service: pg, snat: false }
`,
      /tcp\[0\]\.snat: snat applies to mode: nat only/,
    ],
  ];
  for (const [what, yaml, expected] of cases)
    test(what, () => {
      const p = problems(yaml);
      assert.ok(
        p.some((l) => expected.test(l)),
        `expected ${expected} in:\n${p.join("\n")}`,
      );
    });

  test("defaults the nat mode cannot honour are not errors (only written keys are)", () => {
    assert.doesNotThrow(() =>
      parseConfig(
        `version: 1\n${services}tcp:\n  - { name: a, listen: { port: 1 }, service: pg, mode: nat }\n`,
      ),
    );
  });
});

describe("a platform that cannot do it: one line from --check and from start", () => {
  const dir = mkdtempSync(join(tmpdir(), "sy-nat-config-"));
  const file = join(dir, "routes.yaml");
  writeFileSync(
    file,
    `version: 1\n${services}tcp:\n  - { name: a, listen: { port: 0, host: 127.0.0.1 }, service: pg, mode: nat }\n`,
  );
  const cli = (args: string[], env: NodeJS.ProcessEnv, prefix: string[] = []) => {
    const argv = [...prefix, process.execPath, "--import", "tsx", "src/cli.ts", "--config", file, ...args];
    return spawnSync(argv[0], argv.slice(1), { env, encoding: "utf8", timeout: 30_000 });
  };

  test("no nft on PATH", { skip: process.platform !== "linux" && "Linux only" }, () => {
    for (const args of [["--check"], []]) {
      const r = cli(args, { ...process.env, PATH: "/nonexistent" });
      assert.equal(r.status, 1, r.stderr);
      const lines = r.stderr.trim().split("\n");
      assert.equal(lines.length, 1, r.stderr);
      assert.match(
        lines[0],
        /routes\.yaml:\d+:\d+ tcp\[0\]\.mode: nat mode needs the nft command \(nftables\), not found on PATH: install the nftables package$/,
      );
    }
  });

  const canDrop =
    process.getuid?.() === 0 && spawnSync("setpriv", ["--version"]).status === 0
      ? false
      : "needs root and setpriv";
  test("no CAP_NET_ADMIN", { skip: canDrop }, () => {
    const drop = ["setpriv", "--bounding-set=-net_admin", "--inh-caps=-net_admin"];
    for (const args of [["--check"], []]) {
      const r = cli(args, process.env, drop);
      assert.equal(r.status, 1, r.stderr);
      const lines = r.stderr.trim().split("\n");
      assert.equal(lines.length, 1, r.stderr);
      assert.match(lines[0], /tcp\[0\]\.mode: nat mode needs CAP_NET_ADMIN: run as root or grant it/);
    }
  });
});

describe("explain tcp|udp HOST:PORT", () => {
  const config = () =>
    parseConfig(`version: 1
${services}tcp:
  - { name: db, listen: { port: 15432 }, service: pg, mode: nat }
  - { name: px, listen: { port: 15433 }, service: pg }
udp:
  - { name: dns, listen: { port: 5353, host: 127.0.0.1 }, service: dns, mode: nat, snat: false }
`);

  test("a nat listener: its kernel rule, target chains and snat", () => {
    const out = explain(config(), "TCP", "127.0.0.1:15432", []);
    assert.match(out, /tcp\[0\] db: MATCH \(listens on 0\.0\.0\.0:15432, mode nat\)/);
    assert.match(
      out,
      /service pg: round-robin over tcp:\/\/10\.0\.0\.1:5432, tcp:\/\/10\.0\.0\.2:5432 \(w3\)/,
    );
    assert.match(
      out,
      /meta nfproto ipv4 fib daddr type local tcp dport 15432 numgen inc mod 4 vmap \{ 0 : jump tcp_db_1, 1 : jump tcp_db_0, 2-3 : jump tcp_db_1 \}/,
    );
    assert.match(out, /chain tcp_db_1: dnat to 10\.0\.0\.2:5432/);
    assert.match(out, /snat: masquerade/);
    assert.match(out, /not in nat mode: PROXY protocol/);
  });

  test("a proxy listener: its settings; a UDP nat listener without snat; no listener", () => {
    assert.match(
      explain(config(), "tcp", ":15433", []),
      /mode proxy\)\n.*\n {2}proxy: connectTimeout 2s, idleTimeout 1h/,
    );
    const udp = explain(config(), "udp", "udp://127.0.0.1:5353", []);
    assert.match(udp, /ip daddr 127\.0\.0\.1 udp dport 5353 numgen inc mod 1 vmap \{ 0 : jump udp_dns_0 \}/);
    assert.match(udp, /snat: off \(targets see the client's address/);
    assert.match(explain(config(), "tcp", ":1", []), /→ no tcp listener on that address/);
  });
});
