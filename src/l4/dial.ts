/**
 * Connects to one of a service's targets. Nothing has been sent on a failed
 * dial, so moving on to another target is always safe (SPEC §4: "L4 … up to
 * the number of targets"); every attempt re-selects through the balancer with
 * the failed targets excluded, so health, weights and ip-hash stay in charge.
 */
import { connect, type Socket } from "node:net";
import type { PickContext } from "../balancers/types.js";
import type { Service } from "../upstreams/service.js";
import type { Target } from "../upstreams/target.js";

/**
 * A target's share of one connection or session: counted in `inFlight` from
 * the dial on (least-connections and p2c read it) and released exactly once.
 */
export class Lease {
  private released = false;
  constructor(readonly target: Target) {
    target.inFlight++;
    target.requests++;
  }
  release(): void {
    if (this.released) return;
    this.released = true;
    this.target.inFlight--;
  }
}

export class DialError extends Error {
  constructor(
    message: string,
    readonly code: string,
  ) {
    super(message);
  }
}

/** One TCP connect with a deadline; rejects (and destroys the socket) on error, timeout or abort. */
export function dial(target: Target, timeoutMs: number, signal: AbortSignal): Promise<Socket> {
  return new Promise((resolve, reject) => {
    // allowHalfOpen: the target's FIN must not close our side towards it (RFC 9293 §3.6 half-close).
    const socket = connect({ host: target.host, port: target.port, allowHalfOpen: true, noDelay: true });
    socket.pause();
    const done = (err?: Error) => {
      clearTimeout(timer);
      signal.removeEventListener("abort", onAbort);
      socket.off("error", done);
      socket.off("connect", onConnect);
      if (err) {
        socket.destroy();
        reject(err);
      }
    };
    const onConnect = () => {
      done();
      resolve(socket);
    };
    const onAbort = () => done(new DialError("client went away", "ABORTED"));
    const timer = setTimeout(
      () => done(new DialError(`connect timeout after ${timeoutMs}ms`, "ETIMEDOUT")),
      timeoutMs,
    );
    timer.unref();
    socket.once("connect", onConnect);
    socket.once("error", done);
    if (signal.aborted) onAbort();
    else signal.addEventListener("abort", onAbort, { once: true });
  });
}

export interface Dialed {
  socket: Socket;
  lease: Lease;
}

/**
 * Tries targets until one accepts, at most as many attempts as the service has
 * targets. Undefined when none is available or all failed (or the client left).
 */
export async function dialAny(
  service: Service,
  ctx: PickContext,
  timeoutMs: number,
  signal: AbortSignal,
  onFail?: (target: Target, err: Error) => void,
): Promise<Dialed | undefined> {
  const exclude = new Set<Target>();
  for (let i = 0; i < service.targets.length && !signal.aborted; i++) {
    const target = service.pick({ ...ctx, exclude });
    if (target === undefined) return undefined;
    const lease = new Lease(target);
    try {
      const socket = await dial(target, timeoutMs, signal);
      service.reportSuccess(target);
      return { socket, lease };
    } catch (err) {
      lease.release();
      if (signal.aborted) return undefined;
      // Passive outlier detection sees L4 dial failures too (it counts target.failures).
      service.reportFailure(target);
      exclude.add(target);
      onFail?.(target, err as Error);
    }
  }
  return undefined;
}
