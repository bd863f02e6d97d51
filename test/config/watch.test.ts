/**
 * `watch: true` (src/watch.ts): the ways a config file really changes —
 * written in place, renamed over (editors), a ConfigMap's `..data` symlink
 * swapped — each call back once; a write of the same bytes, and a burst of
 * writes beyond the first call, do not. Tests wait on each debounced look at
 * the file (onCheck), never on time.
 */
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, renameSync, rmSync, symlinkSync, unlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { watchConfig } from "../../src/watch.js";

const WAIT = 5000;

/** A watch on `file` that counts calls and hands out its checks (changed or not) in order. */
function follow(file: string, debounceMs = 50) {
  let fired = 0;
  const checks: boolean[] = [];
  const waiting: ((changed: boolean) => void)[] = [];
  const w = watchConfig(
    file,
    () => {
      fired++;
    },
    {
      debounceMs,
      onCheck(changed) {
        const next = waiting.shift();
        if (next) next(changed);
        else checks.push(changed);
      },
    },
  );
  return {
    get fired() {
      return fired;
    },
    /** The next look at the file; fails after WAIT (the timer also keeps the test's event loop up). */
    check(): Promise<boolean> {
      if (checks.length > 0) return Promise.resolve(checks.shift()!);
      return new Promise((ok, fail) => {
        const timer = setTimeout(() => fail(new Error(`no check within ${WAIT} ms`)), WAIT);
        waiting.push((changed) => {
          clearTimeout(timer);
          ok(changed);
        });
      });
    },
    close: () => w.close(),
  };
}

function scratch(t: { after(fn: () => void): void }): string {
  const dir = mkdtempSync(join(tmpdir(), "sy-watch-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

test("a write in place calls back once", async (t) => {
  const file = join(scratch(t), "routes.yaml");
  writeFileSync(file, "version: 1\n");
  const w = follow(file);
  t.after(w.close);
  writeFileSync(file, "version: 1\nwatch: true\n");
  assert.equal(await w.check(), true);
  assert.equal(w.fired, 1);
});

test("an editor's save (write a temporary file, rename it over) calls back once", async (t) => {
  const dir = scratch(t);
  const file = join(dir, "routes.yaml");
  writeFileSync(file, "a: 1\n");
  const w = follow(file);
  t.after(w.close);
  writeFileSync(join(dir, ".routes.yaml.swp"), "a: 2\n");
  renameSync(join(dir, ".routes.yaml.swp"), file);
  assert.equal(await w.check(), true);
  assert.equal(w.fired, 1);
  // The watch survived its file being replaced: the next save is seen too.
  writeFileSync(join(dir, ".routes.yaml.swp"), "a: 3\n");
  renameSync(join(dir, ".routes.yaml.swp"), file);
  assert.equal(await w.check(), true);
  assert.equal(w.fired, 2);
});

test("a ConfigMap update (..data swapped to a new directory) calls back once", async (t) => {
  const dir = scratch(t);
  // What the kubelet lays out: routes.yaml → ..data/routes.yaml, ..data → ..<timestamp>.
  mkdirSync(join(dir, "..2026_01"));
  writeFileSync(join(dir, "..2026_01", "routes.yaml"), "v: 1\n");
  symlinkSync("..2026_01", join(dir, "..data"));
  symlinkSync("..data/routes.yaml", join(dir, "routes.yaml"));
  const w = follow(join(dir, "routes.yaml"));
  t.after(w.close);
  // ...and how it updates: a new directory, a new link renamed over ..data, the old directory removed.
  mkdirSync(join(dir, "..2026_02"));
  writeFileSync(join(dir, "..2026_02", "routes.yaml"), "v: 2\n");
  symlinkSync("..2026_02", join(dir, "..data_tmp"));
  renameSync(join(dir, "..data_tmp"), join(dir, "..data"));
  rmSync(join(dir, "..2026_01"), { recursive: true });
  assert.equal(await w.check(), true);
  assert.equal(w.fired, 1);
});

test("the same bytes written again call nothing", async (t) => {
  const file = join(scratch(t), "routes.yaml");
  writeFileSync(file, "same\n");
  const w = follow(file);
  t.after(w.close);
  writeFileSync(file, "same\n");
  assert.equal(await w.check(), false);
  assert.equal(w.fired, 0);
});

test("deleted, then re-created with new content: one call, for the new content", async (t) => {
  const file = join(scratch(t), "routes.yaml");
  writeFileSync(file, "old\n");
  const w = follow(file);
  t.after(w.close);
  unlinkSync(file);
  assert.equal(await w.check(), false, "a missing file is no change to act on");
  writeFileSync(file, "new\n");
  assert.equal(await w.check(), true);
  assert.equal(w.fired, 1);
});

test("a burst of writes within the debounce is one look and one call", async (t) => {
  const file = join(scratch(t), "routes.yaml");
  writeFileSync(file, "0\n");
  const w = follow(file, 100);
  t.after(w.close);
  for (let i = 1; i <= 5; i++) writeFileSync(file, `${i}\n`);
  assert.equal(await w.check(), true);
  assert.equal(w.fired, 1);
  // Had the burst made a second look, it would come next (and see nothing new).
  writeFileSync(file, "6\n");
  assert.equal(await w.check(), true);
  assert.equal(w.fired, 2);
});

test("close() stops watching", async (t) => {
  const file = join(scratch(t), "routes.yaml");
  writeFileSync(file, "a\n");
  const closed = follow(file, 20);
  closed.close();
  // A second watch with a longer debounce is the clock: when it has looked, the first would have.
  const clock = follow(file, 150);
  t.after(clock.close);
  writeFileSync(file, "b\n");
  assert.equal(await clock.check(), true);
  assert.equal(closed.fired, 0);
});
