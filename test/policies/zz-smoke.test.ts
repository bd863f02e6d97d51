import assert from "node:assert/strict";
import { test } from "node:test";
import { backend, gateway, request } from "/work/main/test/helpers/index.js";

test("smoke", async () => {
  const b = await backend("b", (req, res) => { res.setHeader("etag", '"x1"'); res.end(`hello ${req.url}`); });
  const gw = await gateway(`
services:
  b: { targets: [${b.url}] }
routes:
  - name: r
    match: { path: / }
    service: b
    rateLimit: { max: 3, window: 1m }
    cache: { ttl: 10s }
`);
  try {
    for (let i = 0; i < 5; i++) {
      const r = await request(gw.url, { path: "/x" });
      console.log(r.status, r.headers, r.body);
    }
    const r = await request(gw.url, { path: "/x", method: "HEAD" });
    console.log(r.status, r.headers, r.body);
  } finally { await gw.close(); await b.close(); }
});
