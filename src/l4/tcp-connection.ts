/**
 * The life of one accepted TCP connection: optional PROXY header from a
 * downstream balancer, optional ClientHello for SNI routing, then dial a
 * target, send our own PROXY header if asked, replay the bytes already read,
 * and splice until both sides close. Any refusal closes the client and is
 * reported through `onRefused`, never thrown.
 */
import type { Socket } from "node:net";
import type { Service } from "../upstreams/service.js";
import type { Target } from "../upstreams/target.js";
import { dialAny } from "./dial.js";
import { readPreface } from "./preface.js";
import { type Endpoint, encodeProxyHeader, parseProxyHeader, V2_MAX } from "./proxy-protocol.js";
import { MAX_HELLO, parseClientHello } from "./sni.js";
import { splice } from "./splice.js";
import type { TcpSettings } from "./tcp-settings.js";

export interface ConnectionEvents {
  /** The connection ended without reaching a target, and why. */
  refused(reason: string, client: Endpoint | undefined): void;
  /** A dial to a target failed (another one is tried if any is left). */
  dialFailed(target: Target, err: Error): void;
}

const EMPTY: Buffer = Buffer.alloc(0);
/** Record headers around a fragmented ClientHello, on top of the hello itself. */
const HELLO_SLACK = 1024;

function endpoint(address: string | undefined, port: number | undefined): Endpoint | undefined {
  return address !== undefined && port !== undefined ? { address, port } : undefined;
}

/** Resolves when the connection is over; never rejects. */
export async function serveConnection(client: Socket, s: TcpSettings, ev: ConnectionEvents): Promise<void> {
  let source = endpoint(client.remoteAddress, client.remotePort);
  let destination = endpoint(client.localAddress, client.localPort);
  let head = EMPTY;
  const deadline = Date.now() + s.prefaceTimeout;
  let service = s.service;
  try {
    if (s.acceptProxyProtocol) {
      const p = await readPreface(client, head, parseProxyHeader, {
        deadline,
        maxBytes: V2_MAX,
      });
      // The header speaks for the real client (spec §2: the receiver uses these addresses
      // instead of the connection's); LOCAL/UNKNOWN headers carry none, keep the socket's.
      if (p.value.source && p.value.destination) {
        source = p.value.source;
        destination = p.value.destination;
      }
      head = p.rest;
    }
    if (s.sni) {
      const h = await readPreface(client, head, parseClientHello, {
        deadline,
        maxBytes: MAX_HELLO + HELLO_SLACK,
      });
      head = h.rest;
      service = s.sni(h.value.serverName);
      if (service === undefined)
        return refuse(client, ev, `no service for server name "${h.value.serverName}"`, source);
    }
  } catch (err) {
    return refuse(client, ev, (err as Error).message, source);
  }
  if (service === undefined || client.destroyed) return refuse(client, ev, "no service", source);
  await proxyTo(client, service, s, ev, { source, destination, head });
}

interface Handoff {
  source: Endpoint | undefined;
  destination: Endpoint | undefined;
  /** Bytes read from the client that the target must see first. */
  head: Buffer;
}

async function proxyTo(client: Socket, service: Service, s: TcpSettings, ev: ConnectionEvents, h: Handoff) {
  // The client may leave while we dial: abort the attempt instead of finishing it for nobody.
  const abort = new AbortController();
  const onGone = () => abort.abort();
  client.once("close", onGone);
  const ip = h.source?.address;
  const up = await dialAny(service, { ip, key: ip }, s.connectTimeout, abort.signal, ev.dialFailed);
  client.off("close", onGone);
  if (up === undefined) return refuse(client, ev, "no target accepted the connection", h.source);
  if (client.destroyed) {
    up.socket.destroy();
    up.lease.release();
    return;
  }
  try {
    if (s.proxyProtocol) up.socket.write(encodeProxyHeader(s.proxyProtocol, h.source, h.destination));
    if (h.head.length > 0) up.socket.write(h.head);
    await splice(client, up.socket, s.idleTimeout);
  } finally {
    up.lease.release();
  }
}

function refuse(client: Socket, ev: ConnectionEvents, reason: string, source: Endpoint | undefined): void {
  client.destroy();
  ev.refused(reason, source);
}
