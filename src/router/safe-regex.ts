/**
 * Regexes from routes.yaml run on attacker input (the request path, header
 * values) on every request (issue 15). A pattern with nested or overlapping
 * repetition — `^(a+)+$`, `(\w+\s?)*` — backtracks exponentially on a crafted
 * input of a few dozen characters and would stall the event loop, and every
 * request with it.
 *
 * safe-regex2 (the check find-my-way uses for Fastify's own routes) flags such
 * patterns (star height > 1, or too many repetitions). A flagged pattern is
 * compiled for V8's linear-time engine (the `l` flag: no backtracking, time
 * linear in the input, same matches and groups), so no input can stall it;
 * `--check` warns so its author can rewrite it. A flagged pattern the linear
 * engine cannot run (it needs backreferences or lookaround) is refused at load:
 * nothing could bound it.
 */
import v8 from "node:v8";
import safeRegex from "safe-regex2";
import type { Config } from "../config/schema.js";

// Only makes the `l` flag available; no existing regex changes engine. Read when a regex
// is compiled, so setting it once at load, before any `l` regex, is enough.
v8.setFlagsFromString("--enable-experimental-regexp-engine");

export interface CompiledRegex {
  re: RegExp;
  /** safe-regex2 flagged it: it runs on the linear-time engine. */
  flagged: boolean;
}

/** Compile a config regex; throws (with a message for the user) when it cannot be made safe. */
export function compileRegex(source: string): CompiledRegex {
  const re = new RegExp(source); // a syntax error propagates as "does not compile"
  if (safeRegex(re)) return { re, flagged: false };
  try {
    return { re: new RegExp(source, "l"), flagged: true };
  } catch {
    throw new Error(
      `"${source}" can backtrack catastrophically (nested or overlapping repetition) and uses a backreference or lookaround, which the linear-time engine cannot run: rewrite it without one or the other`,
    );
  }
}

/** Whether a pattern is flagged (for `--check` warnings); false for one that does not compile. */
export function isFlagged(source: string): boolean {
  try {
    return !safeRegex(new RegExp(source));
  } catch {
    return false;
  }
}

/** `--check` warnings: each flagged regex of the config, where it is, and what it costs. */
export function regexWarnings(config: Config): string[] {
  const out: string[] = [];
  const warn = (where: string, source: string) =>
    out.push(
      `${where}: regex "${source}" can backtrack catastrophically on crafted input (safe-regex2); it runs on V8's linear-time engine, which is safe but slower: consider rewriting it without nested repetition`,
    );
  config.routes.forEach((r, i) => {
    const m = r.match;
    if (!m) return;
    if (m.pathType === "regex" && isFlagged(m.path)) warn(`routes[${i}] '${r.name}' match.path`, m.path);
    for (const [h, v] of Object.entries(m.headers ?? {}))
      if (typeof v === "object" && "regex" in v && isFlagged(v.regex))
        warn(`routes[${i}] '${r.name}' match.headers.${h}`, v.regex);
  });
  return out;
}
