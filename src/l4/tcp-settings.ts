/**
 * A TCP listener's settings compiled once per config generation: durations in
 * ms and the service lookup (fixed, or by SNI). A connection reads the
 * settings object current when it was accepted and keeps it for its life, so
 * a reload changes new connections only (ARCHITECTURE principle 7).
 */
import { ms } from "../config/duration.js";
import type { TcpListenerConfig } from "../config/schema.js";
import type { Service } from "../upstreams/service.js";
import { compileSniRoute, type SniRoute } from "./sni-route.js";

export interface TcpSettings {
  readonly name: string;
  readonly host: string;
  readonly port: number;
  readonly connectTimeout: number;
  readonly idleTimeout: number;
  readonly maxConnections: number;
  readonly proxyProtocol: "v1" | "v2" | undefined;
  readonly acceptProxyProtocol: boolean;
  /** Time allowed for the PROXY header and the ClientHello together. */
  readonly prefaceTimeout: number;
  /** The service for every connection, when not routed by SNI. */
  readonly service: Service | undefined;
  /** TLS passthrough: server name → service (with the default); undefined when not SNI-routed. */
  readonly sni: SniRoute<Service> | undefined;
}

/** HAProxy and Envoy both wait a few seconds at most for a PROXY header or a ClientHello. */
export const DEFAULT_PREFACE_TIMEOUT = 5000;

export function compileTcpSettings(
  cfg: TcpListenerConfig,
  services: ReadonlyMap<string, Service>,
  prefaceTimeout = DEFAULT_PREFACE_TIMEOUT,
): TcpSettings {
  const lookup = (name: string): Service => {
    const s = services.get(name);
    // The config checks reject unknown names; reaching this is a programming error.
    if (s === undefined) throw new Error(`tcp listener "${cfg.name}": unknown service "${name}"`);
    return s;
  };
  const sniTable = cfg.sni
    ? Object.fromEntries(Object.entries(cfg.sni).map(([k, v]) => [k, lookup(v)]))
    : undefined;
  const fallback = cfg.default !== undefined ? lookup(cfg.default) : undefined;
  return {
    name: cfg.name,
    host: cfg.listen.host,
    port: cfg.listen.port,
    connectTimeout: ms(cfg.connectTimeout),
    idleTimeout: ms(cfg.idleTimeout),
    maxConnections: cfg.maxConnections,
    proxyProtocol: cfg.proxyProtocol,
    acceptProxyProtocol: cfg.acceptProxyProtocol,
    prefaceTimeout,
    service: cfg.service !== undefined ? lookup(cfg.service) : undefined,
    sni: sniTable ? compileSniRoute(sniTable, fallback) : undefined,
  };
}
