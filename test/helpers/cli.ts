/**
 * The real CLI with `--workers N`, as operators start it: `src/cli.ts` in a
 * child process (through tsx), its JSON log lines read from stdout, a guard
 * that SIGKILLs the whole tree if a test hangs.
 *
 *   const cli = startWorkers(file, { workers: 2, guardMs: 120_000 });
 *   try {
 *     const ports = await cli.listening(2);
 *     …
 *     const exited = cli.stop();
 *     assert.equal(await exited, 0);
 *   } finally {
 *     cli.kill();
 *   }
 */
import { type ChildProcessByStdio, spawn } from "node:child_process";
import type { Readable } from "node:stream";

export interface Workers {
  child: ChildProcessByStdio<null, Readable, Readable>;
  /** Every JSON line the primary and its workers wrote on stdout so far (access lines included). */
  lines: Record<string, unknown>[];
  /**
   * pid → port of each worker's L7 listener, once `n` workers have said they listen;
   * rejects if the CLI exits first.
   */
  listening(n: number): Promise<Map<number, number>>;
  /** SIGTERM to the primary; resolves with its exit code. */
  stop(): Promise<number | null>;
  /** For `finally`: the guard cleared and SIGKILL (nothing once the CLI has exited). */
  kill(): void;
}

/** Start `src/cli.ts --config file --workers n`; after `guardMs` the child is SIGKILLed whatever it is doing. */
export function startWorkers(
  file: string,
  opts: { workers: number; guardMs: number; env?: NodeJS.ProcessEnv },
): Workers {
  const child = spawn(
    process.execPath,
    ["--import", "tsx", "src/cli.ts", "--config", file, "--workers", String(opts.workers)],
    { stdio: ["ignore", "pipe", "pipe"], env: opts.env },
  );
  const guard = setTimeout(() => child.kill("SIGKILL"), opts.guardMs);
  const exited = new Promise<number | null>((ok) => child.once("exit", (code) => ok(code)));
  const lines: Record<string, unknown>[] = [];
  const ports = new Map<number, number>();
  const waiting: { n: number; ok: (p: Map<number, number>) => void }[] = [];
  let buf = "";
  child.stdout.on("data", (c) => {
    buf += c;
    for (const line of buf.split("\n").slice(0, -1)) {
      const j = JSON.parse(line) as Record<string, unknown>;
      lines.push(j);
      const m = /L7 listening on http:\/\/127\.0\.0\.1:(\d+)/.exec(String(j.msg));
      if (m) ports.set(Number(j.pid), Number(m[1]));
    }
    buf = buf.slice(buf.lastIndexOf("\n") + 1);
    for (const w of waiting.filter((x) => ports.size >= x.n)) {
      waiting.splice(waiting.indexOf(w), 1);
      w.ok(ports);
    }
  });
  child.stderr.resume();
  return {
    child,
    lines,
    listening: (n) =>
      new Promise((ok, fail) => {
        if (ports.size >= n) return ok(ports);
        waiting.push({ n, ok });
        void exited.then((code) => fail(new Error(`exited early with ${code}`)));
      }),
    stop() {
      child.kill("SIGTERM");
      return exited;
    },
    kill() {
      clearTimeout(guard);
      child.kill("SIGKILL");
    },
  };
}
