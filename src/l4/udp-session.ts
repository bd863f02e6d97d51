/**
 * One UDP "session": the datagrams of one client address:port, sent to one
 * target through a socket of their own. The own socket is what routes replies
 * home: whatever arrives on it belongs to this client. It is `connect()`ed to
 * the target, so the kernel drops datagrams from anyone else and an ICMP port
 * unreachable comes back as ECONNREFUSED (RFC 1122 §4.1.3.3) instead of silence.
 */
import { createSocket, type Socket } from "node:dgram";
import type { Target } from "../upstreams/target.js";
import { Lease } from "./dial.js";
import { familyOf } from "./ip.js";

/** Datagrams held while the upstream socket connects; a burst beyond this is dropped, as UDP may. */
const MAX_PENDING = 64;

export interface SessionHooks {
  /** A datagram from the target, for the client. */
  reply(msg: Buffer): void;
  /** The session is over (idle, error, or closed by the listener). */
  closed(session: UdpSession, err?: Error): void;
}

export class UdpSession {
  readonly lease: Lease;
  private readonly upstream: Socket;
  private pending: Buffer[] | undefined = [];
  private readonly timer: NodeJS.Timeout;
  private done = false;

  constructor(
    readonly key: string,
    readonly target: Target,
    timeoutMs: number,
    private readonly hooks: SessionHooks,
  ) {
    this.lease = new Lease(target);
    this.timer = setTimeout(() => this.close(), timeoutMs);
    this.timer.unref();
    this.upstream = createSocket(familyOf(target.host) === 6 ? "udp6" : "udp4");
    this.upstream.on("message", (msg) => {
      this.touch();
      hooks.reply(msg);
    });
    this.upstream.on("error", (err) => this.close(err));
    // Node hands a connect failure (e.g. the host does not resolve) to this callback, not to 'error'.
    const onConnect = (err?: Error) => {
      if (err) return this.close(err);
      const queued = this.pending ?? [];
      this.pending = undefined;
      for (const msg of queued) this.send(msg);
    };
    this.upstream.connect(target.port, target.host, onConnect as () => void);
  }

  /** A datagram from the client, for the target. */
  send(msg: Buffer): void {
    if (this.done) return;
    this.touch();
    if (this.pending) {
      if (this.pending.length < MAX_PENDING) this.pending.push(msg);
      return;
    }
    this.upstream.send(msg, (err) => {
      if (err) this.close(err);
    });
  }

  /** Traffic either way keeps the session (and its target) alive for another timeout. */
  private touch(): void {
    this.timer.refresh();
  }

  close(err?: Error): void {
    if (this.done) return;
    this.done = true;
    clearTimeout(this.timer);
    this.upstream.close();
    this.lease.release();
    this.hooks.closed(this, err);
  }
}
