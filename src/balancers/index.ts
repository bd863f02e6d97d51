/**
 * Balancer registry: name in routes.yaml → factory, keyed by the schema's own list
 * (BalancerNames), so a name cannot be added to one and not the other. createBalancer()
 * still throws on an unknown one so a programming error cannot silently fall back to
 * another algorithm.
 */
import type { BalancerNames } from "../config/schema.js";
import type { Target } from "../upstreams/target.js";
import { consistentHash } from "./consistent-hash.js";
import { ipHash } from "./ip-hash.js";
import { leastConnections } from "./least-connections.js";
import { p2c } from "./p2c.js";
import { random } from "./random.js";
import { roundRobin } from "./round-robin.js";
import type { Balancer, BalancerFactory } from "./types.js";

export type BalancerName = (typeof BalancerNames)[number];

export const balancers: Record<BalancerName, BalancerFactory> = {
  "round-robin": roundRobin,
  "least-connections": leastConnections,
  // Wrapped so the registry's factories take exactly (targets); tests call p2c()/random() directly to seed.
  p2c: (targets) => p2c(targets),
  random: (targets) => random(targets),
  "ip-hash": ipHash,
  "consistent-hash": consistentHash,
};

/** The names, in a stable order (for the config schema's enum and error messages). */
export const balancerNames = Object.keys(balancers) as BalancerName[];

export function createBalancer(name: string, targets: readonly Target[]): Balancer {
  if (!Object.hasOwn(balancers, name)) {
    throw new Error(`unknown balancer "${name}" (expected one of: ${balancerNames.join(", ")})`);
  }
  return balancers[name as BalancerName](targets);
}
