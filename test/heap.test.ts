/**
 * settleHeap (src/heap.ts, issue 11): one full collection after start-up and
 * after each reload, made by the CLI without --expose-gc.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { runInNewContext } from "node:vm";
import { settleHeap } from "../src/heap.js";

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
  const child = spawn(
    process.execPath,
    ["--import", "tsx", "src/cli.ts", "--config", file, "--log-level", "debug"],
    {
      stdio: ["ignore", "pipe", "pipe"],
    },
  );
  const guard = setTimeout(() => child.kill("SIGKILL"), 60_000);
  const msgs: string[] = [];
  const waiting: { re: RegExp; ok: () => void }[] = [];
  let buf = "";
  child.stdout.on("data", (c) => {
    buf += c;
    const lines = buf.split("\n");
    buf = lines.pop() ?? "";
    for (const l of lines) msgs.push(String((JSON.parse(l) as { msg: unknown }).msg));
    for (const w of [...waiting])
      if (msgs.some((m) => w.re.test(m))) waiting.splice(waiting.indexOf(w), 1) && w.ok();
  });
  child.stderr.resume();
  const exited = new Promise<number | null>((ok) => child.once("exit", ok));
  const seen = (re: RegExp) =>
    Promise.race([
      new Promise<void>((ok) => (msgs.some((m) => re.test(m)) ? ok() : waiting.push({ re, ok }))),
      exited.then((code) => assert.fail(`exited (${code}) before ${re}; log: ${msgs.join(" | ")}`)),
    ]);
  try {
    await seen(/^heap settled in \d+ ms$/);
    const listening = msgs.findIndex((m) => m.startsWith("L7 listening on"));
    const settled = msgs.findIndex((m) => m.startsWith("heap settled in"));
    assert.ok(listening >= 0 && listening < settled, "after the listeners are up");
    child.kill("SIGHUP");
    await seen(/^heap settled after reload in \d+ ms$/);
    child.kill("SIGTERM");
    assert.equal(await exited, 0);
  } finally {
    clearTimeout(guard);
    child.kill("SIGKILL");
  }
});
