/**
 * Issue 15: supply chain, read from the committed package-lock.json. What
 * ships (every package that is not dev-only) runs no install script, is a
 * registry package pinned by an sha512 integrity hash (no git URL, no local
 * link), and the lockfile is in step with package.json. `npm audit --omit=dev`
 * is the other half; SECURITY.md says how it is run.
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";

const root = join(import.meta.dirname, "..", "..");
const pkg = JSON.parse(readFileSync(join(root, "package.json"), "utf8"));
const lock = JSON.parse(readFileSync(join(root, "package-lock.json"), "utf8"));

interface Locked {
  version?: string;
  resolved?: string;
  integrity?: string;
  dev?: boolean;
  devOptional?: boolean;
  hasInstallScript?: boolean;
  link?: boolean;
}
const packages = Object.entries(lock.packages as Record<string, Locked>).filter(([path]) => path !== "");
// devOptional: dev in one place and optional elsewhere; still not shipped unless optional for production.
const shipped = packages.filter(([, p]) => !p.dev && !p.devOptional);

test("the lockfile is version 3 and in step with package.json", () => {
  assert.equal(lock.lockfileVersion, 3);
  const top = lock.packages[""];
  assert.deepEqual(top.dependencies ?? {}, pkg.dependencies ?? {});
  assert.deepEqual(top.devDependencies ?? {}, pkg.devDependencies ?? {});
  for (const name of Object.keys(pkg.dependencies))
    assert.ok(lock.packages[`node_modules/${name}`], `${name} not locked`);
});

test("no production dependency runs an install script", () => {
  assert.ok(
    shipped.length > 20,
    `only ${shipped.length} production packages found: is the lockfile read right?`,
  );
  const scripted = shipped.filter(([, p]) => p.hasInstallScript).map(([path]) => path);
  assert.deepEqual(scripted, [], `install scripts in production dependencies: ${scripted.join(", ")}`);
});

// The lockfile is written without `resolved` URLs (npm then fetches from the configured
// registry); where one is present it must be a tarball over https, never git or a file.
test("every production dependency is a registry package pinned by an sha512 integrity hash", () => {
  const loose = shipped
    .filter(
      ([, p]) =>
        p.link ||
        (p.resolved !== undefined && !/^https:\/\/[^/]+\/.+\.tgz$/.test(p.resolved)) ||
        !/^sha512-/.test(p.integrity ?? ""),
    )
    .map(([path, p]) => `${path} (${p.resolved ?? p.integrity ?? "no integrity"})`);
  assert.deepEqual(loose, []);
});
