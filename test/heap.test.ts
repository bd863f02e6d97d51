/**
 * settleHeap (src/heap.ts, issue 11): one full collection after start-up and
 * after each reload, made by the CLI without --expose-gc.
 */
import assert from "node:assert/strict";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { runInNewContext } from "node:vm";
import { settleHeap } from "../src/heap.js";
import { startWorkers } from "./helpers/cli.js";

test("settleHeap collects the whole heap and leaves no global gc behind", async () => {
  const ref = (() => new WeakRef({ garbage: new Array(1000).fill(1) }))();
  // A WeakRef's target is kept until the job that made it ends.
  await new Promise((r) => setImmediate(r));
  assert.notEqual(ref.deref(), undefined, "no collection has happened yet");
  await new Promise((r) => setImmediate(r)); // deref() kept it for one more job
  const ms = settleHeap();
  assert.equal(ref.deref(), undefined, "the unreachable object was collected");
  assert.ok(ms >= 0 && ms < 10_000, `took ${ms} ms`);
  assert.equal((globalThis as { gc?: unknown }).gc, undefined, "plugins see no global gc");
  assert.equal(runInNewContext("typeof gc"), "undefined", "nor do contexts made after it");
  settleHeap(); // a second call reuses the same collector
});

test("the CLI settles the heap once it listens and after each reload", async () => {
  const dir = mkdtempSync(join(tmpdir(), "sy-heap-"));
  const file = join(dir, "routes.yaml");
  writeFileSync(file, "version: 1\nlisten: [{ port: 0, host: 127.0.0.1 }]\nroutes: []\n");
  // --workers 1 is the single-process path (no cluster primary).
  const cli = startWorkers(file, { workers: 1, guardMs: 60_000, args: ["--log-level", "debug"] });
  try {
    await cli.logged(/^heap settled in \d+ ms$/);
    const msgs = cli.lines.map((j) => String(j.msg));
    const listening = msgs.findIndex((m) => m.startsWith("L7 listening on"));
    const settled = msgs.findIndex((m) => m.startsWith("heap settled in"));
    assert.ok(listening >= 0 && listening < settled, "after the listeners are up");
    cli.child.kill("SIGHUP");
    await cli.logged(/^heap settled after reload in \d+ ms$/);
    assert.equal(await cli.stop(), 0);
  } finally {
    cli.kill();
  }
});
