/**
 * "250ms" / "5s" / "1m" / "1h" → milliseconds and "512kb" / "1mb" → bytes.
 * The schema's patterns guarantee the shape; these only convert.
 */
const TIME: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
const SIZE: Record<string, number> = { b: 1, kb: 1024, mb: 1024 ** 2, gb: 1024 ** 3 };

export function ms(value: string): number;
export function ms(value: string | undefined): number | undefined;
export function ms(value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const m = /^([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)$/.exec(value);
  if (!m) throw new Error(`not a duration: ${value}`);
  return Math.round(Number(m[1]) * TIME[m[2]]);
}

export function bytes(value: string): number {
  const m = /^([0-9]+)(b|kb|mb|gb)$/.exec(value);
  if (!m) throw new Error(`not a size: ${value}`);
  return Number(m[1]) * SIZE[m[2]];
}
