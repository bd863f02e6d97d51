/**
 * `watch: true` (SPEC §2): call back when the config file's content changes.
 *
 * Editors save by writing a temporary file and renaming it over the old one,
 * and a Kubernetes ConfigMap volume swaps a `..data` symlink to a new
 * directory (routes.yaml → ..data/routes.yaml): either way the file's own
 * inode is gone, and a watch on it would go quiet. So the watch is on the
 * directory, any event in it counts, and what decides is the content: after
 * a quiet period (debounce) the file is read again (through its symlinks) and
 * hashed; only a hash unlike the last one seen calls back. A missing file
 * (between delete and re-create) calls nothing; re-created with new content,
 * it does. Node's fs.watch is inotify on Linux and FSEvents on macOS; on a
 * filesystem without change events (some network mounts) nothing fires, and
 * SIGHUP or /admin/reload remain.
 */
import { createHash } from "node:crypto";
import { type FSWatcher, readFileSync, watch } from "node:fs";
import { readFile } from "node:fs/promises";
import { dirname, resolve } from "node:path";

export interface WatchOptions {
  /** Quiet time after the last event before the file is read (default 250 ms): a burst is one change. */
  debounceMs?: number;
  /** After each look at the file: whether it changed (for logging, and for tests to wait on). */
  onCheck?: (changed: boolean) => void;
  /**
   * The directory watch failed (e.g. the directory was removed: watching has
   * stopped), or onChange threw. Without it the error is thrown, as an event
   * listener's would be.
   */
  onError?: (err: Error) => void;
}

export interface ConfigWatcher {
  close(): void;
}

/** Watch `file` (its directory must exist); `onChange` runs after each change of its content. */
export function watchConfig(file: string, onChange: () => void, opts: WatchOptions = {}): ConfigWatcher {
  const path = resolve(file);
  const debounceMs = opts.debounceMs ?? 250;
  let last = digestSync(path);
  let timer: NodeJS.Timeout | undefined;
  let closed = false;
  /** One look at a time, so two checks never both see "changed". */
  let checking: Promise<void> = Promise.resolve();

  const check = async () => {
    const now = await digest(path);
    if (closed) return;
    const changed = now !== undefined && now !== last;
    if (changed) last = now;
    opts.onCheck?.(changed);
    if (changed) onChange();
  };
  const fail = (err: Error) => {
    if (opts.onError === undefined) throw err;
    opts.onError(err);
  };
  const settle = () => {
    timer = undefined;
    const run = checking.then(check);
    checking = run.catch(() => {});
    run.catch(fail);
  };
  const watcher: FSWatcher = watch(dirname(path), { persistent: false }, () => {
    if (closed) return;
    if (timer !== undefined) clearTimeout(timer);
    timer = setTimeout(settle, debounceMs);
    timer.unref();
  });
  watcher.on("error", (err) => {
    stop();
    fail(err);
  });

  function stop(): void {
    closed = true;
    if (timer !== undefined) clearTimeout(timer);
    watcher.close();
  }
  return { close: stop };
}

function hash(b: Buffer): string {
  return createHash("sha256").update(b).digest("hex");
}

/** The content's hash, or undefined while the file is missing or unreadable. */
async function digest(path: string): Promise<string | undefined> {
  try {
    return hash(await readFile(path));
  } catch {
    return undefined;
  }
}

function digestSync(path: string): string | undefined {
  try {
    return hash(readFileSync(path));
  } catch {
    return undefined;
  }
}
