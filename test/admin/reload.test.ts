/**
 * Reload from the file, in-process: by /admin/reload and by `watch: true`.
 * A changed route, a new route, an invalid file (refused, the old config
 * keeps serving) and a removed TCP listener (its open connection drains).
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { backend, deadPort, request } from "../helpers/index.js";
import { ask, dial, echoServer } from "../l4/helpers.js";
import { runtime } from "./helpers.js";

async function eventually(cond: () => Promise<boolean>, ms = 5000, what = "condition"): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    assert.ok(Date.now() < end, `${what} not met within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

test("/admin/reload: changed and new routes apply; an invalid file is refused with its reason and the old config keeps serving", async (t) => {
  const [a, b] = [await backend("a"), await backend("b")];
  t.after(() => Promise.all([a.close(), b.close()]));
  const g = await runtime(`services: { s: { targets: [${a.url}] } }\nroutes: [{ name: r, service: s }]\n`);
  t.after(() => g.close());
  assert.equal((await request(g.url, { path: "/x" })).json().name, "a");

  g.write(`services: { s: { targets: [${b.url}] }, t: { targets: [${a.url}] } }
routes: [{ name: new, match: { path: /new }, service: t }, { name: r, service: s }]
`);
  const ok = await g.ask("/admin/reload", { method: "POST" });
  assert.equal(ok.status, 200);
  const body = ok.json<{ result: string; generation: number; at: string }>();
  assert.deepEqual([body.result, body.generation], ["success", 2]);
  assert.ok(Date.now() - Date.parse(body.at) < 5000);
  assert.equal((await request(g.url, { path: "/x" })).json().name, "b");
  assert.equal((await request(g.url, { path: "/new/1" })).json().name, "a");

  g.write(`services: { s: { targets: [${a.url}] } }\nroutes: [{ name: r, service: nope }]\n`);
  const bad = await g.ask("/admin/reload", { method: "POST" });
  assert.equal(bad.status, 422);
  assert.equal(bad.json().result, "failure");
  assert.equal(bad.json().generation, 2);
  assert.match(
    bad.json<{ error: string }>().error,
    /routes\.yaml:\d+:\d+ routes\[0\]\.service: unknown service 'nope'/,
  );
  assert.equal((await request(g.url, { path: "/x" })).json().name, "b", "the running config stays");
  const stats = (await g.ask("/admin/stats")).json<{ generation: number; lastReload: { result: string } }>();
  assert.equal(stats.generation, 2);
  assert.equal(stats.lastReload.result, "failure");
});

test("watch: true reloads on change (changed route, new route), refuses an invalid file, drains a removed TCP listener", async (t) => {
  const [a, b] = [await backend("a"), await backend("b")];
  t.after(() => Promise.all([a.close(), b.close()]));
  const echo = await echoServer(t);
  const tcpPort = await deadPort();
  const tcp = `tcp: [{ name: db, listen: { port: ${tcpPort}, host: 127.0.0.1 }, service: db }]\n`;
  const base = (target: string, extra = { services: "", routes: "" }) => `watch: true
services: { s: { targets: [${target}] }, ${extra.services}db: { targets: [tcp://127.0.0.1:${echo.port}] } }
routes: [${extra.routes}{ name: r, service: s }]
`;
  const g = await runtime(base(a.url) + tcp);
  t.after(() => g.close());
  const name = async (path = "/x") => (await request(g.url, { path })).json().name;
  assert.equal(await name(), "a");
  const open = await dial(tcpPort);
  assert.equal(await ask(open, "before"), "before");

  g.write(
    base(b.url, {
      services: `t: { targets: [${a.url}] }, `,
      routes: "{ name: n, match: { path: /n }, service: t }, ",
    }) + tcp,
  );
  await eventually(async () => (await name()) === "b", 5000, "watch reload of a changed route");
  assert.equal(await name("/n"), "a", "the new route serves");

  g.write("routes: [ {{{ not yaml\n");
  await eventually(async () => g.rt.lastReload?.result === "failure", 5000, "the invalid file to be seen");
  assert.match(g.rt.lastReload?.error ?? "", /routes\.yaml:\d+:\d+/);
  assert.equal(await name(), "b", "the old config keeps serving");

  // Removing the TCP listener: new connections are refused, the open one keeps flowing until it ends.
  g.write(base(b.url));
  await eventually(
    async () => g.rt.lastReload?.result === "success" && g.rt.lastReload.generation === 3,
    5000,
    "reload without tcp",
  );
  await assert.rejects(dial(tcpPort), "the removed listener accepts no new connection");
  assert.equal(await ask(open, "after"), "after", "the open connection drains");
  open.destroy();
});
