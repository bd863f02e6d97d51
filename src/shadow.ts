/**
 * `--check` warnings for routes that can never match: an earlier route whose
 * only condition is a path prefix takes every request a later route could get
 * (the classic catch-all written first). Conservative: it only warns when sure.
 */
import type { Config } from "./config/schema.js";

function literalPrefix(path: string, type: string): string | undefined {
  if (type === "regex") return undefined;
  if (type === "template") {
    const i = path.search(/\/:|\/\*/);
    return i < 0 ? path : path.slice(0, i) || "/";
  }
  return path;
}

function under(path: string, prefix: string): boolean {
  const p = prefix.endsWith("/") ? prefix.slice(0, -1) : prefix;
  return p === "" || path === p || path.startsWith(`${p}/`);
}

export function shadowWarnings(config: Config): string[] {
  const out: string[] = [];
  config.routes.forEach((later, j) => {
    const lm = later.match ?? { path: "/", pathType: "prefix" };
    const lp = literalPrefix(lm.path ?? "/", lm.pathType ?? "prefix");
    if (lp === undefined) return;
    for (let i = 0; i < j; i++) {
      const m = config.routes[i].match ?? { path: "/", pathType: "prefix" };
      const onlyPath = !m.methods && !m.hosts && !m.headers && !m.query && !m.cookies;
      if (onlyPath && (m.pathType ?? "prefix") === "prefix" && under(lp, m.path ?? "/")) {
        out.push(
          `routes[${j}] '${later.name}' can never match: routes[${i}] '${config.routes[i].name}' (prefix ${m.path}) takes all its requests first`,
        );
        return;
      }
    }
  });
  return out;
}
