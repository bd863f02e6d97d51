/**
 * routes.yaml → validated, defaulted, frozen Config — or every problem at once,
 * each as `file:line:col path.to.key: message` (SPEC §1, §2).
 *
 * Steps: parse YAML keeping positions → expand ${ENV} in scalars → Ajv against
 * the TypeBox schema (allErrors, defaults) → semantic checks (names, regexes,
 * files) → deep-freeze. Nothing here starts or listens.
 */
import { readFileSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { Ajv, type ErrorObject } from "ajv";
import { closest, distance } from "fastest-levenshtein";
import {
  isMap,
  isPair,
  isScalar,
  isSeq,
  LineCounter,
  type Node,
  parseDocument,
  parse as parseYaml,
  visit,
} from "yaml";
import { semanticChecks } from "./checks.js";
import { type Config, ConfigSchema } from "./schema.js";

export interface Problem {
  line: number;
  col: number;
  /** Dotted path, e.g. routes[0].match.path */
  path: string;
  message: string;
}

export class ConfigError extends Error {
  constructor(
    readonly file: string,
    readonly problems: Problem[],
  ) {
    super(problems.map((p) => formatProblem(file, p)).join("\n"));
    this.name = "ConfigError";
  }
}

export function formatProblem(file: string, p: Problem): string {
  // One problem, one line (SPEC §1): a key or value quoted into a message may hold line
  // breaks or other control characters (found by fuzzing, issue 15); they are escaped.
  return oneLine(`${file}:${p.line}:${p.col} ${p.path || "(root)"}: ${p.message}`);
}

function oneLine(text: string): string {
  // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what is escaped
  return text.replace(/[\u0000-\u001f\u007f]/g, (c) => JSON.stringify(c).slice(1, -1));
}

export type Segment = string | number;

export function pathString(segs: readonly Segment[]): string {
  let out = "";
  for (const s of segs) out += typeof s === "number" ? `[${s}]` : out === "" ? s : `.${s}`;
  return out;
}

/**
 * The Ajv every config schema is compiled with (this file's, and user plugins' options in
 * plugins.ts): every problem at once, defaults filled in.
 *
 * code.optimize off: Ajv's name optimiser builds an object per generated name (data92, _errs686 …),
 * each a new transition off V8's root object map; compiling the config schema filled that map's
 * 1536 slots, and until the next full GC every shape built from `{}` was a map of its own, sending
 * the inline caches of start-up code megamorphic for good (issue 11: 1536 transitions before the
 * first GC with it, 347 without). A validator runs once per load: its speed does not matter.
 */
export function configAjv(): Ajv {
  return new Ajv({
    allErrors: true,
    useDefaults: true,
    strict: false,
    verbose: true,
    code: { optimize: false },
  });
}

const validate = configAjv().compile(ConfigSchema);

export interface LoadOptions {
  env?: NodeJS.ProcessEnv;
  /** Name shown in messages; defaults to the file's base name. */
  displayName?: string;
}

export function loadConfigFile(file: string, opts: LoadOptions = {}): Config {
  return parseConfigFile(file, readConfigFile(file, opts), opts);
}

/** The file's text; a ConfigError when it cannot be read. */
export function readConfigFile(file: string, opts: LoadOptions = {}): string {
  try {
    return readFileSync(file, "utf8");
  } catch (err) {
    const reason =
      (err as NodeJS.ErrnoException).code === "ENOENT" ? "file not found" : (err as Error).message;
    throw new ConfigError(opts.displayName ?? file, [
      { line: 0, col: 0, path: "", message: `cannot read ${file}: ${reason}` },
    ]);
  }
}

/**
 * `text` as if read from `file` (its name in errors, its directory for
 * relative paths): --workers hands every worker the text the primary
 * validated, so no worker reads a file that changed in between.
 */
export function parseConfigFile(file: string, text: string, opts: LoadOptions = {}): Config {
  return parseConfig(text, {
    ...opts,
    displayName: opts.displayName ?? file,
    baseDir: dirname(resolve(file)),
  });
}

export function parseConfig(text: string, opts: LoadOptions & { baseDir?: string } = {}): Config {
  const shown = opts.displayName ?? "routes.yaml";
  const env = opts.env ?? process.env;
  const lc = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lc, uniqueKeys: true, prettyErrors: true });
  const pos = (offset: number) => lc.linePos(offset);
  const problems: Problem[] = [];

  for (const e of doc.errors) {
    const p = e.linePos?.[0] ?? { line: 0, col: 0 };
    const message = e.message.split("\n")[0].replace(/ at line \d+, column \d+:?$/, "");
    problems.push({ line: p.line, col: p.col, path: "", message });
  }
  if (problems.length) throw new ConfigError(shown, problems);

  // A key that is a mapping or a list (YAML's "? " complex keys) names nothing in this file:
  // refused here, where its position is known, before toJS() would stringify it.
  visit(doc, {
    Pair(_, pair) {
      if (pair.key === null || isScalar(pair.key)) return;
      const at = pos((pair.key as Node).range?.[0] ?? 0);
      problems.push({ ...at, path: "", message: "a key must be a plain string, not a mapping or a list" });
    },
    // An alias whose anchor is missing or comes later would make toJS() throw without a position.
    Alias(_, alias) {
      if (alias.resolve(doc) !== undefined) return;
      const at = pos(alias.range?.[0] ?? 0);
      problems.push({
        ...at,
        path: "",
        message: `unknown alias *${alias.source} (hint: define the anchor &${alias.source} before using it)`,
      });
    },
  });
  if (problems.length) throw new ConfigError(shown, problems);

  const envFailed = new Set<string>();
  expandEnv(doc.contents, env, (node, message) => {
    const p = pos(node.range?.[0] ?? 0);
    const path = pathOf(doc.contents, node);
    envFailed.add(path);
    problems.push({ line: p.line, col: p.col, path, message });
  });

  let data: Record<string, unknown>;
  try {
    // maxAliasCount bounds alias expansion: a "billion laughs" file is refused, not expanded.
    data = (doc.toJS({ maxAliasCount: 100 }) ?? {}) as Record<string, unknown>;
  } catch (err) {
    const message = `${(err as Error).message} (hint: aliases are expanded at most 100 times in all)`;
    throw new ConfigError(shown, [{ line: 1, col: 1, path: "", message }]);
  }
  const locate = (segs: readonly Segment[], key?: string): { line: number; col: number } => {
    const node = nodeAt(doc.contents, segs, key);
    return pos(node?.range?.[0] ?? 0);
  };
  const report = (segs: readonly Segment[], message: string, key?: string) => {
    const at = locate(segs, key);
    if (envFailed.has(pathString(segs))) return; // already said: the variable is missing
    problems.push({ ...at, path: pathString(key ? [...segs, key] : segs), message });
  };

  if (!validate(data)) reportSchemaErrors(validate.errors ?? [], report);
  try {
    const present = (segs: readonly Segment[]) => hasPath(doc.contents, segs);
    semanticChecks(data as Config, { report, baseDir: opts.baseDir ?? process.cwd(), present });
  } catch (err) {
    // Data that failed the schema can trip a check; the schema's lines already say why.
    if (problems.length === 0) throw err;
  }
  if (problems.length) {
    problems.sort((a, b) => a.line - b.line || a.col - b.col);
    throw new ConfigError(shown, problems);
  }
  const config = deepFreeze(data as Config);
  sources.set(config, { shown, baseDir: opts.baseDir ?? process.cwd(), locate });
  return config;
}

/** Where a loaded config came from: what the async checks (plugins) need to report like the rest. */
export interface ConfigSource {
  /** The file's name as messages show it. */
  shown: string;
  /** Directory relative paths in the file are read from. */
  baseDir: string;
  /** Line and column of a key in the file (the key's own position with `key`). */
  locate(segs: readonly Segment[], key?: string): { line: number; col: number };
}

// Keyed by the frozen config, so it lives exactly as long as the config does.
const sources = new WeakMap<Config, ConfigSource>();

export function sourceOf(config: Config): ConfigSource | undefined {
  return sources.get(config);
}

/** Ajv's errors as problems, with did-you-mean for unknown keys; `at` prefixes their paths. */
export function reportSchemaErrors(
  errors: ErrorObject[],
  report: (segs: readonly Segment[], message: string, key?: string) => void,
  at: readonly Segment[] = [],
): void {
  for (const e of simplifyErrors(errors)) {
    const segs = [...at, ...pointerToSegments(e.instancePath)];
    if (e.keyword === "additionalProperties") {
      const key = e.params.additionalProperty as string;
      report(segs, unknownKeyMessage(key, e.parentSchema), key);
    } else if (e.keyword === "required") {
      report(segs, `missing required key '${e.params.missingProperty}'`);
    } else report(segs, describeError(e));
  }
}

/**
 * ${NAME} and ${NAME:-default} in string scalars. A scalar that is exactly one
 * reference is re-read as YAML, so `port: ${PORT:-8080}` is a number.
 */
function expandEnv(root: unknown, env: NodeJS.ProcessEnv, fail: (node: Node, message: string) => void) {
  visit(root as Node, {
    Scalar(_key, node) {
      if (typeof node.value !== "string" || !node.value.includes("${")) return;
      const src = node.value;
      let missing: string | undefined;
      const out = src.replace(
        /\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}/g,
        (_m, name: string, def?: string) => {
          const v = env[name];
          if (v !== undefined && v !== "") return v;
          if (def !== undefined) return def;
          missing ??= name;
          return "";
        },
      );
      if (missing) {
        fail(node, `environment variable ${missing} is not set (use \${${missing}:-default} for a default)`);
        return;
      }
      // Quoted scalars stay strings; a plain one is read again as YAML.
      const whole = node.type === "PLAIN" && /^\$\{[^}]*\}$/.test(src);
      node.value = whole && out !== "" ? safeScalar(out) : out;
    },
  });
}

function safeScalar(s: string): unknown {
  try {
    const v = parseYaml(s);
    return v === null || typeof v === "object" ? s : v;
  } catch {
    return s;
  }
}

/** The YAML node at a path; with `key`, the key node of that entry. */
function nodeAt(root: unknown, segs: readonly Segment[], key?: string): Node | undefined {
  let node = root as Node | undefined;
  let keyNode: Node | undefined;
  const all = key === undefined ? segs : [...segs, key];
  for (const seg of all) {
    if (isMap(node)) {
      const pair = node.items.find((p) => isScalar(p.key) && String(p.key.value) === String(seg));
      if (!pair) return node;
      keyNode = pair.key as Node;
      node = (pair.value as Node) ?? keyNode;
    } else if (isSeq(node) && typeof seg === "number") {
      const item = node.items[seg] as Node | undefined;
      if (!item) return node;
      keyNode = item;
      node = item;
    } else return node;
  }
  return key !== undefined ? keyNode : node;
}

function hasPath(root: unknown, segs: readonly Segment[]): boolean {
  let node = root as Node | undefined;
  for (const seg of segs) {
    if (isMap(node)) {
      const pair = node.items.find((p) => isScalar(p.key) && String(p.key.value) === String(seg));
      if (!pair) return false;
      node = pair.value as Node;
    } else if (isSeq(node) && typeof seg === "number" && seg < node.items.length)
      node = node.items[seg] as Node;
    else return false;
  }
  return true;
}

function pathOf(root: unknown, target: Node): string {
  const segs: Segment[] = [];
  const walk = (node: unknown): boolean => {
    if (node === target) return true;
    if (isMap(node)) {
      for (const p of node.items) {
        if (!isPair(p)) continue;
        segs.push(String((p.key as { value?: unknown })?.value));
        if (walk(p.value)) return true;
        segs.pop();
      }
    } else if (isSeq(node)) {
      for (let i = 0; i < node.items.length; i++) {
        segs.push(i);
        if (walk(node.items[i])) return true;
        segs.pop();
      }
    }
    return false;
  };
  walk(root);
  return pathString(segs);
}

function pointerToSegments(ptr: string): Segment[] {
  if (ptr === "") return [];
  return ptr
    .slice(1)
    .split("/")
    .map((s) => s.replace(/~1/g, "/").replace(/~0/g, "~"))
    .map((s) => (/^[0-9]+$/.test(s) ? Number(s) : s));
}

export function didYouMean(word: string, candidates: readonly string[]): string {
  if (candidates.length === 0) return "";
  const best = closest(word, candidates as string[]);
  const d = distance(word.toLowerCase(), best.toLowerCase());
  return d <= Math.max(2, Math.floor(best.length / 3)) ? ` (did you mean '${best}'?)` : "";
}

function unknownKeyMessage(key: string, parentSchema: unknown): string {
  const props = Object.keys((parentSchema as { properties?: object })?.properties ?? {});
  const hint = didYouMean(key, props);
  return `unknown key '${key}'${hint || (props.length ? ` (allowed: ${props.join(", ")})` : "")}`;
}

const DURATION_RE = "^[0-9]+(\\.[0-9]+)?(ms|s|m|h)$";
const SIZE_RE = "^[0-9]+(b|kb|mb|gb)$";

function describeError(e: ErrorObject): string {
  const s = e.parentSchema as { description?: string; anyOf?: { const?: unknown }[] } | undefined;
  switch (e.keyword) {
    case "pattern": {
      const pattern = e.params.pattern as string;
      if (pattern === DURATION_RE) return `'${e.data}' is not a duration (use 250ms, 5s, 1m or 1h)`;
      if (pattern === SIZE_RE) return `'${e.data}' is not a size (use 512kb, 1mb)`;
      return `'${e.data}' is not valid: ${s?.description ?? `must match ${pattern}`}`;
    }
    case "anyOf": {
      const consts = s?.anyOf?.every((b) => b.const !== undefined)
        ? s.anyOf.map((b) => String(b.const))
        : undefined;
      if (consts) {
        const hint = typeof e.data === "string" ? didYouMean(e.data, consts) : "";
        return `'${String(e.data)}' is not one of ${consts.join(", ")}${hint}`;
      }
      return `must be ${s?.description ?? "one of the allowed forms"}`;
    }
    case "const":
      return `must be ${JSON.stringify(e.params.allowedValue)}`;
    case "type":
      return `must be ${e.params.type === "integer" ? "a whole number" : `a ${e.params.type}`}, got ${JSON.stringify(e.data)}`;
    default:
      return `${e.message ?? "is invalid"}${s?.description ? ` (${s.description})` : ""}`;
  }
}

/**
 * Ajv with allErrors reports every branch of a union. Keep the branch whose
 * type fits the data (its errors are the useful ones), else one anyOf line.
 */
function simplifyErrors(errors: ErrorObject[]): ErrorObject[] {
  const anyOfs = errors.filter((e) => e.keyword === "anyOf");
  let kept = errors;
  for (const a of anyOfs) {
    const branches = (a.parentSchema as { anyOf: { type?: string }[] }).anyOf;
    const dataType = Array.isArray(a.data) ? "array" : a.data === null ? "null" : typeof a.data;
    const fits = branches
      .map((b, i) => ({ b, i }))
      .filter(({ b }) => b.type === dataType || (b.type === "integer" && dataType === "number"));
    const inBranch = (e: ErrorObject, i?: number) =>
      e !== a &&
      e.instancePath.startsWith(a.instancePath) &&
      e.schemaPath.startsWith(`${a.schemaPath}/${i ?? ""}`);
    if (fits.length === 1 && (branches[fits[0].i] as { const?: unknown }).const === undefined) {
      const i = fits[0].i;
      kept = kept.filter((e) => e !== a && (!inBranch(e) || inBranch(e, i)));
    } else {
      kept = kept.filter((e) => !inBranch(e));
    }
  }
  // One line per (path, keyword, key): Ajv can repeat itself through unions.
  const seen = new Set<string>();
  return kept.filter((e) => {
    const k = `${e.instancePath}|${e.keyword}|${JSON.stringify(e.params)}`;
    if (seen.has(k)) return false;
    seen.add(k);
    return true;
  });
}

function deepFreeze<T>(o: T): T {
  if (o && typeof o === "object" && !Object.isFrozen(o)) {
    Object.freeze(o);
    for (const v of Object.values(o)) deepFreeze(v);
  }
  return o;
}
