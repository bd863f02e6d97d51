// NGINX and HAProxy peers: configs generated into bench/.tmp/<name>/, each started in the
// foreground on a port picked free beforehand, one worker / one thread (like the Node peers).
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { Child, freePort, SkipError, waitForPort, whichCmd } from "./procs.mjs";

/** First line a command prints on stdout or stderr (nginx -v prints on stderr). */
export function versionLine(cmd, args) {
  const r = spawnSync(cmd, args, { encoding: "utf8", timeout: 5000 });
  return (
    `${r.stdout ?? ""}\n${r.stderr ?? ""}`
      .split("\n")
      .map((l) => l.trim())
      .find(Boolean) ?? null
  );
}

/** What is installed: { nginx: {bin, version, stream} | null, haproxy: {bin, version} | null }. */
export function detectNative() {
  const out = { nginx: null, haproxy: null };
  const nginx = whichCmd("nginx");
  if (nginx) {
    const v = versionLine(nginx, ["-v"]);
    const r = spawnSync(nginx, ["-V"], { encoding: "utf8", timeout: 5000 });
    // null: no stream module; "": built in; else the load_module path
    const stream = parseStream(`${r.stdout ?? ""}${r.stderr ?? ""}`);
    out.nginx = { bin: nginx, version: v?.replace(/^nginx version:\s*/, "").replace(/^nginx\//, ""), stream };
  }
  const haproxy = whichCmd("haproxy");
  if (haproxy) {
    const v = versionLine(haproxy, ["-v"]);
    out.haproxy = { bin: haproxy, version: v?.replace(/^HAProxy version\s*/, "").split(" ")[0] };
  }
  return out;
}

function parseStream(configure) {
  if (/--with-stream(\s|$)/.test(configure)) return "";
  if (/--with-stream=dynamic/.test(configure)) {
    for (const p of [
      "/usr/lib/nginx/modules/ngx_stream_module.so",
      "/usr/share/nginx/modules/ngx_stream_module.so",
    ]) {
      if (fs.existsSync(p)) return p;
    }
  }
  return null;
}

function freshDir(tmpRoot, name) {
  const dir = path.join(tmpRoot, name);
  fs.rmSync(dir, { recursive: true, force: true });
  fs.mkdirSync(dir, { recursive: true });
  return dir;
}

/**
 * Starts NGINX. mode: "http" (proxy_pass, upstream keepalive), "cache" (same + proxy_cache 60 s),
 * "stream" (L4). balancer: "round-robin" | "least-connections".
 * @returns {Promise<{ port: number, child: Child }>}
 */
export async function startNginx(info, { tmpRoot, name, mode, targets, balancer = "round-robin" }) {
  if (mode === "stream" && info.stream === null) {
    throw new SkipError("nginx has no stream module (apt-get install libnginx-mod-stream)");
  }
  const dir = freshDir(tmpRoot, name);
  const port = await freePort();
  const servers = targets.map((t) => `    server ${t};`).join("\n");
  const lines = [];
  if (mode === "stream" && info.stream) lines.push(`load_module ${info.stream};`);
  if (process.getuid?.() === 0) lines.push("user root;");
  lines.push(
    "worker_processes 1;",
    `pid ${dir}/nginx.pid;`,
    `error_log ${dir}/error.log warn;`,
    "events { worker_connections 4096; }",
  );
  if (mode === "stream") {
    lines.push(
      "stream {",
      "  upstream be {",
      balancer === "least-connections" ? "    least_conn;" : "",
      servers,
      "  }",
      `  server { listen 127.0.0.1:${port}; proxy_pass be; }`,
      "}",
    );
  } else {
    lines.push(
      "http {",
      "  access_log off;",
      `  client_body_temp_path ${dir}/body;`,
      `  proxy_temp_path ${dir}/proxy;`,
      `  fastcgi_temp_path ${dir}/fastcgi;`,
      `  uwsgi_temp_path ${dir}/uwsgi;`,
      `  scgi_temp_path ${dir}/scgi;`,
      "  keepalive_requests 1000000;",
      "  keepalive_timeout 65s;",
      mode === "cache" ? `  proxy_cache_path ${dir}/cache keys_zone=bench:10m;` : "",
      "  upstream be {",
      balancer === "least-connections" ? "    least_conn;" : "",
      servers,
      "    keepalive 64;",
      "    keepalive_requests 1000000;",
      "  }",
      "  server {",
      `    listen 127.0.0.1:${port};`,
      "    location / {",
      "      proxy_pass http://be;",
      "      proxy_http_version 1.1;",
      '      proxy_set_header Connection "";',
      mode === "cache"
        ? "      proxy_cache bench; proxy_cache_valid 200 60s; add_header X-Cache $upstream_cache_status;"
        : "",
      "    }",
      "  }",
      "}",
    );
  }
  const conf = path.join(dir, "nginx.conf");
  fs.writeFileSync(conf, `${lines.filter(Boolean).join("\n")}\n`);
  const child = new Child(name, info.bin, [
    "-p",
    dir,
    "-e",
    `${dir}/error.log`,
    "-c",
    conf,
    "-g",
    "daemon off;",
  ]);
  try {
    await waitForPort(port, child, { timeoutMs: 10_000 });
  } catch (err) {
    const log = readTail(path.join(dir, "error.log"));
    await child.stop(1000);
    throw new SkipError(`${err.message}${log ? ` — ${log}` : ""}`);
  }
  return { port, child };
}

/**
 * Starts HAProxy in the foreground (-db), one thread. mode: "http" | "tcp".
 * @returns {Promise<{ port: number, child: Child }>}
 */
export async function startHaproxy(info, { tmpRoot, name, mode, targets, balancer = "round-robin" }) {
  const dir = freshDir(tmpRoot, name);
  const port = await freePort();
  const conf = path.join(dir, "haproxy.cfg");
  const lines = [
    "global",
    "  nbthread 1",
    "  maxconn 4096",
    "defaults",
    `  mode ${mode}`,
    "  timeout connect 5s",
    "  timeout client 60s",
    "  timeout server 60s",
    mode === "http" ? "  option http-keep-alive" : "",
    "frontend fe",
    `  bind 127.0.0.1:${port}`,
    "  default_backend be",
    "backend be",
    `  balance ${balancer === "least-connections" ? "leastconn" : "roundrobin"}`,
    mode === "http" ? "  http-reuse always" : "",
    ...targets.map((t, i) => `  server s${i + 1} ${t}`),
  ];
  fs.writeFileSync(conf, `${lines.filter(Boolean).join("\n")}\n`);
  const child = new Child(name, info.bin, ["-db", "-f", conf]);
  try {
    await waitForPort(port, child, { timeoutMs: 10_000 });
  } catch (err) {
    await child.stop(1000);
    throw err;
  }
  return { port, child };
}

function readTail(file) {
  try {
    const lines = fs.readFileSync(file, "utf8").trim().split("\n");
    return lines.at(-1)?.slice(0, 200) ?? "";
  } catch {
    return "";
  }
}
