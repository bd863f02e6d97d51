/**
 * Server name → value, for TLS passthrough routing. The same rules as the L7
 * host match (SPEC §3): case-insensitive, exact names first, then `*.`
 * wildcards, which match one or more labels in front of the suffix and never
 * the bare suffix itself (`*.example.com` takes `a.example.com` and
 * `a.b.example.com`, not `example.com`). When several wildcards match, the
 * longest suffix wins (the most specific, as NGINX's server_name does). No
 * name or no match: the default, if any.
 */
export type SniRoute<T> = (serverName: string | undefined) => T | undefined;

export function compileSniRoute<T>(table: Readonly<Record<string, T>>, fallback?: T): SniRoute<T> {
  const exact = new Map<string, T>();
  const wildcards: Array<{ suffix: string; value: T }> = [];
  for (const [name, value] of Object.entries(table)) {
    const key = name.toLowerCase().replace(/\.$/, "");
    if (key.startsWith("*.")) wildcards.push({ suffix: key.slice(1), value });
    else exact.set(key, value);
  }
  wildcards.sort((a, b) => b.suffix.length - a.suffix.length);
  return (serverName) => {
    if (serverName === undefined) return fallback;
    const name = serverName.toLowerCase();
    const hit = exact.get(name);
    if (hit !== undefined) return hit;
    for (const w of wildcards) {
      // suffix is ".example.com"; at least one non-empty label must precede it.
      if (name.length > w.suffix.length && name.endsWith(w.suffix)) return w.value;
    }
    return fallback;
  };
}
