/**
 * Drain (SPEC §8 `POST /admin/upstreams/:service/:target/drain`): a drained
 * target gets no new requests, connections or WebSocket tunnels; what is in
 * flight finishes. Drain is per generation: a reload builds fresh targets.
 */
import type { Service } from "./service.js";
import type { Target } from "./target.js";

/** The part of a Generation a drain needs (kept structural: no import cycle with generation.ts). */
export interface HasServices {
  readonly services: ReadonlyMap<string, Service>;
}

/**
 * Stop new work to one target of a service. `target` is the URL as written in
 * routes.yaml, its origin, `host:port`, or its index in the list. Returns the
 * target (await `target.whenIdle()` for in-flight work to end), or undefined
 * when the service or target is unknown.
 */
export function drainTarget(generation: HasServices, service: string, target: string): Target | undefined {
  return setDraining(generation, service, target, true);
}

/** Undo a drain: the target takes new work again (if healthy). */
export function undrainTarget(generation: HasServices, service: string, target: string): Target | undefined {
  return setDraining(generation, service, target, false);
}

function setDraining(g: HasServices, service: string, id: string, draining: boolean): Target | undefined {
  const t = g.services.get(service)?.target(id);
  if (t !== undefined) t.draining = draining;
  return t;
}
