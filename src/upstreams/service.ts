/**
 * A service: its targets, one balancer instance and the policy knobs the
 * forwarders need, built once per config generation. `pick` is the only call
 * on the hot path.
 */
import type { IncomingMessage } from "node:http";
import { createBalancer } from "../balancers/index.js";
import type { Balancer, PickContext } from "../balancers/types.js";
import { ms } from "../config/duration.js";
import type { ServiceConfig } from "../config/schema.js";
import { Target } from "./target.js";

export interface ServiceTimeouts {
  connect: number;
  request: number;
  idle: number;
}

/** Extracts the consistent-hash key from an L7 request (decided at load time). */
export type KeyFn = (req: IncomingMessage, path: string, ip: string) => string | undefined;

export class Service {
  readonly targets: readonly Target[];
  readonly balancer: Balancer;
  readonly timeouts: ServiceTimeouts;
  readonly keyOf: KeyFn | undefined;

  constructor(
    readonly name: string,
    readonly config: ServiceConfig,
  ) {
    this.targets = config.targets.map(
      (t, index) =>
        new Target(typeof t === "string" ? { url: t, index } : { url: t.url, weight: t.weight, index }),
    );
    this.balancer = createBalancer(config.balancer, this.targets);
    this.timeouts = {
      connect: ms(config.timeouts?.connect ?? "2s"),
      request: ms(config.timeouts?.request ?? "30s"),
      idle: ms(config.timeouts?.idle ?? "60s"),
    };
    this.keyOf = config.balancer === "consistent-hash" ? keyFunction(config.hash) : undefined;
  }

  /** Choose a target for new work, or undefined when none is available. */
  pick(ctx: PickContext): Target | undefined {
    return this.balancer.select(this.targets, ctx);
  }
}

function keyFunction(hash: ServiceConfig["hash"]): KeyFn {
  const name = hash?.name?.toLowerCase() ?? "";
  switch (hash?.on ?? "ip") {
    case "header":
      return (req) => {
        const v = req.headers[name];
        return Array.isArray(v) ? v[0] : v;
      };
    case "cookie": {
      const re = new RegExp(`(?:^|;\\s*)${name.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}=([^;]*)`);
      return (req) => re.exec(req.headers.cookie ?? "")?.[1];
    }
    case "path":
      return (_req, path) => path;
    case "query": {
      const re = new RegExp(`[?&]${encodeURIComponent(hash?.name ?? "")}=([^&#]*)`);
      return (req) => re.exec(req.url ?? "")?.[1];
    }
    default:
      return (_req, _path, ip) => ip;
  }
}

/** Every service of a config, by name. */
export function buildServices(services: Record<string, ServiceConfig>): Map<string, Service> {
  return new Map(Object.entries(services).map(([name, cfg]) => [name, new Service(name, cfg)]));
}
