/**
 * trustProxy as a list of CIDRs (SPEC §2, §6): X-Forwarded-For is believed
 * only from a peer inside the list. Two client addresses on loopback
 * (127.0.0.1 inside the list, 127.0.0.2 outside it) talk to one gateway, so a
 * test tells "trusted because listed" from "trusted because a list is set";
 * what the upstream receives and how the ip rate limit counts both show it.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { type Backend, backend, gateway, type Running, request } from "../helpers/index.js";

describe("trustProxy: a list of CIDRs", () => {
  let echo: Backend;
  let listed: Running;
  let elsewhere: Running;
  const routes = () => `
services:
  echo: { targets: [${echo.url}] }
routes:
  - { name: limited, match: { path: /limited }, service: echo, rateLimit: { max: 1, window: 1m, by: ip } }
  - { name: echo, match: { path: / }, service: echo }
`;
  before(async () => {
    echo = await backend("echo");
    listed = await gateway(`trustProxy: ["127.0.0.1/32", "10.0.0.0/8"]\n${routes()}`);
    elsewhere = await gateway(`trustProxy: ["192.0.2.0/24"]\n${routes()}`);
  });
  after(async () => {
    await listed.close();
    await elsewhere.close();
    await echo.close();
  });

  /** The X-Forwarded-For the upstream received for a request from `localAddress`. */
  async function forwardedFor(g: Running, localAddress: string, xff?: string): Promise<string> {
    const r = await request(g.url, {
      path: "/xff",
      localAddress,
      headers: xff === undefined ? {} : { "x-forwarded-for": xff },
    });
    assert.equal(r.status, 200, r.body);
    return (r.json().headers as Record<string, string>)["x-forwarded-for"];
  }

  test("X-Forwarded-For from a listed peer is appended to; from any other peer it is replaced", async () => {
    assert.equal(await forwardedFor(listed, "127.0.0.1", "203.0.113.7"), "203.0.113.7, 127.0.0.1");
    assert.equal(
      await forwardedFor(listed, "127.0.0.2", "203.0.113.7"),
      "127.0.0.2",
      "127.0.0.2 is not listed",
    );
    assert.equal(await forwardedFor(listed, "127.0.0.2"), "127.0.0.2");
    assert.equal(
      await forwardedFor(elsewhere, "127.0.0.1", "203.0.113.7"),
      "127.0.0.1",
      "a list that does not hold the peer is not trust",
    );
  });

  /** Statuses of requests to the ip-limited route (max 1) from one peer, each with its own XFF. */
  async function limited(g: Running, localAddress: string, xffs: string[]): Promise<number[]> {
    const out: number[] = [];
    for (const xff of xffs)
      out.push(
        (await request(g.url, { path: "/limited", localAddress, headers: { "x-forwarded-for": xff } }))
          .status,
      );
    return out;
  }

  test("the ip rate limit: an unlisted peer cannot pick its bucket with X-Forwarded-For", async () => {
    assert.deepEqual(
      await limited(listed, "127.0.0.2", ["198.51.100.1", "198.51.100.2", "198.51.100.3"]),
      [200, 429, 429],
      "127.0.0.2 is one client, whatever it claims",
    );
    assert.deepEqual(
      await limited(elsewhere, "127.0.0.1", ["198.51.100.1", "198.51.100.2"]),
      [200, 429],
      "a list without the peer: one client",
    );
    // Control: behind a listed proxy, the clients it names are distinct clients.
    assert.deepEqual(await limited(listed, "127.0.0.1", ["198.51.100.1", "198.51.100.2"]), [200, 200]);
  });

  test("the client is the first address from the right that is not listed: no spoofing through a trusted proxy", async () => {
    // 127.0.0.1 (listed) says it got the request from 203.0.113.50 (not listed), which claims to relay
    // for someone else: that claim comes from an untrusted hop and is not believed.
    assert.deepEqual(
      await limited(listed, "127.0.0.1", ["198.51.100.10, 203.0.113.50", "198.51.100.11, 203.0.113.50"]),
      [200, 429],
    );
    // Through two listed hops (127.0.0.1, then 10.1.1.1), the address before them is the client.
    assert.deepEqual(
      await limited(listed, "127.0.0.1", ["198.51.100.20, 10.1.1.1", "198.51.100.21, 10.1.1.1"]),
      [200, 200],
    );
  });
});
