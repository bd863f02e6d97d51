/**
 * How a service's L7 requests reach its targets (issue 14): `protocol`
 * (http1, h2 over TLS, h2c in clear) and `tls` (the CA bundle the targets'
 * certificates must chain to, a client certificate for mTLS, the name to
 * verify, or no verification at all). Read once per generation into the
 * options of the undici Pool of each target origin (plugins/balance.ts
 * createAgent), the health probes and WebSocket tunnels, so nothing is
 * decided per request.
 *
 * A pool is per origin, so two services naming the same origin must agree
 * on how to reach it (checked at load).
 */
import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import type { ConnectionOptions } from "node:tls";
import { buildConnector } from "undici";
import { type CheckContext, readable } from "../config/checks.js";
import type { Config, ServiceConfig } from "../config/schema.js";
import { entryScheme, entryUrl } from "./discovery.js";

export interface Transport {
  /** HTTP/2 to the targets (h2: over TLS, ALPN h2 required; h2c: prior knowledge). */
  h2: boolean;
  /** h2c: HTTP/2 without TLS. */
  h2c: boolean;
  /** TLS options for https:// targets: CA, client certificate, server name, verification. */
  tls: ConnectionOptions | undefined;
}

/** A service's transport; undefined for plain HTTP/1.1 with Node's defaults (nothing to add). */
export function transportOf(svc: ServiceConfig, baseDir: string): Transport | undefined {
  const p = svc.protocol ?? "http1";
  if (p === "http1" && svc.tls === undefined) return undefined;
  return { h2: p !== "http1", h2c: p === "h2c", tls: svc.tls && tlsOptions(svc.tls, baseDir) };
}

function tlsOptions(t: NonNullable<ServiceConfig["tls"]>, baseDir: string): ConnectionOptions {
  const read = (f: string) => readFileSync(resolve(baseDir, f));
  const o: ConnectionOptions = {};
  if (t.ca !== undefined) o.ca = read(t.ca);
  if (t.cert !== undefined) o.cert = read(t.cert);
  if (t.key !== undefined) o.key = read(t.key);
  if (t.servername !== undefined) o.servername = t.servername;
  // Explicit either way: an https target is verified unless the file says otherwise (never by accident).
  o.rejectUnauthorized = t.insecureSkipVerify !== true;
  return o;
}

/**
 * Pool options for HTTP/2 targets. h2c: undici's prior-knowledge mode. h2:
 * ALPN must pick h2: a target that answers http/1.1 instead is a connect
 * failure, not a silent switch to HTTP/1.1 (which would also pipeline:
 * these pools allow many requests at once, as streams of one connection).
 */
export function h2PoolOptions(t: Transport, connect: ConnectionOptions & { timeout: number }) {
  // Pool builds its connector from `connect` (it does not pass a top-level useH2c on).
  if (t.h2c) return { allowH2: true, pipelining: MAX_STREAMS, connect: { ...connect, useH2c: true } };
  const dial = buildConnector({ ...(connect as buildConnector.BuildOptions), allowH2: true });
  const strict: buildConnector.connector = (opts, cb) =>
    dial(opts, (err, socket) => {
      if (err !== null || (socket as { alpnProtocol?: string }).alpnProtocol === "h2") {
        (cb as (e: Error | null, s: typeof socket) => void)(err, socket);
        return;
      }
      socket.destroy();
      const refused = Object.assign(new Error("the target did not negotiate HTTP/2 (ALPN h2)"), {
        code: ALPN_REFUSED,
      });
      (cb as (e: Error, s: null) => void)(refused, null);
    });
  return { allowH2: true, pipelining: MAX_STREAMS, connect: strict };
}

/** Streams one HTTP/2 connection carries at once (Node's and undici's default peer limit). */
const MAX_STREAMS = 100;
const ALPN_REFUSED = "SY_ALPN_NOT_H2";

/**
 * Handshake failures: the target's certificate did not verify (OpenSSL's
 * X509 verification codes, Node's name check), the TLS handshake was refused
 * (an alert, e.g. an mTLS server without our certificate), or ALPN did not
 * give h2. Nothing reached the target: a connect failure (502
 * SY_UPSTREAM_CONNECT, retried on another target), never a reset.
 */
export function isConnectFailure(code: string): boolean {
  return TLS_VERIFY.has(code) || code.startsWith("ERR_SSL_") || code === ALPN_REFUSED;
}

const TLS_VERIFY = new Set([
  "UNABLE_TO_GET_ISSUER_CERT",
  "UNABLE_TO_GET_ISSUER_CERT_LOCALLY",
  "UNABLE_TO_VERIFY_LEAF_SIGNATURE",
  "UNABLE_TO_DECRYPT_CERT_SIGNATURE",
  "UNABLE_TO_DECODE_ISSUER_PUBLIC_KEY",
  "CERT_SIGNATURE_FAILURE",
  "CERT_NOT_YET_VALID",
  "CERT_HAS_EXPIRED",
  "ERROR_IN_CERT_NOT_BEFORE_FIELD",
  "ERROR_IN_CERT_NOT_AFTER_FIELD",
  "DEPTH_ZERO_SELF_SIGNED_CERT",
  "SELF_SIGNED_CERT_IN_CHAIN",
  "CERT_CHAIN_TOO_LONG",
  "CERT_REVOKED",
  "INVALID_CA",
  "PATH_LENGTH_EXCEEDED",
  "INVALID_PURPOSE",
  "CERT_UNTRUSTED",
  "CERT_REJECTED",
  "HOSTNAME_MISMATCH",
  "ERR_TLS_CERT_ALTNAME_INVALID",
]);

/** What the schema cannot say about protocol and tls (called from config/checks.ts). */
export function checkTransport(cfg: Config, ctx: CheckContext): void {
  const byOrigin = new Map<string, { service: string; how: string }>();
  for (const [name, s] of Object.entries(cfg.services)) {
    const at = ["services", name];
    const p = s.protocol ?? "http1";
    const want = p === "h2" ? "https:" : p === "h2c" ? "http:" : undefined;
    s.targets.forEach((t, i) => {
      // An srv entry has no URL: its scheme is written or read from the SRV name.
      const url = entryUrl(t) ?? `${entryScheme(t)}://${(t as { srv: string }).srv}`;
      const scheme = `${entryScheme(t)}:`;
      if (want !== undefined && scheme !== want)
        ctx.report(
          [...at, "targets", i],
          p === "h2"
            ? `protocol h2 is HTTP/2 over TLS: targets are https://… ('${url}'; h2c is HTTP/2 to http:// targets)`
            : `protocol h2c is HTTP/2 in clear: targets are http://… ('${url}'; h2 is HTTP/2 to https:// targets)`,
        );
      else if (s.tls !== undefined && scheme !== "https:")
        ctx.report([...at, "targets", i], `tls applies to https:// targets only, not '${url}'`);
      if ((scheme !== "http:" && scheme !== "https:") || entryUrl(t) === undefined) return;
      // One undici pool per origin: two services may share one only if they reach it the same way.
      let origin: string;
      try {
        origin = new URL(url).origin;
      } catch {
        return; // reported by the target checks
      }
      const how = JSON.stringify([p, s.tls ?? null]);
      const seen = byOrigin.get(origin);
      if (seen === undefined) byOrigin.set(origin, { service: name, how });
      else if (seen.how !== how)
        ctx.report(
          [...at, "targets", i],
          `'${origin}' is also a target of service '${seen.service}' with another protocol or tls: one origin, one way to reach it`,
        );
    });
    const tls = s.tls;
    if (tls === undefined) continue;
    if ((tls.cert === undefined) !== (tls.key === undefined))
      ctx.report([...at, "tls"], "a client certificate needs both cert and key");
    for (const k of ["ca", "cert", "key"] as const) {
      const f = tls[k];
      if (f !== undefined) readable(ctx, [...at, "tls", k], f);
    }
  }
}

/** How `explain` says a service reaches its targets; undefined for plain HTTP/1.1. */
export function describeTransport(svc: ServiceConfig): string | undefined {
  const p = svc.protocol ?? "http1";
  const parts: string[] = [];
  if (p === "h2") parts.push("HTTP/2 over TLS (h2)");
  else if (p === "h2c") parts.push("HTTP/2 in clear (h2c, prior knowledge)");
  const t = svc.tls;
  if (t !== undefined) {
    if (t.insecureSkipVerify === true) parts.push("certificates NOT verified (insecureSkipVerify)");
    else parts.push(`certificates verified against ${t.ca ?? "Node's CA roots"}`);
    if (t.servername !== undefined) parts.push(`as ${t.servername}`);
    if (t.cert !== undefined) parts.push(`client certificate ${t.cert} (mTLS)`);
  }
  return parts.length === 0 ? undefined : parts.join("; ");
}

/** `--check` warnings: targets whose certificates are not verified. */
export function transportWarnings(cfg: Config): string[] {
  const out: string[] = [];
  for (const [name, s] of Object.entries(cfg.services))
    if (s.tls?.insecureSkipVerify === true)
      out.push(
        `services.${name}.tls.insecureSkipVerify: the targets' certificates are not verified (anyone on the path can pose as them)`,
      );
  return out;
}
