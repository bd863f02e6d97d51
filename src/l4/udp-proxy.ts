/**
 * One L4 UDP listener (SPEC §2 `udp`): one socket, a session per client
 * address:port that picks a target once and keeps it while datagrams flow
 * either way within `sessionTimeout`.
 *
 * The session table is bounded by `maxSessions`. When it is full, datagrams
 * from new client addresses are dropped (counted in `dropped`) and existing
 * sessions are left alone. Evicting the least recently used session instead
 * would let a flood of spoofed source addresses — free to forge over UDP —
 * push every real client off its target; dropping newcomers keeps the damage
 * to the newcomers, and idle sessions still expire to make room.
 */
import { createSocket, type RemoteInfo, type Socket } from "node:dgram";
import type { AddressInfo } from "node:net";
import { ms } from "../config/duration.js";
import type { UdpListenerConfig } from "../config/schema.js";
import type { Service } from "../upstreams/service.js";
import { familyOf } from "./ip.js";
import { listenError } from "./listen-error.js";
import type { L4Logger } from "./tcp-proxy.js";
import { UdpSession } from "./udp-session.js";

/** Counters for the metrics plugin (SPEC §8 `udp_datagrams_total{listener,direction}`). */
export interface UdpStats {
  listener: string;
  /** direction="in": datagrams received from clients (dropped ones included). */
  datagramsIn: number;
  /** direction="out": datagrams sent back to clients. */
  datagramsOut: number;
  /** Sessions open now. */
  sessions: number;
  sessionsTotal: number;
  /** Datagrams from new clients not forwarded: table full, no target, or shutting down. */
  dropped: number;
}

interface UdpSettings {
  service: Service;
  sessionTimeout: number;
  maxSessions: number;
}

export interface UdpProxyOptions {
  listener: UdpListenerConfig;
  services: ReadonlyMap<string, Service>;
  log?: L4Logger;
}

function compile(cfg: UdpListenerConfig, services: ReadonlyMap<string, Service>): UdpSettings {
  const service = services.get(cfg.service);
  if (service === undefined) throw new Error(`udp listener "${cfg.name}": unknown service "${cfg.service}"`);
  return { service, sessionTimeout: ms(cfg.sessionTimeout), maxSessions: cfg.maxSessions };
}

export class UdpProxy {
  private settings: UdpSettings;
  private readonly socket: Socket;
  private readonly sessions = new Map<string, UdpSession>();
  private readonly counters: UdpStats;
  private readonly host: string;
  private readonly port: number;
  private readonly log: L4Logger | undefined;
  private accepting = true;
  private bound = false;

  constructor(opts: UdpProxyOptions) {
    const { listener } = opts;
    this.settings = compile(listener, opts.services);
    this.host = listener.listen.host;
    this.port = listener.listen.port;
    this.log = opts.log;
    this.counters = {
      listener: listener.name,
      datagramsIn: 0,
      datagramsOut: 0,
      sessions: 0,
      sessionsTotal: 0,
      dropped: 0,
    };
    this.socket = createSocket(familyOf(this.host) === 6 ? "udp6" : "udp4");
    this.socket.on("message", (msg, rinfo) => this.onMessage(msg, rinfo));
  }

  get name(): string {
    return this.counters.listener;
  }

  get stats(): UdpStats {
    return { ...this.counters, sessions: this.sessions.size };
  }

  /** New settings for sessions created from now on (reload); open sessions keep their target. */
  update(listener: UdpListenerConfig, services: ReadonlyMap<string, Service>): void {
    this.settings = compile(listener, services);
  }

  start(): Promise<AddressInfo> {
    return new Promise((resolve, reject) => {
      const onError = (err: NodeJS.ErrnoException) => reject(listenError(this.host, this.port, err, "udp "));
      this.socket.once("error", onError);
      this.socket.bind(this.port, this.host, () => {
        this.socket.off("error", onError);
        this.bound = true;
        this.socket.on("error", (err) =>
          this.log?.warn({ listener: this.name, err: err.message }, "udp listener error"),
        );
        resolve(this.address());
      });
    });
  }

  address(): AddressInfo {
    return this.socket.address();
  }

  /** Bound and opening sessions (for readiness checks). */
  get listening(): boolean {
    return this.bound && this.accepting;
  }

  /** No new sessions; open ones keep working (their replies need the listener socket). */
  stopAccepting(): void {
    this.accepting = false;
  }

  /** Closes every session and the socket. */
  stop(): void {
    this.accepting = false;
    this.bound = false;
    for (const s of [...this.sessions.values()]) s.close();
    try {
      this.socket.close();
    } catch {
      // Never bound, or already closed: nothing to release.
    }
  }

  private onMessage(msg: Buffer, rinfo: RemoteInfo): void {
    const c = this.counters;
    c.datagramsIn++;
    const key = `${rinfo.address}|${rinfo.port}`;
    let session = this.sessions.get(key);
    if (session === undefined) {
      session = this.open(key, rinfo);
      if (session === undefined) {
        c.dropped++;
        return;
      }
    }
    session.send(msg);
  }

  private open(key: string, client: RemoteInfo): UdpSession | undefined {
    const s = this.settings;
    if (!this.accepting || this.sessions.size >= s.maxSessions) return undefined;
    const target = s.service.pick({ ip: client.address, key: client.address });
    if (target === undefined) return undefined;
    const session = new UdpSession(key, target, s.sessionTimeout, {
      reply: (reply) => {
        this.counters.datagramsOut++;
        this.socket.send(reply, client.port, client.address);
      },
      closed: (closed, err) => {
        if (this.sessions.get(closed.key) === closed) this.sessions.delete(closed.key);
        if (err) {
          // The target refused (ICMP unreachable) or the socket failed: the client's next
          // datagram opens a new session, which the balancer may send elsewhere.
          this.settings.service.reportFailure(closed.target);
          this.log?.warn(
            { listener: this.name, target: closed.target.url, err: err.message },
            "udp session failed",
          );
        }
      },
    });
    this.sessions.set(key, session);
    this.counters.sessionsTotal++;
    return session;
  }
}
