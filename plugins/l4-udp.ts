/**
 * L4 UDP listeners (SPEC §2 `udp`), tied to the app lifecycle like l4-tcp:
 * bound in `onReady` (a port in use fails start-up), no new sessions after
 * `preClose`, everything closed in `onClose`. UDP has no connection to drain
 * and replies need the listener socket, so open sessions run until `onClose`.
 *
 * Wrapped with fastify-plugin because it decorates the app with `l4Udp`.
 */
import type { FastifyInstance } from "fastify";
import fp from "fastify-plugin";
import type { Generation } from "../src/generation.js";
import { UdpProxy } from "../src/l4/udp-proxy.js";

export interface L4UdpOptions {
  generation: Generation;
}

declare module "fastify" {
  interface FastifyInstance {
    /** The L4 UDP listeners of this app, in config order. */
    l4Udp: readonly UdpProxy[];
  }
}

async function l4Udp(app: FastifyInstance, opts: L4UdpOptions): Promise<void> {
  const { config, services } = opts.generation;
  // The proxies put `listener` in every log line themselves.
  const proxies = config.udp.map((listener) => new UdpProxy({ listener, services, log: app.log }));
  app.decorate("l4Udp", proxies);

  app.addHook("onReady", async function bindUdpListeners() {
    const results = await Promise.allSettled(proxies.map((p) => p.start()));
    const failed = results.find((r): r is PromiseRejectedResult => r.status === "rejected");
    if (failed) {
      for (const p of proxies) p.stop();
      throw failed.reason;
    }
    for (const p of proxies) app.log.info({ listener: p.name, address: p.address() }, "udp listener bound");
  });

  app.addHook("preClose", async function stopAcceptingUdp() {
    for (const p of proxies) p.stopAccepting();
  });

  app.addHook("onClose", async function closeUdp() {
    for (const p of proxies) p.stop();
  });
}

export default fp(l4Udp, { name: "switchyard-l4-udp", fastify: "5.x" });
export type { UdpStats } from "../src/l4/udp-proxy.js";
export { UdpProxy };
