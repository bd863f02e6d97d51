// Load generators: wrk (preferred), autocannon (fallback, in process), a paced open-loop client
// (for latency at a fixed rate) and redis-benchmark. Every run is bounded in time.
import { fileURLToPath } from "node:url";
import { Child, sleep } from "./procs.mjs";

const WRK_SCRIPT = fileURLToPath(new URL("../wrk-report.lua", import.meta.url));

/**
 * @typedef {{ requests: number, seconds: number, rps: number, p50: number, p99: number,
 *   errors: number, non2xx: number }} LoadResult  (latencies in ms)
 */

function headerArgs(headers) {
  const out = [];
  for (const [k, v] of Object.entries(headers ?? {})) out.push("-H", `${k}: ${v}`);
  return out;
}

/** Waits for a child to exit, killing it after limitMs. */
async function waitBounded(child, limitMs) {
  const t = new Promise((r) => setTimeout(r, limitMs, "timeout"));
  if ((await Promise.race([child.exited, t])) === "timeout") {
    await child.stop(1000);
    throw new Error(`${child.name} did not finish within ${Math.round(limitMs / 1000)} s (killed)`);
  }
}

/** wrk -c connections -d seconds against http://127.0.0.1:port/path. @returns {Promise<LoadResult>} */
export async function runWrk({ port, path = "/", headers, seconds, connections, threads, loadPrefix, env }) {
  const args = [
    ...(loadPrefix ?? []).slice(1),
    "wrk",
    `-t${threads}`,
    `-c${connections}`,
    `-d${seconds}s`,
    "--timeout",
    "5s",
    "-s",
    WRK_SCRIPT,
    ...headerArgs(headers),
    `http://127.0.0.1:${port}${path}`,
  ];
  const cmd = loadPrefix ? loadPrefix[0] : args.shift();
  const child = new Child("wrk", cmd, args, { pin: false, stdin: "ignore", env });
  await waitBounded(child, (seconds + 20) * 1000);
  const line = child.out.split("\n").find((l) => l.startsWith('{"requests"'));
  if (!line) throw new Error(`wrk failed (${child.exitCode}): ${child.lastLine()}`);
  const r = JSON.parse(line);
  const secs = r.duration_us / 1e6;
  return {
    requests: r.requests,
    seconds: secs,
    rps: r.requests / secs,
    p50: r.p50_us / 1000,
    p99: r.p99_us / 1000,
    errors: r.connect + r.read + r.write + r.timeout,
    non2xx: r.status,
  };
}

/**
 * wrk paced to about `rate` req/s: each connection waits a random time of mean
 * connections/rate s before each request (wrk-report.lua's delay(): Poisson-like arrivals,
 * not bursts). The wait starts when the previous answer arrived, so
 * the offered rate is conns / (delay + latency): close to `rate` while latency is small
 * next to the delay (the case at half load); an achieved rate under 90% is flagged.
 */
export async function runWrkPaced({ port, path = "/", headers, rate, seconds, connections, loadPrefix }) {
  const delayMs = (connections * 1000) / rate;
  const r = await runWrk({
    port,
    path,
    headers,
    seconds,
    connections,
    threads: 1,
    loadPrefix,
    env: { WRK_DELAY_MS: delayMs.toFixed(3) },
  });
  return { ...r, clientLagP99: 0, clientLimited: r.rps < 0.9 * rate, paced: "wrk" };
}

let autocannonMod;
/** autocannon, in this process (the harness itself is pinned to the load CPU). */
export async function runAutocannon({ port, path = "/", headers, seconds, connections }) {
  autocannonMod ??= (await import("autocannon")).default;
  const run = autocannonMod({
    url: `http://127.0.0.1:${port}${path}`,
    connections,
    duration: seconds,
    headers: headers ?? {},
    timeout: 5,
  });
  const t = new Promise((r) => setTimeout(r, (seconds + 20) * 1000, "timeout"));
  const r = await Promise.race([run, t]);
  if (r === "timeout") {
    run.stop?.();
    throw new Error("autocannon did not finish in time");
  }
  const secs = r.duration || seconds;
  const total = r.requests.total;
  return {
    requests: total,
    seconds: secs,
    rps: total / secs,
    p50: r.latency.p50,
    p99: r.latency.p99,
    errors: r.errors + r.timeouts,
    non2xx: r.non2xx,
  };
}

let undiciMod;
/**
 * Open-loop load at a fixed rate: requests are sent on schedule whether or not earlier ones have
 * answered (queueing in the pool when all connections are busy counts as latency). Latency runs
 * from the moment a request was handed to the pool, so the client's own timer lag is left out but
 * reported: clientLimited when it sent p99 more than 5 ms late or could not keep the rate.
 * @returns {Promise<LoadResult & { clientLagP99: number, clientLimited: boolean }>}
 */
export async function runPaced({ port, path = "/", headers, rate, seconds, connections }) {
  undiciMod ??= await import("undici");
  const pool = new undiciMod.Pool(`http://127.0.0.1:${port}`, { connections, pipelining: 1 });
  const total = Math.max(1, Math.floor(rate * seconds));
  const lat = new Float64Array(total);
  const lag = new Float64Array(total); // how late each request left the client
  let sent = 0;
  let done = 0;
  let errors = 0;
  let non2xx = 0;
  const t0 = performance.now();
  const one = (i) => {
    const sentAt = performance.now();
    lag[i] = sentAt - (t0 + (i * 1000) / rate);
    pool.request({ path, method: "GET", headers }).then(
      async ({ statusCode, body }) => {
        await body.dump();
        if (statusCode < 200 || statusCode > 399) non2xx++;
        lat[i] = performance.now() - sentAt;
        done++;
      },
      () => {
        errors++;
        lat[i] = Number.NaN;
        done++;
      },
    );
  };
  await new Promise((resolve) => {
    const timer = setInterval(() => {
      const due = Math.min(total, Math.floor(((performance.now() - t0) * rate) / 1000) + 1);
      while (sent < due) one(sent++);
      if (sent >= total) {
        clearInterval(timer);
        resolve();
      }
    }, 1);
  });
  for (let i = 0; i < 500 && done < sent; i++) await sleep(10); // ≤ 5 s for stragglers
  const secs = (performance.now() - t0) / 1000;
  await pool.destroy().catch(() => {});
  const ok = Array.from(lat.subarray(0, done)).filter((x) => Number.isFinite(x) && x > 0);
  ok.sort((a, b) => a - b);
  const pct = (p) =>
    ok.length ? ok[Math.min(ok.length - 1, Math.floor((p / 100) * ok.length))] : Number.NaN;
  const lags = Array.from(lag.subarray(0, sent)).sort((a, b) => a - b);
  const lagP99 = lags[Math.min(lags.length - 1, Math.floor(0.99 * lags.length))] ?? 0;
  return {
    requests: done,
    seconds: secs,
    rps: done / secs,
    p50: pct(50),
    p99: pct(99),
    errors: errors + (sent - done),
    non2xx,
    // The client itself could not keep the schedule: the latency includes its own lag.
    clientLagP99: lagP99,
    clientLimited: lagP99 > 5 || done < 0.9 * total || secs > seconds * 1.1 + 0.5,
  };
}

/**
 * redis-benchmark -t <tests> -n <n> -c <clients> --csv. Ops/s over all tests (total ops / total
 * time); p50 is the mean of the tests' p50, p99 the worst test's p99. @returns {Promise<LoadResult>}
 */
export async function runRedisBenchmark({ port, n, clients, tests = "get,set", loadPrefix }) {
  const args = [
    ...(loadPrefix ?? []).slice(1),
    "redis-benchmark",
    "-h",
    "127.0.0.1",
    "-p",
    String(port),
    "-t",
    tests,
    "-n",
    String(n),
    "-c",
    String(clients),
    "--csv",
  ];
  const cmd = loadPrefix ? loadPrefix[0] : args.shift();
  const child = new Child("redis-benchmark", cmd, args, { pin: false, stdin: "ignore" });
  await waitBounded(child, 180_000);
  const rows = child.out
    .split("\n")
    .filter((l) => /^"[A-Z]/.test(l) && !l.startsWith('"test"'))
    .map((l) => l.replaceAll('"', "").split(","));
  if (!rows.length || child.exitCode !== 0) {
    throw new Error(`redis-benchmark failed (${child.exitCode}): ${child.lastLine()}`);
  }
  let secs = 0;
  let p50 = 0;
  let p99 = 0;
  for (const r of rows) {
    secs += n / Number(r[1]);
    p50 += Number(r[4]);
    p99 = Math.max(p99, Number(r[6]));
  }
  const requests = n * rows.length;
  return {
    requests,
    seconds: secs,
    rps: requests / secs,
    p50: p50 / rows.length,
    p99,
    errors: 0,
    non2xx: 0,
    detail: Object.fromEntries(rows.map((r) => [r[0], Number(r[1])])),
  };
}
