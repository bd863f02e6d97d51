/**
 * A request undici refuses to build (here: a Host rewrite with a control
 * character) never reached a target: it is answered 400 SY_BAD_REQUEST, it
 * is not retried on another target, and it does not count against the target
 * (outlier detection would otherwise eject healthy targets for it).
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { backend, gateway, request } from "../helpers/index.js";

test("an undici argument error is 400 and not the target's failure", async (t) => {
  const [a, b] = [await backend("a"), await backend("b")];
  t.after(() => Promise.all([a.close(), b.close()]));
  const g = await gateway(`
services:
  s:
    targets: [${a.url}, ${b.url}]
    outlierDetection: { consecutiveFailures: 1, ejectionTime: 1m }
routes:
  - { name: bad, match: { path: /bad }, service: s, rewrite: { host: "bad\\x01host" } }
  - { name: ok, service: s }
`);
  t.after(() => g.close());
  for (const extra of [{}, { "content-length": "0" }]) {
    const r = await request(g.url, { path: "/bad", headers: extra });
    assert.equal(r.status, 400);
    assert.equal(r.json().code, "SY_BAD_REQUEST");
  }
  assert.equal(a.hits + b.hits, 0, "nothing was sent");
  const targets = g.gw.generation.services.get("s")!.targets;
  assert.deepEqual(
    targets.map((x) => [x.failures, x.ejected(), x.inFlight]),
    [
      [0, false, 0],
      [0, false, 0],
    ],
  );
  assert.equal((await request(g.url, { path: "/x" })).status, 200);
});
