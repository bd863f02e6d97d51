/**
 * What JSON Schema cannot say about routes.yaml: names that must resolve,
 * regexes that must compile, files that must be readable, keys that only make
 * sense together. Runs after the schema passed, reports through `report` so
 * every problem carries its line and column.
 */
import { accessSync, constants } from "node:fs";
import { resolve } from "node:path";
import { checkNatListeners } from "../l4/nat-checks.js";
import { validateMatchSpec } from "../router/match.js";
import { compileRewrite } from "../router/rewrite.js";
import { compileRegex } from "../router/safe-regex.js";
import { entryScheme, entryUrl } from "../upstreams/discovery.js";
import { checkTransport } from "../upstreams/transport.js";
import { didYouMean, type Segment } from "./load.js";
import type { Config, RouteConfig } from "./schema.js";

export interface CheckContext {
  report(segs: readonly Segment[], message: string, key?: string): void;
  baseDir: string;
  /** Was this key written in the file (as opposed to filled in by a default)? */
  present(segs: readonly Segment[]): boolean;
}

export function semanticChecks(cfg: Config, ctx: CheckContext): void {
  const services = Object.keys(cfg.services);
  const verifiers = Object.keys(cfg.jwt);
  const serviceRef = (segs: Segment[], name: string, scheme: string[]) => {
    const svc = cfg.services[name];
    if (!svc) {
      ctx.report(segs, `unknown service '${name}'${didYouMean(name, services)}`);
      return;
    }
    cfg.services[name].targets.forEach((t, i) => {
      const has = entryScheme(t);
      if (has !== undefined && !scheme.includes(has)) {
        const what = entryUrl(t) ?? `srv ${(t as { srv: string }).srv} (${has})`;
        ctx.report(
          ["services", name, "targets", i],
          `target '${what}' must be ${scheme.map((s) => `${s}://`).join(" or ")} for ${segs.join(".")}`,
        );
      }
    });
  };

  checkTargets(cfg, ctx);
  checkTransport(cfg, ctx);
  checkStore(cfg, ctx);
  if (cfg.routes.length > 0 && cfg.listen.length === 0) {
    ctx.report([], "routes are declared but no L7 listener: add `listen: [{ port: 8080 }]`", "listen");
  }
  const names = new Map<string, number>();
  cfg.routes.forEach((r, i) => {
    const at: Segment[] = ["routes", i];
    if (names.has(r.name))
      ctx.report([...at, "name"], `duplicate route name '${r.name}' (also routes[${names.get(r.name)}])`);
    names.set(r.name, i);
    const targets = [r.service, r.split, r.respond].filter((x) => x !== undefined).length;
    if (targets !== 1) ctx.report(at, "a route needs exactly one of service, split or respond");
    if (r.service !== undefined) serviceRef([...at, "service"], r.service, ["http", "https"]);
    r.split?.forEach((s, j) => {
      serviceRef([...at, "split", j, "service"], s.service, ["http", "https"]);
    });
    if (r.split?.every((s) => s.weight === 0)) ctx.report([...at, "split"], "split weights are all 0");
    if (r.auth && r.auth.jwt !== false && !cfg.jwt[r.auth.jwt]) {
      ctx.report(
        [...at, "auth", "jwt"],
        `unknown JWT verifier '${r.auth.jwt}'${didYouMean(r.auth.jwt, verifiers)}`,
      );
    }
    checkMatch(r, at, ctx);
  });

  for (const [kind, list] of [
    ["tcp", cfg.tcp],
    ["udp", cfg.udp],
  ] as const) {
    const seen = new Set<string>();
    list.forEach((l, i) => {
      if (seen.has(l.name)) ctx.report([kind, i, "name"], `duplicate ${kind} listener name '${l.name}'`);
      seen.add(l.name);
      const scheme = kind === "tcp" ? ["tcp"] : ["udp"];
      if (l.service !== undefined) serviceRef([kind, i, "service"], l.service, scheme);
    });
  }
  cfg.tcp.forEach((l, i) => {
    if (l.sni)
      for (const [host, svc] of Object.entries(l.sni)) serviceRef(["tcp", i, "sni", host], svc, ["tcp"]);
    if (l.default !== undefined) serviceRef(["tcp", i, "default"], l.default, ["tcp"]);
    if ((l.service === undefined) === (l.sni === undefined)) {
      ctx.report(["tcp", i], "a tcp listener needs exactly one of service or sni");
    }
  });
  checkNatListeners(cfg, ctx);

  for (const [name, v] of Object.entries(cfg.jwt)) {
    const keys = [v.secret, v.publicKey, v.jwksUri].filter((x) => x !== undefined).length;
    if (keys !== 1) ctx.report(["jwt", name], "a verifier needs exactly one of secret, publicKey or jwksUri");
    if (v.publicKey !== undefined && !v.publicKey.includes("-----BEGIN"))
      readable(ctx, ["jwt", name, "publicKey"], v.publicKey);
  }
  const cookies = new Map<string, string>();
  for (const [name, s] of Object.entries(cfg.services)) {
    if (s.hash && s.hash.on !== "ip" && s.hash.on !== "path" && !s.hash.name) {
      ctx.report(["services", name, "hash"], `hash.on: ${s.hash.on} needs a name (which ${s.hash.on})`);
    }
    if (s.sticky !== undefined) checkSticky(name, s.sticky.cookie, s.targets, cookies, ctx);
  }
  cfg.listen.forEach((l, i) => {
    for (const k of ["cert", "key"] as const) {
      if (l.tls) readable(ctx, ["listen", i, "tls", k], l.tls[k]);
    }
    l.tls?.sni?.forEach((s, j) => {
      readable(ctx, ["listen", i, "tls", "sni", j, "cert"], s.cert);
      readable(ctx, ["listen", i, "tls", "sni", j, "key"], s.key);
    });
  });
}

/**
 * A sticky cookie belongs to one service: two sharing a name would overwrite
 * each other's cookie on every request. Affinity is L7 (a cookie).
 */
function checkSticky(
  name: string,
  cookie: string,
  targets: Config["services"][string]["targets"],
  seen: Map<string, string>,
  ctx: CheckContext,
) {
  const other = seen.get(cookie);
  if (other !== undefined)
    ctx.report(["services", name, "sticky", "cookie"], `cookie '${cookie}' is already service '${other}'s`);
  seen.set(cookie, name);
  const l4 = targets.some((t) => /^(tcp|udp)$/.test(entryScheme(t) ?? ""));
  if (l4) ctx.report(["services", name, "sticky"], "sticky is cookie affinity for http(s) targets (L7 only)");
}

/** store: one of url, cluster or sentinels (+ name), each a redis:// URL (issue 14). */
function checkStore(cfg: Config, ctx: CheckContext) {
  const st = cfg.store;
  if (st === undefined) return;
  const given = (["url", "cluster", "sentinels"] as const).filter((k) => st[k] !== undefined);
  if (st.type !== "redis") {
    for (const k of [...given, ...(st.name !== undefined ? ["name" as const] : [])])
      ctx.report(["store", k], `store.${k} needs type: redis`);
    return;
  }
  if (given.length > 1)
    ctx.report(["store", given[1]], `give one of store.url, store.cluster or store.sentinels`);
  if (st.sentinels !== undefined && st.name === undefined)
    ctx.report(["store"], "store.sentinels needs the master's name (name: mymaster)", "sentinels");
  if (st.name !== undefined && st.sentinels === undefined)
    ctx.report(["store", "name"], "store.name is the Sentinel master name: it goes with store.sentinels");
  for (const k of ["cluster", "sentinels"] as const)
    st[k]?.forEach((u, i) => {
      if (!/^rediss?:\/\/[^/]+:\d+\/?$/.test(u))
        ctx.report(["store", k, i], `'${u}' must be redis://host:port (or rediss://)`);
    });
}

function checkTargets(cfg: Config, ctx: CheckContext) {
  for (const [name, s] of Object.entries(cfg.services)) {
    s.targets.forEach((t, i) => {
      const url = entryUrl(t);
      if (url === undefined) {
        if (s.discovery !== "dns")
          ctx.report(["services", name, "targets", i], "an srv target needs `discovery: dns` on its service");
        return;
      }
      let u: URL;
      try {
        u = new URL(url);
      } catch {
        ctx.report(["services", name, "targets", i], `'${url}' is not a URL (e.g. http://127.0.0.1:3001)`);
        return;
      }
      if (!["http:", "https:", "tcp:", "udp:"].includes(u.protocol)) {
        ctx.report(
          ["services", name, "targets", i],
          `scheme '${u.protocol}' is not one of http, https, tcp, udp`,
        );
      } else if ((u.protocol === "tcp:" || u.protocol === "udp:") && u.port === "") {
        ctx.report(["services", name, "targets", i], `'${url}' needs a port`);
      } else if (u.pathname !== "/" && u.pathname !== "" && u.protocol.startsWith("http")) {
        ctx.report(
          ["services", name, "targets", i],
          `'${url}': a target is an origin, without a path (use rewrite)`,
        );
      }
    });
  }
}

function checkMatch(r: RouteConfig, at: Segment[], ctx: CheckContext) {
  const m = r.match;
  if (!m) {
    if (r.rewrite) checkRewriteOnly(r, at, ctx);
    return;
  }
  // Precise positions for the common mistakes first; the matcher's own validation covers the rest.
  let found = false;
  const say = (segs: Segment[], message: string) => {
    found = true;
    ctx.report(segs, message);
  };
  const tryRegex = (segs: Segment[], src: string) => {
    try {
      new RegExp(src);
    } catch (err) {
      say(segs, `regex does not compile: ${(err as Error).message}`);
      return;
    }
    try {
      compileRegex(src);
    } catch (err) {
      say(segs, `regex ${(err as Error).message}`);
    }
  };
  if (m.pathType === "regex") tryRegex([...at, "match", "path"], m.path);
  else if (!m.path.startsWith("/")) say([...at, "match", "path"], "path must start with '/'");
  if (m.pathType === "template" && /:(?![A-Za-z_])/.test(m.path)) {
    say([...at, "match", "path"], "template parameters are written :name (letters, digits, _)");
  }
  for (const [h, v] of Object.entries(m.headers ?? {})) {
    if (typeof v === "object" && "regex" in v) tryRegex([...at, "match", "headers", h, "regex"], v.regex);
  }
  if (found) return;
  const why = validateMatchSpec(m);
  if (why) ctx.report([...at, "match"], why);
  else {
    try {
      compileRewrite(r.rewrite, m.path, m.pathType);
    } catch (err) {
      ctx.report([...at, "rewrite"], (err as Error).message);
    }
  }
}

function checkRewriteOnly(r: RouteConfig, at: Segment[], ctx: CheckContext) {
  try {
    compileRewrite(r.rewrite, "/", "prefix");
  } catch (err) {
    ctx.report([...at, "rewrite"], (err as Error).message);
  }
}

/** A file the config names must be readable now, not at the first request that needs it. */
export function readable(ctx: CheckContext, segs: Segment[], file: string) {
  try {
    accessSync(resolve(ctx.baseDir, file), constants.R_OK);
  } catch {
    ctx.report(segs, `cannot read '${file}'`);
  }
}
