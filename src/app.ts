/**
 * build(config) → an un-listened Fastify instance serving one config
 * generation; `switchyard` is the same thing as a plugin for teams that embed
 * the gateway in their own Fastify app.
 *
 * Routing: find-my-way orders routes static → parametric → wildcard, not "first
 * match in file order". So every config route is registered as `/*` with a
 * custom constraint, and the constraint strategy runs the gateway's own
 * first-match matcher (on the normalised path). find-my-way then dispatches to
 * that route's encapsulated scope, which carries exactly the hooks the route
 * needs — decided here, once, not per request.
 */
import type { IncomingMessage } from "node:http";
import Fastify, {
  type FastifyError,
  type FastifyInstance,
  type FastifyReply,
  type FastifyRequest,
  type FastifyServerOptions,
  LogController,
} from "fastify";
import fp from "fastify-plugin";
import type { Logger } from "pino";
import { forwarder, passthroughParser, proxyHandler } from "../plugins/balance.js";
import { healthChecks } from "../plugins/health.js";
import l4Tcp from "../plugins/l4-tcp.js";
import l4Udp from "../plugins/l4-udp.js";
import { proxyLane } from "../plugins/proxy-lane.js";
import { type RouteTiming, routeTiming } from "../plugins/server-timing.js";
import { failedPlugin, switchyardView } from "../plugins/user-plugins.js";
import { websocketRoute, websockets } from "../plugins/websocket.js";
import { onResponseClose } from "./access-log.js";
import { verifiers } from "./auth/verifier.js";
import { loadPlugins } from "./config/plugins.js";
import type { Config } from "./config/schema.js";
import { Methods } from "./config/schema.js";
import {
  type ErrorCode,
  errorCodeOf,
  errorResponse,
  errors,
  isGatewayError,
  isGrpcRequest,
} from "./errors.js";
import { buildGeneration, type CompiledRoute, type Generation } from "./generation.js";
import { sendGrpcError } from "./grpc-error.js";
import { planOf } from "./lane-plan.js";
import { FORWARD_LANE, laneable, type Policy, type PolicyOptions, policies } from "./policies.js";
import { genReqId, kState } from "./request-state.js";
import { matchIncoming } from "./router/incoming.js";
import { normalizePath, splitTarget } from "./router/normalize.js";
import { timesRequests } from "./server-timing.js";
import { clientTraceId } from "./tracing.js";

export { genReqId };

export interface SwitchyardOptions {
  config: Config;
  /** A prebuilt generation (reload keeps target state); built from config when absent. */
  generation?: Generation;
  /** Bind the config's tcp/udp listeners with this instance (default true; the Gateway owns them itself). */
  l4?: boolean;
}

const BAD_PATH = "bad-path";
/** The find-my-way strategy that asks the gateway's matcher which route this is. */
function routeStrategy(generation: Generation) {
  const { matcher } = generation;
  return {
    name: "syRoute",
    mustMatchWhenDerived: true,
    storage() {
      const handlers = new Map<string, unknown>();
      return {
        get: (v: string) => handlers.get(v) ?? null,
        set: (v: string, store: unknown) => void handlers.set(v, store),
      };
    },
    validate() {},
    deriveConstraint(req: IncomingMessage): string | undefined {
      const st = matchIncoming(matcher, req);
      return st === null ? BAD_PATH : st?.route.id;
    },
  };
}

export const switchyard = fp<SwitchyardOptions>(
  async function switchyard(app, opts) {
    const generation = opts.generation ?? buildGeneration(opts.config);
    // Routes' own plugins are imported and checked before any scope is built (a ConfigError fails
    // start or reload here); memoised, so a caller that awaited it already (cli --check) pays nothing.
    await loadPlugins(generation.config, generation.baseDir);
    // A getter on Request's prototype: no cost to a request that does not read it.
    app.decorateRequest("switchyard", { getter: switchyardView });
    // Fastify 5 knows the common methods; the WebDAV ones routes may name are added.
    for (const m of Methods) if (!app.supportedMethods.includes(m)) app.addHttpMethod(m, { hasBody: true });
    app.addConstraintStrategy(routeStrategy(generation) as never);
    await traceRoutes(app, generation);
    await app.register(async function gateway(scope) {
      await scope.register(forwarder, { generation });
      await scope.register(verifiers, { generation });
      await scope.register(healthChecks, { generation });
      await scope.register(websockets, { generation });
      if (opts.l4 !== false) {
        await scope.register(l4Tcp, { generation });
        await scope.register(l4Udp, { generation });
      }
      scope.setErrorHandler(errorHandler);
      scope.setNotFoundHandler(function noRoute(request, reply) {
        generation.unroutedMetrics?.observe(undefined, 404, reply.elapsedTime);
        logRejected(request, reply, 404);
        sendError(reply, "SY_NO_ROUTE", request.id);
      });
      // Bodies are never parsed on proxied routes: any content type passes byte for byte.
      scope.removeAllContentTypeParsers();
      scope.route({
        method: Methods as unknown as string[],
        url: "/*",
        constraints: { syRoute: BAD_PATH },
        handler: function badPath(request, reply) {
          generation.unroutedMetrics?.observe(undefined, 400, reply.elapsedTime);
          logRejected(request, reply, 400);
          sendError(reply, "SY_BAD_PATH", request.id);
        },
      });
      for (const route of generation.routes) await scope.register(routeScope, { route, generation });
    });
  },
  { name: "switchyard", fastify: "5.x" },
);

/**
 * With `tracing.otlp`, every route of the generation records spans through one
 * SDK provider (loaded only then), flushed and stopped when the instance
 * closes. Without it no route has a tracer: the W3C header work in
 * src/tracing.ts is all a request does (issue 14).
 */
async function traceRoutes(app: FastifyInstance, generation: Generation): Promise<void> {
  const cfg = generation.config.tracing;
  if (cfg?.otlp === undefined) return;
  const { startTracing } = await import("./tracing-otel.js");
  const tracing = startTracing(cfg);
  for (const route of generation.routes) route.tracer = tracing.tracer;
  app.addHook("onClose", async function tracingShutdown() {
    await tracing.shutdown();
  });
}

/**
 * One route's own encapsulated scope: its parser limit, its hooks, its handler.
 * Server-Timing's markers, header hook and forwarder wrapper exist only when
 * some listener has serverTiming (plugins/server-timing.ts).
 */
async function routeScope(
  scope: FastifyInstance,
  { route, generation }: { route: CompiledRoute; generation: Generation },
) {
  const respond = route.config.respond;
  const timing = timesRequests(generation.config) ? routeTiming(route) : undefined;
  scope.addContentTypeParser("*", passthroughParser(route.bodyLimit));
  scope.addHook("onRequest", attach);
  for (const p of policies)
    if (p.applies(route.config)) await registerPolicy(scope, p, { route, generation }, timing);
  // After every policy's onSend (cache, transform, CORS): it sees the final status and cache label.
  if (timing) scope.addHook("onSend", timing.header);
  const proxy = respond || route.config.websocket ? undefined : proxyHandler(route, timing?.headObserver);
  scope.route({
    method: Methods as unknown as string[],
    url: "/*",
    constraints: { syRoute: route.id },
    handler: respond
      ? respondHandler(respond)
      : proxy
        ? (timing?.forward(proxy) ?? proxy)
        : websocketRoute(route),
  });
  // The lane gets the bare handler: requests of a serverTiming listener never take a lane.
  if (proxy !== undefined && laneable(route, generation.config, FORWARD_LANE))
    generation.lanes.set(route.id, proxyLane(proxy, scope, planOf(route)));
}

/** A policy into the route's scope; with Server-Timing about, between the markers of its span. */
async function registerPolicy(scope: FastifyInstance, p: Policy, opts: PolicyOptions, timing?: RouteTiming) {
  const span = p.timing && timing?.span(p.timing.metric);
  // Same phase as the policy's own hooks; registration order is run order within a phase.
  if (span) scope.addHook(p.timing!.hook as "onRequest", span.begin);
  await scope.register(p.plugin, opts);
  if (span) scope.addHook(p.timing!.hook as "onRequest", span.end);
}

/** Tie the request state to its Fastify objects and to the response's end. */
function attach(request: FastifyRequest, reply: FastifyReply, done: () => void): void {
  const st = request.raw[kState]!;
  st.request = request;
  st.reply = reply;
  st.route.live.n++;
  reply.raw.once("close", onResponseClose);
  done();
}

/** Access line for requests that never reached a route. */
function logRejected(request: FastifyRequest, reply: FastifyReply, statusCode: number): void {
  // The path as routing saw it: normalised when it could be, never with its query (tokens live there).
  const raw = splitTarget(request.url).path;
  request.log.info(
    {
      method: request.method,
      path: normalizePath(raw) ?? raw,
      statusCode,
      responseTime: Math.round(reply.elapsedTime * 1000) / 1000,
      remoteAddress: request.ip,
      traceId: clientTraceId(request.headers.traceparent),
    },
    "request",
  );
}

function respondHandler(respond: NonNullable<CompiledRoute["config"]["respond"]>) {
  const headers = { ...respond.headers };
  return function direct(request: FastifyRequest, reply: FastifyReply) {
    reply
      .code(respond.status)
      .headers(headers)
      .header("x-request-id", request.id)
      .send(respond.body ?? "");
  };
}

function sendError(reply: FastifyReply, code: ErrorCode, requestId: string, message?: string): void {
  // A gRPC client reads a gRPC status, not JSON (SPEC §5).
  if (isGrpcRequest(reply.request.headers)) {
    sendGrpcError(reply, code, requestId, message);
    return;
  }
  const { status, headers, body } = errorResponse(code, requestId, message);
  // HTTP/2 has no Connection header (RFC 9113 §8.2.2): its stream ends with the answer anyway.
  if (reply.request.raw.httpVersionMajor === 2) delete headers.connection;
  reply.code(status).headers(headers).send(body);
}

/** Every error leaves as SPEC §5 JSON; unexpected ones are logged with their stack, never sent. */
function errorHandler(
  this: FastifyInstance,
  error: FastifyError,
  request: FastifyRequest,
  reply: FastifyReply,
) {
  // A route plugin's own error is a 500 whatever status it carries (issue 13); our codes keep theirs.
  const plugin = failedPlugin(request);
  const code = plugin !== undefined && !isGatewayError(error) ? "SY_INTERNAL" : errorCodeOf(error);
  if (plugin !== undefined && code === "SY_INTERNAL")
    request.log.error({ err: error, route: request.raw[kState]?.route.name, plugin }, "route plugin failed");
  else if (code === "SY_INTERNAL") request.log.error({ err: error }, "unexpected error");
  sendError(reply, code, request.id);
}

export interface BuildOptions {
  logger?: Logger | false;
  generation?: Generation;
  l4?: boolean;
  fastify?: Partial<FastifyServerOptions>;
}

/** An un-listened Fastify instance for one config (tests drive it with inject or real sockets). */
export async function build(config: Config, opts: BuildOptions = {}): Promise<FastifyInstance> {
  const app = Fastify({
    ...(opts.logger ? { loggerInstance: opts.logger } : { logger: false }),
    // Fastify's two lines per request are replaced by one access line (onResponseClose).
    logController: new LogController({ disableRequestLogging: true }),
    genReqId,
    exposeHeadRoutes: false,
    trustProxy: config.trustProxy as boolean | string[],
    // Oversized or malformed requests are answered by the server's clientError handler.
    return503OnClosing: true,
    frameworkErrors(error, request, reply) {
      sendError(reply, error.code === "FST_ERR_BAD_URL" ? "SY_BAD_PATH" : "SY_BAD_REQUEST", request.id);
    },
    ...opts.fastify,
  }) as unknown as FastifyInstance;
  await app.register(switchyard, { config, generation: opts.generation, l4: opts.l4 });
  return app;
}

export { errors };
