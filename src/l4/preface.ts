/**
 * Reads the first bytes of a paused client socket until a parser is satisfied:
 * the PROXY protocol header, then (for SNI routing) the TLS ClientHello. Both
 * are bounded in size and time so a slow or hostile client cannot hold memory
 * or a connection slot forever (the same idea as HAProxy's `timeout client`
 * during `accept-proxy`). The socket is paused again when done, so the bytes
 * that follow stay in its buffer until the pipe starts.
 */
import type { Socket } from "node:net";

/**
 * One parse attempt over everything read so far: need more bytes, a value
 * (and how many bytes it took, which are not forwarded), or a refusal.
 */
export type Step<T> = { need: true } | { error: string } | { value: T; consumed: number };

export class PrefaceError extends Error {}

export interface PrefaceOptions {
  /** Epoch ms by which the parser must be satisfied. */
  deadline: number;
  /** Refuse once this many bytes are buffered without a result. */
  maxBytes: number;
}

export interface Preface<T> {
  value: T;
  /** Bytes read past what the parser consumed: they go to the target first. */
  rest: Buffer;
}

export function readPreface<T>(
  socket: Socket,
  initial: Buffer,
  parse: (buf: Buffer) => Step<T>,
  opts: PrefaceOptions,
): Promise<Preface<T>> {
  return new Promise((resolve, reject) => {
    let buf = initial;
    let timer: NodeJS.Timeout | undefined;
    const cleanup = () => {
      clearTimeout(timer);
      socket.pause();
      socket.off("data", onData);
      socket.off("end", onEnd);
      socket.off("close", onEnd);
    };
    const fail = (reason: string) => {
      cleanup();
      reject(new PrefaceError(reason));
    };
    // Returns true when settled, one way or the other.
    const attempt = (): boolean => {
      const r = buf.length === 0 ? { need: true as const } : parse(buf);
      if ("value" in r) {
        cleanup();
        resolve({ value: r.value, rest: buf.subarray(r.consumed) });
        return true;
      }
      if ("error" in r) {
        fail(r.error);
        return true;
      }
      if (buf.length >= opts.maxBytes) {
        fail(`more than ${opts.maxBytes} bytes without a complete header`);
        return true;
      }
      return false;
    };
    function onData(chunk: Buffer) {
      buf = buf.length === 0 ? chunk : Buffer.concat([buf, chunk]);
      attempt();
    }
    function onEnd() {
      fail("client closed before a complete header");
    }
    if (attempt()) return;
    const wait = opts.deadline - Date.now();
    if (wait <= 0) return fail("timed out waiting for the header");
    timer = setTimeout(() => fail("timed out waiting for the header"), wait);
    timer.unref();
    socket.on("data", onData);
    socket.once("end", onEnd);
    socket.once("close", onEnd);
    socket.resume();
  });
}
