/** The package version, read once from package.json (one level up in src/, two in dist/src/). */
import { existsSync, readFileSync } from "node:fs";

function read(): string {
  for (const rel of ["../package.json", "../../package.json"]) {
    const url = new URL(rel, import.meta.url);
    if (existsSync(url)) return (JSON.parse(readFileSync(url, "utf8")) as { version: string }).version;
  }
  return "0.0.0";
}

export const VERSION = read();
