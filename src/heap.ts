/**
 * One full garbage collection once a config is serving (start-up and each
 * reload), at the process edge only (cli.ts).
 *
 * Why (issue 11): compiling the config validator (Ajv, config/load.ts) at
 * start-up leaves V8's heap in a state that makes the hot path slower until
 * a forced full collection. Measured: 20 nextTicks + setImmediate cost 204 ns
 * a tick alone, 425 ns after importing the app, 207 ns after one gc() (the
 * validator still alive). The likely mechanism: Ajv's code generation uses
 * objects as maps, leaving thousands of dead shape transitions behind, and a
 * full GC clears dead transitions; 10,000 throwaway objects given distinct
 * keys reproduce the same 2x cost per nextTick without Ajv. V8's own later
 * mark-compacts did not restore it in the A/B below (the old build stayed
 * slower after its RSS dropped). On the plain route, 2-core AMD EPYC, an
 * interleaved A/B of 8 x 4 s (as bench/run.mjs --compare runs them): 79.8 us
 * of gateway CPU per request without, 74.5 us with, lower in 8 of 8 rounds.
 * The collection takes about 25 ms, once per start or reload.
 *
 * `gc` is exposed the way jest's leak detector does it (setFlagsFromString,
 * then a new context, where V8 installs it); the flag is set back after, so
 * user plugins do not find a global `gc` they did not ask for.
 */
import v8 from "node:v8";
import vm from "node:vm";

let collect: (() => void) | undefined;

function exposed(): () => void {
  const own = (globalThis as { gc?: () => void }).gc;
  if (typeof own === "function") return own;
  v8.setFlagsFromString("--expose-gc");
  try {
    return vm.runInNewContext("gc") as () => void;
  } finally {
    v8.setFlagsFromString("--no-expose-gc");
  }
}

/** Collects the whole heap now; returns the milliseconds it took. */
export function settleHeap(): number {
  collect ??= exposed();
  const t = performance.now();
  collect();
  return performance.now() - t;
}
