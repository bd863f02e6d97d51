// Child process bookkeeping for the harness: every process it starts is registered here and
// killed (its whole process group) on exit, on SIGINT/SIGTERM/SIGHUP and on uncaught errors.
// Also: free ports, readiness polling, and /proc CPU and RSS sampling.
import { execFileSync, spawn } from "node:child_process";
import fs from "node:fs";
import http from "node:http";
import net from "node:net";
import path from "node:path";

/** @type {Set<Child>} */
const children = new Set();
let pinPrefix = null; // e.g. ["taskset", "-c", "0"] for servers

export class SkipError extends Error {}

/** Servers started after this call are pinned with this command prefix (null: no pinning). */
export function setServerPin(prefix) {
  pinPrefix = prefix;
}

const TAIL_MAX = 8192;

/**
 * A started child process. Its stdout/stderr are read continuously (so it never blocks on a full
 * pipe) and only the last few KB are kept for error messages.
 */
export class Child {
  constructor(name, cmd, args, { pin = true, env, cwd, stdin = "pipe" } = {}) {
    this.name = name;
    const argv = pin && pinPrefix ? [...pinPrefix, cmd, ...args] : [cmd, ...args];
    this.proc = spawn(argv[0], argv.slice(1), {
      cwd,
      env: { ...process.env, BENCH_CHILD: "1", ...env },
      stdio: [stdin, "pipe", "pipe"],
      detached: true, // own process group: kill(-pid) takes its workers too
    });
    this.pid = this.proc.pid;
    this.out = "";
    this.exitCode = undefined;
    this.lineWaiters = [];
    this.exited = new Promise((resolve) => {
      this.proc.once("exit", (code, signal) => {
        this.exitCode = code ?? signal ?? "?";
        children.delete(this);
        resolve(this.exitCode);
      });
      this.proc.once("error", (err) => {
        this.out += `\n${err.message}`;
        this.exitCode = this.exitCode ?? "spawn-error";
        children.delete(this);
        resolve(this.exitCode);
      });
    });
    const onData = (chunk) => {
      this.out += chunk.toString();
      if (this.out.length > TAIL_MAX) this.out = this.out.slice(-TAIL_MAX);
      for (const w of this.lineWaiters) w();
    };
    this.proc.stdout.on("data", onData);
    this.proc.stderr.on("data", onData);
    if (this.proc.stdin) this.proc.stdin.on("error", () => {});
    children.add(this);
  }

  get alive() {
    return this.exitCode === undefined;
  }

  /** The last non-empty output line (for one-line error messages). */
  lastLine() {
    const lines = this.out
      .split("\n")
      .map((l) => l.trim())
      .filter(Boolean);
    const line = lines.at(-1) ?? "";
    return line.length > 240 ? `${line.slice(0, 240)}…` : line;
  }

  /** Resolves to the port from a {"port":N} line on stdout; rejects on exit or after timeoutMs. */
  waitForPortLine(timeoutMs = 10_000) {
    return new Promise((resolve, reject) => {
      const done = (fn, v) => {
        clearTimeout(timer);
        this.lineWaiters = this.lineWaiters.filter((w) => w !== check);
        fn(v);
      };
      const check = () => {
        const m = /\{"port":(\d+)\}/.exec(this.out);
        if (m) done(resolve, Number(m[1]));
      };
      const timer = setTimeout(
        () => done(reject, new SkipError(`${this.name}: no {"port":N} line within ${timeoutMs / 1000} s`)),
        timeoutMs,
      );
      this.lineWaiters.push(check);
      this.exited.then((code) =>
        done(reject, new SkipError(`${this.name} exited (${code}): ${this.lastLine() || "no output"}`)),
      );
      check();
    });
  }

  /** SIGTERM the process group, SIGKILL it after graceMs. */
  async stop(graceMs = 3000) {
    if (!this.alive) return;
    killGroup(this.pid, "SIGTERM");
    const t = new Promise((r) => setTimeout(r, graceMs, "timeout"));
    if ((await Promise.race([this.exited, t])) === "timeout") {
      killGroup(this.pid, "SIGKILL");
      await Promise.race([this.exited, new Promise((r) => setTimeout(r, 1000))]);
    }
    // Workers of a group whose leader is gone (nginx) are reaped too.
    killGroup(this.pid, "SIGKILL");
  }
}

function killGroup(pid, sig) {
  try {
    process.kill(-pid, sig);
  } catch {
    try {
      process.kill(pid, sig);
    } catch {
      // already gone
    }
  }
}

/** Kills every registered child synchronously (exit handler). */
export function killAllSync() {
  for (const c of children) killGroup(c.pid, "SIGKILL");
  children.clear();
}

export async function stopAll() {
  await Promise.all([...children].map((c) => c.stop(2000)));
}

let handlersInstalled = false;
/** Installs the exit/signal/error handlers once. */
export function installCleanup(onSignal) {
  if (handlersInstalled) return;
  handlersInstalled = true;
  process.on("exit", killAllSync);
  for (const sig of ["SIGINT", "SIGTERM", "SIGHUP"]) {
    process.on(sig, () => {
      process.stderr.write(`\n${sig}: stopping every child process\n`);
      onSignal?.();
      killAllSync();
      process.exit(130);
    });
  }
  process.on("uncaughtException", (err) => {
    process.stderr.write(`bench: ${err?.stack ?? err}\n`);
    killAllSync();
    process.exit(1);
  });
  process.on("unhandledRejection", (err) => {
    process.stderr.write(`bench: ${err?.stack ?? err}\n`);
    killAllSync();
    process.exit(1);
  });
}

/** A free TCP port on 127.0.0.1 (bind 0, read it, close). */
export function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function tcpConnectOnce(port, timeoutMs = 500) {
  return new Promise((resolve) => {
    const sock = net.connect({ host: "127.0.0.1", port });
    const t = setTimeout(() => {
      sock.destroy();
      resolve(false);
    }, timeoutMs);
    sock.once("connect", () => {
      clearTimeout(t);
      sock.destroy();
      resolve(true);
    });
    sock.once("error", () => {
      clearTimeout(t);
      resolve(false);
    });
  });
}

/** One HTTP request; resolves { status, headers, body } or rejects. Bounded by timeoutMs. */
export function httpGet(port, { path: p = "/", headers = {}, method = "GET", timeoutMs = 3000 } = {}) {
  return new Promise((resolve, reject) => {
    const req = http.request(
      { host: "127.0.0.1", port, path: p, method, headers, agent: false, timeout: timeoutMs },
      (res) => {
        const chunks = [];
        res.on("data", (c) => chunks.push(c));
        res.on("end", () =>
          resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks) }),
        );
        res.on("error", reject);
      },
    );
    req.on("timeout", () => req.destroy(new Error(`timeout after ${timeoutMs} ms`)));
    req.on("error", reject);
    req.end();
  });
}

/**
 * Polls until the port accepts a TCP connection (or answers HTTP when http is true), at most
 * timeoutMs; throws SkipError when the child exits first or time runs out.
 */
export async function waitForPort(port, child, { timeoutMs = 10_000, http: useHttp = false } = {}) {
  const deadline = Date.now() + timeoutMs;
  for (let i = 0; i < 1000 && Date.now() < deadline; i++) {
    if (child && !child.alive) {
      throw new SkipError(`${child.name} exited (${child.exitCode}): ${child.lastLine() || "no output"}`);
    }
    if (useHttp) {
      try {
        await httpGet(port, { timeoutMs: 1000 });
        return;
      } catch {
        // not yet
      }
    } else if (await tcpConnectOnce(port)) {
      return;
    }
    await sleep(100);
  }
  if (child && !child.alive) {
    throw new SkipError(`${child.name} exited (${child.exitCode}): ${child.lastLine() || "no output"}`);
  }
  throw new SkipError(
    `${child?.name ?? "server"} not ready on 127.0.0.1:${port} within ${timeoutMs / 1000} s`,
  );
}

// ---------------------------------------------------------------- /proc sampling

let clkTck = 0;
export function clockTicks() {
  if (!clkTck) {
    try {
      clkTck = Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).trim()) || 100;
    } catch {
      clkTck = 100;
    }
  }
  return clkTck;
}

function readStat(pid) {
  try {
    const s = fs.readFileSync(`/proc/${pid}/stat`, "utf8");
    const rest = s.slice(s.lastIndexOf(")") + 2).split(" ");
    // rest[0] is field 3 (state): field N is rest[N - 3]
    return {
      ppid: Number(rest[1]),
      utime: Number(rest[11]),
      stime: Number(rest[12]),
      cutime: Number(rest[13]),
      cstime: Number(rest[14]),
    };
  } catch {
    return null;
  }
}

/** pid and all its live descendants (one scan of /proc, bounded by the process count). */
export function processTree(pid) {
  const byParent = new Map();
  let entries = [];
  try {
    entries = fs.readdirSync("/proc");
  } catch {
    return [pid];
  }
  for (const e of entries) {
    if (!/^\d+$/.test(e)) continue;
    const st = readStat(e);
    if (!st) continue;
    const list = byParent.get(st.ppid) ?? [];
    list.push(Number(e));
    byParent.set(st.ppid, list);
  }
  const out = [pid];
  for (let i = 0; i < out.length && out.length < 10_000; i++) {
    for (const c of byParent.get(out[i]) ?? []) out.push(c);
  }
  return out;
}

/** utime+stime (clock ticks) of these pids, plus the reaped children's time of the first one. */
export function cpuTicks(pids) {
  let total = 0;
  pids.forEach((pid, i) => {
    const st = readStat(pid);
    if (!st) return;
    total += st.utime + st.stime;
    if (i === 0) total += st.cutime + st.cstime;
  });
  return total;
}

/** Sum of VmRSS (kB) of these pids. */
export function rssKb(pids) {
  let total = 0;
  for (const pid of pids) {
    try {
      const m = /VmRSS:\s+(\d+)/.exec(fs.readFileSync(`/proc/${pid}/status`, "utf8"));
      if (m) total += Number(m[1]);
    } catch {
      // gone
    }
  }
  return total;
}

/** Whether an executable is on PATH (or in an sbin directory). */
export function hasCmd(name) {
  return whichCmd(name) !== null;
}

/** Full path of an executable (PATH, then the sbin directories), or null. */
export function whichCmd(name) {
  for (const dir of [
    ...(process.env.PATH ?? "").split(path.delimiter),
    "/usr/sbin",
    "/sbin",
    "/usr/local/sbin",
  ]) {
    if (!dir) continue;
    const p = path.join(dir, name);
    try {
      fs.accessSync(p, fs.constants.X_OK);
      return p;
    } catch {
      // next
    }
  }
  return null;
}
