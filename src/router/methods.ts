/**
 * Route method lists as bitmasks, so that a route failing on method is skipped
 * with one AND (a Set lookup per route costs several times more). Bits are
 * assigned per matcher to the methods its routes name, in order of first
 * appearance; methods beyond the 30th, and request methods no route names,
 * share the OTHER bit, which a route then confirms against its Set. Methods
 * are compared exactly (RFC 9110 §9.1: case-sensitive; GET does not imply HEAD).
 */

/** Mask of a route without a method condition. */
export const ANY_METHOD = -1;
/** Shared bit for unassigned methods (bit 30 keeps masks positive small integers). */
export const OTHER_METHOD = 1 << 30;

export class MethodBits {
  private readonly bits = new Map<string, number>();

  /** Mask for a route's (already upper-cased) methods. */
  maskOf(methods: Iterable<string>): number {
    let mask = 0;
    for (const m of methods) {
      let bit = this.bits.get(m);
      if (bit === undefined) {
        bit = this.bits.size < 30 ? 1 << this.bits.size : OTHER_METHOD;
        this.bits.set(m, bit);
      }
      mask |= bit;
    }
    return mask;
  }

  /** The request method's bit: one Map lookup per request. */
  bitOf(method: string): number {
    return this.bits.get(method) ?? OTHER_METHOD;
  }
}

/** Does a route with `mask` (and, for OTHER, its method Set) accept the request? */
export function methodAllowed(
  mask: number,
  methods: ReadonlySet<string> | undefined,
  bit: number,
  method: string,
): boolean {
  return (mask & bit) !== 0 && (bit !== OTHER_METHOD || methods === undefined || methods.has(method));
}
