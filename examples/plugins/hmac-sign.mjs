// A route plugin (issue 13): signs each request for the upstream, so a
// service behind the gateway can tell the gateway sent it and that nobody
// changed the method, path or query on the way.
//
//   x-signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "t\nMETHOD\n/path?query\nx-request-id">
//
// The path is the one the client asked for, before the route's rewrite (the
// upstream gets x-request-id and can be told the route's prefix).
//
// The body is not signed: the gateway streams it to the upstream unread.
// The upstream recomputes the HMAC with the same secret and refuses a stale t.
import { createHmac } from "node:crypto";

export const schema = {
  type: "object",
  additionalProperties: false,
  required: ["secret"],
  properties: {
    secret: { type: "string", minLength: 16 },
    header: { type: "string", default: "x-signature" },
  },
};

/** What is signed; an upstream verifies with the same function. */
export function signature(secret, t, method, url, requestId) {
  return createHmac("sha256", secret).update(`${t}\n${method}\n${url}\n${requestId}`).digest("hex");
}

/** @type {import("switchyard").SwitchyardPlugin<{ secret: string; header: string }>} */
export default async function hmacSign(app, opts) {
  const header = opts.header.toLowerCase();
  app.addHook("preHandler", function signRequest(request, _reply, done) {
    const t = Math.floor(Date.now() / 1000);
    const v1 = signature(opts.secret, t, request.method, request.url, request.id);
    // A client's own copy is replaced, never forwarded.
    request.headers[header] = `t=${t},v1=${v1}`;
    done();
  });
}
