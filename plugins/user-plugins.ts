/**
 * A route's own Fastify plugins (issue 13), registered into the route's
 * encapsulated scope after the built-in auth and rate limits, before the cache
 * lookup and the forwarder (src/policies.ts orders it). They were imported and
 * checked at load (src/config/plugins.ts); here they only register.
 *
 * - No fastify-plugin wrapper is asked of the author: each plugin is
 *   registered with skip-override into the route's scope, because the route is
 *   declared there and a child scope's hooks would never run for it. The
 *   scope is the route's alone, so its hooks still see only this route.
 * - Every request hook a plugin adds is watched: while one runs, the request
 *   remembers which plugin it is in, so an error it throws is answered 500
 *   SY_INTERNAL and logged with the route and the plugin (app.ts
 *   errorHandler), and a hook that never calls back is named when the
 *   route's timeout cuts it (504).
 * - `request.switchyard` is what the gateway knows that a plugin may use.
 */
import type { FastifyInstance, FastifyPluginAsync, FastifyReply, FastifyRequest } from "fastify";
import fp from "fastify-plugin";
import { ConfigError, pathString, sourceOf } from "../src/config/load.js";
import { type LoadedPlugin, loadPlugins } from "../src/config/plugins.js";
import { errors } from "../src/errors.js";
import type { CompiledRoute } from "../src/generation.js";
import type { PolicyOptions } from "../src/policies.js";
import { kState } from "../src/request-state.js";

/** What `request.switchyard` holds on a route (read it in a hook; it is computed per read). */
export interface SwitchyardRequest {
  /** The route's `name` in routes.yaml. */
  readonly route: string;
  /** The verified JWT payload, when the route has `auth` and the token passed; else undefined. */
  readonly claims: Readonly<Record<string, unknown>> | undefined;
  /** The service the request goes to (a split picks it on first read, and the forwarder keeps it). */
  readonly service: string | undefined;
}

/** A route plugin: a plain Fastify plugin whose options come from routes.yaml. */
export type SwitchyardPlugin<Options extends Record<string, unknown> = Record<string, unknown>> =
  FastifyPluginAsync<Options>;

declare module "fastify" {
  interface FastifyRequest {
    /** Switchyard's view of this request (route name, verified claims, chosen service). */
    readonly switchyard: SwitchyardRequest;
  }
}

/** The `request.switchyard` getter (app.ts decorates Request with it once). */
export function switchyardView(this: FastifyRequest): SwitchyardRequest {
  const st = this.raw[kState]!;
  // Picked here, not in the forwarder, when a plugin asks first: the answer must be where it goes.
  if (st.service === undefined && st.route.pickService !== undefined) st.service = st.route.pickService();
  return { route: st.route.name, claims: st.claims, service: st.service?.name };
}

/** Which plugin a request is inside (set while one of its hooks runs, kept when it fails). */
const inPlugin = new WeakMap<FastifyRequest, string>();

/** The plugin whose hook failed or hangs for this request, if any. */
export function failedPlugin(request: FastifyRequest): string | undefined {
  return inPlugin.get(request);
}

const WATCHED = new Set([
  "onRequest",
  "preParsing",
  "preValidation",
  "preHandler",
  "preSerialization",
  "onSend",
]);
const clocks = new WeakMap<FastifyRequest, NodeJS.Timeout>();

export const userPlugins = fp(
  async function userPlugins(scope: FastifyInstance, { route, generation }: PolicyOptions) {
    const list = (await loadPlugins(generation.config, generation.baseDir)).get(Number(route.id)) ?? [];
    const limit = routeTimeout(route);
    // The route's timeout covers its plugins' hooks: upstream timeouts only start at the forwarder.
    scope.addHook("onRequest", function startPluginClock(request, reply, done) {
      const timer = setTimeout(cutHungPlugin, limit, request, reply);
      clocks.set(request, timer);
      reply.raw.once("close", () => clearTimeout(timer));
      done();
    });
    // X-Request-Id goes back on every answer (SPEC §3), a plugin's own answers included.
    scope.addHook("onSend", function requestIdOnPluginAnswers(request, reply, payload, done) {
      if (!reply.hasHeader("x-request-id")) reply.header("x-request-id", request.id);
      done(null, payload);
    });
    for (const p of list) await scope.register(inRouteScope(p, generation.config), p.options);
    scope.addHook("preHandler", function stopPluginClock(request, _reply, done) {
      clearTimeout(clocks.get(request));
      done();
    });
  },
  { name: "switchyard-user-plugins", fastify: "5.x" },
);

function routeTimeout(route: CompiledRoute): number {
  if (route.timeout !== undefined) return route.timeout;
  const services = route.services.map((s) => s.timeouts.request);
  return services.length ? Math.max(...services) : 30_000;
}

function cutHungPlugin(request: FastifyRequest, reply: FastifyReply): void {
  if (reply.sent || request.raw[kState]?.ended) return;
  const plugin = inPlugin.get(request);
  request.log.error(
    { route: request.raw[kState]?.route.name, plugin },
    "a route plugin did not finish within the route's timeout",
  );
  reply.send(new errors.SY_UPSTREAM_TIMEOUT());
}

type AnyPlugin = (
  app: FastifyInstance,
  opts: Record<string, unknown>,
  done?: (err?: Error) => void,
) => unknown;

/** The plugin, registered into the route's own scope (skip-override) with its hooks watched. */
function inRouteScope(p: LoadedPlugin, config: PolicyOptions["generation"]["config"]) {
  const plugin = p.plugin as unknown as AnyPlugin;
  async function register(scope: FastifyInstance, opts: Record<string, unknown>) {
    const own = Object.getOwnPropertyDescriptor(scope, "addHook");
    const addHook = scope.addHook;
    scope.addHook = function watchedAddHook(this: FastifyInstance, name: string, fn: unknown) {
      return addHook.call(
        this,
        name as never,
        (WATCHED.has(name) ? watched(fn as Hook, p.name) : fn) as never,
      );
    } as typeof addHook;
    try {
      await (plugin.length >= 3 ? callbackPlugin(plugin, scope, opts) : plugin(scope, opts));
    } catch (err) {
      const src = sourceOf(config);
      const at = src?.locate(p.at) ?? { line: 0, col: 0 };
      const message = `plugin '${p.name}' failed to start: ${(err as Error)?.message ?? String(err)}`;
      throw new ConfigError(src?.shown ?? "routes.yaml", [{ ...at, path: pathString(p.at), message }]);
    } finally {
      if (own) Object.defineProperty(scope, "addHook", own);
      else delete (scope as { addHook?: unknown }).addHook;
    }
  }
  Object.assign(register, {
    [Symbol.for("skip-override")]: true,
    [Symbol.for("fastify.display-name")]: p.name,
  });
  return register;
}

function callbackPlugin(plugin: AnyPlugin, scope: FastifyInstance, opts: Record<string, unknown>) {
  return new Promise<void>((resolve, reject) => {
    const r = plugin(scope, opts, (err) => (err ? reject(err) : resolve()));
    if (r && typeof (r as Promise<void>).then === "function")
      (r as Promise<void>).then(() => resolve(), reject);
  });
}

type Hook = (this: unknown, ...args: unknown[]) => unknown;

/**
 * The hook, marking the request as inside `plugin` until it completes. A throw,
 * a rejection or done(err) leaves the mark for the error handler; so does a
 * hook that never completes, for the timeout's log line.
 */
function watched(fn: Hook, plugin: string): Hook {
  return function pluginHook(this: unknown, ...args: unknown[]) {
    const request = args[0] as FastifyRequest;
    const last = args.length - 1;
    const next = args[last] as (...a: unknown[]) => void;
    inPlugin.set(request, plugin);
    args[last] = function pluginDone(...a: unknown[]) {
      if (!a[0]) inPlugin.delete(request);
      next(...a);
    };
    const result = fn.apply(this, args);
    if (result && typeof (result as Promise<unknown>).then === "function")
      return (result as Promise<unknown>).then((v) => {
        inPlugin.delete(request);
        return v;
      });
    return result;
  };
}
