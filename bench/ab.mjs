#!/usr/bin/env node
// Interleaved A/B of gateway builds or flags on one route (issue 11): one backend (bench/backend.mjs),
// each variant on core 0, wrk and the backend on core 1, rounds alternating in order; prints req/s,
// the gateway's CPU µs per request (/proc utime+stime) and RSS per round, then medians. For a quick
// decision between two builds; `npm run bench` stays the measure of record.
//
//   node bench/ab.mjs ROUNDS SECS name=cli.js[@config.yaml[@hdr1|hdr2[@nodeflag,nodeflag]]] ...
//   e.g. npx tsc -p tsconfig.build.json --outDir .ab/A   (at the old commit), then
//        node bench/ab.mjs 8 4 old=.ab/A/src/cli.js@@@--max-semi-space-size=4 new=dist/src/cli.js@@@--max-semi-space-size=4
// A config is a routes.yaml template with $PORT and $BACKEND; empty = one plain route.
import { execFileSync, spawn } from "node:child_process";
import fs from "node:fs";
import net from "node:net";
import path from "node:path";
import { fileURLToPath } from "node:url";

const BENCH = path.dirname(fileURLToPath(import.meta.url));
const TMP = path.join(BENCH, ".tmp");
fs.mkdirSync(TMP, { recursive: true });
const PLAIN = `version: 1
listen: [{ port: $PORT, host: 127.0.0.1 }]
services: { backend: { targets: ["http://127.0.0.1:$BACKEND"] } }
routes: [{ name: bench, match: { path: / }, service: backend }]
`;
const [rounds, secs, ...specs] = process.argv.slice(2);
const CONN = +(process.env.CONN ?? 50);
const tick = 100; // USER_HZ
const free = () =>
  new Promise((r) => {
    const s = net.createServer().listen(0, "127.0.0.1", () => {
      const p = s.address().port;
      s.close(() => r(p));
    });
  });
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const cpu = (pid) => {
  const f = fs.readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1].split(" ");
  return (+f[11] + +f[12]) / tick;
};
const rss = (pid) => +fs.readFileSync(`/proc/${pid}/status`, "utf8").match(/VmRSS:\s+(\d+)/)[1] / 1024;
const hwm = (pid) => +fs.readFileSync(`/proc/${pid}/status`, "utf8").match(/VmHWM:\s+(\d+)/)[1] / 1024;
const bport = await free();
const backend = spawn(
  "taskset",
  ["-c", "1", process.execPath, path.join(BENCH, "backend.mjs"), String(bport)],
  { stdio: ["ignore", "pipe", "inherit"] },
);
await sleep(500);
const gws = [];
for (const spec of specs) {
  const name = spec.slice(0, spec.indexOf("=")),
    rest = spec.slice(spec.indexOf("=") + 1);
  const [cli, cfgTpl = "", hdrs = "", flags = ""] = rest.split("@");
  const port = await free();
  const cfg = (cfgTpl ? fs.readFileSync(cfgTpl, "utf8") : PLAIN)
    .replaceAll("$PORT", port)
    .replaceAll("$BACKEND", bport);
  const file = path.join(TMP, `ab-${name}.yaml`);
  fs.writeFileSync(file, cfg);
  const args = [...flags.split(",").filter(Boolean), cli, "--config", file, "--log-level", "warn"];
  const child = spawn("taskset", ["-c", "0", process.execPath, ...args], {
    stdio: ["ignore", "inherit", "inherit"],
  });
  gws.push({ name, port, child, hdrs: hdrs.split("|").filter(Boolean), res: [] });
}
const up = (port) =>
  new Promise((r) => {
    const s = net.connect(port, "127.0.0.1", () => {
      s.destroy();
      r(true);
    });
    s.on("error", () => r(false));
  });
process.on("exit", () => {
  for (const g of gws) g.child.kill();
  backend.kill();
});
for (const g of gws) {
  for (let i = 0; i < 200 && !(await up(g.port)); i++) await sleep(100);
}
await sleep(1000);
function wrk(g, d) {
  const h = g.hdrs.flatMap((x) => ["-H", x]);
  const out = execFileSync(
    "taskset",
    ["-c", "1", "wrk", "-t1", `-c${CONN}`, `-d${d}s`, ...h, `http://127.0.0.1:${g.port}/`],
    { encoding: "utf8" },
  );
  const rps = +out.match(/Requests\/sec:\s+([\d.]+)/)[1];
  const n = +out.match(/(\d+) requests in/)[1];
  const non2xx = out.match(/Non-2xx[^\d]*(\d+)/);
  return { rps, n, non2xx: non2xx ? +non2xx[1] : 0 };
}
for (const g of gws) wrk(g, 1); // warm-up
for (let r = 0; r < +rounds; r++) {
  const order = r % 2 ? [...gws].reverse() : gws;
  for (const g of order) {
    const pid = g.child.pid; // taskset execs node, same pid
    const c0 = cpu(pid);
    const w = wrk(g, secs);
    const c1 = cpu(pid);
    g.res.push({ rps: w.rps, us: ((c1 - c0) * 1e6) / w.n, rss: rss(pid), non2xx: w.non2xx });
  }
  console.log(
    `round ${r + 1}: ` +
      gws
        .map((g) => {
          const x = g.res.at(-1);
          return `${g.name} ${x.rps.toFixed(0)} r/s ${x.us.toFixed(1)} µs/req rss ${x.rss.toFixed(0)}${x.non2xx ? ` NON2XX ${x.non2xx}` : ""}`;
        })
        .join(" | "),
  );
}
const med = (a) => {
  const s = [...a].sort((x, y) => x - y);
  return s[Math.floor(s.length / 2)];
};
for (const g of gws)
  console.log(
    `${g.name}: median ${med(g.res.map((x) => x.rps)).toFixed(0)} r/s, ${med(g.res.map((x) => x.us)).toFixed(1)} µs/req, rss ${med(g.res.map((x) => x.rss)).toFixed(0)} MB, hwm ${hwm(g.child.pid).toFixed(0)} MB`,
  );
if (gws.length === 2) {
  const [a, b] = gws;
  let wins = 0;
  a.res.forEach((x, i) => {
    if (b.res[i].us < x.us) wins++;
  });
  console.log(`${b.name} lower CPU/req than ${a.name} in ${wins}/${a.res.length} rounds`);
}
for (const g of gws) g.child.kill();
backend.kill();
