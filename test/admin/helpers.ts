/**
 * A Runtime (gateway + admin listener + reload) started in-process from a
 * routes.yaml written to a fresh temp dir, as the CLI would start it.
 */
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pino from "pino";
import { Runtime } from "../../src/runtime.js";
import { type Reply, request } from "../helpers/index.js";

export interface RunningRuntime {
  rt: Runtime;
  dir: string;
  file: string;
  /** Base URL of the admin listener. */
  admin: string;
  /** Base URL of the first L7 listener. */
  url: string;
  /** Rewrite routes.yaml (the header of `start` is kept). */
  write(yaml: string): void;
  /** A request to the admin listener, with the token when one is given. */
  ask(path: string, opts?: { method?: string; token?: string; body?: unknown }): Promise<Reply>;
  close(): Promise<void>;
}

const HEAD = "version: 1\nshutdownTimeout: 1s\n";

/** `yaml` without `admin:` gets one on 127.0.0.1:0, and one L7 listener on 127.0.0.1:0 without `listen:`. */
export async function runtime(yaml: string, opts: { logger?: pino.Logger } = {}): Promise<RunningRuntime> {
  const dir = mkdtempSync(join(tmpdir(), "sy-admin-"));
  const file = join(dir, "routes.yaml");
  const full = (y: string) => {
    let text = /^listen:/m.test(y) ? y : `listen: [{ port: 0, host: 127.0.0.1 }]\n${y}`;
    if (!/^admin:/m.test(text)) text = `admin: { port: 0, host: 127.0.0.1 }\n${text}`;
    return HEAD + text;
  };
  writeFileSync(file, full(yaml));
  const rt = await Runtime.start({ file, logger: opts.logger ?? pino({ level: "silent" }) });
  const a = rt.adminAddress!;
  const admin = `http://127.0.0.1:${a.port}`;
  const l7 = rt.gateway.addresses[0];
  return {
    rt,
    dir,
    file,
    admin,
    url: l7 ? `http://127.0.0.1:${l7.port}` : "",
    write: (y) => writeFileSync(file, full(y)),
    ask(path, o = {}) {
      const body = o.body === undefined ? undefined : JSON.stringify(o.body);
      return request(admin, {
        method: o.method ?? (body !== undefined ? "POST" : "GET"),
        path,
        headers: {
          ...(o.token ? { authorization: `Bearer ${o.token}` } : {}),
          ...(body !== undefined ? { "content-type": "application/json" } : {}),
        },
        body,
      });
    },
    close: () => rt.close(500),
  };
}

/** Parse Prometheus text into `name{labels} → value` (labels as written, in order). */
export function samples(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split("\n")) {
    if (line === "" || line.startsWith("#")) continue;
    const i = line.lastIndexOf(" ");
    out.set(line.slice(0, i), Number(line.slice(i + 1)));
  }
  return out;
}
