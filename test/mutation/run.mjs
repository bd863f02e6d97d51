#!/usr/bin/env node
/**
 * npm run mutate [group …]: one Stryker run per module group of
 * stryker.config.mjs (all of them when none is named), one after the other,
 * then the score table of every group that has a report — the table that
 * docs/mutation.md keeps, with the date and commit it was measured at.
 *
 * Score = detected / (detected + undetected), as Stryker counts it:
 * detected = killed + timeout, undetected = survived + no coverage; mutants
 * the TypeScript checker rejected (compile errors) and ignored ones are left out.
 */
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { groups } from "../../stryker.config.mjs";

const asked = process.argv.slice(2);
for (const g of asked) {
  if (!(g in groups)) {
    console.error(`unknown group ${g}; groups: ${Object.keys(groups).join(", ")}`);
    process.exit(2);
  }
}
const names = asked.length > 0 ? asked : Object.keys(groups);
mkdirSync("reports/mutation", { recursive: true });

let failed = false;
for (const name of names) {
  console.log(`\n== stryker: ${name}`);
  const r = spawnSync("npx", ["stryker", "run"], {
    stdio: "inherit",
    env: { ...process.env, SY_MUTATE: name },
  });
  if (r.status !== 0) {
    console.error(`== stryker: ${name} failed (exit ${r.status})`);
    failed = true;
  }
}

/** Counts by status over every file of one JSON report (mutation-testing-report-schema). */
function tally(file) {
  const report = JSON.parse(readFileSync(file, "utf8"));
  const n = {};
  const survivors = [];
  for (const [path, f] of Object.entries(report.files)) {
    for (const m of f.mutants) {
      n[m.status] = (n[m.status] ?? 0) + 1;
      if (m.status === "Survived" || m.status === "NoCoverage")
        survivors.push(
          `${path}:${m.location.start.line} ${m.mutatorName} ${JSON.stringify(m.replacement ?? "")}`,
        );
    }
  }
  return { n, survivors };
}

const rows = [
  "| group | killed | timeout | survived | no coverage | compile errors | score |",
  "|---|---:|---:|---:|---:|---:|---:|",
];
const notes = [];
for (const name of Object.keys(groups)) {
  const file = `reports/mutation/${name}.json`;
  if (!existsSync(file)) continue;
  const { n, survivors } = tally(file);
  const detected = (n.Killed ?? 0) + (n.Timeout ?? 0);
  const undetected = (n.Survived ?? 0) + (n.NoCoverage ?? 0);
  const score = detected + undetected === 0 ? 100 : (100 * detected) / (detected + undetected);
  rows.push(
    `| ${name} | ${n.Killed ?? 0} | ${n.Timeout ?? 0} | ${n.Survived ?? 0} | ${n.NoCoverage ?? 0} | ${n.CompileError ?? 0} | ${score.toFixed(1)}% |`,
  );
  if (survivors.length > 0) notes.push(`\n${name}:\n${survivors.map((s) => `  ${s}`).join("\n")}`);
}
// SY_MUTATE_COMMIT names the commit when the run is made on an exported copy (no .git).
const commit =
  process.env.SY_MUTATE_COMMIT ??
  (spawnSync("git", ["rev-parse", "--short", "HEAD"], { encoding: "utf8" }).stdout?.trim() ||
    "(unknown commit)");
const table = `Measured ${new Date().toISOString().slice(0, 10)} at ${commit}\n\n${rows.join("\n")}\n`;
writeFileSync(
  "reports/mutation/scores.md",
  `${table}${notes.length ? `\nSurvivors:${notes.join("")}\n` : ""}`,
);
console.log(`\n${table}${notes.length ? `\nSurvivors:${notes.join("")}` : ""}`);
process.exit(failed ? 1 : 0);
