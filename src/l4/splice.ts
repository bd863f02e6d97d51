/**
 * Joins a client socket and a target socket until both are done.
 *
 * - Backpressure: `pipe()` pauses the reading side while the other side's
 *   write buffer is full, so a fast sender cannot grow memory without bound.
 * - Half-close (RFC 9293 §3.6): both sockets are `allowHalfOpen`; when one
 *   side sends FIN, `pipe()` ends the other side's writable (our FIN to it),
 *   and bytes keep flowing the other way until that side closes too.
 * - An error on either side destroys both, and so does `idleMs` without a byte.
 * - Nothing per chunk but the pipes: byte counts are the sockets' own
 *   (bytesRead/bytesWritten, read by TcpProxy), not 'data' listeners.
 */
import type { Socket } from "node:net";

/** Resolves once both sockets have closed, whatever the reason. */
export function splice(client: Socket, upstream: Socket, idleMs: number): Promise<void> {
  return new Promise((resolve) => {
    let open = 2;
    const destroyBoth = () => {
      client.destroy();
      upstream.destroy();
    };
    client.on("error", destroyBoth);
    upstream.on("error", destroyBoth);
    // Either socket idle means nothing moved through the proxy (every byte crosses both),
    // and watching both also catches a side stuck with unflushed writes after the other left.
    client.setTimeout(idleMs, destroyBoth);
    upstream.setTimeout(idleMs, destroyBoth);
    const closed = (other: Socket) => () => {
      // One socket is fully closed: the other has nothing left to talk to. Flush
      // what it still owes its peer, then let it go.
      if (!other.destroyed) {
        if (other.writableFinished) other.destroy();
        else other.end(() => other.destroy());
      }
      if (--open === 0) resolve();
    };
    client.once("close", closed(upstream));
    upstream.once("close", closed(client));
    client.pipe(upstream);
    upstream.pipe(client);
  });
}
