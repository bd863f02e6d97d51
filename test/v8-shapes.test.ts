/**
 * Two start-up hazards to V8's hidden classes that cost every request later
 * (issue 11; why in src/tick-shape.ts and src/config/load.ts). Each check runs
 * in a child with --allow-natives-syntax, and each has a control showing that,
 * on this Node, the hazard is real without the mend.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { closeSync, mkdtempSync, openSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { pathToFileURL } from "node:url";

const src = (f: string) => JSON.stringify(pathToFileURL(`${process.cwd()}/src/${f}`).href);

/** The test runner's own context variable would make the child a test process. */
const { NODE_TEST_CONTEXT: _, ...env } = process.env;

function run(script: string): string {
  // V8 prints to the C stdout; through a pipe, the tail of a long print was lost at exit (seen
  // under the test runner), so the child writes to a file.
  const file = join(mkdtempSync(join(tmpdir(), "sy-v8-")), "out.txt");
  const fd = openSync(file, "w");
  try {
    const r = spawnSync(
      process.execPath,
      ["--allow-natives-syntax", "--expose-gc", "--import", "tsx", "--input-type=module", "-e", script],
      { encoding: "utf8", timeout: 60_000, env, stdio: ["ignore", fd, "pipe"] },
    );
    assert.equal(r.status, 0, r.stderr);
  } finally {
    closeSync(fd);
  }
  return readFileSync(file, "utf8");
}

/**
 * Full GCs while no tick is queued (as at start-up), then the
 * IC states of nextTick's property definitions, from V8's own debug print.
 */
function tickStates(setup: string): string[] {
  const out = run(`${setup}
const tick = () => new Promise((r) => process.nextTick(r));
for (let i = 0; i < 2000; i++) await tick(); // enough calls for V8 to give nextTick its feedback
for (let i = 0; i < 8; i++) { globalThis.gc(); for (let j = 0; j < 3; j++) await tick(); }
new Function("f", "%DebugPrint(f)")(process.nextTick);`);
  return [...out.matchAll(/DefineKeyedOwnPropertyInLiteral (\w+)/g)].map((m) => m[1]);
}

test("control: without a pinned entry, full GCs send nextTick's property definitions megamorphic", () => {
  const states = tickStates("");
  assert.ok(states.length >= 3, `V8 printed no such slots: ${states}`);
  assert.ok(states.includes("MEGAMORPHIC"), `expected the hazard on this Node: ${states}`);
});

test("with the library entry loaded, nextTick's entries keep one shape through full GCs", () => {
  // src/index.ts imports tick-shape first, as src/cli.ts does; it also compiles the config schema.
  const states = tickStates(`await import(${src("index.ts")});`);
  assert.ok(states.length >= 3, `V8 printed no such slots: ${states}`);
  assert.deepEqual(new Set(states), new Set(["MONOMORPHIC"]), String(states));
});

/** Two objects given the same new property on `{}` share a map unless V8's root map is out of transitions. */
const sameShape = `const k = "fresh_" + process.pid;
const a = {}; a[k] = 1; const b = {}; b[k] = 1;
console.log(new Function("a", "b", "return %HaveSameMap(a, b)")(a, b));`;

test("control: Ajv's name optimiser, compiling the config schema, fills the root map's transitions", () => {
  const out = run(`const { Ajv } = await import("ajv");
const { ConfigSchema } = await import(${src("config/schema.ts")});
new Ajv({ allErrors: true, useDefaults: true, strict: false, verbose: true }).compile(ConfigSchema);
${sameShape}`);
  assert.equal(out.trim(), "false");
});

test("loading the config validator leaves new object shapes shared", () => {
  // Checked right after the compile: a full GC later would clear the dead transitions and hide
  // the harm. plugins.ts compiles user plugins' options with the same configAjv().
  const out = run(`await import(${src("config/load.ts")});
${sameShape}`);
  assert.equal(out.trim(), "true");
});
