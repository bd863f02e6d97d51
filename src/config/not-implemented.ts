/**
 * Keys the schema accepts (so files written for later versions validate) but
 * this build does not act on yet. Setting one is an error rather than a
 * silent no-op: a gateway that ignores `auth` is worse than one that refuses.
 */
export const NOT_IMPLEMENTED: { path: string; issue: number }[] = [{ path: "services.*.sticky", issue: 4 }];
