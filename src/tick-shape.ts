/**
 * Keeps one `process.nextTick` queue entry alive for the life of the process,
 * so that every later entry has the same hidden class. Imported first by the
 * CLI and the library entry, before anything else has run a full GC.
 *
 * Why: Node builds each entry as `{ [async_id_symbol], [trigger_async_id_symbol],
 * callback, args }`, one hidden class (V8 map) per property added. Those maps
 * are held only weakly by their parent's transitions: a full GC at a moment
 * when no entry is queued (start-up; a forced one, as the CLI once ran after each load)
 * drops them, and the next entry builds new ones. V8's inline caches in
 * `nextTick` see a new map after each such GC and, after four, go
 * megamorphic for good; from then on every entry is built through the
 * runtime (Runtime_DefineKeyedOwnPropertyInLiteral) — about ten entries per
 * HTTP request. Measured (issue 11, `node --cpu-prof`, cache hit under wrk):
 * nextTick's own time 2.9–3.5 µs a request without this, 0.26 with it (a bare
 * node:http server: 0.22); the hit went from ~28 k to ~33 k req/s.
 * One live entry keeps the chain of maps, so its transitions are never dropped.
 */
import { executionAsyncResource } from "node:async_hooks";

/** Holds the entry for as long as the module lives (that is, the process). */
const held: object[] = [];

// Inside a nextTick callback the execution resource is the queue entry itself.
process.nextTick(() => held.push(executionAsyncResource()));
