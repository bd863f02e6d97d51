/**
 * The admin listener (SPEC §8): its own Fastify instance on its own port
 * (127.0.0.1 by default), so no data-plane listener can ever reach it.
 *
 *   GET  /healthz   process up                      (no token)
 *   GET  /readyz    config loaded, listeners bound,  (no token)
 *                   store reachable; 503 + reasons
 *   GET  /metrics   Prometheus text
 *   GET  /admin/upstreams, /admin/config (secrets masked), /admin/stats
 *   POST /admin/cache/purge {"prefix"} | {"tags"}
 *   POST /admin/upstreams/:service/:target/drain | /undrain
 *   POST /admin/reload  (the SIGHUP path; answers with the result)
 *   GET  /          the live dashboard (static page: it holds no data, every
 *                   call it makes carries the token)
 *
 * With `admin.token` every other endpoint needs `Authorization: Bearer
 * <token>`, compared in constant time; else 401 SY_UNAUTHORIZED. The token is
 * read from the running config on each request, so a reload can change it.
 */
import { createHash, randomUUID, timingSafeEqual } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import type { AddressInfo } from "node:net";
import Fastify, {
  type FastifyInstance,
  type FastifyReply,
  type FastifyRequest,
  LogController,
} from "fastify";
import type { Logger } from "pino";
import type { AdminOps } from "../src/admin/ops.js";
import { maskConfig } from "../src/admin/snapshot.js";
import type { PurgeRequest } from "../src/cache/purge.js";
import { type ErrorCode, errorResponse } from "../src/errors.js";
import { listenError } from "../src/l4/listen-error.js";
import { fixedEtag, useCaching } from "./cache-control.js";

/** The dashboard ships as one file beside src/ and plugins/ (and beside dist/ once built). */
function dashboardPage(): string {
  for (const rel of ["../static/dashboard.html", "../../static/dashboard.html"]) {
    const url = new URL(rel, import.meta.url);
    if (existsSync(url)) return readFileSync(url, "utf8");
  }
  return "<!doctype html><title>Switchyard</title><p>The dashboard page is missing from this installation.</p>";
}

function sha256(s: string): Buffer {
  return createHash("sha256").update(s).digest();
}

/** Bearer token check in constant time (equal-length digests, so the length leaks nothing either). */
export function tokenMatches(header: string | undefined, token: string): boolean {
  // The scheme is case-insensitive (RFC 9110 §11.1).
  const given = header !== undefined && /^bearer /i.test(header) ? header.slice(7).trim() : "";
  return timingSafeEqual(sha256(given), sha256(token)) && given !== "";
}

const OPEN = new Set(["/healthz", "/readyz", "/"]);

function sameOrigin(origin: string, host: string | undefined): boolean {
  try {
    return host !== undefined && new URL(origin).host === host;
  } catch {
    return false;
  }
}

function sendError(reply: FastifyReply, code: ErrorCode, id: string, message?: string): FastifyReply {
  const { status, headers, body } = errorResponse(code, id, message);
  if (code === "SY_UNAUTHORIZED") headers["www-authenticate"] = 'Bearer realm="switchyard-admin"';
  return reply.code(status).headers(headers).send(body);
}

export interface AdminServer {
  readonly address: { host: string; port: number };
  readonly app: FastifyInstance;
  close(): Promise<void>;
}

/** Build and listen the admin instance on `admin.host:admin.port`. */
export async function startAdmin(ops: AdminOps, logger?: Logger): Promise<AdminServer> {
  const cfg = ops.config().admin!;
  const app = Fastify({
    ...(logger ? { loggerInstance: logger.child({ admin: true }) } : { logger: false }),
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: 64 * 1024,
    genReqId: () => randomUUID(),
  }) as unknown as FastifyInstance;
  const page = dashboardPage();

  app.addHook("onRequest", async function adminToken(request: FastifyRequest, reply: FastifyReply) {
    // A page in the operator's browser must not drive the admin API (a body-less POST is a
    // "simple" cross-origin request): a POST whose Origin is not this listener's is refused.
    const origin = request.headers.origin;
    if (request.method === "POST" && origin !== undefined && !sameOrigin(origin, request.headers.host))
      return sendError(reply, "SY_UNAUTHORIZED", request.id, "cross-origin admin requests are refused");
    const token = ops.config().admin?.token;
    if (!token || OPEN.has(request.routeOptions.url ?? "")) return;
    if (!tokenMatches(request.headers.authorization, token))
      return sendError(reply, "SY_UNAUTHORIZED", request.id);
  });
  app.setErrorHandler(function adminError(err: Error & { statusCode?: number }, request, reply) {
    const status = err.statusCode ?? 500;
    if (status >= 500) request.log.error({ err }, "admin error");
    sendError(
      reply,
      status >= 500 ? "SY_INTERNAL" : "SY_BAD_REQUEST",
      request.id,
      status >= 500 ? undefined : err.message,
    );
  });
  app.setNotFoundHandler((request, reply) => sendError(reply, "SY_NO_ROUTE", request.id));

  // The page holds no data (every call it makes carries the token): a browser may keep it but
  // asks each time (no-cache), and gets 304 while it is unchanged (@fastify/caching, issue 12).
  app.register(async function dashboard(scope) {
    await useCaching(scope, { privacy: "no-cache" }, { tag: fixedEtag(page) });
    scope.get("/", (_req, reply) => reply.type("text/html; charset=utf-8").send(page));
  });
  app.get("/healthz", async () => ({ status: "ok" }));
  app.get("/readyz", async (_req, reply) => {
    const r = await ops.ready();
    return reply.code(r.ready ? 200 : 503).send(r);
  });
  app.get("/metrics", async (_req, reply) => {
    const { text, contentType } = await ops.metrics();
    return reply.type(contentType).send(text);
  });
  app.get("/admin/upstreams", async () => ({ services: await ops.upstreams() }));
  app.get("/admin/config", async () => maskConfig(ops.config()));
  app.get("/admin/stats", async () => ops.stats());
  app.post("/admin/cache/purge", async (request, reply) => {
    const body = (request.body ?? {}) as PurgeRequest;
    const prefixOk =
      body.prefix === undefined || (typeof body.prefix === "string" && body.prefix.startsWith("/"));
    const tagsOk =
      body.tags === undefined || (Array.isArray(body.tags) && body.tags.every((t) => typeof t === "string"));
    if (!prefixOk || !tagsOk || (body.prefix === undefined && body.tags === undefined))
      return sendError(
        reply,
        "SY_BAD_REQUEST",
        request.id,
        'expected {"prefix": "/path"} or {"tags": ["tag"]}',
      );
    return ops.purge({ prefix: body.prefix, tags: body.tags });
  });
  for (const [verb, draining] of [
    ["drain", true],
    ["undrain", false],
  ] as const)
    app.post<{ Params: { service: string; target: string } }>(
      `/admin/upstreams/:service/:target/${verb}`,
      async (request, reply) => {
        const { service, target } = request.params;
        const r = await ops.drain(service, target, draining);
        return (
          r ?? sendError(reply, "SY_NOT_FOUND", request.id, `no target '${target}' in service '${service}'`)
        );
      },
    );
  app.post("/admin/reload", async (_req, reply) => {
    const r = await ops.reload();
    return reply.code(r.result === "success" ? 200 : 422).send(r);
  });

  try {
    await app.listen({
      port: cfg.port,
      host: cfg.host,
      listenTextResolver: (address) => `admin listening on ${address}`,
    });
  } catch (err) {
    await app.close();
    throw listenError(cfg.host, cfg.port, err as NodeJS.ErrnoException, "admin ");
  }
  const a = app.server.address() as AddressInfo;
  return {
    address: { host: a.address, port: a.port },
    app,
    close: () => app.close(),
  };
}
