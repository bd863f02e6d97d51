/**
 * Everything built from one config, hung off one immutable object (ARCHITECTURE
 * principle 7): services with their targets and balancers, compiled routes and
 * the first-match matcher. A reload builds the next generation beside this one;
 * a request keeps the generation it started with.
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import { bytes, ms } from "./config/duration.js";
import type { Config, RouteConfig } from "./config/schema.js";
import type { RouteMetrics } from "./metrics/cells.js";
import type { RequestState } from "./request-state.js";
import { compileMatcher, type Matcher } from "./router/match.js";
import { compileRewrite, type Rewrite } from "./router/rewrite.js";
import type { RouteTracer } from "./tracing.js";
import { buildServices, type Service } from "./upstreams/service.js";

export interface CompiledRoute {
  /** Position in routes.yaml; also the find-my-way constraint value. */
  readonly id: string;
  readonly name: string;
  readonly config: RouteConfig;
  /** Picks the service for one request (a split is smooth weighted round robin). */
  readonly pickService: (() => Service) | undefined;
  readonly services: readonly Service[];
  readonly rewrite: Rewrite;
  readonly hostRewrite: string | undefined;
  /** The route's own upstream timeout (ms); the chosen service's applies when absent. */
  readonly timeout: number | undefined;
  readonly bodyLimit: number;
  /** Its generation's count of requests being answered (shared by the generation's routes). */
  readonly live: Live;
  /** The route's metric cells, bound by Metrics.bind before the generation serves; absent without `admin`. */
  metrics?: RouteMetrics;
  /** Span export (src/tracing-otel.ts), set at load when `tracing.otlp` is; absent otherwise. */
  tracer?: RouteTracer;
}

/** Requests of one generation still being answered: a reload closes the old one once they are done. */
export interface Live {
  n: number;
  /** Called when `n` drops to 0 (set while a retired generation waits). */
  idle?: () => void;
}

export interface Generation {
  readonly config: Config;
  readonly live: Live;
  /** Directory that relative file paths in the config (keys, certificates) are read from. */
  readonly baseDir: string;
  readonly services: ReadonlyMap<string, Service>;
  readonly routes: readonly CompiledRoute[];
  readonly matcher: Matcher<CompiledRoute>;
  /**
   * Fast lanes by route id: a route's way to answer some requests before
   * Fastify sees them (server.ts), registered by its policy plugins at load.
   */
  readonly lanes: Map<string, Lane>;
  /** Cells for requests no route takes (404, 400), bound with the routes' own. */
  unroutedMetrics?: RouteMetrics;
}

/**
 * Answers the request and returns true, or returns false and leaves it untouched for Fastify.
 * A lane that must wait to know (the Redis cache lane) may also take it (true) and later give
 * it, untouched, to `resume` (server.ts: Fastify); without a `resume` it must decide at once.
 */
export type Lane = (
  req: IncomingMessage,
  res: ServerResponse,
  st: RequestState,
  resume?: (req: IncomingMessage, res: ServerResponse) => void,
) => boolean;

export function buildGeneration(config: Config, baseDir: string = process.cwd()): Generation {
  const services = buildServices(config.services, config.dnsServers, baseDir);
  const live: Live = { n: 0 };
  const routes = config.routes.map((r, i) => compileRoute(r, i, services, live));
  const matcher = compileMatcher(routes.map((route) => ({ spec: route.config.match ?? {}, value: route })));
  return { config, baseDir, services, routes, matcher, lanes: new Map(), live };
}

function compileRoute(
  r: RouteConfig,
  index: number,
  services: Map<string, Service>,
  live: Live,
): CompiledRoute {
  const list =
    r.service !== undefined
      ? [services.get(r.service)!]
      : (r.split ?? []).map((s) => services.get(s.service)!);
  const weights = r.split ? r.split.map((s) => s.weight) : [1];
  const match = r.match ?? { path: "/", pathType: "prefix" as const };
  return {
    id: String(index),
    name: r.name,
    config: r,
    services: list,
    pickService:
      list.length === 0 ? undefined : list.length === 1 ? () => list[0] : splitPicker(list, weights),
    rewrite: compileRewrite(r.rewrite, match.path ?? "/", match.pathType ?? "prefix"),
    hostRewrite: r.rewrite?.host,
    timeout: r.timeout !== undefined ? ms(r.timeout) : undefined,
    bodyLimit: bytes(r.bodyLimit),
    live,
  };
}

/** Smooth weighted round robin over services: a 90/10 split is exactly 9 in 10. */
function splitPicker(list: Service[], weights: number[]): () => Service {
  const current = new Float64Array(list.length);
  const total = weights.reduce((a, b) => a + b, 0);
  return () => {
    let best = 0;
    for (let i = 0; i < list.length; i++) {
      current[i] += weights[i];
      if (current[i] > current[best]) best = i;
    }
    current[best] -= total;
    return list[best];
  };
}
