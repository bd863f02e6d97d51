import assert from "node:assert/strict";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { startWorkers } from "../helpers/cli.js";
import { backend, request } from "../helpers/index.js";

test("--workers 2: two processes share one listener; SIGTERM stops them all with exit 0", async () => {
  const b = await backend("w");
  const dir = mkdtempSync(join(tmpdir(), "sy-workers-"));
  const file = join(dir, "routes.yaml");
  writeFileSync(
    file,
    `version: 1\nshutdownTimeout: 1s\nlisten: [{ port: 0, host: 127.0.0.1 }]\nservices: { s: { targets: [${b.url}] } }\nroutes: [{ name: r, service: s }]\n`,
  );
  // Three processes each compiling the sources through tsx: on a machine with both cores busy that
  // alone took over 30 s (issue 17's loaded runs), so the guard against a hung child is generous.
  const cli = startWorkers(file, { workers: 2, guardMs: 120_000 });
  try {
    const listening = await cli.listening(2); // pid → port
    const [p1, p2] = [...listening.values()];
    assert.equal(p1, p2, "both workers serve the same port (node:cluster)");
    const r = await request(`http://127.0.0.1:${p1}`, { path: "/x" });
    assert.equal(r.json().name, "w");
    const exited = cli.stop();
    assert.equal(await exited, 0);
  } finally {
    cli.kill();
    await b.close();
  }
});
