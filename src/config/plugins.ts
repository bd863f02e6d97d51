/**
 * Routes' own Fastify plugins (SPEC §2 `routes[].plugins`, §7; issue 13):
 * imported and checked at load — `--check`, start and every reload — so a
 * missing module, a default export that is not a function or options the
 * plugin's exported JSON Schema refuses are config errors with file:line:col,
 * never a surprise at the first request.
 *
 * Importing is async and the config loader is not, so this is the one async
 * step after `loadConfigFile`: `loadPlugins(config)` (memoised per config
 * object, so build() and the CLI may both ask). The result hangs off the
 * frozen config, never mixed into it.
 *
 * Reload imports a changed file anew: ESM caches a module by URL for the
 * process's life, so the URL carries a hash of the file's bytes. An unchanged
 * file keeps its module (no leak per reload), an edited one is a new module,
 * and the previous generation keeps serving its in-flight requests with the
 * functions it registered. Only the file named in `use` is cache-busted: what
 * it imports itself is cached as usual, and a package is loaded once.
 */
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { isAbsolute, join, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import type { Ajv } from "ajv";
import type { FastifyPluginAsync, FastifyPluginCallback } from "fastify";
import {
  ConfigError,
  configAjv,
  type Problem,
  pathString,
  reportSchemaErrors,
  type Segment,
  sourceOf,
} from "./load.js";
import type { Config } from "./schema.js";

/** One route's plugin, ready to register: its function and its checked (defaulted) options. */
export interface LoadedPlugin {
  /** What `use` said, for logs and errors. */
  readonly name: string;
  readonly plugin:
    | FastifyPluginAsync<Record<string, unknown>>
    | FastifyPluginCallback<Record<string, unknown>>;
  readonly options: Record<string, unknown>;
  /** Where it is declared, e.g. routes[2].plugins[0]. */
  readonly at: readonly Segment[];
}

/** Route index → its plugins, in file order. */
export type RoutePlugins = ReadonlyMap<number, readonly LoadedPlugin[]>;

const loaded = new WeakMap<Config, Promise<RoutePlugins>>();
// Options schemas are compiled once per module (a module object is stable for its URL).
const validators = new WeakMap<object, ReturnType<Ajv["compile"]>>();
const ajv = configAjv();

/** Every route's plugins, imported and checked; rejects with a ConfigError listing every problem. */
export function loadPlugins(config: Config, baseDir?: string): Promise<RoutePlugins> {
  let p = loaded.get(config);
  if (p === undefined) {
    p = importAll(config, baseDir);
    loaded.set(config, p);
  }
  return p;
}

/** The plugins of a config already loaded (build() awaited loadPlugins first). */
export function pluginsOf(config: Config): Promise<RoutePlugins> | undefined {
  return loaded.get(config);
}

async function importAll(config: Config, baseDir?: string): Promise<RoutePlugins> {
  const src = sourceOf(config);
  const dir = src?.baseDir ?? baseDir ?? process.cwd();
  const out = new Map<number, LoadedPlugin[]>();
  const problems: Problem[] = [];
  const report = (segs: readonly Segment[], message: string, key?: string) => {
    const pos = src?.locate(segs, key) ?? { line: 0, col: 0 };
    const path = [...segs, ...(key === undefined ? [] : [key])];
    problems.push({ ...pos, path: pathString(path), message });
  };
  await Promise.all(
    config.routes.map(async (route, i) => {
      const list = route.plugins ?? [];
      if (list.length === 0) return;
      const plugins = await Promise.all(
        list.map((p, j) => loadOne(p.use, p.options ?? {}, ["routes", i, "plugins", j], dir, report)),
      );
      out.set(
        i,
        plugins.filter((p) => p !== undefined),
      );
    }),
  );
  if (problems.length) {
    problems.sort((a, b) => a.line - b.line || a.col - b.col);
    throw new ConfigError(src?.shown ?? "routes.yaml", problems);
  }
  return out;
}

async function loadOne(
  use: string,
  options: Readonly<Record<string, unknown>>,
  at: Segment[],
  dir: string,
  report: (segs: readonly Segment[], message: string, key?: string) => void,
): Promise<LoadedPlugin | undefined> {
  let mod: Record<string, unknown>;
  try {
    mod = (await import(moduleUrl(use, dir))) as Record<string, unknown>;
  } catch (err) {
    report([...at, "use"], importFailure(use, err as NodeJS.ErrnoException));
    return undefined;
  }
  // A CommonJS module's `module.exports = fn` arrives as the default export too.
  const plugin = mod.default;
  if (typeof plugin !== "function") {
    const got = plugin === undefined ? "no default export" : `a default export of type ${typeof plugin}`;
    report([...at, "use"], `'${use}' has ${got}; it must export a Fastify plugin (async (app, opts) => …)`);
    return undefined;
  }
  // Ajv's defaults are written into a copy: the loaded config stays frozen.
  const opts = structuredClone(options) as Record<string, unknown>;
  if (mod.schema !== undefined) {
    const validate = validatorOf(mod, use, at, report);
    if (validate === undefined) return undefined;
    if (!validate(opts)) {
      reportSchemaErrors(validate.errors ?? [], report, [...at, "options"]);
      return undefined;
    }
  }
  return { name: use, plugin: plugin as LoadedPlugin["plugin"], options: opts, at };
}

function validatorOf(
  mod: Record<string, unknown>,
  use: string,
  at: Segment[],
  report: (segs: readonly Segment[], message: string, key?: string) => void,
): ReturnType<Ajv["compile"]> | undefined {
  let v = validators.get(mod);
  if (v !== undefined) return v;
  try {
    v = ajv.compile(mod.schema as object);
  } catch (err) {
    report(
      [...at, "use"],
      `'${use}' exports a schema that is not valid JSON Schema: ${(err as Error).message}`,
    );
    return undefined;
  }
  validators.set(mod, v);
  return v;
}

/** A file (relative to routes.yaml) by a URL that changes when its bytes do; a package by its resolution. */
function moduleUrl(use: string, dir: string): string {
  if (use.startsWith(".") || isAbsolute(use)) {
    const file = resolve(dir, use);
    // ENOENT surfaces here as the "cannot find" problem.
    const hash = createHash("sha256").update(readFileSync(file)).digest("hex").slice(0, 16);
    return `${pathToFileURL(file).href}?v=${hash}`;
  }
  // Bare names resolve from the directory of routes.yaml, not from the gateway's own node_modules.
  return pathToFileURL(createRequire(join(dir, "routes.yaml")).resolve(use)).href;
}

function importFailure(use: string, err: NodeJS.ErrnoException): string {
  // The file itself (read for its hash) or the package (resolved): what the user named is missing.
  if (err.code === "ENOENT" || err.code === "MODULE_NOT_FOUND") return `cannot find module '${use}'`;
  if (err.code === "ERR_UNKNOWN_FILE_EXTENSION")
    return `cannot import '${use}': a .ts plugin needs the gateway to run under a TypeScript loader (node --import tsx), else compile it to .js`;
  return `cannot import '${use}': ${err.message.split("\n")[0]}`;
}
