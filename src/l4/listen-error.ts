/**
 * The one-line start-up failure for an L4 bind (SPEC §1: "startup failure (port
 * in use …) with a one-line reason, never a stack trace").
 */
const REASONS: Record<string, string> = {
  EADDRINUSE: "address already in use",
  EACCES: "permission denied",
  EADDRNOTAVAIL: "address not available",
};

export function listenError(host: string, port: number, err: NodeJS.ErrnoException, kind = ""): Error {
  const where = host.includes(":") ? `[${host}]:${port}` : `${host}:${port}`;
  const reason = (err.code && REASONS[err.code]) ?? err.message;
  return new Error(`cannot listen on ${kind}${where}: ${reason}`, { cause: err });
}
