/**
 * Cookie affinity (services.*.sticky, SPEC §2; issue 14): the first answer
 * sets a cookie naming the target that served it, later requests carrying it
 * go back to that target while it is available, and move — with a new cookie
 * — when it is not (unhealthy, ejected, drained, at its connection cap, or
 * gone from DNS). The balancer stays the first choice for everything else.
 *
 * The value is opaque and signed, so a client can neither read an upstream
 * address from it (SPEC §5: none to the public) nor write one of its own:
 *
 *     <tid>.<expiry, base36 epoch seconds>.<sig>
 *
 * - tid = HMAC(key, service \n target URL), 16 base64url characters: stable
 *   for a target across reloads, DNS refreshes and gateway replicas that share
 *   the key, and meaningless without it.
 * - sig = HMAC(key, tid.expiry), 22 characters (128 bits): binds the expiry,
 *   so an old cookie cannot pin a client beyond `ttl`.
 * - The cookie is re-issued when it is missing, invalid, expired, names
 *   another target than the one that answered, or has lived more than half
 *   its `ttl` (an active session keeps its target; an idle one ends).
 *
 * The key: `sticky.secret` (give every replica the same one, e.g.
 * `${STICKY_SECRET}`); without it a random key per gateway process tree
 * (PROCESS_KEY below) — fine for one instance, but cookies then do not
 * survive a restart nor hold across replicas.
 *
 * Hand-written on node:crypto: a cookie this small needs no cookie-signing
 * package (those sign values the client chose; here the gateway does).
 */
import { createHmac, randomBytes, timingSafeEqual } from "node:crypto";
import type { IncomingMessage } from "node:http";
import { ms } from "../config/duration.js";
import type { ServiceConfig } from "../config/schema.js";
import { parseCookies } from "../router/request-view.js";
import type { Target } from "./target.js";

/**
 * The fallback key's environment variable: the --workers primary sets it for
 * its workers (cli.ts) so they all accept each other's cookies.
 */
export const STICKY_KEY_ENV = "SWITCHYARD_STICKY_KEY";

/** A random key for this process tree, used by services without `sticky.secret`. */
export const PROCESS_KEY: Buffer = process.env[STICKY_KEY_ENV]
  ? Buffer.from(process.env[STICKY_KEY_ENV], "hex")
  : randomBytes(32);

const TID_LEN = 16;
const SIG_LEN = 22;

/** The part of a Service the affinity reads (structural: no import cycle with service.ts). */
export interface StickyTargets {
  readonly targets: readonly Target[];
}

export class Sticky {
  readonly cookie: string;
  /** Cookie lifetime, ms. */
  readonly ttl: number;
  private readonly key: Buffer;
  /** "; Path=/; Max-Age=…; HttpOnly; SameSite=Lax", decided once. */
  private readonly attributes: string;
  /** tid → target for the target list last seen (rebuilt when the list changes: reload-free DNS updates). */
  private byTid = new Map<string, Target>();
  private tids = new WeakMap<Target, string>();
  private seen: readonly Target[] | undefined;

  constructor(
    private readonly service: string,
    cfg: NonNullable<ServiceConfig["sticky"]>,
  ) {
    this.cookie = cfg.cookie;
    this.ttl = ms(cfg.ttl ?? "1h");
    this.key = cfg.secret ? Buffer.from(cfg.secret) : PROCESS_KEY;
    this.attributes = `; Path=/; Max-Age=${Math.max(1, Math.floor(this.ttl / 1000))}; HttpOnly; SameSite=Lax`;
  }

  /**
   * The target the request's cookie names, when the cookie is genuine, still
   * valid, and names one of `svc`'s current targets; undefined otherwise.
   * `fresh` is true when the cookie need not be re-issued for that target.
   */
  pinned(
    req: IncomingMessage,
    svc: StickyTargets,
    now: number,
  ): { target: Target; fresh: boolean } | undefined {
    const header = req.headers.cookie;
    // The cheap test first: most requests without the cookie pay one indexOf.
    if (header === undefined || !header.includes(this.cookie)) return undefined;
    const value = parseCookies(header).get(this.cookie);
    if (value === undefined || value.length !== TID_LEN + SIG_LEN + 2 + 7) return undefined;
    const tid = value.slice(0, TID_LEN);
    const exp = value.slice(TID_LEN + 1, TID_LEN + 8);
    const sig = value.slice(TID_LEN + 9);
    if (value[TID_LEN] !== "." || value[TID_LEN + 8] !== ".") return undefined;
    const expiry = Number.parseInt(exp, 36) * 1000;
    if (!(expiry > now)) return undefined;
    const want = this.mac(`${tid}.${exp}`).subarray(0, SIG_LEN);
    const got = Buffer.from(sig);
    if (got.length !== SIG_LEN || !timingSafeEqual(want, got)) return undefined;
    const target = this.lookup(svc).get(tid);
    if (target === undefined) return undefined;
    return { target, fresh: expiry - now > this.ttl / 2 };
  }

  /** The Set-Cookie value pinning `target`; `secure` on TLS listeners. */
  setCookie(target: Target, secure: boolean, now: number): string {
    const tid = this.tidOf(target);
    // Fixed width (7 base36 digits reach the year 4453) keeps parsing positional.
    const exp = Math.floor((now + this.ttl) / 1000)
      .toString(36)
      .padStart(7, "0");
    const sig = this.mac(`${tid}.${exp}`).toString("ascii", 0, SIG_LEN);
    return `${this.cookie}=${tid}.${exp}.${sig}${this.attributes}${secure ? "; Secure" : ""}`;
  }

  private tidOf(t: Target): string {
    let tid = this.tids.get(t);
    if (tid === undefined) {
      tid = this.mac(`${this.service}\n${t.url}`).toString("ascii", 0, TID_LEN);
      this.tids.set(t, tid);
    }
    return tid;
  }

  private lookup(svc: StickyTargets): Map<string, Target> {
    if (svc.targets !== this.seen) {
      this.seen = svc.targets;
      this.byTid = new Map(svc.targets.map((t) => [this.tidOf(t), t]));
    }
    return this.byTid;
  }

  /** HMAC-SHA256, base64url, as ASCII bytes. */
  private mac(data: string): Buffer {
    return Buffer.from(createHmac("sha256", this.key).update(data).digest("base64url"), "ascii");
  }
}
