/**
 * Real clients and servers nobody here wrote, through a TCP listener:
 * redis-cli / redis-benchmark against the machine's Redis (127.0.0.1:6379) and
 * psql against its PostgreSQL (127.0.0.1:5432). Keys are prefixed per run and
 * deleted afterwards; nothing is ever flushed.
 */
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { test } from "node:test";
import { missing } from "../helpers/needs.js";
import { run, services, tcpProxy, until } from "./helpers.js";

const opts = { timeout: 120_000 };

function redisListener(t: Parameters<typeof tcpProxy>[0]) {
  return tcpProxy(t, { service: "redis" }, services("  redis: { targets: [tcp://127.0.0.1:6379] }"));
}

test("redis-cli PING, SET and GET through the listener", {
  ...opts,
  skip: await missing("redis", "redis-cli"),
}, async (t) => {
  const l = await redisListener(t);
  const cli = (...args: string[]) =>
    run("redis-cli", ["-h", "127.0.0.1", "-p", String(l.port), ...args], 10_000);
  const key = `switchyard:test:l4:${randomUUID()}`;
  t.after(() => run("redis-cli", ["-h", "127.0.0.1", "-p", "6379", "DEL", key], 10_000));
  assert.equal((await cli("PING")).stdout.trim(), "PONG");
  assert.equal((await cli("SET", key, "through-the-gateway")).stdout.trim(), "OK");
  assert.equal((await cli("GET", key)).stdout.trim(), "through-the-gateway");
  await until(() => l.proxy.stats.active === 0);
  assert.equal(l.proxy.stats.total, 3);
  assert.ok(l.proxy.stats.bytesIn > 0 && l.proxy.stats.bytesOut > 0);
});

test("redis-benchmark -t set,get -n 20000 through the listener, without errors", {
  ...opts,
  skip: await missing("redis", "redis-benchmark"),
}, async (t) => {
  const l = await redisListener(t);
  // No -r: the benchmark uses its one fixed key (key:__rand_int__), never a keyspace.
  const r = await run("redis-benchmark", [
    "-h",
    "127.0.0.1",
    "-p",
    String(l.port),
    "-t",
    "set,get",
    "-n",
    "20000",
    "-q",
  ]);
  const out = r.stdout.replace(/\r/g, "\n");
  assert.equal(r.code, 0, r.stderr);
  assert.doesNotMatch(`${out}\n${r.stderr}`, /error/i);
  assert.match(out, /^SET: [\d.]+ requests per second/m);
  assert.match(out, /^GET: [\d.]+ requests per second/m);
  await until(() => l.proxy.stats.active === 0);
  // 50 clients per test by default: every one of them went through the listener.
  assert.ok(l.proxy.stats.total >= 100, `only ${l.proxy.stats.total} connections`);
  assert.equal(l.proxy.stats.refused, 0);
});

// PostgreSQL present (psql and a server listening) means the test runs: any psql error,
// direct or through the listener, is a failure with psql's own message, never a skip.
test("psql select 1 through the listener", { ...opts, skip: await missing("postgres") }, async (t) => {
  const psql = (port: number) =>
    run(
      "psql",
      ["-h", "127.0.0.1", "-p", String(port), "-U", "postgres", "-d", "postgres", "-w", "-tAc", "select 1"],
      20_000,
    );
  const direct = await psql(5432);
  assert.equal(direct.code, 0, `psql fails even directly: ${direct.stderr}`);
  assert.equal(direct.stdout.trim(), "1");
  const { proxy, port } = await tcpProxy(
    t,
    { service: "pg" },
    services("  pg: { targets: [tcp://127.0.0.1:5432] }"),
  );
  const r = await psql(port);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout.trim(), "1");
  assert.ok(proxy.stats.total >= 1);
});
