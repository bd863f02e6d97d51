// `npm run demo`: the sample services, the gateway on the shipped routes.yaml,
// and the curl commands that show each feature. Ctrl-C stops all of it.
import { spawn, spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import net from "node:net";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { startServices } from "./services.mjs";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const cli = join(root, "dist/src/cli.js");
if (!existsSync(cli)) {
  console.log("building (npm run build)…");
  const b = spawnSync("npm", ["run", "build"], { cwd: root, stdio: "inherit" });
  if (b.status !== 0) process.exit(1);
}

let servers;
try {
  servers = await startServices();
} catch (err) {
  console.error(`demo: cannot start the sample services: ${err.message} (ports 3001-3004 busy?)`);
  process.exit(1);
}
console.log("sample services: users-1 :3001, users-2 :3002, orders-1 :3003, orders-v2 :3004");

const gw = spawn(process.execPath, [cli, "--config", join(root, "routes.yaml")], {
  cwd: root,
  stdio: ["ignore", "inherit", "inherit"],
  env: { JWT_SECRET: "demo-secret-change-me", ...process.env },
});
const stop = () => {
  gw.kill("SIGTERM");
  for (const s of servers) s.close();
};
process.on("SIGINT", stop);
process.on("SIGTERM", stop);
gw.on("exit", (code) => {
  for (const s of servers) s.close();
  process.exitCode = code ?? 0;
});

const port = Number(process.env.PORT ?? 8080);
const up = async () => {
  for (let i = 0; i < 100; i++) {
    const ok = await new Promise((r) => {
      const s = net.connect(port, "127.0.0.1", () => {
        s.end();
        r(true);
      });
      s.on("error", () => r(false));
    });
    if (ok) return true;
    await new Promise((r) => setTimeout(r, 100));
  }
  return false;
};
if (!(await up())) {
  console.error("demo: the gateway did not come up on 127.0.0.1:8080");
  stop();
} else {
  const g = `http://127.0.0.1:${port}`;
  console.log(`
Switchyard is up on ${g}. Try (in another terminal):

  # round-robin across users-1 and users-2 (weights 1:3), one keep-alive connection
  for i in 1 2 3 4 5 6 7 8; do curl -s ${g}/api/users/7; done

  # prefix matching is by whole segments: this is a 404 SY_NO_ROUTE
  curl -s ${g}/api/usersx

  # path normalisation: what is matched is what is forwarded
  curl -s --path-as-is ${g}/api/users/../users/./42

  # an encoded slash is refused: 400 SY_BAD_PATH
  curl -s ${g}/api/users%2F..%2Fadmin

  # header-based routing: x-version 2 goes to orders-v2
  curl -s ${g}/api/orders -H 'x-version: 2'
  # canary: 90/10 split between orders and orders-v2
  for i in $(seq 10); do curl -s ${g}/api/orders | grep -o '"instance":"[^"]*"'; done

  # a direct response from the gateway (no upstream)
  curl -si ${g}/docs/v1 | head -3

  # what would happen, without sending anything
  node dist/src/cli.js explain GET ${g}/api/users/7

Ctrl-C stops the gateway and the services.
`);
}
