/**
 * `switchyard explain METHOD URL [-H ...]`: which route a request would take
 * and why the earlier ones did not, the upstream path and Host after
 * rewriting, and the service and balancer — without starting anything.
 * `switchyard explain tcp|udp HOST:PORT` does the same for an L4 listener.
 */
import { sourceOf } from "./config/load.js";
import type { Config } from "./config/schema.js";
import { buildGeneration } from "./generation.js";
import { explainL4 } from "./l4/explain-l4.js";
import { FORWARD_LANE, offLane, policies } from "./policies.js";
import { normalizePath, splitTarget } from "./router/normalize.js";
import { describeEntries } from "./upstreams/discovery.js";
import { describeTransport } from "./upstreams/transport.js";

export function explain(config: Config, method: string, url: string, headerArgs: string[]): string {
  // `explain tcp HOST:PORT` / `explain udp HOST:PORT`: the L4 listener, its mode and (nat) its kernel rule.
  const l4 = method.toLowerCase();
  if (l4 === "tcp" || l4 === "udp") return explainL4(config, l4, url);
  const u = new URL(url, "http://localhost");
  const headers: Record<string, string> = { host: u.host };
  for (const h of headerArgs) {
    const i = h.indexOf(":");
    if (i > 0) headers[h.slice(0, i).trim().toLowerCase()] = h.slice(i + 1).trim();
  }
  const { path: raw, query } = splitTarget(`${u.pathname}${u.search}`);
  const path = normalizePath(raw);
  const lines: string[] = [`${method.toUpperCase()} ${u.host}${raw}${query ? `?${query}` : ""}`];
  if (path === null)
    return `${lines[0]}\n  rejected: 400 SY_BAD_PATH (encoded / or \\, NUL, or bad escape)\n`;
  if (path !== raw) lines.push(`  normalised path: ${path}`);
  const gen = buildGeneration(config, sourceOf(config)?.baseDir);
  const req = { method: method.toUpperCase(), host: headers.host, path, query, headers };
  for (const e of gen.matcher.explain(req)) {
    const r = gen.routes[e.index];
    lines.push(
      e.matched
        ? `  routes[${e.index}] ${r.name}: MATCH`
        : `  routes[${e.index}] ${r.name}: no — ${e.reason}`,
    );
    if (e.matched) break;
  }
  const m = gen.matcher.match(req);
  if (!m) return `${lines.join("\n")}\n  → 404 SY_NO_ROUTE\n`;
  const route = m.value;
  const c = route.config;
  if (c.respond) return `${lines.join("\n")}\n  → direct response ${c.respond.status}\n`;
  const applied = policies.filter((p) => p.applies(c)).map((p) => p.name);
  lines.push(`  policies: ${applied.length ? applied.join(" → ") : "none"}`);
  for (const p of c.plugins ?? []) lines.push(`    plugin ${p.use}`);
  // Which door the request takes (ARCHITECTURE principle 12), and why when it is Fastify's.
  const why = offLane(route, config, FORWARD_LANE);
  lines.push(
    `  path: ${why === undefined ? "fast lane (forwarded before Fastify builds a request)" : `Fastify hooks — ${why}`}`,
  );
  lines.push(
    `  upstream path: ${route.rewrite({ path, rest: m.rest, params: m.params })}${query ? `?${query}` : ""}`,
  );
  lines.push(`  upstream Host: ${route.hostRewrite ?? headers.host}`);
  const svc = c.service
    ? `service ${c.service}`
    : `split ${c.split?.map((s) => `${s.service}:${s.weight}`).join(", ")}`;
  lines.push(`  ${svc}`);
  for (const s of route.services) {
    lines.push(
      `    ${s.name}: ${s.config.balancer} over ${s.discovery ? describeEntries(s.config.targets) : s.targets.map((t) => `${t.url}${t.weight !== 1 ? ` (w${t.weight})` : ""}`).join(", ")}`,
    );
    const how = describeTransport(s.config);
    if (how !== undefined) lines.push(`      to the targets: ${how}`);
  }
  return `${lines.join("\n")}\n`;
}
