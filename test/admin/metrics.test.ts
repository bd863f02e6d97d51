import assert from "node:assert/strict";
import { test } from "node:test";
import { backend, deadPort, gateway, request } from "../helpers/index.js";
import { ask, dial, echoServer, udpClient, udpEcho } from "../l4/helpers.js";
import { runtime, samples } from "./helpers.js";

test("/metrics after real traffic: HTTP, rate-limited, cached, unrouted, TCP and UDP, with SPEC §8 names and labels", async (t) => {
  const b = await backend("m");
  const echo = await echoServer(t);
  const dns = await udpEcho(t, "u");
  const [tcpPort, udpPort] = [await deadPort(), await deadPort()];
  const g = await runtime(`
services:
  s: { targets: [${b.url}] }
  db: { targets: [tcp://127.0.0.1:${echo.port}] }
  dns: { targets: [udp://127.0.0.1:${dns.port}] }
routes:
  - { name: limited, match: { path: /limited }, service: s, rateLimit: { max: 1, window: 1m, by: route } }
  - { name: cached, match: { path: /cached }, service: s, cache: { ttl: 60s } }
  - { name: plain, service: s }
tcp: [{ name: db, listen: { port: ${tcpPort}, host: 127.0.0.1 }, service: db }]
udp: [{ name: dns, listen: { port: ${udpPort}, host: 127.0.0.1 }, service: dns }]
`);
  t.after(() => g.close());
  t.after(() => b.close());

  for (let i = 0; i < 3; i++) assert.equal((await request(g.url, { path: "/p" })).status, 200);
  assert.equal((await request(g.url, { path: "/limited" })).status, 200);
  assert.equal((await request(g.url, { path: "/limited" })).status, 429);
  assert.equal((await request(g.url, { path: "/cached" })).headers["x-cache"], "MISS");
  assert.equal((await request(g.url, { path: "/cached" })).headers["x-cache"], "HIT");
  assert.equal((await request(g.url, { path: "/cached" })).headers["x-cache"], "HIT");
  assert.equal((await request(g.url, { path: "/%2e%2e/%2f" })).status, 400);
  const c = await dial(tcpPort);
  assert.equal(await ask(c, "hello"), "hello");
  const u = await udpClient(t, udpPort);
  assert.equal(await u.ask("q1"), "u:q1");

  const r = await g.ask("/metrics");
  assert.equal(r.status, 200);
  assert.match(String(r.headers["content-type"]), /^text\/plain; version=0\.0\.4/);
  const m = samples(r.body);
  const get = (k: string) => m.get(k);
  assert.equal(get('switchyard_http_requests_total{route="plain",service="s",status="200"}'), 3);
  assert.equal(get('switchyard_http_requests_total{route="limited",service="s",status="200"}'), 1);
  assert.equal(get('switchyard_http_requests_total{route="limited",service="s",status="429"}'), 1);
  assert.equal(get('switchyard_http_requests_total{route="cached",service="s",status="200"}'), 3);
  assert.equal(get('switchyard_http_requests_total{route="",service="",status="400"}'), 1);
  assert.equal(get('switchyard_rate_limited_total{route="limited"}'), 1);
  assert.equal(get('switchyard_cache_requests_total{route="cached",result="miss"}'), 1);
  assert.equal(get('switchyard_cache_requests_total{route="cached",result="hit"}'), 2);
  assert.equal(get('switchyard_cache_requests_total{route="cached",result="stale"}'), 0);
  assert.equal(get('switchyard_http_request_duration_seconds_count{route="plain",service="s"}'), 3);
  assert.equal(
    get('switchyard_http_request_duration_seconds_bucket{route="plain",service="s",le="+Inf"}'),
    3,
  );
  assert.ok((get('switchyard_http_request_duration_seconds_sum{route="plain",service="s"}') ?? 0) > 0);
  assert.equal(get(`switchyard_upstream_healthy{service="s",target="${b.url}"}`), 1);
  assert.equal(get(`switchyard_upstream_in_flight{service="s",target="${b.url}"}`), 0);
  assert.equal(get('switchyard_tcp_connections_active{listener="db"}'), 1);
  assert.equal(get('switchyard_tcp_connections_total{listener="db"}'), 1);
  assert.equal(get('switchyard_tcp_bytes_total{listener="db",direction="in"}'), 6);
  assert.equal(get('switchyard_tcp_bytes_total{listener="db",direction="out"}'), 6);
  assert.equal(get('switchyard_udp_datagrams_total{listener="dns",direction="in"}'), 1);
  assert.equal(get('switchyard_udp_datagrams_total{listener="dns",direction="out"}'), 1);
  assert.equal(get('switchyard_config_reloads_total{result="success"}'), 0);
  assert.ok(m.has("process_resident_memory_bytes"), "Node's default process metrics");
  c.destroy();
});

test("metrics cost nothing without admin: routes are not bound", async (t) => {
  const b = await backend("n");
  t.after(() => b.close());
  const gw = await gateway(`services: { s: { targets: [${b.url}] } }\nroutes: [{ name: r, service: s }]\n`);
  t.after(() => gw.close());
  assert.equal(gw.gw.generation.routes[0].metrics, undefined);
  assert.equal((await request(gw.url, { path: "/x" })).status, 200);
});

test("a reload keeps the counters of routes that still exist and drops removed routes' series", async (t) => {
  const b = await backend("k");
  t.after(() => b.close());
  const routes = (extra: string) => `services: { s: { targets: [${b.url}] } }
routes:
${extra}  - { name: kept, service: s }
`;
  const g = await runtime(routes("  - { name: gone, match: { path: /gone }, service: s }\n"));
  t.after(() => g.close());
  await request(g.url, { path: "/gone" });
  await request(g.url, { path: "/k" });
  await request(g.url, { path: "/k" });
  g.write(routes(""));
  const rel = await g.ask("/admin/reload", { method: "POST" });
  assert.equal(rel.status, 200, rel.body);
  await request(g.url, { path: "/k" });
  const m = samples((await g.ask("/metrics")).body);
  assert.equal(m.get('switchyard_http_requests_total{route="kept",service="s",status="200"}'), 3);
  assert.equal(m.get('switchyard_http_requests_total{route="gone",service="s",status="200"}'), undefined);
  assert.equal(m.get('switchyard_config_reloads_total{result="success"}'), 1);
});
