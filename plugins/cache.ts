/**
 * The response cache (SPEC §2 routes.*.cache, §6), in the route's own scope:
 * lookup in preHandler (after auth and a jwt rate limit, SPEC §3), capture in
 * onSend, where the forwarder's payload is the upstream body stream.
 *
 * - Key: method, host, normalised path, query, the route's `vary` headers;
 *   the upstream's Vary picks a variant under it (key.ts, entry.ts).
 * - Requests with Authorization are BYPASS unless the route's `vary` lists
 *   `jwt:sub` and auth verified a token with a subject: then every subject has
 *   its own entries and no one is served another's response.
 * - HIT serves fresh entries (with Age, and 304 for matching conditionals);
 *   past freshness: staleWhileRevalidate serves STALE and refreshes once in
 *   the background; a stored validator turns the miss into a conditional
 *   request (a 304 refreshes the entry when its validators select it,
 *   entry.ts revalidated); staleIfError serves STALE when the upstream fails
 *   or answers 5xx; the upstream's own stale-* directives count too.
 * - Range requests on a stored 200 are answered from it (range.ts).
 * - A 2xx/3xx to an unsafe method invalidates its URI's entries (invalidate.ts).
 * - Targeted fields (CDN-Cache-Control …) govern the store and stop here (targeted.ts).
 * - Coalescing: concurrent misses for one key wait for the first one's
 *   response instead of each asking the upstream.
 * - The body streams to the client while it is copied, up to maxEntrySize.
 *
 * X-Cache: HIT | MISS | STALE | BYPASS on every response of a cached route
 * (except those the gateway refuses before the lookup, like 401 or 429).
 * Client Cache-Control request directives are not obeyed (as NGINX and Varnish
 * by default): a client cannot force misses onto the upstream, unless the
 * route sets obeyClientCacheControl (client-directives.ts).
 */
import type { IncomingHttpHeaders, IncomingMessage, OutgoingHttpHeaders, ServerResponse } from "node:http";
import { pipeline, type Readable } from "node:stream";
import type { TLSSocket } from "node:tls";
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import fp from "fastify-plugin";
import { logsInfo, onResponseClose } from "../src/access-log.js";
import { Capture } from "../src/cache/capture.js";
import { clientDirectives, clientVerdict } from "../src/cache/client-directives.js";
import { isConditional, notModified, notModifiedHeaders } from "../src/cache/conditional.js";
import {
  ageOf,
  buildEntry,
  decode,
  type Entry,
  encode,
  freshness,
  hasValidators,
  revalidated,
  toHeaders,
  type Windows,
} from "../src/cache/entry.js";
import { writeHit } from "../src/cache/hit.js";
import { invalidationTags, isUnsafe, type Target } from "../src/cache/invalidate.js";
import { hostOf, primaryKey, uriTag, variantKey, varyHash, varyValues } from "../src/cache/key.js";
import { rangeAnswer } from "../src/cache/range.js";
import { isRefresh, REFRESH_HEADER, REFRESH_TOKEN } from "../src/cache/refresh.js";
import { bytes, ms } from "../src/config/duration.js";
import { errors } from "../src/errors.js";
import { LaneReply, LaneRequest } from "../src/lane-exchange.js";
import { laneable, type PolicyOptions } from "../src/policies.js";
import { genReqId, kState, type RequestState } from "../src/request-state.js";
import { useStore } from "../src/store/index.js";

export type CacheResult = "hit" | "miss" | "stale" | "bypass";

declare module "../src/request-state.js" {
  interface RequestState {
    /** The cache's answer for this request (access log `cache`, metric cache_requests_total). */
    cache?: CacheResult;
    /** What the Redis lane read before handing the request to Fastify: cacheLookup takes it instead of reading again. */
    cacheRead?: { key: string; entry: Entry | undefined };
  }
}

const kCache = Symbol("switchyard.cache");

/** What one waiting miss gets from the one that went upstream. */
interface Shared {
  entry: Entry;
  label: "HIT" | "STALE";
}

interface Flight {
  promise: Promise<Shared | undefined>;
  resolve(v: Shared | undefined): void;
}

interface CacheContext {
  key: string;
  /**
   * miss: went upstream; hit: answered from the cache; refresh: a background revalidation;
   * invalidate: an unsafe request, whose non-error answer drops its URI's entries (RFC 9111 §4.4).
   */
  phase: "miss" | "hit" | "refresh" | "invalidate";
  /** Reply headers set by earlier hooks, so the upstream's own can be told apart. */
  before: Record<string, unknown>;
  stale?: Entry;
  revalidate?: Entry;
  /** invalidate: the request's target, taken before the answer (a request's socket may be gone by then). */
  target?: Target;
  flight?: Flight;
}

declare module "node:http" {
  interface IncomingMessage {
    [kCache]?: CacheContext;
  }
}

const LABEL: Record<Shared["label"] | "MISS" | "BYPASS", CacheResult> = {
  HIT: "hit",
  STALE: "stale",
  MISS: "miss",
  BYPASS: "bypass",
};

function flight(): Flight {
  let resolve!: (v: Shared | undefined) => void;
  const promise = new Promise<Shared | undefined>((r) => {
    resolve = r;
  });
  return { promise, resolve };
}

function mark(request: FastifyRequest, reply: FastifyReply, label: keyof typeof LABEL): void {
  reply.header("x-cache", label);
  const st = request.raw[kState];
  if (st) st.cache = LABEL[label];
}

function drain(payload: unknown): void {
  const s = payload as Readable | undefined;
  if (s && typeof s.resume === "function") {
    s.on("error", () => {});
    s.resume();
  }
}

export const cachePolicy = fp(
  async function cache(scope: FastifyInstance, { route, generation }: PolicyOptions) {
    const cfg = route.config.cache!;
    const store = useStore(scope, generation);
    const methods = new Set<string>(cfg.methods);
    const w: Windows = {
      ttl: ms(cfg.ttl),
      swr: ms(cfg.staleWhileRevalidate ?? "0ms"),
      sie: ms(cfg.staleIfError ?? "0ms"),
      targeting: { fields: cfg.targeted, pass: cfg.passTargeted },
    };
    /** Targeted fields that stop here (RFC 9213: they speak to this cache, not to the next one). */
    const stopped = cfg.passTargeted ? [] : cfg.targeted;
    const stopTargeted = (reply: FastifyReply) => {
      for (const name of stopped) reply.removeHeader(name);
    };
    const maxEntrySize = bytes(cfg.maxEntrySize);
    const vary = (cfg.vary ?? []).map((v) => v.toLowerCase());
    const bySubject = vary.includes("jwt:sub");
    const obeyClient = cfg.obeyClientCacheControl;
    // The cors policy's onSend runs before this one and sets these per request (hits included):
    // a stored copy would answer one origin with another's grant.
    const perRequest = new Set(
      route.config.cors !== undefined
        ? ["access-control-allow-origin", "access-control-allow-credentials"]
        : [],
    );
    const flights = new Map<string, Flight>();
    // Redis hands back new buffers on every read: decode() then recognises an entry by its key and bytes.
    const shared = store.kind !== "memory";
    const refreshing = new Set<string>();

    /** The stored entry for this request: the primary key, or the variant its Vary marker names. */
    async function read(key: string, raw: IncomingMessage): Promise<Entry | undefined> {
      const buf = await store.get(key);
      const v = buf && decode(buf, shared ? key : undefined);
      if (v === undefined || !("marker" in v)) return v;
      const vkey = variantKey(key, varyHash(v.vary, raw.headers));
      const vbuf = await store.get(vkey);
      const e = vbuf && decode(vbuf, shared ? vkey : undefined);
      return e && !("marker" in e) ? e : undefined;
    }

    /** The request's target as the cache keys it (and invalidates it). */
    function targetOf(request: FastifyRequest): Target {
      const st = request.raw[kState]!;
      return { scheme: request.protocol, host: hostOf(request.raw.headers), path: st.path, query: st.query };
    }

    /** Store `entry`, tagged with its target URI's tag too (invalidate.ts finds every variant by it). */
    async function write(
      request: FastifyRequest,
      key: string,
      entry: Entry,
      retention: number,
    ): Promise<void> {
      const t = targetOf(request);
      const tags = [...entry.tags, uriTag(t.scheme, t.host, t.path, t.query)];
      if (entry.vary.length === 0) return store.set(key, encode(entry), retention, tags);
      // The marker lives as long as any variant may; each variant carries the tags.
      await store.set(key, encode({ marker: true, vary: entry.vary }), retention + w.ttl, tags);
      await store.set(variantKey(key, entry.varyHash), encode(entry), retention, tags);
    }

    /**
     * The one builder of an answer from a stored entry on Fastify's path (serve() in the lookup,
     * replace() in onSend; the lanes' fresh 200s are hit.ts): status, headers and the body to
     * send — a 304 for a matching conditional, a 206/416 for a Range (range.ts), else the
     * stored response (no body for HEAD).
     */
    function answerFrom(
      request: FastifyRequest,
      reply: FastifyReply,
      entry: Entry,
      label: Shared["label"],
    ): Buffer | undefined {
      const ctx = request.raw[kCache];
      if (ctx) ctx.phase = "hit";
      mark(request, reply, label);
      reply.header("x-request-id", request.id).header("age", String(Math.floor(ageOf(entry))));
      if (notModified(request.raw.headers, entry)) {
        reply.code(304).headers(notModifiedHeaders(entry));
        return undefined;
      }
      const ranged = rangeAnswer(request.raw.headers, request.raw.method, entry);
      if (ranged?.status === 416) {
        reply.code(416).headers(ranged.headers);
        return undefined;
      }
      reply.code(ranged?.status ?? entry.status).headers(entry.headers);
      if (ranged !== undefined) {
        reply.headers(ranged.headers);
        return ranged.body;
      }
      return request.raw.method === "HEAD" ? undefined : entry.body;
    }

    function serve(request: FastifyRequest, reply: FastifyReply, entry: Entry, label: Shared["label"]) {
      return reply.send(answerFrom(request, reply, entry, label));
    }

    /** staleWhileRevalidate: one background request per key re-runs the route and stores its answer. */
    function refreshInBackground(request: FastifyRequest, key: string): void {
      if (refreshing.has(key)) return;
      refreshing.add(key);
      const headers: Record<string, string | string[] | undefined> = {
        ...request.raw.headers,
        [REFRESH_HEADER]: REFRESH_TOKEN,
      };
      for (const h of ["if-none-match", "if-modified-since", "if-match", "if-unmodified-since", "if-range"])
        delete headers[h];
      request.server
        .inject({
          method: request.raw.method as "GET",
          url: request.raw.url ?? "/",
          headers: headers as Record<string, string | string[]>,
          remoteAddress: request.socket.remoteAddress,
        })
        .catch((err: Error) => request.log.debug({ err: err.message, key }, "cache refresh not stored"))
        .finally(() => refreshing.delete(key));
    }

    function settle(ctx: CacheContext, v: Shared | undefined): void {
      const f = ctx.flight;
      if (f === undefined) return;
      ctx.flight = undefined;
      if (flights.get(ctx.key) === f) flights.delete(ctx.key);
      f.resolve(v);
    }

    async function cacheLookup(request: FastifyRequest, reply: FastifyReply) {
      const raw = request.raw;
      const st = raw[kState]!;
      const claims = st.claims;
      if (!methods.has(raw.method ?? "") || raw.headers.upgrade !== undefined) {
        if (isUnsafe(raw.method ?? ""))
          raw[kCache] = { key: "", phase: "invalidate", before: {}, target: targetOf(request) };
        return mark(request, reply, "BYPASS");
      }
      if (raw.headers.authorization !== undefined && !(bySubject && claims?.sub !== undefined))
        return mark(request, reply, "BYPASS");
      const refresh = isRefresh(request);
      delete raw.headers[REFRESH_HEADER];
      const key = primaryKey({
        method: raw.method!,
        scheme: request.protocol,
        host: hostOf(raw.headers),
        path: st.path,
        query: st.query,
        vary: varyValues(vary, raw.headers, claims),
      });
      if (refresh) {
        raw[kCache] = { key, phase: "refresh", before: reply.getHeaders() };
        return;
      }
      // Read already by the Redis lane (server.ts), which then handed the request on: not asked twice.
      const pre = st.cacheRead;
      st.cacheRead = undefined;
      const entry = pre !== undefined && pre.key === key ? pre.entry : await read(key, raw);
      const ctx: CacheContext = { key, phase: "miss", before: reply.getHeaders() };
      raw[kCache] = ctx;
      const client = obeyClient ? clientDirectives(raw.headers) : undefined;
      if (entry !== undefined) {
        const f = freshness(entry, w);
        const verdict = client === undefined ? "default" : clientVerdict(client, entry, f);
        if (verdict === "use") return serve(request, reply, entry, f === "fresh" ? "HIT" : "STALE");
        if (verdict === "default") {
          if (f === "fresh") return serve(request, reply, entry, "HIT");
          if (f === "stale-while-revalidate") {
            refreshInBackground(request, key);
            return serve(request, reply, entry, "STALE");
          }
        }
        if (f === "stale-if-error") ctx.stale = entry;
        if (hasValidators(entry) && !isConditional(raw.headers)) {
          // Ask the upstream whether the stored body is still good (RFC 9111 §4.3.1).
          ctx.revalidate = entry;
          const etag = entry.headers.etag;
          const lm = entry.headers["last-modified"];
          // Added for the upstream only: removed again before the answer is chosen (onSend).
          if (etag !== undefined) raw.headers["if-none-match"] = String(etag);
          else if (lm !== undefined) raw.headers["if-modified-since"] = String(lm);
        }
      }
      if (client?.onlyIfCached) {
        // Nothing stored will do, and the client forbids asking (RFC 9111 §5.2.1.7): 504, nothing stored.
        raw[kCache] = undefined;
        mark(request, reply, "MISS");
        throw new errors.SY_NOT_CACHED();
      }
      // A Range request's answer (206) is never stored, so it does not lead a coalesced miss.
      if (!cfg.coalesce || raw.headers.range !== undefined) return;
      const leader = flights.get(key);
      if (leader === undefined) {
        // A client that left while the lookup waited (a Redis read) is past its 'close': it leads
        // nothing, or the misses that wait on it would wait for an answer that never comes.
        if (reply.raw.destroyed) return;
        ctx.flight = flight();
        flights.set(key, ctx.flight);
        // However this request ends (even aborted before any answer), its waiters are released.
        reply.raw.once("close", () => settle(ctx, undefined));
        return;
      }
      const got = await leader.promise;
      if (
        got !== undefined &&
        (got.entry.vary.length === 0 || got.entry.varyHash === varyHash(got.entry.vary, raw.headers))
      )
        return serve(request, reply, got.entry, got.label);
      // The first answer was not storable (or is another variant): this request goes upstream itself.
    }

    /** The upstream's own headers: those not set, or set differently, before the lookup. */
    function upstreamHeaders(ctx: CacheContext, reply: FastifyReply) {
      const all = reply.getHeaders();
      const out: OutgoingHttpHeaders = {};
      for (const [k, v] of Object.entries(all)) if (ctx.before[k] !== v && !perRequest.has(k)) out[k] = v;
      return toHeaders(out);
    }

    /** Answer from `entry` instead of what the upstream (or the error handler) produced. */
    function replace(
      request: FastifyRequest,
      reply: FastifyReply,
      ctx: CacheContext,
      entry: Entry,
      label: Shared["label"],
    ) {
      for (const k of Object.keys(reply.getHeaders())) if (!(k in ctx.before)) reply.removeHeader(k);
      return answerFrom(request, reply, entry, label) ?? "";
    }

    function requestView(request: FastifyRequest) {
      return {
        method: request.raw.method ?? "GET",
        url: request.raw.url ?? "/",
        headers: request.raw.headers,
      };
    }

    async function cacheStore(request: FastifyRequest, reply: FastifyReply, payload: unknown) {
      const ctx = request.raw[kCache];
      if (ctx?.phase === "hit") return payload;
      if (ctx === undefined) {
        stopTargeted(reply);
        return payload;
      }
      if (ctx.phase === "invalidate") {
        stopTargeted(reply);
        const status = reply.statusCode;
        // Awaited before the answer leaves: a client that reads after its write never sees the old copy.
        if (status >= 200 && status < 400)
          await store.invalidate(
            invalidationTags(
              ctx.target!,
              request.raw.headers,
              toHeaders(reply.getHeaders() as OutgoingHttpHeaders),
            ),
          );
        return payload;
      }
      if (ctx.revalidate !== undefined) {
        delete request.raw.headers["if-none-match"];
        delete request.raw.headers["if-modified-since"];
      }
      const status = reply.statusCode;
      const headers = upstreamHeaders(ctx, reply);
      const hashOf = (names: string[]) => varyHash(names, request.raw.headers);
      if (ctx.revalidate !== undefined && status === 304) {
        drain(payload);
        const r = revalidated(ctx.revalidate, requestView(request), headers, w, hashOf);
        if ("mismatch" in r) {
          // The 304 names other validators than the stored ones (RFC 9111 §4.3.4): nothing is
          // refreshed, and the next request asks again. This client asked unconditionally and
          // must get a body: the stored one, labelled STALE, as it was not validated.
          settle(ctx, undefined);
          return replace(request, reply, ctx, ctx.revalidate, "STALE");
        }
        const entry = "entry" in r ? r.entry : ctx.revalidate;
        settle(ctx, { entry, label: "HIT" });
        if ("entry" in r) await write(request, ctx.key, r.entry, r.retention);
        return replace(request, reply, ctx, entry, "HIT");
      }
      if (status >= 500 && ctx.stale !== undefined) {
        drain(payload);
        request.log.warn({ statusCode: status, route: route.name }, "upstream failed: serving stale");
        settle(ctx, { entry: ctx.stale, label: "STALE" });
        return replace(request, reply, ctx, ctx.stale, "STALE");
      }
      if (ctx.phase === "miss") mark(request, reply, "MISS");
      // Tags are for the cache, not for clients (as CDNs strip them).
      reply.removeHeader("surrogate-key");
      reply.removeHeader("cache-tag");
      stopTargeted(reply);
      const head = request.raw.method === "HEAD";
      const length = Number(headers["content-length"]);
      if (status === 304 || status === 206 || (!head && length > maxEntrySize)) {
        settle(ctx, undefined);
        if (ctx.phase !== "refresh") return payload;
        // Nobody reads a background refresh: do not download what will not be stored.
        (payload as Readable | undefined)?.destroy?.();
        return "";
      }
      const finish = async (body: Buffer | undefined) => {
        if (body === undefined || (!head && Number.isFinite(length) && body.length !== length)) {
          settle(ctx, undefined);
          return;
        }
        const r = buildEntry(requestView(request), status, headers, body, w, hashOf);
        if (!("entry" in r)) {
          settle(ctx, undefined);
          return;
        }
        settle(ctx, { entry: r.entry, label: "HIT" });
        await write(request, ctx.key, r.entry, r.retention);
      };
      if (
        payload === undefined ||
        payload === null ||
        typeof payload === "string" ||
        Buffer.isBuffer(payload)
      ) {
        await finish(payload == null ? Buffer.alloc(0) : Buffer.from(payload as string | Buffer));
        return payload;
      }
      const source = payload as Readable;
      if (typeof source.pipe !== "function") {
        settle(ctx, undefined);
        return payload;
      }
      const capture = new Capture(maxEntrySize, finish, ctx.phase === "refresh");
      pipeline(source, capture, () => {});
      return capture;
    }

    /**
     * The fast lanes (server.ts), when the cache is the route's only policy:
     * a fresh 200 for a plain GET — no Authorization, no conditional, no
     * upgrade — is answered before Fastify, as serve() answers it (writeHit).
     * Everything else, HEAD and 304s included, goes through cacheLookup as
     * always. trustProxy changes what a request's scheme is, so it keeps the
     * lanes off.
     *
     * - Memory store: the entry is read without waiting, and the lane takes
     *   the request only when it answers it.
     * - Redis store: the lane must wait for Redis to know. It takes the
     *   request, reads (the same read() as cacheLookup), and either answers
     *   or hands the untouched request to Fastify through `resume` (server.ts),
     *   with what it read on the request state so that cacheLookup does not
     *   ask Redis again. A failed read is handed on without it: cacheLookup
     *   reads again and applies store.onError as always.
     */
    if (laneable(route, generation.config, ["cache"]) && methods.has("GET")) {
      // The access line and lease release as on the Fastify path, when lines are written at all.
      const logging = logsInfo(scope.log);
      const server = { syAgent: scope.syAgent, log: scope.log };

      // Without `vary`, a GET's key depends only on its target (path and query), Host and scheme:
      // a hot target's key is looked up here instead of built, and being the same string each
      // time, the store's map finds it by the hash it already has. Bounded as key.ts's digests.
      const byTarget = new Map<string, { host: string | undefined; https: boolean; key: string }>();

      /** The key of a request a lane may answer; undefined for those only Fastify answers. */
      const laneKey = (req: IncomingMessage, st: RequestState): string | undefined => {
        const h = req.headers;
        if (
          req.method !== "GET" ||
          h.authorization !== undefined ||
          h.upgrade !== undefined ||
          h[REFRESH_HEADER] !== undefined ||
          h.range !== undefined ||
          // The lanes answer fresh hits only: a client's own directives are cacheLookup's to weigh.
          (obeyClient && (h["cache-control"] !== undefined || h.pragma !== undefined)) ||
          isConditional(h)
        )
          return undefined;
        const https = (req.socket as TLSSocket).encrypted === true;
        const host = h.host ?? (h[":authority"] as string | undefined);
        const target = req.url ?? "/";
        const known = vary.length === 0 ? byTarget.get(target) : undefined;
        if (known !== undefined && known.host === host && known.https === https) return known.key;
        const key = primaryKey({
          method: "GET",
          scheme: https ? "https" : "http",
          host: hostOf(h),
          path: st.path,
          query: st.query,
          vary: varyValues(vary, h, undefined),
        });
        if (vary.length === 0 && target.length <= 256) {
          if (byTarget.size >= 10_000) byTarget.clear();
          byTarget.set(target, { host, https, key });
        }
        return key;
      };

      /** What a lane answers: fresh 200s (serve() has the rest: other statuses, stale, 304). */
      const answers = (entry: Entry | undefined, now: number): entry is Entry =>
        entry !== undefined && entry.status === 200 && freshness(entry, w, now) === "fresh";

      /** Access line and metrics from the response's close, as app.ts's attach() sets them up. */
      const attachLane = (req: IncomingMessage, res: ServerResponse, st: RequestState, reqId: string) => {
        const request = new LaneRequest(req, reqId, server);
        st.request = request as unknown as FastifyRequest;
        st.reply = new LaneReply(res, request) as unknown as FastifyReply;
        res.once("close", onResponseClose);
      };

      if (store.kind === "memory")
        generation.lanes.set(route.id, function cacheHitLane(req, res, st) {
          const key = laneKey(req, st);
          if (key === undefined) return false;
          const now = Date.now();
          const entry = peek(key, req.headers);
          if (!answers(entry, now)) return false;
          const reqId = genReqId(req);
          st.cache = "hit";
          // Without an access line there is no close listener: the hit is counted here (it is answered now).
          if (!logging) route.metrics?.observe(st, 200, 0);
          else attachLane(req, res, st, reqId);
          st.contentLength = writeHit(res, entry, reqId, now);
          return true;
        });
      else
        generation.lanes.set(route.id, function cacheRedisLane(req, res, st, resume) {
          // A caller that cannot take a request back gets a plain decline.
          if (resume === undefined) return false;
          const key = laneKey(req, st);
          if (key === undefined) return false;
          // Counted from the start (as attach() does in onRequest): a client that leaves during the read is one 499.
          const counted = logging || route.metrics !== undefined;
          const reqId = counted ? genReqId(req) : undefined;
          if (counted) attachLane(req, res, st, reqId!);
          const handOff = (entry?: { key: string; entry: Entry | undefined }) => {
            // The client left during the read: counted by then (when anything counts), nothing to answer.
            if (res.destroyed) return;
            if (counted) {
              res.removeListener("close", onResponseClose);
              st.request = undefined;
              st.reply = undefined;
            }
            st.cacheRead = entry;
            resume(req, res);
          };
          read(key, req)
            .then(
              (entry) => {
                const now = Date.now();
                if (!answers(entry, now)) return handOff({ key, entry });
                if (res.destroyed) return;
                st.cache = "hit";
                st.contentLength = writeHit(res, entry, reqId ?? genReqId(req), now);
              },
              () => handOff(),
            )
            .catch((err: unknown) => {
              // Fastify would have caught this and answered 500: so does the lane, never the process.
              const request = new LaneRequest(req, reqId ?? genReqId(req), server);
              new LaneReply(res, request).send(err);
            });
          return true;
        });
    }

    /** read() without waiting: the memory store only (the lane is registered for no other). */
    function peek(key: string, headers: IncomingHttpHeaders): Entry | undefined {
      const buf = store.peek(key);
      const v = buf && decode(buf);
      if (v === undefined || !("marker" in v)) return v;
      const vbuf = store.peek(variantKey(key, varyHash(v.vary, headers)));
      const e = vbuf && decode(vbuf);
      return e && !("marker" in e) ? e : undefined;
    }

    scope.addHook("preHandler", cacheLookup);
    scope.addHook("onSend", cacheStore);
  },
  { name: "switchyard-cache", fastify: "5.x" },
);
