/**
 * What the admin listener can ask of the gateway, behind one small interface
 * so plugins/admin.ts serves one process (LocalOps, here) and a tree of
 * workers (ClusterOps, cluster.ts) the same way.
 */
import type { PurgeRequest, PurgeResult } from "../cache/purge.js";
import type { Config } from "../config/schema.js";
import type { ReloadResult, ServiceSnapshot, Stats } from "./snapshot.js";

export interface Readiness {
  ready: boolean;
  /** Why not, one reason a line (empty when ready). */
  reasons: string[];
}

export type DrainResult = { service: string; target: string; draining: boolean } | undefined;

export interface AdminOps {
  /** The config running now (the admin plugin masks it). */
  config(): Config;
  ready(): Promise<Readiness>;
  /** Prometheus text and its content type. */
  metrics(): Promise<{ text: string; contentType: string }>;
  upstreams(): Promise<ServiceSnapshot[]>;
  stats(): Promise<Stats>;
  purge(req: PurgeRequest): Promise<PurgeResult>;
  /** Drain (or undrain) one target; undefined when the service or target is unknown. */
  drain(service: string, target: string, draining: boolean): Promise<DrainResult>;
  /** Reload from the config file: the same path as SIGHUP and watch. */
  reload(): Promise<ReloadResult>;
}
