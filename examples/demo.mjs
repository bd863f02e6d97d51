// `npm run demo`: the sample services, the gateway on the shipped routes.yaml,
// and the curl commands that show each feature. Ctrl-C stops all of it.
//
// Ports: PORT (the gateway, 8080), USERS1_PORT … CATALOG_PORT (the services,
// 3001-3005) and REDIS_PROXY_PORT (the TCP listener, 6380) move everything;
// routes.yaml reads the same variables.
import { spawn, spawnSync } from "node:child_process";
import { createHmac } from "node:crypto";
import { existsSync } from "node:fs";
import net from "node:net";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { instances, startServices } from "./services.mjs";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const cli = join(root, "dist/src/cli.js");
if (!existsSync(cli)) {
  console.log("building (npm run build)…");
  const b = spawnSync("npm", ["run", "build"], { cwd: root, stdio: "inherit" });
  if (b.status !== 0) process.exit(1);
}

// The secret the gateway's `demo` verifier uses (routes.yaml: ${JWT_SECRET:-…}).
const secret = process.env.JWT_SECRET ?? "demo-secret-change-me";

/** An HS256 JWT, signed here with node:crypto (no library), valid for an hour. */
function signDemoToken(sub) {
  const b64 = (v) => Buffer.from(JSON.stringify(v)).toString("base64url");
  const now = Math.floor(Date.now() / 1000);
  const unsigned = `${b64({ alg: "HS256", typ: "JWT" })}.${b64({ sub, iat: now, exp: now + 3600 })}`;
  return `${unsigned}.${createHmac("sha256", secret).update(unsigned).digest("base64url")}`;
}

let servers;
try {
  servers = await startServices();
} catch (err) {
  const ports = instances.map((i) => i.port).join(", ");
  console.error(`demo: cannot start the sample services: ${err.message} (ports ${ports} busy?)`);
  process.exit(1);
}
console.log(`sample services: ${instances.map((i) => `${i.instance} :${i.port}`).join(", ")}`);

const gw = spawn(process.execPath, [cli, "--config", join(root, "routes.yaml")], {
  cwd: root,
  stdio: ["ignore", "inherit", "inherit"],
  env: { ...process.env, JWT_SECRET: secret },
});

let stopping = false;
const closeServices = () => {
  for (const s of servers) {
    s.close();
    s.closeAllConnections();
  }
};
// First Ctrl-C: the gateway drains (shutdownTimeout) and exits, then the
// services close. A second one kills the gateway at once.
const stop = () => {
  if (gw.exitCode !== null || gw.signalCode !== null) return closeServices();
  gw.kill(stopping ? "SIGKILL" : "SIGTERM");
  stopping = true;
};
process.on("SIGINT", stop);
process.on("SIGTERM", stop);
gw.on("exit", (code, signal) => {
  stopping = true;
  closeServices();
  process.exitCode = code ?? (signal === "SIGTERM" || signal === "SIGINT" ? 0 : 1);
});

const port = Number(process.env.PORT ?? 8080);
const redisProxyPort = Number(process.env.REDIS_PROXY_PORT ?? 6380);
const up = async () => {
  for (let i = 0; i < 100 && !stopping; i++) {
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
  if (!stopping) {
    console.error(`demo: the gateway did not come up on 127.0.0.1:${port}`);
    stop();
  }
} else {
  const g = `http://127.0.0.1:${port}`;
  const token = signDemoToken("alice");
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

  # JWT at the edge: /api/me needs a token (HS256, sub "alice", valid 1 h,
  # signed with the demo secret). Without it: 401 SY_AUTH_MISSING
  TOKEN=${token}
  curl -si ${g}/api/me | head -1
  # with it: 200, and the service saw x-user-id from the token ("user":"alice");
  # a client-sent x-user-id is always removed first
  curl -s ${g}/api/me -H "Authorization: Bearer $TOKEN" -H 'x-user-id: mallory'

  # rate limit: 5 requests per 10 s per client, then 429 SY_RATE_LIMITED
  for i in $(seq 7); do curl -s -o /dev/null -w '%{http_code}\\n' ${g}/api/search; done
  curl -si ${g}/api/search | grep -i -e '^HTTP' -e '^ratelimit' -e '^retry-after'

  # response cache (10 s): X-Cache MISS, then HIT with the same body and an Age
  curl -si ${g}/api/catalog | grep -i -e '^x-cache' -e '^age' -e instance
  curl -si ${g}/api/catalog | grep -i -e '^x-cache' -e '^age' -e instance

  # your own Fastify plugin on a route (examples/plugins/api-key.mjs):
  # 401 without a known x-api-key, 200 with one
  curl -si ${g}/api/reports | head -1
  curl -s ${g}/api/reports -H 'x-api-key: demo-key'

  # L4: TCP passthrough to this machine's Redis on :6379 (closes at once without one)
  redis-cli -p ${redisProxyPort} ping

  # what would happen, without sending anything
  node dist/src/cli.js explain GET ${g}/api/users/7

Ctrl-C stops the gateway and the services.
`);
}
