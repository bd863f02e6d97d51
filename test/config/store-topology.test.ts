/** store.cluster / store.sentinels / store.name at load (issue 14): one kind of Redis, each URL a host:port. */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { ConfigError, parseConfig } from "../../src/config/load.js";

const problems = (yaml: string) => {
  try {
    parseConfig(`version: 1\n${yaml}`);
  } catch (err) {
    assert.ok(err instanceof ConfigError);
    return err.message.split("\n");
  }
  assert.fail("expected the config to be refused");
};

describe("store topology settings", () => {
  test("cluster and sentinels with name load", () => {
    const c = parseConfig(
      "version: 1\nstore: { type: redis, cluster: [redis://10.0.0.1:7000, redis://10.0.0.2:7000] }\n",
    );
    assert.deepEqual(c.store?.cluster, ["redis://10.0.0.1:7000", "redis://10.0.0.2:7000"]);
    const s = parseConfig(
      "version: 1\nstore: { type: redis, sentinels: [redis://:pw@10.0.0.5:26379], name: mymaster }\n",
    );
    assert.equal(s.store?.name, "mymaster");
  });

  test("sentinels without name, two kinds at once, a URL without a port, keys without type redis", () => {
    assert.deepEqual(problems("store:\n  type: redis\n  sentinels: [redis://10.0.0.5:26379]\n"), [
      "routes.yaml:4:3 store.sentinels: store.sentinels needs the master's name (name: mymaster)",
    ]);
    assert.deepEqual(
      problems("store:\n  type: redis\n  url: redis://127.0.0.1:6379\n  cluster: [redis://10.0.0.1:7000]\n"),
      ["routes.yaml:5:12 store.cluster: give one of store.url, store.cluster or store.sentinels"],
    );
    assert.deepEqual(problems("store:\n  type: redis\n  cluster: [redis://10.0.0.1]\n"), [
      "routes.yaml:4:13 store.cluster[0]: 'redis://10.0.0.1' must be redis://host:port (or rediss://)",
    ]);
    assert.deepEqual(problems("store:\n  name: mymaster\n"), [
      "routes.yaml:3:9 store.name: store.name needs type: redis",
    ]);
  });
});
