// A route plugin (issue 13, README "Writing a plugin"): only requests with a
// known API key pass. The keys come from the plugin's options in routes.yaml
// (list them from ${ENV} there, or load them here from your own store).
//
//   plugins:
//     - use: ./examples/plugins/api-key.mjs
//       options: { keys: ["${DEMO_API_KEY:-demo-key}"], header: x-api-key }
import { createHash, timingSafeEqual } from "node:crypto";

/** Checked by `switchyard --check` against the route's `options` (file:line:col, did-you-mean). */
export const schema = {
  type: "object",
  additionalProperties: false,
  required: ["keys"],
  properties: {
    keys: { type: "array", minItems: 1, items: { type: "string", minLength: 1 } },
    header: { type: "string", default: "x-api-key" },
  },
};

/** SHA-256 of a key: every digest has the same length, so the compare below never leaks a key's length. */
const digest = (s) => createHash("sha256").update(s).digest();

/**
 * Constant-time compare against every key: how long a refusal takes says
 * nothing about how much of a key was right, nor which key was close.
 * @param {string} given
 * @param {Buffer[]} keys  digests of the known keys
 */
function known(given, keys) {
  const g = digest(given);
  let ok = false;
  for (const k of keys) ok = timingSafeEqual(g, k) || ok;
  return ok;
}

/** @type {import("switchyard").SwitchyardPlugin<{ keys: string[]; header: string }>} */
export default async function apiKey(app, opts) {
  const keys = opts.keys.map(digest);
  const header = opts.header.toLowerCase();
  app.addHook("onRequest", async function checkApiKey(request, reply) {
    const given = request.headers[header];
    if (typeof given === "string" && known(given, keys)) return;
    // The gateway's own error shape (SPEC §5), so clients parse one kind of error.
    return reply
      .code(401)
      .header("www-authenticate", `ApiKey header="${header}"`)
      .send({
        statusCode: 401,
        error: "Unauthorized",
        code: "API_KEY_INVALID",
        message: `A valid ${header} header is required`,
        requestId: request.id,
      });
  });
}
