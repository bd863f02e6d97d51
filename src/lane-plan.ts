/**
 * One decision, two doors (ARCHITECTURE principle 12) for the edge policies.
 *
 * A policy registers its hooks through `policyHook` and `headEdit` instead of
 * `scope.addHook`: the hook goes into the route's Fastify scope as always AND
 * into the route's lane plan, in the same order. The forwarding lane
 * (plugins/proxy-lane.ts) then runs the very same hook functions, in
 * Fastify's order (every onRequest hook, then every preHandler hook), on its
 * stand-ins for Request and Reply (src/lane-exchange.ts), before it forwards.
 * Nothing about a policy is written twice, so the lane cannot drift from the
 * Fastify path.
 *
 * Head edits are a route's response-side header rules (response transform,
 * CORS): onSend hooks that only read the request and edit reply headers. They
 * run in onSend for answers Fastify sends, and on the upstream answer's head
 * where the forwarder writes it itself (plugins/balance.ts onHead), lane or not.
 */
import type {
  FastifyInstance,
  FastifyReply,
  FastifyRequest,
  HookHandlerDoneFunction,
  onSendHookHandler,
} from "fastify";
import type { CompiledRoute } from "./generation.js";

/** A request-side hook as Fastify takes it: callback style (3 parameters) or async. */
export type RequestHook = (
  request: FastifyRequest,
  reply: FastifyReply,
  done: HookHandlerDoneFunction,
) => unknown;

/** An onSend hook that only edits headers and passes the payload on synchronously. */
export type HeadEdit = (
  request: FastifyRequest,
  reply: FastifyReply,
  payload: unknown,
  done: (err: Error | null, payload?: unknown) => void,
) => void;

export interface LanePlan {
  onRequest: RequestHook[];
  preHandler: RequestHook[];
  headEdits: HeadEdit[];
  /**
   * Upstream fields the head edits always remove, whatever the request: the
   * forwarder leaves them out when it copies the upstream head (the edit then
   * finds nothing to delete, and the head object keeps V8's fast shape).
   */
  headRemoves: Set<string>;
}

const plans = new WeakMap<CompiledRoute, LanePlan>();

/** The route's plan (empty for a route without policies). */
export function planOf(route: CompiledRoute): LanePlan {
  let p = plans.get(route);
  if (p === undefined) {
    p = { onRequest: [], preHandler: [], headEdits: [], headRemoves: new Set() };
    plans.set(route, p);
  }
  return p;
}

/** Add a request-side policy hook to the route's scope and to its lane plan. */
export function policyHook(
  scope: FastifyInstance,
  route: CompiledRoute,
  phase: "onRequest" | "preHandler",
  hook: RequestHook,
): void {
  scope.addHook(phase as "onRequest", hook as never);
  planOf(route)[phase].push(hook);
}

/**
 * Add a response header rule: onSend on the Fastify path, and the forwarder's
 * head on the direct path. `removes`: the fields it removes from every answer.
 */
export function headEdit(
  scope: FastifyInstance,
  route: CompiledRoute,
  edit: HeadEdit,
  removes: readonly string[] = [],
): void {
  scope.addHook("onSend", edit as onSendHookHandler);
  const plan = planOf(route);
  plan.headEdits.push(edit);
  for (const name of removes) plan.headRemoves.add(name);
}

function noop(): void {}

/** Apply the head edits to a header object (the forwarder's head, a lane's answer) through `reply`'s API. */
export function applyHeadEdits(edits: readonly HeadEdit[], request: unknown, reply: unknown): void {
  for (const edit of edits) edit(request as FastifyRequest, reply as FastifyReply, undefined, noop);
}

/**
 * Run `hooks` as Fastify's hook runner does: each gets a done callback; one
 * that returns a promise is waited on instead. In order, stopping at the
 * first error (rejected to the caller) or once a hook has answered
 * (reply.sent). Hooks that call back at once continue synchronously; the
 * first that really waits turns the rest into a promise chain. Returns
 * undefined when everything ran synchronously, else a promise of the same.
 * One state object and one callback per request, shared by its hooks.
 */
export function runHooks(
  hooks: readonly RequestHook[],
  request: FastifyRequest,
  reply: FastifyReply & { sent: boolean },
): Promise<void> | undefined {
  // Written by `done`, possibly before the hook returns.
  const s: { state: "waiting" | "done" | "failed"; failure?: unknown; resume?: () => void } = {
    state: "waiting",
  };
  const done = (err?: unknown) => {
    if (s.state !== "waiting") return;
    s.state = err ? "failed" : "done";
    s.failure = err;
    const resume = s.resume;
    s.resume = undefined;
    resume?.();
  };
  const step = (i: number): Promise<void> | undefined => {
    for (; i < hooks.length; i++) {
      if (reply.sent) return undefined;
      s.state = "waiting";
      const out = hooks[i](request, reply, done);
      const next = i + 1;
      if (out !== undefined && typeof (out as Promise<unknown>).then === "function")
        return (out as Promise<unknown>).then(() => step(next));
      // `done` may have run inside the call (TypeScript cannot see it: hence the widening).
      const after = s.state as "waiting" | "done" | "failed";
      if (after === "done") continue;
      if (after === "failed") return Promise.reject(s.failure);
      // Not called back yet: it answered by itself (a preflight) and never will, or it is waiting.
      if (reply.sent) return undefined;
      return new Promise<void>((ok, fail) => {
        s.resume = () => (s.state === "failed" ? fail(s.failure) : ok());
      }).then(() => step(next));
    }
    return undefined;
  };
  return step(0);
}
