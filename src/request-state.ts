/**
 * Per-request gateway state, hung off the raw IncomingMessage under a symbol:
 * the router's decision (made while find-my-way derives constraints, before
 * Fastify creates its Request) travels to the hooks and the forwarder here.
 */
import { randomUUID } from "node:crypto";
import type { IncomingMessage } from "node:http";
import type { FastifyReply, FastifyRequest } from "fastify";
import type { CompiledRoute } from "./generation.js";
import type { Service } from "./upstreams/service.js";
import type { Target } from "./upstreams/target.js";

export const kState = Symbol("switchyard.state");

const REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;

/** X-Request-Id: keep a valid one from the client, else make one (SPEC §3). */
export function genReqId(req: IncomingMessage): string {
  const h = req.headers["x-request-id"];
  return typeof h === "string" && REQUEST_ID.test(h) ? h : randomUUID();
}

export interface RequestState {
  route: CompiledRoute;
  /** Normalised path: what was matched is what is forwarded. */
  path: string;
  /** Raw query string without '?'. */
  query: string;
  params: Record<string, string> | undefined;
  rest: string;
  request?: FastifyRequest;
  reply?: FastifyReply;
  service?: Service;
  target?: Target;
  /** Targets that failed this request (never picked again by a retry). */
  tried?: Set<Target>;
  /** Verified JWT payload, set by the auth policy. */
  claims?: Record<string, unknown>;
  /** Content-Length of a response written around Fastify (the access line's bytes). */
  contentLength?: string;
  /** The response has closed (finished or aborted): nothing may be forwarded for it any more. */
  ended?: boolean;
  /** Set when the streamed body went over the route's bodyLimit. */
  tooLarge?: boolean;
}

declare module "node:http" {
  interface IncomingMessage {
    [kState]?: RequestState;
  }
}
