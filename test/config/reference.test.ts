import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";
import { withReference } from "../../src/config/reference.js";

test("the README's routes.yaml reference is the one generated from the schema (npm run docs)", () => {
  const readme = readFileSync(new URL("../../README.md", import.meta.url), "utf8");
  assert.equal(readme, withReference(readme));
});

test("schema/routes.schema.json is the current schema (npm run build)", async () => {
  const { editorSchema } = await import("../../src/config/schema.js");
  const onDisk = JSON.parse(
    readFileSync(new URL("../../schema/routes.schema.json", import.meta.url), "utf8"),
  );
  assert.deepEqual(onDisk, JSON.parse(JSON.stringify(editorSchema())));
});
