/**
 * Server-Timing (SPEC §3 `listen[].serverTiming`, W3C Server Timing): the
 * record a request keeps of where its time went, and its rendering as the
 * header a browser's network panel shows.
 *
 * The record exists only for requests that arrived on a serverTiming listener
 * (server.ts makes it before routing, and such requests skip the fast lanes);
 * the hooks that fill it are registered only when some listener has
 * serverTiming (plugins/server-timing.ts). A gateway without it runs none of this.
 */
import type { IncomingMessage } from "node:http";
import type { Config } from "./config/schema.js";
import type { CompiledRoute } from "./generation.js";
import type { RequestState } from "./request-state.js";
import { matchIncoming } from "./router/incoming.js";
import type { Matcher } from "./router/match.js";

/** One measured policy: its hooks ran from start to end (NaN while it has not finished). */
interface Span {
  metric: string;
  start: number;
  end: number;
}

/** Times are performance.now() milliseconds. */
export class Timing {
  /** Policy spans in the order they began, which is SPEC §3 order. */
  readonly spans: Span[] = [];
  /** When the forwarder took the request (NaN: never forwarded). */
  upstreamStart = Number.NaN;

  begin(metric: string): void {
    this.spans.push({ metric, start: performance.now(), end: Number.NaN });
  }

  end(metric: string): void {
    const s = this.spans[this.spans.length - 1];
    if (s?.metric === metric) s.end = performance.now();
  }
}

/** Whether any listener of `config` times its requests (decides, at load, whether the hooks exist). */
export function timesRequests(config: Config): boolean {
  return config.listen.some((l) => l.serverTiming === true);
}

/** On a serverTiming listener: match the request now (routing reuses it) and give it a record. */
export function startTiming(matcher: Matcher<CompiledRoute>, req: IncomingMessage): void {
  const st = matchIncoming(matcher, req);
  if (st) st.timing = new Timing();
}

/** `route;desc="name"`, built once per route (names are tokens; quoted-string escapes kept for safety). */
export function routeMetric(route: CompiledRoute): string {
  return `route;desc="${route.name.replace(/["\\]/g, "\\$&")}"`;
}

const CACHE_LABEL = { hit: "HIT", miss: "MISS", stale: "STALE", bypass: "BYPASS" } as const;

/** Milliseconds with at most two decimals (W3C: dur is a decimal number of milliseconds). */
function dur(ms: number): string {
  return String(Math.round(ms * 100) / 100);
}

/**
 * The header value for `st`, made as the response head is written. A span
 * still open (its policy answered itself: 401, 429, a cache hit) ends now, and
 * so does the upstream span: this is when the answer's head came in (or the
 * gateway's own error answer was made), every attempt and backoff included.
 */
export function render(routeEntry: string, st: RequestState, t: Timing): string {
  const now = performance.now();
  let out = routeEntry;
  for (const s of t.spans) {
    out += `, ${s.metric};dur=${dur((Number.isNaN(s.end) ? now : s.end) - s.start)}`;
    // The label is known late (MISS is set in the cache's onSend), hence read here.
    if (s.metric === "cache" && st.cache !== undefined) out += `;desc=${CACHE_LABEL[st.cache]}`;
  }
  if (!Number.isNaN(t.upstreamStart)) {
    const attempt = st.fwd?.attempt ?? 0;
    out += `, upstream;dur=${dur(now - t.upstreamStart)}`;
    if (attempt > 0) out += `, retry;desc=${attempt}`;
  }
  return out;
}

/** Ours first, then the upstream's own metrics (Server-Timing is a list: both stay readable). */
export function withUpstream(ours: string, theirs: unknown): string {
  if (theirs === undefined || theirs === null || theirs === "") return ours;
  return `${ours}, ${Array.isArray(theirs) ? theirs.join(", ") : String(theirs)}`;
}

declare module "./request-state.js" {
  interface RequestState {
    /** Only on requests from a serverTiming listener (startTiming). */
    timing?: Timing;
  }
}
